// Who uses the SPI draw of a record, and who deletes what it names
// (architecture §8; the draw itself and why: ike/arrival-spi.ts).
//
// - The node that makes another the owner of a clone in one transaction
//   draws one random part per Child SA of the connection for the new owner
//   and seals it into the record of that transaction (`arrivalSpis`): no
//   write of its own. A handoff draws for the node it hands the clone to,
//   if it knows that node's SPI prefix (the members it read last); a claim
//   draws for the claimant; a clone sent back after a failed path test, for
//   the node it goes back to.
// - The node the draw names uses it for its arrival's Child SAs; not after a
//   restart (its previous run may have used it already).
// - The previous owner's draw, if its arrival did not finish, moves to the
//   record's `orphanSpis` with the transaction that takes the clone from it
//   (a restarted node treats its own old draw the same way): the new owner
//   deletes at the client what they may name, after its probes
//   (sa-transfer.ts completeArrival), if the client had processed that
//   arrival's CREATE_CHILD_SA. That Delete is one more request of its
//   arrival, fenced by the claim's transaction with the others.
//
// Owner: the main thread, next to the handoff and the failover that call it.
import { drawArrivalSpis, MAX_ORPHAN_DRAWS, type ArrivalSpiDraw } from '../ike/arrival-spi.js';
import type { IkeContext } from '../ike/context.js';
import type { IkeSa } from '../ike/ike-sa.js';
import type { TransferState } from '../ike/sa-transfer.js';
import type { Logger } from '../log.js';

/** The draw for clone `sa` handed to a node with SPI prefix `prefix` (undefined: unknown, no draw). */
export function handoffDraw(engine: IkeContext, sa: IkeSa, prefix: number | undefined): ArrivalSpiDraw | undefined {
  const count = sa.policy.children.length;
  if (prefix === undefined || count === 0) return undefined;
  // The importer's path test (its address list) takes our next request ID, its first CREATE_CHILD_SA the one after.
  return drawArrivalSpis(engine.random, prefix, count, sa.nextRequestId + 1);
}

/**
 * The draw fields of a record amended for a new owner with SPI prefix
 * `prefix` (a claim, a send-back): a draw for it, and the previous owner's
 * draw kept for deletion. Its first CREATE_CHILD_SA comes after its address
 * list, above `low` (the record's lowest ID: a lower bound, so a later owner
 * deletes rather than misses).
 */
export function amendedDraws(engine: IkeContext, was: TransferState, prefix: number | undefined, children: number, low: number): Pick<TransferState, 'arrivalSpis' | 'orphanSpis'> {
  const orphans = [...(was.orphanSpis ?? []), ...(was.arrivalSpis ? [was.arrivalSpis] : [])].slice(-MAX_ORPHAN_DRAWS);
  const draw = prefix !== undefined && children > 0 ? drawArrivalSpis(engine.random, prefix, children, low + 1) : undefined;
  return { arrivalSpis: draw, orphanSpis: orphans.length > 0 ? orphans : undefined };
}

/** How the importer at prefix `ownPrefix` treats the record's draws: its own to use, previous owners' to delete. */
export function arrivalDraws(state: TransferState, ownPrefix: number | undefined, restarted: boolean): { spiDraw?: ArrivalSpiDraw; orphanDraws?: ArrivalSpiDraw[] } {
  const draw = state.arrivalSpis;
  const own = draw !== undefined && draw.node === ownPrefix && !restarted;
  const orphans = [...(state.orphanSpis ?? []), ...(draw && !own ? [draw] : [])];
  return { ...(own && { spiDraw: draw }), ...(orphans.length > 0 && { orphanDraws: orphans }) };
}

/** Stale Child SAs a new owner of `state`'s clone deletes, for arrivalRequestCount (previous owners' draws are one Delete more). */
export function staleDeleteCount(state: Pick<TransferState, 'children' | 'arrivalSpis' | 'orphanSpis'>): number {
  return state.children.length + (state.arrivalSpis || (state.orphanSpis?.length ?? 0) > 0 ? 1 : 0);
}

/** An arrival whose Child SA could not take a drawn SPI: counted and logged (no write: ike/arrival-spi.ts). */
export function noteSpiDrawMiss(stats: { arrivalSpiMisses?: number }, log: Logger, sa: IkeSa, spis: readonly number[]): void {
  stats.arrivalSpiMisses = (stats.arrivalSpiMisses ?? 0) + 1;
  log.warn({ ike: sa.id, spis: spis.map((x) => x.toString(16)) }, 'Child SA SPI is not one the handoff drew (all its choices were in use): a takeover before our next record cannot delete it at the client');
}
