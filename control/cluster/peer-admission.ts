// Exact per-peer limits across a cluster (RFC 7791 §8; architecture §8): one
// instance per `kind`, IKE SAs (ikeSasPerPeer) or Child SAs (childSasPerPeer).
// The counts other nodes wrote reach a node through its watch, a round trip
// late: two nodes admitting clones (or new Child SAs) of one peer at the same
// time could each pass the limit by one. So a clone request, a peer's
// CREATE_CHILD_SA for a new Child SA (RFC 7296 §1.3.1; rekeys replace one and
// are not admitted) and an IKE_AUTH's first Child SA (for the peer its AUTH
// payload proves) are admitted in etcd before they are answered
// (PeerResources.prepare, answer-prepare.ts, control/ike/answer-preparation.ts); a Child SA the
// gateway creates itself (after a clone arrives) is admitted by its caller
// (admitOwn):
//
//   read peers/<peer>/nodes/ (every node's count of the peer, at revision R)
//   if the sum of `kind` with our own count reaches the limit: refused (NO_ADDITIONAL_SAS)
//   else one transaction: if every key under peers/<peer>/nodes/ has
//     mod_revision <= R (none written or created since the read) then our
//     count of `kind` = ours + 1 (under our lease)
//
// The first decision uses the counts the watch brought instead of a read,
// when they leave room: they are etcd's as of the last event applied (R), and
// the transaction compares every other node's key of the peer against R the
// same way (a key written or created since fails it). A refusal is never
// decided on followed counts: it reads first.
//
// A transaction that fails lost to another node's admission (or to a count
// that changed): read again and decide again, at most `retries` times more;
// then the request is refused with NO_ADDITIONAL_SAS and counted as contention.
// The decision replaces the engine's own count for that one request
// (PeerResources.admittedIkeSaCount / admittedChildSaCount), and the admitted
// SA is counted already when it comes up (peer-accounting.ts); a slot whose SA
// did not come up goes back right after the answer. Admissions of one kind of
// one peer on one node run one after another (the two kinds write the same
// key: one that lost to the other is tried again). etcd unreachable: no
// decision, the followed counts decide as before.
//
// Owner: the main thread.
import type { Etcd3 } from 'etcd3';
import type { IkeSa } from '../ike/ike-sa.js';
import type { PreparedRelease } from '../ike/peer-resources.js';
import type { Logger } from '../log.js';
import type { AdmittedSlot, ClusterPeerAccounting } from './peer-accounting.js';
import { parsePeerCount, type PeerCount, peerNodeKey, peerPrefix, prefixEnd } from './resource-keys.js';

/** Transactions after the first that lost to another node's, before the request is refused. */
export const DEFAULT_ADMISSION_RETRIES = 4;

/** What an admission counts: the peer's IKE SAs or its Child SAs (a field of PeerCount). */
export type AdmissionKind = keyof PeerCount;

const WHAT: Record<AdmissionKind, string> = { ike: 'clone', child: 'Child SA' };

export interface PeerAdmissionOptions {
  client: Etcd3;
  cluster: string;
  node: string;
  /** This node's lease (read at each write: a node that joins again has a new one). */
  readonly leaseId: string;
  log: Logger;
  accounting: ClusterPeerAccounting;
  /** What is admitted (default 'ike'). */
  kind?: AdmissionKind;
  /** ikeSasPerPeer (or childSasPerPeer); undefined: no limit to admit against (nothing is asked of etcd). */
  limit: () => number | undefined;
  retries?: number;
}

export interface PeerAdmissionStats {
  admitted: number;
  /** Refused: the peer's SAs of this kind over the cluster were at the limit. */
  refusedAtLimit: number;
  /** Refused: every transaction lost to another node's admission. */
  contention: number;
  /** Transactions that lost and were tried again. */
  retries: number;
  /** etcd failed: the followed counts decided. */
  failed: number;
  /** Admitted by the first transaction on the followed counts (no read). */
  fromFollowed: number;
}

