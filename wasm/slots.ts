// SA slots: install (copy key material out of the scratch region), delete
// (wipe the whole slot, key context included), and the host's read access to
// counters and the rekey flag. Layout of a slot: layout.ts.
//
// Concurrency: the worker that owns this instance is the only caller, so the
// slot's sequence counter and replay window have exactly one writer (architecture §4.1).

import {
  COUNTER_COUNT, Counter, Direction, FLAG_ESN, FLAG_REKEY_NEEDED, KEY_CTX_SIZE, MAX_REPLAY_WINDOW,
  MIN_REPLAY_WINDOW, ResultCode, SCRATCH_PTR, SLOT_ALGORITHM, SLOT_COUNT, SLOT_COUNTERS, SLOT_DIRECTION,
  SLOT_FLAGS, SLOT_ICV_LEN, SLOT_KEY_CTX, SLOT_SALT, SLOT_SIZE, SLOT_SPI, SLOT_STATE, slotAddr,
} from './layout';
import { aeadIcvAllowed, aeadInit, aeadKeyBytes } from './aead';
import { CBCHMAC_CTX_SIZE, cbcHmacIcvBytes, cbcHmacInit, cbcHmacMaterialBytes, isCbcHmac } from './cbchmac';
import { replayInit } from './replay';

// Compile-time check: the CBC+HMAC context fits in a slot's key context.
if (<usize>CBCHMAC_CTX_SIZE > KEY_CTX_SIZE) ERROR('CBCHMAC_CTX_SIZE exceeds KEY_CTX_SIZE in layout.ts');

const STATE_FREE: u32 = 0;
const STATE_INSTALLED: u32 = 1;
const SEQ32_MAX: u64 = 0xffffffff;
/**
 * Bytes of the scratch region that carry key material (longest: AES-256 key
 * || HMAC-SHA-512 key || IV key = 112; architecture §4.5).
 */
const SCRATCH_KEY_BYTES: usize = 128;

/** Bytes of key material slotInstall expects for `algorithm`, 0 if unknown. */
function keyMaterialBytes(algorithm: u32): u32 {
  if (isCbcHmac(algorithm)) return cbcHmacMaterialBytes(algorithm);
  const keyBytes = aeadKeyBytes(algorithm);
  return keyBytes == 0 ? 0 : <u32>keyBytes + 4;
}

/** Address of counter `id` of the slot at `slot`. */
// @ts-ignore: decorator
@inline export function counterAddr(slot: usize, id: Counter): usize {
  return slot + SLOT_COUNTERS + <usize>id * 8;
}

// @ts-ignore: decorator
@inline export function bumpCounter(slot: usize, id: Counter, by: u64): void {
  const at = counterAddr(slot, id);
  store<u64>(at, load<u64>(at) + by);
}

/** Address of an installed slot, or 0 when `i` is out of range or free. */
export function installedSlot(i: u32): usize {
  if (i >= SLOT_COUNT) return 0;
  const slot = slotAddr(i);
  return load<u32>(slot + SLOT_STATE) == STATE_INSTALLED ? slot : 0;
}

/**
 * Install an SA into slot `i`. Key material (AEADs: key || 4-byte salt, RFC
 * 4106 §4 / RFC 7634 §2; AES-CBC + HMAC: AES key || HMAC key || 16-byte IV
 * key, cbchmac.ts) is read from the first `keyMaterialLen` bytes of the
 * scratch region; the first 128 bytes of scratch are wiped whatever the
 * outcome; the host wipes its own copy.
 *
 * direction: Direction; flags: FLAG_ESN or 0; icvLen: 8/12/16 (GCM), 16
 * (ChaCha), 16/24/32 for HMAC-SHA-256/384/512 (RFC 4868 §2.3, no other).
 * window: inbound replay window, a power of two in [64, MAX_REPLAY_WINDOW]
 *   (ignored for outbound).
 * initialSeq: outbound, the first number sent (>= 1); inbound, the first number
 *   expected (the window starts as if initialSeq - 1 was the highest seen).
 * softLimit / hardLimit: sequence numbers at which "rekey needed" is raised and
 *   past which nothing is sent (RFC 4303 §3.3.3); hardLimit <= 2^32-1 without ESN.
 * Returns OK, NO_SLOT, SLOT_IN_USE or INVALID_ARGUMENT (nothing changed then,
 * except that the scratch key material is wiped in every case).
 */
