// Rekeying in CREATE_CHILD_SA: Child SA rekey (RFC 7296 §1.3.3, N(REKEY_SA)),
// IKE SA rekey (§1.3.2, keys per §2.18), and IKE SA cloning (RFC 7791 §5.2),
// which is an IKE SA rekey that keeps the old SA and its Child SAs.
//
//   Initiator                                   Responder
//   Child:  HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  -->
//                                   <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//   IKE:    HDR, SK {SA, Ni, KEi}  -->          <--  HDR, SK {SA, Nr, KEr}
//   Clone:  HDR, SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR, SK {SA, Nr, KEr}
//
// The new IKE SA's initiator is whoever started the rekey exchange (§2.18);
// its message IDs start at zero. A rekeyed IKE SA hands its Child SAs to the
// new one and is then deleted by the rekey initiator; a cloned one keeps them
// (RFC 7791 §5.2), so the two IKE SAs are fully independent afterwards.
import { ExchangeType, NotifyType, PayloadType, ProtocolId, notifyName } from '../../wire/constants.js';
import type { Payload, Proposal } from '../../wire/payloads.js';
import { findNotify, findPayload } from '../../wire/payloads.js';
import { createKeyExchange, keyExchangeLength } from '../../crypto/keyexchange.js';
import type { KeyExchange } from '../../crypto/keyexchange.js';
import { deriveRekeyedIkeKeys, isValidNonceLength } from '../../crypto/keys.js';
import type { ChildSa } from '../child-sa.js';
import type { IkeEngine } from '../engine.js';
import type { InitiatorExchange, ResponderResult } from '../exchange.js';
import { IkeSa } from '../ike-sa.js';
import { installIkeKeys } from '../ike-keys.js';
import type { NegotiatedSuite } from '../proposals.js';
import { acceptChosenProposal, buildProposals, chosenProposal, selectProposal, withPreferredKeGroup } from '../proposals.js';
import { acceptChild, childPfsGroup, dropOffer, offerChild, offerPayloads, respondChild, responderKeyExchange } from '../child-negotiation.js';
import type { ChildOffer } from '../child-negotiation.js';
import { errorNotify, espNotify, hasNotify, notify, spiNumber, u16, u16Bytes } from '../payload-builders.js';

const NONCE_LENGTH = 32;

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/**
 * The IKE SA that a rekey or clone exchange creates, with the old SA's
 * authenticated context (identities, addresses, negotiated extensions) and
 * fresh keys from SKEYSEED = prf(SK_d(old), g^ir(new) | Ni | Nr) (§2.18).
 */
function successorSa(
  engine: IkeEngine,
  old: IkeSa,
  role: 'initiator' | 'responder',
  spiI: Uint8Array,
  spiR: Uint8Array,
  suite: NegotiatedSuite,
  nonceI: Uint8Array,
  nonceR: Uint8Array,
  sharedSecret: Uint8Array,
): IkeSa {
  const sa = new IkeSa(role, old.policy, { ...old.local }, { ...old.remote }, spiI, spiR, engine.clock.now());
  sa.suite = suite;
  sa.localId = old.localId;
  sa.peerId = old.peerId;
  sa.peerKey = old.peerKey;
  sa.natLocal = old.natLocal;
  sa.natRemote = old.natRemote;
  sa.natDetectionExchanged = old.natDetectionExchanged;
  sa.peerMobike = old.peerMobike;
  // RFC 4555 §1.3: the MOBIKE initiator stays whoever started the first IKE SA, whoever rekeys or clones.
  sa.mobikeInitiator = old.mobikeInitiator;
  sa.peerClone = old.peerClone;
  sa.virtualIp = old.virtualIp;
  sa.peerVirtualIp = old.peerVirtualIp;
  sa.sessionId = old.sessionId;
  sa.familyIndex = old.familyIndex;
  // MOBIKE state (RFC 4555): the peer's addresses carry over; the home NIC too (a clone gets its own).
  sa.peerAdditionalAddresses = [...old.peerAdditionalAddresses];
  sa.peerWithdrawnAddress = old.peerWithdrawnAddress;
  sa.homeAddress = old.homeAddress;
  for (const a of old.verifiedAddresses) sa.verifiedAddresses.add(a);
  const { skeyseed, keys } = deriveRekeyedIkeKeys(
    { encr: suite.encr, encrKeyLength: suite.encrKeyLength, prf: suite.prf!, integ: suite.integ ?? 0 },
    old.suite!.prf!,
    old.keys!.skD,
    { nonceI, nonceR, sharedSecret, spiI, spiR },
  );
  skeyseed.fill(0);
  installIkeKeys(engine, sa, keys);
  return sa;
}

