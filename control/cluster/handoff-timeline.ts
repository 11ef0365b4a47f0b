// When each step of a clone's arrival on this node ended (architecture §8):
// from the watch event (or claim) that named this node owner, through the
// record read, the import, the path test, our address list, the peer's
// UPDATE_SA_ADDRESSES, the Delete of a dead node's Child SAs, to the new
// Child SA, with the time requests waited for fencing writes. Wall-clock
// milliseconds, so that the handing node's log (its decision and its
// transaction) lines up with them; the arrival's log line carries it, the
// node's status the last one, and the cluster benchmark reports each step.
//
// Owner: the main thread.
import type { ArrivalSteps } from '../ike/sa-transfer.js';

export interface ArrivalTimeline {
  /** Wall-clock ms when each step ended; absent when not reached. */
  at: {
    /** The watch event (or the claim, or the scan) naming this node owner. */
    seen: number;
    /** The record in hand (from the watch response, or read). */
    read: number;
    imported: number;
    /** The peer's next request message ID found by probes (after a claim or a send-back). */
    resync?: number;
    pathTest?: number;
    addressList?: number;
    update?: number;
    staleDeleted?: number;
    child?: number;
  };
  /** Time the arrival's requests waited for fencing writes, and how many of them waited. */
  fencing: { heldMs: number; holds: number };
}

/** How an arrival ended: its Child SA up, or stopped at a step (sa-transfer.ts ArrivalResult). */
export type ArrivalOutcome = { ok: true } | { ok: false; step: string };

/** The timeline of one arrival: cluster-side times as they are, engine steps mapped to wall-clock by `wall`. */
export function arrivalTimeline(
  cluster: { seenAt: number; readAt: number; importedAt: number },
  steps: ArrivalSteps,
  wall: (clockMs: number) => number,
  fencing: { heldMs: number; holds: number },
): ArrivalTimeline {
  const at: ArrivalTimeline['at'] = { seen: cluster.seenAt, read: cluster.readAt, imported: cluster.importedAt };
  for (const k of ['resync', 'pathTest', 'addressList', 'update', 'staleDeleted', 'child'] as const) {
    const t = steps[k];
    if (t !== undefined) at[k] = Math.round(wall(t));
  }
  return { at, fencing: { heldMs: fencing.heldMs, holds: fencing.holds } };
}
