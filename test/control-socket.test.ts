import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { Server, createConnection, type Socket } from 'node:net';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { ControlServer } from '../control/api/control-server.js';
import { ControlClient, ControlRequestError, ControlSocketError } from '../control/api/control-client.js';
import {
  LineSplitter, MAX_REQUEST_LINE, defaultSocketLocation, defaultSocketPath, parseRequest, parseResponse, type ControlResponse,
} from '../control/api/protocol.js';
import { loopbackPair } from './support/loopback.js';

let dir: string;
let initiator: Gateway;
let responder: Gateway;
const servers: ControlServer[] = [];
const clients: ControlClient[] = [];
const rawSockets: Socket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-ctl-'));
  const pair = loopbackPair();
  responder = new Gateway({ config: pair.responder, log: silentLogger() });
  initiator = new Gateway({ config: pair.initiator, log: silentLogger() });
  await responder.start();
  await initiator.start();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of rawSockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await s.close();
  await initiator.down();
});

afterAll(async () => {
  await initiator?.stop({ notifyPeers: false });
  await responder?.stop({ notifyPeers: false });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let n = 0;
async function serve(opts: Partial<ConstructorParameters<typeof ControlServer>[0]> = {}): Promise<ControlServer> {
  const server = new ControlServer({ gateway: initiator, path: join(dir, `s${++n}.sock`), ...opts });
  servers.push(server);
  await server.listen();
  return server;
}

async function connect(path: string): Promise<ControlClient> {
  const c = await ControlClient.connect(path);
  clients.push(c);
  return c;
}

/** A raw connection that collects response lines. */
function raw(path: string): Promise<{ socket: Socket; next: () => Promise<ControlResponse>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    rawSockets.push(socket);
    const queue: ControlResponse[] = [];
    const waiters: Array<(r: ControlResponse) => void> = [];
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const r = JSON.parse(buf.slice(0, i)) as ControlResponse;
        buf = buf.slice(i + 1);
        const w = waiters.shift();
        if (w) w(r);
        else queue.push(r);
      }
    });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    const next = () => {
      const q = queue.shift();
      if (q) return Promise.resolve(q);
      return new Promise<ControlResponse>((res, rej) => {
        const t = setTimeout(() => rej(new Error('no response within 3 s')), 3000);
        waiters.push((r) => {
          clearTimeout(t);
          res(r);
        });
      });
    };
    socket.once('connect', () => resolve({ socket, next, closed }));
    socket.once('error', reject);
  });
}

function errorOf(r: ControlResponse): { code: string; message: string } {
  if (r.ok) throw new Error(`expected an error response, got ${JSON.stringify(r)}`);
  return r.error;
}

