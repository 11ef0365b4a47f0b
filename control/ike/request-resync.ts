// Finding the peer's next request message ID on an IKE SA whose previous
// owner died, or gave it back, with requests the peer may or may not have
// processed (architecture §8; RFC 7296 §2.1, §2.2, §2.3).
//
// The situation: a cluster node imports a clone whose record says the peer
// expects some request message ID E in [from, through] (the record's
// nextRequestId and its resync mark: the previous owner may have sent every
// ID below `through`, fenced by a write, and the peer processed some prefix
// of them). Starting above E loses the clone: the peer drops a request ID it
// does not expect (RFC 7296 §2.2, §2.3) and its DPD clears the IKE SA. Three
// arrivals run it (control/cluster): a claim of a dead node's clone
// (failover.ts), a clone sent back after its path test failed on the node it
// was handed to (the peer may have processed that node's path test and only
// the answers were lost), and a restarted node importing a clone its
// previous run held (handoff.ts).
//
// How: an empty INFORMATIONAL request (a liveness check, RFC 7296 §1.4,
// §2.4: no side effect) with each ID from..through, sent at once in
// ascending order, the probes. A responder with window size 1 answers the
// request with the ID it expects as new, and a byte-identical copy of its
// last request from its response cache (§2.1: our probe with that ID is not
// the dead node's request, so an implementation that checks the copy drops
// it; one that goes by the message ID alone sends the dead node's response:
// it authenticates under the same keys and is taken as proof of that ID
// only, its payloads are not processed as an answer to ours), and drops any
// other ID. Having answered E it expects E + 1, which is the next probe: so
// on an in-order path it answers every probe from E to `through`, and the
// probes that are not answered are exactly those below E. We continue at
// (the highest ID answered) + 1: `through` + 1 once its answer came, which
// ends the wait at once. A probe passed by a later one (reordering) or lost
// is sent again (below).
//
// The window (RFC 7296 §2.3). The peer has not sent SET_WINDOW_SIZE to us
// (ikeclone keeps window 1 itself, sa-transfer.ts), so our requests MUST NOT
// exceed a window of 1: the rule exists so that a responder never keeps
// state or cached responses for more requests than it declared. The probes
// keep that: at any moment exactly one of them is inside the peer's window
// (the one with the ID it expects); one below it is dropped or answered from
// the one cached response it keeps anyway; one above it is outside its
// window, where §2.3 has it not acknowledged (at most an INVALID_MESSAGE_ID
// notify, OPTIONAL and rate-limited, in a request of its own, which this
// node answers). The next probe enters the window only once the peer
// answered the previous one, which is what waiting for that answer would
// have achieved. So the peer never holds more than one request's state, at
// the cost of at most (through - from + 1) small datagrams in a burst, like
// a retransmission. Sending them one after the other instead would cost a
// full retransmission timeout (RFC 7296 §2.4; 1 s by default, defaults.ts)
// for each probe below E, since a dropped probe looks like a lost one: up to
// k seconds after a handoff that fenced k requests, against one round trip.
//
// Retransmission: bounded by the engine's policy (RetransmitPolicy: its
// timeouts and number of tries, as every other request). Each round resends
// the probes above the highest answered ID. After the last round: with some
// answer, we continue above it; with none, the peer is gone or the path
// from here is down, and the caller treats it as a failed path test
// (failover.ts: after a takeover the clone's keys go, the client's DPD
// clears it).
//
// Fencing (architecture §8): every probe ID is at most `through`, and the
// caller has the IDs up to and above it covered by a write under its
// ownership before it calls (the claim's or the send-back's transaction
// names them taken: fencedNextRequestId). Nothing else leaves on the SA
// meanwhile (IkeSa.resync holds the engine's queue), and only the node etcd
// names owner at the new epoch runs it.
//
// A cached CREATE_CHILD_SA response (the dead node's last request created
// a Child SA the record does not name: the node died before its write) names
// the peer's inbound SPI of that Child SA. It is reported (orphanChildSpis),
// and so is the lowest ID answered (lowest): a Delete names the SPI its
// sender receives with (RFC 7296 §1.4.1, §3.11), the dead node's, which only
// its request carried; when the transaction that made the dead node owner
// drew that SPI's random part, the new owner deletes every SPI the dead
// node may have used, once these probes have made the message IDs line up,
// and only if the peer had processed that request (lowest above its ID, or
// its response cached: arrival-spi.ts).
// Without such a draw the peer keeps that Child SA until it rekeys it, which
// the new owner answers CHILD_SA_NOT_FOUND (RFC 7296 §2.25); ESP on it
// meanwhile is answered with INVALID_SPI (deletion.ts).
//
// Only the owner at the new epoch probes: the probes leave from the arrival
// of a record sealed for this node at that epoch, after the transaction that
// made it owner committed (a claim requires that the dead node has no member
// key; a send-back is made by the node whose copy is already gone). A node
// that lost its lease holds its requests once it knows, and any request of
// it that needs a fencing write fails on the changed owner (handoff.ts).
//
// Owner: the engine's thread, like the SA it probes.
import { ExchangeType, PayloadType } from '../wire/constants.js';
import type { IkeMessage } from '../wire/message.js';
import type { SaPayload } from '../wire/payloads.js';
import type { IkeContext } from './context.js';
import { sealOutgoing, type SealedMessage } from './fragmentation.js';
import { isFragmentMessage } from './fragments.js';
import type { IkeSa } from './ike-sa.js';
import { spiNumber } from './payload-builders.js';
import { openMessage } from './protect.js';
import { sendSealed } from './response-cache.js';

