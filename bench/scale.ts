// Worker scaling benchmark (`npm run bench -- scale --json`): ESP encap
// throughput of the data-plane workers (dataplane/worker.ts, each hosted by a
// one-thread piscina pool) with 1..N workers, in three models and a control:
//   sa-per-worker     one SA per worker, as cloning gives (architecture §1): each
//                     worker owns its sequence counter and seals 64 packets per
//                     kernel call, with no synchronisation at all
//   shared-sa         the same workers share one SA: every packet takes its
//                     sequence number from one counter in shared memory with
//                     Atomics.add and is sealed alone (the kernel must be told
//                     the number before each packet)
//   shared-sa-batch   as shared-sa, but each batch of 64 reserves 64 numbers
//                     with one Atomics.add (the cheapest correct sharing)
//   bare-thread       control: plain threads running the same kernel with an
//                     SA each and nothing else (bench/scale-worker.ts); its
//                     speed-up is the most this machine gives the kernel, so
//                     the workers' speed-up can be read against it
// Packets are generated and sealed inside each worker (IPv4/UDP,
// AES-GCM-128), then counted and discarded: this measures the workers, not I/O.
//
// The receiving side of a shared SA needs a shared anti-replay window too. The
// seal+open part (bench/scale-worker.ts, plain threads with one ESP kernel
// each) seals batches and opens them again: per worker with its own SA, or
// all threads on one SA whose sequence counter (Atomics.add per batch) and
// replay window (checked and updated under a spinlock per packet, RFC 4303
// §3.4.3) live in shared memory.
//
// How it is measured on a shared, noisy machine: every case is a fixed window
// of time (about 4 x --max-time seconds, default 1 s) in which all its workers
// run at once; a case's rate is the sum of its workers' rates over that
// window, so N workers are not held back by whichever was slowest. A round
// runs every worker count and model back to back, in an order rotated from
// round to round (no case always runs first); a ratio is computed within
// each round (cases seconds apart, not minutes) and the median over ROUNDS
// rounds is reported with its range.
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { startWorkers, type WorkerHandle } from '../dataplane/workers.js';
import { compileEspModule, type EspAlgorithm } from '../dataplane/kernel.js';
import { SHARED_BYTES, type SealOpenResult, type SealOpenTask } from './scale-worker.js';
import { formatTable, round, type SuiteOptions } from './common.js';

type WorkerMode = 'sa-per-worker' | 'shared-sa' | 'shared-sa-batch';
/** The control: bare threads (bench/scale-worker.ts) sealing with an SA each. */
type Mode = WorkerMode | 'bare-thread';

export interface ScaleResult {
  mode: Mode;
  workers: number;
  /** Inner packet bytes. */
  size: number;
  pps: number;
  /** Inner Gbit/s. */
  gbps: number;
  /** Each worker's own rate (packets it sealed / its own time). */
  perWorkerPps: number[];
}

/** Seal+open: packets sealed and opened again per second over all threads. */
export interface SealOpenScaleResult {
  mode: 'sa-per-worker' | 'shared-sa';
  workers: number;
  size: number;
  /** Packets opened (accepted) per second. */
  pps: number;
  gbps: number;
  /**
   * Authentic packets the replay window refused: with one SA shared by
   * threads, a thread that falls behind by more than the window (4096) sees
   * its packets left of it (RFC 4303 §3.4.3). Zero with an SA per thread.
   */
  refused: number;
}

export interface ScaleReport {
  suite: 'scale';
  node: string;
  cores: number;
  algorithm: EspAlgorithm;
  results: ScaleResult[];
  sealOpen: SealOpenScaleResult[];
  /** speedup: N workers vs 1, SA per worker; cloneVsShared: SA per worker vs shared-sa (and -batch) at N workers. */
  ratios: Record<string, ScaleRatio>;
}

export interface ScaleRatio {
  /** Median over the rounds of the ratio within each round. */
  value: number;
  /** Lowest and highest of the per-round ratios. */
  range: [number, number];
  description: string;
}

const ALGORITHM: EspAlgorithm = 'aes-gcm-128';
const SIZES = [64, 1400] as const;
const MODES: readonly Mode[] = ['sa-per-worker', 'shared-sa', 'shared-sa-batch', 'bare-thread'];
const SPI = 0x5ca1_e000;
const SLOT = 0;
const BATCH = 64;
const SRC = Uint8Array.of(10, 1, 0, 1);
const DST = Uint8Array.of(10, 2, 0, 1);
const ROUNDS = 5;

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)]!;
}

