// Liveness checks ("dead peer detection", RFC 7296 §2.4): when nothing
// authenticated has arrived from the peer for dpdDelay, an empty
// INFORMATIONAL request goes out. Whatever request is in flight is
// retransmitted with the engine's budget; when the budget is spent the peer is
// declared dead: the engine emits 'peer-dead' and deletes the IKE SA with its
// Child SAs. With dpdAction 'restart' the connection is then initiated again
// (a bounded number of attempts with growing pauses).
//
// "Receipt of a fresh cryptographically protected message on an IKE SA or any
// of its Child SAs ensures liveness" (§2.4): the engine reports authenticated
// IKE messages (heard), the data plane reports ESP packets received
// (reportChildUsage with inPackets).
//
// Owner: the engine's thread. The one check timer of each IKE SA lives in
// sa.timers (cancelled when it dies); restart timers are stopped by stop().
import type { ChildSa, IkeSa } from './ike-sa.js';
import type { TimerHandle } from './clock.js';
import type { IkeContext } from './context.js';
import { DPD_CHECK, LivenessInitiator } from './exchanges/liveness.js';
import type { Endpoint } from './transport.js';
import { DEFAULT_LIVENESS_OPTIONS, type LivenessOptions } from './defaults.js';

export class LivenessMonitor {
  private readonly opts: LivenessOptions;
  private readonly lastHeard = new WeakMap<IkeSa, number>();
  private readonly checks = new WeakMap<IkeSa, TimerHandle>();
  private readonly dead = new WeakSet<IkeSa>();
  private readonly inPackets = new WeakMap<ChildSa, number>();
  private readonly restarts = new Set<TimerHandle>();

  constructor(
    private readonly engine: IkeContext,
    opts: Partial<LivenessOptions> = {},
  ) {
    this.opts = { ...DEFAULT_LIVENESS_OPTIONS, ...opts };
    if (!Number.isInteger(this.opts.restartTries) || this.opts.restartTries < 0) throw new RangeError('liveness: restartTries must be a non-negative integer');
    if (!(this.opts.restartDelay >= 0)) throw new RangeError('liveness: restartDelay must be a non-negative number of ms');
    engine.on('ike-up', (sa) => this.start(sa));
    engine.on('ike-rekeyed', (_old, successor) => this.start(successor));
    engine.on('peer-dead', (sa) => this.dead.add(sa));
    engine.on('ike-down', (sa, reason) => {
      if (this.dead.has(sa)) this.afterDeath(sa, reason);
    });
  }

  /** An authenticated message arrived on `sa` (request or response). */
  heard(sa: IkeSa): void {
    this.lastHeard.set(sa, this.engine.clock.now());
  }

  /** The data plane's packet counters: packets received prove the peer alive. */
  noteChildUsage(child: ChildSa, inPackets: number | undefined): void {
    if (inPackets === undefined) return;
    const before = this.inPackets.get(child) ?? 0;
    this.inPackets.set(child, inPackets);
    if (inPackets > before) this.heard(child.ike);
  }

  /** Milliseconds since the peer was last heard on `sa` (or since it was established). */
  idleFor(sa: IkeSa): number {
    const last = this.lastHeard.get(sa) ?? sa.establishedAt ?? sa.createdAt;
    return this.engine.clock.now() - last;
  }

  /** Stop pending restart attempts (engine shutdown). */
  stop(): void {
    for (const t of this.restarts) t.cancel();
    this.restarts.clear();
  }

  private start(sa: IkeSa): void {
    this.heard(sa);
    const delay = sa.policy.dpdDelay ?? 0;
    if (delay > 0) this.schedule(sa, delay);
  }

  private schedule(sa: IkeSa, ms: number): void {
    const prev = this.checks.get(sa);
    if (prev) {
      prev.cancel();
      sa.timers.delete(prev);
    }
    const t = this.engine.clock.schedule(ms, () => {
      sa.timers.delete(t);
      this.checks.delete(sa);
      this.check(sa);
    });
    sa.timers.add(t);
    this.checks.set(sa, t);
  }

  private check(sa: IkeSa): void {
    if (sa.state !== 'established') return;
    const delay = sa.policy.dpdDelay ?? 0;
    if (!(delay > 0)) return;
    const idle = this.idleFor(sa);
    if (idle < delay) return this.schedule(sa, delay - idle);
    // A request already in flight is retransmitted anyway: its answer, or the
    // end of its budget, settles the question (§2.4). A check still queued
    // (requests held: a cluster node's fencing, a message ID resync) is one:
    // no second one piles up behind it.
    if (!sa.outstanding && !sa.queue.some((x) => x instanceof LivenessInitiator && x.name === DPD_CHECK)) {
      this.engine.log.debug({ ike: sa.id, idle }, 'nothing heard from the peer: liveness check');
      this.engine.queueExchange(sa, new LivenessInitiator(undefined, DPD_CHECK));
    }
    this.schedule(sa, delay);
  }

  private afterDeath(sa: IkeSa, reason: string): void {
    const action = sa.policy.dpdAction ?? 'clear';
    this.engine.log.warn({ ike: sa.id, conn: sa.name, action, reason }, 'peer is dead');
    if (action !== 'restart') return;
    const policy = this.engine.policy(sa.name);
    if (!policy) return;
    // One restart per connection and peer: not while another IKE SA of it (a clone, an attempt under way) lives.
    const sibling = this.engine.ikeSas().some((o) => o !== sa && o.name === sa.name && o.state !== 'dead' && o.remote.address === sa.remote.address);
    if (sibling) return;
    const remote: Endpoint | undefined = policy.remoteAddrs.length > 0 ? undefined : { address: sa.remote.address, port: policy.remotePort };
    const local: Endpoint = { address: sa.local.address, port: this.engine.ports.ike };
    this.restart(sa.name, local, remote, 1);
  }

  private restart(name: string, local: Endpoint, remote: Endpoint | undefined, attempt: number): void {
    if (attempt > this.opts.restartTries) return;
    this.engine.log.info({ conn: name, attempt }, 'initiating the connection again (dpd_action restart)');
    this.engine.emit('ike-restart', name, attempt);
    this.engine.initiate(name, { local, ...(remote ? { remote } : {}) }).catch((err: Error) => {
      if (attempt >= this.opts.restartTries) {
        this.engine.log.warn({ conn: name, attempts: attempt, reason: err.message }, 'restart failed: giving up');
        return;
      }
      const t = this.engine.clock.schedule(this.opts.restartDelay * 2 ** (attempt - 1), () => {
        this.restarts.delete(t);
        this.restart(name, local, remote, attempt + 1);
      });
      this.restarts.add(t);
    });
  }
}
