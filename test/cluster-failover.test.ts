// Failure handling of a cluster on a real etcd (TLS) with in-memory engines
// (architecture §8): a node dies (its etcd client stops, its lease lapses, its
// datagrams go nowhere) and a survivor takes its clone over, deleting its
// Child SAs at the client by their recorded SPIs; the node comes back and
// gets a clone again (rebalancing); a clone whose path test fails on its new
// node goes back to the node it came from. Needs the Debian etcd
// (prerequisite 'etcd').
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ownerValue } from '../control/cluster/handoff.js';
import { DEFAULT_CLAIM_STAGGER_MS, claimOrder } from '../control/cluster/failover.js';
import { moveClone, planMoves } from '../control/cluster/rebalance.js';
import type { CloneHandoff } from '../control/cluster/handoff.js';
import type { IkeContext } from '../control/ike/context.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { cloneKeys, memberKey, reassignClone } from '../control/cluster/reassign.js';
import { readClusterState } from '../control/cluster/status.js';
import { ClusterKey } from '../control/cluster/seal.js';
import { decodeTransferRecord } from '../control/ike/sa-transfer.js';
import type { IkeEngine } from '../control/ike/engine.js';
import { espSpiNode } from '../io/spi-layout.js';
import { CLIENT, NODE_A, NODE_B, NODE_C, cluster, drive, ikeMessages } from './support/cluster-peers.js';
import { engineHooks, killNode, newEtcdClient, startNode as startClusterNode, useClusterEtcd, type NodeHooks, type NodeOptions } from './support/cluster-nodes.js';
import { sameSa } from './support/mobike-peers.js';
import { interopTest } from './support/prereq.js';

const env = useClusterEtcd();

const newClient = () => newEtcdClient(env);
/** One cluster node over `engine` (test/support/cluster-nodes.ts: wired as control/cluster/node.ts wires it). */
const startNode = (clusterName: string, key: ClusterKey, name: string, address: string, engine: IkeEngine, hooks: NodeHooks, opts: NodeOptions = {}) =>
  startClusterNode(env, clusterName, key, name, address, engine, hooks, opts);

/** The path-test cases' nodes: no node dies there (a 3 s lease outlasts a loaded machine's late keep-alive). */
const PATH_TEST_NODES: NodeOptions = { leaseTtlMs: 3000 };

/**
 * Nodes a and b with the client's clone made on a and adopted there as clone 1 of family a.1.
 * `both`: options of both nodes (a's own on top).
 */
async function twoNodes(label: string, aOpts: NodeOptions = {}, both: NodeOptions = {}) {
  const name = `${label}-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const holders: NodeHooks = new Map();
  const c = await cluster({ a: engineHooks(holders, 'a'), b: engineHooks(holders, 'b') });
  const a = await startNode(name, key, 'a', NODE_A, c.nodeA, holders, { ...both, ...aOpts });
  const b = await startNode(name, key, 'b', NODE_B, c.nodeB, holders, both);
  await a.handoff.adopt(c.clone, 'a.1', 1);
  return { name, key, c, a, b };
}

/**
 * Three gateway nodes a, b, c and a client; a authenticated the client and
 * cloned its IKE SA twice: clone 1 went to b, clone 2 to c, each with its
 * Child SA there.
 */
async function threeNodes() {
  const name = `f-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const holders: NodeHooks = new Map();
  const c = await cluster({ a: engineHooks(holders, 'a'), b: engineHooks(holders, 'b'), c: engineHooks(holders, 'c') });
  const onA = sameSa(c.nodeA, c.original);
  const cloning = c.nodeA.cloneIkeSa(onA);
  await c.wire.settle(200);
  const clone2 = await cloning;
  // The gateway's own stagger between the survivors' claims: the first-ranked one's lead outlasts a scan
  // that a loaded machine delays (at 400 ms the second-ranked claimed first once in a full run).
  const stagger = { claimStaggerMs: DEFAULT_CLAIM_STAGGER_MS };
  const a = await startNode(name, key, 'a', NODE_A, c.nodeA, holders, stagger);
  const b = await startNode(name, key, 'b', NODE_B, c.nodeB, holders, stagger);
  const cc = await startNode(name, key, 'c', NODE_C, c.nodeC!, holders, stagger);
  const family = 'a.1';
  await a.handoff.adopt(c.clone, family, 1);
  await a.handoff.adopt(clone2, family, 2);
  await a.handoff.handOff(c.clone, 'b');
  await drive(c.wire, () => b.arrivals.length > 0, 'clone 1 on b');
  await a.handoff.handOff(clone2, 'c');
  await drive(c.wire, () => cc.arrivals.length > 0, 'clone 2 on c');
  expect(b.arrivals[0]!.result).toMatchObject({ ok: true });
  expect(cc.arrivals[0]!.result).toMatchObject({ ok: true });
  const etcdOf = newClient();
  // b's record names its Child SA's SPIs once the Child SA is up (a rewrite under owner == b).
  const recordChildren = async (index: number, owner: string, epoch: number) => {
    const k = cloneKeys(name, family, index);
    const sealed = await etcdOf.get(k.record).buffer();
    if (!sealed) return [];
    const opened = key.open({ keyPath: k.record, epoch, owner }, new Uint8Array(sealed));
    if (!opened.ok) return [];
    const decoded = decodeTransferRecord(opened.value);
    return decoded.ok ? decoded.value.state.children : [];
  };
  let recorded: Array<{ name: string; spiIn: number; spiOut: number }> = [];
  for (let i = 0; i < 100 && recorded.length !== 1; i++) {
    recorded = await recordChildren(1, 'b', 1);
    c.wire.flush();
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ...c, name, key, family, holders, a, b, c: cc, clone2, clientClone2: sameSa(c.client, clone2), etcdOf, recorded };
}

