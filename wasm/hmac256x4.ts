// HMAC-SHA-256 of up to four messages at once (RFC 2104, FIPS 180-4 §6.2.2):
// lane i of every v128 carries the hash of a different message, so one
// round of SHA-256 advances four messages. The ICVs of the AES-CBC +
// HMAC-SHA-256 packets of a batch, outbound and inbound, are computed this
// way (cbchmac.ts, esp.ts); the scalar hmac.ts handles single messages and
// SHA-384/512.
//
// Callers queue jobs (context from hmacInit, message, ESN extra bytes, where
// the truncated MAC goes); `hmac256x4Run` gives each free lane the next job:
// its inner state, the message's whole blocks, one or two blocks of tail and
// padding, then the outer state and the outer block. A lane with nothing to
// do hashes a zero block whose result is thrown away.
//
// Constant time as SHA-256 is (sha2.ts): additions, rotations, XORs and
// bit selections on the state; memory indexed by round numbers and lane
// numbers only; branches on lengths and lane activity only (public).
// Concurrency: the job table and the lane buffers are module state of this
// instance (its owner thread); `hmac256x4Run` wipes the lane buffers.

import { MAX_BATCH } from './layout';
import { sha256RoundConstants, sha2Pad } from './sha2';

const BLOCK: usize = 64;
/** Offset of the outer state in an HMAC context (hmac.ts). */
const OUTER: usize = 64;

/** Job: context, message, length, extra bytes (ptr, len), output, output length; u32 each. */
const JOB_SIZE: usize = 32;
const JOBS: usize = memory.data(<i32>MAX_BATCH * <i32>JOB_SIZE, 16);
let jobCount: u32 = 0;

/** State of the four lanes, transposed: word j of lane i at STATE + 16j + 4i. */
const STATE: usize = memory.data(8 * 16, 16);
/** Message schedule, W_t of lane i at W + 16t + 4i. */
const W: usize = memory.data(64 * 16, 16);
/** Per lane: tail and padding (two blocks), then the outer block. */
const TAIL: usize = memory.data(4 * 3 * <i32>BLOCK, 16);
const ZERO: usize = memory.data(<i32>BLOCK, 16);
/** Byte order of every 32-bit word reversed (FIPS 180-4 words are big-endian). */
const BSWAP32: usize = memory.data<u8>([3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12]);

/** Per lane: job index + 1 (0 = idle), phase, next block, blocks left in the phase. */
const LANE_JOB: usize = memory.data(16, 16);
const LANE_PHASE: usize = memory.data(16, 16);
const LANE_PTR: usize = memory.data(16, 16);
const LANE_LEFT: usize = memory.data(16, 16);
const PHASE_MESSAGE: u32 = 0;
const PHASE_TAIL: u32 = 1;
const PHASE_OUTER: u32 = 2;

/**
 * Queues HMAC-SHA-256 (context `ctx`, hmac.ts) of the `len` bytes at `msg`
 * followed by the `extraLen` (0..16) bytes at `extra`; the first `outLen`
 * bytes of the MAC go to `out` when `hmac256x4Run` runs. Returns false when
 * the table is full.
 */
export function hmac256x4Queue(ctx: usize, msg: usize, len: u32, extra: usize, extraLen: u32, out: usize, outLen: u32): bool {
  if (jobCount >= MAX_BATCH) return false;
  const j = JOBS + <usize>jobCount * JOB_SIZE;
  store<u32>(j, <u32>ctx);
  store<u32>(j, <u32>msg, 4);
  store<u32>(j, len, 8);
  store<u32>(j, <u32>extra, 12);
  store<u32>(j, extraLen, 16);
  store<u32>(j, <u32>out, 20);
  store<u32>(j, outLen, 24);
  jobCount++;
  return true;
}

// @ts-ignore: decorator
@inline function rotr4(x: v128, n: i32): v128 {
  return v128.or(i32x4.shr_u(x, n), i32x4.shl(x, 32 - n));
}

/** Loads word block `q` (words 4q..4q+3) of the four lanes' blocks, transposed into W. */
// @ts-ignore: decorator
@inline function loadWords(q: usize, p0: usize, p1: usize, p2: usize, p3: usize, bswap: v128): void {
  const a = i8x16.swizzle(v128.load(p0 + (q << 4)), bswap);
  const b = i8x16.swizzle(v128.load(p1 + (q << 4)), bswap);
  const c = i8x16.swizzle(v128.load(p2 + (q << 4)), bswap);
  const d = i8x16.swizzle(v128.load(p3 + (q << 4)), bswap);
  const ab01 = v128.shuffle<i32>(a, b, 0, 4, 1, 5);
  const ab23 = v128.shuffle<i32>(a, b, 2, 6, 3, 7);
  const cd01 = v128.shuffle<i32>(c, d, 0, 4, 1, 5);
  const cd23 = v128.shuffle<i32>(c, d, 2, 6, 3, 7);
  const w = W + (q << 6);
  v128.store(w, v128.shuffle<i64>(ab01, cd01, 0, 2), 0);
  v128.store(w, v128.shuffle<i64>(ab01, cd01, 1, 3), 16);
  v128.store(w, v128.shuffle<i64>(ab23, cd23, 0, 2), 32);
  v128.store(w, v128.shuffle<i64>(ab23, cd23, 1, 3), 48);
}

