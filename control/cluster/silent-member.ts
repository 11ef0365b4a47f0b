// Silent members (architecture §8): survivors notice a node that stopped
// before etcd lets its lease lapse, and revoke that lease.
//
// Why: etcd expires a dead node's lease `lease_ttl` after its last
// keep-alive, except when the dead machine also ran the etcd leader. Then
// the others first elect a leader (the election timeout, randomised 1-2x),
// and the new leader's lessor renews every lease on promotion for its TTL
// plus an election timeout, so the member key of the dead node goes about
// `lease_ttl` + 2-3 s after its death (docs/cluster.md §1, §5).
//
// How: every node writes a heartbeat key under its lease,
//
//   /ikeclone/v1/<cluster>/alive/<node> -> {"seq":n,"ttlMs":t}   (the node's lease)
//
// one write at a time, the next `lease_ttl`/3 after the last succeeded (a
// failed one is tried again after RETRY_MS), and follows every node's
// heartbeat through one watch, noting on its own monotonic clock when each
// arrived. A member whose heartbeat has not changed for `lease_ttl` (or for
// the longer TTL `t` its heartbeat announces: a node configured with a longer
// lease_ttl writes less often) while etcd demonstrably served this node is
// silent. Silence in etcd alone does not prove death: a live member whose
// etcd client was switching to another member after the leader died was
// seen silent for 3.5 s with a 3 s lease. So this node first asks the member
// directly (liveness-probe.ts: pings on the cluster address and port its
// heartbeat announces, MACed under a key derived from the cluster key). A
// valid pong from it naming the lease its heartbeat was written under: it is
// alive, its lease is kept (counted, logged once per episode) and it is
// asked again a period later while it stays silent. No such pong within the
// probe's wait: this node revokes its lease (the heartbeat's own lease ID):
// etcd deletes its member key at once and failover (failover.ts) proceeds as
// after a lapse. Any survivor may revoke; a second revoke finds the lease
// gone (harmless). A member never seen to heartbeat (suspect_silent: no), or
// whose heartbeat announces no probe port (an older version), is never
// suspected by this rule: its lease lapses in etcd's time.
//
// "etcd demonstrably served this node" means: this node's lease is held, its
// last heartbeat write succeeded, and the watch delivered at least two of its
// own heartbeats after the silent member's last one, both in the current
// unbroken run of its own heartbeats (consecutive ones at most GAP_FACTOR
// periods apart, no failed write between), the newest of them recent, the
// run's first at least SERVED_PERIODS periods ago.
//
// Why an etcd election never makes a live node look silent: an election
// stalls every node's writes alike. A stall longer than half a period breaks
// our run (a gap or a failed write), so after it we need two of our own
// heartbeats again (the second is written a whole period after the first
// succeeded) and SERVED_PERIODS periods since the first: etcd served for
// that long after the stall before we may suspect anyone. A live member's
// heartbeat that was in flight during the stall commits as soon as etcd
// serves again (or fails at its deadline and is tried again RETRY_MS
// later), so it reaches the watch within that time and resets its silence
// (simulated in test/cluster-silent-member.test.ts: stalls of 0.25-6 s, a
// member's writes up to 0.55 s slower to commit than ours). A shorter stall
// delays a live member's heartbeat by less than half a period, far from
// `lease_ttl` (three periods). The watch delivers events in etcd's order
// (revisions): once it has delivered our heartbeat it has delivered every
// heartbeat committed before it, so a lagging or stalled watch (a stream to
// a member cut off from the others) only delays suspicion, and no one is
// suspected from a watch that delivers nothing. A node whose own writes fail
// (no leader, no quorum, cut off, its lease lost) suspects no one. What is
// left is a member whose own writes fail while ours succeed for a whole
// `lease_ttl`: its lease keep-alives go the same way (same process, same
// etcd client), so etcd would drop its lease about as soon; if it is alive,
// it sees 'lease-lost' and joins again (membership.ts), as after any lapse.
//
// Owner: the main thread.
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { EtcdLeaseInvalidError } from 'etcd3';
import { performance } from 'node:perf_hooks';
import { isIP } from 'node:net';
import { MAX_SPI_NODES } from '../../io/spi-layout.js';
import type { Logger } from '../log.js';
import { clusterPrefix } from './etcd-client.js';
import { followPrefix } from './resource-keys.js';
import { MAX_LEASE_TTL_MS } from '../config/cluster-section.js';
import type { LivenessProbe, ProbeTarget } from './liveness-probe.js';

