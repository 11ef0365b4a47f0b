// A worker's own input: the socket of the steered NAT-T port that the kernel
// fills with the ESP of this worker's SAs (io/esp-steering.ts: the SPI names
// the worker). The worker reads it itself, straight into its kernel's arena
// with recvmmsg, and decapsulates the batch there: inbound ESP crosses no
// thread on its way from the socket to the TUN queue.
//
// What arrives is ESP (the steering program sends everything else to the
// control plane's socket), for SPIs that name this worker. The peer may send
// on a new SA as soon as our CREATE_CHILD_SA response reaches it, which can be
// before this thread has taken the install request from its port (RFC 7296
// §2.8; on the I/O thread's path handover.ts holds such packets). So a batch
// with an SPI this worker does not know first takes the control messages
// already queued (`catchUp`) and looks its SPIs up again. ESP for an SPI still
// unknown after that is held a moment (steered-hold.ts: the install request
// may not even be posted yet) and opened once its SA is installed, before any
// later datagram of that SPI; what stays unknown (deleted, never installed,
// forged) is dropped and counted once (DROP_UNKNOWN_SPI) when the hold lets
// go of it or has no room. A datagram too short or too long for an arena
// slot is dropped as malformed.
//
// The same reader takes raw ESP (IP protocol 50, IPv4) when the worker owns
// a raw socket whose filter keeps its SPIs (io/raw-esp-steering.ts): each
// datagram then starts at its IP header, which is checked and skipped, and
// its TOS octet is the outer TOS.
//
// A worker may own several such inputs (one per listen address, and a raw
// share) over one arena. While one input's batch is in the arena (read, then
// decapsulated) no input opens its held ESP there, not even one whose SA the
// batch's catch-up installed: it would overwrite the batch. Those wait for
// the batch's end (SharedArena).
//
// Owner: one worker thread. The descriptor is its own (handed over by the
// I/O side, which no longer reads it); it is closed here at stop.
import { loadNativeIo, RECV_TOS_VALID, UDP_DESC_WORDS, UDP_RECV_TOS_WORD, type NativeIo } from '../io/native-io.js';
import { Desc, DESC_WORDS, type EspKernel } from './kernel.js';
import { WorkerStat } from './messages.js';
import type { EpollWaiter } from './worker-epoll.js';
import type { UnknownSpiHold } from './steered-hold.js';

/** Words of a datagram's source: family << 16 | port, then the address (udpRecv desc words 2..6). */
export const SOURCE_WORDS = 5;

/** recvmmsg calls per readiness event before the worker's loop gets its turn (control messages, ring cells). */
const READS_PER_EVENT = 4;
/** Datagrams per recvmmsg call (native/io/udp.c takes at most 64). */
const READ_BATCH = 32;

/** Where the ESP of a raw IPv4 datagram is (ipv4Payload's result, written in place: one per reader, reused per datagram). */
export interface Ipv4EspPayload {
  at: number;
  length: number;
  /** The TOS octet, as udpRecv reports a TOS (RECV_TOS_VALID | octet). */
  tos: number;
}

/**
 * Whether arena[at..at + length] is an IPv4 datagram of protocol 50 (RFC 791:
 * version 4, IHL >= 5, total length within what was read); if so, `out` says
 * where its ESP starts, its length and its outer TOS. Allocates nothing: it
 * runs once per datagram on the worker's input path.
 */
export function ipv4Payload(arena: Uint8Array, at: number, length: number, out: Ipv4EspPayload): boolean {
  if (length < 20 || arena[at]! >> 4 !== 4 || arena[at + 9] !== 50) return false;
  const ihl = (arena[at]! & 0x0f) * 4;
  const total = (arena[at + 2]! << 8) | arena[at + 3]!;
  if (ihl < 20 || total < ihl || total > length) return false;
  out.at = at + ihl;
  out.length = total - ihl;
  out.tos = RECV_TOS_VALID | arena[at + 1]!;
  return true;
}

/** The kernel arena as one worker's steered inputs share it (one per worker). */
export class SharedArena {
  /** A batch is in the arena: held ESP waits for its end. */
  busy = false;
  /** Inputs whose held ESP waits for the batch to end. */
  readonly waiting = new Set<SteeredInput>();
}

export class SteeredInput {
  private readonly api: NativeIo;
  private readonly udpDesc = new Int32Array(READ_BATCH * UDP_DESC_WORDS);
  private watch: unknown;
  /** What the last describe() left out: the datagrams with an SPI to hold (their indexes), and malformed ones. */
  private unknown = 0;
  private readonly unknownAt = new Int32Array(READ_BATCH);
  /** ipv4Payload's result for the datagram being described (raw IPv4 input). */
  private readonly ip: Ipv4EspPayload = { at: 0, length: 0, tos: 0 };
  private malformed = 0;
  private waiter: EpollWaiter | undefined;

