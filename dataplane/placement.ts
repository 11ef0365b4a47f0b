// Which worker will own a Child SA, decided before it exists: the control
// plane asks while it draws the Child SA's inbound SPI, so the SPI can carry
// the worker's index (io/spi-layout.ts) and the kernel can steer its ESP to
// that worker's socket (architecture §3). The install then puts the SA on
// exactly that worker (SaSpec.worker).
//
// The choice is Sad.chooseOwner's, made early: a rekey stays on its
// predecessor's worker; otherwise the worker with the fewest SAs of the same
// family (equal selectors: the clones of one Child SA), then the fewest in
// all. Negotiations still in flight count too ("promised" SAs), or clones
// negotiated at the same time would all land on one worker; a promise is kept
// by the install that names its worker, or lapses after PROMISE_TTL_MS (the
// negotiation failed), and at most MAX_PROMISES are kept.
//
// Owner: the I/O thread (main thread), beside the SAD it reads.
import type { Selector } from './packet.js';
import { familyKey, type Sad } from './sad.js';
import { MAX_SPI_WORKERS } from '../io/spi-layout.js';

/** A negotiation takes seconds at most (retransmissions included); later, its promise lapses. */
export const PROMISE_TTL_MS = 60_000;
/** Promises kept at most (the oldest go first): bounded like every queue (architecture §4.6). */
export const MAX_PROMISES = 1024;

interface Promised {
  worker: number;
  familyKey: string;
  until: number;
}

export class WorkerPlacement {
  private promised: Promised[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The worker that will own a new SA with these selectors (or the worker of
   * the SA with inbound SPI `replacingSpi`, a rekey). `preferred`: the worker
   * a per-worker placement chose (RFC 9611, parallel Child SAs), taken when
   * it has room and this is no rekey. `sad` undefined (the plane is not
   * running): worker 0.
   */
  place(sad: Sad | undefined, localTs: readonly Selector[], remoteTs: readonly Selector[], replacingSpi?: number, preferred?: number): number {
    if (!sad) return 0;
    this.expire();
    const family = familyKey(localTs, remoteTs);
    const predecessor = replacingSpi !== undefined ? sad.inbound(replacingSpi) : undefined;
    const usable = (w: number | undefined): w is number =>
      Number.isInteger(w) && w! >= 0 && w! < Math.min(sad.workers, MAX_SPI_WORKERS) && sad.slots[w!]!.available >= 2;
    // None with room: worker 0 all the same; its install is then refused as full.
    // An SPI names one of the first MAX_SPI_WORKERS workers only (io/spi-layout.ts): the others own no steered SA.
    const worker = !predecessor && usable(preferred) ? preferred : sad.chooseOwner(family, predecessor ? [predecessor.id] : [], this.promised, MAX_SPI_WORKERS) ?? 0;
    if (this.promised.length >= MAX_PROMISES) this.promised.shift();
    this.promised.push({ worker, familyKey: family, until: this.now() + PROMISE_TTL_MS });
    return worker;
  }

  /** An SA was installed on `worker`: the promise it came from (same family, or else any there) is kept. */
  kept(worker: number, family: string): void {
    let i = this.promised.findIndex((p) => p.worker === worker && p.familyKey === family);
    if (i < 0) i = this.promised.findIndex((p) => p.worker === worker);
    if (i >= 0) this.promised.splice(i, 1);
  }

  /** Promises not yet kept (status and tests). */
  get pending(): number {
    this.expire();
    return this.promised.length;
  }

  private expire(): void {
    const now = this.now();
    if (this.promised.some((p) => p.until <= now)) this.promised = this.promised.filter((p) => p.until > now);
  }
}
