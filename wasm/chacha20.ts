// ChaCha20 stream cipher (RFC 8439 §2.3, §2.4), four blocks at a time on v128.
//
// Lane j of vector x_i holds word i of block (counter + j), so one quarter
// round on vectors is four quarter rounds of four blocks. Internal helpers
// work on raw pointers into linear memory; inputs are checked by callers.

import { WORK_KEYSTREAM } from './layout';

// RFC 8439 §2.3: "expand 32-byte k"
const SIGMA0: u32 = 0x61707865;
const SIGMA1: u32 = 0x3320646e;
const SIGMA2: u32 = 0x79622d32;
const SIGMA3: u32 = 0x6b206574;

// @ts-ignore: decorator
@inline function rotl16(x: v128): v128 {
  return i8x16.shuffle(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
}

// @ts-ignore: decorator
@inline function rotl8(x: v128): v128 {
  return i8x16.shuffle(x, x, 3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14);
}

// @ts-ignore: decorator
@inline function rotl12(x: v128): v128 {
  return v128.or(i32x4.shl(x, 12), i32x4.shr_u(x, 20));
}

// @ts-ignore: decorator
@inline function rotl7(x: v128): v128 {
  return v128.or(i32x4.shl(x, 7), i32x4.shr_u(x, 25));
}

/** Store words a..d of all four blocks (a 4x4 transpose): block j's words go to out + 64*j. */
// @ts-ignore: decorator
@inline function storeQuarter(out: usize, a: v128, b: v128, c: v128, d: v128): void {
  const t0 = i32x4.shuffle(a, b, 0, 4, 1, 5);
  const t1 = i32x4.shuffle(c, d, 0, 4, 1, 5);
  const t2 = i32x4.shuffle(a, b, 2, 6, 3, 7);
  const t3 = i32x4.shuffle(c, d, 2, 6, 3, 7);
  v128.store(out, i64x2.shuffle(t0, t1, 0, 2), 0);
  v128.store(out, i64x2.shuffle(t0, t1, 1, 3), 64);
  v128.store(out, i64x2.shuffle(t2, t3, 0, 2), 128);
  v128.store(out, i64x2.shuffle(t2, t3, 1, 3), 192);
}

/**
 * Four ChaCha20 blocks (RFC 8439 §2.3) for counters counter..counter+3 (mod 2^32),
 * written as 256 bytes of keystream to `out`.
 * key: 32 bytes, nonce: 12 bytes (RFC 8439 §2.3: 96-bit nonce, 32-bit counter).
 */
export function chacha20Blocks4(key: usize, nonce: usize, counter: u32, out: usize): void {
  const s0 = i32x4.splat(SIGMA0);
  const s1 = i32x4.splat(SIGMA1);
  const s2 = i32x4.splat(SIGMA2);
  const s3 = i32x4.splat(SIGMA3);
  const k0 = v128.load32_splat(key, 0);
  const k1 = v128.load32_splat(key, 4);
  const k2 = v128.load32_splat(key, 8);
  const k3 = v128.load32_splat(key, 12);
  const k4 = v128.load32_splat(key, 16);
  const k5 = v128.load32_splat(key, 20);
  const k6 = v128.load32_splat(key, 24);
  const k7 = v128.load32_splat(key, 28);
  const ctr = i32x4.add(i32x4.splat(counter), i32x4(0, 1, 2, 3));
  const n0 = v128.load32_splat(nonce, 0);
  const n1 = v128.load32_splat(nonce, 4);
  const n2 = v128.load32_splat(nonce, 8);

  let x0 = s0, x1 = s1, x2 = s2, x3 = s3;
  let x4 = k0, x5 = k1, x6 = k2, x7 = k3;
  let x8 = k4, x9 = k5, x10 = k6, x11 = k7;
  let x12 = ctr, x13 = n0, x14 = n1, x15 = n2;

  for (let i = 0; i < 10; i++) {
      // column round
      x0 = i32x4.add(x0, x4);
      x1 = i32x4.add(x1, x5);
      x2 = i32x4.add(x2, x6);
      x3 = i32x4.add(x3, x7);
      x12 = rotl16(v128.xor(x12, x0));
      x13 = rotl16(v128.xor(x13, x1));
      x14 = rotl16(v128.xor(x14, x2));
      x15 = rotl16(v128.xor(x15, x3));
      x8 = i32x4.add(x8, x12);
      x9 = i32x4.add(x9, x13);
      x10 = i32x4.add(x10, x14);
      x11 = i32x4.add(x11, x15);
      x4 = rotl12(v128.xor(x4, x8));
      x5 = rotl12(v128.xor(x5, x9));
      x6 = rotl12(v128.xor(x6, x10));
      x7 = rotl12(v128.xor(x7, x11));
      x0 = i32x4.add(x0, x4);
      x1 = i32x4.add(x1, x5);
      x2 = i32x4.add(x2, x6);
      x3 = i32x4.add(x3, x7);
      x12 = rotl8(v128.xor(x12, x0));
      x13 = rotl8(v128.xor(x13, x1));
      x14 = rotl8(v128.xor(x14, x2));
      x15 = rotl8(v128.xor(x15, x3));
      x8 = i32x4.add(x8, x12);
      x9 = i32x4.add(x9, x13);
      x10 = i32x4.add(x10, x14);
      x11 = i32x4.add(x11, x15);
      x4 = rotl7(v128.xor(x4, x8));
      x5 = rotl7(v128.xor(x5, x9));
      x6 = rotl7(v128.xor(x6, x10));
      x7 = rotl7(v128.xor(x7, x11));
      // diagonal round
      x0 = i32x4.add(x0, x5);
      x1 = i32x4.add(x1, x6);
      x2 = i32x4.add(x2, x7);
      x3 = i32x4.add(x3, x4);
      x15 = rotl16(v128.xor(x15, x0));
      x12 = rotl16(v128.xor(x12, x1));
      x13 = rotl16(v128.xor(x13, x2));
      x14 = rotl16(v128.xor(x14, x3));
      x10 = i32x4.add(x10, x15);
      x11 = i32x4.add(x11, x12);
      x8 = i32x4.add(x8, x13);
      x9 = i32x4.add(x9, x14);
      x5 = rotl12(v128.xor(x5, x10));
      x6 = rotl12(v128.xor(x6, x11));
      x7 = rotl12(v128.xor(x7, x8));
      x4 = rotl12(v128.xor(x4, x9));
      x0 = i32x4.add(x0, x5);
      x1 = i32x4.add(x1, x6);
      x2 = i32x4.add(x2, x7);
      x3 = i32x4.add(x3, x4);
      x15 = rotl8(v128.xor(x15, x0));
      x12 = rotl8(v128.xor(x12, x1));
      x13 = rotl8(v128.xor(x13, x2));
      x14 = rotl8(v128.xor(x14, x3));
      x10 = i32x4.add(x10, x15);
      x11 = i32x4.add(x11, x12);
      x8 = i32x4.add(x8, x13);
      x9 = i32x4.add(x9, x14);
      x5 = rotl7(v128.xor(x5, x10));
      x6 = rotl7(v128.xor(x6, x11));
      x7 = rotl7(v128.xor(x7, x8));
      x4 = rotl7(v128.xor(x4, x9));

  }

  // RFC 8439 §2.3: add the input state, then serialize little-endian.
  storeQuarter(out, i32x4.add(x0, s0), i32x4.add(x1, s1), i32x4.add(x2, s2), i32x4.add(x3, s3));
  storeQuarter(out + 16, i32x4.add(x4, k0), i32x4.add(x5, k1), i32x4.add(x6, k2), i32x4.add(x7, k3));
  storeQuarter(out + 32, i32x4.add(x8, k4), i32x4.add(x9, k5), i32x4.add(x10, k6), i32x4.add(x11, k7));
  storeQuarter(out + 48, i32x4.add(x12, ctr), i32x4.add(x13, n0), i32x4.add(x14, n1), i32x4.add(x15, n2));
}

/** XOR `len` bytes of `ks` into `data` (16 bytes at a time, then bytewise). */
// @ts-ignore: decorator
@inline export function xorInto(data: usize, ks: usize, len: usize): void {
  let i: usize = 0;
  for (; i + 16 <= len; i += 16) {
    v128.store(data + i, v128.xor(v128.load(data + i), v128.load(ks + i)));
  }
  for (; i < len; i++) {
    store<u8>(data + i, load<u8>(data + i) ^ load<u8>(ks + i));
  }
}

/**
 * ChaCha20 encryption (RFC 8439 §2.4) in place: XOR `len` bytes at `data` with the
 * keystream starting at block `counter`. Uses WORK_KEYSTREAM and wipes it.
 */
export function chacha20Xor(key: usize, nonce: usize, counter: u32, data: usize, len: usize): void {
  const ks = WORK_KEYSTREAM;
  while (len >= 256) {
    chacha20Blocks4(key, nonce, counter, ks);
    xorInto(data, ks, 256);
    data += 256;
    len -= 256;
    counter += 4;
  }
  if (len > 0) {
    chacha20Blocks4(key, nonce, counter, ks);
    xorInto(data, ks, len);
  }
  memory.fill(ks, 0, 256);
}