describe('control socket: server and client in one process', () => {
  it('answers status with the gateway status', async () => {
    const server = await serve();
    const client = await connect(server.path);
    const status = await client.status();
    expect(status.ikeSas).toEqual([]);
    expect(status.halfOpen).toBe(0);
    expect(status.udp).not.toBeNull();
    expect(Object.keys(status).sort()).toEqual(Object.keys(initiator.status()).sort());
  });

  it('brings a connection up and down on request; status shows the SA in between', async () => {
    const server = await serve();
    const client = await connect(server.path);
    const up = await client.up('gw');
    expect(up.failedChildren).toEqual([]);
    expect(up.ike.state).toBe('established');
    expect(up.ike.name).toBe('gw');
    expect(up.ike.children).toHaveLength(1);
    const status = await client.status();
    expect(status.ikeSas).toHaveLength(1);
    expect(status.ikeSas[0]!.spiI).toBe(up.ike.spiI);
    expect(status.ikeSas[0]!.children[0]!.spiIn).toBe(up.ike.children[0]!.spiIn);
    // The responder's view agrees.
    expect(responder.status().ikeSas.find((s) => s.spiI === up.ike.spiI)?.children[0]!.spiOut).toBe(up.ike.children[0]!.spiIn);
    expect(await client.down('gw')).toEqual({ deleted: 1 });
    expect((await client.status()).ikeSas).toEqual([]);
  });

  it('reports failures of commands as error responses', async () => {
    const server = await serve();
    const client = await connect(server.path);
    const err = await client.up('nonexistent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlRequestError);
    expect((err as ControlRequestError).code).toBe('failed');
    expect((err as Error).message).toMatch(/no connection named "nonexistent"/);
    const down = await client.down('nonexistent').catch((e: unknown) => e);
    expect((down as ControlRequestError).code).toBe('failed');
    expect(await client.down()).toEqual({ deleted: 0 });
  });

  it('answers malformed JSON and unknown commands with errors and keeps serving the connection', async () => {
    const server = await serve();
    const c = await raw(server.path);
    c.socket.write('this is not json\n');
    const e1 = await c.next();
    expect(e1.id).toBeNull();
    expect(errorOf(e1).code).toBe('malformed');
    c.socket.write('{"id":7,"cmd":"reboot"}\n');
    const e2 = await c.next();
    expect(e2.id).toBe(7);
    expect(errorOf(e2).code).toBe('unknown-command');
    // Pipelined in one write, and one request split over two writes.
    c.socket.write('[1,2]\n{"id":"a","cmd":"up"}\n{"id":9,"cm');
    c.socket.write('d":"status"}\r\n');
    const e3 = await c.next();
    expect(errorOf(e3).code).toBe('malformed');
    const e4 = await c.next();
    expect(e4.id).toBe('a');
    expect(errorOf(e4).code).toBe('bad-args');
    const ok = await c.next();
    expect(ok).toMatchObject({ id: 9, ok: true });
    expect((ok as { result: { ikeSas: unknown[] } }).result.ikeSas).toEqual([]);
    // Garbage bytes (invalid UTF-8, NULs) are just another malformed request.
    c.socket.write(Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x0a]));
    expect(errorOf(await c.next()).code).toBe('malformed');
  });

  it('closes a connection whose line is too long, after saying why, and keeps serving others', async () => {
    const server = await serve();
    const c = await raw(server.path);
    c.socket.write('{"id":1,"cmd":"status","pad":"');
    c.socket.write('x'.repeat(MAX_REQUEST_LINE + 10));
    const e = await c.next();
    expect(e.id).toBeNull();
    expect(errorOf(e).code).toBe('line-too-long');
    await c.closed;
    const client = await connect(server.path);
    expect((await client.status()).ikeSas).toEqual([]);
    expect(server.connections).toBe(1);
  });

  it('survives a client that disconnects while its request is in flight', async () => {
    const server = await serve();
    const c = await raw(server.path);
    c.socket.write('{"id":1,"cmd":"up","args":{"name":"gw"}}\n');
    c.socket.destroy();
    await c.closed;
    const client = await connect(server.path);
    // The up still completes in the gateway; the next client sees it.
    for (let i = 0; i < 100 && (await client.status()).ikeSas[0]?.state !== 'established'; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await client.status()).ikeSas[0]?.state).toBe('established');
  });

  it('refuses more requests in flight than allowed on one connection', async () => {
    const server = await serve({ maxInFlight: 1 });
    const c = await raw(server.path);
    c.socket.write('{"id":1,"cmd":"up","args":{"name":"gw"}}\n{"id":2,"cmd":"status"}\n');
    const first = await c.next();
    expect(first.id).toBe(2);
    expect(errorOf(first).code).toBe('busy');
    const second = await c.next();
    expect(second).toMatchObject({ id: 1, ok: true });
  });

  it('closes idle connections', async () => {
    const server = await serve({ idleTimeoutMs: 100 });
    const c = await raw(server.path);
    const t0 = Date.now();
    await c.closed;
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('control socket file', () => {
  it('is created mode 0600 in a directory created mode 0700, and removed on close', async () => {
    const path = join(dir, 'nested', 'run', 'ikeclone.sock');
    const server = new ControlServer({ gateway: initiator, path });
    servers.push(server);
    await server.listen();
    expect(statSync(join(dir, 'nested', 'run')).mode & 0o777).toBe(0o700);
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    await server.close();
    expect(existsSync(path)).toBe(false);
  });

  it('is never reachable with the umask\'s permissions: created 0600, not chmod-ed afterwards', async () => {
    // What the socket looks like the moment it exists (bind happens inside listen()).
    const origListen = Server.prototype.listen;
    const modes: number[] = [];
    const path = join(dir, 'umask.sock');
    Server.prototype.listen = function (this: Server, ...args: unknown[]) {
      const r = (origListen as (...a: unknown[]) => Server).apply(this, args);
      if (args[0] === path) modes.push(statSync(path).mode & 0o777);
      return r;
    } as typeof Server.prototype.listen;
    const umask = process.umask(0o022);
    try {
      const server = new ControlServer({ gateway: initiator, path });
      servers.push(server);
      await server.listen();
      expect(process.umask()).toBe(0o022);
    } finally {
      Server.prototype.listen = origListen;
      process.umask(umask);
    }
    expect(modes).toEqual([0o600]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('replaces a stale socket left by a process that died', async () => {
    const path = join(dir, 'stale.sock');
    const child = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('listening'))", path], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('helper did not listen within 5 s')), 5000);
        child.stdout!.once('data', () => {
          clearTimeout(t);
          resolve();
        });
      });
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.once('exit', r));
    expect(statSync(path).isSocket()).toBe(true);
    const server = new ControlServer({ gateway: initiator, path });
    servers.push(server);
    await server.listen();
    const client = await connect(path);
    expect((await client.status()).ikeSas).toEqual([]);
  });

  it('refuses to take over a socket another gateway listens on', async () => {
    const first = await serve();
    const second = new ControlServer({ gateway: initiator, path: first.path });
    await expect(second.listen()).rejects.toThrow(/another gateway already listens/);
    const client = await connect(first.path);
    expect((await client.status()).halfOpen).toBe(0);
  });

  it('refuses to replace a file that is not a socket', async () => {
    const path = join(dir, 'plain-file');
    writeFileSync(path, 'keep me');
    await expect(new ControlServer({ gateway: initiator, path }).listen()).rejects.toThrow(/not a socket/);
    expect(existsSync(path)).toBe(true);
  });

  it('a client finds no gateway on a missing socket and says so', async () => {
    const err = await ControlClient.connect(join(dir, 'nobody.sock')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlSocketError);
    expect((err as ControlSocketError).code).toBe('no-gateway');
    expect((err as Error).message).toMatch(/no gateway is listening on .*nobody\.sock/);
  });

  it('a client gets an error, not a hang, when the server goes away mid-request', async () => {
    const server = await serve();
    const client = await connect(server.path);
    const pending = client.up('gw').catch((e: unknown) => e);
    await server.close();
    const err = await pending;
    expect(err).toBeInstanceOf(ControlSocketError);
    expect((err as ControlSocketError).code).toBe('closed');
  });
});

/** Run `script` (node -e) as another user; resolves once it prints its first line. Killed after the test. */
async function asUser(uid: number, script: string, args: string[]): Promise<{ lines: string[] }> {
  const child = spawn(process.execPath, ['-e', script, ...args], { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
  helpers.push(child);
  const lines: string[] = [];
  let err = '';
  child.stderr!.on('data', (d) => (err += String(d)));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`helper as uid ${uid} did not start within 5 s: ${err}`)), 5000);
    child.stdout!.on('data', (d) => {
      lines.push(...String(d).split('\n').filter((l) => l !== ''));
      clearTimeout(t);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`helper as uid ${uid} exited ${code}: ${err}`)));
  });
  return { lines };
}
const helpers: ReturnType<typeof spawn>[] = [];
afterEach(() => {
  for (const c of helpers.splice(0)) if (c.pid !== undefined && c.exitCode === null) c.kill('SIGKILL');
});