export class PeerAdmission {
  readonly stats: PeerAdmissionStats = { admitted: 0, refusedAtLimit: 0, contention: 0, retries: 0, failed: 0, fromFollowed: 0 };
  /** The count each pending request was decided on, until just after its answer. */
  private readonly decided = new WeakMap<IkeSa, number>();
  /** Per peer: the last admission in line (one at a time per peer on this node). */
  private readonly queues = new Map<string, Promise<void>>();

  readonly kind: AdmissionKind;

  constructor(private readonly opts: PeerAdmissionOptions) {
    this.kind = opts.kind ?? 'ike';
  }

  /**
   * For PeerResources.prepare on a request of `sa`'s peer for a new SA of
   * this kind: settles once decided, to the release the engine calls after
   * the answer (the verdict holds until then; an admitted slot whose SA did
   * not come up by then goes back); undefined when nothing was decided.
   * `peer` (default: the SA's) is asked only when there is a limit to admit
   * against: for an IKE_AUTH it verifies the AUTH payload.
   */
  admit(sa: IkeSa, peer: () => string | undefined = () => sa.peerKey): Promise<PreparedRelease | undefined> | undefined {
    let release: PreparedRelease | undefined;
    const run = this.enqueue(peer, async (p, limit) => {
      release = await this.decide(sa, p, limit);
    });
    return run?.then(() => release);
  }

  /**
   * For an SA this node creates itself (not an answer): resolves true when
   * admitted (its slot is held until `settle` says whether it came up), false
   * when refused, undefined when nothing was decided (no limit, no peer, etcd
   * failed: the followed counts decide).
   */
  admitOwn(sa: IkeSa): Promise<OwnAdmission | undefined> | undefined {
    let verdict: OwnAdmission | undefined;
    const run = this.enqueue(() => sa.peerKey, async (peer, limit) => {
      verdict = await this.attempt<OwnAdmission>(
        peer,
        limit,
        (slot) => {
          let settled = false;
          // The first word counts: an arrival that ended early settles every verdict it did not use.
          const settle = (up: boolean) => {
            if (settled) return;
            settled = true;
            if (!up) this.opts.accounting.withdraw(peer, slot);
          };
          return { admitted: true, settle };
        },
        () => ({ admitted: false }),
      );
    });
    return run?.then(() => verdict);
  }

  /** For PeerResources.admittedIkeSaCount (or admittedChildSaCount). */
  admittedCount(sa: IkeSa): number | undefined {
    return this.decided.get(sa);
  }

  /** For PeerResources.admittedIkeSaCount. */
  admittedIkeSaCount(sa: IkeSa): number | undefined {
    return this.admittedCount(sa);
  }

  private enqueue(peerOf: () => string | undefined, run: (peer: string, limit: number) => Promise<void>): Promise<void> | undefined {
    const limit = this.opts.limit();
    if (limit === undefined) return undefined;
    const peer = peerOf();
    if (!peer) return undefined;
    const next = (this.queues.get(peer) ?? Promise.resolve()).then(() => run(peer, limit));
    this.queues.set(peer, next);
    void next.then(() => {
      if (this.queues.get(peer) === next) this.queues.delete(peer);
    });
    return next;
  }

  /**
   * Decide a request: the decided count replaces the engine's own for its
   * answer, until `release`, which also gives back an admitted slot whose SA
   * did not come up by then.
   */
  private async decide(sa: IkeSa, peer: string, limit: number): Promise<PreparedRelease | undefined> {
    const verdict = await this.attempt<{ count: number; slot?: AdmittedSlot }>(peer, limit, (slot, count) => ({ count, slot }), (count) => ({ count }));
    if (verdict === undefined) return undefined;
    this.decided.set(sa, verdict.count);
    return () => {
      if (verdict.slot) this.opts.accounting.withdraw(peer, verdict.slot);
      this.decided.delete(sa);
    };
  }

