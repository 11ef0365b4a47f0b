// IKE_AUTH (RFC 7296 §1.2, §2.15): prove identities, and create the first
// Child SA (§2.9 traffic selectors, §2.19 virtual IP via CP). Also where MOBIKE
// (RFC 4555 §4.2.1) and cloning (RFC 7791 §5.1) support is announced.
//
//   Initiator                         Responder
//   HDR, SK {IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, [CP(CFG_REQUEST),]
//       SAi2, TSi, TSr, [N(MOBIKE_SUPPORTED)], [N(CLONE_IKE_SA_SUPPORTED)]}  -->
//                   <--  HDR, SK {IDr, [CERT,] AUTH, [CP(CFG_REPLY),] SAr2, TSi, TSr,
//                                 [N(MOBIKE_SUPPORTED)], [N(CLONE_IKE_SA_SUPPORTED)]}
//
// CERT (§3.6) carries our certificate chain per send_cert and the peer's
// CERTREQ (§3.7); a peer's chain is validated to our trust anchors before its
// AUTH is verified with the certificate's key (control/ike/authentication.ts).
// An AUTH failure kills the IKE SA; a Child SA failure (NO_PROPOSAL_CHOSEN,
// TS_UNACCEPTABLE, ...) does not (§2.21.2).
import { findNotify, findPayload } from '../../wire/payloads.js';
import { ExchangeType, NotifyType, PayloadType, notifyName } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import { applyConfigReply, configRequest, respondConfig } from '../config-payload.js';
import { formatIdentity, identitiesEqual, identityMatches } from '../identity.js';
import type { IkeContext } from '../context.js';
import type { IkeSa, InitiatorExchange, ResponderResult } from '../ike-sa.js';
import type { ConnectionPolicy } from '../policy.js';
import { AUTH_DOES_NOT_VERIFY, authRefusal, buildAuth, certPayloads, certreqPayloads, peerAuthFailure, recordPeerCertreq } from '../authentication.js';
import { acceptChild, dropOffer, offerChild, offerPayloads, respondChild } from '../child-negotiation.js';
import type { ChildOffer } from '../child-negotiation.js';
import { errorNotify, hasNotify, idPayload, notify } from '../payload-builders.js';
import { firstChildPlacement, hasResourceInfo, offersResourceInfo, placeInitialChild, resourceInfoNotify } from '../per-resource.js';
import { policiesForPath } from './ike-init.js';
import { additionalAddressNotifies, natsProhibited, noNatsAllowedData, peerAddressList } from './mobike.js';
import { selectProposal, chosenProposal } from '../proposals.js';
import { noteIkeAuthChildRefusal } from '../refusals.js';
import { equalBytes } from '../../crypto/bytes.js';
import { authRedirectResponse, authRedirectTarget, followAuthRedirect } from '../redirect.js';

const CHILD_ERRORS: readonly number[] = [
  NotifyType.NO_PROPOSAL_CHOSEN,
  NotifyType.TS_UNACCEPTABLE,
  NotifyType.SINGLE_PAIR_REQUIRED,
  NotifyType.INTERNAL_ADDRESS_FAILURE,
  NotifyType.FAILED_CP_REQUIRED,
  NotifyType.INVALID_SELECTORS,
  NotifyType.NO_ADDITIONAL_SAS,
];

function supportNotifies(policy: ConnectionPolicy, peer?: { mobike: boolean; clone: boolean }): Payload[] {
  const out: Payload[] = [];
  if (policy.mobike && (!peer || peer.mobike)) out.push(notify(NotifyType.MOBIKE_SUPPORTED));
  // RFC 7791 §5.1: in the initiator's first and the responder's last IKE_AUTH message.
  if (policy.cloneSupport && (!peer || peer.clone)) out.push(notify(NotifyType.CLONE_IKE_SA_SUPPORTED));
  return out;
}

/**
 * RFC 4555 §3.4 and §3.9: with MOBIKE, our other addresses, and (initiator,
 * without NAT traversal, i.e. no NAT-D in IKE_SA_INIT) NO_NATS_ALLOWED
 * protecting the addresses in use.
 */
