// IKE fragmentation (RFC 7383) between two in-memory engines: the
// IKEV2_FRAGMENTATION_SUPPORTED negotiation in IKE_SA_INIT (§2.3) under
// swanctl's fragmentation = yes | accept | force | no, IKE_AUTH cut into
// Encrypted Fragment payloads (§2.5) and reassembled through loss,
// duplication, reordering and forged fragments (§2.6), the response cache
// answering a retransmitted first fragment with all the response's fragments
// (§2.6.1), and the fallback to a smaller fragment size when fragments go
// unanswered (§2.5.2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryWire, id, pskPair } from './support/peers.js';
import { CertPeers } from './support/cert-peers.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import type { Datagram } from '../control/ike/transport.js';
import type { IkeEngine } from '../control/ike/engine.js';
import { ExchangeType, HeaderFlag, NotifyType, PayloadType } from '../control/wire/constants.js';
import { decodeMessage } from '../control/wire/message.js';
import { GatewayMetrics } from '../control/api/metrics.js';
import { snapshot } from '../control/status.js';
import { formatStatus } from '../control/cli/format.js';
import { parsePrometheus, sampleValue } from './support/prometheus.js';

const SKF = PayloadType.SKF;
const isResponse = (d: Datagram) => (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0;
const exchangeOf = (d: Datagram) => d.bytes[18]!;
const isFragment = (d: Datagram) => d.bytes[16] === SKF;
const fragmentNumber = (d: Datagram) => (d.bytes[32]! << 8) | d.bytes[33]!;
const totalFragments = (d: Datagram) => (d.bytes[34]! << 8) | d.bytes[35]!;
const authRequestFragment = (d: Datagram) => exchangeOf(d) === ExchangeType.IKE_AUTH && !isResponse(d) && isFragment(d);
const authResponseFragment = (d: Datagram) => exchangeOf(d) === ExchangeType.IKE_AUTH && isResponse(d) && isFragment(d);

type Over = { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> };

/** alice and bob with `over`; `wire` prepared by the caller (filters), both engines returned before anything runs. */
function pair(over: Over, wire = new MemoryWire()) {
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  return { wire, alice, bob, initiator };
}

/** Initiate and run the wire for `ms`; the outcome, settled (never left pending). */
async function up(p: ReturnType<typeof pair>, ms = 200) {
  const done = p.alice.initiate(p.initiator.name);
  done.catch(() => {});
  p.wire.run(ms);
  return Promise.race([
    done.then((sa) => ({ ok: true as const, sa }), (err: Error) => ({ ok: false as const, reason: err.message })),
    new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet')))),
  ]);
}

/** IKE_AUTH on both ends went through: one established IKE SA each, with its Child SA, processed once. */
function bothEstablished(alice: IkeEngine, bob: IkeEngine): void {
  for (const e of [alice, bob]) {
    expect(e.ikeSas()).toHaveLength(1);
    expect(e.ikeSas()[0]!.state).toBe('established');
    expect(e.ikeSas()[0]!.children).toHaveLength(1);
  }
  expect(bob.stats.exchanges['IKE_AUTH.responder.ok']).toBe(1);
  expect(alice.stats.exchanges['IKE_AUTH.initiator.ok']).toBe(1);
}

/** Whether an IKE_SA_INIT message on the wire carries N(IKEV2_FRAGMENTATION_SUPPORTED). */
function initAnnounces(wire: MemoryWire, response: boolean): boolean {
  const d = wire.log.find((x) => exchangeOf(x) === ExchangeType.IKE_SA_INIT && isResponse(x) === response)!;
  const msg = decodeMessage(d.bytes);
  if (!msg.ok) throw new Error(msg.error.message);
  return msg.value.payloads.some((p) => p.type === PayloadType.NOTIFY && p.notifyType === NotifyType.IKEV2_FRAGMENTATION_SUPPORTED);
}

// A fragment size that cuts a PSK IKE_AUTH request (about 250 octets) and its response (about 220) into a few fragments.
const SMALL = { fragmentSize: 160 };

describe('negotiation in IKE_SA_INIT (RFC 7383 §2.3) and who sends fragments (§2.5)', () => {
  it('both announce by default; IKE_AUTH above the fragment size travels as SKF fragments both ways, each within the size', async () => {
    const p = pair({ initiator: SMALL, responder: SMALL });
    const r = await up(p);
    expect(r.ok).toBe(true);
    expect([initAnnounces(p.wire, false), initAnnounces(p.wire, true)]).toEqual([true, true]);
    expect([p.alice.ikeSas()[0]!.peerFragmentation, p.bob.ikeSas()[0]!.peerFragmentation]).toEqual([true, true]);
    bothEstablished(p.alice, p.bob);
    const requests = p.wire.log.filter(authRequestFragment);
    const responses = p.wire.log.filter(authResponseFragment);
    expect(requests.length).toBeGreaterThan(1);
    expect(responses.length).toBeGreaterThan(1);
    // Numbered 1..n of n, each datagram within the size (IPv4 and UDP headers, non-ESP marker: 32 octets).
    expect(requests.map(fragmentNumber)).toEqual(requests.map((_, i) => i + 1));
    expect(new Set(requests.map(totalFragments))).toEqual(new Set([requests.length]));
    for (const d of [...requests, ...responses]) expect(d.bytes.length + 32).toBeLessThanOrEqual(160);
    // No unfragmented IKE_AUTH went out.
    expect(p.wire.log.filter((d) => exchangeOf(d) === ExchangeType.IKE_AUTH && !isFragment(d))).toEqual([]);
    expect(p.alice.stats.fragments).toEqual({ sent: requests.length, received: responses.length, reassembled: 1, fallbacks: 0 });
    expect(p.bob.stats.fragments).toEqual({ sent: responses.length, received: requests.length, reassembled: 1, fallbacks: 0 });
    expect(p.alice.fragments.messages + p.bob.fragments.messages).toBe(0);
    expect(p.alice.fragments.octets + p.bob.fragments.octets).toBe(0);
    // The responder keeps the fragmented answer for retransmissions: its datagrams, not its plaintext.
    const cached = p.bob.ikeSas()[0]!.lastResponse!;
    expect(cached.fragments?.datagrams).toHaveLength(responses.length);
    expect(Object.keys(cached.fragments!).sort()).toEqual(['datagrams', 'size']);
  });

  it('a message that fits the size is not fragmented', async () => {
    const p = pair({});
    expect((await up(p)).ok).toBe(true);
    expect(p.wire.log.filter(isFragment)).toEqual([]);
    expect(p.alice.ikeSas()[0]!.peerFragmentation).toBe(true);
  });

  it('fragmentation: no on the responder: it does not announce, and the initiator (yes) sends whole messages', async () => {
    const p = pair({ initiator: SMALL, responder: { ...SMALL, fragmentation: 'no' } });
    expect((await up(p)).ok).toBe(true);
    expect([initAnnounces(p.wire, false), initAnnounces(p.wire, true)]).toEqual([true, false]);
    expect(p.wire.log.filter(isFragment)).toEqual([]);
    expect([p.alice.ikeSas()[0]!.peerFragmentation, p.bob.ikeSas()[0]!.peerFragmentation]).toEqual([false, false]);
  });

  it('fragmentation: no on the initiator: nothing announced, the responder does not announce either', async () => {
    const p = pair({ initiator: { ...SMALL, fragmentation: 'no' }, responder: SMALL });
    expect((await up(p)).ok).toBe(true);
    expect([initAnnounces(p.wire, false), initAnnounces(p.wire, true)]).toEqual([false, false]);
    expect(p.wire.log.filter(isFragment)).toEqual([]);
  });

  it('fragmentation: accept announces and receives fragments but sends whole messages', async () => {
    const p = pair({ initiator: { ...SMALL, fragmentation: 'accept' }, responder: SMALL });
    expect((await up(p)).ok).toBe(true);
    expect([initAnnounces(p.wire, false), initAnnounces(p.wire, true)]).toEqual([true, true]);
    expect(p.wire.log.filter(authRequestFragment)).toEqual([]);
    expect(p.wire.log.filter(authResponseFragment).length).toBeGreaterThan(1);
    bothEstablished(p.alice, p.bob);
  });

  it('fragmentation: force sends fragments to a peer that did not announce support; with fragmentation: no it drops each, counted, storing nothing', async () => {
    // bob never announced support (a peer MUST NOT send it fragments then, RFC 7383 §2.5): force does anyway.
    const p = pair({ initiator: { ...SMALL, fragmentation: 'force' }, responder: { fragmentation: 'no' } });
    const r = await up(p, 10_000);
    expect(r.ok).toBe(false);
    expect(initAnnounces(p.wire, true)).toBe(false);
    expect(p.wire.log.filter(authRequestFragment).length).toBeGreaterThan(1);
    expect(p.bob.stats.drops['fragment-unsupported']).toBe(p.wire.log.filter(authRequestFragment).length);
    expect(p.bob.fragments.messages).toBe(0);
    expect(p.bob.stats.fragments.received).toBe(0);
  });
});

describe('reassembly through loss, duplication, reordering and forgery (RFC 7383 §2.6)', () => {
  it('a lost request fragment: the request is retransmitted as all its fragments, and processed once', async () => {
    const wire = new MemoryWire();
    let lost = 0;
    wire.filter = (d) => (authRequestFragment(d) && fragmentNumber(d) === 2 && lost++ === 0 ? 'drop' : 'pass');
    const p = pair({ initiator: SMALL, responder: SMALL }, wire);
    expect((await up(p, 2000)).ok).toBe(true);
    bothEstablished(p.alice, p.bob);
    const requests = wire.log.filter(authRequestFragment);
    const total = totalFragments(requests[0]!);
    expect(requests.length).toBe(2 * total);
    expect(requests.slice(total).map(fragmentNumber)).toEqual(requests.slice(0, total).map(fragmentNumber));
    expect(p.alice.stats.retransmits).toBe(1);
    // Fragment 1 again is a duplicate in the set; the retransmitted 2 completes it; those after 2 come to
    // an answered request and, not being its first fragment, are ignored (§2.6.1).
    expect(total).toBeGreaterThan(2);
    expect(p.bob.stats.drops['fragment-duplicate']).toBe(1);
    expect(p.bob.stats.drops['fragment-stale']).toBe(total - 2);
    expect(p.bob.stats.responsesFromCache).toBe(0);
  });

  it('every fragment duplicated: the copies are dropped as duplicates before decryption, the message processed once', async () => {
    const wire = new MemoryWire();
    wire.filter = (d) => (isFragment(d) ? 'duplicate' : 'pass');
    const p = pair({ initiator: SMALL, responder: SMALL }, wire);
    expect((await up(p)).ok).toBe(true);
    bothEstablished(p.alice, p.bob);
    const requests = wire.log.filter(authRequestFragment).length;
    const responses = wire.log.filter(authResponseFragment).length;
    // The duplicate of the last fragment arrives after the message is complete: it is a retransmitted
    // fragment other than the first of an answered request (§2.6.1), ignored; the others are replays in the set.
    expect(p.bob.stats.drops['fragment-duplicate']).toBe(requests - 1);
    expect(p.bob.stats.drops['fragment-stale']).toBe(1);
    expect(p.bob.stats.fragments.received).toBe(requests);
    expect(p.alice.stats.fragments.received).toBe(responses);
    expect(p.alice.stats.drops['unexpected-response']).toBe(1);
    expect(p.bob.stats.responsesFromCache).toBe(0);
  });

  it('fragments in reverse order are reassembled in Fragment Number order', async () => {
    const wire = new MemoryWire();
    const held: Datagram[] = [];
    wire.filter = (d) => {
      if (!isFragment(d)) return 'pass';
      held.push(d);
      if (held.length === totalFragments(d)) {
        // All of this message's fragments are here: deliver them last first.
        for (const f of held.reverse()) wire.queue.push(f);
        held.length = 0;
      }
      return 'drop';
    };
    const p = pair({ initiator: SMALL, responder: SMALL }, wire);
    expect((await up(p)).ok).toBe(true);
    bothEstablished(p.alice, p.bob);
    expect(p.alice.stats.retransmits).toBe(0);
    expect(Object.keys(p.bob.stats.drops).filter((k) => k.startsWith('fragment'))).toEqual([]);
  });

  it('a forged fragment (same numbers, other content) is refused by its ICV and changes nothing; the genuine one completes the set', async () => {
    const wire = new MemoryWire();
    let forged = false;
    wire.filter = (d) => {
      if (!forged && authRequestFragment(d) && fragmentNumber(d) === 1) {
        forged = true;
        const copy = new Uint8Array(d.bytes);
        copy[copy.length - 1]! ^= 0x01;
        wire.queue.push({ ...d, bytes: copy });
      }
      return 'pass';
    };
    const p = pair({ initiator: SMALL, responder: SMALL }, wire);
    expect((await up(p)).ok).toBe(true);
    bothEstablished(p.alice, p.bob);
    expect(p.bob.stats.drops['fragment-auth']).toBe(1);
    expect(p.alice.stats.retransmits).toBe(0);
  });

  it('an incomplete message is forgotten after the reassembly timeout, counted', async () => {
    const wire = new MemoryWire();
    wire.filter = (d) => (authRequestFragment(d) && fragmentNumber(d) === 1 ? 'drop' : 'pass');
    const { initiator, responder } = pskPair({ initiator: SMALL, responder: SMALL });
    const alice = wire.engine('10.0.0.1', [initiator], { retransmit: { timeout: 500, base: 2, tries: 0, maxTimeout: 500 } });
    const bob = wire.engine('10.0.0.2', [responder], { reassembly: { timeout: 2000 } });
    alice.initiate(initiator.name).catch(() => {});
    wire.run(100);
    expect(bob.fragments.messages).toBe(1);
    expect(bob.fragments.octets).toBeGreaterThan(0);
    wire.run(2500);
    expect(bob.fragments.messages).toBe(0);
    expect(bob.fragments.octets).toBe(0);
    expect(bob.stats.drops['fragment-timeout']).toBe(1);
  });

  it('a message with more fragments than the limit is refused fragment by fragment', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ initiator: SMALL, responder: SMALL });
    const alice = wire.engine('10.0.0.1', [initiator], { retransmit: { timeout: 500, base: 2, tries: 0, maxTimeout: 500 } });
    const bob = wire.engine('10.0.0.2', [responder], { reassembly: { maxFragments: 1 } });
    alice.initiate(initiator.name).catch(() => {});
    wire.run(100);
    expect(bob.stats.drops['fragment-limit']).toBe(wire.log.filter(authRequestFragment).length);
    expect(bob.fragments.messages).toBe(0);
    expect(bob.ikeSas()[0]?.state).toBe('connecting');
  });
});