/** Heartbeats per lease TTL: one write every `lease_ttl`/3 per node (1 write/s with a 3 s lease). */
export const HEARTBEATS_PER_TTL = 3;
/** Own heartbeats further apart than this many periods break the run that proves etcd serves us. */
export const GAP_FACTOR = 1.5;
/** A failed heartbeat write is tried again after this long (a live node's heartbeat lands soon after a stall). */
export const RETRY_MS = 100;
/**
 * How long etcd must have served our heartbeats without a gap before we
 * suspect anyone, in periods: a live member's heartbeat held up by a stall
 * (a write that failed at its deadline, tried again RETRY_MS later, slow to
 * commit on a busy machine) lands within it.
 */
export const SERVED_PERIODS = 1.25;
/** How often the decision runs (it only reads the members in memory). */
const CHECK_MS = 100;

export function aliveKey(cluster: string, node: string): string {
  return `${clusterPrefix(cluster)}alive/${node}`;
}

/** What a heartbeat key holds; `probe`: where the writer answers liveness probes (absent: an older version, never probed). */
export interface Heartbeat {
  seq: number;
  ttlMs: number;
  probe?: ProbeTarget;
}

function probeTarget(v: unknown): ProbeTarget | undefined {
  const p = v as Partial<ProbeTarget> | undefined;
  if (typeof p !== 'object' || p === null || typeof p.address !== 'string' || isIP(p.address) === 0) return undefined;
  return Number.isInteger(p.port) && p.port! >= 1 && p.port! <= 65535 ? { address: p.address, port: p.port! } : undefined;
}

/** A heartbeat's value; undefined when it is not one (the member is then judged by our TTL). */
export function parseHeartbeat(text: string): Heartbeat | undefined {
  try {
    const v = JSON.parse(text) as Heartbeat;
    if (!Number.isSafeInteger(v.seq) || !Number.isSafeInteger(v.ttlMs) || v.ttlMs <= 0) return undefined;
    const probe = probeTarget(v.probe);
    return { seq: v.seq, ttlMs: v.ttlMs, ...(probe && { probe }) };
  } catch {
    return undefined;
  }
}

/** A member the decision found silent: revoke `leaseId`. */
export interface SilentMember {
  node: string;
  leaseId: string;
  /** Since its last heartbeat arrived, on our clock. */
  silentMs: number;
  /** Our own heartbeats the watch delivered since. */
  ownSince: number;
  /** Where it answers liveness probes, as its heartbeat announced. */
  probe?: ProbeTarget;
  /** When its last heartbeat arrived (our clock): unchanged after the probe means still silent. */
  seenAt: number;
}

interface Followed {
  leaseId: string;
  /** Silent after this long: the longer of its lease TTL and ours. */
  silentAfterMs: number;
  /** When its last heartbeat arrived (our monotonic clock). */
  seenAt: number;
  /** How many of our own heartbeats had arrived then. */
  seenOwn: number;
  probe?: ProbeTarget;
  /** When we last asked for its lease to be revoked. */
  revokeAskedAt?: number;
}

export interface SilentMemberDecisionOptions {
  /** Our node's name: never suspected. */
  self: string;
  leaseTtlMs: number;
  /** Monotonic milliseconds (injected for tests). */
  now: () => number;
  /** Members followed at most (MAX_SPI_NODES: each member holds an SPI prefix). */
  maxMembers?: number;
}

/**
 * The decision in memory, fed in etcd's order: heartbeats as the watch
 * delivers them (ours included), our writes' outcomes and our lease.
 */
export class SilentMemberDecision {
  readonly periodMs: number;
  private readonly members = new Map<string, Followed>();
  /** Our own heartbeats delivered so far, and the number of the first of the current run. */
  private own = 0;
  private runStart = 1;
  private runStartAt = 0;
  private lastOwnAt: number | undefined;
  private failedSinceOwn = false;
  private writeFailing = false;
  private leaseHeld = true;
  /** Heartbeats of names past maxMembers, ignored. */
  ignored = 0;

  constructor(private readonly opts: SilentMemberDecisionOptions) {
    this.periodMs = opts.leaseTtlMs / HEARTBEATS_PER_TTL;
  }

  /** A heartbeat key written (or found at start), in the watch's order; `ttlMs`: the writer's lease TTL, as its heartbeat says. */
  heartbeat(node: string, leaseId: string, ttlMs?: number, probe?: ProbeTarget): void {
    const now = this.opts.now();
    if (node === this.opts.self) {
      const gap = this.lastOwnAt === undefined || now - this.lastOwnAt > GAP_FACTOR * this.periodMs;
      this.own++;
      if (gap || this.failedSinceOwn) {
        this.runStart = this.own;
        this.runStartAt = now;
      }
      this.lastOwnAt = now;
      this.failedSinceOwn = false;
      return;
    }
    if (!this.members.has(node) && this.members.size >= (this.opts.maxMembers ?? MAX_SPI_NODES)) {
      this.ignored++;
      return;
    }
    const silentAfterMs = Math.max(this.opts.leaseTtlMs, Math.min(ttlMs ?? 0, MAX_LEASE_TTL_MS));
    this.members.set(node, { leaseId, silentAfterMs, seenAt: now, seenOwn: this.own, ...(probe && { probe }) });
  }

