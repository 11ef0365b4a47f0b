// Prometheus metrics of a running gateway (prom-client), served over HTTP at
// /metrics on `metrics.listen`.
//
// Owner: the main thread. Most series are read at scrape time from the status
// snapshot: the data plane's per-worker counters come from the shared memory
// the workers already write, so a scrape costs the workers nothing. Events
// that a snapshot cannot show (rekeys, moves, handshake durations) are counted
// as they happen.
//
// Labels are bounded and carry no secret: worker index, direction, drop
// reason, state, exchange kind. Never an SPI, an address or an identity.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GatewayStatus } from '../status.js';
import type { IkeEngine } from '../ike/engine.js';
import { registerClusterMetrics, type ClusterMetricsSource } from './cluster-metrics.js';
import { setTotal } from './prom-total.js';

/** Handshake durations (IKE_SA_INIT request to IKE_AUTH done), in seconds. */
const HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];


/** Counts of `items` by `key`, with every name in `known` present (a state nobody is in is 0, not absent). */
function countBy<T>(items: readonly T[], key: (item: T) => string, known: readonly string[]): Map<string, number> {
  const out = new Map<string, number>(known.map((k) => [k, 0]));
  for (const item of items) out.set(key(item), (out.get(key(item)) ?? 0) + 1);
  return out;
}

const IKE_STATES = ['connecting', 'established', 'rekeying', 'deleting'] as const;
const CHILD_STATES = ['installed', 'rekeying', 'rekeyed', 'deleting'] as const;
const FAMILY_STATES = ['single', 'growing', 'complete', 'fallback', 'blocked', 'failed'] as const;

export class GatewayMetrics {
  readonly registry = new Registry();
  private snapshot: GatewayStatus | undefined;
  /** This scrape's status, read once and shared by every collect. */
  private readonly scraped: () => GatewayStatus;
  private clusterAdded = false;

