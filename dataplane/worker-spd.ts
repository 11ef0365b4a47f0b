// The outbound policies as seen by a worker that reads its own TUN queue
// (worker-tun-input.ts): inner packet -> SPD family (RFC 4301 §4.4.1) -> the
// member that seals it.
//
// Every member of a family carries the same selectors (clones, RFC 7791;
// RFC 9611 per-resource SAs; parallel Child SAs, RFC 7296 §2.8), so any of
// them may carry the packet: a worker that owns a sending member seals the
// packet with it where it was read, and the packet crosses no thread. Only a
// packet of a family with no sending member here goes to the owner of the
// member the I/O thread's SPD would pick (spd.ts: 5-tuple hash over the
// senders), through a hand-off ring.
//
// The table is a copy of the I/O thread's SPD (spd.ts policyTable()), sent
// with every change (PoliciesRequest); a sender's slot and tag are checked by
// its owner before it seals, so a stale table drops (counted), never misuses
// a slot.
//
// Owner: one worker thread. Untrusted bytes (architecture §4.3): nothing here
// throws on packet contents.
import { flowHash, flowMatches, newFlowTuple, parseFlow, type Selector } from './packet.js';
import type { PolicyFamily, PolicySender } from './messages.js';

interface WorkerFamily {
  localTs: Selector[];
  remoteTs: Selector[];
  senders: PolicySender[];
  /** The senders this worker owns. */
  own: PolicySender[];
}

/** Why choose() found no sender. */
export const NO_POLICY = 'no-policy';
export const MALFORMED = 'malformed';

export class WorkerSpd {
  private families: WorkerFamily[] = [];
  private readonly flow = newFlowTuple();

  constructor(private readonly me: number) {}

  /** Replace the table (PoliciesRequest). */
  set(families: readonly PolicyFamily[]): void {
    this.families = families.map((f) => ({ ...f, own: f.senders.filter((s) => s.worker === this.me) }));
  }

  /** The sender for an outbound inner packet: one of this worker's when the family has one. Never throws on packet bytes. */
  choose(packet: Uint8Array): PolicySender | typeof NO_POLICY | typeof MALFORMED {
    const f = this.flow;
    if (!parseFlow(packet, f)) return MALFORMED;
    for (const family of this.families) {
      if (!flowMatches(packet, f, family.localTs, family.remoteTs)) continue;
      const pick = family.own.length > 0 ? family.own : family.senders;
      const n = pick.length;
      if (n === 0) return NO_POLICY;
      return n === 1 ? pick[0]! : pick[flowHash(packet, f) % n]!;
    }
    return NO_POLICY;
  }
}