/** The most probes one resync sends (a record naming a wider range is refused on import, sa-transfer.ts). */
export const MAX_RESYNC_PROBES = 128;

export type ResyncResult =
  | {
      ok: true;
      /** The peer's next request message ID: our next request uses it. */
      next: number;
      /** Probes answered (as new requests, or from the peer's response cache). */
      answered: number;
      /** Rounds of probes sent (1: no retransmission). */
      rounds: number;
      /** The lowest probe ID answered: the peer's next request ID before the probes, or the one before it answered from its cache. */
      lowest?: number;
      /** Peer SPIs of Child SAs a cached CREATE_CHILD_SA response named (see the file comment). */
      orphanChildSpis: number[];
    }
  | { ok: false; reason: string };

/**
 * Probe message IDs sa.nextRequestId..through (see the file comment) and
 * set sa.nextRequestId to the peer's next one. Resolves at once when the
 * range is a single ID (the peer expects it: nothing to find). The SA must
 * have no request outstanding.
 */
export function resyncRequestIds(ctx: IkeContext, sa: IkeSa, through: number): Promise<ResyncResult> {
  const from = sa.nextRequestId;
  if (through <= from) return Promise.resolve({ ok: true, next: from, answered: 0, rounds: 0, lowest: from, orphanChildSpis: [] });
  if (sa.outstanding || sa.resync || sa.state !== 'established') return Promise.resolve({ ok: false, reason: `IKE SA ${sa.id} is busy or not established` });
  if (through - from + 1 > MAX_RESYNC_PROBES) return Promise.resolve({ ok: false, reason: `message ID range ${from}..${through} is wider than ${MAX_RESYNC_PROBES}` });
  return new Promise((resolve) => {
    const rt = ctx.retransmit;
    const probes = new Map<number, SealedMessage>();
    // Sealed once: a retransmission is byte-identical (RFC 7296 §2.1).
    for (let id = from; id <= through; id++) probes.set(id, sealOutgoing(sa, ExchangeType.INFORMATIONAL, id, false, []));
    const answered = new Set<number>();
    const orphanChildSpis: number[] = [];
    let highest: number | undefined;
    let round = 0;
    let timer: { cancel(): void } | undefined;
    let done = false;
    const finish = (result: ResyncResult) => {
      if (done) return;
      done = true;
      timer?.cancel();
      sa.resync = undefined;
      ctx.off('ike-down', onDown);
      if (result.ok) sa.nextRequestId = result.next;
      ctx.log.info({ ike: sa.id, from, through, ...(result.ok ? { next: result.next, answered: result.answered, rounds: result.rounds, orphanChildSpis: result.orphanChildSpis.map((x) => x.toString(16)) } : { reason: result.reason }) }, 'request message IDs resynchronised');
      resolve(result);
      // Requests queued meanwhile go now (the engine held them while sa.resync was set).
      if (result.ok) ctx.kick(sa);
    };
    const onDown = (down: IkeSa) => down === sa && finish({ ok: false, reason: 'the IKE SA went down while probing' });
    const send = () => {
      for (const [id, sealed] of probes) if (highest === undefined || id > highest) sendSealed(ctx, sa.local, sa.remote, sealed);
      const delay = Math.min(rt.timeout * rt.base ** round, rt.maxTimeout);
      timer = ctx.clock.schedule(delay, () => {
        if (round < rt.tries) {
          round++;
          ctx.stats.retransmits++;
          return send();
        }
        if (highest === undefined) return finish({ ok: false, reason: `no answer to ${probes.size} probes (message IDs ${from}..${through}) after ${round} retransmissions` });
        finish({ ok: true, next: highest + 1, answered: answered.size, rounds: round + 1, lowest: Math.min(...answered), orphanChildSpis });
      });
    };
    sa.resync = (msg: IkeMessage) => {
      const id = msg.header.messageId;
      // Not a probe's ID, or fragments (our probes are never fragmented; a cached fragmented response is
      // not needed: the next probe's answer proves more): the engine counts it as unexpected.
      if (id < from || id > through || isFragmentMessage(msg)) return false;
      // Nothing unauthenticated counts as an answer (architecture §4.3).
      const opened = openMessage(sa, msg);
      if (!opened.ok) {
        ctx.countDrop('decrypt', `probe answer mid ${id}`);
        return true;
      }
      if (!answered.has(id) && msg.header.exchangeType === ExchangeType.CREATE_CHILD_SA) {
        // The dead node's CREATE_CHILD_SA, answered from the peer's cache: proof of the ID, and the SPI the
        // peer chose for that Child SA (RFC 7296 §3.3.1), for the log.
        const sa2 = opened.value.find((p): p is SaPayload => p.type === PayloadType.SA);
        const spi = sa2?.proposals[0] ? spiNumber(sa2.proposals[0].spi) : undefined;
        if (spi !== undefined) orphanChildSpis.push(spi);
      }
      answered.add(id);
      highest = Math.max(highest ?? id, id);
      // The last probe answered: the peer expects the ID after it; nothing higher can come.
      if (highest === through) finish({ ok: true, next: through + 1, answered: answered.size, rounds: round + 1, lowest: Math.min(...answered), orphanChildSpis });
      return true;
    };
    ctx.on('ike-down', onDown);
    send();
  });
}

/**
 * The record fields for a new owner that resynchronises (the claim's and
 * the send-back's transaction, architecture §8): the peer's next request ID
 * lies in [low, high]; the new owner probes those IDs and then sends at most
 * `following` requests above them, all named taken (fencedNextRequestId) so
 * that none waits for a write, and a node taking the clone over after it
 * probes from `low` up to that mark.
 */
export function resyncMarks(low: number, high: number, following: number): { nextRequestId: number; resyncThrough?: number; fencedNextRequestId: number } {
  const top = Math.max(low, high);
  // Probes use IDs up to `top`, the requests after them up to top + following (the peer answered `top` at most).
  if (top > low) return { nextRequestId: low, resyncThrough: top, fencedNextRequestId: top + 1 + following };
  return { nextRequestId: low, fencedNextRequestId: low + following };
}
