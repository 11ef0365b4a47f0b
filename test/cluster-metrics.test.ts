// A cluster node's Prometheus series (control/api/cluster-metrics.ts): read
// from the node's part of the status at scrape time, arrivals observed as
// they end, parsed by the Prometheus client's own parser. A gateway outside a
// cluster has none of them.
import { describe, expect } from 'vitest';
import { GatewayMetrics } from '../control/api/metrics.js';
import type { ClusterMetricsSource } from '../control/api/cluster-metrics.js';
import type { ArrivalOutcome, ArrivalTimeline } from '../control/cluster/handoff-timeline.js';
import { snapshot, type ClusterNodeStatus, type GatewayStatus } from '../control/status.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { interopTest } from './support/prereq.js';
import { parsePrometheus, sampleValue } from './support/prometheus.js';

function nodeStatus(n: number): ClusterNodeStatus {
  return {
    cluster: 'vpn1',
    node: 'gw-b',
    spiPrefix: 2,
    lease: n % 2 === 0 ? 'held' : 'lost',
    leaseLostReason: n % 2 === 0 ? null : 'lease lapsed',
    clones: Array.from({ length: n }, (_, i) => ({ ike: i + 1, family: `gw-a.${i}`, index: 1, epoch: i })),
    handoff: { handedOff: 3 * n, arrived: 5 * n, refused: 4, refusedBy: { missing: 1, seal: 2, decode: 0, import: 1 }, fenced: n, writes: 40 * n },
    sealing: { previousKeys: 1, openedWithPreviousKey: 4 * n },
    answers: { held: 7 * n, sent: 6 * n, discarded: 1, dropped: 0, unanswered: 2 },
    lastArrival: null,
    failover: { claimed: n, lost: 1, failed: 0, returned: 2 },
    rebalance: { moved: 2 * n, failed: 1 },
    revokedSilent: 1,
    silentSpared: 3,
    silentNotProbed: 0,
    livenessProbe: { port: 4501, pingsSent: 9, pongsSent: 8, answered: 7, unanswered: 2, unreachable: 1, refused: 0, sendErrors: 0, drops: { 'bad-mac': 4, short: 1 } },
    resources: {
      pools: [{ pool: '10.9.0.0/24', reserved: 12, leased: 3 }],
      peers: { counted: 5, atIkeSaLimit: 1, atChildSaLimit: 0 },
      refusals: { noAdditionalSas: 6, admissionContention: 2, internalAddressFailure: 1, leaseWritesRefused: 0, arrivalsWithoutChildSa: 1 },
    },
  };
}

/** A node as the metrics see it: its status, and the arrivals it reports. */
class FakeNode implements ClusterMetricsSource {
  n = 2;
  private readonly listeners: Array<(t: ArrivalTimeline, o: ArrivalOutcome) => void> = [];
  status(): ClusterNodeStatus {
    return nodeStatus(this.n);
  }
  onArrival(listener: (t: ArrivalTimeline, o: ArrivalOutcome) => void): void {
    this.listeners.push(listener);
  }
  arrive(seen: number, child: number | undefined, outcome: ArrivalOutcome): void {
    const t: ArrivalTimeline = { at: { seen, read: seen, imported: seen + 1, ...(child !== undefined && { child }) }, fencing: { heldMs: 0, holds: 0 } };
    for (const l of this.listeners) l(t, outcome);
  }
}

function gateway() {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const alice = wire.engine('10.0.0.1', [initiator]);
  wire.engine('10.0.0.2', [responder]);
  return alice;
}

