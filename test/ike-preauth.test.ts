// Unauthenticated input must not change SA state (architecture §4.3): forged
// IKE_SA_INIT errors (RFC 7296 §2.21.1), the response cache as a reflector
// (§2.1), and COOKIE secret rotation (§2.6).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryWire, establish, ike, pskPair } from './support/peers.js';
import { encodeMessage } from '../control/wire/message.js';
import { ExchangeType, HeaderFlag, IKE_VERSION, NotifyType, PayloadType } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';
import { notify, u16Bytes } from '../control/ike/payload-builders.js';
import type { Datagram } from '../control/ike/transport.js';
import type { IkeEngine } from '../control/ike/engine.js';
import { Gateway, COOKIE_ROTATION_MS } from '../control/gateway.js';
import { makeCookie, verifyCookie } from '../control/crypto/cookie.js';
import { silentLogger } from '../control/log.js';
import { loopbackPair } from './support/loopback.js';

const isInitRequest = (d: Datagram) => d.bytes[18] === ExchangeType.IKE_SA_INIT && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0;
const isInitResponse = (d: Datagram) => d.bytes[18] === ExchangeType.IKE_SA_INIT && (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0;

/** An IKE_SA_INIT response an on-path attacker makes for the request it saw. */
function forgedInitResponse(request: Datagram, payloads: Payload[]): Datagram {
  const bytes = encodeMessage(
    { spiI: request.bytes.slice(0, 8), spiR: new Uint8Array(8), version: IKE_VERSION, exchangeType: ExchangeType.IKE_SA_INIT, flags: HeaderFlag.RESPONSE, messageId: 0 },
    payloads,
  );
  return { bytes, local: request.local, remote: request.remote };
}

/** Alice and Bob; the attacker answers alice's first IKE_SA_INIT request with `payloads`, ahead of Bob. */
function raceForged(payloads: Payload[], opts: { dropFirstGenuine?: boolean } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  const failed: string[] = [];
  alice.on('ike-failed', (_s, r) => failed.push(r));
  let injected = false;
  let genuineDropped = false;
  wire.filter = (d) => {
    if (!injected && isInitRequest(d)) {
      injected = true;
      alice.receive(forgedInitResponse(d, payloads));
    }
    if (opts.dropFirstGenuine && !genuineDropped && isInitResponse(d)) {
      genuineDropped = true;
      return 'drop';
    }
    return 'pass';
  };
  const up = alice.initiate('to-bob');
  up.catch(() => undefined);
  return { wire, alice, bob, up, failed };
}

const outcome = (p: Promise<unknown>) => p.then(() => 'established', (e: Error) => `failed: ${e.message}`);

describe('IKE_SA_INIT responses are unauthenticated (RFC 7296 §2.21.1)', () => {
  it('a forged NO_PROPOSAL_CHOSEN racing the genuine response is dropped, and the SA comes up', async () => {
    const { wire, alice, up, failed } = raceForged([notify(NotifyType.NO_PROPOSAL_CHOSEN)]);
    wire.run(3000);
    expect(await outcome(up)).toBe('established');
    expect(failed).toEqual([]);
    expect(alice.stats.drops['unusable-init-response']).toBe(1);
  });

  it('after a forged error the request stays outstanding: its retransmission reaches Bob when his first answer is lost', async () => {
    const { wire, alice, up } = raceForged([notify(NotifyType.NO_PROPOSAL_CHOSEN)], { dropFirstGenuine: true });
    wire.run(3000);
    expect(await outcome(up)).toBe('established');
    expect(alice.stats.retransmits).toBe(1);
    expect(alice.stats.drops['unusable-init-response']).toBe(1);
  });

  it.each([
    ['without KE and Nonce', [{ type: PayloadType.NONCE, data: new Uint8Array(32) }] as Payload[]],
    ['INVALID_KE_PAYLOAD for a group we did not offer', [notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(14))]],
    ['an over-long COOKIE', [notify(NotifyType.COOKIE, new Uint8Array(65))]],
  ])('a forged response %s is dropped, and the SA comes up', async (_what, payloads) => {
    const { wire, alice, up, failed } = raceForged(payloads);
    wire.run(3000);
    expect(await outcome(up)).toBe('established');
    expect(failed).toEqual([]);
    expect(alice.stats.drops['unusable-init-response']).toBe(1);
  });

  it('a genuine NO_PROPOSAL_CHOSEN fails the SA once the retransmission budget is spent, with that reason', async () => {
    const wire = new MemoryWire();
    // Nothing in common: Bob answers every copy of the request with NO_PROPOSAL_CHOSEN.
    const pair = pskPair({ responder: { ike: ike('aes128-sha256-modp2048') } });
    const alice = wire.engine('10.0.0.1', [pair.initiator]);
    wire.engine('10.0.0.2', [pair.responder]);
    const failed: string[] = [];
    alice.on('ike-failed', (_s, r) => failed.push(r));
    const up = alice.initiate('to-bob');
    up.catch(() => undefined);
    // Budget of MemoryWire engines: 3 retransmissions after 500, 1000, 2000 ms, then 4000 ms more.
    wire.run(7000);
    expect(failed).toEqual([]);
    expect(alice.ikeSas()).toHaveLength(1);
    expect(alice.stats.drops['unusable-init-response']).toBe(4);
    wire.run(1000);
    expect(await outcome(up)).toMatch(/^failed: responder answered NO_PROPOSAL_CHOSEN \(no usable response to IKE_SA_INIT after 3 retransmissions\)$/);
    expect(failed).toHaveLength(1);
    expect(alice.stats.retransmits).toBe(3);
    expect(alice.ikeSas()).toHaveLength(0);
    expect(wire.clock.pending()).toBe(0);
  });

  it('a forged error with Bob silent is the reason reported when the budget runs out', async () => {
    const { wire, alice, up } = raceForged([notify(NotifyType.NO_PROPOSAL_CHOSEN)]);
    const passForged = wire.filter;
    wire.filter = (d, i) => (passForged(d, i), d.local.address === '10.0.0.2' ? 'drop' : 'pass');
    wire.run(10_000);
    expect(await outcome(up)).toBe('failed: responder answered NO_PROPOSAL_CHOSEN (no usable response to IKE_SA_INIT after 3 retransmissions)');
    expect(alice.ikeSas()).toHaveLength(0);
  });
});

