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
import { prepareAnswers } from '../control/cluster/answer-prepare.js';
import { ClusterVirtualIpLeases } from '../control/cluster/pool-store.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { ChildSa, IkeSa } from '../control/ike/ike-sa.js';
import { NotifyType } from '../control/wire/constants.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { MemoryWire, child, pskPair } from './support/peers.js';
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
  leases: ClusterVirtualIpLeases;
  m: ClusterMembership;
}

/**
 * A node with its own gateway engine and a client engine of the same peer
 * identity, wired in memory; its engine prepares answers as a gateway's
 * cluster node does (control/cluster/answer-prepare.ts). `pools`: the
 * responder leases virtual IPs from them, with no reserve (every IKE_AUTH that
 * asks for one claims it from etcd first), and the client asks for one.
 */
async function gateway(cluster: string, name: string, opts: { pools?: string[]; psk?: string } = {}): Promise<Gateway> {
  const m = await ClusterMembership.join({ config: clusterConfig(env.etcd(), cluster, name), connectionsHash: 'h', log });
  const shared = { client: m.client, cluster, node: name, leaseId: m.leaseId, log };
  const accounting = await new ClusterPeerAccounting(shared).start();
  const admission = new PeerAdmission({ ...shared, accounting, limit: () => LIMIT });
  const childAdmission = new PeerAdmission({ ...shared, accounting, kind: 'child', limit: () => CHILD_LIMIT });
  const leases = await new ClusterVirtualIpLeases({ ...shared, reserve: 0, onLeased: (peer) => accounting.leased(peer) }).start(opts.pools ?? []);
  env.open.push(async () => {
    await leases.stop();
    await accounting.stop();
    await m.leave();
  });
  const wire = new MemoryWire();
  const vip = opts.pools
    ? {
        initiator: { requestVirtualIp: true, children: [{ ...child('net', '10.1.0.0/24', '10.2.0.0/24'), localTs: ['dynamic' as const] }] },
        responder: { pools: opts.pools, children: [{ ...child('net', '10.2.0.0/24', '0.0.0.0/0'), remoteTs: ['dynamic' as const] }] },
      }
    : {};
  const { initiator, responder } = pskPair(vip as { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> });
  if (opts.psk !== undefined) initiator.localAuth = { method: 'psk', psk: Buffer.from(opts.psk) };
  const client = wire.engine('10.0.0.1', [initiator]);
  const gw = wire.engine('10.0.0.2', [responder], {
    limits: { ikeSasPerPeer: LIMIT, childSasPerPeer: CHILD_LIMIT },
    peerResources: {
      virtualIps: leases,
      ikeSasElsewhere: (p) => accounting.ikeSasElsewhere(p),
      childSasElsewhere: (p) => accounting.childSasElsewhere(p),
      prepare: prepareAnswers({ leases, ikeAdmission: admission, childAdmission }),
      admittedIkeSaCount: (sa) => admission.admittedIkeSaCount(sa),
      admittedChildSaCount: (sa) => childAdmission.admittedCount(sa),
    },
  });
  accounting.follow(gw);
  return { name, wire, client, gw, accounting, admission, childAdmission, leases, m };
}

