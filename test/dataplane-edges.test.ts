// Edge cases of the data plane: IPv6
// fragments in the flow parser (RFC 8200 §4.5), OPAQUE port selectors (RFC
// 4301 §4.4.1.1), fragments of one datagram on one SA of a clone family, a
// refused install leaving nothing behind, key material wiped in a worker that
// refuses an install (architecture §4.5), a prompt stop, and no route handed to a
// worker once the data plane is stopping.
import { EventEmitter } from 'node:events';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataPlane, type DataPlaneOptions } from '../dataplane/dataplane.js';
import { destination } from '../io/batched-socket.js';
import { compileEspModule } from '../dataplane/kernel.js';
import { WORKER_STAT_COUNT, type WorkerReply } from '../dataplane/messages.js';
import { flowHash, flowMatches, newFlowTuple, parseFlow, type Selector } from '../dataplane/packet.js';
import { createRing, Doorbell } from '../dataplane/ring.js';
import type { SaRecord, SaSpec } from '../dataplane/sad.js';
import { Spd } from '../dataplane/spd.js';
import hostDataPlaneWorker from '../dataplane/worker.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { spawnSync } from 'node:child_process';

const planes: DataPlane[] = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const p of planes.splice(0)) await p.stop();
  for (const c of cleanups.splice(0).reverse()) c();
});

const ANY_PORT = { startPort: 0, endPort: 0xffff };
const OPAQUE_PORT = { startPort: 0xffff, endPort: 0 };

function selector4(a: number[], b: number[], ports = ANY_PORT, ipProtocol = 0): Selector {
  return { startAddress: Uint8Array.from(a), endAddress: Uint8Array.from(b), ipProtocol, ...ports };
}

function selector6(last: number, ports = ANY_PORT, ipProtocol = 0): Selector {
  const start = new Uint8Array(16);
  start[0] = 0xfd;
  const end = start.slice();
  start[15] = last;
  end[15] = last;
  return { startAddress: start, endAddress: end, ipProtocol, ...ports };
}

const NET_A = selector4([10, 1, 0, 0], [10, 1, 0, 255]);
const NET_B = selector4([10, 2, 0, 0], [10, 2, 0, 255]);

/** An IPv4 fragment of a UDP datagram: offset in 8-byte units, MF, and (first fragment) ports. */
function fragment4(src: number, id: number, offset: number, more: boolean, srcPort: number): Uint8Array {
  const p = new Uint8Array(60);
  p[0] = 0x45;
  p[2] = 0;
  p[3] = p.length;
  p[4] = id >> 8;
  p[5] = id & 0xff;
  p[6] = (more ? 0x20 : 0) | ((offset >> 8) & 0x1f);
  p[7] = offset & 0xff;
  p[8] = 64;
  p[9] = 17;
  p.set([10, 1, 0, src], 12);
  p.set([10, 2, 0, 7], 16);
  // A non-first fragment's first bytes are datagram payload; make them look like other ports.
  p.set(offset === 0 ? [srcPort >> 8, srcPort & 0xff, 0, 9] : [0x12, 0x34, 0x56, 0x78], 20);
  return p;
}

/**
 * An IPv6 packet with a Fragment header (RFC 8200 §4.5) whose Next Header is
 * `fragmentNext`, at fragment offset `offset` (8-byte units), then `rest`.
 */
function fragment6(src: number, fragmentNext: number, offset: number, more: boolean, rest: number[]): Uint8Array {
  const p = new Uint8Array(40 + 8 + rest.length);
  p[0] = 0x60;
  p[4] = (8 + rest.length) >> 8;
  p[5] = (8 + rest.length) & 0xff;
  p[6] = 44;
  p[7] = 64;
  p[8] = 0xfd;
  p[23] = src;
  p[24] = 0xfd;
  p[39] = 9;
  const fo = (offset << 3) | (more ? 1 : 0);
  p.set([fragmentNext, 0, fo >> 8, fo & 0xff, 0, 0, 0x0a, 0x0b], 40);
  p.set(rest, 48);
  return p;
}