export function slotInstall(
  i: u32, algorithm: u32, direction: u32, spi: u32, flags: u32, icvLen: u32, window: u32,
  initialSeq: u64, softLimit: u64, hardLimit: u64, keyMaterialLen: u32,
): u32 {
  const result = checkInstall(i, algorithm, direction, spi, flags, icvLen, window, initialSeq, softLimit, hardLimit, keyMaterialLen);
  if (result == ResultCode.OK) {
    const slot = slotAddr(i);
    memory.fill(slot, 0, SLOT_SIZE);
    if (isCbcHmac(algorithm)) {
      cbcHmacInit(slot + SLOT_KEY_CTX, algorithm, SCRATCH_PTR);
    } else {
      const keyBytes = aeadKeyBytes(algorithm);
      aeadInit(algorithm, slot + SLOT_KEY_CTX, SCRATCH_PTR, keyBytes);
      memory.copy(slot + SLOT_SALT, SCRATCH_PTR + <usize>keyBytes, 4);
    }
    store<u8>(slot + SLOT_ALGORITHM, <u8>algorithm);
    store<u8>(slot + SLOT_DIRECTION, <u8>direction);
    store<u8>(slot + SLOT_ICV_LEN, <u8>icvLen);
    store<u8>(slot + SLOT_FLAGS, <u8>(flags & FLAG_ESN));
    store<u32>(slot + SLOT_SPI, spi);
    store<u64>(counterAddr(slot, Counter.SEQ_SOFT_LIMIT), softLimit);
    store<u64>(counterAddr(slot, Counter.SEQ_HARD_LIMIT), hardLimit);
    if (direction == Direction.OUT) {
      store<u64>(counterAddr(slot, Counter.SEQ_OUT_NEXT), initialSeq);
    } else {
      replayInit(slot, window, initialSeq - 1);
    }
    store<u32>(slot + SLOT_STATE, STATE_INSTALLED);
  }
  // Wipe the whole 128-byte key area the host writes into, not just the length
  // the host claims: with a wrong claim (refused above) the key bytes past it
  // would otherwise stay in the scratch region (architecture §4.5: secrets are
  // zeroised in WASM memory too).
  memory.fill(SCRATCH_PTR, 0, SCRATCH_KEY_BYTES);
  return result;
}

function checkInstall(
  i: u32, algorithm: u32, direction: u32, spi: u32, flags: u32, icvLen: u32, window: u32,
  initialSeq: u64, softLimit: u64, hardLimit: u64, keyMaterialLen: u32,
): u32 {
  if (i >= SLOT_COUNT) return ResultCode.NO_SLOT;
  if (load<u32>(slotAddr(i) + SLOT_STATE) != STATE_FREE) return ResultCode.SLOT_IN_USE;
  const materialBytes = keyMaterialBytes(algorithm);
  if (materialBytes == 0 || keyMaterialLen != materialBytes) return ResultCode.INVALID_ARGUMENT;
  if (isCbcHmac(algorithm) ? icvLen != cbcHmacIcvBytes(algorithm) : !aeadIcvAllowed(algorithm, icvLen)) {
    return ResultCode.INVALID_ARGUMENT;
  }
  if (direction != Direction.OUT && direction != Direction.IN) return ResultCode.INVALID_ARGUMENT;
  // RFC 4303 §2.1: SPI 0 is never sent; 1..255 are reserved by IANA.
  if (spi < 256) return ResultCode.INVALID_ARGUMENT;
  if ((flags & ~(<u32>FLAG_ESN)) != 0) return ResultCode.INVALID_ARGUMENT;
  const esn = (flags & FLAG_ESN) != 0;
  if (!esn && hardLimit > SEQ32_MAX) return ResultCode.INVALID_ARGUMENT;
  if (hardLimit == 0 || softLimit > hardLimit || initialSeq == 0 || initialSeq > hardLimit) {
    return ResultCode.INVALID_ARGUMENT;
  }
  if (direction == Direction.IN) {
    if (window < MIN_REPLAY_WINDOW || window > MAX_REPLAY_WINDOW || (window & (window - 1)) != 0) {
      return ResultCode.INVALID_ARGUMENT;
    }
  }
  return ResultCode.OK;
}

