// Constant-time GHASH (NIST SP 800-38D §6.4) with vector integer multiplications.
//
// Field elements use the representation of BearSSL's ghash_ctmul: a block
// read big-endian as the 128-bit integer w3:w2:w1:w0 (32-bit words, w3 =
// bytes 0..3) is the bit-reversed polynomial (integer bit 127 = coefficient
// of x^0). The integer carry-less product of two such values is the reversed
// product shifted right by one, so the 256-bit product is shifted left once
// and reduced modulo x^128 + x^7 + x^2 + x + 1 with shifts (`reduceWide`).
//
// The 128×128 carry-less product is two levels of Karatsuba over 32-bit
// words: nine 32×32 products, of the "kinds" w0, w1, w2, w3, w0⊕w1, w2⊕w3,
// w0⊕w2, w1⊕w3 and w0⊕w1⊕w2⊕w3 of both operands. A 32×32 carry-less product
// is sixteen ordinary 32×32→64 multiplications of operands split into four
// bit classes (bits ≡ c mod 4), whose three-bit "holes" absorb the carries
// (at most eight terms meet in a position, so no carry leaves its hole).
// `i64x2.extmul_{low,high}_i32x4_u` does two such multiplications per
// instruction, and the full 64-bit result needs no bit-reversal trick.
// Integer multiplication runs in constant time on every engine wasm targets,
// and nothing else depends on data: byte reversal is a register shuffle,
// never a memory lookup, and no table is indexed by secret data.
//
// Blocks are hashed in groups of up to eight with aggregated reduction: the
// group (X1..Xn) updates Y to (Y ⊕ X1)·H^n ⊕ X2·H^(n-1) ⊕ … ⊕ Xn·H, all
// products summed unreduced and reduced once. The group is transposed
// (`GHASH_T`): for each kind, one i32x4 holds that word of four blocks, and
// the key holds, for each kind and bit class, that word of H^8..H^1 in the
// same order, so one vector multiplication serves four blocks; a group of n
// blocks starts at H^n and blocks past n are zero.
//
// The running state Y is kept (16 bytes at `ys`) in "byte-reversed" form:
// i64 lane 0 is w1:w0, lane 1 is w3:w2 (the 16 bytes of the block in reverse
// order).
//
// Constant vectors are read from static memory rather than written as
// immediates: engines materialise a 16-byte immediate at every use.
//
// Concurrency: pure over the memory handed in, except for this instance's
// work buffers (GHASH_STAGE, GHASH_T); whatever in them depends on the state
// is cleared when a group ends.

/** Largest group hashed with one reduction. */
export const GHASH_MAX_GROUP: i32 = 8;
/** Words per (kind, class) row of the key: H^8..H^1, then four zero words. */
const KEY_ROW_WORDS: i32 = GHASH_MAX_GROUP + 4;
/** Bytes of one kind in the key: four bit classes × one row. */
const KEY_KIND_BYTES: i32 = 4 * KEY_ROW_WORDS * 4;
/** Operand kinds of the two-level Karatsuba product. */
const KINDS: i32 = 9;
/** Bytes of a GHASH key: nine kinds × four classes × H^8..H^1 (and padding). */
export const GHASH_KEY_SIZE: i32 = KINDS * KEY_KIND_BYTES;

const M0: u64 = 0x1111111111111111;
const M1: u64 = 0x2222222222222222;
const M2: u64 = 0x4444444444444444;
const M3: u64 = 0x8888888888888888;

/**
 * Constant vectors: +0 byte reversal indices, +16..+64 the four bit-class
 * masks (the same bytes serve 32-bit and 64-bit lanes).
 */
const GHASH_CONST: usize = memory.data<u8>([
  15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
  0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
  0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
  0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
  0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
], 16);

/** The 16 bytes of a block in reverse order: i32 lanes w0..w3. */
// @ts-ignore: decorator
@inline export function ghashByteRev(v: v128): v128 {
  return i8x16.swizzle(v, v128.load(GHASH_CONST, 0));
}

