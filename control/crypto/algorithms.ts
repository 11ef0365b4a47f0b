// The one table of what each negotiated transform needs: hash, key and ICV
// lengths, IV and padding rules. Everything else in control/crypto (and the
// IKE engine when it sizes keys) reads lengths from here, never from literals.
//
// Only the transforms ikeclone implements are listed; a lookup of anything
// else returns undefined, which the proposal code treats as "not supported".

import { EncrId, IntegId, KeGroup, PrfId } from '../wire/constants.js';

export type HashName = 'sha256' | 'sha384' | 'sha512';

/** Transform Type 2 (RFC 7296 §3.3.2), HMAC-SHA2 PRFs of RFC 4868. */
export interface PrfInfo {
  readonly id: number;
  readonly name: string;
  readonly hash: HashName;
  /** Output length in bytes, which is also the preferred key length (RFC 7296 §2.13, RFC 4868 §2.1.2). */
  readonly length: number;
}

/** Transform Type 3 (RFC 7296 §3.3.2), HMAC-SHA2 truncated ICVs of RFC 4868 §2.1.1. */
export interface IntegInfo {
  readonly id: number;
  readonly name: string;
  readonly hash: HashName;
  /** Key length in bytes (RFC 4868 §2.1.1: the hash output length). */
  readonly keyLength: number;
  /** Truncated ICV length in bytes (half the hash output). */
  readonly icvLength: number;
}

/** Transform Type 1 (RFC 7296 §3.3.2) with its Key Length attribute resolved. */
export interface EncrInfo {
  readonly id: number;
  /** Bits of the cipher key (without salt). */
  readonly keyLength: number;
  readonly name: string;
  /** Authenticated encryption: no INTEG transform, no SK_a* keys (RFC 5282 §8). */
  readonly aead: boolean;
  /**
   * Bytes of keying material taken for one direction (SK_ei/SK_er, or one
   * Child SA key): the cipher key plus, for GCM and ChaCha20-Poly1305, the
   * 4-byte salt at the end (RFC 5282 §7.1, RFC 4106 §8.1, RFC 7634 §2).
   */
  readonly keyMaterialLength: number;
  /** Explicit IV carried in each message: 8 for GCM/ChaCha20-Poly1305 (RFC 5282 §3.1, RFC 7634 §2), 16 for CBC. */
  readonly ivLength: number;
  /** AEAD tag length (16/12/8), 0 for CBC (whose ICV comes from the INTEG transform). */
  readonly icvLength: number;
  /**
   * Alignment that IKE payloads + Padding + Pad Length must reach in the SK
   * payload: the AES block (16) for CBC (RFC 7296 §3.14); 1 for the AEAD
   * modes, which have no alignment requirement (RFC 5282 §3, RFC 7634 §3).
   * ESP has its own 4-byte trailer alignment (RFC 4303 §2.4), which the
   * data plane applies.
   */
  readonly blockSize: number;
  /** node:crypto cipher name for this key length. @internal */
  readonly cipher: string;
}

const PRFS: readonly PrfInfo[] = [
  { id: PrfId.HMAC_SHA2_256, name: 'PRF_HMAC_SHA2_256', hash: 'sha256', length: 32 },
  { id: PrfId.HMAC_SHA2_384, name: 'PRF_HMAC_SHA2_384', hash: 'sha384', length: 48 },
  { id: PrfId.HMAC_SHA2_512, name: 'PRF_HMAC_SHA2_512', hash: 'sha512', length: 64 },
];

const INTEGS: readonly IntegInfo[] = [
  { id: IntegId.HMAC_SHA2_256_128, name: 'AUTH_HMAC_SHA2_256_128', hash: 'sha256', keyLength: 32, icvLength: 16 },
  { id: IntegId.HMAC_SHA2_384_192, name: 'AUTH_HMAC_SHA2_384_192', hash: 'sha384', keyLength: 48, icvLength: 24 },
  { id: IntegId.HMAC_SHA2_512_256, name: 'AUTH_HMAC_SHA2_512_256', hash: 'sha512', keyLength: 64, icvLength: 32 },
];

