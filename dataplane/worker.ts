// One data-plane worker: the thread that owns a set of SA slots (architecture §4.1).
//
// Concurrency, who owns what:
// - This thread alone instantiates and calls its EspKernel; every sequence
//   counter and replay window of the SAs installed here lives in that
//   kernel's (unshared) linear memory and is read and written by no other
//   thread. The I/O side knows only slot numbers.
// - It is the single reader of `inRing` and of its hand-off rings in, the
//   single writer of `outRing`, of its hand-off rings out and of its `stats`
//   totals.
// - Control requests (install, delete, counters, generate, stop) arrive on
//   its MessagePort and run between batches, or inside a steered input's
//   batch before it is looked up again (its catch-up, worker-input.ts), so a
//   slot is never deleted while a batch uses it. Every cell carries its slot's
//   installation tag: a cell queued for an SA that was deleted meanwhile is
//   dropped, not processed with the slot's next SA.
//
// Hosting: worker.ts is the task of a piscina pool with exactly one thread
// (workers.ts). The task does not return until a stop request: piscina hosts
// this long-lived loop; it never schedules packets, which go through rings.
//
// The loop: wait on its bell (Atomics.waitAsync, so control messages still
// run; every writer of its in ring and hand-off rings rings it) until cells
// arrive; take up to MAX_BATCH of them; copy ENCAP cells into the
// kernel's arena and seal them in one encapBatch call, DECAP cells likewise
// with decapBatch; copy results into outRing cells, or, with direct output
// (worker-output.ts), send and write them from the arena; publish; yield to
// the event loop every few batches. With a steered NAT-T port the worker also
// owns its socket of it (worker-input.ts): whenever it is readable (on this
// thread's event loop, so between batches, like control messages) a batch
// is read into the arena and decapsulated there, without the I/O thread.
// With one TUN queue per worker (DirectOutput.tunRead) it reads its queue
// the same way and seals what it owns where it read it (worker-tun-input.ts);
// packets of SAs other workers own arrive from them on hand-off rings and are
// sealed like ring cells.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { EspKernel, ResultCode, DESC_WORDS, Desc, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE } from './kernel.js';
import type { WasmModule } from './kernel-wasm.js';
import { CellKind, Doorbell, RingReader, RingWriter, metaKind, metaSlot, metaTag } from './ring.js';
import { WorkerSpd } from './worker-spd.js';
import { TunQueueInput } from './worker-tun-input.js';
import { WorkerBell } from './worker-bell.js';
import { EpollWaiter } from './worker-epoll.js';
import { writeUdp4 } from './packet.js';
import { BATCHES_PER_YIELD, CATCH_UP_MESSAGES, EPOLL_WAKES_PER_YIELD, IDLE_WAIT_MS, STEERED_HOLD } from './defaults.js';
import { UnknownSpiHold } from './steered-hold.js';
import { DirectWriter } from './worker-output.js';
import { SOURCE_WORDS, SharedArena, SteeredInput } from './worker-input.js';
import { combineEcn, EcnDecap, ecnNormal, OUTER_HEADER_DEFAULT_WORD, outerSendWord } from './outer-header.js';
import { OUTER_DF_SOCKOPT, RECV_TOS_VALID } from '../io/native-io.js';
import {
  WORKER_STAT_COUNT, WorkerStat,
  type CountersReply, type EspRoute, type GenerateReply, type GenerateRequest, type InboundPolicy, type InstallRequest,
  type RouteRequest, type WorkerEvent, type WorkerReply, type WorkerRequest, type WorkerTask,
} from './messages.js';

/** Bytes between packets in the arena: headroom + largest cell payload + tailroom, 64-aligned. */
function arenaStride(maxPayload: number, headroom: number, tailroom: number): number {
  return (headroom + maxPayload + tailroom + 63) & ~63;
}


