// The data plane as the control plane uses it (the facade): worker threads
// that own Child SAs, the SAD and SPD that route packets to them, and packet
// I/O through the io layer — UDP-encapsulated ESP (RFC 3948) through the
// gateway's sockets (io/udp-sockets.ts) or a send function the caller
// provides, raw ESP (IP protocol 50, io/rawesp.ts) and a TUN device
// (io/tun.ts) for inner traffic. The work is done by stages:
//   install.ts   install, removal, rekey handover, address updates
//   inbound.ts   ESP in -> SAD by SPI -> owner's in ring
//   outbound.ts  inner packet -> SPD -> owner's in ring; traffic generator
//   output.ts    workers' out rings -> sockets and TUN (I/O-thread output)
//   status.ts    status snapshot and per-SA counters
// over the state they share (state.ts); this file starts and stops them.
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
// and the only reader of every out ring; ring cells carry slots, not SPIs.
// With a steered NAT-T port (adoptSteeredSockets, io/esp-steering.ts) each
// worker reads its own socket and finds the inbound slot by SPI itself
// (worker-input.ts): that ESP never reaches this thread.
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
// The data plane knows nothing of IKE (architecture §2): it imports nothing
// from control/; the gateway translates a Child SA into an SaSpec with its
// ESP transform descriptor (algorithm name, key material, ICV length).
import { EventEmitter } from 'node:events';
import { isIPv4 } from 'node:net';
import type { Endpoint } from '../io/endpoint.js';
import { bytesToIp } from '../io/ip.js';
import { TunDevice, TUN_DEFAULT_MTU } from '../io/tun.js';
import { getSystemErrorName } from 'node:util';
import { RawEspSocket } from '../io/rawesp.js';
import { openRawEspShares } from '../io/raw-esp-steering.js';
import { loadNativeIo } from '../io/native-io.js';
import { CELL_HEADER_BYTES } from './ring.js';
import { Sad, type SaSpec } from './sad.js';
import type { Selector } from './packet.js';
import { closeWorkerBells, startWorkers, type WorkerHandle } from './workers.js';
import { nativeIoUnavailable } from '../io/native-io.js';
import type { WorkerEvent } from './messages.js';
import { DEFAULT_CELL_SIZE, ESP_OVERHEAD, KERNEL_SLOT_COUNT, RAW_ESP_WORKER_BUFFER, WORKER_LOOP_DEFAULT } from './defaults.js';
import { PlaneState, quietLogger, type DataPlaneEvents, type DataPlaneLogger, type DataPlaneOptions, type InnerSink, type RawEspSender } from './state.js';
import { RingFeed } from './ring-feed.js';
import { SaInstaller } from './install.js';
import { HandoverTiming } from './handover.js';
import { InboundEsp } from './inbound.js';
import { OutboundInner, type GenerateOptions, type GenerateReport } from './outbound.js';
import { OutputDrain } from './output.js';
import { StatusReader, type DataPlaneCounters, type DataPlaneStatus } from './status.js';
import { openTun, PolicyFeed } from './tun-input.js';

export type { DataPlaneEvents, DataPlaneLogger, DataPlaneOptions, InnerSink, IoCounters, RawEspSender } from './state.js';
export type { DataPlaneCounters, DataPlaneStatus, SaCountersReport, WorkerCounters, WorkerDrops } from './status.js';
export type { GenerateOptions, GenerateReport } from './outbound.js';

/** udpRecv's source words (family << 16 | port, address) as an Endpoint; undefined when they are not one. */
function sourceEndpoint(w: Int32Array): Endpoint | undefined {
  if (!(w instanceof Int32Array) || w.length < 5) return undefined;
  const family = w[0]! >>> 16;
  if (family !== 4 && family !== 6) return undefined;
  const bytes = new Uint8Array(w.buffer, w.byteOffset + 4, family === 4 ? 4 : 16);
  return { address: bytesToIp(bytes), port: w[0]! & 0xffff };
}

export class DataPlane extends EventEmitter<DataPlaneEvents> {
  readonly workerCount: number;
  readonly sink: 'deliver' | 'discard';
  private readonly log: DataPlaneLogger;
  private readonly s: PlaneState;
  private readonly feed: RingFeed;
  private readonly installer: SaInstaller;
  private readonly inbound: InboundEsp;
  private readonly outbound: OutboundInner;
  private readonly output: OutputDrain;
  private readonly statusReader: StatusReader;
  private readonly policyFeed: PolicyFeed;
  private drainLoop: Promise<void> | undefined;
  private starting: Promise<void> | undefined;

