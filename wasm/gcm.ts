// AES-GCM (NIST SP 800-38D) as ESP uses it (RFC 4106): 12-byte nonce
// (4-byte salt ‖ 8-byte IV, RFC 4106 §4), 16-, 12- or 8-byte ICV (RFC 4106
// §3 / §8.1: the truncated ICV is a prefix of the full tag), AES-128, -192
// or -256 keys.
//
// Built on the bitsliced AES of aes.ts (eight counter blocks per call) and
// the constant-time GHASH of ghash.ts; nothing here indexes memory or
// branches on secret data, and the tag check is a constant-time comparison
// whose single result decides whether anything is decrypted.
//
// Context layout (GCM_CTX_SIZE bytes, owned by the caller, 16-byte aligned):
//   [0, 1920)      bitsliced AES round keys (aes.ts, AES_RK_SIZE)
//   [1920, 1924)   number of AES rounds (10/12/14; 0 = not initialised)
//   [1936, 3664)   GHASH key: H^8..H^1 by Karatsuba kind and bit class (ghash.ts, GHASH_KEY_SIZE)
//
// Concurrency: a context is used by one thread at a time (its SA's owner
// worker). The work buffers `GCM_KEYSTREAM` (128 bytes) and `GCM_Y` (16) are
// module state of this instance; every call clears them before returning.

import { AES_BATCH_BYTES, AES_RK_SIZE, aesEncrypt8, aesExpandKey } from './aes';
import { GHASH_KEY_SIZE, ghashAuth, ghashInitKey } from './ghash';

const RK_OFFSET: usize = 0;
const NR_OFFSET: usize = <usize>AES_RK_SIZE;
const GK_OFFSET: usize = <usize>AES_RK_SIZE + 16;

/** Bytes a GCM context needs (bitsliced round keys, rounds, H powers). 16-byte aligned. */
export const GCM_CTX_SIZE: i32 = AES_RK_SIZE + 16 + GHASH_KEY_SIZE;

/** Eight counter blocks, then their keystream. */
const GCM_KEYSTREAM: usize = memory.data(AES_BATCH_BYTES, 16);
/** S = GHASH_H(A, C) (ghash.ts `ghashAuth`). */
const GCM_Y: usize = memory.data(16, 16);

/** Size of a GCM context, for hosts that allocate them. */
export function gcmCtxSize(): i32 {
  return GCM_CTX_SIZE;
}

// @ts-ignore: decorator
@inline function isTagLen(tagLen: i32): bool {
  return tagLen == 16 || tagLen == 12 || tagLen == 8;
}

// @ts-ignore: decorator
@inline function wipeWork(): void {
  const z = i64x2.splat(0);
  for (let i: usize = 0; i < <usize>AES_BATCH_BYTES; i += 16) v128.store(GCM_KEYSTREAM + i, z);
  v128.store(GCM_Y, z);
}

/** nonce ‖ 0^32 as a v128 (the counter word is filled in per block). */
// @ts-ignore: decorator
@inline function counterBase(nonce: usize): v128 {
  return i32x4.replace_lane(i64x2.splat(load<u64>(nonce)), 2, load<u32>(nonce, 8));
}

/**
 * Writes the counter blocks nonce ‖ [ctr + i]32, i = 0..7, into GCM_KEYSTREAM
 * (SP 800-38D §6.5 GCTR; inc32 wraps modulo 2^32).
 */
// @ts-ignore: decorator
@inline function fillCounters(base: v128, ctr: u32): void {
  const ks = GCM_KEYSTREAM;
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr)), 0);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 1)), 16);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 2)), 32);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 3)), 48);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 4)), 64);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 5)), 80);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 6)), 96);
  v128.store(ks, i32x4.replace_lane(base, 3, bswap<u32>(ctr + 7)), 112);
}

/** E_K of the counter blocks for ctr..ctr+7 into GCM_KEYSTREAM. */
// @ts-ignore: decorator
@inline function keystream8(ctx: usize, nr: i32, base: v128, ctr: u32): void {
  fillCounters(base, ctr);
  aesEncrypt8(ctx + RK_OFFSET, nr, GCM_KEYSTREAM);
}

/** XORs `n` bytes of keystream at `ks` into `p`. */
// @ts-ignore: decorator
@inline function xorKeystream(p: usize, ks: usize, n: i32): void {
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    v128.store(p + <usize>i, v128.xor(v128.load(p + <usize>i), v128.load(ks + <usize>i)));
  }
  for (; i < n; i++) {
    store<u8>(p + <usize>i, load<u8>(p + <usize>i) ^ load<u8>(ks + <usize>i));
  }
}

/**
 * CTR-encrypts (or decrypts) `len` bytes at `data` in place with counters
 * 2, 3, … of `base` (SP 800-38D §6.5 GCTR from inc32(J0)), the first seven
 * blocks taken from the keystream batch already in GCM_KEYSTREAM (counters
 * 1..8, whose block 0 is E_K(J0) for the tag).
 */