// ------------------------------------------------------ IKE rekey / clone (I)

export interface IkeRekeyCallbacks {
  /** RFC 7791 §5.2: keep the old IKE SA and its Child SAs. */
  clone: boolean;
  resolve: (sa: IkeSa) => void;
  reject: (err: Error & { notify?: number }) => void;
  group?: number;
  retries?: number;
}

export class IkeRekeyInitiator implements InitiatorExchange {
  readonly exchangeType = ExchangeType.CREATE_CHILD_SA;
  private keyExchange: KeyExchange | undefined;
  private nonceI: Uint8Array | undefined;
  private spiI: Uint8Array | undefined;
  private offered: Proposal[] = [];

  constructor(
    private readonly engine: IkeEngine,
    private readonly cb: IkeRekeyCallbacks,
  ) {}

  get name(): string {
    return this.cb.clone ? 'CREATE_CHILD_SA (clone IKE SA)' : 'CREATE_CHILD_SA (rekey IKE SA)';
  }

  /** A clone (RFC 7791), not a rekey: collisions (RFC 7296 §2.25) treat the two differently. */
  get clone(): boolean {
    return this.cb.clone;
  }

  build(sa: IkeSa): Payload[] {
    if (this.cb.clone && !sa.peerClone) throw new Error('the peer did not negotiate IKE SA cloning (RFC 7791 §5.1)');
    const group = this.cb.group ?? sa.suite!.ke!;
    this.keyExchange?.destroy();
    this.keyExchange = createKeyExchange(group, { random: this.engine.random });
    this.nonceI = this.engine.random(NONCE_LENGTH);
    this.spiI = this.engine.newIkeSpi();
    this.engine.reserveIkeSpi(this.spiI);
    this.offered = buildProposals(withPreferredKeGroup(sa.policy.ike, group), this.spiI);
    const payloads: Payload[] = [];
    if (this.cb.clone) payloads.push(notify(NotifyType.CLONE_IKE_SA));
    payloads.push({ type: PayloadType.SA, proposals: this.offered }, { type: PayloadType.NONCE, data: this.nonceI }, { type: PayloadType.KE, group, data: this.keyExchange.publicKey });
    return payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const engine = this.engine;
    const fail = (reason: string, notifyType?: number) => {
      this.release();
      const err = new Error(reason) as Error & { notify?: number };
      if (notifyType !== undefined) err.notify = notifyType;
      this.cb.reject(err);
    };
    const invalidKe = findNotify(payloads, NotifyType.INVALID_KE_PAYLOAD);
    if (invalidKe) {
      const group = u16(invalidKe.data);
      const retries = (this.cb.retries ?? 0) + 1;
      if (group === undefined || retries > 3 || !selectProposal(buildProposals(withPreferredKeGroup(sa.policy.ike, group), new Uint8Array(8)), sa.policy.ike)) {
        return fail(`INVALID_KE_PAYLOAD asks for group ${group}, which we do not offer`);
      }
      this.release();
      engine.queueExchange(sa, new IkeRekeyInitiator(engine, { ...this.cb, group, retries }));
      return;
    }
    const error = errorNotify(payloads);
    if (error) {
      // §2.8.2: the peer rekeyed this IKE SA first; the successor we answered for takes over.
      const survivor = this.cb.clone ? undefined : engine.collisions.ikeRekeyFailed(sa);
      if (survivor) {
        this.release();
        return this.cb.resolve(survivor);
      }
      return fail(`responder answered ${notifyName(error.notifyType)}`, error.notifyType);
    }
    const saPayload = findPayload(payloads, PayloadType.SA);
    const nonce = findPayload(payloads, PayloadType.NONCE);
    const ke = findPayload(payloads, PayloadType.KE);
    if (!saPayload || !nonce || !ke) return fail('response lacks SA, Nonce or KE');
    const suite = acceptChosenProposal(saPayload.proposals, this.offered);
    if (!suite || suite.protocol !== ProtocolId.IKE || suite.prf === undefined || suite.ke !== this.keyExchange!.group) return fail('responder chose an IKE proposal we did not offer');
    if (suite.spi.length !== 8 || suite.spi.every((b) => b === 0)) return fail('responder IKE SPI is invalid');
    if (ke.group !== suite.ke || !isValidNonceLength(suite.prf, nonce.data.length)) return fail('response KE or nonce is invalid');
    const shared = this.keyExchange!.computeSharedSecret(ke.data);
    if (!shared.ok) return fail(`invalid key exchange value: ${shared.error}`);
    const created = successorSa(engine, sa, 'initiator', this.spiI!, copy(suite.spi), suite, this.nonceI!, copy(nonce.data), shared.value);
    shared.value.fill(0);
    this.release(false);
    if (this.cb.clone) {
      engine.adoptSuccessor(sa, created, true);
      this.cb.resolve(created);
    } else {
      // §2.8.2: with a simultaneous rekey the nonces decide which new IKE SA survives.
      this.cb.resolve(engine.collisions.ikeRekeyCompleted(sa, created, [this.nonceI!, nonce.data]));
    }
  }

