// `ikeclone gateway` as a service: a CLI gateway process with two connections
// to an in-process peer on loopback, ESP paced through both by the peer's
// data-plane generator, and NOTIFY_SOCKET pointing at a test socket. A reload
// (`ikeclone reload`) that removes one connection and adds another brings the
// new one up and the removed one down while the kept one loses no packet; a
// broken file is refused with the loader's precise error and changes nothing;
// SIGHUP reloads framed by RELOADING=1 / READY=1; SIGTERM says STOPPING=1.
// Every process is killed by its pid afterwards; every wait is bounded.
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { configFromObject } from '../control/config/index.js';
import { ControlClient } from '../control/api/control-client.js';
import type { GatewayStatus } from '../control/status.js';
import type { ReloadResult } from '../control/reload.js';
import { ensureCliBuilt, killCli, startCli, type CliProcess } from './support/cli-proc.js';
import { freePorts, LOOPBACK_PSK } from './support/loopback.js';
import { notifyReceiver, type Receiver } from './support/notify-receiver.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

let dir: string;
const started = new Set<ChildProcess>();
const receivers: Receiver[] = [];
let peer: Gateway | undefined;

beforeAll(() => {
  ensureCliBuilt();
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-reload-'));
});
afterAll(async () => {
  for (const p of started) killCli(p);
  for (const r of receivers) r.stop();
  await peer?.stop({ notifyPeers: false });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const NAMES = ['a', 'b', 'c'] as const;
type Name = (typeof NAMES)[number];
const subnet = (name: Name, side: 1 | 2) => `10.${side}.${NAMES.indexOf(name) + 1}.0/24`;

/** The CLI gateway's configuration (initiator of `names`, each started at once). */
function cliConfig(ports: { port: number; natPort: number }, names: Name[]): Record<string, unknown> {
  return {
    log: { level: 'info' },
    listen: { address: '127.0.0.1', ...ports },
    retransmit: { timeout: '200ms', tries: 3, maxTimeout: '1s' },
    dataplane: { workers: 1, esp: 'udp' },
    connections: Object.fromEntries(names.map((name) => [name, {
      local_addrs: ['127.0.0.1'],
      remote_addrs: ['127.0.0.2'],
      remote_port: ports.port,
      local: { id: `${name}.loopback.test`, auth: 'psk' },
      remote: { id: 'gw.loopback.test', auth: 'psk' },
      psk: LOOPBACK_PSK,
      start_action: 'start',
      clone: { supported: false },
      children: { net: { local_ts: [subnet(name, 1)], remote_ts: [subnet(name, 2)], esp: ['aes128gcm16'] } },
    }])),
  };
}

/** The in-process peer: a responder for all three connections. */
function peerConfig(ports: { port: number; natPort: number }) {
  const config = configFromObject({
    log: { level: 'silent' },
    listen: { address: '127.0.0.2', ...ports },
    retransmit: { timeout: '200ms', tries: 3, maxTimeout: '1s' },
    dataplane: { workers: 1, esp: 'udp' },
    connections: Object.fromEntries(NAMES.map((name) => [name, {
      local_addrs: ['127.0.0.2'],
      local: { id: 'gw.loopback.test', auth: 'psk' },
      remote: { id: `${name}.loopback.test`, auth: 'psk' },
      psk: LOOPBACK_PSK,
      children: { net: { local_ts: [subnet(name, 2)], remote_ts: [subnet(name, 1)], esp: ['aes128gcm16'] } },
    }])),
  });
  return config;
}

async function run(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = startCli(args, { cwd: dir });
  started.add(r.proc);
  const timer = setTimeout(() => killCli(r.proc), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

async function status(socket: string): Promise<GatewayStatus> {
  const client = await ControlClient.connect(socket, { connectTimeoutMs: 2000 });
  try {
    return await client.status({ timeoutMs: 5000 });
  } finally {
    client.close();
  }
}

const established = (s: GatewayStatus, name: string) => s.ikeSas.filter((sa) => sa.name === name && sa.state === 'established' && sa.children.some((c) => c.state === 'installed'));

describe('reload and the service manager', () => {
  interopTest('reload swaps connections without a lost packet on the kept one; a broken file changes nothing; READY, RELOADING, STOPPING', ['native'], async () => {
    const ports = freePorts();
    const file = join(dir, 'gateway.yaml');
    const socket = join(dir, 'ctl.sock');
    const notify = await notifyReceiver(join(dir, 'notify.sock'), 120);
    receivers.push(notify);
    writeFileSync(file, stringify(cliConfig(ports, ['a', 'b'])));

    peer = new Gateway({ config: peerConfig(ports), log: silentLogger() });
    await peer.start();
    const gw: CliProcess = startCli(['gateway', '--config', file, '--socket', socket], { cwd: dir, env: { ...process.env, NOTIFY_SOCKET: join(dir, 'notify.sock') } });
    started.add(gw.proc);
    const log = () => gw.stderr();

    // READY=1 once listening with its connections started, with a STATUS line.
    const [ready] = await notify.next(1, 15_000);
    expect(ready).toMatch(/^READY=1\nSTATUS=2 connections, /);
    await waitFor(async () => {
      const s = await status(socket);
      return established(s, 'a').length === 1 && established(s, 'b').length === 1 && peer!.dataPlane.saIds().length === 2;
    }, { timeoutMs: 15_000, intervalMs: 100, message: `connections a and b did not come up: ${log().slice(-2000)}` });
    const before = await status(socket);
    const aSa = established(before, 'a')[0]!;
    const aChild = aSa.children[0]!;
    expect(before.config?.hash).toMatch(/^[0-9a-f]{16}$/);

    // ESP paced from the peer over every SA it has, through the reloads below.
    const sentTo = new Map<number, number>();
    let pacing = true;
    const pace = (async () => {
      while (pacing) {
        const report = await peer!.dataPlane.generate({ packets: 8, size: 200, flows: 2 });
        for (const s of report.perSa) sentTo.set(s.id, (sentTo.get(s.id) ?? 0) + s.sent);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    // Reload: b removed, c added (start_action: start).
    await new Promise((r) => setTimeout(r, 500));
    writeFileSync(file, stringify(cliConfig(ports, ['a', 'c'])));
    const reloaded = await run(['reload', '--json', '--socket', socket]);
    expect(reloaded.code, reloaded.stderr).toBe(0);
    const result = JSON.parse(reloaded.stdout) as ReloadResult;
    expect(result).toMatchObject({ added: ['c'], removed: ['b'], changed: [], unchanged: ['a'], needsRestart: [] });
    expect(result.config.hash).not.toBe(before.config!.hash);
    expect(await notify.next(3, 5000)).toEqual([ready, expect.stringMatching(/^RELOADING=1\nMONOTONIC_USEC=\d+/), expect.stringMatching(/^READY=1\nSTATUS=2 connections, /)]);
    await waitFor(async () => {
      const s = await status(socket);
      return established(s, 'c').length === 1 && s.ikeSas.every((sa) => sa.name !== 'b') && peer!.engine.ikeSas().every((sa) => sa.name !== 'b');
    }, { timeoutMs: 15_000, intervalMs: 100, message: `c did not replace b: ${log().slice(-2000)}` });
    await new Promise((r) => setTimeout(r, 500));
    pacing = false;
    await pace;

    // The kept connection: the same IKE SA and Child SA, and every packet sent to it arrived.
    const peerChildA = peer.engine.ikeSas().find((sa) => sa.name === 'a')!.children[0]!;
    const sentA = sentTo.get(peerChildA.id) ?? 0;
    expect(sentA).toBeGreaterThan(100);
    let after: GatewayStatus | undefined;
    await waitFor(async () => {
      after = await status(socket);
      return established(after, 'a')[0]?.children[0]?.packetsIn === sentA;
    }, { timeoutMs: 10_000, intervalMs: 200, message: `connection a lost packets: sent ${sentA}, received ${JSON.stringify(after && established(after, 'a')[0]?.children[0])}` });
    const aAfter = established(after!, 'a')[0]!;
    expect(aAfter.id).toBe(aSa.id);
    expect(aAfter.children[0]!.id).toBe(aChild.id);
    expect(aAfter.children[0]!.spiIn).toBe(aChild.spiIn);
    expect(after!.config).toEqual(result.config);

    // A broken file: refused with the loader's precise error; nothing changes.
    const good = after!;
    const broken = cliConfig(ports, ['a', 'c', 'b']);
    (broken.connections as Record<string, { children: { net: { esp: string[] } } }>).b!.children.net.esp = ['aes999gcm16'];
    writeFileSync(file, stringify(broken));
    const refused = await run(['reload', '--socket', socket]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/reload refused, the running configuration stays/);
    const precise = /\S*gateway\.yaml:\d+: connections\.b\.children\.net\.esp\[0\]: unknown algorithm keyword 'aes999gcm16'[^\n]*/;
    expect(refused.stderr).toMatch(precise);
    // The same error as a gateway started on that file gives (exit 2).
    const atStart = await run(['gateway', '--config', file, '--socket', join(dir, 'never.sock')]);
    expect(atStart.code).toBe(2);
    expect(atStart.stderr.match(precise)?.[0]).toBe(refused.stderr.match(precise)?.[0]);
    await waitFor(() => /"level":50[^\n]*reload refused/.test(log()), { timeoutMs: 5000, intervalMs: 50, message: 'the refusal was not logged at error' });
    const unchanged = await status(socket);
    expect(unchanged.config).toEqual(good.config);
    expect(unchanged.ikeSas.map((sa) => [sa.id, sa.name]).sort()).toEqual(good.ikeSas.map((sa) => [sa.id, sa.name]).sort());
    expect(await notify.next(5, 5000)).toHaveLength(5);
    expect(notify.datagrams[4]).toMatch(/^READY=1/);

    // SIGHUP: the same reload, framed for the service manager; the file is the good one again.
    writeFileSync(file, stringify(cliConfig(ports, ['a', 'c'])));
    gw.proc.kill('SIGHUP');
    const hup = await notify.next(7, 5000);
    expect(hup[5]).toMatch(/^RELOADING=1\n/);
    expect(hup[6]).toMatch(/^READY=1\nSTATUS=2 connections, /);
    await waitFor(async () => (await status(socket)).config?.loadedAt !== good.config?.loadedAt, { timeoutMs: 5000, intervalMs: 50, message: 'SIGHUP did not reload' });
    expect((await status(socket)).config?.hash).toBe(good.config?.hash);

    // SIGTERM: STOPPING=1, then a clean exit.
    gw.proc.kill('SIGTERM');
    const stopping = await notify.next(8, 5000);
    expect(stopping[7]).toMatch(/^STOPPING=1/);
    const timer = setTimeout(() => killCli(gw.proc), 10_000);
    expect(await gw.exited).toBe(0);
    clearTimeout(timer);
  });
});
