// Who uses the SPI draw of a handoff record, and who deletes what it names
// (architecture §8; the draw itself and why: ike/arrival-spi.ts).
//
// - The handing node draws one random part per Child SA of the connection
//   for the node it hands the clone to, if it knows that node's SPI prefix
//   (the members it read last), and seals it into the record of the
//   handoff's own transaction: no write of its own.
// - The node the draw names uses it for its arrival's Child SAs, when the
//   record is a handoff made to this run: not after a restart (its previous
//   run may have used it already), not for a clone sent back to it.
// - Any other node importing a record that still holds a draw (a claim of a
//   clone whose arrival did not finish, or a restarted node) deletes the
//   SPIs it names at the client, after its probes (sa-transfer.ts
//   completeArrival): that is one more request of its arrival, fenced by the
//   claim's transaction with the others. A clone sent back after a failed
//   path test needs none: the node it was handed to never got as far as its
//   CREATE_CHILD_SA (it waits for the client's update, which needs that path).
//
// Owner: the main thread, next to the handoff that calls it.
import { drawArrivalSpis, type ArrivalSpiDraw } from '../ike/arrival-spi.js';
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

/** How the importer at prefix `ownPrefix` treats the record's draw: its own to use, or an orphan's to delete. */
export function arrivalDraws(state: TransferState, ownPrefix: number | undefined, restarted: boolean): { spiDraw?: ArrivalSpiDraw; orphanDraw?: ArrivalSpiDraw } {
  const draw = state.arrivalSpis;
  if (!draw || state.peerStays === true) return {};
  if (draw.node === ownPrefix && !restarted && state.resyncThrough === undefined) return { spiDraw: draw };
  return { orphanDraw: draw };
}

/** Stale Child SAs a new owner of `state`'s clone deletes, for arrivalRequestCount (an orphan draw is one Delete more). */
export function staleDeleteCount(state: Pick<TransferState, 'children' | 'arrivalSpis' | 'peerStays'>, peerStays = state.peerStays === true): number {
  return state.children.length + (state.arrivalSpis && !peerStays ? 1 : 0);
}

/** An arrival whose Child SA could not take a drawn SPI: counted and logged (no write: ike/arrival-spi.ts). */
export function noteSpiDrawMiss(stats: { arrivalSpiMisses?: number }, log: Logger, sa: IkeSa, spis: readonly number[]): void {
  stats.arrivalSpiMisses = (stats.arrivalSpiMisses ?? 0) + 1;
  log.warn({ ike: sa.id, spis: spis.map((x) => x.toString(16)) }, 'Child SA SPI is not one the handoff drew (all its choices were in use): a takeover before our next record cannot delete it at the client');
}
