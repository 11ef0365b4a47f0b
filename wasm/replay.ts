// Inbound sequence numbers: ESN inference (RFC 4303 Appendix A2.2) and the
// anti-replay window without bit shifting (RFC 6479).
//
// The window is a ring of M 64-bit blocks, M = 2W/64 for a window of W packets
// (W a power of two, 64..MAX_REPLAY_WINDOW), so (M-1)*64 >= W bits always lie
// below the highest number seen. The bit of sequence number s is bit (s & 63)
// of block (s >> 6) & (M-1): finding it needs no base index and sliding only
// zeroes the blocks the top moves into.
//
// Order (RFC 4303 §3.4.3): replayCheck before the ICV is verified (cheap drop
// of duplicates), replayUpdate only after it verified. Nothing here changes
// state for a packet that has not been authenticated.
//
// All 64-bit arithmetic: without ESN the numbers are simply below 2^32.

import {
  Counter, SLOT_COUNTERS, SLOT_RING, SLOT_RING_MASK, SLOT_WINDOW,
} from './layout';

const TOP: usize = SLOT_COUNTERS + <usize>Counter.SEQ_IN_HIGHEST * 8;

/** Ring blocks for a window of `window` packets (power of two >= 64). */
// @ts-ignore: decorator
@inline export function replayRingBlocks(window: u32): u32 {
  return (window * 2) >> 6;
}

/**
 * Reset the window of `slot` as if `top` was the highest number received:
 * every number in (top - window, top] (and >= 1) is marked. An SA that starts
 * at initialSeq = top + 1 must never accept a number before its start (RFC
 * 4303 §3.4.3: only numbers not yet received within the window pass); left
 * unmarked, the W numbers below initialSeq would each be accepted once.
 * Numbers above `top` stay unmarked: the top's own block is not zeroed when
 * the top later moves within it (replayUpdate). 64-bit throughout, so with ESN
 * a window that straddles a 2^32 boundary is marked on both sides.
 */
export function replayInit(slot: usize, window: u32, top: u64): void {
  const blocks = replayRingBlocks(window);
  const mask = <u64>(blocks - 1);
  const ring = slot + SLOT_RING;
  store<u32>(slot + SLOT_WINDOW, window);
  store<u32>(slot + SLOT_RING_MASK, blocks - 1);
  store<u64>(slot + TOP, top);
  memory.fill(ring, 0, <usize>blocks * 8);
  // top < window: only 1..top exist (0 is never a valid number).
  const count = top < <u64>window ? top : <u64>window;
  let seq = top;
  for (let i: u64 = 0; i < count; i++, seq--) {
    const at = ring + <usize>((seq >> 6) & mask) * 8;
    store<u64>(at, load<u64>(at) | (<u64>1 << (seq & 63)));
  }
}

/**
 * The full sequence number of a received packet from its 32 transmitted bits
 * (RFC 4303 Appendix A2.2, Cases A and B, with T the highest authenticated
 * number and W the window). Without ESN it is `seql` itself. Returns 0, never
 * a valid number, where the inference would leave [1, 2^64).
 */
export function inferSeq(slot: usize, seql: u32, esn: bool): u64 {
  if (!esn) return <u64>seql;
  const top = load<u64>(slot + TOP);
  const w = load<u32>(slot + SLOT_WINDOW);
  const tl = <u32>top;
  let th = <u32>(top >> 32);
  const bl = tl - w + 1; // mod 2^32
  if (tl >= w - 1) {
    // Case A: the window lies within one 2^32 subspace.
    if (seql < bl) {
      if (th == 0xffffffff) return 0;
      th += 1;
    }
  } else {
    // Case B: the window straddles the subspace boundary.
    if (seql >= bl) {
      if (th == 0) return 0;
      th -= 1;
    }
  }
  return (<u64>th << 32) | <u64>seql;
}

/**
 * Pre-check (RFC 6479 §3 check): true when `seq` is right of the window or in
 * it and not yet marked. Reads only; call before verifying the ICV.
 */
export function replayCheck(slot: usize, seq: u64): bool {
  if (seq == 0) return false;
  const top = load<u64>(slot + TOP);
  if (seq > top) return true;
  if (top - seq >= <u64>load<u32>(slot + SLOT_WINDOW)) return false;
  const block = <usize>((seq >> 6) & <u64>load<u32>(slot + SLOT_RING_MASK));
  return (load<u64>(slot + SLOT_RING + block * 8) & (<u64>1 << (seq & 63))) == 0;
}

/**
 * Mark `seq` (RFC 6479 §3 update): when it is right of the window, advance the
 * top and zero the blocks it enters. Call only after the ICV verified.
 */
export function replayUpdate(slot: usize, seq: u64): void {
  const mask = <u64>load<u32>(slot + SLOT_RING_MASK);
  const ring = slot + SLOT_RING;
  const top = load<u64>(slot + TOP);
  if (seq > top) {
    const oldBlock = top >> 6;
    let steps = (seq >> 6) - oldBlock;
    if (steps > mask + 1) steps = mask + 1;
    for (let i: u64 = 1; i <= steps; i++) {
      store<u64>(ring + <usize>((oldBlock + i) & mask) * 8, 0);
    }
    store<u64>(slot + TOP, seq);
  }
  const at = ring + <usize>((seq >> 6) & mask) * 8;
  store<u64>(at, load<u64>(at) | (<u64>1 << (seq & 63)));
}

