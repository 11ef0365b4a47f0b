// HMAC-SHA-256, -384 and -512 (RFC 2104, FIPS 198-1) over the compression
// functions of sha2.ts, as ESP uses them (RFC 4868): keys of the hash's
// output length, ICVs truncated to half of it (16, 24, 32 bytes).
//
// Context layout (HMAC_CTX_SIZE bytes, in the SA's slot): the hash state
// after the block K ^ ipad ([0, 64)) and after K ^ opad ([64, 128)), so a
// packet costs its own blocks plus one outer block (RFC 2104 §4 "implementation
// note"); the key itself is not kept.
//
// Constant time: SHA-2 is constant time by construction (sha2.ts); lengths
// are public; the ICV check compares every byte, ORing the differences, and
// branches once on the result (RFC 4303 §3.4.4: the ICV is checked before
// anything is decrypted). Concurrency: the work buffers below are module
// state of this instance (its owner thread) and are cleared after each MAC.

import { SHA256_BLOCK, SHA512_BLOCK, sha256Blocks, sha2InitState, sha2Pad, sha2Wipe, sha512Blocks } from './sha2';

/** Bytes of an HMAC context: inner and outer hash state (64 bytes each, SHA-512 sized). */
export const HMAC_CTX_SIZE: i32 = 128;
const OUTER: usize = 64;

/** Running hash state. */
const HMAC_STATE: usize = memory.data(64, 16);
/** Up to two blocks: key pad at install, message tail and padding per packet. */
const HMAC_BLOCK: usize = memory.data(2 * SHA512_BLOCK, 16);
/** Inner digest, then the full HMAC output. */
const HMAC_DIGEST: usize = memory.data(64, 16);

// @ts-ignore: decorator
@inline function blockBytes(bits: i32): i32 {
  return bits == 256 ? SHA256_BLOCK : SHA512_BLOCK;
}

// @ts-ignore: decorator
@inline function compress(bits: i32, state: usize, data: usize, blocks: i32): void {
  if (bits == 256) sha256Blocks(state, data, blocks);
  else sha512Blocks(state, data, blocks);
}

/** Writes the digest of `state` big-endian to `out` (32, 48 or 64 bytes; FIPS 180-4 §6.2.2 step 4, §6.5). */
function digestInto(bits: i32, state: usize, out: usize): void {
  if (bits == 256) {
    for (let i: usize = 0; i < 32; i += 4) store<u32>(out + i, bswap<u32>(load<u32>(state + i)));
  } else {
    const n = <usize>bits >> 3;
    for (let i: usize = 0; i < n; i += 8) store<u64>(out + i, bswap<u64>(load<u64>(state + i)));
  }
}

function wipeWork(): void {
  memory.fill(HMAC_STATE, 0, 64);
  memory.fill(HMAC_BLOCK, 0, 2 * <usize>SHA512_BLOCK);
  memory.fill(HMAC_DIGEST, 0, 64);
  sha2Wipe();
}

/**
 * Precomputes the HMAC context at `ctx` for SHA-`bits` (256, 384, 512) and the
 * `keyLen`-byte key at `key` (RFC 2104 §2; at most one block, as RFC 4868
 * §2.1.1 keys are). Traps on a bad hash or key length.
 */
export function hmacInit(ctx: usize, bits: i32, key: usize, keyLen: i32): void {
  if (bits != 256 && bits != 384 && bits != 512) unreachable();
  const bs = blockBytes(bits);
  if (keyLen < 0 || keyLen > bs) unreachable();
  memory.fill(HMAC_BLOCK, 0x36, <usize>bs);
  for (let i: usize = 0; i < <usize>keyLen; i++) store<u8>(HMAC_BLOCK + i, load<u8>(key + i) ^ 0x36);
  sha2InitState(ctx, bits);
  compress(bits, ctx, HMAC_BLOCK, 1);
  // K ^ opad = (K ^ ipad) ^ (0x36 ^ 0x5c).
  for (let i: usize = 0; i < <usize>bs; i++) store<u8>(HMAC_BLOCK + i, load<u8>(HMAC_BLOCK + i) ^ 0x6a);
  sha2InitState(ctx + OUTER, bits);
  compress(bits, ctx + OUTER, HMAC_BLOCK, 1);
  wipeWork();
}

