// Failure handling of a cluster node (architecture §8; CLUSTER design §4):
//
// - A dead node: its member key goes when its lease lapses; the others see
//   it (the members watch, membership.ts). Each clone whose owner is no live
//   member is claimed by ONE survivor: the survivors rank themselves by
//   rendezvous hashing of the clone's key (placement.ts, loads ignored so
//   that all agree), the first claims at once, the next only after
//   `staggerMs` if the clone is still orphaned, and so on; the transaction
//   `if owner == {dead, e} then owner = {me, e+1}` (reassign.ts) decides if
//   two try. The claimant's own watch then imports the record (handoff.ts):
//   path test, address list, the client's UPDATE_SA_ADDRESSES, the Delete of
//   the dead node's Child SAs by the SPIs the record names, the new Child SA;
//   first, when the record leaves the client's next request ID open (the dead
//   node had requests in flight), probes find it (ike/request-resync.ts):
//   the claim's transaction names their IDs and the arrival's taken.
// - A clone etcd names ours that is neither here nor arriving is imported:
//   a restarted node's clones from its previous run (owner keys have no
//   lease), or a handoff whose watch event never came.
// - The cluster is read every DEFAULT_SCAN_INTERVAL_MS besides the members
//   watch: a watch stream to an etcd member cut off from the others stays
//   silent.
// - A clone whose path test fails after a move goes back to the node it came
//   from, if that node is alive (its address is still the client's), which
//   probes for the client's next request ID the same way; after a takeover
//   there is nowhere to go: the clone's keys go, the client's DPD clears it.
//
// Owner: the main thread.
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import type { IkeContext } from '../ike/context.js';
import type { IkeSa } from '../ike/ike-sa.js';
import { arrivalRequestCount, type ArrivalResult, type TransferAmendment } from '../ike/sa-transfer.js';
import { resyncMarks } from '../ike/request-resync.js';
import { amendedDraws, staleDeleteCount } from './arrival-draw.js';
import type { Logger } from '../log.js';
import type { ArrivalOrigin, CloneHandoff, CloneOwner } from './handoff.js';
import type { MemberInfo } from './membership.js';
import { rendezvousRank } from './placement.js';
import { reassignClone, type ReassignResult } from './reassign.js';
import type { ClusterKey } from './seal.js';
import { readClusterState, readClusterStatus, type ClusterClone, type SealedRecord } from './status.js';

/** How long the survivor ranked r waits before claiming (r × this): the first ranked claims at once. */
export const DEFAULT_CLAIM_STAGGER_MS = 1500;
/**
 * How often the cluster is read even without a members event: a watch whose
 * etcd member is cut off from the others can stay silent (no error, no
 * events) while unary calls go to another member.
 */
export const DEFAULT_SCAN_INTERVAL_MS = 2000;

export interface FailoverOptions {
  engine: IkeContext;
  client: Etcd3;
  key: ClusterKey;
  cluster: string;
  node: string;
  handoff: CloneHandoff;
  log: Logger;
  staggerMs?: number;
  scanIntervalMs?: number;
  /** This node's SPI prefix, and another member's as last read: the new owner's Child SA SPI is drawn (arrival-draw.ts). */
  spiPrefix?: number;
  spiPrefixOf?: (node: string) => number | undefined;
}

export interface FailoverStats {
  /** Clones this node took over from a dead node (or from its own previous run). */
  claimed: number;
  /** Claims another survivor won (the transaction failed: the owner had changed). */
  lost: number;
  /** Claims that failed otherwise (no record, a record that does not open, etcd errors). */
  failed: number;
  /** Clones sent back to the node they came from after a failed path test. */
  returned: number;
}

export interface FailoverEvents {
  claimed: [family: string, index: number, from: string, epoch: number];
  returned: [family: string, index: number, to: string, epoch: number];
}

/** The live member that should claim `clone` after `rank` earlier ones failed to (rendezvous order, loads ignored). */
export function claimOrder(clone: Pick<ClusterClone, 'family' | 'index'>, live: readonly MemberInfo[]): string[] {
  return rendezvousRank(`${clone.family}/${clone.index}`, live.map((m) => ({ ...m, load: 0 }))).map((m) => m.node);
}

export class CloneFailover extends EventEmitter<FailoverEvents> {
  readonly stats: FailoverStats = { claimed: 0, lost: 0, failed: 0, returned: 0 };
  /** Claims scheduled, by owner key: one per orphaned clone. */
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private lastMembers = '';
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescan = false;
  private stopped = false;
  /** Without a lease we claim nothing (we could not keep what we claimed). */
  private paused = false;

  constructor(private readonly opts: FailoverOptions) {
    super();
  }

