// A node that takes a clone over from a node that died during its arrival
// finds the client's next request message ID with probes
// (control/ike/request-resync.ts, architecture §8) instead of starting above
// every ID the dead node had fenced. Engines in memory (a client, nodes a, b
// and c), a real etcd (prerequisite 'etcd'): a hands its clone to b, b dies
// after the client processed none of its requests, only its path test, or
// its path test and its CREATE_CHILD_SA; c takes the clone over, and the
// client accepts c's requests in all three cases without its DPD firing.
// In the third, the client held a Child SA with b that no record named: c
// deletes it by the SPIs the handoff drew for b (control/ike/arrival-spi.ts)
// once its probes are answered, and the client's traffic for those selectors
// no longer goes to b. Before the probes, the first two cases lost the clone (c started above the
// ID the client expected and the client dropped its requests: shown below
// with the claim as it was made before). Also: a claimant that dies after its
// probes (the next one probes the range its transaction named), a clone sent
// back after a failed path test, a node restarted during its arrival, and
// the probes on their own between two engines (cached answers, bounds, no
// answer).
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ClusterKey } from '../control/cluster/seal.js';
import { cloneKeys, memberKey, reassignClone } from '../control/cluster/reassign.js';
import { amendTransferRecord, decodeTransferRecord, snapshotIkeSa } from '../control/ike/sa-transfer.js';
import { resyncMarks, resyncRequestIds, MAX_RESYNC_PROBES } from '../control/ike/request-resync.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { ExchangeType, HeaderFlag } from '../control/wire/constants.js';
import { decodeMessage } from '../control/wire/message.js';
import { espSpiNode } from '../io/spi-layout.js';
import type { Datagram } from '../control/ike/transport.js';
import { CLIENT, NODE_A, NODE_B, NODE_C, cluster, drive } from './support/cluster-peers.js';
import { engineHooks, killNode, newEtcdClient, readRecordState, startNode, useClusterEtcd, type NodeHooks } from './support/cluster-nodes.js';
import { sameSa } from './support/mobike-peers.js';
import { interopTest } from './support/prereq.js';
import { arrivalSpiCandidates, type ArrivalSpiDraw } from '../control/ike/arrival-spi.js';
import type { ChildSa } from '../control/ike/ike-sa.js';
import { Spd } from '../dataplane/spd.js';
import { familyKey, type SaRecord } from '../dataplane/sad.js';

const env = useClusterEtcd();

/** The exchange type and direction of an IKE datagram. */
function kind(d: Datagram): { exchange: number; response: boolean } | undefined {
  const m = decodeMessage(d.bytes);
  return m.ok ? { exchange: m.value.header.exchangeType, response: (m.value.header.flags & HeaderFlag.RESPONSE) !== 0 } : undefined;
}

/** The SPI draw in the clone's record as sealed for `owner` at `epoch` (the handoff's, or the owner's own write since). */
async function recordedDraw(s: { name: string; key: ClusterKey }, epoch: number, owner: string): Promise<ArrivalSpiDraw> {
  const state = await readRecordState(env, s.name, s.key, 'a.1', 1, epoch, owner);
  expect(state.arrivalSpis).toBeDefined();
  return state.arrivalSpis!;
}

/** An outbound SPD (dataplane/spd.ts) over the client's installed Child SAs, as its data plane would hold it. */
function clientSpd(children: ChildSa[]): Spd {
  const spd = new Spd();
  for (const ch of children.filter((c) => c.state === 'installed')) {
    spd.add({ id: ch.id, familyKey: familyKey(ch.localTs, ch.remoteTs), localTs: ch.localTs, remoteTs: ch.remoteTs, spiOut: ch.spiOut, outbound: true, perResource: false } as unknown as SaRecord);
  }
  return spd;
}