describe('cluster failover', () => {
  interopTest('a dead node\'s clone is taken over by one survivor, which deletes its Child SAs at the client and creates a new one', ['etcd'], async () => {
    const s = await threeNodes();
    const onB = s.b.arrivals[0]!.sa;
    expect(onB.children).toHaveLength(1);
    const deadChild = onB.children[0]!;
    expect(s.recorded).toEqual([{ name: deadChild.name, spiIn: deadChild.spiIn, spiOut: deadChild.spiOut }]);
    const clientOld = s.clientClone.children.find((ch) => ch.spiOut === deadChild.spiIn)!;
    expect(clientOld).toBeDefined();

    await killNode(s.wire, s.b);
    // b's lease lapses (no keep-alive); one survivor claims clone 1, the client follows it there.
    await drive(s.wire, () => s.clientClone.remote.address !== NODE_B && s.clientClone.children.some((ch) => ch.state === 'installed' && ch.spiOut !== deadChild.spiIn), 'the takeover', 30_000);
    const [winner, loser] = s.a.failover.stats.claimed === 1 ? [s.a, s.c] : [s.c, s.a];
    expect(winner.failover.stats.claimed).toBe(1);
    expect(loser.failover.stats.claimed).toBe(0);
    // The survivors agree on who goes first (rendezvous order over the live members).
    expect(claimOrder({ family: s.family, index: 1 }, await winner.membership.members())[0]).toBe(winner.name);
    expect(s.clientClone.remote.address).toBe(winner.address);
    expect(await s.etcdOf.get(cloneKeys(s.name, s.family, 1).owner).string()).toBe(ownerValue({ node: winner.name, epoch: 2 }));
    // The dead node's Child SA is gone at the client (deleted by SPI); the new one is the winner's (its SPI prefix).
    expect(clientOld.state).toBe('deleted');
    const fresh = s.clientClone.children.filter((ch) => ch.state === 'installed');
    expect(fresh).toHaveLength(1);
    expect(espSpiNode(fresh[0]!.spiOut)).toBe(winner === s.a ? 1 : 3);
    const arrival = winner.arrivals.find((x) => x.result.ok && x.sa.familyIndex === 1);
    expect(arrival).toBeDefined();
    // The later-ranked survivor's claim, tried after its stagger, lost the transaction: never two owners.
    await new Promise((r) => setTimeout(r, DEFAULT_CLAIM_STAGGER_MS + 200));
    expect(loser.handoff.ownedClones().filter((o) => o.index === 1)).toEqual([]);
    expect(loser.failover.stats.failed).toBe(0);
    // Clone 2 on c (or a) was never touched; the family's three IKE SAs reach live nodes only.
    expect(s.clientClone2.remote.address).toBe(NODE_C);
    // No (IKE SPI, message ID) pair from two addresses, across the death and the takeover.
    const sources = new Map<string, Set<string>>();
    for (const m of ikeMessages(s.wire).filter((x) => x.from !== CLIENT)) {
      const k = `${m.spis}/${m.mid}/${m.response}/${m.byOriginalInitiator}`;
      sources.set(k, (sources.get(k) ?? new Set()).add(m.from));
    }
    expect([...sources.entries()].filter(([, v]) => v.size > 1)).toEqual([]);
  }, 90_000);

  interopTest('a node that comes back gets a clone again (rebalancing), with its Child SA there', ['etcd'], async () => {
    const s = await threeNodes();
    await killNode(s.wire, s.b);
    await drive(s.wire, () => s.a.failover.stats.claimed + s.c.failover.stats.claimed === 1 && s.clientClone.remote.address !== NODE_B && s.clientClone.children.some((ch) => ch.state === 'installed'), 'the takeover', 30_000);
    const winner = s.a.failover.stats.claimed === 1 ? s.a : s.c;
    // b comes back as a new process: it holds nothing of before, and the wire reaches it again.
    for (const sa of s.nodeB.ikeSas()) s.nodeB.deleteIkeSa(sa, 'process restarted');
    s.wire.filter = () => 'pass';
    // (b's engine asks the new handoff for its fencing from now on.)
    const b2 = await startNode(s.name, s.key, 'b', NODE_B, s.nodeB, s.holders);
    await drive(s.wire, () => b2.arrivals.some((x) => x.result.ok), 'a clone to come back to b', 30_000);
    expect(winner.rebalance.stats.moved).toBe(1);
    const back = b2.arrivals.find((x) => x.result.ok)!;
    expect(b2.handoff.ownedClones().map((o) => o.sa)).toEqual([back.sa]);
    // Each node holds one member of the family again: the original on a, one clone on each of b and c.
    const family = [sameSa(s.client, s.original), s.clientClone, s.clientClone2];
    expect(new Set(family.map((sa) => sa.remote.address))).toEqual(new Set([NODE_A, NODE_B, NODE_C]));
    for (const sa of family) expect(sa.children.filter((ch) => ch.state === 'installed')).toHaveLength(1);
  }, 120_000);

  interopTest('a clone whose path test fails on its new node goes back to the node it came from and works there', ['etcd'], async () => {
    // b must find a alive to send the clone back (else it retires it): PATH_TEST_NODES.
    const { name, c, a, b } = await twoNodes('p', {}, PATH_TEST_NODES);
    // b cannot reach the client.
    c.wire.filter = (d) => (d.local.address === NODE_B && d.remote.address === CLIENT ? 'drop' : 'pass');
    // A scan of etcd's owners right after the failed arrival (b is still named owner until the clone is
    // sent back) must not import the clone on b again.
    b.handoff.on('arrived', (_sa, result) => void (result.ok || b.failover.scan(true)));
    await a.handoff.handOff(c.clone, 'b');
    // The path test times out on the driven clock (its retransmissions), which a loaded machine advances slowly
    // (7 s here alone; over 30 s once in a full run): a generous bound.
    await drive(c.wire, () => b.failover.stats.returned === 1 && a.arrivals.some((x) => x.result.ok), 'the clone to go back to a', 90_000);
    expect(b.arrivals[0]!.result).toMatchObject({ ok: false, step: 'path-test' });
    expect(b.arrivals).toHaveLength(1);
    expect(b.handoff.ownedClones()).toEqual([]);
    const home = a.arrivals.find((x) => x.result.ok)!;
    expect(home.sa.local.address).toBe(NODE_A);
    expect(a.handoff.ownedClones()).toEqual([{ sa: home.sa, family: 'a.1', index: 1, epoch: 2 }]);
    expect(c.clientClone.remote.address).toBe(NODE_A);
    expect(c.clientClone.children.filter((ch) => ch.state === 'installed')).toHaveLength(1);
    expect(await newClient().get(cloneKeys(name, 'a.1', 1).owner).string()).toBe(ownerValue({ node: 'a', epoch: 2 }));
    // a holds two members of the family and b none, but the clone's path from b failed: rebalancing rounds
    // (every second here) leave it on a instead of sending it back and forth.
    expect(a.handoff.pathFailedAt('a.1', 1)).toBe('b');
    const settle = Date.now() + 3_000;
    await drive(c.wire, () => Date.now() > settle, 'three rebalancing rounds', 10_000);
    expect(a.rebalance.stats).toEqual({ moved: 0, failed: 0 });
    expect(b.failover.stats.returned).toBe(1);
    expect(a.handoff.ownedClones().map((o) => o.sa)).toEqual([home.sa]);
    expect(c.clientClone.remote.address).toBe(NODE_A);
  }, 150_000);
});

