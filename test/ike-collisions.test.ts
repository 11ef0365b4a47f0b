// Simultaneous rekeying (RFC 7296 §2.8.1, §2.8.2) and exchange collisions
// (§2.25) between two engines in memory. The wire's queue is in the test's
// hands: "both requests before either response" means both rekeys are queued
// before anything is delivered; other orders are built by moving datagrams.
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair, seededRandom } from './support/peers.js';
import type { IkeEngine, IkeEngineOptions } from '../control/ike/engine.js';
import type { ChildSa } from '../control/ike/ike-sa.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import type { Datagram } from '../control/ike/transport.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import { compareNonces, losesNonceRule } from '../control/ike/collisions.js';
import { ExchangeType, HeaderFlag, NotifyType, PayloadType } from '../control/wire/constants.js';
import type { NoncePayload, NotifyPayload, Payload, SaPayload } from '../control/wire/payloads.js';
import { spiNumber } from '../control/ike/payload-builders.js';

const isResponse = (d: Datagram) => (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0;
const exchangeOf = (d: Datagram) => d.bytes[18]!;

interface Traced {
  engine: 'alice' | 'bob';
  direction: 'in' | 'out';
  response: boolean;
  exchangeType: number;
  payloads: readonly Payload[];
}

async function pair(seed: string, over: { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> } = {}, opts: Partial<IkeEngineOptions> = {}) {
  const wire = new MemoryWire();
  const trace: Traced[] = [];
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine('10.0.0.1', [initiator], { random: seededRandom(`alice/${seed}`), trace: (e) => trace.push({ engine: 'alice', ...e }), ...opts });
  const bob = wire.engine('10.0.0.2', [responder], { random: seededRandom(`bob/${seed}`), trace: (e) => trace.push({ engine: 'bob', ...e }), ...opts });
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  const peerSa = bob.ikeSas()[0]!;
  trace.length = 0;
  return { wire, alice, bob, sa, peerSa, trace };
}

/** Child SA pairs that match across the two ends (alice's outbound is bob's inbound and back). */
function matchingPairs(alice: IkeEngine, bob: IkeEngine): Array<[ChildSa, ChildSa]> {
  const out: Array<[ChildSa, ChildSa]> = [];
  for (const a of alice.childrenBySpi.values()) {
    const b = bob.childrenBySpi.get(a.spiOut);
    if (b && b.spiOut === a.spiIn && a.state !== 'deleted' && b.state !== 'deleted') out.push([a, b]);
  }
  return out;
}

/** Deliver the first queued datagram only (what it triggers stays queued). */
function deliverOne(wire: MemoryWire): void {
  const d = wire.queue.shift()!;
  wire.engines.get(d.remote.address)?.receive({ bytes: d.bytes, local: d.remote, remote: d.local });
}

/** Deliver one datagram at a time; after each, `check` runs (no traffic gap, etc.). */
function flushChecked(wire: MemoryWire, check: () => void, maxSteps = 1000): void {
  let steps = 0;
  while (wire.queue.length > 0) {
    if (++steps > maxSteps) throw new Error('wire did not go quiet');
    const d = wire.queue.shift()!;
    wire.engines.get(d.remote.address)?.receive({ bytes: d.bytes, local: d.remote, remote: d.local });
    check();
  }
}

/** Error notifies in the CREATE_CHILD_SA responses `engine` sent. */
function errorNotifies(trace: Traced[], engine: 'alice' | 'bob'): number[] {
  return trace
    .filter((t) => t.engine === engine && t.direction === 'out' && t.response && t.exchangeType === ExchangeType.CREATE_CHILD_SA)
    .flatMap((t) => t.payloads.filter((p): p is NotifyPayload => p.type === PayloadType.NOTIFY && p.notifyType < 16384).map((p) => p.notifyType));
}

function nonceOf(payloads: readonly Payload[]): Uint8Array {
  return (payloads.find((p) => p.type === PayloadType.NONCE) as NoncePayload).data;
}

function saSpi(payloads: readonly Payload[]): Uint8Array {
  return (payloads.find((p) => p.type === PayloadType.SA) as SaPayload).proposals[0]!.spi;
}

/** Nonces of alice's and bob's own CREATE_CHILD_SA exchanges, from the trace. */
function exchangeNonces(trace: Traced[]) {
  const ccsa = trace.filter((t) => t.exchangeType === ExchangeType.CREATE_CHILD_SA && t.direction === 'out');
  const aliceReq = ccsa.find((t) => t.engine === 'alice' && !t.response)!;
  const bobReq = ccsa.find((t) => t.engine === 'bob' && !t.response)!;
  const bobResp = ccsa.find((t) => t.engine === 'bob' && t.response)!;
  const aliceResp = ccsa.find((t) => t.engine === 'alice' && t.response)!;
  return {
    alice: [nonceOf(aliceReq.payloads), nonceOf(bobResp.payloads)] as const,
    bob: [nonceOf(bobReq.payloads), nonceOf(aliceResp.payloads)] as const,
    aliceOffer: saSpi(aliceReq.payloads),
    bobOffer: saSpi(bobReq.payloads),
  };
}

describe('nonce comparison (RFC 7296 §2.8.1)', () => {
  it('is octet by octet, not numeric, and a prefix is lower', () => {
    expect(compareNonces(new Uint8Array([1, 255]), new Uint8Array([2, 0]))).toBeLessThan(0);
    expect(compareNonces(new Uint8Array([2]), new Uint8Array([1, 255, 255]))).toBeGreaterThan(0);
    expect(compareNonces(new Uint8Array([7, 7]), new Uint8Array([7, 7, 0]))).toBeLessThan(0);
    expect(compareNonces(new Uint8Array([7, 7]), new Uint8Array([7, 7]))).toBe(0);
  });

  it('the exchange holding the lowest of four nonces loses, and the two ends always disagree about whose that is', () => {
    const rnd = seededRandom('nonces');
    for (let i = 0; i < 200; i++) {
      const mine = [rnd(1 + (i % 5)), rnd(2)] as const;
      const theirs = [rnd(2), rnd(1 + (i % 3))] as const;
      const a = losesNonceRule(mine, theirs, true);
      const b = losesNonceRule(theirs, mine, false);
      expect(a).not.toBe(b);
      const all = [...mine, ...theirs].sort(compareNonces);
      if (compareNonces(all[0]!, all[1]!) !== 0) expect(a).toBe(mine.includes(all[0]!));
    }
    // Ties fall to the higher nonces, then to the original initiator's exchange.
    const same = [new Uint8Array([1]), new Uint8Array([9])] as const;
    expect(losesNonceRule(same, same, true)).toBe(true);
    expect(losesNonceRule(same, same, false)).toBe(false);
  });
});

describe('simultaneous Child SA rekey (RFC 7296 §2.8.1)', () => {
  for (const seed of ['a', 'b', 'c', 'd', 'e', 'f']) {
    it(`both requests before either response (seed ${seed}): one survivor chosen by the nonces, the same on both ends, no gap`, async () => {
      const { wire, alice, bob, sa, peerSa, trace } = await pair(seed);
      const oldA = sa.children[0]!;
      const oldB = peerSa.children[0]!;
      const collisions: string[] = [];
      alice.on('rekey-collision', (k) => collisions.push(`alice:${k}`));
      bob.on('rekey-collision', (k) => collisions.push(`bob:${k}`));
      const pa = alice.rekeyChildSa(oldA, { pfs: false });
      const pb = bob.rekeyChildSa(oldB, { pfs: false });
      // Both requests are on the wire before anything is delivered.
      expect(wire.queue.map((d) => [exchangeOf(d), isResponse(d)])).toEqual([
        [ExchangeType.CREATE_CHILD_SA, false],
        [ExchangeType.CREATE_CHILD_SA, false],
      ]);
      let minPairs = Infinity;
      flushChecked(wire, () => (minPairs = Math.min(minPairs, matchingPairs(alice, bob).length)));
      const [survA, survB] = await Promise.all([pa, pb]);
      // No gap: at every step at least one Child SA pair matched across the ends.
      expect(minPairs).toBeGreaterThanOrEqual(1);
      expect(collisions.sort()).toEqual(['alice:child', 'bob:child']);
      // Exactly one survivor, the same pair on both ends.
      expect(sa.children).toEqual([survA]);
      expect(peerSa.children).toEqual([survB]);
      expect(survA.spiOut).toBe(survB.spiIn);
      expect(survA.spiIn).toBe(survB.spiOut);
      expect([...alice.childrenBySpi.values()]).toEqual([survA]);
      expect([...bob.childrenBySpi.values()]).toEqual([survB]);
      expect(oldA.state).toBe('deleted');
      expect(oldB.state).toBe('deleted');
      // The survivor is the SA of the exchange without the lowest nonce.
      const n = exchangeNonces(trace);
      const aliceLoses = losesNonceRule(n.alice, n.bob, true);
      const aliceOwnSpi = spiNumber(n.aliceOffer)!;
      const bobOwnSpi = spiNumber(n.bobOffer)!;
      if (aliceLoses) {
        expect(survB.spiIn).toBe(bobOwnSpi);
        expect(alice.childrenBySpi.has(aliceOwnSpi)).toBe(false);
      } else {
        expect(survA.spiIn).toBe(aliceOwnSpi);
        expect(bob.childrenBySpi.has(bobOwnSpi)).toBe(false);
      }
      // Nothing left to clean up later, and the survivor works: it can be rekeyed again.
      wire.run(60_000, 1000);
      expect(sa.children).toEqual([survA]);
      expect(alice.lifetimes.trackedChildren).toBe(1);
      const again = alice.rekeyChildSa(survA, { pfs: false });
      wire.run(100);
      const next = await again;
      expect(peerSa.children.map((c) => c.spiOut)).toEqual([next.spiIn]);
      expect(wire.clock.pending()).toBe(0);
    });
  }

  it('both survivors are seen across seeds (the nonce rule is exercised both ways)', async () => {
    const winners = new Set<string>();
    for (const seed of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) {
      const { wire, alice, bob, sa, peerSa, trace } = await pair(seed);
      const pa = alice.rekeyChildSa(sa.children[0]!, { pfs: false });
      const pb = bob.rekeyChildSa(peerSa.children[0]!, { pfs: false });
      wire.run(100);
      await Promise.all([pa, pb]);
      const n = exchangeNonces(trace);
      winners.add(losesNonceRule(n.alice, n.bob, true) ? 'bob' : 'alice');
    }
    expect([...winners].sort()).toEqual(['alice', 'bob']);
  });

  it("one end does not notice (its request is lost once): the other's rekey wins, the late request gets CHILD_SA_NOT_FOUND and is ignored", async () => {
    const { wire, alice, bob, sa, peerSa, trace } = await pair('lost');
    const oldA = sa.children[0]!;
    let dropped = false;
    wire.filter = (d) => {
      if (!dropped && d.local.address === '10.0.0.1' && exchangeOf(d) === ExchangeType.CREATE_CHILD_SA && !isResponse(d)) {
        dropped = true;
        return 'drop';
      }
      return 'pass';
    };
    const pa = alice.rekeyChildSa(oldA, { pfs: false });
    const pb = bob.rekeyChildSa(peerSa.children[0]!, { pfs: false });
    wire.run(3000);
    const [survA, survB] = await Promise.all([pa, pb]);
    expect(dropped).toBe(true);
    expect(survA.spiOut).toBe(survB.spiIn);
    expect(survB.spiOut).toBe(survA.spiIn);
    expect(sa.children).toEqual([survA]);
    expect(peerSa.children).toEqual([survB]);
    expect(oldA.state).toBe('deleted');
    // Bob answered the late request with an error, which alice took as "the other rekey won".
    expect(errorNotifies(trace, 'bob')).toEqual([NotifyType.CHILD_SA_NOT_FOUND]);
    expect(alice.reservedSpis.size + bob.reservedSpis.size).toBe(0);
  });
});

describe('simultaneous IKE SA rekey (RFC 7296 §2.8.2)', () => {
  for (const seed of ['a', 'b', 'c', 'd', 'e', 'f']) {
    it(`both requests before either response (seed ${seed}): one new IKE SA on both ends inherits the Child SAs`, async () => {
      const { wire, alice, bob, sa, peerSa, trace } = await pair(seed);
      const childA = sa.children[0]!;
      const childB = peerSa.children[0]!;
      const pa = alice.rekeyIkeSa(sa);
      const pb = bob.rekeyIkeSa(peerSa);
      expect(wire.queue).toHaveLength(2);
      let gaps = 0;
      flushChecked(wire, () => {
        if (matchingPairs(alice, bob).length === 0) gaps++;
      });
      const [survA, survB] = await Promise.all([pa, pb]);
      expect(gaps).toBe(0);
      expect(alice.ikeSas()).toEqual([survA]);
      expect(bob.ikeSas()).toEqual([survB]);
      expect(spi64Hex(survA.spiI)).toBe(spi64Hex(survB.spiI));
      expect(spi64Hex(survA.spiR)).toBe(spi64Hex(survB.spiR));
      expect(Buffer.from(survA.keys!.skD).equals(Buffer.from(survB.keys!.skD))).toBe(true);
      // The Child SAs are the same ones, now under the survivor.
      expect(survA.children).toEqual([childA]);
      expect(survB.children).toEqual([childB]);
      expect(childA.ike).toBe(survA);
      expect(sa.state).toBe('dead');
      expect(peerSa.state).toBe('dead');
      // The survivor was created by the exchange without the lowest nonce.
      const n = exchangeNonces(trace);
      const aliceLoses = losesNonceRule(n.alice, n.bob, true);
      // The new IKE SA's initiator SPI is the one its exchange's initiator offered (§2.18).
      expect(spi64Hex(survA.spiI)).toBe(spi64Hex(aliceLoses ? n.bobOffer : n.aliceOffer));
      expect(survA.isInitiator).toBe(!aliceLoses);
      // It works: a Child SA rekey over it, and nothing is left armed after the grace period.
      const r = alice.rekeyChildSa(childA, { pfs: false });
      wire.run(100);
      const fresh = await r;
      expect(survB.children.map((c) => c.spiOut)).toEqual([fresh.spiIn]);
      wire.run(60_000, 1000);
      expect(alice.ikeSas()).toEqual([survA]);
      expect(bob.ikeSas()).toEqual([survB]);
      expect(wire.clock.pending()).toBe(0);
    });
  }

  it('only one end notices: it answered the other rekey, which completed first; TEMPORARY_FAILURE / Delete make it adopt that SA', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('one-sided');
    const childA = sa.children[0]!;
    const pa = alice.rekeyIkeSa(sa);
    const pb = bob.rekeyIkeSa(peerSa);
    const [reqA, reqB] = wire.queue.splice(0);
    // Bob gets alice's request first and answers; alice gets that answer before bob's request.
    wire.queue.push(reqA!);
    deliverOne(wire); // bob answers alice's request while his own is in flight
    expect(wire.queue).toHaveLength(1);
    deliverOne(wire); // alice completes her rekey and deletes the old SA (no collision seen)
    expect(wire.queue).toHaveLength(1);
    wire.queue.unshift(reqB!); // bob's request reaches alice only now: TEMPORARY_FAILURE
    wire.run(2000);
    const [survA, survB] = await Promise.all([pa, pb]);
    expect(survA.isInitiator).toBe(true);
    expect(alice.ikeSas()).toEqual([survA]);
    expect(bob.ikeSas()).toEqual([survB]);
    expect(spi64Hex(survB.spiI)).toBe(spi64Hex(survA.spiI));
    expect(spi64Hex(survB.spiR)).toBe(spi64Hex(survA.spiR));
    expect(survA.children).toEqual([childA]);
    expect(survB.children).toHaveLength(1);
    expect(survB.children[0]!.spiIn).toBe(childA.spiOut);
  });
});

