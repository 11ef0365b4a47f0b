// The inbound ESP SPI of an arriving clone's Child SA, fixed by the handoff
// that moved the clone (architecture §8), so that a node taking the clone
// over can delete that Child SA at the client even when the node it was
// handed to died before recording it.
//
// The gap this closes: a handoff's etcd transaction names node B owner and
// fences B's first requests, its address list and its CREATE_CHILD_SA. If
// the client processed that CREATE_CHILD_SA and B died before its next write,
// the client holds a Child SA toward a dead address, and a Delete must name
// the SPI B receives with (RFC 7296 §1.4.1, §3.11), which only B's request
// carried. Its traffic for those selectors may keep going to B until the
// client rekeys it.
//
// Choices, each costing no etcd write on the handoff's path (every write
// adds ~10 ms to the ~45 ms from decision to first ESP):
// - B writes its SPI before it sends the CREATE_CHILD_SA: one more write
//   on every handoff. Refused for that cost.
// - The claimant deletes every Child SA of the IKE SA except its own: IKEv2
//   has no such request (a Delete names SPIs, §3.11). Not possible.
// - The handing node A draws the random part of B's SPI (io/spi-layout.ts:
//   node 8 | worker 6 | random 18) and seals it into the record of the same
//   transaction; B composes the SPI from its own prefix, the worker its
//   placement picks and that random part. A claimant knows B's prefix and
//   the random part but not the worker: it names every worker index, 64
//   SPIs per random part, in one Delete payload (§3.11: one payload carries
//   several SPIs; §1.4.1: a peer ignores SPIs it has no SA for). Chosen:
//   the record grows by a few bytes, and only a takeover sends the Delete
//   (with two alternatives, below: 128 SPIs, 512 bytes, per Child SA).
//   A claim's and a send-back's transaction draw the same way for the node
//   they make owner (control/cluster/arrival-draw.ts), so a second death
//   during an arrival is covered too.
//
// A collision (the composed SPI is in use on that worker, or reserved): B
// tries the ARRIVAL_SPI_ALTERNATES fixed alternatives of the random part
// (r, r xor 1), all in the candidate set, on the same worker; only when all
// are taken (probability (n / 2^18)^2 for n SPIs on that worker: about 1e-3
// at n = 8000) does it draw a fresh SPI, which no claimant can name. That
// miss is not written to etcd (a write only then would still stall that
// arrival); it is counted (HandoffStats.arrivalSpiMisses) and logged with
// the SPI, and that one arrival keeps the old gap if B also dies before its
// next write.
//
// The claimant sends the Delete only when the client may hold that Child
// SA: once the probes made the message IDs line up (request-resync.ts; the
// Delete is a request on the IKE SA), and the client's next ID before them
// was above the draw's first CREATE_CHILD_SA (or a cached CREATE_CHILD_SA
// answered a probe). A client that never processed that request gets no
// Delete.
//
// Owner: the engine's thread (pure values and the draw from its random source).
import type { RandomSource } from '../crypto/random.js';
import { readU32 } from '../crypto/bytes.js';
import { composeEspSpi, MAX_SPI_NODES, MAX_SPI_WORKERS, SPI_RANDOM_BITS, type SpiOwner } from '../../io/spi-layout.js';

/** Alternatives of a random part tried on the chosen worker before a fresh SPI is drawn (see the file comment). */
export const ARRIVAL_SPI_ALTERNATES = 2;
/** The most random parts a draw holds (one per Child SA of the connection). */
export const MAX_ARRIVAL_SPIS = 16;
/** The most draws of previous owners a record keeps for deletion (each a takeover during an arrival). */
export const MAX_ORPHAN_DRAWS = 4;

/** The random parts of an arriving node's Child SA SPIs, as the handoff record holds them. */
export interface ArrivalSpiDraw {
  /** The SPI prefix of the node the clone was handed to. */
  node: number;
  /** One random part (SPI_RANDOM_BITS bits) per Child SA of the connection, in its order. */
  random: number[];
  /** The message ID of the arrival's first CREATE_CHILD_SA (its path test goes first). */
  firstRequestId: number;
}

/** A draw for `count` Child SAs of a clone handed to the node with prefix `node`. */
export function drawArrivalSpis(random: RandomSource, node: number, count: number, firstRequestId: number): ArrivalSpiDraw {
  const parts = Array.from({ length: Math.min(count, MAX_ARRIVAL_SPIS) }, () => readU32(random(4)) & ((1 << SPI_RANDOM_BITS) - 1));
  return { node, random: parts, firstRequestId };
}

/** The SPIs a Child SA drawn with `random` may have on `owner`'s worker, in the order they are tried. */
export function arrivalSpiChoices(owner: SpiOwner, random: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < ARRIVAL_SPI_ALTERNATES; j++) {
    const spi = composeEspSpi(owner, random ^ j);
    if (spi !== undefined) out.push(spi);
  }
  return out;
}

/** Every SPI the arriving node may have given the draw's Child SAs: each worker index, each alternative. */
export function arrivalSpiCandidates(draw: ArrivalSpiDraw): number[] {
  const out: number[] = [];
  for (const r of draw.random) for (let worker = 0; worker < MAX_SPI_WORKERS; worker++) out.push(...arrivalSpiChoices({ node: draw.node, worker }, r));
  return out;
}

/** What is wrong with a list of draws decoded from a record, or undefined. */
export function orphanDrawsProblem(list: ArrivalSpiDraw[]): string | undefined {
  if (!Array.isArray(list) || list.length > MAX_ORPHAN_DRAWS) return 'record orphan SPI draws invalid';
  for (const d of list) {
    const problem = arrivalSpiDrawProblem(d);
    if (problem) return problem;
  }
  return undefined;
}

/** What is wrong with a draw decoded from a record, or undefined. */
export function arrivalSpiDrawProblem(d: ArrivalSpiDraw): string | undefined {
  const isInt = (v: unknown, max: number) => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
  if (typeof d !== 'object' || d === null || !isInt(d.node, MAX_SPI_NODES - 1) || !isInt(d.firstRequestId, 0xffffffff)) return 'record arrival SPIs invalid';
  if (!Array.isArray(d.random) || d.random.length > MAX_ARRIVAL_SPIS || !d.random.every((r) => isInt(r, (1 << SPI_RANDOM_BITS) - 1))) return 'record arrival SPIs invalid';
  return undefined;
}
