// The liveness probe between cluster nodes (control/cluster/liveness-probe.ts,
// architecture §8): its codec (round trip, every drop reason, a message under
// another cluster key), its rate limit, and two probes on loopback: a pong
// answers only the ping outstanding, from the node pinged, under the lease
// expected; a replayed or late pong and a replayed ping are dropped.
import { afterEach, describe, expect, test } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { ClusterKey } from '../control/cluster/seal.js';
import {
  LivenessProbe,
  PROBE_MESSAGE_LENGTH,
  PROBE_NONCE_LENGTH,
  PROBE_WAIT_MS,
  decodeProbe,
  encodeProbe,
  type ProbeMessage,
} from '../control/cluster/liveness-probe.js';
import { silentLogger } from '../control/log.js';
import { RateLimiter } from '../io/rate-limiter.js';
import { waitFor } from './support/proc.js';

const SECRET = randomBytes(32);
const key = ClusterKey.derive(SECRET, 'c1');
const otherKey = ClusterKey.derive(randomBytes(32), 'c1');
const LEASE = '7587876543210987654';

function pong(over: Partial<ProbeMessage> = {}): ProbeMessage {
  return { type: 'pong', node: 'gw-b', nonce: randomBytes(PROBE_NONCE_LENGTH), leaseId: LEASE, ...over };
}

/** `bytes` with its MAC computed again under `k`: a message the key holder could send, field by field. */
function remac(k: ClusterKey, bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  k.probeMac(out.subarray(0, PROBE_MESSAGE_LENGTH - 16)).copy(out, PROBE_MESSAGE_LENGTH - 16, 0, 16);
  return out;
}

describe('liveness probe codec', () => {
  test('a ping and a pong round-trip; the ping carries no lease', () => {
    const p = pong();
    const bytes = encodeProbe(key, p);
    expect(bytes.length).toBe(PROBE_MESSAGE_LENGTH);
    expect(decodeProbe(key, bytes)).toEqual({ ok: true, value: { ...p, nonce: new Uint8Array(p.nonce) } });
    const ping = encodeProbe(key, { type: 'ping', node: 'a'.repeat(64), nonce: p.nonce, leaseId: LEASE });
    expect(decodeProbe(key, ping)).toMatchObject({ ok: true, value: { type: 'ping', node: 'a'.repeat(64), leaseId: '0' } });
  });

  test('the cluster key derives the probe key with its own label: the MAC is neither the state MAC nor another cluster\'s', () => {
    const bytes = encodeProbe(key, pong());
    const body = bytes.subarray(0, PROBE_MESSAGE_LENGTH - 16);
    expect(key.mac(body).slice(0, 32)).not.toBe(bytes.subarray(PROBE_MESSAGE_LENGTH - 16).toString('hex'));
    expect(decodeProbe(ClusterKey.derive(SECRET, 'c2'), bytes)).toEqual({ ok: false, error: 'badMac' });
  });

  test('every drop reason, and decoding never throws', () => {
    const good = encodeProbe(key, pong());
    expect(decodeProbe(key, good.subarray(0, PROBE_MESSAGE_LENGTH - 1))).toEqual({ ok: false, error: 'badLength' });
    expect(decodeProbe(key, Buffer.concat([good, Buffer.alloc(1)]))).toEqual({ ok: false, error: 'badLength' });
    expect(decodeProbe(key, new Uint8Array(0))).toEqual({ ok: false, error: 'badLength' });
    const magic = Buffer.from(good);
    magic[0] = 0x58;
    expect(decodeProbe(key, remac(key, magic))).toEqual({ ok: false, error: 'badMagic' });
    const version = Buffer.from(good);
    version[4] = 2;
    expect(decodeProbe(key, remac(key, version))).toEqual({ ok: false, error: 'badVersion' });
    // A pong under another key, and one bit changed anywhere under the MAC.
    expect(decodeProbe(key, encodeProbe(otherKey, pong()))).toEqual({ ok: false, error: 'badMac' });
    for (const at of [5, 6, 7, 80, 100, PROBE_MESSAGE_LENGTH - 1]) {
      const flipped = Buffer.from(good);
      flipped[at]! ^= 1;
      expect(decodeProbe(key, flipped), `bit flipped at ${at}`).toEqual({ ok: false, error: 'badMac' });
    }
    // Fields out of range under a valid MAC: unknown type, empty or overlong name, bytes after the name.
    for (const [at, value] of [[5, 3], [6, 0], [6, 65], [7 + 4, 0x41]] as const) {
      const bad = Buffer.from(good);
      bad[at] = value;
      expect(decodeProbe(key, remac(key, bad)), `byte ${at} = ${value}`).toEqual({ ok: false, error: 'malformed' });
    }
    for (let i = 0; i < 2000; i++) {
      const junk = randomBytes(i % 3 === 0 ? PROBE_MESSAGE_LENGTH : i % 200);
      if (i % 2 === 0) Buffer.from('IKLP\x01').copy(junk);
      expect(decodeProbe(key, junk).ok).toBe(false);
    }
  });
});

