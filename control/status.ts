// A JSON-safe snapshot of the gateway's SAs for `ikeclone status` and the
// library API. Field names are stable (documented in README): add fields,
// never rename them. No key material, ever.
import { formatProposal } from './config/proposal.js';
import { formatIdentity } from './ike/identity.js';
import type { IkeEngine, EngineStats } from './ike/engine.js';
import { type ChildSa, type IkeSa, spi64Hex, spiHex } from './ike/ike-sa.js';
import { suiteTransforms } from './ike/proposals.js';
import { formatSelector } from './ike/traffic-selectors.js';
import type { UdpTransport, UdpTransportStats } from './net/udp-transport.js';
import type { CloneOrchestrator } from './ike/clone-family.js';
import type { ChildSpreader } from './ike/child-spread.js';
import type { DataPlaneStatus } from '../dataplane/dataplane.js';
import { endpointString } from './ike/transport.js';

export interface ChildSaStatus {
  id: number;
  name: string;
  state: string;
  spiIn: string;
  spiOut: string;
  proposal: string;
  localTs: string[];
  remoteTs: string[];
  udpEncap: boolean;
  ageSeconds: number;
  /** The data-plane worker that owns this Child SA (its sequence counter and replay window); null if none. */
  worker?: number | null;
  /**
   * A per-worker Child SA sharing its selectors with others (architecture §5.1):
   * fallback (RFC 9611 §3), per-resource (RFC 9611, with the worker it serves and
   * our SA_RESOURCE_INFO identifier) or parallel (RFC 7296 §2.8); null otherwise.
   */
  placement?: { kind: string; resource: number | null; resourceId: string | null } | null;
  /** ESP traffic from the data plane's per-SA counters (polled every second); absent before the first poll. */
  packetsIn?: number;
  packetsOut?: number;
  bytesIn?: number;
  bytesOut?: number;
}

export interface IkeSaStatus {
  id: number;
  /** The session (clone family) this IKE SA belongs to: the id of the IKE SA that authenticated (RFC 7791 §8). */
  sessionId: number;
  /** 0 for the original, k for the k-th clone; per-worker placement follows it. */
  familyIndex: number;
  name: string;
  state: string;
  role: 'initiator' | 'responder';
  spiI: string;
  spiR: string;
  local: string;
  remote: string;
  localId: string | null;
  remoteId: string | null;
  proposal: string | null;
  natLocal: boolean;
  natRemote: boolean;
  mobike: boolean;
  clone: boolean;
  virtualIp: string | null;
  peerVirtualIp: string | null;
  /** Every virtual IP the peer assigned us (IPv4 and IPv6, RFC 7296 §2.19). */
  virtualIps: string[];
  /** Every virtual IP we assigned the peer. */
  peerVirtualIps: string[];
  /** DNS servers the peer's CP reply named (RFC 7296 §3.15.1). */
  dns: string[];
  ageSeconds: number;
  children: ChildSaStatus[];
}

/** A clone family (RFC 7791): the IKE SAs of one authenticated session. */
export interface FamilyStatus {
  sessionId: number;
  peer: string | null;
  /** IKE SA ids, original first. */
  members: number[];
  /** Size the family is meant to have (1 when it is not cloned). */
  target: number;
  /** single | growing | complete | fallback (peer cannot clone) | blocked (NO_ADDITIONAL_SAS) | failed */
  state: string;
  reason: string | null;
  /**
   * How every worker gets SAs of this session (initiator): clones, per-resource
   * (RFC 9611), parallel (RFC 7296 §2.8) or single, why (what the peer
   * announced), Child SAs per worker wanted per child, growing | complete |
   * limited and what limited it. Null for sessions the peer started.
   */
  perWorker?: { mode: string; reason: string; perChild: number; state: string; limit: string | null } | null;
}

export interface GatewayStatus {
  ikeSas: IkeSaStatus[];
  families: FamilyStatus[];
  halfOpen: number;
  ike: EngineStats;
  udp: UdpTransportStats | null;
  /** ESP: per-worker traffic and drops, I/O counters (dataplane/dataplane.ts); null when the data plane is not running. */
  dataplane?: DataPlaneStatus | null;
  /** The running configuration: when it was loaded and the SHA-256 of its file (hex, 16 characters). */
  config?: { loadedAt: string; hash: string | null; file: string | null };
  /** This node of a cluster (architecture §8); absent on a single gateway. */
  cluster?: ClusterNodeStatus;
}

