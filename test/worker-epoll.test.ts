// The worker loop that blocks in the kernel (dataplane/worker-epoll.ts,
// worker-bell.ts, native/io/poll.c): a worker sleeping in epoll_wait is woken
// by a ring of its bell from another thread and by a watched descriptor
// becoming readable, whose handler runs inside the wait; a bell rung before
// the worker went to sleep keeps it from sleeping at all; an idle wait ends
// at its timeout.
import { afterEach, describe, expect } from 'vitest';
import { Worker } from 'node:worker_threads';
import { createSocket } from 'node:dgram';
import { loadNativeIo } from '../io/native-io.js';
import { WorkerBell } from '../dataplane/worker-bell.js';
import { EpollWaiter } from '../dataplane/worker-epoll.js';
import { interopTest } from './support/prereq.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function bellWithEventFd(): { bell: WorkerBell; waiter: EpollWaiter } {
  const api = loadNativeIo();
  const fd = api.eventfdOpen();
  const bell = new WorkerBell(WorkerBell.create(fd));
  const waiter = new EpollWaiter(bell);
  cleanups.push(() => {
    waiter.close();
    api.close(fd);
  });
  return { bell, waiter };
}

describe('EpollWaiter and WorkerBell', () => {
  interopTest('an idle wait ends at its timeout; a bell rung since value() keeps the worker from sleeping', ['native'], () => {
    const { bell, waiter } = bellWithEventFd();
    const seen = bell.value();
    const t0 = performance.now();
    expect(waiter.wait(seen, 60)).toBe(0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(50);
    bell.ring();
    const t1 = performance.now();
    expect(waiter.wait(seen, 5000)).toBe(1);
    expect(performance.now() - t1).toBeLessThan(1000);
    // A control request counts apart from ring publishes.
    const controls = bell.controls();
    bell.control();
    expect(bell.controls()).toBe(controls + 1);
  });

  interopTest('a worker blocked in epoll_wait wakes when another thread rings its bell', ['native'], async () => {
    const { bell, waiter } = bellWithEventFd();
    // The other thread rings after a delay, while this thread is blocked in the kernel.
    const ringer = new Worker(
      `const { workerData } = require('node:worker_threads');
       const words = new Int32Array(workerData.sab);
       setTimeout(() => {
         Atomics.add(words, 0, 1);
         if (Atomics.load(words, 1) !== 0) require(workerData.addon).eventfdSignal(Atomics.load(words, 2));
       }, 300);`,
      { eval: true, workerData: { sab: bell.sab, addon: (await import('../io/native-io.js')).nativeIoPath() } },
    );
    cleanups.push(() => void ringer.terminate());
    const seen = bell.value();
    await new Promise((r) => ringer.once('online', r));
    const t0 = performance.now();
    const n = waiter.wait(seen, 10_000);
    const waited = performance.now() - t0;
    expect(n).toBe(1);
    expect(bell.value()).toBe(seen + 1);
    // Woken by the ring (after about 300 ms), long before the 10 s timeout.
    expect(waited).toBeGreaterThan(100);
    expect(waited).toBeLessThan(5000);
  });

  interopTest('a readable watched descriptor runs its handler inside the wait; a removed one no longer does', ['native'], async () => {
    const { bell, waiter } = bellWithEventFd();
    const api = loadNativeIo();
    const { fd, port } = api.udpOpen('127.0.0.1', 0, 1 << 16);
    cleanups.push(() => api.close(fd));
    let reads = 0;
    let errors = 0;
    const buffer = new Uint8Array(2048);
    const desc = new Int32Array(8 * 8);
    waiter.add(fd, () => {
      reads += api.udpRecv(fd, buffer, 2048, desc);
    }, () => errors++);
    const sender = createSocket('udp4');
    cleanups.push(() => sender.close());
    await new Promise<void>((r) => sender.send(Buffer.from('hello'), port, '127.0.0.1', () => r()));
    expect(waiter.wait(bell.value(), 5000)).toBe(1);
    expect(reads).toBe(1);
    waiter.remove(fd);
    await new Promise<void>((r) => sender.send(Buffer.from('again'), port, '127.0.0.1', () => r()));
    expect(waiter.wait(bell.value(), 100)).toBe(0);
    expect(reads).toBe(1);
    expect(errors).toBe(0);
  });
});
