// strongSwan-style proposal strings -> IKEv2 proposals (RFC 7296 §3.3).
//
// A proposal string is a dash-separated list of algorithm keywords in any order,
// as in strongSwan's swanctl.conf: `aes256gcm16-prfsha256-x25519`. Several
// keywords of one transform type are alternatives, most preferred first
// (RFC 7296 §3.3: "several transforms of the same type" are choices). The
// parser applies strongSwan's completion rules so that operators can copy their
// proposals from an existing swanctl.conf:
//   - IKE without a prf keyword takes its PRFs from the integrity keywords
//     (sha256 -> prfsha256), in the same order;
//   - IKE needs at least one key exchange method;
//   - ESP without esn/noesn gets noesn;
//   - ESP key exchange methods request PFS in CREATE_CHILD_SA; `modpnone`
//     (KE method NONE) among them makes PFS optional.
// Two rules are stricter than strongSwan and reject instead of silently fixing:
//   - an AEAD algorithm excludes integrity keywords (RFC 5282 §8, RFC 7634 §4);
//   - AEAD and non-AEAD encryption do not mix in one proposal (write two).
//
// Pure functions, no I/O. Every public entry checks its input and returns a
// ParseResult instead of throwing.
import { EncrId, EsnId, IntegId, KeGroup, PrfId, ProtocolId, TransformType } from '../wire/constants.js';
import { fail, type CryptoResult } from '../crypto/result.js';
import { isInstallableEspEncryption, isInstallableEspIntegrity } from '../crypto/esp-transform.js';

/** One transform of a proposal (RFC 7296 §3.3.2). */
export interface TransformSpec {
  /** TransformType (ENCR, PRF, INTEG, KE, ESN). */
  type: number;
  /** Transform ID within its type (EncrId, PrfId, IntegId, KeGroup, EsnId). */
  id: number;
  /** Key length in bits, for ENCR algorithms with a Key Length attribute (RFC 7296 §3.3.5). */
  keyLength?: number;
}

/**
 * One proposal: for each transform type the alternatives in preference order
 * (RFC 7296 §3.3). Transforms are ordered by transform type (ENCR, PRF, INTEG,
 * KE, ESN), alternatives of one type in the order the operator wrote them.
 */
export interface ProposalSpec {
  /** ProtocolId.IKE or ProtocolId.ESP. */
  protocol: number;
  transforms: TransformSpec[];
}

/**
 * Outcome of parsing operator input: a value or a sentence saying what is
 * wrong. The one result shape of control/crypto, under the name that says
 * what it is here.
 */
export type ParseResult<T> = CryptoResult<T>;

// ---------------------------------------------------------------------------
// Keyword table (strongSwan's proposal_keywords_static.txt, the subset ikeclone
// knows). The first keyword listed for a transform is its canonical spelling.

type Keyword = readonly [keyword: string, type: number, id: number, keyLength?: number];