/**
 * Finishes the hash in HMAC_STATE over the `rem` bytes at `tail`, then the
 * `extraLen` bytes at `extra`, padded for a message of `totalBytes`
 * (including the key block).
 */
function finish(bits: i32, tail: usize, rem: i32, extra: usize, extraLen: i32, totalBytes: u64): void {
  const bs = blockBytes(bits);
  const blocks = sha2Pad(HMAC_BLOCK, tail, <u32>rem, extra, <u32>extraLen, totalBytes, <u32>bs, bits == 256 ? 8 : 16);
  compress(bits, HMAC_STATE, HMAC_BLOCK, <i32>blocks);
}

/**
 * HMAC-SHA-`bits` (with the context at `ctx`) of the `len` bytes at `msg`
 * followed by the `extraLen` (0..16) bytes at `extra` (ESN: the high half of
 * the sequence number, RFC 4303 §2.2.1), into HMAC_DIGEST (full length).
 */
function macInto(ctx: usize, bits: i32, msg: usize, len: i32, extra: usize, extraLen: i32): void {
  const bs = blockBytes(bits);
  const full = len / bs;
  memory.copy(HMAC_STATE, ctx, 64);
  compress(bits, HMAC_STATE, msg, full);
  const done = full * bs;
  finish(bits, msg + <usize>done, len - done, extra, extraLen, <u64>bs + <u64>len + <u64>extraLen);
  const digestLen = bits >> 3;
  digestInto(bits, HMAC_STATE, HMAC_DIGEST);
  memory.copy(HMAC_STATE, ctx + OUTER, 64);
  finish(bits, HMAC_DIGEST, digestLen, 0, 0, <u64>(bs + digestLen));
  digestInto(bits, HMAC_STATE, HMAC_DIGEST);
}

/**
 * Writes the first `outLen` bytes (at most the digest length) of the HMAC of
 * msg || extra to `out` (RFC 4868 §2.1.1: truncation keeps the leftmost bits).
 */
export function hmacMac(
  ctx: usize, bits: i32, msg: usize, len: i32, extra: usize, extraLen: i32, out: usize, outLen: i32,
): void {
  if (len < 0 || extraLen < 0 || extraLen > 16 || outLen < 0 || outLen > (bits >> 3)) unreachable();
  macInto(ctx, bits, msg, len, extra, extraLen);
  memory.copy(out, HMAC_DIGEST, <usize>outLen);
  wipeWork();
}

/**
 * Whether the `icvLen`-byte ICV at `icv` (a multiple of 8, at most the digest
 * length) equals the truncated HMAC of msg || extra. Every byte is compared
 * whatever the differences (RFC 4303 §3.4.4, RFC 4868 §2.3).
 */
export function hmacVerify(
  ctx: usize, bits: i32, msg: usize, len: i32, extra: usize, extraLen: i32, icv: usize, icvLen: i32,
): bool {
  if (len < 0 || extraLen < 0 || extraLen > 16 || icvLen <= 0 || icvLen > (bits >> 3) || (icvLen & 7) != 0) {
    return false;
  }
  macInto(ctx, bits, msg, len, extra, extraLen);
  const equal = icvEqual(HMAC_DIGEST, icv, icvLen);
  wipeWork();
  return equal;
}

/**
 * Whether the `len` bytes (a multiple of 8) at `a` and `b` are equal, in
 * constant time: every word is compared and the differences ORed.
 */
export function icvEqual(a: usize, b: usize, len: i32): bool {
  let diff: u64 = 0;
  for (let i: usize = 0; i < <usize>len; i += 8) diff |= load<u64>(a + i) ^ load<u64>(b + i);
  return diff == 0;
}

/** Zeroes an HMAC context: call when the SA dies. */
export function hmacWipe(ctx: usize): void {
  memory.fill(ctx, 0, <usize>HMAC_CTX_SIZE);
}
