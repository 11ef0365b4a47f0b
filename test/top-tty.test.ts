// `ikeclone top` in a real pseudo-terminal (tmux): a gateway process with one
// connection to an in-process peer on loopback; the screen shows the workers
// table and the clone family, redraws (its clock moves), says so when the
// gateway goes away, and ends on `q`. tmux runs on a server of its own (-L),
// killed afterwards; every wait is bounded.
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { configFromObject } from '../control/config/index.js';
import { CLI_PATH, ensureCliBuilt, killCli, startCli } from './support/cli-proc.js';
import { freePorts, LOOPBACK_PSK } from './support/loopback.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

const TMUX_SERVER = `ikc-top-${process.pid}`;
let dir: string;
const started = new Set<ChildProcess>();
let peer: Gateway | undefined;

function tmux(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync('tmux', ['-L', TMUX_SERVER, ...args], { encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, out: r.stdout ?? '' };
}

beforeAll(() => {
  ensureCliBuilt();
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-top-'));
});
afterAll(async () => {
  tmux('kill-server');
  for (const p of started) killCli(p);
  await peer?.stop({ notifyPeers: false });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ikeclone top in a terminal', () => {
  interopTest('shows workers and a family, redraws, notices the gateway going away, quits on q', ['tmux'], async () => {
    const ports = freePorts();
    const ends = (local: string, remote: string) => ({ local: { id: local, auth: 'psk' }, remote: { id: remote, auth: 'psk' }, psk: LOOPBACK_PSK });
    const file = join(dir, 'gateway.yaml');
    const socket = join(dir, 'ctl.sock');
    writeFileSync(file, stringify({
      log: { level: 'info' },
      listen: { address: '127.0.0.1', ...ports },
      dataplane: { workers: 2, esp: 'udp' },
      connections: {
        home: {
          local_addrs: ['127.0.0.1'], remote_addrs: ['127.0.0.2'], remote_port: ports.port, start_action: 'start',
          ...ends('client.loopback.test', 'gw.loopback.test'),
          children: { net: { local_ts: ['10.1.0.0/24'], remote_ts: ['10.2.0.0/24'], esp: ['aes128gcm16'] } },
        },
      },
    }));
    peer = new Gateway({
      config: configFromObject({
        log: { level: 'silent' },
        listen: { address: '127.0.0.2', ...ports },
        dataplane: { workers: 1, esp: 'udp' },
        connections: { clients: { local_addrs: ['127.0.0.2'], ...ends('gw.loopback.test', 'client.loopback.test'), children: { net: { local_ts: ['10.2.0.0/24'], remote_ts: ['10.1.0.0/24'] } } } },
      }),
      log: silentLogger(),
    });
    await peer.start();
    const gw = startCli(['gateway', '--config', file, '--socket', socket], { cwd: dir });
    started.add(gw.proc);
    await waitFor(() => peer!.engine.ikeSas().some((sa) => sa.state === 'established'), { timeoutMs: 15_000, intervalMs: 100, message: `no IKE SA: ${gw.stderr().slice(-2000)}` });

    expect(tmux('new-session', '-d', '-s', 'top', '-x', '110', '-y', '40', `${process.execPath} ${CLI_PATH} top --socket ${socket}`).code).toBe(0);
    const screen = () => tmux('capture-pane', '-p', '-t', 'top').out;
    const clock = (text: string) => /ikeclone top\s+(\d\d:\d\d:\d\d)/.exec(text)?.[1];
    let first = '';
    await waitFor(() => {
      first = screen();
      // Two worker rows: index, SAs and six rates/counts each.
      const workerRows = first.match(/^\s*[01]\s+\d+(\s+[\d.]+[kMGT]?){6}\s*$/gm) ?? [];
      return /^\s*worker\s+SAs\s+out pps/m.test(first) && workerRows.length === 2 && /^\s*family\s+members\s+state/m.test(first) && /\b1\/\d+\s+(single|growing|complete|fallback)\b/.test(first);
    }, { timeoutMs: 15_000, intervalMs: 100, message: () => `top did not show the workers and a family:\n${screen()}` });
    expect(first).toMatch(/^\s*child\s+ike\s+worker\s+pps\s+name/m);
    expect(first).toMatch(/\bnet\s+installed\b/);
    expect(first).toMatch(/q quits/);
    const t0 = clock(first);
    expect(t0).toBeDefined();
    await waitFor(() => clock(screen()) !== undefined && clock(screen()) !== t0, { timeoutMs: 5000, intervalMs: 100, message: () => `top did not redraw:\n${screen()}` });

    // The gateway goes away: top says so and keeps running.
    gw.proc.kill('SIGKILL');
    await waitFor(() => /the gateway cannot be reached/.test(screen()), { timeoutMs: 5000, intervalMs: 100, message: () => `top did not notice:\n${screen()}` });
    expect(tmux('has-session', '-t', 'top').code).toBe(0);

    // q ends it: the pane's process exits and the session with it.
    tmux('send-keys', '-t', 'top', 'q');
    await waitFor(() => tmux('has-session', '-t', 'top').code !== 0, { timeoutMs: 5000, intervalMs: 100, message: () => `q did not end top:\n${screen()}` });
  });
});