// @ts-ignore: decorator
@inline function gctr(ctx: usize, nr: i32, base: v128, data: usize, len: i32): void {
  const rk = ctx + RK_OFFSET;
  let n = len < AES_BATCH_BYTES - 16 ? len : AES_BATCH_BYTES - 16;
  xorKeystream(data, GCM_KEYSTREAM + 16, n);
  let p = data + <usize>n;
  let rest = len - n;
  let ctr: u32 = 9;
  while (rest > 0) {
    fillCounters(base, ctr);
    aesEncrypt8(rk, nr, GCM_KEYSTREAM);
    n = rest < AES_BATCH_BYTES ? rest : AES_BATCH_BYTES;
    xorKeystream(p, GCM_KEYSTREAM, n);
    p += <usize>n;
    rest -= n;
    ctr += 8;
  }
}

/**
 * Initialises the context at `ctx` for the AES key of `keyLen` bytes (16, 24
 * or 32) at `key`: bitsliced round keys and the GHASH key H = E_K(0^128).
 * Traps on any other key length.
 */
export function gcmInit(ctx: usize, key: usize, keyLen: i32): void {
  if (keyLen != 16 && keyLen != 24 && keyLen != 32) unreachable();
  const nr = aesExpandKey(ctx + RK_OFFSET, key, keyLen, GCM_KEYSTREAM);
  store<i32>(ctx + NR_OFFSET, nr);
  // H = E_K(0^128): block 0 of an all-zero batch (SP 800-38D §6.4).
  wipeWork();
  aesEncrypt8(ctx + RK_OFFSET, nr, GCM_KEYSTREAM);
  ghashInitKey(ctx + GK_OFFSET, GCM_KEYSTREAM);
  wipeWork();
}

/**
 * GCM authenticated encryption (SP 800-38D §7.1) in place: encrypts `dataLen`
 * bytes at `data`, authenticates them with `aadLen` bytes at `aad`, and
 * writes the first `tagLen` (16, 12 or 8) bytes of the tag to `tag`.
 * `nonce` is 12 bytes (J0 = nonce ‖ 0^31 1). Traps on a bad tag length,
 * negative lengths or an uninitialised context.
 */
export function gcmSeal(
  ctx: usize, nonce: usize, aad: usize, aadLen: i32, data: usize, dataLen: i32, tag: usize, tagLen: i32,
): void {
  if (!isTagLen(tagLen) || aadLen < 0 || dataLen < 0) unreachable();
  const nr = load<i32>(ctx + NR_OFFSET);
  if (nr == 0) unreachable();
  const gk = ctx + GK_OFFSET;
  const base = counterBase(nonce);
  keystream8(ctx, nr, base, 1);
  const ej0 = v128.load(GCM_KEYSTREAM);
  gctr(ctx, nr, base, data, dataLen);
  ghashAuth(gk, GCM_Y, aad, aadLen, data, dataLen);
  const t = v128.xor(v128.load(GCM_Y), ej0);
  store<u64>(tag, i64x2.extract_lane(t, 0));
  if (tagLen == 16) store<u64>(tag, i64x2.extract_lane(t, 1), 8);
  else if (tagLen == 12) store<u32>(tag, i32x4.extract_lane(t, 2), 8);
  wipeWork();
}

/**
 * GCM authenticated decryption (SP 800-38D §7.2) in place: computes the tag
 * over `aad` and the ciphertext at `data`, compares its first `tagLen` bytes
 * with `tag` in constant time and, only if they match, decrypts `data` and
 * returns true. Returns false, with `data` untouched, on a mismatch, a bad
 * tag length, negative lengths or an uninitialised context.
 */
export function gcmOpen(
  ctx: usize, nonce: usize, aad: usize, aadLen: i32, data: usize, dataLen: i32, tag: usize, tagLen: i32,
): bool {
  if (!isTagLen(tagLen) || aadLen < 0 || dataLen < 0) return false;
  const nr = load<i32>(ctx + NR_OFFSET);
  if (nr == 0) return false;
  const gk = ctx + GK_OFFSET;
  const base = counterBase(nonce);
  ghashAuth(gk, GCM_Y, aad, aadLen, data, dataLen);
  keystream8(ctx, nr, base, 1);
  const t = v128.xor(v128.load(GCM_Y), v128.load(GCM_KEYSTREAM));
  // Constant-time comparison of the first tagLen bytes (the length is public).
  let diff = i64x2.extract_lane(t, 0) ^ load<u64>(tag);
  if (tagLen == 16) diff |= i64x2.extract_lane(t, 1) ^ load<u64>(tag, 8);
  else if (tagLen == 12) diff |= <u64>(<u32>i32x4.extract_lane(t, 2) ^ load<u32>(tag, 8));
  if (diff != 0) {
    wipeWork();
    return false;
  }
  gctr(ctx, nr, base, data, dataLen);
  wipeWork();
  return true;
}

/** Zeroes the whole context (round keys, H powers): call when the SA dies. */
export function gcmWipe(ctx: usize): void {
  memory.fill(ctx, 0, <usize>GCM_CTX_SIZE);
}