describe('the response cache keeps the fragments (RFC 7383 §2.6.1)', () => {
  it('a lost response fragment: the retransmitted first request fragment gets every response fragment again; the others are ignored', async () => {
    const wire = new MemoryWire();
    let lost = 0;
    wire.filter = (d) => (authResponseFragment(d) && fragmentNumber(d) === 1 && lost++ === 0 ? 'drop' : 'pass');
    const p = pair({ initiator: SMALL, responder: SMALL }, wire);
    expect((await up(p, 2000)).ok).toBe(true);
    bothEstablished(p.alice, p.bob);
    const requestTotal = totalFragments(wire.log.find(authRequestFragment)!);
    const responses = wire.log.filter(authResponseFragment);
    const responseTotal = totalFragments(responses[0]!);
    expect(p.bob.stats.responsesFromCache).toBe(1);
    // The response went out twice, byte for byte the same fragments.
    expect(responses).toHaveLength(2 * responseTotal);
    expect(responses.slice(responseTotal).map((d) => Buffer.from(d.bytes).toString('hex'))).toEqual(responses.slice(0, responseTotal).map((d) => Buffer.from(d.bytes).toString('hex')));
    expect(p.bob.stats.drops['fragment-stale']).toBe(requestTotal - 1);
  });
});

describe('fallback to a smaller fragment size (RFC 7383 §2.5.2)', () => {
  const peers = new CertPeers('ecdsa-p256');
  beforeAll(() => void peers.make(), 60_000);
  afterAll(() => peers.cleanup());

  it('a path that drops datagrams over 700 octets: after unanswered retransmissions the request is cut at 576, Total Fragments grows, the exchange completes', async () => {
    const wire = new MemoryWire();
    const sizes: number[] = [];
    wire.filter = (d) => {
      if (authRequestFragment(d)) sizes.push(d.bytes.length);
      return d.bytes.length + 32 > 700 ? 'drop' : 'pass';
    };
    const p = pair({
      initiator: { localAuth: peers.local('alice'), remoteAuth: peers.remote(), remoteId: id('bob.example.org') },
      responder: { localAuth: peers.local('bob'), remoteAuth: peers.remote() },
    }, wire);
    expect((await up(p, 10_000)).ok).toBe(true);
    bothEstablished(p.alice, p.bob);
    expect(p.alice.stats.fragments.fallbacks).toBe(1);
    const requests = wire.log.filter(authRequestFragment);
    const totals = [...new Set(requests.map(totalFragments))];
    expect(totals).toHaveLength(2);
    expect(totals[1]!).toBeGreaterThan(totals[0]!);
    // The first set is cut for 1280 (and lost: three tries), the second for 576.
    expect(Math.max(...sizes.slice(0, 3 * totals[0]!)) + 32).toBeGreaterThan(700);
    expect(Math.max(...sizes.slice(3 * totals[0]!)) + 32).toBeLessThanOrEqual(576);
    expect(p.alice.ikeSas()[0]!.fragmentSize).toBe(576);
    // Bob answers with fragments no larger than the ones that reached him (§2.5.1).
    for (const d of wire.log.filter(authResponseFragment)) expect(d.bytes.length + 32).toBeLessThanOrEqual(576);
  });
});