describe('the response cache answers only retransmissions (RFC 7296 §2.1)', () => {
  const spoofed = { address: '203.0.113.66', port: 4500 };

  function capture(wire: MemoryWire): Datagram[] {
    const sent: Datagram[] = [];
    wire.filter = (d) => {
      sent.push(d);
      return 'drop';
    };
    return sent;
  }

  /** Alice's last request to Bob on the wire. */
  function lastRequest(wire: MemoryWire, exchangeType: number): Datagram {
    const requests = wire.log.filter((d) => d.local.address === '10.0.0.1' && d.bytes[18] === exchangeType && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0);
    return requests.at(-1)!;
  }

  it('a 28-octet header with the right SPIs and message ID from a spoofed source gets nothing', async () => {
    const { wire, bob, sa, peerSa } = await establish();
    expect(peerSa.lastResponse?.messageId).toBe(1);
    const sent = capture(wire);
    const hdr = encodeMessage({ spiI: sa.spiI, spiR: sa.spiR, version: IKE_VERSION, exchangeType: ExchangeType.IKE_AUTH, flags: HeaderFlag.INITIATOR, messageId: 1 }, []);
    expect(hdr.length).toBe(28);
    bob.receive({ bytes: hdr, local: { address: '10.0.0.2', port: 4500 }, remote: spoofed });
    expect(sent).toEqual([]);
    expect(bob.stats.responsesFromCache).toBe(0);
    expect(bob.stats.drops['cache-mismatch']).toBe(1);
  });

  it('a byte-identical retransmission gets the cached response; a one-bit change does not', async () => {
    const { wire, bob, peerSa } = await establish();
    const request = lastRequest(wire, ExchangeType.IKE_AUTH);
    const sent = capture(wire);
    bob.receive({ bytes: request.bytes, local: request.remote, remote: request.local });
    expect(sent).toHaveLength(1);
    expect(Buffer.from(sent[0]!.bytes).equals(Buffer.from(peerSa.lastResponse!.bytes))).toBe(true);
    expect(bob.stats.responsesFromCache).toBe(1);
    const flipped = new Uint8Array(request.bytes);
    flipped[flipped.length - 1]! ^= 1;
    bob.receive({ bytes: flipped, local: request.remote, remote: request.local });
    expect(sent).toHaveLength(1);
    expect(bob.stats.drops['cache-mismatch']).toBe(1);
  });

  it('the kept response of a deleted IKE SA goes only to a byte-identical copy of the Delete request', async () => {
    const { wire, alice, bob, sa } = await establish();
    const closed = alice.closeIkeSa(sa);
    wire.run(100);
    await closed;
    expect(bob.ikeSas()).toHaveLength(0);
    const del = lastRequest(wire, ExchangeType.INFORMATIONAL);
    const mid = new DataView(del.bytes.buffer, del.bytes.byteOffset + 20, 4).getUint32(0);
    const sent = capture(wire);
    const hdr = encodeMessage({ spiI: sa.spiI, spiR: sa.spiR, version: IKE_VERSION, exchangeType: ExchangeType.INFORMATIONAL, flags: HeaderFlag.INITIATOR, messageId: mid }, []);
    bob.receive({ bytes: hdr, local: { address: '10.0.0.2', port: 4500 }, remote: spoofed });
    expect(sent).toEqual([]);
    expect(bob.stats.drops['cache-mismatch']).toBe(1);
    bob.receive({ bytes: del.bytes, local: del.remote, remote: del.local });
    expect(sent).toHaveLength(1);
    expect(bob.stats.responsesFromCache).toBe(1);
  });
});

