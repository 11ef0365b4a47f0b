// The native I/O addon (native/io): batched UDP and raw sockets, and TUN
// batch writes that coalesce TCP segments (GRO). The coalescer is checked on
// a regular file, where tunWriteBatch's records (virtio_net_hdr + packet) can
// be read back and decoded; the TUN devices themselves are exercised by the
// network-namespace tunnel tests.
import { afterEach, describe, expect } from 'vitest';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { loadNativeIo, nativeIoPath, TUN_READ_AREA } from '../io/native-io.js';
import { RawEspSocket } from '../io/rawesp.js';
import { UdpTransport } from '../control/net/udp-transport.js';
import { silentLogger } from '../control/log.js';
import type { Datagram } from '../control/ike/transport.js';
import { interopTest } from './support/prereq.js';
import { run, waitFor } from './support/proc.js';
import { createNamespace, deleteNamespace, execChecked } from './support/netns.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const LOOPBACK = destination(Uint8Array.of(127, 0, 0, 1));

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

/** The addon's UDP socket on loopback (fd, for udpSend) and a dgram socket receiving what it sends (got). */
async function udpSendPair() {
  const api = loadNativeIo();
  const rx = createSocket('udp4');
  const { fd } = api.udpOpen('127.0.0.1', 0, 1 << 20);
  cleanups.push(() => api.close(fd), () => rx.close());
  const got: Buffer[] = [];
  rx.on('message', (m) => got.push(m));
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', () => r()));
  return { api, fd, rx, got };
}

