// The ESP suites AES-CBC (RFC 3602) + HMAC-SHA2 (RFC 4868): SA contexts,
// the batched sealing of outbound packets and the verify-then-decrypt of
// inbound ones. ESP framing (header, padding, trailer) is esp.ts's.
//
// IVs (RFC 3602 §2.1: the IV must be unpredictable, and random IVs are what
// it recommends). The kernel has no randomness of its own, so each SA gets
// (and an outbound one uses) a 16-byte IV key at install that the host draws from its CSPRNG
// (dataplane/kernel.ts, crypto.randomFillSync), independent of the IKE keys,
// and packet n is sent with IV = AES-128_IVkey(n as 64-bit big-endian ‖ 0^64).
// This is the construction of NIST SP 800-38A Appendix C (the forward cipher
// applied to a nonce), here under a key of its own so that IVs and data
// blocks never share a cipher instance. Why it is unpredictable: the IV key is
// uniformly random and never leaves this memory, the inputs never repeat under
// it (sequence numbers never wrap, architecture §4.4), and predicting the
// IV of a coming packet from the IVs already sent would distinguish AES from
// a random permutation. Deriving IVs costs one AES block per packet, run
// eight packets per call, and no round trip to the host per batch.
//
// Context layout (CBCHMAC_CTX_SIZE bytes, in the slot's key context):
//   [0, 1920)      bitsliced AES round keys of the encryption key (aes.ts)
//   [1920, 1924)   AES rounds (10 or 14)
//   [1936, 3856)   bitsliced AES-128 round keys of the IV key
//   [3856, 3984)   HMAC inner and outer states (hmac.ts)
// Key material at install: encryption key ‖ integrity key ‖ IV key (16).
//
// Constant time: AES-CBC by cbc.ts/aes.ts, HMAC by hmac.ts and
// hmac256x4.ts, ICVs compared by hmac.ts icvEqual (every byte, one branch
// on the result); this file branches on algorithm ids, lengths and flags
// only (all public).
// Concurrency: the pending table is module state of this instance, used by
// its owner thread between the two passes of one encapBatch call.

import { AES_RK_SIZE, aesExpandKey } from './aes';
import { cbcDecrypt, cbcQueue, cbcRunJobs } from './cbc';
import { HMAC_CTX_SIZE, hmacInit, hmacMac, hmacVerify, icvEqual } from './hmac';
import { hmac256x4Queue, hmac256x4Run } from './hmac256x4';
import { Algorithm, MAX_BATCH } from './layout';

const RK_OFFSET: usize = 0;
const NR_OFFSET: usize = <usize>AES_RK_SIZE;
const IV_RK_OFFSET: usize = <usize>AES_RK_SIZE + 16;
const HMAC_OFFSET: usize = IV_RK_OFFSET + <usize>AES_RK_SIZE;

/** Bytes of a CBC+HMAC context (see the header). */
export const CBCHMAC_CTX_SIZE: i32 = <i32>HMAC_OFFSET + HMAC_CTX_SIZE;
/** Bytes of the per-SA IV key the host appends to the key material. */
export const IV_KEY_BYTES: i32 = 16;
/** AES-CBC IV and block bytes (RFC 3602 §2.1, §3). */
export const CBC_BLOCK: u32 = 16;

/** Work space for the key expansion (left zeroed by aesExpandKey). */
const EXPAND_BUF: usize = memory.data(128, 16);
const ZERO_BLOCK: usize = memory.data(16, 16);
/** The high half of an ESN, big-endian, appended to the ICV input (RFC 4303 §2.2.1), inbound. */
const SEQ_HIGH: usize = memory.data(16, 16);

/**
 * Outbound packets of the current batch waiting for pass two (see
 * `cbcHmacSealPending`): context, ESP header, ciphertext bytes, -, algorithm,
 * ESN flag (u32 each), then the ESN high half big-endian (the ICV's extra input).
 */
const PENDING_SIZE: usize = 32;
const PENDING: usize = memory.data(<i32>MAX_BATCH * <i32>PENDING_SIZE, 16);
let pendingCount: u32 = 0;

/** Whether `alg` is one of the AES-CBC + HMAC-SHA2 suites. */
// @ts-ignore: decorator
@inline export function isCbcHmac(alg: u32): bool {
  return alg >= <u32>Algorithm.AES_CBC_128_HMAC_SHA2_256_128 && alg <= <u32>Algorithm.AES_CBC_256_HMAC_SHA2_512_256;
}

/** AES key bytes: 16 or 32. */
// @ts-ignore: decorator
@inline function aesKeyBytes(alg: u32): i32 {
  return alg <= <u32>Algorithm.AES_CBC_128_HMAC_SHA2_512_256 ? 16 : 32;
}

