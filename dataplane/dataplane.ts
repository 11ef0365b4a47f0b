// The data plane as the control plane uses it: worker threads that own Child
// SAs, the SAD and SPD that route packets to them, and packet I/O — UDP-
// encapsulated ESP (RFC 3948) through a send function the caller provides
// (the gateway's NAT-T socket), raw ESP (IP protocol 50, rawesp.ts) and a TUN
// device (tun.ts) for inner traffic.
//
//   outbound: inner packet (TUN read, or sendInner) -> SPD -> owner's in ring
//             -> worker encap -> UDP 4500 / raw ESP to the peer (sent by the
//             worker, or through its out ring by this thread)
//   inbound:  ESP (receiveEsp) -> SAD by SPI -> owner's in ring -> worker
//             decap (replay check, ICV, window update) -> selector check ->
//             TUN write (by the worker, or through its out ring by this thread)
//
// Concurrency: everything in this file runs on one thread, the I/O thread
// (the gateway's main thread). It is the only writer of every worker's in ring
// and the only reader of every out ring; workers never see SPIs, only slots.
// Staged cells are published once per event-loop turn (setImmediate) or every
// FLUSH_CELLS cells, so a burst of datagrams crosses to a worker as one batch.
// Control (install with keys, delete, route, counters, generate) goes to
// workers by message.
//
// Who writes the output. With a TUN device and native I/O ("direct output",
// the default then), each worker writes its own: ESP from the arena to the
// socket of its SA's route, decapsulated packets, after the selector check,
// to a TUN queue (worker-output.ts). Every packet then crosses one thread
// hand-off per gateway instead of two, and the I/O thread only reads. The
// worker gets its own duplicates of the descriptors, so nothing the I/O thread
// closes can redirect its writes; "update addresses" (MOBIKE) sends it a new
// route. Otherwise (no TUN: the demo, tests; dgram sockets; raw-socket; or
// `output: 'io-thread'`) results come back through the out rings and this
// thread sends and writes them.
//
// This module knows nothing of IKE (architecture §2): the gateway translates a
// Child SA into an SaSpec.
import { EventEmitter } from 'node:events';
import { isIPv4 } from 'node:net';
import { CELL_HEADER_BYTES, CellKind, DEFAULT_CELL_SIZE, metaKind, metaSlot, metaTag } from './ring.js';
import { selectorAddress } from './packet.js';
import { Sad, familyKey, type Endpoint, type EspTransport, type SaRecord, type SaSpec } from './sad.js';
import { Spd } from './spd.js';
import { REQUEST_TIMEOUT_MS, startWorkers, type WorkerHandle } from './workers.js';
import { WorkerStat, type CountersReply, type EspRoute, type GenerateReply, type WorkerEvent } from './messages.js';
import type { SaCounters } from './kernel.js';
import { TunDevice, type TunOptions, type TunStats } from '../io/tun.js';
import { RawEspSocket, type RawEspStats } from '../io/rawesp.js';
import { destination, type Destination } from '../io/batched-socket.js';
import { loadNativeIo } from '../io/native-io.js';
import type { InnerSink, RawEspSender } from '../io/sinks.js';

export type { InnerSink, RawEspSender };

/** The slice of a pino logger the data plane uses. */
export interface DataPlaneLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const quietLogger: DataPlaneLogger = { info() {}, warn() {}, debug() {} };

export interface DataPlaneOptions {
  /** Worker threads (architecture §4.1: each SA has exactly one). */
  workers: number;
  /**
   * Send (or queue until flushUdp) a UDP-encapsulated ESP packet from local to
   * remote (RFC 3948 §2.1: no non-ESP marker). `bytes` is valid only during
   * the call: a sender that keeps it copies it.
   */
  sendUdp: (local: Endpoint, remote: Endpoint, bytes: Uint8Array) => void;
  /** Called after each batch of sendUdp calls, so a batching sender sends what it queued (one sendmmsg). */
  flushUdp?: () => void;
  /**
   * Direct output: the native socket (descriptor, and the destination encoded
   * for udpSend) that ESP from `local` to `remote` would leave through, so the
   * owner worker sends there itself; undefined keeps that SA on sendUdp.
   */
  espSocket?: (local: Endpoint, remote: Endpoint) => { fd: number; to: Destination } | undefined;
  /**
   * Who writes the output when a TUN device is configured: 'workers' (the
   * default: each worker sends its ESP and writes its decapsulated packets
   * itself) or 'io-thread' (through the out rings). Without a TUN device the
   * I/O thread always does.
   */
  output?: 'workers' | 'io-thread';
  log?: DataPlaneLogger;
  /** Decapsulated packets: 'deliver' to the inner sink (TUN), or 'discard' after counting (demo, benchmarks). Default deliver. */
  sink?: 'deliver' | 'discard';
  /** Cells per ring (power of two; default 1024) and bytes per cell (default 2048). */
  ringCapacity?: number;
  cellSize?: number;
  /** A TUN device for inner traffic (root): read -> SPD -> encap; decap -> write. Implies sink 'deliver'. */
  tun?: TunOptions;
  /**
   * Raw ESP (IP protocol 50) for SAs without UDP encapsulation, when raw
   * sockets are permitted (root); otherwise, or when false, all ESP is sent
   * in UDP. Raw ESP that arrives is always accepted when the socket is open.
   */
  rawEsp?: boolean;
  /** Bound on a worker's answer to a control request, ms (default 10 s; tests shorten it). Also bounds how long remove() waits for a successor. */
  requestTimeoutMs?: number;
}