/** One SHA-256 block per lane (FIPS 180-4 §6.2.2) on STATE; lane i's block at p_i. */
function compress4(p0: usize, p1: usize, p2: usize, p3: usize): void {
  const bswap = v128.load(BSWAP32);
  loadWords(0, p0, p1, p2, p3, bswap);
  loadWords(1, p0, p1, p2, p3, bswap);
  loadWords(2, p0, p1, p2, p3, bswap);
  loadWords(3, p0, p1, p2, p3, bswap);
  for (let t: usize = 16; t < 64; t++) {
    const w15 = v128.load(W + ((t - 15) << 4));
    const w2 = v128.load(W + ((t - 2) << 4));
    const s0 = v128.xor(v128.xor(rotr4(w15, 7), rotr4(w15, 18)), i32x4.shr_u(w15, 3));
    const s1 = v128.xor(v128.xor(rotr4(w2, 17), rotr4(w2, 19)), i32x4.shr_u(w2, 10));
    v128.store(W + (t << 4), i32x4.add(i32x4.add(s1, v128.load(W + ((t - 7) << 4))), i32x4.add(s0, v128.load(W + ((t - 16) << 4)))));
  }
  let a = v128.load(STATE, 0), b = v128.load(STATE, 16), c = v128.load(STATE, 32), d = v128.load(STATE, 48);
  let e = v128.load(STATE, 64), f = v128.load(STATE, 80), g = v128.load(STATE, 96), h = v128.load(STATE, 112);
  const k = sha256RoundConstants();
  for (let t: usize = 0; t < 64; t++) {
    const s1 = v128.xor(v128.xor(rotr4(e, 6), rotr4(e, 11)), rotr4(e, 25));
    const t1 = i32x4.add(i32x4.add(h, s1), i32x4.add(v128.bitselect(f, g, e),
      i32x4.add(i32x4.splat(load<u32>(k + (t << 2))), v128.load(W + (t << 4)))));
    const s0 = v128.xor(v128.xor(rotr4(a, 2), rotr4(a, 13)), rotr4(a, 22));
    const t2 = i32x4.add(s0, v128.bitselect(c, a, v128.xor(a, b)));
    h = g; g = f; f = e; e = i32x4.add(d, t1); d = c; c = b; b = a; a = i32x4.add(t1, t2);
  }
  v128.store(STATE, i32x4.add(a, v128.load(STATE, 0)), 0);
  v128.store(STATE, i32x4.add(b, v128.load(STATE, 16)), 16);
  v128.store(STATE, i32x4.add(c, v128.load(STATE, 32)), 32);
  v128.store(STATE, i32x4.add(d, v128.load(STATE, 48)), 48);
  v128.store(STATE, i32x4.add(e, v128.load(STATE, 64)), 64);
  v128.store(STATE, i32x4.add(f, v128.load(STATE, 80)), 80);
  v128.store(STATE, i32x4.add(g, v128.load(STATE, 96)), 96);
  v128.store(STATE, i32x4.add(h, v128.load(STATE, 112)), 112);
}

/** Sets lane `lane`'s state to the eight words (host order) at `from`. */
function setLaneState(lane: usize, from: usize): void {
  for (let j: usize = 0; j < 8; j++) store<u32>(STATE + (j << 4) + (lane << 2), load<u32>(from + (j << 2)));
}

/** Writes lane `lane`'s digest big-endian to `to` (32 bytes). */
function laneDigest(lane: usize, to: usize): void {
  for (let j: usize = 0; j < 8; j++) store<u32>(to + (j << 2), bswap<u32>(load<u32>(STATE + (j << 4) + (lane << 2))));
}

