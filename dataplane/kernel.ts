// EspKernel: the TypeScript face of the wasm ESP kernel (wasm/build/esp.wasm).
//
// Who owns what (architecture §4.1): an EspKernel instance, with its linear memory,
// belongs to exactly one thread — the data-plane worker that instantiated it.
// That worker is the only writer of its SA slots, so each SA's outbound
// sequence counter and inbound replay window have a single writer and need no
// synchronisation. Other threads talk to the worker by messages ("install",
// "delete", "rekey soon"), never to the kernel's memory. The compiled
// WebAssembly.Module, unlike an instance, may be shared between threads.
//
// Memory map, result codes, counters and descriptor fields are defined once,
// in wasm/layout.ts; this wrapper mirrors the numbers and checks them against
// the module's exported globals when it loads, so a drift fails loudly.
//
// Hot path: fill `arena` and `descriptors`, call encapBatch/decapBatch, read the
// results back from `descriptors`. encap()/decap() copy one packet in and out
// and are meant for tests and the control plane.
import { randomFillSync } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_REPLAY_WINDOW, KERNEL_SLOT_COUNT } from './defaults.js';
import { Wasm, type WasmGlobal, type WasmInstance, type WasmMemory, type WasmModule } from './kernel-wasm.js';

/** Layout version this wrapper speaks (wasm/index.ts ABI_VERSION). */
export const ESP_ABI_VERSION = 1;

/** Per-packet and control-call results (wasm/layout.ts ResultCode). Success is <= OK_REKEY_NEEDED. */
export const ResultCode = {
  OK: 0,
  OK_REKEY_NEEDED: 1,
  REPLAY: 2,
  AUTH_FAILED: 3,
  MALFORMED: 4,
  BAD_PADDING: 5,
  SEQ_EXHAUSTED: 6,
  NO_SLOT: 7,
  WRONG_DIRECTION: 8,
  SPI_MISMATCH: 9,
  BAD_DESCRIPTOR: 10,
  INVALID_ARGUMENT: 11,
  SLOT_IN_USE: 12,
} as const;
export type ResultCode = (typeof ResultCode)[keyof typeof ResultCode];

/** Name of a result code, for logs and errors. */
export function resultName(code: number): string {
  for (const [name, value] of Object.entries(ResultCode)) if (value === code) return name;
  return `RESULT_${code}`;
}

/** Whether a per-packet result means the packet was processed. */
export function isSuccess(code: number): boolean {
  return code === ResultCode.OK || code === ResultCode.OK_REKEY_NEEDED;
}

/** Slot counter ids (wasm/layout.ts Counter). */
const Counter = {
  SEQ_OUT_NEXT: 0,
  SEQ_IN_HIGHEST: 1,
  PACKETS_IN: 2,
  BYTES_IN: 3,
  PACKETS_OUT: 4,
  BYTES_OUT: 5,
  DROPS_REPLAY: 6,
  DROPS_AUTH: 7,
  DROPS_MALFORMED: 8,
  DROPS_BAD_PADDING: 9,
  DROPS_SEQ_EXHAUSTED: 10,
  SEQ_SOFT_LIMIT: 11,
  SEQ_HARD_LIMIT: 12,
} as const;

/**
 * Algorithm ids (wasm/layout.ts Algorithm), the key material the caller gives
 * (AEADs: key || 4-byte salt; AES-CBC + HMAC-SHA2: AES key || HMAC key, RFC
 * 4868 §2.1.1) and, for AES-CBC, the one ICV length allowed (RFC 4868 §2.3).
 */