/**
 * Delete slot `i`: zero all SLOT_SIZE bytes (key context, salt, window,
 * counters). Returns OK, or NO_SLOT when out of range or already free (the
 * slot is wiped anyway when in range).
 */
export function slotDelete(i: u32): u32 {
  if (i >= SLOT_COUNT) return ResultCode.NO_SLOT;
  const slot = slotAddr(i);
  const wasInstalled = load<u32>(slot + SLOT_STATE) == STATE_INSTALLED;
  memory.fill(slot, 0, SLOT_SIZE);
  return wasInstalled ? ResultCode.OK : ResultCode.NO_SLOT;
}

/** Counter `id` (Counter) of slot `i`; 0 for a free slot or an unknown id. */
export function slotCounter(i: u32, id: u32): u64 {
  const slot = installedSlot(i);
  if (slot == 0 || id >= <u32>COUNTER_COUNT) return 0;
  return load<u64>(counterAddr(slot, id));
}

/** Whether slot `i` has passed its soft limit (RFC 4303 §3.3.3: time to rekey). */
export function slotRekeyNeeded(i: u32): bool {
  const slot = installedSlot(i);
  return slot != 0 && (load<u8>(slot + SLOT_FLAGS) & FLAG_REKEY_NEEDED) != 0;
}

/**
 * Benchmark hook, never for real traffic: set the next outbound sequence
 * number of slot `i`, so that several workers can model one SA whose counter
 * they share (bench/scale.ts reserves numbers from a common atomic counter).
 * Refuses anything that could send two packets with the same number under one
 * key, since the IV is the sequence number and AES-GCM and ChaCha20-Poly1305
 * need a unique IV per packet (RFC 4106 §3.1, RFC 7634 §2): the slot must be
 * installed (NO_SLOT) and outbound (WRONG_DIRECTION), `seq` must not be below
 * the current next number (INVALID_ARGUMENT), and it must not pass the hard
 * limit, nor may the counter be spent already (SEQ_EXHAUSTED, RFC 4303
 * §3.3.3). Returns OK when the counter was set.
 */
export function slotSetNextSeqOut(i: u32, seq: u64): u32 {
  const slot = installedSlot(i);
  if (slot == 0) return ResultCode.NO_SLOT;
  if (load<u8>(slot + SLOT_DIRECTION) != Direction.OUT) return ResultCode.WRONG_DIRECTION;
  const at = counterAddr(slot, Counter.SEQ_OUT_NEXT);
  const next = load<u64>(at);
  // next == 0: the counter passed 2^64-1 (espEncap refuses to send from there).
  if (next == 0 || seq > load<u64>(counterAddr(slot, Counter.SEQ_HARD_LIMIT))) return ResultCode.SEQ_EXHAUSTED;
  if (seq < next) return ResultCode.INVALID_ARGUMENT;
  store<u64>(at, seq);
  return ResultCode.OK;
}

/** Address of slot `i` (for the host's tests of wiping); 0 when out of range. */
export function slotPtr(i: u32): usize {
  return i < SLOT_COUNT ? slotAddr(i) : 0;
}