describe('COOKIE secret rotation (RFC 7296 §2.6)', () => {
  let gw: Gateway | undefined;
  afterEach(async () => {
    await gw?.stop({ notifyPeers: false });
    gw = undefined;
    vi.useRealTimers();
  });

  it('a running gateway rotates the secret every period; a cookie lives one to two periods; stop() wipes it', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    gw = new Gateway({ config: loopbackPair().responder, log: silentLogger() });
    const engine: IkeEngine = gw.engine;
    await gw.start();
    const nonce = new Uint8Array(32).fill(1);
    const spi = new Uint8Array(8).fill(2);
    const cookie = makeCookie(engine.cookieSecret, nonce, '127.0.0.1', spi);
    expect(engine.cookieSecret.version).toBe(0);
    vi.advanceTimersByTime(COOKIE_ROTATION_MS - 1);
    expect(engine.cookieSecret.version).toBe(0);
    vi.advanceTimersByTime(1);
    expect(engine.cookieSecret.version).toBe(1);
    expect(verifyCookie(engine.cookieSecret, cookie, nonce, '127.0.0.1', spi)).toBe(true);
    vi.advanceTimersByTime(COOKIE_ROTATION_MS);
    expect(engine.cookieSecret.version).toBe(2);
    expect(verifyCookie(engine.cookieSecret, cookie, nonce, '127.0.0.1', spi)).toBe(false);

    const secret = engine.cookieSecret;
    await gw.stop({ notifyPeers: false });
    gw = undefined;
    expect(() => makeCookie(secret, nonce, '127.0.0.1', spi)).toThrow(/destroyed/);
    vi.advanceTimersByTime(10 * COOKIE_ROTATION_MS);
    expect(secret.version).toBe(2);
    expect(vi.getTimerCount()).toBe(0);
  });
});