describe('parseFlow: IPv6 non-first fragments (RFC 8200 §4.5)', () => {
  it('takes the Fragment header\'s Next Header as the protocol and reads nothing of the payload as headers', () => {
    const f = newFlowTuple();
    // Destination Options may follow a Fragment header (RFC 8200 §4.1); in a
    // non-first fragment the bytes after it are payload, here shaped like a
    // Destination Options header announcing TCP, then like TCP ports.
    const fakeHeaders = [6, 0, 1, 4, 0, 0, 0, 0, 0x00, 0x50, 0x01, 0xbb, 0, 0, 0, 0];
    expect(parseFlow(fragment6(1, 60, 100, true, fakeHeaders), f)).toBe(true);
    expect({ protocol: f.protocol, srcPort: f.srcPort, dstPort: f.dstPort }).toEqual({ protocol: 60, srcPort: -1, dstPort: -1 });
    // Payload bytes that would make a header run past the packet: still classified.
    expect(parseFlow(fragment6(1, 60, 100, false, [17, 255, 0, 0, 0, 0, 0, 0]), f)).toBe(true);
    expect({ protocol: f.protocol, srcPort: f.srcPort }).toEqual({ protocol: 60, srcPort: -1 });
    // A first fragment is walked as before: Destination Options, then UDP ports.
    expect(parseFlow(fragment6(1, 60, 0, true, [17, 0, 1, 4, 0, 0, 0, 0, 0x13, 0x88, 0, 53, 0, 8, 0, 0]), f)).toBe(true);
    expect({ protocol: f.protocol, srcPort: f.srcPort, dstPort: f.dstPort }).toEqual({ protocol: 17, srcPort: 5000, dstPort: 53 });
  });

  it('a non-first fragment does not take an SA whose selectors name the protocol its payload bytes spell', () => {
    const spd = new Spd();
    const tcpOnly = record(1, 'tcp', [selector6(1, ANY_PORT, 6)], [selector6(9, ANY_PORT, 6)]);
    const any = record(2, 'any', [selector6(1)], [selector6(9)]);
    spd.add(tcpOnly);
    spd.add(any);
    const fakeHeaders = [6, 0, 1, 4, 0, 0, 0, 0, 0x00, 0x50, 0x01, 0xbb, 0, 0, 0, 0];
    expect(spd.lookup(fragment6(1, 60, 100, true, fakeHeaders))).toBe(any);
  });
});

describe('OPAQUE port selectors (RFC 4301 §4.4.1.1)', () => {
  it('match exactly the packets whose ports are unavailable; ANY matches all; a range only packets with ports', () => {
    const f = newFlowTuple();
    const first = fragment4(1, 7, 0, true, 4000);
    const later = fragment4(1, 7, 185, false, 4000);
    const opaque = [selector4([10, 1, 0, 0], [10, 1, 0, 255], OPAQUE_PORT)];
    const opaqueRemote = [selector4([10, 2, 0, 0], [10, 2, 0, 255], OPAQUE_PORT)];
    const range = [selector4([10, 1, 0, 0], [10, 1, 0, 255], { startPort: 4000, endPort: 4000 })];
    const matches = (p: Uint8Array, src: Selector[], dst: Selector[]) => parseFlow(p, f) && flowMatches(p, f, src, dst);
    expect(matches(later, opaque, opaqueRemote)).toBe(true);
    expect(matches(first, opaque, opaqueRemote)).toBe(false);
    expect(matches(first, [NET_A], [NET_B])).toBe(true);
    expect(matches(later, [NET_A], [NET_B])).toBe(true);
    expect(matches(first, range, [NET_B])).toBe(true);
    expect(matches(later, range, [NET_B])).toBe(false);
    // A protocol without ports (GRE) has none to examine: OPAQUE matches it too.
    const gre = fragment4(1, 8, 0, false, 0);
    gre[9] = 47;
    expect(matches(gre, opaque, opaqueRemote)).toBe(true);
  });
});

/** The fields of an SaRecord the SPD reads. */
function record(id: number, family: string, localTs: Selector[], remoteTs: Selector[]): SaRecord {
  return { id, familyKey: family, localTs, remoteTs } as unknown as SaRecord;
}

