// The data-plane worker threads, as the I/O side (main thread) sees them: one
// piscina pool per worker, each with exactly one thread, hosting worker.ts's
// long-lived loop.
//
// Why one pool per worker: piscina schedules tasks on whichever thread is
// free, but a Child SA must stay on its owner thread for its whole life (its
// sequence counter and replay window exist only there, architecture §4.1). With
// minThreads = maxThreads = 1 a pool *is* one thread, and we run a single task
// on it that does not return until stop(): piscina provides the thread, its
// start-up, resource limits and teardown; it never chooses where a packet or
// an SA goes. Packets cross through the two rings of each worker; control
// requests go over a MessagePort transferred with the task.
//
// Who owns what: this module (on the I/O thread) is the only writer of each
// worker's in ring and the only reader of its out ring.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { compileEspModule } from './kernel.js';
import { WorkerBell } from './worker-bell.js';
import { loadNativeIo } from '../io/native-io.js';
import { createRing, Doorbell, RingReader, RingWriter } from './ring.js';
import { DEFAULT_CELL_SIZE, DEFAULT_RING_CAPACITY, HANDOFF_RING_CAPACITY, MAX_WORKERS, REQUEST_TIMEOUT_MS } from './defaults.js';
import {
  WORKER_STAT_COUNT,
  type CountersReply, type DirectOutput, type GenerateReply, type HandOffRings, type WorkerEvent, type WorkerReply, type WorkerRequest, type WorkerTask,
} from './messages.js';

/**
 * A generate bounded by count only: allowed this long per packet on top of
 * the request timeout. Generous (1,000 packets/s, far below any real rate,
 * even with the generator waiting for ring space), so only a stuck worker
 * reaches it, yet the wait stays bounded.
 */
const GENERATE_MS_PER_PACKET = 1;
/** setTimeout's largest delay (a larger one fires at once). */
const MAX_TIMER_MS = 0x7fff_ffff;

type Request = WorkerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/**
 * The compiled worker script. From dist/ it is the sibling worker.js; from the
 * TypeScript sources (tests) it is dist/dataplane/worker.js, which must be at
 * least as new as every dataplane/*.ts and io/*.ts source: a worker thread cannot load
 * TypeScript, and a stale build would test old code.
 */
export function workerScriptPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'worker.js');
  if (existsSync(sibling)) return sibling;
  let root = here;
  while (!existsSync(join(root, 'package.json'))) {
    const up = dirname(root);
    if (up === root) throw new Error('data plane: no package.json above ' + here);
    root = up;
  }
  const built = join(root, 'dist', 'dataplane', 'worker.js');
  if (!existsSync(built)) throw new Error(`data plane: ${built} is missing: run npm run build`);
  // The worker loads io/ too (the native addon's binding, byte helpers).
  for (const dir of ['dataplane', 'io']) {
    for (const name of readdirSync(join(root, dir))) {
      if (!name.endsWith('.ts') || name.endsWith('.d.ts')) continue;
      const js = join(root, 'dist', dir, name.replace(/\.ts$/, '.js'));
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(join(root, dir, name)).mtimeMs) {
        throw new Error(`data plane: ${js} is older than ${dir}/${name}: run npm run build`);
      }
    }
  }
  return built;
}

/** One worker thread and the I/O side's ends of its rings. */
export class WorkerHandle {
  /** I/O side writes ENCAP and DECAP cells here. */
  readonly input: RingWriter;
  /** I/O side reads ESP and INNER cells here. */
  readonly output: RingReader;
  /** The worker's totals (WorkerStat indexes), written by the worker only. */
  readonly stats: Float64Array;
  /** Rung by every worker of the set when it publishes output (shared by the set's handles). */
  readonly doorbell: Doorbell;
  /** The worker's bell (worker-bell.ts): rung by every publish to its in ring and by every control request. */
  private readonly bell: WorkerBell;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  private exited = false;

