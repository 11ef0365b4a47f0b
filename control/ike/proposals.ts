// SA payload negotiation (RFC 7296 §2.7, §3.3): turning configured proposals
// into wire proposals, choosing one as responder, and checking the responder's
// choice as initiator. One transform of each type ends up in a NegotiatedSuite.
// An ESP suite is accepted only if the data plane can install it
// (control/crypto/esp-transform.ts): otherwise the Child SA would come up and
// carry nothing. Configuration refuses such ESP proposals already; this is the
// engine's own guard for policies built in code.
import { EsnId, IntegId, KeGroup, ProtocolId, TransformType } from '../wire/constants.js';
import type { Proposal, Transform } from '../wire/payloads.js';
import type { ProposalSpec } from '../config/proposal.js';
import { encrInfo, integInfo, prfInfo, SUPPORTED_KE_GROUPS } from '../crypto/algorithms.js';
import { espTransformFor, isInstallableEspEncryption, isInstallableEspIntegrity } from '../crypto/esp-transform.js';

/** The outcome of a negotiation: one algorithm of each transform type. */
export interface NegotiatedSuite {
  proposalNumber: number;
  protocol: number;
  /** The SPI the chosen proposal carried (the proposer's SPI). */
  spi: Uint8Array;
  encr: number;
  encrKeyLength?: number;
  prf?: number;
  integ?: number;
  ke?: number;
  esn?: number;
}

function supported(protocol: number, t: Transform): boolean {
  // RFC 7296 §3.3.6: a transform with an attribute we do not understand is
  // unacceptable. Key Length (14), the only one defined, is in keyLength.
  if (t.attributes !== undefined && t.attributes.length > 0) return false;
  switch (t.type) {
    case TransformType.ENCR:
      return encrInfo(t.id, t.keyLength) !== undefined && (protocol !== ProtocolId.ESP || isInstallableEspEncryption(t.id, t.keyLength));
    case TransformType.PRF:
      return protocol === ProtocolId.IKE && prfInfo(t.id) !== undefined;
    case TransformType.INTEG:
      return t.id === IntegId.NONE || (integInfo(t.id) !== undefined && (protocol !== ProtocolId.ESP || isInstallableEspIntegrity(t.id)));
    case TransformType.KE:
      return t.id === KeGroup.NONE || SUPPORTED_KE_GROUPS.includes(t.id);
    case TransformType.ESN:
      return t.id === EsnId.NO || t.id === EsnId.YES;
    default:
      return false;
  }
}

/** Wire proposals for an SA payload, numbered from 1, each carrying `spi`. */
export function buildProposals(specs: readonly ProposalSpec[], spi: Uint8Array): Proposal[] {
  return specs.map((spec, i) => {
    const transforms: Transform[] = spec.transforms.map((t) => ({
      type: t.type,
      id: t.id,
      ...(t.keyLength !== undefined ? { keyLength: t.keyLength } : {}),
    }));
    // RFC 7296 §3.3.3: ESN is mandatory in ESP proposals.
    if (spec.protocol === ProtocolId.ESP && !transforms.some((t) => t.type === TransformType.ESN)) {
      transforms.push({ type: TransformType.ESN, id: EsnId.NO });
    }
    return { number: i + 1, protocol: spec.protocol, spi, transforms };
  });
}

/**
 * Proposals for a request that carries a KE payload (CREATE_CHILD_SA with PFS,
 * IKE rekey and clone): `group` — the KE payload's — first, then the other
 * configured groups, so that the responder may prefer another one and answer
 * INVALID_KE_PAYLOAD (RFC 7296 §1.3). NONE is left out: a KE payload is sent.
 */
export function withPreferredKeGroup(specs: readonly ProposalSpec[], group: number): ProposalSpec[] {
  return specs.map((s) => {
    const others = s.transforms.filter((t) => t.type === TransformType.KE && t.id !== KeGroup.NONE && t.id !== group);
    return { protocol: s.protocol, transforms: [...s.transforms.filter((t) => t.type !== TransformType.KE), { type: TransformType.KE, id: group }, ...others] };
  });
}

/** The first KE group of the preferred proposal (the one to send a KE payload for). */
export function preferredKeGroup(specs: readonly ProposalSpec[]): number | undefined {
  for (const s of specs) for (const t of s.transforms) if (t.type === TransformType.KE && t.id !== KeGroup.NONE) return t.id;
  return undefined;
}

function sameTransform(a: Transform, b: { type: number; id: number; keyLength?: number }): boolean {
  return a.type === b.type && a.id === b.id && (a.keyLength ?? 0) === (b.keyLength ?? 0);
}

function required(protocol: number): number[] {
  return protocol === ProtocolId.IKE ? [TransformType.ENCR, TransformType.PRF, TransformType.KE] : [TransformType.ENCR, TransformType.ESN];
}

/**
 * Responder choice (RFC 7296 §2.7): our configured order is the preference;
 * for each configured proposal, the first offered proposal of the same protocol
 * that has a common transform of every type we and they list.
 * `requireKe` false drops KE from the match (Child SAs created in IKE_AUTH).
 */
