// Half-open IKE SAs under a flood (architecture §4.6): floods of IKE_SA_INIT
// requests that answer COOKIEs (RFC 7296 §2.6), from one source and from 256
// sources in one /24, and a forged flood that cannot answer them, against a
// responder that also serves an established peer. In memory, with the wire's
// manual clock: a legitimate peer still completes IKE_SA_INIT and IKE_AUTH
// within 2 s, the established IKE SA and its Child SA are untouched, and the
// evictions are counted in the engine's stats as `status` shows them.
import { describe, expect, it } from 'vitest';
import { MemoryWire, PSK, ike, pskPair, seededRandom } from './support/peers.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import { buildProposals } from '../control/ike/proposals.js';
import { notify } from '../control/ike/payload-builders.js';
import type { Datagram } from '../control/ike/transport.js';
import type { RandomSource } from '../control/crypto/random.js';
import { snapshot } from '../control/status.js';
import { ExchangeType, HeaderFlag, IKE_VERSION, KeGroup, NotifyType, PayloadType } from '../control/wire/constants.js';
import { decodeMessage, encodeMessage } from '../control/wire/message.js';
import type { Payload } from '../control/wire/payloads.js';

const BOB = '10.0.0.2';
const OFFER = buildProposals(ike('aes256gcm16-prfsha256-x25519'), new Uint8Array(0));

/**
 * Initiators that send IKE_SA_INIT requests from many addresses and answer
 * every COOKIE challenge at once (as a determined peer does), but never send
 * IKE_AUTH. With `answerCookies: false` they stand for forged source
 * addresses: nothing comes back to them.
 */
class InitFlood {
  private readonly random: RandomSource;
  /** Requests by SPI, for answering their COOKIE challenge (the latest 4096). */
  private readonly pending = new Map<string, Payload[]>();
  sent = 0;
  cookiesAnswered = 0;

  constructor(private readonly wire: MemoryWire, readonly sources: string[], private readonly answerCookies = true) {
    this.random = seededRandom(`flood/${sources[0]}`);
    // Stand in for engines at these addresses: the wire hands them what bob sends there.
    for (const address of sources) this.wire.engines.set(address, { receive: (d: Datagram) => this.receive(d) } as unknown as IkeEngine);
  }

  /** A new IKE_SA_INIT request from the `i`-th source (round robin). */
  send(i: number): void {
    const source = this.sources[i % this.sources.length]!;
    const spiI = this.random(8);
    const payloads: Payload[] = [
      { type: PayloadType.SA, proposals: OFFER },
      { type: PayloadType.KE, group: KeGroup.CURVE25519, data: this.random(32) },
      { type: PayloadType.NONCE, data: this.random(32) },
    ];
    if (this.answerCookies) {
      this.pending.set(spi64Hex(spiI), payloads);
      if (this.pending.size > 4096) this.pending.delete(this.pending.keys().next().value!);
    }
    this.sent++;
    this.post(source, spiI, payloads);
  }

  private post(source: string, spiI: Uint8Array, payloads: Payload[]): void {
    const bytes = encodeMessage(
      { spiI, spiR: new Uint8Array(8), version: IKE_VERSION, exchangeType: ExchangeType.IKE_SA_INIT, flags: HeaderFlag.INITIATOR, messageId: 0 },
      payloads,
    );
    this.wire.queue.push({ bytes, local: { address: source, port: 500 }, remote: { address: BOB, port: 500 } });
  }

  private receive(d: Datagram): void {
    if (!this.answerCookies) return;
    const m = decodeMessage(d.bytes);
    if (!m.ok || m.value.header.exchangeType !== ExchangeType.IKE_SA_INIT) return;
    const first = m.value.payloads[0];
    if (first?.type !== PayloadType.NOTIFY || first.notifyType !== NotifyType.COOKIE) return;
    // The request again with N(COOKIE) first (RFC 7296 §2.6): the same SPI, nonce and everything else.
    const request = this.pending.get(spi64Hex(m.value.header.spiI));
    if (!request) return;
    this.cookiesAnswered++;
    this.post(d.local.address, m.value.header.spiI, [notify(NotifyType.COOKIE, first.data), ...request]);
  }
}

/** What must not change on an established IKE SA: its SPIs, state, message IDs, keys in use and Child SAs. */
function fingerprint(sa: IkeSa) {
  return {
    state: sa.state,
    spis: [spi64Hex(sa.spiI), spi64Hex(sa.spiR)],
    ids: [sa.nextRequestId, sa.peerRequestId],
    remote: `${sa.remote.address}:${sa.remote.port}`,
    protect: [sa.protectIn, sa.protectOut],
    children: sa.children.map((c) => [c.state, c.spiIn, c.spiOut]),
  };
}

/**
 * bob (10.0.0.2) with carol (10.0.0.3) established before the flood, and alice
 * (10.0.0.1), the legitimate peer that arrives during it. Bob's limits are the
 * defaults: 1024 half-open SAs, COOKIEs past 32, 5 per source.
 */
