// NAT keepalives (RFC 3948 §2.3, §4): with a NAT in front of us (NAT
// detection, RFC 7296 §2.23: sa.natLocal), a one-octet 0xFF datagram goes to
// the peer on the NAT-T ports whenever nothing else was sent on that address
// pair for the keepalive interval (default 20 s), so that the NAT keeps the
// mapping. IKE messages (the engine) and ESP packets (the data plane, through
// reportChildUsage's outPackets) count as traffic.
//
// Address pairs, not IKE SAs, are the unit: clones and successors on the same
// pair share one mapping, so they share one "last sent" time and one
// keepalive. Only pairs of established IKE SAs with natLocal are tracked, so
// unauthenticated traffic cannot grow the table (architecture §4.6).
//
// Owner: the engine's thread. Each tracked IKE SA has one timer in sa.timers,
// cancelled when it dies; a pair is forgotten with its last IKE SA.
import type { ChildSa, IkeSa } from './ike-sa.js';
import type { TimerHandle } from './clock.js';
import type { IkeContext } from './context.js';
import type { Endpoint, SendKeepalive } from './transport.js';
import { DEFAULT_NAT_KEEPALIVE } from './defaults.js';

/** The NAT-keepalive payload (RFC 3948 §2.3). */
export const NAT_KEEPALIVE_PAYLOAD: Readonly<Uint8Array> = new Uint8Array([0xff]);

function pairKey(local: Endpoint, remote: Endpoint): string {
  return `${local.address}|${local.port}|${remote.address}|${remote.port}`;
}

interface Pair {
  lastSent: number;
  users: number;
}

export class NatKeepalive {
  private readonly pairs = new Map<string, Pair>();
  private readonly registered = new WeakMap<IkeSa, string>();
  private readonly timers = new WeakMap<IkeSa, TimerHandle>();
  private readonly outPackets = new WeakMap<ChildSa, number>();
  /** Keepalives sent (status, tests). */
  sent = 0;

  constructor(
    private readonly engine: IkeContext,
    private readonly send: SendKeepalive | undefined,
  ) {
    engine.on('ike-up', (sa) => this.track(sa));
    engine.on('ike-rekeyed', (_old, successor) => this.track(successor));
    // A NAT can appear (or go) after setup: MOBIKE moves the SA and NAT
    // detection runs again on the new path (RFC 4555 §3.5, RFC 7296 §2.23);
    // updateNat and relocate report it as 'ike-moved'. Behind a NAT now, the
    // mapping needs keepalives from here on (RFC 3948 §4); out of it, none.
    engine.on('ike-moved', (sa) => {
      if (sa.state !== 'established') return;
      if (sa.natLocal) this.track(sa);
      else this.untrack(sa);
    });
    engine.on('ike-down', (sa) => this.untrack(sa));
    engine.on('ike-failed', (sa) => this.untrack(sa));
  }

  /** Something went out from `local` to `remote` (IKE message or ESP packet). */
  noteSent(local: Endpoint, remote: Endpoint): void {
    if (this.pairs.size === 0) return;
    const p = this.pairs.get(pairKey(local, remote));
    if (p) p.lastSent = this.engine.clock.now();
  }

  /** The data plane's packet counters: packets sent on a UDP-encapsulated Child SA refresh the mapping. */
  noteChildUsage(child: ChildSa, outPackets: number | undefined): void {
    if (outPackets === undefined) return;
    const before = this.outPackets.get(child) ?? 0;
    this.outPackets.set(child, outPackets);
    if (outPackets > before && child.udpEncap) this.noteSent(child.ike.local, child.ike.remote);
  }

  /** Address pairs tracked (tests: bounded, and empty once the SAs are gone). */
  get trackedPairs(): number {
    return this.pairs.size;
  }

  private interval(sa: IkeSa): number {
    return sa.policy.natKeepalive ?? DEFAULT_NAT_KEEPALIVE;
  }

  private track(sa: IkeSa): void {
    if (!this.send || !sa.natLocal || !(this.interval(sa) > 0) || this.registered.has(sa)) return;
    this.join(sa, this.engine.clock.now());
    this.schedule(sa, this.interval(sa));
  }

  private join(sa: IkeSa, lastSent: number): Pair {
    const key = pairKey(sa.local, sa.remote);
    let p = this.pairs.get(key);
    if (!p) this.pairs.set(key, (p = { lastSent, users: 0 }));
    p.users++;
    this.registered.set(sa, key);
    return p;
  }

  private untrack(sa: IkeSa): void {
    const key = this.registered.get(sa);
    if (key === undefined) return;
    this.registered.delete(sa);
    const t = this.timers.get(sa);
    if (t) {
      t.cancel();
      sa.timers.delete(t);
      this.timers.delete(sa);
    }
    const p = this.pairs.get(key);
    if (p && --p.users <= 0) this.pairs.delete(key);
  }

  private schedule(sa: IkeSa, ms: number): void {
    const t = this.engine.clock.schedule(Math.max(1, ms), () => {
      sa.timers.delete(t);
      this.timers.delete(sa);
      this.tick(sa);
    });
    sa.timers.add(t);
    this.timers.set(sa, t);
  }

  private tick(sa: IkeSa): void {
    if (sa.state === 'dead' || !sa.natLocal) return this.untrack(sa);
    const interval = this.interval(sa);
    // The SA may have moved (MOBIKE, NAT mapping change): follow it.
    let key = this.registered.get(sa);
    if (key !== pairKey(sa.local, sa.remote)) {
      this.untrack(sa);
      this.join(sa, this.engine.clock.now());
      key = this.registered.get(sa);
    }
    const p = this.pairs.get(key!)!;
    const now = this.engine.clock.now();
    const idle = now - p.lastSent;
    if (idle >= interval) {
      this.send!(sa.local, sa.remote);
      this.sent++;
      p.lastSent = now;
      this.schedule(sa, interval);
    } else {
      this.schedule(sa, interval - idle);
    }
  }
}
