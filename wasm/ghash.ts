// Constant-time GHASH (NIST SP 800-38D §6.4) with integer multiplications.
//
// Field elements use the representation of BearSSL's ghash_ctmul64: a block
// read big-endian as the 128-bit integer y1:y0 (y1 = bytes 0..7, y0 = bytes
// 8..15) is the bit-reversed polynomial (integer bit 127 = coefficient of x^0).
// The carry-less product of two reversed 64-bit words is computed with
// ordinary 64-bit multiplications on operands split into four bit classes
// (bits ≡ c mod 4), leaving three-bit "holes" that absorb the carries; the
// product's high half is the reversed low half of the product of the reversed
// operands. Three such 64×64 products per block (Karatsuba) and a shift-based
// reduction modulo x^128 + x^7 + x^2 + x + 1. i64.mul runs in constant time on
// every engine wasm targets, and nothing else depends on data: bit and byte
// reversals are register shuffles, never memory lookups.
//
// Blocks are hashed in groups of up to eight with aggregated reduction: the
// group (X1..Xn) updates Y to (Y ⊕ X1)·H^n ⊕ X2·H^(n-1) ⊕ … ⊕ Xn·H, all
// products summed unreduced and reduced once. The key holds H^1..H^8, each
// pre-split into the four bit classes of its six Karatsuba operands.
//
// Two schedules compute a group:
// - whole groups of eight (`ghashGroup8`) go "kind-major": every block's six
//   operands are split into bit classes at once with v128 operations, then
//   each operand kind is summed over the eight blocks with raw (unmasked)
//   per-class sums, masked once per kind (about 10% fewer instructions than
//   block by block on V8, where this code is bound by instruction count);
// - shorter groups (`ghashGroupShort`) go block by block.
//
// The running state Y is kept (16 bytes at `ys`) in "byte-reversed" form:
// i64 lane 0 is y0, lane 1 is y1 (the 16 bytes of the block in reverse order).
//
// Constant vectors are read from static memory rather than written as
// immediates: engines materialise a 16-byte immediate at every use.
//
// Concurrency: pure over the memory handed in, except for this instance's
// work buffers (GHASH_STAGE, GHASH_X); whatever in them depends on the state
// is cleared when a group ends.

/** Bytes of one power of H: six operands × four bit classes × 8 bytes. */
const POWER_BYTES: i32 = 6 * 4 * 8;
/** Largest group hashed with one reduction. */
export const GHASH_MAX_GROUP: i32 = 8;
/** Bytes of a GHASH key: H^1..H^8 pre-split. */
export const GHASH_KEY_SIZE: i32 = GHASH_MAX_GROUP * POWER_BYTES;

const M0: u64 = 0x1111111111111111;
const M1: u64 = 0x2222222222222222;
const M2: u64 = 0x4444444444444444;
const M3: u64 = 0x8888888888888888;

/**
 * Constant vectors: +0 byte reversal indices, +16 reversal within each i64
 * lane, +32 reversed nibble n at index n, +48 the same shifted to the high
 * nibble, +64 0x0f in every byte, +80..+128 the four bit-class masks.
 */
const GHASH_CONST: usize = memory.data<u8>([
  15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
  7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
  0x0, 0x8, 0x4, 0xc, 0x2, 0xa, 0x6, 0xe, 0x1, 0x9, 0x5, 0xd, 0x3, 0xb, 0x7, 0xf,
  0x00, 0x80, 0x40, 0xc0, 0x20, 0xa0, 0x60, 0xe0, 0x10, 0x90, 0x50, 0xd0, 0x30, 0xb0, 0x70, 0xf0,
  0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,
  0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
  0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
  0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
  0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
], 16);

/** Low 64 bits of the carry-less product x·h (h given as its four bit classes). */
// @ts-ignore: decorator
@inline function bmul64(x: u64, h0: u64, h1: u64, h2: u64, h3: u64): u64 {
  const x0 = x & M0, x1 = x & M1, x2 = x & M2, x3 = x & M3;
  const z0 = (x0 * h0) ^ (x1 * h3) ^ (x2 * h2) ^ (x3 * h1);
  const z1 = (x0 * h1) ^ (x1 * h0) ^ (x2 * h3) ^ (x3 * h2);
  const z2 = (x0 * h2) ^ (x1 * h1) ^ (x2 * h0) ^ (x3 * h3);
  const z3 = (x0 * h3) ^ (x1 * h2) ^ (x2 * h1) ^ (x3 * h0);
  return (z0 & M0) | (z1 & M1) | (z2 & M2) | (z3 & M3);
}

