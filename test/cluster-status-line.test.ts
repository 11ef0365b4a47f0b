// The cluster node's line in `ikeclone status` (control/cli/format.ts): the
// last clone arrival's duration from its timeline (control/cluster/handoff-timeline.ts).
import { describe, expect, test } from 'vitest';
import { clusterNodeLine } from '../control/cli/format.js';
import type { ClusterNodeStatus } from '../control/status.js';

const base: ClusterNodeStatus = {
  cluster: 'vpn1',
  node: 'gw-b',
  spiPrefix: 2,
  lease: 'held',
  leaseLostReason: null,
  clones: [],
  handoff: { handedOff: 0, arrived: 1, refused: 0, fenced: 0, writes: 1 },
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
});