function mobikeAddressNotifies(engine: IkeContext, sa: IkeSa, initiator: boolean): Payload[] {
  if (!sa.policy.mobike) return [];
  const out = additionalAddressNotifies(engine.localAddresses(), sa.local.address).filter((p) => p.type === PayloadType.NOTIFY && p.notifyType !== NotifyType.NO_ADDITIONAL_ADDRESSES);
  if (initiator && natsProhibited(sa)) out.push(notify(NotifyType.NO_NATS_ALLOWED, noNatsAllowedData(sa.local, sa.remote)));
  return out;
}

/** The time certificates are checked at: the engine's injected clock (RFC 5280 §6.1.3). */
function wallTime(engine: IkeContext): number {
  return engine.clock.wallTime?.() ?? Date.now();
}

// ------------------------------------------------------------------ initiator

/** Resolves when `sa` reaches 'established', rejects when it dies first. */
export function waitEstablished(engine: IkeContext, sa: IkeSa): Promise<IkeSa> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      engine.off('ike-up', onUp);
      engine.off('ike-failed', onFail);
      engine.off('ike-down', onFail);
      engine.off('ike-redirected', onRedirect);
    };
    // RFC 5685: a redirected set-up goes on with another IKE SA; what happens to that one settles this.
    const onRedirect = (s: IkeSa, next: Promise<IkeSa>) => {
      if (s !== sa) return;
      cleanup();
      next.then((n) => waitEstablished(engine, n)).then(resolve, reject);
    };
    const onUp = (s: IkeSa) => {
      if (s !== sa) return;
      cleanup();
      resolve(sa);
    };
    const onFail = (s: IkeSa, reason: string) => {
      if (s !== sa) return;
      cleanup();
      reject(new Error(reason));
    };
    engine.on('ike-up', onUp);
    engine.on('ike-failed', onFail);
    engine.on('ike-down', onFail);
    engine.on('ike-redirected', onRedirect);
  });
}

/** Children beyond the first are created with CREATE_CHILD_SA once the IKE SA is up. */
export function startRemainingChildren(engine: IkeContext, sa: IkeSa): void {
  for (const child of sa.policy.children.slice(1)) {
    engine.createChildSa(sa, child.name).catch((err: Error) => {
      engine.log.warn({ ike: sa.id, child: child.name, reason: err.message }, 'could not create Child SA');
    });
  }
}

export class IkeAuthInitiator implements InitiatorExchange {
  readonly name = 'IKE_AUTH';
  readonly exchangeType = ExchangeType.IKE_AUTH;
  private offer: ChildOffer | undefined;

  constructor(private readonly engine: IkeContext) {}

