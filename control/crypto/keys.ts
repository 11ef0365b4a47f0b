// IKE SA and Child SA key derivation (RFC 7296 §2.14, §2.17, §2.18).
// Inputs are values the engine already validated (nonce lengths, SPIs from
// the header, a shared secret from keyexchange.ts), so misuse throws.

import { IntegId } from '../wire/constants.js';
import { IKE_SPI_LENGTH } from '../wire/header.js';
import { encrInfo, integInfo, type EncrInfo, type IntegInfo } from './algorithms.js';
import { concatBytes as concat } from './bytes.js';
import { prf, prfPlus, requirePrf } from './prf.js';
import { wipe } from './random.js';

/** The seven IKE SA secrets, in the order prf+ produces them (RFC 7296 §2.14). */
export interface IkeKeys {
  /** Derives Child SA keys and rekeyed IKE SA keys. */
  skD: Uint8Array;
  /** Integrity keys, initiator->responder and back; empty for AEAD suites. */
  skAi: Uint8Array;
  skAr: Uint8Array;
  /** Encryption keying material (with the 4-byte salt for AEAD). */
  skEi: Uint8Array;
  skEr: Uint8Array;
  /** Keys for the AUTH payload's prf(SK_p, RestOfIDPayload) (§2.15). */
  skPi: Uint8Array;
  skPr: Uint8Array;
}

/** The negotiated IKE SA transforms that key derivation depends on. */
export interface IkeSuite {
  encr: number;
  /** Key Length attribute of the ENCR transform (bits); absent for ChaCha20-Poly1305. */
  encrKeyLength?: number;
  prf: number;
  /** IntegId.NONE for AEAD ciphers. */
  integ: number;
}

/** Values of one IKE_SA_INIT or CREATE_CHILD_SA exchange that go into SKEYSEED and prf+. */
export interface KeyExchangeInputs {
  nonceI: Uint8Array;
  nonceR: Uint8Array;
  /** g^ir as returned by KeyExchange.computeSharedSecret. */
  sharedSecret: Uint8Array;
  /** 8-byte IKE SPIs of the (new) IKE SA. */
  spiI: Uint8Array;
  spiR: Uint8Array;
}

export interface DerivedIkeKeys {
  skeyseed: Uint8Array;
  keys: IkeKeys;
}

/** The ENCR and INTEG descriptions of a suite (INTEG undefined for AEAD); throws for a suite keys cannot be derived for. */
export function resolveSuite(suite: IkeSuite): { encr: EncrInfo; integ: IntegInfo | undefined } {
  const encr = encrInfo(suite.encr, suite.encrKeyLength);
  if (!encr) throw new RangeError(`unsupported encryption transform ${suite.encr} (key length ${suite.encrKeyLength})`);
  requirePrf(suite.prf);
  if (encr.aead) {
    if (suite.integ !== IntegId.NONE) throw new RangeError(`AEAD cipher ${encr.name} takes no integrity transform (got ${suite.integ})`);
    return { encr, integ: undefined };
  }
  const integ = integInfo(suite.integ);
  if (!integ) throw new RangeError(`unsupported integrity transform ${suite.integ}`);
  return { encr, integ };
}

/**
 * Keys of a new IKE SA from IKE_SA_INIT (RFC 7296 §2.14):
 *
 *     SKEYSEED = prf(Ni | Nr, g^ir)
 *     {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
 *
 * SK_d and SK_p* are the PRF's preferred key length, SK_a* the INTEG key
 * length (none for AEAD), SK_e* the ENCR keying material (with salt for AEAD).
 */
export function deriveIkeKeys(suite: IkeSuite, inputs: KeyExchangeInputs): DerivedIkeKeys {
  checkSpis(inputs);
  const nonces = concat(inputs.nonceI, inputs.nonceR);
  const skeyseed = prf(suite.prf, nonces, inputs.sharedSecret);
  wipe(nonces);
  return { skeyseed, keys: expandIkeKeys(suite, skeyseed, inputs) };
}

/**
 * Keys of the IKE SA created by rekeying (or cloning, RFC 7791 §5.2) an
 * existing one with CREATE_CHILD_SA (RFC 7296 §2.18):
 *
 *     SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
 *
 * computed with the OLD IKE SA's PRF (`oldPrf`), since the exchange belongs
 * to the old SA; the seven keys then come from prf+ of the NEW suite's PRF
 * over Ni | Nr | SPIi | SPIr, where nonces and SPIs are those of the rekey
 * exchange in its own initiator/responder order.
 */
export function deriveRekeyedIkeKeys(suite: IkeSuite, oldPrf: number, oldSkD: Uint8Array, inputs: KeyExchangeInputs): DerivedIkeKeys {
  checkSpis(inputs);
  const seed = concat(inputs.sharedSecret, inputs.nonceI, inputs.nonceR);
  const skeyseed = prf(oldPrf, oldSkD, seed);
  wipe(seed);
  return { skeyseed, keys: expandIkeKeys(suite, skeyseed, inputs) };
}