const KEYWORDS: readonly Keyword[] = [
  // Encryption: AES-CBC (RFC 3602) with a Key Length attribute.
  ['aes128', TransformType.ENCR, EncrId.AES_CBC, 128],
  ['aes', TransformType.ENCR, EncrId.AES_CBC, 128],
  ['aes192', TransformType.ENCR, EncrId.AES_CBC, 192],
  ['aes256', TransformType.ENCR, EncrId.AES_CBC, 256],
  // AES-GCM with 16/12/8-octet ICV (RFC 4106, RFC 5282); gcm128/96/64 name the ICV in bits.
  ...aesGcmKeywords(),
  // ChaCha20-Poly1305 (RFC 7634): fixed 256-bit key, no Key Length attribute.
  ['chacha20poly1305', TransformType.ENCR, EncrId.CHACHA20_POLY1305],
  // Integrity.
  ['sha256', TransformType.INTEG, IntegId.HMAC_SHA2_256_128],
  ['sha2_256', TransformType.INTEG, IntegId.HMAC_SHA2_256_128],
  ['sha384', TransformType.INTEG, IntegId.HMAC_SHA2_384_192],
  ['sha2_384', TransformType.INTEG, IntegId.HMAC_SHA2_384_192],
  ['sha512', TransformType.INTEG, IntegId.HMAC_SHA2_512_256],
  ['sha2_512', TransformType.INTEG, IntegId.HMAC_SHA2_512_256],
  ['sha1', TransformType.INTEG, IntegId.HMAC_SHA1_96],
  ['aesxcbc', TransformType.INTEG, IntegId.AES_XCBC_96],
  // Pseudorandom functions (IKE only).
  ['prfsha256', TransformType.PRF, PrfId.HMAC_SHA2_256],
  ['prfsha384', TransformType.PRF, PrfId.HMAC_SHA2_384],
  ['prfsha512', TransformType.PRF, PrfId.HMAC_SHA2_512],
  ['prfsha1', TransformType.PRF, PrfId.HMAC_SHA1],
  ['prfaesxcbc', TransformType.PRF, PrfId.AES128_XCBC],
  ['prfaescmac', TransformType.PRF, PrfId.AES128_CMAC],
  // Key exchange methods (RFC 9370 "Transform Type 4").
  ['x25519', TransformType.KE, KeGroup.CURVE25519],
  ['curve25519', TransformType.KE, KeGroup.CURVE25519],
  ['x448', TransformType.KE, KeGroup.CURVE448],
  ['curve448', TransformType.KE, KeGroup.CURVE448],
  ['ecp256', TransformType.KE, KeGroup.ECP_256],
  ['ecp384', TransformType.KE, KeGroup.ECP_384],
  ['ecp521', TransformType.KE, KeGroup.ECP_521],
  ['modp2048', TransformType.KE, KeGroup.MODP_2048],
  ['modp3072', TransformType.KE, KeGroup.MODP_3072],
  ['modp4096', TransformType.KE, KeGroup.MODP_4096],
  ['modpnone', TransformType.KE, KeGroup.NONE],
  // Extended sequence numbers (ESP only, RFC 4303 §2.2.1).
  ['esn', TransformType.ESN, EsnId.YES],
  ['noesn', TransformType.ESN, EsnId.NO],
];

function aesGcmKeywords(): Keyword[] {
  const out: Keyword[] = [];
  const icvs = [
    [16, 128, EncrId.AES_GCM_16],
    [12, 96, EncrId.AES_GCM_12],
    [8, 64, EncrId.AES_GCM_8],
  ] as const;
  for (const bits of [128, 192, 256]) {
    for (const [octets, icvBits, id] of icvs) {
      out.push([`aes${bits}gcm${octets}`, TransformType.ENCR, id, bits]);
      out.push([`aes${bits}gcm${icvBits}`, TransformType.ENCR, id, bits]);
    }
  }
  return out;
}

const byKeyword = new Map<string, TransformSpec>();
for (const [keyword, type, id, keyLength] of KEYWORDS) {
  byKeyword.set(keyword, keyLength === undefined ? { type, id } : { type, id, keyLength });
}

/** Every proposal keyword the parser accepts, grouped by transform type (for help and errors). */
export const PROPOSAL_KEYWORDS: Readonly<Record<'encryption' | 'integrity' | 'prf' | 'keyExchange' | 'esn', readonly string[]>> = {
  encryption: KEYWORDS.filter((k) => k[1] === TransformType.ENCR).map((k) => k[0]),
  integrity: KEYWORDS.filter((k) => k[1] === TransformType.INTEG).map((k) => k[0]),
  prf: KEYWORDS.filter((k) => k[1] === TransformType.PRF).map((k) => k[0]),
  keyExchange: KEYWORDS.filter((k) => k[1] === TransformType.KE).map((k) => k[0]),
  esn: KEYWORDS.filter((k) => k[1] === TransformType.ESN).map((k) => k[0]),
};

function keywordList(): string {
  return (
    `encryption: ${PROPOSAL_KEYWORDS.encryption.join(' ')}; ` +
    `integrity: ${PROPOSAL_KEYWORDS.integrity.join(' ')}; ` +
    `prf: ${PROPOSAL_KEYWORDS.prf.join(' ')}; ` +
    `key exchange: ${PROPOSAL_KEYWORDS.keyExchange.join(' ')}; ` +
    `esn: ${PROPOSAL_KEYWORDS.esn.join(' ')}`
  );
}