describe('a path that fails on both nodes', () => {
  interopTest('a clone sent back whose path test fails there too is retired, not sent back again', ['etcd'], async () => {
    const { name, c, a, b } = await twoNodes('s', {}, PATH_TEST_NODES);
    c.wire.filter = (d) => (d.local.address === NODE_B && d.remote.address === CLIENT ? 'drop' : 'pass');
    await a.handoff.handOff(c.clone, 'b');
    // Now a cannot reach the client either.
    c.wire.filter = (d) => ((d.local.address === NODE_B || d.local.address === NODE_A) && d.remote.address === CLIENT ? 'drop' : 'pass');
    const keys = cloneKeys(name, 'a.1', 1);
    const etcdOf = newClient();
    // Two path tests time out one after the other (retransmissions on the driven clock, which a loaded
    // machine advances slowly): a generous bound.
    await drive(c.wire, () => b.failover.stats.returned === 1 && a.arrivals.some((x) => !x.result.ok), 'the clone back on a, failing there', 150_000);
    expect(a.arrivals.find((x) => !x.result.ok)!.result).toMatchObject({ ok: false, step: 'path-test' });
    for (let i = 0; i < 100 && (await etcdOf.get(keys.owner).string()) !== null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await etcdOf.get(keys.owner).string()).toBeNull();
    expect(a.failover.stats.returned).toBe(0);
    expect(b.arrivals).toHaveLength(1);
    expect([...a.handoff.ownedClones(), ...b.handoff.ownedClones()]).toEqual([]);
  }, 180_000);
});