  abort(sa: IkeSa, reason: string): void {
    this.release();
    // §2.8.2: the peer deleted the old SA after its own rekey of it, which we answered: that one took over.
    const survivor = this.cb.clone ? undefined : this.engine.collisions.ikeRekeyAborted(sa);
    if (survivor) this.cb.resolve(survivor);
    else this.cb.reject(new Error(reason));
  }

  private release(freeSpi = true): void {
    this.keyExchange?.destroy();
    this.keyExchange = undefined;
    if (freeSpi && this.spiI) this.engine.releaseIkeSpi(this.spiI);
    this.spiI = undefined;
  }
}

// ------------------------------------------------------------ Child rekey (I)

export class ChildRekeyInitiator implements InitiatorExchange {
  readonly name = 'CREATE_CHILD_SA (rekey Child SA)';
  readonly exchangeType = ExchangeType.CREATE_CHILD_SA;
  private offer: ChildOffer | undefined;
  private keyExchange: KeyExchange | undefined;
  private nonceI: Uint8Array | undefined;

  constructor(
    private readonly engine: IkeEngine,
    private readonly old: ChildSa,
    private readonly cb: { pfs: boolean; resolve: (c: ChildSa) => void; reject: (e: Error) => void },
  ) {}

  build(sa: IkeSa): Payload[] {
    const policy = sa.policy.children.find((c) => c.name === this.old.name);
    if (!policy) throw new Error(`Child SA ${this.old.name} no longer has a policy`);
    if (this.old.state !== 'installed') throw new Error(`Child SA ${this.old.id} is ${this.old.state}`);
    this.old.state = 'rekeying';
    const group = this.cb.pfs ? childPfsGroup(policy) : undefined;
    this.nonceI = this.engine.random(NONCE_LENGTH);
    this.offer = offerChild(this.engine, sa, policy, group);
    // §2.9.2: the rekeyed SA keeps the selectors the old one had.
    this.offer.tsi = this.old.localTs;
    this.offer.tsr = this.old.remoteTs;
    const [saPayload, tsi, tsr] = offerPayloads(this.offer);
    const payloads: Payload[] = [espNotify(NotifyType.REKEY_SA, this.old.spiIn), saPayload!, { type: PayloadType.NONCE, data: this.nonceI }];
    if (group !== undefined) {
      this.keyExchange = createKeyExchange(group, { random: this.engine.random });
      payloads.push({ type: PayloadType.KE, group, data: this.keyExchange.publicKey });
    }
    payloads.push(tsi!, tsr!);
    return payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const fail = (reason: string, notifyType?: number) => {
      if (this.old.state === 'rekeying') this.old.state = 'installed';
      if (this.offer) dropOffer(this.engine, this.offer);
      this.keyExchange?.destroy();
      this.cb.reject(Object.assign(new Error(reason), notifyType !== undefined ? { notify: notifyType } : {}));
    };
    const error = errorNotify(payloads);
    if (error) {
      // §2.8.1: the peer's rekey of the same Child SA went through; ours is moot.
      const survivor = this.engine.collisions.childRekeyFailed(this.old);
      if (survivor) {
        if (this.offer) dropOffer(this.engine, this.offer);
        this.keyExchange?.destroy();
        return this.cb.resolve(survivor);
      }
      return fail(`responder answered ${notifyName(error.notifyType)}`, error.notifyType);
    }
    const nonce = findPayload(payloads, PayloadType.NONCE);
    if (!nonce || !isValidNonceLength(sa.suite!.prf!, nonce.data.length)) return fail('response lacks a valid nonce');
    let sharedSecret: Uint8Array | undefined;
    if (this.keyExchange) {
      const ke = findPayload(payloads, PayloadType.KE);
      if (!ke || ke.group !== this.keyExchange.group) return fail('response KE payload does not match our group');
      const shared = this.keyExchange.computeSharedSecret(ke.data);
      if (!shared.ok) return fail(`invalid key exchange value: ${shared.error}`);
      sharedSecret = shared.value;
    }
    const created = acceptChild(this.engine, sa, this.offer!, payloads, { nonceI: this.nonceI!, nonceR: nonce.data, ...(sharedSecret ? { sharedSecret } : {}) });
    sharedSecret?.fill(0);
    this.keyExchange?.destroy();
    if (typeof created === 'string') return fail(created);
    this.offer = undefined;
    this.engine.addChild(created);
    // §2.8: the initiator of the rekey deletes the old Child SA once the new one is in place,
    // unless a simultaneous rekey made ours the redundant one (§2.8.1).
    this.cb.resolve(this.engine.collisions.childRekeyCompleted(this.old, created, [this.nonceI!, nonce.data]));
  }

