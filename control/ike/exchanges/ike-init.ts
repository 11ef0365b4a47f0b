// IKE_SA_INIT (RFC 7296 §1.2): negotiate the IKE SA's algorithms, exchange
// nonces and key-exchange values, detect NATs (§2.23), and answer COOKIE
// (§2.6) and INVALID_KE_PAYLOAD (§1.2) challenges.
//
//   Initiator                         Responder
//   HDR, SAi1, KEi, Ni,
//     [N(NAT_DETECTION_*)]  -->
//                           <--  HDR, SAr1, KEr, Nr, [N(NAT_DETECTION_*)]
//
// This message travels unprotected: the responder keeps only half-open state
// and the initiator checks everything it accepts against what it offered. The
// half-open table is bounded (architecture §4.6): past the COOKIE threshold,
// or past its own per-source limit, a source must prove its address with a
// COOKIE (RFC 7296 §2.6); while the table is under that pressure half-open SAs
// live shorter; and a proven source is not refused for want of room: it takes
// the place of its own oldest half-open SA, or, in a full table, of the oldest
// one of the source holding the most (only a source that already holds as
// many as any other is refused there).
import { findPayload, findNotifies } from '../../wire/payloads.js';
import { ExchangeType, HeaderFlag, IKE_VERSION, KeGroup, NotifyType, PayloadType, TransformType, notifyName } from '../../wire/constants.js';
import type { IkeMessage } from '../../wire/message.js';
import { encodeMessage } from '../../wire/message.js';
import type { WireError } from '../../wire/result.js';
import type { Payload, Proposal } from '../../wire/payloads.js';
import { createKeyExchange, keyExchangeLength } from '../../crypto/keyexchange.js';
import { deriveIkeKeys, isValidNonceLength } from '../../crypto/keys.js';
import { makeCookie, verifyCookie } from '../../crypto/cookie.js';
import { decodeSignatureHashes, encodeSignatureHashes, SUPPORTED_SIGNATURE_HASHES } from '../../crypto/auth.js';
import type { IkeContext } from '../context.js';
import { IkeSa, type InitiatorExchange, spi64Hex } from '../ike-sa.js';
import type { ConnectionPolicy } from '../policy.js';
import { acceptChosenProposal, buildProposals, chosenProposal, preferredKeGroup, selectProposal } from '../proposals.js';
import type { NegotiatedSuite } from '../proposals.js';
import type { Datagram, Endpoint } from '../transport.js';
import { errorNotify, notify, u16, u16Bytes } from '../payload-builders.js';
import { installIkeKeys } from '../ike-keys.js';
import { authRefusal, certreqPayloads, recordPeerCertreq } from '../authentication.js';
import { fragmentationNotify, recordPeerFragmentation } from '../fragmentation.js';
import { detectNat, natDetectionPayloads } from '../nat-detection.js';
import { NONCE_LENGTH } from '../defaults.js';
import { equalBytes, readU32 } from '../../crypto/bytes.js';
import { followRedirect, initRedirect, judgeInitRedirect, peerRedirectSupport, redirectSupportNotifies } from '../redirect.js';
import type { GatewayIdentity } from '../../wire/gateway-identity.js';

const EMPTY = new Uint8Array(0);
const ZERO_SPI = new Uint8Array(8);
/** Nonce length we send: 32 octets, at least half of every PRF key size we offer (RFC 7296 §2.10). */
/** Bound on COOKIE and INVALID_KE_PAYLOAD round trips before giving up. */
const MAX_INIT_RETRIES = 3;

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/** KE groups the configured proposals allow, in order. */
function configuredGroups(specs: ConnectionPolicy['ike']): number[] {
  const out: number[] = [];
  for (const s of specs) for (const t of s.transforms) if (t.type === TransformType.KE && t.id !== KeGroup.NONE && !out.includes(t.id)) out.push(t.id);
  return out;
}

/**
 * SKEYSEED and SK_* from both nonces, the SPIs and the shared secret (RFC 7296
 * §2.14), installed on `sa`; SKEYSEED and the shared secret are wiped here.
 */
