// RFC 5685 redirect between engines wired in memory: the client's and the
// gateway's halves, in IKE_SA_INIT (§3) and in IKE_AUTH (§6), the nonce check
// on the unauthenticated REDIRECT (§3), the loop bound (§7), peers that did
// not announce support (never redirected), the placement hook, and gateway
// identities from the wire (§9.2, §9.3) that never throw.
import { describe, expect, it } from 'vitest';
import { REDIRECTED_SA_LINGER_MS } from '../control/ike/defaults.js';
import { MemoryWire, pskPair } from './support/peers.js';
import type { IkeEngine, MessageTrace } from '../control/ike/engine.js';
import type { ConnectionPolicy, RedirectSettings } from '../control/ike/policy.js';
import type { RedirectPeer, RedirectPhase, RedirectPolicy } from '../control/ike/redirect-policy.js';
import { ExchangeType, HeaderFlag, IKE_VERSION, NotifyType, PayloadType } from '../control/wire/constants.js';
import { decodeMessage, encodeMessage } from '../control/wire/message.js';
import type { NotifyPayload, Payload } from '../control/wire/payloads.js';
import { decodeGatewayIdentity, encodeGatewayIdentity, gatewayIdentity, type GatewayIdentity } from '../control/wire/gateway-identity.js';
import { notify } from '../control/ike/payload-builders.js';
import { redirectIkeSa } from '../control/ike/redirect.js';

const A = '10.0.0.2';
const B = '10.0.0.3';

function settings(over: Partial<RedirectSettings> = {}): RedirectSettings {
  return { follow: true, maxRedirects: 5, loopPeriod: 300_000, to: [], at: 'init', ...over };
}

function gw(text: string): GatewayIdentity {
  const g = gatewayIdentity(text);
  if (!g) throw new Error(`not a gateway identity: ${text}`);
  return g;
}

/** A gateway policy for `address` with the same identity as bob (one PAD entry for the group, §3). */
function gatewayPolicy(base: ConnectionPolicy, address: string, redirect?: RedirectSettings): ConnectionPolicy {
  return { ...base, name: `gw-${address}`, localAddrs: [address], ...(redirect ? { redirect } : {}) };
}

interface Seen {
  direction: 'in' | 'out';
  exchangeType: number;
  response: boolean;
  payloads: readonly Payload[];
}

function recorder(): { seen: Seen[]; trace: MessageTrace } {
  const seen: Seen[] = [];
  return { seen, trace: (e) => void seen.push({ direction: e.direction, exchangeType: e.exchangeType, response: e.response, payloads: e.payloads }) };
}

function notifies(payloads: readonly Payload[], type: number): NotifyPayload[] {
  return payloads.filter((p): p is NotifyPayload => p.type === PayloadType.NOTIFY && p.notifyType === type);
}

/** alice (client) and gateways A and B; `gateways` gives each its redirect settings. */
function setUp(opts: { client?: Partial<ConnectionPolicy>; a?: RedirectSettings; b?: RedirectSettings; aHook?: RedirectPolicy; clientHooks?: Parameters<MemoryWire['engine']>[2] } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({ initiator: opts.client ?? {} });
  const client = recorder();
  const gwA = recorder();
  const gwB = recorder();
  const alice = wire.engine('10.0.0.1', [initiator], { trace: client.trace, ...opts.clientHooks });
  const a = wire.engine(A, [gatewayPolicy(responder, A, opts.a)], { trace: gwA.trace, ...(opts.aHook ? { redirect: { policy: opts.aHook } } : {}) });
  const b = wire.engine(B, [gatewayPolicy(responder, B, opts.b)], { trace: gwB.trace });
  return { wire, alice, a, b, initiator, client: client.seen, gwA: gwA.seen, gwB: gwB.seen };
}

function initRequests(seen: Seen[]): Seen[] {
  return seen.filter((s) => s.direction === 'out' && s.exchangeType === ExchangeType.IKE_SA_INIT && !s.response);
}

function noSas(engine: IkeEngine): void {
  expect(engine.ikeSas()).toHaveLength(0);
  expect(engine.halfOpenCount()).toBe(0);
  expect(engine.childrenBySpi.size).toBe(0);
}

