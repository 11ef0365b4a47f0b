// Constant-time AES-128/192/256 encryption (FIPS 197), bitsliced over v128.
//
// Eight 16-byte blocks are processed at once in the Käsper–Schwabe layout:
// after the `aesOrtho` transposition, plane j (one v128) holds bit j of every
// state byte of the eight blocks; within a plane, byte 4·row + column is that
// AES state byte (row-major, see below) and bit i of it belongs to block i.
// SubBytes is then the Boyar–Peralta Boolean circuit evaluated on the eight
// planes, ShiftRows and the row rotations of MixColumns are constant shuffles
// of each plane, and AddRoundKey XORs planes of the bitsliced round keys. No
// table lookup, branch or memory address depends on key or data, so timing
// does not leak either.
//
// The S-box's affine constant 0x63 is not applied in the circuit: every
// operation after SubBytes is linear and maps a state of all-0x63 bytes onto
// itself (MixColumns: 2·c ⊕ 3·c ⊕ c ⊕ c = c), so the constant is folded into
// round keys 1..Nr instead (see `aesExpandKey`).
//
// GCM (NIST SP 800-38D) needs only the forward cipher. CBC decryption (RFC
// 3602) needs the inverse cipher (`aesDecrypt8`), built on the same circuit:
// InvSubBytes(y) = B(S'(B(y) ^ 0x05)), where S' is the S-box without its
// constant (what `aesRounds` computes) and B the linear part of the inverse
// affine map (FIPS 197 §5.3.2), so no second S-box circuit exists and the
// inverse is as constant time as the forward one.
//
// The lanes of a bitsliced state need not share a key: bit i of every byte of
// a round-key plane belongs to block i, so `aesMergeLaneKey` builds round
// keys whose lane i is one SA's and lane j another's (CBC multi-buffer
// encryption, cbc.ts, runs blocks of different packets side by side).
//
// Concurrency: every function here is pure over the memory it is handed; the
// only module state is read-only (`AES_ZERO_KEYS`).

/** Bytes of bitsliced round keys for up to AES-256: 15 round keys × 8 planes × 16 bytes. */
export const AES_RK_SIZE: i32 = 15 * 8 * 16;

/** Bytes of an eight-block buffer handled by `aesEncrypt8`. */
export const AES_BATCH_BYTES: i32 = 128;

/** Two all-zero bitsliced round keys: a one-round "cipher" that is plain SubBytes+ShiftRows. */
const AES_ZERO_KEYS: usize = memory.data(256, 16);

// Byte order of a plane: row-major, byte 4r + c is AES state row r, column c
// (FIPS 197 §3.4 numbers the block's bytes column by column, 4c + r;
// `aesOrtho` transposes each 4×4 byte matrix on the way in and out). Then
// the two row rotations of MixColumns (FIPS 197 §5.1.3; ROT1: out row r = in
// row r + 1, ROT2: two rows) move whole 32-bit words, which engines lower to
// one shuffle with an immediate (x64 `pshufd`), and ShiftRows (§5.1.2:
// row r rotated left by r bytes) is one `i8x16.swizzle` by a constant index
// vector written in place (`v128.const`): engines lower a swizzle whose
// indices are a constant below 16 to a single byte shuffle (x64 `pshufb`)
// with the constant hoisted out of the round loop, whereas indices loaded
// from memory cost a saturating add per swizzle (out-of-range lanes must
// read 0), and a general `i8x16.shuffle` re-materialises its 16-byte
// immediate at every use. Every index is a public constant.

/** ShiftRows. */
// @ts-ignore: decorator
@inline function shiftRows(x: v128): v128 {
  return i8x16.swizzle(x, i8x16(0, 1, 2, 3, 5, 6, 7, 4, 10, 11, 8, 9, 15, 12, 13, 14));
}

/** ShiftRows applied twice (rows 1 and 3 rotated by two bytes; its own inverse). */
// @ts-ignore: decorator
@inline function shiftRows2(x: v128): v128 {
  return i8x16.swizzle(x, i8x16(0, 1, 2, 3, 6, 7, 4, 5, 8, 9, 10, 11, 14, 15, 12, 13));
}

/** ROT1: row r takes row r + 1 (mod 4). */
// @ts-ignore: decorator
@inline function rot1(x: v128): v128 {
  return i32x4.shuffle(x, x, 1, 2, 3, 0);
}

