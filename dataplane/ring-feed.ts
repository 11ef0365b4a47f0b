// Packets into the workers' in rings: staged cells are published once per
// event-loop turn (setImmediate) or every FLUSH_CELLS cells, so a burst of
// datagrams crosses to a worker as one batch. Shared by the inbound (ESP)
// and outbound (inner packets) stages.
//
// Owner: the I/O thread, the only writer of every worker's in ring
// (architecture §4.1: workers see slots, never SPIs).
import type { CellKind } from './ring.js';
import { FLUSH_CELLS } from './defaults.js';
import type { PlaneState } from './state.js';

export class RingFeed {
  private flushScheduled = false;

  constructor(private readonly s: PlaneState) {}

  /**
   * Stage `packet` for `worker` in `slot` (with its tag and its cell's outer
   * word: ring.ts); false (counted) when its ring is full or it is too long.
   */
  enqueue(worker: number, packet: Uint8Array, slot: number, kind: CellKind, tag: number, outer = 0): boolean {
    const w = this.s.workers[worker]!;
    if (!w.input.push(packet, slot, kind, tag, outer)) {
      // Full ring, or a packet larger than a cell.
      if (packet.length > w.input.maxPayload) this.s.io.dropMalformed++;
      else this.s.io.dropQueueFull++;
      return false;
    }
    if (w.input.staged >= FLUSH_CELLS) w.input.publish();
    else this.scheduleFlush();
    return true;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      for (const w of this.s.workers) w.input.publish();
    });
  }
}
