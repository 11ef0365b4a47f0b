// Prometheus series of a cluster node (docs/cluster.md): its lease, the
// clones it owns, handoffs both ways, records it refused, fencing, answers
// held for etcd, failovers, rebalancing, silent members and the liveness
// probe, cluster-wide resources, and how long each clone's arrival took.
//
// Owner: the main thread, with control/api/metrics.ts. Everything but the
// arrival histogram is read at scrape time from the node's status (the same
// counts `ikeclone status --json` shows under `cluster`); arrivals are
// observed as they end. Registered only on a node of a cluster, so a single
// gateway exposes no cluster series at all.
//
// Labels are bounded: direction, reason, outcome, step, event, action, pool
// name (from the configuration), limit. Never a node's address, a family or an
// identity: a family id grows with the sessions.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ArrivalOutcome, ArrivalTimeline } from '../cluster/handoff-timeline.js';
import type { ClusterNodeStatus } from '../status.js';
import { setTotal } from './prom-total.js';

/** Watch event naming this node owner -> the clone's Child SA up here, in seconds (the handoff's second half). */
const ARRIVAL_BUCKETS = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** What a cluster node offers the metrics (control/cluster/node.ts). */
export interface ClusterMetricsSource {
  status(): ClusterNodeStatus;
  onArrival(listener: (timeline: ArrivalTimeline, outcome: ArrivalOutcome) => void): void;
}


