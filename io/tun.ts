// A TUN device for inner traffic (Linux, root): IFF_TUN | IFF_NO_PI, so every
// read is one IP packet and every write takes one; optionally IFF_MULTI_QUEUE
// with several queues (the kernel spreads flows over them). Opening the
// device needs an ioctl, which Node cannot do: the native I/O addon
// (native-io.ts) opens and configures it, reads and writes without blocking
// and watches it with a libuv poll.
//
// With offload (the default) the device is opened with IFF_VNET_HDR and
// works like a NIC with TSO and GRO:
// - reads: the kernel hands over a TCP flow's data as one GSO packet of up to
//   64 KiB (TUNSETOFFLOAD), which native/io/tso.c splits into MTU-sized
//   segments with their checksums, one read instead of one per segment;
// - writes are batched: packets written during one pass of the data plane
//   are staged and flushed together, and consecutive TCP segments of a flow
//   leave as one GSO packet (native/io/gro.c), so the inner TCP stack sees
//   large segments and acknowledges each once.
//
// Concurrency: a TunDevice belongs to the I/O thread that opened it; its
// watch fires on that thread's event loop. With direct output, workers write
// to the device through descriptors of their own (dupQueue), never through
// this object. Reads hand each packet to the
// caller synchronously (a view of one reused buffer); writes are
// non-blocking: a full device queue drops the packet (counted). A device
// deleted under us (`ip link del`) stops reading for good: that is reported
// once per queue through start()'s onError and kept in stats.readStatus.
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { loadNativeIo, nativeIoUnavailable, TUN_READ_AREA, TUN_WRITE_DESC_WORDS, TUN_WRITE_MAX_BATCH, type NativeIo } from './native-io.js';
import type { InnerSink } from './sinks.js';

export interface TunOptions {
  /** Interface name, 1..15 bytes (e.g. "ikc0"). An existing persistent device of that name is attached. */
  name: string;
  /** MTU (default 1400: room for ESP, UDP and the outer IPv4 or IPv6 header in a 1500-byte path). */
  mtu?: number;
  /** Queues (IFF_MULTI_QUEUE when more than 1); default 1. */
  queues?: number;
  /** virtio_net_hdr framing with batched, coalescing writes (default true); false: one write per packet. */
  offload?: boolean;
}

export interface TunStats {
  /** Packets read (GSO packets count as the segments they were split into). */
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Writes refused because the device queue was full (EAGAIN). */
  txDropped: number;
  /** write system calls (fewer than txPackets when segments are coalesced). */
  txWrites: number;
  /** Packets written as part of a coalesced (GSO) packet. */
  txCoalesced: number;
  /** read system calls (fewer than rxPackets when the kernel hands over GSO packets). */
  rxReads: number;
  /** Packets that arrived inside a GSO packet and were split (segmentation offload). */
  rxSegmented: number;
  errors: number;
  /**
   * 0 while every queue is read; else the libuv status (a negative errno,
   * UV_EBADF when the device was deleted) with which a queue's watch stopped:
   * that queue reads nothing any more.
   */
  readStatus: number;
}

/** MTU of a TUN device when none is given: room for ESP, UDP and the outer IPv4 or IPv6 header in a 1500-byte path. */
export const TUN_DEFAULT_MTU = 1400;
const { EAGAIN, EPROTO, EMSGSIZE } = constants.errno;
/** Packets read per readiness event before yielding to the rest of the loop. */
const READ_BUDGET = 256;
/** Most segments one GSO read may split into (64 KiB at an MSS of 536 is 123). */
export const TUN_MAX_SEGMENTS = 256;
const MAX_SEGMENTS = TUN_MAX_SEGMENTS;
/** Room for the segments of one GSO packet: its payload plus a copy of the headers (at most 120 bytes) per segment. */
export const TUN_SEGMENT_AREA = 65536 + MAX_SEGMENTS * 120;
const SEGMENT_AREA = TUN_SEGMENT_AREA;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** Why a TUN device cannot be used here, or null when it can (addon built, /dev/net/tun present). */
export function tunUnavailable(): string | null {
  if (process.platform !== 'linux') return 'TUN devices are supported on Linux only';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  return nativeIoUnavailable();
}