/** A cluster node as it sees itself (control/cluster/node.ts): its lease, its clones, failures handled. */
export interface ClusterNodeStatus {
  cluster: string;
  node: string;
  spiPrefix: number;
  /** 'lost': etcd dropped our lease (cut off longer than its TTL); IKE on our clones is stopped, ESP flows on. */
  lease: 'held' | 'lost';
  leaseLostReason: string | null;
  clones: Array<{ ike: number; family: string; index: number; epoch: number }>;
  /**
   * refused: records named ours that were not installed, refusedBy the same by reason (control/cluster/handoff.ts);
   * arrivalSpiMisses (when any): arrivals whose Child SA could not take the SPI the handoff drew (control/ike/arrival-spi.ts).
   */
  handoff: {
    handedOff: number; arrived: number; refused: number; refusedBy: Record<'missing' | 'seal' | 'decode' | 'import', number>;
    fenced: number; writes: number; arrivalSpiMisses?: number;
  };
  /**
   * Secrets of earlier rotations this node accepts, and the records that opened only under one of them
   * (control/cluster/seal.ts): while that count grows, such records are still in etcd.
   */
  sealing?: { previousKeys: number; openedWithPreviousKey: number };
  /** Answers on our clones that waited for etcd to hold the peer's moved message ID (control/cluster/answer-write-ahead.ts). */
  answers?: { held: number; sent: number; discarded: number; dropped: number; unanswered: number };
  /** When each step of the last clone arrival here ended, wall-clock ms (control/cluster/handoff-timeline.ts). */
  lastArrival: { at: Record<string, number | undefined>; fencing: { heldMs: number; holds: number } } | null;
  failover: { claimed: number; lost: number; failed: number; returned: number };
  rebalance: { moved: number; failed: number };
  /** Leases of members silent for the lease TTL that this node revoked (control/cluster/silent-member.ts). */
  revokedSilent?: number;
  /** Silent members whose lease was kept: they answered a liveness probe (control/cluster/liveness-probe.ts), or announce no probe port. */
  silentSpared?: number;
  silentNotProbed?: number;
  /** The liveness probe's port, pings and pongs, refusals (rate limit) and drops by reason. */
  livenessProbe?: LivenessProbeCounts & { port: number | null };
  /** The liveness probe could not bind there (port taken, address not ours): this node neither suspects silent members nor is suspected. */
  livenessProbeUnbound?: { address: string; port: number; reason: string };
  /** Cluster-wide resources as this node sees them (control/cluster/resource-status.ts). */
  resources?: ClusterNodeResources;
}

/** The liveness probe's counts (control/cluster/liveness-probe.ts). */
export interface LivenessProbeCounts {
  pingsSent: number;
  pongsSent: number;
  /** Probes that got a valid pong, and that did not. */
  answered: number;
  unanswered: number;
  /** Of the unanswered, those an ICMP port unreachable ended at once (nothing listening there). */
  unreachable: number;
  /** Pings not answered because of the rate limit. */
  refused: number;
  /** Sends the socket reported failed (unreachable: the probe then simply gets no answer). */
  sendErrors: number;
  /** Datagrams dropped, by reason. */
  drops: Record<string, number>;
}

/** A node's refusals of cluster-wide resources, by reason. */
export interface NodeResourceRefusals {
  /** NO_ADDITIONAL_SAS answered (RFC 7791 §8: the per-peer limit over the cluster). */
  noAdditionalSas: number;
  /** Of those, admissions refused after every exact admission attempt lost to another node's (control/cluster/peer-admission.ts). */
  admissionContention: number;
  /** INTERNAL_ADDRESS_FAILURE: no address of the family in reserve or in etcd (RFC 7296 §3.15.4). */
  internalAddressFailure: number;
  /** Lease writes etcd did not take (this node's reserve key was gone, or etcd was unreachable). */
  leaseWritesRefused: number;
  /** Clones that arrived here without their Child SA: the peer was at childSasPerPeer over the cluster (absent: none). */
  arrivalsWithoutChildSa?: number;
}

