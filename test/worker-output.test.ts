// A worker's direct output (dataplane/worker-output.ts): ESP sent from the
// arena to each SA's route, grouped by socket and in order; decapsulated
// packets checked against the SA's selectors (RFC 4301 §5.2) and written to
// the TUN queue, here a regular file standing in for it (a TUN write is one
// write(2) per packet, or tunWriteBatch's records with offload); every
// outcome counted in the worker's stats; descriptors closed by their owner.
import { afterEach, describe, expect } from 'vitest';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { loadNativeIo } from '../io/native-io.js';
import { writeUdp4, type Selector } from '../dataplane/packet.js';
import { DirectWriter } from '../dataplane/worker-output.js';
import { WORKER_STAT_COUNT, WorkerStat, type EspRoute } from '../dataplane/messages.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const LOCAL_NET: Selector = { startAddress: Uint8Array.of(10, 0, 1, 0), endAddress: Uint8Array.of(10, 0, 1, 255), ipProtocol: 0, startPort: 0, endPort: 65535 };
const REMOTE_NET: Selector = { startAddress: Uint8Array.of(10, 0, 2, 0), endAddress: Uint8Array.of(10, 0, 2, 255), ipProtocol: 0, startPort: 0, endPort: 65535 };
const POLICY = { localTs: [LOCAL_NET], remoteTs: [REMOTE_NET] };

function route(fd: number, address: Uint8Array, port: number): EspRoute {
  const to = destination(address);
  return { fd: loadNativeIo().dup(fd), family: to.family, words: to.words, port };
}

function isOpen(fd: number): boolean {
  try {
    const copy = loadNativeIo().dup(fd);
    loadNativeIo().close(copy);
    return true;
  } catch {
    return false;
  }
}

/** A stand-in TUN queue: a regular file, opened for the writer's own descriptor. */
function tunFile(): { fd: number; read: () => Uint8Array } {
  const dir = mkdtempSync(join(tmpdir(), 'ikc-direct-'));
  const path = join(dir, 'tun');
  const fd = openSync(path, 'w');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return { fd, read: () => new Uint8Array(readFileSync(path)) };
}