const ALGORITHMS = {
  'aes-gcm-128': { id: 1, wasmName: 'AES_GCM_128', materialBytes: 20, cbcIcv: 0 },
  'aes-gcm-256': { id: 2, wasmName: 'AES_GCM_256', materialBytes: 36, cbcIcv: 0 },
  'chacha20-poly1305': { id: 3, wasmName: 'CHACHA20_POLY1305', materialBytes: 36, cbcIcv: 0 },
  'aes-cbc-128-hmac-sha2-256-128': { id: 4, wasmName: 'AES_CBC_128_HMAC_SHA2_256_128', materialBytes: 48, cbcIcv: 16 },
  'aes-cbc-128-hmac-sha2-384-192': { id: 5, wasmName: 'AES_CBC_128_HMAC_SHA2_384_192', materialBytes: 64, cbcIcv: 24 },
  'aes-cbc-128-hmac-sha2-512-256': { id: 6, wasmName: 'AES_CBC_128_HMAC_SHA2_512_256', materialBytes: 80, cbcIcv: 32 },
  'aes-cbc-256-hmac-sha2-256-128': { id: 7, wasmName: 'AES_CBC_256_HMAC_SHA2_256_128', materialBytes: 64, cbcIcv: 16 },
  'aes-cbc-256-hmac-sha2-384-192': { id: 8, wasmName: 'AES_CBC_256_HMAC_SHA2_384_192', materialBytes: 80, cbcIcv: 24 },
  'aes-cbc-256-hmac-sha2-512-256': { id: 9, wasmName: 'AES_CBC_256_HMAC_SHA2_512_256', materialBytes: 96, cbcIcv: 32 },
} as const;
export type EspAlgorithm = keyof typeof ALGORITHMS;
/** Bytes of the per-SA IV key appended for AES-CBC, drawn here from the CSPRNG (wasm/cbchmac.ts). */
const CBC_IV_KEY_BYTES = 16;
/** Bytes at the start of the scratch region that carry key material (wasm/slots.ts SCRATCH_KEY_BYTES). */
const SCRATCH_KEY_BYTES = 128;

const DIRECTION_OUT = 1;
const DIRECTION_IN = 2;
const FLAG_ESN = 1;

/** Descriptor: DESC_WORDS u32 words per packet; field indexes (wasm/layout.ts "Batch descriptor"). */
export const DESC_WORDS = 8;
export const Desc = {
  OFFSET: 0,
  LENGTH: 1,
  SLOT: 2,
  NEXT_HEADER: 3,
  RESULT: 4,
  OUT_OFFSET: 5,
  OUT_LENGTH: 6,
} as const;

/** IP protocol numbers for the Next Header field in tunnel mode (RFC 4303 §2.6). */
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;
export const NEXT_HEADER_NONE = 59;

const SEQ32_MAX = 0xffff_ffffn;
const SEQ64_MAX = 0xffff_ffff_ffff_ffffn;
/** Where encap()/decap() place their single packet in the arena. */
const ONE_PACKET_OFFSET = 64;

export interface SaParams {
  algorithm: EspAlgorithm;
  /**
   * AEADs: key || 4-byte salt (RFC 4106 §4, RFC 7634 §2): 20 bytes for AES-128, 36 otherwise.
   * AES-CBC + HMAC-SHA2: AES key (16/32) || HMAC key (32/48/64, RFC 4868 §2.1.1). Zeroed by installSa.
   */
  keyMaterial: Uint8Array;
  /** SPI in host order; 256..2^32-1 (RFC 4303 §2.1). */
  spi: number;
  direction: 'out' | 'in';
  /** Extended (64-bit) sequence numbers (RFC 4303 §2.2.1). */
  esn: boolean;
  /**
   * ICV bytes: 16 (default); 8 or 12 allowed for AES-GCM (RFC 4106 §8.1). AES-CBC: the HMAC's
   * half length, 16/24/32 (RFC 4868 §2.3), its default and only value.
   */
  icvLength?: 8 | 12 | 16 | 24 | 32;
  /** Inbound anti-replay window in packets: a power of two, 64..4096 (default 1024). */
  replayWindow?: number;
  /** Sequence number from which the SA reports "rekey needed" (default 15/16 of the hard limit). */
  seqSoftLimit?: bigint | number;
  /** Last sequence number sent or accepted (default 2^32-1, or 2^64-1 with ESN). */
  seqHardLimit?: bigint | number;
  /** Outbound: first number sent (default 1). Inbound: first number expected. */
  initialSeq?: bigint | number;
}

export interface SaCounters {
  nextSeqOut: bigint;
  highestSeqIn: bigint;
  packetsIn: bigint;
  bytesIn: bigint;
  packetsOut: bigint;
  bytesOut: bigint;
  dropsReplay: bigint;
  dropsAuth: bigint;
  dropsMalformed: bigint;
  dropsBadPadding: bigint;
  dropsSeqExhausted: bigint;
  seqSoftLimit: bigint;
  seqHardLimit: bigint;
  rekeyNeeded: boolean;
}

export interface DecapResult {
  result: ResultCode;
  /** Next Header of the inner packet (4 IPv4, 41 IPv6, 59 dummy); 0 unless successful. */
  nextHeader: number;
  /** A copy of the inner packet; null unless successful. */
  payload: Uint8Array | null;
}