function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface SlotState {
  saId: number;
  tag: number;
  direction: 'in' | 'out';
  rekeyReported: boolean;
  /** This thread has run packets through the SA (recorded once in seqWriters). */
  written: boolean;
  /** Inbound: a packet on this SA passed its ICV ('first-inbound' was posted). */
  received: boolean;
  /** Direct output: where this outbound SA's ESP goes (else the out ring). */
  route?: EspRoute;
  /** Direct output: the selectors of this inbound SA (its packets go to the TUN queue, else to the out ring). */
  policy?: InboundPolicy;
  /** The SA's SPI (inbound: what steered ESP is looked up by). */
  spi: number;
  /** The outer header rules, packed (outer-header.ts). */
  outer: number;
  /** Direct output over UDP: this worker's own steered socket at the route's local address, if it has one (sendFdFor). */
  sendFd?: number;
  /** Inbound, UDP-encapsulated: where the peer's ESP comes from, as far as this worker knows (InstallRequest.source). */
  source?: Int32Array;
}

class DataPlaneWorker {
  private readonly kernel: EspKernel;
  private readonly port: MessagePort;
  private readonly input: RingReader;
  private readonly output: RingWriter;
  private readonly stats: Float64Array;
  private readonly slots: Array<SlotState | undefined>;
  private readonly stride: number;
  private readonly seqWriters = new Set<number>();
  private readonly descScratch = new Uint32Array(DESC_WORDS);
  private readonly sink: 'deliver' | 'discard';
  private readonly direct: DirectWriter | undefined;
  private stopping = false;
  /** Control requests received (each counted in the bell by its sender: worker-bell.ts). */
  private handled = 0;
  private generators = 0;
  /** Steered input (worker-input.ts): this worker's socket of the NAT-T port, and its inbound slots by SPI. */
  private readonly steered: SteeredInput[] = [];
  /** The arena as the steered inputs share it: held ESP is not opened in it while a batch of theirs is there. */
  private readonly steeredArena = new SharedArena();
  private readonly inboundBySpi = new Map<number, number>();
  /** Per kernel descriptor: the outer header word of a packet to encapsulate, the outer TOS of one to decapsulate. */
  private readonly outerWords: Int32Array;
  private readonly outerTos: Int32Array;
  /** Per kernel descriptor of steered ESP: its source (worker-input.ts); family 0 for ring cells. */
  private readonly sources: Int32Array;
  /** Rung by every writer of this worker's rings in; the loop sleeps on it. */
  private readonly bell: WorkerBell;
  /** The epoll loop (worker-epoll.ts), when the worker blocks in the kernel. */
  private readonly epoll: EpollWaiter | undefined;
  /** Hand-off rings in: packets other workers read from their TUN queues for SAs this worker owns. */
  private readonly handIn: RingReader[];
  /** This worker's own TUN queue, when it reads one (worker-tun-input.ts), and its copy of the SPD. */
  private readonly spd: WorkerSpd;
  private readonly tunInput: TunQueueInput | undefined;

  constructor(private readonly task: WorkerTask) {
    this.kernel = EspKernel.createSync(task.module as WasmModule);
    this.port = task.port as MessagePort;
    this.input = new RingReader(task.inRing);
    this.output = new RingWriter(task.outRing, new Doorbell(task.doorbell));
    this.stats = new Float64Array(task.stats, 0, WORKER_STAT_COUNT);
    this.slots = new Array<SlotState | undefined>(this.kernel.slotCount);
    this.stride = arenaStride(this.input.maxPayload, this.kernel.headroom, this.kernel.tailroom);
    if (this.stride * this.kernel.maxBatch > this.kernel.arena.length) throw new Error('ring cells too large for the kernel arena');
    this.sink = task.sink;
    this.direct = task.direct ? new DirectWriter(task.direct, this.stats) : undefined;
    this.outerWords = new Int32Array(this.kernel.maxBatch);
    this.outerTos = new Int32Array(this.kernel.maxBatch);
    this.sources = new Int32Array(this.kernel.maxBatch * SOURCE_WORDS);
    // A task without a bell (a worker hosted on its own, as in tests) gets one nobody else rings.
    this.bell = new WorkerBell(task.wake ?? WorkerBell.create());
    this.epoll = task.loop === 'epoll' ? new EpollWaiter(this.bell) : undefined;
    this.handIn = (task.handOff?.in ?? []).map((r) => new RingReader(r));
    this.spd = new WorkerSpd(task.index);
    this.tunInput = task.direct?.tunRead
      ? new TunQueueInput(task.direct.tunFd, task.direct.tunOffload, this.kernel, this.stride, this.stats, this.spd, task.handOff,
        (slot, tag) => this.ownsOutbound(slot, tag), (n) => this.runArena(n, CellKind.ENCAP))
      : undefined;
  }

