// The worker loop that blocks in the kernel (`dataplane.worker_loop: epoll`):
// when a worker has nothing to do it sleeps in epoll_wait (native/io/poll.c)
// over its socket of the steered NAT-T port, its TUN queue and its bell's
// eventfd (worker-bell.ts), and whatever wakes it is read, sealed or opened
// and written out on the spot, without a turn of the JavaScript event loop
// (no libuv poll callback, no Atomics.waitAsync promise). The event loop
// still gets a turn when a control request was posted (the bell counts
// them), while a traffic generator runs, after an idle timeout and every
// YIELD_EVERY wake-ups; so control messages (install, delete, routes) run
// between batches, as with the other loop, and the one-writer-per-SA
// invariant is unchanged: only this thread touches its kernel.
//
// Owner: one worker thread; the epoll descriptor is its own (closed at
// stop), the eventfd is the I/O side's (workers.ts), only watched here.
import { loadNativeIo, type NativeIo } from '../io/native-io.js';
import type { WorkerBell } from './worker-bell.js';

/** Token of the bell's eventfd; watched descriptors get 1, 2, ... */
const TOKEN_BELL = 0;
/** Most events one wait returns (native/io/poll.c MAX_EVENTS). */
const MAX_EVENTS = 16;
const READABLE = 1;
const FAILED = 2;

interface Watched {
  fd: number;
  onReadable: () => void;
  onError: () => void;
}

export class EpollWaiter {
  private readonly api: NativeIo;
  private readonly epfd: number;
  private readonly events = new Int32Array(MAX_EVENTS * 2);
  private readonly watched = new Map<number, Watched>();
  private nextToken = 1;

  constructor(private readonly bell: WorkerBell) {
    this.api = loadNativeIo();
    if (bell.eventFd < 0) throw new Error('epoll worker loop: the bell has no eventfd');
    this.epfd = this.api.pollCreate();
    this.api.pollAdd(this.epfd, bell.eventFd, TOKEN_BELL);
  }

  /** Watch `fd`: onReadable runs inside wait() when it is readable; onError once when it fails (it is unwatched first). */
  add(fd: number, onReadable: () => void, onError: () => void): void {
    const token = this.nextToken++;
    this.api.pollAdd(this.epfd, fd, token);
    this.watched.set(token, { fd, onReadable, onError });
  }

  /** Stop watching `fd` (before it is closed). */
  remove(fd: number): void {
    for (const [token, w] of this.watched) {
      if (w.fd !== fd) continue;
      this.api.pollDel(this.epfd, fd);
      this.watched.delete(token);
    }
  }

  /**
   * Block until a watched descriptor is readable or the bell rings (or
   * timeoutMs), and run the handlers of what is ready. Returns at once when
   * the bell rang since value() gave `seen`. Returns the events handled
   * (0: timeout).
   */
  wait(seen: number, timeoutMs: number): number {
    if (!this.bell.sleep(seen)) return 1;
    let n: number;
    try {
      n = this.api.pollWait(this.epfd, this.events, timeoutMs);
    } finally {
      this.bell.awake();
    }
    return this.dispatch(n);
  }

  /**
   * Run the handlers of what is ready now, without sleeping: a worker busy
   * with ring cells calls it after each batch, so its socket and TUN queue
   * are read while the rings stay busy (they are read nowhere else).
   */
  pollNow(): number {
    return this.dispatch(this.api.pollWait(this.epfd, this.events, 0));
  }

  private dispatch(n: number): number {
    for (let i = 0; i < n; i++) {
      const token = this.events[2 * i]!;
      const flags = this.events[2 * i + 1]!;
      if (token === TOKEN_BELL) {
        this.api.eventfdDrain(this.bell.eventFd);
        continue;
      }
      const w = this.watched.get(token);
      if (!w) continue;
      if (flags & READABLE) w.onReadable();
      else if (flags & FAILED) {
        this.remove(w.fd);
        w.onError();
      }
    }
    return Math.max(0, n);
  }

  close(): void {
    this.watched.clear();
    this.api.close(this.epfd);
  }
}