function deriveAndInstallKeys(engine: IkeContext, sa: IkeSa, suite: NegotiatedSuite, sharedSecret: Uint8Array): void {
  const { skeyseed, keys } = deriveIkeKeys(
    { encr: suite.encr, encrKeyLength: suite.encrKeyLength, prf: suite.prf!, integ: suite.integ ?? 0 },
    { nonceI: sa.nonceI!, nonceR: sa.nonceR!, sharedSecret, spiI: sa.spiI, spiR: sa.spiR },
  );
  skeyseed.fill(0);
  sharedSecret.fill(0);
  installIkeKeys(engine, sa, keys);
}

// ------------------------------------------------------------------ initiator

/** What an IKE_SA_INIT response asks of the initiator (see IkeSaInitInitiator.judge). */
type InitVerdict =
  | { kind: 'drop'; reason: string }
  | { kind: 'cookie'; cookie: Uint8Array }
  | { kind: 'group'; group: number }
  | { kind: 'redirect'; to: GatewayIdentity }
  | { kind: 'accept'; suite: NegotiatedSuite; spiR: Uint8Array; nonceR: Uint8Array; shared: Uint8Array; signatureHashes: number[] };

export class IkeSaInitInitiator implements InitiatorExchange {
  readonly name = 'IKE_SA_INIT';
  readonly exchangeType = ExchangeType.IKE_SA_INIT;
  private group: number | undefined;
  private cookie: Uint8Array | undefined;
  private offered: Proposal[] = [];
  private retries = 0;
  /** The verdict unusable() reached on the response process() is about to take. */
  private verdict: { raw: Uint8Array; verdict: InitVerdict } | undefined;

  constructor(private readonly engine: IkeContext) {}

