// The Security Policy Database of the I/O side (RFC 4301 §4.4.1), outbound:
// inner packet -> traffic selectors -> Child SA -> owner worker.
//
// Several Child SAs may cover the same selectors: the clones of one
// connection's Child SA, one per cloned IKE SA and so one per worker (RFC 7791,
// architecture §5). They form a family; a packet picks a member by the hash of its
// 5-tuple, so every worker carries traffic while every flow stays on one SA
// and keeps its order. A fragment hashes without ports (only the first has
// them, RFC 4301 §7), so all fragments of a datagram take one SA (packet.ts
// flowHash). When the family changes size, flows may move once.
// RFC 9611 per-resource SAs (architecture §5.1): once a family has one, only
// those send; the fallback SA (and any other member) only receives, as RFC
// 9611 §4 has it serve the workers without a per-resource SA of their own.
//
// Owner: the I/O thread (main thread).
import { flowHash, flowMatches, newFlowTuple, parseFlow, type Selector } from './packet.js';
import type { SaRecord } from './sad.js';
import type { PolicyFamily } from './messages.js';

interface Family {
  readonly key: string;
  readonly localTs: Selector[];
  readonly remoteTs: Selector[];
  /** SAs carrying outbound traffic, in installation order. */
  readonly members: SaRecord[];
  /** The RFC 9611 per-resource ones among them: when there are any, they alone send. */
  readonly perResource: SaRecord[];
}

/** Why lookup() found no SA. */
export type SpdMiss = 'malformed' | 'no-policy';

export class Spd {
  /** In insertion order: the first family whose selectors cover a packet takes it. */
  private readonly families: Family[] = [];
  private readonly flow = newFlowTuple();
  /**
   * Called after every add and remove, or once after a batch() that changed
   * anything (workers that read their own TUN queues get a copy: worker-spd.ts).
   */
  onChange: (() => void) | undefined;
  /** batch() calls in progress, and whether one of them changed the table. */
  private batchDepth = 0;
  private changedInBatch = false;

  /** Families and their member counts (status, tests). */
  get familySizes(): number[] {
    return this.families.map((f) => f.members.length);
  }

  /**
   * Run `fn`, whose adds and removes are one change: onChange is called once
   * at the end (when anything changed), not after each. A handover is
   * several steps (the successor in, its predecessors out, a retired sender
   * out); a copy of the table taken between two of them can name no sender
   * for a family that has one before and after, and a worker holding that
   * copy would drop the family's packets (no policy). Batches nest.
   */
  batch<T>(fn: () => T): T {
    this.batchDepth++;
    try {
      return fn();
    } finally {
      if (--this.batchDepth === 0 && this.changedInBatch) {
        this.changedInBatch = false;
        this.onChange?.();
      }
    }
  }

  private changed(): void {
    if (this.batchDepth > 0) this.changedInBatch = true;
    else this.onChange?.();
  }

  /** Let `sa` carry outbound traffic for its selectors. */
  add(sa: SaRecord): void {
    let family = this.families.find((f) => f.key === sa.familyKey);
    if (!family) {
      family = { key: sa.familyKey, localTs: sa.localTs, remoteTs: sa.remoteTs, members: [], perResource: [] };
      this.families.push(family);
    }
    if (!family.members.includes(sa)) family.members.push(sa);
    if (sa.perResource && !family.perResource.includes(sa)) family.perResource.push(sa);
    this.changed();
  }

  /** Stop sending with `sa` (deleted, or replaced by a rekeyed successor). */
  remove(sa: SaRecord): void {
    const i = this.families.findIndex((f) => f.key === sa.familyKey);
    if (i < 0) return;
    const family = this.families[i]!;
    const j = family.members.indexOf(sa);
    if (j >= 0) family.members.splice(j, 1);
    const k = family.perResource.indexOf(sa);
    if (k >= 0) family.perResource.splice(k, 1);
    if (family.members.length === 0) this.families.splice(i, 1);
    this.changed();
  }

  /**
   * The families with the SAs that send for each, as worker `worker` is to
   * see them (its copy, worker-spd.ts); undefined: as lookup() sees them.
   */
  policyTable(worker?: number): PolicyFamily[] {
    return this.families.map((family) => policyFamily(family, this.senders(family, worker)));
  }

  /**
   * Every worker's table at once (tun-input.ts PolicyFeed, at each change): a
   * family with no SA installing reads the same to every worker and is built
   * once; only one with an SA installing is built per worker.
   */
  policyTables(workers: readonly number[]): Map<number, PolicyFamily[]> {
    const tables = new Map<number, PolicyFamily[]>(workers.map((w) => [w, []]));
    for (const family of this.families) {
      const pool = sendingPool(family);
      if (!pool.some((r) => r.state === 'installing')) {
        const shared = policyFamily(family, pool);
        for (const table of tables.values()) table.push(shared);
        continue;
      }
      for (const [w, table] of tables) table.push(policyFamily(family, this.senders(family, w)));
    }
    return tables;
  }

  /**
   * A family's senders as `worker` sees them (undefined: the I/O thread). An
   * SA whose install is still under way (install.ts sendsOnPost) is named
   * only to its owner worker, which got the install on the same port before
   * this table; another worker, or the I/O thread, would hand it packets that
   * can overtake the install (and be dropped) while the family has other SAs
   * that work. Only when nothing else of the family can send is it named to
   * everyone (a packet that overtakes its install is then dropped, as it
   * would be with no policy at all).
   */
  private senders(family: Family, worker: number | undefined): SaRecord[] {
    const pool = sendingPool(family);
    // The common case, on every packet lookup() takes: nothing installing, no allocation.
    let allReady = true;
    for (const r of pool) if (r.state === 'installing' && r.worker !== worker) allReady = false;
    if (allReady) return pool;
    const ready = (r: SaRecord) => r.state !== 'installing' || r.worker === worker;
    for (const candidates of [pool, family.members]) {
      const visible = candidates.filter(ready);
      if (visible.length > 0) return visible;
    }
    return pool;
  }

  /** Tell the workers' copies again (an SA named only to its owner while installing is everyone's now). */
  refresh(): void {
    this.changed();
  }

  /** The SA for an outbound inner packet, or why there is none. Never throws on packet bytes. */
  lookup(packet: Uint8Array): SaRecord | SpdMiss {
    const f = this.flow;
    if (!parseFlow(packet, f)) return 'malformed';
    for (const family of this.families) {
      if (!flowMatches(packet, f, family.localTs, family.remoteTs)) continue;
      const senders = this.senders(family, undefined);
      const n = senders.length;
      return n === 1 ? senders[0]! : senders[flowHash(packet, f) % n]!;
    }
    return 'no-policy';
  }

  /** Whether a decapsulated packet is one its SA may carry (RFC 4301 §5.2: inbound selector check). */
  inboundAllowed(sa: SaRecord, packet: Uint8Array): boolean {
    const f = this.flow;
    return parseFlow(packet, f) && flowMatches(packet, f, sa.remoteTs, sa.localTs);
  }
}

/** The SAs that send for a family: its per-resource ones when it has any (RFC 9611 §4: the fallback only receives), else all. */
function sendingPool(family: Family): SaRecord[] {
  return family.perResource.length > 0 ? family.perResource : family.members;
}

/** A family as a worker's table carries it: its selectors and the slots of the SAs that send for it. */
function policyFamily(family: Family, senders: readonly SaRecord[]): PolicyFamily {
  return { localTs: family.localTs, remoteTs: family.remoteTs, senders: senders.map((r) => ({ worker: r.worker, slot: r.outSlot, tag: r.outTag })) };
}