  constructor(private readonly opts: DataPlaneOptions) {
    super();
    if (!opts || (typeof opts.sendUdp !== 'function' && !opts.udp)) throw new TypeError('DataPlane: sendUdp must be a function');
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError('DataPlane: workers must be a positive integer');
    this.workerCount = opts.workers;
    this.sink = opts.tun ? 'deliver' : (opts.sink ?? 'deliver');
    this.log = opts.log ?? quietLogger;
    this.s = new PlaneState(opts, this.log, this);
    this.feed = new RingFeed(this.s);
    const handover = new HandoverTiming(this.s, this.feed);
    this.installer = new SaInstaller(this.s, handover);
    this.inbound = new InboundEsp(this.s, this.feed, handover);
    this.outbound = new OutboundInner(this.s, this.feed);
    this.output = new OutputDrain(this.s);
    this.statusReader = new StatusReader(this.s);
    this.policyFeed = new PolicyFeed(this.s);
    // ESP the sockets receive comes here directly, not through the control plane (architecture §3).
    opts.udp?.setEspReceiver(this.inbound.fromUdp);
  }

  /**
   * Bytes per ring cell: the given size, else room for an inner packet of the
   * TUN MTU plus its ESP encapsulation (ESP_OVERHEAD: the most any suite
   * adds), at least the default.
   */
  private cellSize(): number {
    if (this.opts.cellSize !== undefined) return this.opts.cellSize;
    const mtu = this.opts.tun?.mtu ?? TUN_DEFAULT_MTU;
    return Math.max(DEFAULT_CELL_SIZE, (mtu + CELL_HEADER_BYTES + ESP_OVERHEAD + 7) & ~7);
  }

  get started(): boolean {
    return this.s.running;
  }

  /** Who writes the output (see the header). */
  get outputMode(): 'workers' | 'io-thread' {
    return this.statusReader.outputMode;
  }

  /** How idle workers wait (DataPlaneOptions.workerLoop); epoll needs the native addon. */
  private workerLoop(): 'epoll' | 'event-loop' {
    const want = this.opts.workerLoop ?? WORKER_LOOP_DEFAULT;
    return want === 'epoll' && nativeIoUnavailable() === null ? 'epoll' : 'event-loop';
  }