/** Worker counts to measure: 1..cores, doubling past 4. */
function workerCounts(max: number): number[] {
  const out: number[] = [];
  for (let n = 1; n <= max; n = n < 4 ? n + 1 : n * 2) out.push(n);
  if (out[out.length - 1] !== max) out.push(max);
  return out;
}

let tag = 0;

/** Install the case's outbound SAs; returns the slot tag they got. */
async function install(workers: WorkerHandle[], mode: WorkerMode): Promise<number> {
  tag = (tag + 1) & 0xff;
  const shared = Uint8Array.from(randomBytes(20));
  await Promise.all(workers.map((w, i) => {
    // A shared SA is the same key and SPI in every worker; otherwise each has its own.
    const key = mode === 'sa-per-worker' ? Uint8Array.from(randomBytes(20)) : shared.slice();
    return w.request({
      op: 'install', slot: SLOT, tag, saId: mode === 'sa-per-worker' ? i + 1 : 1, algorithm: ALGORITHM, key: key.buffer as ArrayBuffer,
      spi: mode === 'sa-per-worker' ? SPI + i : SPI, direction: 'out', esn: true, icvLength: 16, replayWindow: 0,
    }, [key.buffer as ArrayBuffer]);
  }));
  shared.fill(0);
  return tag;
}

/** Upper bound on a case's packets per worker; the window ends it first. */
const MAX_PACKETS = 2 ** 31;

async function runCase(all: WorkerHandle[], mode: WorkerMode, n: number, size: number, windowMs: number): Promise<ScaleResult> {
  const workers = all.slice(0, n);
  const t = await install(workers, mode);
  const counter = new SharedArrayBuffer(8);
  new BigInt64Array(counter)[0] = 1n; // ESP sequence numbers start at 1 (RFC 4303 §3.3.3)
  const sharedSeq = mode === 'sa-per-worker' ? undefined : { buffer: counter, perPacket: mode === 'shared-sa' };
  const replies = await Promise.all(workers.map((w) => w.generate({
    slot: SLOT, tag: t, packets: MAX_PACKETS, durationMs: windowMs, size, flows: 1, src: SRC, dst: DST, output: 'discard', batch: BATCH,
    ...(sharedSeq ? { sharedSeq } : {}),
  })));
  await Promise.all(workers.map((w) => w.request({ op: 'delete', slot: SLOT })));
  if (replies.some((r) => r.sent === 0 || r.dropped !== 0)) throw new Error(`${mode} x${n}: a worker sealed nothing or dropped packets`);
  const sent = replies.reduce((a, r) => a + r.sent, 0);
  // Every number was taken exactly once from the shared counter.
  if (sharedSeq && new BigInt64Array(counter)[0] !== BigInt(sent) + 1n) throw new Error(`${mode}: the shared counter does not match the packets sealed`);
  const perWorkerPps = replies.map((r) => (r.sent * 1000) / r.ms);
  const pps = perWorkerPps.reduce((a, p) => a + p, 0);
  return {
    mode, workers: n, size,
    pps: Math.round(pps),
    gbps: round((pps * size * 8) / 1e9),
    perWorkerPps: perWorkerPps.map(Math.round),
  };
}

/**
 * One case of bare threads: `n` threads started together and stopped together
 * after `windowMs`, sealing and (with `open`) opening again.
 */
