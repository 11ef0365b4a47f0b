// Data-plane workers in one process: two DataPlanes wired back to back (A's
// ESP output is B's input), Child SAs installed as mirror images, traffic
// through the SPD and the workers, counters, the single-writer hook.
import { afterEach, describe, expect, it } from 'vitest';
import { DataPlane, type DataPlaneOptions } from '../dataplane/dataplane.js';
import type { SaSpec, Endpoint } from '../dataplane/sad.js';
import { writeUdp4 } from '../dataplane/packet.js';
import { waitFor } from './support/proc.js';
import { cidr4 } from './support/selectors.js';
import { EP_A, EP_B, NET_A, mirroredSpecs, planesBackToBack, stopPlanes, trackPlane } from './support/dataplane-pair.js';

afterEach(stopPlanes);

/** Wait (bounded) until `cond` holds. */
const until = (cond: () => boolean | Promise<boolean>) => waitFor(cond, { timeoutMs: 5000, intervalMs: 5 });

/** Two data planes whose ESP output is delivered to each other (queued: a microtask hop, like a socket). */
const pairOfPlanes = (opts: Partial<DataPlaneOptions> = {}) => planesBackToBack(opts);

/** Matching SaSpecs for A and B (A's out = B's in), AES-GCM-128 unless told otherwise. */
const mirrored = (id: number, extra: Partial<SaSpec> = {}, keyBytes = 20) => mirroredSpecs(id, { both: extra, keyBytes });

function udpPacket(srcHost: number, dstHost: number, srcPort: number, size = 200, id = 0, src = [10, 1, 0], dst = [10, 2, 0]): Uint8Array {
  const p = new Uint8Array(size);
  writeUdp4(p, 0, size, Uint8Array.from([...src, srcHost]), Uint8Array.from([...dst, dstHost]), srcPort, 9, id, srcPort & 0xff);
  return p;
}


