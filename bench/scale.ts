// Worker scaling benchmark (`npm run bench -- scale --json`): ESP encap
// throughput of the data-plane workers (dataplane/worker.ts, each hosted by a
// one-thread piscina pool) with 1..N workers, in three models:
//   sa-per-worker     one SA per worker, as cloning gives (DESIGN §1): each
//                     worker owns its sequence counter and seals 64 packets per
//                     kernel call, with no synchronisation at all
//   shared-sa         the same workers share one SA: every packet takes its
//                     sequence number from one counter in shared memory with
//                     Atomics.add and is sealed alone (the kernel must be told
//                     the number before each packet)
//   shared-sa-batch   as shared-sa, but each batch of 64 reserves 64 numbers
//                     with one Atomics.add (the cheapest correct sharing)
// Packets are generated and sealed inside each worker (IPv4/UDP,
// AES-GCM-128), then counted and discarded: this measures the workers, not I/O.
//
// The receiving side of a shared SA needs a shared anti-replay window too. The
// seal+open part (bench/scale-worker.ts, plain threads with one ESP kernel
// each) seals batches and opens them again: per worker with its own SA, or
// all threads on one SA whose sequence counter (Atomics.add per batch) and
// replay window (checked and updated under a spinlock per packet, RFC 4303
// §3.4.3) live in shared memory. Each case runs for about 4 x --max-time seconds (default 1 s),
// ROUNDS times with the models interleaved; the median counts.
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { startWorkers, type WorkerHandle } from '../dataplane/workers.js';
import { compileEspModule, type EspAlgorithm } from '../dataplane/kernel.js';
import { SHARED_BYTES, type SealOpenResult, type SealOpenTask } from './scale-worker.js';
import { formatTable, round, type SuiteOptions } from './common.js';

type Mode = 'sa-per-worker' | 'shared-sa' | 'shared-sa-batch';

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
  ratios: Record<string, { value: number; description: string }>;
}