  /** A heartbeat key deleted (its lease revoked or lapsed, or the node left). */
  gone(node: string): void {
    this.members.delete(node);
  }

  /** The outcome of one of our heartbeat writes. */
  ownWrite(ok: boolean): void {
    this.writeFailing = !ok;
    if (!ok) this.failedSinceOwn = true;
  }

  /** Whether our lease is held (a lost one: we suspect no one). */
  ownLease(held: boolean): void {
    this.leaseHeld = held;
  }

  /** Whether etcd demonstrably serves us now (the file comment). */
  private served(now: number): boolean {
    return this.leaseHeld && !this.writeFailing && !this.failedSinceOwn && this.lastOwnAt !== undefined &&
      now - this.lastOwnAt <= GAP_FACTOR * this.periodMs && now - this.runStartAt >= SERVED_PERIODS * this.periodMs;
  }

  /** Members silent now whose lease was not asked to be revoked within the last period; marks them asked. */
  silent(ownLeaseId?: string): SilentMember[] {
    const now = this.opts.now();
    if (!this.served(now)) return [];
    const out: SilentMember[] = [];
    for (const [node, m] of this.members) {
      // Never our own lease, nor a key without one (lease 0: nothing to revoke).
      if (m.leaseId === ownLeaseId || m.leaseId === '0' || m.leaseId === '') continue;
      const silentMs = now - m.seenAt;
      const ownSince = this.own - Math.max(m.seenOwn, this.runStart - 1);
      if (silentMs < m.silentAfterMs || ownSince < 2) continue;
      if (m.revokeAskedAt !== undefined && now - m.revokeAskedAt < this.periodMs) continue;
      m.revokeAskedAt = now;
      out.push({ node, leaseId: m.leaseId, silentMs: Math.round(silentMs), ownSince: this.own - m.seenOwn, seenAt: m.seenAt, ...(m.probe && { probe: m.probe }) });
    }
    return out;
  }

  /** Whether `s` is still silent as found: no heartbeat of it arrived since, same lease, and etcd still serves us. */
  stillSilent(s: SilentMember): boolean {
    const m = this.members.get(s.node);
    return m !== undefined && m.seenAt === s.seenAt && m.leaseId === s.leaseId && this.served(this.opts.now());
  }

  /** Members followed now. */
  get followed(): number {
    return this.members.size;
  }
}

export interface SilentMembersOptions {
  client: Etcd3;
  cluster: string;
  node: string;
  leaseTtlMs: number;
  /** Our lease now (a node that joined again has a new one). */
  leaseId: () => string;
  /** Whether our lease is held. */
  leaseHeld: () => boolean;
  log: Logger;
  /** Our liveness probe, bound: announced in our heartbeat, and asked of a silent member before its lease is revoked. */
  probe: LivenessProbe;
  now?: () => number;
}

export interface SilentMembersStats {
  /** Leases of silent members this node revoked. */
  revoked: number;
  /** Silent members not revoked because they answered a liveness probe under the lease of their heartbeat. */
  spared: number;
  /** Silent members not revoked because their heartbeat announces no probe port (an older version). */
  notProbed: number;
  /** Our heartbeat writes that failed. */
  heartbeatFailures: number;
}

/** Our heartbeat, the others' followed through a watch, and silent members' leases revoked. */
export class SilentMembers {
  readonly decision: SilentMemberDecision;
  readonly stats: SilentMembersStats = { revoked: 0, spared: 0, notProbed: 0, heartbeatFailures: 0 };
  /** Members spared (or not probeable) in the current episode: logged once until their heartbeat comes back. */
  private readonly episodes = new Set<string>();
  private watcher: Watcher | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private seq = 0;
  private failingLogged = false;

  constructor(private readonly opts: SilentMembersOptions) {
    this.decision = new SilentMemberDecision({ self: opts.node, leaseTtlMs: opts.leaseTtlMs, now: opts.now ?? (() => performance.now()) });
  }

  private get prefix(): string {
    return `${clusterPrefix(this.opts.cluster)}alive/`;
  }