/** ROT2: rows 0, 1 swap with rows 2, 3. */
// @ts-ignore: decorator
@inline function rot2(x: v128): v128 {
  return i32x4.shuffle(x, x, 2, 3, 0, 1);
}

/** Column-major <-> row-major: the 4×4 byte transposition (its own inverse). */
// @ts-ignore: decorator
@inline function byteTranspose(x: v128): v128 {
  return i8x16.swizzle(x, i8x16(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
}

/**
 * Transposes the 8×8 bit matrix at every byte position of the eight v128
 * words at `p` (block i, bit j <-> plane j, bit i) and the 4×4 byte matrix of
 * every word (column-major <-> row-major). Both commute and are their own
 * inverses, so it both enters and leaves the bitsliced representation.
 */
export function aesOrtho(p: usize): void {
  let q0 = byteTranspose(v128.load(p, 0));
  let q1 = byteTranspose(v128.load(p, 16));
  let q2 = byteTranspose(v128.load(p, 32));
  let q3 = byteTranspose(v128.load(p, 48));
  let q4 = byteTranspose(v128.load(p, 64));
  let q5 = byteTranspose(v128.load(p, 80));
  let q6 = byteTranspose(v128.load(p, 96));
  let q7 = byteTranspose(v128.load(p, 112));
  const m1 = i8x16.splat(0x55);
  const m2 = i8x16.splat(0x33);
  const m4 = i8x16.splat(0x0f);
  let t: v128;
  // swap(a, b, s, m): the bits of a at m<<s trade places with the bits of b at m.
  t = v128.and(v128.xor(i64x2.shr_u(q0, 1), q1), m1); q1 = v128.xor(q1, t); q0 = v128.xor(q0, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(q2, 1), q3), m1); q3 = v128.xor(q3, t); q2 = v128.xor(q2, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(q4, 1), q5), m1); q5 = v128.xor(q5, t); q4 = v128.xor(q4, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(q6, 1), q7), m1); q7 = v128.xor(q7, t); q6 = v128.xor(q6, i64x2.shl(t, 1));

  t = v128.and(v128.xor(i64x2.shr_u(q0, 2), q2), m2); q2 = v128.xor(q2, t); q0 = v128.xor(q0, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(q1, 2), q3), m2); q3 = v128.xor(q3, t); q1 = v128.xor(q1, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(q4, 2), q6), m2); q6 = v128.xor(q6, t); q4 = v128.xor(q4, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(q5, 2), q7), m2); q7 = v128.xor(q7, t); q5 = v128.xor(q5, i64x2.shl(t, 2));

  t = v128.and(v128.xor(i64x2.shr_u(q0, 4), q4), m4); q4 = v128.xor(q4, t); q0 = v128.xor(q0, i64x2.shl(t, 4));
  t = v128.and(v128.xor(i64x2.shr_u(q1, 4), q5), m4); q5 = v128.xor(q5, t); q1 = v128.xor(q1, i64x2.shl(t, 4));
  t = v128.and(v128.xor(i64x2.shr_u(q2, 4), q6), m4); q6 = v128.xor(q6, t); q2 = v128.xor(q2, i64x2.shl(t, 4));
  t = v128.and(v128.xor(i64x2.shr_u(q3, 4), q7), m4); q7 = v128.xor(q7, t); q3 = v128.xor(q3, i64x2.shl(t, 4));

  v128.store(p, q0, 0);
  v128.store(p, q1, 16);
  v128.store(p, q2, 32);
  v128.store(p, q3, 48);
  v128.store(p, q4, 64);
  v128.store(p, q5, 80);
  v128.store(p, q6, 96);
  v128.store(p, q7, 112);
}

/**
 * Runs `nr` AES rounds (FIPS 197 §5.1) on the bitsliced state at `p` (8 planes)
 * with the bitsliced round keys at `rk` (nr + 1 keys of 128 bytes).
 */
