// Raw ESP input benchmark (`npm run bench -- raw-esp-input --json`, root):
// ESP without UDP encapsulation (IP protocol 50) has no port, so the NAT-T
// port's SO_REUSEPORT steering (io/esp-steering.ts) cannot place it. The
// candidates for getting each SA's raw ESP to its owner worker:
//   one-reader      the I/O thread reads one raw socket (recvmmsg on a libuv
//                   watch), looks up the worker the SPI names and stages the
//                   datagram in that worker's ring, published once per turn
//                   of its event loop, which rings the worker's bell (what
//                   the data plane does today: dataplane/ring-feed.ts)
//   socket-filter   every worker reads its own raw socket carrying a socket
//                   filter (SO_ATTACH_FILTER, io/esp-raw-filter.ts) that
//                   keeps only the SPIs naming it; the kernel still clones
//                   each datagram to every raw socket, but drops the others'
//                   share before any thread wakes. The control plane's socket
//                   keeps what no worker is given (its filter the complement)
//   packet-fanout   every worker reads an AF_PACKET socket on the interface
//                   in one PACKET_FANOUT group whose classic BPF program
//                   picks the member by the SPI's worker bits; the packet is
//                   taken before the IP layer (no reassembly of fragmented
//                   ESP, no local-address check), and the IP layer still
//                   delivers it to protocol 50 as well
// Workers sleep in epoll as the data plane's do (dataplane/worker-epoll.ts).
// Two measures per model, over 127.0.0.1, one SPI per worker (io/spi-layout.ts):
//   throughput  a sender thread blasts ESP flat out for the window; the rate
//               is the datagrams that reached their owner worker
//   delay       the sender sends one stamped datagram every PACE_US, round
//               robin over the workers (each finds its thread asleep); the
//               one-way delay is the monotonic clock at the owner's read
//               minus the stamp taken just before the send call
// The sender and the receivers share the machine, so a cheaper receive path
// also leaves the sender more time: the figure is the whole system's.
// Models run in a rotated order in every round; ratios are taken per round.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BatchedSocket } from '../io/batched-socket.js';
import { loadNativeIo, nativeIoUnavailable } from '../io/native-io.js';
import { composeEspSpi, espSpiWorker } from '../io/spi-layout.js';
import { rawEspFanoutProgram, rawEspSocketFilter, ipv4EspOnlyFilter } from '../io/esp-raw-filter.js';
import { CellKind, createRing, RingWriter } from '../dataplane/ring.js';
import { WorkerBell } from '../dataplane/worker-bell.js';
import { FLUSH_CELLS } from '../dataplane/defaults.js';
import type { RawInputCounts, RawInputRole } from './raw-esp-input-worker.js';
import { formatTable, round, type SuiteOptions } from './common.js';

export type RawInputModel = 'one-reader' | 'socket-filter' | 'packet-fanout';
const MODELS: readonly RawInputModel[] = ['one-reader', 'socket-filter', 'packet-fanout'];

export interface RawInputResult {
  model: RawInputModel;
  workers: number;
  /** ESP datagram bytes (SPI on). */
  size: number;
  sentPps: number;
  /** Datagrams that reached their owner worker, per second. */
  deliveredPps: number;
  /** Datagrams a worker read that were another's (0 where the kernel places them). */
  foreign: number;
  lost: number;
}

export interface RawInputDelay {
  model: RawInputModel;
  samples: number;
  minUs: number;
  p50Us: number;
  p90Us: number;
}

export interface RawInputReport {
  suite: 'raw-esp-input';
  node: string;
  workers: number;
  windowMs: number;
  rounds: number;
  paceUs: number;
  /** Medians over the rounds. */
  results: RawInputResult[];
  delay: RawInputDelay[];
  /** Per-round ratios: median and range. */
  ratios: Record<string, { value: number; range: [number, number]; description: string }>;
}

const SIZES = [100, 1400] as const;
const ROUNDS = 5;
const PACE_US = 2000;
const DELAY_SAMPLES = 150;
const DELAY_SIZE = 100;

function thread(job: RawInputRole): { worker: Worker; ready: Promise<void>; done: Promise<RawInputCounts> } {
  const worker = new Worker(new URL('./raw-esp-input-worker.js', import.meta.url), { workerData: job });
  const ready = new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', () => resolve());
  });
  const done = ready.then(() => new Promise<RawInputCounts>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`a raw ESP input thread exited (${code}) before reporting`)));
    worker.once('message', resolve);
  }));
  return { worker, ready, done };
}