/** A cluster node's pools, the peers it counts and its refusals. */
export interface ClusterNodeResources {
  /** Per pool: addresses this node holds in reserve, and those it leased. */
  pools: Array<{ pool: string; reserved: number; leased: number }>;
  /** Peers some node counts an SA of (as this node follows etcd), and those at each per-peer limit over the cluster. */
  peers: { counted: number; atIkeSaLimit: number; atChildSaLimit: number };
  refusals: NodeResourceRefusals;
}

export function childStatus(c: ChildSa, now: number): ChildSaStatus {
  return {
    id: c.id,
    name: c.name,
    state: c.state,
    spiIn: spiHex(c.spiIn),
    spiOut: spiHex(c.spiOut),
    proposal: formatProposal(suiteTransforms(c.suite)),
    localTs: c.localTs.map(formatSelector),
    remoteTs: c.remoteTs.map(formatSelector),
    udpEncap: c.udpEncap,
    ageSeconds: Math.round((now - c.createdAt) / 1000),
    placement: c.placement ? { kind: c.placement.kind, resource: c.placement.worker ?? null, resourceId: c.placement.resourceId ?? null } : null,
  };
}

export function ikeSaStatus(sa: IkeSa, now: number): IkeSaStatus {
  return {
    id: sa.id,
    sessionId: sa.sessionId,
    familyIndex: sa.familyIndex,
    name: sa.name,
    state: sa.state,
    role: sa.role,
    spiI: spi64Hex(sa.spiI),
    spiR: spi64Hex(sa.spiR),
    local: endpointString(sa.local),
    remote: endpointString(sa.remote),
    localId: sa.localId ? formatIdentity(sa.localId) : null,
    remoteId: sa.peerId ? formatIdentity(sa.peerId) : null,
    proposal: sa.suite ? formatProposal(suiteTransforms(sa.suite)) : null,
    natLocal: sa.natLocal,
    natRemote: sa.natRemote,
    mobike: sa.peerMobike,
    clone: sa.peerClone,
    virtualIp: sa.virtualIp ?? null,
    peerVirtualIp: sa.peerVirtualIp ?? null,
    virtualIps: [...sa.virtualIps],
    peerVirtualIps: [...sa.peerVirtualIps],
    dns: [...sa.dns],
    ageSeconds: Math.round((now - sa.createdAt) / 1000),
    children: sa.children.map((c) => childStatus(c, now)),
  };
}

export function familiesStatus(engine: IkeEngine, cloner?: CloneOrchestrator, spreader?: ChildSpreader): FamilyStatus[] {
  const bySession = new Map<number, IkeSa[]>();
  for (const sa of engine.ikeSas()) {
    if (sa.establishedAt === undefined) continue;
    const list = bySession.get(sa.sessionId) ?? [];
    list.push(sa);
    bySession.set(sa.sessionId, list);
  }
  return [...bySession.entries()].map(([sessionId, members]) => {
    members.sort((a, b) => a.familyIndex - b.familyIndex || a.id - b.id);
    const family = cloner?.family(sessionId);
    const spread = spreader?.session(sessionId);
    return {
      sessionId,
      peer: members[0]!.peerKey ?? null,
      members: members.map((m) => m.id),
      target: family?.target ?? 1,
      state: family?.state ?? 'single',
      reason: family?.reason ?? null,
      perWorker: spread ? { mode: spread.mode, reason: spread.reason, perChild: spread.perChild, state: spread.state, limit: spread.limit ?? null } : null,
    };
  });
}

export function snapshot(engine: IkeEngine, transport?: UdpTransport, cloner?: CloneOrchestrator, spreader?: ChildSpreader): GatewayStatus {
  const now = engine.clock.now();
  return {
    ikeSas: engine.ikeSas().map((sa) => ikeSaStatus(sa, now)),
    families: familiesStatus(engine, cloner, spreader),
    halfOpen: engine.halfOpenCount(),
    ike: structuredClone(engine.stats),
    udp: transport ? { ...transport.stats } : null,
  };
}
