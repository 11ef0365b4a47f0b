// Poly1305 one-time authenticator (RFC 8439 §2.5) with five 26-bit limbs and
// 64-bit products (the "donna-32" representation: wasm has i64.mul but no
// 64x64->128 multiply).
//
// One MAC at a time: the state lives in module globals, which is enough for a
// single-threaded instance (one worker owns the instance, architecture §4.1).
// poly1305Finish wipes the key-derived state.

import { WORK_BLOCK } from './layout';

const MASK26: u64 = 0x3ffffff;

// r (clamped) and s = 5*r for limbs 1..4; h the accumulator; pad the "s" half of the key.
let r0: u64 = 0, r1: u64 = 0, r2: u64 = 0, r3: u64 = 0, r4: u64 = 0;
let h0: u64 = 0, h1: u64 = 0, h2: u64 = 0, h3: u64 = 0, h4: u64 = 0;
let pad0: u32 = 0, pad1: u32 = 0, pad2: u32 = 0, pad3: u32 = 0;

/** Start a MAC with the 32-byte one-time key r || s (RFC 8439 §2.5: r is clamped). */
export function poly1305Init(key: usize): void {
  r0 = <u64>(load<u32>(key, 0) & 0x3ffffff);
  r1 = <u64>((load<u32>(key, 3) >>> 2) & 0x3ffff03);
  r2 = <u64>((load<u32>(key, 6) >>> 4) & 0x3ffc0ff);
  r3 = <u64>((load<u32>(key, 9) >>> 6) & 0x3f03fff);
  r4 = <u64>((load<u32>(key, 12) >>> 8) & 0x00fffff);
  h0 = 0; h1 = 0; h2 = 0; h3 = 0; h4 = 0;
  pad0 = load<u32>(key, 16);
  pad1 = load<u32>(key, 20);
  pad2 = load<u32>(key, 24);
  pad3 = load<u32>(key, 28);
}

/**
 * Absorb `blocks` 16-byte blocks at `m`; `hibit` is 1<<24 for full blocks (the
 * appended 0x01 byte of RFC 8439 §2.5) and 0 for an already padded final block.
 */
export function poly1305Blocks(m: usize, blocks: usize, hibit: u64): void {
  const lr0 = r0, lr1 = r1, lr2 = r2, lr3 = r3, lr4 = r4;
  const s1 = lr1 * 5, s2 = lr2 * 5, s3 = lr3 * 5, s4 = lr4 * 5;
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;
  for (let i: usize = 0; i < blocks; i++) {
    a0 += <u64>(load<u32>(m, 0) & 0x3ffffff);
    a1 += <u64>((load<u32>(m, 3) >>> 2) & 0x3ffffff);
    a2 += <u64>((load<u32>(m, 6) >>> 4) & 0x3ffffff);
    a3 += <u64>((load<u32>(m, 9) >>> 6) & 0x3ffffff);
    a4 += <u64>(load<u32>(m, 12) >>> 8) | hibit;

    const d0 = a0 * lr0 + a1 * s4 + a2 * s3 + a3 * s2 + a4 * s1;
    let d1 = a0 * lr1 + a1 * lr0 + a2 * s4 + a3 * s3 + a4 * s2;
    let d2 = a0 * lr2 + a1 * lr1 + a2 * lr0 + a3 * s4 + a4 * s3;
    let d3 = a0 * lr3 + a1 * lr2 + a2 * lr1 + a3 * lr0 + a4 * s4;
    let d4 = a0 * lr4 + a1 * lr3 + a2 * lr2 + a3 * lr1 + a4 * lr0;

    // Partial carry propagation: limbs stay below 2^27, products below 2^64.
    a0 = d0 & MASK26; d1 += d0 >> 26;
    a1 = d1 & MASK26; d2 += d1 >> 26;
    a2 = d2 & MASK26; d3 += d2 >> 26;
    a3 = d3 & MASK26; d4 += d3 >> 26;
    a4 = d4 & MASK26;
    a0 += (d4 >> 26) * 5;
    a1 += a0 >> 26; a0 &= MASK26;
    m += 16;
  }
  h0 = a0; h1 = a1; h2 = a2; h3 = a3; h4 = a4;
}