  private ownsOutbound(slot: number, tag: number): boolean {
    const s = this.slots[slot];
    return s !== undefined && s.tag === tag && s.direction === 'out';
  }

  async run(): Promise<void> {
    this.port.on('message', (req: WorkerRequest) => this.handle(req));
    const tunError = (status: number) => this.post({ event: 'tun-error', index: this.task.index, status });
    if (this.epoll) this.tunInput?.attach(this.epoll, tunError);
    else this.tunInput?.start(tunError);
    this.post({ event: 'ready', index: this.task.index });
    let batches = 0;
    while (!this.stopping) {
      // Held steered ESP whose SPI stayed unknown too long is dropped (and counted) within an idle wait.
      for (const input of this.steered) input.expireHeld();
      // Taken before the rings are checked: a publish after this wakes the wait below.
      const seen = this.bell.value();
      let cells = this.processRing(this.input);
      for (const r of this.handIn) {
        const n = this.processRing(r);
        this.stats[WorkerStat.HANDOFFS_IN]! += n;
        cells += n;
      }
      if (cells > 0) this.output.publish();
      if (!this.epoll) {
        if (cells === 0) {
          batches = 0;
          await this.bell.wait(seen, IDLE_WAIT_MS);
        } else if (++batches % BATCHES_PER_YIELD === 0) await yieldToEventLoop();
        continue;
      }
      // Blocking in the kernel: the event loop gets a turn only when it has work (see worker-epoll.ts).
      // A control request posted and not yet handled: the event loop turns until its message
      // arrives (never a block in epoll meanwhile). Busy with ring cells, a generator or that,
      // the socket and the TUN queue are still read between turns.
      const controlPending = this.bell.controls() > this.handled;
      if (cells > 0 || this.generators > 0 || controlPending) this.epoll.pollNow();
      if (controlPending || this.generators > 0 || (cells > 0 && ++batches % BATCHES_PER_YIELD === 0)) {
        await yieldToEventLoop();
        continue;
      }
      if (cells > 0) continue;
      if (this.epoll.wait(seen, IDLE_WAIT_MS) === 0 || ++batches % EPOLL_WAKES_PER_YIELD === 0) await yieldToEventLoop();
    }
    // Let running generators notice the stop, then wipe every slot (architecture §4.5).
    while (this.generators > 0) await yieldToEventLoop();
    for (const input of this.steered) input.stop();
    this.tunInput?.stop();
    this.epoll?.close();
    for (let s = 0; s < this.slots.length; s++) if (this.slots[s]) this.deleteSlot(s);
    this.direct?.close();
    this.port.close();
  }

  private post(msg: WorkerEvent | WorkerReply): void {
    this.port.postMessage(msg);
  }

  private handle(req: WorkerRequest): void {
    this.handled++;
    if (req.op === 'generate') {
      // Runs across many turns of the event loop; replies when done.
      this.generators++;
      this.generate(req).then(
        (value) => this.post({ id: req.id, ok: true, value }),
        (err: Error) => this.post({ id: req.id, ok: false, error: err.message }),
      ).finally(() => this.generators--);
      return;
    }
    try {
      const value = this.control(req);
      this.post(value === undefined ? { id: req.id, ok: true } : { id: req.id, ok: true, value });
    } catch (err) {
      this.post({ id: req.id, ok: false, error: (err as Error).message });
    }
  }

  private control(req: Exclude<WorkerRequest, GenerateRequest>): CountersReply | undefined {
    switch (req.op) {
      case 'install':
        this.install(req);
        return undefined;
      case 'route':
        this.setRoute(req);
        return undefined;
      case 'delete':
        this.deleteSlot(req.slot);
        return undefined;
      case 'counters':
        return {
          slots: req.slots.filter((s) => this.slots[s] !== undefined).map((s) => ({ slot: s, saId: this.slots[s]!.saId, counters: this.kernel.counters(s) })),
          seqWriters: [...this.seqWriters],
        };
      case 'policies':
        this.spd.set(req.families);
        return undefined;
      case 'steered-socket':
        this.adoptSteeredSocket(req.fd, req.address, req.raw === true);
        return undefined;
      case 'stop':
        this.stopping = true;
        this.bell.ring();
        return undefined;
    }
  }

