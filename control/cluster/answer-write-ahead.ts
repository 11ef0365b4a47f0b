// Write-ahead of answers on a cluster node (architecture §8): a request the
// peer sends on a clone this node owns (DPD, its Child SA rekeys and deletes,
// UPDATE_SA_ADDRESSES) moves the peer's message ID (RFC 7296 §2.2). Its answer
// leaves only once etcd holds the clone's record with that ID moved past it,
// written under `owner == me and epoch == e` (handoff.ts sync): a node that
// takes the clone over after we die then expects the peer's next request,
// not the one it already had answered; and the record carries the answer
// (the response cache), so a retransmission of that request reaching the
// survivor gets it again (RFC 7296 §2.1).
//
// The engine has processed the request and cached its response when it asks
// (IkeEngineOptions.holdResponse); the write starts at once, in the same
// turn, so the record also names what the request changed (a rekeyed Child
// SA's SPIs). Then:
// - written: the answer goes out (answers of one clone in order);
// - refused (another node owns the clone): handoff.ts drops the clone and
//   the answer never leaves;
// - no verdict (etcd failed): written again every RETRY_MS while the lease
//   certainly stands (answer-fence.ts LeaseClock), then the answer is dropped,
//   counted; the peer retransmits, and the retransmission is answered from
//   the cache once a write covered it (mayAnswer starts that write).
// A request that ends the clone (the peer's Delete of the IKE SA) is answered
// at once: the clone's keys leave etcd with it (handoff.ts retire), so there
// is nothing a survivor could take over.
// Retransmissions of a request whose record is written are answered from the
// response cache as before; while it is not, they are not answered (mayAnswer
// false, counted by the engine as 'fenced'). SAs that are not owned clones
// are never held and cost nothing.
//
// Owner: the main thread, next to the engine and handoff.ts.
import type { IkeSa } from '../ike/ike-sa.js';
import type { Logger } from '../log.js';
import type { LeaseClock } from './answer-fence.js';
import { FENCE_RETRY_MS, type CloneHandoff } from './handoff.js';

/** How often a held answer's write is tried again after etcd gave no verdict. */
export const RETRY_MS = FENCE_RETRY_MS;

/** What of handoff.ts the write-ahead uses. */
export type RecordWriter = Pick<CloneHandoff, 'owns' | 'recordedPeer' | 'sync' | 'on'>;

export interface AnswerWriteAheadOptions {
  records: RecordWriter;
  lease: Pick<LeaseClock, 'standing'>;
  log: Logger;
  retryMs?: number;
}

export interface AnswerWriteAheadStats {
  /** Answers that waited for their write. */
  held: number;
  /** ... and left once it committed. */
  sent: number;
  /** Never sent: the write was refused (the clone was dropped) or the clone left this node meanwhile. */
  discarded: number;
  /** Never sent: etcd gave no verdict until the lease might have lapsed (the peer retransmits). */
  dropped: number;
  /** Retransmissions (or requests) not answered because the record did not cover the peer's message ID yet. */
  unanswered: number;
}

interface HeldAnswer {
  /** The peer's next request ID once this answer is out: the record must name it (or a later one). */
  peer: number;
  send: () => void;
}

export class AnswerWriteAhead {
  readonly stats: AnswerWriteAheadStats = { held: 0, sent: 0, discarded: 0, dropped: 0, unanswered: 0 };
  private readonly held = new Map<IkeSa, HeldAnswer[]>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: AnswerWriteAheadOptions) {
    // The event names what was written: a clone that ended meanwhile (the peer's Delete) is no longer owned.
    opts.records.on('recorded', (sa, peer) => this.release(sa, peer));
    // A refused write dropped the clone: its answers never leave.
    opts.records.on('fenced', (sa) => this.release(sa));
    // The clone ended here (the peer's Delete of it): its keys leave etcd and nobody takes it over, so
    // the answer that ended it has nothing to wait for (RFC 7296 §1.4.1: a Delete is answered).
    opts.records.on('ended', (sa) => this.release(sa, Number.POSITIVE_INFINITY));
  }

  /** IkeEngineOptions.holdResponse: the answer on an owned clone waits for the record with the peer's moved message ID. */
  holdResponse(sa: IkeSa, send: () => void): boolean {
    const { records } = this.opts;
    if (!records.owns(sa) || this.covered(sa)) return false;
    const list = this.held.get(sa) ?? [];
    list.push({ peer: sa.peerRequestId, send });
    this.held.set(sa, list);
    this.stats.held++;
    void records.sync(sa);
    this.arm();
    return true;
  }

  /**
   * IkeEngineOptions.mayAnswer (with answer-fence.ts): a request on an owned
   * clone whose record does not yet name the peer's message ID as moved past
   * the last one answered is not answered now, from the cache either; the
   * write runs (again), and the held answer, or the cache for the peer's next
   * retransmission, answers once it is done.
   */
  mayAnswer(sa: IkeSa): boolean {
    if (!this.opts.records.owns(sa) || this.covered(sa)) return true;
    this.stats.unanswered++;
    void this.opts.records.sync(sa);
    return false;
  }

  /** Answers held now (all clones). */
  get pending(): number {
    let n = 0;
    for (const list of this.held.values()) n += list.length;
    return n;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.held.clear();
  }

  private covered(sa: IkeSa): boolean {
    const recorded = this.opts.records.recordedPeer(sa);
    return recorded !== undefined && recorded >= sa.peerRequestId;
  }

  /** Send what the record covers, in order; forget what can no longer leave. */
  private release(sa: IkeSa, recorded = this.opts.records.recordedPeer(sa)): void {
    const list = this.held.get(sa);
    if (!list) return;
    while (list.length > 0 && recorded !== undefined && recorded >= list[0]!.peer) {
      list.shift()!.send();
      this.stats.sent++;
    }
    if (list.length > 0 && (!this.opts.records.owns(sa) || sa.state === 'dead')) {
      // Dropped by fencing, handed off, or ended: the record is not ours to write any more.
      this.stats.discarded += list.length;
      this.opts.log.warn({ ike: sa.id, answers: list.length }, 'answer not sent: the clone is no longer this node\'s');
      list.length = 0;
    }
    if (list.length === 0) this.held.delete(sa);
  }

  /** While answers are held, their writes are tried again; past the lease, they are dropped. */
  private arm(): void {
    if (this.timer || this.held.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const [sa, list] of [...this.held]) {
        this.release(sa);
        if (!this.held.has(sa)) continue;
        if (!this.opts.lease.standing()) {
          this.stats.dropped += list.length;
          this.opts.log.warn({ ike: sa.id, answers: list.length }, 'answer dropped: its message ID could not be written to etcd while the lease stood');
          this.held.delete(sa);
          continue;
        }
        void this.opts.records.sync(sa);
      }
      this.arm();
    }, this.opts.retryMs ?? RETRY_MS);
    this.timer.unref();
  }
}
