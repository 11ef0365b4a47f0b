// The cluster node's line in `ikeclone status` (control/cli/format.ts): the
// last clone arrival's duration from its timeline (control/cluster/handoff-timeline.ts).
import { describe, expect, test } from 'vitest';
import { clusterNodeLine } from '../control/cli/format.js';
import type { ClusterNodeStatus } from '../control/status.js';
import { formatClusterStatus, type ClusterStatus } from '../control/cluster/status.js';

const base: ClusterNodeStatus = {
  cluster: 'vpn1',
  node: 'gw-b',
  spiPrefix: 2,
  lease: 'held',
  leaseLostReason: null,
  clones: [],
  handoff: { handedOff: 0, arrived: 1, refused: 0, refusedBy: { missing: 0, seal: 0, decode: 0, import: 0 }, fenced: 0, writes: 1 },
  lastArrival: null,
  failover: { claimed: 0, lost: 0, failed: 0, returned: 0 },
  rebalance: { moved: 0, failed: 0 },
};

describe('cluster node status line', () => {
  test('without an arrival the line says nothing of one', () => {
    expect(clusterNodeLine(base)).not.toMatch(/last arrival/);
  });

  test('the last arrival: from being named owner to its Child SA, or where it stopped', () => {
    const done = { ...base, lastArrival: { at: { seen: 1000, read: 1001, imported: 1003, pathTest: 1010, update: 1014, child: 1031 }, fencing: { heldMs: 0, holds: 0 } } };
    expect(clusterNodeLine(done)).toMatch(/; last arrival: Child SA up 31 ms after it was named owner$/);
    const stopped = { ...base, lastArrival: { at: { seen: 1000, read: 1001, imported: 1003 }, fencing: { heldMs: 0, holds: 0 } } };
    expect(clusterNodeLine(stopped)).toMatch(/; last arrival: stopped 3 ms after it was named owner$/);
  });

  test('silent members\' leases this node revoked, when any (control/cluster/silent-member.ts)', () => {
    expect(clusterNodeLine(base)).not.toMatch(/silent/);
    expect(clusterNodeLine({ ...base, revokedSilent: 0 })).not.toMatch(/silent/);
    expect(clusterNodeLine({ ...base, revokedSilent: 2 })).toMatch(/dropped by fencing 0, silent members' leases revoked 2$/);
    // Members silent in etcd that answered the liveness probe (control/cluster/liveness-probe.ts): kept, said when any.
    expect(clusterNodeLine({ ...base, revokedSilent: 0, silentSpared: 0 })).not.toMatch(/silent/);
    expect(clusterNodeLine({ ...base, revokedSilent: 1, silentSpared: 3 })).toMatch(/silent members' leases revoked 1, silent members spared \(answered the liveness probe\) 3$/);
    expect(clusterNodeLine({ ...base, livenessProbeUnbound: { address: '192.0.2.1', port: 4501, reason: 'bind EADDRINUSE 192.0.2.1:4501' } })).toMatch(
      /, liveness probe NOT bound on 192\.0\.2\.1:4501 \(bind EADDRINUSE 192\.0\.2\.1:4501\): silent members neither suspected nor suspecting$/,
    );
  });

  test('the node\'s pools, the peers counted over the cluster and its refusals by reason', () => {
    expect(clusterNodeLine(base)).not.toMatch(/pools|refused/);
    const resources = {
      pools: [{ pool: '10.9.0.0/24', reserved: 4, leased: 7 }],
      peers: { counted: 9, atIkeSaLimit: 2, atChildSaLimit: 0 },
      refusals: { noAdditionalSas: 3, admissionContention: 1, internalAddressFailure: 5, leaseWritesRefused: 1 },
    };
    expect(clusterNodeLine({ ...base, resources })).toMatch(
      /; pools: 10\.9\.0\.0\/24 4 in reserve, 7 leased here; peers counted 9 \(2 at the IKE SA limit, 0 at the Child SA limit\); refused: NO_ADDITIONAL_SAS 3, INTERNAL_ADDRESS_FAILURE 5, lease writes 1$/,
    );
  });
});

describe('cluster status: the records\' sealing', () => {
  const status: ClusterStatus = {
    cluster: 'vpn1',
    members: [{ node: 'gw-a', address: '192.0.2.11', load: 1, spiPrefix: 1, clones: 2 }],
    clones: [{ family: 'gw-a.1', index: 1, owner: 'gw-a', epoch: 3 }, { family: 'gw-a.1', index: 2, owner: 'gw-a', epoch: 1 }],
    orphaned: 0,
  };
  test('says how many records open under the current key and under a previous one, and those that open under none', () => {
    expect(formatClusterStatus({ ...status, sealing: { current: 1, previous: 1, unopened: 0 } })).toMatch(/\nrecords: 1 sealed under the current key, 1 under a previous one$/);
    expect(formatClusterStatus({ ...status, sealing: { current: 0, previous: 1, unopened: 1 } })).toMatch(/\nrecords: 0 sealed under the current key, 1 under a previous one, 1 that open under none of this configuration's keys$/);
    // Without clones, or without the keys (sealing absent): no such line.
    expect(formatClusterStatus({ ...status, clones: [], sealing: { current: 0, previous: 0, unopened: 0 } })).not.toMatch(/records:/);
    expect(formatClusterStatus(status)).not.toMatch(/records:/);
  });
});