/** SHA-2 output bits (256, 384, 512); the HMAC key has as many bits (RFC 4868 §2.1.1). */
// @ts-ignore: decorator
@inline function hmacBits(alg: u32): i32 {
  const k = (alg - <u32>Algorithm.AES_CBC_128_HMAC_SHA2_256_128) % 3;
  return k == 0 ? 256 : k == 1 ? 384 : 512;
}

/** ICV bytes: half the hash (RFC 4868 §2.3): 16, 24 or 32. */
export function cbcHmacIcvBytes(alg: u32): u32 {
  return <u32>hmacBits(alg) >> 4;
}

/** Key material bytes at install: AES key ‖ HMAC key ‖ IV key. */
export function cbcHmacMaterialBytes(alg: u32): u32 {
  return <u32>(aesKeyBytes(alg) + (hmacBits(alg) >> 3) + IV_KEY_BYTES);
}

/** Initialises the context at `ctx` from the key material at `material` (see the header). */
export function cbcHmacInit(ctx: usize, alg: u32, material: usize): void {
  const keyBytes = aesKeyBytes(alg);
  const bits = hmacBits(alg);
  store<i32>(ctx + NR_OFFSET, aesExpandKey(ctx + RK_OFFSET, material, keyBytes, EXPAND_BUF));
  aesExpandKey(ctx + IV_RK_OFFSET, material + <usize>keyBytes + <usize>(bits >> 3), IV_KEY_BYTES, EXPAND_BUF);
  hmacInit(ctx + HMAC_OFFSET, bits, material + <usize>keyBytes, bits >> 3);
}

/**
 * Pass one of an outbound packet whose ESP header is at `hdr` and whose
 * plaintext (payload, padding, trailer: `ctLen` bytes, a multiple of 16)
 * follows the 16-byte IV field: writes the IV derivation input (see the
 * header) into the IV field and queues the packet. `cbcHmacSealPending`
 * encrypts it and appends its `icvLen`-byte ICV before the batch returns.
 */
export function cbcHmacSealLater(ctx: usize, alg: u32, hdr: usize, seq: u64, ctLen: u32, esn: bool): void {
  store<u64>(hdr + 8, bswap<u64>(seq));
  store<u64>(hdr + 16, 0);
  const p = PENDING + <usize>pendingCount * PENDING_SIZE;
  store<u32>(p, <u32>ctx);
  store<u32>(p, <u32>hdr, 4);
  store<u32>(p, ctLen, 8);
  store<u32>(p, alg, 16);
  store<u32>(p, esn ? 1 : 0, 20);
  store<u32>(p, bswap<u32>(<u32>(seq >> 32)), 24);
  pendingCount++;
}

/**
 * Pass two: IVs for every pending packet (eight per AES call), then the CBC
 * encryption of their data multi-buffer (AES-128 SAs, then AES-256), then
 * each ICV: HMAC over SPI ‖ seq ‖ IV ‖ ciphertext, with the ESN high half
 * appended (RFC 4303 §2.2.1, §3.3.2.1), truncated (RFC 4868 §2.3); with
 * SHA-256 four packets per SHA-256 call (hmac256x4.ts).
 */
export function cbcHmacSealPending(): void {
  const n = pendingCount;
  if (n == 0) return;
  for (let i: u32 = 0; i < n; i++) {
    const p = PENDING + <usize>i * PENDING_SIZE;
    cbcQueue(<usize>load<u32>(p) + IV_RK_OFFSET, <usize>load<u32>(p, 4) + 8, 1, ZERO_BLOCK);
  }
  cbcRunJobs(10);
  for (let nr = 10; nr <= 14; nr += 4) {
    let queued = 0;
    for (let i: u32 = 0; i < n; i++) {
      const p = PENDING + <usize>i * PENDING_SIZE;
      const ctx = <usize>load<u32>(p);
      if (load<i32>(ctx + NR_OFFSET) != nr) continue;
      const hdr = <usize>load<u32>(p, 4);
      cbcQueue(ctx + RK_OFFSET, hdr + 24, load<u32>(p, 8) / CBC_BLOCK, hdr + 8);
      queued++;
    }
    if (queued > 0) cbcRunJobs(nr);
  }
  // ICVs: HMAC-SHA-256 four packets at a time, SHA-384/512 one by one.
  for (let i: u32 = 0; i < n; i++) {
    const p = PENDING + <usize>i * PENDING_SIZE;
    const ctx = <usize>load<u32>(p) + HMAC_OFFSET;
    const hdr = <usize>load<u32>(p, 4);
    const authLen = 24 + load<u32>(p, 8);
    const alg = load<u32>(p, 16);
    const bits = hmacBits(alg);
    const extraLen: u32 = load<u32>(p, 20) != 0 ? 4 : 0;
    const icv = hdr + <usize>authLen;
    if (bits == 256) hmac256x4Queue(ctx, hdr, authLen, p + 24, extraLen, icv, cbcHmacIcvBytes(alg));
    else hmacMac(ctx, bits, hdr, <i32>authLen, p + 24, <i32>extraLen, icv, <i32>cbcHmacIcvBytes(alg));
  }
  hmac256x4Run();
  pendingCount = 0;
}