/** The raw exports of esp.wasm (pointers and lengths are byte offsets into `memory`). */
export interface EspExports {
  memory: WasmMemory;
  abiVersion(): number;
  scratchPtr(): number;
  scratchSize(): number;
  descPtr(): number;
  arenaPtr(): number;
  layoutEnd(): number;
  chacha20Blocks4(key: number, nonce: number, counter: number, out: number): void;
  chacha20Xor(key: number, nonce: number, counter: number, data: number, len: number): void;
  poly1305Mac(out: number, key: number, msg: number, len: number): void;
  chachaPolyInit(ctx: number, key: number, keyLen: number): void;
  chachaPolySeal(ctx: number, nonce: number, aad: number, aadLen: number, data: number, dataLen: number, tag: number, tagLen: number): void;
  chachaPolyOpen(ctx: number, nonce: number, aad: number, aadLen: number, data: number, dataLen: number, tag: number, tagLen: number): number;
  chachaPolyWipe(ctx: number): void;
  slotInstall(
    slot: number, algorithm: number, direction: number, spi: number, flags: number, icvLen: number,
    window: number, initialSeq: bigint, softLimit: bigint, hardLimit: bigint, keyMaterialLen: number,
  ): number;
  slotDelete(slot: number): number;
  slotCounter(slot: number, id: number): bigint;
  slotRekeyNeeded(slot: number): number;
  slotPtr(slot: number): number;
  slotSetNextSeqOut(slot: number, seq: bigint): number;
  encapBatch(count: number): number;
  decapBatch(count: number): number;
  [name: string]: unknown;
}

/** Thrown for misuse of the kernel by local code (never for untrusted packet bytes). */
export class EspKernelError extends Error {
  constructor(readonly result: ResultCode | number, message: string) {
    super(message);
    this.name = 'EspKernelError';
  }
}

/**
 * Path of wasm/build/esp.wasm: walk up from this file to the folder holding
 * package.json, so it resolves from the sources (vitest) and from dist/.
 */