describe('RFC 5685 redirect in IKE_SA_INIT (§3)', () => {
  it('the gateway answers N(REDIRECT, B, Ni) without state; the client starts again at B with REDIRECTED_FROM and its tunnel comes up there', async () => {
    const { wire, alice, a, b, client, gwA } = setUp({ a: settings({ to: [gw(B)] }) });
    const up = alice.initiate('to-bob');
    await wire.settle(500);
    const sa = await up;
    expect(sa.remote.address).toBe(B);
    expect(sa.state).toBe('established');
    expect(sa.children).toHaveLength(1);
    expect(b.ikeSas()[0]!.children).toHaveLength(1);
    // The first request announces support; the second names A in REDIRECTED_FROM instead.
    const [first, second] = initRequests(client);
    expect(notifies(first!.payloads, NotifyType.REDIRECT_SUPPORTED)).toHaveLength(1);
    expect(notifies(second!.payloads, NotifyType.REDIRECT_SUPPORTED)).toHaveLength(0);
    const from = notifies(second!.payloads, NotifyType.REDIRECTED_FROM);
    expect(from).toHaveLength(1);
    expect(decodeGatewayIdentity(from[0]!.data, { nonce: 'absent', fqdn: false })).toEqual({ ok: true, value: { gateway: { kind: 'ipv4', address: A }, nonce: undefined } });
    // A's answer held nothing but the REDIRECT, with the initiator's nonce (§9.2), and A kept no state.
    // The nonce as sent (the SA that sent it wiped its copy when it was deleted).
    const sent = decodeMessage(wire.log[0]!.bytes);
    const nonceI = (sent.ok ? sent.value.payloads : []).find((p) => p.type === PayloadType.NONCE)!;
    const init = wire.log.find((d) => d.local.address === A && d.bytes[18] === ExchangeType.IKE_SA_INIT)!;
    expect(init.bytes.subarray(8, 16).every((x) => x === 0)).toBe(true); // responder SPI zero (§3)
    expect(gwA.filter((s) => s.direction === 'out')).toHaveLength(0); // no SA, so nothing traced
    const redirect = decodeGatewayIdentity(new Uint8Array(init.bytes.subarray(init.bytes.length - 2 - 4 - 32)), { nonce: 'required', fqdn: true });
    expect(redirect.ok && redirect.value.gateway).toEqual({ kind: 'ipv4', address: B });
    expect(redirect.ok && Buffer.from(redirect.value.nonce!).equals(Buffer.from(nonceI.type === PayloadType.NONCE ? nonceI.data : []))).toBe(true);
    noSas(a);
    expect(a.stats.redirects).toEqual({ 'sent.init': 1 });
    expect(alice.stats.redirects).toEqual({ 'followed.init': 1 });
    // B knows where the client came from and that it may be redirected again.
    const atB = b.ikeSas()[0]!;
    expect(atB.redirectedFrom).toEqual({ kind: 'ipv4', address: A });
    expect(atB.peerRedirect).toBe(true);
    expect(alice.ikeSas()).toEqual([sa]);
  });

  it('a REDIRECT without the nonce of our request is discarded and the genuine response still counts (§3)', async () => {
    const { wire, alice, b } = setUp();
    const up = alice.initiate('to-bob');
    const sa = alice.ikeSas()[0]!;
    // An off-path attacker's answer, first on the wire: the right SPI, a nonce of its own.
    const forged = encodeMessage(
      { spiI: sa.spiI, spiR: new Uint8Array(8), version: IKE_VERSION, exchangeType: ExchangeType.IKE_SA_INIT, flags: HeaderFlag.RESPONSE, messageId: 0 },
      [notify(NotifyType.REDIRECT, encodeGatewayIdentity(gw(B), new Uint8Array(32).fill(7)))],
    );
    alice.receive({ bytes: forged, local: sa.local, remote: { address: A, port: 500 } });
    expect(alice.stats.drops['unusable-init-response']).toBe(1);
    await wire.settle(300);
    const established = await up;
    expect(established.remote.address).toBe(A);
    expect(alice.stats.redirects).toEqual({});
    expect(b.stats.received).toBe(0);
  });

  it('malformed REDIRECT data never throws: each is a counted drop, and the set-up fails only when no usable answer comes', async () => {
    const bad = [new Uint8Array(0), new Uint8Array([1]), new Uint8Array([1, 4, 10, 0]), new Uint8Array([9, 0]), new Uint8Array([3, 3, 0x61, 0x00, 0x62]), new Uint8Array([2, 16, ...new Uint8Array(16)])];
    const { wire, alice, initiator } = setUp({ client: { remoteAddrs: ['10.0.0.9'] } });
    const up = alice.initiate(initiator.name);
    up.catch(() => {});
    const sa = alice.ikeSas()[0]!;
    for (const data of bad) {
      const bytes = encodeMessage(
        { spiI: sa.spiI, spiR: new Uint8Array(8), version: IKE_VERSION, exchangeType: ExchangeType.IKE_SA_INIT, flags: HeaderFlag.RESPONSE, messageId: 0 },
        [notify(NotifyType.REDIRECT, data)],
      );
      expect(() => alice.receive({ bytes, local: sa.local, remote: { address: '10.0.0.9', port: 500 } })).not.toThrow();
    }
    expect(alice.stats.drops['unusable-init-response']).toBe(bad.length);
    wire.run(20_000);
    await expect(up).rejects.toThrow(/malformed REDIRECT|nonce data/);
    expect(alice.stats.redirects).toEqual({});
  });

  it('a peer that did not announce support is never redirected, in IKE_SA_INIT or IKE_AUTH', async () => {
    for (const at of ['init', 'auth'] as const) {
      const { wire, alice, a, client } = setUp({ client: { redirect: settings({ follow: false }) }, a: settings({ to: [gw(B)], at }) });
      const up = alice.initiate('to-bob');
      await wire.settle(300);
      const sa = await up;
      expect(sa.remote.address, at).toBe(A);
      expect(sa.children).toHaveLength(1);
      expect(notifies(initRequests(client)[0]!.payloads, NotifyType.REDIRECT_SUPPORTED)).toHaveLength(0);
      expect(a.stats.redirects).toEqual({});
      expect(a.ikeSas()[0]!.peerRedirect).toBe(false);
    }
  });
});

