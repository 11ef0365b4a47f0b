// SHA-256 and SHA-512 compression functions (FIPS 180-4 §6.2.2, §6.4.2), the
// building blocks of HMAC-SHA2 (hmac.ts). SHA-384 is SHA-512 with its own
// initial value (FIPS 180-4 §5.3.4) and a shorter output, so it needs no code
// of its own here.
//
// Constant time by construction: the rounds are additions, rotations, XORs
// and ANDs on the state; the only memory indexed is the message schedule and
// the round constants, both by the round number, never by data; the only
// branches are on block counts (message lengths, which ESP sends in clear).
//
// State: eight words in host (little-endian) order at `state`; input blocks
// are read big-endian (FIPS 180-4 §3.1). Concurrency: the schedule buffers
// are module state of this instance, used by its owner thread only and
// cleared by the caller's wipe (`sha2Wipe`) after each message.

/** SHA-256 block bytes; the state is 8 u32 (32 bytes). */
export const SHA256_BLOCK: i32 = 64;
/** SHA-512 block bytes; the state is 8 u64 (64 bytes). */
export const SHA512_BLOCK: i32 = 128;

/** FIPS 180-4 §4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
const K256: usize = memory.data<u32>([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** FIPS 180-4 §4.2.3: first 64 bits of the fractional parts of the cube roots of the first 80 primes. */
const K512: usize = memory.data<u64>([
  0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc, 0x3956c25bf348b538,
  0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118, 0xd807aa98a3030242, 0x12835b0145706fbe,
  0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2, 0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235,
  0xc19bf174cf692694, 0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
  0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5, 0x983e5152ee66dfab,
  0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4, 0xc6e00bf33da88fc2, 0xd5a79147930aa725,
  0x06ca6351e003826f, 0x142929670a0e6e70, 0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed,
  0x53380d139d95b3df, 0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
  0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30, 0xd192e819d6ef5218,
  0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8, 0x19a4c116b8d2d0c8, 0x1e376c085141ab53,
  0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8, 0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373,
  0x682e6ff3d6b2b8a3, 0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
  0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b, 0xca273eceea26619c,
  0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178, 0x06f067aa72176fba, 0x0a637dc5a2c898a6,
  0x113f9804bef90dae, 0x1b710b35131c471b, 0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc,
  0x431d67c49c100d4c, 0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
]);