/** A world-writable sticky directory like /tmp, inside the test's directory. */
function sharedTmp(): string {
  chmodSync(dir, 0o711);
  const shared = mkdtempSync(join(dir, 'shared-'));
  chmodSync(shared, 0o1777);
  return shared;
}

/** Listen on each path (mode 0777, as an impostor would) and report every connection on stdout. */
const IMPOSTOR = `
const net = require('net'), fs = require('fs');
let n = 0;
for (const p of process.argv.slice(1)) {
  net.createServer((s) => { console.log('connection'); s.on('data', (d) => console.log('got ' + d)); s.on('error', () => {}); })
    .listen(p, () => { fs.chmodSync(p, 0o777); if (++n === process.argv.length - 1) console.log('listening'); });
}`;

describe('control socket and other local users', () => {
  it('a client refuses a socket another (non-root) user owns, without sending it anything', async () => {
    const shared = sharedTmp();
    const path = join(shared, 'ikeclone-1000.sock');
    const impostor = await asUser(65534, IMPOSTOR, [path]);
    expect(statSync(path).uid).toBe(65534);
    const err = await ControlClient.connect(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlSocketError);
    expect((err as ControlSocketError).code).toBe('untrusted');
    expect((err as Error).message).toMatch(/owned by uid 65534, not by this user \(uid 0\) or root/);
    // A symlink of ours to it does not help either.
    const link = join(dir, 'link.sock');
    symlinkSync(path, link);
    expect(await ControlClient.connect(link).catch((e: ControlSocketError) => e.code)).toBe('untrusted');
    await new Promise((r) => setTimeout(r, 100));
    expect(impostor.lines).toEqual(['listening']);
  });

  it('with privateDir, the server creates the directory 0700 and a client finds the gateway there', async () => {
    const shared = sharedTmp();
    const path = join(shared, 'ikeclone-0', 'ikeclone.sock');
    const server = new ControlServer({ gateway: initiator, path, privateDir: true });
    servers.push(server);
    await server.listen();
    const st = statSync(join(shared, 'ikeclone-0'));
    expect(st.mode & 0o777).toBe(0o700);
    expect(st.uid).toBe(0);
    const client = await ControlClient.connect(path, { privateDir: true });
    clients.push(client);
    expect((await client.status()).ikeSas).toEqual([]);
    // Missing directory: nothing listens there.
    const missing = await ControlClient.connect(join(shared, 'nobody', 'ikeclone.sock'), { privateDir: true }).catch((e: ControlSocketError) => e);
    expect(missing).toMatchObject({ code: 'no-gateway' });
  });

  it('with privateDir, server and client refuse a directory another user made first, one not 0700, or a symlink', async () => {
    const shared = sharedTmp();
    // Another user got there first (a directory of theirs, open to all) and waits for our commands.
    const theirs = join(shared, 'ikeclone-0');
    mkdirSync(theirs);
    chownSync(theirs, 65534, 65534);
    chmodSync(theirs, 0o777);
    const sock = join(theirs, 'ikeclone.sock');
    const listener = await asUser(65534, IMPOSTOR, [sock]);
    const server = new ControlServer({ gateway: initiator, path: sock, privateDir: true });
    await expect(server.listen()).rejects.toThrow(/ikeclone-0 is owned by uid 65534, not by uid 0; refusing/);
    const err = await ControlClient.connect(sock, { privateDir: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'untrusted' });
    expect((err as Error).message).toMatch(/owned by uid 65534/);

    const open = join(shared, 'open');
    mkdirSync(open, { mode: 0o755 });
    chmodSync(open, 0o755);
    await expect(new ControlServer({ gateway: initiator, path: join(open, 's.sock'), privateDir: true }).listen()).rejects.toThrow(/has mode 0755, not 0700/);
    expect(await ControlClient.connect(join(open, 's.sock'), { privateDir: true }).catch((e: ControlSocketError) => e.code)).toBe('untrusted');

    const real = join(shared, 'real');
    mkdirSync(real, { mode: 0o700 });
    const link = join(shared, 'link');
    symlinkSync(real, link);
    await expect(new ControlServer({ gateway: initiator, path: join(link, 's.sock'), privateDir: true }).listen()).rejects.toThrow(/is a symbolic link/);
    expect(existsSync(join(real, 's.sock'))).toBe(false);

    const notMine = join(shared, 'not-mine');
    mkdirSync(notMine, { mode: 0o700 });
    chownSync(notMine, 65534, 65534);
    await expect(new ControlServer({ gateway: initiator, path: join(notMine, 's.sock'), privateDir: true }).listen()).rejects.toThrow(/owned by uid 65534/);
    expect(listener.lines).toEqual(['listening']);
  });
});