/** The receivers' side of a model: their jobs, and what the I/O thread opens for it (closed by close()). */
function setUp(model: RawInputModel, workers: number, flags: SharedArrayBuffer): { jobs: RawInputRole[]; close: () => void } {
  const api = loadNativeIo();
  const bells = Array.from({ length: workers }, () => WorkerBell.create(api.eventfdOpen()));
  const fds: number[] = [];
  const sockets: BatchedSocket[] = [];
  let publish: NodeJS.Immediate | undefined;
  const close = () => {
    if (publish) clearImmediate(publish);
    for (const s of sockets) s.close();
    for (const fd of fds) api.close(fd);
    for (const b of bells) api.close(new WorkerBell(b).eventFd);
  };
  try {
    const job = (w: number, extra: Partial<Extract<RawInputRole, { role: 'receiver' }>>): RawInputRole =>
      ({ role: 'receiver', flags, worker: w, bell: bells[w]!, ...extra });
    if (model === 'one-reader') {
      const rings = bells.map(() => createRing());
      const writers = rings.map((ring, w) => new RingWriter(ring, new WorkerBell(bells[w]!)));
      const reader = BatchedSocket.openRaw(50, 4 << 20);
      sockets.push(reader);
      reader.start((bytes) => {
        const ihl = (bytes[0]! & 0x0f) * 4;
        if (bytes.length < ihl + 8) return;
        const spi = ((bytes[ihl]! << 24) | (bytes[ihl + 1]! << 16) | (bytes[ihl + 2]! << 8) | bytes[ihl + 3]!) >>> 0;
        const w = writers[espSpiWorker(spi)];
        if (w === undefined || !w.push(bytes, 0, CellKind.DECAP, 0)) return;
        if (w.staged >= FLUSH_CELLS) w.publish();
        else publish ??= setImmediate(() => {
          publish = undefined;
          for (const x of writers) x.publish();
        });
      });
      return { jobs: rings.map((ring, w) => job(w, { ring })), close };
    }
    if (model === 'socket-filter') {
      const control = BatchedSocket.openRaw(50, 4 << 20);
      sockets.push(control);
      api.socketAttachFilter(control.fd, rawEspSocketFilter({ node: 0, workers, share: 'unsteered' }));
      control.start(() => {});
      for (let w = 0; w < workers; w++) {
        const fd = api.rawOpen(50, 4 << 20);
        fds.push(fd);
        api.socketAttachFilter(fd, rawEspSocketFilter({ node: 0, workers, share: { worker: w } }));
      }
      return { jobs: fds.map((fd, w) => job(w, { fd })), close };
    }
    const group = 1 + Math.floor(Math.random() * 65000);
    for (let w = 0; w < workers; w++) {
      const fd = api.packetOpen('lo', 4 << 20);
      fds.push(fd);
      api.socketAttachFilter(fd, ipv4EspOnlyFilter());
      api.packetFanout(fd, group, rawEspFanoutProgram());
    }
    return { jobs: fds.map((fd, w) => job(w, { fd })), close };
  } catch (err) {
    close();
    throw err;
  }
}

async function runCase(model: RawInputModel, workers: number, spis: number[], size: number, windowMs: number, paceUs: number):
  Promise<{ result: RawInputResult; delaysUs: number[] }> {
  const flags = new SharedArrayBuffer(12);
  const flag = new Int32Array(flags);
  if (paceUs > 0) flag[2] = 1;
  const { jobs, close } = setUp(model, workers, flags);
  const threads = jobs.map(thread);
  try {
    const sender = thread({ role: 'sender', flags, spis, size, paceUs });
    await Promise.all([...threads, sender].map((t) => t.ready));
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    Atomics.store(flag, 1, 1);
    Atomics.notify(flag, 1);
    const sent = (await sender.done).packets;
    // A last look for what is still in flight, then the receivers stop.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const got = await Promise.all(threads.map((t) => t.done));
    const delivered = got.reduce((n, c) => n + c.packets, 0);
    return {
      result: {
        model, workers, size,
        sentPps: Math.round((sent * 1000) / windowMs),
        deliveredPps: Math.round((delivered * 1000) / windowMs),
        foreign: got.reduce((n, c) => n + c.foreign, 0),
        lost: round(sent > 0 ? Math.max(0, 1 - delivered / sent) : 0),
      },
      delaysUs: got.flatMap((c) => c.delaysUs),
    };
  } finally {
    Atomics.store(flag, 1, 1);
    await Promise.all(threads.map((t) => t.worker.terminate()));
    close();
  }
}

const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
const median = (xs: readonly number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);