  build(sa: IkeSa): Payload[] {
    this.group ??= preferredKeGroup(sa.policy.ike);
    if (this.group === undefined) throw new Error(`connection "${sa.name}" offers no key exchange group`);
    if (!sa.keyExchange || sa.keyExchange.group !== this.group) {
      sa.keyExchange?.destroy();
      sa.keyExchange = createKeyExchange(this.group, { random: this.engine.random });
    }
    sa.nonceI ??= this.engine.random(NONCE_LENGTH);
    this.offered = buildProposals(sa.policy.ike, EMPTY);
    const payloads: Payload[] = [];
    // RFC 7296 §2.6: the COOKIE notify comes first.
    if (this.cookie) payloads.push(notify(NotifyType.COOKIE, this.cookie));
    payloads.push(
      { type: PayloadType.SA, proposals: this.offered },
      { type: PayloadType.KE, group: this.group, data: sa.keyExchange.publicKey },
      { type: PayloadType.NONCE, data: sa.nonceI },
      ...natDetectionPayloads(sa.spiI, ZERO_SPI, sa.local, sa.remote, sa.policy.forceEncap ? this.engine.random : undefined),
      notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, encodeSignatureHashes(SUPPORTED_SIGNATURE_HASHES)),
      // RFC 5685 §3: REDIRECT_SUPPORTED, or REDIRECTED_FROM after a redirect.
      ...redirectSupportNotifies(sa),
      // RFC 7383 §2.3: we can receive (and send) IKE fragments.
      ...fragmentationNotify(sa.policy),
    );
    return payloads;
  }

  /** What to do with an IKE_SA_INIT response; computes the shared secret but changes no SA state. */
  private judge(sa: IkeSa, payloads: Payload[], raw: Uint8Array): InitVerdict {
    const drop = (reason: string): InitVerdict => ({ kind: 'drop', reason });
    // RFC 5685 §3: a REDIRECT counts only with our nonce in it.
    const redirect = judgeInitRedirect(sa, payloads);
    if (redirect) return redirect;
    const cookie = findNotifies(payloads, NotifyType.COOKIE)[0];
    if (cookie) {
      if (cookie.data.length < 1 || cookie.data.length > 64 || this.retries >= MAX_INIT_RETRIES) return drop('bad or repeated COOKIE challenge');
      return { kind: 'cookie', cookie: copy(cookie.data) };
    }
    const invalidKe = findNotifies(payloads, NotifyType.INVALID_KE_PAYLOAD)[0];
    if (invalidKe) {
      const group = u16(invalidKe.data);
      if (group === undefined || group === this.group || !configuredGroups(sa.policy.ike).includes(group) || this.retries >= MAX_INIT_RETRIES) {
        return drop(`INVALID_KE_PAYLOAD asks for group ${group}, which we do not offer`);
      }
      return { kind: 'group', group };
    }
    const error = errorNotify(payloads);
    if (error) return drop(`responder answered ${notifyName(error.notifyType)}`);

    const saPayload = findPayload(payloads, PayloadType.SA);
    const ke = findPayload(payloads, PayloadType.KE);
    const nonce = findPayload(payloads, PayloadType.NONCE);
    if (!saPayload || !ke || !nonce) return drop('IKE_SA_INIT response lacks SA, KE or Nonce');
    const suite = acceptChosenProposal(saPayload.proposals, this.offered);
    if (!suite || suite.ke !== this.group || suite.prf === undefined) return drop('responder chose a proposal we did not offer');
    if (ke.group !== this.group || ke.data.length !== keyExchangeLength(ke.group)) return drop('KE payload does not match the chosen group');
    if (!isValidNonceLength(suite.prf, nonce.data.length)) return drop('responder nonce has an invalid length');
    const spiR = raw.subarray(8, 16);
    if (spiR.every((b) => b === 0)) return drop('responder SPI is zero');
    // RFC 7427 §4: with these hashes no IKE_AUTH request can be made that this peer accepts.
    const signatureHashes = peerSignatureHashes(payloads);
    const refusal = authRefusal(sa, signatureHashes);
    if (refusal) return drop(refusal);

    const shared = sa.keyExchange!.computeSharedSecret(ke.data);
    if (!shared.ok) return drop(`invalid key exchange value: ${shared.error}`);
    return { kind: 'accept', suite, spiR: copy(spiR), nonceR: copy(nonce.data), shared: shared.value, signatureHashes };
  }

  /** A judged but unprocessed response: its shared secret is wiped. */
  private discardVerdict(): void {
    if (this.verdict?.verdict.kind === 'accept') this.verdict.verdict.shared.fill(0);
    this.verdict = undefined;
  }

  abort(): void {
    this.discardVerdict();
  }

  /**
   * Why this IKE_SA_INIT response cannot be used, or undefined when process()
   * may take it. Changes no SA state: the response is unauthenticated (RFC 7296
   * §2.21.1), so the engine drops an unusable one and keeps the request
   * outstanding, in case the genuine response is still on its way.
   */
  unusable(sa: IkeSa, payloads: Payload[], raw: Uint8Array): string | undefined {
    this.discardVerdict();
    const verdict = this.judge(sa, payloads, raw);
    if (verdict.kind === 'drop') return verdict.reason;
    this.verdict = { raw, verdict };
    return undefined;
  }

  process(sa: IkeSa, payloads: Payload[], raw: Uint8Array): void | 'retry' {
    const verdict = this.verdict?.raw === raw ? this.verdict.verdict : this.judge(sa, payloads, raw);
    this.verdict = undefined;
    // Only reached without unusable() first (the engine always screens IKE_SA_INIT responses).
    if (verdict.kind === 'drop') return this.engine.deleteIkeSa(sa, verdict.reason);

    // RFC 7296 §2.6: a COOKIE challenge; send the request again with it.
    if (verdict.kind === 'cookie') {
      this.retries++;
      this.cookie = verdict.cookie;
      return 'retry';
    }
    // RFC 5685 §3: the gateway sends us to another one; this IKE SA ends without keys.
    if (verdict.kind === 'redirect') return followRedirect(this.engine, sa, verdict.to, 'init');
    // RFC 7296 §1.2: the responder wants another group we offered; retry with it.
    if (verdict.kind === 'group') {
      this.retries++;
      this.engine.log.info({ ike: sa.id, group: verdict.group }, 'responder asked for another key exchange group');
      this.group = verdict.group;
      return 'retry';
    }
    const { suite, spiR, nonceR, shared } = verdict;
    sa.spiR = spiR;
    sa.suite = suite;
    sa.nonceR = nonceR;
    sa.initResponse = copy(raw);
    sa.peerSignatureHashes = verdict.signatureHashes;
    // RFC 7296 §3.7: the responder may name the CAs it trusts here already.
    recordPeerCertreq(sa, payloads);
    recordPeerFragmentation(sa, payloads);
    deriveAndInstallKeys(this.engine, sa, suite, shared);

    const nat = detectNat(payloads, sa.spiI, sa.spiR, sa.local, sa.remote);
    // We always send NAT-D; with the responder's, NAT traversal is on (RFC 7296 §2.23, RFC 4555 §3.9).
    sa.natDetectionExchanged = nat !== undefined;
    if (nat) {
      sa.natLocal = nat.natLocal || !!sa.policy.forceEncap;
      sa.natRemote = nat.natRemote;
    }
    // RFC 7296 §2.23 (and RFC 4555 §3.3 for MOBIKE): move to the NAT-T port.
    if ((sa.natLocal || sa.natRemote || sa.policy.mobike) && sa.remote.port === this.engine.ports.ike) {
      sa.local = { ...sa.local, port: this.engine.ports.nat };
      sa.remote = { ...sa.remote, port: this.engine.ports.nat };
    }
    this.engine.log.debug({ ike: sa.id, spiR: spi64Hex(sa.spiR), natLocal: sa.natLocal, natRemote: sa.natRemote }, 'IKE_SA_INIT done');
    this.engine.startIkeAuth(sa);
  }
}

