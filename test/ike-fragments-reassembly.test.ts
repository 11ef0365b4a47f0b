// The reassembler's rules with authenticated fragments (RFC 7383 §2.6, §5):
// a newer set of the same message (more fragments) starts reassembly over and
// an older one is dropped; past the bounds (octets per message, messages and
// octets in all) fragments are refused, counted, and what is held never
// exceeds them. Genuine fragments are sealed with the initiator's keys of an
// established in-memory IKE SA and delivered to the responder's engine.
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair } from './support/peers.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { ReassemblyLimits } from '../control/ike/defaults.js';
import { sealOutgoing } from '../control/ike/fragmentation.js';
import { ExchangeType, PayloadType } from '../control/wire/constants.js';

/** alice -> bob established (bob with `limits`), `sas` IKE SAs. */
async function established(limits: Partial<ReassemblyLimits>, sas = 1) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder], { reassembly: limits });
  const ups: Array<Promise<IkeSa>> = [];
  for (let i = 0; i < sas; i++) ups.push(alice.initiate(initiator.name));
  wire.run(200);
  return { wire, alice, bob, sas: await Promise.all(ups) };
}

/** A request of `octets` of Vendor ID content on alice's `sa`, cut for `size`-octet datagrams: its fragments. */
function fragmentsOf(sa: IkeSa, octets: number, size: number): Uint8Array[] {
  sa.fragmentSize = size;
  const data = Uint8Array.from({ length: octets }, (_, i) => i & 0xff);
  const sealed = sealOutgoing(sa, ExchangeType.INFORMATIONAL, sa.nextRequestId, false, [{ type: PayloadType.VENDOR_ID, data }]);
  if (!sealed.fragments) throw new Error('not fragmented');
  return sealed.fragments.datagrams;
}

function deliver(bob: IkeEngine, bytes: Uint8Array): void {
  bob.receive({ bytes, local: { address: '10.0.0.2', port: 4500 }, remote: { address: '10.0.0.1', port: 4500 } });
}

const peerSa = (bob: IkeEngine, sa: IkeSa) => bob.ikeSas().find((s) => Buffer.from(s.spiI).equals(Buffer.from(sa.spiI)))!;

describe('sets of one message (RFC 7383 §2.6)', () => {
  it('a newer set (more fragments) starts reassembly over; a fragment of the older set is then dropped as stale', async () => {
    const { alice, bob, sas } = await established({});
    const older = fragmentsOf(sas[0]!, 1200, 600);
    const newer = fragmentsOf(sas[0]!, 1200, 300);
    expect(newer.length).toBeGreaterThan(older.length);
    const responder = peerSa(bob, sas[0]!);
    const mid = responder.peerRequestId;
    deliver(bob, older[0]!);
    expect(bob.fragments.messages).toBe(1);
    for (const f of newer.slice(0, -1)) deliver(bob, f);
    // Only the newer set is held: the older one's octets are gone.
    expect(bob.stats.drops['fragment-stale'] ?? 0).toBe(0);
    deliver(bob, older[1]!);
    expect(bob.stats.drops['fragment-stale']).toBe(1);
    deliver(bob, newer.at(-1)!);
    expect(responder.peerRequestId).toBe(mid + 1);
    expect(bob.fragments.messages).toBe(0);
    expect(bob.fragments.octets).toBe(0);
    expect(bob.stats.fragments.reassembled).toBe(1);
    expect(alice.stats.fragments.reassembled).toBe(0);
  });
});

describe('bounds (RFC 7383 §5): refused, counted, never exceeded', () => {
  it('a message over maxMessageBytes is discarded as it grows; it is never processed and the octets held stay below the bound', async () => {
    const { bob, sas } = await established({ maxMessageBytes: 1000 });
    const responder = peerSa(bob, sas[0]!);
    const mid = responder.peerRequestId;
    let most = 0;
    for (const f of fragmentsOf(sas[0]!, 3000, 400)) {
      deliver(bob, f);
      most = Math.max(most, bob.fragments.octets);
    }
    expect(most).toBeLessThanOrEqual(1000);
    expect(bob.stats.drops['fragment-limit']).toBeGreaterThan(0);
    expect(responder.peerRequestId).toBe(mid);
    expect(bob.stats.fragments.reassembled).toBe(0);
  });

  it('maxMessages: a second message in reassembly (another IKE SA) is refused while the first is held', async () => {
    const { bob, sas } = await established({ maxMessages: 1 }, 2);
    const [a, b] = [fragmentsOf(sas[0]!, 1000, 300), fragmentsOf(sas[1]!, 1000, 300)];
    deliver(bob, a[0]!);
    const held = bob.fragments.octets;
    deliver(bob, b[0]!);
    expect(bob.stats.drops['fragment-limit']).toBe(1);
    expect([bob.fragments.messages, bob.fragments.octets]).toEqual([1, held]);
    // The first completes; then the other IKE SA's message has room.
    for (const f of a.slice(1)) deliver(bob, f);
    for (const f of b) deliver(bob, f);
    expect(bob.stats.fragments.reassembled).toBe(2);
  });

  it('maxTotalBytes: a fragment that would take the octets held past the bound is refused', async () => {
    const { bob, sas } = await established({ maxTotalBytes: 600 }, 2);
    const [a, b] = [fragmentsOf(sas[0]!, 1000, 300), fragmentsOf(sas[1]!, 1000, 300)];
    deliver(bob, a[0]!);
    deliver(bob, a[1]!);
    deliver(bob, b[0]!);
    deliver(bob, b[1]!);
    expect(bob.fragments.octets).toBeLessThanOrEqual(600);
    expect(bob.stats.drops['fragment-limit']).toBeGreaterThan(0);
  });

  it('when the IKE SA is deleted, its fragments in reassembly are forgotten at once', async () => {
    const { bob, sas } = await established({});
    deliver(bob, fragmentsOf(sas[0]!, 1000, 300)[0]!);
    expect(bob.fragments.messages).toBe(1);
    bob.deleteIkeSa(peerSa(bob, sas[0]!), 'test');
    expect([bob.fragments.messages, bob.fragments.octets]).toEqual([0, 0]);
  });
});

