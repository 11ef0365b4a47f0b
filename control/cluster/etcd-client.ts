// The etcd client of a cluster node (architecture §8): npm `etcd3` with its
// fault handling tuned for failover. Its defaults keep a host's circuit open
// for 5 s after three failures and back watches off up to 30 s, which took
// about 7 s to recover from a leader kill; a node that must notice a dead
// peer within its lease TTL cannot wait that long.
import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';
import type { ClusterConfig } from '../config/types.js';

/** Per-call deadline for unary calls (a write that takes longer is retried on another member). */
export const ETCD_CALL_DEADLINE_MS = 2000;
/** How long a connection attempt may take. */
export const ETCD_DIAL_TIMEOUT_MS = 2000;
/**
 * gRPC keep-alive pings on every connection, and how long one may go
 * unanswered. A connection to an etcd member cut off from the others stays
 * open but silent: without pings the lease keep-alive stream on it hangs
 * until the lease lapses, and a healthy node loses its membership. etcd
 * refuses pings more frequent than its --grpc-keepalive-min-time (5 s by
 * default): members serving ikeclone run with --grpc-keepalive-min-time=1s
 * (docs/cluster.md).
 */
export const ETCD_KEEPALIVE_MS = 1000;
export const ETCD_KEEPALIVE_TIMEOUT_MS = 1000;

/** The key prefix of one cluster (CLUSTER key layout): /ikeclone/v1/<cluster>/. */
export function clusterPrefix(cluster: string): string {
  return `/ikeclone/v1/${cluster}/`;
}

/** The owner and record keys of clone `index` of `family`. */
export function cloneKeys(cluster: string, family: string, index: number): { owner: string; record: string } {
  const base = `${clusterPrefix(cluster)}clones/${family}/${index}/`;
  return { owner: `${base}owner`, record: `${base}ike` };
}

export function etcdClient(config: Pick<ClusterConfig, 'etcd' | 'tls'>): Etcd3 {
  const tls = config.tls;
  return new Etcd3({
    hosts: config.etcd,
    dialTimeout: ETCD_DIAL_TIMEOUT_MS,
    grpcOptions: {
      'grpc.keepalive_time_ms': ETCD_KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': ETCD_KEEPALIVE_TIMEOUT_MS,
      'grpc.keepalive_permit_without_calls': 1,
    },
    ...(tls && {
      credentials: {
        rootCertificate: readFileSync(tls.ca),
        ...(tls.cert && tls.key && { certChain: readFileSync(tls.cert), privateKey: readFileSync(tls.key) }),
      },
    }),
    // Streams (watches, lease keep-alives) have no deadline; unary calls do.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_DEADLINE_MS }),
    faultHandling: {
      // A host is skipped for 1 s after two failures in a row (default: 5 s after three).
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(2) }),
      // Each retry picks another host, quickly (default: three retries without a bound on the wait).
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 4, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 400 }) }),
      // Watches come back within a second (default: up to 30 s).
      // (etcd3 declares an IBackoff and uses it as a factory: the first step of one is both.)
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next(),
    },
  });
}