/** bmul64 against a pre-split operand stored at `hp` (4 × u64). */
// @ts-ignore: decorator
@inline function bmul64p(x: u64, hp: usize): u64 {
  return bmul64(x, load<u64>(hp, 0), load<u64>(hp, 8), load<u64>(hp, 16), load<u64>(hp, 24));
}

/** Bit reversal of a 64-bit word (key setup and reduction). */
// @ts-ignore: decorator
@inline function rev64(x: u64): u64 {
  x = ((x & 0x5555555555555555) << 1) | ((x >> 1) & 0x5555555555555555);
  x = ((x & 0x3333333333333333) << 2) | ((x >> 2) & 0x3333333333333333);
  x = ((x & 0x0F0F0F0F0F0F0F0F) << 4) | ((x >> 4) & 0x0F0F0F0F0F0F0F0F);
  x = ((x & 0x00FF00FF00FF00FF) << 8) | ((x >> 8) & 0x00FF00FF00FF00FF);
  x = ((x & 0x0000FFFF0000FFFF) << 16) | ((x >> 16) & 0x0000FFFF0000FFFF);
  return (x << 32) | (x >> 32);
}

/** The 16 bytes of a block in reverse order: lane 0 = y0, lane 1 = y1. */
// @ts-ignore: decorator
@inline export function ghashByteRev(v: v128): v128 {
  return i8x16.swizzle(v, v128.load(GHASH_CONST, 0));
}

/** rev64 of both i64 lanes: bytes reversed within each lane, bits within each byte. */
// @ts-ignore: decorator
@inline function rev64x2(v: v128): v128 {
  const x = i8x16.swizzle(v, v128.load(GHASH_CONST, 16));
  const nib = v128.load(GHASH_CONST, 64);
  const lo = v128.and(x, nib);
  const hi = v128.and(i16x8.shr_u(x, 4), nib);
  return v128.or(i8x16.swizzle(v128.load(GHASH_CONST, 48), lo), i8x16.swizzle(v128.load(GHASH_CONST, 32), hi));
}

/**
 * Reduces the Karatsuba sums of a 128×128 carry-less product (zN: low halves;
 * zNh: high halves, still bit-reversed as bmul64 of reversed operands gives
 * them) modulo x^128 + x^7 + x^2 + x + 1. Returns Y in byte-reversed form.
 */
// @ts-ignore: decorator
@inline function reduce(z0: u64, z1: u64, z2: u64, z0h: u64, z1h: u64, z2h: u64): v128 {
  z2 ^= z0 ^ z1;
  z2h ^= z0h ^ z1h;
  const hr = rev64x2(i64x2.replace_lane(i64x2.splat(z0h), 1, z1h));
  z0h = <u64>i64x2.extract_lane(hr, 0) >> 1;
  z1h = <u64>i64x2.extract_lane(hr, 1) >> 1;
  z2h = <u64>i64x2.extract_lane(rev64x2(i64x2.splat(z2h)), 0) >> 1;
  // 256-bit reversed product v3:v2:v1:v0, shifted left by one.
  let v0 = z0;
  let v1 = z0h ^ z2;
  let v2 = z1 ^ z2h;
  let v3 = z1h;
  v3 = (v3 << 1) | (v2 >> 63);
  v2 = (v2 << 1) | (v1 >> 63);
  v1 = (v1 << 1) | (v0 >> 63);
  v0 = v0 << 1;
  // Fold the low 128 bits (coefficients of x^128..x^255) back with
  // x^128 = x^7 + x^2 + x + 1 (a right shift by k multiplies by x^k here).
  v2 ^= v0 ^ (v0 >> 1) ^ (v0 >> 2) ^ (v0 >> 7);
  v1 ^= (v0 << 63) ^ (v0 << 62) ^ (v0 << 57);
  v3 ^= v1 ^ (v1 >> 1) ^ (v1 >> 2) ^ (v1 >> 7);
  v2 ^= (v1 << 63) ^ (v1 << 62) ^ (v1 << 57);
  return i64x2.replace_lane(i64x2.splat(v2), 1, v3);
}

