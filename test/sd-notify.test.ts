// The sd_notify(3) protocol as systemd sees it: a real AF_UNIX datagram socket
// (test/support/notify-receiver.ts) receives what the
// native addon sends for READY, RELOADING, STOPPING, STATUS and the watchdog.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { serviceNotifier } from '../io/sd-notify.js';
import { interopTest } from './support/prereq.js';
import { notifyReceiver, type Receiver } from './support/notify-receiver.js';

const children: Array<{ stop(): void }> = [];
const dir = mkdtempSync(join(tmpdir(), 'ikc-notify-'));
afterAll(() => {
  for (const c of children) c.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function receiver(path: string): Promise<Receiver> {
  const r = await notifyReceiver(path);
  children.push(r);
  return r;
}

describe('sd_notify(3) through the native addon', () => {
  interopTest('sends READY, STATUS, RELOADING with MONOTONIC_USEC, and STOPPING to a socket path', ['native'], async () => {
    const path = join(dir, 'notify.sock');
    const r = await receiver(path);
    const n = serviceNotifier({ env: { NOTIFY_SOCKET: path } });
    expect(n.enabled).toBe(true);
    expect(n.watchdogMs).toBeNull();
    n.ready('3 connections\nloaded');
    n.reloading();
    n.status('reloaded');
    n.stopping();
    const got = await r.next(4);
    expect(got[0]).toBe('READY=1\nSTATUS=3 connections loaded');
    expect(got[1]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    const usec = BigInt(got[1]!.split('=')[2]!);
    const now = process.hrtime.bigint() / 1000n;
    expect(usec <= now && now - usec < 10_000_000n).toBe(true);
    expect(got.slice(2)).toEqual(['STATUS=reloaded', 'STOPPING=1']);
    n.close();
    r.stop();
  });

  interopTest('reaches an abstract socket named with @', ['native'], async () => {
    const name = `@ikc-notify-${process.pid}-${Date.now()}`;
    const r = await receiver(name);
    const n = serviceNotifier({ env: { NOTIFY_SOCKET: name } });
    n.ready();
    expect(await r.next(1)).toEqual(['READY=1']);
    r.stop();
  });

  interopTest('pings the watchdog at half of WATCHDOG_USEC, only for the process it names', ['native'], async () => {
    const path = join(dir, 'watchdog.sock');
    const r = await receiver(path);
    const n = serviceNotifier({ env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) } });
    expect(n.watchdogMs).toBe(100);
    const got = await r.next(3, 3000);
    n.close();
    expect(got).toEqual(['WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
    const after = r.datagrams.length;
    await new Promise((res) => setTimeout(res, 350));
    expect(r.datagrams.length).toBe(after);
    expect(serviceNotifier({ env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' } }).watchdogMs).toBeNull();
    expect(serviceNotifier({ env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: 'soon' } }).watchdogMs).toBeNull();
    r.stop();
  });

  it('does nothing without NOTIFY_SOCKET or with a relative one', () => {
    const sent: string[] = [];
    for (const env of [{}, { NOTIFY_SOCKET: 'relative.sock' }]) {
      const n = serviceNotifier({ env: { ...env, WATCHDOG_USEC: '1000' }, send: (_s, m) => sent.push(m) });
      expect(n.enabled).toBe(false);
      expect(n.watchdogMs).toBeNull();
      n.ready();
      n.stopping();
    }
    expect(sent).toEqual([]);
  });

  interopTest('reports a socket nobody listens on once, and stops trying', ['native'], () => {
    const errors: Error[] = [];
    const n = serviceNotifier({ env: { NOTIFY_SOCKET: join(dir, 'nobody.sock') }, onError: (e) => errors.push(e) });
    n.ready();
    n.status('still here');
    n.stopping();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/notifySend: sendto: .*(ENOENT|no such file)/i);
  });
});
