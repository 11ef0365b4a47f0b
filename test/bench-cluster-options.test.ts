// The cluster benchmark's etcd storage options and what it reads from etcd's
// /metrics (bench/common.ts, bench/etcd-metrics.ts): --etcd-data puts the
// members' data on the disk or on tmpfs, --only handoff runs the handoff part
// alone, --moves sets how many moves the moves part times, and the WAL fsync
// and backend commit histograms are differenced between two reads.
import { describe, expect, it } from 'vitest';
import { MAX_MOVES, parseSuiteOptions } from '../bench/common.js';
import { DISK_HISTOGRAMS, diskCost, histogramDelta, parseHistogram } from '../bench/etcd-metrics.js';

/** A piece of etcd 3.4's /metrics: `counts` cumulative over etcd's buckets 1, 2, 4, 8 ms and +Inf. */
function exposition(name: string, counts: [number, number, number, number, number], sum: number): string {
  const les = ['0.001', '0.002', '0.004', '0.008', '+Inf'];
  return [
    `# HELP ${name} The latency distributions.`,
    `# TYPE ${name} histogram`,
    ...les.map((le, i) => `${name}_bucket{le="${le}"} ${counts[i]}`),
    `${name}_sum ${sum}`,
    `${name}_count ${counts[4]}`,
  ].join('\n');
}

describe('cluster benchmark options', () => {
  it('--etcd-data takes disk or tmpfs and nothing else; --only names a part', () => {
    expect(parseSuiteOptions(['--json', '--etcd-data', 'tmpfs']).etcdData).toBe('tmpfs');
    expect(parseSuiteOptions(['--etcd-data', 'disk']).etcdData).toBe('disk');
    expect(parseSuiteOptions(['--json']).etcdData).toBeUndefined();
    expect(() => parseSuiteOptions(['--etcd-data', 'ssd'])).toThrow(/--etcd-data needs disk or tmpfs/);
    expect(() => parseSuiteOptions(['--etcd-data'])).toThrow(/--etcd-data needs disk or tmpfs/);
    expect(parseSuiteOptions(['--only', 'handoff']).only).toBe('handoff');
    expect(() => parseSuiteOptions(['--only'])).toThrow(/--only needs/);
  });

  it('--moves takes a whole number from 1 to MAX_MOVES', () => {
    expect(parseSuiteOptions(['--only', 'moves', '--moves', '3']).moves).toBe(3);
    expect(parseSuiteOptions(['--moves', String(MAX_MOVES)]).moves).toBe(MAX_MOVES);
    expect(parseSuiteOptions(['--json']).moves).toBeUndefined();
    for (const bad of ['0', '-1', '2.5', '1e2', 'ten', '', String(MAX_MOVES + 1)]) {
      expect(() => parseSuiteOptions(['--moves', bad]), bad).toThrow(`--moves needs a whole number of moves from 1 to ${MAX_MOVES}`);
    }
    expect(() => parseSuiteOptions(['--moves'])).toThrow(/--moves needs/);
  });
});

describe("etcd's disk histograms", () => {
  const wal = DISK_HISTOGRAMS.walFsync;

  it('reads one histogram out of a whole exposition, leaving the others', () => {
    const text = [exposition(DISK_HISTOGRAMS.backendCommit, [9, 9, 9, 9, 9], 0.5), exposition(wal, [1, 3, 6, 7, 8], 0.04)].join('\n');
    const h = parseHistogram(text, wal);
    expect(h.count).toBe(8);
    expect(h.sum).toBeCloseTo(0.04);
    expect(h.buckets).toEqual([[0.001, 1], [0.002, 3], [0.004, 6], [0.008, 7], [Infinity, 8]]);
    expect(parseHistogram('', wal)).toEqual({ buckets: [], sum: 0, count: 0 });
  });

  it('differences two reads: count, mean, and the bucket bounds of p50 and p99', () => {
    const before = parseHistogram(exposition(wal, [10, 10, 10, 10, 10], 0.005), wal);
    // 100 fsyncs since: 60 under 1 ms, 30 more under 2 ms, 9 more under 8 ms, one slower still.
    const after = parseHistogram(exposition(wal, [70, 100, 100, 109, 110], 0.005 + 0.2), wal);
    expect(histogramDelta(before, after)).toEqual({ n: 100, meanMs: 2, p50AtMostMs: 1, p99AtMostMs: 8 });
    // The slowest one per cent past the last finite bucket: no bound to give.
    const tail = parseHistogram(exposition(wal, [10, 10, 10, 10, 12], 0.5), wal);
    expect(histogramDelta(before, tail).p99AtMostMs).toBeNull();
    expect(histogramDelta(before, before)).toEqual({ n: 0, meanMs: null, p50AtMostMs: null, p99AtMostMs: null });
  });

  it('gives each member its own difference, in member order', () => {
    const read = (c: number) => ({ walFsync: parseHistogram(exposition(wal, [c, c, c, c, c], c / 1000), wal), backendCommit: parseHistogram('', DISK_HISTOGRAMS.backendCommit) });
    const cost = diskCost([read(0), read(5)], [read(4), read(5)]);
    expect(cost.map((m) => m.walFsync.n)).toEqual([4, 0]);
    expect(cost[0]!.walFsync.meanMs).toBe(1);
    expect(cost[1]!.backendCommit.n).toBe(0);
  });
});