/** Carry-less 32×32 product with scalar multiplications (key setup only). */
function clmul32(x: u32, y: u32): u64 {
  const x0 = <u64>(x & 0x11111111), x1 = <u64>(x & 0x22222222), x2 = <u64>(x & 0x44444444), x3 = <u64>(x & 0x88888888);
  const y0 = <u64>(y & 0x11111111), y1 = <u64>(y & 0x22222222), y2 = <u64>(y & 0x44444444), y3 = <u64>(y & 0x88888888);
  const z0 = (x0 * y0) ^ (x1 * y3) ^ (x2 * y2) ^ (x3 * y1);
  const z1 = (x0 * y1) ^ (x1 * y0) ^ (x2 * y3) ^ (x3 * y2);
  const z2 = (x0 * y2) ^ (x1 * y1) ^ (x2 * y0) ^ (x3 * y3);
  const z3 = (x0 * y3) ^ (x1 * y2) ^ (x2 * y1) ^ (x3 * y0);
  return (z0 & M0) | (z1 & M1) | (z2 & M2) | (z3 & M3);
}

/**
 * Reduces the 256-bit integer carry-less product v3:v2:v1:v0 of two values in
 * the reversed representation modulo x^128 + x^7 + x^2 + x + 1; returns Y in
 * byte-reversed form.
 */