// ------------------------------------------------------------------ responder

/** The hash algorithms of the peer's SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4); none if it sent none. */
function peerSignatureHashes(payloads: Payload[]): number[] {
  const n = findNotifies(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)[0];
  return n ? decodeSignatureHashes(n.data) : [];
}

function sendInitError(engine: IkeContext, msg: IkeMessage, d: Datagram, payloads: Payload[]): void {
  const bytes = encodeMessage(
    { spiI: msg.header.spiI, spiR: ZERO_SPI, version: IKE_VERSION, exchangeType: ExchangeType.IKE_SA_INIT, flags: HeaderFlag.RESPONSE, messageId: 0 },
    payloads,
  );
  engine.sendDatagram(d.local, d.remote, bytes);
}

/**
 * An IKE_SA_INIT request that does not decode: answer the two errors RFC 7296
 * §2.5 asks for, unauthenticated and without state — INVALID_MAJOR_VERSION
 * (carrying version 2.0 in the header) and UNSUPPORTED_CRITICAL_PAYLOAD (with
 * the offending payload type). Anything else is only dropped.
 */
export function rejectInitRequest(engine: IkeContext, d: Datagram, error: WireError): void {
  if (error.code !== 'INVALID_MAJOR_VERSION' && error.code !== 'UNSUPPORTED_CRITICAL_PAYLOAD') return;
  // The header fields we need sit at fixed offsets (RFC 7296 §3.1), whatever the version says.
  const b = d.bytes;
  if (b.length < 28) return;
  const spiI = b.slice(0, 8);
  const spiR = b.subarray(8, 16);
  const version = b[17]!;
  const exchangeType = b[18]!;
  const flags = b[19]!;
  const messageId = readU32(b, 20);
  const isInitRequest = exchangeType === ExchangeType.IKE_SA_INIT && (flags & HeaderFlag.RESPONSE) === 0 && messageId === 0 && spiR.every((x) => x === 0);
  if (!isInitRequest) return;
  // An IKEv1 packet (major version 1) gets no IKEv2 answer at all.
  if (error.code === 'INVALID_MAJOR_VERSION' && version >> 4 < 2) return;
  const bytes = encodeMessage(
    { spiI, spiR: ZERO_SPI, version: IKE_VERSION, exchangeType, flags: HeaderFlag.RESPONSE, messageId: 0 },
    [notify(error.notify, error.data)],
  );
  engine.sendDatagram(d.local, d.remote, bytes);
}

/** Whether `address` is in a connection's address list: empty, %any and the unspecified addresses (0.0.0.0, ::) match any. */
function addressMatches(list: string[], address: string): boolean {
  return list.length === 0 || list.includes('%any') || list.includes(address) || list.includes('0.0.0.0') || list.includes('::');
}

/** Connections that could own an IKE_SA_INIT from `remote` to `local` (before any identity is known). */
export function policiesForPath(engine: IkeContext, local: Endpoint, remote: Endpoint): ConnectionPolicy[] {
  return engine.policies.filter((p) => addressMatches(p.localAddrs, local.address) && addressMatches(p.remoteAddrs, remote.address));
}

