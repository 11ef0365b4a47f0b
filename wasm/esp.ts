// ESP tunnel-mode encapsulation and decapsulation of one packet, in place in
// the arena (RFC 4303 §2, §3.3, §3.4; AEAD use per RFC 4106 and RFC 7634;
// AES-CBC with HMAC-SHA2 per RFC 3602 and RFC 4868).
//
//   ESP packet: SPI (4) | Sequence Number (4) | IV (8, CBC: 16) | ciphertext of
//               [payload | padding 1,2,3.. | pad length (1) | next header (1)] | ICV
//
// AEADs: the IV is the 64-bit sequence counter, big-endian: unique per packet
// under one key, as RFC 4106 §3.1 and RFC 7634 §2 allow. AAD is SPI || seq, or
// SPI || seq-high || seq-low with ESN (RFC 4106 §5, RFC 7634 §2.1). Padding
// aligns payload + pad + 2 to 4 bytes (RFC 4303 §2.4; the AEADs need no block
// padding).
// AES-CBC: a 16-byte unpredictable IV (RFC 3602 §2.1, derived as cbchmac.ts
// explains), padding to the 16-byte block (RFC 3602 §2.4), and an ICV over
// SPI || seq || IV || ciphertext (|| seq-high with ESN, RFC 4303 §2.2.1). The
// payload moves 8 bytes towards the tail for the longer IV (layout.ts
// ESP_HEADROOM). Encapsulation only frames the packet here; the batch seals
// all CBC packets together afterwards (cbcHmacSealPending: multi-buffer AES
// and HMAC-SHA-256). Inbound HMAC-SHA-256 ICVs are computed four at a time
// too, with every packet then decided as alone (espDecapDefer below).
// Callers (batch.ts) have checked the slot, its direction, and that the
// packet plus head/tailroom lies inside the arena.
// Concurrency: the deferred-packet table is module state of this instance,
// used by its owner worker (architecture §4.1) within one decapBatch call.

import {
  ARENA_PTR, Counter, DESC_NEXT_HEADER, DESC_OUT_LENGTH, DESC_OUT_OFFSET, DESC_RESULT, ESP_HEADROOM,
  ESP_TAILROOM_AEAD, FLAG_ESN, FLAG_REKEY_NEEDED, MAX_BATCH, RESULT_OK_MAX, ResultCode, SLOT_ALGORITHM, SLOT_FLAGS,
  SLOT_ICV_LEN, SLOT_KEY_CTX, SLOT_SALT, SLOT_SPI, WORK_AAD, WORK_NONCE,
} from './layout';
import { aeadOpen, aeadSeal } from './aead';
import {
  CBC_BLOCK, cbcHmacOpen, cbcHmacOpenComputed, cbcHmacQueueIcv, cbcHmacRunQueued, cbcHmacSealLater, isCbcHmac,
} from './cbchmac';
import { inferSeq, replayCheck, replayUpdate } from './replay';
import { bumpCounter, counterAddr } from './slots';

/** ESP header + IV bytes (RFC 4303 §2.1-2.3; 8-byte IV per RFC 4106 §3.1 / RFC 7634 §2). */
const HEADER: u32 = ESP_HEADROOM;
/** ESP header + IV bytes with AES-CBC (16-byte IV, RFC 3602 §3). */
const CBC_HEADER: u32 = 8 + CBC_BLOCK;
/** How far the payload moves towards the tail with AES-CBC. */
const CBC_SHIFT: u32 = CBC_HEADER - HEADER;

/** Bytes after an inner packet that encapsulation may write for the SA at `slot` (layout.ts ESP_TAILROOM). */
export function espTailroom(slot: usize): u32 {
  if (!isCbcHmac(<u32>load<u8>(slot + SLOT_ALGORITHM))) return ESP_TAILROOM_AEAD;
  return CBC_SHIFT + (CBC_BLOCK - 1) + 2 + <u32>load<u8>(slot + SLOT_ICV_LEN);
}

/** Build the nonce salt || IV in WORK_NONCE (RFC 4106 §4, RFC 7634 §2). */
// @ts-ignore: decorator
@inline function buildNonce(slot: usize, iv: usize): void {
  store<u32>(WORK_NONCE, load<u32>(slot + SLOT_SALT));
  store<u64>(WORK_NONCE + 4, load<u64>(iv));
}

/**
 * AAD for the packet whose ESP header is at `hdr`: the 8 header bytes, or with
 * ESN the 12 bytes SPI || seq-high || seq-low in WORK_AAD (RFC 4106 §5).
 * Returns the AAD length; the AAD itself is at aadPtr(hdr, esn).
 */