  build(sa: IkeSa): Payload[] {
    sa.setState('authenticating', this.engine.log);
    const policy = sa.policy;
    sa.localId = policy.localId;
    const idi = idPayload(PayloadType.IDi, policy.localId);
    // RFC 7296 §3.6, §3.7: our chain (per send_cert and the CERTREQ of IKE_SA_INIT), then the CAs we trust.
    const payloads: Payload[] = [idi, ...certPayloads(sa)];
    // RFC 7296 §2.4: INITIAL_CONTACT when no other IKE SA with this peer exists.
    const others = this.engine.ikeSas().some((o) => o !== sa && o.policy === policy && o.state === 'established');
    if (!others) payloads.push(notify(NotifyType.INITIAL_CONTACT));
    payloads.push(...certreqPayloads(policy));
    if (policy.remoteId !== 'any') payloads.push(idPayload(PayloadType.IDr, policy.remoteId));
    payloads.push(buildAuth(sa, idi));
    // RFC 7296 §2.19: virtual IPs (IPv4 and/or IPv6) and DNS servers (control/ike/config-payload.ts).
    const cfg = configRequest(policy);
    if (cfg) payloads.push(cfg);
    const firstChild = policy.children[0];
    if (firstChild) {
      this.offer = offerChild(this.engine, sa, firstChild);
      payloads.push(...offerPayloads(this.offer));
      // RFC 9611 §3: ask whether the peer takes per-resource Child SAs (per-resource.ts).
      if (offersResourceInfo(policy, firstChild)) payloads.push(resourceInfoNotify());
    }
    payloads.push(...supportNotifies(policy), ...mobikeAddressNotifies(this.engine, sa, true));
    return payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const engine = this.engine;
    const idr = findPayload(payloads, PayloadType.IDr);
    const auth = findPayload(payloads, PayloadType.AUTH);
    if (!idr || !auth) {
      const error = errorNotify(payloads);
      this.release();
      engine.deleteIkeSa(sa, error ? `responder answered ${notifyName(error.notifyType)}` : 'IKE_AUTH response lacks IDr or AUTH');
      return;
    }
    const peerId = { idType: idr.idType, data: new Uint8Array(idr.data) };
    if (!identityMatches(sa.policy.remoteId, peerId)) {
      this.release();
      engine.deleteIkeSa(sa, `responder identity ${formatIdentity(peerId)} does not match the configured one`);
      return;
    }
    const failure = peerAuthFailure(sa, idr, auth, payloads, wallTime(engine));
    if (failure) {
      this.release();
      // deleteIkeSa logs the reason ('IKE SA failed'): one warning, no stack trace.
      engine.deleteIkeSa(sa, `responder not authenticated (AUTHENTICATION_FAILED): ${failure}`);
      return;
    }
    // RFC 5685 §6: a REDIRECT counts now that the gateway is authenticated; the set-up goes on there.
    if (followAuthRedirect(engine, sa, payloads)) return this.release();
    sa.peerId = peerId;
    sa.peerKey = formatIdentity(peerId);
    sa.peerMobike = sa.policy.mobike && hasNotify(payloads, NotifyType.MOBIKE_SUPPORTED);
    sa.peerClone = sa.policy.cloneSupport && hasNotify(payloads, NotifyType.CLONE_IKE_SA_SUPPORTED);
    sa.peerResourceInfo = this.offer !== undefined && offersResourceInfo(sa.policy, this.offer.child) && hasResourceInfo(payloads);
    if (sa.peerMobike) sa.peerAdditionalAddresses = peerAddressList(payloads) ?? [];
    sa.homeAddress ??= sa.local.address;
    const cp = findPayload(payloads, PayloadType.CP);
    if (cp) applyConfigReply(sa, cp);
    const offer = this.offer;
    this.offer = undefined;
    engine.markEstablished(sa);
    if (!offer) return;
    const childError = payloads.find((p) => p.type === PayloadType.NOTIFY && CHILD_ERRORS.includes(p.notifyType));
    if (childError && childError.type === PayloadType.NOTIFY) {
      dropOffer(engine, offer);
      engine.emit('child-failed', sa, offer.child.name, notifyName(childError.notifyType));
    } else {
      const child = acceptChild(engine, sa, offer, payloads, { nonceI: sa.nonceI!, nonceR: sa.nonceR! });
      if (typeof child === 'string') {
        dropOffer(engine, offer);
        engine.log.warn({ ike: sa.id, child: offer.child.name, reason: child }, 'first Child SA rejected');
        engine.emit('child-failed', sa, offer.child.name, child);
        // RFC 7296 §2.21.2: the IKE SA stands; the peer drops the Child SA we cannot use.
        engine.deleteUnusableChild(sa, offer.spiIn);
      } else {
        // The fallback SA of RFC 9611 §3, or worker 0's parallel SA (per-resource.ts).
        child.placement = firstChildPlacement(sa);
        engine.addChild(child);
      }
    }
    engine.startRemainingChildren(sa);
  }

  abort(): void {
    this.release();
  }

  private release(): void {
    if (this.offer) dropOffer(this.engine, this.offer);
    this.offer = undefined;
  }
}

// ------------------------------------------------------------------ responder

/** The connection for an authenticated-to-be peer: path, identities and the IKE suite already chosen must fit. */
function selectPolicy(engine: IkeContext, sa: IkeSa, peerId: { idType: number; data: Uint8Array }, wantedLocal?: { idType: number; data: Uint8Array }): ConnectionPolicy | undefined {
  const suite = sa.suite!;
  const candidates = policiesForPath(engine, sa.local, sa.remote).filter(
    (p) => identityMatches(p.remoteId, peerId) && selectProposal([chosenProposal(suite, new Uint8Array(0))], p.ike) !== undefined,
  );
  if (wantedLocal) {
    const exact = candidates.find((p) => identitiesEqual(p.localId, wantedLocal));
    if (exact) return exact;
  }
  return candidates[0];
}

type IkeAuthCheck =
  | { ok: true; peerId: { idType: number; data: Uint8Array }; policy: ConnectionPolicy }
  | { ok: false; reason: string; policy?: ConnectionPolicy };