async function runThreads(mode: SealOpenScaleResult['mode'], n: number, size: number, windowMs: number, open: boolean): Promise<SealOpenScaleResult & { perThreadPps: number[] }> {
  const module = await compileEspModule();
  const shared = mode === 'shared-sa' ? new SharedArrayBuffer(SHARED_BYTES) : undefined;
  if (shared) new BigInt64Array(shared, 16, 1)[0] = 1n; // the first sequence number (RFC 4303 §3.3.3)
  const flags = new SharedArrayBuffer(8);
  const key = Uint8Array.from(randomBytes(20));
  const threads = Array.from({ length: n }, () => new Worker(new URL('./scale-worker.js', import.meta.url)));
  try {
    const ready = threads.map((t) => new Promise<void>((resolve) => t.once('message', () => resolve())));
    const done = threads.map((t) => new Promise<SealOpenResult>((resolve, reject) => {
      t.once('error', reject);
      t.once('message', () => t.once('message', resolve));
    }));
    threads.forEach((t, i) => {
      const task: SealOpenTask = {
        module, mode, key: mode === 'shared-sa' ? key : Uint8Array.from(randomBytes(20)), spi: 0x5ca1_f000 + (mode === 'shared-sa' ? 0 : i),
        size, open, flags, ...(shared ? { shared } : {}),
      };
      t.postMessage(task);
    });
    await Promise.all(ready);
    const flag = new Int32Array(flags);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    Atomics.store(flag, 1, 1);
    const results = await Promise.all(done);
    const counted = (r: SealOpenResult): number => (open ? r.opened : r.sealed);
    const refused = open ? results.reduce((a, r) => a + r.sealed - r.opened, 0) : 0;
    if (mode === 'sa-per-worker' && refused !== 0) throw new Error(`seal+open with an SA per thread refused ${refused} packets`);
    if (results.some((r) => counted(r) === 0)) throw new Error(`bare threads ${mode} x${n}: a thread got nothing done`);
    const perThreadPps = results.map((r) => (counted(r) * 1000) / r.ms);
    const pps = perThreadPps.reduce((a, p) => a + p, 0);
    return { mode, workers: n, size, pps: Math.round(pps), gbps: round((pps * size * 8) / 1e9), refused, perThreadPps: perThreadPps.map(Math.round) };
  } finally {
    key.fill(0);
    await Promise.all(threads.map((t) => t.terminate()));
  }
}

/** A ratio computed within each round; the median is its value. */
function roundRatio<T extends { pps: number }>(rounds: T[][], a: (r: T) => boolean, b: (r: T) => boolean, description: string): ScaleRatio {
  const values = rounds.map((row) => row.find(a)!.pps / row.find(b)!.pps);
  return { value: round(median(values), 2), range: [round(Math.min(...values), 2), round(Math.max(...values), 2)], description };
}

/** `xs` rotated left by `k`: each round runs the cases in another order, so no case always runs first. */
function rotated<T>(xs: readonly T[], k: number): T[] {
  const i = k % xs.length;
  return [...xs.slice(i), ...xs.slice(0, i)];
}