/** Drops and traffic counted on the I/O thread. */
export interface IoCounters {
  espIn: number;
  espInBytes: number;
  espOut: number;
  espOutBytes: number;
  innerIn: number;
  innerOut: number;
  /** ESP whose SPI names no installed SA (RFC 4303 §3.4.2). */
  dropUnknownSpi: number;
  /** ESP shorter than SPI + sequence number or longer than a cell; an inner packet that is not IPv4/IPv6 or too long to encapsulate. */
  dropMalformed: number;
  /** A worker's in ring was full. */
  dropQueueFull: number;
  /** An outbound inner packet no SA's selectors cover. */
  dropNoPolicy: number;
  /** A decapsulated packet outside its SA's selectors (RFC 4301 §5.2). */
  dropPolicy: number;
  /** A worker's output for an SA that was deleted meanwhile; ESP for an SA whose install has not completed. */
  dropNoSa: number;
  /** A decapsulated packet with no sink to take it (no TUN), or one the sink refused. */
  dropNoSink: number;
  /** ESP a worker sent itself that the kernel refused (full socket buffer, no route). */
  dropSend: number;
}

export interface WorkerDrops {
  replay: number;
  /** ICV did not verify. */
  icv: number;
  malformed: number;
  seqExhausted: number;
  noSa: number;
  queueFull: number;
}

export interface WorkerCounters {
  index: number;
  /** Child SAs this worker owns. */
  sas: number;
  encapPackets: number;
  encapBytes: number;
  decapPackets: number;
  decapBytes: number;
  espBytesOut: number;
  drops: WorkerDrops;
  batches: number;
  busyMs: number;
  /** Direct output: ESP this worker sent itself, and decapsulated packets it wrote to the TUN device itself. */
  espSent: number;
  innerWritten: number;
}

/** Synchronous snapshot for status: worker totals (from shared memory) and I/O counters. */
export interface DataPlaneStatus {
  workers: WorkerCounters[];
  io: IoCounters;
  /** Installed Child SAs. */
  sas: number;
  /** Members of each outbound family (SAs sharing selectors). */
  families: number[];
  /** The TUN device, when there is one. */
  tun: ({ name: string; mtu: number } & TunStats) | null;
  /** The raw ESP socket, when open. */
  rawEsp: RawEspStats | null;
  /** Who writes the output (see the header): 'workers' or 'io-thread'. */
  output: 'workers' | 'io-thread';
}

export interface SaCountersReport {
  id: number;
  spiIn: number;
  worker: number;
  outbound: boolean;
  in: SaCounters;
  out: SaCounters;
}

/** Fresh counters from every worker (one round trip each). */
export interface DataPlaneCounters extends DataPlaneStatus {
  sa: SaCountersReport[];
  /** Per worker: SA ids whose sequence counter or replay window that worker processed (architecture §4.1 debug hook). */
  seqWriters: number[][];
}

export interface GenerateOptions {
  /** Packets in total, spread evenly over the outbound SAs. */
  packets: number;
  /** Inner packet bytes (IPv4/UDP). Default 1400. */
  size?: number;
  /** UDP source ports per SA. Default 16. */
  flows?: number;
  /** Packets per kernel call. Default 64. */
  batch?: number;
}

export interface GenerateReport {
  perSa: Array<{ id: number; worker: number } & GenerateReply>;
  sent: number;
  ms: number;
}

export interface DataPlaneEvents {
  /** An SA reached its soft sequence limit: the control plane should rekey it (RFC 4303 §3.3.3). */
  'rekey-needed': [id: number];
  /** ESP arrived with an SPI no SA has (counted, dropped); the control plane may answer INVALID_SPI (RFC 7296 §2.21.4). */
  'unknown-spi': [spi: number, remote: Endpoint | undefined];
  /**
   * An I/O device failed and carries no more traffic: a TUN device deleted
   * under us (`ip link del`) stops reading for good. Logged at warn as well.
   * Not named 'error', which would throw when nobody listens.
   */
  'device-error': [device: string, err: NodeJS.ErrnoException];
}

/** Most bytes ESP adds to an inner packet here: header + IV 16, padding 3, trailer 2, ICV 16 (RFC 4303 §2, RFC 4106 §3). */
const ESP_OVERHEAD = 37;
/** Cells staged for one worker before they are published without waiting for the end of the turn. */
const FLUSH_CELLS = 64;
/** Output cells handled per turn of the event loop, over all workers (sockets get their turn). */
const SEND_BUDGET = 32;

function zeroIo(): IoCounters {
  return {
    espIn: 0, espInBytes: 0, espOut: 0, espOutBytes: 0, innerIn: 0, innerOut: 0,
    dropUnknownSpi: 0, dropMalformed: 0, dropQueueFull: 0, dropNoPolicy: 0, dropPolicy: 0, dropNoSa: 0, dropNoSink: 0, dropSend: 0,
  };
}

