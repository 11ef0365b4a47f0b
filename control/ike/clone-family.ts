// Clone orchestration on the initiator side (RFC 7791, architecture §5): after
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
// A family that loses a member grows back to its target (after a back-off).
// An IKE SA that was rekeyed (RFC 7296 §2.18) is not lost: its successor takes
// its place, so its deletion neither re-grows the family nor counts as one of
// the peer's SAs going away for NO_ADDITIONAL_SAS (the peer's count is the same).
//
// Every grow() is bounded: at most backoff.tries x target clone attempts, and
// backoff.tries failures in a row (refusals, or clones lost before they were
// counted), each followed by the back-off wait. One grow() runs per session;
// further calls join it.
//
// Owner: the main thread, next to the engine it drives.
import { EventEmitter } from 'node:events';
import { NotifyType } from '../wire/constants.js';
import type { IkeContext } from './context.js';
import { DEFAULT_CLONE_BACKOFF, type CloneBackoff } from './defaults.js';
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
  /** Back-off waits in progress: stop() cancels the timer and wakes the waiter, so no grow() hangs. */
  private readonly waits = new Map<TimerHandle, () => void>();
  /** IKE SAs replaced by an IKE rekey: their deletion is not the loss of a member nor of a peer SA. */
  private readonly rekeyed = new WeakSet<IkeSa>();
  /** The grow() running per session: a second caller joins it instead of cloning in parallel. */
  private readonly running = new Map<number, Promise<CloneFamily>>();
  /** Sessions waiting for their back-off before re-growing after a member died. */
  private readonly regrowing = new Set<number>();
  private stopped = false;

  constructor(
    private readonly engine: IkeContext,
    private readonly backoff: CloneBackoff = DEFAULT_CLONE_BACKOFF,
  ) {
    super();
  }

  /** Follow the engine: grow new sessions per policy, resume blocked ones when SAs go. */
  start(): this {
    this.engine.on('session-up', (sessionId, sa) => this.onSessionUp(sessionId, sa));
    // Emitted before the old SA's 'ike-down' (engine adoptSuccessor), on both rekey ends.
    this.engine.on('ike-rekeyed', (old) => this.rekeyed.add(old));
    this.engine.on('ike-down', (sa) => this.onIkeDown(sa));
    this.engine.on('session-down', (sessionId) => this.families.delete(sessionId));
    return this;
  }

  /**
   * Stop cloning: back-off waits end at once, so every pending grow() resolves
   * (its family 'failed', reason 'stopped'); nothing is attempted until resume().
   */
  stop(): void {
    this.stopped = true;
    for (const [t, wake] of [...this.waits]) {
      t.cancel();
      wake();
    }
    this.waits.clear();
  }

  /** Undo stop(): clone again, and grow back the families that stop() cut short. */
  resume(): void {
    if (!this.stopped) return;
    this.stopped = false;
    for (const family of this.families.values()) {
      if (family.state !== 'failed' || family.reason !== STOPPED) continue;
      const survivor = this.survivor(family);
      if (survivor) void this.grow(survivor, family.target);
    }
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
    // RFC 7296 §2.18: a rekeyed SA is replaced by its successor; the peer has as
    // many IKE SAs as before, so this is no reason to retry after NO_ADDITIONAL_SAS
    // (RFC 7791 §5.3), and the family has lost no member.
    if (this.rekeyed.has(sa)) return;
    if (!this.stopped) this.regrowAfterLoss(sa);
    if (!sa.peerKey || !this.blockedPeers.delete(sa.peerKey)) return;
    // RFC 7791 §5.3: an SA with that peer is gone; cloning may be tried again.
    for (const family of this.families.values()) {
      if (family.peer !== sa.peerKey || family.state !== 'blocked') continue;
      const survivor = this.survivor(family);
      // While stopped, mark it so that resume() grows it.
      if (this.stopped) this.limit(family, 'failed', STOPPED);
      else if (survivor) void this.grow(survivor, family.target);
    }
  }

  /**
   * A member of a complete (or growing) family died: the family is short again
   * and says so, and grows back to its target from a surviving member after the
   * back-off wait, so a peer that deletes clones does not get them back at once.
   * A running grow() sees the loss itself. Blocked, failed and fallback
   * families stay as they are (the NO_ADDITIONAL_SAS path above handles blocked).
   */
  private regrowAfterLoss(sa: IkeSa): void {
    const family = this.families.get(sa.sessionId);
    if (!family || (family.state !== 'complete' && family.state !== 'growing')) return;
    if (this.running.has(family.sessionId) || this.regrowing.has(family.sessionId)) return;
    if (!this.survivor(family) || this.liveMembers(family) >= family.target) return;
    family.state = 'growing';
    delete family.reason;
    this.regrowing.add(family.sessionId);
    this.engine.log.info({ session: family.sessionId, ike: sa.id, members: this.liveMembers(family), target: family.target }, 'clone family lost a member, growing back');
    void this.sleep(this.backoffDelay(0)).then(() => {
      this.regrowing.delete(family.sessionId);
      if (this.families.get(family.sessionId) !== family) return;
      const survivor = this.survivor(family);
      if (this.stopped) this.limit(family, 'failed', STOPPED);
      else if (survivor) void this.grow(survivor, family.target);
      else this.limit(family, 'failed', 'no established IKE SA left in the session');
    });
  }

  private survivor(family: CloneFamily): IkeSa | undefined {
    return this.engine.sessionMembers(family.sessionId).find((m) => m.state === 'established');
  }

  /**
   * Clone the session of `sa` until it has `target` IKE SAs, each with the
   * connection's Child SAs. Resolves with the family once nothing more can be
   * done (complete, fallback, blocked or failed); never rejects. While a grow()
   * runs for the session, another call raises its target and waits for it:
   * two loops cloning side by side would overshoot the target.
   */
  grow(sa: IkeSa, target: number): Promise<CloneFamily> {
    const pending = this.running.get(sa.sessionId);
    const joined = this.families.get(sa.sessionId);
    if (pending && joined) {
      joined.target = Math.max(joined.target, target);
      return pending;
    }
    const run = this.growLoop(sa, target).finally(() => {
      if (this.running.get(sa.sessionId) === run) this.running.delete(sa.sessionId);
    });
    this.running.set(sa.sessionId, run);
    return run;
  }

  private async growLoop(sa: IkeSa, target: number): Promise<CloneFamily> {
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
    if (this.stopped) return this.limit(family, 'failed', STOPPED);
    family.state = 'growing';
    delete family.reason;
    // Bounds: attempts over the whole grow(), and failures in a row (each one
    // followed by the back-off wait, RFC 7791 §5.3), so that no peer behaviour
    // makes this loop clone without pause or without end.
    let attempts = 0;
    let failures = 0;
    while (this.liveMembers(family) < family.target) {
      if (this.stopped) return this.limit(family, 'failed', STOPPED);
      if (family.peer && this.blockedPeers.has(family.peer)) return this.limit(family, 'blocked', 'the peer answered NO_ADDITIONAL_SAS');
      const source = this.survivor(family);
      if (!source) return this.limit(family, 'failed', 'no established IKE SA left in the session');
      const budget = this.backoff.tries * family.target;
      if (attempts >= budget) return this.limit(family, 'failed', `gave up after ${attempts} clone attempts`);
      attempts++;
      let clone: IkeSa;
      try {
        clone = await this.engine.cloneIkeSa(source);
      } catch (err) {
        const e = err as CloneError;
        if (e.notify === NotifyType.NO_ADDITIONAL_SAS) {
          if (family.peer) this.blockedPeers.add(family.peer);
          return this.limit(family, 'blocked', 'the peer answered NO_ADDITIONAL_SAS (RFC 7791 §5.3)');
        }
        // RFC 7791 §5.3: TEMPORARY_FAILURE MAY be retried, after a while.
        if (e.notify !== NotifyType.TEMPORARY_FAILURE || ++failures >= this.backoff.tries) return this.limit(family, 'failed', e.message);
        const wait = this.backoffDelay(failures - 1);
        log.info({ ike: source.id, attempt: failures, waitMs: Math.round(wait) }, 'clone refused with TEMPORARY_FAILURE, retrying');
        await this.sleep(wait);
        continue;
      }
      log.info({ ike: clone.id, index: clone.familyIndex, of: family.target }, 'clone established');
      await this.place(clone);
      for (const child of clone.policy.children) {
        if (clone.state !== 'established') break;
        try {
          await this.engine.createChildSa(clone, child.name);
        } catch (err) {
          log.warn({ ike: clone.id, child: child.name, reason: (err as Error).message }, 'Child SA on clone failed');
        }
      }
      if (clone.state === 'established' || this.rekeyed.has(clone)) {
        failures = 0;
        continue;
      }
      // The clone is gone before it was counted (the peer deleted it, or it
      // failed): a failure like a refusal, so wait before the next attempt.
      if (++failures >= this.backoff.tries) return this.limit(family, 'failed', `every clone was lost before it was counted (${failures} in a row)`);
      const wait = this.backoffDelay(failures - 1);
      log.warn({ ike: clone.id, attempt: failures, waitMs: Math.round(wait) }, 'clone lost before it was counted, retrying after back-off');
      await this.sleep(wait);
    }
    family.state = 'complete';
    delete family.reason;
    log.info({ target: family.target }, 'clone family complete');
    this.emit('family-complete', family);
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
    // RFC 4555 §1.3: only the party that started the family's first IKE SA moves it, whoever cloned.
    if (!clone.mobikeInitiator) {
      this.engine.log.warn({ ike: clone.id, nic }, 'cannot move the clone to its NIC: the peer is the MOBIKE initiator');
      return;
    }
    const remote = peerAddressFor(nic, [clone.remote.address, ...clone.peerAdditionalAddresses]);
    try {
      await this.engine.moveIkeSa(clone, { local: nic, ...(remote ? { remote } : {}) });
    } catch (err) {
      this.engine.log.warn({ ike: clone.id, nic, reason: (err as Error).message }, 'moving the clone to its NIC failed');
    }
  }

  /** Members that count towards the target: not dead, and not an old SA that a rekey already replaced (its successor counts). */
  private liveMembers(family: CloneFamily): number {
    return this.engine.sessionMembers(family.sessionId).filter((m) => (m.state === 'established' || m.state === 'deleting') && !this.rekeyed.has(m)).length;
  }

  private limit(family: CloneFamily, state: FamilyState, reason: string): CloneFamily {
    family.state = state;
    family.reason = reason;
    this.engine.log.warn({ session: family.sessionId, members: this.liveMembers(family), target: family.target, reason }, 'clone family limited');
    this.emit('family-limited', family);
    return family;
  }

  /** Back-off before retry `attempt` (0-based): doubling from baseMs up to maxMs, jitter in [0.5, 1.5) (RFC 7791 §5.3). */
  private backoffDelay(attempt: number): number {
    const jitter = 0.5 + this.engine.random(1)[0]! / 256;
    return Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** attempt) * jitter;
  }

  /** Wait `ms` on the engine's clock; stop() ends the wait early (callers check `stopped`). */
  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = this.engine.clock.schedule(ms, () => {
        this.waits.delete(t);
        resolve();
      });
      this.waits.set(t, resolve);
    });
  }
}

const STOPPED = 'stopped: the clone orchestrator was stopped';
