// Linear memory layout of the ESP kernel module: the one place that says where
// everything lives. Memory is static: nothing on the hot path allocates, and
// the module never calls the allocator at all (runtime "stub").
//
// Who writes what: one instance belongs to one worker thread (architecture §4.1).
// The host writes key material into SCRATCH (install), packets into the ARENA
// and descriptors into DESC; the kernel alone writes SLOTS and WORK.
//
//   [0, __heap_base)   data segments (constants, tables) placed by asc
//   SCRATCH            1 MiB, 16-byte aligned: one-shot AEAD calls, tests, and
//                      key material for slotInstall (the host wipes it after)
//   WORK               1 KiB kernel-private buffers (keystream, nonce, AAD, MAC)
//   SLOTS              SLOT_COUNT x SLOT_SIZE, one Security Association each
//   DESC               MAX_BATCH x DESC_SIZE batch descriptors
//   ARENA              ARENA_SIZE bytes of packets for one batch (64-byte aligned)
//
// Compile-time limits: SLOT_COUNT = 256 SAs, MAX_BATCH = 256 packets per call,
// replay windows of 64..MAX_REPLAY_WINDOW (4096) packets, ARENA_SIZE = 4 MiB.
// The start function grows memory to cover every region once; it never grows
// again, so host views of memory.buffer stay valid for the instance's lifetime.

/** Round `p` up to a multiple of 16 bytes (v128 alignment). */
// @ts-ignore: decorator
@inline export function align16(p: usize): usize {
  return (p + 15) & ~(<usize>15);
}

// @ts-ignore: decorator
@inline function align64(p: usize): usize {
  return (p + 63) & ~(<usize>63);
}

// ---------------------------------------------------------------------------
// Result codes: one per packet in the descriptor, and the return value of the
// control calls (slotInstall, slotDelete). Values are ABI: never renumber.
// Success codes are <= RESULT_OK_MAX.

export enum ResultCode {
  /** Packet processed. */
  OK = 0,
  /** Packet processed, and the SA has reached its soft sequence limit: rekey (RFC 4303 §3.3.3). */
  OK_REKEY_NEEDED = 1,
  /** Inbound sequence number already seen or left of the window (RFC 4303 §3.4.3). Counted. */
  REPLAY = 2,
  /** ICV did not verify (RFC 4303 §3.4.4). Counted; the window is not touched. */
  AUTH_FAILED = 3,
  /** Inbound packet too short to be ESP for this SA. Counted. */
  MALFORMED = 4,
  /** Authenticated packet whose padding is not 1,2,3,... or whose pad length overruns (RFC 4303 §2.4). Counted. */
  BAD_PADDING = 5,
  /** Sending would pass the hard limit / wrap the counter (RFC 4303 §3.3.3), or an inbound number is past it. Counted. */
  SEQ_EXHAUSTED = 6,
  /** Slot index out of range or slot empty. */
  NO_SLOT = 7,
  /** Encap on an inbound SA or decap on an outbound SA. */
  WRONG_DIRECTION = 8,
  /** The packet's SPI is not the slot's SPI (the host routed it to the wrong slot). */
  SPI_MISMATCH = 9,
  /** Descriptor offset/length outside the arena or without head/tailroom. */
  BAD_DESCRIPTOR = 10,
  /** Control call with an invalid parameter (algorithm, key length, ICV length, window, limits). */
  INVALID_ARGUMENT = 11,
  /** slotInstall on a slot that is in use: delete it first. */
  SLOT_IN_USE = 12,
}

export const RESULT_OK_MAX: u32 = ResultCode.OK_REKEY_NEEDED;

// ---------------------------------------------------------------------------
// SA parameters.

/**
 * Cipher suite of an SA: an AEAD (RFC 4106, RFC 7634), or AES-CBC (RFC 3602)
 * with HMAC-SHA2 truncated to half its length (RFC 4868). Values are ABI:
 * add, never renumber.
 */
export enum Algorithm {
  AES_GCM_128 = 1,
  AES_GCM_256 = 2,
  CHACHA20_POLY1305 = 3,
  AES_CBC_128_HMAC_SHA2_256_128 = 4,
  AES_CBC_128_HMAC_SHA2_384_192 = 5,
  AES_CBC_128_HMAC_SHA2_512_256 = 6,
  AES_CBC_256_HMAC_SHA2_256_128 = 7,
  AES_CBC_256_HMAC_SHA2_384_192 = 8,
  AES_CBC_256_HMAC_SHA2_512_256 = 9,
}