// @ts-ignore: decorator
@inline function buildAad(hdr: usize, esn: bool, seqHigh: u32): i32 {
  if (!esn) return 8;
  store<u32>(WORK_AAD, load<u32>(hdr));
  store<u32>(WORK_AAD + 4, bswap<u32>(seqHigh));
  store<u32>(WORK_AAD + 8, load<u32>(hdr + 4));
  return 12;
}

// @ts-ignore: decorator
@inline function aadPtr(hdr: usize, esn: bool): usize {
  return esn ? WORK_AAD : hdr;
}

/** Raise the rekey flag when `seq` reached the soft limit (RFC 4303 §3.3.3). */
// @ts-ignore: decorator
@inline function softLimitResult(slot: usize, seq: u64): u32 {
  if (seq < load<u64>(counterAddr(slot, Counter.SEQ_SOFT_LIMIT))) return ResultCode.OK;
  store<u8>(slot + SLOT_FLAGS, load<u8>(slot + SLOT_FLAGS) | FLAG_REKEY_NEEDED);
  return ResultCode.OK_REKEY_NEEDED;
}

/**
 * Encapsulate the inner packet at `pkt` (`len` bytes) for the outbound SA at
 * `slot`: header into the ESP_HEADROOM bytes before it, trailer and ICV after.
 * Writes outOffset/outLength into the descriptor at `desc`. Refuses with
 * SEQ_EXHAUSTED, rather than wrapping, once the hard limit is passed.
 */
export function espEncap(slot: usize, desc: usize, pkt: usize, len: u32, nextHeader: u32): u32 {
  const seqAt = counterAddr(slot, Counter.SEQ_OUT_NEXT);
  const seq = load<u64>(seqAt);
  // seq == 0: the counter wrapped past 2^64-1 (RFC 4303 §3.3.3: never cycle).
  if (seq == 0 || seq > load<u64>(counterAddr(slot, Counter.SEQ_HARD_LIMIT))) {
    bumpCounter(slot, Counter.DROPS_SEQ_EXHAUSTED, 1);
    return ResultCode.SEQ_EXHAUSTED;
  }
  store<u64>(seqAt, seq + 1);

  const esn = (load<u8>(slot + SLOT_FLAGS) & FLAG_ESN) != 0;
  const icvLen = <u32>load<u8>(slot + SLOT_ICV_LEN);
  const alg = <u32>load<u8>(slot + SLOT_ALGORITHM);
  const cbc = isCbcHmac(alg);
  const hdr = pkt - HEADER;
  store<u32>(hdr, bswap<u32>(load<u32>(slot + SLOT_SPI)));
  store<u32>(hdr + 4, bswap<u32>(<u32>seq));
  // CBC: the 16-byte IV needs 8 more bytes in front of the payload.
  const data = cbc ? pkt + CBC_SHIFT : pkt;
  if (cbc) memory.copy(data, pkt, <usize>len);

  // RFC 4303 §2.4: padding bytes 1, 2, 3, ..., then pad length and next header;
  // payload + padding + 2 is a multiple of 4, or of the block size with CBC (RFC 3602 §2.4).
  const align: u32 = cbc ? CBC_BLOCK : 4;
  const padLen: u32 = (align - ((len + 2) & (align - 1))) & (align - 1);
  const trailer = data + <usize>len;
  for (let i: u32 = 0; i < padLen; i++) store<u8>(trailer + <usize>i, <u8>(i + 1));
  store<u8>(trailer + <usize>padLen, <u8>padLen);
  store<u8>(trailer + <usize>padLen + 1, <u8>nextHeader);
  const ctLen = len + padLen + 2;

  if (cbc) {
    cbcHmacSealLater(slot + SLOT_KEY_CTX, alg, hdr, seq, ctLen, esn);
  } else {
    store<u64>(hdr + 8, bswap<u64>(seq));
    buildNonce(slot, hdr + 8);
    const aadLen = buildAad(hdr, esn, <u32>(seq >> 32));
    aeadSeal(alg, slot + SLOT_KEY_CTX, WORK_NONCE, aadPtr(hdr, esn), aadLen, pkt, <i32>ctLen, pkt + <usize>ctLen, <i32>icvLen);
  }

  bumpCounter(slot, Counter.PACKETS_OUT, 1);
  bumpCounter(slot, Counter.BYTES_OUT, <u64>len);
  store<u32>(desc + DESC_OUT_OFFSET, <u32>(hdr - ARENA_PTR));
  store<u32>(desc + DESC_OUT_LENGTH, (cbc ? CBC_HEADER : HEADER) + ctLen + icvLen);
  return softLimitResult(slot, seq);
}

