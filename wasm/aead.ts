// The two ESP AEADs behind one call shape: AES-GCM (RFC 4106, gcm.ts) and
// ChaCha20-Poly1305 (RFC 7634, chachapoly.ts). The ESP layer calls these with
// the slot's algorithm; contexts live in the slot's KEY_CTX_SIZE bytes.

import { GCM_CTX_SIZE, gcmInit, gcmOpen, gcmSeal } from './gcm';
import {
  CHACHAPOLY_CTX_SIZE, chachaPolyInit, chachaPolyOpen, chachaPolySeal,
} from './chachapoly';
import { Algorithm, KEY_CTX_SIZE } from './layout';

// Compile-time check: both contexts fit in a slot's key context.
if (<usize>GCM_CTX_SIZE > KEY_CTX_SIZE) ERROR('GCM_CTX_SIZE exceeds KEY_CTX_SIZE in layout.ts');
if (<usize>CHACHAPOLY_CTX_SIZE > KEY_CTX_SIZE) ERROR('CHACHAPOLY_CTX_SIZE exceeds KEY_CTX_SIZE in layout.ts');

/** Key bytes (without the 4-byte salt) of an algorithm, 0 if unknown. */
export function aeadKeyBytes(alg: u32): i32 {
  if (alg == Algorithm.AES_GCM_128) return 16;
  if (alg == Algorithm.AES_GCM_256 || alg == Algorithm.CHACHA20_POLY1305) return 32;
  return 0;
}

/** Whether `icvLen` is allowed: 8, 12, 16 for GCM (RFC 4106 §8.1), 16 for ChaCha20-Poly1305 (RFC 7634 §2). */
export function aeadIcvAllowed(alg: u32, icvLen: u32): bool {
  if (alg == Algorithm.CHACHA20_POLY1305) return icvLen == 16;
  return icvLen == 8 || icvLen == 12 || icvLen == 16;
}

export function aeadInit(alg: u32, ctx: usize, key: usize, keyLen: i32): void {
  if (alg == Algorithm.CHACHA20_POLY1305) chachaPolyInit(ctx, key, keyLen);
  else gcmInit(ctx, key, keyLen);
}

// @ts-ignore: decorator
@inline export function aeadSeal(
  alg: u32, ctx: usize, nonce: usize, aad: usize, aadLen: i32,
  data: usize, dataLen: i32, tag: usize, tagLen: i32,
): void {
  if (alg == Algorithm.CHACHA20_POLY1305) chachaPolySeal(ctx, nonce, aad, aadLen, data, dataLen, tag, tagLen);
  else gcmSeal(ctx, nonce, aad, aadLen, data, dataLen, tag, tagLen);
}

// @ts-ignore: decorator
@inline export function aeadOpen(
  alg: u32, ctx: usize, nonce: usize, aad: usize, aadLen: i32,
  data: usize, dataLen: i32, tag: usize, tagLen: i32,
): bool {
  if (alg == Algorithm.CHACHA20_POLY1305) return chachaPolyOpen(ctx, nonce, aad, aadLen, data, dataLen, tag, tagLen);
  return gcmOpen(ctx, nonce, aad, aadLen, data, dataLen, tag, tagLen);
}