describe('RFC 5685 redirect in IKE_AUTH (§6)', () => {
  it('the gateway authenticates, answers IDr, AUTH and N(REDIRECT) without a Child SA; the client deletes the SA and comes up at B', async () => {
    const { wire, alice, a, b, gwA } = setUp({ a: settings({ to: [gw(B)], at: 'auth' }) });
    const upEvents: string[] = [];
    a.on('ike-up', () => upEvents.push('A'));
    a.on('child-up', () => upEvents.push('A child'));
    const up = alice.initiate('to-bob');
    await wire.settle(500);
    const sa = await up;
    expect(sa.remote.address).toBe(B);
    expect(sa.children).toHaveLength(1);
    expect(b.ikeSas()[0]!.redirectedFrom).toEqual({ kind: 'ipv4', address: A });
    const response = gwA.find((s) => s.direction === 'out' && s.exchangeType === ExchangeType.IKE_AUTH && s.response)!;
    expect(response.payloads.map((p) => p.type)).toEqual([PayloadType.IDr, PayloadType.AUTH, PayloadType.NOTIFY]);
    const redirect = notifies(response.payloads, NotifyType.REDIRECT)[0]!;
    // No nonce data in IKE_AUTH (§9.2).
    expect(decodeGatewayIdentity(redirect.data, { nonce: 'absent', fqdn: true })).toEqual({ ok: true, value: { gateway: { kind: 'ipv4', address: B }, nonce: undefined } });
    expect(upEvents).toEqual([]);
    noSas(a);
    expect(a.stats.redirects).toEqual({ 'sent.auth': 1 });
    expect(alice.stats.redirects).toEqual({ 'followed.auth': 1 });
    // The client's Delete of the SA at A went out once (§6: SHOULD delete); A kept the SA for it and answered it.
    expect(wire.log.filter((d) => d.remote.address === A && d.bytes[18] === ExchangeType.INFORMATIONAL)).toHaveLength(1);
    expect(a.stats.drops['unknown-spi']).toBeUndefined();
    expect(gwA.filter((s) => s.direction === 'in' && s.exchangeType === ExchangeType.INFORMATIONAL && !s.response).map((s) => s.payloads.map((p) => p.type))).toEqual([[PayloadType.DELETE]]);
    expect(gwA.some((s) => s.direction === 'out' && s.exchangeType === ExchangeType.INFORMATIONAL && s.response)).toBe(true);
  });

  it('a client that sends no Delete after a REDIRECT in IKE_AUTH: the gateway keeps the SA for its Delete only, then forgets it', async () => {
    const { wire, alice, a } = setUp({ a: settings({ to: [gw(B)], at: 'auth' }) });
    // The client's Delete is lost on the way to A.
    wire.filter = (d) => (d.remote.address === A && d.bytes[18] === ExchangeType.INFORMATIONAL ? 'drop' : 'pass');
    const up = alice.initiate('to-bob');
    await wire.settle(500);
    await up;
    expect(a.ikeSas()).toHaveLength(1);
    expect(a.ikeSas()[0]!.redirectedAway).toBe(true);
    wire.run(REDIRECTED_SA_LINGER_MS);
    noSas(a);
    expect(a.stats.drops['unknown-spi']).toBeUndefined();
  });

  it('a REDIRECT in an IKE_AUTH response whose AUTH does not verify is not followed', async () => {
    const { wire, alice, a, initiator } = setUp({ a: settings({ to: [gw(B)], at: 'auth' }) });
    // The gateway answers with another PSK: its AUTH fails at the client.
    a.policies[0]!.localAuth = { method: 'psk', psk: new TextEncoder().encode('another pre-shared key of decent length') };
    const up = alice.initiate(initiator.name);
    up.catch(() => {});
    await wire.settle(300);
    await expect(up).rejects.toThrow(/AUTHENTICATION_FAILED|not authenticated/);
    expect(alice.stats.redirects).toEqual({});
  });
});