/** The SAs `spd` picks for 200 UDP flows within `child`'s selectors (ports varied: the flow hash spreads them). */
function flowsThrough(spd: Spd, child: ChildSa): SaRecord[] {
  const out: SaRecord[] = [];
  for (let flow = 0; flow < 200; flow++) {
    const p = new Uint8Array(28);
    p[0] = 0x45; p[3] = 28; p[8] = 64; p[9] = 17; p[25] = 8;
    p.set(child.localTs[0]!.startAddress, 12);
    p.set(child.remoteTs[0]!.startAddress, 16);
    p[20] = 0x27; p[21] = flow; p[23] = 53;
    const picked = spd.lookup(p);
    if (typeof picked === 'string') throw new Error(`no SA for flow ${flow}: ${picked}`);
    out.push(picked);
  }
  return out;
}

/**
 * Nodes a, b and c; the client's clone made on a is handed to b. Only c
 * claims dead nodes' clones (a's claims are off), so the node taking over is
 * never the one the client's path still ends at.
 */
async function handedToB(label: string, filter: (d: Datagram) => boolean, opts: { cClaims?: boolean } = {}) {
  const name = `${label}-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const holders: NodeHooks = new Map();
  const c = await cluster({ a: engineHooks(holders, 'a'), b: engineHooks(holders, 'b'), c: engineHooks(holders, 'c') });
  const a = await startNode(env, name, key, 'a', NODE_A, c.nodeA, holders, { claims: false, rebalances: false });
  const b = await startNode(env, name, key, 'b', NODE_B, c.nodeB, holders, { rebalances: false });
  const cc = await startNode(env, name, key, 'c', NODE_C, c.nodeC!, holders, { claims: opts.cClaims, rebalances: false });
  await a.handoff.adopt(c.clone, 'a.1', 1);
  const first = c.clone.nextRequestId;
  const peerDead: IkeSa[] = [];
  c.client.on('peer-dead', (sa) => peerDead.push(sa));
  c.wire.filter = (d) => (filter(d) ? 'drop' : 'pass');
  await a.handoff.handOff(c.clone, 'b');
  await drive(c.wire, () => c.nodeB.ikeSas().some((sa) => sa.familyIndex === 1), 'the import on b');
  const onB = c.nodeB.ikeSas().find((sa) => sa.familyIndex === 1)!;
  return { ...c, name, key, holders, a, b, c: cc, onB, first, peerDead };
}

/** After b's death: c took the clone over, the client moved it to c and holds c's Child SA. */
async function takenOverByC(s: Awaited<ReturnType<typeof handedToB>>) {
  await killNode(s.wire, s.b);
  await drive(
    s.wire,
    () => s.c.arrivals.some((x) => x.result.ok) && s.clientClone.remote.address === NODE_C,
    'the takeover by c',
    60_000,
  );
  expect(s.c.failover.stats.claimed).toBe(1);
  const fresh = s.clientClone.children.filter((ch) => ch.state === 'installed' && espSpiNode(ch.spiOut) === 3);
  expect(fresh).toHaveLength(1);
  // The client kept its clone throughout: no DPD gave up on it, its IKE SA is the same and established.
  expect(s.peerDead).toEqual([]);
  expect(s.clientClone.state).toBe('established');
  // c's requests continue right where the client expects them: none of them is dropped from here on.
  const onC = s.c.arrivals.find((x) => x.result.ok)!.sa;
  let alive: boolean | undefined;
  void s.nodeC!.checkLiveness(onC).then((v) => (alive = v));
  await drive(s.wire, () => alive !== undefined, 'a liveness check from c');
  expect(alive).toBe(true);
  expect(onC.nextRequestId).toBe(s.clientClone.peerRequestId);
  return onC;
}

describe('a takeover after the new node died during its arrival', () => {
  interopTest('the client processed none of the dead node\'s requests: the probes find the first one', ['etcd'], async () => {
    // b's requests never reach the client.
    const s = await handedToB('n', (d) => d.local.address === NODE_B && d.remote.address === CLIENT);
    const N = s.first;
    await drive(s.wire, () => s.onB.nextRequestId > N, 'b\'s path test (lost)');
    const idsBefore = s.clientClone.peerRequestId;
    expect(idsBefore).toBe(N);
    const onC = await takenOverByC(s);
    // The record named [N, N + 2] (the handoff fenced b's path test and its CREATE_CHILD_SA): three probes,
    // each processed in turn, then c's address list, the client's update and c's CREATE_CHILD_SA.
    expect(onC.nextRequestId).toBe(N + 3 + 2 + 1);
    const arrival = s.c.arrivals.find((x) => x.result.ok)!;
    expect(arrival.result.steps.resync).toBeDefined();
    // The client never processed b's CREATE_CHILD_SA: no Delete of the SPIs b's draw names.
    expect(arrival.result.ok && arrival.result.orphanSpisDeleted).toBeUndefined();
  }, 120_000);

  interopTest('the client processed the dead node\'s path test only: the probes find the ID after it', ['etcd'], async () => {
    // b's CREATE_CHILD_SA never reaches the client.
    const s = await handedToB('p', (d) => d.local.address === NODE_B && d.remote.address === CLIENT && kind(d)?.exchange === ExchangeType.CREATE_CHILD_SA && !kind(d)!.response);
    const N = s.first;
    await drive(
      s.wire,
      () => s.clientClone.remote.address === NODE_B && !s.clientClone.outstanding && s.onB.outstanding?.exchange.exchangeType === ExchangeType.CREATE_CHILD_SA,
      'b\'s CREATE_CHILD_SA sent (and lost)',
    );
    expect(s.clientClone.peerRequestId).toBe(N + 1);
    const onC = await takenOverByC(s);
    const arrival = s.c.arrivals.find((x) => x.result.ok)!.result;
    expect(arrival.steps.resync).toBeDefined();
    expect(onC.nextRequestId).toBeGreaterThan(N + 2);
    // The client's next ID was b's CREATE_CHILD_SA's: it never processed it, so nothing of b's draw is deleted.
    expect(arrival.ok && arrival.orphanSpisDeleted).toBeUndefined();
    expect(arrival.steps.staleDeleted).toBeUndefined();
  }, 120_000);

  interopTest('the client processed the dead node\'s path test and CREATE_CHILD_SA (its answer lost): the probes find the ID after both, and the new owner deletes that Child SA by the SPI the handoff drew', ['etcd'], async () => {
    // The client's answer to b's CREATE_CHILD_SA never reaches b: b dies before it writes that Child SA down.
    const s = await handedToB('c', (d) => d.local.address === CLIENT && d.remote.address === NODE_B && kind(d)?.exchange === ExchangeType.CREATE_CHILD_SA && kind(d)!.response);
    const N = s.first;
    await drive(
      s.wire,
      () => s.clientClone.remote.address === NODE_B && !s.clientClone.outstanding && s.clientClone.children.some((ch) => ch.state === 'installed'),
      'the client\'s Child SA with b',
    );
    expect(s.clientClone.peerRequestId).toBe(N + 2);
    const orphan = s.clientClone.children.find((ch) => ch.state === 'installed')!;
    expect(espSpiNode(orphan.spiOut)).toBe(2);
    // b's SPI is one the handoff's transaction drew for it (b's own writes since keep the draw).
    const draw = await recordedDraw(s, 1, 'b');
    expect(arrivalSpiCandidates(draw)).toContain(orphan.spiOut);
    expect(s.client.childrenBySpi.get(orphan.spiIn)).toBe(orphan);
    // Meanwhile some of the client's flows for those selectors go to b's Child SA (toward a dead node once b dies).
    expect(flowsThrough(clientSpd([...s.client.childrenBySpi.values()]), orphan).some((r) => r.spiOut === orphan.spiOut)).toBe(true);
    const onC = await takenOverByC(s);
    expect(onC.nextRequestId).toBeGreaterThan(N + 2);
    // The record never named b's Child SA (b died before its write), but it held the draw: c deleted every
    // SPI b may have given it, once its probes had made the message IDs line up (RFC 7296 §1.4.1, §3.11).
    const arrival = s.c.arrivals.find((x) => x.result.ok)!.result;
    expect(arrival.ok && arrival.orphanSpisDeleted).toBe(arrivalSpiCandidates(draw).length);
    expect(arrival.steps.staleDeleted).toBeGreaterThan(arrival.steps.resync!);
    expect(orphan.state).toBe('deleted');
    // The client's SAD holds no Child SA toward b: only c's carries the connection's traffic.
    const sad = [...s.client.childrenBySpi.values()].filter((ch) => ch.ike === s.clientClone);
    expect(sad.map((ch) => espSpiNode(ch.spiOut))).toEqual([3]);
    expect(sad.some((ch) => arrivalSpiCandidates(draw).includes(ch.spiOut))).toBe(false);
    // Its outbound SPD (dataplane/spd.ts) sends no flow of those selectors to b; c's Child SA takes its share
    // (the family's other members are the client's Child SAs with the live nodes, RFC 7791).
    const picked = new Set(flowsThrough(clientSpd([...s.client.childrenBySpi.values()]), orphan).map((r) => r.spiOut));
    expect(picked.has(sad[0]!.spiOut)).toBe(true);
    expect([...picked].filter((spi) => espSpiNode(spi) === 2)).toEqual([]);
  }, 120_000);
});

/**
 * The clone handed to b, whose requests never reached the client; b dead
 * (its member key gone). Nobody claims the clone on its own: c's claims are
 * off as well as a's.
 */
async function bDeadUnheard(label: string) {
  const s = await handedToB(label, (d) => d.local.address === NODE_B && d.remote.address === CLIENT, { cClaims: false });
  const N = s.first;
  await drive(s.wire, () => s.onB.nextRequestId > N, 'b\'s path test (lost)');
  await killNode(s.wire, s.b);
  const etcdOf = newEtcdClient(env);
  for (let i = 0; i < 100 && (await etcdOf.get(memberKey(s.name, 'b')).string()) !== null; i++) await new Promise((r) => setTimeout(r, 100));
  expect(await etcdOf.get(memberKey(s.name, 'b')).string()).toBeNull();
  return { s, N, etcdOf };
}

describe('without the probes', () => {
  interopTest('a claimant starting above every ID the dead node had fenced is ignored by the client (the loss the probes close)', ['etcd'], async () => {
    // As in the first case above: the client processed none of b's requests.
    const { s, N, etcdOf } = await bDeadUnheard('o');
    // The claim as it was made before: the record amended to start above the fenced IDs, no range to probe.
    const claimed = await reassignClone({ client: etcdOf, key: s.key, cluster: s.name }, 'a.1', 1, { node: 'b', epoch: 1 }, 'c', undefined, undefined, true);
    if (!claimed.ok) throw new Error(claimed.detail);
    const drops = s.client.stats.drops['message-id'] ?? 0;
    void s.c.handoff.arrive('a.1', 1, { node: 'c', epoch: claimed.epoch }, 'b', { record: claimed.record });
    await drive(s.wire, () => s.c.arrivals.length > 0, 'c\'s arrival', 60_000);
    expect(s.c.arrivals[0]!.result).toMatchObject({ ok: false, step: 'path-test' });
    // The client dropped c's address list (and its retransmissions): ID N + 2, while it expects N.
    expect((s.client.stats.drops['message-id'] ?? 0) - drops).toBeGreaterThan(0);
    expect(s.clientClone.peerRequestId).toBe(N);
  }, 120_000);
});

describe('a restart', () => {
  interopTest('a node restarted during its arrival probes the range its previous run had fenced, once a write of its own covers it', ['etcd'], async () => {
    // b's process dies; nobody claims its clone (claims off on a and c); it starts again as a new process.
    const { s } = await bDeadUnheard('r');
    for (const sa of s.nodeB.ikeSas()) s.nodeB.deleteIkeSa(sa, 'process restarted');
    s.wire.filter = () => 'pass';
    const b2 = await startNode(env, s.name, s.key, 'b', NODE_B, s.nodeB, s.holders, { rebalances: false });
    await drive(s.wire, () => b2.arrivals.some((x) => x.result.ok) && s.clientClone.remote.address === NODE_B, 'the clone imported again on b', 60_000);
    const back = b2.arrivals.find((x) => x.result.ok)!;
    expect(back.result.steps.resync).toBeDefined();
    expect(s.peerDead).toEqual([]);
    expect(s.clientClone.children.filter((ch) => ch.state === 'installed' && espSpiNode(ch.spiOut) === 2)).toHaveLength(1);
    expect(back.sa.nextRequestId).toBe(s.clientClone.peerRequestId);
  }, 120_000);
});

describe('a second takeover', () => {
  interopTest('the claimant dies after its probes: the next claimant probes the range the first one\'s transaction named, and the client accepts its requests', ['etcd'], async () => {
    let N = -1;
    const mid = (d: Datagram) => {
      const m = decodeMessage(d.bytes);
      return m.ok ? m.value.header.messageId : -1;
    };
    // b's CREATE_CHILD_SA never reaches the client (as in the second case above); c's requests after its probes
    // (from ID N + 3: its address list) never do either.
    const s = await handedToB('2', (d) =>
      (d.local.address === NODE_B && d.remote.address === CLIENT && kind(d)?.exchange === ExchangeType.CREATE_CHILD_SA && !kind(d)!.response) ||
      (N >= 0 && d.local.address === NODE_C && d.remote.address === CLIENT && !kind(d)?.response && mid(d) >= N + 3),
    );
    N = s.first;
    await drive(
      s.wire,
      () => s.clientClone.remote.address === NODE_B && !s.clientClone.outstanding && s.onB.outstanding?.exchange.exchangeType === ExchangeType.CREATE_CHILD_SA,
      'b\'s CREATE_CHILD_SA sent (and lost)',
    );
    await killNode(s.wire, s.b);
    await drive(s.wire, () => s.nodeC!.ikeSas().some((sa) => sa.familyIndex === 1 && sa.outstanding?.messageId === N + 3), 'c\'s probes answered and its address list sent (and lost)', 60_000);
    expect(s.clientClone.peerRequestId).toBe(N + 3);
    // Now a claims too (c is its only rival, and c dies).
    await killNode(s.wire, s.c);
    s.a.failover.start();
    await drive(s.wire, () => s.a.arrivals.some((x) => x.result.ok) && s.clientClone.remote.address === NODE_A, 'the takeover by a', 60_000);
    const onA = s.a.arrivals.find((x) => x.result.ok)!;
    expect(onA.result.steps.resync).toBeDefined();
    expect(s.peerDead).toEqual([]);
    expect(s.clientClone.children.filter((ch) => ch.state === 'installed' && espSpiNode(ch.spiOut) === 1)).toHaveLength(1);
    expect(onA.sa.nextRequestId).toBe(s.clientClone.peerRequestId);
  }, 180_000);
});

describe('a claimant that dies during its own arrival', () => {
  interopTest('the client processed the claimant\'s CREATE_CHILD_SA (its answer lost): the next claimant deletes that Child SA by the SPI the claim drew', ['etcd'], async () => {
    // b's requests never reach the client; the client's answer to c's CREATE_CHILD_SA never reaches c.
    const s = await handedToB('k', (d) =>
      (d.local.address === NODE_B && d.remote.address === CLIENT) ||
      (d.local.address === CLIENT && d.remote.address === NODE_C && kind(d)?.exchange === ExchangeType.CREATE_CHILD_SA && kind(d)!.response),
    );
    await drive(s.wire, () => s.onB.nextRequestId > s.first, 'b\'s path test (lost)');
    await killNode(s.wire, s.b);
    await drive(
      s.wire,
      () => s.clientClone.remote.address === NODE_C && !s.clientClone.outstanding && s.clientClone.children.some((ch) => ch.state === 'installed' && espSpiNode(ch.spiOut) === 3),
      'the client\'s Child SA with c',
      60_000,
    );
    const orphan = s.clientClone.children.find((ch) => ch.state === 'installed' && espSpiNode(ch.spiOut) === 3)!;
    // c's SPI is one its claim's transaction drew for it.
    const draw = await recordedDraw(s, 2, 'c');
    expect(draw.node).toBe(3);
    expect(arrivalSpiCandidates(draw)).toContain(orphan.spiOut);
    await killNode(s.wire, s.c);
    s.a.failover.start();
    await drive(s.wire, () => s.a.arrivals.some((x) => x.result.ok) && s.clientClone.remote.address === NODE_A, 'the takeover by a', 60_000);
    const arrival = s.a.arrivals.find((x) => x.result.ok)!;
    expect(arrival.result.ok && arrival.result.orphanSpisDeleted).toBeGreaterThanOrEqual(arrivalSpiCandidates(draw).length);
    expect(s.peerDead).toEqual([]);
    expect(orphan.state).toBe('deleted');
    // The client's SAD holds, for this IKE SA, a's Child SA only.
    const sad = [...s.client.childrenBySpi.values()].filter((ch) => ch.ike === s.clientClone);
    expect(sad.map((ch) => espSpiNode(ch.spiOut))).toEqual([1]);
    expect(arrival.sa.nextRequestId).toBe(s.clientClone.peerRequestId);
  }, 180_000);
});

describe('a clone sent back after a failed path test', () => {
  interopTest('the node it goes back to probes for the client\'s next ID before its own path test', ['etcd'], async () => {
    // b cannot reach the client: its path test fails and the clone goes back to a.
    const s = await handedToB('s', (d) => d.local.address === NODE_B && d.remote.address === CLIENT);
    const N = s.first;
    await drive(s.wire, () => s.b.failover.stats.returned === 1 && s.a.arrivals.some((x) => x.result.ok), 'the clone back on a', 60_000);
    const home = s.a.arrivals.find((x) => x.result.ok)!;
    expect(home.result.steps.resync).toBeDefined();
    expect(s.clientClone.remote.address).toBe(NODE_A);
    expect(s.peerDead).toEqual([]);
    // Probes N..N+2 (the handoff had fenced b's two requests), a's path test and its CREATE_CHILD_SA.
    expect(home.sa.nextRequestId).toBe(N + 3 + 2);
    expect(s.clientClone.peerRequestId).toBe(home.sa.nextRequestId);
  }, 120_000);
});

describe('the claim\'s transaction', () => {
  interopTest('names the probes and the arrival\'s requests taken, so a later claimant probes from the same low mark; unanswered probes fail the path test', ['etcd'], async () => {
    const s = await handedToB('t', (d) => d.local.address === NODE_B && d.remote.address === CLIENT);
    const N = s.first;
    await drive(s.wire, () => s.onB.nextRequestId > N, 'b\'s path test (lost)');
    // c must not run its arrival (its path to the client fails too): the record it claimed stays as written.
    const previous = s.wire.filter;
    s.wire.filter = (d, i) => (d.local.address === NODE_C ? 'drop' : previous(d, i));
    await killNode(s.wire, s.b);
    await drive(s.wire, () => s.c.failover.stats.claimed === 1, 'c\'s claim', 30_000);
    const etcdOf = newEtcdClient(env);
    const k = cloneKeys(s.name, 'a.1', 1);
    const sealed = await etcdOf.get(k.record).buffer();
    const opened = s.key.open({ keyPath: k.record, epoch: 2, owner: 'c' }, new Uint8Array(sealed!));
    if (!opened.ok) throw new Error(opened.error);
    const record = decodeTransferRecord(opened.value);
    if (!record.ok) throw new Error(record.error);
    // Probes N..N+2, then the address list, one Delete (no stale Child SA: b had none, but the record holds the
    // SPI draw of b's unfinished arrival, whose Child SA the client may hold) and one CREATE_CHILD_SA.
    expect(record.value.state).toMatchObject({ nextRequestId: N, resyncThrough: N + 2, fencedNextRequestId: N + 2 + 1 + 3 });
    // The claim drew c's own Child SA SPI, and keeps b's draw for deletion.
    expect(record.value.state.arrivalSpis?.node).toBe(3);
    expect(record.value.state.orphanSpis?.map((d) => d.node)).toEqual([2]);
    // No probe is answered (c cannot reach the client): a failed path test after a takeover, the clone's keys go.
    await drive(s.wire, () => s.c.arrivals.length > 0, 'c\'s arrival to fail', 60_000);
    expect(s.c.arrivals[0]!.result).toMatchObject({ ok: false, step: 'path-test' });
    for (let i = 0; i < 100 && (await etcdOf.get(k.owner).string()) !== null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await etcdOf.get(k.owner).string()).toBeNull();
  }, 120_000);
});

describe('resync marks and bounds', () => {
  test('the marks: probes between the low and the high ID, the following requests above them', () => {
    expect(resyncMarks(5, 7, 2)).toEqual({ nextRequestId: 5, resyncThrough: 7, fencedNextRequestId: 10 });
    // The peer's next ID is known: no probes, only the following requests fenced.
    expect(resyncMarks(5, 5, 2)).toEqual({ nextRequestId: 5, fencedNextRequestId: 7 });
  });

  test('a record naming a range to probe that no fencing mark covers, or a range wider than the bound, is refused', async () => {
    const c = await cluster();
    const next = c.clone.nextRequestId;
    const record = () => snapshotIkeSa(c.nodeA, c.clone, 'a.1');
    expect(amendTransferRecord(record(), { nextRequestId: next, resyncThrough: next + 2 })).toMatchObject({ ok: false });
    expect(amendTransferRecord(record(), { nextRequestId: next, resyncThrough: next + 2, fencedNextRequestId: next + 2 })).toMatchObject({ ok: false });
    expect(amendTransferRecord(record(), resyncMarks(next, next + MAX_RESYNC_PROBES, 2))).toMatchObject({ ok: false });
    const amended = amendTransferRecord(record(), (was) => resyncMarks(was.nextRequestId, was.nextRequestId + 2, 2));
    if (!amended.ok) throw new Error(amended.error);
    const decoded = decodeTransferRecord(amended.value);
    expect(decoded.ok && decoded.value.state).toMatchObject({ nextRequestId: next, resyncThrough: next + 2, fencedNextRequestId: next + 5 });
  });

  test('a range wider than the bound is refused without sending anything', async () => {
    const c = await cluster();
    const sent = c.wire.log.length;
    const r = await resyncRequestIds(c.nodeA, c.clone, c.clone.nextRequestId + MAX_RESYNC_PROBES);
    expect(r.ok).toBe(false);
    expect(c.wire.log.length).toBe(sent);
  });

  test('the client expects the lowest ID: it answers every probe in turn, and we continue above them', async () => {
    const c = await cluster();
    // As if a previous owner had fenced two more IDs that never reached the client.
    const next = c.clone.nextRequestId;
    const r = await new Promise<Awaited<ReturnType<typeof resyncRequestIds>>>((resolve) => {
      void resyncRequestIds(c.nodeA, c.clone, next + 2).then(resolve);
      c.wire.run(50);
    });
    expect(r).toMatchObject({ ok: true, next: next + 3, answered: 3, rounds: 1 });
    expect(c.clone.nextRequestId).toBe(next + 3);
    expect(c.clientClone.peerRequestId).toBe(next + 3);
    // Our next request is taken as new.
    let alive: boolean | undefined;
    void c.nodeA.checkLiveness(c.clone).then((v) => (alive = v));
    await c.wire.settle(50);
    expect(alive).toBe(true);
  });

  test('the client already processed some of the IDs: the lower probes are dropped, the rest answered', async () => {
    const c = await cluster();
    const start = c.clone.nextRequestId;
    // Two requests the client processes (liveness checks), then we "forget" them.
    for (let i = 0; i < 2; i++) {
      let alive: boolean | undefined;
      void c.nodeA.checkLiveness(c.clone).then((v) => (alive = v));
      await c.wire.settle(50);
      expect(alive).toBe(true);
    }
    expect(c.clientClone.peerRequestId).toBe(start + 2);
    c.clone.nextRequestId = start;
    const r = await new Promise<Awaited<ReturnType<typeof resyncRequestIds>>>((resolve) => {
      void resyncRequestIds(c.nodeA, c.clone, start + 3).then(resolve);
      c.wire.run(50);
    });
    // start and start+1: the client drops them (below its window, or not the byte-identical copy of its last
    // request, RFC 7296 §2.1); start+2 and start+3 are new to it.
    expect(r).toMatchObject({ ok: true, next: start + 4, answered: 2 });
    expect(c.clientClone.peerRequestId).toBe(start + 4);
  });

  test('a response the client sends from its cache (an implementation that goes by the message ID alone) proves its ID; a CREATE_CHILD_SA one names the orphaned Child SA', async () => {
    const c = await cluster();
    // a creates a Child SA on the clone: the client caches its CREATE_CHILD_SA response.
    const id = c.clone.nextRequestId;
    const creating = c.nodeA.createChildSa(c.clone, c.clone.policy.children[0]!.name);
    await c.wire.settle(100);
    await creating;
    const cached = c.clientClone.lastResponse!;
    expect(cached.messageId).toBe(id);
    const clientSpi = c.clientClone.children.at(-1)!.spiIn;
    // As if a's request had been the dead node's: the next owner probes id..id+1.
    c.clone.nextRequestId = id;
    let result: Awaited<ReturnType<typeof resyncRequestIds>> | undefined;
    void resyncRequestIds(c.nodeA, c.clone, id + 1).then((r) => (result = r));
    // Our client drops probe `id` (not a byte-identical copy of the request it answered, RFC 7296 §2.1);
    // one that goes by the message ID alone sends its cached response: delivered here as it would be.
    c.nodeA.receive({ bytes: cached.bytes, local: c.clone.local, remote: c.clone.remote });
    await c.wire.settle(50);
    expect(result).toMatchObject({ ok: true, next: id + 2, answered: 2, orphanChildSpis: [clientSpi] });
  });

  test('no answer at all: the resync fails after the retransmission budget, and the queue goes nowhere meanwhile', async () => {
    const c = await cluster();
    const next = c.clone.nextRequestId;
    c.wire.filter = (d) => (d.local.address === NODE_A && d.remote.address === CLIENT ? 'drop' : 'pass');
    let result: Awaited<ReturnType<typeof resyncRequestIds>> | undefined;
    void resyncRequestIds(c.nodeA, c.clone, next + 1).then((r) => (result = r));
    // A request queued meanwhile waits (the engine holds the queue while the probes run).
    let alive: boolean | undefined;
    void c.nodeA.checkLiveness(c.clone).then((v) => (alive = v));
    c.wire.run(50);
    expect(c.clone.outstanding).toBeUndefined();
    for (let i = 0; i < 200 && result === undefined; i++) await c.wire.settle(100);
    expect(result).toMatchObject({ ok: false });
    expect(c.clone.nextRequestId).toBe(next);
    expect(alive).toBeUndefined();
  });
});