/**
 * Decapsulate the ESP packet at `pkt` (`len` bytes, starting at the SPI) for
 * the inbound SA at `slot` (RFC 4303 §3.4): replay pre-check, ICV verification
 * and decryption, window update, then the padding check. On success the inner
 * packet is at outOffset/outLength and its Next Header in the descriptor.
 * Nothing in the slot changes for a packet that fails before authentication.
 */
export function espDecap(slot: usize, desc: usize, pkt: usize, len: u32): u32 {
  const result = decapShape(slot, pkt, len);
  return result != ResultCode.OK ? result : decapChecked(slot, desc, pkt, len, 0, 0);
}

/** Length (MALFORMED, counted) and SPI checks: they read nothing the batch changes. */
function decapShape(slot: usize, pkt: usize, len: u32): u32 {
  const icvLen = <u32>load<u8>(slot + SLOT_ICV_LEN);
  // Header, IV, at least pad length + next header (CBC: one block, and whole
  // blocks, RFC 3602 §3), ICV.
  if (isCbcHmac(<u32>load<u8>(slot + SLOT_ALGORITHM))
    ? len < CBC_HEADER + CBC_BLOCK + icvLen || ((len - CBC_HEADER - icvLen) & (CBC_BLOCK - 1)) != 0
    : len < HEADER + 2 + icvLen) {
    bumpCounter(slot, Counter.DROPS_MALFORMED, 1);
    return ResultCode.MALFORMED;
  }
  if (bswap<u32>(load<u32>(pkt)) != load<u32>(slot + SLOT_SPI)) return ResultCode.SPI_MISMATCH;
  return ResultCode.OK;
}

// Inbound AES-CBC + HMAC-SHA-256 packets of a batch have their ICVs computed
// four at a time (cbcHmacBatched): pass one (espDecapDefer) queues each ICV
// for the sequence number the window implies before the batch; pass two
// computes them; pass three (espDecapDeferred) then runs each packet, in
// descriptor order, through exactly the steps of espDecap (sequence number
// inferred again, replay check, ICV, window update), using the precomputed
// ICV where the number is still the same and computing it afresh otherwise.
// So a batch decides every packet as one-by-one processing would.

/** Placeholder result of a deferred packet until pass three (never left in a descriptor). */
export const RESULT_DEFERRED: u32 = 0xffff;
/** Deferred packet: slot, descriptor, packet, length (u32), sequence number of its ICV (u64, 0 = none), ESN high half (big-endian), ICV. */
const DEFERRED_SIZE: usize = 64;
const DEFERRED_ICV: usize = 32;
const DEFERRED: usize = memory.data(<i32>MAX_BATCH * <i32>DEFERRED_SIZE, 16);
let deferredCount: u32 = 0;

/** Pass one for a packet of a cbcHmacBatched SA: the checks that read no state, then its ICV queued. */
export function espDecapDefer(slot: usize, desc: usize, pkt: usize, len: u32): u32 {
  const result = decapShape(slot, pkt, len);
  if (result != ResultCode.OK) return result;
  const d = DEFERRED + <usize>deferredCount * DEFERRED_SIZE;
  deferredCount++;
  store<u32>(d, <u32>slot);
  store<u32>(d, <u32>desc, 4);
  store<u32>(d, <u32>pkt, 8);
  store<u32>(d, len, 12);
  store<u64>(d, 0, 16);
  const esn = (load<u8>(slot + SLOT_FLAGS) & FLAG_ESN) != 0;
  const seq = inferSeq(slot, bswap<u32>(load<u32>(pkt + 4)), esn);
  // A number the window already refuses gets no ICV: pass three refuses it again.
  if (replayCheck(slot, seq) && seq <= load<u64>(counterAddr(slot, Counter.SEQ_HARD_LIMIT))) {
    const icvLen = <u32>load<u8>(slot + SLOT_ICV_LEN);
    store<u64>(d, seq, 16);
    store<u32>(d, bswap<u32>(<u32>(seq >> 32)), 24);
    cbcHmacQueueIcv(slot + SLOT_KEY_CTX, pkt, len - icvLen, d + 24, esn ? 4 : 0, d + DEFERRED_ICV, icvLen);
  }
  return RESULT_DEFERRED;
}

