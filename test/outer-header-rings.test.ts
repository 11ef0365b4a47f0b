// The outer header of ESP that crosses the I/O thread (RFC 4301 §5.1.2.1,
// §8.1; RFC 6040): the worker's ring cells carry the outer header word of
// the ESP the I/O thread sends for it (TOS / Traffic Class, DF) and the outer
// TOS of the ESP the I/O thread received for it, which the worker combines
// into the inner packet as it does for ESP read from its own socket. Two data
// planes in one process, without direct output (no TUN device), so every
// packet goes through the out and in rings; and the pieces on their own: the
// ring cell's outer word, the I/O thread's batched sockets on loopback, and
// the allocation-free raw IPv4 parse of a worker's steered input.
import { afterEach, describe, expect, it } from 'vitest';
import { DataPlane } from '../dataplane/dataplane.js';
import { internetChecksum, writeUdp4 } from '../dataplane/packet.js';
import { CellKind, createRing, RingReader, RingWriter } from '../dataplane/ring.js';
import { ipv4Payload, type Ipv4EspPayload } from '../dataplane/worker-input.js';
import {
  ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT, OUTER_DF_CLEAR, OUTER_DF_SET, OUTER_HEADER_DEFAULTS, OUTER_TOS_SET, packOuterHeader,
} from '../dataplane/outer-header.js';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { OUTER_DF_SOCKOPT, RECV_TOS_VALID } from '../io/native-io.js';
import { EP_A, mirroredSpecs, stopPlanes, trackPlane } from './support/dataplane-pair.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

afterEach(stopPlanes);

const until = (cond: () => boolean | Promise<boolean>) => waitFor(cond, { timeoutMs: 5000, intervalMs: 5 });

