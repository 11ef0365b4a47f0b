// The timing of a rekey handover (RFC 7296 §2.8), so that no packet is lost
// while one Child SA replaces another:
//   - ESP that arrives for an SA whose install is still in progress (the
//     peer already sends on it: our response went out before our worker had
//     the keys) is held, copied and bounded per SA, and delivered once the
//     worker has the SA, instead of dropped;
//   - an SA the peer created (we answered its CREATE_CHILD_SA or IKE_AUTH)
//     does not send at once when others of its family still do: the peer
//     installs it only when our response arrives. It takes over when the SA
//     it replaces retires (the peer's Delete, §2.8), the family has no
//     other sender left, or the peer's first authenticated packet on it
//     arrives (it has the SA), at the latest after DEFERRED_OUTBOUND_MS;
//     that packet may be reported before the SA waits at all (the worker
//     opens ESP it held for the SA as it installs it, before it answers the
//     install), and is then remembered, so the SA does not wait;
//   - a deleted SA retires: it stops sending at once, but keeps receiving
//     for RETIRED_SA_LINGER_MS, for the ESP the peer sent before it deleted
//     its side (in flight, or queued in its workers), then goes.
// install.ts decides who sends (the SPD); this keeps the packets and timers.
//
// Owner: the I/O thread (the gateway's main thread), like the SAD and SPD.
import { CellKind } from './ring.js';
import type { RingFeed } from './ring-feed.js';
import { anyOf, type SaRecord } from './sad.js';
import type { PlaneState } from './state.js';
import { DEFERRED_OUTBOUND_MS, HELD_PACKETS_PER_SA } from './defaults.js';

export class HandoverTiming {
  /** ESP held for SAs still installing, in arrival order, each with its outer TOS (inbound.ts). */
  private readonly held = new Map<SaRecord, Array<{ bytes: Uint8Array; tos: number }>>();
  /** SAs waiting to send, with the timer that makes them send at the latest. */
  private readonly deferred = new Map<SaRecord, NodeJS.Timeout>();
  /** Retired SAs and the timer that removes them. */
  private readonly lingering = new Map<SaRecord, NodeJS.Timeout>();
  /** SAs whose peer's first authenticated packet was reported before they waited to send (peerHas before defer). */
  private readonly peerSent = new WeakSet<SaRecord>();

  constructor(private readonly s: PlaneState, private readonly feed: RingFeed) {}

  /** Keep a copy of `packet` (outer TOS `tos`) for installing SA `r`; false when its queue is full (the caller counts the drop). */
  hold(r: SaRecord, packet: Uint8Array, tos = 0): boolean {
    let q = this.held.get(r);
    if (!q) this.held.set(r, (q = []));
    if (q.length >= HELD_PACKETS_PER_SA) return false;
    q.push({ bytes: packet.slice(), tos });
    return true;
  }

  /** The worker has `r`: what was held for it goes to its in ring now, in order. */
  release(r: SaRecord): void {
    const q = this.held.get(r);
    if (!q) return;
    this.held.delete(r);
    for (const p of q) this.feed.enqueue(r.worker, p.bytes, r.inSlot, CellKind.DECAP, r.inTag, p.tos);
  }

  /** `r` waits to send; `start` makes it send (called at the latest after DEFERRED_OUTBOUND_MS). */
  defer(r: SaRecord, start: (r: SaRecord) => void): void {
    // The peer already sent on it: it has the SA, nothing to wait for (else the SA would wait the whole bound).
    if (this.peerSent.has(r)) {
      this.peerSent.delete(r);
      if (r.state === 'active' && !r.retiring && !r.outbound) start(r);
      return;
    }
    const t = setTimeout(() => {
      this.deferred.delete(r);
      if (r.state === 'active' && !r.retiring && !r.outbound) start(r);
    }, DEFERRED_OUTBOUND_MS);
    t.unref();
    this.deferred.set(r, t);
  }

  /** The peer sent on `r` (authenticated): it has the SA, so `r` sends now if it was waiting. */
  peerHas(r: SaRecord, start: (r: SaRecord) => void): void {
    const t = this.deferred.get(r);
    if (t === undefined) {
      this.peerSent.add(r);
      return;
    }
    clearTimeout(t);
    this.deferred.delete(r);
    if (r.state === 'active' && !r.retiring && !r.outbound) start(r);
  }

  /**
   * `gone` stopped sending (it retired or was removed): SAs waiting in its
   * family that replace it, or that are left with no sender, send now.
   */
  senderGone(gone: SaRecord, start: (r: SaRecord) => void): void {
    for (const [r, t] of [...this.deferred]) {
      if (r.familyKey !== gone.familyKey) continue;
      if (!r.replaces.includes(gone.id) && this.familyHasSender(r)) continue;
      clearTimeout(t);
      this.deferred.delete(r);
      if (r.state === 'active' && !r.retiring && !r.outbound) start(r);
    }
  }

  /** Another SA of `r`'s family carries outbound traffic. */
  familyHasSender(r: SaRecord): boolean {
    return anyOf(this.s.sad!.family(r.familyKey), (o) => o !== r && o.outbound && !o.retiring && o.state === 'active');
  }

  /** `r` retired: `remove` runs after `ms`. */
  linger(r: SaRecord, ms: number, remove: () => void): void {
    const t = setTimeout(() => {
      this.lingering.delete(r);
      remove();
    }, ms);
    t.unref();
    this.lingering.set(r, t);
  }

  /** `r` is gone: nothing held, deferred or lingering for it any more. */
  forget(r: SaRecord): void {
    this.held.delete(r);
    this.peerSent.delete(r);
    clearTimeout(this.deferred.get(r));
    this.deferred.delete(r);
    clearTimeout(this.lingering.get(r));
    this.lingering.delete(r);
  }
}