  /**
   * The transaction loop: `onAdmitted` with the slot written and the count it
   * was decided on, `onRefused` with the count (the limit on contention);
   * undefined when etcd failed.
   */
  private async attempt<T>(peer: string, limit: number, onAdmitted: (slot: AdmittedSlot, count: number) => T, onRefused: (count: number) => T): Promise<T | undefined> {
    const { client, cluster, node, log, accounting } = this.opts;
    const kind = this.kind;
    const prefix = `${peerPrefix(cluster, peer)}nodes/`;
    const ours = peerNodeKey(cluster, peer, node);
    try {
      // First from the counts the watch brought (no read: one round trip, an arrival's CREATE_CHILD_SA waits
      // for it), when they say there is room; a refusal, or a transaction that lost, reads etcd.
      let followed = accounting.followedElsewhere(peer, kind);
      for (let attempt = 0; attempt <= (this.opts.retries ?? DEFAULT_ADMISSION_RETRIES); attempt++) {
        if (attempt > 0) this.stats.retries++;
        const mine = accounting.ownCount(peer);
        let others: number;
        let compare: TxnCompare[];
        const fast = followed !== undefined && followed.count + mine[kind] < limit;
        if (followed && fast) {
          others = followed.count;
          compare = sinceFollowed(prefix, ours, followed.revision);
        } else {
          // Our own count being written (an arrival's ike-up, a Child SA just up) would change our key after
          // the read and fail the transaction: that write first, then the read.
          await accounting.flushed();
          const read = await client.getAll().prefix(prefix).exec();
          others = 0;
          for (const kv of read.kvs) if (kv.key.toString() !== ours) others += parsePeerCount(kv.value.toString())?.[kind] ?? 0;
          compare = [{ key: Buffer.from(prefix), range_end: prefixEnd(prefix), target: 'Mod', result: 'Less', mod_revision: String(BigInt(read.header.revision) + 1n) }];
        }
        followed = undefined;
        const count = others + accounting.ownCount(peer)[kind];
        if (count >= limit) {
          this.stats.refusedAtLimit++;
          return onRefused(count);
        }
        const now = accounting.ownCount(peer);
        const written = { ...now, [kind]: now[kind] + 1 };
        const txn = await client.kv.txn({
          compare,
          success: [{ request_put: { key: Buffer.from(ours), value: Buffer.from(JSON.stringify(written)), lease: this.opts.leaseId } }],
          failure: [],
        });
        if (!txn.succeeded) continue;
        this.stats.admitted++;
        if (fast) this.stats.fromFollowed++;
        return onAdmitted(accounting.admitted(peer, written, kind), count);
      }
      this.stats.contention++;
      log.warn({ peer, limit }, `${WHAT[kind]} refused: every admission lost to another node's (NO_ADDITIONAL_SAS)`);
      return onRefused(limit);
    } catch (err) {
      this.stats.failed++;
      log.warn({ peer, reason: (err as Error).message }, `cannot admit the ${WHAT[kind]} in etcd: the followed counts decide`);
      return undefined;
    }
  }
}

type TxnCompare = { key: Buffer; range_end: Buffer; target: 'Mod'; result: 'Less'; mod_revision: string };

/**
 * The followed counts still hold: no other node's key of the peer changed
 * after `revision` (the counts are etcd's as of it). Our own key is left
 * out: our count is ours, not read (a write of it just before the
 * transaction, sent first, lands first and is overwritten with the newer one).
 */
function sinceFollowed(prefix: string, ours: string, revision: bigint): TxnCompare[] {
  const after = String(revision + 1n);
  return [
    { key: Buffer.from(prefix), range_end: Buffer.from(ours), target: 'Mod', result: 'Less', mod_revision: after },
    { key: Buffer.from(`${ours}\0`), range_end: prefixEnd(prefix), target: 'Mod', result: 'Less', mod_revision: after },
  ];
}

/** The verdict on an SA the node creates itself (PeerAdmission.admitOwn; sa-transfer.ts ChildAdmissionVerdict). */
export type OwnAdmission =
  | { admitted: true; /** Whether the SA came up (the first call counts): a slot whose SA did not goes back. */ settle: (up: boolean) => void }
  | { admitted: false };