describe('liveness probe rate limit', () => {
  test('a burst at once, then the rate', () => {
    let t = 0;
    const limit = new RateLimiter(10, 3, t);
    expect([limit.take(t), limit.take(t), limit.take(t), limit.take(t)]).toEqual([true, true, true, false]);
    t = 50;
    expect(limit.take(t)).toBe(false);
    t = 100;
    expect([limit.take(t), limit.take(t)]).toEqual([true, false]);
    t = 10_000;
    expect([limit.take(t), limit.take(t), limit.take(t), limit.take(t)]).toEqual([true, true, true, false]);
  });
});

describe('liveness probe on loopback', () => {
  const opened: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const o of opened.splice(0)) o.close();
  });

  async function probeNode(node: string, leaseId: string, over: { key?: ClusterKey; pongLimit?: { burst: number; perSecond: number } } = {}): Promise<LivenessProbe> {
    const p = new LivenessProbe({ key: over.key ?? key, node, address: '127.0.0.1', port: 0, leaseId: () => leaseId, log: silentLogger(), ...(over.pongLimit && { pongLimit: over.pongLimit }) });
    await p.bind();
    opened.push(p);
    return p;
  }

  /** A raw socket on loopback collecting what it receives. */
  async function raw(): Promise<{ socket: Socket; port: number; got: Buffer[]; send: (b: Buffer, port: number) => void }> {
    const socket = createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    opened.push(socket);
    const got: Buffer[] = [];
    socket.on('message', (m) => got.push(m));
    return { socket, port: socket.address().port, got, send: (b, port) => socket.send(b, port, '127.0.0.1') };
  }

  test('a member answering under the lease of its heartbeat is answered; another lease, another node, another key, or no one: no answer', async () => {
    const a = await probeNode('gw-a', '1');
    const b = await probeNode('gw-b', LEASE);
    const at = { address: '127.0.0.1', port: b.announced!.port };
    expect(await a.probe('gw-b', LEASE, at)).toBe('answered');
    expect(b.stats.pongsSent).toBeGreaterThanOrEqual(1);
    // Its lease is another (it joined again under a new one): the old lease may go.
    expect(await a.probe('gw-b', '42', at)).toBe('no-answer');
    expect(a.stats.drops.otherLease).toBe(3);
    // Another node answers at that address.
    expect(await a.probe('gw-c', LEASE, at)).toBe('no-answer');
    expect(a.stats.drops.otherNode).toBe(3);
    // A node under another cluster key does not answer our pings (it cannot verify them).
    const stranger = await probeNode('gw-b', LEASE, { key: otherKey });
    expect(await a.probe('gw-b', LEASE, { address: '127.0.0.1', port: stranger.announced!.port })).toBe('no-answer');
    expect(stranger.stats.drops.badMac).toBe(3);
    expect(stranger.stats.pongsSent).toBe(0);
    // Nobody there (the port closed): the ICMP port unreachable ends the probe as no answer, before the wait.
    const closed = await raw();
    const port = closed.port;
    closed.socket.close();
    opened.splice(opened.indexOf(closed.socket), 1);
    const started = performance.now();
    expect(await a.probe('gw-b', LEASE, { address: '127.0.0.1', port })).toBe('no-answer');
    expect(performance.now() - started).toBeLessThan(PROBE_WAIT_MS);
    expect(a.stats).toMatchObject({ answered: 1, unanswered: 4, unreachable: 1 });
    // Someone there who never answers: no answer once the wait is over.
    const silent = await raw();
    const waited = performance.now();
    expect(await a.probe('gw-b', LEASE, { address: '127.0.0.1', port: silent.port })).toBe('no-answer');
    expect(performance.now() - waited).toBeGreaterThanOrEqual(PROBE_WAIT_MS - 5);
    expect(silent.got).toHaveLength(3);
    expect(a.stats).toMatchObject({ unanswered: 5, unreachable: 1 });
    expect(a.outstanding).toBe(0);
    // An address of the other IP family: no ping could reach it, so the probe decides nothing.
    const sent = a.stats.pingsSent;
    expect(await a.probe('gw-b', LEASE, { address: '::1', port: 4501 })).toBe('not-probed');
    expect(a.stats.pingsSent).toBe(sent);
  });

  test('closing ends the probes under way as closed (nothing decided)', async () => {
    const a = await probeNode('gw-a', '1');
    const r = await raw();
    const probing = a.probe('gw-b', LEASE, { address: '127.0.0.1', port: r.port });
    await waitFor(() => (r.got.length >= 1 ? true : undefined), { timeoutMs: 2000, message: 'the first ping' });
    a.close();
    expect(await probing).toBe('closed');
    expect(a.stats).toMatchObject({ answered: 0, unanswered: 0 });
    expect(await a.probe('gw-b', LEASE, { address: '127.0.0.1', port: r.port })).toBe('closed');
  });

  test('a replayed pong and a late one find no nonce; a replayed ping is not answered twice', async () => {
    const a = await probeNode('gw-a', '1');
    const b = await probeNode('gw-b', LEASE);
    const r = await raw();
    // A pong b sent to someone else, replayed to a while a probes b: its nonce is not a's.
    const ping = encodeProbe(key, { type: 'ping', node: 'gw-x', nonce: randomBytes(PROBE_NONCE_LENGTH), leaseId: '0' });
    r.send(ping, b.announced!.port);
    await waitFor(() => (r.got.length === 1 ? true : undefined), { timeoutMs: 2000, message: "b's pong" });
    const captured = r.got[0]!;
    expect(decodeProbe(key, captured)).toMatchObject({ ok: true, value: { type: 'pong', node: 'gw-b', leaseId: LEASE } });
    // The same ping again: dropped as a replay, not answered.
    r.send(ping, b.announced!.port);
    await waitFor(() => (b.stats.drops.replayedPing === 1 ? true : undefined), { timeoutMs: 2000, message: 'the replayed ping dropped' });
    expect(r.got).toHaveLength(1);
    // a probes r's port (nobody answers there); the captured pong replayed to a meanwhile.
    const probing = a.probe('gw-b', LEASE, { address: '127.0.0.1', port: r.port });
    r.send(captured, a.announced!.port);
    expect(await probing).toBe('no-answer');
    expect(a.stats.drops.unknownNonce).toBe(1);
    // r got a's pings: answered (under the key, by gw-b, with the right lease) only after the probe ended.
    const pings = r.got.slice(1).map((m) => decodeProbe(key, m)).filter((d) => d.ok && d.value.type === 'ping');
    expect(pings).toHaveLength(3);
    for (const d of pings) r.send(encodeProbe(key, { type: 'pong', node: 'gw-b', nonce: d.ok ? d.value.nonce : new Uint8Array(16), leaseId: LEASE }), a.announced!.port);
    await waitFor(() => (a.stats.drops.unknownNonce === 4 ? true : undefined), { timeoutMs: 2000, message: 'the late pongs dropped' });
    expect(a.stats).toMatchObject({ answered: 0, unanswered: 1 });
  });

  test('answers are rate-limited: pings past the limit are refused, counted, unanswered', async () => {
    const b = await probeNode('gw-b', LEASE, { pongLimit: { burst: 5, perSecond: 0.01 } });
    const r = await raw();
    for (let i = 0; i < 12; i++) r.send(encodeProbe(key, { type: 'ping', node: 'gw-a', nonce: randomBytes(PROBE_NONCE_LENGTH), leaseId: '0' }), b.announced!.port);
    await waitFor(() => (b.stats.pongsSent + b.stats.refused === 12 ? true : undefined), { timeoutMs: 2000, message: 'every ping handled' });
    expect(b.stats).toMatchObject({ pongsSent: 5, refused: 7 });
    await new Promise((res) => setTimeout(res, 100));
    expect(r.got).toHaveLength(5);
  });
});

describe('liveness probe during a sealing key rotation', () => {
  test('a probe under a key the receiver holds as previous decodes; with the new key alone it is a bad MAC', () => {
    const oldKey = ClusterKey.derive(SECRET, 'c1');
    const ring = ClusterKey.derive(randomBytes(32), 'c1').withPrevious([ClusterKey.derive(SECRET, 'c1')]);
    const p = pong();
    expect(decodeProbe(ring, encodeProbe(oldKey, p))).toMatchObject({ ok: true, value: { type: 'pong', node: 'gw-b', leaseId: LEASE } });
    // And the other way: what the ring sends (its current key) reaches a node that holds it as previous.
    expect(decodeProbe(ClusterKey.derive(SECRET, 'c1').withPrevious([ring]), encodeProbe(ring, p)).ok).toBe(true);
    expect(decodeProbe(otherKey.withPrevious([]), encodeProbe(oldKey, p))).toEqual({ ok: false, error: 'badMac' });
  });
});