  /** Follow the heartbeats, then write ours and check every CHECK_MS. */
  async start(): Promise<this> {
    const name = (kv: IKeyValue) => kv.key.toString().slice(this.prefix.length);
    this.watcher = await followPrefix(
      this.opts.client,
      this.prefix,
      (kv) => {
        const hb = parseHeartbeat(kv.value.toString());
        this.episodes.delete(name(kv));
        this.decision.heartbeat(name(kv), kv.lease, hb?.ttlMs, hb?.probe);
      },
      (kv) => {
        this.episodes.delete(name(kv));
        this.decision.gone(name(kv));
      },
    );
    if (this.stopped) {
      await this.watcher.cancel().catch(() => undefined);
      return this;
    }
    this.beat();
    this.checkTimer = setInterval(() => this.check(), CHECK_MS);
    this.checkTimer.unref();
    return this;
  }

  /** One heartbeat write; the next a period after it succeeded, or RETRY_MS after it failed. */
  private beat(): void {
    if (this.stopped) return;
    const next = (ms: number) => {
      if (this.stopped) return;
      this.heartbeatTimer = setTimeout(() => this.beat(), ms);
      this.heartbeatTimer.unref();
    };
    const probe = this.opts.probe.announced;
    const heartbeat: Heartbeat = { seq: ++this.seq, ttlMs: this.opts.leaseTtlMs, ...(probe && { probe }) };
    this.opts.client.put(aliveKey(this.opts.cluster, this.opts.node)).value(JSON.stringify(heartbeat)).lease(this.opts.leaseId()).then(
      () => {
        this.decision.ownWrite(true);
        this.failingLogged = false;
        next(this.decision.periodMs);
      },
      (err: Error) => {
        this.decision.ownWrite(false);
        this.stats.heartbeatFailures++;
        // Logged once until a write succeeds: a lost lease or etcd cut off is said elsewhere.
        if (!this.failingLogged) this.opts.log.debug({ reason: err.message }, 'heartbeat not written: suspecting no member until etcd serves us again');
        this.failingLogged = true;
        next(RETRY_MS);
      },
    );
  }

  private check(): void {
    this.decision.ownLease(this.opts.leaseHeld());
    for (const s of this.decision.silent(this.opts.leaseId())) void this.confirm(s);
  }

  /** A member silent in etcd: revoked only if it does not answer a liveness probe under its heartbeat's lease. */
  private async confirm(s: SilentMember): Promise<void> {
    const { log } = this.opts;
    const firstInEpisode = !this.episodes.has(s.node);
    const notProbed = (why: string) => {
      this.stats.notProbed++;
      this.episodes.add(s.node);
      if (firstInEpisode) log.info({ member: s.node, silentMs: s.silentMs }, `member silent in etcd ${why}: not revoked, its lease lapses in etcd's time`);
    };
    if (!s.probe) return notProbed('announces no probe port (an older version)');
    const outcome = await this.opts.probe.probe(s.node, s.leaseId, s.probe);
    if (outcome === 'closed' || this.stopped) return;
    if (outcome === 'not-probed') return notProbed('could not be probed (its probe address of the other IP family than ours, or no socket for the probe)');
    if (outcome === 'answered') {
      this.stats.spared++;
      this.episodes.add(s.node);
      if (firstInEpisode) log.warn({ member: s.node, lease: s.leaseId, silentMs: s.silentMs }, `member silent in etcd for ${s.silentMs} ms answers on its cluster address: its lease kept (asked again each period while silent)`);
      return;
    }
    // Its heartbeat came back (or etcd stopped serving us) while we waited: decided again on the next check.
    if (!this.decision.stillSilent(s)) return;
    await this.revoke(s);
  }

  private async revoke(s: SilentMember): Promise<void> {
    const { log } = this.opts;
    try {
      await this.opts.client.leaseClient.leaseRevoke({ ID: s.leaseId });
    } catch (err) {
      // Revoked by another survivor, or lapsed meanwhile: the member is gone either way.
      if (err instanceof EtcdLeaseInvalidError) {
        log.debug({ member: s.node, lease: s.leaseId }, 'silent member\'s lease already gone');
        this.decision.gone(s.node);
      } else log.warn({ member: s.node, lease: s.leaseId, reason: (err as Error).message }, 'cannot revoke a silent member\'s lease (tried again)');
      return;
    }
    this.stats.revoked++;
    log.warn({ member: s.node, lease: s.leaseId, silentMs: s.silentMs, ownHeartbeatsSince: s.ownSince, probe: 'no answer' }, `member silent for ${s.silentMs} ms while etcd served us: its lease revoked`);
  }

  /** Stop writing, watching and checking (a second call does nothing: etcd3 never settles a second cancel). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    const w = this.watcher;
    this.watcher = undefined;
    await w?.cancel().catch(() => undefined);
  }
}
