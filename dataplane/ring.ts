// A single-producer, single-consumer packet ring in a SharedArrayBuffer: the
// only way packets cross threads in the data plane (architecture §3). Control
// messages (install, delete, counters) travel by postMessage; packets never do.
//
// Who owns what: exactly one thread writes (RingWriter) and exactly one thread
// reads (RingReader) a ring. The writer alone advances HEAD, the reader alone
// advances TAIL; each publishes its index with Atomics.store and wakes the
// other side with Atomics.notify, so cell contents written before a store are
// visible to the other thread after its Atomics.load (sequentially consistent
// atomics order the plain accesses around them).
//
// Layout (byte offsets):
//   0   Int32 HEAD     cells produced (wraps; differences taken modulo 2^32)
//   4   Int32 TAIL     cells consumed
//   8   Int32 READER_WAITS  waits of the reader on HEAD in progress
//   12  Int32 WRITER_WAITS  waits of the writer on TAIL (ring full) in progress
//   64  cells          capacity x cellSize bytes; capacity a power of two
// A side notifies only when the other announced it sleeps: it stores its
// index, then loads the count; the sleeper raises the count, then re-checks
// the index (Atomics are sequentially consistent, so one sees the other).
// A cell: u16 length | u16 outer | u16 slot | u8 kind | u8 tag | payload
// (cellSize - 8 bytes; a payload is shorter than 65536 bytes).
// `slot` names an SA slot of the worker's kernel, `tag` its installation
// generation (so a cell queued for an SA that was deleted meanwhile is
// recognised and dropped, never processed with the slot's next SA), `kind`
// says what the payload is (CellKind). `outer` is the packet's outer header
// as it crosses (dataplane/outer-header.ts): on a DECAP cell the outer TOS /
// Traffic Class the ESP arrived with, as udpRecv reports it (RECV_TOS_VALID
// set, else 0: none known); on an ESP cell the send word the I/O thread
// sends it with (0: the socket's defaults); 0 on the others.
//
// Bounded (architecture §4.6): a full ring refuses the packet; the caller counts the
// drop. Nothing grows.
import { DEFAULT_CELL_SIZE, DEFAULT_RING_CAPACITY } from './defaults.js';

/** What a cell carries. Values are shared by both sides of a ring. */
export const CellKind = {
  /** I/O -> worker: inner packet to encapsulate with the outbound SA in `slot`. */
  ENCAP: 1,
  /** I/O -> worker: ESP packet (from the SPI) for the inbound SA in `slot`. */
  DECAP: 2,
  /** worker -> I/O: ESP packet produced by the outbound SA in `slot`, to send to its peer. */
  ESP: 3,
  /** worker -> I/O: inner packet decapsulated by the inbound SA in `slot`, to deliver. */
  INNER: 4,
} as const;
export type CellKind = (typeof CellKind)[keyof typeof CellKind];

export const RING_HEADER_BYTES = 64;
export const CELL_HEADER_BYTES = 8;
const HEAD = 0;
const TAIL = 1;
const READER_WAITS = 2;
const WRITER_WAITS = 3;


interface AtomicsWithWaitAsync {
  waitAsync(view: Int32Array, index: number, value: number, timeout?: number): { async: boolean; value: Promise<string> | string };
}
/** Atomics with waitAsync (Node 20 has it; the TypeScript library this project targets does not declare it). */
export const atomics = Atomics as unknown as typeof Atomics & AtomicsWithWaitAsync;

/** The shared memory of one ring and its geometry; structured-clonable, so it can be posted to a worker. */
export interface RingBuffer {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  readonly cellSize: number;
}

/** Allocate a ring: `capacity` cells (a power of two, 2..65536) of `cellSize` bytes (a multiple of 8, 64..65536). */
export function createRing(capacity = DEFAULT_RING_CAPACITY, cellSize = DEFAULT_CELL_SIZE): RingBuffer {
  if (!Number.isInteger(capacity) || capacity < 2 || capacity > 65536 || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError('ring capacity must be a power of two from 2 to 65536');
  }
  if (!Number.isInteger(cellSize) || cellSize < 64 || cellSize > 65536 || cellSize % 8 !== 0) {
    throw new RangeError('ring cellSize must be a multiple of 8 from 64 to 65536');
  }
  return { sab: new SharedArrayBuffer(RING_HEADER_BYTES + capacity * cellSize), capacity, cellSize };
}

function checkRing(ring: RingBuffer): void {
  if (!(ring?.sab instanceof SharedArrayBuffer) || ring.sab.byteLength !== RING_HEADER_BYTES + ring.capacity * ring.cellSize) {
    throw new TypeError('not a ring buffer (createRing)');
  }
}

