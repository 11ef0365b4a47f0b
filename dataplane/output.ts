// The workers' output on the I/O thread, when they do not write it
// themselves (no direct output: no TUN device, dgram sockets, raw-socket, or
// `output: 'io-thread'`): ESP from the out rings to the peers (UDP 4500,
// RFC 3948, or raw IP protocol 50), decapsulated inner packets, after the
// inbound selector check (RFC 4301 §5.2), to the inner sink (TUN). Each ESP
// cell carries the outer header word its worker read from the inner packet
// (outer-header.ts: DSCP, ECN, DF); it leaves with it, as the worker's own
// sends do. IPv4 DF is a socket option (native/io/udp.c): switched only
// when no worker sends on a copy of these sockets (no direct output).
//
// Owner: the I/O thread, the only reader of every worker's out ring
// (architecture §4.1). Views into the rings are valid until release(): the
// senders copy what they keep.
import { CellKind, metaKind, metaSlot, metaTag } from './ring.js';
import type { WorkerHandle } from './workers.js';
import { DRAIN_IDLE_WAIT_MS, SEND_BUDGET } from './defaults.js';
import { OUTER_DF_SOCKOPT } from '../io/native-io.js';
import type { PlaneState } from './state.js';

export class OutputDrain {
  constructor(private readonly s: PlaneState) {}

  /**
   * Take the workers' output: send ESP to peers, deliver inner packets. One
   * loop for all workers, round robin, at most SEND_BUDGET cells per turn of
   * the event loop: this thread's sockets are read once per turn (libuv takes
   * up to 32 datagrams per socket), so sending no faster than that keeps a
   * receiving socket on the same thread (two gateways in one process) from
   * overflowing, and keeps IKE responsive under load.
   */
  async drain(): Promise<void> {
    const workers = this.s.workers;
    let next = 0;
    while (this.s.running) {
      let budget = SEND_BUDGET;
      let idle = 0;
      while (budget > 0 && idle < workers.length) {
        const w = workers[next]!;
        next = (next + 1) % workers.length;
        const k = Math.min(w.output.available(), Math.max(1, Math.ceil(SEND_BUDGET / workers.length)), budget);
        if (k === 0) {
          idle++;
          continue;
        }
        idle = 0;
        this.drainCells(w, k);
        budget -= k;
      }
      if (budget === SEND_BUDGET) {
        // Nothing to do: sleep until any worker publishes output. The bell's
        // count is read before the rings are checked, so output published in
        // between ends the wait at once.
        const doorbell = workers[0]!.doorbell;
        const seen = doorbell.value();
        if (workers.every((w) => w.output.available() === 0)) await doorbell.wait(seen, DRAIN_IDLE_WAIT_MS);
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }

  /** Handle and release the first `k` output cells of worker `w`. */
  private drainCells(w: WorkerHandle, k: number): void {
    const out = w.output;
    const sad = this.s.sad!;
    const io = this.s.io;
    // This thread alone sends on its sockets unless workers write their own output (dups of them).
    const dfSockopt = this.s.direct ? 0 : OUTER_DF_SOCKOPT;
    for (let i = 0; i < k; i++) {
      const meta = out.meta(i);
      const r = sad.atSlot(w.index, metaSlot(meta), metaTag(meta));
      if (!r) {
        io.dropNoSa++;
        continue;
      }
      const payload = out.payload(i);
      if (metaKind(meta) === CellKind.ESP) {
        io.espOut++;
        io.espOutBytes += payload.length;
        // The payload is valid only until release(): the senders copy what they keep.
        const word = out.outer(i);
        const outer = word === 0 ? 0 : word | dfSockopt;
        if (r.transport === 'raw' && this.s.rawSender) this.s.rawSender.send(payload, r.remote.address, outer);
        else this.s.sendUdp(r.local, r.remote, payload, outer);
      } else if (!this.s.spd.inboundAllowed(r, payload)) {
        io.dropPolicy++;
      } else if (this.s.innerSink?.write(payload)) {
        io.innerOut++;
      } else {
        io.dropNoSink++;
      }
    }
    out.release(k);
    this.s.flushUdp?.();
    this.s.rawSender?.flush?.();
    const dropped = this.s.innerSink?.flush?.() ?? 0;
    if (dropped > 0) {
      io.innerOut -= dropped;
      io.dropNoSink += dropped;
    }
  }
}
