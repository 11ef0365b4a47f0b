// SA lifetimes (RFC 7296 §2.8): each end enforces its own. A soft limit
// starts a rekey (Child SA: CREATE_CHILD_SA with N(REKEY_SA); IKE SA:
// CREATE_CHILD_SA with an IKE proposal, or reauthentication, §2.8.3), a hard
// limit deletes the SA. Time limits run on the engine's clock; volume limits
// (bytes, packets) and sequence-number exhaustion are reported by the data
// plane (reportChildUsage, childRekeyNeeded), which counts the packets.
//
// The soft time limit is jittered (§2.8.1): rekeyTime less a uniformly random
// part of randTime, so that two ends with the same policy rarely rekey at the
// same instant. Hard limits are not jittered.
//
// A rekey refused with TEMPORARY_FAILURE is retried after a random delay
// (§2.25: "MUST NOT immediately retry"), at most until the hard limit; so is
// one that failed otherwise (refused, unusable answer), as long as the SA is
// still usable, or the SA would simply die at its hard limit. A Child SA the
// peer does not know (CHILD_SA_NOT_FOUND) is forgotten and created anew
// (§2.25). A Child SA that reaches its hard limit although it was due for a
// rekey (no successor: every rekey failed or came too late) is created anew
// by the end that starts the connection.
//
// Owner: the engine's thread. IKE SA timers live in sa.timers and Child SA
// timers here; both are cancelled when the SA dies, so nothing is left armed.
import { NotifyType } from '../wire/constants.js';
import { type ChildSa, type IkeSa, spiHex } from './ike-sa.js';
import type { TimerHandle } from './clock.js';
import type { ChildLimitCause, IkeContext } from './context.js';
import { DeleteSpisInitiator } from './exchanges/delete.js';
import { DEFAULT_LIFETIME_OPTIONS, type LifetimeOptions } from './defaults.js';
import { readU32 } from '../crypto/bytes.js';

/** Cumulative counters of one Child SA, as the data plane reports them. */
export interface ChildUsage {
  /**
   * Bytes and packets the SA has protected, for its volume limits. Each
   * direction is an SA of its own (RFC 4301 §4.4.2.1); report the larger of
   * the two directions' counts.
   */
  bytes: number;
  packets: number;
  /** Packets received on it so far (optional): a rise proves the peer alive (RFC 7296 §2.4). */
  inPackets?: number;
  /** Packets sent on it so far (optional): a rise counts as traffic for NAT keepalives (RFC 3948 §4). */
  outPackets?: number;
}

/** What reportChildUsage did. */
export type UsageVerdict = 'ok' | 'rekey' | 'expired' | 'unknown-spi';


interface ChildTimers {
  soft?: TimerHandle;
  hard?: TimerHandle;
  /** Absolute clock time of the hard limit, if any. */
  hardAt?: number;
  /** The soft limit has fired (by time, volume or sequence numbers): rekey started. */
  softDone: boolean;
  /** A rekey of ours is queued or in flight (child.state turns 'rekeying' only once it is sent). */
  rekeying?: boolean;
  /** The last rekey of ours, settled or not (a hard limit waits for it before creating the SA again). */
  rekey?: Promise<unknown>;
}

interface IkeLifetime {
  /** When the IKE SA was last authenticated (reauthentication counts from there, §2.8.3). */
  authAt: number;
  hardAt?: number;
  timers: TimerHandle[];
}

