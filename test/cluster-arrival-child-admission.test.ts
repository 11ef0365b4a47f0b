// The Child SA a node creates after a clone arrives (control/cluster/handoff.ts,
// completeArrival in control/ike/sa-transfer.ts) is admitted against the
// peer's childSasPerPeer over the cluster like a peer's own request (RFC 7791
// §8; control/cluster/peer-admission.ts admitOwn), on a real etcd with TLS:
// engines in memory (a client, nodes A and B), each node with its membership,
// accounting and admissions. The admission starts at import; a refused one
// leaves the clone on its new node without a Child SA (logged, counted).
// Needs the Debian etcd (prerequisite 'etcd').
import { describe, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ClusterMembership } from '../control/cluster/membership.js';
import { ClusterPeerAccounting } from '../control/cluster/peer-accounting.js';
import { PeerAdmission } from '../control/cluster/peer-admission.js';
import { CloneHandoff } from '../control/cluster/handoff.js';
import { ClusterKey } from '../control/cluster/seal.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { ArrivalResult } from '../control/ike/sa-transfer.js';
import { NotifyType } from '../control/wire/constants.js';
import { interopTest } from './support/prereq.js';
import { NODE_A, NODE_B, cluster, drive } from './support/cluster-peers.js';
import { clusterConfig, etcdForFile, log } from './support/cluster-stores.js';

const env = etcdForFile();
/** The peer holds one Child SA (on A): one more fits. */
const CHILD_LIMIT = 2;

interface NodeParts {
  m: ClusterMembership;
  accounting: ClusterPeerAccounting;
  childAdmission: PeerAdmission;
  handoff: CloneHandoff;
}

