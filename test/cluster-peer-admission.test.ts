// Exact per-peer IKE SA and Child SA limits over a cluster (RFC 7791 §8;
// architecture §8; control/cluster/peer-admission.ts), on a real etcd with
// TLS: a peer holds one IKE SA on each of two nodes and asks both for a clone
// (or a new Child SA) at the same time with one slot left under ikeSasPerPeer
// (childSasPerPeer). Each node's followed counts say there is room, so each
// would admit; the admission transactions let exactly one of them, and the
// other answers NO_ADDITIONAL_SAS. Needs the Debian etcd (prerequisite 'etcd').
import { describe, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ClusterMembership } from '../control/cluster/membership.js';
import { ClusterPeerAccounting } from '../control/cluster/peer-accounting.js';
import { PeerAdmission } from '../control/cluster/peer-admission.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { ChildSa, IkeSa } from '../control/ike/ike-sa.js';
import { NotifyType } from '../control/wire/constants.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { clusterConfig, etcdForFile, log } from './support/cluster-stores.js';

const env = etcdForFile();
const PEER = 'alice@example.org';
const LIMIT = 3;
const CHILD_LIMIT = 3;

interface Gateway {
  name: string;
  wire: MemoryWire;
  client: IkeEngine;
  gw: IkeEngine;
  accounting: ClusterPeerAccounting;
  admission: PeerAdmission;
  childAdmission: PeerAdmission;
  m: ClusterMembership;
}

/** A node with its own gateway engine and a client engine of the same peer identity, wired in memory. */
async function gateway(cluster: string, name: string): Promise<Gateway> {
  const m = await ClusterMembership.join({ config: clusterConfig(env.etcd(), cluster, name), connectionsHash: 'h', log });
  const shared = { client: m.client, cluster, node: name, leaseId: m.leaseId, log };
  const accounting = await new ClusterPeerAccounting(shared).start();
  const admission = new PeerAdmission({ ...shared, accounting, limit: () => LIMIT });
  const childAdmission = new PeerAdmission({ ...shared, accounting, kind: 'child', limit: () => CHILD_LIMIT });
  env.open.push(async () => {
    await accounting.stop();
    await m.leave();
  });
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const client = wire.engine('10.0.0.1', [initiator]);
  const gw = wire.engine('10.0.0.2', [responder], {
    limits: { ikeSasPerPeer: LIMIT, childSasPerPeer: CHILD_LIMIT },
    peerResources: {
      ikeSasElsewhere: (p) => accounting.ikeSasElsewhere(p),
      childSasElsewhere: (p) => accounting.childSasElsewhere(p),
      prepare: (sa, kind) => (kind === 'ike-clone' ? admission.admit(sa) : kind === 'child-create' ? childAdmission.admit(sa) : undefined),
      admittedIkeSaCount: (sa) => admission.admittedIkeSaCount(sa),
      admittedChildSaCount: (sa) => childAdmission.admittedCount(sa),
    },
  });
  accounting.follow(gw);
  return { name, wire, client, gw, accounting, admission, childAdmission, m };
}

/** The peer's first IKE SA (with its Child SA) on each node, each node following the other's count. */
async function firstSas(gws: Gateway[]): Promise<IkeSa[]> {
  const ikes: IkeSa[] = [];
  for (const g of gws) {
    const up = g.client.initiate(g.client.policies[0]!.name);
    g.wire.run(100);
    ikes.push(await up);
  }
  await Promise.all(gws.map((g) => g.accounting.settled()));
  await waitFor(() => gws.every((g) => g.accounting.ikeSasElsewhere(PEER) === gws.length - 1), { timeoutMs: 5000, message: 'each node to count the peer\'s IKE SA on the other' });
  return ikes;
}

/** The sum of `what` over every node's count of the peer in etcd. */
async function etcdSum(g: Gateway, cluster: string, what: 'ike' | 'child'): Promise<number> {
  const counts = await g.m.client.getAll().prefix(`/ikeclone/v1/${cluster}/peers/${encodeURIComponent(PEER)}/nodes/`).strings();
  return Object.values(counts).reduce((n, v) => n + (JSON.parse(v) as Record<string, number>)[what]!, 0);
}