/** State common to both ends: views and geometry. */
abstract class RingEnd {
  protected readonly ctrl: Int32Array;
  /** Cell bytes; a cell starts at cellOffset(i). */
  readonly bytes: Uint8Array;
  protected readonly words: Uint32Array;
  readonly capacity: number;
  readonly cellSize: number;
  /** Largest payload a cell holds. */
  readonly maxPayload: number;
  protected readonly mask: number;

  constructor(ring: RingBuffer) {
    checkRing(ring);
    this.ctrl = new Int32Array(ring.sab, 0, 4);
    this.bytes = new Uint8Array(ring.sab, RING_HEADER_BYTES, ring.capacity * ring.cellSize);
    this.words = new Uint32Array(ring.sab, RING_HEADER_BYTES, (ring.capacity * ring.cellSize) >>> 2);
    this.capacity = ring.capacity;
    this.cellSize = ring.cellSize;
    this.maxPayload = ring.cellSize - CELL_HEADER_BYTES;
    this.mask = ring.capacity - 1;
  }

  /** Cells written and not yet consumed (as seen now). */
  get used(): number {
    return (Atomics.load(this.ctrl, HEAD) - Atomics.load(this.ctrl, TAIL)) >>> 0;
  }
}

/**
 * One wake-up word shared by the writers of several rings and the one reader
 * of them all (the I/O thread over every worker's out ring): each publish()
 * rings it, and the reader sleeps on it alone instead of on every ring. Word 0
 * counts rings, word 1 the reader's waits in progress (the same handshake as
 * a ring's HEAD and READER_WAITS).
 */
export class Doorbell {
  private readonly words: Int32Array;

  constructor(readonly sab: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength !== 8) throw new TypeError('not a doorbell buffer');
    this.words = new Int32Array(sab);
  }

  /** Writers: something was published; wake the reader if it sleeps. */
  ring(): void {
    Atomics.add(this.words, 0, 1);
    if (Atomics.load(this.words, 1) !== 0) Atomics.notify(this.words, 0);
  }

  /** Reader: the count to pass to wait(), taken before checking the rings. */
  value(): number {
    return Atomics.load(this.words, 0);
  }

  /** Reader: resolve once the bell rang after value() returned `seen`, or after `timeoutMs`. */
  async wait(seen: number, timeoutMs: number): Promise<void> {
    Atomics.add(this.words, 1, 1);
    try {
      if (Atomics.load(this.words, 0) !== seen) return;
      const r = atomics.waitAsync(this.words, 0, seen, timeoutMs);
      if (r.async) await r.value;
    } finally {
      Atomics.sub(this.words, 1, 1);
    }
  }
}

/** The producing end. Stage cells with push(), make them visible with publish(). */
export class RingWriter extends RingEnd {
  /** Local HEAD including staged, unpublished cells. */
  private head: number;
  /** TAIL as last loaded (refreshed only when the ring looks full). */
  private tailSeen: number;

  /** `doorbell`: rung on every publish, for a reader that waits on many rings at once (or a worker's bell, worker-bell.ts). */
  constructor(ring: RingBuffer, private readonly doorbell?: { ring(): void }) {
    super(ring);
    this.head = Atomics.load(this.ctrl, HEAD);
    this.tailSeen = Atomics.load(this.ctrl, TAIL);
  }

  /** Cells that can be staged right now. */
  free(): number {
    this.tailSeen = Atomics.load(this.ctrl, TAIL);
    return this.capacity - ((this.head - this.tailSeen) >>> 0);
  }

  /**
   * Reserve the next cell for a payload of `length` bytes and return the byte
   * offset (in `bytes`) where the payload goes, or -1 when the ring is full or
   * the payload does not fit a cell. The cell is staged: commit it with
   * publish() after writing the payload.
   */
  stage(length: number, slot: number, kind: CellKind, tag: number, outer = 0): number {
    if (length > this.maxPayload || length < 0) return -1;
    if (((this.head - this.tailSeen) >>> 0) >= this.capacity) {
      this.tailSeen = Atomics.load(this.ctrl, TAIL);
      if (((this.head - this.tailSeen) >>> 0) >= this.capacity) return -1;
    }
    const cell = (this.head & this.mask) * this.cellSize;
    const w = cell >>> 2;
    this.words[w] = length | ((outer & 0xffff) << 16);
    this.words[w + 1] = (slot & 0xffff) | ((kind & 0xff) << 16) | ((tag & 0xff) << 24);
    this.head = (this.head + 1) | 0;
    return cell + CELL_HEADER_BYTES;
  }