describe('control protocol', () => {
  it('parses valid requests and refuses everything else with the right code', () => {
    expect(parseRequest('{"id":1,"cmd":"status"}')).toEqual({ ok: true, request: { id: 1, cmd: 'status' } });
    expect(parseRequest('{"id":"x","cmd":"up","args":{"name":"gw"}}')).toEqual({ ok: true, request: { id: 'x', cmd: 'up', args: { name: 'gw' } } });
    expect(parseRequest('{"id":2,"cmd":"down"}')).toEqual({ ok: true, request: { id: 2, cmd: 'down' } });
    expect(parseRequest('{"id":3,"cmd":"reload"}')).toEqual({ ok: true, request: { id: 3, cmd: 'reload' } });
    expect(parseRequest('{"id":3,"cmd":"reload","args":{"name":"gw"}}')).toEqual({ ok: false, response: { id: 3, ok: false, error: { code: 'bad-args', message: 'reload takes no arguments' } } });
    const code = (line: string) => {
      const r = parseRequest(line);
      return r.ok ? 'ok' : (r.response as { error: { code: string } }).error.code;
    };
    expect(code('')).toBe('malformed');
    expect(code('null')).toBe('malformed');
    expect(code('"status"')).toBe('malformed');
    expect(code('{"cmd":"status"}')).toBe('malformed');
    expect(code('{"id":1.5,"cmd":"status"}')).toBe('malformed');
    expect(code('{"id":{},"cmd":"status"}')).toBe('malformed');
    expect(code(`{"id":"${'i'.repeat(200)}","cmd":"status"}`)).toBe('malformed');
    expect(code('{"id":1,"cmd":5}')).toBe('malformed');
    expect(code('{"id":1,"cmd":"status","extra":1}')).toBe('malformed');
    expect(code('{"id":1,"cmd":"__proto__"}')).toBe('unknown-command');
    expect(code('{"id":1,"cmd":"up"}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"up","args":[]}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"up","args":{"name":"../../etc"}}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"up","args":{"name":"gw","force":true}}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"status","args":{"name":"gw"}}')).toBe('bad-args');
    expect(code(`{"id":1,"cmd":"status","p":"${'x'.repeat(MAX_REQUEST_LINE)}"}`)).toBe('line-too-long');
    expect(code('{"id":1,"cmd":"down","args":null}')).toBe('ok');
  });

  it('checks responses', () => {
    expect(parseResponse('{"id":1,"ok":true,"result":{"a":1}}')).toEqual({ id: 1, ok: true, result: { a: 1 } });
    expect(parseResponse('{"id":null,"ok":false,"error":{"code":"malformed","message":"m"}}')).toEqual({ id: null, ok: false, error: { code: 'malformed', message: 'm' } });
    expect(parseResponse('nope')).toHaveProperty('invalid');
    expect(parseResponse('{"id":1,"ok":false,"error":"x"}')).toHaveProperty('invalid');
    expect(parseResponse('{"id":1}')).toHaveProperty('invalid');
  });

  it('splits lines across chunks and stops buffering past the bound', () => {
    const s = new LineSplitter(8);
    expect(s.push(Buffer.from('ab\ncd'))).toEqual({ lines: ['ab'], overflow: false });
    expect(s.buffered).toBe(2);
    expect(s.push(Buffer.from('ef\r\n\n'))).toEqual({ lines: ['cdef', ''], overflow: false });
    expect(s.push(Buffer.from('12345678\n'))).toEqual({ lines: ['12345678'], overflow: false });
    expect(s.push(Buffer.from('12345'))).toEqual({ lines: [], overflow: false });
    expect(s.push(Buffer.from('6789'))).toEqual({ lines: [], overflow: true });
    expect(new LineSplitter(4).push(Buffer.from('ok\n123456789\n'))).toEqual({ lines: ['ok'], overflow: true });
    expect(() => new LineSplitter(0)).toThrow(RangeError);
  });

  it('puts the default socket in /run for root, else in XDG_RUNTIME_DIR or the temp directory', () => {
    expect(defaultSocketPath({ uid: 0, runtimeDir: '/run/user/0' })).toBe('/run/ikeclone/ikeclone.sock');
    expect(defaultSocketPath({ uid: 1000, runtimeDir: '/run/user/1000' })).toBe('/run/user/1000/ikeclone-1000.sock');
    // In the shared temp directory: a directory of the user's own, never the socket itself (see 'other local users').
    expect(defaultSocketPath({ uid: 1000, runtimeDir: undefined, tmp: '/tmp' })).toBe('/tmp/ikeclone-1000/ikeclone.sock');
    expect(defaultSocketPath({ uid: 1000, runtimeDir: '', tmp: '/var/tmp' })).toBe('/var/tmp/ikeclone-1000/ikeclone.sock');
    expect(defaultSocketLocation({ uid: 1000, runtimeDir: undefined, tmp: '/tmp' }).privateDir).toBe(true);
    expect(defaultSocketLocation({ uid: 1000, runtimeDir: '/run/user/1000' }).privateDir).toBe(false);
    expect(defaultSocketLocation({ uid: 0 }).privateDir).toBe(false);
  });
});

