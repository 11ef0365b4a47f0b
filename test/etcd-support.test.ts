// The tests' etcd (test/support/etcd.ts): ports found free can be taken by
// another process before etcd binds them (test files run side by side), and
// startEtcd then tries new ones, a bounded number of times. Here a port held
// by a listening socket stands in for that process. Needs the Debian etcd
// (prerequisite 'etcd').
import { afterEach, describe, expect } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { ETCD_START_ATTEMPTS, freePort, startEtcd, type EtcdServer } from './support/etcd.js';
import { interopTest } from './support/prereq.js';
import { run } from './support/proc.js';

let started: EtcdServer | undefined;
let holder: Server | undefined;
/** Connections to the held port (etcdctl's health checks of an etcd that could not bind it): closed at the end. */
const held = new Set<Socket>();

afterEach(async () => {
  await started?.stop();
  started = undefined;
  for (const s of held) s.destroy();
  held.clear();
  await new Promise<void>((resolve) => (holder ? holder.close(() => resolve()) : resolve()));
  holder = undefined;
});

/** A loopback port some other process holds: a socket of ours listens on it. */
async function takenPort(): Promise<number> {
  const srv = createServer((s) => {
    held.add(s);
    s.on('error', () => undefined);
  });
  holder = srv;
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  return (srv.address() as { port: number }).port;
}

describe('the tests\' etcd when a port it found free is taken', () => {
  interopTest('etcd is started again on new ports, and answers there', ['etcd'], async () => {
    const taken = await takenPort();
    const handedOut: number[] = [];
    // The first port handed out (the client port of the first start) is the taken one.
    const source = async () => {
      const port = handedOut.length === 0 ? taken : await freePort();
      handedOut.push(port);
      return port;
    };
    started = await startEtcd({ freePort: source });
    // Two ports per start: the first start's pair, then the second's.
    expect(handedOut).toHaveLength(4);
    expect(new URL(started.endpoint).port).toBe(String(handedOut[2]));
    const health = await run('etcdctl', [...started.ctlArgs(), '--command-timeout=2s', 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' }, timeoutMs: 10_000 });
    expect(health.code).toBe(0);
  }, 60_000);

  interopTest('a port that stays taken ends in the bind error after a bounded number of starts', ['etcd'], async () => {
    const taken = await takenPort();
    let calls = 0;
    const source = async () => {
      calls++;
      return taken;
    };
    const t0 = Date.now();
    await expect(startEtcd({ freePort: source })).rejects.toThrow(/etcd exited: .*address already in use/s);
    expect(calls).toBe(2 * ETCD_START_ATTEMPTS);
    // Each start ends when etcd exits, not after the wait for it to answer (20 s).
    expect(Date.now() - t0).toBeLessThan(20_000);
  }, 90_000);
});