describe('BatchedSocket (recvmmsg/sendmmsg)', () => {
  interopTest('64 datagrams queued in one pass leave in one sendmmsg and all arrive, in order, with their source', ['native'], async () => {
    const a = BatchedSocket.openUdp('127.0.0.1', 0, 1 << 20);
    const b = BatchedSocket.openUdp('127.0.0.1', 0, 1 << 20);
    cleanups.push(() => a.close(), () => b.close());
    const got: Array<{ data: Uint8Array; from: string; port: number }> = [];
    b.start((data, family, address, port) => got.push({ data: data.slice(), from: `${family}:${address.join('.')}`, port }));
    const sent = Array.from({ length: 64 }, (_, i) => bytes(20 + i * 23, i));
    for (const d of sent) expect(a.queue(d, LOOPBACK, b.port)).toBe(true);
    expect(a.pending).toBe(64);
    expect(a.flush()).toBe(64);
    expect(a.stats).toMatchObject({ batchesOut: 1, datagramsOut: 64, sendErrors: 0 });
    await waitFor(() => got.length === 64, { timeoutMs: 5000, intervalMs: 5 });
    expect(got.map((g) => g.data)).toEqual(sent);
    expect(got.every((g) => g.from === '4:127.0.0.1' && g.port === a.port)).toBe(true);
    expect(b.stats.batchesIn).toBeLessThan(64);
  });

  interopTest('a datagram the kernel refuses is counted and the rest of the batch is still sent', ['native'], async () => {
    const a = BatchedSocket.openUdp('127.0.0.1', 0, 1 << 20);
    const peer = createSocket('udp4');
    cleanups.push(() => a.close(), () => peer.close());
    const got: Buffer[] = [];
    peer.on('message', (m) => got.push(m));
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    const port = peer.address().port;
    a.queue(Uint8Array.of(1), LOOPBACK, port);
    a.queue(Uint8Array.of(2), destination(new Uint8Array(16).fill(0).fill(1, 15)), port); // ::1 from an IPv4 socket
    a.queue(Uint8Array.of(3), LOOPBACK, port);
    expect(a.flush()).toBe(2);
    expect(a.stats.sendErrors).toBe(1);
    await waitFor(() => got.length === 2, { timeoutMs: 5000, intervalMs: 5 });
    expect(got.map((m) => m[0])).toEqual([1, 3]);
  });

  interopTest('ESP runs of one SPI, destination, outer word and length leave as UDP_SEGMENT messages and arrive as the same datagrams', ['native'], async () => {
    const { api, fd, rx, got } = await udpSendPair();
    // A run of 20 and a shorter last; another SPI; an IKE message (non-ESP marker); the first SPI again at another
    // length; one datagram with another outer word (TOS) in the middle of a run of that SPI.
    const plan: Array<{ spi: number; length: number; outer: number }> = [
      ...Array.from({ length: 20 }, () => ({ spi: 0x11223344, length: 1000, outer: 0 })),
      { spi: 0x11223344, length: 500, outer: 0 },
      ...Array.from({ length: 5 }, () => ({ spi: 0x55667788, length: 1000, outer: 0 })),
      { spi: 0, length: 80, outer: 0 },
      ...Array.from({ length: 3 }, () => ({ spi: 0x11223344, length: 700, outer: 0 })),
      { spi: 0x11223344, length: 700, outer: 0x100 | 0x28 },
      ...Array.from({ length: 2 }, () => ({ spi: 0x11223344, length: 700, outer: 0 })),
    ];
    const data = new Uint8Array(plan.reduce((a, p) => a + p.length, 0));
    const desc = new Int32Array(8 * plan.length);
    const outer = new Int32Array(plan.length);
    const sent: Uint8Array[] = [];
    let at = 0;
    plan.forEach((p, i) => {
      const d = bytes(p.length, i);
      new DataView(d.buffer).setUint32(0, p.spi);
      data.set(d, at);
      sent.push(d);
      desc.set([at, p.length, (4 << 16) | rx.address().port, ...LOOPBACK.words], i * 8);
      outer[i] = p.outer;
      at += p.length;
    });
    const before = api.udpGsoStats();
    expect(api.udpSend(fd, data, desc, plan.length, outer)).toBe(plan.length);
    await waitFor(() => got.length === plan.length, { timeoutMs: 5000, intervalMs: 5 });
    expect(got.map((g) => new Uint8Array(g))).toEqual(sent);
    const [runs, inRuns, fallbacks] = api.udpGsoStats().map((v, i) => v - before[i]!);
    // 21 (20 and the shorter last), 5, 3, then the TOS datagram alone and a run of 2; the IKE message alone.
    expect({ runs, inRuns, fallbacks }).toEqual({ runs: 4, inRuns: 31, fallbacks: 0 });
  });

  interopTest('a datagram shorter than an ESP header ends a run and leaves alone; its SPI is not read past its end', ['native'], async () => {
    const { api, fd, rx, got } = await udpSendPair();
    // Three ESP datagrams of 100 bytes, then 2 bytes that begin as their SPI does, last in the data; the bytes
    // after the data (the rest of its buffer) continue that SPI, so a read past the 2 bytes would take them in.
    const buffer = new Uint8Array(400);
    const data = buffer.subarray(0, 302);
    for (let i = 0; i < 4; i++) new DataView(buffer.buffer).setUint32(i * 100, 0x11223344);
    const lengths = [100, 100, 100, 2];
    const desc = new Int32Array(8 * lengths.length);
    lengths.forEach((l, i) => desc.set([i * 100, l, (4 << 16) | rx.address().port, ...LOOPBACK.words], i * 8));
    const before = api.udpGsoStats();
    expect(api.udpSend(fd, data, desc, lengths.length)).toBe(4);
    await waitFor(() => got.length === 4, { timeoutMs: 5000, intervalMs: 5 });
    expect(got.map((g) => g.length)).toEqual(lengths);
    expect(api.udpGsoStats().map((v, i) => v - before[i]!)).toEqual([1, 3, 0]);
  });

  interopTest('a run over the path MTU is refused whole and sent datagram by datagram, fragmented, none lost; the socket is not offered such runs again', ['root', 'native'], async () => {
    const ns = await createNamespace('gso');
    try {
      await execChecked(ns, 'ip', ['link', 'set', 'lo', 'mtu', '1280', 'up']);
      // The addon in a process of the namespace: twice 10 ESP datagrams of 1400 bytes over loopback at MTU 1280.
      const script = `
        const api = require(${JSON.stringify(nativeIoPath())});
        const dgram = require('node:dgram');
        const rx = dgram.createSocket('udp4');
        const got = [];
        rx.on('message', (m) => got.push(m.length));
        rx.bind(0, '127.0.0.1', () => {
          const { fd } = api.udpOpen('127.0.0.1', 0, 1 << 20);
          const data = new Uint8Array(14000).fill(7);
          const desc = new Int32Array(80);
          for (let i = 0; i < 10; i++) {
            new DataView(data.buffer).setUint32(i * 1400, 0x11223344);
            desc.set([i * 1400, 1400, (4 << 16) | rx.address().port, 0x0100007f, 0, 0, 0], i * 8);
          }
          const sent = api.udpSend(fd, data, desc, 10) + api.udpSend(fd, data, desc, 10);
          setTimeout(() => { console.log(JSON.stringify({ sent, got, stats: api.udpGsoStats(), errors: [...desc].filter((_, k) => k % 8 === 7) })); process.exit(0); }, 300);
        });`;
      const r = await execChecked(ns, process.execPath, ['-e', script]);
      const out = JSON.parse(r.stdout) as { sent: number; got: number[]; stats: number[]; errors: number[] };
      expect(out).toEqual({ sent: 20, got: Array(20).fill(1400), stats: [0, 0, 1], errors: Array(10).fill(0) });
    } finally {
      await deleteNamespace(ns);
    }
  });

  interopTest('binding a port in use fails with EADDRINUSE', ['native'], () => {
    const a = BatchedSocket.openUdp('127.0.0.1', 0, 0);
    cleanups.push(() => a.close());
    expect(() => BatchedSocket.openUdp('127.0.0.1', a.port, 0)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
  });
});

describe('UdpTransport over both socket kinds', () => {
  for (const native of [true, false]) {
    interopTest(`${native ? 'batched native' : 'dgram'} sockets: IKE behind the non-ESP marker, ESP, keepalives, queued ESP flushed together`, ['native'], async () => {
      const ike: Datagram[] = [];
      const esp: Array<{ bytes: Uint8Array; remote: string }> = [];
      // Fixed ports on two loopback addresses keep the two transports apart.
      const base = 20000 + (process.pid % 20000);
      const t1 = new UdpTransport({ addresses: ['127.0.0.1'], port: base, natPort: base + 1, log: silentLogger, onIke: (d) => ike.push(d), native });
      const t2 = new UdpTransport({
        addresses: ['127.0.0.2'], port: base, natPort: base + 1, log: silentLogger, onIke: (d) => ike.push(d), native,
        onEsp: (p, _l, r) => esp.push({ bytes: p.slice(), remote: `${r.address}:${r.port}` }),
      });
      await t1.start();
      await t2.start();
      cleanups.push(() => t1.close(), () => t2.close());
      expect(t1.kind).toBe(native ? 'native' : 'dgram');
      const from = { address: '127.0.0.1', port: base + 1 };
      const to = { address: '127.0.0.2', port: base + 1 };
      t1.sendIke({ bytes: bytes(300, 1), local: from, remote: to });
      t1.sendRaw(from, to, Uint8Array.of(0xff)); // NAT keepalive (RFC 3948 §2.3)
      const reused = new Uint8Array(100);
      for (let i = 0; i < 10; i++) {
        reused.fill(i + 1);
        reused[0] = 0x10; // non-zero SPI: ESP
        t1.sockets.queueEsp(from, to, reused);
      }
      t1.sockets.flushEsp();
      await waitFor(() => ike.length === 1 && esp.length === 10 && t2.stats.keepalivesIn === 1, { timeoutMs: 5000, intervalMs: 5 });
      expect(ike[0]!.bytes).toEqual(bytes(300, 1)); // the marker is stripped
      expect(ike[0]!.remote).toEqual(from);
      expect(ike[0]!.local).toEqual(to);
      // Every queued datagram kept its own bytes although the caller reused its buffer.
      expect(esp.map((e) => e.bytes[1])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(esp.every((e) => e.remote === '127.0.0.1:' + (base + 1))).toBe(true);
      expect(t1.stats.espOut).toBe(10);
      expect(t2.stats.espIn).toBe(10);
    });
  }
});

describe('raw ESP sockets (IP protocol 50)', () => {
  interopTest('the batched backend and the raw-socket backend exchange ESP over loopback', ['root', 'native'], async () => {
    const seen: Record<string, Array<{ esp: Uint8Array; source: string; destination: string }>> = { batched: [], 'raw-socket': [] };
    const a = RawEspSocket.open((esp, source, dst) => seen.batched!.push({ esp: Uint8Array.from(esp), source, destination: dst }));
    const b = RawEspSocket.open((esp, source, dst) => seen['raw-socket']!.push({ esp: Uint8Array.from(esp), source, destination: dst }), undefined, { batched: false });
    cleanups.push(() => a.close(), () => b.close());
    expect([a.stats.backend, b.stats.backend]).toEqual(['batched', 'raw-socket']);
    // Unusual SPIs, so ESP from anything else on this host is told apart.
    const fromA = Uint8Array.of(0xfe, 0xed, 0x00, 0x01, 0, 0, 0, 1, ...bytes(64, 3));
    const fromB = Uint8Array.of(0xfe, 0xed, 0x00, 0x02, 0, 0, 0, 1, ...bytes(64, 4));
    a.send(fromA, '127.0.0.1');
    a.flush();
    b.send(fromB, '127.0.0.1');
    const ours = (list: typeof seen.batched, spi: number) => list!.filter((p) => p.esp[0] === 0xfe && p.esp[1] === 0xed && p.esp[3] === spi);
    await waitFor(() => ['batched', 'raw-socket'].every((k) => ours(seen[k], 1).length === 1 && ours(seen[k], 2).length === 1), { timeoutMs: 5000, intervalMs: 5 });
    for (const k of ['batched', 'raw-socket']) {
      expect(ours(seen[k], 1)[0]).toEqual({ esp: fromA, source: '127.0.0.1', destination: '127.0.0.1' });
      expect(ours(seen[k], 2)[0]).toEqual({ esp: fromB, source: '127.0.0.1', destination: '127.0.0.1' });
    }
    expect(a.stats.packetsOut).toBe(1);
    await waitFor(() => b.stats.packetsOut === 1, { timeoutMs: 5000, intervalMs: 5 });
  });

  interopTest('ESP over IPv6 loopback: the IPv6 raw socket hands over the payload with its source and, from IPV6_PKTINFO, its destination', ['root', 'native'], async () => {
    const seen: Array<{ esp: Uint8Array; source: string; destination: string }> = [];
    const a = RawEspSocket.open((esp, source, dst) => seen.push({ esp: Uint8Array.from(esp), source, destination: dst }));
    cleanups.push(() => a.close());
    expect(a.stats.ipv6).toBe(true);
    expect(a.carries('::1')).toBe(true);
    expect(a.carries('127.0.0.1')).toBe(true);
    expect(a.carries('not an address')).toBe(false);
    // Distinct descriptors per family, for the workers' direct output.
    expect(a.fdFor(6)).toBeGreaterThan(0);
    expect(a.fdFor(6)).not.toBe(a.fdFor(4));
    const esp = Uint8Array.of(0xfe, 0xed, 0x00, 0x06, 0, 0, 0, 1, ...bytes(64, 6));
    a.send(esp, '::1');
    a.flush();
    const ours = () => seen.filter((p) => p.esp[0] === 0xfe && p.esp[1] === 0xed && p.esp[3] === 6);
    await waitFor(() => ours().length === 1, { timeoutMs: 5000, intervalMs: 5 });
    expect(ours()[0]).toEqual({ esp, source: '::1', destination: '::1' });
    expect(a.stats.packetsOut).toBe(1);
    // Shorter than SPI + sequence number: counted, never handed on.
    const before = a.stats.malformed;
    a.send(Uint8Array.of(0xfe, 0xed, 0x00, 0x06), '::1');
    a.flush();
    await waitFor(() => a.stats.malformed === before + 1, { timeoutMs: 5000, intervalMs: 5 });
    a.close();
    expect(a.fdFor(6)).toBeUndefined();
    expect(a.carries('::1')).toBe(false);
  });
});

// ------------------------------------------------------------ TUN coalescing

const VNET_HDR = 10;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const NEEDS_CSUM = 1;

function csum(data: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < data.length; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (data.length & 1) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function pseudo(src: Uint8Array, dst: Uint8Array, tcpLength: number): number {
  return csum(Uint8Array.of(...src, ...dst, 0, 6, tcpLength >> 8, tcpLength & 0xff));
}

interface Seg {
  v6?: boolean;
  src?: number;
  seq: number;
  payload: number;
  flags?: number;
  badChecksum?: boolean;
  udp?: boolean;
}

/** An IPv4 (or IPv6) TCP segment with valid checksums (unless told otherwise). */
function segment(s: Seg): Uint8Array {
  const v6 = s.v6 ?? false;
  const iph = v6 ? 40 : 20;
  const payload = bytes(s.payload, s.seq & 0xff);
  const pkt = new Uint8Array(iph + 20 + s.payload);
  const src = v6 ? Uint8Array.of(0xfd, 0, ...new Array(13).fill(0), s.src ?? 1) : Uint8Array.of(10, 0, 0, s.src ?? 1);
  const dst = v6 ? Uint8Array.of(0xfd, 0, ...new Array(13).fill(0), 9) : Uint8Array.of(10, 0, 0, 9);
  const dv = new DataView(pkt.buffer);
  if (v6) {
    pkt[0] = 0x60;
    dv.setUint16(4, 20 + s.payload);
    pkt[6] = s.udp ? 17 : 6;
    pkt[7] = 64;
    pkt.set(src, 8);
    pkt.set(dst, 24);
  } else {
    pkt[0] = 0x45;
    dv.setUint16(2, pkt.length);
    dv.setUint16(4, s.seq & 0xffff); // IP ID
    pkt[6] = 0x40; // DF
    pkt[8] = 64;
    pkt[9] = s.udp ? 17 : 6;
    pkt.set(src, 12);
    pkt.set(dst, 16);
    dv.setUint16(10, ~csum(pkt.subarray(0, 20)) & 0xffff);
  }
  const t = pkt.subarray(iph);
  const tv = new DataView(t.buffer, t.byteOffset);
  tv.setUint16(0, 40000 + (s.src ?? 1));
  tv.setUint16(2, 5201);
  tv.setUint32(4, s.seq >>> 0);
  tv.setUint32(8, 777);
  t[12] = 5 << 4;
  t[13] = s.flags ?? 0x10;
  tv.setUint16(14, 512);
  t.set(payload, 20);
  tv.setUint16(16, ~csum(t, pseudo(src, dst, t.length)) & 0xffff);
  if (s.badChecksum) t[16]! ^= 0x01;
  return pkt;
}

/** `pkt` (IPv4) with four NOP options in its header: IHL 6, lengths and header checksum redone. */
function withIpv4Options(pkt: Uint8Array): Uint8Array {
  const out = new Uint8Array(pkt.length + 4);
  out.set(pkt.subarray(0, 20));
  out.set([1, 1, 1, 1], 20);
  out.set(pkt.subarray(20), 24);
  out[0] = 0x46;
  const dv = new DataView(out.buffer);
  dv.setUint16(2, out.length);
  dv.setUint16(10, 0);
  dv.setUint16(10, ~csum(out.subarray(0, 24)) & 0xffff);
  return out;
}

/** `pkt` (IPv6) with an empty Destination Options header (RFC 8200 §4.6) before its TCP header. */
function withDestinationOptions(pkt: Uint8Array): Uint8Array {
  const out = new Uint8Array(pkt.length + 8);
  out.set(pkt.subarray(0, 40));
  out.set([6, 0, 1, 4, 0, 0, 0, 0], 40); // Next Header TCP, length 0, PadN of 4
  out.set(pkt.subarray(40), 48);
  out[6] = 60;
  new DataView(out.buffer).setUint16(4, out.length - 40);
  return out;
}

interface Record {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
  packet: Uint8Array;
}

/** Records written by tunWriteBatch to a file: virtio_net_hdr (host order) + packet. */
function records(file: Uint8Array): Record[] {
  const out: Record[] = [];
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  for (let at = 0; at < file.length; ) {
    const p = at + VNET_HDR;
    const v6 = file[p]! >> 4 === 6;
    const length = v6 ? dv.getUint16(p + 4) + 40 : dv.getUint16(p + 2);
    out.push({
      flags: file[at]!, gsoType: file[at + 1]!, hdrLen: dv.getUint16(at + 2, true), gsoSize: dv.getUint16(at + 4, true),
      csumStart: dv.getUint16(at + 6, true), csumOffset: dv.getUint16(at + 8, true), packet: file.slice(p, p + length),
    });
    at = p + length;
  }
  return out;
}

/** Write `segs` as one batch to a file; returns the records, the statuses and the write calls. */
function writeBatch(segs: Uint8Array[]): { recs: Record[]; status: number[]; calls: number; file: Uint8Array } {
  const api = loadNativeIo();
  const dir = mkdtempSync(join(tmpdir(), 'ikc-gro-'));
  const path = join(dir, 'out');
  const fd = openSync(path, 'w+');
  try {
    const data = new Uint8Array(segs.reduce((n, s) => n + s.length, 0));
    const desc = new Int32Array(segs.length * 3);
    let at = 0;
    segs.forEach((s, i) => {
      data.set(s, at);
      desc[i * 3] = at;
      desc[i * 3 + 1] = s.length;
      at += s.length;
    });
    const calls = api.tunWriteBatch(fd, data, desc, segs.length);
    const status = segs.map((_, i) => desc[i * 3 + 2]!);
    const file = new Uint8Array(readFileSync(path));
    // Records are decoded only when every packet is a whole IP packet (the malformed case reads the raw file).
    const whole = segs.every((x) => x.length >= 40 && (x[0]! >> 4 === 4 || x[0]! >> 4 === 6));
    return { recs: whole ? records(file) : [], status, calls, file };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The TCP payload of a packet. */
function tcpPayload(p: Uint8Array): Uint8Array {
  const iph = p[0]! >> 4 === 6 ? 40 : 20;
  return p.subarray(iph + (p[iph + 12]! >> 4) * 4);
}

function expectCoalesced(r: Record, parts: Uint8Array[], v6 = false): void {
  const iph = v6 ? 40 : 20;
  expect(r).toMatchObject({ flags: NEEDS_CSUM, gsoType: v6 ? GSO_TCPV6 : GSO_TCPV4, hdrLen: iph + 20, gsoSize: tcpPayload(parts[0]!).length, csumStart: iph, csumOffset: 16 });
  const p = r.packet;
  expect(tcpPayload(p)).toEqual(Uint8Array.from(parts.flatMap((s) => [...tcpPayload(s)])));
  if (!v6) expect(csum(p.subarray(0, 20))).toBe(0xffff); // the IPv4 header checksum was redone
  // CHECKSUM_PARTIAL: the TCP checksum field holds the folded pseudo-header sum over the whole segment.
  const src = v6 ? p.subarray(8, 24) : p.subarray(12, 16);
  const dst = v6 ? p.subarray(24, 40) : p.subarray(16, 20);
  expect((p[iph + 16]! << 8) | p[iph + 17]!).toBe(pseudo(src, dst, p.length - iph));
  // The header is the first segment's, but for lengths, checksums and the last segment's PSH.
  expect(p.subarray(iph + 4, iph + 8)).toEqual(parts[0]!.subarray(iph + 4, iph + 8));
  expect(p[iph + 13]).toBe(parts[parts.length - 1]![iph + 13]);
}

describe('TUN batch writes coalesce TCP segments (native/io/gro.c)', () => {
  interopTest('consecutive segments of one flow become one GSO TCPv4 packet; its headers are rebuilt', ['native'], () => {
    const segs = Array.from({ length: 10 }, (_, i) => segment({ seq: 1000 + i * 1000, payload: 1000 }));
    const { recs, status, calls } = writeBatch(segs);
    expect(calls).toBe(1);
    expect(status).toEqual(new Array(10).fill(1));
    expect(recs).toHaveLength(1);
    expectCoalesced(recs[0]!, segs);
    expect(recs[0]!.packet.length).toBe(20 + 20 + 10_000);
  });

  interopTest('two interleaved flows: one packet each, in the order of their first segments; IPv6 too', ['native'], () => {
    const a = [0, 1, 2].map((i) => segment({ src: 1, seq: i * 500, payload: 500 }));
    const b = [0, 1, 2].map((i) => segment({ v6: true, src: 2, seq: 9000 + i * 700, payload: 700 }));
    const { recs, status } = writeBatch([a[0]!, b[0]!, a[1]!, b[1]!, a[2]!, b[2]!]);
    expect(status).toEqual([1, 1, 1, 1, 1, 1]);
    expect(recs).toHaveLength(2);
    expectCoalesced(recs[0]!, a);
    expectCoalesced(recs[1]!, b, true);
  });

  interopTest('a segment with a bad checksum is written alone, as it came, and the flow is not reordered around it', ['native'], () => {
    const segs = [0, 1, 2, 3].map((i) => segment({ seq: i * 800, payload: 800, badChecksum: i === 2 }));
    const { recs, status, calls } = writeBatch(segs);
    expect(calls).toBe(3);
    expect(status).toEqual([1, 1, 0, 0]);
    expectCoalesced(recs[0]!, segs.slice(0, 2));
    expect(recs[1]).toMatchObject({ flags: 0, gsoType: GSO_NONE, packet: segs[2] });
    expect(recs[2]).toMatchObject({ flags: 0, gsoType: GSO_NONE, packet: segs[3] });
  });

  interopTest('a gap, PSH, a shorter segment, FIN and non-TCP packets end a run', ['native'], () => {
    const segs = [
      segment({ seq: 0, payload: 600 }),
      segment({ seq: 600, payload: 600, flags: 0x18 }), // PSH: the run ends with it
      segment({ seq: 1200, payload: 600 }),
      segment({ seq: 1800, payload: 300 }), // shorter: ends the run
      segment({ seq: 2100, payload: 600 }),
      segment({ seq: 5000, payload: 600 }), // a gap
      segment({ seq: 5600, payload: 600, flags: 0x11 }), // FIN: never coalesced
      segment({ seq: 0, payload: 100, udp: true, src: 5 }),
    ];
    const { recs, status } = writeBatch(segs);
    expect(status).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
    expect(recs.map((r) => r.gsoType)).toEqual([GSO_TCPV4, GSO_TCPV4, GSO_NONE, GSO_NONE, GSO_NONE, GSO_NONE]);
    expectCoalesced(recs[0]!, segs.slice(0, 2));
    expectCoalesced(recs[1]!, segs.slice(2, 4));
    expect(recs.slice(2).map((r) => r.packet)).toEqual(segs.slice(4));
  });

  interopTest('a TCP packet whose header shape is not coalesced (IPv4 options, IPv6 extension headers) still orders its address pair', ['native'], () => {
    // The pure ACK between two contiguous segments may be of their flow: the
    // later segment must not join the earlier one and be written before it.
    const first = segment({ seq: 1000, payload: 500 });
    const ack = withIpv4Options(segment({ seq: 1000, payload: 0 }));
    const later = segment({ seq: 1500, payload: 500 });
    const v4 = writeBatch([first, ack, later]);
    expect(v4.status).toEqual([0, 0, 0]);
    expect(v4.recs.map((r) => r.gsoType)).toEqual([GSO_NONE, GSO_NONE, GSO_NONE]);
    expect(v4.recs.map((r) => r.packet)).toEqual([first, ack, later]);

    const first6 = segment({ v6: true, seq: 1000, payload: 500 });
    const ack6 = withDestinationOptions(segment({ v6: true, seq: 1000, payload: 0 }));
    const later6 = segment({ v6: true, seq: 1500, payload: 500 });
    const v6 = writeBatch([first6, ack6, later6]);
    expect(v6.recs.map((r) => r.packet)).toEqual([first6, ack6, later6]);

    // Another address pair's such packet does not stop a flow from coalescing.
    const other = withIpv4Options(segment({ src: 2, seq: 0, payload: 0 }));
    const mixed = writeBatch([first, other, later]);
    expect(mixed.status).toEqual([1, 0, 1]);
    expect(mixed.recs).toHaveLength(2);
    expectCoalesced(mixed.recs[0]!, [first, later]);
    expect(mixed.recs[1]!.packet).toEqual(other);
  });

  interopTest('malformed packets are written alone and never read past their bytes; a descriptor outside the data throws', ['native'], () => {
    const full = segment({ seq: 0, payload: 600 });
    const junk = [full.subarray(0, 30), Uint8Array.of(0x45), Uint8Array.of(0x4f, ...new Array(60).fill(0)), bytes(80, 9)];
    for (const j of junk) {
      const { status, file } = writeBatch([j, full]);
      expect(status).toEqual([0, 0]);
      expect(file.length).toBe(VNET_HDR + j.length + VNET_HDR + full.length);
      expect(file.subarray(0, VNET_HDR)).toEqual(new Uint8Array(VNET_HDR));
      expect(file.subarray(VNET_HDR, VNET_HDR + j.length)).toEqual(j);
      expect(file.subarray(file.length - full.length)).toEqual(full);
    }
    const api = loadNativeIo();
    expect(() => api.tunWriteBatch(-1, new Uint8Array(10), Int32Array.of(5, 10, 0), 1)).toThrow(RangeError);
  });
});

interface VnetHeader {
  flags?: number;
  gsoType: number;
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
}

const GSO_UDP_L4 = 5;

/**
 * Hand `packet` after `vh` to tunReadSegments, as a TUN device with TSO would:
 * a regular file holding the one record stands in for the device.
 */
function readSegments(vh: VnetHeader, packet: Uint8Array, descSegments = 256): { count: number; segments: Uint8Array[] } {
  const api = loadNativeIo();
  const dir = mkdtempSync(join(tmpdir(), 'ikc-tso-'));
  const path = join(dir, 'in');
  try {
    const rec = new Uint8Array(VNET_HDR + packet.length);
    const dv = new DataView(rec.buffer);
    rec[0] = vh.flags ?? 0;
    rec[1] = vh.gsoType;
    dv.setUint16(2, 0, true); // hdr_len: tso.c takes the header lengths from the packet
    dv.setUint16(4, vh.gsoSize ?? 0, true);
    dv.setUint16(6, vh.csumStart ?? 0, true);
    dv.setUint16(8, vh.csumOffset ?? 0, true);
    rec.set(packet, VNET_HDR);
    writeFileSync(path, rec);
    const fd = openSync(path, 'r');
    try {
      const buffer = new Uint8Array(TUN_READ_AREA + 100_000);
      const desc = new Int32Array(descSegments * 2);
      const count = api.tunReadSegments(fd, buffer, desc);
      const segments: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const at = desc[2 * i]!;
        const length = desc[2 * i + 1]!;
        expect(at).toBeGreaterThanOrEqual(0);
        expect(at + length).toBeLessThanOrEqual(buffer.length);
        segments.push(buffer.slice(at, at + length));
      }
      return { count, segments };
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether the packet's TCP checksum (and IPv4 header checksum) verify. */
function checksumsValid(p: Uint8Array): boolean {
  const v6 = p[0]! >> 4 === 6;
  const iph = v6 ? 40 : (p[0]! & 0x0f) * 4;
  if (!v6 && csum(p.subarray(0, iph)) !== 0xffff) return false;
  const src = v6 ? p.subarray(8, 24) : p.subarray(12, 16);
  const dst = v6 ? p.subarray(24, 40) : p.subarray(16, 20);
  return csum(p.subarray(iph), pseudo(src, dst, p.length - iph)) === 0xffff;
}

describe('TUN reads split GSO packets into segments (native/io/tso.c)', () => {
  const TCP_FIN = 0x01;
  const TCP_PSH = 0x08;
  const TCP_ACK = 0x10;
  const TCP_CWR = 0x80;

  interopTest('a 10,000-byte TCPv4 GSO packet becomes 8 segments of at most gso_size, as the kernel would send them', ['native'], () => {
    const gso = segment({ seq: 0xffff_f000, payload: 10_000, flags: TCP_CWR | TCP_ACK | TCP_PSH | TCP_FIN });
    const { count, segments } = readSegments({ flags: NEEDS_CSUM, gsoType: GSO_TCPV4, gsoSize: 1360, csumStart: 20, csumOffset: 16 }, gso);
    expect(count).toBe(8);
    expect(segments.map((s) => s.length)).toEqual([...new Array(7).fill(40 + 1360), 40 + 10_000 - 7 * 1360]);
    const id0 = (gso[4]! << 8) | gso[5]!;
    segments.forEach((s, i) => {
      const dv = new DataView(s.buffer, s.byteOffset);
      expect(dv.getUint16(2)).toBe(s.length); // IPv4 total length
      expect(dv.getUint16(4)).toBe((id0 + i) & 0xffff); // identification, one higher per segment
      expect(s.subarray(6, 10)).toEqual(gso.subarray(6, 10)); // DF, TTL, protocol
      expect(dv.getUint32(24)).toBe((0xffff_f000 + i * 1360) >>> 0); // sequence number, wrapping
      const last = i === count - 1;
      expect(s[33]).toBe(TCP_ACK | (i === 0 ? TCP_CWR : 0) | (last ? TCP_PSH | TCP_FIN : 0));
      expect(checksumsValid(s), `segment ${i}`).toBe(true);
    });
    expect(Uint8Array.from(segments.flatMap((s) => [...tcpPayload(s)]))).toEqual(tcpPayload(gso));
  });

  interopTest('a TCPv6 GSO packet: payload lengths and checksums per segment', ['native'], () => {
    const gso = segment({ v6: true, seq: 5, payload: 3000, flags: TCP_ACK | TCP_PSH });
    const { count, segments } = readSegments({ flags: NEEDS_CSUM, gsoType: GSO_TCPV6, gsoSize: 1200, csumStart: 40, csumOffset: 16 }, gso);
    expect(count).toBe(3);
    segments.forEach((s, i) => {
      expect(new DataView(s.buffer, s.byteOffset).getUint16(4)).toBe(s.length - 40);
      expect(s[53]).toBe(TCP_ACK | (i === 2 ? TCP_PSH : 0));
      expect(checksumsValid(s)).toBe(true);
    });
    expect(Uint8Array.from(segments.flatMap((s) => [...tcpPayload(s)]))).toEqual(tcpPayload(gso));
  });

  interopTest('a packet that is not GSO comes back as it is, its partial checksum completed', ['native'], () => {
    const whole = segment({ seq: 9, payload: 700 });
    expect(readSegments({ gsoType: GSO_NONE }, whole)).toEqual({ count: 1, segments: [whole] });
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum only.
    const partial = whole.slice();
    partial[36] = 0;
    partial[37] = 0;
    const ps = pseudo(partial.subarray(12, 16), partial.subarray(16, 20), partial.length - 20);
    partial[36] = ps >> 8;
    partial[37] = ps & 0xff;
    expect(readSegments({ flags: NEEDS_CSUM, gsoType: GSO_NONE, csumStart: 20, csumOffset: 16 }, partial)).toEqual({ count: 1, segments: [whole] });
  });

  interopTest('malformed packets, GSO types never enabled and oversized splits are refused with an error code, not a crash', ['native'], () => {
    const EPROTO = -71;
    const EMSGSIZE = -90;
    const v4 = segment({ seq: 0, payload: 3000 });
    const v6 = segment({ v6: true, seq: 0, payload: 3000 });
    const refused: Array<[VnetHeader, Uint8Array, number]> = [
      [{ gsoType: GSO_UDP_L4, gsoSize: 1000 }, v4, EPROTO], // UDP GSO was never asked for
      [{ gsoType: GSO_TCPV4, gsoSize: 1000 }, v6, EPROTO], // type and IP version disagree
      [{ gsoType: GSO_TCPV6, gsoSize: 1000 }, v4, EPROTO],
      [{ gsoType: GSO_TCPV4, gsoSize: 0 }, v4, EPROTO], // no segment size
      [{ gsoType: GSO_TCPV4, gsoSize: 1000 }, v4.subarray(0, 30), EPROTO], // TCP header cut off
      [{ gsoType: GSO_TCPV4, gsoSize: 1000 }, Uint8Array.of(...v4.subarray(0, 32), 0xf0, ...v4.subarray(33, 50)), EPROTO], // data offset past the end
      [{ gsoType: GSO_TCPV4, gsoSize: 1000 }, segment({ seq: 0, payload: 3000, udp: true }), EPROTO],
      [{ flags: NEEDS_CSUM, gsoType: GSO_NONE, csumStart: 20, csumOffset: 3019 }, v4, EPROTO], // checksum field runs past the end
      [{ gsoType: GSO_NONE }, new Uint8Array(0), EPROTO],
      [{ gsoType: GSO_TCPV4, gsoSize: 100 }, v4, EMSGSIZE], // 30 segments, room for 16
    ];
    for (const [vh, packet, code] of refused) expect(readSegments(vh, packet, 16).count).toBe(code);
    const api = loadNativeIo();
    expect(() => api.tunReadSegments(-1, new Uint8Array(1000), new Int32Array(2))).toThrow(TypeError);
  });

  interopTest('fuzz: random headers and bytes never crash it, and every segment it returns lies inside the buffer', ['native'], () => {
    let seed = 0x1234_5678;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const kinds = [GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, 0x81, 0x84, 0xff];
    for (let i = 0; i < 300; i++) {
      const base = rand(2) === 0 ? segment({ v6: rand(2) === 1, seq: rand(1 << 30), payload: rand(5000) }) : bytes(rand(200), i);
      const packet = base.slice();
      for (let k = rand(4); k > 0 && packet.length > 0; k--) packet[rand(packet.length)] = rand(256);
      const vh: VnetHeader = { flags: rand(4), gsoType: kinds[rand(kinds.length)]!, gsoSize: rand(3) === 0 ? rand(65536) : 1 + rand(2000), csumStart: rand(80), csumOffset: rand(40) };
      const { count, segments } = readSegments(vh, packet);
      expect(count).toBeLessThanOrEqual(256);
      if (count > 0) expect(segments.reduce((n, s) => n + s.length, 0)).toBeGreaterThan(0);
    }
  });
});

describe('watch and unwatch (native/io/io.c)', () => {
  // In a child process, under valgrind when it is installed: before the fix
  // the watch was freed when libuv closed its handle while the JavaScript
  // handle still pointed to it, so a second unwatch() read freed memory
  // (valgrind: "Invalid read" in io_unwatch; without valgrind the read
  // usually goes unnoticed, or stops a newer watch that reused the memory).
  const script = `
    const io = require(process.argv[process.argv.length - 1]);
    const s = io.udpOpen('127.0.0.1', 0, 65536);
    const handle = io.watch(s.fd, () => {});
    io.unwatch(handle);
    // Later, once libuv has closed the handle (on_closed).
    setTimeout(() => {
      io.unwatch(handle);
      io.unwatch(handle);
      io.close(s.fd);
      process.stdout.write('ok');
    }, 20);
  `;
  const valgrind = ['/usr/bin/valgrind', '/usr/local/bin/valgrind'].find((p) => existsSync(p));

  interopTest('a second unwatch() of a handle is a no-op and reads no freed memory', ['native'], async () => {
    const node = [process.execPath, '--jitless', '-e', script, nativeIoPath()];
    const [cmd, ...args] = valgrind ? [valgrind, '--error-exitcode=99', '--undef-value-errors=no', '-q', ...node] : node;
    const r = await run(cmd!, args, { timeoutMs: 120_000 });
    expect({ code: r.code, signal: r.signal, stdout: r.stdout }, r.stderr).toEqual({ code: 0, signal: null, stdout: 'ok' });
  }, 130_000);

  interopTest('in this process too: unwatch twice, then the handle can still be dropped', ['native'], async () => {
    const api = loadNativeIo();
    const s = BatchedSocket.openUdp('127.0.0.1', 0, 1 << 16);
    const h = api.watch(s.fd, () => {});
    api.unwatch(h);
    await new Promise((r) => setTimeout(r, 20));
    expect(() => api.unwatch(h)).not.toThrow();
    s.close();
  });
});

describe('BatchedSocket: a watch that stopped with an error (libuv status < 0)', () => {
  interopTest('is reported through onError and counted, not read from', ['native'], () => {
    const real = loadNativeIo();
    let callback: ((status: number) => void) | undefined;
    let reads = 0;
    // The addon, except that watch() hands us the callback libuv would call.
    const api = { ...real, watch: (_fd: number, cb: (status: number) => void) => ((callback = cb), {}), unwatch: () => {}, udpRecv: () => (reads++, 0), close: () => {} };
    const Ctor = BatchedSocket as unknown as new (api: unknown, fd: number, port: number) => BatchedSocket;
    const s = new Ctor(api, 12345, 0);
    const errors: number[] = [];
    s.start(() => {}, (errno) => errors.push(errno));
    // On POLLERR libuv stops the poll and calls back once with UV_EBADF.
    callback!(-9);
    expect(errors).toEqual([9]);
    expect(s.stats.receiveErrors).toBe(1);
    expect(reads).toBe(0);
    s.close();
  });
});
