// A token bucket, the one rate limit every layer uses: the data plane's ICMP
// too-big answers (dataplane/path-check.ts, RFC 4443 §2.4 (f)) and the
// cluster's liveness probe answers (control/cluster/liveness-probe.ts).
// Pure state on an injected clock; whoever holds an instance owns it
// (architecture §2: the bottom of io/, usable by every layer).

/** Token bucket: `rate` tokens a second, at most `burst` saved (RFC 4443 §2.4 (f) suggests one). */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes a token at time `now` (ms); false when none is left. */
  take(now: number): boolean {
    const elapsed = Math.max(0, now - this.last);
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