/**
 * Absorb `len` bytes as whole blocks, zero-padding the last one to 16 bytes
 * (the pad16 of the AEAD construction, RFC 8439 §2.8).
 */
export function poly1305Padded(m: usize, len: usize): void {
  const full = len >> 4;
  if (full > 0) poly1305Blocks(m, full, 1 << 24);
  const rest = len & 15;
  if (rest > 0) {
    v128.store(WORK_BLOCK, i64x2.splat(0));
    memory.copy(WORK_BLOCK, m + (full << 4), rest);
    poly1305Blocks(WORK_BLOCK, 1, 1 << 24);
  }
}

/** Finish (RFC 8439 §2.5): reduce h mod 2^130-5, add s, write 16 bytes to `out`; wipe the state. */
export function poly1305Finish(out: usize): void {
  let a0 = h0, a1 = h1, a2 = h2, a3 = h3, a4 = h4;
  // Full carry.
  a2 += a1 >> 26; a1 &= MASK26;
  a3 += a2 >> 26; a2 &= MASK26;
  a4 += a3 >> 26; a3 &= MASK26;
  a0 += (a4 >> 26) * 5; a4 &= MASK26;
  a1 += a0 >> 26; a0 &= MASK26;
  a2 += a1 >> 26; a1 &= MASK26;

  // g = h + 5 - 2^130; take g when it does not borrow (h >= p).
  let g0 = a0 + 5;
  let g1 = a1 + (g0 >> 26); g0 &= MASK26;
  let g2 = a2 + (g1 >> 26); g1 &= MASK26;
  let g3 = a3 + (g2 >> 26); g2 &= MASK26;
  const g4 = a4 + (g3 >> 26) - (1 << 26); g3 &= MASK26;
  const useG = (g4 >> 63) - 1; // all ones when g4 did not go negative
  const useH = ~useG;
  a0 = (a0 & useH) | (g0 & useG);
  a1 = (a1 & useH) | (g1 & useG);
  a2 = (a2 & useH) | (g2 & useG);
  a3 = (a3 & useH) | (g3 & useG);
  a4 = (a4 & useH) | (g4 & useG & MASK26);

  // h mod 2^128 as four 32-bit words, plus s (mod 2^128).
  const w0 = (a0 | (a1 << 26)) & 0xffffffff;
  const w1 = ((a1 >> 6) | (a2 << 20)) & 0xffffffff;
  const w2 = ((a2 >> 12) | (a3 << 14)) & 0xffffffff;
  const w3 = ((a3 >> 18) | (a4 << 8)) & 0xffffffff;
  let f = w0 + <u64>pad0;
  store<u32>(out, <u32>f, 0);
  f = w1 + <u64>pad1 + (f >> 32);
  store<u32>(out, <u32>f, 4);
  f = w2 + <u64>pad2 + (f >> 32);
  store<u32>(out, <u32>f, 8);
  f = w3 + <u64>pad3 + (f >> 32);
  store<u32>(out, <u32>f, 12);

  r0 = 0; r1 = 0; r2 = 0; r3 = 0; r4 = 0;
  h0 = 0; h1 = 0; h2 = 0; h3 = 0; h4 = 0;
  pad0 = 0; pad1 = 0; pad2 = 0; pad3 = 0;
}

/**
 * One-shot Poly1305 of an arbitrary message (RFC 8439 §2.5.1): the last partial
 * block gets a 0x01 byte appended and is zero-padded, with no high bit.
 */
export function poly1305Mac(out: usize, key: usize, m: usize, len: usize): void {
  poly1305Init(key);
  const full = len >> 4;
  if (full > 0) poly1305Blocks(m, full, 1 << 24);
  const rest = len & 15;
  if (rest > 0) {
    v128.store(WORK_BLOCK, i64x2.splat(0));
    memory.copy(WORK_BLOCK, m + (full << 4), rest);
    store<u8>(WORK_BLOCK + rest, 1);
    poly1305Blocks(WORK_BLOCK, 1, 0);
  }
  poly1305Finish(out);
  v128.store(WORK_BLOCK, i64x2.splat(0));
}
