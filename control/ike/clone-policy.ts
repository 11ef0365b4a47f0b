// Clone orchestration on the initiator side (RFC 7791, DESIGN §5): after
// IKE_AUTH, grow the session to one IKE SA per data-plane worker or per NIC by
// cloning the original, and give every clone the connection's Child SAs, so
// each worker (or NIC) owns a whole IKE SA with its own Child SAs.
//
// Refusals follow RFC 7791 §5.3: TEMPORARY_FAILURE is retried after a
// randomised, bounded back-off; NO_ADDITIONAL_SAS stops cloning towards that
// peer until one of its IKE SAs is deleted. A peer that did not send
// CLONE_IKE_SA_SUPPORTED is never sent CLONE_IKE_SA (§5.1): the session keeps
// one IKE SA and that is logged and reported.
//
// Owner: the main thread, next to the engine it drives.
import { EventEmitter } from 'node:events';
import { NotifyType } from '../wire/constants.js';
import type { IkeEngine } from './engine.js';
import type { IkeSa } from './ike-sa.js';
import type { TimerHandle } from './clock.js';
import { peerAddressFor } from './exchanges/mobike.js';

export type FamilyState = 'single' | 'growing' | 'complete' | 'fallback' | 'blocked' | 'failed';

export interface CloneFamily {
  sessionId: number;
  peer: string | undefined;
  /** IKE SAs wanted in the family, the original included. */
  target: number;
  state: FamilyState;
  /** Why the family is not complete (fallback, blocked, failed). */
  reason?: string;
}

export interface CloneBackoff {
  /** First wait after TEMPORARY_FAILURE (ms); doubles per attempt, with jitter in [0.5, 1.5). */
  baseMs: number;
  maxMs: number;
  /** Attempts per clone before giving up. */
  tries: number;
}

export const DEFAULT_CLONE_BACKOFF: CloneBackoff = { baseMs: 500, maxMs: 8000, tries: 5 };

export interface CloneOrchestratorEvents {
  /** The family reached its target size with a Child SA on every member. */
  'family-complete': [family: CloneFamily];
  /** The peer cannot be cloned, or refused, or cloning failed: the family stays smaller. */
  'family-limited': [family: CloneFamily];
}

type CloneError = Error & { notify?: number };

export class CloneOrchestrator extends EventEmitter<CloneOrchestratorEvents> {
  private readonly families = new Map<number, CloneFamily>();
  /** Peers that answered NO_ADDITIONAL_SAS: no clone attempt until one of their IKE SAs goes. */
  private readonly blockedPeers = new Set<string>();
  private readonly timers = new Set<TimerHandle>();
  private stopped = false;

  constructor(
    private readonly engine: IkeEngine,
    private readonly backoff: CloneBackoff = DEFAULT_CLONE_BACKOFF,
  ) {
    super();
  }

