#!/usr/bin/env node
// A lossy UDP relay for fault-injection tests: the user-space stand-in for
// `tc netem` (loss, duplication, reordering) on kernels without sch_netem.
//
// It binds `--listen ADDR` on every port of `--ports` (IKE 500 and NAT-T 4500,
// RFC 7296 §2, §2.23) and forwards each datagram:
//   - from the target (`--target ADDR`, same port) to the client endpoint last
//     seen on that port ("g2c"), and
//   - from anyone else to the target, same port, remembering the sender as the
//     client endpoint of that port ("c2g").
// The target therefore sees the relay's address as its peer, as behind a NAT.
//
// Per direction and per datagram, with a seeded PRNG (one stream per
// direction, a fixed number of draws per datagram, so a given sequence of
// datagrams meets the same faults on every run):
//   - drop with probability `--loss` (or `--loss-c2g` / `--loss-g2c`);
//   - otherwise duplicate with probability `--dup` (a second copy right after);
//   - and hold ("reorder") with probability `--reorder`: the held datagram goes
//     out right after the next datagram of its direction, or after a random
//     delay of 1..`--max-delay` ms (default 50) if nothing follows sooner.
//
// Control (stdin, one JSON object per line; answers on stdout, one JSON object
// per line): {"cmd":"stats","id":N} answers {"type":"stats","id":N,...counters};
// {"cmd":"set","id":N,"loss":..,"dup":..,"reorder":..} changes probabilities
// (per direction with lossC2g, lossG2c, ...) and answers {"type":"set","id":N}.
// On start it prints {"type":"ready",...}; on SIGUSR2 an unsolicited stats line.
// The counters exist per direction and per kind of datagram ("IKE_AUTH
// request", "ESP", "keepalive", ...: byKind), so a test can tell which
// exchange met which fault. With --trace, one {"type":"trace",...} line per
// datagram tells what was done to it.
//
// Lifetime: the relay exits when its stdin (the parent's pipe) closes, on
// SIGTERM or SIGINT, and after `--max-lifetime` seconds (default 300) in any
// case, printing a final {"type":"exit",...} stats line.
import { createSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { parseArgs } from 'node:util';

const DIRECTIONS = ['c2g', 'g2c'];

function fail(message) {
  process.stderr.write(`lossy-relay: ${message}\n`);
  process.exit(2);
}

const { values: opts } = parseArgs({
  options: {
    listen: { type: 'string' },
    target: { type: 'string' },
    ports: { type: 'string', default: '500,4500' },
    seed: { type: 'string', default: '1' },
    loss: { type: 'string', default: '0' },
    'loss-c2g': { type: 'string' },
    'loss-g2c': { type: 'string' },
    dup: { type: 'string', default: '0' },
    reorder: { type: 'string', default: '0' },
    'max-delay': { type: 'string', default: '50' },
    'max-lifetime': { type: 'string', default: '300' },
    trace: { type: 'boolean', default: false },
  },
  strict: true,
});

if (!opts.listen || !isIPv4(opts.listen)) fail('--listen must be an IPv4 address');
if (!opts.target || !isIPv4(opts.target)) fail('--target must be an IPv4 address');
if (opts.listen === opts.target) fail('--listen and --target must differ');

const ports = opts.ports.split(',').map((p) => Number(p));
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535) || new Set(ports).size !== ports.length) {
  fail('--ports must be distinct port numbers, comma-separated');
}

function probability(text, what) {
  const v = Number(text);
  if (!Number.isFinite(v) || v < 0 || v > 1) fail(`${what} must be a probability in 0..1, got ${JSON.stringify(text)}`);
  return v;
}

const seed = Number(opts.seed);
if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) fail('--seed must be an integer 0..2^32-1');
const maxDelayMs = Number(opts['max-delay']);
if (!Number.isInteger(maxDelayMs) || maxDelayMs < 1 || maxDelayMs > 10_000) fail('--max-delay must be 1..10000 ms');
const maxLifetimeS = Number(opts['max-lifetime']);
if (!Number.isFinite(maxLifetimeS) || maxLifetimeS <= 0 || maxLifetimeS > 3600) fail('--max-lifetime must be 0..3600 s');

/** Fault probabilities per direction. */
const faults = {
  c2g: { loss: probability(opts['loss-c2g'] ?? opts.loss, 'loss'), dup: probability(opts.dup, 'dup'), reorder: probability(opts.reorder, 'reorder') },
  g2c: { loss: probability(opts['loss-g2c'] ?? opts.loss, 'loss'), dup: probability(opts.dup, 'dup'), reorder: probability(opts.reorder, 'reorder') },
};

