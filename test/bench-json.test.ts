// `npm run -s bench -- SUITE --json` writes one JSON document on stdout and
// nothing else, so `> file.json` is JSON (architecture §7): the build it
// starts with (node-gyp, asc, tsc) and the suite's progress go to stderr.
// Run in a clean clone of HEAD, because the bench script rebuilds native/io,
// wasm/build and dist/, which the other tests of this checkout are using; the
// esp suite runs with the shortest sampling time it accepts.
import { describe, expect, it } from 'vitest';
import { useCloneOfHead } from './support/checkout.js';

const BENCH_TIMEOUT_MS = 420_000;

interface EspReport {
  suite: string;
  results: { impl: string; algorithm: string; op: string; pps: number }[];
  ratios: Record<string, { value: number }>;
}

describe('npm run -s bench -- esp --json', () => {
  const checkout = useCloneOfHead();

  it('prints only JSON on stdout, the build and progress on stderr', async () => {
    const bench = await checkout().run('npm', ['run', '-s', 'bench', '--', 'esp', '--json', '--max-time', '0.01'], { timeoutMs: BENCH_TIMEOUT_MS });
    const report = JSON.parse(bench.stdout) as EspReport;
    expect(report.suite).toBe('esp');
    expect(report.results.length).toBeGreaterThan(0);
    expect(report.results.every((r) => r.pps > 0)).toBe(true);
    expect(Object.keys(report.ratios).length).toBeGreaterThan(0);
    // The build ran (its output is on stderr), so the JSON came from a fresh dist/.
    expect(bench.stderr).toMatch(/ikeclone_io|native\/io/);
  }, BENCH_TIMEOUT_MS + 60_000);
});