describe('a clone family keeps the fragments of a datagram on one SA', () => {
  it('IPv4: first and later fragments of every datagram pick the same member of a 4-member family', () => {
    const spd = new Spd();
    const members = [1, 2, 3, 4].map((id) => record(id, 'a-b', [NET_A], [NET_B]));
    for (const m of members) spd.add(m);
    const used = new Set<SaRecord>();
    for (let flow = 0; flow < 100; flow++) {
      const src = 1 + (flow % 50);
      const firstSa = spd.lookup(fragment4(src, flow, 0, true, 10000 + flow));
      const middleSa = spd.lookup(fragment4(src, flow, 185, true, 10000 + flow));
      const lastSa = spd.lookup(fragment4(src, flow, 370, false, 10000 + flow));
      expect(typeof firstSa).toBe('object');
      expect(middleSa).toBe(firstSa);
      expect(lastSa).toBe(firstSa);
      used.add(firstSa as SaRecord);
    }
    // Fragmented traffic still spreads over the family (by addresses).
    expect(used.size).toBeGreaterThan(1);
  });

  it('IPv6: the fragments of a datagram hash alike, unfragmented packets still by their ports', () => {
    const f = newFlowTuple();
    const hash = (p: Uint8Array) => (expect(parseFlow(p, f)).toBe(true), flowHash(p, f));
    const udp = [0x13, 0x88, 0, 53, 0, 8, 0, 0];
    const first = hash(fragment6(1, 17, 0, true, udp));
    expect(hash(fragment6(1, 17, 150, true, [1, 2, 3, 4, 5, 6, 7, 8]))).toBe(first);
    expect(hash(fragment6(1, 17, 300, false, [9, 9, 9, 9, 9, 9, 9, 9]))).toBe(first);
    // Unfragmented: two ports, two hashes (the 5-tuple, as before).
    const plain = (port: number) => {
      const p = new Uint8Array(48);
      p[0] = 0x60;
      p[5] = 8;
      p[6] = 17;
      p[8] = 0xfd;
      p[23] = 1;
      p[24] = 0xfd;
      p[39] = 9;
      p.set([port >> 8, port & 0xff, 0, 53, 0, 8, 0, 0], 40);
      return hash(p);
    };
    expect(plain(5000)).not.toBe(plain(5001));
  });
});

let nextSpi = 0x5000;
function spec(id: number): SaSpec {
  const spiIn = nextSpi++;
  const spiOut = nextSpi++;
  return {
    id, algorithm: 'aes-gcm-128', icvLength: 16, esn: false, replayWindow: 1024, udpEncap: true,
    spiIn, spiOut, keyIn: new Uint8Array(20).fill(1), keyOut: new Uint8Array(20).fill(2),
    localTs: [NET_A], remoteTs: [NET_B], local: { address: '192.0.2.1', port: 4500 }, remote: { address: '192.0.2.2', port: 4500 },
  };
}