function checkEndpoint(e: Endpoint, what: string): void {
  if (!e || typeof e.address !== 'string' || !Number.isInteger(e.port) || e.port < 0 || e.port > 65535) {
    throw new TypeError(`${what} must be { address, port }`);
  }
}

export class DataPlane extends EventEmitter<DataPlaneEvents> {
  readonly workerCount: number;
  readonly sink: 'deliver' | 'discard';
  private readonly log: DataPlaneLogger;
  private readonly sendUdp: DataPlaneOptions['sendUdp'];
  private readonly flushUdp: DataPlaneOptions['flushUdp'];
  private workers: WorkerHandle[] = [];
  private sad: Sad | undefined;
  private readonly spd = new Spd();
  private readonly io: IoCounters = zeroIo();
  private innerSink: InnerSink | undefined;
  private rawSender: RawEspSender | undefined;
  private tun: TunDevice | undefined;
  private rawSocket: RawEspSocket | undefined;
  /** Workers write their own output (set at start). */
  private direct = false;
  private running = false;
  private flushScheduled = false;
  private drainLoop: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  /**
   * Per SA id: installs still in progress of SAs that replace it (a rekey's
   * successors). remove() of a replaced SA waits for them, so the new SA is
   * in before the old one goes (RFC 7296 §2.8) and the family never empties.
   */
  private readonly successorsInstalling = new Map<number, Set<Promise<void>>>();

  constructor(private readonly opts: DataPlaneOptions) {
    super();
    if (!opts || typeof opts.sendUdp !== 'function') throw new TypeError('DataPlane: sendUdp must be a function');
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError('DataPlane: workers must be a positive integer');
    this.workerCount = opts.workers;
    this.sink = opts.tun ? 'deliver' : (opts.sink ?? 'deliver');
    this.log = opts.log ?? quietLogger;
    this.sendUdp = opts.sendUdp;
    this.flushUdp = opts.flushUdp;
  }

  /**
   * Bytes per ring cell: the given size, else room for an inner packet of the
   * TUN MTU plus its ESP encapsulation (header 16, trailer and ICV up to 21),
   * at least the default.
   */
  private cellSize(): number {
    if (this.opts.cellSize !== undefined) return this.opts.cellSize;
    const mtu = this.opts.tun?.mtu ?? 1400;
    return Math.max(DEFAULT_CELL_SIZE, (mtu + CELL_HEADER_BYTES + ESP_OVERHEAD + 7) & ~7);
  }

  get started(): boolean {
    return this.running;
  }

  /** Who writes the output (see the header). */
  get outputMode(): 'workers' | 'io-thread' {
    return this.direct ? 'workers' : 'io-thread';
  }