  /** Wipe a slot's SA (architecture §4.5) and close its route's descriptor. */
  private deleteSlot(slot: number): void {
    const s = this.slots[slot];
    if (!s) return;
    this.kernel.deleteSa(slot);
    if (s.route) this.direct?.closeRoute(s.route);
    if (s.direction === 'in' && this.inboundBySpi.get(s.spi) === slot) this.inboundBySpi.delete(s.spi);
    this.slots[slot] = undefined;
  }

  /** Read this worker's socket of a steered NAT-T port (one per listen address), or its filtered raw ESP socket, from now on. */
  private adoptSteeredSocket(fd: number, address?: string, raw = false): void {
    const input = new SteeredInput(fd, this.kernel, this.stride, this.stats, (spi) => this.inboundBySpi.get(spi), (n) => this.runArena(n, CellKind.DECAP), () => this.catchUp(), this.outerTos, this.sources, address, raw, new UnknownSpiHold(STEERED_HOLD), this.steeredArena);
    this.steered.push(input);
    this.resolveSendFds();
    const onError = (status: number) => {
      // Its descriptor is closed: no route sends on it any more.
      this.resolveSendFds();
      this.post({ event: 'steered-error', index: this.task.index, status });
    };
    if (this.epoll) input.attach(this.epoll, onError);
    else input.start(onError);
  }

  /**
   * The socket this worker sends a UDP route's ESP on: its own socket of a
   * steered port bound to the route's local address (or to the wildcard of
   * its family), else the route's (shared with other threads). Only on its
   * own may IPv4 DF be switched per packet (native/io/udp.c).
   */
  private sendFdFor(route: EspRoute | undefined): number | undefined {
    const local = route?.local;
    if (local === undefined) return undefined;
    const wildcard = local.includes(':') ? '::' : '0.0.0.0';
    let found: number | undefined;
    for (const input of this.steered) {
      if (input.descriptor < 0) continue;
      if (input.address === local) return input.descriptor;
      if (input.address === wildcard) found = input.descriptor;
    }
    return found;
  }

  private resolveSendFds(): void {
    for (const s of this.slots) {
      if (!s || s.direction !== 'out') continue;
      const fd = this.sendFdFor(s.route);
      if (fd === undefined) delete s.sendFd;
      else s.sendFd = fd;
    }
  }

  /**
   * Apply the control messages already queued on the port, in order, as the
   * 'message' listener would have a moment later (bounded: a batch's worth).
   * True when there were any.
   */
  private catchUp(): boolean {
    let applied = 0;
    for (; applied < CATCH_UP_MESSAGES; applied++) {
      const m = receiveMessageOnPort(this.port);
      if (m === undefined) break;
      this.handle(m.message as WorkerRequest);
    }
    return applied > 0;
  }

  /**
   * Descriptors 0..n-1 hold packets this worker read itself into the arena
   * (steered ESP to open, or inner packets from its TUN queue to seal): one
   * kernel batch, results out like a ring batch's.
   */
  private runArena(n: number, kind: typeof CellKind.ENCAP | typeof CellKind.DECAP): void {
    const t0 = performance.now();
    const desc = this.kernel.descriptors;
    const arena = this.kernel.arena;
    for (let k = 0; k < n; k++) {
      const d = k * DESC_WORDS;
      const s = this.slots[desc[d + Desc.SLOT]!];
      if (s && !s.written) this.noteWriter(s);
      // Inner packets read from the TUN queue: their outer header word, as for ring cells.
      if (kind === CellKind.ENCAP) this.outerWords[k] = s ? outerSendWord(s.outer, arena, desc[d + Desc.OFFSET]!, desc[d + Desc.LENGTH]!) : 0;
    }
    if (kind === CellKind.ENCAP) this.kernel.encapBatch(n);
    else this.kernel.decapBatch(n);
    this.stats[WorkerStat.BATCHES]!++;
    this.collect(n, kind);
    this.output.publish();
    this.stats[WorkerStat.BUSY_MS]! += performance.now() - t0;
  }