/** The peer's first IKE SA (with its Child SA) on each node, each node following the other's count. */
async function firstSas(gws: Gateway[]): Promise<IkeSa[]> {
  const ikes: IkeSa[] = [];
  for (const g of gws) {
    // IKE_AUTH's answer waits for its Child SA's admission in etcd.
    ikes.push(await pumped([g.wire], g.client.initiate(g.client.policies[0]!.name)));
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

/** `p`'s value once it settles, the wires pumped meanwhile (bounded). */
async function pumped<T>(wires: MemoryWire[], p: Promise<T>): Promise<T> {
  let settled = false;
  void p.then(() => (settled = true), () => (settled = true));
  await pump(wires, () => settled);
  return p;
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
    const more = await pumped([loser.wire], outcome(loser.client.cloneIkeSa(loser.client.ikeSas()[0]!)));
    expect(more).toBe('refused');
  });

  interopTest('an admitted clone that does not come up gives its slot back', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const a = await gateway(cluster, 'gw-a');
    await firstSas([a]);
    const sa = a.gw.ikeSas()[0]!;
    // An admission whose clone never comes up (its answer refused it for another reason).
    const release = await a.admission.admit(sa);
    expect(a.admission.admittedIkeSaCount(sa)).toBe(1);
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 2, child: 1 });
    // Held until the engine says the answer is built.
    await new Promise((r) => setImmediate(r));
    expect(a.admission.admittedIkeSaCount(sa)).toBe(1);
    release!();
    expect(a.admission.admittedIkeSaCount(sa)).toBeUndefined();
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 1, child: 1 });
    await a.accounting.settled();
    expect(JSON.parse((await a.m.client.get(`/ikeclone/v1/${cluster}/peers/${encodeURIComponent(PEER)}/nodes/gw-a`).string())!)).toEqual({ ike: 1, child: 1 });
  });

  interopTest('a Child SA this node admitted for itself that never comes up, with a rekey of the peer\'s Child SA meanwhile: the count stays exact', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const a = await gateway(cluster, 'gw-a');
    await firstSas([a]);
    const sa = a.gw.ikeSas()[0]!;
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 1, child: 1 });
    // Admitted as an arriving clone's Child SA is: its slot counted at once.
    const own = await a.childAdmission.admitOwn(sa);
    expect(own?.admitted).toBe(true);
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 1, child: 2 });
    // The peer's Child SA is rekeyed: its successor comes up (on the admitted slot), the old one goes.
    await pumped([a.wire], a.client.rekeyChildSa(a.client.ikeSas()[0]!.children.find((c) => c.state === 'installed')!));
    await pump([a.wire], () => a.accounting.ownCount(PEER).child === 1);
    expect(sa.children.filter((c) => c.state === 'installed')).toHaveLength(1);
    // The admitted Child SA never came up: one Child SA is what the peer holds, and what is counted.
    own!.settle!(false);
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 1, child: 1 });
    await a.accounting.settled();
    expect(await etcdSum(a, cluster, 'child')).toBe(1);
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
    // Each node admitted its IKE_AUTH's Child SA before; the winner one more.
    const [winner, loser] = a.childAdmission.stats.admitted === 2 ? [a, b] : [b, a];
    expect(winner.childAdmission.stats).toMatchObject({ admitted: 2, refusedAtLimit: 0, contention: 0 });
    expect(loser.childAdmission.stats).toMatchObject({ admitted: 1 });
    expect(loser.childAdmission.stats.refusedAtLimit + loser.childAdmission.stats.contention).toBe(1);
    expect(loser.gw.stats.refusals.NO_ADDITIONAL_SAS).toBe(1);
    expect(winner.accounting.peerCounts(PEER)[winner.name]).toEqual({ ike: 1, child: 2 });
    expect(winner.gw.ikeSas()[0]!.children).toHaveLength(2);
    // No IKE SA was admitted by the Child SA admissions.
    expect(a.admission.stats.admitted + b.admission.stats.admitted).toBe(0);

    // A rekey replaces a Child SA: not admitted (no transaction), and not refused at the limit.
    const before = winner.childAdmission.stats.admitted + winner.childAdmission.stats.refusedAtLimit;
    const winnerIke = winner.client.ikeSas()[0]!;
    expect(await pumped([winner.wire], outcome(winner.client.rekeyChildSa(winnerIke.children[0]!)))).toBe('admitted');
    expect(winner.childAdmission.stats.admitted + winner.childAdmission.stats.refusedAtLimit).toBe(before);
  });

  interopTest('two nodes answering IKE_AUTH with the last Child SA slot of a peer at the same time: exactly one creates it', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const a = await gateway(cluster, 'gw-a');
    const b = await gateway(cluster, 'gw-b');
    await firstSas([a, b]);
    await waitFor(() => a.accounting.childSasElsewhere(PEER) === 1 && b.accounting.childSasElsewhere(PEER) === 1, { timeoutMs: 5000, message: 'each node to count the peer\'s Child SA on the other' });
    // Each first IKE SA's Child SA was admitted in its IKE_AUTH, after its AUTH verified.
    for (const g of [a, b]) expect(g.childAdmission.stats).toMatchObject({ admitted: 1, refusedAtLimit: 0, contention: 0 });

    // A second IKE SA to each node at once, each IKE_AUTH with a Child SA: by the counts each node follows both fit
    // (1 here + 1 elsewhere < 3); the admissions let exactly one of them (RFC 7791 §8).
    const ups = [a, b].map((g) => g.client.initiate(g.client.policies[0]!.name));
    const ikes: IkeSa[] = [];
    const settled = Promise.all(ups).then((r) => ikes.push(...r));
    await pump([a.wire, b.wire], () => ikes.length === 2);
    await settled;
    // Both IKE SAs are up (a Child SA refused in IKE_AUTH does not fail its IKE SA, RFC 7296 §2.21.2); one has a Child SA.
    expect(ikes.map((s) => s.state)).toEqual(['established', 'established']);
    expect(ikes.map((s) => s.children.length).sort()).toEqual([0, 1]);
    const [winner, loser] = a.childAdmission.stats.admitted === 2 ? [a, b] : [b, a];
    expect(winner.childAdmission.stats).toMatchObject({ admitted: 2, refusedAtLimit: 0, contention: 0 });
    expect(loser.childAdmission.stats.admitted).toBe(1);
    expect(loser.childAdmission.stats.refusedAtLimit + loser.childAdmission.stats.contention).toBe(1);
    expect(loser.gw.ikeSas().map((s) => s.children.length).sort()).toEqual([0, 1]);
    // Refused in IKE_AUTH: logged and counted as a refused CREATE_CHILD_SA is (the cluster's no_additional_sas).
    expect(loser.gw.stats.refusals).toEqual({ NO_ADDITIONAL_SAS: 1 });
    expect(winner.gw.stats.refusals).toEqual({});

    await Promise.all([a.accounting.settled(), b.accounting.settled()]);
    expect(await etcdSum(a, cluster, 'child')).toBe(CHILD_LIMIT);
    expect(await etcdSum(a, cluster, 'ike')).toBe(4);
    expect(winner.accounting.peerCounts(PEER)[winner.name]).toEqual({ ike: 2, child: 2 });
    expect(loser.accounting.peerCounts(PEER)[loser.name]).toEqual({ ike: 2, child: 1 });
  });

  interopTest('an IKE_AUTH whose AUTH payload does not verify admits nothing and writes nothing to etcd', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    // The client claims the peer's identity with the wrong key.
    const a = await gateway(cluster, 'gw-a', { psk: 'not the pre-shared key of alice, but long enough' });
    expect(await pumped([a.wire], outcome(a.client.initiate(a.client.policies[0]!.name)))).toMatch(/AUTHENTICATION_FAILED/);
    expect(a.gw.ikeSas()).toHaveLength(0);
    expect(a.childAdmission.stats).toEqual({ admitted: 0, refusedAtLimit: 0, contention: 0, retries: 0, failed: 0, fromFollowed: 0 });
    await a.accounting.settled();
    expect(await a.m.client.getAll().prefix(`/ikeclone/v1/${cluster}/peers/`).keys()).toEqual([]);
  });

  interopTest('IKE_AUTH with a virtual IP claimed from etcd and its Child SA admitted: both hold for the one answer', ['etcd'], async () => {
    const cluster = `adm-${randomBytes(3).toString('hex')}`;
    const pool = '10.79.0.0/29';
    // No reserve: the address is claimed from etcd after the admission, and the admission's verdict waits for it.
    const a = await gateway(cluster, 'gw-a', { pools: [pool] });
    const sa = await pumped([a.wire], a.client.initiate(a.client.policies[0]!.name));
    expect(sa.state).toBe('established');
    expect(sa.virtualIps).toEqual(['10.79.0.1']);
    expect(sa.children).toHaveLength(1);
    expect(a.childAdmission.stats).toMatchObject({ admitted: 1, refusedAtLimit: 0 });
    expect(a.gw.stats.drops['answer-pending'] ?? 0).toBe(0);
    // The admitted slot is the Child SA's (counted once), and the address is the peer's in etcd.
    await new Promise((r) => setImmediate(r));
    await Promise.all([a.accounting.settled(), a.leases.settled()]);
    expect(a.accounting.ownCount(PEER)).toEqual({ ike: 1, child: 1 });
    expect(JSON.parse((await a.m.client.get(`/ikeclone/v1/${cluster}/peers/${encodeURIComponent(PEER)}/nodes/gw-a`).string())!)).toEqual({ ike: 1, child: 1 });
    expect(a.leases.stats).toMatchObject({ leased: 1, refused: 0 });
  });
});
