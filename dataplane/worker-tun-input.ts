// A worker's own outbound input: its queue of the multi-queue TUN device
// (IFF_MULTI_QUEUE, one queue per worker; the kernel keeps a flow on one
// queue). The worker reads the queue itself, looks each inner packet up in
// its copy of the SPD (worker-spd.ts) and, when it owns a sending member of
// the packet's family, copies it into its kernel's arena and seals it there:
// read, seal and send on one thread, no hand-off (architecture §3). A packet
// whose family has no member here goes to the owner of the chosen member
// through a hand-off ring (one per pair of workers, HandOffRings), counted
// as HANDOFFS_OUT here and HANDOFFS_IN there.
//
// Owner: one worker thread. The TUN descriptor is the worker's own dup
// (DirectOutput.tunFd, closed by worker-output.ts at stop); this file only
// watches and reads it. The worker is the single writer of its hand-off
// rings out. Untrusted bytes (architecture §4.3): nothing here throws on
// packet contents; every drop is counted by reason.
import { constants } from 'node:os';
import { loadNativeIo, TUN_READ_AREA, type NativeIo } from '../io/native-io.js';
import { TUN_MAX_SEGMENTS, TUN_SEGMENT_AREA } from '../io/tun.js';
import { Desc, DESC_WORDS, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, type EspKernel } from './kernel.js';
import { CellKind, RingWriter } from './ring.js';
import { MALFORMED, NO_POLICY, type WorkerSpd } from './worker-spd.js';
import { WorkerStat, type HandOffRings } from './messages.js';
import { WorkerBell } from './worker-bell.js';
import type { EpollWaiter } from './worker-epoll.js';

const { EPROTO, EMSGSIZE } = constants.errno;

/** Packets read per readiness event before the worker's loop gets its turn (control messages, rings). */
const READ_BUDGET = 256;

export class TunQueueInput {
  private readonly api: NativeIo;
  /** Reads: with offload tso.c's segment area, then its read area; without, one packet. */
  private readonly buffer: Uint8Array;
  private readonly segments = new Int32Array(TUN_MAX_SEGMENTS * 2);
  private readonly handOut: Array<RingWriter | null>;
  private watch: unknown;
  private waiter: EpollWaiter | undefined;
  /** Packets staged in the arena for the next encap batch. */
  private pending = 0;

  /**
   * `owns(slot, tag)`: this worker holds that outbound SA; `encapAndCollect(n)`:
   * seal descriptors 0..n-1 and send the results (the worker's own output path).
   */
  constructor(
    private readonly fd: number,
    private readonly offload: boolean,
    private readonly kernel: EspKernel,
    private readonly stride: number,
    private readonly stats: Float64Array,
    private readonly spd: WorkerSpd,
    handOff: HandOffRings | undefined,
    private readonly owns: (slot: number, tag: number) => boolean,
    private readonly encapAndCollect: (n: number) => void,
  ) {
    this.api = loadNativeIo();
    this.buffer = new Uint8Array(offload ? TUN_SEGMENT_AREA + TUN_READ_AREA : 65536);
    this.handOut = (handOff?.out ?? []).map((o) => (o ? new RingWriter(o.ring, new WorkerBell(o.wake)) : null));
  }

  /** Read whenever the queue is readable (on this thread's event loop, between batches). */
  start(onError: (status: number) => void): void {
    this.watch = this.api.watch(this.fd, (status) => {
      if (status < 0) {
        this.stats[WorkerStat.TUN_READ_ERRORS]!++;
        this.stop();
        onError(status);
        return;
      }
      this.drain();
    });
  }

  /** Read when the worker's epoll says so (worker-epoll.ts), instead of through a libuv watch. */
  attach(waiter: EpollWaiter, onError: (status: number) => void): void {
    this.waiter = waiter;
    waiter.add(this.fd, () => this.drain(), () => {
      this.stats[WorkerStat.TUN_READ_ERRORS]!++;
      this.waiter = undefined;
      onError(-9); // UV_EBADF, as a libuv watch reports a poll error (the device was deleted)
    });
  }