  abort(_sa: IkeSa, reason: string): void {
    if (this.old.state === 'rekeying') this.old.state = 'installed';
    if (this.offer) dropOffer(this.engine, this.offer);
    this.keyExchange?.destroy();
    this.cb.reject(new Error(reason));
  }
}

// ------------------------------------------------------------------ responder

export function respondRekeyRequest(engine: IkeEngine, sa: IkeSa, payloads: Payload[], ikeRekey: boolean): ResponderResult {
  return ikeRekey ? respondIkeRekey(engine, sa, payloads) : respondChildRekey(engine, sa, payloads);
}

function respondIkeRekey(engine: IkeEngine, sa: IkeSa, payloads: Payload[]): ResponderResult {
  const saPayload = findPayload(payloads, PayloadType.SA)!;
  const nonce = findPayload(payloads, PayloadType.NONCE)!;
  // RFC 7791 §5.2: CLONE_IKE_SA counts only here, and only on an SA that negotiated it (§5.1).
  const clone = hasNotify(payloads, NotifyType.CLONE_IKE_SA) && sa.peerClone;
  if (hasNotify(payloads, NotifyType.CLONE_IKE_SA) && !sa.peerClone) {
    engine.log.warn({ ike: sa.id }, 'CLONE_IKE_SA on an IKE SA that did not negotiate cloning: handled as a rekey');
  }
  if (clone) {
    // RFC 7791 §5.3 and §8: the per-peer limit counts every IKE SA of the peer.
    if (engine.peerIkeSaCount(sa) >= engine.limits.ikeSasPerPeer) {
      engine.log.info({ ike: sa.id, peer: sa.peerKey }, 'clone refused: NO_ADDITIONAL_SAS');
      return { payloads: [notify(NotifyType.NO_ADDITIONAL_SAS)] };
    }
    if (!engine.hasCapacity()) return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  } else if (engine.peerIkeSaCount(sa) - 1 >= engine.limits.ikeSasPerPeer || !engine.hasCapacity({ replacing: true })) {
    // A rekey replaces `sa`, which still counts until the peer deletes it (RFC 7296 §2.18).
    // A peer that rekeys faster than it deletes is held at its limit until the old SAs go,
    // as they do after the grace period at the latest (collisions.ts); §2.25: retry later.
    engine.log.info({ ike: sa.id, peer: sa.peerKey }, 'IKE SA rekey refused: the SAs it replaced are not deleted yet (TEMPORARY_FAILURE)');
    return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  }
  const ke = findPayload(payloads, PayloadType.KE);
  const offered = saPayload.proposals.filter((p) => p.protocol === ProtocolId.IKE && p.spi.length === 8);
  const suite = selectProposal(offered, sa.policy.ike);
  if (!suite || suite.prf === undefined || suite.ke === undefined) return { payloads: [notify(NotifyType.NO_PROPOSAL_CHOSEN)] };
  // RFC 7296 §2.10: Ni must be at least half the key size of the new SA's PRF, which may
  // differ from the PRF of `sa` that respondCreateChildSa checked it against.
  if (!isValidNonceLength(suite.prf, nonce.data.length)) return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  if (!ke || ke.group !== suite.ke) return { payloads: [notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(suite.ke))] };
  if (ke.data.length !== keyExchangeLength(ke.group) || suite.spi.every((b) => b === 0)) return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  const kx = createKeyExchange(ke.group, { random: engine.random });
  const shared = kx.computeSharedSecret(ke.data);
  const kePayload: Payload = { type: PayloadType.KE, group: kx.group, data: kx.publicKey };
  kx.destroy();
  if (!shared.ok) return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  const nonceR = engine.random(NONCE_LENGTH);
  const spiR = engine.newIkeSpi();
  const created = successorSa(engine, sa, 'responder', copy(suite.spi), spiR, suite, copy(nonce.data), nonceR, shared.value);
  shared.value.fill(0);
  engine.reserveIkeSpi(spiR);
  return {
    // RFC 7791 §5.2: no additional notify in the response.
    payloads: [{ type: PayloadType.SA, proposals: [chosenProposal(suite, spiR)] }, { type: PayloadType.NONCE, data: nonceR }, kePayload],
    after: () => engine.collisions.ikeRekeyAnswered(sa, created, clone, [nonce.data, nonceR]),
  };
}

