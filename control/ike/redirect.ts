// Redirect (RFC 5685): a gateway sends a client that announced support to
// another gateway, and a client goes there.
//
//   Client                              Gateway A (IKE_SA_INIT, §3)
//   HDR(A,0), SAi1, KEi, Ni,
//     N(REDIRECT_SUPPORTED)  -->
//                            <--  HDR(A,0), N(REDIRECT, New_GW_ID, Ni_data)
//   Client                              Gateway B
//   HDR(A',0), SAi1, KEi, Ni,
//     N(REDIRECTED_FROM, IP of A)  -->  ... the IKE SA is set up with B
//
//   Client                              Gateway A (IKE_AUTH, §6)
//   HDR, SK {IDi, AUTH, SAi2, TSi, TSr}  -->
//                            <--  HDR, SK {IDr, AUTH, N(REDIRECT, New_GW_ID)}
//
// The IKE_SA_INIT response is unauthenticated: the client takes its REDIRECT
// only with its own nonce in it (§3), else the response is dropped and the
// request stays outstanding (RFC 7296 §2.21.1). In IKE_AUTH the client acts on
// REDIRECT only after the gateway's AUTH verified (§6); it then deletes the IKE
// SA (one Delete, not retransmitted: the SA ends either way). A redirect keeps
// the connection (PAD and SPD entries, §3): only the gateway's address changes.
// A client follows at most `maxRedirects` within `loopPeriod` (§7); past that
// the set-up fails, counted as refused.loop. A gateway redirects only peers
// that sent REDIRECT_SUPPORTED or REDIRECTED_FROM (§3), to where the placement
// hook (redirect-policy.ts) says; at IKE_SA_INIT before any state or key
// exchange, at IKE_AUTH after verifying the peer's AUTH and instead of any
// Child SA (§6). In an established IKE SA (§5) the gateway sends REDIRECT in an
// INFORMATIONAL request (protected, so without nonce data); the client answers,
// sets up an IKE SA with the new gateway and deletes the old one once the new
// one is up (make before break; the old one stays if the new one fails).
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../wire/constants.js';
import { findNotify, type NotifyPayload, type Payload } from '../wire/payloads.js';
import { decodeGatewayIdentity, encodeGatewayIdentity, gatewayIdentity, gatewayIdentityText, type GatewayIdentity } from '../wire/gateway-identity.js';
import { ipFamily } from '../wire/ip.js';
import { equalBytes } from '../crypto/bytes.js';
import type { IkeContext } from './context.js';
import type { IkeSa, InitiatorExchange, RedirectTrail, ResponderResult } from './ike-sa.js';
import type { ConnectionPolicy } from './policy.js';
import type { Endpoint } from './transport.js';
import { hasNotify, notify } from './payload-builders.js';
import { carriedOn } from './exchanges/ike-rekey.js';
import { sealMessage } from './protect.js';
import { REDIRECTED_SA_LINGER_MS } from './defaults.js';
import { ConfiguredRedirectPolicy, redirectSettings, type RedirectPhase, type RedirectPolicy } from './redirect-policy.js';

/** The placement of a connection's `redirect:` settings, when the engine was given no other. */
const CONFIGURED: RedirectPolicy = new ConfiguredRedirectPolicy();

function countRedirect(engine: IkeContext, key: string): void {
  engine.stats.redirects[key] = (engine.stats.redirects[key] ?? 0) + 1;
}

function placement(engine: IkeContext): RedirectPolicy {
  return engine.redirect.policy ?? CONFIGURED;
}

// ------------------------------------------------------------------ client

/**
 * What our IKE_SA_INIT request announces (§3, §9.1, §9.3): REDIRECTED_FROM with
 * the gateway that sent us here after a redirect, else REDIRECT_SUPPORTED;
 * nothing for a connection that does not follow redirects.
 */
export function redirectSupportNotifies(sa: IkeSa): Payload[] {
  if (!redirectSettings(sa.policy).follow) return [];
  if (sa.redirectTrail) return [notify(NotifyType.REDIRECTED_FROM, encodeGatewayIdentity(sa.redirectTrail.from))];
  return [notify(NotifyType.REDIRECT_SUPPORTED)];
}

export type InitRedirectVerdict = { kind: 'redirect'; to: GatewayIdentity } | { kind: 'drop'; reason: string };

/**
 * A REDIRECT in an IKE_SA_INIT response (§3), judged without changing state:
 * usable only when it carries the nonce of our request; otherwise it is to be
 * discarded while we keep waiting. Undefined when there is none, or when we
 * never announced support (then the response is judged like any other).
 */
