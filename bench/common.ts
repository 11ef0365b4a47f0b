// Shared helpers of the benchmark suites: timing one case with benchmark.js,
// command-line flags, and the human table. Every suite prints a table, or with
// --json a single JSON document on stdout (progress goes to stderr).
import Benchmark from 'benchmark';

export interface SuiteOptions {
  json: boolean;
  /** Seconds benchmark.js may spend sampling one case. */
  maxTime: number;
  /** Minutes a long-running suite runs (soak). */
  minutes?: number;
  /**
   * --cpu-time: time cases by this process's CPU time (process.cpuUsage)
   * instead of wall time, where a suite supports it (esp), so that a case on
   * a shared machine is not charged for the time other processes hold the core.
   */
  cpuTime?: boolean;
  /** --etcd-timing HEARTBEAT/ELECTION (ms): the raft timing of the etcd members a suite starts (cluster). */
  etcdTiming?: { heartbeatMs: number; electionMs: number };
  /** --etcd-data disk|tmpfs: where the etcd members a suite starts keep their data (cluster; default disk). */
  etcdData?: 'disk' | 'tmpfs';
  /** --only PART: run one part of a suite (cluster: handoff, moves, failover). */
  only?: string;
  /** --moves N: how many moves of an established clone the cluster suite times (default 52). */
  moves?: number;
}

/** Most moves one cluster run makes (--moves): each takes a second or two. */
export const MAX_MOVES = 10_000;

/** Parse the flags every suite understands: --json, --max-time SECONDS, --minutes N, --cpu-time, --etcd-timing H/E, --etcd-data disk|tmpfs, --only PART, --moves N. */
export function parseSuiteOptions(args: readonly string[]): SuiteOptions {
  const opts: SuiteOptions = { json: false, maxTime: 0.25 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--json') opts.json = true;
    else if (a === '--max-time') {
      const v = Number(args[++i]);
      if (!(v > 0)) throw new Error('--max-time needs a positive number of seconds');
      opts.maxTime = v;
    } else if (a === '--minutes') {
      const v = Number(args[++i]);
      if (!(v > 0)) throw new Error('--minutes needs a positive number');
      opts.minutes = v;
    } else if (a === '--cpu-time') opts.cpuTime = true;
    else if (a === '--etcd-timing') {
      const m = /^(\d+)\/(\d+)$/.exec(args[++i] ?? '');
      if (!m || Number(m[2]) < 5 * Number(m[1]) || Number(m[1]) === 0) throw new Error('--etcd-timing needs HEARTBEAT/ELECTION in ms, the election timeout at least 5 heartbeats (e.g. 50/500)');
      opts.etcdTiming = { heartbeatMs: Number(m[1]), electionMs: Number(m[2]) };
    } else if (a === '--etcd-data') {
      const v = args[++i];
      if (v !== 'disk' && v !== 'tmpfs') throw new Error('--etcd-data needs disk or tmpfs');
      opts.etcdData = v;
    } else if (a === '--only') {
      const v = args[++i];
      if (!v) throw new Error('--only needs the name of a part');
      opts.only = v;
    } else if (a === '--moves') {
      const v = args[++i];
      const n = Number(v);
      if (v === undefined || !/^\d+$/.test(v) || n < 1 || n > MAX_MOVES) throw new Error(`--moves needs a whole number of moves from 1 to ${MAX_MOVES}`);
      opts.moves = n;
    }
    else throw new Error(`unknown option ${a}`);
  }
  return opts;
}

export interface Measurement {
  /** Calls of `fn` per second. */
  hz: number;
  /** Relative margin of error, percent. */
  rme: number;
}

/** Time `fn` synchronously with benchmark.js (calls it directly, no decompilation). */
export function measure(name: string, fn: () => void, maxTime: number): Measurement {
  const bench = new Benchmark(name, fn, { maxTime, minSamples: 5, initCount: 1 });
  bench.run({ async: false });
  if (bench.error) throw bench.error;
  return { hz: bench.hz, rme: bench.stats.rme };
}

/** Render rows as an aligned text table (numbers right-aligned). */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const cells = [header.map(String), ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c]!.length)));
  const numeric = header.map((_, c) => rows.length > 0 && rows.every((r) => typeof r[c] === 'number'));
  const line = (r: readonly string[]): string =>
    r.map((v, c) => (numeric[c] ? v.padStart(widths[c]!) : v.padEnd(widths[c]!))).join('  ').trimEnd();
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** Round to `digits` significant decimals for tables and JSON. */
export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** CPU microseconds (user + system) this process has used. */
function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * Time `fn` by this process's CPU time: after a warm-up, samples of calls
 * that each last about SAMPLE_CPU_US of CPU (or maxTime / 5 of wall time),
 * for `maxTime` seconds of wall
 * time and at least five samples (bounded at 10,000 calls per sample). hz
 * is from the median sample, rme the 95 % margin of the sample mean.
 */
export function measureCpu(fn: () => void, maxTime: number): Measurement {
  const SAMPLE_CPU_US = 10_000;
  // Warm-up: the first calls include compilation, which would cut the calibration short.
  for (let k = 0; k < 3; k++) fn();
  // Calibration: double the calls per sample until they take a quarter of a
  // sample's CPU, or a twentieth of maxTime in wall time (a case that mostly
  // waits must not stretch a sample without bound).
  let calls = 1;
  for (let i = 0; i < 20; i++) {
    const c0 = cpuMicros();
    const w0 = performance.now();
    for (let k = 0; k < calls; k++) fn();
    if (cpuMicros() - c0 >= SAMPLE_CPU_US / 4 || (performance.now() - w0) * 20 >= maxTime * 1000 || calls >= 10_000) break;
    calls = Math.min(calls * 2, 10_000);
  }
  calls = Math.min(calls * 4, 10_000);
  const perCall: number[] = [];
  const end = Date.now() + maxTime * 1000;
  while (perCall.length < 5 || (Date.now() < end && perCall.length < 1000)) {
    const c0 = cpuMicros();
    for (let k = 0; k < calls; k++) fn();
    perCall.push((cpuMicros() - c0) / calls);
  }
  const sorted = [...perCall].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1]!;
  const mean = perCall.reduce((a, b) => a + b, 0) / perCall.length;
  const sd = Math.sqrt(perCall.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, perCall.length - 1));
  return { hz: median > 0 ? 1e6 / median : Number.POSITIVE_INFINITY, rme: (196 * sd) / Math.sqrt(perCall.length) / mean };
}