/** Initial values: SHA-256 (§5.3.3), SHA-384 (§5.3.4), SHA-512 (§5.3.5). */
const IV256: usize = memory.data<u32>([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const IV384: usize = memory.data<u64>([
  0xcbbb9d5dc1059ed8, 0x629a292a367cd507, 0x9159015a3070dd17, 0x152fecd8f70e5939,
  0x67332667ffc00b31, 0x8eb44a8768581511, 0xdb0c2e0d64f98fa7, 0x47b5481dbefa4fa4,
]);
const IV512: usize = memory.data<u64>([
  0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
  0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
]);

/** Message schedules W_0..W_63 (u32) and W_0..W_79 (u64). */
const W256: usize = memory.data(64 * 4, 16);
const W512: usize = memory.data(80 * 8, 16);

/** Address of the 64 SHA-256 round constants (u32), for the four-lane hash (hmac256x4.ts). */
// @ts-ignore: decorator
@inline export function sha256RoundConstants(): usize {
  return K256;
}

/** Writes the initial state of SHA-256 (bits 256), SHA-384 (384) or SHA-512 (512) to `state`. */
export function sha2InitState(state: usize, bits: i32): void {
  if (bits == 256) memory.copy(state, IV256, 32);
  else memory.copy(state, bits == 384 ? IV384 : IV512, 64);
}

/** FIPS 180-4 §6.2.2: runs `blocks` 64-byte blocks at `data` through the SHA-256 state at `state`. */
export function sha256Blocks(state: usize, data: usize, blocks: i32): void {
  let a = load<u32>(state, 0), b = load<u32>(state, 4), c = load<u32>(state, 8), d = load<u32>(state, 12);
  let e = load<u32>(state, 16), f = load<u32>(state, 20), g = load<u32>(state, 24), h = load<u32>(state, 28);
  for (let n = 0; n < blocks; n++) {
    const m = data + (<usize>n << 6);
    for (let t: usize = 0; t < 16; t++) store<u32>(W256 + (t << 2), bswap<u32>(load<u32>(m + (t << 2))));
    for (let t: usize = 16; t < 64; t++) {
      const w15 = load<u32>(W256 + ((t - 15) << 2));
      const w2 = load<u32>(W256 + ((t - 2) << 2));
      const s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >>> 3);
      const s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >>> 10);
      store<u32>(W256 + (t << 2), s1 + load<u32>(W256 + ((t - 7) << 2)) + s0 + load<u32>(W256 + ((t - 16) << 2)));
    }
    const a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g, h0 = h;
    for (let t: usize = 0; t < 64; t++) {
      const t1 = h + (rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25)) + ((e & f) ^ (~e & g))
        + load<u32>(K256 + (t << 2)) + load<u32>(W256 + (t << 2));
      const t2 = (rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    a += a0; b += b0; c += c0; d += d0; e += e0; f += f0; g += g0; h += h0;
  }
  store<u32>(state, a, 0); store<u32>(state, b, 4); store<u32>(state, c, 8); store<u32>(state, d, 12);
  store<u32>(state, e, 16); store<u32>(state, f, 20); store<u32>(state, g, 24); store<u32>(state, h, 28);
}

/** FIPS 180-4 §6.4.2: runs `blocks` 128-byte blocks at `data` through the SHA-512 (or -384) state at `state`. */
export function sha512Blocks(state: usize, data: usize, blocks: i32): void {
  let a = load<u64>(state, 0), b = load<u64>(state, 8), c = load<u64>(state, 16), d = load<u64>(state, 24);
  let e = load<u64>(state, 32), f = load<u64>(state, 40), g = load<u64>(state, 48), h = load<u64>(state, 56);
  for (let n = 0; n < blocks; n++) {
    const m = data + (<usize>n << 7);
    for (let t: usize = 0; t < 16; t++) store<u64>(W512 + (t << 3), bswap<u64>(load<u64>(m + (t << 3))));
    for (let t: usize = 16; t < 80; t++) {
      const w15 = load<u64>(W512 + ((t - 15) << 3));
      const w2 = load<u64>(W512 + ((t - 2) << 3));
      const s0 = rotr<u64>(w15, 1) ^ rotr<u64>(w15, 8) ^ (w15 >>> 7);
      const s1 = rotr<u64>(w2, 19) ^ rotr<u64>(w2, 61) ^ (w2 >>> 6);
      store<u64>(W512 + (t << 3), s1 + load<u64>(W512 + ((t - 7) << 3)) + s0 + load<u64>(W512 + ((t - 16) << 3)));
    }
    const a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g, h0 = h;
    for (let t: usize = 0; t < 80; t++) {
      const t1 = h + (rotr<u64>(e, 14) ^ rotr<u64>(e, 18) ^ rotr<u64>(e, 41)) + ((e & f) ^ (~e & g))
        + load<u64>(K512 + (t << 3)) + load<u64>(W512 + (t << 3));
      const t2 = (rotr<u64>(a, 28) ^ rotr<u64>(a, 34) ^ rotr<u64>(a, 39)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    a += a0; b += b0; c += c0; d += d0; e += e0; f += f0; g += g0; h += h0;
  }
  store<u64>(state, a, 0); store<u64>(state, b, 8); store<u64>(state, c, 16); store<u64>(state, d, 24);
  store<u64>(state, e, 32); store<u64>(state, f, 40); store<u64>(state, g, 48); store<u64>(state, h, 56);
}

/**
 * Writes the last block(s) of a message to `to` (FIPS 180-4 §5.1): the `rem`
 * bytes at `tail`, the `extraLen` bytes at `extra`, 0x80, zeros and the bit
 * length of a `totalBytes` message in the last `lenBytes` (8 for SHA-256, 16
 * for SHA-384/512) of a `blockBytes` block. Returns how many blocks (1 or 2)
 * it wrote; `to` must have room for two.
 */
export function sha2Pad(
  to: usize, tail: usize, rem: u32, extra: usize, extraLen: u32, totalBytes: u64, blockBytes: u32, lenBytes: u32,
): u32 {
  memory.copy(to, tail, <usize>rem);
  memory.copy(to + <usize>rem, extra, <usize>extraLen);
  const used = rem + extraLen;
  store<u8>(to + <usize>used, 0x80);
  const blocks: u32 = used + 1 + lenBytes <= blockBytes ? 1 : 2;
  const end = to + <usize>(blocks * blockBytes);
  memory.fill(to + <usize>used + 1, 0, end - 8 - (to + <usize>used + 1));
  store<u64>(end - 8, bswap<u64>(totalBytes << 3));
  return blocks;
}

/** Clears the message schedules (they hold words derived from keys and data). */
export function sha2Wipe(): void {
  memory.fill(W256, 0, 64 * 4);
  memory.fill(W512, 0, 80 * 8);
}