const ALGORITHM: EspAlgorithm = 'aes-gcm-128';
const SIZES = [64, 1400] as const;
const MODES: readonly Mode[] = ['sa-per-worker', 'shared-sa', 'shared-sa-batch'];
const SPI = 0x5ca1_e000;
const SLOT = 0;
const BATCH = 64;
const SRC = Uint8Array.of(10, 1, 0, 1);
const DST = Uint8Array.of(10, 2, 0, 1);
const ROUNDS = 3;

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
async function install(workers: WorkerHandle[], mode: Mode): Promise<number> {
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

async function runCase(all: WorkerHandle[], mode: Mode, n: number, size: number, packets: number): Promise<ScaleResult & { ms: number }> {
  const workers = all.slice(0, n);
  const t = await install(workers, mode);
  const counter = new SharedArrayBuffer(8);
  new BigInt64Array(counter)[0] = 1n; // ESP sequence numbers start at 1 (RFC 4303 §3.3.3)
  const sharedSeq = mode === 'sa-per-worker' ? undefined : { buffer: counter, perPacket: mode === 'shared-sa' };
  const t0 = performance.now();
  const replies = await Promise.all(workers.map((w) => w.generate({
    slot: SLOT, tag: t, packets, size, flows: 1, src: SRC, dst: DST, output: 'discard', batch: BATCH, ...(sharedSeq ? { sharedSeq } : {}),
  })));
  const ms = performance.now() - t0;
  await Promise.all(workers.map((w) => w.request({ op: 'delete', slot: SLOT })));
  const sent = replies.reduce((a, r) => a + r.sent, 0);
  if (sent !== packets * n) throw new Error(`${mode} x${n}: ${sent} of ${packets * n} packets sealed`);
  // Every number was taken exactly once from the shared counter.
  if (sharedSeq && new BigInt64Array(counter)[0] !== BigInt(sent) + 1n) throw new Error(`${mode}: the shared counter does not match the packets sealed`);
  const pps = (sent * 1000) / ms;
  return {
    mode, workers: n, size, ms,
    pps: Math.round(pps),
    gbps: round((pps * size * 8) / 1e9),
    perWorkerPps: replies.map((r) => Math.round((r.sent * 1000) / r.ms)),
  };
}

/** One seal+open run: `n` threads, `packets` each, all starting together. */
async function runSealOpen(mode: SealOpenScaleResult['mode'], n: number, size: number, packets: number): Promise<SealOpenScaleResult> {
  const module = await compileEspModule();
  const shared = mode === 'shared-sa' ? new SharedArrayBuffer(SHARED_BYTES) : undefined;
  if (shared) new BigInt64Array(shared, 16, 1)[0] = 1n; // the first sequence number (RFC 4303 §3.3.3)
  const go = new SharedArrayBuffer(4);
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
        packets, size, go, ...(shared ? { shared } : {}),
      };
      t.postMessage(task);
    });
    await Promise.all(ready);
    const t0 = performance.now();
    Atomics.store(new Int32Array(go), 0, 1);
    Atomics.notify(new Int32Array(go), 0);
    const results = await Promise.all(done);
    const ms = performance.now() - t0;
    const opened = results.reduce((a, r) => a + r.opened, 0);
    const refused = n * Math.ceil(packets / 64) * 64 - opened;
    if (mode === 'sa-per-worker' && refused !== 0) throw new Error(`seal+open with an SA per thread refused ${refused} packets`);
    const pps = (opened * 1000) / ms;
    return { mode, workers: n, size, pps: Math.round(pps), gbps: round((pps * size * 8) / 1e9), refused };
  } finally {
    key.fill(0);
    await Promise.all(threads.map((t) => t.terminate()));
  }
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runScaleBench(opts: SuiteOptions): Promise<ScaleReport> {
  const cores = availableParallelism();
  const counts = workerCounts(cores);
  const seconds = Math.max(0.2, opts.maxTime * 4);
  const progress = (msg: string): void => void process.stderr.write(msg);
  const all = await startWorkers({ count: counts[counts.length - 1]!, sink: 'discard', onEvent: () => {} });
  const results: ScaleResult[] = [];
  try {
    for (const size of SIZES) {
      // Calibrate: how many packets one worker seals in `seconds`, per model.
      const perMode = new Map<Mode, number>();
      for (const mode of MODES) {
        const probe = await runCase(all, mode, 1, size, size < 512 ? 20_000 : 5_000);
        perMode.set(mode, Math.max(1000, Math.round((probe.pps * seconds))));
      }
      for (const n of counts) {
        const rounds = new Map<Mode, Array<Awaited<ReturnType<typeof runCase>>>>(MODES.map((m) => [m, []]));
        for (let round = 0; round < ROUNDS; round++) {
          for (const mode of MODES) {
            progress(`\r${size} B, ${n} worker${n === 1 ? '' : 's'}, ${mode}, round ${round + 1}/${ROUNDS}`.padEnd(60));
            rounds.get(mode)!.push(await runCase(all, mode, n, size, perMode.get(mode)!));
          }
        }
        for (const mode of MODES) {
          const runs = rounds.get(mode)!;
          const pps = median(runs.map((r) => r.pps));
          const best = runs.find((r) => r.pps === pps)!;
          results.push({ mode, workers: n, size, pps, gbps: best.gbps, perWorkerPps: best.perWorkerPps });
        }
      }
    }
  } finally {
    progress(`\r${' '.repeat(60)}\r`);
    await Promise.all(all.map((w) => w.stop()));
  }

  const sealOpen: SealOpenScaleResult[] = [];
  for (const size of SIZES) {
    const probe = await runSealOpen('sa-per-worker', 1, size, size < 512 ? 8192 : 2048);
    const packets = Math.max(4096, Math.round((probe.pps * seconds) / 64) * 64);
    for (const n of counts) {
      for (const mode of ['sa-per-worker', 'shared-sa'] as const) {
        const runs: SealOpenScaleResult[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          progress(`\rseal+open ${size} B, ${n} worker${n === 1 ? '' : 's'}, ${mode}, round ${round + 1}/${ROUNDS}`.padEnd(60));
          runs.push(await runSealOpen(mode, n, size, packets));
        }
        const pps = median(runs.map((r) => r.pps));
        sealOpen.push(runs.find((r) => r.pps === pps)!);
      }
    }
  }
  progress(`\r${' '.repeat(60)}\r`);

  const find = (mode: Mode, n: number, size: number) => results.find((r) => r.mode === mode && r.workers === n && r.size === size)!;
  const max = counts[counts.length - 1]!;
  const ratios: ScaleReport['ratios'] = {};
  for (const size of SIZES) {
    ratios[`speedup${max}x${size}`] = {
      value: round(find('sa-per-worker', max, size).pps / find('sa-per-worker', 1, size).pps, 2),
      description: `SA per worker: ${max} workers vs 1, ${size} B`,
    };
    ratios[`cloneVsShared${max}x${size}`] = {
      value: round(find('sa-per-worker', max, size).pps / find('shared-sa', max, size).pps, 2),
      description: `${max} workers: SA per worker vs one shared SA (Atomics per packet), ${size} B`,
    };
    ratios[`cloneVsSharedBatch${max}x${size}`] = {
      value: round(find('sa-per-worker', max, size).pps / find('shared-sa-batch', max, size).pps, 2),
      description: `${max} workers: SA per worker vs one shared SA (Atomics per batch of ${BATCH}), ${size} B`,
    };
    const open = (mode: SealOpenScaleResult['mode'], n: number) => sealOpen.find((r) => r.mode === mode && r.workers === n && r.size === size)!;
    ratios[`sealOpenCloneVsShared${max}x${size}`] = {
      value: round(open('sa-per-worker', max).pps / open('shared-sa', max).pps, 2),
      description: `seal+open, ${max} threads: SA per thread vs one SA with shared counter and replay window, ${size} B`,
    };
    ratios[`sealOpenSharedSpeedup${max}x${size}`] = {
      value: round(open('shared-sa', max).pps / open('shared-sa', 1).pps, 2),
      description: `seal+open, one shared SA: ${max} threads vs 1, ${size} B`,
    };
  }
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
    console.log(formatTable(['ratio', 'value'], Object.values(ratios).map((r) => [r.description, r.value])));
  }
  return report;
}