/** AES key lengths for the Key Length attribute (RFC 7296 §3.3.5: mandatory for AES). */
const AES_KEY_BITS = [128, 192, 256] as const;

/** RFC 4106 §8.1 / RFC 5282 §7.1: the salt is the last 4 bytes of the keying material. */
const AEAD_SALT_LENGTH = 4;

const AES_GCM_ICV: ReadonlyMap<number, { icv: number; label: string }> = new Map([
  [EncrId.AES_GCM_16, { icv: 16, label: 'ENCR_AES_GCM_16' }],
  [EncrId.AES_GCM_12, { icv: 12, label: 'ENCR_AES_GCM_12' }],
  [EncrId.AES_GCM_8, { icv: 8, label: 'ENCR_AES_GCM_8' }],
]);

const prfById = new Map(PRFS.map((p) => [p.id, p]));
const integById = new Map(INTEGS.map((i) => [i.id, i]));
const encrCache = new Map<string, EncrInfo>();

/** PRF parameters, or undefined if `id` is not implemented. */
export function prfInfo(id: number): PrfInfo | undefined {
  return prfById.get(id);
}

/** Integrity parameters, or undefined if `id` is not implemented (including IntegId.NONE). */
export function integInfo(id: number): IntegInfo | undefined {
  return integById.get(id);
}

/**
 * Encryption parameters for transform `id` with Key Length attribute
 * `keyLengthBits`, or undefined if the pair is not implemented.
 * - ENCR_AES_CBC, ENCR_AES_GCM_16/12/8: the attribute is required and must be 128, 192 or 256.
 * - ENCR_CHACHA20_POLY1305: fixed 256-bit key (RFC 7634 §2); the attribute is
 *   not sent, and a stray 256 is tolerated.
 */
export function encrInfo(id: number, keyLengthBits?: number): EncrInfo | undefined {
  const key = `${id}/${keyLengthBits ?? ''}`;
  const cached = encrCache.get(key);
  if (cached) return cached;
  const info = buildEncrInfo(id, keyLengthBits);
  if (info) encrCache.set(key, Object.freeze(info));
  return info;
}

function buildEncrInfo(id: number, keyLengthBits: number | undefined): EncrInfo | undefined {
  if (id === EncrId.CHACHA20_POLY1305) {
    if (keyLengthBits !== undefined && keyLengthBits !== 256) return undefined;
    return {
      id, keyLength: 256, name: 'ENCR_CHACHA20_POLY1305', aead: true,
      keyMaterialLength: 32 + AEAD_SALT_LENGTH, ivLength: 8, icvLength: 16, blockSize: 1,
      cipher: 'chacha20-poly1305',
    };
  }
  if (keyLengthBits === undefined || !(AES_KEY_BITS as readonly number[]).includes(keyLengthBits)) return undefined;
  const keyBytes = keyLengthBits / 8;
  if (id === EncrId.AES_CBC) {
    return {
      id, keyLength: keyLengthBits, name: `ENCR_AES_CBC_${keyLengthBits}`, aead: false,
      keyMaterialLength: keyBytes, ivLength: 16, icvLength: 0, blockSize: 16,
      cipher: `aes-${keyLengthBits}-cbc`,
    };
  }
  const gcm = AES_GCM_ICV.get(id);
  if (gcm) {
    return {
      id, keyLength: keyLengthBits, name: `${gcm.label}_${keyLengthBits}`, aead: true,
      keyMaterialLength: keyBytes + AEAD_SALT_LENGTH, ivLength: 8, icvLength: gcm.icv, blockSize: 1,
      cipher: `aes-${keyLengthBits}-gcm`,
    };
  }
  return undefined;
}

/**
 * Key exchange methods implemented by keyexchange.ts, in order of preference:
 * Curve25519 (RFC 8031), P-256 and P-384 (RFC 5903), 2048-bit MODP (RFC 3526).
 */
export const SUPPORTED_KE_GROUPS: readonly number[] = Object.freeze([
  KeGroup.CURVE25519,
  KeGroup.ECP_256,
  KeGroup.ECP_384,
  KeGroup.MODP_2048,
]);