function expandIkeKeys(suite: IkeSuite, skeyseed: Uint8Array, inputs: KeyExchangeInputs): IkeKeys {
  const { encr, integ } = resolveSuite(suite);
  const prfLength = requirePrf(suite.prf).length;
  const integLength = integ?.keyLength ?? 0;
  const lengths = [prfLength, integLength, integLength, encr.keyMaterialLength, encr.keyMaterialLength, prfLength, prfLength];
  const total = lengths.reduce((a, b) => a + b, 0);
  const seed = concat(inputs.nonceI, inputs.nonceR, inputs.spiI, inputs.spiR);
  const stream = prfPlus(suite.prf, skeyseed, seed, total);
  const [skD, skAi, skAr, skEi, skEr, skPi, skPr] = split(stream, lengths);
  wipe(stream);
  return { skD: skD!, skAi: skAi!, skAr: skAr!, skEi: skEi!, skEr: skEr!, skPi: skPi!, skPr: skPr! };
}

/** Keys of one Child SA; "I" keys protect initiator->responder traffic, "R" keys the reverse. */
export interface ChildKeys {
  encrI: Uint8Array;
  integI: Uint8Array;
  encrR: Uint8Array;
  /** Empty for AEAD ciphers. */
  integR: Uint8Array;
}

/** Nonces of the exchange that created the Child SA, and g^ir when it had a KE payload (PFS). */
export interface ChildKeyInputs {
  nonceI: Uint8Array;
  nonceR: Uint8Array;
  sharedSecret?: Uint8Array;
}

/**
 * Child SA keying material (RFC 7296 §2.17):
 *
 *     KEYMAT = prf+(SK_d, Ni | Nr)            (IKE_AUTH, or CREATE_CHILD_SA without KE)
 *     KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)
 *
 * Ni and Nr are those of the exchange (for the first Child SA, the
 * IKE_SA_INIT nonces). Keys are taken initiator->responder first, each
 * direction's encryption key before its integrity key:
 * encrI | integI | encrR | integR.
 */
export function deriveChildKeys(prfId: number, skD: Uint8Array, inputs: ChildKeyInputs, encr: EncrInfo, integ?: IntegInfo): ChildKeys {
  if (encr.aead && integ) throw new RangeError(`AEAD cipher ${encr.name} takes no integrity transform`);
  if (!encr.aead && !integ) throw new RangeError(`${encr.name} needs an integrity transform`);
  const integLength = integ?.keyLength ?? 0;
  const lengths = [encr.keyMaterialLength, integLength, encr.keyMaterialLength, integLength];
  const seed = inputs.sharedSecret ? concat(inputs.sharedSecret, inputs.nonceI, inputs.nonceR) : concat(inputs.nonceI, inputs.nonceR);
  const stream = prfPlus(prfId, skD, seed, lengths.reduce((a, b) => a + b, 0));
  wipe(seed);
  const [encrI, integI, encrR, integR] = split(stream, lengths);
  wipe(stream);
  return { encrI: encrI!, integI: integI!, encrR: encrR!, integR: integR! };
}

/** Zeroises every key of an IKE SA (architecture §4.5). */
export function wipeIkeKeys(k: IkeKeys): void {
  wipe(k.skD, k.skAi, k.skAr, k.skEi, k.skEr, k.skPi, k.skPr);
}

/** Zeroises every key of a Child SA. */
export function wipeChildKeys(k: ChildKeys): void {
  wipe(k.encrI, k.integI, k.encrR, k.integR);
}

/**
 * Whether a peer's Nonce Data length is acceptable with PRF `prfId`:
 * RFC 7296 §3.9 allows 16 to 256 octets, and §2.10 requires at least half
 * the PRF's key size (16, 24, 32 octets for HMAC-SHA2-256/384/512).
 */
export function isValidNonceLength(prfId: number, length: number): boolean {
  const info = requirePrf(prfId);
  return Number.isInteger(length) && length >= 16 && length <= 256 && length >= info.length / 2;
}


function checkSpis({ spiI, spiR }: KeyExchangeInputs): void {
  if (spiI.length !== IKE_SPI_LENGTH || spiR.length !== IKE_SPI_LENGTH) {
    throw new RangeError(`IKE SPIs must be ${IKE_SPI_LENGTH} bytes (got ${spiI.length} and ${spiR.length})`);
  }
}


/** Copies consecutive slices of `stream` into fresh buffers, so each can be wiped on its own. */
function split(stream: Uint8Array, lengths: number[]): Uint8Array[] {
  let offset = 0;
  return lengths.map((n) => stream.slice(offset, (offset += n)));
}