  /** Start the workers (each instantiates its kernel), the TUN device and the raw ESP socket when configured. */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.starting ??= this.startOnce().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    // The TUN device first: with direct output every worker starts with its own descriptor of a queue.
    const tun = this.opts.tun ? TunDevice.open(this.opts.tun) : undefined;
    const direct = tun !== undefined && this.opts.output !== 'io-thread';
    try {
      this.workers = await startWorkers({
        count: this.workerCount,
        sink: this.sink,
        ...(this.opts.ringCapacity !== undefined ? { ringCapacity: this.opts.ringCapacity } : {}),
        cellSize: this.cellSize(),
        onEvent: (w, e) => this.onWorkerEvent(w, e),
        ...(this.opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: this.opts.requestTimeoutMs } : {}),
        onExit: (w, reason) => {
          // Its SAs have no owner any more: they stay routed (and dropped: ring full) until the control plane deletes them.
          if (this.running) this.log.warn({ worker: w.index, reason }, 'data-plane worker ended: its SAs carry no traffic');
        },
        // Worker i writes queue i mod queues: with as many queues as workers, each owns one.
        ...(direct ? { direct: (i: number) => ({ tunFd: tun.dupQueue(i), tunOffload: tun.offload }) } : {}),
      });
    } catch (err) {
      tun?.close();
      throw err;
    }
    this.direct = direct;
    this.sad = new Sad(this.workerCount, 256);
    this.running = true;
    this.drainLoop = this.drain();
    if (tun) {
      this.tun = tun;
      tun.start(
        (packet) => this.sendInner(packet),
        // The device is gone (deleted) or broken: it reads nothing more. Say so
        // loudly; status().tun.readStatus keeps the libuv status.
        (err) => {
          this.log.warn({ tun: tun.name, err: err.message, code: err.code }, 'TUN device failed: no more inner traffic is read from it');
          this.emit('device-error', `tun:${tun.name}`, err);
        },
      );
      this.setInnerSink(tun);
    }
    if (this.opts.rawEsp) {
      try {
        this.rawSocket = RawEspSocket.open(
          // Every raw socket sees every ESP datagram to this host: take those to our SAs' addresses.
          (esp, source, destination) => {
            if (this.sad!.hasLocalAddress(destination)) this.receiveEsp(esp, { address: source, port: 0 });
          },
          (err) => this.log.warn({ err: err.message }, 'raw ESP socket error'),
        );
        this.setRawEspSender(this.rawSocket);
      } catch (err) {
        this.log.info({ reason: (err as Error).message }, 'raw ESP unavailable: ESP travels in UDP');
      }
    }
    this.log.info(
      { workers: this.workerCount, sink: this.sink, tun: this.tun?.name ?? null, rawEsp: this.rawSocket !== undefined, output: this.outputMode },
      'data plane started',
    );
  }

  /** Stop every worker (each wipes its SA slots) and forget all SAs. */
  async stop(): Promise<void> {
    await this.starting?.catch(() => {});
    await this.shutdown();
  }

  private async shutdown(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.tun?.close();
    this.tun = undefined;
    if (this.innerSink instanceof TunDevice) this.innerSink = undefined;
    this.rawSocket?.close();
    if (this.rawSender === this.rawSocket) this.rawSender = undefined;
    this.rawSocket = undefined;
    // The drain loop sleeps on the set's doorbell, not on any one out ring
    // (drain()): ring it, or stop waits out the loop's 250 ms idle timeout.
    this.workers[0]?.doorbell.ring();
    await this.drainLoop;
    await Promise.all(this.workers.map((w) => w.stop()));
    for (const r of this.sad?.all() ?? []) {
      this.spd.remove(r);
      this.sad!.delete(r);
    }
    this.workers = [];
    this.drainLoop = undefined;
  }

  /** Where decapsulated packets go (a TUN device); undefined drops them (counted). */
  setInnerSink(sink: InnerSink | undefined): void {
    this.innerSink = sink;
  }

  /** Raw ESP output for SAs without UDP encapsulation; undefined = everything in UDP. */
  setRawEspSender(sender: RawEspSender | undefined): void {
    this.rawSender = sender;
  }

  private requireSad(): Sad {
    if (!this.running || !this.sad) throw new Error('data plane is not running');
    return this.sad;
  }

  /**
   * Install a Child SA in its owner worker: inbound and outbound slots, keys
   * moved there (zeroed in `spec` before this returns), then routable by SPI
   * and, for outbound traffic, by selectors. Resolves when the worker has it.
   */
  install(spec: SaSpec): Promise<void> {
    if (!spec || !(spec.keyIn instanceof Uint8Array) || !(spec.keyOut instanceof Uint8Array)) {
      return Promise.reject(new TypeError('SaSpec.keyIn and keyOut must be Uint8Arrays'));
    }
    // Copy and wipe the keys before anything can fail or wait (architecture §4.5).
    const keyIn = new Uint8Array(spec.keyIn);
    const keyOut = new Uint8Array(spec.keyOut);
    spec.keyIn.fill(0);
    spec.keyOut.fill(0);
    return this.installMoved(spec, keyIn, keyOut).catch((err: unknown) => {
      // A key that reached a worker was transferred (its buffer here is detached, empty); wipe the others.
      if (keyIn.byteLength > 0) keyIn.fill(0);
      if (keyOut.byteLength > 0) keyOut.fill(0);
      throw err;
    });
  }

  private async installMoved(spec: SaSpec, keyIn: Uint8Array, keyOut: Uint8Array): Promise<void> {
    const sad = this.requireSad();
    if (!Number.isInteger(spec.id)) throw new TypeError('SaSpec.id must be an integer');
    if (sad.get(spec.id)) throw new Error(`SA ${spec.id} is already installed`);
    for (const spi of [spec.spiIn, spec.spiOut]) {
      if (!Number.isInteger(spi) || spi < 256 || spi > 0xffff_ffff) throw new RangeError('SPIs must be integers in [256, 2^32-1]');
    }
    // An SA still installing holds its SPI too (Sad.add), so two concurrent installs cannot share one.
    if (sad.inbound(spec.spiIn)) throw new Error(`inbound SPI ${spec.spiIn.toString(16)} is in use`);
    checkEndpoint(spec.local, 'SaSpec.local');
    checkEndpoint(spec.remote, 'SaSpec.remote');
    if (!Array.isArray(spec.localTs) || !Array.isArray(spec.remoteTs)) throw new TypeError('SaSpec selectors must be arrays');
    const family = familyKey(spec.localTs, spec.remoteTs);
    const owner = sad.chooseOwner(family, spec.replaces ?? []);
    if (owner === undefined) throw new Error('data plane is full: no worker has two free SA slots');
    const slots = sad.slots[owner]!;
    const inbound = slots.take()!;
    const outbound = slots.take()!;
    const record: SaRecord = {
      id: spec.id,
      worker: owner,
      inSlot: inbound.slot,
      inTag: inbound.tag,
      outSlot: outbound.slot,
      outTag: outbound.tag,
      spiIn: spec.spiIn,
      spiOut: spec.spiOut,
      localTs: spec.localTs,
      remoteTs: spec.remoteTs,
      familyKey: family,
      local: { ...spec.local },
      remote: { ...spec.remote },
      udpEncap: spec.udpEncap,
      transport: this.transportFor(spec.udpEncap, spec.remote),
      outbound: false,
      replaces: [...(spec.replaces ?? [])],
      activatedAt: 0,
      state: 'installing',
    };
    // From here the inbound SPI is taken: ESP for it is dropped (dropNoSa), not
    // reported as unknown, until the worker has the SA (receiveEsp).
    sad.add(record);
    // Announce this install to remove() of the SAs it replaces (settled in finally).
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    for (const id of record.replaces) {
      let set = this.successorsInstalling.get(id);
      if (!set) this.successorsInstalling.set(id, (set = new Set()));
      set.add(settled);
    }
    try {
      await this.installInWorker(sad, record, spec, keyIn, keyOut);
    } finally {
      for (const id of record.replaces) {
        const set = this.successorsInstalling.get(id);
        set?.delete(settled);
        if (set?.size === 0) this.successorsInstalling.delete(id);
      }
      settle();
    }
  }

  /** installMoved's second half: the owner worker gets both slots, then the SA is routable. */
  private async installInWorker(sad: Sad, record: SaRecord, spec: SaSpec, keyIn: Uint8Array, keyOut: Uint8Array): Promise<void> {
    const owner = record.worker;
    const inbound = { slot: record.inSlot, tag: record.inTag };
    const outbound = { slot: record.outSlot, tag: record.outTag };
    const worker = this.workers[owner]!;
    const common = { saId: spec.id, algorithm: spec.algorithm, esn: spec.esn, icvLength: spec.icvLength, replayWindow: spec.replayWindow };
    // The keys travel in their own ArrayBuffers, transferred: no copy stays on this thread.
    const inKey = keyIn.buffer as ArrayBuffer;
    const outKey = keyOut.buffer as ArrayBuffer;
    try {
      // Inside the try: a dup() that fails (EBADF, EMFILE) or an espSocket
      // callback that throws must not leave the record and its slots behind,
      // which would block the SA id until stop. A route's descriptor is the
      // worker's to close: made only for a worker that will receive it.
      const route = worker.running ? this.routeFor(record) : undefined;
      await Promise.all([
        worker.request({
          op: 'install', slot: inbound.slot, tag: inbound.tag, key: inKey, spi: spec.spiIn, direction: 'in', ...common,
          ...(this.direct ? { policy: { localTs: spec.localTs, remoteTs: spec.remoteTs } } : {}),
        }, [inKey]),
        worker.request({
          op: 'install', slot: outbound.slot, tag: outbound.tag, key: outKey, spi: spec.spiOut, direction: 'out', ...common,
          ...(spec.seqSoftLimit !== undefined ? { seqSoftLimit: spec.seqSoftLimit } : {}),
          ...(spec.seqHardLimit !== undefined ? { seqHardLimit: spec.seqHardLimit } : {}),
          ...(route ? { route } : {}),
        }, [outKey]),
      ]);
    } catch (err) {
      if (record.state !== 'removed') this.forget(record);
      throw err;
    }
    if (record.state === 'removed') return; // removed while installing: forget() already deleted the slots
    sad.activate(record);
    for (const id of record.replaces) {
      const old = sad.get(id);
      if (old && old.outbound) {
        old.outbound = false;
        this.spd.remove(old);
      }
    }
    record.outbound = true;
    this.spd.add(record);
    this.log.debug({ sa: spec.id, worker: owner, spiIn: spec.spiIn.toString(16), transport: record.transport }, 'data plane SA installed');
  }

  /**
   * Direct output: where the owner worker sends this SA's ESP, with a
   * descriptor of its own (a dup; the worker closes it). Undefined keeps the
   * SA's ESP on the out ring: no direct output, the raw-socket backend, or no
   * native socket for its addresses.
   */
  private routeFor(r: SaRecord): EspRoute | undefined {
    if (!this.direct) return undefined;
    let socket: { fd: number; to: Destination } | undefined;
    let port = r.remote.port;
    if (r.transport === 'raw') {
      // transportFor() chose raw for an IPv4 peer only; the kernel ignores the port of a raw socket.
      const fd = this.rawSocket?.fd;
      socket = fd === undefined ? undefined : { fd, to: destination(Uint8Array.from(r.remote.address.split('.'), Number)) };
      port = 0;
    } else {
      socket = this.opts.espSocket?.(r.local, r.remote);
    }
    if (!socket) return undefined;
    return { fd: loadNativeIo().dup(socket.fd), family: socket.to.family, words: new Int32Array(socket.to.words), port };
  }

  /** Raw ESP when UDP encapsulation is not required and a raw socket is open (IPv4 only); else UDP (RFC 3948). */
  private transportFor(udpEncap: boolean, remote: Endpoint): EspTransport {
    return !udpEncap && this.rawSender && isIPv4(remote.address) ? 'raw' : 'udp';
  }

  /**
   * Remove a Child SA: unroutable at once, slots wiped by the owner worker.
   * Unknown ids are ignored. One exception to "at once": an SA that a
   * successor still installing replaces (a rekey) stays until that install
   * has completed or failed, bounded by the request timeout, so the new SA is
   * in before the old one goes (RFC 7296 §2.8). Otherwise the family could be
   * empty meanwhile (every outbound packet dropNoPolicy) and the successor's
   * ESP would be dropped.
   */
  async remove(id: number): Promise<void> {
    const r = this.sad?.get(id);
    if (!r) return;
    const successors = this.successorsInstalling.get(id);
    if (r.state === 'active' && successors && successors.size > 0) {
      await this.settledWithin(Promise.allSettled([...successors]), this.opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
      // Removed meanwhile (a second remove(), or stop()): nothing left to do.
      if (this.sad?.get(id) !== r) return;
    }
    await this.forget(r);
  }

  /** Wait for `p`, at most `ms`. */
  private async settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  private forget(r: SaRecord): Promise<void> {
    const wasOutbound = r.outbound;
    this.spd.remove(r);
    this.sad!.delete(r);
    if (wasOutbound) this.restorePredecessor(r);
    // Posted synchronously after the slots were freed, so it reaches the worker before any reuse.
    const w = this.workers[r.worker]!;
    return Promise.all([w.request({ op: 'delete', slot: r.inSlot }), w.request({ op: 'delete', slot: r.outSlot })]).then(
      () => undefined,
      // Once stopping, the workers wipe every slot themselves.
      (err: Error) => {
        if (this.running) this.log.warn({ sa: r.id, err: err.message }, 'data plane SA delete failed');
      },
    );
  }

  /**
   * `gone` carried outbound traffic and was deleted: when it had replaced
   * SAs that are still installed, the newest of them sends again. The case
   * this is for, RFC 7296 §2.8.1: both ends rekey the same Child SA at once;
   * the peer's new SA ("theirs", replaces [old]) and ours (replaces [old,
   * theirs]) both install here, ours takes theirs out of the SPD, then the
   * nonce rule makes us delete ours — without this, theirs would still
   * receive but nothing would send until the next rekey.
   * A predecessor that another live outbound SA replaces is not restored:
   * that one already carries its traffic.
   */
  private restorePredecessor(gone: SaRecord): void {
    const sad = this.sad!;
    let newest: SaRecord | undefined;
    for (const id of gone.replaces) {
      const c = sad.get(id);
      if (!c || c.state !== 'active' || c.outbound) continue;
      if (!newest || c.activatedAt > newest.activatedAt) newest = c;
    }
    if (!newest) return;
    const candidate = newest;
    if (sad.all().some((s) => s.outbound && s.replaces.includes(candidate.id))) return;
    candidate.outbound = true;
    this.spd.add(candidate);
    this.log.debug({ sa: candidate.id, removed: gone.id }, 'data plane: a replaced SA sends again, its successor was removed');
  }

  /** New outer addresses for an SA (MOBIKE, RFC 4555; NAT mapping change, RFC 3948). */
  updateAddresses(id: number, local: Endpoint, remote: Endpoint, udpEncap?: boolean): void {
    checkEndpoint(local, 'local');
    checkEndpoint(remote, 'remote');
    const r = this.sad?.get(id);
    if (!r) return;
    this.sad!.move(r, local, remote);
    if (udpEncap !== undefined) r.udpEncap = udpEncap;
    r.transport = this.transportFor(r.udpEncap, r.remote);
    const worker = this.workers[r.worker];
    // Once stopping, a route message could reach a worker whose port is already
    // closed, and the descriptor dup'ed for it would never be closed.
    if (!this.direct || !this.running || r.state === 'removed' || !worker?.running) return;
    // The owner sends the ESP itself: give it the new route (or none: the out ring).
    const route = this.routeFor(r);
    worker.request({ op: 'route', slot: r.outSlot, tag: r.outTag, route: route ?? null }).catch((err: Error) => {
      if (this.running) this.log.warn({ sa: id, err: err.message }, 'data plane route update failed');
    });
  }

  /** The worker that owns SA `id` (undefined until its worker has installed it). */
  ownerOf(id: number): number | undefined {
    const r = this.sad?.get(id);
    return r?.state === 'active' ? r.worker : undefined;
  }

  /** Ids of the installed SAs (their workers have them). */
  saIds(): number[] {
    return this.sad?.all().filter((r) => r.state === 'active').map((r) => r.id) ?? [];
  }

  // ------------------------------------------------------------------ I/O in

  /**
   * An ESP packet arrived (from the SPI on: UDP payload after RFC 3948
   * demultiplexing, or the IP payload of protocol 50) from `remote`. Routed
   * by SPI to the owner worker; never throws on packet contents.
   */
  receiveEsp(packet: Uint8Array, remote?: Endpoint): void {
    const io = this.io;
    io.espIn++;
    io.espInBytes += packet.length;
    // SPI + sequence number at least (RFC 4303 §2).
    if (!this.running || packet.length < 8) {
      io.dropMalformed++;
      return;
    }
    const spi = ((packet[0]! << 24) | (packet[1]! << 16) | (packet[2]! << 8) | packet[3]!) >>> 0;
    const r = this.sad!.inbound(spi);
    if (!r) {
      io.dropUnknownSpi++;
      if (this.listenerCount('unknown-spi') > 0) this.emit('unknown-spi', spi, remote);
      return;
    }
    if (r.state !== 'active') {
      // Installing: the worker may not have the slot yet. The SPI is a valid
      // SA's: no 'unknown-spi', which would make the control plane answer
      // INVALID_SPI (RFC 7296 §2.21.4) for an SA it just created.
      io.dropNoSa++;
      return;
    }
    this.enqueue(r.worker, packet, r.inSlot, CellKind.DECAP, r.inTag);
  }

  /**
   * An outbound inner packet (IPv4 or IPv6): SPD lookup, then to the owner of
   * the chosen SA. Returns false when it was dropped (counted). Never throws
   * on packet contents.
   */
  sendInner(packet: Uint8Array): boolean {
    const io = this.io;
    io.innerIn++;
    if (!this.running) {
      io.dropNoPolicy++;
      return false;
    }
    const r = this.spd.lookup(packet);
    if (r === 'malformed') {
      io.dropMalformed++;
      return false;
    }
    if (r === 'no-policy') {
      io.dropNoPolicy++;
      return false;
    }
    if (packet.length + ESP_OVERHEAD > this.workers[r.worker]!.input.maxPayload) {
      io.dropMalformed++;
      return false;
    }
    return this.enqueue(r.worker, packet, r.outSlot, CellKind.ENCAP, r.outTag);
  }

  private enqueue(worker: number, packet: Uint8Array, slot: number, kind: CellKind, tag: number): boolean {
    const w = this.workers[worker]!;
    if (!w.input.push(packet, slot, kind, tag)) {
      // Full ring, or a packet larger than a cell.
      if (packet.length > w.input.maxPayload) this.io.dropMalformed++;
      else this.io.dropQueueFull++;
      return false;
    }
    if (w.input.staged >= FLUSH_CELLS) w.input.publish();
    else this.scheduleFlush();
    return true;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      for (const w of this.workers) w.input.publish();
    });
  }

  // ----------------------------------------------------------------- I/O out

  /**
   * Take the workers' output: send ESP to peers, deliver inner packets. One
   * loop for all workers, round robin, at most SEND_BUDGET cells per turn of
   * the event loop: this thread's sockets are read once per turn (libuv takes
   * up to 32 datagrams per socket), so sending no faster than that keeps a
   * receiving socket on the same thread (two gateways in one process) from
   * overflowing, and keeps IKE responsive under load.
   */
  private async drain(): Promise<void> {
    const workers = this.workers;
    let next = 0;
    while (this.running) {
      let budget = SEND_BUDGET;
      let idle = 0;
      while (budget > 0 && idle < workers.length) {
        const w = workers[next]!;
        next = (next + 1) % workers.length;
        const k = Math.min(w.output.available(), Math.max(1, Math.ceil(SEND_BUDGET / workers.length)), budget);
        if (k === 0) {
          idle++;
          continue;
        }
        idle = 0;
        this.drainCells(w, k);
        budget -= k;
      }
      if (budget === SEND_BUDGET) {
        // Nothing to do: sleep until any worker publishes output. The bell's
        // count is read before the rings are checked, so output published in
        // between ends the wait at once.
        const doorbell = workers[0]!.doorbell;
        const seen = doorbell.value();
        if (workers.every((w) => w.output.available() === 0)) await doorbell.wait(seen, 250);
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }

  /** Handle and release the first `k` output cells of worker `w`. */
  private drainCells(w: WorkerHandle, k: number): void {
    const out = w.output;
    const sad = this.sad!;
    const io = this.io;
    for (let i = 0; i < k; i++) {
      const meta = out.meta(i);
      const r = sad.atSlot(w.index, metaSlot(meta), metaTag(meta));
      if (!r) {
        io.dropNoSa++;
        continue;
      }
      const payload = out.payload(i);
      if (metaKind(meta) === CellKind.ESP) {
        io.espOut++;
        io.espOutBytes += payload.length;
        // The payload is valid only until release(): the senders copy what they keep.
        if (r.transport === 'raw' && this.rawSender) this.rawSender.send(payload, r.remote.address);
        else this.sendUdp(r.local, r.remote, payload);
      } else if (!this.spd.inboundAllowed(r, payload)) {
        io.dropPolicy++;
      } else if (this.innerSink?.write(payload)) {
        io.innerOut++;
      } else {
        io.dropNoSink++;
      }
    }
    out.release(k);
    this.flushUdp?.();
    this.rawSender?.flush?.();
    const dropped = this.innerSink?.flush?.() ?? 0;
    if (dropped > 0) {
      io.innerOut -= dropped;
      io.dropNoSink += dropped;
    }
  }

  // ------------------------------------------------------------------ status

  private onWorkerEvent(w: WorkerHandle, e: WorkerEvent): void {
    if (e.event !== 'rekey-needed') return;
    const r = this.sad?.atSlot(w.index, e.slot, e.tag);
    if (r) this.emit('rekey-needed', r.id);
  }

  /** Counters without asking the workers (their totals live in shared memory). */
  status(): DataPlaneStatus {
    const sas = this.sad?.all() ?? [];
    // What workers wrote themselves (direct output) counts where the I/O thread would have counted it.
    const io = { ...this.io };
    const tun = this.tun ? { name: this.tun.name, mtu: this.tun.mtu, ...this.tun.stats } : null;
    for (const w of this.workers) {
      const s = w.stats;
      io.espOut += s[WorkerStat.ESP_SENT]!;
      io.espOutBytes += s[WorkerStat.ESP_SENT_BYTES]!;
      io.dropSend += s[WorkerStat.SEND_ERRORS]!;
      io.innerOut += s[WorkerStat.INNER_WRITTEN]!;
      io.dropPolicy += s[WorkerStat.DROP_POLICY]!;
      io.dropNoSink += s[WorkerStat.TUN_DROPPED]! + s[WorkerStat.TUN_ERRORS]!;
      if (tun) {
        tun.txPackets += s[WorkerStat.INNER_WRITTEN]!;
        tun.txBytes += s[WorkerStat.INNER_WRITTEN_BYTES]!;
        tun.txWrites += s[WorkerStat.TUN_WRITES]!;
        tun.txCoalesced += s[WorkerStat.TUN_COALESCED]!;
        tun.txDropped += s[WorkerStat.TUN_DROPPED]!;
        tun.errors += s[WorkerStat.TUN_ERRORS]!;
      }
    }
    return {
      workers: this.workers.map((w) => {
        const s = w.stats;
        return {
          index: w.index,
          sas: sas.filter((r) => r.worker === w.index).length,
          encapPackets: s[WorkerStat.ENCAP_PACKETS]!,
          encapBytes: s[WorkerStat.ENCAP_BYTES]!,
          decapPackets: s[WorkerStat.DECAP_PACKETS]!,
          decapBytes: s[WorkerStat.DECAP_BYTES]!,
          espBytesOut: s[WorkerStat.ESP_BYTES_OUT]!,
          drops: {
            replay: s[WorkerStat.DROP_REPLAY]!,
            icv: s[WorkerStat.DROP_AUTH]!,
            malformed: s[WorkerStat.DROP_MALFORMED]!,
            seqExhausted: s[WorkerStat.DROP_SEQ_EXHAUSTED]!,
            noSa: s[WorkerStat.DROP_NO_SA]!,
            queueFull: s[WorkerStat.DROP_QUEUE_FULL]!,
          },
          batches: s[WorkerStat.BATCHES]!,
          busyMs: Math.round(s[WorkerStat.BUSY_MS]! * 1000) / 1000,
          espSent: s[WorkerStat.ESP_SENT]!,
          innerWritten: s[WorkerStat.INNER_WRITTEN]!,
        };
      }),
      io,
      sas: sas.length,
      families: this.spd.familySizes,
      tun,
      rawEsp: this.rawSocket ? { ...this.rawSocket.stats } : null,
      output: this.outputMode,
    };
  }

  /** Fresh per-SA counters from every worker, and the single-writer debug hook. */
  async counters(): Promise<DataPlaneCounters> {
    const sad = this.requireSad();
    const replies: CountersReply[] = await Promise.all(
      this.workers.map((w) => {
        const slots = sad.all().filter((r) => r.worker === w.index).flatMap((r) => [r.inSlot, r.outSlot]);
        return w.counters(slots);
      }),
    );
    const sa: SaCountersReport[] = [];
    for (const r of sad.all()) {
      const reply = replies[r.worker]!;
      const inC = reply.slots.find((s) => s.slot === r.inSlot && s.saId === r.id);
      const outC = reply.slots.find((s) => s.slot === r.outSlot && s.saId === r.id);
      if (inC && outC) sa.push({ id: r.id, spiIn: r.spiIn, worker: r.worker, outbound: r.outbound, in: inC.counters, out: outC.counters });
    }
    return { ...this.status(), sa, seqWriters: replies.map((r) => r.seqWriters) };
  }

  /**
   * Generate IPv4/UDP traffic through every outbound SA (demo, benchmarks):
   * each SA's owner builds and seals the packets itself, the I/O side sends
   * them to the peer. IPv6-only SAs are skipped.
   */
  async generate(opts: GenerateOptions): Promise<GenerateReport> {
    const sad = this.requireSad();
    if (!Number.isInteger(opts.packets) || opts.packets < 0) throw new RangeError('generate: packets must be a non-negative integer');
    const targets = sad.all().filter((r) => r.outbound && r.localTs[0]?.startAddress.length === 4 && r.remoteTs[0]?.startAddress.length === 4);
    if (targets.length === 0) throw new Error('generate: no outbound IPv4 SA installed');
    const t0 = performance.now();
    const per = Math.floor(opts.packets / targets.length);
    const perSa = await Promise.all(targets.map(async (r, i) => {
      const packets = per + (i < opts.packets % targets.length ? 1 : 0);
      const reply = await this.workers[r.worker]!.generate({
        slot: r.outSlot,
        tag: r.outTag,
        packets,
        size: opts.size ?? 1400,
        flows: opts.flows ?? 16,
        batch: opts.batch ?? 64,
        src: selectorAddress(r.localTs[0]!),
        dst: selectorAddress(r.remoteTs[0]!),
        output: 'ring',
      });
      return { id: r.id, worker: r.worker, ...reply };
    }));
    return { perSa, sent: perSa.reduce((a, p) => a + p.sent, 0), ms: performance.now() - t0 };
  }
}