// @ts-ignore: decorator
@inline function reduceWide(v0: u64, v1: u64, v2: u64, v3: u64): v128 {
  // The reversed product proper is the integer product shifted left by one.
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

/**
 * Assembles the 256-bit product from the nine 32×32 products of the kinds
 * (p0..p3: w0..w3; p4: w0⊕w1; p5: w2⊕w3; p6: w0⊕w2; p7: w1⊕w3; p8: all four)
 * by Karatsuba at both levels, and reduces it.
 */
// @ts-ignore: decorator
@inline function karatsuba(
  p0: u64, p1: u64, p2: u64, p3: u64, p4: u64, p5: u64, p6: u64, p7: u64, p8: u64,
): v128 {
  // 64×64 products: low halves (w1:w0), high halves (w3:w2), and their sums.
  const ma = p4 ^ p0 ^ p1;
  const aLo = p0 ^ (ma << 32), aHi = p1 ^ (ma >> 32);
  const mb = p5 ^ p2 ^ p3;
  const bLo = p2 ^ (mb << 32), bHi = p3 ^ (mb >> 32);
  const mc = p8 ^ p6 ^ p7;
  const cLo = p6 ^ (mc << 32), cHi = p7 ^ (mc >> 32);
  // 128×128: a + (a ⊕ b ⊕ c)·x^64 + b·x^128 (integer shifts).
  return reduceWide(aLo, aHi ^ cLo ^ aLo ^ bLo, bLo ^ cHi ^ aHi ^ bHi, bHi);
}

/** Multiplies two field elements (byte-reversed form); key setup only. */
function gfMul(a: v128, b: v128): v128 {
  const a0 = <u32>i32x4.extract_lane(a, 0), a1 = <u32>i32x4.extract_lane(a, 1);
  const a2 = <u32>i32x4.extract_lane(a, 2), a3 = <u32>i32x4.extract_lane(a, 3);
  const b0 = <u32>i32x4.extract_lane(b, 0), b1 = <u32>i32x4.extract_lane(b, 1);
  const b2 = <u32>i32x4.extract_lane(b, 2), b3 = <u32>i32x4.extract_lane(b, 3);
  return karatsuba(
    clmul32(a0, b0), clmul32(a1, b1), clmul32(a2, b2), clmul32(a3, b3),
    clmul32(a0 ^ a1, b0 ^ b1), clmul32(a2 ^ a3, b2 ^ b3),
    clmul32(a0 ^ a2, b0 ^ b2), clmul32(a1 ^ a3, b1 ^ b3),
    clmul32(a0 ^ a1 ^ a2 ^ a3, b0 ^ b1 ^ b2 ^ b3),
  );
}

/** Stores word `w` of kind `t`, split into its bit classes, at row index `i` of the key at `gk`. */
// @ts-ignore: decorator
@inline function storeKindWord(gk: usize, t: i32, i: i32, w: u32): void {
  const p = gk + <usize>(t * KEY_KIND_BYTES + (i << 2));
  store<u32>(p, w & 0x11111111, 0);
  store<u32>(p, w & 0x22222222, KEY_ROW_WORDS * 4);
  store<u32>(p, w & 0x44444444, KEY_ROW_WORDS * 8);
  store<u32>(p, w & 0x88888888, KEY_ROW_WORDS * 12);
}

/**
 * Prepares a GHASH key at `gk` (`GHASH_KEY_SIZE` bytes) from the 16 bytes of
 * H = E_K(0^128) at `h` (SP 800-38D §6.4): for each kind and bit class, that
 * word of H^8, H^7, …, H^1, then four zero words.
 */
export function ghashInitKey(gk: usize, h: usize): void {
  memory.fill(gk, 0, <usize>GHASH_KEY_SIZE);
  const hv = ghashByteRev(v128.load(h));
  let pw = hv;
  for (let k = 1; k <= GHASH_MAX_GROUP; k++) {
    const i = GHASH_MAX_GROUP - k;
    const w0 = <u32>i32x4.extract_lane(pw, 0), w1 = <u32>i32x4.extract_lane(pw, 1);
    const w2 = <u32>i32x4.extract_lane(pw, 2), w3 = <u32>i32x4.extract_lane(pw, 3);
    storeKindWord(gk, 0, i, w0);
    storeKindWord(gk, 1, i, w1);
    storeKindWord(gk, 2, i, w2);
    storeKindWord(gk, 3, i, w3);
    storeKindWord(gk, 4, i, w0 ^ w1);
    storeKindWord(gk, 5, i, w2 ^ w3);
    storeKindWord(gk, 6, i, w0 ^ w2);
    storeKindWord(gk, 7, i, w1 ^ w3);
    storeKindWord(gk, 8, i, w0 ^ w1 ^ w2 ^ w3);
    pw = gfMul(pw, hv);
  }
}

// ---------------------------------------------------------------------------
// One group of up to eight blocks, transposed.

/**
 * The group transposed: kind t of blocks 4h..4h+3 is the i32x4 at t·32 + h·16
 * (blocks past the group's length are zero; half 1 is read only for groups
 * of more than four blocks).
 */
const GHASH_T: usize = memory.data(KINDS * GHASH_MAX_GROUP * 4, 16);

/** Sum of the two 32×32→64 products of each half of `x` and `h` (four products, folded to two lanes). */
// @ts-ignore: decorator
@inline function mul4(x: v128, h: v128): v128 {
  return v128.xor(i64x2.extmul_low_i32x4_u(x, h), i64x2.extmul_high_i32x4_u(x, h));
}

/**
 * Σ over the group's blocks of the 32×32 carry-less product of kind t of
 * block b and kind t of H^(n-b): the four-block vectors of the transposed
 * group times the key rows starting at H^n.
 */
function kindProduct(gk: usize, t: i32, n: i32): u64 {
  const m0 = v128.load(GHASH_CONST, 16), m1 = v128.load(GHASH_CONST, 32);
  const m2 = v128.load(GHASH_CONST, 48), m3 = v128.load(GHASH_CONST, 64);
  const xp = GHASH_T + <usize>(t << 5);
  const hp = gk + <usize>(t * KEY_KIND_BYTES + ((GHASH_MAX_GROUP - n) << 2));
  // Class by class of the data word, so that only one class of it is live
  // beside the four key classes and the four accumulators (class c of the
  // product collects x_i·h_j with i + j ≡ c mod 4).
  let x = v128.load(xp);
  let h0 = v128.load(hp, 0), h1 = v128.load(hp, KEY_ROW_WORDS * 4);
  let h2 = v128.load(hp, KEY_ROW_WORDS * 8), h3 = v128.load(hp, KEY_ROW_WORDS * 12);
  let xi = v128.and(x, m0);
  let a0 = mul4(xi, h0), a1 = mul4(xi, h1), a2 = mul4(xi, h2), a3 = mul4(xi, h3);
  xi = v128.and(x, m1);
  a1 = v128.xor(a1, mul4(xi, h0)); a2 = v128.xor(a2, mul4(xi, h1)); a3 = v128.xor(a3, mul4(xi, h2)); a0 = v128.xor(a0, mul4(xi, h3));
  xi = v128.and(x, m2);
  a2 = v128.xor(a2, mul4(xi, h0)); a3 = v128.xor(a3, mul4(xi, h1)); a0 = v128.xor(a0, mul4(xi, h2)); a1 = v128.xor(a1, mul4(xi, h3));
  xi = v128.and(x, m3);
  a3 = v128.xor(a3, mul4(xi, h0)); a0 = v128.xor(a0, mul4(xi, h1)); a1 = v128.xor(a1, mul4(xi, h2)); a2 = v128.xor(a2, mul4(xi, h3));
  if (n > 4) {
    x = v128.load(xp, 16);
    h0 = v128.load(hp, 16); h1 = v128.load(hp, KEY_ROW_WORDS * 4 + 16);
    h2 = v128.load(hp, KEY_ROW_WORDS * 8 + 16); h3 = v128.load(hp, KEY_ROW_WORDS * 12 + 16);
    xi = v128.and(x, m0);
    a0 = v128.xor(a0, mul4(xi, h0)); a1 = v128.xor(a1, mul4(xi, h1)); a2 = v128.xor(a2, mul4(xi, h2)); a3 = v128.xor(a3, mul4(xi, h3));
    xi = v128.and(x, m1);
    a1 = v128.xor(a1, mul4(xi, h0)); a2 = v128.xor(a2, mul4(xi, h1)); a3 = v128.xor(a3, mul4(xi, h2)); a0 = v128.xor(a0, mul4(xi, h3));
    xi = v128.and(x, m2);
    a2 = v128.xor(a2, mul4(xi, h0)); a3 = v128.xor(a3, mul4(xi, h1)); a0 = v128.xor(a0, mul4(xi, h2)); a1 = v128.xor(a1, mul4(xi, h3));
    xi = v128.and(x, m3);
    a3 = v128.xor(a3, mul4(xi, h0)); a0 = v128.xor(a0, mul4(xi, h1)); a1 = v128.xor(a1, mul4(xi, h2)); a2 = v128.xor(a2, mul4(xi, h3));
  }
  const r = v128.or(v128.or(v128.and(a0, m0), v128.and(a1, m1)), v128.or(v128.and(a2, m2), v128.and(a3, m3)));
  return <u64>i64x2.extract_lane(r, 0) ^ <u64>i64x2.extract_lane(r, 1);
}

/** Block b of the group at `p`, or zero past its end (n is public). */
// @ts-ignore: decorator
@inline function groupBlock(p: usize, b: i32, n: i32): v128 {
  return b < n ? ghashByteRev(v128.load(p + (<usize>b << 4))) : i64x2.splat(0);
}

/**
 * Transposes blocks 4h..4h+3 of the group into the kind vectors of half h
 * (at GHASH_T + t·32 + h·16): a 4×4 transposition of 32-bit words in
 * registers, then the XOR kinds.
 */
// @ts-ignore: decorator
@inline function transposeHalf(q: usize, a: v128, b: v128, c: v128, d: v128): void {
  const t0 = i32x4.shuffle(a, b, 0, 4, 1, 5), t1 = i32x4.shuffle(c, d, 0, 4, 1, 5);
  const t2 = i32x4.shuffle(a, b, 2, 6, 3, 7), t3 = i32x4.shuffle(c, d, 2, 6, 3, 7);
  const k0 = i64x2.shuffle(t0, t1, 0, 2), k1 = i64x2.shuffle(t0, t1, 1, 3);
  const k2 = i64x2.shuffle(t2, t3, 0, 2), k3 = i64x2.shuffle(t2, t3, 1, 3);
  const k4 = v128.xor(k0, k1), k5 = v128.xor(k2, k3);
  v128.store(q, k0, 0);
  v128.store(q, k1, 32);
  v128.store(q, k2, 64);
  v128.store(q, k3, 96);
  v128.store(q, k4, 128);
  v128.store(q, k5, 160);
  v128.store(q, v128.xor(k0, k2), 192);
  v128.store(q, v128.xor(k1, k3), 224);
  v128.store(q, v128.xor(k4, k5), 256);
}

/** Hashes the `n` (1..8) whole blocks at `p` into the state at `ys`. */
function ghashGroup(gk: usize, ys: usize, p: usize, n: i32): void {
  const b0 = v128.xor(groupBlock(p, 0, n), v128.load(ys));
  transposeHalf(GHASH_T, b0, groupBlock(p, 1, n), groupBlock(p, 2, n), groupBlock(p, 3, n));
  if (n > 4) transposeHalf(GHASH_T + 16, groupBlock(p, 4, n), groupBlock(p, 5, n), groupBlock(p, 6, n), groupBlock(p, 7, n));
  v128.store(ys, karatsuba(
    kindProduct(gk, 0, n), kindProduct(gk, 1, n), kindProduct(gk, 2, n), kindProduct(gk, 3, n),
    kindProduct(gk, 4, n), kindProduct(gk, 5, n), kindProduct(gk, 6, n), kindProduct(gk, 7, n),
    kindProduct(gk, 8, n),
  ));
  // Block 0 (half 0) was XORed with the previous state; half 1 holds only input blocks.
  const zero = i64x2.splat(0);
  for (let i: usize = 0; i < <usize>(KINDS * 32); i += 32) v128.store(GHASH_T + i, zero);
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
    ghashGroup(gk, s, p, n);
    i += n;
  }
  v128.store(s, ghashByteRev(v128.load(s)));
  const zero = i64x2.splat(0);
  for (let b: usize = 0; b < <usize>(GHASH_MAX_GROUP << 4); b += 16) v128.store(GHASH_STAGE + b, zero);
}
