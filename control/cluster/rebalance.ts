// Rebalancing clones when nodes join or leave (architecture §8): after a
// takeover a survivor holds two members of a family (its own and the dead
// node's clone); when a node joins (or comes back) it holds none. Each node
// looks at the families of the clones it owns: if it holds more than one
// member of a family (the family's original counts, on the node that
// authenticated the client) and some live node holds none, it moves one of
// its clones there, the highest-indexed first, to the best ranked such node
// (rendezvous hashing of the clone's key, loads ignored so that the choice
// is stable). One move per family per round; at most `movesPerSecond` moves
// from this node; a round runs when the member names change and every
// `intervalMs` (a move made elsewhere changes who holds what). A clone that
// came back after its path test failed on a node is not moved there again
// for PATH_FAILED_HOLD_DOWN_MS (handoff.ts), and a clone still landing here
// waits for a later round.
//
// A clone with Child SAs deletes them first (RFC 7296 §1.4.1; its traffic
// goes through the family's other clones meanwhile), then moves as in a
// handoff (handoff.ts) and gets a new Child SA on its new node.
//
// Owner: the main thread.
import type { Etcd3 } from 'etcd3';
import type { IkeContext } from '../ike/context.js';
import { closeChildSa } from '../ike/exchanges/delete.js';
import type { IkeSa } from '../ike/ike-sa.js';
import { transferBlocked } from '../ike/sa-transfer.js';
import type { Logger } from '../log.js';
import type { CloneHandoff } from './handoff.js';
import { rendezvousRank } from './placement.js';
import { readClusterStatus, type ClusterStatus } from './status.js';

export const DEFAULT_MOVES_PER_SECOND = 2;
export const DEFAULT_REBALANCE_INTERVAL_MS = 5000;

export interface RebalanceOptions {
  engine: IkeContext;
  client: Etcd3;
  cluster: string;
  node: string;
  handoff: CloneHandoff;
  log: Logger;
  movesPerSecond?: number;
  intervalMs?: number;
}

export interface RebalanceStats {
  moved: number;
  failed: number;
}

/** A planned move of one of our clones. */
export interface RebalanceMove {
  family: string;
  index: number;
  to: string;
}

/** The node that authenticated a family's client (family ids are `<node>.<session>`, placement.ts). */
export function familyOrigin(family: string): string {
  const dot = family.lastIndexOf('.');
  return dot > 0 ? family.slice(0, dot) : family;
}

/**
 * The moves `node` should make now (see the file comment): pure, from a
 * status read. `pathFailedAt` names, per clone, a node its path test failed
 * on recently: the clone does not go there.
 */
export function planMoves(status: ClusterStatus, node: string, pathFailedAt: (family: string, index: number) => string | undefined = () => undefined): RebalanceMove[] {
  const live = status.members.map((m) => ({ ...m, load: 0 }));
  const liveNames = new Set(live.map((m) => m.node));
  const families = new Map<string, typeof status.clones>();
  for (const c of status.clones) families.set(c.family, [...(families.get(c.family) ?? []), c]);
  const moves: RebalanceMove[] = [];
  for (const [family, clones] of families) {
    const ours = clones.filter((c) => c.owner === node).sort((a, b) => b.index - a.index);
    if (ours.length === 0) continue;
    const holders = new Set(clones.map((c) => c.owner));
    const origin = familyOrigin(family);
    if (liveNames.has(origin)) holders.add(origin);
    const held = ours.length + (origin === node ? 1 : 0);
    if (held < 2) continue;
    const clone = ours[0]!;
    const failed = pathFailedAt(family, clone.index);
    const empty = live.filter((m) => !holders.has(m.node) && m.node !== failed);
    if (empty.length === 0) continue;
    moves.push({ family, index: clone.index, to: rendezvousRank(`${family}/${clone.index}`, empty)[0]!.node });
  }
  return moves;
}

export class CloneRebalance {
  readonly stats: RebalanceStats = { moved: 0, failed: 0 };
  private timer: NodeJS.Timeout | undefined;
  private lastMembers = '';
  private running: Promise<void> | undefined;
  private nextMoveAt = 0;
  private stopped = false;
  /** Without a lease we move nothing. */
  private paused = false;

  constructor(private readonly opts: RebalanceOptions) {}

  start(): this {
    this.timer = setInterval(() => void this.round(true), this.opts.intervalMs ?? DEFAULT_REBALANCE_INTERVAL_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** The members changed: a round if their names did (load updates alone move nothing, and read nothing). */
  membersChanged(names: boolean): void {
    if (!names) return;
    void this.round(false);
  }

  /** One round (one at a time): read the cluster, plan, move within the rate. */
  round(force: boolean): Promise<void> {
    if (this.running || this.stopped || this.paused) return this.running ?? Promise.resolve();
    this.running = this.roundOnce(force)
      .catch((err: Error) => this.opts.log.warn({ reason: err.message }, 'cannot read the cluster to rebalance clones'))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async roundOnce(force: boolean): Promise<void> {
    const { client, cluster, node, handoff, log } = this.opts;
    const status = await readClusterStatus(client, cluster);
    const names = status.members.map((m) => m.node).join('\0');
    if (!force && names === this.lastMembers) return;
    this.lastMembers = names;
    const owned = handoff.ownedClones();
    for (const move of planMoves(status, node, (family, index) => handoff.pathFailedAt(family, index))) {
      const clone = owned.find((c) => c.family === move.family && c.index === move.index);
      // A clone still landing here (steps 4-7 running) moves at a later round, once it has.
      if (!clone || handoff.isLanding(clone.sa) || this.stopped || this.paused) continue;
      // Bounded: at most movesPerSecond moves from this node.
      const wait = this.nextMoveAt - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      // The wait may have outlasted the plan: stopped, paused (the lease lost), or the clone gone or landing.
      if (this.stopped || this.paused || !handoff.owns(clone.sa) || handoff.isLanding(clone.sa)) continue;
      this.nextMoveAt = Date.now() + 1000 / (this.opts.movesPerSecond ?? DEFAULT_MOVES_PER_SECOND);
      try {
        await this.move(clone.sa, move.to);
        this.stats.moved++;
        log.info({ ike: clone.sa.id, family: move.family, index: move.index, to: move.to }, 'clone rebalanced');
      } catch (err) {
        this.stats.failed++;
        log.warn({ family: move.family, index: move.index, to: move.to, reason: (err as Error).message }, 'clone rebalance failed');
      }
    }
  }

  private async move(sa: IkeSa, to: string): Promise<void> {
    await moveClone(this.opts.engine, this.opts.handoff, sa, to);
  }
}

/**
 * Move owned clone `sa` to node `to`, as rebalancing and `ikeclone move
 * --node` do: its Child SAs are deleted first (RFC 7296 §1.4.1: a clone
 * moves without them, RFC 7791 §5.2, and the family's other clones carry
 * its traffic meanwhile), then it is handed off (handoff.ts) and `to`
 * creates a new one. Resolves with the new epoch.
 */
export async function moveClone(engine: IkeContext, handoff: CloneHandoff, sa: IkeSa, to: string): Promise<number> {
  if (handoff.isLanding(sa)) throw new Error(`IKE SA ${sa.id} is still arriving on this node (its path test, update or Child SA is under way)`);
  // Refused before its Child SAs go, not after: a clone that cannot move (no MOBIKE, an exchange under way) keeps them.
  const blocked = transferBlocked(sa, { withChildren: true });
  if (blocked) throw new Error(blocked);
  for (const child of [...sa.children]) await closeChildSa(engine, child);
  return handoff.handOff(sa, to);
}
