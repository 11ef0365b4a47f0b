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
// The receiving side of a shared SA needs a shared replay window as well
// (one lock per packet); that cost is not included, so the shared models are
// an upper bound. Packets are generated and sealed inside each worker (IPv4/
// UDP, AES-GCM-128), then counted and discarded: this measures the workers,
// not I/O. Each case runs for about 4 x --max-time seconds (default 1 s),
// ROUNDS times with the models interleaved; the median counts.
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startWorkers, type WorkerHandle } from '../dataplane/workers.js';
import type { EspAlgorithm } from '../dataplane/kernel.js';
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

export interface ScaleReport {
  suite: 'scale';
  node: string;
  cores: number;
  algorithm: EspAlgorithm;
  results: ScaleResult[];
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
  }
  const report: ScaleReport = { suite: 'scale', node: process.version, cores, algorithm: ALGORITHM, results, ratios };
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    console.log(`Worker scaling: ESP encap (${ALGORITHM}) in data-plane workers, ${cores} cores, node ${process.version}\n`);
    console.log(formatTable(['size', 'model', 'workers', 'Mpps', 'Gbps', 'per worker kpps'],
      results.map((r) => [String(r.size), r.mode, r.workers, round(r.pps / 1e6, 3), r.gbps, r.perWorkerPps.map((p) => Math.round(p / 1000)).join(' ')])));
    console.log('\nRatios');
    console.log(formatTable(['ratio', 'value'], Object.values(ratios).map((r) => [r.description, r.value])));
  }
  return report;
}
