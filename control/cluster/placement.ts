// Placement of a client's clones over the cluster (architecture §8): with
// `clone: { per: node }` the node that authenticated a client clones its IKE
// SA once per other member (RFC 7791 §5.2: either end may clone) and hands
// clone k to the k-th node of a rendezvous ranking weighted by load, so each
// node carries one member of the family and its own Child SA (CLUSTER design
// §2). The original stays where it was authenticated. A family is spread once,
// by the node that authenticated the client, and never for a client behind a
// NAT (RFC 4555 §2.3: another node's address would not reach it).
//
// Rendezvous (highest random weight) hashing: every node scores each
// (family, k) independently; the ranking changes only for the keys of a node
// that joins or leaves. Weighted as in "weighted rendezvous hashing":
// score = -w / ln(h) with h uniform in (0,1) and w = 1 / (1 + load).
//
// Owner: the main thread.
import { createHash } from 'node:crypto';
import type { IkeContext } from '../ike/context.js';
import type { IkeSa } from '../ike/ike-sa.js';
import type { Logger } from '../log.js';
import type { CloneHandoff } from './handoff.js';
import type { MemberInfo } from './membership.js';

/** Members ranked for `key`, best first (weighted rendezvous hashing). */
export function rendezvousRank(key: string, members: readonly MemberInfo[]): MemberInfo[] {
  const score = (m: MemberInfo): number => {
    const digest = createHash('sha256').update(`${key}\0${m.node}`).digest();
    // 53 random bits -> (0, 1): never 0 nor 1, so the logarithm is finite and negative.
    const h = (Number(digest.readBigUInt64BE(0) >> 11n) + 0.5) / 2 ** 53;
    const weight = 1 / (1 + Math.max(0, m.load));
    return -weight / Math.log(h);
  };
  return [...members].map((m) => ({ m, s: score(m) })).sort((a, b) => b.s - a.s || a.m.node.localeCompare(b.m.node)).map((x) => x.m);
}

/**
 * The node for each clone 1..n-1 of `family` (n = members): distinct nodes
 * other than `self` (which keeps the original), each clone k taking the best
 * ranked node not yet given one.
 */
export function placeClones(family: string, self: string, members: readonly MemberInfo[]): string[] {
  const others = members.filter((m) => m.node !== self);
  const taken = new Set<string>();
  const out: string[] = [];
  for (let k = 1; k <= others.length; k++) {
    const pick = rendezvousRank(`${family}/${k}`, others).find((m) => !taken.has(m.node))!;
    taken.add(pick.node);
    out.push(pick.node);
  }
  return out;
}

export interface NodePlacementOptions {
  engine: IkeContext;
  handoff: CloneHandoff;
  node: string;
  members: () => Promise<MemberInfo[]>;
  log: Logger;
}

/** How many of the latest placements NodePlacement keeps for inspection. */
export const PLACEMENTS_KEPT = 64;

export interface PlacedClone {
  family: string;
  index: number;
  node: string;
  outcome: 'handed-off' | 'failed';
  reason?: string;
}

/** Clones new sessions of `per: node` connections and hands each clone to its node. */
export class NodePlacement {
  /** The latest placements, oldest first (tests read them): at most PLACEMENTS_KEPT, not one per client ever. */
  readonly placed: PlacedClone[] = [];

  constructor(private readonly opts: NodePlacementOptions) {}

  start(): this {
    this.opts.engine.on('session-up', (sessionId, sa) => {
      if (sa.policy.clone?.per !== 'node') return;
      // A clone that arrives from another node starts a session here too: only
      // the node that authenticated the client spreads its family, once.
      if (sa.familyIndex !== 0) return;
      void this.spread(`${this.opts.node}.${sessionId}`, sa);
    });
    return this;
  }

  /** Clone `original` once per other member and hand clone k to its node (sequentially: one exchange at a time). */
  async spread(family: string, original: IkeSa): Promise<PlacedClone[]> {
    const { engine, handoff, node, log } = this.opts;
    if (!original.peerClone || !original.peerMobike) {
      log.info({ ike: original.id, family }, 'per: node placement skipped: the peer cannot be cloned and moved (RFC 7791 §5.1, RFC 4555)');
      return [];
    }
    if (original.natRemote) {
      // Behind a NAT another node's address cannot reach the client (the NAT has no mapping for it), so
      // a responder-side address change is not supported (RFC 4555 §2.3): the family stays where it is.
      log.info({ ike: original.id, family }, 'per: node placement skipped: the peer is behind a NAT (RFC 4555 §2.3)');
      return [];
    }
    const targets = placeClones(family, node, await this.opts.members());
    const out: PlacedClone[] = [];
    for (const [i, target] of targets.entries()) {
      const index = i + 1;
      let placed: PlacedClone;
      try {
        const clone = await engine.cloneIkeSa(original);
        await handoff.adopt(clone, family, index);
        await handoff.handOff(clone, target);
        placed = { family, index, node: target, outcome: 'handed-off' };
      } catch (err) {
        placed = { family, index, node: target, outcome: 'failed', reason: (err as Error).message };
        log.warn({ family, index, node: target, reason: placed.reason }, 'clone placement failed');
      }
      out.push(placed);
      this.placed.push(placed);
      if (this.placed.length > PLACEMENTS_KEPT) this.placed.splice(0, this.placed.length - PLACEMENTS_KEPT);
    }
    return out;
  }
}
