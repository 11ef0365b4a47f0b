// IKE SA rekey in CREATE_CHILD_SA (RFC 7296 §1.3.2; keys per §2.18). IKE SA
// cloning (RFC 7791, exchanges/ike-clone.ts) is the same exchange with
// N(CLONE_IKE_SA) that keeps the old SA and its Child SAs; it reuses the
// successor derivation and the responder's key exchange from here.
//
//   Initiator                                   Responder
//   HDR, SK {SA, Ni, KEi}  -->
//                                  <--  HDR, SK {SA, Nr, KEr}
//
// The new IKE SA's initiator is whoever started the rekey exchange (§2.18);
// its message IDs start at zero. A rekeyed IKE SA hands its Child SAs to the
// new one and is then deleted by the rekey initiator.
import { ExchangeType, NotifyType, PayloadType, ProtocolId, notifyName } from '../../wire/constants.js';
import type { Payload, Proposal } from '../../wire/payloads.js';
import { findNotify, findPayload } from '../../wire/payloads.js';
import { createKeyExchange, keyExchangeLength } from '../../crypto/keyexchange.js';
import type { KeyExchange } from '../../crypto/keyexchange.js';
import { deriveRekeyedIkeKeys, isValidNonceLength } from '../../crypto/keys.js';
import type { ExchangeNonces, IkeContext } from '../context.js';
import { IkeSa, carryState, type InitiatorExchange, type ResponderResult } from '../ike-sa.js';
import { installIkeKeys } from '../ike-keys.js';
import type { NegotiatedSuite } from '../proposals.js';
import { acceptChosenProposal, buildProposals, chosenProposal, selectProposal, withPreferredKeGroup } from '../proposals.js';
import { errorNotify, hasNotify, notify, u16, u16Bytes } from '../payload-builders.js';
import { NONCE_LENGTH } from '../defaults.js';

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/**
 * The IKE SA that carries on `sa`: itself while established, else the
 * successor a rekey made of it (RFC 7296 §2.8: same session, same place in
 * its clone family), if one is up; an exchange started on `sa` that ends
 * after a rekey acts on that one.
 */
export function carriedOn(ctx: Pick<IkeContext, 'ikeSas'>, sa: IkeSa): IkeSa | undefined {
  if (sa.state === 'established') return sa;
  return ctx.ikeSas().find((s) => s !== sa && s.sessionId === sa.sessionId && s.familyIndex === sa.familyIndex && s.state === 'established' && s.createdAt >= sa.createdAt);
}

/**
 * The IKE SA that a rekey or clone exchange creates, with the old SA's
 * authenticated context (identities, addresses, negotiated extensions) and
 * fresh keys from SKEYSEED = prf(SK_d(old), g^ir(new) | Ni | Nr) (§2.18).
 */
export function successorSa(
  ctx: IkeContext,
  old: IkeSa,
  role: 'initiator' | 'responder',
  spiI: Uint8Array,
  spiR: Uint8Array,
  suite: NegotiatedSuite,
  nonceI: Uint8Array,
  nonceR: Uint8Array,
  sharedSecret: Uint8Array,
): IkeSa {
  const sa = new IkeSa(role, old.policy, { ...old.local }, { ...old.remote }, spiI, spiR, ctx.clock.now());
  sa.suite = suite;
  sa.localId = old.localId;
  sa.peerId = old.peerId;
  // RFC 4555 §1.3: the MOBIKE initiator stays whoever started the first IKE SA, whoever rekeys or clones;
  // the peer's addresses carry over (MOBIKE, RFC 4555), and NAT state and virtual IPs with them.
  carryState(sa, old);
  sa.sessionId = old.sessionId;
  sa.familyIndex = old.familyIndex;
  // The home NIC carries over too (a clone gets its own), and so does the Child SAs' path while the
  // peer's new one is unverified (RFC 4555 §3.7): the Child SAs move to this SA.
  sa.homeAddress = old.homeAddress;
  sa.childPath = old.childPath && { local: { ...old.childPath.local }, remote: { ...old.childPath.remote } };
  const { skeyseed, keys } = deriveRekeyedIkeKeys(
    { encr: suite.encr, encrKeyLength: suite.encrKeyLength, prf: suite.prf!, integ: suite.integ ?? 0 },
    old.suite!.prf!,
    old.keys!.skD,
    { nonceI, nonceR, sharedSecret, spiI, spiR },
  );
  skeyseed.fill(0);
  installIkeKeys(ctx, sa, keys);
  return sa;
}

// ------------------------------------------------------------------ initiator

/** Rekey an IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2); resolves with the successor. */
export function rekeyIkeSa(engine: IkeContext, sa: IkeSa): Promise<IkeSa> {
  return new Promise((resolve, reject) => engine.queueExchange(sa, new IkeRekeyInitiator(engine, { resolve, reject })));
}

