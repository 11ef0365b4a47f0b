// Child SA negotiation shared by IKE_AUTH and CREATE_CHILD_SA (RFC 7296 §1.2,
// §1.3.1, §2.9, §2.17): the SA/TSi/TSr we propose, the responder's choice and
// narrowing, and the keys (KEYMAT) of the new Child SA.
import { findPayload } from '../wire/payloads.js';
import { KeGroup, NotifyType, PayloadType, TransformType } from '../wire/constants.js';
import type { Payload, Proposal, TrafficSelector } from '../wire/payloads.js';
import { encrInfo, integInfo } from '../crypto/algorithms.js';
import { deriveChildKeys, wipeChildKeys } from '../crypto/keys.js';
import type { ProposalSpec } from '../config/proposal.js';
import type { IkeContext } from './context.js';
import { ChildSa, type IkeSa } from './ike-sa.js';
import type { KeyExchange } from '../crypto/keyexchange.js';
import { NONCE_LENGTH } from './defaults.js';
import type { ChildPolicy } from './policy.js';
import type { NegotiatedSuite } from './proposals.js';
import { acceptChosenProposal, buildProposals, chosenProposal, selectProposal, withPreferredKeGroup } from './proposals.js';
import { hostSelector, narrowSelectors, selectorFromConfig, selectorsWithin } from './traffic-selectors.js';
import { espNotify, spiBytes, spiNumber, u16Bytes } from './payload-builders.js';
import { createKeyExchange, keyExchangeLength } from '../crypto/keyexchange.js';
import { TsType } from '../wire/constants.js';
import type { Result } from '../wire/result.js';
import { requestedFamilies } from './config-payload.js';

/** What we offered in a Child SA request, kept until the response arrives. */
export interface ChildOffer {
  child: ChildPolicy;
  spiIn: number;
  offered: Proposal[];
  tsi: TrafficSelector[];
  tsr: TrafficSelector[];
}

/** Nonces (and g^ir with PFS) of the exchange that creates the Child SA (RFC 7296 §2.17). */
export interface ChildKeyInputs {
  nonceI: Uint8Array;
  nonceR: Uint8Array;
  sharedSecret?: Uint8Array;
}

const ANY_V4: TrafficSelector = {
  tsType: TsType.IPV4_ADDR_RANGE,
  ipProtocol: 0,
  startPort: 0,
  endPort: 65535,
  startAddress: new Uint8Array([0, 0, 0, 0]),
  endAddress: new Uint8Array([255, 255, 255, 255]),
};

const ANY_V6: TrafficSelector = {
  tsType: TsType.IPV6_ADDR_RANGE,
  ipProtocol: 0,
  startPort: 0,
  endPort: 65535,
  startAddress: new Uint8Array(16),
  endAddress: new Uint8Array(16).fill(0xff),
};

/** Proposals without KE transforms: Child SAs created in IKE_AUTH have no KE (RFC 7296 §1.2). */
export function withoutKe(specs: readonly ProposalSpec[]): ProposalSpec[] {
  return specs.map((s) => ({ protocol: s.protocol, transforms: s.transforms.filter((t) => t.type !== TransformType.KE) }));
}

/** The first PFS group a child's proposals ask for, if any (KE "none" means PFS optional). */
export function childPfsGroup(child: ChildPolicy): number | undefined {
  for (const s of child.esp) for (const t of s.transforms) if (t.type === TransformType.KE && t.id !== KeGroup.NONE) return t.id;
  return undefined;
}

function localSelectors(sa: IkeSa, child: ChildPolicy, forOffer: boolean): TrafficSelector[] {
  return child.localTs.flatMap((ts) => {
    if (ts !== 'dynamic') return [selectorFromConfig(ts, sa.local.address)];
    // Asking for virtual IPs: we do not know our inner addresses yet (RFC 7296 §2.19): any of each family asked for.
    if (forOffer && sa.policy.requestVirtualIp && sa.virtualIps.length === 0) return requestedFamilies(sa.policy).map((f) => (f === 4 ? ANY_V4 : ANY_V6));
    return sa.virtualIps.length > 0 ? sa.virtualIps.map(hostSelector) : [hostSelector(sa.local.address)];
  });
}