/** Multiplies two field elements (byte-reversed form); key setup only. */
function gfMul(a: v128, b: v128): v128 {
  const a0: u64 = i64x2.extract_lane(a, 0), a1: u64 = i64x2.extract_lane(a, 1);
  const b0: u64 = i64x2.extract_lane(b, 0), b1: u64 = i64x2.extract_lane(b, 1);
  const a2 = a0 ^ a1, b2 = b0 ^ b1;
  const a0r = rev64(a0), a1r = rev64(a1), a2r = rev64(a2);
  const b0r = rev64(b0), b1r = rev64(b1), b2r = rev64(b2);
  const z0 = bmul64(a0, b0 & M0, b0 & M1, b0 & M2, b0 & M3);
  const z1 = bmul64(a1, b1 & M0, b1 & M1, b1 & M2, b1 & M3);
  const z2 = bmul64(a2, b2 & M0, b2 & M1, b2 & M2, b2 & M3);
  const z0h = bmul64(a0r, b0r & M0, b0r & M1, b0r & M2, b0r & M3);
  const z1h = bmul64(a1r, b1r & M0, b1r & M1, b1r & M2, b1r & M3);
  const z2h = bmul64(a2r, b2r & M0, b2r & M1, b2r & M2, b2r & M3);
  return reduce(z0, z1, z2, z0h, z1h, z2h);
}

/** Stores operand `x` split into its four bit classes at `p`. */
// @ts-ignore: decorator
@inline function storeSplit(p: usize, x: u64): void {
  store<u64>(p, x & M0, 0);
  store<u64>(p, x & M1, 8);
  store<u64>(p, x & M2, 16);
  store<u64>(p, x & M3, 24);
}

/**
 * Prepares a GHASH key at `gk` (`GHASH_KEY_SIZE` bytes) from the 16 bytes of
 * H = E_K(0^128) at `h` (SP 800-38D §6.4): H^k for k = 1..8, each stored as
 * the bit classes of h0, h1, h0⊕h1 and their bit reversals.
 */
export function ghashInitKey(gk: usize, h: usize): void {
  const hv = ghashByteRev(v128.load(h));
  let pw = hv;
  for (let k = 0; k < GHASH_MAX_GROUP; k++) {
    const p = gk + <usize>(k * POWER_BYTES);
    const p0: u64 = i64x2.extract_lane(pw, 0), p1: u64 = i64x2.extract_lane(pw, 1);
    const p2 = p0 ^ p1;
    storeSplit(p, p0);
    storeSplit(p + 32, p1);
    storeSplit(p + 64, p2);
    storeSplit(p + 96, rev64(p0));
    storeSplit(p + 128, rev64(p1));
    storeSplit(p + 160, rev64(p2));
    pw = gfMul(pw, hv);
  }
}

// ---------------------------------------------------------------------------
// Block by block, for groups of fewer than eight blocks.

/** Hashes the `n` (1..8) whole blocks at `p` into the state at `ys`, block by block. */
function ghashGroupShort(gk: usize, ys: usize, p: usize, n: i32): void {
  let z0: u64 = 0, z1: u64 = 0, z2: u64 = 0, z0h: u64 = 0, z1h: u64 = 0, z2h: u64 = 0;
  let acc = v128.load(ys);
  let hp = gk + <usize>((n - 1) * POWER_BYTES);
  const end = p + (<usize>n << 4);
  while (p < end) {
    const x = v128.xor(ghashByteRev(v128.load(p)), acc);
    acc = i64x2.splat(0);
    const xr = rev64x2(x);
    const x0: u64 = i64x2.extract_lane(x, 0), x1: u64 = i64x2.extract_lane(x, 1);
    const x0r: u64 = i64x2.extract_lane(xr, 0), x1r: u64 = i64x2.extract_lane(xr, 1);
    z0 ^= bmul64p(x0, hp);
    z1 ^= bmul64p(x1, hp + 32);
    z2 ^= bmul64p(x0 ^ x1, hp + 64);
    z0h ^= bmul64p(x0r, hp + 96);
    z1h ^= bmul64p(x1r, hp + 128);
    z2h ^= bmul64p(x0r ^ x1r, hp + 160);
    hp -= POWER_BYTES;
    p += 16;
  }
  v128.store(ys, reduce(z0, z1, z2, z0h, z1h, z2h));
}

