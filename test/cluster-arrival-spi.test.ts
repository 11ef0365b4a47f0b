// The SPI a handoff draws for the new node's Child SA (control/ike/arrival-spi.ts,
// control/cluster/arrival-draw.ts, architecture §8): the candidates a
// takeover names, the new node's use of the draw and its fixed alternatives
// when an SPI is taken, the count when all are, and records that carry a
// malformed draw (a claimant's draws are in cluster-arrival-resync.test.ts). Engines in memory (a client, nodes a and b); a real etcd
// for the handoffs (prerequisite 'etcd').
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ClusterKey } from '../control/cluster/seal.js';
import { ARRIVAL_SPI_ALTERNATES, arrivalSpiCandidates, arrivalSpiChoices, drawArrivalSpis, MAX_ARRIVAL_SPIS, MAX_ORPHAN_DRAWS } from '../control/ike/arrival-spi.js';
import { amendTransferRecord, snapshotIkeSa } from '../control/ike/sa-transfer.js';
import { composeEspSpi, espSpiNode, MAX_SPI_WORKERS, SPI_RANDOM_BITS } from '../io/spi-layout.js';
import { cluster, drive, NODE_A, NODE_B } from './support/cluster-peers.js';
import { engineHooks, readRecordState, startNode, useClusterEtcd, type NodeHooks } from './support/cluster-nodes.js';
import { interopTest } from './support/prereq.js';

const env = useClusterEtcd();

describe('the draw and its candidates', () => {
  test('a takeover names the draw\'s SPI on every worker index, with each alternative', () => {
    const draw = { node: 2, random: [0x2abcd, 7], firstRequestId: 4 };
    const candidates = arrivalSpiCandidates(draw);
    expect(candidates).toHaveLength(draw.random.length * MAX_SPI_WORKERS * ARRIVAL_SPI_ALTERNATES);
    expect(new Set(candidates).size).toBe(candidates.length);
    for (const r of draw.random) {
      for (let worker = 0; worker < MAX_SPI_WORKERS; worker++) {
        expect(arrivalSpiChoices({ node: 2, worker }, r)[0]).toBe(composeEspSpi({ node: 2, worker }, r));
        for (const spi of arrivalSpiChoices({ node: 2, worker }, r)) expect(candidates).toContain(spi);
      }
    }
    expect(candidates.every((spi) => espSpiNode(spi) === 2)).toBe(true);
    // Random parts fit the layout's random bits; one per Child SA, at most MAX_ARRIVAL_SPIS.
    const drawn = drawArrivalSpis((n) => new Uint8Array(randomBytes(n)), 5, MAX_ARRIVAL_SPIS + 3, 9);
    expect(drawn.random).toHaveLength(MAX_ARRIVAL_SPIS);
    expect(drawn.random.every((r) => r >= 0 && r < 2 ** SPI_RANDOM_BITS)).toBe(true);
    expect(drawn).toMatchObject({ node: 5, firstRequestId: 9 });
  });

  test('the new node composes the drawn SPI; taken, it uses the next alternative; all taken, a fresh SPI', async () => {
    const c = await cluster();
    const request = (spiRandom: number) => ({ sa: c.clone, localTs: [], remoteTs: [], spiRandom });
    const r = 0x1234;
    // Node b's engine (prefix 2) has no placement: worker 0.
    const choices = arrivalSpiChoices({ node: 2, worker: 0 }, r);
    expect(c.nodeB.newChildSpi(request(r))).toBe(choices[0]);
    c.nodeB.reservedSpis.add(choices[0]!);
    expect(c.nodeB.newChildSpi(request(r))).toBe(choices[1]);
    c.nodeB.reservedSpis.add(choices[1]!);
    const fresh = c.nodeB.newChildSpi(request(r));
    expect(choices).not.toContain(fresh);
    expect(espSpiNode(fresh)).toBe(2);
  });

  test('a record whose draw is malformed is refused', async () => {
    const c = await cluster();
    const record = () => snapshotIkeSa(c.nodeA, c.clone, 'a.1');
    const good = { node: 2, random: [1], firstRequestId: c.clone.nextRequestId + 1 };
    expect(amendTransferRecord(record(), { arrivalSpis: good })).toMatchObject({ ok: true });
    expect(amendTransferRecord(record(), { arrivalSpis: { ...good, node: 256 } })).toMatchObject({ ok: false });
    expect(amendTransferRecord(record(), { arrivalSpis: { ...good, random: [2 ** SPI_RANDOM_BITS] } })).toMatchObject({ ok: false });
    expect(amendTransferRecord(record(), { arrivalSpis: { ...good, random: Array.from({ length: MAX_ARRIVAL_SPIS + 1 }, () => 1) } })).toMatchObject({ ok: false });
    expect(amendTransferRecord(record(), { arrivalSpis: { ...good, firstRequestId: -1 } })).toMatchObject({ ok: false });
    // Previous owners' draws: each checked, and at most MAX_ORPHAN_DRAWS of them.
    expect(amendTransferRecord(record(), { orphanSpis: [good, { ...good, node: 3 }] })).toMatchObject({ ok: true });
    expect(amendTransferRecord(record(), { orphanSpis: [{ ...good, random: [-1] }] })).toMatchObject({ ok: false });
    expect(amendTransferRecord(record(), { orphanSpis: Array.from({ length: MAX_ORPHAN_DRAWS + 1 }, () => good) })).toMatchObject({ ok: false });
  });
});