  constructor(
    readonly index: number,
    private readonly pool: Piscina,
    private readonly port: MessagePort,
    readonly task: Promise<unknown>,
    rings: Pick<WorkerTask, 'inRing' | 'outRing' | 'stats'> & { wake: SharedArrayBuffer },
    doorbell: Doorbell,
    onEvent: (w: WorkerHandle, e: WorkerEvent) => void,
    onExit: (w: WorkerHandle, reason: string) => void,
    /** Bound on the answer to a control request, ms (generate: see generateTimeout). */
    readonly requestTimeoutMs: number = REQUEST_TIMEOUT_MS,
  ) {
    // Every publish rings the worker's bell, which it sleeps on (worker.ts).
    this.bell = new WorkerBell(rings.wake);
    this.input = new RingWriter(rings.inRing, this.bell);
    this.output = new RingReader(rings.outRing);
    this.stats = new Float64Array(rings.stats, 0, WORKER_STAT_COUNT);
    this.doorbell = doorbell;
    port.on('message', (m: WorkerReply | WorkerEvent) => {
      if ('event' in m) return onEvent(this, m);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(`worker ${this.index}: ${m.error}`));
    });
    task.then(
      () => this.fail('worker stopped'),
      (err: Error) => this.fail(`worker ${this.index} failed: ${err.message}`),
    ).then(() => onExit(this, this.exitReason));
  }

  private exitReason = '';

  /** The worker's loop still runs (requests reach it). */
  get running(): boolean {
    return !this.exited;
  }

  private fail(reason: string): void {
    this.exited = true;
    this.exitReason = reason;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(reason));
    }
    this.pending.clear();
  }

  /**
   * Send a control request; resolves with the worker's answer. `transfer`
   * moves buffers (keys). Rejects when no answer came within `timeoutMs`
   * (default requestTimeoutMs).
   */
  request<T = void>(req: Request, transfer: ArrayBuffer[] = [], timeoutMs = this.requestTimeoutMs): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`worker ${this.index} is not running`));
    const id = this.nextId++;
    const bound = Math.min(MAX_TIMER_MS, Math.max(0, timeoutMs));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`worker ${this.index}: no answer to ${req.op} within ${bound} ms`));
      }, bound);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.port.postMessage({ ...req, id }, transfer);
      // A worker blocking in epoll wakes and gives its event loop a turn for the message.
      this.bell.control();
    });
  }

  counters(slots: number[]): Promise<CountersReply> {
    return this.request<CountersReply>({ op: 'counters', slots });
  }

  /**
   * Run the traffic generator. A generate legitimately runs longer than any
   * control request, so it gets a bound of its own (generateTimeout): a
   * shared one reported long runs as failed while the worker kept going.
   */
  generate(req: Omit<Extract<Request, { op: 'generate' }>, 'op'>): Promise<GenerateReply> {
    return this.request<GenerateReply>({ op: 'generate', ...req }, [], this.generateTimeout(req));
  }

  /**
   * The bound on a generate's answer: its durationMs (the worker checks it
   * between batches) plus the request timeout as margin; without one, the
   * packet count at a rate no working generator falls below.
   */
  generateTimeout(req: { packets: number; durationMs?: number }): number {
    const base = this.requestTimeoutMs;
    if (req.durationMs !== undefined && req.durationMs > 0) return Math.min(MAX_TIMER_MS, base + req.durationMs);
    const packets = Number.isFinite(req.packets) && req.packets > 0 ? req.packets : 0;
    return Math.min(MAX_TIMER_MS, base + packets * GENERATE_MS_PER_PACKET);
  }

  /** Ask the loop to stop (it wipes every slot), wait for the task to end, tear the thread down. */
  async stop(): Promise<void> {
    if (!this.exited) await this.request({ op: 'stop' }).catch(() => {});
    await Promise.race([this.task.catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.port.close();
    await this.pool.destroy();
  }
}

export interface StartWorkersOptions {
  count: number;
  sink: 'deliver' | 'discard';
  ringCapacity?: number;
  cellSize?: number;
  onEvent: (w: WorkerHandle, e: WorkerEvent) => void;
  /** The worker's loop ended: after stop(), or because it failed (reason says which). */
  onExit?: (w: WorkerHandle, reason: string) => void;
  /** Direct output for worker `index` (its descriptors are handed over with the task), or none. */
  direct?: (index: number) => DirectOutput | undefined;
  /** Bound on a control request's answer, ms (default REQUEST_TIMEOUT_MS; tests shorten it). */
  requestTimeoutMs?: number;
  /** Hand-off rings between every pair of workers (workers that read their own TUN queues, worker-tun-input.ts). */
  handOff?: boolean;
  /** How idle workers wait: 'epoll' (blocked in the kernel, worker-epoll.ts) or 'event-loop' (the default). */
  loop?: 'epoll' | 'event-loop';
}

/**
 * The eventfds of workers that block in epoll, by the bells that carry them:
 * closed only after every worker of the set has stopped (closeWorkerBells),
 * since any of them may ring another's bell until then.
 */
const bellFds = new WeakMap<WorkerHandle, number>();

/** Close the eventfds of a stopped set of workers (after every stop() resolved). */
export function closeWorkerBells(handles: readonly WorkerHandle[]): void {
  for (const h of handles) {
    const fd = bellFds.get(h);
    if (fd !== undefined) loadNativeIo().close(fd);
    bellFds.delete(h);
  }
}

/** Ring i -> j of `count` workers (i != j) and every worker's wake bell. */
function handOffRings(count: number, cellSize: number, wakes: SharedArrayBuffer[]): HandOffRings[] {
  const ring = Array.from({ length: count }, (_, i) => Array.from({ length: count }, (_, j) => (i === j ? null : createRing(HANDOFF_RING_CAPACITY, cellSize))));
  return Array.from({ length: count }, (_, me) => ({
    in: ring.flatMap((row) => (row[me] ? [row[me]!] : [])),
    out: ring[me]!.map((r, j) => (r ? { ring: r, wake: wakes[j]! } : null)),
  }));
}

/** Start `count` workers and wait until each has instantiated its kernel. */
export async function startWorkers(opts: StartWorkersOptions): Promise<WorkerHandle[]> {
  if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > MAX_WORKERS) {
    throw new RangeError(`data plane: workers must be an integer from 1 to ${MAX_WORKERS}`);
  }
  const filename = pathToFileURL(workerScriptPath()).href;
  const module = await compileEspModule();
  const handles: WorkerHandle[] = [];
  const ready: Array<Promise<void>> = [];
  // One doorbell for the set: the I/O side sleeps on it instead of on every out ring.
  const doorbell = new Doorbell();
  const epoll = opts.loop === 'epoll';
  const eventFds = epoll ? Array.from({ length: opts.count }, () => loadNativeIo().eventfdOpen()) : [];
  const wakes = Array.from({ length: opts.count }, (_, i) => WorkerBell.create(epoll ? eventFds[i]! : -1));
  const handOff = opts.handOff ? handOffRings(opts.count, opts.cellSize ?? DEFAULT_CELL_SIZE, wakes) : undefined;
  try {
    for (let index = 0; index < opts.count; index++) {
      const pool = new Piscina({
        filename,
        name: 'default',
        minThreads: 1,
        maxThreads: 1,
        concurrentTasksPerWorker: 1,
        idleTimeout: 0x7fffffff,
        // The task never returns while the worker runs: piscina must not block the
        // thread between tasks (Atomics.wait), the loop waits with Atomics.waitAsync.
        atomics: 'disabled',
      });
      const channel = new MessageChannel();
      const rings = {
        inRing: createRing(opts.ringCapacity ?? DEFAULT_RING_CAPACITY, opts.cellSize ?? DEFAULT_CELL_SIZE),
        outRing: createRing(opts.ringCapacity ?? DEFAULT_RING_CAPACITY, opts.cellSize ?? DEFAULT_CELL_SIZE),
        stats: new SharedArrayBuffer(WORKER_STAT_COUNT * 8),
        wake: wakes[index]!,
      };
      const direct = opts.direct?.(index);
      const task: WorkerTask = { index, module, ...rings, doorbell: doorbell.sab, port: channel.port2, sink: opts.sink, ...(direct ? { direct } : {}), ...(handOff ? { handOff: handOff[index]! } : {}), ...(epoll ? { loop: 'epoll' as const } : {}) };
      let isReady!: () => void;
      ready.push(new Promise<void>((r) => (isReady = r)));
      const run = pool.run(task, { transferList: [channel.port2] });
      const handle = new WorkerHandle(index, pool, channel.port1, run, rings, doorbell, (w, e) => {
        if (e.event === 'ready') isReady();
        else opts.onEvent(w, e);
      }, (w, reason) => opts.onExit?.(w, reason), opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
      handles.push(handle);
      if (epoll) bellFds.set(handle, eventFds[index]!);
      // A worker that fails before it is ready fails the start.
      ready[index] = Promise.race([ready[index]!, run.then(() => { throw new Error(`worker ${index} ended at start`); })]);
    }
    await Promise.all(ready);
    return handles;
  } catch (err) {
    await Promise.all(handles.map((h) => h.stop().catch(() => {})));
    for (const fd of eventFds) loadNativeIo().close(fd);
    throw err;
  }
}
