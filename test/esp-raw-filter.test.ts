// Classic BPF on raw ESP input (io/esp-raw-filter.ts, native/io/filter.c):
// a raw socket per worker with a socket filter keeps only the SPIs that name
// its worker, the control plane's socket keeps exactly the rest (runts,
// another node's SPIs, a worker this gateway does not have), so every
// datagram reaches one socket; a PACKET_FANOUT group with the fanout program
// hands each SPI to the member its worker bits name. Datagrams go over the
// host's loopback, so only this test's SPIs (a node prefix of its own) count.
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { rawEspFanoutProgram, rawEspSocketFilter, ipv4EspOnlyFilter, dropAllFilter } from '../io/esp-raw-filter.js';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { loadNativeIo, UDP_DESC_WORDS } from '../io/native-io.js';
import { composeEspSpi } from '../io/spi-layout.js';
import { interopTest } from './support/prereq.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const NODE = 0xa7;

/** The SPIs (this test's node prefix only) of everything waiting on `fd`, each datagram starting at its IPv4 header; runts as -1. */
function drainSpis(fd: number): number[] {
  const io = loadNativeIo();
  const slot = 2048;
  const buffer = new Uint8Array(slot * 32);
  const desc = new Int32Array(32 * UDP_DESC_WORDS);
  const out: number[] = [];
  for (let round = 0; round < 100; round++) {
    const n = io.udpRecv(fd, buffer, slot, desc);
    if (n <= 0) break;
    for (let i = 0; i < n; i++) {
      const at = i * slot;
      const len = desc[i * UDP_DESC_WORDS]!;
      const ihl = (buffer[at]! & 0x0f) * 4;
      if (len < ihl + 8) {
        out.push(-1);
        continue;
      }
      const spi = new DataView(buffer.buffer, at + ihl, 4).getUint32(0);
      if (spi >>> 24 === NODE || spi >>> 24 === NODE + 1) out.push(spi);
    }
  }
  return out;
}

/** A raw ESP sender on 127.0.0.1 that keeps nothing itself. */
function rawSender(): (esp: Uint8Array) => void {
  const s = BatchedSocket.openRaw(50, 1 << 20);
  cleanups.push(() => s.close());
  loadNativeIo().socketAttachFilter(s.fd, dropAllFilter());
  const to = destination(Uint8Array.of(127, 0, 0, 1));
  return (esp) => {
    s.queue(esp, to, 0);
    s.flush();
  };
}

function esp(spi: number, length = 64): Uint8Array {
  const b = new Uint8Array(length);
  b.set(randomBytes(length));
  if (length >= 4) new DataView(b.buffer).setUint32(0, spi);
  return b;
}

const settle = () => new Promise((r) => setTimeout(r, 50));
const count = (xs: number[], x: number) => xs.filter((y) => y === x).length;

describe('rawEspSocketFilter', () => {
  it('refuses a node prefix, worker count or worker the SPI layout cannot carry', () => {
    expect(() => rawEspSocketFilter({ node: 256, workers: 1, share: 'unsteered' })).toThrow(RangeError);
    expect(() => rawEspSocketFilter({ node: 0, workers: 0, share: 'unsteered' })).toThrow(RangeError);
    expect(() => rawEspSocketFilter({ node: 0, workers: 65, share: 'unsteered' })).toThrow(RangeError);
    expect(() => rawEspSocketFilter({ node: 0, workers: 2, share: { worker: 2 } })).toThrow(RangeError);
    expect(rawEspSocketFilter({ node: 0, workers: 64, share: { worker: 63 } }).length).toBe(26);
  });
});

describe('raw ESP filtered per worker (SO_ATTACH_FILTER)', () => {
  interopTest('each SPI reaches only its owner worker\'s socket; runts and SPIs no worker owns only the control plane\'s, once', ['root', 'native'], async () => {
    const io = loadNativeIo();
    const workers = 3;
    const control = io.rawOpen(50, 1 << 20);
    cleanups.push(() => io.close(control));
    io.socketAttachFilter(control, rawEspSocketFilter({ node: NODE, workers, share: 'unsteered' }));
    const own = Array.from({ length: workers }, (_, w) => {
      const fd = io.rawOpen(50, 1 << 20);
      cleanups.push(() => io.close(fd));
      io.socketAttachFilter(fd, rawEspSocketFilter({ node: NODE, workers, share: { worker: w } }));
      return fd;
    });
    const send = rawSender();
    const spis = Array.from({ length: workers }, (_, w) => Array.from({ length: 3 }, () => composeEspSpi({ node: NODE, worker: w }, randomBytes(4).readUInt32BE())!));
    const unowned = [composeEspSpi({ node: NODE, worker: workers + 1 }, 77)!, composeEspSpi({ node: NODE + 1, worker: 0 }, 78)!];
    for (let i = 0; i < 10; i++) for (let w = 0; w < workers; w++) send(esp(spis[w]![i % 3]!));
    for (const spi of unowned) send(esp(spi));
    send(esp(0, 6)); // a runt: no room for SPI and sequence number
    await settle();
    const got = own.map(drainSpis);
    const atControl = drainSpis(control);
    for (let w = 0; w < workers; w++) {
      expect(got[w]!.length).toBe(10);
      expect(got[w]!.every((spi) => spis[w]!.includes(spi))).toBe(true);
    }
    for (const spi of unowned) {
      expect(count(atControl, spi)).toBe(1);
      for (const g of got) expect(count(g, spi)).toBe(0);
    }
    expect(atControl.filter((spi) => spis.flat().includes(spi))).toEqual([]);
    expect(count(atControl, -1)).toBeGreaterThanOrEqual(1);
  });
});

describe('raw ESP through PACKET_FANOUT with the SPI program', () => {
  interopTest('each SPI reaches the member its worker bits name', ['root', 'native'], async () => {
    const io = loadNativeIo();
    const group = 1 + (randomBytes(2).readUInt16BE() % 65000);
    const members = [0, 1].map(() => {
      const fd = io.packetOpen('lo', 1 << 20);
      cleanups.push(() => io.close(fd));
      io.socketAttachFilter(fd, ipv4EspOnlyFilter());
      io.packetFanout(fd, group, rawEspFanoutProgram());
      return fd;
    });
    const send = rawSender();
    const spis = [0, 1].map((w) => composeEspSpi({ node: NODE, worker: w }, randomBytes(4).readUInt32BE())!);
    for (let i = 0; i < 8; i++) for (const spi of spis) send(esp(spi));
    await settle();
    const got = members.map(drainSpis);
    expect(got[0]).toEqual(Array(8).fill(spis[0]));
    expect(got[1]).toEqual(Array(8).fill(spis[1]));
  });
});