describe('RFC 5685 redirect of an established IKE SA (§5)', () => {
  it('the gateway sends N(REDIRECT) in an INFORMATIONAL request; the client answers, comes up at B, then deletes the SA at A', async () => {
    const { wire, alice, a, b, gwA } = setUp();
    const up = alice.initiate('to-bob');
    await wire.settle(300);
    const old = await up;
    const atA = a.ikeSas()[0]!;
    expect(atA.peerRedirect).toBe(true);
    const acknowledged = redirectIkeSa(a, atA, gw(B));
    await wire.settle(500);
    expect(await acknowledged).toBe(true);
    // Protected, so no nonce data (§5, §9.2).
    const request = gwA.find((s) => s.direction === 'out' && s.exchangeType === ExchangeType.INFORMATIONAL && !s.response)!;
    expect(decodeGatewayIdentity(notifies(request.payloads, NotifyType.REDIRECT)[0]!.data, { nonce: 'absent', fqdn: true }).ok).toBe(true);
    // Make before break: an IKE SA and Child SA at B, the old one deleted on both ends.
    expect(old.state).toBe('dead');
    const now = alice.ikeSas();
    expect(now).toHaveLength(1);
    expect(now[0]!.remote.address).toBe(B);
    expect(now[0]!.children).toHaveLength(1);
    expect(b.ikeSas()[0]!.redirectedFrom).toEqual({ kind: 'ipv4', address: A });
    noSas(a);
    expect(a.stats.redirects).toEqual({ 'sent.established': 1 });
    expect(alice.stats.redirects).toEqual({ 'followed.established': 1 });
  });

  it('a second REDIRECT while the client is moving is not followed: one IKE SA at B, none left at A (§7)', async () => {
    const { wire, alice, a } = setUp();
    const up = alice.initiate('to-bob');
    await wire.settle(300);
    const old = await up;
    const atA = a.ikeSas()[0]!;
    const first = redirectIkeSa(a, atA, gw(B));
    const second = redirectIkeSa(a, atA, gw(B));
    await wire.settle(1000);
    expect([await first, await second]).toEqual([true, true]);
    expect(old.state).toBe('dead');
    expect(alice.ikeSas().map((s) => s.remote.address)).toEqual([B]);
    expect(alice.stats.redirects).toEqual({ 'followed.established': 1 });
    noSas(a);
  });

  it('an IKE SA rekeyed while its replacement at B comes up: the successor is the one deleted (make before break)', async () => {
    const { wire, alice, a } = setUp();
    const up = alice.initiate('to-bob');
    await wire.settle(300);
    const old = await up;
    const acknowledged = redirectIkeSa(a, a.ikeSas()[0]!, gw(B));
    // The REDIRECT is answered; the rekey with A goes out before the set-up at B is done.
    wire.flush();
    const rekeyed = alice.rekeyIkeSa(old);
    await wire.settle(1000);
    expect(await acknowledged).toBe(true);
    expect((await rekeyed).state).toBe('dead');
    expect(alice.ikeSas().map((s) => s.remote.address)).toEqual([B]);
    noSas(a);
  });

  it('refused for a peer that did not announce support, and by a client that is not the original initiator (§10)', async () => {
    const plain = setUp({ client: { redirect: settings({ follow: false }) } });
    const up = plain.alice.initiate('to-bob');
    await plain.wire.settle(300);
    await up;
    await expect(redirectIkeSa(plain.a, plain.a.ikeSas()[0]!, gw(B))).rejects.toThrow(/did not announce REDIRECT_SUPPORTED/);
    // The original initiator cannot redirect its responder.
    await expect(redirectIkeSa(plain.alice, plain.alice.ikeSas()[0]!, gw(B))).rejects.toThrow(/did not announce|original responder/);
    const { wire, alice, a } = setUp();
    const again = alice.initiate('to-bob');
    await wire.settle(300);
    const sa = await again;
    // Even with the peer's support on record, the client may not redirect its gateway.
    sa.peerRedirect = true;
    await expect(redirectIkeSa(alice, sa, gw(B))).rejects.toThrow(/original responder/);
    expect(a.ikeSas()).toHaveLength(1);
  });
});