export function aesRounds(rk: usize, nr: i32, p: usize): void {
  let q0 = v128.xor(v128.load(p, 0), v128.load(rk, 0));
  let q1 = v128.xor(v128.load(p, 16), v128.load(rk, 16));
  let q2 = v128.xor(v128.load(p, 32), v128.load(rk, 32));
  let q3 = v128.xor(v128.load(p, 48), v128.load(rk, 48));
  let q4 = v128.xor(v128.load(p, 64), v128.load(rk, 64));
  let q5 = v128.xor(v128.load(p, 80), v128.load(rk, 80));
  let q6 = v128.xor(v128.load(p, 96), v128.load(rk, 96));
  let q7 = v128.xor(v128.load(p, 112), v128.load(rk, 112));

  for (let r = 1; r <= nr; r++) {
    // SubBytes: Boyar–Peralta circuit (J. Boyar, R. Peralta, "A new combinational
    // logic minimization technique with applications to cryptology", 2009), without
    // the output NOTs (folded into the round keys). x0 is the most significant bit.
    const x0 = q7, x1 = q6, x2 = q5, x3 = q4, x4 = q3, x5 = q2, x6 = q1, x7 = q0;

    // Top linear transformation.
    const y14 = v128.xor(x3, x5);
    const y13 = v128.xor(x0, x6);
    const y9 = v128.xor(x0, x3);
    const y8 = v128.xor(x0, x5);
    const t0 = v128.xor(x1, x2);
    const y1 = v128.xor(t0, x7);
    const y4 = v128.xor(y1, x3);
    const y12 = v128.xor(y13, y14);
    const y2 = v128.xor(y1, x0);
    const y5 = v128.xor(y1, x6);
    const y3 = v128.xor(y5, y8);
    const t1 = v128.xor(x4, y12);
    const y15 = v128.xor(t1, x5);
    const y20 = v128.xor(t1, x1);
    const y6 = v128.xor(y15, x7);
    const y10 = v128.xor(y15, t0);
    const y11 = v128.xor(y20, y9);
    const y7 = v128.xor(x7, y11);
    const y17 = v128.xor(y10, y11);
    const y19 = v128.xor(y10, y8);
    const y16 = v128.xor(t0, y11);
    const y21 = v128.xor(y13, y16);
    const y18 = v128.xor(x0, y16);

    // Shared non-linear middle: inversion in GF(2^4)^2.
    const t2 = v128.and(y12, y15);
    const t3 = v128.and(y3, y6);
    const t4 = v128.xor(t3, t2);
    const t5 = v128.and(y4, x7);
    const t6 = v128.xor(t5, t2);
    const t7 = v128.and(y13, y16);
    const t8 = v128.and(y5, y1);
    const t9 = v128.xor(t8, t7);
    const t10 = v128.and(y2, y7);
    const t11 = v128.xor(t10, t7);
    const t12 = v128.and(y9, y11);
    const t13 = v128.and(y14, y17);
    const t14 = v128.xor(t13, t12);
    const t15 = v128.and(y8, y10);
    const t16 = v128.xor(t15, t12);
    const t17 = v128.xor(t4, t14);
    const t18 = v128.xor(t6, t16);
    const t19 = v128.xor(t9, t14);
    const t20 = v128.xor(t11, t16);
    const t21 = v128.xor(t17, y20);
    const t22 = v128.xor(t18, y19);
    const t23 = v128.xor(t19, y21);
    const t24 = v128.xor(t20, y18);

    const t25 = v128.xor(t21, t22);
    const t26 = v128.and(t21, t23);
    const t27 = v128.xor(t24, t26);
    const t28 = v128.and(t25, t27);
    const t29 = v128.xor(t28, t22);
    const t30 = v128.xor(t23, t24);
    const t31 = v128.xor(t22, t26);
    const t32 = v128.and(t31, t30);
    const t33 = v128.xor(t32, t24);
    const t34 = v128.xor(t23, t33);
    const t35 = v128.xor(t27, t33);
    const t36 = v128.and(t24, t35);
    const t37 = v128.xor(t36, t34);
    const t38 = v128.xor(t27, t36);
    const t39 = v128.and(t29, t38);
    const t40 = v128.xor(t25, t39);

    const t41 = v128.xor(t40, t37);
    const t42 = v128.xor(t29, t33);
    const t43 = v128.xor(t29, t40);
    const t44 = v128.xor(t33, t37);
    const t45 = v128.xor(t42, t41);
    const z0 = v128.and(t44, y15);
    const z1 = v128.and(t37, y6);
    const z2 = v128.and(t33, x7);
    const z3 = v128.and(t43, y16);
    const z4 = v128.and(t40, y1);
    const z5 = v128.and(t29, y7);
    const z6 = v128.and(t42, y11);
    const z7 = v128.and(t45, y17);
    const z8 = v128.and(t41, y10);
    const z9 = v128.and(t44, y12);
    const z10 = v128.and(t37, y3);
    const z11 = v128.and(t33, y4);
    const z12 = v128.and(t43, y13);
    const z13 = v128.and(t40, y5);
    const z14 = v128.and(t29, y2);
    const z15 = v128.and(t42, y9);
    const z16 = v128.and(t45, y14);
    const z17 = v128.and(t41, y8);

    // Bottom linear transformation.
    const t46 = v128.xor(z15, z16);
    const t47 = v128.xor(z10, z11);
    const t48 = v128.xor(z5, z13);
    const t49 = v128.xor(z9, z10);
    const t50 = v128.xor(z2, z12);
    const t51 = v128.xor(z2, z5);
    const t52 = v128.xor(z7, z8);
    const t53 = v128.xor(z0, z3);
    const t54 = v128.xor(z6, z7);
    const t55 = v128.xor(z16, z17);
    const t56 = v128.xor(z12, t48);
    const t57 = v128.xor(t50, t53);
    const t58 = v128.xor(z4, t46);
    const t59 = v128.xor(z3, t54);
    const t60 = v128.xor(t46, t57);
    const t61 = v128.xor(z14, t57);
    const t62 = v128.xor(t52, t58);
    const t63 = v128.xor(t49, t58);
    const t64 = v128.xor(z4, t59);
    const t65 = v128.xor(t61, t62);
    const t66 = v128.xor(z1, t63);
    const s0 = v128.xor(t59, t63);
    const s6 = v128.xor(t56, t62);
    const s7 = v128.xor(t48, t60);
    const t67 = v128.xor(t64, t65);
    const s3 = v128.xor(t53, t66);
    const s4 = v128.xor(t51, t66);
    const s5 = v128.xor(t47, t65);
    const s1 = v128.xor(t64, s3);
    const s2 = v128.xor(t55, t67);

    const k = rk + (<usize>r << 7);
    if (r < nr) {
      // ShiftRows then MixColumns: out = 2·(a ⊕ rot1 a) ⊕ rot1 a ⊕ rot2(a ⊕ rot1 a),
      // with a = ShiftRows(state); 2·t is a shift of the planes with the x^8
      // reduction (x^4 + x^3 + x + 1) fed back from plane 7.
      const a0 = shiftRows(s7), a1 = shiftRows(s6), a2 = shiftRows(s5), a3 = shiftRows(s4);
      const a4 = shiftRows(s3), a5 = shiftRows(s2), a6 = shiftRows(s1), a7 = shiftRows(s0);
      const r0 = rot1(a0), r1 = rot1(a1), r2 = rot1(a2), r3 = rot1(a3);
      const r4 = rot1(a4), r5 = rot1(a5), r6 = rot1(a6), r7 = rot1(a7);
      const u0 = v128.xor(a0, r0), u1 = v128.xor(a1, r1), u2 = v128.xor(a2, r2), u3 = v128.xor(a3, r3);
      const u4 = v128.xor(a4, r4), u5 = v128.xor(a5, r5), u6 = v128.xor(a6, r6), u7 = v128.xor(a7, r7);
      q0 = v128.xor(v128.xor(u7, r0), v128.xor(rot2(u0), v128.load(k, 0)));
      q1 = v128.xor(v128.xor(v128.xor(u0, u7), r1), v128.xor(rot2(u1), v128.load(k, 16)));
      q2 = v128.xor(v128.xor(u1, r2), v128.xor(rot2(u2), v128.load(k, 32)));
      q3 = v128.xor(v128.xor(v128.xor(u2, u7), r3), v128.xor(rot2(u3), v128.load(k, 48)));
      q4 = v128.xor(v128.xor(v128.xor(u3, u7), r4), v128.xor(rot2(u4), v128.load(k, 64)));
      q5 = v128.xor(v128.xor(u4, r5), v128.xor(rot2(u5), v128.load(k, 80)));
      q6 = v128.xor(v128.xor(u5, r6), v128.xor(rot2(u6), v128.load(k, 96)));
      q7 = v128.xor(v128.xor(u6, r7), v128.xor(rot2(u7), v128.load(k, 112)));
    } else {
      // Final round: no MixColumns (FIPS 197 §5.1).
      q0 = v128.xor(shiftRows(s7), v128.load(k, 0));
      q1 = v128.xor(shiftRows(s6), v128.load(k, 16));
      q2 = v128.xor(shiftRows(s5), v128.load(k, 32));
      q3 = v128.xor(shiftRows(s4), v128.load(k, 48));
      q4 = v128.xor(shiftRows(s3), v128.load(k, 64));
      q5 = v128.xor(shiftRows(s2), v128.load(k, 80));
      q6 = v128.xor(shiftRows(s1), v128.load(k, 96));
      q7 = v128.xor(shiftRows(s0), v128.load(k, 112));
    }
  }

  v128.store(p, q0, 0);
  v128.store(p, q1, 16);
  v128.store(p, q2, 32);
  v128.store(p, q3, 48);
  v128.store(p, q4, 64);
  v128.store(p, q5, 80);
  v128.store(p, q6, 96);
  v128.store(p, q7, 112);
}