/** Nodes a and b; the client's clone made on a, adopted, and handed to b (b's arrival not yet driven). */
async function handedToB(label: string) {
  const name = `${label}-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const holders: NodeHooks = new Map();
  const c = await cluster({ a: engineHooks(holders, 'a'), b: engineHooks(holders, 'b') });
  const a = await startNode(env, name, key, 'a', NODE_A, c.nodeA, holders, { claims: false, rebalances: false });
  const b = await startNode(env, name, key, 'b', NODE_B, c.nodeB, holders, { claims: false, rebalances: false });
  await a.handoff.adopt(c.clone, 'a.1', 1);
  const first = c.clone.nextRequestId;
  await a.handoff.handOff(c.clone, 'b');
  // The record of the handoff's transaction, sealed for b at epoch 1: it holds the draw for b.
  const handed = await readRecordState(env, name, key, 'a.1', 1, 1, 'b');
  return { ...c, name, key, a, b, first, handed };
}

describe('a handoff', () => {
  interopTest('draws b\'s Child SA SPI in its own transaction: b uses it, and b\'s record drops the draw once that Child SA is named', ['etcd'], async () => {
    const s = await handedToB('d');
    const draw = s.handed.arrivalSpis!;
    // b's prefix, one random part per Child SA, and b's first CREATE_CHILD_SA after its path test.
    expect(draw).toMatchObject({ node: 2, firstRequestId: s.first + 1 });
    expect(draw.random).toHaveLength(s.clone.policy.children.length);
    await drive(s.wire, () => s.b.arrivals.length > 0, 'b\'s arrival');
    const arrival = s.b.arrivals[0]!.result;
    if (!arrival.ok) throw new Error(arrival.reason);
    const child = arrival.children[0]!;
    expect(arrivalSpiChoices({ node: 2, worker: 0 }, draw.random[0]!)[0]).toBe(child.spiIn);
    expect(arrival.spiDrawMissed).toBeUndefined();
    expect(s.b.handoff.stats.arrivalSpiMisses).toBeUndefined();
    // The write at child-up names the Child SA and no longer the draw: a later takeover deletes it by its SPI.
    let state = await readRecordState(env, s.name, s.key, 'a.1', 1, 1, 'b');
    for (let i = 0; i < 100 && (state.arrivalSpis !== undefined || state.children.length === 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
      state = await readRecordState(env, s.name, s.key, 'a.1', 1, 1, 'b');
    }
    expect(state.arrivalSpis).toBeUndefined();
    expect(state.children.map((ch) => ch.spiIn)).toEqual([child.spiIn]);
  }, 60_000);

  interopTest('every choice of the draw taken on b: a fresh SPI, counted and reported', ['etcd'], async () => {
    const s = await handedToB('m');
    const draw = s.handed.arrivalSpis!;
    // As if b already used both choices on that worker (b's engine has no placement: worker 0).
    for (const spi of arrivalSpiChoices({ node: 2, worker: 0 }, draw.random[0]!)) s.nodeB.reservedSpis.add(spi);
    await drive(s.wire, () => s.b.arrivals.length > 0, 'b\'s arrival');
    const arrival = s.b.arrivals[0]!.result;
    if (!arrival.ok) throw new Error(arrival.reason);
    const child = arrival.children[0]!;
    expect(arrivalSpiCandidates(draw)).not.toContain(child.spiIn);
    expect(arrival.spiDrawMissed).toEqual([child.spiIn]);
    expect(s.b.handoff.stats.arrivalSpiMisses).toBe(1);
    // The client took the clone's Child SA all the same.
    expect(s.clientClone.children.some((ch) => ch.state === 'installed' && ch.spiOut === child.spiIn)).toBe(true);
  }, 60_000);
});