describe('RFC 5685 loop protection (§7) and placement', () => {
  it('two gateways that redirect to each other: the client follows maxRedirects, then refuses, counted', async () => {
    const { wire, alice, a, b } = setUp({ client: { redirect: settings({ maxRedirects: 3 }) }, a: settings({ to: [gw(B)] }), b: settings({ to: [gw(A)] }) });
    const up = alice.initiate('to-bob');
    up.catch(() => {});
    await wire.settle(1000);
    await expect(up).rejects.toThrow(/refused: 3 redirects within 300 s already \(RFC 5685 §7\)/);
    expect(alice.stats.redirects).toEqual({ 'followed.init': 3, 'refused.loop': 1 });
    expect((a.stats.redirects['sent.init'] ?? 0) + (b.stats.redirects['sent.init'] ?? 0)).toBe(4);
    expect(alice.ikeSas()).toHaveLength(0);
    noSas(a);
    noSas(b);
  });

  it('redirects older than the period do not count towards the bound', async () => {
    const { wire, alice } = setUp({ client: { redirect: settings({ maxRedirects: 1, loopPeriod: 5 }) }, a: settings({ to: [gw(B)] }), b: settings({ to: [gw(A)] }) });
    const up = alice.initiate('to-bob');
    up.catch(() => {});
    // Each hop 10 ms of the manual clock after the one before: more than loopPeriod, so the bound never trips.
    for (let hop = 0; hop < 6; hop++) {
      wire.flush();
      await new Promise<void>((r) => setImmediate(r));
      wire.clock.advance(10);
    }
    expect(alice.stats.redirects['refused.loop']).toBeUndefined();
    expect(alice.stats.redirects['followed.init']).toBeGreaterThanOrEqual(5);
    alice.shutdown();
  });

  it('the placement hook decides, with the peer it may redirect: unauthenticated at IKE_SA_INIT, its identity at IKE_AUTH', async () => {
    const calls: Array<{ phase: RedirectPhase; peer: RedirectPeer }> = [];
    const hook: RedirectPolicy = {
      choose(peer, phase) {
        calls.push({ phase, peer });
        return phase === 'auth' && peer.peerId === 'alice@example.org' ? gw(B) : undefined;
      },
    };
    const { wire, alice } = setUp({ aHook: hook });
    const up = alice.initiate('to-bob');
    await wire.settle(500);
    expect((await up).remote.address).toBe(B);
    expect(calls.map((c) => c.phase)).toEqual(['init', 'auth']);
    expect(calls[0]!.peer.peerId).toBeUndefined();
    expect(calls[0]!.peer.remote.address).toBe('10.0.0.1');
    expect(calls[0]!.peer.local.address).toBe(A);
    expect(calls[1]!.peer.policy.name).toBe(`gw-${A}`);
  });

  it('the configured placement takes the targets in turn and never names the address the request came to', async () => {
    const { wire, alice, a } = setUp({ a: settings({ to: [gw(A), gw(B)] }) });
    for (let i = 0; i < 2; i++) {
      const up = alice.initiate('to-bob');
      await wire.settle(300);
      expect((await up).remote.address).toBe(B);
    }
    expect(a.stats.redirects).toEqual({ 'sent.init': 2 });
  });

  it('an FQDN target is resolved through the hook; without one the redirect fails, counted', async () => {
    const named = setUp({ a: settings({ to: [gw('gw-b.example.org')] }), clientHooks: { redirect: { resolveName: async (n) => (n === 'gw-b.example.org' ? B : undefined) } } });
    const up = named.alice.initiate('to-bob');
    await named.wire.settle(300);
    expect((await up).remote.address).toBe(B);

    const unnamed = setUp({ a: settings({ to: [gw('gw-b.example.org')] }) });
    const failed = unnamed.alice.initiate('to-bob');
    failed.catch(() => {});
    await unnamed.wire.settle(300);
    await expect(failed).rejects.toThrow(/gw-b\.example\.org, which does not resolve/);
    expect(unnamed.alice.stats.redirects).toEqual({ 'followed.init': 1, 'refused.unresolved': 1 });
  });
});