/** Direction of an SA. Values are ABI. */
export enum Direction {
  OUT = 1,
  IN = 2,
}

/** Bits of the slot's flags byte. */
export const FLAG_ESN: u8 = 1;
export const FLAG_REKEY_NEEDED: u8 = 2;

/** Per-slot 64-bit counters, read with slotCounter(slot, id). Values are ABI. */
export enum Counter {
  /** Next sequence number to send (outbound). */
  SEQ_OUT_NEXT = 0,
  /** Highest authenticated sequence number received (inbound; 64-bit with ESN). */
  SEQ_IN_HIGHEST = 1,
  PACKETS_IN = 2,
  /** Inner (payload data) bytes. */
  BYTES_IN = 3,
  PACKETS_OUT = 4,
  /** Inner (payload data) bytes. */
  BYTES_OUT = 5,
  DROPS_REPLAY = 6,
  DROPS_AUTH = 7,
  DROPS_MALFORMED = 8,
  DROPS_BAD_PADDING = 9,
  DROPS_SEQ_EXHAUSTED = 10,
  SEQ_SOFT_LIMIT = 11,
  SEQ_HARD_LIMIT = 12,
}
export const COUNTER_COUNT: i32 = 13;

// ---------------------------------------------------------------------------
// Regions.

/** Start of the scratch region: host code writes inputs here for one-shot calls. */
export const SCRATCH_PTR: usize = align16(__heap_base);
export const SCRATCH_SIZE: usize = 1 << 20;

/** Kernel-private work buffers (never meaningful to the host; wiped after use). */
export const WORK_PTR: usize = SCRATCH_PTR + SCRATCH_SIZE;
export const WORK_SIZE: usize = 1024;
/** 256 bytes: four ChaCha20 blocks of keystream. */
export const WORK_KEYSTREAM: usize = WORK_PTR;
/** 16 bytes: AEAD nonce (salt || IV) of the packet being processed. */
export const WORK_NONCE: usize = WORK_PTR + 256;
/** 16 bytes: ESN AAD (SPI || seq-high || seq-low). */
export const WORK_AAD: usize = WORK_PTR + 272;
/** 16 bytes: a zero-padded Poly1305 block. */
export const WORK_BLOCK: usize = WORK_PTR + 288;
/** 16 bytes: computed tag for comparison. */
export const WORK_TAG: usize = WORK_PTR + 304;

/**
 * Bytes of key context in a slot: room for any suite's context (GCM_CTX_SIZE,
 * CHACHAPOLY_CTX_SIZE, CBCHMAC_CTX_SIZE). aead.ts and slots.ts refuse to
 * compile if one outgrows it.
 */
export const KEY_CTX_SIZE: usize = 4096;

/** Largest configurable anti-replay window (packets, power of two). */
export const MAX_REPLAY_WINDOW: u32 = 4096;
export const MIN_REPLAY_WINDOW: u32 = 64;
/** RFC 6479 ring: 64-bit blocks, twice the window so (blocks-1)*64 >= window. */
export const REPLAY_RING_BYTES: usize = (<usize>MAX_REPLAY_WINDOW * 2) / 8;

// Slot layout (offsets from the slot's start). One slot = one SA.
export const SLOT_STATE: usize = 0;       // u32: 0 free, 1 installed
export const SLOT_ALGORITHM: usize = 4;   // u8 Algorithm
export const SLOT_DIRECTION: usize = 5;   // u8 Direction
export const SLOT_ICV_LEN: usize = 6;     // u8: 8, 12, 16 (AEADs) or 16, 24, 32 (HMAC-SHA2)
export const SLOT_FLAGS: usize = 7;       // u8: FLAG_ESN | FLAG_REKEY_NEEDED
export const SLOT_SPI: usize = 8;         // u32, host order
export const SLOT_SALT: usize = 12;       // 4 bytes, wire order (RFC 4106 §4, RFC 7634 §2); zero for CBC
export const SLOT_WINDOW: usize = 16;     // u32: replay window size W (inbound)
export const SLOT_RING_MASK: usize = 20;  // u32: ring blocks - 1
export const SLOT_COUNTERS: usize = 32;   // COUNTER_COUNT x u64, indexed by Counter
export const SLOT_KEY_CTX: usize = 256;   // KEY_CTX_SIZE bytes, 16-byte aligned
export const SLOT_RING: usize = SLOT_KEY_CTX + KEY_CTX_SIZE; // REPLAY_RING_BYTES
export const SLOT_SIZE: usize = align64(SLOT_RING + REPLAY_RING_BYTES);
export const SLOT_COUNT: u32 = 256;
export const SLOTS_PTR: usize = align64(WORK_PTR + WORK_SIZE);