  /** Follow the engine: grow new sessions per policy, resume blocked ones when SAs go. */
  start(): this {
    this.engine.on('session-up', (sessionId, sa) => this.onSessionUp(sessionId, sa));
    this.engine.on('ike-down', (sa) => this.onIkeDown(sa));
    this.engine.on('session-down', (sessionId) => this.families.delete(sessionId));
    return this;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) t.cancel();
    this.timers.clear();
  }

  family(sessionId: number): CloneFamily | undefined {
    return this.families.get(sessionId);
  }

  allFamilies(): CloneFamily[] {
    return [...this.families.values()];
  }

  private onSessionUp(sessionId: number, sa: IkeSa): void {
    const clone = sa.policy.clone;
    if (!sa.isInitiator || !clone || clone.per === 'none' || clone.count <= 1) return;
    void this.grow(sa, clone.count);
  }

  private onIkeDown(sa: IkeSa): void {
    if (!sa.peerKey || !this.blockedPeers.delete(sa.peerKey)) return;
    // RFC 7791 §5.3: an SA with that peer is gone; cloning may be tried again.
    for (const family of this.families.values()) {
      if (family.peer !== sa.peerKey || family.state !== 'blocked') continue;
      const survivor = this.engine.sessionMembers(family.sessionId).find((m) => m.state === 'established');
      if (survivor) void this.grow(survivor, family.target);
    }
  }

  /**
   * Clone the session of `sa` until it has `target` IKE SAs, each with the
   * connection's Child SAs. Resolves with the family once nothing more can be
   * done (complete, fallback, blocked or failed); never rejects.
   */
  async grow(sa: IkeSa, target: number): Promise<CloneFamily> {
    const family = this.families.get(sa.sessionId) ?? { sessionId: sa.sessionId, peer: sa.peerKey, target, state: 'single' as FamilyState };
    family.target = target;
    this.families.set(sa.sessionId, family);
    const log = this.engine.log.child({ session: sa.sessionId, conn: sa.name });
    if (!sa.peerClone) {
      family.state = 'fallback';
      family.reason = sa.policy.cloneSupport
        ? 'the peer did not send CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1)'
        : 'cloning is turned off for this connection';
      log.warn({ target }, `not cloning: ${family.reason}; keeping one IKE SA`);
      this.emit('family-limited', family);
      return family;
    }
    family.state = 'growing';
    delete family.reason;
    while (!this.stopped && this.liveMembers(family) < target) {
      if (family.peer && this.blockedPeers.has(family.peer)) return this.limit(family, 'blocked', 'the peer answered NO_ADDITIONAL_SAS');
      const source = this.engine.sessionMembers(family.sessionId).find((m) => m.state === 'established');
      if (!source) return this.limit(family, 'failed', 'no established IKE SA left in the session');
      let clone: IkeSa;
      try {
        clone = await this.cloneWithRetry(source);
      } catch (err) {
        const e = err as CloneError;
        if (e.notify === NotifyType.NO_ADDITIONAL_SAS) {
          if (family.peer) this.blockedPeers.add(family.peer);
          return this.limit(family, 'blocked', 'the peer answered NO_ADDITIONAL_SAS (RFC 7791 §5.3)');
        }
        return this.limit(family, 'failed', e.message);
      }
      log.info({ ike: clone.id, index: clone.familyIndex, of: target }, 'clone established');
      await this.place(clone);
      for (const child of clone.policy.children) {
        try {
          await this.engine.createChildSa(clone, child.name);
        } catch (err) {
          log.warn({ ike: clone.id, child: child.name, reason: (err as Error).message }, 'Child SA on clone failed');
        }
      }
    }
    if (this.liveMembers(family) >= target) {
      family.state = 'complete';
      log.info({ target }, 'clone family complete');
      this.emit('family-complete', family);
    }
    return family;
  }

  /**
   * per: nic (RFC 7791 §3, Figure 2): clone k belongs on NIC k; it moves there
   * with MOBIKE (RFC 4555 §3.5) before its Child SAs are created, so they are
   * born on that path. Without MOBIKE the clone stays where it is.
   */
  private async place(clone: IkeSa): Promise<void> {
    const policy = clone.policy.clone;
    if (policy?.per !== 'nic' || policy.nics.length === 0) return;
    const nic = policy.nics[clone.familyIndex % policy.nics.length]!;
    clone.homeAddress = nic;
    if (clone.local.address === nic) return;
    if (!clone.peerMobike) {
      this.engine.log.warn({ ike: clone.id, nic }, 'cannot move the clone to its NIC: MOBIKE was not negotiated');
      return;
    }
    const remote = peerAddressFor(nic, [clone.remote.address, ...clone.peerAdditionalAddresses]);
    try {
      await this.engine.moveIkeSa(clone, { local: nic, ...(remote ? { remote } : {}) });
    } catch (err) {
      this.engine.log.warn({ ike: clone.id, nic, reason: (err as Error).message }, 'moving the clone to its NIC failed');
    }
  }

  private liveMembers(family: CloneFamily): number {
    return this.engine.sessionMembers(family.sessionId).filter((m) => m.state === 'established' || m.state === 'deleting').length;
  }

  private limit(family: CloneFamily, state: FamilyState, reason: string): CloneFamily {
    family.state = state;
    family.reason = reason;
    this.engine.log.warn({ session: family.sessionId, members: this.liveMembers(family), target: family.target, reason }, 'clone family limited');
    this.emit('family-limited', family);
    return family;
  }

  /** One clone, retrying TEMPORARY_FAILURE with exponential back-off and jitter (RFC 7791 §5.3). */
  private async cloneWithRetry(source: IkeSa): Promise<IkeSa> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.engine.cloneIkeSa(source);
      } catch (err) {
        const e = err as CloneError;
        if (e.notify !== NotifyType.TEMPORARY_FAILURE || attempt + 1 >= this.backoff.tries || this.stopped) throw e;
        const jitter = 0.5 + this.engine.random(1)[0]! / 256;
        const wait = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** attempt) * jitter;
        this.engine.log.info({ ike: source.id, attempt: attempt + 1, waitMs: Math.round(wait) }, 'clone refused with TEMPORARY_FAILURE, retrying');
        await new Promise<void>((resolve) => {
          const t = this.engine.clock.schedule(wait, () => {
            this.timers.delete(t);
            resolve();
          });
          this.timers.add(t);
        });
      }
    }
  }
}