  /**
   * `inSlot(spi)`: the inbound slot of this worker's SA with that SPI;
   * `decapAndCollect(n)`: run descriptors 0..n-1 through decapBatch and
   * deliver the results (the worker's own output path);
   * `catchUp()`: apply the control messages already queued for this worker
   * (installs among them), true when there were any; `outerTos[k]`:
   * descriptor k's outer TOS / Traffic Class as udpRecv reports it (RFC
   * 6040 decapsulation).
   */
  constructor(
    private fd: number,
    private readonly kernel: EspKernel,
    private readonly stride: number,
    private readonly stats: Float64Array,
    private readonly inSlot: (spi: number) => number | undefined,
    private readonly decapAndCollect: (n: number) => void,
    private readonly catchUp: () => boolean,
    private readonly outerTos: Int32Array,
    /** Descriptor k's source: udpRecv's words 2..6 at sources[k * SOURCE_WORDS] (RFC 7296 §2.23 on the ESP path). */
    private readonly sources: Int32Array,
    /** The address the steered port is bound to (the worker sends from this socket too). */
    readonly address?: string,
    /** A raw IPv4 socket of protocol 50: datagrams start at the IP header (RFC 791). */
    private readonly rawIpv4 = false,
    /** ESP for SPIs not installed yet, held a moment (steered-hold.ts); without one it is dropped at once. */
    private readonly hold?: UnknownSpiHold,
    /** The arena as the worker's other inputs share it. */
    private readonly shared: SharedArena = new SharedArena(),
  ) {
    this.api = loadNativeIo();
  }

  /** Read whenever the socket is readable (on this thread's event loop). */
  start(onError: (status: number) => void): void {
    this.watch = this.api.watch(this.fd, (status) => {
      if (status < 0) {
        this.stats[WorkerStat.STEERED_ERRORS]!++;
        this.stop();
        onError(status);
        return;
      }
      this.readAvailable();
    });
  }

  /** Read when the worker's epoll says so (worker-epoll.ts), instead of through a libuv watch. */
  attach(waiter: EpollWaiter, onError: (status: number) => void): void {
    this.waiter = waiter;
    waiter.add(this.fd, () => this.readAvailable(), () => {
      this.stats[WorkerStat.STEERED_ERRORS]!++;
      this.stop();
      onError(-9); // UV_EBADF, as a libuv watch reports a poll error
    });
  }

  private readAvailable(): void {
    for (let i = 0; i < READS_PER_EVENT; i++) if (this.readBatch() < READ_BATCH) break;
  }

  /** One recvmmsg into the arena, then one decap batch; returns the datagrams read. */
  readBatch(): number {
    if (this.fd < 0) return 0;
    this.releaseHeld();
    this.expireHeld();
    const kernel = this.kernel;
    const batch = Math.min(READ_BATCH, kernel.maxBatch);
    const arena = kernel.arena.subarray(0, this.stride * batch);
    const n = this.api.udpRecv(this.fd, arena, this.stride, this.udpDesc);
    if (n <= 0) {
      if (n < 0) this.stats[WorkerStat.STEERED_ERRORS]!++;
      return 0;
    }
    const st = this.stats;
    st[WorkerStat.STEERED_IN]! += n;
    for (let i = 0; i < n; i++) st[WorkerStat.STEERED_IN_BYTES]! += this.udpDesc[i * UDP_DESC_WORDS]!;
    this.shared.busy = true;
    try {
      let k = this.describe(arena, n);
      // Described again after a catch-up: a message applied there may also
      // delete or reuse a slot that the first lookup returned.
      if (this.unknown > 0 && this.catchUp()) k = this.describe(arena, n);
      st[WorkerStat.DROP_UNKNOWN_SPI]! += this.holdUnknown(arena);
      st[WorkerStat.DROP_MALFORMED]! += this.malformed;
      if (k > 0) this.decapAndCollect(k);
    } finally {
      this.shared.busy = false;
    }
    // An install the catch-up applied: what was held for it, here or at another input, is opened now
    // (another input waits only when an install came during a batch: nothing to walk otherwise).
    this.releaseHeld();
    if (this.shared.waiting.size > 0) {
      for (const input of [...this.shared.waiting]) {
        this.shared.waiting.delete(input);
        input.releaseHeld();
      }
    }
    return n;
  }

  /** Hold the datagrams describe() left out as unknown; returns how many found no room (dropped). */
  private holdUnknown(arena: Uint8Array): number {
    let dropped = 0;
    for (let u = 0; u < this.unknown; u++) {
      const i = this.unknownAt[u]!;
      const w = i * UDP_DESC_WORDS;
      const at = i * this.stride;
      const held = this.hold?.add(readSpi(arena, at), arena.subarray(at, at + this.udpDesc[w]!), this.udpDesc[w + UDP_RECV_TOS_WORD]!, this.udpDesc.subarray(w + 2, w + 2 + SOURCE_WORDS));
      if (held) this.stats[WorkerStat.STEERED_HELD]!++;
      else dropped++;
    }
    return dropped;
  }