function remoteSelectors(sa: IkeSa, child: ChildPolicy): TrafficSelector[] {
  return child.remoteTs.flatMap((ts) => {
    if (ts !== 'dynamic') return [selectorFromConfig(ts, sa.remote.address)];
    return sa.peerVirtualIps.length > 0 ? sa.peerVirtualIps.map(hostSelector) : [hostSelector(sa.remote.address)];
  });
}

/**
 * Build our offer: a fresh inbound SPI, the proposals (with `keGroup` for PFS)
 * and our selectors; a rekey of `rekeying` keeps its selectors (RFC 7296 §2.9.2).
 */
export function offerChild(engine: IkeContext, sa: IkeSa, child: ChildPolicy, keGroup?: number, rekeying?: ChildSa, preferredWorker?: number, spiRandom?: number): ChildOffer {
  const tsi = rekeying ? rekeying.localTs : localSelectors(sa, child, true);
  const tsr = rekeying ? rekeying.remoteTs : remoteSelectors(sa, child);
  // The SPI names the worker that will own the Child SA (child-spi.ts).
  const spiIn = engine.newChildSpi({
    sa, localTs: tsi, remoteTs: tsr, ...(rekeying ? { replacing: rekeying } : {}), ...(preferredWorker !== undefined ? { preferredWorker } : {}),
    ...(spiRandom !== undefined ? { spiRandom } : {}),
  });
  engine.reservedSpis.add(spiIn);
  const specs = keGroup !== undefined ? withPreferredKeGroup(child.esp, keGroup) : withoutKe(child.esp);
  return { child, spiIn, offered: buildProposals(specs, spiBytes(spiIn)), tsi, tsr };
}

export function offerPayloads(offer: ChildOffer): Payload[] {
  return [
    { type: PayloadType.SA, proposals: offer.offered },
    { type: PayloadType.TSi, selectors: offer.tsi },
    { type: PayloadType.TSr, selectors: offer.tsr },
  ];
}

/** Release the SPI reserved by an offer that came to nothing. */
export function dropOffer(engine: IkeContext, offer: ChildOffer): void {
  engine.reservedSpis.delete(offer.spiIn);
}

function makeChild(
  engine: IkeContext,
  sa: IkeSa,
  name: string,
  suite: NegotiatedSuite,
  spiIn: number,
  spiOut: number,
  inputs: ChildKeyInputs,
  exchangeInitiator: boolean,
  localTs: TrafficSelector[],
  remoteTs: TrafficSelector[],
): ChildSa {
  const encr = encrInfo(suite.encr, suite.encrKeyLength)!;
  const integ = suite.integ !== undefined ? integInfo(suite.integ) : undefined;
  const keys = deriveChildKeys(sa.suite!.prf!, sa.keys!.skD, inputs, encr, integ);
  // RFC 7296 §2.17: "I" keys protect traffic from the exchange's initiator.
  const material = exchangeInitiator
    ? { encOut: keys.encrI, integOut: keys.integI, encIn: keys.encrR, integIn: keys.integR }
    : { encOut: keys.encrR, integOut: keys.integR, encIn: keys.encrI, integIn: keys.integI };
  const child = new ChildSa(sa, name, spiIn, spiOut, suite, material, localTs, remoteTs, sa.natLocal || sa.natRemote, engine.clock.now());
  if (!child.keys) wipeChildKeys(keys);
  child.peerCreated = !exchangeInitiator;
  return child;
}

/**
 * Initiator: check the responder's SA, TSi and TSr against our offer (RFC 7296
 * §2.7, §2.9) and build the Child SA. Returns a reason string on failure.
 */
export function acceptChild(engine: IkeContext, sa: IkeSa, offer: ChildOffer, payloads: Payload[], inputs: ChildKeyInputs): ChildSa | string {
  const saPayload = findPayload(payloads, PayloadType.SA);
  const tsi = findPayload(payloads, PayloadType.TSi);
  const tsr = findPayload(payloads, PayloadType.TSr);
  if (!saPayload || !tsi || !tsr) return 'response lacks SA, TSi or TSr';
  const suite = acceptChosenProposal(saPayload.proposals, offer.offered);
  if (!suite) return 'responder chose an ESP proposal we did not offer';
  const spiOut = spiNumber(suite.spi);
  if (spiOut === undefined || spiOut < 256) return 'responder ESP SPI is invalid';
  if (!selectorsWithin(tsi.selectors, offer.tsi) || !selectorsWithin(tsr.selectors, offer.tsr)) return 'responder widened the traffic selectors';
  return makeChild(engine, sa, offer.child.name, suite, offer.spiIn, spiOut, inputs, true, tsi.selectors, tsr.selectors);
}