/** PRF implied by an integrity algorithm, as strongSwan derives it (sha256 -> prfsha256). */
const PRF_FROM_INTEG: ReadonlyMap<number, number> = new Map([
  [IntegId.HMAC_SHA1_96, PrfId.HMAC_SHA1],
  [IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256],
  [IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384],
  [IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512],
  [IntegId.AES_XCBC_96, PrfId.AES128_XCBC],
]);

const AEAD_ENCR: ReadonlySet<number> = new Set([
  EncrId.AES_CCM_8, EncrId.AES_CCM_12, EncrId.AES_CCM_16,
  EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16,
  EncrId.NULL_AUTH_AES_GMAC, EncrId.CHACHA20_POLY1305,
]);

/** True for combined-mode (AEAD) encryption IDs, which take no INTEG transform (RFC 5282 §8). */
export function isAeadEncr(id: number): boolean {
  return AEAD_ENCR.has(id);
}

// ---------------------------------------------------------------------------
// Parsing

/**
 * Parse an IKE proposal string, e.g. `aes256gcm16-prfsha256-x25519` or
 * `aes256-sha256-modp2048` (PRF derived: prfsha256).
 */
export function parseIkeProposal(s: string): ParseResult<ProposalSpec> {
  return parseProposal(s, ProtocolId.IKE);
}

/**
 * Parse an ESP proposal string, e.g. `aes128gcm16` (gets noesn) or
 * `aes256gcm16-x25519-esn` (PFS with x25519 on CREATE_CHILD_SA).
 */
export function parseEspProposal(s: string): ParseResult<ProposalSpec> {
  return parseProposal(s, ProtocolId.ESP);
}

/**
 * An ESP proposal for the configuration: parsed as parseEspProposal does,
 * then refused with the keyword named if it lists an encryption or integrity
 * algorithm the data plane cannot install (control/crypto/esp-transform.ts:
 * e.g. aes192, aes192gcm16, sha1). Negotiation skips such transforms too
 * (control/ike/proposals.ts), but refusing them here tells the operator when
 * the file loads (exit 2) instead of through a Child SA that never comes up
 * or comes up with another proposal than the one written. The keyword table
 * itself stays strongSwan's: IKE proposals use it too (their SK payload runs
 * in node:crypto), and so do proposals received from peers.
 */
export function parseInstallableEspProposal(s: string): ParseResult<ProposalSpec> {
  const r = parseEspProposal(s);
  if (!r.ok) return r;
  // Parsed: every keyword is in the table. Name the one the operator wrote.
  for (const raw of s.trim().split('-')) {
    const t = byKeyword.get(raw.toLowerCase())!;
    const installable =
      t.type === TransformType.ENCR ? isInstallableEspEncryption(t.id, t.keyLength) :
      t.type === TransformType.INTEG ? isInstallableEspIntegrity(t.id) : true;
    if (installable) continue;
    const what = t.type === TransformType.ENCR ? 'encryption' : 'integrity';
    return fail(
      `ESP proposal '${s.trim()}' has '${raw}' (${formatTransform(t)}), which the data plane cannot run; ` +
      `ESP ${what} it runs: ${(t.type === TransformType.ENCR ? ESP_ENCRYPTION_KEYWORDS : ESP_INTEGRITY_KEYWORDS).join(' ')}`,
    );
  }
  return r;
}

/** The keywords of encryption and integrity algorithms ESP proposals may use (the data plane installs them). */
export const ESP_ENCRYPTION_KEYWORDS: readonly string[] = KEYWORDS.filter((k) => k[1] === TransformType.ENCR && isInstallableEspEncryption(k[2], k[3])).map((k) => k[0]);
export const ESP_INTEGRITY_KEYWORDS: readonly string[] = KEYWORDS.filter((k) => k[1] === TransformType.INTEG && isInstallableEspIntegrity(k[2])).map((k) => k[0]);

const TYPE_ORDER = [TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE, TransformType.ESN];

