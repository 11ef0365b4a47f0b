// A bare thread of the scale benchmark (bench/scale.ts): one ESP kernel, no
// rings, no event loop, no pool. From a common start flag until a common stop
// flag (a fixed window) it seals batches of IPv4/UDP packets with an outbound
// SA and, in the seal+open model, opens them again with the matching inbound
// SA. Sealing only, with an SA per thread, it is the control of the encap
// table: how this machine scales the same kernel with nothing else in the way.
//
// In the 'shared-sa' model every thread works on the same SA: its sequence
// numbers come from one counter in shared memory (Atomics.add per batch) and
// every packet passes one anti-replay window in shared memory — checked before
// and updated after the ICV check (RFC 4303 §3.4.3), each under a spinlock
// taken with Atomics.compareExchange. In 'sa-per-worker' each thread has its
// own SA and nothing is shared. Benchmark code only.
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { DESC_WORDS, Desc, EspKernel, NEXT_HEADER_IPV4, ResultCode } from '../dataplane/kernel.js';
import type { WasmModule } from '../dataplane/kernel-wasm.js';
import { writeUdp4 } from '../dataplane/packet.js';

export interface SealOpenTask {
  module: unknown;
  mode: 'sa-per-worker' | 'shared-sa';
  /** false: seal only (the bare-thread control of the encap table); true: seal, then open. */
  open: boolean;
  key: Uint8Array;
  spi: number;
  size: number;
  /** shared-sa: Int32 lock, then BigInt64 highest sequence number and counter, then the window bitmap. */
  shared?: SharedArrayBuffer;
  /**
   * Two Int32 flags: [0] the start line, set to 1 (and notified) once every
   * thread is ready; [1] the finish line, set to 1 when the window is over.
   */
  flags: SharedArrayBuffer;
}

export interface SealOpenResult {
  sealed: number;
  /** Packets that passed the ICV check and the replay window (0 when sealing only). */
  opened: number;
  /** This thread's own time from the start flag to seeing the finish flag. */
  ms: number;
}

export const WINDOW = 4096;
/** Layout of the shared state: lock (Int32 at 0), highest (BigInt64 at 8), counter (BigInt64 at 16), bitmap (Int32 x WINDOW/32 at 24). */
export const SHARED_BYTES = 24 + WINDOW / 8;
const BATCH = 64;
const STRIDE = 2048;

/** The shared anti-replay window (RFC 4303 §3.4.3, a bitmap ring as in RFC 6479), guarded by a spinlock. */
class SharedWindow {
  private readonly lock: Int32Array;
  private readonly top: BigInt64Array;
  private readonly bits: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.lock = new Int32Array(buffer, 0, 1);
    this.top = new BigInt64Array(buffer, 8, 1);
    this.bits = new Int32Array(buffer, 24, WINDOW / 32);
  }

  private acquire(): void {
    while (Atomics.compareExchange(this.lock, 0, 0, 1) !== 0) {
      // spin
    }
  }

  private release(): void {
    Atomics.store(this.lock, 0, 0);
  }

  /** Whether `seq` may still be accepted (not seen, not left of the window). */
  check(seq: number): boolean {
    this.acquire();
    const top = Number(this.top[0]);
    const i = seq % WINDOW;
    const ok = seq + WINDOW > top && (seq > top || (this.bits[i >>> 5]! & (1 << (i & 31))) === 0);
    this.release();
    return ok;
  }

  /** Record an authenticated `seq`; false if another thread took it meanwhile. */
  update(seq: number): boolean {
    this.acquire();
    let top = Number(this.top[0]);
    let ok = true;
    if (seq > top) {
      // Clear the bits the window slides over.
      for (let s = Math.max(top + 1, seq - WINDOW + 1); s <= seq; s++) {
        const j = s % WINDOW;
        this.bits[j >>> 5]! &= ~(1 << (j & 31));
      }
      top = seq;
      this.top[0] = BigInt(top);
    }
    const i = seq % WINDOW;
    if (seq + WINDOW <= top || (this.bits[i >>> 5]! & (1 << (i & 31))) !== 0) ok = false;
    else this.bits[i >>> 5]! |= 1 << (i & 31);
    this.release();
    return ok;
  }
}

function run(task: SealOpenTask): SealOpenResult {
  const kernel = EspKernel.createSync(task.module as WasmModule);
  const OUT = 0;
  const IN = 1;
  const params = { algorithm: 'aes-gcm-128' as const, spi: task.spi, esn: true };
  kernel.installSa(OUT, { ...params, keyMaterial: task.key.slice(), direction: 'out' });
  kernel.installSa(IN, { ...params, keyMaterial: task.key.slice(), direction: 'in', replayWindow: WINDOW });
  const shared = task.shared;
  const window = shared ? new SharedWindow(shared) : undefined;
  const counter = shared ? new BigInt64Array(shared, 16, 1) : undefined;
  const src = Uint8Array.of(10, 1, 0, 1);
  const dst = Uint8Array.of(10, 2, 0, 1);
  const seqs = new Float64Array(BATCH);
  let sealed = 0;
  let opened = 0;
  const flags = new Int32Array(task.flags);
  // Everyone starts together.
  parentPort!.postMessage('ready');
  Atomics.wait(flags, 0, 0);
  const t0 = performance.now();
  while (Atomics.load(flags, 1) === 0) {
    const arena = kernel.arena;
    const desc = kernel.descriptors;
    for (let k = 0; k < BATCH; k++) {
      const at = k * STRIDE + kernel.headroom;
      writeUdp4(arena, at, task.size, src, dst, 10000, 9, k);
      const d = k * DESC_WORDS;
      desc[d + Desc.OFFSET] = at;
      desc[d + Desc.LENGTH] = task.size;
      desc[d + Desc.SLOT] = OUT;
      desc[d + Desc.NEXT_HEADER] = NEXT_HEADER_IPV4;
    }
    // One SA shared: its next numbers are reserved from the common counter.
    if (counter) kernel.setNextSeqOut(OUT, BigInt.asUintN(64, Atomics.add(counter, 0, BigInt(BATCH))));
    const first = Number(kernel.exports.slotCounter(OUT, 0)); // Counter.SEQ_OUT_NEXT
    kernel.encapBatch(BATCH);
    sealed += BATCH;
    if (!task.open) continue;
    // Open what was sealed: the ESP packets are where the kernel left them.
    let n = 0;
    for (let k = 0; k < BATCH; k++) {
      const d = k * DESC_WORDS;
      if (desc[d + Desc.RESULT]! > ResultCode.OK_REKEY_NEEDED) continue;
      const seq = first + k;
      if (window && !window.check(seq)) continue;
      const e = n * DESC_WORDS;
      desc[e + Desc.OFFSET] = desc[d + Desc.OUT_OFFSET]!;
      desc[e + Desc.LENGTH] = desc[d + Desc.OUT_LENGTH]!;
      desc[e + Desc.SLOT] = IN;
      seqs[n] = seq;
      n++;
    }
    kernel.decapBatch(n);
    for (let k = 0; k < n; k++) {
      if (desc[k * DESC_WORDS + Desc.RESULT]! > ResultCode.OK_REKEY_NEEDED) continue;
      if (window && !window.update(seqs[k]!)) continue;
      opened++;
    }
  }
  const ms = performance.now() - t0;
  kernel.deleteSa(OUT);
  kernel.deleteSa(IN);
  return { sealed, opened, ms };
}

parentPort?.once('message', (task: SealOpenTask) => {
  parentPort!.postMessage(run(task));
});