  /** `snapshot` is read once per scrape; `engine` tells the events a snapshot cannot show. */
  constructor(snapshot: () => GatewayStatus, engine: Pick<IkeEngine, 'on'>) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry });
    // One snapshot per scrape, shared by every collect below.
    const status = (this.scraped = (): GatewayStatus => (this.snapshot ??= snapshot()));
    const workers = () => status().dataplane?.workers ?? [];

    new Counter({
      name: 'ikeclone_esp_packets_total',
      help: 'ESP packets a worker sealed (direction="out") or opened (direction="in")',
      labelNames: ['worker', 'direction'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) {
          setTotal(this, { worker: String(w.index), direction: 'out' }, w.encapPackets);
          setTotal(this, { worker: String(w.index), direction: 'in' }, w.decapPackets);
        }
      },
    });
    new Counter({
      name: 'ikeclone_esp_bytes_total',
      help: 'Inner bytes a worker sealed (direction="out") or opened (direction="in")',
      labelNames: ['worker', 'direction'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) {
          setTotal(this, { worker: String(w.index), direction: 'out' }, w.encapBytes);
          setTotal(this, { worker: String(w.index), direction: 'in' }, w.decapBytes);
        }
      },
    });
    new Counter({
      name: 'ikeclone_esp_drops_total',
      help: 'ESP packets a worker dropped, by reason',
      labelNames: ['worker', 'reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) for (const [reason, n] of Object.entries(w.drops)) setTotal(this, { worker: String(w.index), reason }, n);
      },
    });
    new Counter({
      name: 'ikeclone_worker_batches_total',
      help: 'Batches a worker processed',
      labelNames: ['worker'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) setTotal(this, { worker: String(w.index) }, w.batches);
      },
    });
    new Counter({
      name: 'ikeclone_worker_busy_seconds_total',
      help: 'Time a worker spent processing batches',
      labelNames: ['worker'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) setTotal(this, { worker: String(w.index) }, w.busyMs / 1000);
      },
    });
    new Counter({
      name: 'ikeclone_worker_tun_reads_total',
      help: 'Inner packets a worker read from its own TUN queue',
      labelNames: ['worker'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) setTotal(this, { worker: String(w.index) }, w.tunReads);
      },
    });
    new Counter({
      name: 'ikeclone_worker_handoffs_total',
      help: 'Inner packets a worker read and handed to the owner of their SA (direction="out") or got from another worker (direction="in")',
      labelNames: ['worker', 'direction'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) {
          setTotal(this, { worker: String(w.index), direction: 'out' }, w.handOffsOut);
          setTotal(this, { worker: String(w.index), direction: 'in' }, w.handOffsIn);
        }
      },
    });
    new Gauge({
      name: 'ikeclone_worker_child_sas',
      help: 'Child SAs a worker owns',
      labelNames: ['worker'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of workers()) this.set({ worker: String(w.index) }, w.sas);
      },
    });
    new Counter({
      name: 'ikeclone_io_drops_total',
      help: 'Packets the I/O path dropped before or after the workers, by reason',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        const io = status().dataplane?.io;
        if (!io) return;
        for (const [field, n] of Object.entries(io)) {
          if (field.startsWith('drop')) setTotal(this, { reason: field.slice(4).replace(/^./, (c) => c.toLowerCase()) }, n);
        }
      },
    });

    new Counter({
      name: 'ikeclone_esp_udp_gso_total',
      help: 'ESP in UDP sent in UDP_SEGMENT runs: runs sent (event="run"), the datagrams in them (event="datagram"), runs the kernel refused, sent one by one instead (event="refused")',
      labelNames: ['event'],
      registers: [registry],
      collect() {
        this.reset();
        const g = status().dataplane?.udpGso;
        if (!g) return;
        setTotal(this, { event: 'run' }, g.runs);
        setTotal(this, { event: 'datagram' }, g.datagrams);
        setTotal(this, { event: 'refused' }, g.refused);
      },
    });

    new Counter({
      name: 'ikeclone_ike_messages_total',
      help: 'IKE messages received (direction="in") and sent (direction="out"), retransmissions included',
      labelNames: ['direction'],
      registers: [registry],
      collect() {
        this.reset();
        setTotal(this, { direction: 'in' }, status().ike.received);
        setTotal(this, { direction: 'out' }, status().ike.sent);
      },
    });
    new Counter({
      name: 'ikeclone_ike_retransmissions_total',
      help: 'IKE requests sent again for want of a response (RFC 7296 §2.1)',
      registers: [registry],
      collect() {
        this.reset();
        setTotal(this, {}, status().ike.retransmits);
      },
    });
    new Counter({
      name: 'ikeclone_ike_responses_from_cache_total',
      help: 'Retransmitted requests answered from the response cache (RFC 7296 §2.1)',
      registers: [registry],
      collect() {
        this.reset();
        setTotal(this, {}, status().ike.responsesFromCache);
      },
    });
    new Counter({
      name: 'ikeclone_ike_fragments_total',
      help: 'IKE fragments (RFC 7383) sent and received authenticated, messages reassembled, requests cut smaller after unanswered retransmissions',
      labelNames: ['event'],
      registers: [registry],
      collect() {
        this.reset();
        // Absent in a snapshot from a gateway without fragmentation counters: nothing to report.
        const f = status().ike.fragments;
        if (!f) return;
        setTotal(this, { event: 'sent' }, f.sent);
        setTotal(this, { event: 'received' }, f.received);
        setTotal(this, { event: 'reassembled' }, f.reassembled);
        setTotal(this, { event: 'fallback' }, f.fallbacks);
      },
    });
    new Counter({
      name: 'ikeclone_ike_drops_total',
      help: 'IKE datagrams dropped, by reason',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(status().ike.drops)) setTotal(this, { reason }, n);
      },
    });
    new Counter({
      name: 'ikeclone_ike_exchanges_total',
      help: 'IKE exchanges completed, by exchange type, our role and result (failed: an error notify or no response)',
      labelNames: ['exchange', 'role', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [key, n] of Object.entries(status().ike.exchanges)) {
          const [exchange, role, result] = key.split('.');
          if (exchange && role && result) setTotal(this, { exchange, role, result }, n);
        }
      },
    });
    new Counter({
      name: 'ikeclone_rekeys_total',
      help: 'Rekeys completed, by SA type (child: Child SAs, ike: IKE SAs), whichever end started them',
      labelNames: ['sa'],
      registers: [registry],
      collect() {
        this.reset();
        setTotal(this, { sa: 'child' }, status().ike.rekeys.child);
        setTotal(this, { sa: 'ike' }, status().ike.rekeys.ike);
      },
    });
    new Gauge({
      name: 'ikeclone_ike_half_open_sas',
      help: 'Responder IKE SAs past IKE_SA_INIT and before IKE_AUTH',
      registers: [registry],
      collect() {
        this.set(status().halfOpen);
      },
    });
    new Gauge({
      name: 'ikeclone_ike_sas',
      help: 'IKE SAs (clones included), by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [state, n] of countBy(status().ikeSas, (sa) => sa.state, IKE_STATES)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'ikeclone_child_sas',
      help: 'Child SAs, by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.reset();
        const children = status().ikeSas.flatMap((sa) => sa.children);
        for (const [state, n] of countBy(children, (c) => c.state, CHILD_STATES)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'ikeclone_clone_families',
      help: 'Clone families (RFC 7791 sessions), by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [state, n] of countBy(status().families, (f) => f.state, FAMILY_STATES)) this.set({ state }, n);
      },
    });

    const handshakes = new Histogram({
      name: 'ikeclone_ike_handshake_duration_seconds',
      help: 'From the first IKE_SA_INIT message to IKE_AUTH done, per established IKE SA',
      buckets: HANDSHAKE_BUCKETS,
      registers: [registry],
    });
    const events = new Counter({
      name: 'ikeclone_ike_events_total',
      help: 'IKE SA life events: rekeys completed, reauthentications begun, clones made, MOBIKE moves',
      labelNames: ['event'],
      registers: [registry],
    });
    for (const event of ['rekey', 'reauth', 'clone', 'move']) events.inc({ event }, 0);
    engine.on('ike-up', (sa) => {
      if (sa.establishedAt !== undefined) handshakes.observe(Math.max(0, sa.establishedAt - sa.createdAt) / 1000);
    });
    engine.on('ike-rekeyed', () => events.inc({ event: 'rekey' }));
    engine.on('ike-cloned', () => events.inc({ event: 'clone' }));
    engine.on('ike-moved', () => events.inc({ event: 'move' }));
    engine.on('ike-expired', (_sa, limit) => {
      if (limit === 'reauth') events.inc({ event: 'reauth' });
    });
  }

  /**
   * The cluster node's series (control/api/cluster-metrics.ts), once it has
   * joined and attached: read from the same scrape snapshot as the rest
   * (its `cluster` part), or from the node when the snapshot has none.
   */
  addCluster(source: ClusterMetricsSource): void {
    if (this.clusterAdded) throw new Error('the cluster series are registered already');
    this.clusterAdded = true;
    registerClusterMetrics(this.registry, source, () => this.scraped().cluster ?? source.status());
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  async text(): Promise<string> {
    this.snapshot = undefined;
    try {
      return await this.registry.metrics();
    } finally {
      this.snapshot = undefined;
    }
  }
}

export interface MetricsServer {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics; anything else is 404. One scrape at a time is plenty for Prometheus. */
export function serveMetrics(metrics: GatewayMetrics, listen: { address: string; port: number }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.maxHeadersCount = 32;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.address, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({
        address: a.address,
        port: a.port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