export class TunDevice implements InnerSink {
  readonly name: string;
  readonly mtu: number;
  readonly offload: boolean;
  readonly stats: TunStats = {
    rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, txWrites: 0, txCoalesced: 0, rxReads: 0, rxSegmented: 0, errors: 0,
    readStatus: 0,
  };
  private readonly fds: number[];
  private readonly watches: unknown[] = [];
  /** Reads: without offload one packet; with offload tso.c's segment area, then its read area. */
  private readonly buffer: Uint8Array;
  private readonly segments = new Int32Array(MAX_SEGMENTS * 2);
  /** Write staging (offload): packets back to back, 8-aligned, and their descriptors. */
  private readonly stage: Uint8Array;
  private readonly stageDesc = new Int32Array(TUN_WRITE_MAX_BATCH * TUN_WRITE_DESC_WORDS);
  private staged = 0;
  private stagedBytes = 0;
  /** Staged packets dropped by flushes forced by a full stage, reported at the next flush(). */
  private droppedUnreported = 0;
  private next = 0;
  private closed = false;

  private constructor(private readonly api: NativeIo, name: string, fds: number[], mtu: number, offload: boolean) {
    this.name = name;
    this.fds = fds;
    this.mtu = mtu;
    this.offload = offload;
    this.stage = new Uint8Array(offload ? TUN_WRITE_MAX_BATCH * Math.max(2048, (mtu + 64 + 7) & ~7) : 0);
    this.buffer = new Uint8Array(offload ? SEGMENT_AREA + TUN_READ_AREA : 65536);
  }