describe('clone keys in etcd', () => {
  interopTest('a clone the client deletes takes its owner key and record with it (nobody takes it over later)', ['etcd'], async () => {
    const { name, c, a, b } = await twoNodes('r');
    await a.handoff.handOff(c.clone, 'b');
    await drive(c.wire, () => b.arrivals.some((x) => x.result.ok), 'the clone on b');
    const keys = cloneKeys(name, 'a.1', 1);
    const etcdOf = newClient();
    // A handoff keeps the keys (the owner changed, epoch 1).
    expect(await etcdOf.get(keys.owner).string()).toBe(ownerValue({ node: 'b', epoch: 1 }));
    let closed = false;
    void c.client.closeIkeSa(c.clientClone).then(() => (closed = true));
    await drive(c.wire, () => closed && b.handoff.ownedClones().length === 0, 'the delete');
    for (let i = 0; i < 100 && (await etcdOf.get(keys.owner).string()) !== null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await etcdOf.get(keys.owner).string()).toBeNull();
    expect(await etcdOf.get(keys.record).buffer()).toBeNull();
  }, 60_000);
});

describe('claims', () => {
  interopTest('a claim never puts back a record older than the one in etcd: it reads it again and starts above its message IDs', ['etcd'], async () => {
    const { name, key, c, a, b } = await twoNodes('q', { claims: false });
    await a.handoff.handOff(c.clone, 'b');
    await drive(c.wire, () => b.arrivals.some((x) => x.result.ok), 'the clone on b');
    const onB = b.arrivals.find((x) => x.result.ok)!.sa;
    const etcdOf = newClient();
    // The record as a scan reads it (failover.ts), then b's next request rewrites it (its fencing write).
    const keys = cloneKeys(name, 'a.1', 1);
    await drive(c.wire, () => !onB.outstanding, 'b idle');
    const scanned = (await readClusterState(etcdOf, name)).records.get(keys.owner)!;
    expect(scanned).toBeDefined();
    let alive: boolean | undefined;
    void c.nodeB.checkLiveness(onB).then((v) => (alive = v));
    await drive(c.wire, () => alive !== undefined, 'b\'s request');
    expect(alive).toBe(true);
    // Claimed with the record read before: the transaction compares its revision, so the newer one is read and used.
    const claimed = await reassignClone({ client: etcdOf, key, cluster: name }, 'a.1', 1, { node: 'b', epoch: 1 }, 'c', undefined, scanned);
    expect(claimed).toMatchObject({ ok: true, epoch: 2 });
    const opened = key.open({ keyPath: keys.record, epoch: 2, owner: 'c' }, new Uint8Array((await etcdOf.get(keys.record).buffer())!));
    if (!opened.ok) throw new Error(opened.error);
    const record = decodeTransferRecord(opened.value);
    expect(record.ok && record.value.state.nextRequestId).toBeGreaterThanOrEqual(onB.nextRequestId);
    // A claim with the record as it is now is one transaction (no read first): the owner moves on again.
    const now = (await readClusterState(etcdOf, name)).records.get(keys.owner)!;
    expect(await reassignClone({ client: etcdOf, key, cluster: name }, 'a.1', 1, { node: 'c', epoch: 2 }, 'a', undefined, now)).toMatchObject({ ok: true, epoch: 3 });
  }, 60_000);

  interopTest('a claim fails when the owner is a member again (it joined after the claimant read the members); once it is gone, the claim goes through', ['etcd'], async () => {
    const { name, key, c, a, b } = await twoNodes('m', { claims: false });
    await a.handoff.handOff(c.clone, 'b');
    await drive(c.wire, () => b.arrivals.some((x) => x.result.ok), 'the clone on b');
    const etcdOf = newClient();
    const keys = cloneKeys(name, 'a.1', 1);
    await drive(c.wire, () => !b.arrivals[0]!.sa.outstanding, 'b idle');
    // As a scan that read the members before b (re)joined: b's clone looks orphaned, but b is a member.
    const scanned = (await readClusterState(etcdOf, name)).records.get(keys.owner)!;
    const target = { client: etcdOf, key, cluster: name };
    const refused = await reassignClone(target, 'a.1', 1, { node: 'b', epoch: 1 }, 'a', undefined, scanned, true);
    expect(refused).toMatchObject({ ok: false, reason: 'owner-changed' });
    expect(refused.ok || refused.detail).toContain('b is a member again');
    expect(await etcdOf.get(keys.owner).string()).toBe(ownerValue({ node: 'b', epoch: 1 }));
    // b dies and its lease goes (its member key with it): now the same claim is taken.
    await killNode(c.wire, b);
    await etcdOf.leaseClient.leaseRevoke({ ID: b.membership.leaseId });
    expect(await etcdOf.get(memberKey(name, 'b')).string()).toBeNull();
    expect(await reassignClone(target, 'a.1', 1, { node: 'b', epoch: 1 }, 'a', undefined, scanned, true)).toMatchObject({ ok: true, epoch: 2 });
  }, 60_000);
});