/** Nodes A and B of one cluster, the client's IKE SA (with its Child SA) and a clone without one on A. */
async function setup() {
  const name = `aca-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const parts: { a?: NodeParts; b?: NodeParts } = {};
  const resources = (n: 'a' | 'b') => ({
    holdRequest: (sa: IkeSa) => parts[n]?.handoff.holdRequest(sa) ?? false,
    limits: { childSasPerPeer: CHILD_LIMIT },
    peerResources: {
      childSasElsewhere: (p: string) => parts[n]?.accounting.childSasElsewhere(p) ?? 0,
      prepare: (sa: IkeSa, kind: string) => (kind === 'child-create' ? parts[n]?.childAdmission.admit(sa) : undefined),
      admittedChildSaCount: (sa: IkeSa) => parts[n]?.childAdmission.admittedCount(sa),
    },
  });
  const c = await cluster({ a: resources('a'), b: resources('b') });
  for (const [n, engine, address] of [['a', c.nodeA, NODE_A], ['b', c.nodeB, NODE_B]] as const) {
    const m = await ClusterMembership.join({ config: clusterConfig(env.etcd(), name, n), connectionsHash: 'h', log });
    const shared = { client: m.client, cluster: name, node: n, leaseId: m.leaseId, log };
    const accounting = await new ClusterPeerAccounting(shared).start();
    // The SAs that came up before the accounting followed the engine.
    for (const sa of engine.ikeSas()) accounting.change(sa.peerKey, { ike: 1, child: sa.children.length });
    accounting.follow(engine);
    const childAdmission = new PeerAdmission({ ...shared, accounting, kind: 'child', limit: () => CHILD_LIMIT });
    const handoff = await new CloneHandoff({ engine, client: m.client, key, cluster: name, node: n, address, log, admitChild: (sa) => childAdmission.admitOwn(sa) }).start();
    parts[n] = { m, accounting, childAdmission, handoff };
    env.open.push(async () => {
      await handoff.stop();
      await accounting.stop();
      await m.leave();
    });
  }
  const a = parts.a!;
  const b = parts.b!;
  await a.handoff.adopt(c.clone, 'fam1', 1);
  const peer = c.clone.peerKey!;
  await a.accounting.settled();
  await drive(c.wire, () => b.accounting.childSasElsewhere(peer) === 1, 'B to count the peer\'s Child SA on A');
  const arrivals: ArrivalResult[] = [];
  b.handoff.on('arrived', (_sa, result) => arrivals.push(result));
  const childSum = async () => {
    await Promise.all([a.accounting.settled(), b.accounting.settled()]);
    const counts = await a.m.client.getAll().prefix(`/ikeclone/v1/${name}/peers/${encodeURIComponent(peer)}/nodes/`).strings();
    return Object.values(counts).reduce((s, v) => s + (JSON.parse(v) as { child: number }).child, 0);
  };
  return { ...c, a, b, peer, arrivals, childSum };
}

/** The client asks A for a new Child SA on its IKE SA (RFC 7296 §1.3.1): 'admitted', 'refused' (NO_ADDITIONAL_SAS) or why not. */
function peerRequest(client: IkeEngine, original: IkeSa): { result: () => string | undefined } {
  let r: string | undefined;
  client.createChildSa(original, original.policy.children[0]!.name).then(
    () => (r = 'admitted'),
    (err: { notify?: number; message: string }) => (r = err.notify === NotifyType.NO_ADDITIONAL_SAS ? 'refused' : err.message),
  );
  return { result: () => r };
}

describe('Child SAs of an arriving clone, admitted over the cluster', () => {
  interopTest('an arrival and a peer\'s new Child SA on another node take the last slot at the same time: exactly one wins', ['etcd'], async () => {
    const s = await setup();
    // The handoff and the client's CREATE_CHILD_SA on A leave together; either may be first in etcd.
    const handing = s.a.handoff.handOff(s.clone, 'b');
    const request = peerRequest(s.client, s.original);
    await handing;
    await drive(s.wire, () => s.arrivals.length > 0 && request.result() !== undefined, 'the arrival and the client\'s request');
    const arrival = s.arrivals[0]!;
    expect(arrival).toMatchObject({ ok: true });
    const arrivalWon = arrival.ok && arrival.children.length === 1;
    // Exactly one of the two got the slot; the peer holds the limit over both nodes.
    expect([arrivalWon ? 'admitted' : 'refused', request.result()].sort()).toEqual(['admitted', 'refused']);
    expect(s.a.childAdmission.stats.admitted + s.b.childAdmission.stats.admitted).toBe(1);
    expect(await s.childSum()).toBe(CHILD_LIMIT);
    if (arrivalWon) {
      expect(s.nodeA.stats.refusals.NO_ADDITIONAL_SAS).toBe(1);
    } else {
      expect(arrival).toMatchObject({ ok: true, children: [], childrenRefused: 1 });
      expect(s.b.handoff.stats.childRefused).toBe(1);
    }
  }, 60_000);

  interopTest('a clone that arrives while its peer is at the limit stays on its new node without a Child SA, counted', ['etcd'], async () => {
    const s = await setup();
    // The peer takes the last slot first (admitted on A).
    const request = peerRequest(s.client, s.original);
    await drive(s.wire, () => request.result() !== undefined, 'the client\'s new Child SA on A');
    expect(request.result()).toBe('admitted');
    await s.a.accounting.settled();
    await drive(s.wire, () => s.b.accounting.childSasElsewhere(s.peer) === 2, 'B to follow A\'s count');

    await s.a.handoff.handOff(s.clone, 'b');
    await drive(s.wire, () => s.arrivals.length > 0, 'the arrival');
    // The clone moved (path test, UPDATE_SA_ADDRESSES) but no CREATE_CHILD_SA was sent for it.
    expect(s.arrivals[0]).toMatchObject({ ok: true, children: [], childrenRefused: 1 });
    expect(s.clientClone.remote.address).toBe(NODE_B);
    expect(s.clientClone.children).toHaveLength(0);
    expect(s.b.handoff.ownedClones()).toHaveLength(1);
    expect(s.b.handoff.stats.childRefused).toBe(1);
    expect(s.b.childAdmission.stats).toMatchObject({ admitted: 0, refusedAtLimit: 1 });
    expect(await s.childSum()).toBe(CHILD_LIMIT);
    expect(s.b.accounting.peerCounts(s.peer)['b']).toEqual({ ike: 1, child: 0 });
  }, 60_000);
});