/** An IPv4/UDP packet 10.1.0.1 -> 10.2.0.7 with TOS `tos`, DF as told, a valid header checksum; `id` tells packets apart. */
function inner(tos: number, df: boolean, id: number): Uint8Array {
  const p = new Uint8Array(120);
  writeUdp4(p, 0, p.length, Uint8Array.of(10, 1, 0, 1), Uint8Array.of(10, 2, 0, 7), 1000, 9, id);
  p[1] = tos;
  p[6] = df ? 0x40 : 0;
  p[10] = p[11] = 0;
  const c = internetChecksum(p, 0, 20);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

/**
 * A and B back to back, both writing through the I/O thread (no TUN device):
 * each ESP datagram A sends is recorded with its outer header word and given
 * to B with the outer TOS `outerTos(id)` names for it (as a socket reports it).
 */
async function planes() {
  const sent: Array<{ id: number; outer: number }> = [];
  const sentByB: number[] = [];
  const outerTos = new Map<number, number>();
  const delivered: Uint8Array[] = [];
  let next = 0;
  let b!: DataPlane;
  const a = new DataPlane({
    workers: 2, sink: 'deliver',
    sendUdp: (_l, _r, esp, outer) => {
      const id = next++;
      sent.push({ id, outer });
      const c = esp.slice();
      queueMicrotask(() => b.receiveEsp(c, EP_A, outerTos.get(id) ?? 0));
    },
  });
  b = new DataPlane({ workers: 2, sink: 'deliver', sendUdp: (_l, _r, _esp, outer) => void sentByB.push(outer) });
  trackPlane(a);
  trackPlane(b);
  await Promise.all([a.start(), b.start()]);
  b.setInnerSink({ write: (p) => (delivered.push(p.slice()), true) });
  return { a, b, sent, sentByB, outerTos, delivered };
}

describe('ESP the I/O thread sends carries the outer header its worker read from the inner packet', () => {
  it('DSCP and ECN copied, DF copied (then as a socket option: this thread alone sends on its sockets); fixed DSCP, ECN off, DF set on the other SA', async () => {
    const { a, b, sent, sentByB } = await planes();
    const s = mirroredSpecs(1, { b: { outer: packOuterHeader({ dscp: 10, ecn: 'off', df: 'set' }) } });
    await Promise.all([a.install(s.a), b.install(s.b)]);
    expect(a.outputMode).toBe('io-thread');
    expect(a.sendInner(inner(0xb9, true, 1))).toBe(true);
    expect(a.sendInner(inner(0x2a, false, 2))).toBe(true);
    await until(() => sent.length === 2);
    expect(sent.map((x) => x.outer)).toEqual([
      OUTER_TOS_SET | 0xb9 | OUTER_DF_SET | OUTER_DF_SOCKOPT,
      OUTER_TOS_SET | 0x2a | OUTER_DF_CLEAR | OUTER_DF_SOCKOPT,
    ]);
    const back = inner(0xbb, false, 3);
    back.set([10, 2, 0, 7, 10, 1, 0, 1], 12); // B -> A
    expect(b.sendInner(back)).toBe(true);
    await until(() => sentByB.length === 1);
    expect(sentByB).toEqual([OUTER_TOS_SET | (10 << 2) | ECN_NOT_ECT | OUTER_DF_SET | OUTER_DF_SOCKOPT]);
  });
});

describe('ESP the I/O thread received: its outer ECN combined by the owner worker (RFC 6040 §4.2)', () => {
  it('outer CE marks an ECN-capable inner packet CE (checksum updated) and drops a Not-ECT one, counted; ECT(1) over ECT(0) gives ECT(1); no known TOS leaves it alone', async () => {
    const { a, b, sent, outerTos, delivered } = await planes();
    const s = mirroredSpecs(2);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    const cases: Array<[inner: number, outer: number, want: number | 'drop']> = [
      [0xb8 | ECN_ECT0, RECV_TOS_VALID | ECN_CE, 0xb8 | ECN_CE],
      [0xb8 | ECN_ECT1, RECV_TOS_VALID | ECN_CE, 0xb8 | ECN_CE],
      [0xb8 | ECN_NOT_ECT, RECV_TOS_VALID | ECN_CE, 'drop'],
      [0xb8 | ECN_ECT0, RECV_TOS_VALID | ECN_ECT1, 0xb8 | ECN_ECT1],
      [0xb8 | ECN_NOT_ECT, RECV_TOS_VALID | ECN_NOT_ECT, 0xb8 | ECN_NOT_ECT],
      // Not known (a dgram socket): left as it is, never dropped.
      [0xb8 | ECN_NOT_ECT, ECN_CE, 0xb8 | ECN_NOT_ECT],
    ];
    cases.forEach(([, outer], id) => outerTos.set(id, outer));
    cases.forEach(([tos], id) => expect(a.sendInner(inner(tos, true, id))).toBe(true));
    const want = cases.filter((c) => c[2] !== 'drop').length;
    await until(() => sent.length === cases.length && delivered.length === want);
    await until(() => b.status().workers.reduce((n, w) => n + w.drops.ecn, 0) === 1);
    const byId = new Map(delivered.map((p) => [(p[4]! << 8) | p[5]!, p]));
    cases.forEach(([, , w], id) => {
      const p = byId.get(id);
      if (w === 'drop') return expect(p).toBeUndefined();
      expect(p?.[1], `packet ${id}`).toBe(w);
      expect(internetChecksum(p!, 0, 20), `packet ${id}: header checksum`).toBe(0);
    });
  });

  it('an SA with ECN off ignores the outer ECN field', async () => {
    const { a, b, outerTos, delivered } = await planes();
    const s = mirroredSpecs(3, { b: { outer: packOuterHeader({ ...OUTER_HEADER_DEFAULTS, ecn: 'off' }) } });
    await Promise.all([a.install(s.a), b.install(s.b)]);
    outerTos.set(0, RECV_TOS_VALID | ECN_CE);
    expect(a.sendInner(inner(0xb8, true, 0))).toBe(true);
    await until(() => delivered.length === 1);
    expect(delivered[0]![1]).toBe(0xb8);
    expect(b.status().workers.reduce((n, w) => n + w.drops.ecn, 0)).toBe(0);
  });

  it('ESP held while its SA installs keeps its outer TOS', async () => {
    const { a, b, sent, outerTos, delivered } = await planes();
    const s = mirroredSpecs(4);
    await a.install(s.a);
    for (let id = 0; id < 4; id++) outerTos.set(id, RECV_TOS_VALID | ECN_CE);
    // B's install is under way (a round trip to its worker) when A's ESP arrives.
    const installing = b.install(s.b);
    for (let id = 0; id < 4; id++) expect(a.sendInner(inner(id === 3 ? 0xb8 : 0xb8 | ECN_ECT0, true, id))).toBe(true);
    await until(() => sent.length === 4);
    await installing;
    await until(() => delivered.length === 3 && b.status().workers.reduce((n, w) => n + w.drops.ecn, 0) === 1);
    expect(delivered.map((p) => p[1])).toEqual([0xbb, 0xbb, 0xbb]);
    expect(b.status().io.dropNoSa).toBe(0);
  });
});

describe('pieces', () => {
  it('a ring cell carries its outer word beside its length, slot, kind and tag', () => {
    const ring = createRing(4, 64);
    const w = new RingWriter(ring);
    const r = new RingReader(ring);
    expect(w.push(Uint8Array.of(1, 2, 3), 7, CellKind.DECAP, 200, RECV_TOS_VALID | 0xbb)).toBe(true);
    expect(w.push(new Uint8Array(56), 65535, CellKind.ESP, 255, OUTER_TOS_SET | OUTER_DF_CLEAR | 0xff)).toBe(true);
    expect(w.push(Uint8Array.of(9), 1, CellKind.ENCAP, 1)).toBe(true);
    w.publish();
    expect([0, 1, 2].map((i) => [r.length(i), r.outer(i), r.meta(i)])).toEqual([
      [3, RECV_TOS_VALID | 0xbb, (7 | (CellKind.DECAP << 16) | (200 << 24)) >>> 0],
      [56, OUTER_TOS_SET | OUTER_DF_CLEAR | 0xff, (65535 | (CellKind.ESP << 16) | (255 << 24)) >>> 0],
      [1, 0, (1 | (CellKind.ENCAP << 16) | (1 << 24)) >>> 0],
    ]);
    expect([...r.payload(0)]).toEqual([1, 2, 3]);
  });

  it('raw IPv4 ESP is parsed into the reader\'s one result, the same object every time', () => {
    const out: Ipv4EspPayload = { at: -1, length: -1, tos: -1 };
    const arena = new Uint8Array(200);
    const at = 64;
    arena.set([0x46, 0xb9, 0, 40, 0, 0, 0x40, 0, 64, 50], at); // IHL 6: 24-byte header, total 40
    expect(ipv4Payload(arena, at, 60, out)).toBe(true);
    expect(out).toEqual({ at: at + 24, length: 16, tos: RECV_TOS_VALID | 0xb9 });
    arena[at + 9] = 17; // not ESP
    expect(ipv4Payload(arena, at, 60, out)).toBe(false);
    arena[at + 9] = 50;
    expect(ipv4Payload(arena, at, 39, out)).toBe(false); // total length past what was read
    expect(ipv4Payload(arena, at, 19, out)).toBe(false);
    arena[at] = 0x44; // IHL 4
    expect(ipv4Payload(arena, at, 60, out)).toBe(false);
    arena[at] = 0x65;
    expect(ipv4Payload(arena, at, 60, out)).toBe(false);
  });

  for (const [family, address] of [[4, '127.0.0.1'], [6, '::1']] as const) {
    interopTest(`IPv${family}: the I/O thread's batched socket sends each datagram with its outer word and reports each one's TOS to its handler`, ['native'], async () => {
      const tx = BatchedSocket.openUdp(address, 0, 1 << 20);
      const rx = BatchedSocket.openUdp(address, 0, 1 << 20);
      try {
        const got: Array<[number, number]> = [];
        rx.start((bytes, _f, _a, _p, _d, tos) => got.push([bytes[0]!, tos]));
        const to = destination(family === 4 ? Uint8Array.of(127, 0, 0, 1) : Uint8Array.of(...new Array(15).fill(0), 1));
        expect(tx.queue(Uint8Array.of(1, 0, 0, 0), to, rx.port, OUTER_TOS_SET | 0xb9)).toBe(true);
        expect(tx.queue(Uint8Array.of(2, 0, 0, 0), to, rx.port)).toBe(true);
        expect(tx.queue(Uint8Array.of(3, 0, 0, 0), to, rx.port, OUTER_TOS_SET | 0x2b | OUTER_DF_SET)).toBe(true);
        expect(tx.flush()).toBe(3);
        // Nothing staged with a word: the next batch goes without one (the socket's own TOS, 0).
        expect(tx.send(Uint8Array.of(4, 0, 0, 0), to, rx.port)).toBe(true);
        await waitFor(() => got.length >= 4, { timeoutMs: 2000, intervalMs: 10 });
        expect(got).toEqual([[1, RECV_TOS_VALID | 0xb9], [2, RECV_TOS_VALID], [3, RECV_TOS_VALID | 0x2b], [4, RECV_TOS_VALID]]);
      } finally {
        tx.close();
        rx.close();
      }
    });
  }
});