function scene() {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const bob = wire.engine(BOB, [responder]);
  const alice = wire.engine('10.0.0.1', [initiator]);
  const carol = wire.engine('10.0.0.3', [{ ...initiator, name: 'carol', localAddrs: ['10.0.0.3'], localId: initiator.localId, localAuth: { method: 'psk', psk: PSK } }]);
  return { wire, alice, bob, carol };
}

/**
 * Run the flood at `perSecond` for `ms` of simulated time in 1 ms steps; alice
 * initiates at `aliceAt`. Returns when alice's IKE SA came up (simulated ms
 * after she started), or undefined.
 */
async function flood(s: ReturnType<typeof scene>, attacker: InitFlood, perSecond: number, ms: number, aliceAt: number) {
  let sent = 0;
  let upAfter: number | undefined;
  let failed: unknown;
  let startedAt = 0;
  for (let t = 0; t < ms; t++) {
    if (t === aliceAt) {
      startedAt = s.wire.clock.now();
      s.alice.initiate('to-bob').then(() => { upAfter = s.wire.clock.now() - startedAt; }, (e: unknown) => { failed = e; });
    }
    const due = Math.floor(((t + 1) * perSecond) / 1000);
    while (sent < due) attacker.send(sent++);
    s.wire.flush(1_000_000);
    s.wire.clock.advance(1);
    if (t % 25 === 0) await new Promise<void>((r) => setImmediate(r));
  }
  await new Promise<void>((r) => setImmediate(r));
  if (failed) throw failed;
  return upAfter;
}

async function carolEstablished(s: ReturnType<typeof scene>) {
  const up = s.carol.initiate('carol');
  s.wire.run(100);
  const carolSa = await up;
  const bobSide = s.bob.ikeSas().find((sa) => sa.state === 'established' && sa.remote.address === '10.0.0.3')!;
  expect(bobSide.children).toHaveLength(1);
  return { carolSa, bobSide, before: [fingerprint(carolSa), fingerprint(bobSide)] };
}

/** The established pair still works: a liveness check (RFC 7296 §2.4) goes through and changes only message IDs. */
async function stillWorks(s: ReturnType<typeof scene>, carolSa: IkeSa) {
  const id = carolSa.nextRequestId;
  const alive = s.carol.checkLiveness(carolSa);
  s.wire.run(100);
  expect(await alive).toBe(true);
  expect(carolSa.nextRequestId).toBe(id + 1);
  expect(carolSa.state).toBe('established');
}

describe('half-open IKE SAs under a flood that answers COOKIEs (architecture §4.6)', () => {
  it('one source at 1,000 IKE_SA_INIT/s keeps 5 half-open SAs; a legitimate peer comes up at once; an established SA is untouched', async () => {
    const s = scene();
    const { carolSa, bobSide, before } = await carolEstablished(s);
    const attacker = new InitFlood(s.wire, ['198.51.100.7']);
    const upAfter = await flood(s, attacker, 1000, 2500, 500);
    expect(upAfter).toBeDefined();
    expect(upAfter!).toBeLessThanOrEqual(2000);
    // The source never holds more than its 5; it replaces its own oldest, one per request past them.
    expect(s.bob.halfOpenFrom('198.51.100.7')).toBe(5);
    expect(s.bob.halfOpenCount()).toBe(5);
    expect(attacker.sent).toBe(2500);
    expect(attacker.cookiesAnswered).toBe(2500 - 5);
    const evicted = s.bob.stats.halfOpenEvictions;
    expect(evicted['per-source']).toBe(2500 - 5);
    expect(evicted['table-full'] ?? 0).toBe(0);
    expect([fingerprint(carolSa), fingerprint(bobSide)]).toEqual(before);
    await stillWorks(s, carolSa);
    // Visible in status, as the control socket serves it.
    expect(snapshot(s.bob).ike.halfOpenEvictions).toEqual({ 'per-source': 2500 - 5 });
  });

  it('256 sources in one /24 fill the table; a new source takes the oldest slot of the largest and comes up within 2 s', async () => {
    const s = scene();
    const { carolSa, bobSide, before } = await carolEstablished(s);
    const sources = Array.from({ length: 256 }, (_, i) => `203.0.113.${i}`);
    const attacker = new InitFlood(s.wire, sources);
    // 4,000 requests/s in all (about 16/s per source; 1,000/s each would only add refusals): the table is
    // full after a third of a second, 256 sources x 4 slots, and stays full.
    const upAfter = await flood(s, attacker, 4000, 3000, 1000);
    expect(upAfter).toBeDefined();
    expect(upAfter!).toBeLessThanOrEqual(2000);
    expect(s.bob.halfOpenCount()).toBe(1024);
    for (const source of sources) expect(s.bob.halfOpenFrom(source)).toBeLessThanOrEqual(5);
    const evicted = s.bob.stats.halfOpenEvictions;
    // alice took the oldest slot of a source holding the most (a new source is never refused) ...
    expect(evicted['table-full']).toBeGreaterThanOrEqual(1);
    expect(evicted['per-source'] ?? 0).toBe(0);
    // ... while a source that already holds as many as any other is refused rather than evicting its peers.
    expect(s.bob.stats.drops['half-open-limit']).toBeGreaterThan(8000);
    expect(s.alice.ikeSas().find((sa) => sa.state === 'established')?.children).toHaveLength(1);
    expect([fingerprint(carolSa), fingerprint(bobSide)]).toEqual(before);
    await stillWorks(s, carolSa);
  });

  it('under pressure, half-open SAs live 5 s instead of 30 s', async () => {
    const s = scene();
    const sources = Array.from({ length: 40 }, (_, i) => `203.0.113.${i}`);
    const attacker = new InitFlood(s.wire, sources);
    for (let i = 0; i < 40; i++) attacker.send(i); // 40 half-open SAs: past the COOKIE threshold (32)
    s.wire.flush();
    expect(s.bob.halfOpenCount()).toBe(40);
    s.wire.clock.advance(5_001);
    // The next IKE_SA_INIT finds the table under pressure: the ones older than 5 s go, down to the threshold.
    attacker.send(40);
    s.wire.flush();
    expect(s.bob.stats.halfOpenEvictions['pressure-timeout']).toBe(40 - 32 + 1);
    expect(s.bob.halfOpenCount()).toBe(32);
  });
});