/**
 * Who an IKE_AUTH request proves it is (RFC 7296 §2.15), and under which
 * connection, or why it does not: a connection for its IDi on this path and
 * IKE suite, and its AUTH payload (and certificate chain) verified under that
 * connection's expectations. Nothing of the SA changes.
 */
function checkIkeAuthRequest(engine: IkeContext, sa: IkeSa, payloads: Payload[]): IkeAuthCheck {
  const idi = findPayload(payloads, PayloadType.IDi);
  const auth = findPayload(payloads, PayloadType.AUTH);
  if (!idi || !auth) return { ok: false, reason: 'IKE_AUTH request lacks IDi or AUTH' };
  const peerId = { idType: idi.idType, data: new Uint8Array(idi.data) };
  const policy = requestPolicy(engine, sa, payloads, peerId);
  if (!policy) return { ok: false, reason: `no connection for peer identity ${formatIdentity(peerId)}` };
  const failure = peerAuthFailure(sa, idi, auth, payloads, wallTime(engine), policy.remoteAuth);
  if (failure === AUTH_DOES_NOT_VERIFY) return { ok: false, reason: `AUTH payload of ${formatIdentity(peerId)} does not verify`, policy };
  if (failure) return { ok: false, reason: `${formatIdentity(peerId)}: ${failure}`, policy };
  return { ok: true, peerId, policy };
}

/**
 * The peer identity an IKE_AUTH request authenticates, checked as
 * respondIkeAuth checks it and without changing the SA; undefined when the
 * answer would be AUTHENTICATION_FAILED. For what must be prepared for the
 * authenticated peer before the answer (PeerResources.prepare: a cluster
 * admits the first Child SA against the peer's limit, RFC 7791 §8): until
 * AUTH verifies, the IDi names nobody.
 */
export function authenticatedPeerOf(engine: IkeContext, sa: IkeSa, payloads: Payload[]): string | undefined {
  if (sa.state !== 'connecting' || sa.isInitiator) return undefined;
  const checked = checkIkeAuthRequest(engine, sa, payloads);
  // The request is answered from these same payloads once prepared (answer-preparation.ts): checked once.
  checkedRequests.set(payloads, checked);
  return checked.ok ? formatIdentity(checked.peerId) : undefined;
}

/** IKE_AUTH requests checked before their answer (authenticatedPeerOf), by their opened payloads, until answered. */
const checkedRequests = new WeakMap<Payload[], IkeAuthCheck>();

/**
 * The check of an IKE_AUTH request: the one made while it was prepared, if
 * the connection it chose is still the one selected (a reload meanwhile
 * checks again), else a fresh one.
 */
function ikeAuthCheck(engine: IkeContext, sa: IkeSa, payloads: Payload[]): IkeAuthCheck {
  const earlier = checkedRequests.get(payloads);
  checkedRequests.delete(payloads);
  if (earlier?.policy) {
    const idi = findPayload(payloads, PayloadType.IDi)!;
    if (requestPolicy(engine, sa, payloads, { idType: idi.idType, data: idi.data }) === earlier.policy) return earlier;
  }
  return checkIkeAuthRequest(engine, sa, payloads);
}

/** The connection for an IKE_AUTH request's IDi (and the IDr it asks for, if any). */
function requestPolicy(engine: IkeContext, sa: IkeSa, payloads: Payload[], peerId: { idType: number; data: Uint8Array }): ConnectionPolicy | undefined {
  const idr = findPayload(payloads, PayloadType.IDr);
  return selectPolicy(engine, sa, peerId, idr ? { idType: idr.idType, data: idr.data } : undefined);
}