export function judgeInitRedirect(sa: IkeSa, payloads: Payload[]): InitRedirectVerdict | undefined {
  const n = findNotify(payloads, NotifyType.REDIRECT);
  if (!n || !redirectSettings(sa.policy).follow) return undefined;
  const decoded = decodeGatewayIdentity(n.data, { nonce: 'required', fqdn: true });
  if (!decoded.ok) return { kind: 'drop', reason: `malformed REDIRECT: ${decoded.error}` };
  if (!sa.nonceI || !equalBytes(decoded.value.nonce!, sa.nonceI)) return { kind: 'drop', reason: 'REDIRECT without the nonce of our request (RFC 5685 §3)' };
  return { kind: 'redirect', to: decoded.value.gateway };
}

/**
 * A REDIRECT in the IKE_AUTH response (§6), called once the gateway's AUTH
 * verified. True when it was acted on: the IKE SA is gone (deleted, the set-up
 * continues towards the new gateway); false when there is none to act on.
 */
export function followAuthRedirect(engine: IkeContext, sa: IkeSa, payloads: Payload[]): boolean {
  const n = findNotify(payloads, NotifyType.REDIRECT);
  if (!n || !redirectSettings(sa.policy).follow) return false;
  // §6: the IKE SA is valid now, and the client SHOULD delete it.
  sendDeleteOnce(engine, sa);
  const decoded = decodeGatewayIdentity(n.data, { nonce: 'absent', fqdn: true });
  if (!decoded.ok) {
    countRedirect(engine, 'refused.malformed');
    engine.deleteIkeSa(sa, `malformed REDIRECT in IKE_AUTH: ${decoded.error}`);
    return true;
  }
  followRedirect(engine, sa, decoded.value.gateway, 'auth');
  return true;
}

/** One INFORMATIONAL Delete of the IKE SA, not waited for: the SA is deleted here right after. */
function sendDeleteOnce(engine: IkeContext, sa: IkeSa): void {
  if (!sa.protectOut) return;
  const del: Payload = { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] };
  const bytes = sealMessage(sa, ExchangeType.INFORMATIONAL, sa.nextRequestId++, false, [del]);
  engine.sendDatagram(sa.local, sa.remote, bytes);
}

/**
 * Go where a REDIRECT says (§3, §6): a new IKE SA of the same connection to
 * the new gateway, with REDIRECTED_FROM naming the one that sent us; `sa` is
 * deleted. Refused past the loop bound (§7).
 */
export function followRedirect(engine: IkeContext, sa: IkeSa, to: GatewayIdentity, phase: RedirectPhase): void {
  const trail = redirectTrail(engine, sa, to, phase);
  const target = gatewayIdentityText(to);
  if (!trail) {
    engine.deleteIkeSa(sa, `redirect to ${target} refused: ${redirectSettings(sa.policy).maxRedirects} redirects within ${redirectSettings(sa.policy).loopPeriod / 1000} s already (RFC 5685 §7)`);
    return;
  }
  const next = startRedirected(engine, sa, to, trail).then((r) => r.next);
  next.catch(() => {});
  engine.emit('ike-redirected', sa, next, target);
  engine.deleteIkeSa(sa, `redirected to ${target} (RFC 5685 ${phase === 'init' ? '§3' : '§6'})`);
}

/**
 * The trail of the set-up `sa` continues with one more redirect, counted as
 * followed; undefined (counted as refused.loop) past the bound (§7).
 */
function redirectTrail(engine: IkeContext, sa: IkeSa, to: GatewayIdentity, phase: RedirectPhase | 'established'): RedirectTrail | undefined {
  const settings = redirectSettings(sa.policy);
  const now = engine.clock.now();
  const recent = (sa.redirectTrail?.times ?? []).filter((t) => now - t < settings.loopPeriod);
  if (recent.length >= settings.maxRedirects) {
    countRedirect(engine, 'refused.loop');
    return undefined;
  }
  countRedirect(engine, `followed.${phase}`);
  engine.log.info({ ike: sa.id, conn: sa.name, from: sa.remote.address, to: gatewayIdentityText(to), phase }, 'redirected by the gateway (RFC 5685)');
  // The address we sent to is an IP literal: REDIRECTED_FROM carries it (§9.3).
  return { from: gatewayIdentity(sa.remote.address)!, times: [...recent, now] };
}

/**
 * The new IKE SA towards `to` (resolving an FQDN first), and the promise of
 * its establishment; rejects when it cannot be started.
 */