/** Passes two and three (see above): writes each deferred packet's result; returns how many succeeded. */
export function espDecapDeferred(): u32 {
  if (deferredCount == 0) return 0;
  cbcHmacRunQueued();
  let ok: u32 = 0;
  for (let i: u32 = 0; i < deferredCount; i++) {
    const d = DEFERRED + <usize>i * DEFERRED_SIZE;
    const desc = <usize>load<u32>(d, 4);
    const result = decapChecked(<usize>load<u32>(d), desc, <usize>load<u32>(d, 8), load<u32>(d, 12), d + DEFERRED_ICV, load<u64>(d, 16));
    store<u32>(desc + DESC_RESULT, result);
    if (result <= RESULT_OK_MAX) ok++;
  }
  memory.fill(DEFERRED, 0, <usize>deferredCount * DEFERRED_SIZE);
  deferredCount = 0;
  return ok;
}

/**
 * espDecap after decapShape: sequence number, replay pre-check, ICV and
 * decryption, window update, trailer. `icv`, when not 0, is the ICV computed
 * in pass one for sequence number `icvSeq` (AES-CBC + HMAC-SHA-256).
 */
function decapChecked(slot: usize, desc: usize, pkt: usize, len: u32, icv: usize, icvSeq: u64): u32 {
  const icvLen = <u32>load<u8>(slot + SLOT_ICV_LEN);
  const alg = <u32>load<u8>(slot + SLOT_ALGORITHM);
  const cbc = isCbcHmac(alg);
  const header = cbc ? CBC_HEADER : HEADER;
  const esn = (load<u8>(slot + SLOT_FLAGS) & FLAG_ESN) != 0;
  const seq = inferSeq(slot, bswap<u32>(load<u32>(pkt + 4)), esn);
  if (!replayCheck(slot, seq)) {
    bumpCounter(slot, Counter.DROPS_REPLAY, 1);
    return ResultCode.REPLAY;
  }
  if (seq > load<u64>(counterAddr(slot, Counter.SEQ_HARD_LIMIT))) {
    bumpCounter(slot, Counter.DROPS_SEQ_EXHAUSTED, 1);
    return ResultCode.SEQ_EXHAUSTED;
  }

  const ct = pkt + header;
  const ctLen = len - header - icvLen;
  let authentic: bool;
  if (cbc) {
    // RFC 4303 §3.4.4: the ICV is verified before anything is decrypted.
    authentic = icv != 0 && icvSeq == seq
      ? cbcHmacOpenComputed(slot + SLOT_KEY_CTX, pkt, header + ctLen, ctLen, icvLen, icv)
      : cbcHmacOpen(slot + SLOT_KEY_CTX, alg, pkt, header + ctLen, ctLen, icvLen, esn, <u32>(seq >> 32));
  } else {
    buildNonce(slot, pkt + 8);
    const aadLen = buildAad(pkt, esn, <u32>(seq >> 32));
    authentic = aeadOpen(alg, slot + SLOT_KEY_CTX, WORK_NONCE, aadPtr(pkt, esn), aadLen, ct, <i32>ctLen, ct + <usize>ctLen, <i32>icvLen);
  }
  if (!authentic) {
    bumpCounter(slot, Counter.DROPS_AUTH, 1);
    return ResultCode.AUTH_FAILED;
  }
  // Authenticated: the number is spent even if the trailer turns out bad.
  replayUpdate(slot, seq);

  // RFC 4303 §2.4: the receiver checks the padding bytes 1, 2, 3, ...
  const padLen = <u32>load<u8>(ct + <usize>ctLen - 2);
  const nextHeader = <u32>load<u8>(ct + <usize>ctLen - 1);
  if (padLen + 2 > ctLen) {
    bumpCounter(slot, Counter.DROPS_BAD_PADDING, 1);
    return ResultCode.BAD_PADDING;
  }
  const payloadLen = ctLen - 2 - padLen;
  const pad = ct + <usize>payloadLen;
  let bad: u32 = 0;
  for (let i: u32 = 0; i < padLen; i++) bad |= <u32>load<u8>(pad + <usize>i) ^ (i + 1);
  if (bad != 0) {
    bumpCounter(slot, Counter.DROPS_BAD_PADDING, 1);
    return ResultCode.BAD_PADDING;
  }

  bumpCounter(slot, Counter.PACKETS_IN, 1);
  bumpCounter(slot, Counter.BYTES_IN, <u64>payloadLen);
  store<u32>(desc + DESC_NEXT_HEADER, nextHeader);
  store<u32>(desc + DESC_OUT_OFFSET, <u32>(ct - ARENA_PTR));
  store<u32>(desc + DESC_OUT_LENGTH, payloadLen);
  return softLimitResult(slot, seq);
}