/** The suite to accept: prefer one whose KE group is the one the initiator already sent (RFC 7296 §1.2). */
function chooseSuite(policies: ConnectionPolicy[], offered: Proposal[], keGroup: number): { policy: ConnectionPolicy; suite: NegotiatedSuite } | { wantGroup: number } | undefined {
  for (const policy of policies) {
    const specs = policy.ike.map((s) => ({ ...s, transforms: s.transforms.filter((t) => t.type !== TransformType.KE || t.id === keGroup) }));
    const suite = selectProposal(offered, specs);
    if (suite && suite.ke === keGroup && suite.prf !== undefined) return { policy, suite };
  }
  for (const policy of policies) {
    const suite = selectProposal(offered, policy.ike);
    if (suite?.ke !== undefined) return { wantGroup: suite.ke };
  }
  return undefined;
}

export function respondIkeSaInit(engine: IkeContext, msg: IkeMessage, d: Datagram): void {
  const h = msg.header;
  if (h.messageId !== 0 || h.spiR.some((b) => b !== 0)) return engine.countDrop('malformed', 'IKE_SA_INIT request with a message ID or responder SPI');
  const key = `${d.remote.address}|${d.remote.port}|${spi64Hex(h.spiI)}`;
  const existing = engine.halfOpen.get(key);
  if (existing) {
    // A retransmitted IKE_SA_INIT request: the same response again (RFC 7296 §2.1).
    if (existing.initResponse && existing.initRequest && equalBytes(existing.initRequest, d.bytes)) {
      engine.stats.responsesFromCache++;
      engine.sendDatagram(d.local, d.remote, existing.initResponse);
    } else {
      engine.countDrop('malformed', 'IKE_SA_INIT for a half-open SA that differs from the first');
    }
    return;
  }
  const authenticated = engine.authenticatedInits.get(key);
  if (authenticated && authenticated.state !== 'dead') {
    // RFC 7296 §2.1: IKE_AUTH has been received for this SA; a late IKE_SA_INIT copy is ignored.
    return engine.countDrop('late-retransmit', key);
  }
  engine.expireHalfOpenUnderPressure();

  const payloads = msg.payloads;
  const nonce = findPayload(payloads, PayloadType.NONCE);
  // RFC 7296 §2.6: under load, or from a source at its half-open limit, demand a stateless cookie before
  // keeping any state; a forged source address cannot answer one, so it can neither hold slots nor evict.
  const source = d.remote.address;
  const pressure = Math.min(engine.limits.halfOpenCookieThreshold, engine.limits.halfOpenMax);
  if (engine.halfOpenCount() >= pressure || engine.halfOpenFrom(source) >= engine.limits.halfOpenPerSource) {
    const presented = payloads[0]?.type === PayloadType.NOTIFY && payloads[0].notifyType === NotifyType.COOKIE ? payloads[0].data : undefined;
    const ok = presented !== undefined && nonce !== undefined && verifyCookie(engine.cookieSecret, presented, nonce.data, d.remote.address, h.spiI);
    if (!ok) {
      engine.countDrop('cookie', d.remote.address);
      if (nonce) sendInitError(engine, msg, d, [notify(NotifyType.COOKIE, makeCookie(engine.cookieSecret, nonce.data, d.remote.address, h.spiI))]);
      return;
    }
  }

  // A full table keeps its slots from a source that already holds as many as any other (the newcomer is refused);
  // anyone else takes a slot once the request is usable.
  if (engine.refusesHalfOpen(source)) return engine.countDrop('half-open-limit', source);

  const saPayload = findPayload(payloads, PayloadType.SA);
  const ke = findPayload(payloads, PayloadType.KE);
  if (!saPayload || !ke || !nonce) {
    engine.countDrop('syntax', 'IKE_SA_INIT without SA, KE or Nonce');
    return sendInitError(engine, msg, d, [notify(NotifyType.INVALID_SYNTAX)]);
  }
  const policies = policiesForPath(engine, d.local, d.remote);
  if (policies.length === 0) {
    engine.countDrop('no-policy', `${d.remote.address} -> ${d.local.address}`);
    return sendInitError(engine, msg, d, [notify(NotifyType.NO_PROPOSAL_CHOSEN)]);
  }
  const choice = chooseSuite(policies, saPayload.proposals, ke.group);
  if (!choice) return sendInitError(engine, msg, d, [notify(NotifyType.NO_PROPOSAL_CHOSEN)]);
  if ('wantGroup' in choice) return sendInitError(engine, msg, d, [notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(choice.wantGroup))]);
  const { policy, suite } = choice;
  if (ke.data.length !== keyExchangeLength(ke.group) || !isValidNonceLength(suite.prf!, nonce.data.length)) {
    return sendInitError(engine, msg, d, [notify(NotifyType.INVALID_SYNTAX)]);
  }
  // RFC 5685 §3: a peer that announced support may be sent elsewhere, before any state or key exchange.
  const redirectSupport = peerRedirectSupport(engine, payloads);
  const redirect = initRedirect(engine, redirectSupport, policy, d.local, d.remote, nonce.data);
  if (redirect) return sendInitError(engine, msg, d, [redirect]);

  const keyExchange = createKeyExchange(ke.group, { random: engine.random });
  const shared = keyExchange.computeSharedSecret(ke.data);
  if (!shared.ok) {
    keyExchange.destroy();
    return sendInitError(engine, msg, d, [notify(NotifyType.INVALID_SYNTAX)]);
  }
  // Only now, with the request proven and usable, may it take another's slot.
  engine.makeRoomForHalfOpen(source);
  const sa = new IkeSa('responder', policy, { ...d.local }, { ...d.remote }, copy(h.spiI), engine.newIkeSpi(), engine.clock.now());
  sa.keyExchange = keyExchange;
  sa.suite = suite;
  sa.nonceI = copy(nonce.data);
  sa.nonceR = engine.random(NONCE_LENGTH);
  sa.peerSignatureHashes = peerSignatureHashes(payloads);
  sa.initRequest = copy(d.bytes);
  sa.peerRedirect = redirectSupport.supported;
  sa.redirectedFrom = redirectSupport.redirectedFrom;
  const nat = detectNat(payloads, sa.spiI, ZERO_SPI, d.local, d.remote);
  // NAT-D in the request gets NAT-D in the response: NAT traversal is on (RFC 7296 §2.23, RFC 4555 §3.9).
  sa.natDetectionExchanged = nat !== undefined;
  if (nat) {
    sa.natLocal = nat.natLocal;
    sa.natRemote = nat.natRemote;
  }
  deriveAndInstallKeys(engine, sa, suite, shared.value);

  const response: Payload[] = [
    { type: PayloadType.SA, proposals: [chosenProposal(suite, EMPTY)] },
    { type: PayloadType.KE, group: ke.group, data: keyExchange.publicKey },
    { type: PayloadType.NONCE, data: sa.nonceR },
  ];
  if (nat) response.push(...natDetectionPayloads(sa.spiI, sa.spiR, d.local, d.remote, policy.forceEncap ? engine.random : undefined));
  if (nat && policy.forceEncap) sa.natLocal = true;
  response.push(notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, encodeSignatureHashes(SUPPORTED_SIGNATURE_HASHES)));
  // RFC 7296 §3.7: CERTREQ in the IKE_SA_INIT response, as strongSwan sends it.
  response.push(...certreqPayloads(policy));
  // RFC 7383 §2.3: the responder announces fragmentation only to an initiator that did.
  recordPeerFragmentation(sa, payloads);
  if (sa.peerFragmentation) response.push(...fragmentationNotify(policy));
  const bytes = encodeMessage(
    { spiI: sa.spiI, spiR: sa.spiR, version: IKE_VERSION, exchangeType: ExchangeType.IKE_SA_INIT, flags: HeaderFlag.RESPONSE, messageId: 0 },
    response,
  );
  sa.initResponse = bytes;
  sa.peerRequestId = 1;
  engine.registerResponderSa(sa, key);
  engine.log.debug({ ike: sa.id, conn: policy.name, remote: d.remote.address }, 'answered IKE_SA_INIT');
  engine.sendDatagram(d.local, d.remote, bytes);
}