/** Register the cluster series on `registry`; `status` is the scrape's snapshot of the node. */
export function registerClusterMetrics(registry: Registry, source: ClusterMetricsSource, status: () => ClusterNodeStatus): void {
  const registers = [registry];
  new Gauge({
    name: 'ikeclone_cluster_lease_held',
    help: 'Whether etcd holds this node\'s lease (1) or dropped it (0: IKE on its clones is stopped, ESP goes on)',
    registers,
    collect() {
      this.set(status().lease === 'held' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'ikeclone_cluster_owned_clones',
    help: 'Clones this node owns in etcd (their IKE SAs are here)',
    registers,
    collect() {
      this.set(status().clones.length);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_handoffs_total',
    help: 'Clones handed to another node (direction="out") and imported here (direction="in")',
    labelNames: ['direction'],
    registers,
    collect() {
      this.reset();
      const h = status().handoff;
      setTotal(this, { direction: 'out' }, h.handedOff);
      setTotal(this, { direction: 'in' }, h.arrived);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_records_refused_total',
    help: 'Clone records named ours that were not installed, by reason (missing, seal: does not open, decode, import)',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(status().handoff.refusedBy)) setTotal(this, { reason }, n);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_records_opened_with_previous_key_total',
    help: 'Clone records that opened only under the secret of an earlier rotation (cluster.previous_sealing_key_files): such records are still in etcd',
    registers,
    collect() {
      this.reset();
      setTotal(this, {}, status().sealing?.openedWithPreviousKey ?? 0);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_clones_fenced_total',
    help: 'Clones dropped here because a fencing write found another owner in etcd',
    registers,
    collect() {
      this.reset();
      setTotal(this, {}, status().handoff.fenced);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_record_writes_total',
    help: 'Fencing writes of owned clones\' records (one per IKE exchange on a clone, at most)',
    registers,
    collect() {
      this.reset();
      setTotal(this, {}, status().handoff.writes);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_answers_total',
    help: 'Answers on owned clones held for their etcd write, by outcome (held, sent, discarded, dropped, unanswered)',
    labelNames: ['outcome'],
    registers,
    collect() {
      this.reset();
      const a = status().answers;
      if (!a) return;
      for (const [outcome, n] of Object.entries(a)) setTotal(this, { outcome }, n);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_failover_total',
    help: 'Dead nodes\' clones: claimed and moved here, claims lost to another node, takeovers failed, clones sent back',
    labelNames: ['outcome'],
    registers,
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(status().failover)) setTotal(this, { outcome }, n);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_rebalance_total',
    help: 'Clones this node handed on to even a family out (moved), and handoffs that failed',
    labelNames: ['outcome'],
    registers,
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(status().rebalance)) setTotal(this, { outcome }, n);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_silent_members_total',
    help: 'Members silent for the lease TTL while etcd served us: leases revoked, kept (they answered the liveness probe), kept unprobed',
    labelNames: ['action'],
    registers,
    collect() {
      this.reset();
      const s = status();
      setTotal(this, { action: 'revoked' }, s.revokedSilent ?? 0);
      if (s.silentSpared !== undefined) setTotal(this, { action: 'spared' }, s.silentSpared);
      if (s.silentNotProbed !== undefined) setTotal(this, { action: 'not_probed' }, s.silentNotProbed);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_liveness_probes_total',
    help: 'Liveness probe traffic: pings sent, pongs sent, probes answered, unanswered, ended by an ICMP unreachable, pings refused by the rate limit, send errors',
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      const p = status().livenessProbe;
      if (!p) return;
      const events: Record<string, number> = {
        ping_sent: p.pingsSent, pong_sent: p.pongsSent, answered: p.answered, unanswered: p.unanswered,
        unreachable: p.unreachable, refused: p.refused, send_error: p.sendErrors,
      };
      for (const [event, n] of Object.entries(events)) setTotal(this, { event }, n);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_liveness_probe_drops_total',
    help: 'Liveness probe datagrams dropped, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(status().livenessProbe?.drops ?? {})) setTotal(this, { reason }, n);
    },
  });
  new Counter({
    name: 'ikeclone_cluster_resource_refusals_total',
    help: 'Cluster-wide resources refused: NO_ADDITIONAL_SAS (per-peer limit over the cluster), of those after losing every exact admission, INTERNAL_ADDRESS_FAILURE (no virtual IP), pool lease writes etcd did not take, clones arrived without their Child SA',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      const r = status().resources?.refusals;
      if (!r) return;
      setTotal(this, { reason: 'no_additional_sas' }, r.noAdditionalSas);
      setTotal(this, { reason: 'admission_contention' }, r.admissionContention);
      setTotal(this, { reason: 'internal_address_failure' }, r.internalAddressFailure);
      setTotal(this, { reason: 'lease_writes_refused' }, r.leaseWritesRefused);
      setTotal(this, { reason: 'arrival_without_child_sa' }, r.arrivalsWithoutChildSa ?? 0);
    },
  });
  new Gauge({
    name: 'ikeclone_cluster_pool_addresses',
    help: 'Virtual IP addresses of each cluster-wide pool this node holds in reserve (state="reserved") and has leased to peers (state="leased")',
    labelNames: ['pool', 'state'],
    registers,
    collect() {
      this.reset();
      for (const p of status().resources?.pools ?? []) {
        this.set({ pool: p.pool, state: 'reserved' }, p.reserved);
        this.set({ pool: p.pool, state: 'leased' }, p.leased);
      }
    },
  });
  new Gauge({
    name: 'ikeclone_cluster_peers_counted',
    help: 'Peers some node counts an SA of, as this node follows etcd (RFC 7791 §8 session accounting over the cluster)',
    registers,
    collect() {
      this.set(status().resources?.peers.counted ?? 0);
    },
  });
  new Gauge({
    name: 'ikeclone_cluster_peers_at_limit',
    help: 'Peers at the per-peer limit over the cluster, of IKE SAs (limit="ike_sas_per_peer") and of Child SAs (limit="child_sas_per_peer")',
    labelNames: ['limit'],
    registers,
    collect() {
      this.reset();
      const p = status().resources?.peers;
      if (!p) return;
      this.set({ limit: 'ike_sas_per_peer' }, p.atIkeSaLimit);
      this.set({ limit: 'child_sas_per_peer' }, p.atChildSaLimit);
    },
  });

  const arrivals = new Histogram({
    name: 'ikeclone_cluster_arrival_duration_seconds',
    help: 'Clone arrivals here: from the etcd event naming this node owner to the clone\'s Child SA up (the path test, the peer\'s UPDATE_SA_ADDRESSES and CREATE_CHILD_SA included)',
    buckets: ARRIVAL_BUCKETS,
    registers,
  });
  const failed = new Counter({
    name: 'ikeclone_cluster_arrivals_failed_total',
    help: 'Clone arrivals here that stopped, by the step that failed (path-test, address-update, child)',
    labelNames: ['step'],
    registers,
  });
  for (const step of ['path-test', 'address-update', 'child']) failed.inc({ step }, 0);
  source.onArrival((timeline, outcome) => {
    if (!outcome.ok) {
      failed.inc({ step: outcome.step });
      return;
    }
    const { seen, child } = timeline.at;
    if (child !== undefined) arrivals.observe(Math.max(0, child - seen) / 1000);
  });
}