describe('cluster metrics', () => {
  interopTest('every series is the node status at the scrape, and each arrival is observed once', ['prometheus'], async () => {
    const engine = gateway();
    const node = new FakeNode();
    const metrics = new GatewayMetrics((): GatewayStatus => ({ ...snapshot(engine), cluster: node.status() }), engine);
    metrics.addCluster(node);
    expect(() => metrics.addCluster(node)).toThrow(/registered already/);
    node.arrive(1000, 1042, { ok: true });
    node.arrive(2000, 2007, { ok: true });
    node.arrive(3000, undefined, { ok: false, step: 'address-update' });

    let families = parsePrometheus(await metrics.text());
    const v = (name: string, labels: Record<string, string> = {}) => sampleValue(families, name, labels);
    const st = node.status();
    expect(v('ikeclone_cluster_lease_held')).toBe(1);
    expect(v('ikeclone_cluster_owned_clones')).toBe(2);
    expect(v('ikeclone_cluster_handoffs_total', { direction: 'out' })).toBe(st.handoff.handedOff);
    expect(v('ikeclone_cluster_handoffs_total', { direction: 'in' })).toBe(st.handoff.arrived);
    for (const [reason, n] of Object.entries(st.handoff.refusedBy)) expect(v('ikeclone_cluster_records_refused_total', { reason })).toBe(n);
    expect(v('ikeclone_cluster_clones_fenced_total')).toBe(2);
    expect(v('ikeclone_cluster_records_opened_with_previous_key_total')).toBe(8);
    expect(v('ikeclone_cluster_record_writes_total')).toBe(80);
    for (const [outcome, n] of Object.entries(st.answers!)) expect(v('ikeclone_cluster_answers_total', { outcome })).toBe(n);
    for (const [outcome, n] of Object.entries(st.failover)) expect(v('ikeclone_cluster_failover_total', { outcome })).toBe(n);
    expect(v('ikeclone_cluster_rebalance_total', { outcome: 'moved' })).toBe(4);
    expect(v('ikeclone_cluster_rebalance_total', { outcome: 'failed' })).toBe(1);
    expect(v('ikeclone_cluster_silent_members_total', { action: 'revoked' })).toBe(1);
    expect(v('ikeclone_cluster_silent_members_total', { action: 'spared' })).toBe(3);
    expect(v('ikeclone_cluster_silent_members_total', { action: 'not_probed' })).toBe(0);
    expect(v('ikeclone_cluster_liveness_probes_total', { event: 'ping_sent' })).toBe(9);
    expect(v('ikeclone_cluster_liveness_probes_total', { event: 'unreachable' })).toBe(1);
    expect(v('ikeclone_cluster_liveness_probe_drops_total', { reason: 'bad-mac' })).toBe(4);
    expect(v('ikeclone_cluster_resource_refusals_total', { reason: 'no_additional_sas' })).toBe(6);
    expect(v('ikeclone_cluster_resource_refusals_total', { reason: 'arrival_without_child_sa' })).toBe(1);
    expect(v('ikeclone_cluster_pool_addresses', { pool: '10.9.0.0/24', state: 'reserved' })).toBe(12);
    expect(v('ikeclone_cluster_pool_addresses', { pool: '10.9.0.0/24', state: 'leased' })).toBe(3);
    expect(v('ikeclone_cluster_peers_counted')).toBe(5);
    expect(v('ikeclone_cluster_peers_at_limit', { limit: 'ike_sas_per_peer' })).toBe(1);
    expect(v('ikeclone_cluster_peers_at_limit', { limit: 'child_sas_per_peer' })).toBe(0);
    // Two arrivals reached their Child SA (42 and 7 ms after the event), one stopped at the peer's update.
    expect(v('ikeclone_cluster_arrival_duration_seconds_count')).toBe(2);
    expect(v('ikeclone_cluster_arrival_duration_seconds_sum')).toBeCloseTo(0.049, 6);
    expect(v('ikeclone_cluster_arrival_duration_seconds_bucket', { le: '0.01' })).toBe(1);
    expect(v('ikeclone_cluster_arrival_duration_seconds_bucket', { le: '0.05' })).toBe(2);
    expect(v('ikeclone_cluster_arrivals_failed_total', { step: 'address-update' })).toBe(1);
    expect(v('ikeclone_cluster_arrivals_failed_total', { step: 'path-test' })).toBe(0);

    // The next scrape reads the status again: the lease lost, counts moved on.
    node.n = 3;
    families = parsePrometheus(await metrics.text());
    expect(v('ikeclone_cluster_lease_held')).toBe(0);
    expect(v('ikeclone_cluster_owned_clones')).toBe(3);
    expect(v('ikeclone_cluster_handoffs_total', { direction: 'in' })).toBe(15);
    expect(v('ikeclone_cluster_arrival_duration_seconds_count')).toBe(2);
  });

  interopTest('a gateway outside a cluster has no cluster series', ['prometheus'], async () => {
    const engine = gateway();
    const families = parsePrometheus(await new GatewayMetrics(() => snapshot(engine), engine).text());
    expect(families.some((f) => f.name.startsWith('ikeclone_ike_'))).toBe(true);
    expect(families.filter((f) => f.name.startsWith('ikeclone_cluster_')).map((f) => f.name)).toEqual([]);
  });
});
