// AES-CBC (NIST SP 800-38A §6.2) over the bitsliced AES of aes.ts, in place.
//
// Encryption is serial within a message (C_j = E_K(P_j ^ C_j-1)), so it runs
// multi-buffer: callers queue jobs (a message, its chaining input and its
// round keys) and `cbcRunJobs` advances up to eight jobs at once, one block
// of each per `aesEncrypt8`, lane i carrying the blocks of one job; a lane
// that finishes takes the next job, and its round keys are merged into the
// lane (`aesMergeLaneKey`), so jobs of different SAs share a call. Jobs of one
// call must have the same number of rounds (AES-128 and AES-256 run apart).
// Decryption is parallel within a message: `cbcDecrypt` runs eight blocks
// wide (`aesDecrypt8`).
//
// Constant time: the AES is bitsliced (no table, no secret-dependent branch
// or address, aes.ts); the scheduler branches and indexes only on job
// lengths, lane numbers and pointers, all public.
//
// Concurrency: the job table and the lane buffers are module state of this
// instance, used by its owner thread only; `cbcRunJobs` and `cbcDecrypt` wipe
// the lane buffers (they hold key and data material) before returning.

import { AES_BATCH_BYTES, AES_RK_SIZE, aesDecrypt8, aesEncrypt8, aesMergeLaneKey } from './aes';
import { MAX_BATCH } from './layout';

/** Most queued jobs: one per packet of a batch (IVs and data are queued and run apart). */
const MAX_JOBS: u32 = MAX_BATCH;
/** Job: round keys, first block, block count, chaining input (16 bytes), u32 each. */
const JOB_SIZE: usize = 16;
const JOBS: usize = memory.data(<i32>MAX_JOBS * <i32>JOB_SIZE, 16);
let jobCount: u32 = 0;

/** Eight blocks in flight; their round keys (lane i = job in lane i); chaining values. */
const LANE_BLOCKS: usize = memory.data(AES_BATCH_BYTES, 16);
const LANE_KEYS: usize = memory.data(AES_RK_SIZE, 16);
const LANE_CHAIN: usize = memory.data(AES_BATCH_BYTES, 16);
/** Per lane: round keys merged in (0 = none), next block, blocks left. */
const LANE_RK: usize = memory.data(8 * 4, 16);
const LANE_DATA: usize = memory.data(8 * 4, 16);
const LANE_LEFT: usize = memory.data(8 * 4, 16);

/**
 * Queues the CBC encryption of `blocks` 16-byte blocks at `data` in place,
 * chained from the 16 bytes at `chain` (the IV; read when the job starts, so
 * it may be produced by an earlier `cbcRunJobs`), under the bitsliced round
 * keys at `rk`. Returns false when the table is full (the caller runs it).
 */
export function cbcQueue(rk: usize, data: usize, blocks: u32, chain: usize): bool {
  if (jobCount >= MAX_JOBS) return false;
  const j = JOBS + <usize>jobCount * JOB_SIZE;
  store<u32>(j, <u32>rk);
  store<u32>(j, <u32>data, 4);
  store<u32>(j, blocks, 8);
  store<u32>(j, <u32>chain, 12);
  jobCount++;
  return true;
}

/** Runs every queued job with `nr` AES rounds (see the header), then empties the queue. */
export function cbcRunJobs(nr: i32): void {
  memory.fill(LANE_RK, 0, 8 * 4);
  memory.fill(LANE_LEFT, 0, 8 * 4);
  let next: u32 = 0;
  for (;;) {
    let active = 0;
    for (let lane: usize = 0; lane < 8; lane++) {
      let left = load<u32>(LANE_LEFT + (lane << 2));
      while (left == 0 && next < jobCount) {
        const j = JOBS + <usize>next * JOB_SIZE;
        next++;
        left = load<u32>(j, 8);
        if (left == 0) continue;
        const rk = <usize>load<u32>(j);
        if (<usize>load<u32>(LANE_RK + (lane << 2)) != rk) {
          aesMergeLaneKey(LANE_KEYS, rk, <i32>lane, nr);
          store<u32>(LANE_RK + (lane << 2), <u32>rk);
        }
        store<u32>(LANE_DATA + (lane << 2), load<u32>(j, 4));
        v128.store(LANE_CHAIN + (lane << 4), v128.load(<usize>load<u32>(j, 12)));
      }
      store<u32>(LANE_LEFT + (lane << 2), left);
      const at = LANE_BLOCKS + (lane << 4);
      if (left == 0) {
        v128.store(at, i64x2.splat(0));
        continue;
      }
      active++;
      const p = <usize>load<u32>(LANE_DATA + (lane << 2));
      v128.store(at, v128.xor(v128.load(p), v128.load(LANE_CHAIN + (lane << 4))));
    }
    if (active == 0) break;
    aesEncrypt8(LANE_KEYS, nr, LANE_BLOCKS);
    for (let lane: usize = 0; lane < 8; lane++) {
      const left = load<u32>(LANE_LEFT + (lane << 2));
      if (left == 0) continue;
      const c = v128.load(LANE_BLOCKS + (lane << 4));
      const p = <usize>load<u32>(LANE_DATA + (lane << 2));
      v128.store(p, c);
      v128.store(LANE_CHAIN + (lane << 4), c);
      store<u32>(LANE_DATA + (lane << 2), <u32>(p + 16));
      store<u32>(LANE_LEFT + (lane << 2), left - 1);
    }
  }
  jobCount = 0;
  memory.fill(LANE_KEYS, 0, <usize>AES_RK_SIZE);
  memory.fill(LANE_BLOCKS, 0, <usize>AES_BATCH_BYTES);
  memory.fill(LANE_CHAIN, 0, <usize>AES_BATCH_BYTES);
}

/**
 * CBC decryption (SP 800-38A §6.2: P_j = D_K(C_j) ^ C_j-1) of the `len` bytes
 * (a multiple of 16) at `data` in place, with the IV at `iv` and the round
 * keys at `rk` (`nr` rounds), eight blocks per `aesDecrypt8`.
 */
export function cbcDecrypt(rk: usize, nr: i32, iv: usize, data: usize, len: u32): void {
  let prev = v128.load(iv);
  for (let off: u32 = 0; off < len; off += <u32>AES_BATCH_BYTES) {
    const n = min<u32>(<u32>AES_BATCH_BYTES, len - off);
    const p = data + <usize>off;
    memory.copy(LANE_BLOCKS, p, <usize>n);
    aesDecrypt8(rk, nr, LANE_BLOCKS);
    const last = v128.load(p + <usize>n - 16);
    // Back to front: block j - 1 is still ciphertext when block j is written.
    for (let j = <usize>(n >> 4) - 1; j > 0; j--) {
      const at = p + (j << 4);
      v128.store(at, v128.xor(v128.load(LANE_BLOCKS + (j << 4)), v128.load(at - 16)));
    }
    v128.store(p, v128.xor(v128.load(LANE_BLOCKS), prev));
    prev = last;
  }
  memory.fill(LANE_BLOCKS, 0, <usize>AES_BATCH_BYTES);
}