/** Deliver both wires' datagrams until `done`, letting etcd's answers in between (bounded). */
async function pump(wires: MemoryWire[], done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) {
    for (const w of wires) w.flush();
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function outcome(p: Promise<IkeSa | ChildSa>): Promise<'admitted' | 'refused' | string> {
  return p.then(
    (sa) => (sa.state === 'established' || sa.state === 'installed' ? 'admitted' : sa.state),
    (err: { notify?: number; message: string }) => (err.notify === NotifyType.NO_ADDITIONAL_SAS ? 'refused' : err.message),
  );
}

describe('exact per-peer limits across nodes', () => {
  interopTest('two nodes admitting the last slot of a peer at the same time: exactly one wins, the other answers NO_ADDITIONAL_SAS', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const a = await gateway(cluster, 'gw-a');
    const b = await gateway(cluster, 'gw-b');
    // The peer's first IKE SA on each node: 2 of 3, and each node has seen the other's.
    const ikes = await firstSas([a, b]);
    // By the counts each node follows, both clones fit: 1 here + 1 elsewhere < 3.
    for (const g of [a, b]) expect(g.gw.peerIkeSaCount(g.gw.ikeSas()[0]!)).toBe(2);

    // Both clone requests leave at once; both nodes decide before either one's count reaches the other.
    const clones = [a.client.cloneIkeSa(ikes[0]!), b.client.cloneIkeSa(ikes[1]!)];
    const results: string[] = [];
    const settled = Promise.all(clones.map(outcome)).then((r) => results.push(...r));
    await pump([a.wire, b.wire], () => results.length === 2);
    await settled;
    expect(results.sort()).toEqual(['admitted', 'refused']);

    // etcd holds exactly the limit: 3 IKE SAs of the peer over both nodes, and each node counts the same.
    await Promise.all([a.accounting.settled(), b.accounting.settled()]);
    expect(await etcdSum(a, cluster, 'ike')).toBe(LIMIT);
    const [winner, loser] = a.admission.stats.admitted === 1 ? [a, b] : [b, a];
    expect(winner.admission.stats).toMatchObject({ admitted: 1, refusedAtLimit: 0, contention: 0 });
    expect(loser.admission.stats).toMatchObject({ admitted: 0 });
    expect(loser.admission.stats.refusedAtLimit + loser.admission.stats.contention).toBe(1);
    expect(loser.gw.stats.refusals.NO_ADDITIONAL_SAS).toBe(1);
    expect(winner.gw.ikeSas()).toHaveLength(2);
    expect(winner.accounting.peerCounts(PEER)[winner.name]).toEqual({ ike: 2, child: 1 });
    await waitFor(() => loser.accounting.ikeSasElsewhere(PEER) === 2, { timeoutMs: 5000, message: 'the loser to follow the winner\'s count' });

    // The slot that is left nowhere: one more clone anywhere is refused, with no transaction written.
    const more = await (async () => {
      const p = outcome(loser.client.cloneIkeSa(loser.client.ikeSas()[0]!));
      let r: string | undefined;
      void p.then((x) => (r = x));
      await pump([loser.wire], () => r !== undefined);
      return p;
    })();
    expect(more).toBe('refused');
  });

  interopTest('an admitted clone that does not come up gives its slot back', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const a = await gateway(cluster, 'gw-a');
    const up = a.client.initiate(a.client.policies[0]!.name);
    a.wire.run(100);
    await up;
    await a.accounting.settled();
    const sa = a.gw.ikeSas()[0]!;
    // An admission whose clone never comes up (its answer refused it for another reason).
    await a.admission.admit(sa);
    expect(a.admission.admittedIkeSaCount(sa)).toBe(1);
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 2, child: 1 });
    await new Promise((r) => setImmediate(r));
    expect(a.admission.admittedIkeSaCount(sa)).toBeUndefined();
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 1, child: 1 });
    await a.accounting.settled();
    expect(JSON.parse((await a.m.client.get(`/ikeclone/v1/${cluster}/peers/${encodeURIComponent(PEER)}/nodes/gw-a`).string())!)).toEqual({ ike: 1, child: 1 });
  });

  interopTest('two nodes admitting the last Child SA slot of a peer at the same time: exactly one wins, the other answers NO_ADDITIONAL_SAS', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const a = await gateway(cluster, 'gw-a');
    const b = await gateway(cluster, 'gw-b');
    const ikes = await firstSas([a, b]);
    await waitFor(() => a.accounting.childSasElsewhere(PEER) === 1 && b.accounting.childSasElsewhere(PEER) === 1, { timeoutMs: 5000, message: 'each node to count the peer\'s Child SA on the other' });
    // By the counts each node follows, both new Child SAs fit: 1 here + 1 elsewhere < 3.
    for (const g of [a, b]) expect(g.gw.peerChildCount(g.gw.ikeSas()[0]!)).toBe(2);
    const childName = a.client.policies[0]!.children[0]!.name;

    // RFC 7296 §1.3.1: both peers' CREATE_CHILD_SA (no REKEY_SA) leave at once.
    const results: string[] = [];
    const created = [a.client.createChildSa(ikes[0]!, childName), b.client.createChildSa(ikes[1]!, childName)];
    const settled = Promise.all(created.map(outcome)).then((r) => results.push(...r));
    await pump([a.wire, b.wire], () => results.length === 2);
    await settled;
    expect(results.sort()).toEqual(['admitted', 'refused']);

    await Promise.all([a.accounting.settled(), b.accounting.settled()]);
    expect(await etcdSum(a, cluster, 'child')).toBe(CHILD_LIMIT);
    expect(await etcdSum(a, cluster, 'ike')).toBe(2);
    const [winner, loser] = a.childAdmission.stats.admitted === 1 ? [a, b] : [b, a];
    expect(winner.childAdmission.stats).toMatchObject({ admitted: 1, refusedAtLimit: 0, contention: 0 });
    expect(loser.childAdmission.stats).toMatchObject({ admitted: 0 });
    expect(loser.childAdmission.stats.refusedAtLimit + loser.childAdmission.stats.contention).toBe(1);
    expect(loser.gw.stats.refusals.NO_ADDITIONAL_SAS).toBe(1);
    expect(winner.accounting.peerCounts(PEER)[winner.name]).toEqual({ ike: 1, child: 2 });
    expect(winner.gw.ikeSas()[0]!.children).toHaveLength(2);
    // No IKE SA was admitted by the Child SA admissions.
    expect(a.admission.stats.admitted + b.admission.stats.admitted).toBe(0);

    // A rekey replaces a Child SA: not admitted (no transaction), and not refused at the limit.
    const before = winner.childAdmission.stats.admitted + winner.childAdmission.stats.refusedAtLimit;
    const winnerIke = winner.client.ikeSas()[0]!;
    const rekeyed = outcome(winner.client.rekeyChildSa(winnerIke.children[0]!));
    let r: string | undefined;
    void rekeyed.then((x) => (r = x));
    await pump([winner.wire], () => r !== undefined);
    expect(await rekeyed).toBe('admitted');
    expect(winner.childAdmission.stats.admitted + winner.childAdmission.stats.refusedAtLimit).toBe(before);
  });
});