function respondChildRekey(engine: IkeEngine, sa: IkeSa, payloads: Payload[]): ResponderResult {
  const rekey = findNotify(payloads, NotifyType.REKEY_SA)!;
  // §1.3.3: the SPI is the one the exchange initiator receives with: our outbound SPI.
  const spi = spiNumber(rekey.spi);
  const old = rekey.protocol === ProtocolId.ESP ? sa.children.find((c) => c.spiOut === spi) : undefined;
  if (!old || old.state === 'deleted') {
    // RFC 7296 §2.25: the Child SA is gone (deleted meanwhile, or never existed).
    return { payloads: [espNotify(NotifyType.CHILD_SA_NOT_FOUND, spi ?? 0)] };
  }
  // §2.25.1: one we are closing (or have seen rekeyed, about to be closed) cannot be rekeyed now.
  if (old.state === 'deleting' || old.state === 'rekeyed') return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  const nonceI = copy(findPayload(payloads, PayloadType.NONCE)!.data);
  const nonceR = engine.random(NONCE_LENGTH);
  const result = respondChild(engine, sa, payloads, { nonceI, nonceR }, responderKeyExchange(engine, payloads), { only: old.name, replacing: old });
  if (!result.ok) return { payloads: [notify(result.notify, result.data)] };
  const [saOut, ...rest] = result.payloads;
  return {
    payloads: [saOut!, { type: PayloadType.NONCE, data: nonceR }, ...rest],
    after: () => {
      engine.addChild(result.child);
      // The initiator deletes the old SA; until then it still takes inbound traffic (§2.8).
      // If we are rekeying it too, the nonces decide later (§2.8.1).
      engine.collisions.childRekeyAnswered(old, result.child, [nonceI, nonceR]);
    },
  };
}