describe('a lost lease', () => {
  interopTest('IKE on the clones stops while the lease is lost and goes on after the node joins again; a clone taken over meanwhile is dropped', ['etcd'], async () => {
    const { name, c, a, b } = await twoNodes('l', { claims: false });
    await a.handoff.handOff(c.clone, 'b');
    await drive(c.wire, () => b.arrivals.some((x) => x.result.ok), 'the clone on b');
    const onB = b.arrivals[0]!.sa;
    const events: string[] = [];
    b.membership.on('lease-lost', () => events.push('lost'));
    b.membership.on('rejoined', () => events.push('rejoined'));
    const etcdOf = newClient();
    const revoke = async () => {
      const before = events.length;
      await etcdOf.leaseClient.leaseRevoke({ ID: b.membership.leaseId });
      await drive(c.wire, () => events.length > before, 'the lease loss');
      expect(events.at(-1)).toBe('lost');
    };

    // 1. Lost: a request on the clone is held (nothing leaves b); joined again: it goes out and is answered.
    await revoke();
    const sent = c.wire.log.length;
    let alive: boolean | undefined;
    void c.nodeB.checkLiveness(onB).then((v) => (alive = v));
    c.wire.flush();
    expect(c.wire.log.slice(sent).filter((d) => d.local.address === NODE_B)).toEqual([]);
    await drive(c.wire, () => alive !== undefined, 'the held liveness check after the rejoin');
    expect(events).toEqual(['lost', 'rejoined']);
    expect(alive).toBe(true);
    expect((await b.membership.members()).map((m) => m.node)).toContain('b');
    expect(b.handoff.ownedClones().map((o) => o.sa)).toEqual([onB]);

    // 2. Lost, and another node takes the clone over meanwhile: after the rejoin b drops its copy.
    await revoke();
    await etcdOf.put(cloneKeys(name, 'a.1', 1).owner).value(ownerValue({ node: 'a', epoch: 9 }));
    const children = [...onB.children];
    await drive(c.wire, () => b.handoff.stats.fenced === 1, 'the drop after the rejoin');
    expect(events).toEqual(['lost', 'rejoined', 'lost', 'rejoined']);
    expect(onB.state).toBe('dead');
    expect(children.every((ch) => ch.state === 'deleted')).toBe(true);
    expect(b.handoff.ownedClones()).toEqual([]);
  }, 60_000);
});

