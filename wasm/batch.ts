// Batch entry points: one call processes `count` descriptors (layout.ts,
// "Batch descriptor") so that the JS/wasm boundary is crossed once per batch
// (architecture §3). Every descriptor gets its own ResultCode; a bad descriptor or
// packet never stops the batch.
//
// Concurrency: called only by the worker that owns this instance (architecture §4.1).

import {
  ARENA_PTR, ARENA_SIZE, DESC_LENGTH, DESC_NEXT_HEADER, DESC_OFFSET, DESC_OUT_LENGTH, DESC_OUT_OFFSET,
  DESC_PTR, DESC_RESULT, DESC_SIZE, DESC_SLOT, Direction, ESP_HEADROOM, MAX_BATCH,
  RESULT_OK_MAX, ResultCode, SLOT_ALGORITHM, SLOT_DIRECTION,
} from './layout';
import { installedSlot } from './slots';
import { espDecap, espDecapDefer, espDecapDeferred, espEncap, espTailroom } from './esp';
import { cbcHmacBatched, cbcHmacSealPending } from './cbchmac';

/** Clear the output fields of a descriptor. */
// @ts-ignore: decorator
@inline function begin(desc: usize): void {
  store<u32>(desc + DESC_OUT_OFFSET, 0);
  store<u32>(desc + DESC_OUT_LENGTH, 0);
}

// Why a count above MAX_BATCH is refused rather than clamped: a negative count
// from JavaScript arrives as a huge u32, and clamping it to MAX_BATCH would
// process whatever stale descriptors lie in the array — re-encrypting packets
// already sent (each spending a sequence number) or decrypting old ones again.

function encapOne(desc: usize): u32 {
  begin(desc);
  const slot = installedSlot(load<u32>(desc + DESC_SLOT));
  if (slot == 0) return ResultCode.NO_SLOT;
  if (load<u8>(slot + SLOT_DIRECTION) != Direction.OUT) return ResultCode.WRONG_DIRECTION;
  const offset = load<u32>(desc + DESC_OFFSET);
  const len = load<u32>(desc + DESC_LENGTH);
  const nextHeader = load<u32>(desc + DESC_NEXT_HEADER);
  if (offset < ESP_HEADROOM || <u64>offset + <u64>len + <u64>espTailroom(slot) > <u64>ARENA_SIZE || nextHeader > 255) {
    return ResultCode.BAD_DESCRIPTOR;
  }
  return espEncap(slot, desc, ARENA_PTR + <usize>offset, len, nextHeader);
}

function decapOne(desc: usize): u32 {
  begin(desc);
  store<u32>(desc + DESC_NEXT_HEADER, 0);
  const slot = installedSlot(load<u32>(desc + DESC_SLOT));
  if (slot == 0) return ResultCode.NO_SLOT;
  if (load<u8>(slot + SLOT_DIRECTION) != Direction.IN) return ResultCode.WRONG_DIRECTION;
  const offset = load<u32>(desc + DESC_OFFSET);
  const len = load<u32>(desc + DESC_LENGTH);
  if (<u64>offset + <u64>len > <u64>ARENA_SIZE) return ResultCode.BAD_DESCRIPTOR;
  if (cbcHmacBatched(<u32>load<u8>(slot + SLOT_ALGORITHM))) return espDecapDefer(slot, desc, ARENA_PTR + <usize>offset, len);
  return espDecap(slot, desc, ARENA_PTR + <usize>offset, len);
}

/**
 * Encapsulate descriptors 0..count-1 (at most MAX_BATCH). Per descriptor:
 * offset/length of the inner packet (with ESP_HEADROOM free bytes before it
 * and ESP_TAILROOM after it), slot, nextHeader in; result, outOffset/outLength
 * of the ESP packet out. Returns how many succeeded (result <= OK_REKEY_NEEDED).
 * A count above MAX_BATCH is refused: nothing is processed and 0 is returned.
 * AEAD packets are sealed one by one; AES-CBC packets are framed in this
 * pass and sealed together after it, eight at a time in the AES lanes
 * (cbchmac.ts), so descriptors of one batch must not overlap in the arena.
 */
export function encapBatch(count: u32): u32 {
  if (count > MAX_BATCH) return 0; // refused, see above encapOne
  let ok: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const desc = DESC_PTR + <usize>i * DESC_SIZE;
    const result = encapOne(desc);
    store<u32>(desc + DESC_RESULT, result);
    if (result <= RESULT_OK_MAX) ok++;
  }
  cbcHmacSealPending();
  return ok;
}

/**
 * Decapsulate descriptors 0..count-1 (at most MAX_BATCH). Per descriptor:
 * offset/length of the ESP packet (from the SPI) and slot in; result,
 * nextHeader, outOffset/outLength of the inner packet out. Returns how many
 * succeeded. A count above MAX_BATCH is refused: nothing is processed and 0 is
 * returned. AES-CBC + HMAC-SHA-256 packets are decided after the others,
 * their ICVs computed four at a time first (esp.ts espDecapDeferred), so
 * descriptors of one batch must not overlap in the arena.
 */
export function decapBatch(count: u32): u32 {
  if (count > MAX_BATCH) return 0; // refused, see above encapOne
  let ok: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const desc = DESC_PTR + <usize>i * DESC_SIZE;
    const result = decapOne(desc);
    store<u32>(desc + DESC_RESULT, result);
    if (result <= RESULT_OK_MAX) ok++;
  }
  // AES-CBC + HMAC-SHA-256 packets: ICVs four at a time, then each packet in order (esp.ts).
  return ok + espDecapDeferred();
}