describe('what status and metrics show', () => {
  it('fragments and fragment drops by reason in the status snapshot, its summary line and the Prometheus series', async () => {
    const wire = new MemoryWire();
    wire.filter = (d) => (isFragment(d) ? 'duplicate' : 'pass');
    const p = pair({ initiator: SMALL, responder: SMALL }, wire);
    expect((await up(p)).ok).toBe(true);
    const status = snapshot(p.bob);
    expect(status.ike.fragments).toEqual(p.bob.stats.fragments);
    expect(status.ike.drops['fragment-duplicate']).toBeGreaterThan(0);
    const f = status.ike.fragments;
    expect(formatStatus(status)).toContain(`; IKE fragments in ${f.received}, out ${f.sent}, reassembled 1`);
    const families = parsePrometheus(await new GatewayMetrics(() => snapshot(p.bob), p.bob).text());
    expect(sampleValue(families, 'ikeclone_ike_fragments_total', { event: 'received' })).toBe(f.received);
    expect(sampleValue(families, 'ikeclone_ike_fragments_total', { event: 'sent' })).toBe(f.sent);
    expect(sampleValue(families, 'ikeclone_ike_fragments_total', { event: 'reassembled' })).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_drops_total', { reason: 'fragment-duplicate' })).toBe(status.ike.drops['fragment-duplicate']);
  });
});