describe('exchange collisions (RFC 7296 §2.25)', () => {
  it('§2.25.1: rekey of a Child SA the other end is deleting: TEMPORARY_FAILURE, the Child SA is gone on both ends', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('rekey-delete');
    const child = sa.children[0]!;
    const notifies: number[] = [];
    const pa = alice.rekeyChildSa(child, { pfs: false }).catch((e: Error & { notify?: number }) => {
      notifies.push(e.notify ?? -1);
      return undefined;
    });
    const pb = bob.closeChildSa(peerSa.children[0]!);
    wire.run(100);
    expect(await pa).toBeUndefined();
    await pb;
    expect(notifies).toEqual([NotifyType.TEMPORARY_FAILURE]);
    expect(sa.children).toEqual([]);
    expect(peerSa.children).toEqual([]);
    expect(alice.childrenBySpi.size + bob.childrenBySpi.size).toBe(0);
    expect(alice.reservedSpis.size + bob.reservedSpis.size).toBe(0);
  });

  it('§2.25.1: a rekey request for an unknown Child SA gets CHILD_SA_NOT_FOUND with its SPI; lifetimes then create a new one', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('not-found', { initiator: { children: [{ ...pskPair().initiator.children[0]!, rekeyTime: 1000, randTime: 0 }] } });
    const child = sa.children[0]!;
    bob.removeChild(peerSa.children[0]!, 'forgotten');
    const created: ChildSa[] = [];
    alice.on('child-up', (c) => created.push(c));
    await wire.settle(1500);
    expect(child.state).toBe('deleted');
    expect(created).toHaveLength(1);
    expect(sa.children).toEqual(created);
    expect(peerSa.children).toHaveLength(1);
    expect(peerSa.children[0]!.spiOut).toBe(created[0]!.spiIn);
  });

  it('§2.25.1: a Child SA rekey crossing an IKE SA rekey: both get TEMPORARY_FAILURE, both retry later, both ends agree', async () => {
    const base = pskPair();
    const { wire, alice, bob, sa, peerSa, trace } = await pair(
      'child-vs-ike',
      { initiator: { children: [{ ...base.initiator.children[0]!, rekeyTime: 5000, lifeTime: 20_000, randTime: 0 }] }, responder: { rekeyTime: 5000, overTime: 15_000, randTime: 0 } },
      { lifecycle: { rekeyRetryDelay: 1000 } },
    );
    const failures: string[] = [];
    alice.on('child-expired', (c, limit, cause) => failures.push(`alice child ${limit} ${cause} ${c.id} @${wire.clock.now()}`));
    bob.on('ike-expired', (s, limit) => failures.push(`bob ike ${limit} ${s.id} @${wire.clock.now()}`));
    const oldChild = sa.children[0]!;
    // Both soft limits fire at 5 s exactly: the two requests cross.
    wire.clock.advance(5000);
    expect(wire.queue.filter((d) => exchangeOf(d) === ExchangeType.CREATE_CHILD_SA && !isResponse(d))).toHaveLength(2);
    wire.flush();
    // Each refused the other (§2.25.1: IKE rekey during a Child SA task; §2.25.2: Child SA task during an IKE rekey).
    expect(errorNotifies(trace, 'alice')).toEqual([NotifyType.TEMPORARY_FAILURE]);
    expect(errorNotifies(trace, 'bob')).toEqual([NotifyType.TEMPORARY_FAILURE]);
    await wire.settle(3000);
    expect(failures.map((f) => f.replace(/ \d+ @.*/, ''))).toEqual(['bob ike rekey', 'alice child soft time']);
    // Afterwards the IKE SA is rekeyed and the Child SA too, the same on both ends.
    const [ikeA] = alice.ikeSas();
    const [ikeB] = bob.ikeSas();
    expect(alice.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()).toHaveLength(1);
    expect(ikeA).not.toBe(sa);
    expect(spi64Hex(ikeA!.spiI)).toBe(spi64Hex(ikeB!.spiI));
    expect(oldChild.state).toBe('deleted');
    expect(ikeA!.children).toHaveLength(1);
    expect(ikeB!.children).toHaveLength(1);
    expect(ikeA!.children[0]!.spiOut).toBe(ikeB!.children[0]!.spiIn);
    expect(ikeA!.children[0]!.spiIn).toBe(ikeB!.children[0]!.spiOut);
    expect(peerSa.state).toBe('dead');
  });

  it('§2.25.2: the peer closes the IKE SA we are rekeying: we answer, forget our rekey, everything is gone on both ends', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('ike-rekey-delete');
    const pa = alice.rekeyIkeSa(sa).then(
      () => 'resolved',
      () => 'rejected',
    );
    const pb = bob.closeIkeSa(peerSa);
    wire.run(100);
    expect(await pa).toBe('rejected');
    await pb;
    expect(alice.ikeSas()).toEqual([]);
    expect(bob.ikeSas()).toEqual([]);
    expect(alice.childrenBySpi.size + bob.childrenBySpi.size).toBe(0);
    wire.run(60_000, 1000);
    expect(alice.ikeSas()).toEqual([]);
    expect(wire.clock.pending()).toBe(0);
  });

  it('§2.25.1: crossing Delete requests for the same Child SA: both closed, no Delete payload in either response, no half-closed report', async () => {
    const { wire, alice, bob, sa, peerSa, trace } = await pair('delete-delete');
    const half: ChildSa[] = [];
    alice.on('child-half-closed', (c) => half.push(c));
    bob.on('child-half-closed', (c) => half.push(c));
    const pa = alice.closeChildSa(sa.children[0]!);
    const pb = bob.closeChildSa(peerSa.children[0]!);
    wire.run(100);
    await Promise.all([pa, pb]);
    const responses = trace.filter((t) => t.exchangeType === ExchangeType.INFORMATIONAL && t.response && t.direction === 'out');
    expect(responses).toHaveLength(2);
    for (const r of responses) expect(r.payloads.filter((p) => p.type === PayloadType.DELETE)).toEqual([]);
    expect(half).toEqual([]);
    expect(sa.children.length + peerSa.children.length).toBe(0);
  });

  it('Child SA create crossing an IKE SA rekey: each end refuses the other with TEMPORARY_FAILURE (§2.25.1, §2.25.2)', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('create-vs-ike');
    const pb = bob.rekeyIkeSa(peerSa).then(
      () => 'rekeyed',
      (e: Error & { notify?: number }) => e.notify,
    );
    const pa = alice.createChildSa(sa, 'net', { pfs: false }).then(
      () => 'created',
      (e: Error) => e.message,
    );
    wire.run(100);
    expect(await pa).toMatch(/TEMPORARY_FAILURE/);
    expect(await pb).toBe(NotifyType.TEMPORARY_FAILURE);
    // Nothing changed: the same IKE SA and Child SA on both ends, and both work.
    expect(alice.ikeSas()).toEqual([sa]);
    expect(bob.ikeSas()).toEqual([peerSa]);
    expect(sa.children).toHaveLength(1);
    expect(peerSa.children).toHaveLength(1);
    expect(alice.reservedSpis.size + bob.reservedSpis.size).toBe(0);
    const again = bob.rekeyIkeSa(peerSa);
    wire.run(100);
    expect((await again).children).toHaveLength(1);
  });

  it('a Delete of a Child SA while the other end rekeys the IKE SA is answered as usual; the IKE rekey is refused (§2.25.1, §2.25.2)', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('delete-vs-ike');
    const pb = bob.rekeyIkeSa(peerSa).then(
      () => 'rekeyed',
      (e: Error & { notify?: number }) => e.notify,
    );
    const del = alice.closeChildSa(sa.children[0]!);
    wire.run(100);
    await del;
    expect(await pb).toBe(NotifyType.TEMPORARY_FAILURE);
    expect(sa.children).toEqual([]);
    expect(peerSa.children).toEqual([]);
  });

  it('IKE SA objects from a collision are fully released: no SA table entries, reserved SPIs or keys remain', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('release');
    const pa = alice.rekeyIkeSa(sa);
    const pb = bob.rekeyIkeSa(peerSa);
    const seen = new Set<IkeSa>();
    for (const e of [alice, bob]) e.on('ike-down', (s) => seen.add(s));
    wire.run(100);
    await Promise.all([pa, pb]);
    wire.run(60_000, 1000);
    // The old SA on both ends and the redundant new SA on both ends went down.
    expect(seen.size).toBe(4);
    for (const s of seen) {
      expect(s.state).toBe('dead');
      expect(s.keys).toBeUndefined();
      expect(s.protectIn).toBeUndefined();
    }
    expect(alice.sas.size + bob.sas.size).toBe(2);
  });

  it('a queued rekey of a Child SA the peer rekeyed meanwhile fails to build without using up a message ID (RFC 7296 §2.2)', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('queued-rekey');
    const old = sa.children[0]!;
    const live = alice.checkLiveness(sa);
    const mine = alice.rekeyChildSa(old, { pfs: false }).then(
      () => 'rekeyed',
      (e: Error) => e.message,
    );
    const theirs = bob.rekeyChildSa(peerSa.children[0]!, { pfs: false });
    const nextId = sa.nextRequestId;
    wire.run(100);
    expect(await live).toBe(true);
    expect(await mine).toMatch(/is (rekeyed|deleted)/);
    const fresh = await theirs;
    expect(sa.nextRequestId).toBe(nextId);
    // The next request goes out with the ID the peer expects, and is answered.
    const again = alice.checkLiveness(sa);
    wire.run(100);
    expect(await again).toBe(true);
    expect(alice.ikeSas()).toEqual([sa]);
    expect(sa.children.map((c) => c.spiOut)).toEqual([fresh.spiIn]);
  });
});