  /** Read up to READ_BUDGET packets: seal what is ours in batches, hand the rest over. */
  drain(): void {
    const st = this.stats;
    const seg = this.segments;
    for (let budget = READ_BUDGET; budget > 0; ) {
      const count = this.offload ? this.api.tunReadSegments(this.fd, this.buffer, seg) : this.readOne();
      if (count === 0) break;
      st[WorkerStat.TUN_READ_CALLS]!++;
      if (count < 0) {
        st[WorkerStat.TUN_READ_ERRORS]!++;
        // A packet tso.c refused is dropped; the queue is still readable.
        if (count !== -EPROTO && count !== -EMSGSIZE) break;
        budget--;
        continue;
      }
      if (count > 1) st[WorkerStat.TUN_SEGMENTED]! += count;
      for (let i = 0; i < count; i++) {
        const at = seg[2 * i]!;
        this.take(this.buffer.subarray(at, at + seg[2 * i + 1]!));
      }
      budget -= count;
    }
    this.flush();
  }

  private readOne(): number {
    const n = this.api.tunRead(this.fd, this.buffer);
    if (n <= 0) return n;
    this.segments[0] = 0;
    this.segments[1] = n;
    return 1;
  }

  /** One inner packet: into this worker's batch, onto a hand-off ring, or dropped (counted). */
  private take(packet: Uint8Array): void {
    const st = this.stats;
    st[WorkerStat.TUN_READS]!++;
    st[WorkerStat.TUN_READ_BYTES]! += packet.length;
    const sender = this.spd.choose(packet);
    if (sender === MALFORMED) {
      st[WorkerStat.INNER_MALFORMED]!++;
      return;
    }
    if (sender === NO_POLICY) {
      st[WorkerStat.INNER_NO_POLICY]!++;
      return;
    }
    const kernel = this.kernel;
    if (packet.length + kernel.headroom + kernel.tailroom > this.stride) {
      st[WorkerStat.INNER_MALFORMED]!++; // too long to encapsulate
      return;
    }
    const out = this.handOut[sender.worker];
    if (out) {
      if (out.push(packet, sender.slot, CellKind.ENCAP, sender.tag)) st[WorkerStat.HANDOFFS_OUT]!++;
      else st[WorkerStat.DROP_HANDOFF_FULL]!++;
      return;
    }
    if (!this.owns(sender.slot, sender.tag)) {
      st[WorkerStat.DROP_NO_SA]!++; // deleted since the table was sent
      return;
    }
    const at = this.pending * this.stride + kernel.headroom;
    kernel.arena.set(packet, at);
    const d = this.pending * DESC_WORDS;
    const desc = kernel.descriptors;
    desc[d + Desc.OFFSET] = at;
    desc[d + Desc.LENGTH] = packet.length;
    desc[d + Desc.SLOT] = sender.slot;
    // Tunnel mode (RFC 4303 §2.6): Next Header says what the inner packet is.
    desc[d + Desc.NEXT_HEADER] = (packet[0]! >> 4) === 6 ? NEXT_HEADER_IPV6 : NEXT_HEADER_IPV4;
    if (++this.pending === kernel.maxBatch) this.sealPending();
  }

  private sealPending(): void {
    const n = this.pending;
    this.pending = 0;
    if (n > 0) this.encapAndCollect(n);
  }

  /** Seal what is staged and publish the hand-offs (each publish rings the owner's bell). */
  private flush(): void {
    this.sealPending();
    for (const out of this.handOut) out?.publish();
  }

  /** Stop reading (the descriptor is the direct writer's to close). A second call does nothing. */
  stop(): void {
    if (this.watch !== undefined) this.api.unwatch(this.watch);
    this.watch = undefined;
    this.waiter?.remove(this.fd);
    this.waiter = undefined;
  }
}