/** Encrypts the eight 16-byte blocks at `p` (128 bytes) in place. */
export function aesEncrypt8(rk: usize, nr: i32, p: usize): void {
  aesOrtho(p);
  aesRounds(rk, nr, p);
  aesOrtho(p);
}

/**
 * FIPS 197 §5.2 SubWord on a little-endian word (byte 0 in the low bits),
 * through the same constant-time circuit: one round with all-zero keys maps a
 * state whose four columns all equal `w` to four columns of SubBytes(w) minus
 * the 0x63 constant (ShiftRows leaves equal columns unchanged).
 */
function subWord(w: u32, buf: usize): u32 {
  memory.fill(buf, 0, AES_BATCH_BYTES);
  v128.store(buf, i32x4.splat(w));
  aesOrtho(buf);
  aesRounds(AES_ZERO_KEYS, 1, buf);
  aesOrtho(buf);
  const out = load<u32>(buf) ^ 0x63636363;
  memory.fill(buf, 0, AES_BATCH_BYTES);
  return out;
}

/**
 * Expands `keyLen` (16, 24 or 32) bytes of key at `key` into bitsliced round
 * keys at `rk` (`AES_RK_SIZE` bytes), using `buf` (128 bytes, left zeroed) as
 * work space. Returns the number of rounds (10, 12 or 14), or 0 for a bad length.
 */