  /** Follow the handoff's arrivals (a failed path test sends the clone back) and scan once. */
  start(): this {
    this.opts.handoff.on('arrived', (sa, result, origin) => void this.afterArrival(sa, result, origin));
    void this.scan(true);
    this.scanTimer = setInterval(() => void this.scan(true), this.opts.scanIntervalMs ?? DEFAULT_SCAN_INTERVAL_MS);
    this.scanTimer.unref();
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.scanTimer) clearInterval(this.scanTimer);
    this.pause();
  }

  /** Our lease is lost: no claims until resume(). */
  pause(): void {
    this.paused = true;
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
  }

  /** Our lease is back: look for orphaned clones again. */
  resume(): void {
    if (this.stopped) return;
    this.paused = false;
    void this.scan(true);
  }

  /**
   * The members changed: look for orphaned clones when their names did (a
   * join, a leave, a lapsed lease) or claims are pending. A load update
   * alone reads nothing: every node writes one about a second after its IKE
   * SAs come or go, and each scan reads every clone's record.
   */
  membersChanged(names: boolean): void {
    if (!names && this.pending.size === 0) return;
    void this.scan(false);
  }

  /**
   * Read members and clone owners; schedule a claim for each clone without
   * a live owner, and import each clone named ours that is neither here nor
   * arriving (its watch event was missed, or a previous run of this node
   * held it). Runs one at a time; with `force` false the clones are read
   * only when the member names changed.
   */
  scan(force: boolean): Promise<void> {
    if (this.paused) return Promise.resolve();
    if (this.scanning) {
      this.rescan ||= force;
      return this.scanning;
    }
    this.scanning = this.scanOnce(force)
      .catch((err: Error) => this.opts.log.warn({ reason: err.message }, 'cannot read the cluster to look for orphaned clones'))
      .finally(() => {
        this.scanning = undefined;
        if (this.rescan && !this.stopped) {
          this.rescan = false;
          void this.scan(true);
        }
      });
    return this.scanning;
  }

  private async scanOnce(force: boolean): Promise<void> {
    const { client, cluster, node, handoff, log } = this.opts;
    const { status, records } = await readClusterState(client, cluster);
    const names = status.members.map((m) => m.node).join('\0');
    if (!force && names === this.lastMembers && this.pending.size === 0) return;
    this.lastMembers = names;
    const live = new Set(status.members.map((m) => m.node));
    const held = new Set(handoff.ownedClones().map((c) => `${c.family}/${c.index}`));
    for (const clone of status.clones) {
      const id = `${clone.family}/${clone.index}`;
      if (clone.owner === node) {
        if (held.has(id) || handoff.isArriving(clone.family, clone.index) || handoff.refusedEpoch(clone.family, clone.index) === clone.epoch || this.paused) continue;
        log.warn({ family: clone.family, index: clone.index, epoch: clone.epoch }, 'clone named ours but not held here: importing it');
        void handoff.arrive(clone.family, clone.index, { node, epoch: clone.epoch }, undefined);
        continue;
      }
      if (live.has(clone.owner) || this.pending.has(id) || this.paused) continue;
      // A dead node's clones go to the survivors in rendezvous order.
      const rank = claimOrder(clone, status.members).indexOf(node);
      if (rank < 0) continue;
      const delay = rank * (this.opts.staggerMs ?? DEFAULT_CLAIM_STAGGER_MS);
      log.info({ family: clone.family, index: clone.index, owner: clone.owner, epoch: clone.epoch, rank, delayMs: delay }, 'clone without a live owner: claiming it');
      // The record as read now: the claim is one transaction if nobody rewrites it meanwhile (reassign.ts).
      const record = records.get(handoff.ownerKey(clone.family, clone.index));
      const timer = setTimeout(() => {
        void this.claim(clone, { node: clone.owner, epoch: clone.epoch }, record).finally(() => this.pending.delete(id));
      }, delay);
      timer.unref();
      this.pending.set(id, timer);
    }
  }

  /** Claim one orphaned clone for this node: the transaction decides (see the file comment). */
  private async claim(clone: ClusterClone, from: CloneOwner, record?: SealedRecord): Promise<ReassignResult | undefined> {
    const { node, log } = this.opts;
    if (this.paused) return undefined;
    let result: ReassignResult;
    const claimedAt = Date.now();
    try {
      // The transaction names the probes' IDs and our arrival's requests taken (request-resync.ts).
      result = await reassignClone(this.opts, clone.family, clone.index, from, node, this.resyncAmendment(this.opts.spiPrefix), record, true);
    } catch (err) {
      this.stats.failed++;
      log.warn({ family: clone.family, index: clone.index, from: from.node, reason: (err as Error).message }, 'clone takeover failed');
      return undefined;
    }
    if (result.ok) {
      this.stats.claimed++;
      log.warn({ family: clone.family, index: clone.index, from: from.node, epoch: result.epoch }, 'clone taken over from a node that is gone');
      this.emit('claimed', clone.family, clone.index, from.node, result.epoch);
      // Imported at once, not only when our watch reports the new owner (the watch may be silent).
      void this.opts.handoff.arrive(clone.family, clone.index, { node, epoch: result.epoch }, from.node, { record: result.record, seenAt: claimedAt });
    } else if (result.reason === 'owner-changed') {
      this.stats.lost++;
      log.info({ family: clone.family, index: clone.index, from: from.node, detail: result.detail }, 'clone already claimed by another node');
    } else {
      this.stats.failed++;
      log.error({ family: clone.family, index: clone.index, from: from.node, reason: result.reason, detail: result.detail }, 'clone takeover failed: its record does not open');
    }
    return result;
  }

  /**
   * The record for a node that takes a clone over (a claim) or gets it back
   * (a send-back): the client's next request ID lies between the record's
   * lowest (nextRequestId) and every ID its owner may have sent (its fenced
   * mark); the new owner probes them and then runs its arrival, and the
   * transaction names all of those IDs taken (request-resync.ts resyncMarks).
   */
  private resyncAmendment(prefix: number | undefined, peerStays?: boolean): TransferAmendment {
    return (was) => {
      const children = this.opts.engine.policy(was.conn)?.children.length ?? 0;
      // An unfinished arrival's SPI draw is one Delete more; the new owner's Child SA SPIs are drawn (arrival-draw.ts).
      const marks = resyncMarks(was.nextRequestId, was.fencedNextRequestId ?? was.nextRequestId, arrivalRequestCount(staleDeleteCount(was), children));
      const draws = amendedDraws(this.opts.engine, was, prefix, children, marks.nextRequestId);
      return peerStays ? { ...marks, ...draws, peerStays } : { ...marks, ...draws };
    };
  }

  /** After a failed path test the clone goes back where it came from, if that node is alive. */
  private async afterArrival(sa: IkeSa, result: ArrivalResult, origin: ArrivalOrigin): Promise<void> {
    if (result.ok || result.step !== 'path-test') return;
    const { engine } = this.opts;
    // Our copy goes first (nothing is sent: the path from here does not work). etcd names us owner until
    // the clone is sent back or retired: a scan meanwhile must not import it here again.
    if (sa.state !== 'dead') engine.deleteIkeSa(sa, 'path test from this node failed');
    const release = this.opts.handoff.holdOff(origin.family, origin.index);
    try {
      await this.sendBack(origin);
    } finally {
      release();
    }
  }

  private async sendBack(origin: ArrivalOrigin): Promise<void> {
    const { node, log, client, cluster } = this.opts;
    const from = origin.from;
    // A clone sent back here whose path test fails here too is no path problem of one node (the client
    // is gone, or answers no node): sending it back again would bounce it.
    if (origin.sentBack) {
      log.warn({ family: origin.family, index: origin.index, from }, "clone path test failed here too after it was sent back: its keys go, the client's DPD clears it");
      await this.opts.handoff.retire(origin.family, origin.index, origin.epoch);
      return;
    }
    const live = from !== undefined && from !== node && (await readClusterStatus(client, cluster).then((s) => s.members.some((m) => m.node === from), () => false));
    if (!live) {
      log.warn({ family: origin.family, index: origin.index, from }, 'clone path test failed and the node it came from is gone: the client\'s DPD clears it');
      // Nobody can use it: its keys go (a takeover of a client that left ends here).
      await this.opts.handoff.retire(origin.family, origin.index, origin.epoch);
      return;
    }
    try {
      // The path test (our first request here) never got an answer: whether it reached the client (only
      // the answers were lost) or not, the node it goes back to finds the client's next message ID with
      // probes before its own path test (request-resync.ts), and the client's path still ends there.
      const back = await reassignClone(this.opts, origin.family, origin.index, { node, epoch: origin.epoch }, from, this.resyncAmendment(this.opts.spiPrefixOf?.(from), true));
      if (!back.ok) throw new Error(`${back.reason}: ${back.detail}`);
      this.stats.returned++;
      log.warn({ family: origin.family, index: origin.index, to: from, epoch: back.epoch }, 'clone path test failed: sent back to the node it came from');
      this.emit('returned', origin.family, origin.index, from, back.epoch);
    } catch (err) {
      this.stats.failed++;
      log.error({ family: origin.family, index: origin.index, to: from, reason: (err as Error).message }, 'clone path test failed and it cannot go back');
    }
  }
}
