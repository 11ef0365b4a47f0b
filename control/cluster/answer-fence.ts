// Fencing of answers on a cluster node (architecture §8). Requests a node
// sends on the clones it owns are fenced by an etcd write first (handoff.ts);
// answers cannot wait for one (responders answer in one step), so a node
// answers on its clones only while it is sure its lease still stands: once it
// may have lapsed, a survivor may own the clone, and an answer from here (a
// fresh one, or a retransmission of the cached last response) would be a
// second voice on the same IKE SA and message ID. Such requests are dropped,
// counted ('fenced', IkeEngineOptions.mayAnswer); other SAs are answered.
//
// Sure means: the lease was last confirmed by a keep-alive sent at time t,
// so etcd keeps it at least until t + TTL (it counts from when it received
// it, after t); we stop answering `margin` before that, for clock rates and
// scheduling. etcd saying the lease is lost stops answers at once. Keep-alives
// go out every TTL/3 whether or not the last was answered, and their answers
// come in order on their stream: each answer confirms the oldest keep-alive
// not yet answered, never a later one (a new stream starts the count again).
//
// Owner: the main thread.
import type { Lease } from 'etcd3';
import type { IkeSa } from '../ike/ike-sa.js';
import type { Logger } from '../log.js';

/** Keep-alives remembered as sent and not yet answered, at most (three go out per TTL). */
const MAX_UNANSWERED_KEEPALIVES = 16;

/** What may the node assume of its lease: how long it certainly stands. */
export class LeaseClock {
  /** When the keep-alive that etcd last confirmed was sent (at first: when the lease was taken). */
  private confirmedSentAt: number;
  /** When each keep-alive still unanswered on the current stream was sent, oldest first. */
  private unanswered: number[] = [];
  private lost = false;

  private lease: Pick<Lease, 'on'>;

  constructor(
    lease: Pick<Lease, 'on'>,
    private readonly ttlMs: number,
    /** When the lease was asked for (it stands at least TTL from then). */
    grantedAt: number,
    private readonly now: () => number = Date.now,
  ) {
    this.lease = lease;
    this.confirmedSentAt = grantedAt;
    this.follow(lease, grantedAt);
  }

  /** The node joined again under a new lease (membership.ts): from now on that one counts, not the lost one. */
  follow(lease: Pick<Lease, 'on'>, grantedAt: number): void {
    this.lease = lease;
    this.lost = false;
    this.confirmedSentAt = grantedAt;
    this.unanswered = [];
    // A new keep-alive stream: what was sent on the one before is never answered.
    lease.on('keepaliveEstablished', () => {
      if (this.lease === lease) this.unanswered = [];
    });
    lease.on('keepaliveFired', () => {
      // Bounded (a stream whose answers stop is replaced within a TTL): past the bound an answer confirms an older one, which only errs early.
      if (this.lease === lease && this.unanswered.length < MAX_UNANSWERED_KEEPALIVES) this.unanswered.push(this.now());
    });
    lease.on('keepaliveSucceeded', () => {
      if (this.lease !== lease) return;
      const sentAt = this.unanswered.shift();
      if (sentAt !== undefined) this.confirmedSentAt = Math.max(this.confirmedSentAt, sentAt);
    });
    lease.on('lost', () => {
      if (this.lease === lease) this.lost = true;
    });
  }

  /** Stop answering this long before the lease may lapse: a quarter of the TTL, at most a second. */
  get marginMs(): number {
    return Math.min(1000, this.ttlMs / 4);
  }

  /** The lease certainly still stands. */
  standing(): boolean {
    return !this.lost && this.now() < this.confirmedSentAt + this.ttlMs - this.marginMs;
  }
}

export interface AnswerFenceOptions {
  /** Whether this node owns the clone (CloneHandoff.owns). */
  owns: (sa: IkeSa) => boolean;
  lease: Pick<LeaseClock, 'standing'>;
  log: Logger;
}

export class AnswerFence {
  /** Requests left unanswered because the lease may have lapsed. */
  fenced = 0;
  private logged = false;

  constructor(private readonly opts: AnswerFenceOptions) {}

  /** IkeEngineOptions.mayAnswer. */
  mayAnswer(sa: IkeSa): boolean {
    if (!this.opts.owns(sa)) return true;
    if (this.opts.lease.standing()) {
      this.logged = false;
      return true;
    }
    this.fenced++;
    if (!this.logged) {
      this.logged = true;
      this.opts.log.error({ ike: sa.id }, 'cluster lease may have lapsed: requests on this node\'s clones go unanswered');
    }
    return false;
  }
}
