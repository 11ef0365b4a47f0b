// The built `ikeclone` command line, run as separate processes. Every process
// a test starts is tracked by pid and killed in afterEach/afterAll if it is
// still running, and every wait is bounded.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCliBuilt, killCli, startCli, type CliProcess } from './support/cli-proc.js';
import type { GatewayStatus, IkeSaStatus } from '../control/status.js';
import type { DemoResult } from '../demo/demo.js';
import { formatDemo, formatStatus } from '../control/cli/format.js';

let dir: string;
const started = new Set<ChildProcess>();

beforeAll(() => {
  ensureCliBuilt();
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-cli-'));
});

function killStarted(): void {
  for (const p of started) killCli(p);
  started.clear();
}

afterEach(killStarted);
afterAll(() => {
  killStarted();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Running = CliProcess;

/** Start the CLI; output is collected; the process is killed after the test if still running. */
function start(args: string[]): Running {
  const r = startCli(args, { cwd: dir, env: { ...process.env, IKECLONE_LOG: '' } });
  started.add(r.proc);
  return r;
}

/** Run the CLI to completion, bounded by `timeoutMs`. */
async function run(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = start(args);
  const timer = setTimeout(() => r.proc.pid !== undefined && r.proc.kill('SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

/** Stop a long-running command with a signal; resolves with its exit code (bounded). */
async function stop(r: Running, signal: NodeJS.Signals, timeoutMs = 10_000): Promise<number | null> {
  r.proc.kill(signal);
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return code;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function udpFree(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind({ address, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** An IKE port P (NAT-T P+1) free on every given address. */
async function freePort(addresses: string[]): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + 2 * Math.floor(Math.random() * 19000);
    let ok = true;
    for (const a of addresses) for (const p of [port, port + 1]) ok = ok && (await udpFree(a, p));
    if (ok) return port;
  }
  throw new Error('no free port pair found');
}

const PSK = 'cli test pre-shared key 0123456789';

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The responding gateway's configuration: clients *.cli.test on `address`. */
function gatewayYaml(address: string, port: number): string {
  return `
log: { level: info }
listen: { address: ${address}, port: ${port}, natPort: ${port + 1} }
connections:
  clients:
    local_addrs: [${address}]
    local: { id: gw.cli.test, auth: psk }
    remote: { id: "*.cli.test", auth: psk }
    psk: "${PSK}"
    children:
      net: { local_ts: 10.2.0.0/24, remote_ts: 10.1.0.0/24, esp: aes128gcm16 }
`;
}

function clientConfig(name: string, opts: { address: string; port: number; remotePort: number; id: string; startAction?: boolean; retransmit?: string }): string {
  return writeConfig(name, `
log: { level: info }
listen: { address: ${opts.address}, port: ${opts.port}, natPort: ${opts.port + 1} }
retransmit: ${opts.retransmit ?? '{ timeout: 500ms, tries: 3 }'}
connections:
  gw:
    local_addrs: [${opts.address}]
    remote_addrs: [127.0.0.2]
    remote_port: ${opts.remotePort}
    local: { id: ${opts.id}, auth: psk }
    remote: { id: gw.cli.test, auth: psk }
    psk: "${PSK}"
    start_action: ${opts.startAction ? 'start' : 'none'}
    children:
      net: { local_ts: 10.1.0.0/24, remote_ts: 10.2.0.0/24, esp: aes128gcm16 }
`);
}

async function statusJson(socket: string): Promise<GatewayStatus> {
  const r = await run(['status', '--json', '--socket', socket]);
  if (r.code !== 0) throw new Error(`status exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as GatewayStatus;
}

describe('ikeclone --help', () => {
  it('every command has help with a usage example', async () => {
    const commands = ['', 'demo', 'gateway', 'up', 'down', 'status', 'reload', 'top'];
    const results = await Promise.all(commands.map((c) => run(c ? [c, '--help'] : ['--help'])));
    results.forEach((r, i) => {
      expect(r.code, commands[i]).toBe(0);
      expect(r.stdout, commands[i]).toMatch(/Examples:/);
      expect(r.stdout, commands[i]).toContain(`$ ikeclone ${commands[i] || 'demo'}`);
      expect(r.stdout, commands[i]).toContain('--log-level');
    });
  });

  it('an unknown command or a missing argument is a usage error (exit 2)', async () => {
    const [unknown, missing, badLevel] = await Promise.all([run(['frobnicate']), run(['gateway']), run(['--log-level', 'loud', 'status'])]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--config/);
    expect(badLevel.code).toBe(2);
  });
});

describe('ikeclone demo', () => {
  it('--json prints one JSON document with agreeing SPIs and algorithms, progress on stderr', async () => {
    const r = await run(['demo', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as DemoResult;
    expect(result.demo).toBe('ikeclone');
    expect(result.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(result.agree).toBe(true);
    expect(result.deleted).toBe(true);
    expect(result.durationMs).toBeGreaterThan(0);
    expect(result.ike.spiI).toMatch(/^[0-9a-f]{16}$/);
    expect(result.ike.spiR).toMatch(/^[0-9a-f]{16}$/);
    expect(result.peer.spiI).toBe(result.ike.spiI);
    expect(result.peer.spiR).toBe(result.ike.spiR);
    expect(result.ike.children[0]!.spiIn).toMatch(/^[0-9a-f]{8}$/);
    expect(result.ike.children[0]!.spiIn).toBe(result.peer.children[0]!.spiOut);
    expect(result.ike.proposal).toBe(result.peer.proposal);
    expect(r.stderr).toMatch(/established in [\d.]+ ms/);
    // The human table of the same result shows both ends' SPIs.
    const table = formatDemo(result);
    expect(table).toContain(result.ike.spiI);
    expect(table).toContain(result.ike.children[0]!.spiIn);
    expect(table).toMatch(/both ends agree/);
  });

  it('without --json prints progress and a side-by-side table on stdout', async () => {
    const r = await run(['demo']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/initiator \(127\.0\.0\.1:\d+\)\s+responder \(127\.0\.0\.2:\d+\)/);
    expect(r.stdout).toMatch(/IKE_SA_INIT \+ IKE_AUTH: [\d.]+ ms/);
    expect(r.stdout).toMatch(/both ends agree on SPIs, algorithms and traffic selectors/);
    expect(r.stdout).toMatch(/local_ts\s+10\.1\.0\.0\/24\s+10\.2\.0\.0\/24/);
  });
});

describe('configuration errors', () => {
  it('exit with code 2 and the file:line: path: problem message', async () => {
    const bad = writeConfig('bad.yaml', 'listen: { address: 127.0.0.1 }\nconnections:\n  gw:\n    ike: [aes256gcm16-prfsha256-x2559]\n');
    const [gateway, up, missing] = await Promise.all([
      run(['gateway', '--config', bad, '--socket', join(dir, 'never.sock')]),
      run(['up', 'gw', '--config', bad, '--once']),
      run(['gateway', '--config', join(dir, 'missing.yaml')]),
    ]);
    for (const r of [gateway, up]) {
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${bad}:4: connections.gw.ike[0]: unknown algorithm keyword 'x2559'`);
      expect(r.stderr).toMatch(/expected IKE proposals/);
      expect(r.stdout).toBe('');
    }
    expect(existsSync(join(dir, 'never.sock'))).toBe(false);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/missing\.yaml: \(top level\): cannot read the file \(ENOENT\)/);
  });

  it('an empty listen.address is a configuration error (exit 2), not a failed start', async () => {
    const bad = writeConfig('no-listen.yaml', 'listen:\n  address: []\n');
    const r = await run(['gateway', '--config', bad, '--socket', join(dir, 'no-listen.sock')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}:2: listen.address: got an empty list; expected at least one IP address to listen on`);
    expect(existsSync(join(dir, 'no-listen.sock'))).toBe(false);
  });
});

describe('configuration limits at the command line (exit 2)', () => {
  it('a 50 MB file, an empty file, deep nesting and !!binary outside a psk: exit 2 with the message, at once', async () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, '');
    truncateSync(big, 50_000_000); // sparse: its size is all the loader may look at
    const empty = writeConfig('empty.yaml', '# nothing yet\n\n');
    const deep = writeConfig('deep.yaml', `connections:\n  gw:\n    remote_addrs: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`);
    const binary = writeConfig('binary.yaml', 'log:\n  level: !!binary aW5mbw==\n');
    const t0 = Date.now();
    const [rBig, rEmpty, rDeep, rBinary] = await Promise.all([big, empty, deep, binary].map((f, i) => run(['gateway', '--config', f, '--socket', join(dir, `limits-${i}.sock`)])));
    // Process start-up included; reading 50 MB of YAML would take minutes.
    expect(Date.now() - t0).toBeLessThan(15_000);
    for (const r of [rBig, rEmpty, rDeep, rBinary]) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
    }
    expect(rBig.stderr).toContain(`${big}: (top level): the file is too large (50000000 octets; the limit is 16777216 octets); expected a configuration file of at most 16 MiB`);
    expect(rEmpty.stderr).toContain(`${empty}: (top level): the configuration is empty (nothing but whitespace or comments)`);
    expect(rDeep.stderr).toContain(`${deep}:3: connections.gw.remote_addrs[0]`);
    expect(rDeep.stderr).toContain('nested more than 64 levels deep; expected at most 64 levels of nested mappings and lists');
    expect(rDeep.stderr).not.toMatch(/call stack/);
    expect(rBinary.stderr).toContain(`${binary}:2: log.level: binary data (!!binary) is allowed only as a psk`);
    for (let i = 0; i < 4; i++) expect(existsSync(join(dir, `limits-${i}.sock`))).toBe(false);
  });
});

describe('gateway, status, up and down across processes', () => {
  it('a status without a gateway says so and exits 1', async () => {
    const r = await run(['status', '--socket', join(dir, 'nobody.sock')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no gateway is listening on .*nobody\.sock/);
  });

  it('shows the SAs a second gateway and `up --once` set up, and stops cleanly on signals', async () => {
    const port = await freePort(['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    const gwConfig = writeConfig('gw.yaml', gatewayYaml('127.0.0.2', port));
    const sockA = join(dir, 'a.sock');
    const sockB = join(dir, 'b.sock');
    const a = start(['gateway', '--config', gwConfig, '--socket', sockA]);
    await until('gateway A to listen', () => (a.stderr().includes('control socket listening') ? true : undefined));
    expect((await statusJson(sockA)).ikeSas).toEqual([]);

    // Gateway B initiates to A when it starts (start_action: start).
    const b = start(['gateway', '--config', clientConfig('b.yaml', { address: '127.0.0.1', port, remotePort: port, id: 'b.cli.test', startAction: true }), '--socket', sockB]);
    const bSa = await until('gateway B to establish', async () => {
      if (!existsSync(sockB)) return undefined;
      const s = await statusJson(sockB);
      return s.ikeSas[0]?.state === 'established' && s.ikeSas[0].children.length === 1 ? s.ikeSas[0] : undefined;
    });
    const aStatus = await statusJson(sockA);
    expect(aStatus.ikeSas).toHaveLength(1);
    const aSa = aStatus.ikeSas[0]!;
    expect(aSa.role).toBe('responder');
    expect(aSa.spiI).toBe(bSa.spiI);
    expect(aSa.spiR).toBe(bSa.spiR);
    expect(aSa.remoteId).toBe('b.cli.test');
    expect(aSa.children[0]!.spiIn).toBe(bSa.children[0]!.spiOut);
    expect(aSa.children[0]!.proposal).toBe('AES_GCM_16_128/NO_EXT_SEQ');

    // The human form: one tree per IKE SA.
    const human = await run(['status', '--socket', sockA]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`clients #${aSa.id}: ESTABLISHED, responder`);
    expect(human.stdout).toContain(`SPIs      ${aSa.spiI}_i ${aSa.spiR}_r*`);
    expect(human.stdout).toContain('└─ ts        10.2.0.0/24 === 10.1.0.0/24');
    expect(human.stdout).toContain(`in ${aSa.children[0]!.spiIn}, out ${aSa.children[0]!.spiOut}`);
    // Same tree as the JSON status gives, but for the ages (the two calls are moments apart).
    const ageless = (s: string) => s.replace(/, \d+[smhd]\b/g, ', <age>');
    expect(ageless(human.stdout)).toBe(ageless(`${formatStatus(JSON.parse((await run(['status', '--json', '--socket', sockA])).stdout) as GatewayStatus)}\n`));

    // A third process brings its own connection up against A, prints it and deletes it.
    const once = await run(['up', 'gw', '--once', '--json', '--config', clientConfig('c.yaml', { address: '127.0.0.3', port, remotePort: port, id: 'c.cli.test' })]);
    expect(once.code, once.stderr).toBe(0);
    const cSa = JSON.parse(once.stdout) as IkeSaStatus;
    expect(cSa.state).toBe('established');
    expect(cSa.remoteId).toBe('gw.cli.test');
    expect(cSa.children).toHaveLength(1);
    const afterOnce = await statusJson(sockA);
    expect(afterOnce.ikeSas.map((s) => s.spiI)).toEqual([bSa.spiI]);

    // Ask the running gateway B for a second IKE SA, then delete both.
    const viaSocket = await run(['up', 'gw', '--json', '--socket', sockB]);
    expect(viaSocket.code, viaSocket.stderr).toBe(0);
    const second = JSON.parse(viaSocket.stdout) as IkeSaStatus;
    expect(second.spiI).not.toBe(bSa.spiI);
    expect((await statusJson(sockB)).ikeSas).toHaveLength(2);
    const down = await run(['down', 'gw', '--json', '--socket', sockB]);
    expect(down.code).toBe(0);
    expect(JSON.parse(down.stdout)).toEqual({ deleted: 2 });
    expect((await statusJson(sockB)).ikeSas).toEqual([]);
    expect((await statusJson(sockA)).ikeSas).toEqual([]);

    expect(await stop(b, 'SIGTERM')).toBe(0);
    expect(await stop(a, 'SIGINT')).toBe(0);
    expect(existsSync(sockA)).toBe(false);
    expect(existsSync(sockB)).toBe(false);
    expect(a.stderr()).toMatch(/"signal":"SIGINT"/);
  });

  it('up --once exits 1 with the reason when the peer does not answer', async () => {
    const port = await freePort(['127.0.0.1', '127.0.0.2']);
    const config = clientConfig('silent.yaml', { address: '127.0.0.1', port, remotePort: port, id: 'x.cli.test', retransmit: '{ timeout: 100ms, tries: 1 }' });
    const r = await run(['up', 'gw', '--once', '--config', config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/connection "gw" failed: no response to IKE_SA_INIT/);
    expect(r.stdout).toBe('');
  });

  it('up without --config and with --once is a usage error', async () => {
    const r = await run(['up', 'gw', '--once', '--socket', join(dir, 'x.sock')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--once needs --config/);
  });
});

describe('command-line checks', () => {
  it('clone and move refuse malformed ids, counts and addresses as usage errors (exit 2), before asking a gateway', async () => {
    const socket = ['--socket', join(dir, 'nobody.sock')];
    const cases: Array<[string[], RegExp]> = [
      [['clone', '0x10', ...socket], /"0x10" is not an IKE SA id/],
      [['clone', '1e3', ...socket], /"1e3" is not an IKE SA id/],
      [['clone', '0', ...socket], /"0" is not an IKE SA id/],
      [['clone', '1', '--count', '257', ...socket], /--count must be a whole number from 1 to 256/],
      [['clone', '1', '--count', '0x2', ...socket], /--count must be a whole number from 1 to 256/],
      [['move', '0x1', '--local', '10.0.0.1', ...socket], /"0x1" is not an IKE SA id/],
      [['move', '1', '--local', 'eth0', ...socket], /--local must be an IP address, got "eth0"/],
      [['move', '1', '--local', '10.0.0.1', '--remote', '10.0.0.300', ...socket], /--remote must be an IP address/],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2);
      expect(r.stderr, cases[i]![0].join(' ')).toMatch(cases[i]![1]);
      expect(r.stderr).not.toMatch(/no gateway is listening/);
    });
    // The largest count is still accepted (and then fails for want of a gateway: exit 1).
    const max = await run(['clone', '1', '--count', '256', ...socket]);
    expect(max.code).toBe(1);
    expect(max.stderr).toMatch(/no gateway is listening/);
  });
});

/** Listen on each path (mode 0777) as an impostor would, answer every request with success, report connections on stdout. */
const IMPOSTOR = `
const net = require('net'), fs = require('fs');
let n = 0;
for (const p of process.argv.slice(1)) {
  net.createServer((s) => {
    console.log('connection');
    s.on('error', () => {});
    s.on('data', (d) => { for (const l of String(d).split('\\n')) if (l) s.write(JSON.stringify({ id: JSON.parse(l).id, ok: true, result: { deleted: 0 } }) + '\\n'); });
  }).listen(p, () => { fs.chmodSync(p, 0o777); if (++n === process.argv.length - 1) console.log('listening'); });
}`;

/** Start the CLI (or, with `script`, node -e script) as another user. Killed after the test if still running. */
function startAs(uid: number, args: string[], env: NodeJS.ProcessEnv, script?: string): Running {
  const r = startCli(args, { uid, env, ...(script !== undefined ? { script } : {}) });
  started.add(r.proc);
  return r;
}

async function runAs(uid: number, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = startAs(uid, args, env);
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

describe('the default control socket and other local users', () => {
  it('without XDG_RUNTIME_DIR, another user squatting the temp directory gets no commands, and the gateway refuses with the reason', async () => {
    // A sticky world-writable directory standing in for /tmp.
    chmodSync(dir, 0o711);
    const shared = mkdtempSync(join(dir, 'tmp-'));
    chmodSync(shared, 0o1777);
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: shared, HOME: shared, IKECLONE_LOG: '' };
    delete env.XDG_RUNTIME_DIR;
    const port = await freePort(['127.0.0.1']);
    const config = join(shared, 'gw.yaml');
    writeFileSync(config, gatewayYaml('127.0.0.1', port));
    chmodSync(config, 0o644);

    // uid 65534 got there first: the socket path of old, and the directory of uid 1000's default path, sockets open to all.
    const theirs = join(shared, 'ikeclone-1000');
    mkdirSync(theirs);
    chownSync(theirs, 65534, 65534);
    chmodSync(theirs, 0o777);
    const impostor = startAs(65534, [join(shared, 'ikeclone-1000.sock'), join(theirs, 'ikeclone.sock')], env, IMPOSTOR);
    await until('the impostor to listen', () => (impostor.stdout().includes('listening') ? true : undefined));

    const down = await runAs(1000, ['down', '--json'], env);
    expect(down.code, down.stderr).toBe(1);
    expect(down.stderr).toMatch(/ikeclone-1000 is owned by uid 65534, not by uid 1000; refusing/);
    expect(down.stdout).toBe('');
    const gw = await runAs(1000, ['gateway', '--config', config], env);
    expect(gw.code).toBe(1);
    expect(gw.stderr).toMatch(/cannot serve the control socket .*ikeclone-1000\/ikeclone\.sock: .*owned by uid 65534/);
    expect(impostor.stdout()).not.toMatch(/connection/);
    killCli(impostor.proc);
    await impostor.exited;

    // Without the squatter, uid 1000's gateway makes the directory its own (0700) and uid 1000's commands find it.
    rmSync(theirs, { recursive: true, force: true });
    const mine = startAs(1000, ['gateway', '--config', config], env);
    await until('the gateway to listen', () => (mine.stderr().includes('control socket listening') ? true : undefined));
    const st = statSync(theirs);
    expect([st.uid, st.mode & 0o777]).toEqual([1000, 0o700]);
    const status = await runAs(1000, ['status', '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as GatewayStatus).ikeSas).toEqual([]);
    expect(await stop(mine, 'SIGTERM')).toBe(0);
    expect(existsSync(join(theirs, 'ikeclone.sock'))).toBe(false);
  });
});

describe('format', () => {
  it('says when there are no IKE SAs', () => {
    const text = formatStatus({ ikeSas: [], halfOpen: 2, ike: { received: 3, sent: 4, retransmits: 1, responsesFromCache: 0, drops: {} }, udp: null });
    expect(text).toMatch(/^no IKE SAs\n0 IKE SAs, 0 Child SAs, 2 half-open; IKE messages in 3, out 4, retransmitted 1$/);
  });
});