export function selectProposal(
  offered: readonly Proposal[],
  configured: readonly ProposalSpec[],
  opts: { requireKe?: boolean } = {},
): NegotiatedSuite | undefined {
  const requireKe = opts.requireKe ?? true;
  for (const spec of configured) {
    for (const prop of offered) {
      if (prop.protocol !== spec.protocol) continue;
      const chosen = new Map<number, Transform>();
      const types = new Set<number>([...prop.transforms.map((t) => t.type), ...spec.transforms.map((t) => t.type)]);
      if (spec.protocol === ProtocolId.ESP && !spec.transforms.some((t) => t.type === TransformType.ESN)) {
        // An ESP spec without ESN accepts "no ESN" only.
        if (prop.transforms.some((t) => sameTransform(t, { type: TransformType.ESN, id: EsnId.NO }))) {
          chosen.set(TransformType.ESN, { type: TransformType.ESN, id: EsnId.NO });
        }
      }
      let ok = true;
      for (const type of types) {
        if (chosen.has(type)) continue;
        if (type === TransformType.KE && !requireKe) continue;
        const mine = spec.transforms.filter((t) => t.type === type);
        const theirs = prop.transforms.filter((t) => t.type === type && supported(prop.protocol, t));
        if (type === TransformType.INTEG && mine.length === 0 && theirs.length === 0) continue;
        // Optional KE in ESP: "none" on one side matches absence on the other.
        const pick = mine.map((m) => theirs.find((t) => sameTransform(t, m))).find((t) => t !== undefined);
        if (pick) {
          chosen.set(type, pick);
          continue;
        }
        const noneOk =
          (type === TransformType.KE && (mine.length === 0 || mine.some((m) => m.id === KeGroup.NONE)) && (theirs.length === 0 || theirs.some((t) => t.id === KeGroup.NONE))) ||
          (type === TransformType.INTEG && (mine.length === 0 || mine.some((m) => m.id === IntegId.NONE)) && (theirs.length === 0 || theirs.some((t) => t.id === IntegId.NONE)));
        if (noneOk) continue;
        ok = false;
        break;
      }
      if (!ok) continue;
      if (!required(spec.protocol).every((t) => chosen.has(t) || (t === TransformType.KE && !requireKe))) continue;
      const suite = suiteFrom(prop, chosen);
      if (suite && suiteConsistent(suite)) return suite;
    }
  }
  return undefined;
}

function suiteFrom(prop: Proposal, chosen: Map<number, Transform>): NegotiatedSuite | undefined {
  const encr = chosen.get(TransformType.ENCR);
  if (!encr) return undefined;
  const suite: NegotiatedSuite = { proposalNumber: prop.number, protocol: prop.protocol, spi: prop.spi, encr: encr.id };
  if (encr.keyLength !== undefined) suite.encrKeyLength = encr.keyLength;
  const prf = chosen.get(TransformType.PRF);
  if (prf) suite.prf = prf.id;
  const integ = chosen.get(TransformType.INTEG);
  if (integ && integ.id !== IntegId.NONE) suite.integ = integ.id;
  const ke = chosen.get(TransformType.KE);
  if (ke && ke.id !== KeGroup.NONE) suite.ke = ke.id;
  const esn = chosen.get(TransformType.ESN);
  if (esn) suite.esn = esn.id;
  return suite;
}

/**
 * AEAD ciphers take no integrity algorithm; others need one (RFC 5282 §8, RFC
 * 7296 §3.3.3). An ESP suite must also be one the data plane installs.
 */
function suiteConsistent(s: NegotiatedSuite): boolean {
  const info = encrInfo(s.encr, s.encrKeyLength);
  if (!info) return false;
  if (s.protocol === ProtocolId.ESP && espTransformFor(s.encr, s.encrKeyLength, s.integ) === undefined) return false;
  return info.aead ? s.integ === undefined : s.integ !== undefined;
}

/** The transforms of a suite, for the responder's one-proposal SA payload. */
export function suiteTransforms(s: NegotiatedSuite): Transform[] {
  const t: Transform[] = [{ type: TransformType.ENCR, id: s.encr, ...(s.encrKeyLength !== undefined ? { keyLength: s.encrKeyLength } : {}) }];
  if (s.prf !== undefined) t.push({ type: TransformType.PRF, id: s.prf });
  if (s.integ !== undefined) t.push({ type: TransformType.INTEG, id: s.integ });
  if (s.ke !== undefined) t.push({ type: TransformType.KE, id: s.ke });
  if (s.esn !== undefined) t.push({ type: TransformType.ESN, id: s.esn });
  return t;
}

/** The responder's SA payload content: exactly the chosen proposal, with our SPI. */
export function chosenProposal(s: NegotiatedSuite, spi: Uint8Array): Proposal {
  return { number: s.proposalNumber, protocol: s.protocol, spi, transforms: suiteTransforms(s) };
}

/**
 * Initiator check of the responder's SA payload (RFC 7296 §2.7, §3.3.6): exactly
 * one proposal, whose number and transforms are among what we offered.
 */
export function acceptChosenProposal(response: readonly Proposal[], offered: readonly Proposal[]): NegotiatedSuite | undefined {
  if (response.length !== 1) return undefined;
  const r = response[0]!;
  const mine = offered.find((p) => p.number === r.number && p.protocol === r.protocol);
  if (!mine) return undefined;
  const chosen = new Map<number, Transform>();
  for (const t of r.transforms) {
    if (chosen.has(t.type)) return undefined; // one transform per type
    if (!mine.transforms.some((m) => sameTransform(m, t))) return undefined;
    if (!supported(r.protocol, t)) return undefined;
    chosen.set(t.type, t);
  }
  if (!required(r.protocol).filter((t) => t !== TransformType.KE).every((t) => chosen.has(t))) return undefined;
  const suite = suiteFrom(r, chosen);
  return suite && suiteConsistent(suite) ? suite : undefined;
}