// ---------------------------------------------------------------------------
// Kind-major, whole groups of eight.

/** Bytes of one prepared block: three v128 operand pairs × four bit classes. */
const PREP_BYTES: i32 = 3 * 4 * 16;
/**
 * Prepared blocks: for block b, at b·PREP_BYTES + pair·64 + class·16 the
 * class bits of the pairs (x0, x1), (x0r, x1r), (x0⊕x1, x0r⊕x1r).
 */
const GHASH_X: usize = memory.data(GHASH_MAX_GROUP * PREP_BYTES, 16);
/** Offset in a prepared block of operand kind t (h0, h1, h2, h0r, h1r, h2r order). */
const KIND_OFFSET: usize = memory.data<u8>([0, 8, 128, 64, 72, 136]);

/** Σ over the eight prepared blocks of bmul64(operand t, operand t of H^(8-b)). */
// @ts-ignore: decorator
@inline function kindSum8(gk: usize, t: i32): u64 {
  let a0: u64 = 0, a1: u64 = 0, a2: u64 = 0, a3: u64 = 0;
  let xp = GHASH_X + <usize>load<u8>(KIND_OFFSET + <usize>t);
  let hp = gk + <usize>(7 * POWER_BYTES + (t << 5));
  for (let b = 0; b < GHASH_MAX_GROUP; b++) {
    const x0 = load<u64>(xp, 0), x1 = load<u64>(xp, 16), x2 = load<u64>(xp, 32), x3 = load<u64>(xp, 48);
    const h0 = load<u64>(hp, 0), h1 = load<u64>(hp, 8), h2 = load<u64>(hp, 16), h3 = load<u64>(hp, 24);
    a0 ^= (x0 * h0) ^ (x1 * h3) ^ (x2 * h2) ^ (x3 * h1);
    a1 ^= (x0 * h1) ^ (x1 * h0) ^ (x2 * h3) ^ (x3 * h2);
    a2 ^= (x0 * h2) ^ (x1 * h1) ^ (x2 * h0) ^ (x3 * h3);
    a3 ^= (x0 * h3) ^ (x1 * h2) ^ (x2 * h1) ^ (x3 * h0);
    xp += PREP_BYTES;
    hp -= POWER_BYTES;
  }
  return (a0 & M0) | (a1 & M1) | (a2 & M2) | (a3 & M3);
}

/** Hashes the eight whole blocks at `p` into the state at `ys`, kind by kind. */
function ghashGroup8(gk: usize, ys: usize, p: usize): void {
  let acc = v128.load(ys);
  const m0 = v128.load(GHASH_CONST, 80), m1 = v128.load(GHASH_CONST, 96);
  const m2 = v128.load(GHASH_CONST, 112), m3 = v128.load(GHASH_CONST, 128);
  for (let b = 0; b < GHASH_MAX_GROUP; b++) {
    const dst = GHASH_X + <usize>(b * PREP_BYTES);
    const x = v128.xor(ghashByteRev(v128.load(p + (<usize>b << 4))), acc);
    acc = i64x2.splat(0);
    const xr = rev64x2(x);
    const x2 = v128.xor(i64x2.shuffle(x, xr, 0, 2), i64x2.shuffle(x, xr, 1, 3));
    v128.store(dst, v128.and(x, m0), 0);
    v128.store(dst, v128.and(x, m1), 16);
    v128.store(dst, v128.and(x, m2), 32);
    v128.store(dst, v128.and(x, m3), 48);
    v128.store(dst, v128.and(xr, m0), 64);
    v128.store(dst, v128.and(xr, m1), 80);
    v128.store(dst, v128.and(xr, m2), 96);
    v128.store(dst, v128.and(xr, m3), 112);
    v128.store(dst, v128.and(x2, m0), 128);
    v128.store(dst, v128.and(x2, m1), 144);
    v128.store(dst, v128.and(x2, m2), 160);
    v128.store(dst, v128.and(x2, m3), 176);
  }
  v128.store(ys, reduce(kindSum8(gk, 0), kindSum8(gk, 1), kindSum8(gk, 2), kindSum8(gk, 3), kindSum8(gk, 4), kindSum8(gk, 5)));
  // Block 0 was XORed with the previous state.
  const zero = i64x2.splat(0);
  for (let i: usize = 0; i < <usize>PREP_BYTES; i += 16) v128.store(GHASH_X + i, zero);
}