export interface IkeRekeyCallbacks {
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
    protected readonly engine: IkeContext,
    protected readonly cb: IkeRekeyCallbacks,
  ) {}

  get name(): string {
    return 'CREATE_CHILD_SA (rekey IKE SA)';
  }

  /** A clone (RFC 7791), not a rekey: collisions (RFC 7296 §2.25) treat the two differently. */
  get clone(): boolean {
    return false;
  }

  /** Notifies ahead of SA, Ni and KEi (none for a rekey). */
  protected requestNotifies(_sa: IkeSa): Payload[] {
    return [];
  }

  /** The same exchange again, with the KE group the peer asked for (RFC 7296 §1.3). */
  protected again(cb: IkeRekeyCallbacks): InitiatorExchange {
    return new IkeRekeyInitiator(this.engine, cb);
  }

  /** §2.8.2: after an error, the successor of a simultaneous rekey by the peer takes over, if there is one. */
  protected survivorAfterError(sa: IkeSa): IkeSa | undefined {
    return this.engine.collisions.ikeRekeyFailed(sa);
  }

  /** §2.8.2: the peer deleted the old SA after its own rekey of it, which we answered: that one took over. */
  protected survivorAfterAbort(sa: IkeSa): IkeSa | undefined {
    return this.engine.collisions.ikeRekeyAborted(sa);
  }

  /** The new IKE SA is keyed: with a simultaneous rekey the nonces decide which survives (§2.8.2). */
  protected completed(sa: IkeSa, created: IkeSa, nonces: ExchangeNonces): void {
    this.cb.resolve(this.engine.collisions.ikeRekeyCompleted(sa, created, nonces));
  }

  build(sa: IkeSa): Payload[] {
    const notifies = this.requestNotifies(sa);
    const group = this.cb.group ?? sa.suite!.ke!;
    this.keyExchange?.destroy();
    this.keyExchange = createKeyExchange(group, { random: this.engine.random });
    this.nonceI = this.engine.random(NONCE_LENGTH);
    this.spiI = this.engine.newIkeSpi();
    this.engine.reserveIkeSpi(this.spiI);
    this.offered = buildProposals(withPreferredKeGroup(sa.policy.ike, group), this.spiI);
    const payloads: Payload[] = [...notifies];
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
      engine.queueExchange(sa, this.again({ ...this.cb, group, retries }));
      return;
    }
    const error = errorNotify(payloads);
    if (error) {
      // §2.8.2: the peer rekeyed this IKE SA first; the successor we answered for takes over.
      const survivor = this.survivorAfterError(sa);
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
    this.completed(sa, created, [this.nonceI!, nonce.data]);
  }

  abort(sa: IkeSa, reason: string): void {
    this.release();
    const survivor = this.survivorAfterAbort(sa);
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

// ------------------------------------------------------------------ responder

/** The responder half of an IKE SA rekey (RFC 7296 §1.3.2, §2.18). */
export function respondIkeRekey(engine: IkeContext, sa: IkeSa, payloads: Payload[]): ResponderResult {
  // RFC 7791 §5.2: CLONE_IKE_SA counts only on an SA that negotiated it (§5.1); on others this is a rekey.
  if (hasNotify(payloads, NotifyType.CLONE_IKE_SA)) {
    engine.log.warn({ ike: sa.id }, 'CLONE_IKE_SA on an IKE SA that did not negotiate cloning: handled as a rekey');
  }
  if (engine.peerIkeSaCount(sa) - 1 >= engine.limits.ikeSasPerPeer || !engine.hasCapacity({ replacing: true })) {
    // A rekey replaces `sa`, which still counts until the peer deletes it (RFC 7296 §2.18).
    // A peer that rekeys faster than it deletes is held at its limit until the old SAs go,
    // as they do after the grace period at the latest (collisions.ts); §2.25: retry later.
    engine.log.info({ ike: sa.id, peer: sa.peerKey }, 'IKE SA rekey refused: the SAs it replaced are not deleted yet (TEMPORARY_FAILURE)');
    return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  }
  return answerSuccessor(engine, sa, payloads, false);
}

/**
 * The new IKE SA of a rekey or clone request we accept (RFC 7296 §1.3.2,
 * §2.18; RFC 7791 §5.2): proposal, nonce and key exchange, and the response.
 * It is installed once the response is sent (collisions.ts decides how).
 */
export function answerSuccessor(engine: IkeContext, sa: IkeSa, payloads: Payload[], clone: boolean): ResponderResult {
  const saPayload = findPayload(payloads, PayloadType.SA)!;
  const nonce = findPayload(payloads, PayloadType.NONCE)!;
  const ke = findPayload(payloads, PayloadType.KE);
  const offered = saPayload.proposals.filter((p) => p.protocol === ProtocolId.IKE && p.spi.length === 8);
  const suite = selectProposal(offered, sa.policy.ike);
  if (!suite || suite.prf === undefined || suite.ke === undefined) return { payloads: [notify(NotifyType.NO_PROPOSAL_CHOSEN)] };
  // RFC 7296 §2.10: Ni must be at least half the key size of the new SA's PRF, which may
  // differ from the PRF of `sa` that checkCreateChildSa checked it against.
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