describe('gateway identities on the wire (§9.2, §9.3)', () => {
  it('IPv4, IPv6 and FQDN round-trip, with and without nonce data', () => {
    const nonce = new Uint8Array(16).fill(9);
    for (const g of [gw('192.0.2.9'), gw('2001:db8::9'), gw('gw2.example.org')]) {
      expect(decodeGatewayIdentity(encodeGatewayIdentity(g), { nonce: 'absent', fqdn: true })).toEqual({ ok: true, value: { gateway: g, nonce: undefined } });
      const withNonce = decodeGatewayIdentity(encodeGatewayIdentity(g, nonce), { nonce: 'required', fqdn: true });
      expect(withNonce.ok && withNonce.value.nonce).toEqual(nonce);
    }
    expect(encodeGatewayIdentity(gw('192.0.2.9'))).toEqual(new Uint8Array([1, 4, 192, 0, 2, 9]));
    expect(encodeGatewayIdentity(gw('gw.example')).subarray(0, 2)).toEqual(new Uint8Array([3, 10]));
    expect(gatewayIdentity('not a name!')).toBeUndefined();
  });

  it('refuses what the RFC rules out: FQDN in REDIRECTED_FROM, nonce data of the wrong size, stray octets', () => {
    expect(decodeGatewayIdentity(encodeGatewayIdentity(gw('gw.example')), { nonce: 'absent', fqdn: false }).ok).toBe(false);
    expect(decodeGatewayIdentity(encodeGatewayIdentity(gw('192.0.2.9'), new Uint8Array(15)), { nonce: 'required', fqdn: true }).ok).toBe(false);
    expect(decodeGatewayIdentity(encodeGatewayIdentity(gw('192.0.2.9'), new Uint8Array(257)), { nonce: 'required', fqdn: true }).ok).toBe(false);
    expect(decodeGatewayIdentity(encodeGatewayIdentity(gw('192.0.2.9'), new Uint8Array(1)), { nonce: 'absent', fqdn: true }).ok).toBe(false);
    expect(decodeGatewayIdentity(new Uint8Array([0, 0]), { nonce: 'absent', fqdn: true }).ok).toBe(false);
  });

  it('random bytes never throw', () => {
    let seed = 1;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const data = new Uint8Array(next() % 40).map(() => next());
      if (i % 3 === 0 && data.length > 1) data[0] = 1 + (data[0]! % 3);
      for (const opts of [{ nonce: 'absent', fqdn: true }, { nonce: 'required', fqdn: true }, { nonce: 'absent', fqdn: false }] as const) {
        expect(() => decodeGatewayIdentity(data, opts)).not.toThrow();
      }
    }
  });
});
