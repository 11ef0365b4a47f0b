// A counter set to a total kept elsewhere, for the collect() of series read
// at scrape time (metrics.ts, cluster-metrics.ts).
//
// Owner: the main thread.
import type { Counter } from 'prom-client';

/** Sets `counter` at `labels` to `value` (prom-client counters only go up from 0 within one collect, after reset). */
export function setTotal(counter: Counter<string>, labels: Record<string, string>, value: number): void {
  counter.inc(labels, Math.max(0, value));
}