function ratio(perRound: number[], description: string): { value: number; range: [number, number]; description: string } {
  const s = [...perRound].sort((a, b) => a - b);
  return { value: round(median(s), 2), range: [round(s[0] ?? 0, 2), round(s[s.length - 1] ?? 0, 2)], description };
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runRawEspInputBench(opts: SuiteOptions): Promise<RawInputReport> {
  if (process.getuid?.() !== 0) throw new Error('the raw-esp-input benchmark needs root (raw and packet sockets)');
  const missing = nativeIoUnavailable();
  if (missing) throw new Error(`the raw-esp-input benchmark needs the native I/O addon: ${missing}`);
  const workers = Math.max(2, availableParallelism());
  const spis = Array.from({ length: workers }, (_, w) => composeEspSpi({ node: 0, worker: w }, 0x1234 + w)!);
  const windowMs = Math.round(Math.max(0.2, opts.maxTime * 4) * 1000);
  const delayMs = Math.round((DELAY_SAMPLES * PACE_US) / 1000);
  const results: RawInputResult[] = [];
  const delay: RawInputDelay[] = [];
  const ratios: RawInputReport['ratios'] = {};
  for (const size of SIZES) {
    const byModel = new Map<RawInputModel, RawInputResult[]>(MODELS.map((m) => [m, []]));
    const perRound = { filter: [] as number[], fanout: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      const row = new Map<RawInputModel, RawInputResult>();
      for (let i = 0; i < MODELS.length; i++) {
        const model = MODELS[(i + r) % MODELS.length]!;
        process.stderr.write(`\r${size} B, ${model}, round ${r + 1}/${ROUNDS}`.padEnd(50));
        const { result } = await runCase(model, workers, spis, size, windowMs, 0);
        row.set(model, result);
        byModel.get(model)!.push(result);
      }
      const base = row.get('one-reader')!.deliveredPps;
      perRound.filter.push(row.get('socket-filter')!.deliveredPps / base);
      perRound.fanout.push(row.get('packet-fanout')!.deliveredPps / base);
    }
    for (const model of MODELS) {
      const rs = [...byModel.get(model)!].sort((a, b) => a.deliveredPps - b.deliveredPps);
      results.push(rs[Math.floor(rs.length / 2)]!);
    }
    ratios[`socketFilterVsOneReader${size}`] = ratio(perRound.filter, `${workers} workers, ${size} B: datagrams delivered to their owner, socket filter per worker vs one reader`);
    ratios[`packetFanoutVsOneReader${size}`] = ratio(perRound.fanout, `${workers} workers, ${size} B: datagrams delivered to their owner, PACKET_FANOUT vs one reader`);
  }
  const delays = new Map<RawInputModel, number[]>(MODELS.map((m) => [m, []]));
  const delayRatios = { filter: [] as number[], fanout: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    const p50 = new Map<RawInputModel, number>();
    for (let i = 0; i < MODELS.length; i++) {
      const model = MODELS[(i + r) % MODELS.length]!;
      process.stderr.write(`\rdelay, ${model}, round ${r + 1}/${ROUNDS}`.padEnd(50));
      const { delaysUs } = await runCase(model, workers, spis, DELAY_SIZE, delayMs, PACE_US);
      delays.get(model)!.push(...delaysUs);
      p50.set(model, median(delaysUs));
    }
    delayRatios.filter.push(p50.get('socket-filter')! / p50.get('one-reader')!);
    delayRatios.fanout.push(p50.get('packet-fanout')! / p50.get('one-reader')!);
  }
  for (const model of MODELS) {
    const s = [...delays.get(model)!].sort((a, b) => a - b);
    delay.push({ model, samples: s.length, minUs: round(s[0] ?? 0, 1), p50Us: round(quantile(s, 0.5), 1), p90Us: round(quantile(s, 0.9), 1) });
  }
  ratios.socketFilterVsOneReaderDelay = ratio(delayRatios.filter, `one-way delay from idle (median), socket filter per worker vs one reader (lower is faster)`);
  ratios.packetFanoutVsOneReaderDelay = ratio(delayRatios.fanout, `one-way delay from idle (median), PACKET_FANOUT vs one reader (lower is faster)`);
  process.stderr.write(`\r${' '.repeat(50)}\r`);
  const report: RawInputReport = { suite: 'raw-esp-input', node: process.version, workers, windowMs, rounds: ROUNDS, paceUs: PACE_US, results, delay, ratios };
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    console.log(`Raw ESP input: ${workers} workers, one SPI each, ${windowMs} ms per case, ${ROUNDS} rounds\n`);
    console.log(formatTable(['size', 'model', 'sent kpps', 'delivered kpps', 'foreign', 'lost'],
      results.map((r) => [String(r.size), r.model, Math.round(r.sentPps / 1000), Math.round(r.deliveredPps / 1000), r.foreign, `${round(r.lost * 100, 1)} %`])));
    console.log(`\nOne-way delay from idle (one datagram every ${PACE_US} µs)`);
    console.log(formatTable(['model', 'samples', 'min µs', 'p50 µs', 'p90 µs'], delay.map((d) => [d.model, d.samples, d.minUs, d.p50Us, d.p90Us])));
    console.log('\nRatios (median of per-round ratios, range)');
    console.log(formatTable(['ratio', 'value', 'range'], Object.values(ratios).map((r) => [r.description, r.value, `${r.range[0]}–${r.range[1]}`])));
  }
  return report;
}