// ---------------------------------------------------------------------------

/** Eight blocks of the GHASH input gathered from their sources and zero-padded. */
const GHASH_STAGE: usize = memory.data(GHASH_MAX_GROUP * 16, 16);

/**
 * Copies block `j` of the GHASH input A ‖ 0* ‖ C ‖ 0* ‖ [len(A)]64 ‖ [len(C)]64
 * (SP 800-38D §7.1 step 5; A has `aBlocks` padded blocks, C `cBlocks`) to `dst`.
 */
// @ts-ignore: decorator
@inline function stageBlock(
  dst: usize, j: i32, aad: usize, aadLen: i32, aBlocks: i32, data: usize, dataLen: i32, cBlocks: i32,
): void {
  let src: usize = 0;
  let avail = 0;
  if (j < aBlocks) {
    src = aad + (<usize>j << 4);
    avail = aadLen - (j << 4);
  } else if (j < aBlocks + cBlocks) {
    src = data + (<usize>(j - aBlocks) << 4);
    avail = dataLen - ((j - aBlocks) << 4);
  } else {
    const lenBlock = i64x2.replace_lane(i64x2.splat(<u64>(<u32>dataLen) << 3), 1, <u64>(<u32>aadLen) << 3);
    v128.store(dst, ghashByteRev(lenBlock));
    return;
  }
  if (avail >= 16) {
    v128.store(dst, v128.load(src));
  } else {
    v128.store(dst, i64x2.splat(0));
    memory.copy(dst, src, <usize>avail);
  }
}

/**
 * GHASH_H(A ‖ 0* ‖ C ‖ 0* ‖ [len(A)]64 ‖ [len(C)]64) (SP 800-38D §7.1 step 5)
 * for the `aadLen` bytes at `aad` and the `dataLen` bytes at `data`, written
 * to `s` as the 16 bytes of S in memory order. The input is taken as one
 * stream of blocks in groups of eight; only groups that straddle A, C and the
 * length block or need padding are gathered into GHASH_STAGE first.
 */
export function ghashAuth(gk: usize, s: usize, aad: usize, aadLen: i32, data: usize, dataLen: i32): void {
  const aBlocks = (aadLen + 15) >> 4;
  const cBlocks = (dataLen + 15) >> 4;
  const cWhole = dataLen >> 4;
  const total = aBlocks + cBlocks + 1;
  v128.store(s, i64x2.splat(0));
  let i = 0;
  while (i < total) {
    const n = total - i < GHASH_MAX_GROUP ? total - i : GHASH_MAX_GROUP;
    let p: usize;
    if (i >= aBlocks && i + n <= aBlocks + cWhole) {
      p = data + (<usize>(i - aBlocks) << 4);
    } else {
      for (let b = 0; b < n; b++) {
        stageBlock(GHASH_STAGE + (<usize>b << 4), i + b, aad, aadLen, aBlocks, data, dataLen, cBlocks);
      }
      p = GHASH_STAGE;
    }
    if (n == GHASH_MAX_GROUP) ghashGroup8(gk, s, p);
    else ghashGroupShort(gk, s, p, n);
    i += n;
  }
  v128.store(s, ghashByteRev(v128.load(s)));
  const zero = i64x2.splat(0);
  for (let b: usize = 0; b < <usize>(GHASH_MAX_GROUP << 4); b += 16) v128.store(GHASH_STAGE + b, zero);
}