export type ResponderKeyExchange = (suite: NegotiatedSuite) => { sharedSecret: Uint8Array; payload: Payload } | { notify: number; data?: Uint8Array };

/**
 * The responder's half of a PFS key exchange in CREATE_CHILD_SA (RFC 7296
 * §1.3): the request's KE payload must carry the chosen proposal's group
 * (else INVALID_KE_PAYLOAD naming it); g^ir and our KE payload come back.
 */
export function responderKeyExchange(engine: IkeContext, request: Payload[]): ResponderKeyExchange {
  const ke = request.find((p) => p.type === PayloadType.KE);
  return (suite) => {
    if (!ke || ke.type !== PayloadType.KE || ke.group !== suite.ke) return { notify: NotifyType.INVALID_KE_PAYLOAD, data: u16Bytes(suite.ke!) };
    if (ke.data.length !== keyExchangeLength(ke.group)) return { notify: NotifyType.INVALID_SYNTAX };
    const kx = createKeyExchange(ke.group, { random: engine.random });
    const shared = kx.computeSharedSecret(ke.data);
    const payload: Payload = { type: PayloadType.KE, group: kx.group, data: kx.publicKey };
    kx.destroy();
    return shared.ok ? { sharedSecret: shared.value, payload } : { notify: NotifyType.INVALID_SYNTAX };
  };
}

/** The notify (and its data) a refused Child SA request is answered with. */
export interface ChildRefusal {
  notify: number;
  data?: Uint8Array;
}

/** The new Child SA and our SA, [KEr,] TSi, TSr payloads; or the refusal. */
export type ChildResponse = Result<{ payloads: Payload[]; child: ChildSa }, ChildRefusal>;

/**
 * Responder: choose a child policy whose ESP proposals and traffic selectors
 * fit the request (RFC 7296 §2.7, §2.9), narrow the selectors, and build the
 * Child SA. `keyExchange` is called with the chosen suite when it has a KE
 * group (PFS) and returns g^ir and our KE payload, or the notify to answer.
 */
