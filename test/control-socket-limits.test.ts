// The control socket under clients that hold connections open with
// half-written lines: `status` must still answer promptly, one client process
// cannot hold more than its share, and a line that trickles in is cut off.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlServer } from '../control/api/control-server.js';
import { ControlClient } from '../control/api/control-client.js';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { loopbackPair } from './support/loopback.js';
import { nativeIoUnavailable } from '../io/native-io.js';

/**
 * A slow client process: opens `count` connections and writes one byte of a
 * request line to each every `every` ms, never a newline. It prints one line
 * per connection the server closes, with the error the server sent.
 */
const SLOW_CLIENT = `
const net = require('node:net');
const [path, count, every] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const request = '{"id":1,"cmd":"status"}';
for (let i = 0; i < count; i++) {
  const s = net.createConnection(path);
  let at = 0, got = '';
  const timer = setInterval(() => { if (at < request.length) s.write(request[at++]); }, every);
  s.on('data', (d) => { got += d; });
  s.on('error', () => {});
  s.on('close', () => { clearInterval(timer); console.log(JSON.stringify({ closed: got.trim() })); });
}
setTimeout(() => process.exit(0), 30000);
`;

let dir: string;
let gateway: Gateway;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ikc-ctl-limits-'));
  gateway = new Gateway({ config: loopbackPair().initiator, log: silentLogger() });
  await gateway.start();
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await gateway?.stop({ notifyPeers: false });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function slowClients(path: string, count: number, everyMs: number): { process: ChildProcess; closes: string[] } {
  const child = spawn(process.execPath, ['-e', SLOW_CLIENT, path, String(count), String(everyMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const closes: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    for (const line of d.split('\n').filter(Boolean)) closes.push((JSON.parse(line) as { closed: string }).closed);
  });
  return { process: child, closes };
}

async function timedStatus(path: string): Promise<number> {
  const started = performance.now();
  const client = await ControlClient.connect(path, { connectTimeoutMs: 1000 });
  try {
    const status = await client.status({ timeoutMs: 1000 });
    expect(Array.isArray(status.ikeSas)).toBe(true);
  } finally {
    client.close();
  }
  return performance.now() - started;
}

describe('control socket limits', () => {
  it('answers status within a second while 64 slow clients in 8 processes trickle half-written lines', async () => {
    expect(nativeIoUnavailable()).toBeNull();
    const path = join(dir, 'slow.sock');
    const server = new ControlServer({ gateway, path, log: silentLogger(), lineTimeoutMs: 2000 });
    await server.listen();
    try {
      const clients = Array.from({ length: 8 }, () => slowClients(path, 8, 400));
      // Let every slow connection arrive and start its line.
      for (let i = 0; i < 50 && server.stats.evicted < 8 * 4; i++) await new Promise((r) => setTimeout(r, 50));
      const times: number[] = [];
      for (let i = 0; i < 6; i++) {
        times.push(await timedStatus(path));
        await new Promise((r) => setTimeout(r, 400));
      }
      expect(Math.max(...times)).toBeLessThan(1000);
      // Each process got at most its four connections; the rest were closed with a reason.
      expect(server.connections).toBeLessThanOrEqual(32);
      expect(server.stats.evicted).toBeGreaterThanOrEqual(8 * 4);
      // The lines that were kept never finish: they are cut off after lineTimeoutMs.
      for (let i = 0; i < 60 && clients.some((c) => c.closes.length < 8); i++) await new Promise((r) => setTimeout(r, 100));
      for (const c of clients) {
        expect(c.closes).toHaveLength(8);
        expect(c.closes.filter((l) => l.includes('"evicted"')).length).toBeGreaterThanOrEqual(4);
        expect(c.closes.filter((l) => l.includes('"line-timeout"')).length).toBeGreaterThanOrEqual(1);
      }
      expect(server.stats.lineTimeouts).toBeGreaterThanOrEqual(8);
      expect(server.connections).toBe(0);
    } finally {
      await server.close();
    }
  }, 30_000);

  it('keeps at most maxConnectionsPerClient connections of one process, closing the one idle longest', async () => {
    const path = join(dir, 'per-client.sock');
    const server = new ControlServer({ gateway, path, log: silentLogger(), maxConnectionsPerClient: 2 });
    await server.listen();
    const clients: ControlClient[] = [];
    try {
      for (let i = 0; i < 5; i++) clients.push(await ControlClient.connect(path));
      for (let i = 0; i < 20 && server.connections > 2; i++) await new Promise((r) => setTimeout(r, 25));
      expect(server.connections).toBe(2);
      expect(server.stats.evicted).toBe(3);
      // The newest two still serve; the oldest were closed.
      expect((await clients[4]!.status()).ikeSas).toEqual([]);
      expect((await clients[3]!.status()).ikeSas).toEqual([]);
      await expect(clients[0]!.status({ timeoutMs: 500 })).rejects.toThrow();
    } finally {
      for (const c of clients) c.close();
      await server.close();
    }
  });

  it('makes room in a full table for a new connection instead of refusing it', async () => {
    const path = join(dir, 'full.sock');
    const server = new ControlServer({ gateway, path, log: silentLogger(), maxConnections: 3, maxConnectionsPerClient: 10 });
    await server.listen();
    const clients: ControlClient[] = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await ControlClient.connect(path));
      expect(await timedStatus(path)).toBeLessThan(1000);
      expect(server.stats.evicted).toBe(1);
      expect(server.stats.refused).toBe(0);
    } finally {
      for (const c of clients) c.close();
      await server.close();
    }
  });
});