function parseProposal(s: unknown, protocol: number): ParseResult<ProposalSpec> {
  const what = protocol === ProtocolId.IKE ? 'IKE' : 'ESP';
  if (typeof s !== 'string') return fail(`${what} proposal must be a string, got ${typeof s}`);
  const text = s.trim();
  if (text === '') return fail(`empty ${what} proposal`);
  if (text.length > 1024) return fail(`${what} proposal is longer than 1024 characters`);

  const byType = new Map<number, TransformSpec[]>(TYPE_ORDER.map((t) => [t, []]));
  const seen = new Map<string, string>(); // transform identity -> keyword that produced it
  for (const raw of text.split('-')) {
    const keyword = raw.toLowerCase();
    if (keyword === '') return fail(`empty keyword in ${what} proposal '${text}' (doubled or trailing '-')`);
    const t = byKeyword.get(keyword);
    if (t === undefined) {
      return fail(`unknown algorithm keyword '${raw}' in ${what} proposal '${text}'${suggest(keyword)}; valid keywords are ${keywordList()}`);
    }
    const key = `${t.type}/${t.id}/${t.keyLength ?? 0}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      return fail(`'${raw}' repeats '${earlier}' in ${what} proposal '${text}'`);
    }
    seen.set(key, raw);
    byType.get(t.type)!.push({ ...t });
  }

  const encr = byType.get(TransformType.ENCR)!;
  const prf = byType.get(TransformType.PRF)!;
  const integ = byType.get(TransformType.INTEG)!;
  const ke = byType.get(TransformType.KE)!;
  const esn = byType.get(TransformType.ESN)!;

  // RFC 7296 §3.3.3: ENCR is mandatory for IKE and ESP.
  if (encr.length === 0) return fail(`${what} proposal '${text}' has no encryption algorithm (e.g. aes256gcm16, aes256, chacha20poly1305)`);
  const aead = encr.filter((t) => isAeadEncr(t.id)).length;
  if (aead !== 0 && aead !== encr.length) {
    return fail(`${what} proposal '${text}' mixes AEAD and non-AEAD encryption; write them as two proposals`);
  }
  const isAead = aead !== 0;
  // RFC 5282 §8, RFC 7634 §4: no INTEG transform with combined-mode encryption.
  if (isAead && integ.length > 0) {
    const hint = protocol === ProtocolId.IKE ? ' (for the PRF write prf' + keywordOf(integ[0]!) + ')' : '';
    return fail(`${what} proposal '${text}' combines AEAD encryption with the integrity algorithm '${keywordOf(integ[0]!)}'; AEAD proposals must not have integrity algorithms${hint}`);
  }
  if (!isAead && integ.length === 0) {
    return fail(`${what} proposal '${text}' uses non-AEAD encryption without an integrity algorithm (e.g. sha256)`);
  }

  if (protocol === ProtocolId.IKE) {
    if (esn.length > 0) return fail(`IKE proposal '${text}' has '${keywordOf(esn[0]!)}'; esn and noesn apply only to ESP proposals`);
    // strongSwan: without a prf keyword, use the PRFs matching the integrity algorithms.
    if (prf.length === 0) {
      if (isAead) {
        return fail(`IKE proposal '${text}' has AEAD encryption but no PRF; add one of ${PROPOSAL_KEYWORDS.prf.join(' ')}`);
      }
      for (const t of integ) {
        const id = PRF_FROM_INTEG.get(t.id);
        if (id === undefined) return fail(`IKE proposal '${text}': no PRF corresponds to '${keywordOf(t)}'; add a prf keyword`);
        if (!prf.some((p) => p.id === id)) prf.push({ type: TransformType.PRF, id });
      }
    }
    if (ke.some((t) => t.id === KeGroup.NONE)) return fail(`IKE proposal '${text}' has modpnone; IKE SAs always need a key exchange`);
    if (ke.length === 0) return fail(`IKE proposal '${text}' has no key exchange method (e.g. x25519, ecp256, modp2048)`);
  } else {
    if (prf.length > 0) return fail(`ESP proposal '${text}' has the PRF '${keywordOf(prf[0]!)}'; ESP proposals have no PRF`);
    // strongSwan default: no extended sequence numbers unless asked for.
    if (esn.length === 0) esn.push({ type: TransformType.ESN, id: EsnId.NO });
  }

  const transforms: TransformSpec[] = [];
  for (const type of TYPE_ORDER) transforms.push(...byType.get(type)!);
  return { ok: true, value: { protocol, transforms } };
}

/** " (did you mean X?)": the first keyword the input is a prefix of, else one within two edits. */
function suggest(keyword: string): string {
  for (const k of byKeyword.keys()) if (k.startsWith(keyword) && keyword.length >= 3) return ` (did you mean '${k}'?)`;
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of byKeyword.keys()) {
    const d = editDistance(keyword, k);
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return best === undefined ? '' : ` (did you mean '${best}'?)`;
}

/** Levenshtein distance (internal helper, small strings only). */
export function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Math.max(a.length, b.length);
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------
// Formatting

/** Canonical keyword of a transform, or undefined when the table has none. */
function keywordOf(t: TransformSpec): string {
  for (const [keyword, type, id, keyLength] of KEYWORDS) {
    if (type === t.type && id === t.id && keyLength === t.keyLength) return keyword;
  }
  return formatTransform(t);
}

const ENCR_NAMES: ReadonlyMap<number, string> = new Map([
  [EncrId.DES_IV64, 'DES_IV64'], [EncrId.DES, 'DES_CBC'], [EncrId.TRIPLE_DES, '3DES_CBC'],
  [EncrId.NULL, 'NULL'], [EncrId.AES_CBC, 'AES_CBC'], [EncrId.AES_CTR, 'AES_CTR'],
  [EncrId.AES_CCM_8, 'AES_CCM_8'], [EncrId.AES_CCM_12, 'AES_CCM_12'], [EncrId.AES_CCM_16, 'AES_CCM_16'],
  [EncrId.AES_GCM_8, 'AES_GCM_8'], [EncrId.AES_GCM_12, 'AES_GCM_12'], [EncrId.AES_GCM_16, 'AES_GCM_16'],
  [EncrId.NULL_AUTH_AES_GMAC, 'NULL_AES_GMAC'], [EncrId.CHACHA20_POLY1305, 'CHACHA20_POLY1305'],
]);
const PRF_NAMES: ReadonlyMap<number, string> = new Map([
  [PrfId.HMAC_MD5, 'PRF_HMAC_MD5'], [PrfId.HMAC_SHA1, 'PRF_HMAC_SHA1'], [PrfId.AES128_XCBC, 'PRF_AES128_XCBC'],
  [PrfId.HMAC_SHA2_256, 'PRF_HMAC_SHA2_256'], [PrfId.HMAC_SHA2_384, 'PRF_HMAC_SHA2_384'],
  [PrfId.HMAC_SHA2_512, 'PRF_HMAC_SHA2_512'], [PrfId.AES128_CMAC, 'PRF_AES128_CMAC'],
]);
const INTEG_NAMES: ReadonlyMap<number, string> = new Map([
  [IntegId.NONE, 'NONE'], [IntegId.HMAC_MD5_96, 'HMAC_MD5_96'], [IntegId.HMAC_SHA1_96, 'HMAC_SHA1_96'],
  [IntegId.AES_XCBC_96, 'AES_XCBC_96'], [IntegId.HMAC_SHA2_256_128, 'HMAC_SHA2_256_128'],
  [IntegId.HMAC_SHA2_384_192, 'HMAC_SHA2_384_192'], [IntegId.HMAC_SHA2_512_256, 'HMAC_SHA2_512_256'],
]);
const KE_NAMES: ReadonlyMap<number, string> = new Map([
  [KeGroup.NONE, 'MODP_NONE'], [KeGroup.MODP_1024, 'MODP_1024'], [KeGroup.MODP_2048, 'MODP_2048'],
  [KeGroup.MODP_3072, 'MODP_3072'], [KeGroup.MODP_4096, 'MODP_4096'], [KeGroup.ECP_256, 'ECP_256'],
  [KeGroup.ECP_384, 'ECP_384'], [KeGroup.ECP_521, 'ECP_521'], [KeGroup.CURVE25519, 'CURVE_25519'],
  [KeGroup.CURVE448, 'CURVE_448'],
]);
const ESN_NAMES: ReadonlyMap<number, string> = new Map([[EsnId.NO, 'NO_EXT_SEQ'], [EsnId.YES, 'EXT_SEQ']]);

/**
 * strongSwan's name of a transform as `swanctl --list-sas` shows it, with the
 * key length appended to encryption algorithms: "AES_GCM_16_256",
 * "PRF_HMAC_SHA2_256", "HMAC_SHA2_256_128", "CURVE_25519", "NO_EXT_SEQ".
 * Unknown IDs print as "<TYPE>_<id>" so transforms received from a peer can be
 * logged whatever they are.
 */
export function formatTransform(t: TransformSpec): string {
  if (t === null || typeof t !== 'object') throw new TypeError('formatTransform: expected a TransformSpec');
  if (!Number.isInteger(t.type) || !Number.isInteger(t.id)) throw new TypeError('formatTransform: type and id must be integers');
  if (t.keyLength !== undefined && !Number.isInteger(t.keyLength)) throw new TypeError('formatTransform: keyLength must be an integer');
  switch (t.type) {
    case TransformType.ENCR: {
      const name = ENCR_NAMES.get(t.id) ?? `ENCR_${t.id}`;
      return t.keyLength === undefined ? name : `${name}_${t.keyLength}`;
    }
    case TransformType.PRF:
      return PRF_NAMES.get(t.id) ?? `PRF_${t.id}`;
    case TransformType.INTEG:
      return INTEG_NAMES.get(t.id) ?? `INTEG_${t.id}`;
    case TransformType.KE:
      return KE_NAMES.get(t.id) ?? `KE_${t.id}`;
    case TransformType.ESN:
      return ESN_NAMES.get(t.id) ?? `ESN_${t.id}`;
    default:
      return `TRANSFORM_${t.type}_${t.id}`;
  }
}

const FORMAT_ORDER = [TransformType.ENCR, TransformType.INTEG, TransformType.PRF, TransformType.KE, TransformType.ESN];

/**
 * A proposal as strongSwan prints it: transform names joined by '/', grouped
 * in strongSwan's order (encryption, integrity, PRF, key exchange, ESN),
 * alternatives of one type in their given order:
 * "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519".
 */
export function formatProposal(transforms: TransformSpec[]): string {
  if (!Array.isArray(transforms)) throw new TypeError('formatProposal: expected an array of TransformSpec');
  const rank = (type: number): number => {
    const i = FORMAT_ORDER.indexOf(type as (typeof FORMAT_ORDER)[number]);
    return i < 0 ? FORMAT_ORDER.length : i;
  };
  const ordered = transforms.map((t, i) => ({ t, i })).sort((a, b) => rank(a.t.type) - rank(b.t.type) || a.i - b.i);
  return ordered.map(({ t }) => formatTransform(t)).join('/');
}

/**
 * The proposal back as a keyword string that parses to the same ProposalSpec
 * (canonical keywords, in transform-type order): "aes256gcm16-prfsha256-x25519-noesn".
 * Transforms without a keyword are written by their strongSwan name, so the
 * result then does not parse; that only happens for proposals received from a peer.
 */
export function proposalKeywords(spec: ProposalSpec): string {
  if (spec === null || typeof spec !== 'object' || !Array.isArray(spec.transforms)) {
    throw new TypeError('proposalKeywords: expected a ProposalSpec');
  }
  return spec.transforms.map((t) => keywordOf(t)).join('-');
}

// ---------------------------------------------------------------------------
// Defaults

/**
 * IKE proposals used when a connection lists none: AEAD first (AES-GCM with a
 * 16-octet ICV, ChaCha20-Poly1305), then AES-CBC with HMAC-SHA2 for peers
 * without AEAD support; x25519 preferred, then the NIST curves, MODP 2048 last
 * (RFC 8247 §2.2, §2.4).
 */
export const DEFAULT_IKE_PROPOSALS: string[] = [
  'aes256gcm16-aes128gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp2048',
  'aes256-aes128-sha256-sha384-sha512-x25519-ecp256-ecp384-modp2048',
];

/**
 * ESP proposals used when a child lists none: the AEAD algorithms the data
 * plane runs in WebAssembly (AES-GCM-16, ChaCha20-Poly1305), no PFS, no ESN.
 */
export const DEFAULT_ESP_PROPOSALS: string[] = ['aes256gcm16-aes128gcm16-chacha20poly1305'];