async function startRedirected(engine: IkeContext, old: IkeSa, to: GatewayIdentity, trail: RedirectTrail): Promise<{ next: IkeSa; up: Promise<IkeSa> }> {
  let address: string | undefined = to.kind === 'fqdn' ? undefined : to.address;
  if (to.kind === 'fqdn') {
    address = engine.redirect.resolveName ? await engine.redirect.resolveName(to.name).catch(() => undefined) : undefined;
    if (address === undefined) {
      countRedirect(engine, 'refused.unresolved');
      throw new Error(`redirected to ${to.name}, which does not resolve`);
    }
  }
  const remote: Endpoint = { address: address!, port: old.policy.remotePort };
  const routed = await engine.redirect.localAddressTo?.(remote).catch(() => undefined);
  const local = routed ?? (ipFamily(old.local.address) === ipFamily(remote.address) ? old.local.address : undefined);
  if (local === undefined) {
    countRedirect(engine, 'refused.unroutable');
    throw new Error(`redirected to ${remote.address}: no local address towards it`);
  }
  const up = engine.initiate(old.policy.name, { remote, local: { address: local, port: engine.ports.ike }, redirectTrail: trail });
  up.catch(() => {});
  const next = engine.ikeSas().find((s) => s.redirectTrail === trail);
  if (!next) return up.then(() => Promise.reject(new Error(`no IKE SA started towards ${remote.address}`)));
  return { next, up };
}

/**
 * Client, established IKE SA (§5): the gateway's INFORMATIONAL request carries
 * N(REDIRECT) without nonce data. Only the original responder may redirect the
 * original initiator (§10). Returns what to do once the request is answered.
 */
export function redirectRequested(engine: IkeContext, sa: IkeSa, payloads: Payload[]): (() => void) | undefined {
  const n = findNotify(payloads, NotifyType.REDIRECT);
  if (!n || !sa.mobikeInitiator || sa.state !== 'established' || !redirectSettings(sa.policy).follow) return undefined;
  const decoded = decodeGatewayIdentity(n.data, { nonce: 'absent', fqdn: true });
  if (!decoded.ok) {
    countRedirect(engine, 'refused.malformed');
    engine.log.warn({ ike: sa.id, reason: decoded.error }, 'REDIRECT in an INFORMATIONAL request does not decode; ignored');
    return undefined;
  }
  return () => moveToGateway(engine, sa, decoded.value.gateway);
}

/** IKE SAs whose move to another gateway (§5) is under way: a second REDIRECT meanwhile is not followed. */
const moving = new WeakSet<IkeSa>();

/** §5: an IKE SA with the new gateway first, then the old one deleted (make before break). */
function moveToGateway(engine: IkeContext, old: IkeSa, to: GatewayIdentity): void {
  const target = gatewayIdentityText(to);
  if (moving.has(old)) return engine.log.warn({ ike: old.id, to: target }, 'redirect ignored: this IKE SA is moving to another gateway already');
  const trail = redirectTrail(engine, old, to, 'established');
  if (!trail) return engine.log.warn({ ike: old.id, to: target }, 'redirect refused: too many redirects (RFC 5685 §7); the IKE SA stays');
  // §7: the bound counts every redirect this connection followed, a later one on this same IKE SA too.
  old.redirectTrail = trail;
  moving.add(old);
  startRedirected(engine, old, to, trail)
    .then((r) => r.up)
    .then(
      () => {
        // The IKE SA the REDIRECT came on, or the successor an IKE SA rekey made of it meanwhile.
        const current = carriedOn(engine, old);
        if (current) engine.closeIkeSa(current);
      },
      (err: Error) => engine.log.warn({ ike: old.id, to: target, reason: err.message }, 'no IKE SA with the gateway we were redirected to; the old one stays'),
    )
    .finally(() => moving.delete(old));
}

/** The gateway's INFORMATIONAL request with N(REDIRECT) in an established IKE SA (§5). */
class RedirectInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (REDIRECT)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  constructor(
    private readonly to: GatewayIdentity,
    private readonly done: (answered: boolean) => void,
  ) {}

  build(): Payload[] {
    return [notify(NotifyType.REDIRECT, encodeGatewayIdentity(this.to))];
  }

  process(): void {
    this.done(true);
  }

  abort(): void {
    this.done(false);
  }
}

/**
 * Gateway (§5): redirect the peer of an established IKE SA to `to`. Resolves
 * true once the peer acknowledged (it then sets up an IKE SA there and deletes
 * this one), false when it did not answer. Refused (an Error) for a peer that
 * did not announce support (§3), or when we are not the original responder (§10).
 */
export function redirectIkeSa(engine: IkeContext, sa: IkeSa, to: GatewayIdentity): Promise<boolean> {
  if (sa.state !== 'established') return Promise.reject(new Error(`IKE SA ${sa.id} is not established`));
  if (!sa.peerRedirect) return Promise.reject(new Error(`the peer of IKE SA ${sa.id} did not announce REDIRECT_SUPPORTED (RFC 5685 §3)`));
  if (sa.mobikeInitiator) return Promise.reject(new Error(`IKE SA ${sa.id}: only the original responder redirects (RFC 5685 §10)`));
  countRedirect(engine, 'sent.established');
  engine.log.info({ ike: sa.id, peer: sa.peerKey, to: gatewayIdentityText(to) }, 'redirecting peer of an established IKE SA (RFC 5685 §5)');
  return new Promise((resolve) => engine.queueExchange(sa, new RedirectInitiator(to, resolve)));
}