describe('rebalancing plan', () => {
  const member = (node: string) => ({ node, address: node, load: 0, spiPrefix: 1 });
  const clone = (family: string, index: number, owner: string) => ({ family, index, owner, epoch: 1 });
  const status = (members: string[], clones: ReturnType<typeof clone>[]) => ({ cluster: 'x', members: members.map((m) => ({ ...member(m), clones: 0 })), clones, orphaned: 0 });

  test('a node holding two members of a family moves one to a live node that holds none; nobody else moves', () => {
    // a authenticated the client (holds the original) and took clone 1 over from b; b is back.
    const s = status(['a', 'b', 'c'], [clone('a.7', 1, 'a'), clone('a.7', 2, 'c')]);
    expect(planMoves(s, 'a')).toEqual([{ family: 'a.7', index: 1, to: 'b' }]);
    expect(planMoves(s, 'c')).toEqual([]);
    // c holds two clones: its highest-indexed one moves.
    const t = status(['a', 'b', 'c'], [clone('a.7', 1, 'c'), clone('a.7', 2, 'c')]);
    expect(planMoves(t, 'c')).toEqual([{ family: 'a.7', index: 2, to: 'b' }]);
    // No live node without a member of the family: nothing moves.
    expect(planMoves(status(['a', 'c'], [clone('a.7', 1, 'a'), clone('a.7', 2, 'c')]), 'a')).toEqual([]);
    // A family whose original's node is gone: the clones are all there is.
    expect(planMoves(status(['b', 'c'], [clone('a.7', 1, 'b'), clone('a.7', 2, 'b')]), 'b')).toEqual([{ family: 'a.7', index: 2, to: 'c' }]);
  });

  test('a clone does not go to a node its path test failed on recently; another node without a member still may', () => {
    const failedOnB = (family: string, index: number) => (family === 'a.7' && index === 1 ? 'b' : undefined);
    expect(planMoves(status(['a', 'b'], [clone('a.7', 1, 'a')]), 'a', failedOnB)).toEqual([]);
    expect(planMoves(status(['a', 'b', 'c'], [clone('a.7', 1, 'a')]), 'a', failedOnB)).toEqual([{ family: 'a.7', index: 1, to: 'c' }]);
    // Another clone of the family is not held back by clone 1's failure.
    expect(planMoves(status(['a', 'b'], [clone('a.7', 2, 'a')]), 'a', failedOnB)).toEqual([{ family: 'a.7', index: 2, to: 'b' }]);
  });
});

describe('moving a clone (rebalancing, ikeclone move --node)', () => {
  /** A clone with one Child SA, and an engine and a handoff that record what is asked of them. */
  function setup(over: Record<string, unknown>) {
    const queued: string[] = [];
    const deletes: Array<() => void> = [];
    const handedOff: string[] = [];
    const child = { state: 'installed', spiIn: 0x0101, setState: (s: string) => void (child.state = s) };
    const sa = { id: 7, state: 'established', keys: {}, suite: {}, outstanding: undefined, queue: [], peerMobike: true, children: [child], ...over };
    // The Delete's answer: the exchange's completion (DeleteChildInitiator's `done`), called by the test.
    const engine = { log: undefined, queueExchange: (_sa: unknown, ex: { name: string; done: () => void }) => (queued.push(ex.name), deletes.push(() => ex.done())) };
    const handoff = { isLanding: () => false, handOff: async (_sa: unknown, to: string) => (handedOff.push(to), 2) };
    const move = () => moveClone(engine as unknown as IkeContext, handoff as unknown as CloneHandoff, sa as unknown as IkeSa, 'b');
    return { child, queued, deletes, handedOff, move };
  }

  test.each([
    [{ peerMobike: false }, /MOBIKE was not negotiated/],
    [{ outstanding: {} }, /has an exchange outstanding/],
    [{ state: 'rekeying' }, /is rekeying/],
  ])('a clone that cannot move (%j) is refused before its Child SAs are deleted', async (over, reason) => {
    const { child, queued, handedOff, move } = setup(over);
    await expect(move()).rejects.toThrow(reason);
    expect(queued).toEqual([]);
    expect(child.state).toBe('installed');
    expect(handedOff).toEqual([]);
  });

  test('one that can has its Child SA deleted first (an INFORMATIONAL Delete), then is handed off', async () => {
    const { child, queued, deletes, handedOff, move } = setup({});
    const moving = move();
    await Promise.resolve();
    expect(queued).toEqual(['INFORMATIONAL (delete Child SA)']);
    expect(child.state).toBe('deleting');
    expect(handedOff).toEqual([]);
    deletes[0]!();
    expect(await moving).toBe(2);
    expect(handedOff).toEqual(['b']);
  });
});
