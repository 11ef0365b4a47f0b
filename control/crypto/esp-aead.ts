// The ESP AEAD a negotiated Child SA uses, from its IKE transforms: what the
// data plane is told instead of IKE transform IDs (architecture §2: the data
// plane knows nothing of IKE). IANA IKEv2 Transform Type 1 (encryption):
// AES-GCM with 8, 12 or 16-octet ICV (RFC 4106 §8.1, ids 18/19/20, with a
// 128 or 256-bit key) and ChaCha20-Poly1305 (RFC 7634 §2, id 28, 256-bit key).
// The keys are KEYMAT's key || 4-octet salt (RFC 4106 §8.1, RFC 7634 §2).
// Pure functions.
import { EncrId } from '../wire/constants.js';

/** The AEADs the data plane's kernel implements (dataplane/kernel.ts EspAlgorithm). */
export type EspAeadAlgorithm = 'aes-gcm-128' | 'aes-gcm-256' | 'chacha20-poly1305';

/** An ESP AEAD without its keys: algorithm name and ICV length in octets. */
export interface EspAead {
  algorithm: EspAeadAlgorithm;
  icvLength: 8 | 12 | 16;
}

/**
 * The ESP AEAD of an encryption transform (id, and key length attribute in
 * bits); undefined for anything the data plane does not implement.
 */
export function espAeadForTransform(encrId: number, keyLengthBits?: number): EspAead | undefined {
  if (encrId === EncrId.CHACHA20_POLY1305) return keyLengthBits === undefined || keyLengthBits === 256 ? { algorithm: 'chacha20-poly1305', icvLength: 16 } : undefined;
  const icv = encrId === EncrId.AES_GCM_8 ? 8 : encrId === EncrId.AES_GCM_12 ? 12 : encrId === EncrId.AES_GCM_16 ? 16 : 0;
  if (icv === 0) return undefined;
  if (keyLengthBits === 128) return { algorithm: 'aes-gcm-128', icvLength: icv };
  if (keyLengthBits === 256) return { algorithm: 'aes-gcm-256', icvLength: icv };
  return undefined;
}
