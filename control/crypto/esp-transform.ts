// The ESP transform a negotiated Child SA uses, from its IKE transforms: what
// the data plane is told instead of IKE transform IDs (architecture §2: the
// data plane knows nothing of IKE). The one table of what the data plane can
// install: negotiation (control/ike/proposals.ts) and configuration
// (control/config/proposal.ts) refuse everything else, so no Child SA is ever
// negotiated that the data plane would silently drop.
// IANA IKEv2 Transform Type 1 (encryption) and Type 3 (integrity):
// - AES-GCM with 8, 12 or 16-octet ICV (RFC 4106 §8.1, ids 18/19/20, with a
//   128 or 256-bit key) and ChaCha20-Poly1305 (RFC 7634 §2, id 28, 256-bit
//   key): AEADs, no integrity transform; key material = KEYMAT's key || 4-octet
//   salt (RFC 4106 §8.1, RFC 7634 §2);
// - AES-CBC (RFC 3602, id 12, 128 or 256-bit key) with HMAC-SHA2-256-128,
//   -384-192 or -512-256 (RFC 4868, ids 12/13/14): key material = encryption
//   key || integrity key, the order both take in KEYMAT (RFC 7296 §2.17).
// The names mirror dataplane/kernel.ts EspAlgorithm (control/crypto may not
// import the data plane; test/esp-installable.test.ts installs every one).
// Pure functions.
import { EncrId, IntegId } from '../wire/constants.js';

/** The ESP suites the data plane's kernel implements (dataplane/kernel.ts EspAlgorithm). */
export type EspTransformAlgorithm =
  | 'aes-gcm-128' | 'aes-gcm-256' | 'chacha20-poly1305'
  | 'aes-cbc-128-hmac-sha2-256-128' | 'aes-cbc-128-hmac-sha2-384-192' | 'aes-cbc-128-hmac-sha2-512-256'
  | 'aes-cbc-256-hmac-sha2-256-128' | 'aes-cbc-256-hmac-sha2-384-192' | 'aes-cbc-256-hmac-sha2-512-256';

/** An ESP transform without its keys: algorithm name and ICV length in octets. */
export interface EspTransform {
  algorithm: EspTransformAlgorithm;
  icvLength: 8 | 12 | 16 | 24 | 32;
}

/** HMAC-SHA2 integrity transforms the kernel runs with AES-CBC: name part and ICV octets (RFC 4868 §2.3). */
const CBC_INTEGRITY: ReadonlyMap<number, { name: 'hmac-sha2-256-128' | 'hmac-sha2-384-192' | 'hmac-sha2-512-256'; icv: 16 | 24 | 32 }> = new Map([
  [IntegId.HMAC_SHA2_256_128, { name: 'hmac-sha2-256-128', icv: 16 }],
  [IntegId.HMAC_SHA2_384_192, { name: 'hmac-sha2-384-192', icv: 24 }],
  [IntegId.HMAC_SHA2_512_256, { name: 'hmac-sha2-512-256', icv: 32 }],
] as const);

/**
 * The ESP transform of an encryption transform (id, and key length attribute
 * in bits) with an integrity transform (none for AEADs); undefined for any
 * combination the data plane does not implement.
 */
export function espTransformFor(encrId: number, keyLengthBits?: number, integId?: number): EspTransform | undefined {
  if (encrId === EncrId.AES_CBC) {
    const integ = integId === undefined ? undefined : CBC_INTEGRITY.get(integId);
    if (!integ || (keyLengthBits !== 128 && keyLengthBits !== 256)) return undefined;
    return { algorithm: `aes-cbc-${keyLengthBits}-${integ.name}`, icvLength: integ.icv };
  }
  // RFC 4106 §8.1, RFC 7634 §4: combined-mode ciphers take no integrity transform.
  if (integId !== undefined) return undefined;
  if (encrId === EncrId.CHACHA20_POLY1305) return keyLengthBits === undefined || keyLengthBits === 256 ? { algorithm: 'chacha20-poly1305', icvLength: 16 } : undefined;
  const icv = encrId === EncrId.AES_GCM_8 ? 8 : encrId === EncrId.AES_GCM_12 ? 12 : encrId === EncrId.AES_GCM_16 ? 16 : 0;
  if (icv === 0) return undefined;
  if (keyLengthBits === 128) return { algorithm: 'aes-gcm-128', icvLength: icv };
  if (keyLengthBits === 256) return { algorithm: 'aes-gcm-256', icvLength: icv };
  return undefined;
}

/** Whether some installable ESP transform uses this encryption transform (with a matching integrity one, or none). */
export function isInstallableEspEncryption(encrId: number, keyLengthBits?: number): boolean {
  if (espTransformFor(encrId, keyLengthBits) !== undefined) return true;
  return [...CBC_INTEGRITY.keys()].some((integ) => espTransformFor(encrId, keyLengthBits, integ) !== undefined);
}

/** Whether some installable ESP transform uses this integrity transform. */
export function isInstallableEspIntegrity(integId: number): boolean {
  return CBC_INTEGRITY.has(integId);
}

/**
 * The kernel's key material for one direction: encryption key material
 * (key || salt for AEADs) followed by the integrity key (empty for AEADs), in
 * a new buffer the caller hands over (RFC 7296 §2.17 order).
 */
export function espKeyMaterial(encryption: Uint8Array, integrity: Uint8Array): Uint8Array {
  const out = new Uint8Array(encryption.length + integrity.length);
  out.set(encryption, 0);
  out.set(integrity, encryption.length);
  return out;
}