// ------------------------------------------------------------------ gateway

/** What the peer's IKE_SA_INIT request says about redirection (§3, §9.1, §9.3). */
export interface PeerRedirectSupport {
  /** REDIRECT_SUPPORTED, or REDIRECTED_FROM (which implies it): only such a peer may be redirected. */
  supported: boolean;
  redirectedFrom: GatewayIdentity | undefined;
}

export function peerRedirectSupport(engine: IkeContext, payloads: Payload[]): PeerRedirectSupport {
  const from = findNotify(payloads, NotifyType.REDIRECTED_FROM);
  let redirectedFrom: GatewayIdentity | undefined;
  if (from) {
    const decoded = decodeGatewayIdentity(from.data, { nonce: 'absent', fqdn: false });
    if (decoded.ok) redirectedFrom = decoded.value.gateway;
    else engine.log.debug({ reason: decoded.error }, 'REDIRECTED_FROM does not decode; ignored');
  }
  return { supported: from !== undefined || hasNotify(payloads, NotifyType.REDIRECT_SUPPORTED), redirectedFrom };
}

/**
 * Gateway, IKE_SA_INIT (§3): N(REDIRECT, gateway, Ni data) when the placement
 * hook sends this peer elsewhere, or undefined to serve it here. Asked before
 * any state or key exchange, and never for a peer without support.
 */
export function initRedirect(engine: IkeContext, support: PeerRedirectSupport, policy: ConnectionPolicy, local: Endpoint, remote: Endpoint, nonceI: Uint8Array): NotifyPayload | undefined {
  if (!support.supported) return undefined;
  const to = placement(engine).choose({ policy, local, remote, ...(support.redirectedFrom ? { redirectedFrom: support.redirectedFrom } : {}) }, 'init');
  if (!to) return undefined;
  countRedirect(engine, 'sent.init');
  engine.log.info({ conn: policy.name, remote: remote.address, to: gatewayIdentityText(to) }, 'redirecting peer in IKE_SA_INIT (RFC 5685 §3)');
  return notify(NotifyType.REDIRECT, encodeGatewayIdentity(to, nonceI));
}

/** Gateway, IKE_AUTH (§6): where the placement hook sends this authenticated peer, or undefined to serve it here. */
export function authRedirectTarget(engine: IkeContext, sa: IkeSa): GatewayIdentity | undefined {
  if (!sa.peerRedirect) return undefined;
  const peer = { policy: sa.policy, local: sa.local, remote: sa.remote, ...(sa.peerKey ? { peerId: sa.peerKey } : {}), ...(sa.redirectedFrom ? { redirectedFrom: sa.redirectedFrom } : {}) };
  return placement(engine).choose(peer, 'auth');
}

/**
 * The IKE_AUTH response that redirects (§6): our identity and AUTH (so the
 * client can trust the REDIRECT), N(REDIRECT) without nonce data, and no
 * Child SA; the IKE SA is forgotten once answered.
 */
export function authRedirectResponse(engine: IkeContext, sa: IkeSa, authPayloads: Payload[], to: GatewayIdentity): ResponderResult {
  const target = gatewayIdentityText(to);
  countRedirect(engine, 'sent.auth');
  engine.log.info({ ike: sa.id, conn: sa.name, peer: sa.peerKey, to: target }, 'redirecting peer in IKE_AUTH (RFC 5685 §6)');
  return {
    payloads: [...authPayloads, notify(NotifyType.REDIRECT, encodeGatewayIdentity(to))],
    // §6: the client SHOULD delete the IKE SA, which is valid (both AUTHs verified): its Delete is
    // answered, not dropped as an unknown SPI; a client that sends none loses the SA after a while.
    after: () => {
      sa.redirectedAway = true;
      sa.timers.add(engine.clock.schedule(REDIRECTED_SA_LINGER_MS, () => engine.deleteIkeSa(sa, `redirected to ${target} (RFC 5685 §6); no Delete from the client`)));
    },
  };
}

/** An IKE SA redirected in IKE_AUTH takes INFORMATIONAL requests (§6: the client's Delete) though it never came up. */
export function awaitsRedirectDelete(sa: IkeSa, exchangeType: number): boolean {
  return sa.redirectedAway && exchangeType === ExchangeType.INFORMATIONAL;
}
