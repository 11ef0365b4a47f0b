// Kernel steering of the NAT-T port (io/esp-steering.ts, native/io/steer.c):
// one SO_REUSEPORT socket per worker plus the control plane's, a classic BPF
// program on the group. ESP reaches only the socket of the worker its SPI
// names; IKE, keepalives, runts and ESP no worker owns reach the control
// plane's, where an unknown SPI is dropped and counted once.
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { closeSteeredPort, openSteeredPort, steeringProgram, type SteeredPort } from '../io/esp-steering.js';
import { loadNativeIo, UDP_DESC_WORDS } from '../io/native-io.js';
import { composeEspSpi } from '../io/spi-layout.js';
import { NatTraversalDemux, type DemuxStats } from '../io/demux.js';
import { DataPlane } from '../dataplane/dataplane.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An ESP datagram: SPI, sequence number, some payload. */
function esp(spi: number, seq: number): Uint8Array {
  const b = new Uint8Array(64);
  new DataView(b.buffer).setUint32(0, spi);
  new DataView(b.buffer).setUint32(4, seq);
  b.set(randomBytes(56), 8);
  return b;
}

/** Everything waiting on `fd` (non-blocking), as copies. */
function drain(fd: number): Uint8Array[] {
  const io = loadNativeIo();
  const slot = 2048;
  const buffer = new Uint8Array(slot * 32);
  const desc = new Int32Array(32 * UDP_DESC_WORDS);
  const out: Uint8Array[] = [];
  for (let round = 0; round < 100; round++) {
    const n = io.udpRecv(fd, buffer, slot, desc);
    if (n <= 0) break;
    for (let i = 0; i < n; i++) out.push(buffer.slice(i * slot, i * slot + desc[i * UDP_DESC_WORDS]!));
  }
  return out;
}

async function sender(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  cleanups.push(() => s.close());
  return s;
}

const send = (s: Socket, port: number, b: Uint8Array) => new Promise<void>((r, j) => s.send(b, port, '127.0.0.1', (e) => (e ? j(e) : r())));

describe('steeringProgram', () => {
  it('refuses a node prefix or worker count the SPI layout cannot carry', () => {
    expect(() => steeringProgram({ node: 256, workers: 1 })).toThrow(RangeError);
    expect(() => steeringProgram({ node: 0, workers: 0 })).toThrow(RangeError);
    expect(() => steeringProgram({ node: 0, workers: 65 })).toThrow(RangeError);
    expect(steeringProgram({ node: 0, workers: 64 }).length).toBe(26);
  });
});

describe('the NAT-T port steered by SPI (SO_ATTACH_REUSEPORT_CBPF)', () => {
  interopTest('each SPI\'s ESP reaches only its owner worker\'s socket; IKE, keepalives, runts and unowned SPIs the control plane\'s', ['native'], async () => {
    const node = 3;
    const workers = 3;
    const port: SteeredPort = openSteeredPort('127.0.0.1', 0, { node, workers, bufferBytes: 1 << 20 });
    cleanups.push(() => closeSteeredPort(port));
    const s = await sender();
    const PER_WORKER = 20;
    const spis = Array.from({ length: workers }, (_, w) => Array.from({ length: 4 }, () => composeEspSpi({ node, worker: w }, randomBytes(4).readUInt32BE())!));
    for (let i = 0; i < PER_WORKER; i++) for (let w = 0; w < workers; w++) await send(s, port.port, esp(spis[w]![i % 4]!, i + 1));
    const ike = new Uint8Array(4 + 28);
    ike.set(randomBytes(8), 4); // the non-ESP marker, then an IKE header
    const unowned = [
      composeEspSpi({ node, worker: workers + 2 }, 77)!, // a worker this gateway does not have
      composeEspSpi({ node: node + 1, worker: 0 }, 78)!, // another node's SPI
    ];
    await send(s, port.port, ike);
    await send(s, port.port, Uint8Array.of(0xff)); // NAT keepalive (RFC 3948 §2.3)
    await send(s, port.port, Uint8Array.of(1, 2, 3)); // runt
    for (const spi of unowned) await send(s, port.port, esp(spi, 1));

    const got = { control: [] as Uint8Array[], workers: Array.from({ length: workers }, () => [] as Uint8Array[]) };
    await waitFor(() => {
      got.control.push(...drain(port.control));
      port.workers.forEach((fd, w) => got.workers[w]!.push(...drain(fd)));
      return got.control.length === 5 && got.workers.every((g) => g.length === PER_WORKER);
    }, { timeoutMs: 5000, intervalMs: 5 });
    // Counted per socket: each worker's socket holds its own SPIs' ESP and nothing else.
    got.workers.forEach((g, w) => {
      for (const d of g) expect(spis[w]).toContain(new DataView(d.buffer).getUint32(0));
    });
    expect(got.control.map((d) => d.length).sort((a, b) => a - b)).toEqual([1, 3, 32, 64, 64]);

    // The control plane's socket feeds its demultiplexer: IKE to the engine, a keepalive and
    // a runt counted, the unowned ESP to the SAD lookup, which drops it as unknown, once each.
    const dp = new DataPlane({ workers: 1, sink: 'discard', sendUdp: () => {} });
    await dp.start();
    cleanups.push(() => dp.stop());
    const stats: DemuxStats = { ikeIn: 0, espIn: 0, keepalivesIn: 0, runts: 0 };
    const ikeIn: Uint8Array[] = [];
    const demux = new NatTraversalDemux(port.port, stats, (m) => ikeIn.push(m.slice()));
    demux.esp = (packet, _local, remote) => dp.receiveEsp(packet, remote);
    const unknown: number[] = [];
    dp.on('unknown-spi', (spi) => unknown.push(spi));
    for (const d of got.control) demux.receive(d, { address: '127.0.0.1', port: port.port }, { address: '127.0.0.1', port: s.address().port });
    expect(stats).toEqual({ ikeIn: 1, espIn: 2, keepalivesIn: 1, runts: 1 });
    expect(ikeIn).toHaveLength(1);
    expect(dp.status().io.dropUnknownSpi).toBe(2);
    expect(unknown.sort()).toEqual([...unowned].sort());
  });

  interopTest('a second group on the same port is refused while the first is open (no socket of ours is shared by accident)', ['native'], async () => {
    const port = openSteeredPort('127.0.0.1', 0, { node: 0, workers: 1, bufferBytes: 1 << 16 });
    cleanups.push(() => closeSteeredPort(port));
    // A socket without SO_REUSEPORT cannot join: the port is the group's.
    const plain = createSocket('udp4');
    cleanups.push(() => plain.close());
    await expect(new Promise<void>((resolve, reject) => {
      plain.once('error', reject);
      plain.bind(port.port, '127.0.0.1', () => resolve());
    })).rejects.toThrow(/EADDRINUSE/);
  });
});