describe('a forged IKE_SA_INIT flood (source addresses it does not own)', () => {
  it('holds at most the slots below the COOKIE threshold, evicts nothing, and changes no established SA', async () => {
    const s = scene();
    const { carolSa, bobSide, before } = await carolEstablished(s);
    const forged = new InitFlood(s.wire, Array.from({ length: 4096 }, (_, i) => `198.18.${i >> 8}.${i & 255}`), false);
    const upAfter = await flood(s, forged, 5000, 2000, 500);
    expect(upAfter).toBeDefined();
    expect(upAfter!).toBeLessThanOrEqual(2000);
    // 32 slots (the COOKIE threshold) went to forged requests before COOKIEs were demanded; none since, and no evictions.
    expect(s.bob.halfOpenCount()).toBe(32);
    expect(s.bob.stats.halfOpenEvictions).toEqual({});
    expect(s.bob.stats.drops.cookie).toBeGreaterThan(9000);
    // Copies of carol's own IKE_SA_INIT from her address (a late retransmission, forged or not) start nothing.
    const carolInit = s.wire.log.find((d) => d.local.address === '10.0.0.3' && d.bytes[18] === ExchangeType.IKE_SA_INIT && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0)!;
    for (let i = 0; i < 100; i++) s.wire.queue.push({ ...carolInit, bytes: new Uint8Array(carolInit.bytes) });
    // Forged protected requests under carol's SPIs (her IKE_AUTH request with other message IDs and ciphertext):
    // dropped, nothing changes.
    const carolAuth = s.wire.log.find((d) => d.local.address === '10.0.0.3' && d.bytes[18] === ExchangeType.IKE_AUTH)!;
    const noise = seededRandom('forged SK');
    for (let i = 0; i < 100; i++) {
      const bytes = new Uint8Array(carolAuth.bytes);
      bytes[18] = ExchangeType.INFORMATIONAL;
      new DataView(bytes.buffer).setUint32(20, bobSide.peerRequestId - 1 + (i % 4));
      bytes.set(noise(bytes.length - 40), 40);
      s.wire.queue.push({ ...carolAuth, bytes });
    }
    s.wire.flush();
    expect(s.bob.stats.drops['late-retransmit']).toBe(100);
    expect([fingerprint(carolSa), fingerprint(bobSide)]).toEqual(before);
    await stillWorks(s, carolSa);
  });

  it('half-open SAs forged in a peer\'s name cannot lock it out: at its limit it answers a COOKIE and replaces them', async () => {
    const s = scene();
    // Five forged IKE_SA_INITs from alice's address (below the COOKIE threshold, so they take slots).
    const realAlice = s.wire.engines.get('10.0.0.1')!;
    const forged = new InitFlood(s.wire, ['10.0.0.1'], false);
    for (let i = 0; i < 5; i++) forged.send(i);
    s.wire.flush();
    expect(s.bob.halfOpenFrom('10.0.0.1')).toBe(5);
    s.wire.engines.set('10.0.0.1', realAlice);
    const up = s.alice.initiate('to-bob');
    s.wire.run(100);
    const sa = await up;
    expect(sa.state).toBe('established');
    expect(s.bob.stats.drops.cookie).toBe(1);
    expect(s.bob.stats.halfOpenEvictions).toEqual({ 'per-source': 1 });
    expect(s.bob.halfOpenFrom('10.0.0.1')).toBe(4);
  });
});