describe('per source and under pressure (RFC 7383 §5): one address cannot hold the reassembly table', () => {
  /** bob with `limits`, `fromA` IKE SAs from 10.0.0.1 and one from 10.0.0.3. */
  async function twoSources(limits: Partial<ReassemblyLimits>, fromA: number) {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const carol = wire.engine('10.0.0.3', [{ ...initiator, localAddrs: ['10.0.0.3'] }]);
    const bob = wire.engine('10.0.0.2', [responder], { reassembly: limits });
    const ups: Array<Promise<IkeSa>> = [];
    for (let i = 0; i < fromA; i++) ups.push(alice.initiate(initiator.name));
    const other = carol.initiate(initiator.name);
    wire.run(200);
    return { wire, bob, fromA: await Promise.all(ups), fromC: await other };
  }
  const deliverFrom = (bob: IkeEngine, address: string, bytes: Uint8Array) =>
    bob.receive({ bytes, local: { address: '10.0.0.2', port: 4500 }, remote: { address, port: 4500 } });

  it('a source holding maxMessagesPerSource gets no further message in reassembly (counted); another source still does, and a finished one frees its slot', async () => {
    const { bob, fromA, fromC } = await twoSources({ maxMessagesPerSource: 2 }, 3);
    const sets = fromA.map((sa) => fragmentsOf(sa, 1000, 300));
    deliverFrom(bob, '10.0.0.1', sets[0]![0]!);
    deliverFrom(bob, '10.0.0.1', sets[1]![0]!);
    deliverFrom(bob, '10.0.0.1', sets[2]![0]!);
    expect(bob.stats.drops['fragment-source-limit']).toBe(1);
    expect(bob.fragments.messagesFrom('10.0.0.1')).toBe(2);
    // Another address is not kept out by the first one's slots.
    deliverFrom(bob, '10.0.0.3', fragmentsOf(fromC, 1000, 300)[0]!);
    expect(bob.fragments.messagesFrom('10.0.0.3')).toBe(1);
    expect(bob.fragments.messages).toBe(3);
    // A further fragment of a message already held is not a new slot.
    deliverFrom(bob, '10.0.0.1', sets[0]![1]!);
    expect(bob.stats.drops['fragment-source-limit']).toBe(1);
    // The first completes: its slot is free, and the third set now has room.
    for (const f of sets[0]!.slice(2)) deliverFrom(bob, '10.0.0.1', f);
    expect(bob.stats.fragments.reassembled).toBe(1);
    for (const f of sets[2]!) deliverFrom(bob, '10.0.0.1', f);
    expect(bob.stats.fragments.reassembled).toBe(2);
    expect(bob.fragments.messagesFrom('10.0.0.1')).toBe(1);
    expect(bob.stats.drops['fragment-source-limit']).toBe(1);
  });

  it('under pressure, sets older than pressureTimeout give way to a new one, and a set started under pressure lives only pressureTimeout (counted)', async () => {
    const { wire, bob, fromA, fromC } = await twoSources({ pressureThreshold: 2, pressureTimeout: 1000, timeout: 30_000 }, 3);
    const [a, b, c] = fromA.map((sa) => fragmentsOf(sa, 1000, 300));
    deliverFrom(bob, '10.0.0.1', a![0]!);
    deliverFrom(bob, '10.0.0.1', b![0]!); // one held, below the threshold: b gets the full lifetime
    wire.clock.advance(500);
    // Two held: pressure, but neither is older than pressureTimeout; carol's set gets the shorter lifetime.
    deliverFrom(bob, '10.0.0.3', fragmentsOf(fromC, 1000, 300)[0]!);
    expect(bob.fragments.messages).toBe(3);
    expect(bob.stats.drops['fragment-pressure-timeout'] ?? 0).toBe(0);
    wire.clock.advance(600);
    // A forged fragment (its ICV broken) changes nothing: a and b stay.
    const forged = c![0]!.slice();
    forged[forged.length - 1] ^= 0xff;
    deliverFrom(bob, '10.0.0.1', forged);
    expect(bob.stats.drops['fragment-auth']).toBe(1);
    expect(bob.fragments.messages).toBe(3);
    expect(bob.stats.drops['fragment-pressure-timeout'] ?? 0).toBe(0);
    // a and b, held 1.1 s under pressure, are forgotten to admit c; carol's (0.6 s) stays.
    deliverFrom(bob, '10.0.0.1', c![0]!);
    expect(bob.stats.drops['fragment-pressure-timeout']).toBe(2);
    expect(bob.fragments.messagesFrom('10.0.0.1')).toBe(1);
    expect(bob.fragments.messagesFrom('10.0.0.3')).toBe(1);
    // carol's set, started under pressure, is gone 1 s after it started; c, started below the threshold, outlives it.
    wire.clock.advance(500);
    expect(bob.stats.drops['fragment-pressure-timeout']).toBe(3);
    expect(bob.fragments.messagesFrom('10.0.0.3')).toBe(0);
    expect(bob.fragments.messagesFrom('10.0.0.1')).toBe(1);
    expect(bob.stats.drops['fragment-timeout'] ?? 0).toBe(0);
    wire.clock.advance(30_000);
    expect(bob.stats.drops['fragment-timeout']).toBe(1);
    expect([bob.fragments.messages, bob.fragments.octets]).toEqual([0, 0]);
  });
});