  /**
   * Open the ESP held for SPIs that have an inbound SA now (the worker calls
   * this after an install), in arrival order, through the arena. Not while a
   * batch of any of the worker's inputs is in the arena (an install applied
   * by its catch-up): that batch's end opens it.
   */
  releaseHeld(): void {
    const hold = this.hold;
    if (!hold || hold.size === 0) return;
    if (this.shared.busy) {
      this.shared.waiting.add(this);
      return;
    }
    const kernel = this.kernel;
    const batch = Math.min(READ_BATCH, kernel.maxBatch);
    const desc = kernel.descriptors;
    for (const spi of hold.spis()) {
      const slot = this.inSlot(spi);
      if (slot === undefined) continue;
      const packets = hold.take(spi);
      for (let from = 0; from < packets.length; from += batch) {
        const m = Math.min(batch, packets.length - from);
        for (let k = 0; k < m; k++) {
          const p = packets[from + k]!;
          const at = k * this.stride;
          kernel.arena.set(p.bytes, at);
          const d = k * DESC_WORDS;
          desc[d + Desc.OFFSET] = at;
          desc[d + Desc.LENGTH] = p.bytes.length;
          desc[d + Desc.SLOT] = slot;
          desc[d + Desc.NEXT_HEADER] = 0;
          this.outerTos[k] = p.tos;
          this.sources.set(p.source, k * SOURCE_WORDS);
        }
        this.decapAndCollect(m);
      }
    }
  }

  /** Drop (and count as unknown SPIs) what was held too long; the worker's loop calls it now and then. */
  expireHeld(): void {
    if (!this.hold || this.hold.size === 0) return;
    this.stats[WorkerStat.DROP_UNKNOWN_SPI]! += this.hold.expire();
  }

  /**
   * Descriptors for the n datagrams in the arena that go to decapsulation;
   * returns their count, and leaves what it left out in `unknown` and
   * `malformed` (counted by the caller, once).
   */
  private describe(arena: Uint8Array, n: number): number {
    const desc = this.kernel.descriptors;
    let k = 0;
    this.unknown = 0;
    this.malformed = 0;
    const holding = this.hold !== undefined && this.hold.size > 0;
    for (let i = 0; i < n; i++) {
      const truncated = this.udpDesc[i * UDP_DESC_WORDS + 1]!;
      let at = i * this.stride;
      let length = this.udpDesc[i * UDP_DESC_WORDS]!;
      let tos = this.udpDesc[i * UDP_DESC_WORDS + UDP_RECV_TOS_WORD]!;
      if (this.rawIpv4 && truncated === 0) {
        const ip = this.ip;
        if (!ipv4Payload(arena, at, length, ip)) {
          this.malformed++;
          continue;
        }
        at = ip.at;
        length = ip.length;
        tos = ip.tos;
      }
      // SPI + sequence number at least (RFC 4303 §2); longer than a slot cannot be whole.
      if (length < 8 || truncated !== 0) {
        this.malformed++;
        continue;
      }
      const spi = readSpi(arena, at);
      // Behind ESP already held for its SPI, a datagram is held too: never opened before it.
      // (The hold is almost always empty: its size is read once per batch, no lookup per datagram.)
      const slot = holding && this.hold!.has(spi) ? undefined : this.inSlot(spi);
      if (slot === undefined) {
        this.unknownAt[this.unknown++] = i;
        continue;
      }
      const d = k * DESC_WORDS;
      desc[d + Desc.OFFSET] = at;
      desc[d + Desc.LENGTH] = length;
      desc[d + Desc.SLOT] = slot;
      desc[d + Desc.NEXT_HEADER] = 0;
      this.outerTos[k] = tos;
      // Word by word: a subarray per datagram would be garbage on the hot path.
      const from = i * UDP_DESC_WORDS + 2;
      const to = k * SOURCE_WORDS;
      for (let w = 0; w < SOURCE_WORDS; w++) this.sources[to + w] = this.udpDesc[from + w]!;
      k++;
    }
    return k;
  }

  /** The socket's descriptor while it is open (-1 after stop()): the worker sends ESP on it too. */
  get descriptor(): number {
    return this.fd;
  }

  /** Stop reading; the descriptor is closed. A second call does nothing. */
  stop(): void {
    if (this.watch !== undefined) this.api.unwatch(this.watch);
    this.watch = undefined;
    if (this.fd >= 0) this.waiter?.remove(this.fd);
    if (this.fd >= 0) this.api.close(this.fd);
    this.fd = -1;
    this.hold?.clear();
  }
}

/** The SPI of the ESP datagram at `at` (RFC 4303 §2.1). */
function readSpi(arena: Uint8Array, at: number): number {
  return ((arena[at]! << 24) | (arena[at + 1]! << 16) | (arena[at + 2]! << 8) | arena[at + 3]!) >>> 0;
}