export function aesExpandKey(rk: usize, key: usize, keyLen: i32, buf: usize): i32 {
  let nr: i32;
  if (keyLen == 16) nr = 10;
  else if (keyLen == 24) nr = 12;
  else if (keyLen == 32) nr = 14;
  else return 0;
  const nk = keyLen >> 2;
  const nw = (nr + 1) << 2;
  // Byte-form key schedule first (FIPS 197 §5.2), words little-endian, into rk
  // itself: 4·(nr+1) words fit in the first 240 bytes, and the bitsliced form
  // is written back to front below so that no word is overwritten before use.
  for (let i = 0; i < nk; i++) store<u32>(rk + (<usize>i << 2), load<u32>(key + (<usize>i << 2)));
  let rcon: u32 = 1;
  for (let i = nk; i < nw; i++) {
    let tmp = load<u32>(rk + (<usize>(i - 1) << 2));
    if (i % nk == 0) {
      tmp = subWord(rotr<u32>(tmp, 8), buf) ^ rcon;
      rcon = (rcon << 1) ^ (0x11b & (0 - (rcon >> 7)));
    } else if (nk > 6 && i % nk == 4) {
      tmp = subWord(tmp, buf);
    }
    store<u32>(rk + (<usize>i << 2), load<u32>(rk + (<usize>(i - nk) << 2)) ^ tmp);
  }
  // Bitslice: plane j of round key r has byte k = 0xff iff bit j of byte k is set.
  // Keys 1..nr carry the S-box constant 0x63 (see the header comment).
  const one = i8x16.splat(1);
  for (let r = nr; r >= 0; r--) {
    let v = v128.load(rk + (<usize>r << 4));
    v = byteTranspose(v);
    if (r > 0) v = v128.xor(v, i8x16.splat(0x63));
    const dst = rk + (<usize>r << 7);
    v128.store(dst, i8x16.neg(v128.and(v, one)), 0);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 1), one)), 16);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 2), one)), 32);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 3), one)), 48);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 4), one)), 64);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 5), one)), 80);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 6), one)), 96);
    v128.store(dst, i8x16.neg(v128.and(i8x16.shr_u(v, 7), one)), 112);
  }
  // Unused round-key slots (AES-128/192) stay zero.
  const used = <usize>(nr + 1) << 7;
  memory.fill(rk + used, 0, <usize>AES_RK_SIZE - used);
  return nr;
}