export function respondIkeAuth(engine: IkeContext, sa: IkeSa, payloads: Payload[]): ResponderResult {
  if (sa.state !== 'connecting' || sa.isInitiator) return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  const authFailed = (reason: string): ResponderResult => {
    engine.log.warn({ ike: sa.id, remote: sa.remote.address, reason }, 'IKE_AUTH failed');
    // RFC 7296 §2.21.2: answer AUTHENTICATION_FAILED, then forget the SA.
    return { payloads: [notify(NotifyType.AUTHENTICATION_FAILED)], after: () => engine.deleteIkeSa(sa, reason) };
  };
  const checked = ikeAuthCheck(engine, sa, payloads);
  if (checked.policy) {
    sa.policy = checked.policy;
    recordPeerCertreq(sa, payloads);
  }
  if (!checked.ok) return authFailed(checked.reason);
  const { peerId, policy } = checked;

  sa.peerId = peerId;
  sa.peerKey = formatIdentity(peerId);
  sa.localId = policy.localId;
  sa.peerMobike = policy.mobike && hasNotify(payloads, NotifyType.MOBIKE_SUPPORTED);
  sa.peerClone = policy.cloneSupport && hasNotify(payloads, NotifyType.CLONE_IKE_SA_SUPPORTED);

  // RFC 7427 §4: we can answer with a signature only in a hash the peer announced.
  const refusal = authRefusal(sa);
  if (refusal) return authFailed(`cannot authenticate to ${formatIdentity(peerId)}: ${refusal}`);
  // RFC 4555 §3.9: the addresses the initiator protected must be the ones we saw. Checked
  // before anything is leased or keyed for the peer: this answer ends the IKE SA, and a Child
  // SA built for the response it replaces would belong to no SA, its keys never wiped (architecture §4.5).
  if (sa.peerMobike) {
    const nna = findNotify(payloads, NotifyType.NO_NATS_ALLOWED);
    if (nna && natsProhibited(sa) && !equalBytes(nna.data, noNatsAllowedData(sa.remote, sa.local))) {
      engine.log.warn({ ike: sa.id, remote: sa.remote.address }, 'NO_NATS_ALLOWED does not match the IP header in IKE_AUTH');
      return { payloads: [notify(NotifyType.UNEXPECTED_NAT_DETECTED)], after: () => engine.deleteIkeSa(sa, 'UNEXPECTED_NAT_DETECTED in IKE_AUTH') };
    }
  }
  const idrOut = idPayload(PayloadType.IDr, policy.localId);
  // RFC 7296 §3.6: our chain before AUTH, per send_cert and the initiator's CERTREQ.
  const response: Payload[] = [idrOut, ...certPayloads(sa), buildAuth(sa, idrOut)];
  // RFC 5685 §6: the authenticated peer may be sent elsewhere, instead of any Child SA or lease.
  const redirectTo = authRedirectTarget(engine, sa);
  if (redirectTo) return authRedirectResponse(engine, sa, response, redirectTo);

  // RFC 7296 §2.19: a virtual IP for a CP request, from the connection's pools.
  const cp = findPayload(payloads, PayloadType.CP);
  const config = respondConfig(engine, sa, policy, cp);
  if (config.reply) response.push(config.reply);
  const cpFailed = config.failed;

  let created: ReturnType<typeof respondChild> | undefined;
  if (findPayload(payloads, PayloadType.SA)) {
    // RFC 7296 §2.21.2: a Child SA refused here leaves the IKE SA up; the refusal is logged and counted.
    if (cpFailed) {
      const refusal = policy.pools.length > 0 && !cp ? NotifyType.FAILED_CP_REQUIRED : NotifyType.INTERNAL_ADDRESS_FAILURE;
      response.push(notify(refusal));
      noteIkeAuthChildRefusal(engine, sa, payloads, refusal);
    } else {
      created = respondChild(engine, sa, payloads, { nonceI: sa.nonceI!, nonceR: sa.nonceR! });
      // RFC 9611 §3: SA_RESOURCE_INFO answered for a per_cpu_sas child makes this the fallback SA.
      if (created.ok) response.push(...created.value.payloads, ...placeInitialChild(engine, sa, payloads, created.value.child));
      else {
        response.push(notify(created.error.notify, created.error.data));
        noteIkeAuthChildRefusal(engine, sa, payloads, created.error.notify);
      }
    }
  }
  response.push(...supportNotifies(policy, { mobike: sa.peerMobike, clone: sa.peerClone }));
  if (sa.peerMobike) {
    sa.peerAdditionalAddresses = peerAddressList(payloads) ?? [];
    response.push(...mobikeAddressNotifies(engine, sa, false));
  }
  return {
    payloads: response,
    after: () => {
      engine.markEstablished(sa);
      if (created?.ok) engine.addChild(created.value.child);
      else if (created) engine.emit('child-failed', sa, policy.children[0]?.name ?? '', notifyName(created.error.notify));
    },
  };
}
