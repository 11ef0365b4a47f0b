// AEAD_CHACHA20_POLY1305 (RFC 8439 §2.8), in place in linear memory, with the
// same call shape as gcm.ts so that the ESP layer treats both alike.
//
// The context is the 32-byte key. For ESP (RFC 7634 §2) the caller builds the
// 12-byte nonce as salt (4) || IV (8) and passes SPI || seq as AAD.
// Block 0 of the keystream is the Poly1305 key (RFC 8439 §2.6); blocks 1..3 of
// the same four-block call encrypt the first 192 bytes, so a small packet costs
// one ChaCha20 call.

import { WORK_BLOCK, WORK_KEYSTREAM, WORK_TAG } from './layout';
import { chacha20Blocks4, chacha20Xor, xorInto } from './chacha20';
import { poly1305Blocks, poly1305Finish, poly1305Init, poly1305Padded } from './poly1305';

/** Bytes of a ChaCha20-Poly1305 context (16-byte aligned). */
export const CHACHAPOLY_CTX_SIZE: i32 = 32;

const KEY_BYTES: i32 = 32;
/** Bytes the first four-block call encrypts (blocks 1..3). */
const FIRST_CHUNK: i32 = 192;

/**
 * Load a 32-byte key (RFC 8439 §2.8) into `ctx`. Traps on any other key
 * length, as gcmInit does: returning quietly would leave the context's old key
 * (or none) in place for a caller that believes it installed a new one.
 */
export function chachaPolyInit(ctx: usize, key: usize, keyLen: i32): void {
  if (keyLen != KEY_BYTES) unreachable();
  memory.copy(ctx, key, KEY_BYTES);
}

/** Zeroise a context. */
export function chachaPolyWipe(ctx: usize): void {
  memory.fill(ctx, 0, CHACHAPOLY_CTX_SIZE);
}

/** RFC 8439 §2.8: MAC over aad || pad16 || ciphertext || pad16 || le64(aadLen) || le64(dataLen) into WORK_TAG. */
function macInto(aad: usize, aadLen: i32, data: usize, dataLen: i32): void {
  poly1305Padded(aad, <usize>aadLen);
  poly1305Padded(data, <usize>dataLen);
  store<u64>(WORK_BLOCK, <u64>aadLen, 0);
  store<u64>(WORK_BLOCK, <u64>dataLen, 8);
  poly1305Blocks(WORK_BLOCK, 1, 1 << 24);
  poly1305Finish(WORK_TAG);
}

/** Encrypt the bytes after the first chunk (counter 4 onwards) and the first chunk from WORK_KEYSTREAM. */
function cryptBody(ctx: usize, nonce: usize, data: usize, dataLen: i32): void {
  const first = min(dataLen, FIRST_CHUNK);
  xorInto(data, WORK_KEYSTREAM + 64, <usize>first);
  if (dataLen > FIRST_CHUNK) {
    chacha20Xor(ctx, nonce, 4, data + <usize>FIRST_CHUNK, <usize>(dataLen - FIRST_CHUNK));
  }
}

function wipeWork(): void {
  memory.fill(WORK_KEYSTREAM, 0, 256);
  v128.store(WORK_BLOCK, i64x2.splat(0));
  v128.store(WORK_TAG, i64x2.splat(0));
}

/**
 * Encrypt `dataLen` bytes at `data` in place and write a `tagLen`-byte tag
 * (16 for RFC 7634; shorter values truncate) to `tag`. nonce: 12 bytes.
 * Traps on negative lengths, as gcmSeal does (a caller bug, and sealing has
 * no failure result).
 */
export function chachaPolySeal(
  ctx: usize, nonce: usize, aad: usize, aadLen: i32,
  data: usize, dataLen: i32, tag: usize, tagLen: i32,
): void {
  // Negative lengths would become huge usize values in macInto/cryptBody.
  if (aadLen < 0 || dataLen < 0) unreachable();
  tagLen = min(max(tagLen, 0), 16);
  chacha20Blocks4(ctx, nonce, 0, WORK_KEYSTREAM);
  poly1305Init(WORK_KEYSTREAM);
  cryptBody(ctx, nonce, data, dataLen);
  macInto(aad, aadLen, data, dataLen);
  memory.copy(tag, WORK_TAG, <usize>tagLen);
  wipeWork();
}

/**
 * Verify the `tagLen`-byte tag at `tag` over aad and the ciphertext, then (only
 * if it verifies) decrypt in place. Returns false, with data untouched, on a
 * mismatch, a tag length outside 1..16 or negative lengths (as gcmOpen does:
 * opening rejects rather than traps, so a bad length is just a failed packet).
 */
export function chachaPolyOpen(
  ctx: usize, nonce: usize, aad: usize, aadLen: i32,
  data: usize, dataLen: i32, tag: usize, tagLen: i32,
): bool {
  if (tagLen < 1 || tagLen > 16 || aadLen < 0 || dataLen < 0) return false;
  chacha20Blocks4(ctx, nonce, 0, WORK_KEYSTREAM);
  poly1305Init(WORK_KEYSTREAM);
  macInto(aad, aadLen, data, dataLen);
  // Constant-time comparison (no early exit on the first differing byte).
  let diff: u32 = 0;
  for (let i = 0; i < tagLen; i++) {
    diff |= <u32>(load<u8>(WORK_TAG + <usize>i) ^ load<u8>(tag + <usize>i));
  }
  if (diff != 0) {
    wipeWork();
    return false;
  }
  cryptBody(ctx, nonce, data, dataLen);
  wipeWork();
  return true;
}