describe('status tree', () => {
  it('shows each Child SA\'s owner worker and groups a clone family under its session', async () => {
    const { formatStatus } = await import('../control/cli/format.js');
    const child = { id: 3, name: 'net', state: 'installed', spiIn: 'c0000001', spiOut: 'c0000002', proposal: 'AES_GCM_16_128/NO_EXT_SEQ', localTs: ['10.1.0.0/24'], remoteTs: ['10.2.0.0/24'], udpEncap: false, ageSeconds: 5, worker: 1 };
    const sa = (id: number, familyIndex: number) => ({
      id, sessionId: 1, familyIndex, name: 'gw', state: 'established', role: 'initiator' as const, spiI: `${id}`.padStart(16, '0'), spiR: '00000000000000ff',
      local: '10.0.0.1:4500', remote: '10.0.0.2:4500', localId: 'a', remoteId: 'b', proposal: 'AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519',
      natLocal: false, natRemote: false, mobike: true, clone: true, virtualIp: null, peerVirtualIp: null, ageSeconds: 5, children: [{ ...child, id: id * 10, worker: familyIndex }],
    });
    const text = formatStatus({
      ikeSas: [sa(1, 0), sa(2, 1)],
      families: [{ sessionId: 1, peer: 'b', members: [1, 2], target: 2, state: 'complete', reason: null }],
      halfOpen: 0,
      ike: { received: 0, sent: 0, retransmits: 0, responsesFromCache: 0, drops: {} },
      udp: null,
    });
    expect(text).toMatch(/^session 1 with b: 2 of 2 IKE SAs, complete/);
    expect(text).toContain('├─ gw #1: ESTABLISHED, initiator, 5s');
    expect(text).toContain('└─ gw #2: ESTABLISHED, initiator, 5s, clone 1 of session 1');
    expect(text).toContain('net #10: INSTALLED, 5s, worker 0');
    expect(text).toContain('net #20: INSTALLED, 5s, worker 1');
  });
});