// Batch descriptor: 8 x u32 per packet.
//   +0  offset      in: start of the packet in the arena (encap: inner packet,
//                   at least ESP_HEADROOM bytes after the arena start;
//                   decap: ESP packet starting at the SPI)
//   +4  length      in: bytes at offset
//   +8  slot        in: SA slot index
//   +12 nextHeader  encap in: Next Header for the trailer (4 IPv4, 41 IPv6);
//                   decap out: Next Header from the trailer (59 = dummy, RFC 4303 §2.6)
//   +16 result      out: ResultCode
//   +20 outOffset   out: start of the result in the arena (encap: SPI; decap: inner packet)
//   +24 outLength   out: bytes of the result
//   +28 reserved    zero
export const DESC_OFFSET: usize = 0;
export const DESC_LENGTH: usize = 4;
export const DESC_SLOT: usize = 8;
export const DESC_NEXT_HEADER: usize = 12;
export const DESC_RESULT: usize = 16;
export const DESC_OUT_OFFSET: usize = 20;
export const DESC_OUT_LENGTH: usize = 24;
export const DESC_SIZE: usize = 32;
export const MAX_BATCH: u32 = 256;
export const DESC_PTR: usize = SLOTS_PTR + <usize>SLOT_COUNT * SLOT_SIZE;

/**
 * ESP header bytes put before an inner packet: SPI 4 + seq 4 + IV 8 (RFC 4303
 * §2, RFC 4106 §3). With AES-CBC the IV has 16 bytes (RFC 3602 §3): the
 * payload then moves 8 bytes towards the tail, so that every ESP packet
 * starts ESP_HEADROOM bytes before its inner packet whatever the suite.
 */
export const ESP_HEADROOM: u32 = 16;
/** Most bytes an AEAD appends after an inner packet: pad 3 + pad length 1 + next header 1 + ICV 16. */
export const ESP_TAILROOM_AEAD: u32 = 21;
/**
 * Most bytes any suite appends after an inner packet (what a host must leave
 * free): AES-CBC + HMAC-SHA-512-256 with the 8-byte move, pad 15 (block
 * alignment, RFC 3602 §2.4), pad length 1, next header 1 and ICV 32.
 */
export const ESP_TAILROOM: u32 = 8 + 15 + 2 + 32;

export const ARENA_PTR: usize = align64(DESC_PTR + <usize>MAX_BATCH * DESC_SIZE);
export const ARENA_SIZE: u32 = 4 << 20;
export const LAYOUT_END: usize = ARENA_PTR + <usize>ARENA_SIZE;

// Grow memory once, at instantiation, to hold every region.
const pagesNeeded = <i32>((LAYOUT_END + 0xffff) >>> 16);
if (memory.size() < pagesNeeded) {
  memory.grow(pagesNeeded - memory.size());
}

/** Address of slot `i` (no range check: callers check `i < SLOT_COUNT`). */
// @ts-ignore: decorator
@inline export function slotAddr(i: u32): usize {
  return SLOTS_PTR + <usize>i * SLOT_SIZE;
}

export function scratchPtr(): usize {
  return SCRATCH_PTR;
}

export function scratchSize(): usize {
  return SCRATCH_SIZE;
}

/** Start of the batch descriptor array (MAX_BATCH x DESC_SIZE bytes). */
export function descPtr(): usize {
  return DESC_PTR;
}

/** Start of the packet arena (ARENA_SIZE bytes); descriptor offsets are relative to it. */
export function arenaPtr(): usize {
  return ARENA_PTR;
}

/** First byte past the last region (memory.buffer is at least this long). */
export function layoutEnd(): usize {
  return LAYOUT_END;
}