  /** Stage a copy of `payload` (with its `outer` word, see the header); false when the ring is full or the payload too long. */
  push(payload: Uint8Array, slot: number, kind: CellKind, tag: number, outer = 0): boolean {
    const at = this.stage(payload.length, slot, kind, tag, outer);
    if (at < 0) return false;
    this.bytes.set(payload, at);
    return true;
  }

  /** Cells staged since the last publish(). */
  get staged(): number {
    return (this.head - Atomics.load(this.ctrl, HEAD)) >>> 0;
  }

  /** Make staged cells visible to the reader and wake it. */
  publish(): void {
    if (Atomics.load(this.ctrl, HEAD) === this.head) return;
    Atomics.store(this.ctrl, HEAD, this.head);
    if (Atomics.load(this.ctrl, READER_WAITS) !== 0) Atomics.notify(this.ctrl, HEAD);
    this.doorbell?.ring();
  }

  /** Resolve when the reader has consumed a cell (or after `timeoutMs`). */
  async waitForSpace(timeoutMs: number): Promise<void> {
    Atomics.add(this.ctrl, WRITER_WAITS, 1);
    try {
      const tail = Atomics.load(this.ctrl, TAIL);
      if (((this.head - tail) >>> 0) < this.capacity) return;
      const r = atomics.waitAsync(this.ctrl, TAIL, tail, timeoutMs);
      if (r.async) await r.value;
    } finally {
      Atomics.sub(this.ctrl, WRITER_WAITS, 1);
    }
  }
}

/** The consuming end. Read cells 0..available()-1 with the accessors, then release(). */
export class RingReader extends RingEnd {
  private tail: number;

  constructor(ring: RingBuffer) {
    super(ring);
    this.tail = Atomics.load(this.ctrl, TAIL);
  }

  /** Cells published and not yet released. */
  available(): number {
    return (Atomics.load(this.ctrl, HEAD) - this.tail) >>> 0;
  }

  /** Byte offset (in `bytes`) of the payload of the i-th unreleased cell. */
  payloadOffset(i: number): number {
    return ((this.tail + i) & this.mask) * this.cellSize + CELL_HEADER_BYTES;
  }

  /** Payload length of the i-th unreleased cell. */
  length(i: number): number {
    return this.words[(((this.tail + i) & this.mask) * this.cellSize) >>> 2]! & 0xffff;
  }

  /** The outer header word of the i-th unreleased cell (see the header: outer TOS in, send word out). */
  outer(i: number): number {
    return this.words[(((this.tail + i) & this.mask) * this.cellSize) >>> 2]! >>> 16;
  }

  /** Slot, kind and tag of the i-th unreleased cell, packed: slot | kind << 16 | tag << 24. */
  meta(i: number): number {
    return this.words[((((this.tail + i) & this.mask) * this.cellSize) >>> 2) + 1]!;
  }

  /** A view (not a copy) of the i-th unreleased cell's payload; valid until release(). */
  payload(i: number): Uint8Array {
    const at = this.payloadOffset(i);
    return this.bytes.subarray(at, at + this.length(i));
  }

  /** Give `n` cells back to the writer and wake it if it waits for space. */
  release(n: number): void {
    if (n <= 0) return;
    this.tail = (this.tail + n) | 0;
    Atomics.store(this.ctrl, TAIL, this.tail);
    if (Atomics.load(this.ctrl, WRITER_WAITS) !== 0) Atomics.notify(this.ctrl, TAIL);
  }

  /** Wake a waitForData() in progress (e.g. to make the reader notice a stop request). */
  wake(): void {
    Atomics.notify(this.ctrl, HEAD);
  }

  /**
   * Resolve when a cell is available, or after `timeoutMs`. Uses
   * Atomics.waitAsync, so the thread's event loop (its control messages) keeps
   * running while it waits.
   */
  async waitForData(timeoutMs: number): Promise<void> {
    Atomics.add(this.ctrl, READER_WAITS, 1);
    try {
      const head = Atomics.load(this.ctrl, HEAD);
      if (head !== this.tail) return;
      const r = atomics.waitAsync(this.ctrl, HEAD, head, timeoutMs);
      if (r.async) await r.value;
    } finally {
      Atomics.sub(this.ctrl, READER_WAITS, 1);
    }
  }
}

/** Unpack meta(): the SA slot. */
export function metaSlot(meta: number): number {
  return meta & 0xffff;
}
/** Unpack meta(): the cell kind. */
export function metaKind(meta: number): number {
  return (meta >>> 16) & 0xff;
}
/** Unpack meta(): the slot's generation tag. */
export function metaTag(meta: number): number {
  return meta >>> 24;
}