/** A descriptor to hand out as an ESP socket: an open regular file, closed after the test. */
function openFd(): number {
  const dir = mkdtempSync(join(tmpdir(), 'ikc-dataplane-'));
  const fd = openSync(join(dir, 'esp'), 'w');
  cleanups.push(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return fd;
}

describe('DataPlane install, addresses and stop', () => {
  it('an install refused for a key that is not bytes still wipes the key that is', async () => {
    const plane = new DataPlane({ workers: 1, sendUdp: () => {} });
    const s = spec(6);
    const keyIn = s.keyIn;
    await expect(plane.install({ ...s, keyOut: [2, 2, 2] as unknown as Uint8Array })).rejects.toThrow(/must be Uint8Arrays/);
    expect(keyIn.every((b) => b === 0)).toBe(true);
  });


  interopTest('an install whose route cannot be made (bad descriptor, throwing espSocket) leaves no SA behind', ['root', 'tun', 'native'], async () => {
    let espSocket: DataPlaneOptions['espSocket'] = () => ({ fd: 987654, to: destination(Uint8Array.of(192, 0, 2, 2)) });
    const plane = new DataPlane({
      workers: 1, sendUdp: () => {}, tun: { name: 'ikrvdp0', offload: false },
      espSocket: (l, r) => espSocket!(l, r),
    });
    planes.push(plane);
    await plane.start();
    expect(plane.outputMode).toBe('workers');
    const s = spec(5);
    await expect(plane.install(s)).rejects.toThrow();
    // The caller's keys were wiped all the same, and nothing of SA 5 is left.
    expect([...s.keyIn, ...s.keyOut].every((b) => b === 0)).toBe(true);
    expect(plane.status().sas).toBe(0);
    espSocket = () => {
      throw new Error('no socket for these addresses');
    };
    await expect(plane.install(spec(5))).rejects.toThrow(/no socket/);
    expect(plane.status().sas).toBe(0);
    // The id is free: with a socket it installs.
    const fd = openFd();
    espSocket = () => ({ fd, to: destination(Uint8Array.of(192, 0, 2, 2)) });
    await plane.install(spec(5));
    expect(plane.saIds()).toEqual([5]);
  });

  interopTest('a stopping data plane hands no new route (a dup\'ed descriptor) to its workers', ['root', 'tun', 'native'], async () => {
    const fd = openFd();
    let routes = 0;
    const plane = new DataPlane({
      workers: 1, sendUdp: () => {}, tun: { name: 'ikrvdp1', offload: false },
      espSocket: () => (routes++, { fd, to: destination(Uint8Array.of(192, 0, 2, 2)) }),
    });
    planes.push(plane);
    await plane.start();
    await plane.install(spec(6));
    expect(routes).toBe(1);
    plane.updateAddresses(6, { address: '192.0.2.1', port: 4500 }, { address: '192.0.2.3', port: 4500 });
    expect(routes).toBe(2);
    const stopped = plane.stop();
    for (let i = 0; i < 100 && plane.started; i++) await Promise.resolve();
    expect(plane.started).toBe(false);
    plane.updateAddresses(6, { address: '192.0.2.1', port: 4500 }, { address: '192.0.2.4', port: 4500 });
    expect(routes).toBe(2);
    await stopped;
  });

  interopTest('a TUN device deleted under it (ip link del) is reported: logged at warn, device-error, status shows it', ['root', 'tun', 'native'], async () => {
    for (const offload of [false, true]) {
      const name = offload ? 'ikrvdp3' : 'ikrvdp2';
      const warnings: Array<{ obj: object; msg: string }> = [];
      const plane = new DataPlane({
        workers: 1, sendUdp: () => {}, tun: { name, offload },
        log: { info() {}, debug() {}, warn: (obj, msg) => warnings.push({ obj, msg }) },
      });
      planes.push(plane);
      await plane.start();
      const errors: Array<{ device: string; code: string | undefined }> = [];
      plane.on('device-error', (device, err) => errors.push({ device, code: err.code }));
      expect(plane.status().tun).toMatchObject({ name, readStatus: 0 });
      const del = spawnSync('ip', ['link', 'del', name], { encoding: 'utf8', timeout: 10_000 });
      expect(del.status, del.stderr).toBe(0);
      // libuv sees POLLERR on the detached descriptor, stops the poll and calls back once with UV_EBADF.
      await waitFor(() => errors.length > 0, { timeoutMs: 5000, intervalMs: 5 });
      expect(errors).toEqual([{ device: `tun:${name}`, code: 'EBADF' }]);
      expect(warnings.some((w) => /TUN device failed/.test(w.msg))).toBe(true);
      const tun = plane.status().tun!;
      expect(tun.readStatus).toBeLessThan(0);
      expect(tun.errors).toBeGreaterThan(0);
      await plane.stop();
    }
  });

  it('stop() of an idle data plane returns promptly: the drain loop is woken, not timed out', async () => {
    const plane = new DataPlane({ workers: 2, sendUdp: () => {} });
    planes.push(plane);
    await plane.start();
    // Let the drain loop go to sleep on the doorbell.
    await new Promise((r) => setTimeout(r, 30));
    const t0 = performance.now();
    await plane.stop();
    // The drain loop's idle wait is 250 ms: waiting it out takes at least ~200 ms.
    expect(performance.now() - t0).toBeLessThan(150);
    expect(plane.started).toBe(false);
  });
});

describe('a worker that refuses an install wipes the key it was given (architecture §4.5)', () => {
  it('slot in use, or a route/policy without direct output: the transferred key buffer is zero', async () => {
    const port = new (class extends EventEmitter {
      replies: WorkerReply[] = [];
      postMessage(m: WorkerReply | { event: string }): void {
        if (!('event' in m)) this.replies.push(m);
      }
      close(): void {}
    })();
    const running = hostDataPlaneWorker({
      index: 0, module: await compileEspModule(), inRing: createRing(64, 2048), outRing: createRing(64, 2048),
      doorbell: new Doorbell().sab, stats: new SharedArrayBuffer(WORKER_STAT_COUNT * 8), port, sink: 'deliver',
    });
    const install = (id: number, key: ArrayBuffer, extra: object = {}) => port.emit('message', {
      op: 'install', id, slot: 3, tag: 1, saId: 9, algorithm: 'aes-gcm-128', key, spi: 0x4242, direction: 'in',
      esn: false, icvLength: 16, replayWindow: 1024, ...extra,
    });
    const keyOf = () => new Uint8Array(20).fill(0xa5).buffer;
    const accepted = keyOf();
    install(1, accepted);
    const inUse = keyOf();
    install(2, inUse);
    const noDirect = keyOf();
    install(3, noDirect, { slot: 4, policy: { localTs: [NET_B], remoteTs: [NET_A] } });
    expect(port.replies).toEqual([
      { id: 1, ok: true },
      { id: 2, ok: false, error: expect.stringMatching(/slot 3 is in use/) },
      { id: 3, ok: false, error: expect.stringMatching(/needs direct output/) },
    ]);
    for (const key of [accepted, inUse, noDirect]) expect(new Uint8Array(key).every((b) => b === 0)).toBe(true);
    port.emit('message', { op: 'stop', id: 4 });
    await expect(running).resolves.toEqual({ index: 0 });
  });
});
