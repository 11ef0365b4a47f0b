// A worker's wake-up bell: every writer of the worker's rings in (the I/O
// thread's in ring, other workers' hand-off rings) and every control request
// rings it after publishing, and the worker sleeps on it when it has nothing
// to do. Two ways to sleep, one per worker loop (worker-epoll.ts):
//   event-loop  Atomics.waitAsync on the count (the thread's event loop runs
//               meanwhile: control messages, libuv watches of its fds)
//   epoll       blocked in epoll_wait (native/io/poll.c) over the worker's
//               socket, its TUN queue and the bell's eventfd, which ring()
//               signals; a control request also counts in CONTROLS, so the
//               worker knows to give its event loop a turn for the message.
// A writer signals only when the worker announced it sleeps (SLEEPERS): it
// adds to COUNT, then loads SLEEPERS; the sleeper adds to SLEEPERS, then
// re-checks COUNT (sequentially consistent atomics: one sees the other).
//
// Layout (Int32 words of a 16-byte SharedArrayBuffer): COUNT, SLEEPERS,
// EVENTFD (-1: none, the event-loop way), CONTROLS. Writers: any thread;
// the sleeper: the worker. The eventfd is created and closed by the I/O
// side (workers.ts) around the whole life of every worker that could ring it,
// so a ring never signals a descriptor number reused for something else.
import { loadNativeIo } from '../io/native-io.js';
import { atomics } from './ring.js';

const COUNT = 0;
const SLEEPERS = 1;
const EVENTFD = 2;
const CONTROLS = 3;

export class WorkerBell {
  private readonly words: Int32Array;

  /** A new bell's memory; `eventFd` (eventfdOpen) for a worker that sleeps in epoll, else -1. */
  static create(eventFd = -1): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(16);
    new Int32Array(sab)[EVENTFD] = eventFd;
    return sab;
  }

  constructor(readonly sab: SharedArrayBuffer) {
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength !== 16) throw new TypeError('not a worker bell buffer');
    this.words = new Int32Array(sab);
  }

  /** The eventfd the worker sleeps on in epoll, or -1. */
  get eventFd(): number {
    return Atomics.load(this.words, EVENTFD);
  }

  /** Writers: something was published; wake the worker if it sleeps. */
  ring(): void {
    Atomics.add(this.words, COUNT, 1);
    if (Atomics.load(this.words, SLEEPERS) === 0) return;
    const fd = Atomics.load(this.words, EVENTFD);
    if (fd >= 0) loadNativeIo().eventfdSignal(fd);
    else Atomics.notify(this.words, COUNT);
  }

  /** The I/O side: a control request was posted to the worker's port. */
  control(): void {
    Atomics.add(this.words, CONTROLS, 1);
    this.ring();
  }

  /** The worker: the count to compare with, taken before it checks its rings. */
  value(): number {
    return Atomics.load(this.words, COUNT);
  }

  /** The worker: control requests posted so far. */
  controls(): number {
    return Atomics.load(this.words, CONTROLS);
  }

  /** The worker, before it blocks: false when the bell rang since value() gave `seen` (do not block). */
  sleep(seen: number): boolean {
    Atomics.add(this.words, SLEEPERS, 1);
    if (Atomics.load(this.words, COUNT) !== seen) {
      Atomics.sub(this.words, SLEEPERS, 1);
      return false;
    }
    return true;
  }

  /** The worker, after it woke (only after sleep() returned true). */
  awake(): void {
    Atomics.sub(this.words, SLEEPERS, 1);
  }

  /** The worker, event-loop way: resolve once the bell rang after value() gave `seen`, or after timeoutMs. */
  async wait(seen: number, timeoutMs: number): Promise<void> {
    if (!this.sleep(seen)) return;
    try {
      const r = atomics.waitAsync(this.words, COUNT, seen, timeoutMs);
      if (r.async) await r.value;
    } finally {
      this.awake();
    }
  }
}