  /** A new route for an outbound SA's ESP (its descriptor is now this thread's); the old one is closed. */
  private setRoute(req: RouteRequest): void {
    const s = this.slots[req.slot];
    if (!s || s.tag !== req.tag || s.direction !== 'out' || !this.direct) {
      if (req.route && this.direct) this.direct.closeRoute(req.route);
      if (!s || s.tag !== req.tag) return; // deleted meanwhile: nothing to route
      throw new Error(`route: slot ${req.slot} is not an outbound SA of a worker with direct output`);
    }
    if (s.route) this.direct.closeRoute(s.route);
    if (req.route) s.route = req.route;
    else delete s.route;
    const fd = this.sendFdFor(s.route);
    if (fd === undefined) delete s.sendFd;
    else s.sendFd = fd;
  }

  private install(req: InstallRequest): void {
    try {
      this.installSlot(req);
    } catch (err) {
      // The descriptor came for this slot: nobody else will close it.
      if (req.route) this.direct?.closeRoute(req.route);
      throw err;
    } finally {
      // architecture §4.5: the transferred key is this thread's only copy. installSa
      // zeroes the view it is given, but a request refused before that call
      // (slot in use, no direct output) would leave the key in this heap.
      if (req.key instanceof ArrayBuffer) new Uint8Array(req.key).fill(0);
    }
    // Steered ESP that arrived before this install (worker-input.ts, steered-hold.ts) is opened now.
    if (req.direction === 'in') for (const input of this.steered) input.releaseHeld();
  }

  private installSlot(req: InstallRequest): void {
    if (this.slots[req.slot]) throw new Error(`slot ${req.slot} is in use`);
    if ((req.route || req.policy) && !this.direct) throw new Error('install: a route or policy needs direct output');
    const key = new Uint8Array(req.key);
    // installSa zeroes `key` whatever the outcome (kernel.ts).
    this.kernel.installSa(req.slot, {
      algorithm: req.algorithm,
      keyMaterial: key,
      spi: req.spi,
      direction: req.direction,
      esn: req.esn,
      icvLength: req.icvLength,
      ...(req.direction === 'in' ? { replayWindow: req.replayWindow } : {}),
      ...(req.seqSoftLimit !== undefined ? { seqSoftLimit: req.seqSoftLimit } : {}),
      ...(req.seqHardLimit !== undefined ? { seqHardLimit: req.seqHardLimit } : {}),
    });
    if (req.direction === 'in') this.inboundBySpi.set(req.spi, req.slot);
    const sendFd = req.direction === 'out' ? this.sendFdFor(req.route) : undefined;
    this.slots[req.slot] = {
      saId: req.saId, tag: req.tag, direction: req.direction, rekeyReported: false, written: false, received: false, spi: req.spi,
      outer: req.outer ?? OUTER_HEADER_DEFAULT_WORD,
      ...(req.direction === 'out' && req.route ? { route: req.route } : {}),
      ...(req.direction === 'in' && req.policy ? { policy: req.policy } : {}),
      ...(sendFd !== undefined ? { sendFd } : {}),
      ...(req.direction === 'in' && req.source?.length === SOURCE_WORDS ? { source: Int32Array.from(req.source) } : {}),
    };
  }

  /** The debug hook of architecture §4.1: remember that this thread processed packets of the SA. */
  private noteWriter(s: SlotState): void {
    s.written = true;
    this.seqWriters.add(s.saId);
  }

  /**
   * The peer sends on this inbound SA (an authenticated packet, dummy or
   * not): the I/O thread may end the wait of its outbound twin (handover.ts).
   */
  private firstInbound(slot: number, s: SlotState): void {
    s.received = true;
    this.post({ event: 'first-inbound', slot, tag: s.tag });
  }