/** Per (model, workers): the median case over the rounds, by workers then model. */
function medians<T extends { pps: number; mode: string; workers: number }>(rounds: T[][], modes: readonly string[]): T[] {
  const cases = [...rounds[0]!].sort((a, b) => a.workers - b.workers || modes.indexOf(a.mode) - modes.indexOf(b.mode));
  return cases.map((c) => {
    const runs = rounds.map((row) => row.find((r) => r.mode === c.mode && r.workers === c.workers)!);
    const pps = median(runs.map((r) => r.pps));
    return runs.find((r) => r.pps === pps)!;
  });
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runScaleBench(opts: SuiteOptions): Promise<ScaleReport> {
  const cores = availableParallelism();
  const counts = workerCounts(cores);
  const seconds = Math.max(0.2, opts.maxTime * 4);
  const progress = (msg: string): void => void process.stderr.write(msg);
  const windowMs = Math.round(seconds * 1000);
  const max = counts[counts.length - 1]!;
  const ratios: ScaleReport['ratios'] = {};
  const results: ScaleResult[] = [];
  const all = await startWorkers({ count: max, sink: 'discard', onEvent: () => {} });
  try {
    for (const size of SIZES) {
      // Warm-up: let the wasm code tier up in every worker before anything counts.
      await runCase(all, 'sa-per-worker', max, size, 200);
      const rounds: ScaleResult[][] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const row: ScaleResult[] = [];
        for (const n of rotated(counts, r)) {
          for (const mode of rotated(MODES, r)) {
            progress(`\r${size} B, ${n} worker${n === 1 ? '' : 's'}, ${mode}, round ${r + 1}/${ROUNDS}`.padEnd(60));
            if (mode !== 'bare-thread') row.push(await runCase(all, mode, n, size, windowMs));
            else {
              const c = await runThreads('sa-per-worker', n, size, windowMs, false);
              row.push({ mode, workers: n, size, pps: c.pps, gbps: c.gbps, perWorkerPps: c.perThreadPps });
            }
          }
        }
        rounds.push(row);
      }
      results.push(...medians(rounds, MODES));
      const is = (mode: Mode, n: number) => (c: ScaleResult): boolean => c.mode === mode && c.workers === n;
      ratios[`speedup${max}x${size}`] = roundRatio(rounds, is('sa-per-worker', max), is('sa-per-worker', 1),
        `SA per worker: ${max} workers vs 1, ${size} B`);
      ratios[`bareSpeedup${max}x${size}`] = roundRatio(rounds, is('bare-thread', max), is('bare-thread', 1),
        `control, bare threads sealing with an SA each: ${max} vs 1, ${size} B (what this machine gives)`);
      ratios[`cloneVsShared${max}x${size}`] = roundRatio(rounds, is('sa-per-worker', max), is('shared-sa', max),
        `${max} workers: SA per worker vs one shared SA (Atomics per packet), ${size} B`);
      ratios[`cloneVsSharedBatch${max}x${size}`] = roundRatio(rounds, is('sa-per-worker', max), is('shared-sa-batch', max),
        `${max} workers: SA per worker vs one shared SA (Atomics per batch of ${BATCH}), ${size} B`);
    }
  } finally {
    progress(`\r${' '.repeat(60)}\r`);
    await Promise.all(all.map((w) => w.stop()));
  }

  const sealOpen: SealOpenScaleResult[] = [];
  for (const size of SIZES) {
    await runThreads('sa-per-worker', max, size, 200, true); // warm-up, as above
    const rounds: SealOpenScaleResult[][] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const row: SealOpenScaleResult[] = [];
      for (const n of rotated(counts, r)) {
        for (const mode of rotated(['sa-per-worker', 'shared-sa'] as const, r)) {
          progress(`\rseal+open ${size} B, ${n} worker${n === 1 ? '' : 's'}, ${mode}, round ${r + 1}/${ROUNDS}`.padEnd(60));
          row.push(await runThreads(mode, n, size, windowMs, true));
        }
      }
      rounds.push(row);
    }
    sealOpen.push(...medians(rounds, ['sa-per-worker', 'shared-sa']));
    const is = (mode: SealOpenScaleResult['mode'], n: number) => (c: SealOpenScaleResult): boolean => c.mode === mode && c.workers === n;
    ratios[`sealOpenSpeedup${max}x${size}`] = roundRatio(rounds, is('sa-per-worker', max), is('sa-per-worker', 1),
      `seal+open, SA per thread: ${max} threads vs 1, ${size} B`);
    ratios[`sealOpenCloneVsShared${max}x${size}`] = roundRatio(rounds, is('sa-per-worker', max), is('shared-sa', max),
      `seal+open, ${max} threads: SA per thread vs one SA with shared counter and replay window, ${size} B`);
    ratios[`sealOpenSharedSpeedup${max}x${size}`] = roundRatio(rounds, is('shared-sa', max), is('shared-sa', 1),
      `seal+open, one shared SA: ${max} threads vs 1, ${size} B`);
  }
  progress(`\r${' '.repeat(60)}\r`);

  const report: ScaleReport = { suite: 'scale', node: process.version, cores, algorithm: ALGORITHM, results, sealOpen, ratios };
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    console.log(`Worker scaling: ESP encap (${ALGORITHM}) in data-plane workers, ${cores} cores, node ${process.version}\n`);
    console.log(formatTable(['size', 'model', 'workers', 'Mpps', 'Gbps', 'per worker kpps'],
      results.map((r) => [String(r.size), r.mode, r.workers, round(r.pps / 1e6, 3), r.gbps, r.perWorkerPps.map((p) => Math.round(p / 1000)).join(' ')])));
    console.log('\nSeal+open (the receiving side of a shared SA needs its replay window shared too)');
    console.log(formatTable(['size', 'model', 'threads', 'Mpps', 'Gbps', 'refused by the window'],
      sealOpen.map((r) => [String(r.size), r.mode, r.workers, round(r.pps / 1e6, 3), r.gbps, r.refused])));
    console.log('\nRatios');
    console.log(formatTable(['ratio', 'median', 'range over rounds'], Object.values(ratios).map((r) => [r.description, r.value, `${r.range[0]}–${r.range[1]}`])));
  }
  return report;
}
