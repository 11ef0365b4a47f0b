// A worker's own input: the socket of the steered NAT-T port that the kernel
// fills with the ESP of this worker's SAs (io/esp-steering.ts: the SPI names
// the worker). The worker reads it itself, straight into its kernel's arena
// with recvmmsg, and decapsulates the batch there: inbound ESP crosses no
// thread on its way from the socket to the TUN queue.
//
// What arrives is ESP (the steering program sends everything else to the
// control plane's socket), for SPIs that name this worker; an SPI this worker
// holds no inbound SA for (deleted, never installed, forged) is dropped here
// and counted once (DROP_UNKNOWN_SPI), a datagram too short or too long for
// an arena slot as malformed.
//
// Owner: one worker thread. The descriptor is its own (handed over by the
// I/O side, which no longer reads it); it is closed here at stop.
import { loadNativeIo, UDP_DESC_WORDS, type NativeIo } from '../io/native-io.js';
import { Desc, DESC_WORDS, type EspKernel } from './kernel.js';
import { WorkerStat } from './messages.js';
import type { EpollWaiter } from './worker-epoll.js';

/** recvmmsg calls per readiness event before the worker's loop gets its turn (control messages, ring cells). */
const READS_PER_EVENT = 4;
/** Datagrams per recvmmsg call (native/io/udp.c takes at most 64). */
const READ_BATCH = 32;

export class SteeredInput {
  private readonly api: NativeIo;
  private readonly udpDesc = new Int32Array(READ_BATCH * UDP_DESC_WORDS);
  private watch: unknown;
  private waiter: EpollWaiter | undefined;

  /**
   * `inSlot(spi)`: the inbound slot of this worker's SA with that SPI;
   * `decapAndCollect(n)`: run descriptors 0..n-1 through decapBatch and
   * deliver the results (the worker's own output path).
   */
  constructor(
    private fd: number,
    private readonly kernel: EspKernel,
    private readonly stride: number,
    private readonly stats: Float64Array,
    private readonly inSlot: (spi: number) => number | undefined,
    private readonly decapAndCollect: (n: number) => void,
  ) {
    this.api = loadNativeIo();
  }

  /** Read whenever the socket is readable (on this thread's event loop). */
  start(onError: (status: number) => void): void {
    this.watch = this.api.watch(this.fd, (status) => {
      if (status < 0) {
        this.stats[WorkerStat.STEERED_ERRORS]!++;
        this.stop();
        onError(status);
        return;
      }
      this.readAvailable();
    });
  }

  /** Read when the worker's epoll says so (worker-epoll.ts), instead of through a libuv watch. */
  attach(waiter: EpollWaiter, onError: (status: number) => void): void {
    this.waiter = waiter;
    waiter.add(this.fd, () => this.readAvailable(), () => {
      this.stats[WorkerStat.STEERED_ERRORS]!++;
      this.stop();
      onError(-9); // UV_EBADF, as a libuv watch reports a poll error
    });
  }

  private readAvailable(): void {
    for (let i = 0; i < READS_PER_EVENT; i++) if (this.readBatch() < READ_BATCH) break;
  }

  /** One recvmmsg into the arena, then one decap batch; returns the datagrams read. */
  readBatch(): number {
    if (this.fd < 0) return 0;
    const kernel = this.kernel;
    const batch = Math.min(READ_BATCH, kernel.maxBatch);
    const arena = kernel.arena.subarray(0, this.stride * batch);
    const n = this.api.udpRecv(this.fd, arena, this.stride, this.udpDesc);
    if (n <= 0) {
      if (n < 0) this.stats[WorkerStat.STEERED_ERRORS]!++;
      return 0;
    }
    const st = this.stats;
    st[WorkerStat.STEERED_IN]! += n;
    const desc = kernel.descriptors;
    let k = 0;
    for (let i = 0; i < n; i++) {
      const length = this.udpDesc[i * UDP_DESC_WORDS]!;
      const truncated = this.udpDesc[i * UDP_DESC_WORDS + 1]!;
      const at = i * this.stride;
      st[WorkerStat.STEERED_IN_BYTES]! += length;
      // SPI + sequence number at least (RFC 4303 §2); longer than a slot cannot be whole.
      if (length < 8 || truncated !== 0) {
        st[WorkerStat.DROP_MALFORMED]!++;
        continue;
      }
      const spi = ((arena[at]! << 24) | (arena[at + 1]! << 16) | (arena[at + 2]! << 8) | arena[at + 3]!) >>> 0;
      const slot = this.inSlot(spi);
      if (slot === undefined) {
        st[WorkerStat.DROP_UNKNOWN_SPI]!++;
        continue;
      }
      const d = k * DESC_WORDS;
      desc[d + Desc.OFFSET] = at;
      desc[d + Desc.LENGTH] = length;
      desc[d + Desc.SLOT] = slot;
      desc[d + Desc.NEXT_HEADER] = 0;
      k++;
    }
    if (k > 0) this.decapAndCollect(k);
    return n;
  }

  /** Stop reading; the descriptor is closed. A second call does nothing. */
  stop(): void {
    if (this.watch !== undefined) this.api.unwatch(this.watch);
    this.watch = undefined;
    if (this.fd >= 0) this.waiter?.remove(this.fd);
    if (this.fd >= 0) this.api.close(this.fd);
    this.fd = -1;
  }
}