  /**
   * RFC 7296 §2.23 on the ESP path: descriptor k decapsulated (its ICV
   * verified, not a replay) from a source other than the one its
   * UDP-encapsulated SA knows: tell the I/O side once, and take the new
   * source as known, so a NAT rebinding costs one message, not one per packet.
   */
  private checkSource(slot: number, k: number): void {
    const known = this.slots[slot]?.source;
    const at = k * SOURCE_WORDS;
    if (!known || this.sources[at] === 0) return;
    let same = true;
    for (let w = 0; w < SOURCE_WORDS; w++) if (known[w] !== this.sources[at + w]) same = false;
    if (same) return;
    known.set(this.sources.subarray(at, at + SOURCE_WORDS));
    const s = this.slots[slot]!;
    this.post({ event: 'esp-source', index: this.task.index, slot, tag: s.tag, source: Int32Array.from(known) });
  }

  /** Report "rekey needed" once per SA (RFC 4303 §3.3.3 soft limit). */
  private rekeyNeeded(slot: number): void {
    const s = this.slots[slot];
    if (!s || s.rekeyReported) return;
    s.rekeyReported = true;
    this.post({ event: 'rekey-needed', slot, tag: s.tag, saId: s.saId });
  }

  private countFailure(result: number): void {
    const st = this.stats;
    switch (result) {
      case ResultCode.REPLAY: st[WorkerStat.DROP_REPLAY]!++; break;
      case ResultCode.AUTH_FAILED: st[WorkerStat.DROP_AUTH]!++; break;
      case ResultCode.SEQ_EXHAUSTED: st[WorkerStat.DROP_SEQ_EXHAUSTED]!++; break;
      case ResultCode.NO_SLOT: case ResultCode.WRONG_DIRECTION: case ResultCode.SPI_MISMATCH: st[WorkerStat.DROP_NO_SA]!++; break;
      default: st[WorkerStat.DROP_MALFORMED]!++;
    }
  }

  /** Process and release up to one batch of `ring`'s cells: one encap batch and one decap batch. Returns the cells taken. */
  private processRing(ring: RingReader): number {
    const count = Math.min(ring.available(), this.kernel.maxBatch);
    if (count === 0) return 0;
    const t0 = performance.now();
    this.runKind(ring, count, CellKind.ENCAP);
    this.runKind(ring, count, CellKind.DECAP);
    this.stats[WorkerStat.BUSY_MS]! += performance.now() - t0;
    ring.release(count);
    return count;
  }