  /** Create (or attach to) the device, set its MTU and bring it up. Throws with the system's reason. */
  static open(opts: TunOptions): TunDevice {
    if (!opts || typeof opts.name !== 'string' || !IFNAME_RE.test(opts.name)) throw new TypeError('TUN: name must be 1..15 of [A-Za-z0-9_.-]');
    const mtu = opts.mtu ?? TUN_DEFAULT_MTU;
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 9000) throw new RangeError('TUN: mtu must be an integer from 576 to 9000');
    const queues = opts.queues ?? 1;
    const offload = opts.offload ?? true;
    if (!Number.isInteger(queues) || queues < 1 || queues > 64) throw new RangeError('TUN: queues must be an integer from 1 to 64');
    const api = loadNativeIo();
    const fds: number[] = [];
    let name = opts.name;
    try {
      for (let q = 0; q < queues; q++) {
        const r = api.tunOpen(name, queues > 1, offload);
        fds.push(r.fd);
        name = r.name;
      }
      api.tunConfigure(name, mtu);
    } catch (err) {
      for (const fd of fds) api.close(fd);
      throw err;
    }
    return new TunDevice(api, name, fds, mtu, offload);
  }

  /**
   * A descriptor of its own for queue `i` mod queues (direct output: a
   * worker writes there); the caller closes it. The device stays while any
   * descriptor of it is open.
   */
  dupQueue(i: number): number {
    if (this.closed) throw new Error('TUN device is closed');
    return this.api.dup(this.fds[i % this.fds.length]!);
  }

  /** A queue's watch stopped with an error (the device was deleted): nothing is read from it any more. */
  get failed(): boolean {
    return this.stats.readStatus < 0;
  }

  /**
   * Deliver every packet read from the device to `onPacket` (a view valid
   * only during the call). `onError` hears, once per queue, that the queue
   * stopped reading for good: the device was deleted (`ip link del`) or
   * broke. libuv reports that by calling the watch back with UV_EBADF after
   * it stopped the poll on POLLERR; reads then fail with EBADFD.
   */
  start(onPacket: (packet: Uint8Array) => void, onError?: (err: NodeJS.ErrnoException) => void): void {
    if (this.closed) throw new Error('TUN device is closed');
    if (this.watches.length > 0) throw new Error('TUN device already started');
    for (const fd of this.fds) {
      this.watches.push(this.api.watch(fd, (status) => {
        if (status < 0) this.readFailed(status, onError);
        else this.drain(fd, onPacket);
      }));
    }
  }

  /**
   * A queue's reading stopped for good with libuv `status`: counted, kept in
   * stats.readStatus and reported to `onError`. Also called for queues that
   * workers read themselves (their watch reports it to the I/O thread).
   */
  readFailed(status: number, onError?: (err: NodeJS.ErrnoException) => void): void {
    if (this.closed) return;
    this.stats.errors++;
    this.stats.readStatus = status;
    const code = getSystemErrorName(status);
    const err: NodeJS.ErrnoException = new Error(`TUN device ${this.name}: reading stopped (${code}): the device was deleted or failed`);
    err.code = code;
    err.errno = -status;
    err.syscall = 'poll';
    onError?.(err);
  }

  private drain(fd: number, onPacket: (packet: Uint8Array) => void): void {
    const stats = this.stats;
    const seg = this.segments;
    for (let budget = READ_BUDGET; budget > 0 && !this.closed; ) {
      const count = this.offload ? this.api.tunReadSegments(fd, this.buffer, seg) : this.readOne(fd);
      if (count === 0) return;
      stats.rxReads++;
      if (count < 0) {
        stats.errors++;
        // A packet tso.c refused is dropped; the device is still readable.
        if (count !== -EPROTO && count !== -EMSGSIZE) return;
        budget--;
        continue;
      }
      if (count > 1) stats.rxSegmented += count;
      for (let i = 0; i < count; i++) {
        const at = seg[2 * i]!;
        const length = seg[2 * i + 1]!;
        stats.rxPackets++;
        stats.rxBytes += length;
        onPacket(this.buffer.subarray(at, at + length));
      }
      budget -= count;
    }
  }

  /** Without offload: one packet into buffer[0..], described in segments[0..1] as tunReadSegments would. */
  private readOne(fd: number): number {
    const n = this.api.tunRead(fd, this.buffer);
    if (n <= 0) return n;
    this.segments[0] = 0;
    this.segments[1] = n;
    return 1;
  }

  /**
   * Write one inner packet (InnerSink). Without offload it is written at
   * once and false means the device dropped it; with offload it is staged
   * (copied) for flush() and false means it could not be staged.
   */
  write(packet: Uint8Array): boolean {
    if (this.closed) return false;
    if (!this.offload) return this.writeNow(packet);
    if (packet.length === 0 || packet.length > this.stage.length) {
      this.stats.errors++;
      return false;
    }
    if (this.staged === TUN_WRITE_MAX_BATCH || this.stagedBytes + packet.length > this.stage.length) this.droppedUnreported += this.writeStaged();
    const d = this.staged * TUN_WRITE_DESC_WORDS;
    this.stageDesc[d] = this.stagedBytes;
    this.stageDesc[d + 1] = packet.length;
    this.stage.set(packet, this.stagedBytes);
    this.stagedBytes += (packet.length + 7) & ~7;
    this.staged++;
    return true;
  }

  /** Write everything staged (InnerSink); returns how many staged packets the device dropped. */
  flush(): number {
    const dropped = this.droppedUnreported + this.writeStaged();
    this.droppedUnreported = 0;
    return dropped;
  }

  private nextFd(): number {
    const fd = this.fds[this.next]!;
    if (this.fds.length > 1) this.next = (this.next + 1) % this.fds.length;
    return fd;
  }

  private writeNow(packet: Uint8Array): boolean {
    const n = this.api.tunWrite(this.nextFd(), packet);
    this.stats.txWrites++;
    if (n === packet.length) {
      this.stats.txPackets++;
      this.stats.txBytes += n;
      return true;
    }
    if (n === -EAGAIN) this.stats.txDropped++;
    else this.stats.errors++;
    return false;
  }

  /** One tunWriteBatch of the staged packets; returns how many were dropped. */
  private writeStaged(): number {
    const count = this.staged;
    if (count === 0) return 0;
    this.staged = 0;
    this.stagedBytes = 0;
    if (this.closed) return count;
    const desc = this.stageDesc;
    this.stats.txWrites += this.api.tunWriteBatch(this.nextFd(), this.stage, desc, count);
    let dropped = 0;
    for (let i = 0; i < count; i++) {
      const status = desc[i * TUN_WRITE_DESC_WORDS + 2]!;
      if (status >= 0) {
        this.stats.txPackets++;
        this.stats.txBytes += desc[i * TUN_WRITE_DESC_WORDS + 1]!;
        if (status === 1) this.stats.txCoalesced++;
      } else {
        dropped++;
        if (status === -EAGAIN) this.stats.txDropped++;
        else this.stats.errors++;
      }
    }
    return dropped;
  }

  /** Stop reading and close every queue (a non-persistent device disappears). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) this.api.unwatch(w);
    this.watches.length = 0;
    for (const fd of this.fds) this.api.close(fd);
  }
}