function nonNegative(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

export class LifetimeManager {
  private readonly opts: LifetimeOptions;
  private readonly children = new Map<ChildSa, ChildTimers>();
  private readonly ikes = new WeakMap<IkeSa, IkeLifetime>();
  /**
   * Sessions whose reauthentication is under way. A session (the original,
   * its clones and successors, RFC 7791 §5) is authenticated once, so it is
   * reauthenticated once, whichever member's timer fires first (§2.8.3).
   */
  private readonly reauthing = new Set<number>();
  /** Sessions a reauthentication replaced: a member that still turns up is closed, not reauthenticated. */
  private readonly retired = new Set<number>();
  /** A reauthentication to try again after a failure, per session (cancelled when the session goes). */
  private readonly reauthRetries = new Map<number, TimerHandle>();

  constructor(
    private readonly engine: IkeContext,
    opts: Partial<LifetimeOptions> = {},
  ) {
    this.opts = { ...DEFAULT_LIFETIME_OPTIONS, ...opts };
    if (!nonNegative(this.opts.rekeyRetryDelay)) throw new RangeError('lifetimes: rekeyRetryDelay must be a non-negative number of ms');
    engine.on('ike-up', (sa) => {
      if (!this.ikes.has(sa)) this.armIke(sa, engine.clock.now());
    });
    engine.on('ike-cloned', (original, clone) => this.armIke(clone, this.ikes.get(original)?.authAt ?? engine.clock.now()));
    engine.on('ike-rekeyed', (old, successor) => {
      const authAt = this.ikes.get(old)?.authAt ?? engine.clock.now();
      this.disarmIke(old);
      this.armIke(successor, authAt);
    });
    engine.on('session-down', (sessionId) => {
      this.retired.delete(sessionId);
      this.reauthRetries.get(sessionId)?.cancel();
      this.reauthRetries.delete(sessionId);
    });
    engine.on('child-up', (child) => this.armChild(child));
    engine.on('child-down', (child) => this.disarmChild(child));
  }

  /** A uniformly random delay in [0, max] ms from the engine's random source (§2.8.1 jitter). */
  jitter(max: number): number {
    if (!(max > 0)) return 0;
    const b = this.engine.random(4);
    const u = readU32(b);
    return Math.floor((u / 0x1_0000_0000) * (max + 1));
  }

  /**
   * A retry delay after TEMPORARY_FAILURE: uniformly random in [d, 2d] with
   * d = rekeyRetryDelay, shrunk to fit before the hard limit (to half the time
   * left, still random, so two ends that keep colliding drift apart).
   */
  private retryDelay(hardAt: number | undefined, now: number): number {
    let max = 2 * this.opts.rekeyRetryDelay;
    if (hardAt !== undefined) max = Math.min(max, Math.floor((hardAt - now) / 2));
    max = Math.max(1, max);
    const min = Math.max(1, Math.min(this.opts.rekeyRetryDelay, Math.floor(max / 2)));
    return min + this.jitter(Math.max(0, max - min));
  }

  // --------------------------------------------------------------- IKE SAs

  private armIke(sa: IkeSa, authAt: number): void {
    if (sa.state === 'dead') return;
    this.disarmIke(sa);
    const p = sa.policy;
    const now = this.engine.clock.now();
    const rekeyTime = p.rekeyTime ?? 0;
    const reauthTime = p.reauthTime ?? 0;
    const life: IkeLifetime = { authAt, timers: [] };
    this.ikes.set(sa, life);
    const add = (delay: number, fn: () => void) => {
      const t = this.engine.clock.schedule(Math.max(0, delay), () => {
        sa.timers.delete(t);
        const i = life.timers.indexOf(t);
        if (i >= 0) life.timers.splice(i, 1);
        fn();
      });
      sa.timers.add(t);
      life.timers.push(t);
    };
    const firstSoft: number[] = [];
    if (rekeyTime > 0) {
      const at = now + Math.max(1, rekeyTime - this.jitter(p.randTime ?? 0));
      firstSoft.push(now + rekeyTime);
      add(at - now, () => this.ikeSoftRekey(sa));
    }
    if (reauthTime > 0) {
      const due = authAt + reauthTime;
      const at = Math.max(now + 1, due - this.jitter(p.randTime ?? 0));
      firstSoft.push(due);
      add(at - now, () => this.ikeReauth(sa));
    }
    if (firstSoft.length > 0) {
      // strongSwan's default: over_time is 10% of the longer of rekey_time and reauth_time.
      life.hardAt = Math.min(...firstSoft) + (p.overTime ?? Math.round(Math.max(rekeyTime, reauthTime) / 10));
      add(life.hardAt - now, () => this.ikeHard(sa));
    }
  }

  private disarmIke(sa: IkeSa): void {
    const life = this.ikes.get(sa);
    if (!life) return;
    for (const t of life.timers) {
      t.cancel();
      sa.timers.delete(t);
    }
    life.timers.length = 0;
  }

  private ikeSoftRekey(sa: IkeSa): void {
    if (sa.state !== 'established') return;
    this.engine.log.info({ ike: sa.id, conn: sa.name }, 'IKE SA soft lifetime reached: rekeying');
    this.engine.emit('ike-expired', sa, 'rekey');
    this.rekeyIke(sa);
  }

  private rekeyIke(sa: IkeSa): void {
    if (sa.state !== 'established') return;
    this.engine.rekeyIkeSa(sa).catch((err: Error & { notify?: number }) => {
      if (err.notify !== NotifyType.TEMPORARY_FAILURE) this.engine.log.warn({ ike: sa.id, reason: err.message }, 'IKE SA rekey failed');
      this.retryIke(sa, err.notify === NotifyType.TEMPORARY_FAILURE);
    });
  }

  private retryIke(sa: IkeSa, temporary: boolean): void {
    if (sa.state !== 'established') return;
    const life = this.ikes.get(sa);
    const now = this.engine.clock.now();
    const delay = this.retryDelay(life?.hardAt, now);
    this.engine.log.info(
      { ike: sa.id, delay },
      temporary ? 'IKE SA rekey refused for now (TEMPORARY_FAILURE): retrying later (RFC 7296 §2.25)' : 'retrying the IKE SA rekey later, before the hard limit',
    );
    const t = this.engine.clock.schedule(delay, () => {
      sa.timers.delete(t);
      const i = life ? life.timers.indexOf(t) : -1;
      if (i >= 0) life!.timers.splice(i, 1);
      this.rekeyIke(sa);
    });
    sa.timers.add(t);
    life?.timers.push(t);
  }

  /**
   * Reauthentication (RFC 7296 §2.8.3): a new IKE SA from scratch with new
   * Child SAs, then the old one is deleted (make before break). Only the end
   * that can initiate the connection does this; the other relies on the hard
   * limit.
   *
   * Every member of a clone family carries the session's authentication time,
   * so each one's timer fires, but the session is reauthenticated once: one
   * new IKE SA, which is a new session of its own; once it is up, every member
   * of the old session is deleted, and the clone orchestrator grows the new
   * session's family on its session-up (RFC 7791 §5). One initiation per
   * member would start one new session per member, each of which grows a
   * full family again.
   */
  private ikeReauth(sa: IkeSa): void {
    if (sa.state !== 'established') return;
    if (this.retired.has(sa.sessionId)) {
      // A member (a late clone) of a session already replaced: it goes with the rest.
      this.engine.log.info({ ike: sa.id, session: sa.sessionId }, 'IKE SA of a reauthenticated session: deleting');
      void this.engine.closeIkeSa(sa);
      return;
    }
    this.engine.emit('ike-expired', sa, 'reauth');
    const policy = this.engine.policy(sa.name);
    if (!policy || policy.remoteAddrs.length === 0) {
      this.engine.log.info({ ike: sa.id }, 'reauthentication due, but this end does not initiate the connection');
      return;
    }
    this.reauthSession(sa.sessionId);
  }

  private reauthSession(session: number): void {
    if (this.reauthing.has(session) || this.retired.has(session)) return;
    // Initiate from the address of the lowest member (the original's place when it is still there).
    const lead = this.engine
      .sessionMembers(session)
      .filter((m) => m.state === 'established')
      .sort((a, b) => a.familyIndex - b.familyIndex)[0];
    if (!lead) return;
    this.reauthRetries.get(session)?.cancel();
    this.reauthRetries.delete(session);
    this.reauthing.add(session);
    this.engine.log.info({ ike: lead.id, session, conn: lead.name }, 'reauthenticating the session');
    this.engine.initiate(lead.name, { local: { address: lead.local.address, port: this.engine.ports.ike } }).then(
      () => {
        this.reauthing.delete(session);
        const old = this.engine.sessionMembers(session);
        if (old.length === 0) return;
        this.retired.add(session);
        // §2.8.3: the new IKE SA replaces the whole old session, clones included.
        for (const m of old) if (m.state === 'established') void this.engine.closeIkeSa(m);
      },
      (err: Error) => {
        this.reauthing.delete(session);
        this.engine.log.warn({ session, reason: err.message }, 'reauthentication failed');
        this.retryReauth(session);
      },
    );
  }

  /**
   * After a failed reauthentication the old session keeps working until its
   * hard limit; try again before then (randomised, as for TEMPORARY_FAILURE,
   * §2.25), or the session would just die at the hard limit.
   */
  private retryReauth(session: number): void {
    const members = this.engine.sessionMembers(session).filter((m) => m.state === 'established');
    if (members.length === 0 || this.reauthRetries.has(session)) return;
    const hardAt = Math.min(...members.map((m) => this.ikes.get(m)?.hardAt ?? Infinity));
    const now = this.engine.clock.now();
    const delay = this.retryDelay(Number.isFinite(hardAt) ? hardAt : undefined, now);
    this.engine.log.info({ session, delay }, 'retrying reauthentication later');
    const t = this.engine.clock.schedule(delay, () => {
      this.reauthRetries.delete(session);
      this.reauthSession(session);
    });
    this.reauthRetries.set(session, t);
  }

  private ikeHard(sa: IkeSa): void {
    if (sa.state === 'dead') return;
    this.engine.log.warn({ ike: sa.id, conn: sa.name }, 'IKE SA hard lifetime reached: deleting');
    this.engine.emit('ike-expired', sa, 'hard');
    // §2.8: rekeying did not happen in time; close the IKE SA and its Child SAs.
    void this.engine.closeIkeSa(sa);
  }

  // ------------------------------------------------------------- Child SAs

  private armChild(child: ChildSa): void {
    if (child.state === 'deleted' || this.children.has(child)) return;
    const p = child.ike.policy.children.find((c) => c.name === child.name);
    const entry: ChildTimers = { softDone: false };
    this.children.set(child, entry);
    if (!p) return;
    const rekeyTime = p.rekeyTime ?? 0;
    // As in the configuration: life_time defaults to rekey_time + 10%; 0 = no hard limit.
    const lifeTime = p.lifeTime ?? rekeyTime + Math.round(rekeyTime / 10);
    const clock = this.engine.clock;
    if (rekeyTime > 0) {
      const delay = Math.max(1, rekeyTime - this.jitter(p.randTime ?? 0));
      entry.soft = clock.schedule(delay, () => {
        entry.soft = undefined;
        this.childSoft(child, 'time');
      });
    }
    if (lifeTime > 0) {
      entry.hardAt = clock.now() + lifeTime;
      entry.hard = clock.schedule(lifeTime, () => {
        entry.hard = undefined;
        this.childHard(child, 'time');
      });
    }
  }

  private disarmChild(child: ChildSa): void {
    const entry = this.children.get(child);
    if (!entry) return;
    entry.soft?.cancel();
    entry.hard?.cancel();
    this.children.delete(child);
  }

  /** Soft limit: rekey once (RFC 7296 §2.8). */
  private childSoft(child: ChildSa, cause: ChildLimitCause): void {
    const entry = this.children.get(child);
    if (!entry) return;
    if (entry.softDone) {
      // Sequence numbers running out cannot wait for the hard limit (RFC 4303 §3.3.3: no
      // cycling): when no rekey is queued, in flight or due to be retried, start one now.
      if (cause === 'sequence' && !entry.rekeying && !entry.soft && child.state === 'installed' && child.ike.state === 'established') {
        this.engine.log.info({ ike: child.ike.id, child: child.id, spiIn: spiHex(child.spiIn), cause }, 'Child SA sequence numbers run out: rekeying');
        this.engine.emit('child-expired', child, 'soft', cause);
        this.rekeyChild(child);
      }
      return;
    }
    entry.softDone = true;
    entry.soft?.cancel();
    entry.soft = undefined;
    if (child.state !== 'installed' || child.ike.state !== 'established') return;
    this.engine.log.info({ ike: child.ike.id, child: child.id, spiIn: spiHex(child.spiIn), cause }, 'Child SA soft limit reached: rekeying');
    this.engine.emit('child-expired', child, 'soft', cause);
    this.rekeyChild(child);
  }

  private rekeyChild(child: ChildSa): void {
    const entry = this.children.get(child);
    const rekey = this.engine.rekeyChildSa(child);
    if (entry) {
      entry.rekeying = true;
      entry.rekey = rekey;
    }
    rekey.then(
      () => {
        if (entry) entry.rekeying = false;
      },
      (err: Error & { notify?: number }) => {
        if (entry) entry.rekeying = false;
        if (child.state === 'deleted') return;
        if (err.notify === NotifyType.TEMPORARY_FAILURE) return this.retryChild(child, true);
        if (err.notify === NotifyType.CHILD_SA_NOT_FOUND && child.state === 'installed' && child.ike.state === 'established') {
          // §2.25: the peer has no such SA. Forget it silently and create one from scratch.
          const ike = child.ike;
          this.engine.log.info({ ike: ike.id, child: child.id }, 'the peer does not know the Child SA (CHILD_SA_NOT_FOUND): creating a new one');
          this.engine.removeChild(child, 'unknown to the peer (CHILD_SA_NOT_FOUND)');
          // A per-worker Child SA (architecture §5.1) is created again for its worker, beside its siblings.
          this.engine.createChildSa(ike, child.name, child.placement ? { placement: child.placement } : {}).catch((e: Error) => this.engine.log.warn({ ike: ike.id, child: child.name, reason: e.message }, 'could not create Child SA'));
          return;
        }
        this.engine.log.warn({ ike: child.ike.id, child: child.id, reason: err.message }, 'Child SA rekey failed');
        this.retryChild(child, false);
      },
    );
  }

  private retryChild(child: ChildSa, temporary: boolean): void {
    const entry = this.children.get(child);
    if (!entry || child.state !== 'installed') return;
    const now = this.engine.clock.now();
    const delay = this.retryDelay(entry.hardAt, now);
    this.engine.log.info(
      { child: child.id, delay },
      temporary ? 'Child SA rekey refused for now (TEMPORARY_FAILURE): retrying later (RFC 7296 §2.25)' : 'retrying the Child SA rekey later, before the hard limit',
    );
    entry.soft?.cancel();
    entry.soft = this.engine.clock.schedule(delay, () => {
      entry.soft = undefined;
      if (child.state === 'installed' && child.ike.state === 'established') this.rekeyChild(child);
      else if (child.state === 'installed' && child.ike.state !== 'dead') this.retryChild(child, temporary);
    });
  }

  /** Hard limit: the SA must not be used any more; delete it (RFC 7296 §2.8). */
  private childHard(child: ChildSa, cause: ChildLimitCause): void {
    const entry = this.children.get(child);
    if (entry) {
      entry.soft?.cancel();
      entry.hard?.cancel();
      entry.soft = entry.hard = undefined;
      entry.softDone = true;
    }
    if (child.state === 'deleted') return;
    const ike = child.ike;
    this.engine.log.warn({ ike: ike.id, child: child.id, spiIn: spiHex(child.spiIn), cause }, 'Child SA hard limit reached: deleting');
    this.engine.emit('child-expired', child, 'hard', cause);
    // "When the lifetime of a Security Association expires, the Security Association MUST NOT
    // be used" (§2.8): it goes at once (the data plane hears child-down), then the peer is told.
    const wasDeleting = child.state === 'deleting';
    this.engine.removeChild(child, `hard ${cause} limit reached`);
    if (!wasDeleting && (ike.state === 'established' || ike.state === 'deleting')) this.engine.queueExchange(ike, new DeleteSpisInitiator([child.spiIn]));
    if (entry?.softDone && !wasDeleting) this.createAgainAfterExpiry(child, entry.rekey);
  }

  /**
   * A Child SA that was due for a rekey and reached its hard limit without a
   * successor (its rekeys failed or came too late, e.g. on a stalled host) is
   * created again on the same IKE SA, with its placement, by the end that
   * starts the connection: otherwise a configured tunnel stays down until the
   * next reauthentication. Only after our rekey in flight, if any, has
   * settled, and only if no Child SA of that name and placement is left
   * (a successor from the peer's rekey makes it unnecessary).
   */
  private createAgainAfterExpiry(child: ChildSa, rekey: Promise<unknown> | undefined): void {
    const ike = child.ike;
    if (ike.policy.startAction !== 'start') return;
    const settled = (rekey ?? Promise.resolve()).then(() => undefined, () => undefined);
    void settled.then(() => {
      if (ike.state !== 'established') return;
      const samePlace = (c: ChildSa) => c.name === child.name && c.placement?.kind === child.placement?.kind && c.placement?.worker === child.placement?.worker;
      if (ike.children.some((c) => samePlace(c) && (c.state === 'installed' || c.state === 'rekeying'))) return;
      this.engine.log.info({ ike: ike.id, child: child.name, expired: child.id }, 'Child SA expired without a successor: creating it again');
      this.engine.createChildSa(ike, child.name, child.placement ? { placement: child.placement } : {})
        .catch((e: Error) => this.engine.log.warn({ ike: ike.id, child: child.name, reason: e.message }, 'could not create Child SA'));
    });
  }

  /** See IkeContext.reportChildUsage. */
  reportUsage(spiIn: number, usage: ChildUsage): UsageVerdict {
    if (!Number.isInteger(spiIn) || spiIn < 0 || spiIn > 0xffff_ffff) throw new TypeError('reportChildUsage: spiIn must be a 32-bit unsigned integer');
    if (usage === null || typeof usage !== 'object' || !nonNegative(usage.bytes) || !nonNegative(usage.packets)) {
      throw new TypeError('reportChildUsage: usage must be { bytes, packets } with non-negative numbers');
    }
    if ((usage.inPackets !== undefined && !nonNegative(usage.inPackets)) || (usage.outPackets !== undefined && !nonNegative(usage.outPackets))) {
      throw new TypeError('reportChildUsage: inPackets and outPackets must be non-negative numbers');
    }
    const child = this.engine.childrenBySpi.get(spiIn);
    if (!child) return 'unknown-spi';
    const p = child.ike.policy.children.find((c) => c.name === child.name);
    const lifeBytes = p?.lifeBytes ?? 0;
    const lifePackets = p?.lifePackets ?? 0;
    if ((lifeBytes > 0 && usage.bytes >= lifeBytes) || (lifePackets > 0 && usage.packets >= lifePackets)) {
      this.childHard(child, lifeBytes > 0 && usage.bytes >= lifeBytes ? 'bytes' : 'packets');
      return 'expired';
    }
    const rekeyBytes = p?.rekeyBytes ?? 0;
    const rekeyPackets = p?.rekeyPackets ?? 0;
    if ((rekeyBytes > 0 && usage.bytes >= rekeyBytes) || (rekeyPackets > 0 && usage.packets >= rekeyPackets)) {
      this.childSoft(child, rekeyBytes > 0 && usage.bytes >= rekeyBytes ? 'bytes' : 'packets');
      return 'rekey';
    }
    return 'ok';
  }

  /** See IkeContext.childRekeyNeeded. */
  sequenceExhausted(spiIn: number): boolean {
    if (!Number.isInteger(spiIn) || spiIn < 0 || spiIn > 0xffff_ffff) throw new TypeError('childRekeyNeeded: spiIn must be a 32-bit unsigned integer');
    const child = this.engine.childrenBySpi.get(spiIn);
    if (!child) return false;
    this.childSoft(child, 'sequence');
    return true;
  }

  /** Child SAs with lifetime state (tests: nothing is kept for SAs that are gone). */
  get trackedChildren(): number {
    return this.children.size;
  }
}
