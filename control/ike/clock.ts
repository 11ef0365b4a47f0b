// Time source for the IKE engine. Every timer the engine arms (retransmission,
// half-open expiry, later lifetimes and liveness) goes through a Clock so that
// tests drive time by hand and run timeouts in milliseconds of real time.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale. */
  now(): number;
  /** Run `fn` once after `ms` milliseconds. */
  schedule(ms: number, fn: () => void): TimerHandle;
  /**
   * Milliseconds since the Unix epoch: the time certificates are checked at
   * (RFC 5280 §6.1.3). Absent: Date.now().
   */
  wallTime?(): number;
}

/**
 * The longest delay setTimeout honours. Node fires anything longer after 1 ms
 * (TimeoutOverflowWarning), which would turn a 30-day lifetime into an
 * immediate expiry.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The real clock: performance.now() and setTimeout (unref'd so timers never hold the process open).
 * Delays beyond MAX_TIMEOUT_MS run as a chain of timers of at most that length;
 * the handle always refers to the chain's current link so that cancel stops it.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallTime: () => Date.now(),
  schedule(ms, fn) {
    let current: ReturnType<typeof setTimeout>;
    const arm = (remaining: number): void => {
      const step = Math.min(remaining, MAX_TIMEOUT_MS);
      current = setTimeout(() => (remaining > step ? arm(remaining - step) : fn()), step);
      current.unref?.();
    };
    // NaN would reach setTimeout as 1 ms anyway; say so instead of relying on it.
    arm(Number.isNaN(ms) ? 0 : Math.max(0, ms));
    return { cancel: () => clearTimeout(current) };
  },
};

/**
 * A clock that only moves when told to (tests, simulations). Timers fire in
 * due-time order from `advance`, including timers armed by other timers.
 */
export class ManualClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  /** `epoch`: the wall time (ms since 1970) at which this clock reads 0. */
  constructor(private readonly epoch: number = Date.now()) {}

  now(): number {
    return this.t;
  }

  wallTime(): number {
    return this.epoch + this.t;
  }

  schedule(ms: number, fn: () => void): TimerHandle {
    const id = this.seq++;
    this.timers.set(id, { due: this.t + Math.max(0, ms), fn });
    return { cancel: () => void this.timers.delete(id) };
  }

  /** Move time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let nextId = -1;
      let nextDue = Infinity;
      for (const [id, timer] of this.timers) {
        if (timer.due <= end && timer.due < nextDue) {
          nextDue = timer.due;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const timer = this.timers.get(nextId)!;
      this.timers.delete(nextId);
      this.t = Math.max(this.t, timer.due);
      timer.fn();
    }
    this.t = end;
  }

  /** Number of armed timers (tests assert nothing is left behind). */
  pending(): number {
    return this.timers.size;
  }
}
