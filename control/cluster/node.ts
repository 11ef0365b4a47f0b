// A gateway as a cluster node (architecture §8): from the `cluster:` section,
// the cluster key (seal.ts), the connections' hash, and membership on etcd
// (membership.ts); then, attached to the running gateway, its load in the
// member key and the loss of its lease logged. Without `cluster:` none of
// this runs: a single gateway needs no etcd.
//
// Owner: the main thread.
import type { GatewayConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { IkeEngine } from '../ike/engine.js';
import { acceptedConnectionsHashes } from './config-hash.js';
import { ClusterJoinError, ClusterMembership } from './membership.js';
import { loadClusterKeyRing, type ClusterKey } from './seal.js';
import { CloneHandoff } from './handoff.js';
import { NodePlacement } from './placement.js';
import { CloneFailover } from './failover.js';
import { CloneRebalance, moveClone } from './rebalance.js';
import type { IkeSa } from '../ike/ike-sa.js';
import type { ClusterNodeStatus } from '../status.js';
import type { PeerResources } from '../ike/peer-resources.js';
import { ClusterVirtualIpLeases } from './pool-store.js';
import { ClusterPeerAccounting } from './peer-accounting.js';
import { PeerAdmission } from './peer-admission.js';
import { ClusterRedirectPolicy } from './redirect-placement.js';
import type { MemberInfo } from './membership.js';
import { AnswerFence, LeaseClock } from './answer-fence.js';
import { accountingStatus, publishRefusals } from './resource-status.js';
import type { ClusterNodeResources, NodeResourceRefusals } from '../status.js';
import { prepareAnswers } from './answer-prepare.js';
import { AnswerWriteAhead } from './answer-write-ahead.js';
import type { ArrivalOutcome, ArrivalTimeline } from './handoff-timeline.js';
import { SilentMembers } from './silent-member.js';
import { DEFAULT_PROBE_PORT, LivenessProbe } from './liveness-probe.js';

/** At most one load write per this many ms (each IKE SA up or down asks for one). */
export const LOAD_UPDATE_MS = 1000;
/** How often a node's refusals are published to etcd when they changed (resource-status.ts). */
export const REFUSALS_PUBLISH_MS = 1000;

/** A node's load: the established IKE SAs of its engine (none before attach). */
function establishedIkeSas(of: { engine?: IkeEngine }): number {
  return of.engine?.ikeSas().filter((s) => s.state === 'established').length ?? 0;
}

export class ClusterNode {
  private loadTimer: NodeJS.Timeout | undefined;
  private refusalsTimer: NodeJS.Timeout | undefined;
  /** Clone handoff and fencing (set by attach). */
  handoff: CloneHandoff | undefined;
  placement: NodePlacement | undefined;
  /** Takeover of dead nodes' clones, return after a failed path test (set by attach). */
  failover: CloneFailover | undefined;
  /** Moves clones to nodes that hold none of their family (set by attach). */
  rebalance: CloneRebalance | undefined;
  /** Set when etcd says our lease is gone: IKE on clones stops (fencing). */
  leaseLost: string | undefined;
  /** Virtual IP pools shared by the cluster (started by attach). */
  readonly pools: ClusterVirtualIpLeases;
  /** Per-peer SA counts over the cluster (started by attach). */
  readonly accounting: ClusterPeerAccounting;
  /** Clones admitted exactly against ikeSasPerPeer over the cluster (an etcd transaction each). */
  readonly admission: PeerAdmission;
  /** New Child SAs admitted exactly against childSasPerPeer over the cluster (peer-requested, and ours after an arrival). */
  readonly childAdmission: PeerAdmission;
  /** Sends new clients to the least-loaded member (RFC 5685) when `cluster.redirect` is set. */
  readonly redirectPolicy: ClusterRedirectPolicy | undefined;
  /** The live members as last read (redirect placement reads them synchronously). */
  private members: MemberInfo[] = [];
  /** Answers on owned clones only while the lease certainly stands (set by attach). */
  answers: AnswerFence | undefined;
  /** Answers on owned clones leave once etcd holds the peer's moved message ID (set by attach). */
  writeAhead: AnswerWriteAhead | undefined;
  /** Our heartbeat, and the leases of members silent for the lease TTL revoked (set by attach unless suspect_silent: no). */
  silentMembers: SilentMembers | undefined;
  /** Answers other members' liveness probes and probes silent ones (set by attach with silentMembers). */
  livenessProbe: LivenessProbe | undefined;
  /** Why the liveness probe could not bind (then neither suspecting nor suspected), shown in status. */
  private probeUnbound: { address: string; port: number; reason: string } | undefined;
  private readonly leaseClock: LeaseClock;
  /** Told of every clone arrival that ends here, with its timeline (the gateway's metrics). */
  private readonly arrivalListeners: Array<(timeline: ArrivalTimeline, outcome: ArrivalOutcome) => void> = [];

  private constructor(
    readonly membership: ClusterMembership,
    readonly key: ClusterKey,
    private readonly log: Logger,
    /** The engine whose established IKE SAs are this node's load (set by attach). */
    private readonly loadOf: { engine?: IkeEngine },
    /** When joining began: the lease, asked for after, stands at least its TTL from then. */
    joinStartedAt: number,
  ) {
    // etcd keeps the lease for whole seconds (membership.ts rounds): the shorter of the two counts.
    const ttl = membership.config.leaseTtlMs;
    this.leaseClock = new LeaseClock(membership.lease, Math.min(ttl, Math.max(1, Math.round(ttl / 1000)) * 1000), joinStartedAt);
    // The lease is read at each write: a node that joins again (membership.ts) has a new one.
    const shared = { client: membership.client, cluster: membership.config.name, node: membership.node, get leaseId() { return membership.leaseId; }, log };
    this.accounting = new ClusterPeerAccounting(shared);
    this.admission = new PeerAdmission({ ...shared, get leaseId() { return membership.leaseId; }, accounting: this.accounting, limit: () => loadOf.engine?.limits.ikeSasPerPeer });
    this.childAdmission = new PeerAdmission({ ...shared, get leaseId() { return membership.leaseId; }, accounting: this.accounting, kind: 'child', limit: () => loadOf.engine?.limits.childSasPerPeer });
    this.pools = new ClusterVirtualIpLeases({
      ...shared,
      get leaseId() { return membership.leaseId; },
      ...(membership.config.poolReserve !== undefined && { reserve: membership.config.poolReserve }),
      onLeased: (peer) => this.accounting.leased(peer),
    });
    const settings = membership.config.redirect;
    this.redirectPolicy = settings && new ClusterRedirectPolicy({
      node: membership.node,
      settings,
      ownLoad: () => establishedIkeSas(loadOf),
      members: () => this.members,
      log,
    });
  }

  /** For IkeEngineOptions.peerResources: virtual IPs and per-peer limits counted over the cluster (RFC 7296 §2.19, RFC 7791 §8). */
  get peerResources(): PeerResources {
    return {
      virtualIps: this.pools,
      ikeSasElsewhere: (peer) => this.accounting.ikeSasElsewhere(peer),
      childSasElsewhere: (peer) => this.accounting.childSasElsewhere(peer),
      // Admissions against the peer's limits over the cluster (RFC 7791 §8), and IKE_AUTH's address claims.
      prepare: prepareAnswers({ leases: this.pools, ikeAdmission: this.admission, childAdmission: this.childAdmission }),
      admittedIkeSaCount: (sa) => this.admission.admittedIkeSaCount(sa),
      admittedChildSaCount: (sa) => this.childAdmission.admittedCount(sa),
    };
  }

  /** This node's refusals of cluster-wide resources, by reason (its engine's NO_ADDITIONAL_SAS answers included). */
  refusals(): NodeResourceRefusals {
    return {
      noAdditionalSas: this.loadOf.engine?.stats.refusals.NO_ADDITIONAL_SAS ?? 0,
      admissionContention: this.admission.stats.contention + this.childAdmission.stats.contention,
      internalAddressFailure: this.pools.stats.refused,
      leaseWritesRefused: this.pools.stats.lost,
      // Clones that arrived here without their Child SA (the peer at childSasPerPeer): absent while none did.
      ...(this.handoff?.stats.childRefused && { arrivalsWithoutChildSa: this.handoff.stats.childRefused }),
    };
  }

  /** Pools, peers and refusals as this node sees them (its part of `ikeclone status`). */
  resources(): ClusterNodeResources {
    const limits = this.loadOf.engine?.limits;
    const a = accountingStatus(this.accounting.allPeerCounts(), limits && { ikeSasPerPeer: limits.ikeSasPerPeer, childSasPerPeer: limits.childSasPerPeer });
    return {
      pools: this.pools.poolCounts(),
      peers: { counted: a.peers, atIkeSaLimit: a.atLimit.ikeSasPerPeer?.peers ?? 0, atChildSaLimit: a.atLimit.childSasPerPeer?.peers ?? 0 },
      refusals: this.refusals(),
    };
  }

  /** Publish the refusals to etcd when they changed since the last publication (every REFUSALS_PUBLISH_MS). */
  private publishRefusalsNow(last: { text: string; failing: boolean }): void {
    const refusals = this.refusals();
    const text = JSON.stringify(refusals);
    if (text === last.text) return;
    const m = this.membership;
    publishRefusals(m.client, m.config.name, m.node, m.leaseId, refusals).then(
      () => Object.assign(last, { text, failing: false }),
      (err: Error) => {
        // Tried again every period: logged once until a write succeeds (etcd cut off for a while).
        if (!last.failing) this.log.warn({ reason: err.message }, 'cannot write this node\'s refusals to etcd');
        last.failing = true;
      },
    );
  }

  get spiPrefix(): number {
    return this.membership.spiPrefix;
  }

  /**
   * Join the cluster `config.cluster` names; undefined without a `cluster:`
   * section, or when etcd is unreachable and the section says to run
   * standalone. Throws ClusterJoinError (exit 2: another connections hash, a
   * taken name; exit 1: etcd unreachable) and ConfigError (the key file).
   */
  static async join(config: GatewayConfig, log: Logger): Promise<ClusterNode | undefined> {
    const cluster = config.cluster;
    if (!cluster) return undefined;
    // Earlier rotations' secrets open what was sealed under them; the current one seals (docs/cluster.md section 2).
    const key = loadClusterKeyRing(cluster);
    const [hash, ...previousHashes] = acceptedConnectionsHashes(key, config.connections);
    const loadOf: { engine?: IkeEngine } = {};
    const load = () => establishedIkeSas(loadOf);
    let membership: ClusterMembership;
    const joinStartedAt = Date.now();
    try {
      membership = await ClusterMembership.join({ config: cluster, connectionsHash: hash!, previousConnectionsHashes: previousHashes, log, load });
    } catch (err) {
      if (err instanceof ClusterJoinError && err.exitCode === 1 && cluster.onEtcdUnreachable === 'standalone') {
        log.warn({ cluster: cluster.name, reason: err.message }, 'etcd unreachable: running as a single gateway (cluster.on_etcd_unreachable: standalone)');
        return undefined;
      }
      throw err;
    }
    return new ClusterNode(membership, key, log, loadOf, joinStartedAt);
  }

  /**
   * Hand clone `sa` to node `to` (`ikeclone move --node`): adopted first if
   * this node has not registered it yet (a clone made by hand); its Child
   * SAs are deleted before it leaves and `to` creates a new one (moveClone).
   */
  async move(sa: IkeSa, to: string): Promise<number> {
    const handoff = this.handoff;
    const engine = this.loadOf.engine;
    if (!handoff || !engine) throw new Error('the cluster node is not attached to a gateway');
    if (to === this.membership.node) throw new Error(`IKE SA ${sa.id} is already on ${to}`);
    const members = await this.membership.members();
    if (!members.some((m) => m.node === to)) throw new Error(`${to} is not a live member of cluster ${this.membership.config.name}`);
    if (!handoff.ownedClones().some((c) => c.sa === sa)) {
      if (sa.familyIndex === 0) throw new Error(`IKE SA ${sa.id} is a family's original: only clones move between nodes (RFC 7791 §5.2)`);
      await handoff.adopt(sa, `${this.membership.node}.${sa.sessionId}`, sa.familyIndex);
    }
    return moveClone(engine, handoff, sa, to);
  }

  /** Call `listener` whenever a clone's arrival here ends (its steps 4-7 done, or stopped at one). */
  onArrival(listener: (timeline: ArrivalTimeline, outcome: ArrivalOutcome) => void): void {
    this.arrivalListeners.push(listener);
  }

  /** This node's part of the gateway's status (architecture §8). */
  status(): ClusterNodeStatus {
    const c = this.membership.config;
    const h = this.handoff?.stats;
    const refused = h ? Object.values(h.refused).reduce((a, b) => a + b, 0) : 0;
    return {
      cluster: c.name,
      node: c.node,
      spiPrefix: this.spiPrefix,
      lease: this.leaseLost === undefined ? 'held' : 'lost',
      leaseLostReason: this.leaseLost ?? null,
      clones: (this.handoff?.ownedClones() ?? []).map((o) => ({ ike: o.sa.id, family: o.family, index: o.index, epoch: o.epoch })),
      handoff: { handedOff: h?.handedOff ?? 0, arrived: h?.arrived ?? 0, refused, refusedBy: { ...(h?.refused ?? { missing: 0, seal: 0, decode: 0, import: 0 }) }, fenced: h?.fenced ?? 0, writes: h?.writes ?? 0, ...(h?.arrivalSpiMisses ? { arrivalSpiMisses: h.arrivalSpiMisses } : {}) },
      sealing: { previousKeys: this.key.previousKeys, openedWithPreviousKey: this.key.openedWithPrevious },
      answers: { ...(this.writeAhead?.stats ?? { held: 0, sent: 0, discarded: 0, dropped: 0, unanswered: 0 }) },
      lastArrival: this.handoff?.lastArrival ?? null,
      failover: { ...(this.failover?.stats ?? { claimed: 0, lost: 0, failed: 0, returned: 0 }) },
      rebalance: { ...(this.rebalance?.stats ?? { moved: 0, failed: 0 }) },
      revokedSilent: this.silentMembers?.stats.revoked ?? 0,
      ...(this.probeUnbound && { livenessProbeUnbound: { ...this.probeUnbound } }),
      ...(this.silentMembers && this.livenessProbe && {
        silentSpared: this.silentMembers.stats.spared,
        silentNotProbed: this.silentMembers.stats.notProbed,
        livenessProbe: { port: this.livenessProbe.announced?.port ?? null, ...this.livenessProbe.stats, drops: { ...this.livenessProbe.stats.drops } },
      }),
      resources: this.resources(),
    };
  }

  /** For IkeEngineOptions.mayAnswer: no answer on an owned clone once the lease may have lapsed. */
  mayAnswer(sa: IkeSa): boolean {
    return (this.answers?.mayAnswer(sa) ?? true) && (this.writeAhead?.mayAnswer(sa) ?? true);
  }

  /** For IkeEngineOptions.holdResponse: an answer on an owned clone waits for the record with the peer's moved message ID. */
  holdResponse(sa: IkeSa, send: () => void): boolean {
    return this.writeAhead?.holdResponse(sa, send) ?? false;
  }

  /** For IkeEngineOptions.holdRequest: requests on owned clones wait for their fencing write. */
  holdRequest(sa: IkeSa): boolean {
    return this.handoff?.holdRequest(sa) ?? false;
  }

  /** Follow the gateway's engine: load updates, clone handoff and placement, lease loss. */
  async attach(engine: IkeEngine): Promise<void> {
    this.loadOf.engine = engine;
    const m = this.membership;
    const c = m.config;
    // Before the gateway answers anyone: the peers' counts and addresses known, each pool's reserve claimed.
    await this.accounting.start();
    this.accounting.follow(engine);
    await this.pools.start(engine.policies.flatMap((p) => p.pools));
    this.members = await m.members();
    // From then on as the membership's watch has them: a load update costs no read.
    m.on('members-changed', () => (this.members = m.live()));
    // The members as last read name the SPI prefix of the node a clone is handed to (arrival-draw.ts).
    const spiPrefixes = { spiPrefix: this.spiPrefix, spiPrefixOf: (n: string) => this.members.find((x) => x.node === n)?.spiPrefix };
    this.handoff = await new CloneHandoff({ engine, client: m.client, key: this.key, cluster: c.name, node: c.node, address: c.address, log: this.log, ...spiPrefixes, ...(c.admitArrivalChild ? { admitChild: (sa: IkeSa) => this.childAdmission.admitOwn(sa) } : {}) }).start();
    const handoff = this.handoff;
    handoff.on('arrived', (_sa, result, _origin, timeline) => {
      const outcome: ArrivalOutcome = result.ok ? { ok: true } : { ok: false, step: result.step };
      for (const listener of this.arrivalListeners) listener(timeline, outcome);
    });
    this.answers = new AnswerFence({ owns: (sa) => handoff.owns(sa), lease: this.leaseClock, log: this.log });
    this.writeAhead = new AnswerWriteAhead({ records: handoff, lease: this.leaseClock, log: this.log });
    // Placement reads the members afresh for each new family (one read): it must not depend on the watch.
    this.placement = new NodePlacement({ engine, handoff: this.handoff, node: c.node, members: () => m.members(), log: this.log }).start();
    const shared = { engine, client: m.client, cluster: c.name, node: c.node, handoff: this.handoff, log: this.log };
    this.failover = new CloneFailover({ ...shared, ...spiPrefixes, key: this.key }).start();
    this.rebalance = new CloneRebalance(shared).start();
    // A dead node's lease revoked once it is silent while etcd serves us and does not answer on its cluster
    // address: failover need not wait for etcd's lessor.
    if (c.suspectSilent !== false) await this.startSilentMembers();
    m.on('members-changed', (names) => {
      this.failover?.membersChanged(names);
      this.rebalance?.membersChanged(names);
    });
    const schedule = () => {
      if (this.loadTimer) return;
      this.loadTimer = setTimeout(() => {
        this.loadTimer = undefined;
        this.membership.updateLoad().catch((err: Error) => this.log.warn({ reason: err.message }, 'cannot write this node\'s load to etcd'));
      }, LOAD_UPDATE_MS);
      this.loadTimer.unref();
    };
    engine.on('ike-up', schedule);
    engine.on('ike-down', schedule);
    const published = { text: '', failing: false };
    this.publishRefusalsNow(published);
    this.refusalsTimer = setInterval(() => this.publishRefusalsNow(published), REFUSALS_PUBLISH_MS);
    this.refusalsTimer.unref();
    // Published under the lease: a new lease needs them written again.
    this.membership.on('rejoined', () => (published.text = ''));
    this.membership.on('lease-lost', (reason) => {
      this.leaseLost = reason;
      this.handoff?.suspend(reason);
      // Cut off: the others take our clones over; we neither claim nor move any.
      this.failover?.pause();
      this.rebalance?.pause();
      // The reserved addresses went with the lease: none is ours to hand out now.
      this.pools.leaseLost();
    });
    this.membership.on('rejoined', () => {
      this.leaseLost = undefined;
      // Our counts went with the old lease: written again under the new one; so are the pools' reserves.
      this.accounting.rewriteAll();
      this.pools.rejoined();
      // Answers on our clones follow the new lease's keep-alives (answer-fence.ts).
      this.leaseClock.follow(this.membership.lease, this.membership.leaseAskedAt ?? Date.now());
      this.handoff?.resume();
      this.failover?.resume();
      this.rebalance?.resume();
    });
  }

  /**
   * The liveness probe bound on the cluster address, then the heartbeat. A
   * probe that cannot bind (the port taken, the address not ours) leaves this
   * node as with suspect_silent: no, said in the log: no heartbeat, so never
   * suspected, and suspecting no one (it could not hear a live member's answer).
   */
  private async startSilentMembers(): Promise<void> {
    const m = this.membership;
    const c = m.config;
    const probe = new LivenessProbe({ key: this.key, node: c.node, address: c.address, port: c.probePort ?? DEFAULT_PROBE_PORT, leaseId: () => m.leaseId, log: this.log });
    try {
      await probe.bind();
    } catch (err) {
      this.probeUnbound = { address: c.address, port: c.probePort ?? DEFAULT_PROBE_PORT, reason: (err as Error).message };
      this.log.warn(this.probeUnbound, 'cannot bind the liveness probe: this node neither suspects silent members nor is suspected (as suspect_silent: no)');
      return;
    }
    this.livenessProbe = probe;
    this.silentMembers = await new SilentMembers({
      client: m.client,
      cluster: c.name,
      node: c.node,
      leaseTtlMs: c.leaseTtlMs,
      leaseId: () => m.leaseId,
      leaseHeld: () => this.leaseLost === undefined,
      log: this.log,
      probe,
    }).start();
  }

  async leave(): Promise<void> {
    if (this.loadTimer) clearTimeout(this.loadTimer);
    this.loadTimer = undefined;
    if (this.refusalsTimer) clearInterval(this.refusalsTimer);
    this.failover?.stop();
    this.rebalance?.stop();
    await this.silentMembers?.stop();
    this.livenessProbe?.close();
    this.writeAhead?.stop();
    await this.handoff?.stop();
    await this.pools.stop();
    await this.accounting.settled();
    await this.accounting.stop();
    await this.membership.leave();
  }
}