/** Whether the suite's ICVs are computed four packets at a time (HMAC-SHA-256, hmac256x4.ts). */
export function cbcHmacBatched(alg: u32): bool {
  return isCbcHmac(alg) && hmacBits(alg) == 256;
}

/**
 * Inbound pass one of a batch (cbcHmacBatched suites): queues the ICV
 * computation over the `authLen` bytes from the SPI at `pkt`, then the
 * `extraLen` bytes at `extra`, into the `icvLen` bytes at `mac`;
 * `cbcHmacRunQueued` computes them all.
 */
export function cbcHmacQueueIcv(ctx: usize, pkt: usize, authLen: u32, extra: usize, extraLen: u32, mac: usize, icvLen: u32): void {
  hmac256x4Queue(ctx + HMAC_OFFSET, pkt, authLen, extra, extraLen, mac, icvLen);
}

/** Computes every ICV queued by `cbcHmacQueueIcv`. */
export function cbcHmacRunQueued(): void {
  hmac256x4Run();
}

/**
 * Inbound with an ICV computed in pass one (`mac`, `icvLen` bytes): compares
 * it with the packet's in constant time and only if they match decrypts, as
 * `cbcHmacOpen` does. Returns whether they matched.
 */
export function cbcHmacOpenComputed(ctx: usize, pkt: usize, authLen: u32, ctLen: u32, icvLen: u32, mac: usize): bool {
  if (!icvEqual(mac, pkt + <usize>authLen, <i32>icvLen)) return false;
  cbcDecrypt(ctx + RK_OFFSET, load<i32>(ctx + NR_OFFSET), pkt + 8, pkt + 24, ctLen);
  return true;
}

/**
 * Inbound: verifies the `icvLen`-byte ICV at `icv` over the `authLen` bytes
 * from the SPI at `pkt` (with the ESN high half `seqHigh` appended when
 * `esn`), in constant time, and only if it matches decrypts the `ctLen` bytes
 * at `pkt` + 24 in place with the IV at `pkt` + 8 (RFC 4303 §3.4.4: verify
 * before decrypting). Returns whether the ICV matched.
 */
export function cbcHmacOpen(
  ctx: usize, alg: u32, pkt: usize, authLen: u32, ctLen: u32, icvLen: u32, esn: bool, seqHigh: u32,
): bool {
  store<u32>(SEQ_HIGH, bswap<u32>(seqHigh));
  const ok = hmacVerify(
    ctx + HMAC_OFFSET, hmacBits(alg), pkt, <i32>authLen, SEQ_HIGH, esn ? 4 : 0, pkt + <usize>authLen, <i32>icvLen,
  );
  if (!ok) return false;
  cbcDecrypt(ctx + RK_OFFSET, load<i32>(ctx + NR_OFFSET), pkt + 8, pkt + 24, ctLen);
  return true;
}

// One-shot AES-CBC for tests against published vectors: a context of
// AES_CBC_CTX_SIZE bytes holds the round keys and the round count.

/** Bytes of an `aesCbcInit` context. */
export const AES_CBC_CTX_SIZE: i32 = AES_RK_SIZE + 16;

/** Expands the AES key of `keyLen` bytes (16, 24, 32) at `key` into `ctx`; traps on another length. */
export function aesCbcInit(ctx: usize, key: usize, keyLen: i32): void {
  if (keyLen != 16 && keyLen != 24 && keyLen != 32) unreachable();
  store<i32>(ctx + NR_OFFSET, aesExpandKey(ctx + RK_OFFSET, key, keyLen, EXPAND_BUF));
}

/** CBC-encrypts `len` bytes (a multiple of 16) at `data` in place with the IV at `iv`. */
export function aesCbcEncrypt(ctx: usize, iv: usize, data: usize, len: u32): void {
  if ((len & 15) != 0) unreachable();
  cbcQueue(ctx + RK_OFFSET, data, len >> 4, iv);
  cbcRunJobs(load<i32>(ctx + NR_OFFSET));
}

/** CBC-decrypts `len` bytes (a multiple of 16) at `data` in place with the IV at `iv`. */
export function aesCbcDecrypt(ctx: usize, iv: usize, data: usize, len: u32): void {
  if ((len & 15) != 0) unreachable();
  cbcDecrypt(ctx + RK_OFFSET, load<i32>(ctx + NR_OFFSET), iv, data, len);
}