/** mulberry32: a small, fast, seedable 32-bit PRNG; returns floats in [0, 1). */
function mulberry32(state) {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One independent stream per direction, so one direction's traffic never shifts the other's faults. */
const rng = {
  c2g: mulberry32(Math.imul(seed, 2654435761) ^ 0x9e3779b9),
  g2c: mulberry32(Math.imul(seed, 2654435761) ^ 0x85ebca6b),
};

function emptyCounters() {
  return { received: 0, forwarded: 0, dropped: 0, duplicated: 0, reordered: 0, overtaken: 0, unroutable: 0, sendErrors: 0 };
}
const counters = { c2g: emptyCounters(), g2c: emptyCounters() };
/** The same counters per kind of datagram ("IKE_AUTH request", "ESP", ...), per direction. */
const byKind = { c2g: {}, g2c: {} };

const EXCHANGES = { 34: 'IKE_SA_INIT', 35: 'IKE_AUTH', 36: 'CREATE_CHILD_SA', 37: 'INFORMATIONAL' };

/**
 * What a datagram is, from its first bytes only (never trusted beyond that):
 * on 4500 a non-ESP marker (four zero octets) precedes an IKE header (RFC 3948
 * §2.2), one 0xFF octet is a NAT keepalive (§2.3), anything else is ESP; the
 * IKE header has the exchange type at octet 18, the flags at 19 and the
 * message ID at 20..23 (RFC 7296 §3.1).
 */
function classify(port, bytes) {
  let off = 0;
  if (port !== 500) {
    if (bytes.length === 1 && bytes[0] === 0xff) return { kind: 'keepalive' };
    if (bytes.length < 4 || bytes.readUInt32BE(0) !== 0) return { kind: 'ESP' };
    off = 4;
  }
  if (bytes.length < off + 28) return { kind: 'short' };
  const exchange = EXCHANGES[bytes[off + 18]] ?? `exchange ${bytes[off + 18]}`;
  const response = (bytes[off + 19] & 0x20) !== 0;
  return { kind: `${exchange} ${response ? 'response' : 'request'}`, mid: bytes.readUInt32BE(off + 20) };
}

function count(dir, kind, key) {
  counters[dir][key]++;
  const k = (byKind[dir][kind] ??= { received: 0, forwarded: 0, dropped: 0, duplicated: 0, reordered: 0 });
  if (key in k) k[key]++;
}
/** Datagrams forwarded, per port and direction (what went where). */
const perPort = Object.fromEntries(ports.map((p) => [p, { c2g: 0, g2c: 0 }]));
/** The client endpoint last seen on each port. */
const clients = new Map();
/** The datagram held for reordering, per direction: { port, bytes, dest, timer }. */
const held = { c2g: undefined, g2c: undefined };
const sockets = new Map();
const startedAt = Date.now();

function snapshot(type, extra = {}) {
  return {
    type,
    ...extra,
    seed,
    uptimeMs: Date.now() - startedAt,
    faults,
    c2g: { ...counters.c2g },
    g2c: { ...counters.g2c },
    byKind,
    perPort,
    clients: Object.fromEntries([...clients].map(([p, c]) => [p, `${c.address}:${c.port}`])),
  };
}

function print(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function send(dir, port, bytes, dest, kind) {
  const sock = sockets.get(port);
  if (!sock) return;
  count(dir, kind, 'forwarded');
  perPort[port][dir]++;
  sock.send(bytes, dest.port, dest.address, (err) => {
    if (err) counters[dir].sendErrors++;
  });
}

function releaseHeld(dir, overtaken) {
  const h = held[dir];
  if (!h) return;
  held[dir] = undefined;
  clearTimeout(h.timer);
  if (overtaken) counters[dir].overtaken++;
  send(dir, h.port, h.bytes, h.dest, h.kind);
}

function onDatagram(port, bytes, rinfo) {
  let dir;
  let dest;
  const { kind, mid } = classify(port, bytes);
  if (rinfo.address === opts.target && rinfo.port === port) {
    dir = 'g2c';
    dest = clients.get(port);
    count(dir, kind, 'received');
    if (!dest) {
      counters[dir].unroutable++;
      trace(dir, port, kind, mid, 'unroutable');
      return;
    }
  } else {
    dir = 'c2g';
    count(dir, kind, 'received');
    clients.set(port, { address: rinfo.address, port: rinfo.port });
    dest = { address: opts.target, port };
  }
  // Four draws per datagram whatever the outcome, so the stream stays aligned.
  const r = rng[dir];
  const dropDraw = r();
  const dupDraw = r();
  const reorderDraw = r();
  const delayDraw = r();
  const f = faults[dir];
  if (dropDraw < f.loss) {
    count(dir, kind, 'dropped');
    trace(dir, port, kind, mid, 'dropped');
    return;
  }
  const copies = dupDraw < f.dup ? 2 : 1;
  if (copies === 2) count(dir, kind, 'duplicated');
  if (reorderDraw < f.reorder && !held[dir]) {
    // Hold this one: it goes out after the next datagram of this direction, or after its delay.
    count(dir, kind, 'reordered');
    const delay = 1 + Math.floor(delayDraw * maxDelayMs);
    trace(dir, port, kind, mid, copies === 2 ? `duplicated, one copy held ${delay} ms` : `held ${delay} ms`);
    const h = { port, bytes, dest, kind, timer: undefined };
    h.timer = setTimeout(() => {
      if (held[dir] === h) releaseHeld(dir, false);
    }, delay);
    held[dir] = h;
    if (copies === 2) send(dir, port, bytes, dest, kind);
    return;
  }
  trace(dir, port, kind, mid, copies === 2 ? 'duplicated' : 'forwarded');
  for (let i = 0; i < copies; i++) send(dir, port, bytes, dest, kind);
  releaseHeld(dir, true);
}

function trace(dir, port, kind, mid, action) {
  if (opts.trace) print({ type: 'trace', t: Date.now() - startedAt, dir, port, kind, ...(mid === undefined ? {} : { mid }), action });
}

let exiting = false;
function exit(reason) {
  if (exiting) return;
  exiting = true;
  for (const dir of DIRECTIONS) {
    const h = held[dir];
    if (h) clearTimeout(h.timer);
    held[dir] = undefined;
  }
  print(snapshot('exit', { reason }));
  for (const s of sockets.values()) {
    try {
      s.close();
    } catch {
      // already closed
    }
  }
  // Let stdout drain, then go.
  process.stdout.write('', () => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}

function applySet(cmd) {
  const next = { c2g: { ...faults.c2g }, g2c: { ...faults.g2c } };
  for (const key of ['loss', 'dup', 'reorder']) {
    if (cmd[key] !== undefined) for (const dir of DIRECTIONS) next[dir][key] = cmd[key];
    for (const dir of DIRECTIONS) {
      const perDirection = cmd[`${key}${dir === 'c2g' ? 'C2g' : 'G2c'}`];
      if (perDirection !== undefined) next[dir][key] = perDirection;
    }
  }
  for (const dir of DIRECTIONS) {
    for (const key of ['loss', 'dup', 'reorder']) {
      const v = next[dir][key];
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) return `${key} (${dir}) must be a probability in 0..1`;
    }
  }
  faults.c2g = next.c2g;
  faults.g2c = next.g2c;
  return undefined;
}

function onCommand(line) {
  const text = line.trim();
  if (text === '') return;
  let cmd;
  try {
    cmd = JSON.parse(text);
  } catch {
    print({ type: 'error', error: 'not JSON' });
    return;
  }
  if (cmd === null || typeof cmd !== 'object') {
    print({ type: 'error', error: 'expected an object' });
    return;
  }
  const id = Number.isInteger(cmd.id) ? cmd.id : null;
  if (cmd.cmd === 'stats') print(snapshot('stats', { id }));
  else if (cmd.cmd === 'set') {
    const error = applySet(cmd);
    print(error ? { type: 'error', id, error } : { type: 'set', id, faults });
  } else print({ type: 'error', id, error: `unknown command ${JSON.stringify(cmd.cmd)}` });
}

async function main() {
  for (const port of ports) {
    const sock = createSocket({ type: 'udp4' });
    sock.on('message', (msg, rinfo) => onDatagram(port, msg, rinfo));
    sock.on('error', (err) => {
      if (!exiting) fail(`socket ${opts.listen}:${port}: ${err.message}`);
    });
    await new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: opts.listen, port, exclusive: true }, () => {
        sock.off('error', reject);
        resolve();
      });
    }).catch((err) => fail(`cannot bind ${opts.listen}:${port}: ${err.message}`));
    sockets.set(port, sock);
  }

  let buffered = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buffered += chunk;
    if (buffered.length > 65536) buffered = buffered.slice(-65536);
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      onCommand(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  // A parent that died leaves a broken stdout pipe: nothing left to report to.
  process.stdout.on('error', () => process.exit(0));
  process.stdin.on('end', () => exit('stdin closed'));
  process.stdin.on('close', () => exit('stdin closed'));
  process.stdin.on('error', () => exit('stdin error'));
  process.on('SIGTERM', () => exit('SIGTERM'));
  process.on('SIGINT', () => exit('SIGINT'));
  process.on('SIGUSR2', () => print(snapshot('stats', { id: null })));
  setTimeout(() => exit('max lifetime'), maxLifetimeS * 1000).unref();
  // The lifetime timer is unref'd; the sockets and stdin keep the process alive.
  print({ type: 'ready', pid: process.pid, listen: opts.listen, target: opts.target, ports, seed, faults });
}

main().catch((err) => fail(String(err?.stack ?? err)));