/** Starts job `index` in lane `lane`: inner state, then its message blocks (or its tail if none). */
function startJob(lane: usize, index: u32): void {
  const j = JOBS + <usize>index * JOB_SIZE;
  const len = load<u32>(j, 8);
  const full = len / <u32>BLOCK;
  const tailAt = TAIL + lane * 3 * BLOCK;
  const tailBlocks = sha2Pad(
    tailAt, <usize>load<u32>(j, 4) + <usize>(full * <u32>BLOCK), len - full * <u32>BLOCK,
    <usize>load<u32>(j, 12), load<u32>(j, 16), <u64>BLOCK + <u64>len + <u64>load<u32>(j, 16), <u32>BLOCK, 8,
  );
  setLaneState(lane, <usize>load<u32>(j));
  store<u32>(LANE_JOB + (lane << 2), index + 1);
  if (full > 0) {
    store<u32>(LANE_PHASE + (lane << 2), PHASE_MESSAGE);
    store<u32>(LANE_PTR + (lane << 2), load<u32>(j, 4));
    store<u32>(LANE_LEFT + (lane << 2), full);
  } else {
    store<u32>(LANE_PHASE + (lane << 2), PHASE_TAIL);
    store<u32>(LANE_PTR + (lane << 2), <u32>tailAt);
    store<u32>(LANE_LEFT + (lane << 2), tailBlocks);
  }
  // The tail's block count rides in the phase word's high half until the message is done.
  store<u32>(LANE_PHASE + (lane << 2), load<u32>(LANE_PHASE + (lane << 2)) | (tailBlocks << 16));
}

/** Moves lane `lane` past a finished phase; returns false when its job is done (MAC written). */
function nextPhase(lane: usize): bool {
  const word = load<u32>(LANE_PHASE + (lane << 2));
  const phase = word & 0xffff;
  const tailAt = TAIL + lane * 3 * BLOCK;
  const j = JOBS + <usize>(load<u32>(LANE_JOB + (lane << 2)) - 1) * JOB_SIZE;
  if (phase == PHASE_MESSAGE) {
    store<u32>(LANE_PHASE + (lane << 2), (word & 0xffff0000) | PHASE_TAIL);
    store<u32>(LANE_PTR + (lane << 2), <u32>tailAt);
    store<u32>(LANE_LEFT + (lane << 2), word >> 16);
    return true;
  }
  if (phase == PHASE_TAIL) {
    // Outer hash (RFC 2104 §2): H(K ^ opad || inner digest), one block.
    const outerAt = tailAt + 2 * BLOCK;
    laneDigest(lane, outerAt);
    sha2Pad(outerAt, outerAt, 32, 0, 0, BLOCK + 32, <u32>BLOCK, 8);
    setLaneState(lane, <usize>load<u32>(j) + OUTER);
    store<u32>(LANE_PHASE + (lane << 2), PHASE_OUTER);
    store<u32>(LANE_PTR + (lane << 2), <u32>outerAt);
    store<u32>(LANE_LEFT + (lane << 2), 1);
    return true;
  }
  laneDigest(lane, tailAt);
  memory.copy(<usize>load<u32>(j, 20), tailAt, <usize>load<u32>(j, 24));
  store<u32>(LANE_JOB + (lane << 2), 0);
  return false;
}

/** Runs every queued job (see the header), then empties the queue and wipes the lane buffers. */
export function hmac256x4Run(): void {
  memory.fill(LANE_JOB, 0, 16);
  let next: u32 = 0;
  for (;;) {
    let active = 0;
    for (let lane: usize = 0; lane < 4; lane++) {
      if (load<u32>(LANE_JOB + (lane << 2)) == 0 && next < jobCount) startJob(lane, next++);
      if (load<u32>(LANE_JOB + (lane << 2)) != 0) active++;
    }
    if (active == 0) break;
    const p0 = load<u32>(LANE_JOB, 0) != 0 ? <usize>load<u32>(LANE_PTR, 0) : ZERO;
    const p1 = load<u32>(LANE_JOB, 4) != 0 ? <usize>load<u32>(LANE_PTR, 4) : ZERO;
    const p2 = load<u32>(LANE_JOB, 8) != 0 ? <usize>load<u32>(LANE_PTR, 8) : ZERO;
    const p3 = load<u32>(LANE_JOB, 12) != 0 ? <usize>load<u32>(LANE_PTR, 12) : ZERO;
    compress4(p0, p1, p2, p3);
    for (let lane: usize = 0; lane < 4; lane++) {
      if (load<u32>(LANE_JOB + (lane << 2)) == 0) continue;
      const left = load<u32>(LANE_LEFT + (lane << 2)) - 1;
      store<u32>(LANE_LEFT + (lane << 2), left);
      store<u32>(LANE_PTR + (lane << 2), load<u32>(LANE_PTR + (lane << 2)) + <u32>BLOCK);
      if (left == 0) nextPhase(lane);
    }
  }
  jobCount = 0;
  memory.fill(STATE, 0, 8 * 16);
  memory.fill(W, 0, 64 * 16);
  memory.fill(TAIL, 0, 4 * 3 * BLOCK);
}