  /** Start the workers (each instantiates its kernel), the TUN device and the raw ESP socket when configured. */
  start(): Promise<void> {
    if (this.s.running) return Promise.resolve();
    this.starting ??= this.startOnce().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    // The TUN device first: with direct output every worker starts with its own descriptor of a queue,
    // and reads it too when there is one queue per worker (tun-input.ts).
    const opened = openTun(this.opts, this.workerCount, this.s.log);
    const tun = opened?.tun;
    const direct = tun !== undefined && this.opts.output !== 'io-thread';
    const tunRead = direct && opened!.workersRead;
    this.s.workerLoop = this.workerLoop();
    try {
      this.s.workers = await startWorkers({
        count: this.workerCount,
        sink: this.sink,
        ...(this.opts.ringCapacity !== undefined ? { ringCapacity: this.opts.ringCapacity } : {}),
        cellSize: this.cellSize(),
        onEvent: (w, e) => this.onWorkerEvent(w, e),
        ...(this.opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: this.opts.requestTimeoutMs } : {}),
        onExit: (w, reason) => {
          // Its SAs have no owner any more: they stay routed (and dropped: ring full) until the control plane deletes them.
          if (this.s.running) this.s.log.warn({ worker: w.index, reason }, 'data-plane worker ended: its SAs carry no traffic');
        },
        // Worker i writes queue i mod queues: with as many queues as workers, each owns one.
        ...(direct ? { direct: (i: number) => ({ tunFd: tun.dupQueue(i), tunOffload: tun.offload, ...(tunRead ? { tunRead } : {}) }) } : {}),
        ...(tunRead ? { handOff: true } : {}),
        loop: this.s.workerLoop,
      });
    } catch (err) {
      tun?.close();
      throw err;
    }
    this.s.direct = direct;
    this.s.tunRead = tunRead;
    this.s.sad = new Sad(this.workerCount, KERNEL_SLOT_COUNT);
    this.s.running = true;
    this.drainLoop = this.output.drain();
    if (tun) {
      this.s.tun = tun;
      // Read here unless the workers read their queues themselves (they report a failed queue: onWorkerEvent).
      if (!tunRead) tun.start((packet) => this.sendInner(packet), (err) => this.tunFailed(tun, err));
      this.setInnerSink(tun);
    }
    if (tunRead) this.policyFeed.start();
    if (this.opts.rawEsp) {
      try {
        this.s.rawSocket = RawEspSocket.open(
          this.inbound.fromRaw,
          (err) => this.s.log.warn({ err: err.message }, 'raw ESP socket error'),
        );
        this.setRawEspSender(this.s.rawSocket);
      } catch (err) {
        this.s.log.info({ reason: (err as Error).message }, 'raw ESP unavailable: ESP travels in UDP');
      }
    }
    this.s.log.info(
      { workers: this.workerCount, sink: this.sink, tun: this.s.tun?.name ?? null, rawEsp: this.s.rawSocket !== undefined, output: this.outputMode },
      'data plane started',
    );
  }

  /** Stop every worker (each wipes its SA slots) and forget all SAs. */
  async stop(): Promise<void> {
    await this.starting?.catch(() => {});
    await this.shutdown();
  }

  private async shutdown(): Promise<void> {
    if (!this.s.running) return;
    this.s.running = false;
    this.policyFeed.stop();
    this.s.tun?.close();
    this.s.tun = undefined;
    if (this.s.innerSink instanceof TunDevice) this.s.innerSink = undefined;
    this.s.rawSocket?.close();
    if (this.s.rawSender === this.s.rawSocket) this.s.rawSender = undefined;
    this.s.rawSocket = undefined;
    // The drain loop sleeps on the set's doorbell, not on any one out ring
    // (drain()): ring it, or stop waits out the loop's 250 ms idle timeout.
    this.s.workers[0]?.doorbell.ring();
    await this.drainLoop;
    await Promise.all(this.s.workers.map((w) => w.stop()));
    closeWorkerBells(this.s.workers);
    for (const r of this.s.sad?.all() ?? []) {
      this.s.spd.remove(r);
      this.s.sad!.delete(r);
    }
    this.s.workers = [];
    this.drainLoop = undefined;
  }

  /** Where decapsulated packets go (a TUN device); undefined drops them (counted). */
  setInnerSink(sink: InnerSink | undefined): void {
    this.s.innerSink = sink;
  }

  /** Raw ESP output for SAs without UDP encapsulation; undefined = everything in UDP. */
  setRawEspSender(sender: RawEspSender | undefined): void {
    this.s.rawSender = sender;
  }

  /**
   * Install a Child SA in its owner worker: inbound and outbound slots, keys
   * moved there (zeroed in `spec` before this returns), then routable by SPI
   * and, for outbound traffic, by selectors. Resolves when the worker has it.
   */
  install(spec: SaSpec): Promise<void> {
    return this.installer.install(spec);
  }

  /**
   * The worker that will own a Child SA with these selectors (the one of the
   * SA with inbound SPI `replacingSpi` for a rekey), asked before its inbound
   * SPI is drawn so the SPI can name it; install it with SaSpec.worker set to
   * the answer (placement.ts).
   */
  placeChild(localTs: readonly Selector[], remoteTs: readonly Selector[], replacingSpi?: number, preferredWorker?: number): number {
    return this.installer.placement.place(this.s.sad, localTs, remoteTs, replacingSpi, preferredWorker);
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
  remove(id: number): Promise<void> {
    return this.installer.remove(id);
  }

  /**
   * A Child SA was deleted: it stops sending at once and is removed after
   * `lingerMs`, receiving meanwhile what the peer sent before its Delete
   * (dataplane/handover.ts). Unknown ids are ignored.
   */
  retire(id: number, lingerMs?: number): Promise<void> {
    return this.installer.retire(id, lingerMs);
  }

  /** New outer addresses for an SA (MOBIKE, RFC 4555; NAT mapping change, RFC 3948). */
  updateAddresses(id: number, local: Endpoint, remote: Endpoint, udpEncap?: boolean): void {
    this.installer.updateAddresses(id, local, remote, udpEncap);
  }

  /** The worker that owns SA `id` (undefined until its worker has installed it). */
  ownerOf(id: number): number | undefined {
    const r = this.s.sad?.get(id);
    return r?.state === 'active' ? r.worker : undefined;
  }

  /** Ids of the installed SAs (their workers have them). */
  saIds(): number[] {
    return this.s.sad?.all().filter((r) => r.state === 'active').map((r) => r.id) ?? [];
  }

  // ------------------------------------------------------------------ I/O in

  /**
   * An ESP packet arrived (from the SPI on: UDP payload after RFC 3948
   * demultiplexing, or the IP payload of protocol 50) from `remote`, with
   * its outer TOS / Traffic Class as udpRecv reports it (RECV_TOS_VALID |
   * octet; 0: not known, left as it is). Routed by SPI to the owner worker;
   * never throws on packet contents.
   */
  receiveEsp(packet: Uint8Array, remote?: Endpoint, tos = 0): void {
    this.inbound.receiveEsp(packet, remote, tos);
  }

  /**
   * An outbound inner packet (IPv4 or IPv6): SPD lookup, then to the owner of
   * the chosen SA. Returns false when it was dropped (counted). Never throws
   * on packet contents.
   */
  sendInner(packet: Uint8Array): boolean {
    return this.outbound.sendInner(packet);
  }

  /**
   * Hand worker w the socket fds[w] of a steered NAT-T port
   * (io/esp-steering.ts): it reads and decapsulates the ESP the kernel
   * steers to it itself, and closes the socket at stop. Resolves when every
   * worker has its socket; the descriptors are theirs from the call on.
   */
  async adoptSteeredSockets(fds: readonly number[], address?: string, raw = false): Promise<void> {
    if (!this.s.running || fds.length !== this.s.workers.length) {
      for (const fd of fds) loadNativeIo().close(fd);
      throw new RangeError(`adoptSteeredSockets: one socket per worker (${this.s.workers.length}) on a running data plane`);
    }
    this.s.steered = true;
    // A worker that did not take its socket (it ended meanwhile): the socket is closed here, not leaked.
    await Promise.all(this.s.workers.map((w, i) => w.request({ op: 'steered-socket', fd: fds[i]!, ...(address !== undefined ? { address } : {}), ...(raw ? { raw } : {}) }).catch((err: Error) => {
      loadNativeIo().close(fds[i]!);
      throw err;
    })));
  }

  /**
   * With raw ESP steering (DataPlaneOptions.rawSteering): hand each worker a
   * raw IPv4 ESP socket bound to `address` that keeps the SPIs naming it
   * (io/raw-esp-steering.ts); the I/O thread's then keeps only the rest.
   * Called beside adoptSteeredSockets for each steered NAT-T address. When
   * the kernel refuses, the I/O thread goes on reading all of it.
   */
  async adoptRawEspShares(address: string): Promise<void> {
    const raw = this.s.rawSocket;
    const control = raw?.fdFor(4);
    if (!this.opts.rawSteering || !this.s.running || control === undefined || !isIPv4(address)) return;
    let fds: number[];
    try {
      fds = openRawEspShares(control, { node: this.opts.rawSteering.node, workers: this.s.workers.length, bufferBytes: RAW_ESP_WORKER_BUFFER, address });
    } catch (err) {
      this.s.log.info({ address, reason: (err as Error).message }, 'raw ESP not filtered per worker: the I/O thread reads it');
      return;
    }
    await this.adoptSteeredSockets(fds, undefined, true);
    raw!.stats.workers = true;
  }

  // ------------------------------------------------------------------ status

  /** The device is gone (deleted) or broken: a queue reads nothing more. Said loudly; status().tun.readStatus keeps the libuv status. */
  private tunFailed(tun: TunDevice, err: NodeJS.ErrnoException): void {
    this.s.log.warn({ tun: tun.name, err: err.message, code: err.code }, 'TUN device failed: no more inner traffic is read from it');
    this.emit('device-error', `tun:${tun.name}`, err);
  }

  private onWorkerEvent(w: WorkerHandle, e: WorkerEvent): void {
    if (e.event === 'tun-error') {
      const tun = this.s.tun;
      if (tun) tun.readFailed(e.status, (err) => this.tunFailed(tun, err));
      this.s.log.debug({ worker: w.index, status: e.status, code: getSystemErrorName(e.status) }, 'worker TUN queue stopped');
      return;
    }
    if (e.event === 'steered-error') this.s.log.warn({ worker: w.index, status: e.status }, 'steered socket failed: this worker reads no more ESP from it');
    if (e.event === 'first-inbound') {
      const r = this.s.sad?.atSlot(w.index, e.slot, e.tag);
      if (r) this.installer.peerSends(r);
      return;
    }
    if (e.event === 'esp-source') {
      const r = this.s.sad?.atSlot(w.index, e.slot, e.tag);
      const remote = sourceEndpoint(e.source);
      if (r && remote) this.emit('esp-source', r.id, remote);
      return;
    }
    if (e.event !== 'rekey-needed') return;
    const r = this.s.sad?.atSlot(w.index, e.slot, e.tag);
    if (r) this.emit('rekey-needed', r.id);
  }

  /** Counters without asking the workers (their totals live in shared memory). */
  status(): DataPlaneStatus {
    return this.statusReader.status();
  }

  /** Fresh per-SA counters from every worker, and the single-writer debug hook. */
  counters(): Promise<DataPlaneCounters> {
    return this.statusReader.counters();
  }

  /**
   * Generate IPv4/UDP traffic through every outbound SA (demo, benchmarks):
   * each SA's owner builds and seals the packets itself, the I/O side sends
   * them to the peer. IPv6-only SAs are skipped.
   */
  generate(opts: GenerateOptions): Promise<GenerateReport> {
    return this.outbound.generate(opts);
  }
}