export function espWasmPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'wasm', 'build', 'esp.wasm');
    const parent = dirname(dir);
    if (parent === dir) throw new Error('esp.wasm: no package.json above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

let compiled: Promise<WasmModule> | undefined;

/** Compile esp.wasm once per thread; the Module may be posted to workers. */
export function compileEspModule(): Promise<WasmModule> {
  compiled ??= Wasm.compile(readFileSync(espWasmPath()));
  return compiled;
}

function globalValue(exports: EspExports, name: string): number {
  const g = exports[name];
  if (!(g instanceof Wasm.Global)) throw new Error(`esp.wasm does not export ${name}`);
  return Number((g as WasmGlobal).value);
}

function toU64(value: bigint | number, what: string): bigint {
  const v = typeof value === 'bigint' ? value : Number.isSafeInteger(value) ? BigInt(value) : -1n;
  if (v < 0n || v > SEQ64_MAX) throw new RangeError(`${what} must be an integer in [0, 2^64-1]`);
  return v;
}

export class EspKernel {
  readonly exports: EspExports;
  /** Number of SA slots (0..slotCount-1). */
  readonly slotCount: number;
  /** Most descriptors one batch call processes. */
  readonly maxBatch: number;
  /** Bytes the ESP header needs before an inner packet (encap). */
  readonly headroom: number;
  /** Bytes padding, trailer and ICV may need after an inner packet (encap). */
  readonly tailroom: number;
  /** Bytes of one slot (for reading it in tests). */
  readonly slotSize: number;
  /** Largest replay window an SA may have. */
  readonly maxReplayWindow: number;
  private memory!: Uint8Array;
  private arenaView!: Uint8Array;
  private descView!: Uint32Array;

  private constructor(instance: WasmInstance) {
    const exports = instance.exports as unknown as EspExports;
    this.exports = exports;
    if (exports.abiVersion() !== ESP_ABI_VERSION) {
      throw new Error(`esp.wasm ABI ${exports.abiVersion()}, wrapper expects ${ESP_ABI_VERSION}`);
    }
    for (const [name, value] of Object.entries(ResultCode)) {
      if (globalValue(exports, `ResultCode.${name}`) !== value) throw new Error(`esp.wasm ResultCode.${name} differs`);
    }
    for (const [name, value] of Object.entries(Counter)) {
      if (globalValue(exports, `Counter.${name}`) !== value) throw new Error(`esp.wasm Counter.${name} differs`);
    }
    for (const a of Object.values(ALGORITHMS)) {
      if (globalValue(exports, `Algorithm.${a.wasmName}`) !== a.id) throw new Error(`esp.wasm Algorithm.${a.wasmName} differs`);
    }
    if (globalValue(exports, 'Direction.OUT') !== DIRECTION_OUT || globalValue(exports, 'Direction.IN') !== DIRECTION_IN) {
      throw new Error('esp.wasm Direction differs');
    }
    if (globalValue(exports, 'DESC_SIZE') !== DESC_WORDS * 4) throw new Error('esp.wasm DESC_SIZE differs');
    for (const [name, word] of Object.entries(Desc)) {
      if (globalValue(exports, `DESC_${name}`) !== word * 4) throw new Error(`esp.wasm DESC_${name} differs`);
    }
    if (exports.memory.buffer.byteLength < exports.layoutEnd()) throw new Error('esp.wasm could not grow its memory');
    this.slotCount = globalValue(exports, 'SLOT_COUNT');
    // The I/O side allocates slots without asking the worker (sad.ts): its count must be the kernel's.
    if (this.slotCount !== KERNEL_SLOT_COUNT) throw new Error('esp.wasm SLOT_COUNT differs');
    this.maxBatch = globalValue(exports, 'MAX_BATCH');
    this.headroom = globalValue(exports, 'ESP_HEADROOM');
    this.tailroom = globalValue(exports, 'ESP_TAILROOM');
    this.slotSize = globalValue(exports, 'SLOT_SIZE');
    this.maxReplayWindow = globalValue(exports, 'MAX_REPLAY_WINDOW');
    this.refreshViews();
  }

  /** Instantiate a kernel (compiling esp.wasm on first use unless a Module is given). */
  static async create(module?: WasmModule): Promise<EspKernel> {
    const instance = await Wasm.instantiate(module ?? (await compileEspModule()), {});
    return new EspKernel(instance);
  }

  /** Synchronous variant for worker start-up with a Module received from the main thread. */
  static createSync(module: WasmModule): EspKernel {
    return new EspKernel(new Wasm.Instance(module, {}));
  }

  /** The packet arena: descriptor offsets are relative to its start. */
  get arena(): Uint8Array {
    this.refreshViews();
    return this.arenaView;
  }

  /** Descriptor words: packet i's field f is descriptors[i * DESC_WORDS + Desc.f]. */
  get descriptors(): Uint32Array {
    this.refreshViews();
    return this.descView;
  }

  /** The whole linear memory (tests, diagnostics). */
  get memoryBytes(): Uint8Array {
    this.refreshViews();
    return this.memory;
  }

  /** Views go stale only if memory grew, which the kernel never does after start; check anyway. */
  private refreshViews(): void {
    const buffer = this.exports.memory.buffer;
    if (this.memory?.buffer === buffer) return;
    this.memory = new Uint8Array(buffer);
    this.arenaView = new Uint8Array(buffer, this.exports.arenaPtr(), globalValue(this.exports, 'ARENA_SIZE'));
    this.descView = new Uint32Array(buffer, this.exports.descPtr(), this.maxBatch * DESC_WORDS);
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slotCount) {
      throw new RangeError(`slot must be an integer in [0, ${this.slotCount - 1}]`);
    }
  }

  /**
   * Install an SA in a free slot. The key material is copied into the
   * kernel's scratch region, moved into the slot by the kernel, and then
   * zeroed in the scratch region and in `params.keyMaterial`, whatever the outcome.
   */
  installSa(slot: number, params: SaParams): void {
    const key = params.keyMaterial;
    const scratch = this.exports.scratchPtr();
    try {
      this.checkSlot(slot);
      const alg = ALGORITHMS[params.algorithm];
      if (alg === undefined) throw new TypeError(`unknown algorithm ${String(params.algorithm)}`);
      if (!(key instanceof Uint8Array) || key.length !== alg.materialBytes) {
        const what = alg.cbcIcv === 0 ? 'key || salt' : 'AES key || HMAC key';
        throw new RangeError(`${params.algorithm} key material must be ${alg.materialBytes} bytes (${what})`);
      }
      if (!Number.isInteger(params.spi) || params.spi < 256 || params.spi > 0xffff_ffff) {
        throw new RangeError('spi must be an integer in [256, 2^32-1] (RFC 4303 §2.1)');
      }
      if (params.direction !== 'out' && params.direction !== 'in') throw new TypeError('direction must be out or in');
      const icv = params.icvLength ?? (alg.cbcIcv === 0 ? 16 : alg.cbcIcv);
      const window = params.direction === 'in' ? (params.replayWindow ?? DEFAULT_REPLAY_WINDOW) : 0;
      const hard = toU64(params.seqHardLimit ?? (params.esn ? SEQ64_MAX : SEQ32_MAX), 'seqHardLimit');
      const soft = toU64(params.seqSoftLimit ?? hard - (hard >> 4n), 'seqSoftLimit');
      const initial = toU64(params.initialSeq ?? 1, 'initialSeq');
      this.refreshViews();
      this.memory.set(key, scratch);
      // AES-CBC: a fresh random IV key per SA, from which the kernel derives
      // unpredictable IVs (RFC 3602 §2.1; wasm/cbchmac.ts says why).
      const ivKeyBytes = alg.cbcIcv === 0 ? 0 : CBC_IV_KEY_BYTES;
      if (ivKeyBytes > 0) randomFillSync(this.memory, scratch + key.length, ivKeyBytes);
      const result = this.exports.slotInstall(
        slot, alg.id, params.direction === 'out' ? DIRECTION_OUT : DIRECTION_IN, params.spi >>> 0,
        params.esn ? FLAG_ESN : 0, icv, window, initial, soft, hard, key.length + ivKeyBytes,
      );
      if (result !== ResultCode.OK) {
        throw new EspKernelError(result, `installSa(${slot}): ${resultName(result)}`);
      }
    } finally {
      this.refreshViews();
      this.memory.fill(0, scratch, scratch + SCRATCH_KEY_BYTES);
      if (key instanceof Uint8Array) key.fill(0);
    }
  }

  /** Delete an SA: the kernel zeroes the whole slot, key context included. */
  deleteSa(slot: number): void {
    this.checkSlot(slot);
    this.exports.slotDelete(slot);
  }

  /**
   * A batch count must be an integer in [0, maxBatch]. Checked here because
   * the wasm parameter is a u32: -1 or 2^32-1 would arrive as a huge count,
   * and any count past the descriptors just filled would re-process stale
   * ones (re-encrypting a sent packet spends a sequence number). The kernel
   * also refuses counts past MAX_BATCH (wasm/batch.ts).
   */
  private checkCount(count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > this.maxBatch) {
      throw new RangeError(`batch count must be an integer in [0, ${this.maxBatch}]`);
    }
  }

  /** Encapsulate descriptors 0..count-1 (count in [0, maxBatch]); returns how many succeeded. */
  encapBatch(count: number): number {
    this.checkCount(count);
    return this.exports.encapBatch(count);
  }

  /** Decapsulate descriptors 0..count-1 (count in [0, maxBatch]); returns how many succeeded. */
  decapBatch(count: number): number {
    this.checkCount(count);
    return this.exports.decapBatch(count);
  }

  /** Fill descriptor i's inputs (offset into the arena, length, slot, next header for encap). */
  setDescriptor(i: number, offset: number, length: number, slot: number, nextHeader = 0): void {
    const d = this.descriptors;
    const base = i * DESC_WORDS;
    d[base + Desc.OFFSET] = offset;
    d[base + Desc.LENGTH] = length;
    d[base + Desc.SLOT] = slot;
    d[base + Desc.NEXT_HEADER] = nextHeader;
  }

  /** Descriptor i's outputs after a batch call. */
  descriptorOutput(i: number): { result: ResultCode; outOffset: number; outLength: number; nextHeader: number } {
    const d = this.descriptors;
    const base = i * DESC_WORDS;
    return {
      result: d[base + Desc.RESULT] as ResultCode,
      outOffset: d[base + Desc.OUT_OFFSET]!,
      outLength: d[base + Desc.OUT_LENGTH]!,
      nextHeader: d[base + Desc.NEXT_HEADER]!,
    };
  }

  /**
   * Encapsulate one inner packet with the outbound SA in `slot`; returns a copy
   * of the ESP packet (SPI .. ICV). Past the soft limit the packet is still
   * sent and rekeyNeeded(slot) turns true. Throws EspKernelError on a refusal
   * (e.g. SEQ_EXHAUSTED at the hard limit), RangeError if it does not fit the arena.
   */
  encap(slot: number, innerPacket: Uint8Array, nextHeader = NEXT_HEADER_IPV4): Uint8Array {
    const arena = this.arena;
    if (ONE_PACKET_OFFSET + innerPacket.length + this.tailroom > arena.length) {
      throw new RangeError('packet does not fit the arena');
    }
    arena.set(innerPacket, ONE_PACKET_OFFSET);
    this.setDescriptor(0, ONE_PACKET_OFFSET, innerPacket.length, slot, nextHeader);
    this.exports.encapBatch(1);
    const out = this.descriptorOutput(0);
    if (!isSuccess(out.result)) throw new EspKernelError(out.result, `encap(${slot}): ${resultName(out.result)}`);
    return arena.slice(out.outOffset, out.outOffset + out.outLength);
  }

  /** Decapsulate one ESP packet (from the SPI) with the inbound SA in `slot`. Never throws on packet contents. */
  decap(slot: number, espPacket: Uint8Array): DecapResult {
    const arena = this.arena;
    if (ONE_PACKET_OFFSET + espPacket.length > arena.length) {
      return { result: ResultCode.MALFORMED, nextHeader: 0, payload: null };
    }
    arena.set(espPacket, ONE_PACKET_OFFSET);
    this.setDescriptor(0, ONE_PACKET_OFFSET, espPacket.length, slot);
    this.exports.decapBatch(1);
    const out = this.descriptorOutput(0);
    if (!isSuccess(out.result)) return { result: out.result, nextHeader: 0, payload: null };
    return { result: out.result, nextHeader: out.nextHeader, payload: arena.slice(out.outOffset, out.outOffset + out.outLength) };
  }

  /** Sequence numbers, traffic and drop counters of the SA in `slot` (zeros for a free slot). */
  counters(slot: number): SaCounters {
    this.checkSlot(slot);
    const c = (id: number): bigint => BigInt.asUintN(64, this.exports.slotCounter(slot, id));
    return {
      nextSeqOut: c(Counter.SEQ_OUT_NEXT),
      highestSeqIn: c(Counter.SEQ_IN_HIGHEST),
      packetsIn: c(Counter.PACKETS_IN),
      bytesIn: c(Counter.BYTES_IN),
      packetsOut: c(Counter.PACKETS_OUT),
      bytesOut: c(Counter.BYTES_OUT),
      dropsReplay: c(Counter.DROPS_REPLAY),
      dropsAuth: c(Counter.DROPS_AUTH),
      dropsMalformed: c(Counter.DROPS_MALFORMED),
      dropsBadPadding: c(Counter.DROPS_BAD_PADDING),
      dropsSeqExhausted: c(Counter.DROPS_SEQ_EXHAUSTED),
      seqSoftLimit: c(Counter.SEQ_SOFT_LIMIT),
      seqHardLimit: c(Counter.SEQ_HARD_LIMIT),
      rekeyNeeded: this.rekeyNeeded(slot),
    };
  }

  /** Whether the SA in `slot` passed its soft sequence limit (RFC 4303 §3.3.3): the control plane should rekey. */
  rekeyNeeded(slot: number): boolean {
    this.checkSlot(slot);
    return this.exports.slotRekeyNeeded(slot) !== 0;
  }

  /**
   * Benchmark hook, never for real traffic: set the next outbound sequence
   * number of the SA in `slot`, to model one SA whose counter several workers
   * share (bench/scale.ts). Cloning exists to make this unnecessary.
   * The kernel refuses (EspKernelError) a free or inbound slot, a number below
   * the current next one and one past the hard limit: the IV is the sequence
   * number, and reusing it under the same key breaks AES-GCM and
   * ChaCha20-Poly1305 (RFC 4106 §3.1, RFC 7634 §2). Callers that reserve
   * numbers from a shared counter start it at 1 and only move forward.
   */
  setNextSeqOut(slot: number, seq: bigint): void {
    this.checkSlot(slot);
    const result = this.exports.slotSetNextSeqOut(slot, toU64(seq, 'seq'));
    if (result !== ResultCode.OK) {
      throw new EspKernelError(result, `setNextSeqOut(${slot}, ${seq}): ${resultName(result)}`);
    }
  }

  /** A copy of the slot's bytes (to check that deleteSa wiped it). */
  slotBytes(slot: number): Uint8Array {
    this.checkSlot(slot);
    const ptr = this.exports.slotPtr(slot);
    return this.memoryBytes.slice(ptr, ptr + this.slotSize);
  }
}
