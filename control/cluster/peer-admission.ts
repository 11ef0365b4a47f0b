// Exact per-peer IKE SA limits across a cluster (RFC 7791 §8; architecture
// §8). The counts other nodes wrote reach a node through its watch, a round
// trip late: two nodes admitting clones of one peer at the same time could
// each pass ikeSasPerPeer by one. So a clone request is admitted in etcd
// before it is answered (PeerResources.prepare, control/ike/answer-preparation.ts):
//
//   read peers/<peer>/nodes/ (every node's count of the peer, at revision R)
//   if the sum with our own count reaches the limit: refused (NO_ADDITIONAL_SAS)
//   else one transaction: if every key under peers/<peer>/nodes/ has
//     mod_revision <= R (none written or created since the read) then our
//     count = ours + 1 (under our lease)
//
// A transaction that fails lost to another node's admission (or to a count
// that changed): read again and decide again, at most `retries` times more;
// then the clone is refused with NO_ADDITIONAL_SAS and counted as contention.
// The decision replaces the engine's own count for that one request
// (PeerResources.admittedIkeSaCount), and the admitted clone is counted
// already when it comes up (peer-accounting.ts); a slot whose clone did not
// come up goes back right after the answer. Admissions of one peer on one node
// run one after another. etcd unreachable: no decision, the followed counts
// decide as before.
//
// Owner: the main thread.
import type { Etcd3 } from 'etcd3';
import type { IkeSa } from '../ike/ike-sa.js';
import type { Logger } from '../log.js';
import type { ClusterPeerAccounting } from './peer-accounting.js';
import { parsePeerCount, peerNodeKey, peerPrefix, prefixEnd } from './resource-keys.js';

/** Transactions after the first that lost to another node's, before the clone is refused. */
export const DEFAULT_ADMISSION_RETRIES = 4;

export interface PeerAdmissionOptions {
  client: Etcd3;
  cluster: string;
  node: string;
  /** This node's lease (read at each write: a node that joins again has a new one). */
  readonly leaseId: string;
  log: Logger;
  accounting: ClusterPeerAccounting;
  /** ikeSasPerPeer; undefined: no limit to admit against (nothing is asked of etcd). */
  limit: () => number | undefined;
  retries?: number;
}

export interface PeerAdmissionStats {
  admitted: number;
  /** Refused: the peer's IKE SAs over the cluster were at the limit. */
  refusedAtLimit: number;
  /** Refused: every transaction lost to another node's admission. */
  contention: number;
  /** Transactions that lost and were tried again. */
  retries: number;
  /** etcd failed: the followed counts decided. */
  failed: number;
}

export class PeerAdmission {
  readonly stats: PeerAdmissionStats = { admitted: 0, refusedAtLimit: 0, contention: 0, retries: 0, failed: 0 };
  /** The count each pending request was decided on, until just after its answer. */
  private readonly decided = new WeakMap<IkeSa, number>();
  /** Per peer: the last admission in line (one at a time per peer on this node). */
  private readonly queues = new Map<string, Promise<void>>();

  constructor(private readonly opts: PeerAdmissionOptions) {}

  /** For PeerResources.prepare on a clone request of `sa`'s peer: settles once decided. */
  admit(sa: IkeSa): Promise<void> | undefined {
    const peer = sa.peerKey;
    const limit = this.opts.limit();
    if (!peer || limit === undefined) return undefined;
    const run = (this.queues.get(peer) ?? Promise.resolve()).then(() => this.decide(sa, peer, limit));
    this.queues.set(peer, run);
    void run.then(() => {
      if (this.queues.get(peer) === run) this.queues.delete(peer);
    });
    return run;
  }

  /** For PeerResources.admittedIkeSaCount. */
  admittedIkeSaCount(sa: IkeSa): number | undefined {
    return this.decided.get(sa);
  }

  private async decide(sa: IkeSa, peer: string, limit: number): Promise<void> {
    const { client, cluster, node, log, accounting } = this.opts;
    const prefix = `${peerPrefix(cluster, peer)}nodes/`;
    const ours = peerNodeKey(cluster, peer, node);
    try {
      for (let attempt = 0; attempt <= (this.opts.retries ?? DEFAULT_ADMISSION_RETRIES); attempt++) {
        if (attempt > 0) this.stats.retries++;
        const read = await client.getAll().prefix(prefix).exec();
        let others = 0;
        for (const kv of read.kvs) if (kv.key.toString() !== ours) others += parsePeerCount(kv.value.toString())?.ike ?? 0;
        const mine = accounting.ownCount(peer);
        const count = others + mine.ike;
        if (count >= limit) {
          this.stats.refusedAtLimit++;
          return this.decideFor(sa, count);
        }
        const written = { ike: mine.ike + 1, child: mine.child };
        const txn = await client.kv.txn({
          compare: [{ key: Buffer.from(prefix), range_end: prefixEnd(prefix), target: 'Mod', result: 'Less', mod_revision: String(BigInt(read.header.revision) + 1n) }],
          success: [{ request_put: { key: Buffer.from(ours), value: Buffer.from(JSON.stringify(written)), lease: this.opts.leaseId } }],
          failure: [],
        });
        if (!txn.succeeded) continue;
        this.stats.admitted++;
        const slot = accounting.admitted(peer, written);
        // The answer is sent in the turn this settles; a clone that did not come up by then gives its slot back.
        setImmediate(() => accounting.withdraw(peer, slot));
        return this.decideFor(sa, count);
      }
      this.stats.contention++;
      log.warn({ peer, limit }, 'clone refused: every admission lost to another node\'s (NO_ADDITIONAL_SAS)');
      this.decideFor(sa, limit);
    } catch (err) {
      this.stats.failed++;
      log.warn({ peer, reason: (err as Error).message }, 'cannot admit the clone in etcd: the followed counts decide');
    }
  }

  private decideFor(sa: IkeSa, count: number): void {
    this.decided.set(sa, count);
    setImmediate(() => this.decided.delete(sa));
  }
}
