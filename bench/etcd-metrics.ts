// What etcd's storage costs while a benchmark runs (the cluster suite): each
// member's WAL fsync and backend commit histograms from its Prometheus
// /metrics, read before and after, and the difference per member. Every
// etcd commit fsyncs the WAL of the leader and of a majority of members
// before it is acknowledged; etcd's hardware advice is a WAL fsync p99 under
// 10 ms (docs/cluster.md section 1).
import { round } from './common.js';
import { execChecked, type NetNs } from '../test/support/netns.js';
import type { EtcdTls } from '../test/support/etcd.js';

/** A Prometheus histogram: cumulative bucket counts by upper bound (seconds, +Inf last), its sum and count. */
export interface Histogram {
  buckets: Array<[le: number, count: number]>;
  sum: number;
  count: number;
}

export const DISK_HISTOGRAMS = {
  walFsync: 'etcd_disk_wal_fsync_duration_seconds',
  backendCommit: 'etcd_disk_backend_commit_duration_seconds',
} as const;

export type DiskHistograms = Record<keyof typeof DISK_HISTOGRAMS, Histogram>;

/** Histogram `name` from a Prometheus text exposition (absent: empty, count 0). */
export function parseHistogram(text: string, name: string): Histogram {
  const buckets: Array<[number, number]> = [];
  let sum = 0;
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}_bucket{le="`)) {
      const m = /le="([^"]+)"\} (\S+)$/.exec(line);
      if (m) buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
    } else if (line.startsWith(`${name}_sum `)) sum = Number(line.slice(name.length + 5));
    else if (line.startsWith(`${name}_count `)) count = Number(line.slice(name.length + 7));
  }
  return { buckets, sum, count };
}

/** Each member's disk histograms now (its /metrics, read with curl inside its namespace, over TLS). */
export function etcdDiskHistograms(members: ReadonlyArray<{ ns: NetNs; endpoint: string }>, tls: EtcdTls): Promise<DiskHistograms[]> {
  return Promise.all(members.map(async (m) => {
    const r = await execChecked(m.ns, 'curl', ['-sS', '--max-time', '5', '--cacert', tls.ca, '--cert', tls.cert, '--key', tls.key, `${m.endpoint}/metrics`], { timeoutMs: 10_000 });
    return { walFsync: parseHistogram(r.stdout, DISK_HISTOGRAMS.walFsync), backendCommit: parseHistogram(r.stdout, DISK_HISTOGRAMS.backendCommit) };
  }));
}

export interface DiskCost {
  /** Observations between the two reads (WAL fsyncs, backend commits). */
  n: number;
  meanMs: number | null;
  /** The upper bound of the bucket the p50 (p99) observation falls in: etcd's buckets double from 1 ms. */
  p50AtMostMs: number | null;
  p99AtMostMs: number | null;
}

/** The observations between `before` and `after` of one histogram. */
export function histogramDelta(before: Histogram, after: Histogram): DiskCost {
  const n = after.count - before.count;
  if (n <= 0) return { n: 0, meanMs: null, p50AtMostMs: null, p99AtMostMs: null };
  const base = new Map(before.buckets);
  const atMost = (p: number): number | null => {
    const want = Math.ceil((p / 100) * n);
    const hit = after.buckets.find(([le, c]) => c - (base.get(le) ?? 0) >= want);
    return hit === undefined || !Number.isFinite(hit[0]) ? null : round(hit[0] * 1000, 1);
  };
  return { n, meanMs: round(((after.sum - before.sum) / n) * 1000, 2), p50AtMostMs: atMost(50), p99AtMostMs: atMost(99) };
}

/** Per member (in order), what its WAL fsyncs and backend commits cost between the two reads. */
export function diskCost(before: readonly DiskHistograms[], after: readonly DiskHistograms[]): Array<Record<keyof typeof DISK_HISTOGRAMS, DiskCost>> {
  return after.map((a, k) => ({
    walFsync: histogramDelta(before[k]!.walFsync, a.walFsync),
    backendCommit: histogramDelta(before[k]!.backendCommit, a.backendCommit),
  }));
}