describe('data plane workers', () => {
  it('carries packets both ways through the SPD, the owner workers and UDP-encapsulated ESP, intact and in order per flow', async () => {
    const { a, b } = await pairOfPlanes();
    const received: Uint8Array[] = [];
    b.setInnerSink({ write: (p) => (received.push(p.slice()), true) });
    const back: Uint8Array[] = [];
    a.setInnerSink({ write: (p) => (back.push(p.slice()), true) });
    const s = mirrored(1);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    // Keys were moved: the caller's copies are zero.
    expect(s.a.keyIn.every((x) => x === 0) && s.a.keyOut.every((x) => x === 0)).toBe(true);
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) {
      const p = udpPacket(1 + (i % 3), 7, 1000 + (i % 5), 60 + (i % 1200), i);
      sent.push(p);
      expect(a.sendInner(p)).toBe(true);
    }
    await until(() => received.length === 300);
    // One flow = one SA = one worker: order within each flow is kept.
    const key = (p: Uint8Array) => `${p[15]}:${(p[20]! << 8) | p[21]!}`;
    const byFlow = (list: Uint8Array[]) => {
      const m = new Map<string, string[]>();
      for (const p of list) m.set(key(p), [...(m.get(key(p)) ?? []), Buffer.from(p).toString('hex')]);
      return m;
    };
    expect(byFlow(received)).toEqual(byFlow(sent));
    b.sendInner(udpPacket(7, 1, 2000, 100, 1, [10, 2, 0], [10, 1, 0]));
    await until(() => back.length === 1);
    expect(back[0]![19]).toBe(1);
    const st = b.status();
    expect(st.workers.reduce((n, w) => n + w.decapPackets, 0)).toBe(300);
    expect(st.io.dropUnknownSpi).toBe(0);
  });

  it('spreads the flows of a clone family over every worker; each SA has exactly one writer thread', async () => {
    const { a, b } = await pairOfPlanes();
    let delivered = 0;
    b.setInnerSink({ write: () => (delivered++, true) });
    for (const id of [11, 12]) {
      const s = mirrored(id);
      await Promise.all([a.install(s.a), b.install(s.b)]);
    }
    // Two SAs with the same selectors: one family, one SA per worker on each side.
    expect(a.status().families).toEqual([2]);
    expect(new Set([a.ownerOf(11), a.ownerOf(12)])).toEqual(new Set([0, 1]));
    for (let i = 0; i < 400; i++) a.sendInner(udpPacket(1 + (i % 50), 9, 3000 + (i % 40), 100, i));
    await until(() => delivered === 400);
    const ca = await a.counters();
    const cb = await b.counters();
    for (const c of [ca, cb]) {
      // Every worker carried traffic.
      for (const w of c.workers) expect(w.encapPackets + w.decapPackets).toBeGreaterThan(0);
      // The debug hook: the SA ids each worker processed are disjoint, and each is the owner's.
      const [w0, w1] = c.seqWriters;
      expect(w0!.filter((id) => w1!.includes(id))).toEqual([]);
      for (const [index, ids] of c.seqWriters.entries()) for (const id of ids) expect(c.sa.find((s) => s.id === id)!.worker).toBe(index);
    }
    // Per-SA counters add up on both ends: A's outbound packets = B's inbound ones.
    const outA = ca.sa.reduce((n, s) => n + Number(s.out.packetsOut), 0);
    const inB = cb.sa.reduce((n, s) => n + Number(s.in.packetsIn), 0);
    expect(outA).toBe(400);
    expect(inB).toBe(400);
    for (const s of ca.sa) expect(Number(s.out.packetsOut)).toBeGreaterThan(50);
  });

  it('AES-CBC-256 + HMAC-SHA-512-256 (ICV 32): every size up to the longest that fits a cell with the largest ESP overhead crosses intact', async () => {
    const { a, b } = await pairOfPlanes();
    const received: Uint8Array[] = [];
    b.setInnerSink({ write: (p) => (received.push(p.slice()), true) });
    // AES key 32 || HMAC key 64 (RFC 4868 §2.1.1).
    const s = mirrored(31, { algorithm: 'aes-cbc-256-hmac-sha2-512-256', icvLength: 32 }, 96);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    // Cells of 2048 bytes carry 2040: header 8 + IV 16, padding up to 15, trailer 2 and ICV 32 leave 1967.
    const sizes = [28, 29, 30, 31, 32, 33, 100, 1400, 1951, 1952, 1953, 1966, 1967];
    const sent = sizes.map((n, i) => udpPacket(1, 1, 1000, n, i));
    for (const p of sent) expect(a.sendInner(p), `size ${p.length}`).toBe(true);
    expect(a.sendInner(udpPacket(1, 1, 1000, 1968))).toBe(false);
    await until(() => received.length === sent.length);
    expect(received.map((p) => Buffer.from(p).toString('hex'))).toEqual(sent.map((p) => Buffer.from(p).toString('hex')));
    const cb = await b.counters();
    expect(Number(cb.sa[0]!.in.packetsIn)).toBe(sent.length);
    expect(cb.sa[0]!.in.dropsAuth + cb.sa[0]!.in.dropsBadPadding + cb.sa[0]!.in.dropsMalformed).toBe(0n);
    expect(a.status().io.dropMalformed).toBe(1);
  });

  it('counts unknown SPIs, runts, packets no policy covers, and packets too long to encapsulate', async () => {
    const { a, b } = await pairOfPlanes();
    b.setInnerSink({ write: () => true });
    const s = mirrored(21);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    b.receiveEsp(Uint8Array.from([0, 0, 0x99, 0x99, 0, 0, 0, 1, 1, 2, 3]));
    b.receiveEsp(Uint8Array.from([1, 2, 3]));
    expect(a.sendInner(udpPacket(1, 1, 1, 100, 0, [10, 9, 0], [10, 2, 0]))).toBe(false);
    expect(a.sendInner(Uint8Array.from([0x45, 0, 0]))).toBe(false);
    // Its ESP would not fit a ring cell (2048 bytes with the default MTU): refused before it is queued.
    expect(a.sendInner(udpPacket(1, 1, 1, 2030))).toBe(false);
    const io = { a: a.status().io, b: b.status().io };
    expect(io.b.dropUnknownSpi).toBe(1);
    expect(io.b.dropMalformed).toBe(1);
    expect(io.a.dropNoPolicy).toBe(1);
    expect(io.a.dropMalformed).toBe(2);
  });

  it('drops a decapsulated packet outside its SA selectors (RFC 4301 §5.2) and counts it', async () => {
    const { a, b } = await pairOfPlanes();
    let delivered = 0;
    b.setInnerSink({ write: () => (delivered++, true) });
    const s = mirrored(41);
    // A believes it may send from 10.9.0.0/16 as well; B agreed to 10.1.0.0/24 only.
    s.a.localTs = [NET_A, cidr4([10, 9, 0, 0], 16)];
    await Promise.all([a.install(s.a), b.install(s.b)]);
    a.sendInner(udpPacket(1, 1, 1000, 100, 1, [10, 9, 0]));
    a.sendInner(udpPacket(1, 1, 1000, 100, 2));
    await until(() => b.status().io.dropPolicy === 1 && delivered === 1);
    // The packet was authentic (decapsulated), only the policy refused it.
    expect(b.status().workers.reduce((n, w) => n + w.decapPackets, 0)).toBe(2);
  });

  it('reports rekey-needed once at the soft sequence limit and sends nothing past the hard limit (RFC 4303 §3.3.3)', async () => {
    const { a, b } = await pairOfPlanes();
    let delivered = 0;
    b.setInnerSink({ write: () => (delivered++, true) });
    const s = mirrored(51, { seqSoftLimit: 10n, seqHardLimit: 20n });
    await Promise.all([a.install(s.a), b.install(s.b)]);
    const rekeys: number[] = [];
    a.on('rekey-needed', (id) => rekeys.push(id));
    for (let i = 0; i < 30; i++) a.sendInner(udpPacket(1, 1, 1000, 100, i));
    await until(() => a.status().workers.reduce((n, w) => n + w.drops.seqExhausted, 0) === 10 && delivered === 20);
    await until(() => rekeys.length > 0);
    expect(rekeys).toEqual([51]);
    const c = await a.counters();
    expect(c.sa[0]!.out.rekeyNeeded).toBe(true);
    expect(c.sa[0]!.out.dropsSeqExhausted).toBe(10n);
  });

  it('a rekeyed successor takes over outbound traffic on the same worker; the old SA still receives until removed', async () => {
    const { a, b } = await pairOfPlanes();
    let delivered = 0;
    b.setInnerSink({ write: () => (delivered++, true) });
    const old = mirrored(61);
    await Promise.all([a.install(old.a), b.install(old.b)]);
    const next = mirrored(62, { replaces: [61] });
    await Promise.all([a.install(next.a), b.install(next.b)]);
    expect(a.ownerOf(62)).toBe(a.ownerOf(61));
    expect(a.status().families).toEqual([1]);
    for (let i = 0; i < 20; i++) a.sendInner(udpPacket(1 + i, 1, 1000 + i, 100, i));
    await until(() => delivered === 20);
    const c = await b.counters();
    expect(Number(c.sa.find((x) => x.id === 62)!.in.packetsIn)).toBe(20);
    expect(Number(c.sa.find((x) => x.id === 61)!.in.packetsIn)).toBe(0);
    // The peer may still send on the old SA until it is deleted: B's old outbound reaches A's old inbound.
    let back = 0;
    a.setInnerSink({ write: () => (back++, true) });
    b.sendInner(udpPacket(1, 1, 1000, 100, 0, [10, 2, 0], [10, 1, 0]));
    await until(() => back === 1);
    await a.remove(61);
    expect(a.saIds()).toEqual([62]);
  });

  it('follows new outer addresses (MOBIKE, NAT rebinding) for the ESP it sends', async () => {
    const sent: Endpoint[] = [];
    const a = new DataPlane({ workers: 1, sendUdp: (_l, r) => sent.push(r) });
    trackPlane(a);
    await a.start();
    const s = mirrored(71);
    await a.install(s.a);
    a.sendInner(udpPacket(1, 1, 1));
    await until(() => sent.length === 1);
    a.updateAddresses(71, EP_A, { address: '198.51.100.9', port: 61000 });
    a.sendInner(udpPacket(1, 1, 1));
    await until(() => sent.length === 2);
    expect(sent).toEqual([EP_B, { address: '198.51.100.9', port: 61000 }]);
  });

  it('refuses bad SaSpecs with an error and keeps running', async () => {
    const a = new DataPlane({ workers: 1, sendUdp: () => {} });
    trackPlane(a);
    await a.start();
    const s = mirrored(81);
    await expect(a.install({ ...s.a, spiIn: 5 })).rejects.toThrow(/SPI/);
    await expect(a.install({ ...mirrored(82).a, keyOut: new Uint8Array(7) })).rejects.toThrow(/key material/);
    await a.install(mirrored(83).a);
    await expect(a.install(mirrored(83).a)).rejects.toThrow(/already installed/);
    expect(a.saIds()).toEqual([83]);
  });

  it('fails to start, and leaves no worker behind, when the TUN device cannot be opened', async () => {
    const a = new DataPlane({ workers: 1, sendUdp: () => {}, tun: { name: 'not a name!' } });
    trackPlane(a);
    await expect(a.start()).rejects.toThrow(/TUN: name/);
    expect(a.started).toBe(false);
    expect(a.status().workers).toEqual([]);
  });

  it('removes an SA: its SPI becomes unknown, its slots are wiped and reusable', async () => {
    const { a, b } = await pairOfPlanes();
    b.setInnerSink({ write: () => true });
    const s = mirrored(31);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    await b.remove(31);
    a.sendInner(udpPacket(1, 1, 1));
    await until(() => b.status().io.dropUnknownSpi === 1);
    expect(b.saIds()).toEqual([]);
    const t = mirrored(32);
    await Promise.all([a.install(t.a), b.install(t.b)]);
    expect(b.saIds()).toEqual([32]);
  });
});