describe('DirectWriter (a worker writes its own output)', () => {
  interopTest('ESP leaves in order, grouped by route; a refused datagram is counted and reported lost; a replaced route is closed', ['native'], async () => {
    const sender = BatchedSocket.openUdp('127.0.0.1', 0, 1 << 20);
    const peers = [BatchedSocket.openUdp('127.0.0.1', 0, 1 << 20), BatchedSocket.openUdp('127.0.0.1', 0, 1 << 20)];
    cleanups.push(() => sender.close(), ...peers.map((p) => () => p.close()));
    const got: Uint8Array[][] = [[], []];
    peers.forEach((p, i) => p.start((data) => got[i]!.push(data.slice())));
    const tun = tunFile();
    const stats = new Float64Array(WORKER_STAT_COUNT);
    const writer = new DirectWriter({ tunFd: tun.fd, tunOffload: false }, stats);
    cleanups.push(() => writer.close());
    const loopback = Uint8Array.of(127, 0, 0, 1);
    const r0 = route(sender.fd, loopback, peers[0]!.port);
    const r1 = route(sender.fd, loopback, peers[1]!.port);
    // ::1 from an IPv4 socket: the kernel refuses it.
    const refused = route(sender.fd, new Uint8Array(16).fill(1, 15), peers[0]!.port);
    const arena = new Uint8Array(64 * 256);
    for (let i = 0; i < 64; i++) arena.fill(i, i * 256, i * 256 + 256);
    // Routes alternate: r0 x3, r1 x2, refused, r0 x70 (more than one sendmmsg).
    const plan = [r0, r0, r0, r1, r1, refused, ...Array.from({ length: 70 }, () => r0)];
    plan.forEach((r, i) => writer.queueEsp(arena, r, (i % 64) * 256, 100 + (i % 50)));
    expect(writer.flush(arena)).toBe(1);
    const expected = (i: number) => arena.slice((i % 64) * 256, (i % 64) * 256 + 100 + (i % 50));
    const want0 = plan.flatMap((r, i) => (r === r0 ? [expected(i)] : []));
    const want1 = plan.flatMap((r, i) => (r === r1 ? [expected(i)] : []));
    await waitFor(() => got[0]!.length === want0.length && got[1]!.length === want1.length, { timeoutMs: 5000, intervalMs: 5 });
    expect(got[0]).toEqual(want0);
    expect(got[1]).toEqual(want1);
    expect(stats[WorkerStat.ESP_SENT]).toBe(75);
    expect(stats[WorkerStat.SEND_ERRORS]).toBe(1);
    expect(stats[WorkerStat.ESP_SENT_BYTES]).toBe([...want0, ...want1].reduce((n, b) => n + b.length, 0));
    expect(stats[WorkerStat.INNER_WRITTEN]).toBe(0);
    // The owner closes what it was given; the socket itself stays open.
    for (const r of [r0, r1, refused]) {
      writer.closeRoute(r);
      expect(isOpen(r.fd)).toBe(false);
    }
    expect(isOpen(sender.fd)).toBe(true);
  });

  interopTest('decapsulated packets outside the SA selectors, or unparsable, are dropped and counted; the rest are written in order', ['native'], () => {
    const tun = tunFile();
    const stats = new Float64Array(WORKER_STAT_COUNT);
    const writer = new DirectWriter({ tunFd: tun.fd, tunOffload: false }, stats);
    cleanups.push(() => writer.close());
    const arena = new Uint8Array(100 * 256);
    const inside = (i: number) => writeUdp4(arena, i * 256, 60 + i, Uint8Array.of(10, 0, 2, 9), Uint8Array.of(10, 0, 1, 7), 1000 + i, 53, i);
    const kept: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) {
      if (i % 10 === 3) {
        // Source outside the peer's selectors (a spoofed inner source).
        writeUdp4(arena, i * 256, 60, Uint8Array.of(10, 9, 9, 9), Uint8Array.of(10, 0, 1, 7), 1000, 53, i);
        writer.queueInner(arena, POLICY, i * 256, 60);
      } else if (i % 10 === 7) {
        // Not an IP packet at all.
        arena.fill(0xee, i * 256, i * 256 + 40);
        writer.queueInner(arena, POLICY, i * 256, 40);
      } else {
        inside(i);
        kept.push(arena.slice(i * 256, i * 256 + 60 + i));
        writer.queueInner(arena, POLICY, i * 256, 60 + i);
      }
    }
    expect(writer.flush(arena)).toBe(0);
    expect(stats[WorkerStat.DROP_POLICY]).toBe(20);
    expect(stats[WorkerStat.INNER_WRITTEN]).toBe(80);
    expect(stats[WorkerStat.INNER_WRITTEN_BYTES]).toBe(kept.reduce((n, b) => n + b.length, 0));
    expect(stats[WorkerStat.TUN_WRITES]).toBe(80);
    const file = tun.read();
    let at = 0;
    for (const k of kept) {
      expect(file.subarray(at, at + k.length)).toEqual(k);
      at += k.length;
    }
    expect(at).toBe(file.length);
    // close() closes the queue's descriptor; nothing more is written.
    writer.close();
    expect(isOpen(tun.fd)).toBe(false);
    writer.queueInner(arena, POLICY, 0, 60);
    expect(writer.flush(arena)).toBe(0);
    expect(stats[WorkerStat.INNER_WRITTEN]).toBe(80);
  });

  interopTest('with offload, packets go through tunWriteBatch: one record per packet (virtio_net_hdr + packet), batches of at most 64', ['native'], () => {
    const tun = tunFile();
    const stats = new Float64Array(WORKER_STAT_COUNT);
    const writer = new DirectWriter({ tunFd: tun.fd, tunOffload: true }, stats);
    cleanups.push(() => writer.close());
    const arena = new Uint8Array(70 * 128);
    for (let i = 0; i < 70; i++) {
      writeUdp4(arena, i * 128, 100, Uint8Array.of(10, 0, 2, 9), Uint8Array.of(10, 0, 1, 7), 2000 + i, 53, i);
      writer.queueInner(arena, POLICY, i * 128, 100);
    }
    expect(writer.flush(arena)).toBe(0);
    // UDP is never coalesced: 70 records of 10 + 100 bytes, in order.
    expect(stats[WorkerStat.INNER_WRITTEN]).toBe(70);
    expect(stats[WorkerStat.TUN_WRITES]).toBe(70);
    expect(stats[WorkerStat.TUN_COALESCED]).toBe(0);
    const file = tun.read();
    expect(file.length).toBe(70 * 110);
    for (let i = 0; i < 70; i++) expect(file.subarray(i * 110 + 10, i * 110 + 110)).toEqual(arena.subarray(i * 128, i * 128 + 100));
  });
});
