// Prometheus metrics over two engines wired in memory: scraped over HTTP with
// fetch, parsed by the Prometheus client's own parser, and compared with the
// status snapshot they are read from.
import { afterEach, describe, expect } from 'vitest';
import { GatewayMetrics, serveMetrics } from '../control/api/metrics.js';
import type { MetricsServer } from '../control/api/metrics.js';
import { snapshot } from '../control/status.js';
import type { GatewayStatus } from '../control/status.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { interopTest } from './support/prereq.js';
import { parsePrometheus, sampleValue } from './support/prometheus.js';
import type { PromFamily } from './support/prometheus.js';

const servers: MetricsServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

/** A worker's counters as the data plane's shared memory reports them. */
function worker(index: number, n: number) {
  return {
    index,
    sas: index + 1,
    encapPackets: 1000 * n,
    encapBytes: 1_400_000 * n,
    decapPackets: 900 * n,
    decapBytes: 1_260_000 * n,
    espBytesOut: 1_500_000 * n,
    drops: { replay: 3 * n, icv: n, malformed: 0, seqExhausted: 0, noSa: 0, queueFull: 2 },
    batches: 40 * n,
    busyMs: 1234 * n,
    espSent: 0,
    innerWritten: 0,
  };
}

async function scrape(metrics: GatewayMetrics): Promise<{ text: string; families: PromFamily[]; contentType: string }> {
  const server = await serveMetrics(metrics, { address: '127.0.0.1', port: 0 });
  servers.push(server);
  const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, families: parsePrometheus(text), contentType: res.headers.get('content-type') ?? '' };
}

describe('Prometheus metrics', () => {
  interopTest('IKE, SA and worker series match the status snapshot they are read from', ['prometheus'], async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    let dataplane = { workers: [worker(0, 1), worker(1, 2)], udpGso: { runs: 7, datagrams: 190, refused: 1 } };
    const status = (): GatewayStatus => ({ ...snapshot(alice), dataplane: dataplane as unknown as GatewayStatus['dataplane'] });
    const metrics = new GatewayMetrics(status, alice);
    const up = alice.initiate(initiator.name);
    wire.run(100);
    await up;

    const { text, families, contentType } = await scrape(metrics);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const now = status();
    // Worker series, one per worker and direction, equal to the shared-memory counters.
    for (const w of now.dataplane!.workers) {
      const worker = String(w.index);
      expect(sampleValue(families, 'ikeclone_esp_packets_total', { worker, direction: 'out' })).toBe(w.encapPackets);
      expect(sampleValue(families, 'ikeclone_esp_packets_total', { worker, direction: 'in' })).toBe(w.decapPackets);
      expect(sampleValue(families, 'ikeclone_esp_bytes_total', { worker, direction: 'out' })).toBe(w.encapBytes);
      expect(sampleValue(families, 'ikeclone_esp_drops_total', { worker, reason: 'replay' })).toBe(w.drops.replay);
      expect(sampleValue(families, 'ikeclone_worker_batches_total', { worker })).toBe(w.batches);
      expect(sampleValue(families, 'ikeclone_worker_busy_seconds_total', { worker })).toBeCloseTo(w.busyMs / 1000, 6);
      expect(sampleValue(families, 'ikeclone_worker_child_sas', { worker })).toBe(w.sas);
    }
    // ESP in UDP_SEGMENT runs (process-wide).
    expect(sampleValue(families, 'ikeclone_esp_udp_gso_total', { event: 'run' })).toBe(7);
    expect(sampleValue(families, 'ikeclone_esp_udp_gso_total', { event: 'datagram' })).toBe(190);
    expect(sampleValue(families, 'ikeclone_esp_udp_gso_total', { event: 'refused' })).toBe(1);
    // IKE series.
    expect(sampleValue(families, 'ikeclone_ike_messages_total', { direction: 'out' })).toBe(now.ike.sent);
    expect(sampleValue(families, 'ikeclone_ike_messages_total', { direction: 'in' })).toBe(now.ike.received);
    expect(now.ike.sent).toBeGreaterThanOrEqual(2);
    expect(sampleValue(families, 'ikeclone_ike_retransmissions_total')).toBe(now.ike.retransmits);
    expect(sampleValue(families, 'ikeclone_ike_half_open_sas')).toBe(now.halfOpen);
    expect(sampleValue(families, 'ikeclone_ike_sas', { state: 'established' })).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_sas', { state: 'deleting' })).toBe(0);
    expect(sampleValue(families, 'ikeclone_child_sas', { state: 'installed' })).toBe(now.ikeSas[0]!.children.length);
    expect(sampleValue(families, 'ikeclone_clone_families', { state: 'single' })).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_handshake_duration_seconds_count')).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_events_total', { event: 'rekey' })).toBe(0);

    // Conventions: counters are typed counter and end in _total; no label carries an SPI, address or identity.
    const byName = new Map(families.map((f) => [f.name, f]));
    expect(byName.get('ikeclone_esp_packets')?.type).toBe('counter');
    expect(byName.get('ikeclone_ike_half_open_sas')?.type).toBe('gauge');
    expect(byName.get('ikeclone_ike_handshake_duration_seconds')?.type).toBe('histogram');
    const allowed = new Set(['worker', 'direction', 'reason', 'state', 'event', 'le', 'version', 'major', 'minor', 'patch', 'space', 'type', 'kind', 'exchange', 'role', 'result', 'sa']);
    for (const f of families.filter((x) => x.name.startsWith('ikeclone_'))) {
      for (const s of f.samples) for (const label of Object.keys(s.labels)) expect(allowed.has(label), `${s.name} label ${label}`).toBe(true);
    }
    const sa = now.ikeSas[0]!;
    for (const secretish of [sa.spiI, sa.spiR, sa.children[0]!.spiIn, '10.0.0.2']) expect(text).not.toContain(secretish);

    // A later scrape reads a fresh snapshot: counters follow the workers.
    dataplane = { workers: [worker(0, 3), worker(1, 4)], udpGso: { runs: 7, datagrams: 190, refused: 1 } };
    const again = await scrape(metrics);
    expect(sampleValue(again.families, 'ikeclone_esp_packets_total', { worker: '1', direction: 'out' })).toBe(4000);
  });

  interopTest('counts rekeys as they happen, and answers 404 off /metrics', ['prometheus'], async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    const metrics = new GatewayMetrics(() => snapshot(alice), alice);
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const sa = await up;
    const rekeyed = alice.rekeyIkeSa(sa);
    wire.run(200);
    await rekeyed;
    const { families } = await scrape(metrics);
    expect(sampleValue(families, 'ikeclone_ike_events_total', { event: 'rekey' })).toBe(1);
    // Without a data plane there are no worker series at all (rather than zeros for workers that do not exist).
    expect(sampleValue(families, 'ikeclone_esp_packets_total', { worker: '0', direction: 'out' })).toBeUndefined();
    const res = await fetch(`http://127.0.0.1:${servers[0]!.port}/other`);
    expect(res.status).toBe(404);
  });
});