/**
 * Decrypts the eight 16-byte blocks at `p` (128 bytes) in place with the
 * round keys of `aesExpandKey` (FIPS 197 §5.3 InvCipher). Each round:
 * x = B(ShiftRows²(s)) ^ 0x05, then one zero-key forward round gives
 * ShiftRows(S'(x)), and B of that is InvSubBytes(InvShiftRows(s)) (ShiftRows³
 * is InvShiftRows; byte-wise maps commute with byte permutations). Then
 * AddRoundKey with the plain round key (the stored keys 1..Nr carry the
 * folded 0x63, removed here) and InvMixColumns = MixColumns ∘ P, with
 * P(a) = a ^ 4·(a ^ ROT2 a) ("The Design of Rijndael" §4.1.3).
 */
export function aesDecrypt8(rk: usize, nr: i32, p: usize): void {
  aesOrtho(p);
  const ones = i8x16.splat(-1);
  // The plain last round key: the stored one XOR 0x63 (bits 0, 1, 5, 6).
  let k = rk + (<usize>nr << 7);
  let q0 = v128.xor(v128.load(p, 0), v128.xor(v128.load(k, 0), ones));
  let q1 = v128.xor(v128.load(p, 16), v128.xor(v128.load(k, 16), ones));
  let q2 = v128.xor(v128.load(p, 32), v128.load(k, 32));
  let q3 = v128.xor(v128.load(p, 48), v128.load(k, 48));
  let q4 = v128.xor(v128.load(p, 64), v128.load(k, 64));
  let q5 = v128.xor(v128.load(p, 80), v128.xor(v128.load(k, 80), ones));
  let q6 = v128.xor(v128.load(p, 96), v128.xor(v128.load(k, 96), ones));
  let q7 = v128.xor(v128.load(p, 112), v128.load(k, 112));
  for (let r = nr - 1; r >= 0; r--) {
    // x = B(ShiftRows²(s)) ^ 0x05; B: bit i = bits i+2, i+5, i+7 (mod 8).
    const a0 = shiftRows2(q0), a1 = shiftRows2(q1), a2 = shiftRows2(q2), a3 = shiftRows2(q3);
    const a4 = shiftRows2(q4), a5 = shiftRows2(q5), a6 = shiftRows2(q6), a7 = shiftRows2(q7);
    v128.store(p, v128.not(v128.xor(v128.xor(a2, a5), a7)), 0);
    v128.store(p, v128.xor(v128.xor(a3, a6), a0), 16);
    v128.store(p, v128.not(v128.xor(v128.xor(a4, a7), a1)), 32);
    v128.store(p, v128.xor(v128.xor(a5, a0), a2), 48);
    v128.store(p, v128.xor(v128.xor(a6, a1), a3), 64);
    v128.store(p, v128.xor(v128.xor(a7, a2), a4), 80);
    v128.store(p, v128.xor(v128.xor(a0, a3), a5), 96);
    v128.store(p, v128.xor(v128.xor(a1, a4), a6), 112);
    aesRounds(AES_ZERO_KEYS, 1, p);
    const y0 = v128.load(p, 0), y1 = v128.load(p, 16), y2 = v128.load(p, 32), y3 = v128.load(p, 48);
    const y4 = v128.load(p, 64), y5 = v128.load(p, 80), y6 = v128.load(p, 96), y7 = v128.load(p, 112);
    // s = B(y) ^ round key r (plain: r > 0 carries the folded 0x63).
    k = rk + (<usize>r << 7);
    const c = r > 0 ? ones : i8x16.splat(0);
    let b0 = v128.xor(v128.xor(v128.xor(y2, y5), y7), v128.xor(v128.load(k, 0), c));
    let b1 = v128.xor(v128.xor(v128.xor(y3, y6), y0), v128.xor(v128.load(k, 16), c));
    let b2 = v128.xor(v128.xor(v128.xor(y4, y7), y1), v128.load(k, 32));
    let b3 = v128.xor(v128.xor(v128.xor(y5, y0), y2), v128.load(k, 48));
    let b4 = v128.xor(v128.xor(v128.xor(y6, y1), y3), v128.load(k, 64));
    let b5 = v128.xor(v128.xor(v128.xor(y7, y2), y4), v128.xor(v128.load(k, 80), c));
    let b6 = v128.xor(v128.xor(v128.xor(y0, y3), y5), v128.xor(v128.load(k, 96), c));
    let b7 = v128.xor(v128.xor(v128.xor(y1, y4), y6), v128.load(k, 112));
    if (r == 0) {
      q0 = b0; q1 = b1; q2 = b2; q3 = b3; q4 = b4; q5 = b5; q6 = b6; q7 = b7;
      break;
    }
    // P: t = a ^ ROT2 a; a ^= 4·t (4·t: planes t6, t6^t7, t0^t7, t1^t6, t2^t6^t7, t3^t7, t4, t5).
    const t0 = v128.xor(b0, rot2(b0)), t1 = v128.xor(b1, rot2(b1)), t2 = v128.xor(b2, rot2(b2)), t3 = v128.xor(b3, rot2(b3));
    const t4 = v128.xor(b4, rot2(b4)), t5 = v128.xor(b5, rot2(b5)), t6 = v128.xor(b6, rot2(b6)), t7 = v128.xor(b7, rot2(b7));
    const t67 = v128.xor(t6, t7);
    b0 = v128.xor(b0, t6);
    b1 = v128.xor(b1, t67);
    b2 = v128.xor(b2, v128.xor(t0, t7));
    b3 = v128.xor(b3, v128.xor(t1, t6));
    b4 = v128.xor(b4, v128.xor(t2, t67));
    b5 = v128.xor(b5, v128.xor(t3, t7));
    b6 = v128.xor(b6, t4);
    b7 = v128.xor(b7, t5);
    // MixColumns (as in aesRounds): out = 2·u ^ ROT1 a ^ ROT2 u, u = a ^ ROT1 a.
    const r0 = rot1(b0), r1 = rot1(b1), r2 = rot1(b2), r3 = rot1(b3);
    const r4 = rot1(b4), r5 = rot1(b5), r6 = rot1(b6), r7 = rot1(b7);
    const u0 = v128.xor(b0, r0), u1 = v128.xor(b1, r1), u2 = v128.xor(b2, r2), u3 = v128.xor(b3, r3);
    const u4 = v128.xor(b4, r4), u5 = v128.xor(b5, r5), u6 = v128.xor(b6, r6), u7 = v128.xor(b7, r7);
    q0 = v128.xor(v128.xor(u7, r0), rot2(u0));
    q1 = v128.xor(v128.xor(v128.xor(u0, u7), r1), rot2(u1));
    q2 = v128.xor(v128.xor(u1, r2), rot2(u2));
    q3 = v128.xor(v128.xor(v128.xor(u2, u7), r3), rot2(u3));
    q4 = v128.xor(v128.xor(v128.xor(u3, u7), r4), rot2(u4));
    q5 = v128.xor(v128.xor(u4, r5), rot2(u5));
    q6 = v128.xor(v128.xor(u5, r6), rot2(u6));
    q7 = v128.xor(v128.xor(u6, r7), rot2(u7));
  }
  v128.store(p, q0, 0);
  v128.store(p, q1, 16);
  v128.store(p, q2, 32);
  v128.store(p, q3, 48);
  v128.store(p, q4, 64);
  v128.store(p, q5, 80);
  v128.store(p, q6, 96);
  v128.store(p, q7, 112);
  aesOrtho(p);
}

/**
 * Copies lane `lane` (0..7) of the bitsliced round keys at `src` into `dst`
 * (both `AES_RK_SIZE` bytes, `nr` + 1 keys used): bit `lane` of every byte of
 * every plane. The lane number and the key count are public.
 */
export function aesMergeLaneKey(dst: usize, src: usize, lane: i32, nr: i32): void {
  const m = i8x16.splat(<i8>(<i32>1 << lane));
  const end = <usize>(nr + 1) << 7;
  for (let i: usize = 0; i < end; i += 16) {
    v128.store(dst + i, v128.bitselect(v128.load(src + i), v128.load(dst + i), m));
  }
}
