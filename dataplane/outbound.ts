// Outbound inner packets on the I/O thread: an inner IPv4/IPv6 packet (a TUN
// read, or sendInner) -> SPD (traffic selectors, flow hash over a clone
// family) -> the owner worker's in ring. The worker encapsulates (sequence
// number, AEAD, ESP header and trailer); the ESP comes back through
// output.ts, or the worker sends it itself (direct output). Also the traffic
// generator of the demo and the benchmarks, which the owner workers run.
//
// Owner: the I/O thread (the gateway's main thread). Untrusted bytes
// (architecture §4.3): nothing here throws on packet contents.
import { CellKind } from './ring.js';
import { selectorAddress } from './packet.js';
import type { GenerateReply } from './messages.js';
import { ESP_OVERHEAD, GENERATE_DEFAULTS } from './defaults.js';
import type { RingFeed } from './ring-feed.js';
import type { PlaneState } from './state.js';
import { PathCheck } from './path-check.js';

export interface GenerateOptions {
  /** Packets in total, spread evenly over the outbound SAs. */
  packets: number;
  /** Inner packet bytes (IPv4/UDP). Default 1400. */
  size?: number;
  /** UDP source ports per SA. Default 16. */
  flows?: number;
  /** Packets per kernel call. Default 64. */
  batch?: number;
}

export interface GenerateReport {
  perSa: Array<{ id: number; worker: number } & GenerateReply>;
  sent: number;
  ms: number;
}

export class OutboundInner {
  private readonly path: PathCheck;

  constructor(private readonly s: PlaneState, private readonly feed: RingFeed) {
    this.path = new PathCheck(s);
  }

  /**
   * An outbound inner packet (IPv4 or IPv6): SPD lookup, then to the owner of
   * the chosen SA. Returns false when it was dropped (counted). Never throws
   * on packet contents.
   */
  sendInner(packet: Uint8Array): boolean {
    const io = this.s.io;
    io.innerIn++;
    if (!this.s.running) {
      io.dropNoPolicy++;
      return false;
    }
    const r = this.s.spd.lookup(packet);
    if (r === 'malformed') {
      io.dropMalformed++;
      return false;
    }
    if (r === 'no-policy') {
      io.dropNoPolicy++;
      return false;
    }
    if (!this.path.admit(packet, r)) return false;
    if (packet.length + ESP_OVERHEAD > this.s.workers[r.worker]!.input.maxPayload) {
      io.dropMalformed++;
      return false;
    }
    return this.feed.enqueue(r.worker, packet, r.outSlot, CellKind.ENCAP, r.outTag);
  }

  /**
   * Generate IPv4/UDP traffic through every outbound SA (demo, benchmarks):
   * each SA's owner builds and seals the packets itself, the I/O side sends
   * them to the peer. IPv6-only SAs are skipped.
   */
  async generate(opts: GenerateOptions): Promise<GenerateReport> {
    const sad = this.s.requireSad();
    if (!Number.isInteger(opts.packets) || opts.packets < 0) throw new RangeError('generate: packets must be a non-negative integer');
    const targets = sad.all().filter((r) => r.outbound && r.localTs[0]?.startAddress.length === 4 && r.remoteTs[0]?.startAddress.length === 4);
    if (targets.length === 0) throw new Error('generate: no outbound IPv4 SA installed');
    const t0 = performance.now();
    const per = Math.floor(opts.packets / targets.length);
    const perSa = await Promise.all(targets.map(async (r, i) => {
      const packets = per + (i < opts.packets % targets.length ? 1 : 0);
      const reply = await this.s.workers[r.worker]!.generate({
        slot: r.outSlot,
        tag: r.outTag,
        packets,
        size: opts.size ?? GENERATE_DEFAULTS.size,
        flows: opts.flows ?? GENERATE_DEFAULTS.flows,
        batch: opts.batch ?? GENERATE_DEFAULTS.batch,
        src: selectorAddress(r.localTs[0]!),
        dst: selectorAddress(r.remoteTs[0]!),
        output: 'ring',
      });
      return { id: r.id, worker: r.worker, ...reply };
    }));
    return { perSa, sent: perSa.reduce((a, p) => a + p.sent, 0), ms: performance.now() - t0 };
  }
}