  private runKind(input: RingReader, count: number, kind: CellKind): void {
    const kernel = this.kernel;
    const arena = kernel.arena;
    const desc = kernel.descriptors;
    const encap = kind === CellKind.ENCAP;
    const headroom = encap ? kernel.headroom : 0;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const meta = input.meta(i);
      if (metaKind(meta) !== kind) continue;
      const slot = metaSlot(meta);
      const s = this.slots[slot];
      if (s === undefined || s.tag !== metaTag(meta)) {
        this.stats[WorkerStat.DROP_NO_SA]!++;
        continue;
      }
      const length = input.length(i);
      const at = n * this.stride + headroom;
      const from = input.payloadOffset(i);
      arena.set(input.bytes.subarray(from, from + length), at);
      const d = n * DESC_WORDS;
      desc[d + Desc.OFFSET] = at;
      desc[d + Desc.LENGTH] = length;
      desc[d + Desc.SLOT] = slot;
      // Tunnel mode (RFC 4303 §2.6): Next Header says what the inner packet is.
      desc[d + Desc.NEXT_HEADER] = encap ? ((input.bytes[from]! >> 4) === 6 ? NEXT_HEADER_IPV6 : NEXT_HEADER_IPV4) : 0;
      // The outer header comes from the inner one, read before it is encrypted (sent here or by the I/O
      // thread); ESP the I/O thread received comes with its outer TOS in the cell (ring.ts).
      if (encap) this.outerWords[n] = outerSendWord(s.outer, arena, at, length);
      else {
        this.outerTos[n] = input.outer(i);
        this.sources[n * SOURCE_WORDS] = 0;
      }
      if (!s.written) this.noteWriter(s);
      n++;
    }
    if (n === 0) return;
    if (encap) kernel.encapBatch(n);
    else kernel.decapBatch(n);
    this.stats[WorkerStat.BATCHES]!++;
    this.collect(n, kind);
  }

  /**
   * Count the results of descriptors 0..n-1 and move the packets to the output
   * ring, or send and write them directly when their SA has a route or policy
   * (unless `discard`, or a decapsulated packet with a 'discard' sink).
   * Returns how many packets succeeded and were not lost to a full ring or a
   * refusing kernel.
   */
  private collect(n: number, kind: CellKind, discard = false): number {
    const kernel = this.kernel;
    const desc = kernel.descriptors;
    const arena = kernel.arena;
    const st = this.stats;
    const encap = kind === CellKind.ENCAP;
    const keep = !discard && (encap || this.sink === 'deliver');
    let produced = 0;
    for (let k = 0; k < n; k++) {
      const d = k * DESC_WORDS;
      const result = desc[d + Desc.RESULT]!;
      const slot = desc[d + Desc.SLOT]!;
      if (result !== ResultCode.OK && result !== ResultCode.OK_REKEY_NEEDED) {
        this.countFailure(result);
        continue;
      }
      if (result === ResultCode.OK_REKEY_NEEDED) this.rekeyNeeded(slot);
      const outOffset = desc[d + Desc.OUT_OFFSET]!;
      const outLength = desc[d + Desc.OUT_LENGTH]!;
      if (encap) {
        st[WorkerStat.ENCAP_PACKETS]!++;
        st[WorkerStat.ENCAP_BYTES]! += desc[d + Desc.LENGTH]!;
        st[WorkerStat.ESP_BYTES_OUT]! += outLength;
      } else {
        const r = this.slots[slot];
        if (r !== undefined && !r.received) this.firstInbound(slot, r);
        const nextHeader = desc[d + Desc.NEXT_HEADER]!;
        if (nextHeader === NEXT_HEADER_NONE) {
          st[WorkerStat.DUMMY]!++;
          continue;
        }
        // RFC 6040 §4.2: the outer ECN field into the inner packet (outer CE over Not-ECT: dropped).
        const tos = this.outerTos[k]!;
        if (tos & RECV_TOS_VALID && ecnNormal(this.slots[slot]!.outer) && combineEcn(tos, arena, outOffset, outLength) === EcnDecap.DROP) {
          st[WorkerStat.DROP_ECN]!++;
          continue;
        }
        st[WorkerStat.DECAP_PACKETS]!++;
        st[WorkerStat.DECAP_BYTES]! += outLength;
        this.checkSource(slot, k);
      }
      if (!keep) {
        produced++;
        continue;
      }
      const s = this.slots[slot]!;
      const direct = encap ? s.route : s.policy;
      if (direct !== undefined) {
        if (encap) {
          const outer = this.outerWords[k]! | (s.sendFd !== undefined ? OUTER_DF_SOCKOPT : 0);
          this.direct!.queueEsp(arena, s.route!, outOffset, outLength, outer, s.sendFd);
        } else this.direct!.queueInner(arena, s.policy!, outOffset, outLength);
        produced++;
        continue;
      }
      // ESP the I/O thread sends carries its outer header word (DF by socket option is that thread's call: output.ts).
      const at = this.output.stage(outLength, slot, encap ? CellKind.ESP : CellKind.INNER, s.tag, encap ? this.outerWords[k]! : 0);
      if (at < 0) {
        st[WorkerStat.DROP_QUEUE_FULL]!++;
        continue;
      }
      this.output.bytes.set(arena.subarray(outOffset, outOffset + outLength), at);
      produced++;
    }
    if (this.direct) produced -= this.direct.flush(arena);
    return produced;
  }

  /**
   * Benchmark model of one SA shared by several workers: sequence numbers
   * come from the shared counter, with one Atomics.add per packet (the packet
   * is then sealed alone, since the kernel must be told its number first) or
   * one per batch. Descriptors 0..n-1 are filled; results land in place.
   */
  private sealShared(n: number, slot: number, shared: BigInt64Array, perPacket: boolean): void {
    const kernel = this.kernel;
    if (!perPacket) {
      kernel.setNextSeqOut(slot, BigInt.asUintN(64, Atomics.add(shared, 0, BigInt(n))));
      kernel.encapBatch(n);
      return;
    }
    const desc = kernel.descriptors;
    const first = this.descScratch;
    for (let k = 0; k < n; k++) {
      const d = k * DESC_WORDS;
      if (k > 0) {
        for (let w = 0; w < DESC_WORDS; w++) first[w] = desc[w]!;
        for (let w = 0; w < DESC_WORDS; w++) desc[w] = desc[d + w]!;
      }
      kernel.setNextSeqOut(slot, BigInt.asUintN(64, Atomics.add(shared, 0, 1n)));
      kernel.encapBatch(1);
      if (k > 0) {
        for (let w = 0; w < DESC_WORDS; w++) desc[d + w] = desc[w]!;
        for (let w = 0; w < DESC_WORDS; w++) desc[w] = first[w]!;
      }
    }
  }

  /**
   * The traffic generator: IPv4/UDP packets of `size` bytes over `flows`
   * source ports, sealed with the outbound SA in `slot`, `batch` per kernel
   * call. With output 'ring' the I/O side sends them (the generator waits for
   * ring space: it is a source, not a drop point); with 'discard' they are
   * counted only.
   */
  private async generate(req: GenerateRequest): Promise<GenerateReply> {
    const kernel = this.kernel;
    const s = this.slots[req.slot];
    if (!s || s.tag !== req.tag || s.direction !== 'out') throw new Error(`generate: slot ${req.slot} holds no such outbound SA`);
    const maxSize = this.input.maxPayload - kernel.headroom - kernel.tailroom;
    if (!Number.isInteger(req.size) || req.size < 28 || req.size > maxSize) throw new RangeError(`generate: size must be 28..${maxSize}`);
    if (!Number.isInteger(req.batch) || req.batch < 1 || req.batch > kernel.maxBatch) throw new RangeError(`generate: batch must be 1..${kernel.maxBatch}`);
    const flows = Math.max(1, Math.min(65535, Math.floor(req.flows)));
    if (req.durationMs !== undefined && !(req.durationMs > 0)) throw new RangeError('generate: durationMs must be positive');
    const shared = req.sharedSeq ? new BigInt64Array(req.sharedSeq.buffer, 0, 1) : undefined;
    const t0 = performance.now();
    const until = req.durationMs === undefined ? Infinity : t0 + req.durationMs;
    let sent = 0;
    let dropped = 0;
    let id = 0;
    let turns = 0;
    while (sent + dropped < req.packets && !this.stopping) {
      const cur = this.slots[req.slot];
      if (!cur || cur.tag !== req.tag) break; // deleted meanwhile
      if (performance.now() >= until) break;
      const want = Math.min(req.batch, req.packets - sent - dropped);
      if (req.output === 'ring' && this.output.free() < want) {
        this.output.publish();
        await this.output.waitForSpace(50);
        continue;
      }
      const tb = performance.now();
      const arena = kernel.arena;
      const desc = kernel.descriptors;
      for (let k = 0; k < want; k++) {
        const at = k * this.stride + kernel.headroom;
        const flow = (id % flows);
        writeUdp4(arena, at, req.size, req.src, req.dst, 10000 + flow, 9, id & 0xffff);
        id++;
        const d = k * DESC_WORDS;
        desc[d + Desc.OFFSET] = at;
        desc[d + Desc.LENGTH] = req.size;
        desc[d + Desc.SLOT] = req.slot;
        desc[d + Desc.NEXT_HEADER] = NEXT_HEADER_IPV4;
        this.outerWords[k] = outerSendWord(s.outer, arena, at, req.size);
      }
      if (shared) this.sealShared(want, req.slot, shared, req.sharedSeq!.perPacket);
      else kernel.encapBatch(want);
      if (!s.written) this.noteWriter(s);
      this.stats[WorkerStat.BATCHES]!++;
      const produced = this.collect(want, CellKind.ENCAP, req.output === 'discard');
      if (req.output === 'ring') this.output.publish();
      sent += produced;
      dropped += want - produced;
      this.stats[WorkerStat.BUSY_MS]! += performance.now() - tb;
      if (++turns % BATCHES_PER_YIELD === 0) await yieldToEventLoop();
    }
    return { sent, dropped, ms: performance.now() - t0 };
  }
}

/** The piscina task: host one worker until it is told to stop. */
export default async function hostDataPlaneWorker(task: WorkerTask): Promise<{ index: number }> {
  const worker = new DataPlaneWorker(task);
  await worker.run();
  return { index: task.index };
}
