// Steered ESP for an SPI the worker has no SA for yet, held for a moment
// instead of dropped (architecture §3, "Rekeys lose nothing").
//
// The peer may send on a new Child SA as soon as it has our response (RFC
// 7296 §2.8): as the exchange's responder we send that response first and
// hand the SA to the data plane just after, on the I/O thread, while the
// worker reads its own socket of the steered port. When the I/O thread is
// held up between the two (a loaded machine, a pause), the peer's first ESP
// on the SA can reach the worker before its install request is even posted,
// so applying the queued control messages (worker-input.ts catchUp) finds
// nothing. The I/O thread's own input never had the race (it reads after the
// install, on the same thread) and holds ESP for SAs still installing
// (handover.ts); this is the worker's counterpart: a copy of the datagram is
// kept, in arrival order per SPI, until an inbound SA with that SPI is
// installed (then it is opened before any later datagram of the SPI) or for
// at most `ms`, after which it is dropped and counted as an unknown SPI, as
// before. Bounded in datagrams and in SPIs (architecture §4.6): past either,
// a datagram is dropped at once.
//
// Owner: one worker thread (its SteeredInput's).
import { performance } from 'node:perf_hooks';

/** One datagram held: the ESP, its outer TOS and its source as udpRecv reported them. */
export interface HeldEsp {
  readonly bytes: Uint8Array;
  readonly tos: number;
  readonly source: Int32Array;
  /** When it was held (the hold's clock). */
  readonly at: number;
}

export interface HoldLimits {
  /** Longest hold of a datagram, ms. */
  ms: number;
  /** Datagrams held at most, over all SPIs. */
  packets: number;
  /** SPIs with held datagrams at most. */
  spis: number;
}

export class UnknownSpiHold {
  private readonly bySpi = new Map<number, HeldEsp[]>();
  private count = 0;

  constructor(readonly limits: HoldLimits, private readonly now: () => number = () => performance.now()) {}

  /** Datagrams held now. */
  get size(): number {
    return this.count;
  }

  /** Something is held for `spi`: a later datagram of it is held behind it, never opened first. */
  has(spi: number): boolean {
    return this.bySpi.has(spi);
  }

  /** The SPIs with held datagrams. */
  spis(): number[] {
    return [...this.bySpi.keys()];
  }

  /** Keep a copy of `datagram` (and of `source`); false when the hold is full (the caller drops and counts it). */
  add(spi: number, datagram: Uint8Array, tos: number, source: Int32Array): boolean {
    if (this.count >= this.limits.packets || this.limits.ms <= 0) return false;
    let q = this.bySpi.get(spi);
    if (!q) {
      if (this.bySpi.size >= this.limits.spis) return false;
      this.bySpi.set(spi, (q = []));
    }
    q.push({ bytes: datagram.slice(), tos, source: source.slice(), at: this.now() });
    this.count++;
    return true;
  }

  /** Everything held for `spi`, in arrival order; the hold lets go of it. */
  take(spi: number): HeldEsp[] {
    const q = this.bySpi.get(spi);
    if (!q) return [];
    this.bySpi.delete(spi);
    this.count -= q.length;
    return q;
  }

  /** Let go of what was held `ms` or longer; returns how many datagrams (the caller counts them as unknown SPIs). */
  expire(): number {
    if (this.count === 0) return 0;
    const limit = this.now() - this.limits.ms;
    let dropped = 0;
    for (const [spi, q] of this.bySpi) {
      let n = 0;
      while (n < q.length && q[n]!.at <= limit) n++;
      if (n === 0) continue;
      dropped += n;
      if (n === q.length) this.bySpi.delete(spi);
      else q.splice(0, n);
    }
    this.count -= dropped;
    return dropped;
  }

  /** Let go of everything (the input stops). */
  clear(): void {
    this.bySpi.clear();
    this.count = 0;
  }
}
