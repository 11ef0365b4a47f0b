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
}

/** Parse the flags every suite understands: --json, --max-time SECONDS. */
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
    } else throw new Error(`unknown option ${a}`);
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