export function respondChild(
  engine: IkeContext,
  sa: IkeSa,
  payloads: Payload[],
  nonces: { nonceI: Uint8Array; nonceR: Uint8Array },
  keyExchange?: ResponderKeyExchange,
  opts: { only?: string; replacing?: ChildSa; workerHint?: (childName: string, localTs: TrafficSelector[], remoteTs: TrafficSelector[]) => number | undefined } = {},
): ChildResponse {
  const saPayload = findPayload(payloads, PayloadType.SA);
  const tsi = findPayload(payloads, PayloadType.TSi);
  const tsr = findPayload(payloads, PayloadType.TSr);
  if (!saPayload || !tsi || !tsr) return { ok: false, error: { notify: NotifyType.INVALID_SYNTAX } };
  // RFC 7791 §8: the limit counts Child SAs over all IKE SAs of the peer; a rekey replaces one.
  const count = engine.peerChildCount(sa);
  if (opts.replacing) {
    // A rekey replaces only a Child SA that is still live. Replaced ones keep counting until
    // deleted (they are still installed, with keys), so a peer that rekeys without deleting
    // cannot pile them up: past the limit it waits for them to go (§2.25: retry later).
    const live = opts.replacing.state === 'installed' || opts.replacing.state === 'rekeying';
    if (count - (live ? 1 : 0) >= engine.limits.childSasPerPeer) return { ok: false, error: { notify: NotifyType.TEMPORARY_FAILURE } };
  } else if (count >= engine.limits.childSasPerPeer) {
    return { ok: false, error: { notify: NotifyType.NO_ADDITIONAL_SAS } };
  }
  let failure: number = NotifyType.NO_PROPOSAL_CHOSEN;
  for (const child of sa.policy.children) {
    if (opts.only !== undefined && child.name !== opts.only) continue;
    const suite = selectProposal(saPayload.proposals, keyExchange ? child.esp : withoutKe(child.esp), { requireKe: keyExchange !== undefined });
    if (!suite) continue;
    const localTs = narrowSelectors(tsr.selectors, localSelectors(sa, child, false));
    const remoteTs = narrowSelectors(tsi.selectors, remoteSelectors(sa, child));
    if (localTs.length === 0 || remoteTs.length === 0) {
      failure = NotifyType.TS_UNACCEPTABLE;
      continue;
    }
    const spiOut = spiNumber(suite.spi);
    if (spiOut === undefined || spiOut < 256) return { ok: false, error: { notify: NotifyType.INVALID_SYNTAX } };
    const extra: Payload[] = [];
    let sharedSecret: Uint8Array | undefined;
    if (suite.ke !== undefined) {
      if (!keyExchange) return { ok: false, error: { notify: NotifyType.NO_PROPOSAL_CHOSEN } };
      const kx = keyExchange(suite);
      if ('notify' in kx) return { ok: false, error: { notify: kx.notify, ...(kx.data ? { data: kx.data } : {}) } };
      sharedSecret = kx.sharedSecret;
      extra.push(kx.payload);
    }
    // The SPI names the worker that will own the Child SA (child-spi.ts); none
    // free there is a shortage of resources (RFC 7296 §2.25: TEMPORARY_FAILURE).
    let spiIn: number;
    try {
      const preferredWorker = opts.workerHint?.(child.name, localTs, remoteTs);
      spiIn = engine.newChildSpi({
        sa, localTs, remoteTs, ...(opts.replacing ? { replacing: opts.replacing } : {}), ...(preferredWorker !== undefined ? { preferredWorker } : {}),
      });
    } catch {
      sharedSecret?.fill(0);
      return { ok: false, error: { notify: NotifyType.TEMPORARY_FAILURE } };
    }
    const inputs: ChildKeyInputs = { ...nonces, ...(sharedSecret ? { sharedSecret } : {}) };
    const created = makeChild(engine, sa, child.name, suite, spiIn, spiOut, inputs, false, localTs, remoteTs);
    sharedSecret?.fill(0);
    return {
      ok: true,
      value: {
        child: created,
        payloads: [
          { type: PayloadType.SA, proposals: [chosenProposal(suite, spiBytes(spiIn))] },
          ...extra,
          { type: PayloadType.TSi, selectors: remoteTs },
          { type: PayloadType.TSr, selectors: localTs },
        ],
      },
    };
  }
  return { ok: false, error: { notify: failure } };
}

/**
 * The request of a CREATE_CHILD_SA exchange that creates a Child SA, or
 * rekeys `rekeying` (RFC 7296 §1.3.1, §1.3.3):
 * [N(REKEY_SA),] SA, Ni, [KEi,] TSi, TSr, with a KE payload for PFS.
 */
export function childRequest(
  ctx: IkeContext,
  sa: IkeSa,
  child: ChildPolicy,
  keGroup: number | undefined,
  rekeying?: ChildSa,
  preferredWorker?: number,
  spiRandom?: number,
): { offer: ChildOffer; nonceI: Uint8Array; keyExchange: KeyExchange | undefined; payloads: Payload[] } {
  const nonceI = ctx.random(NONCE_LENGTH);
  // §2.9.2: the rekeyed SA keeps the selectors the old one had.
  const offer = offerChild(ctx, sa, child, keGroup, rekeying, preferredWorker, spiRandom);
  const [saPayload, tsi, tsr] = offerPayloads(offer);
  const payloads: Payload[] = rekeying ? [espNotify(NotifyType.REKEY_SA, rekeying.spiIn)] : [];
  payloads.push(saPayload!, { type: PayloadType.NONCE, data: nonceI });
  let keyExchange: KeyExchange | undefined;
  if (keGroup !== undefined) {
    keyExchange = createKeyExchange(keGroup, { random: ctx.random });
    payloads.push({ type: PayloadType.KE, group: keGroup, data: keyExchange.publicKey });
  }
  payloads.push(tsi!, tsr!);
  return { offer, nonceI, keyExchange, payloads };
}
