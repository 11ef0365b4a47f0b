// Inbound ESP SPIs that name their owner worker (io/spi-layout.ts,
// control/ike/child-spi.ts, dataplane/placement.ts): the data plane picks the
// worker before the SPI is drawn, the SPI carries it, and the install puts the
// Child SA on exactly that worker, so ESP steered by SPI reaches its owner.
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { drawChildSpi } from '../control/ike/child-spi.js';
import { espSpiNode, espSpiWorker, MAX_SPI_WORKERS } from '../io/spi-layout.js';
import { WorkerPlacement, PROMISE_TTL_MS, MAX_PROMISES } from '../dataplane/placement.js';
import { Sad, familyKey, type SaRecord } from '../dataplane/sad.js';
import type { Selector } from '../dataplane/packet.js';
import { loopbackPair } from './support/loopback.js';
import { waitFor } from './support/proc.js';

const random = (n: number) => new Uint8Array(randomBytes(n));

function selector(first: number): Selector {
  return { ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: new Uint8Array([10, first, 0, 0]), endAddress: new Uint8Array([10, first, 0, 255]) } as Selector;
}
const A = [selector(1)];
const B = [selector(2)];
const C = [selector(3)];

/** A record as install() makes it, taking two slots of `worker`. */
function installed(sad: Sad, id: number, worker: number, spiIn: number, localTs = A, remoteTs = B): SaRecord {
  const i = sad.slots[worker]!.take()!;
  const o = sad.slots[worker]!.take()!;
  const r: SaRecord = {
    id, worker, inSlot: i.slot, inTag: i.tag, outSlot: o.slot, outTag: o.tag, spiIn, spiOut: 0x9000 + id, localTs, remoteTs,
    familyKey: familyKey(localTs, remoteTs), local: { address: '127.0.0.1', port: 4500 }, remote: { address: '127.0.0.2', port: 4500 },
    udpEncap: true, transport: 'udp', outbound: true, replaces: [], activatedAt: 1, state: 'active',
  };
  sad.add(r);
  return r;
}

describe('drawChildSpi', () => {
  it('builds the SPI for the owner it is given: node and worker bits, >= 256, never one in use', () => {
    for (let worker = 0; worker < MAX_SPI_WORKERS; worker += 7) {
      const spi = drawChildSpi(random, { node: 5, worker }, () => false);
      expect(espSpiWorker(spi)).toBe(worker);
      expect(espSpiNode(spi)).toBe(5);
      expect(spi).toBeGreaterThanOrEqual(256);
    }
    // A random source that repeats: the first draw is in use, the second is taken.
    const draws = [new Uint8Array([0, 0, 0x12, 0x34]), new Uint8Array([0, 0, 0x56, 0x78])];
    let k = 0;
    const repeating = () => draws[Math.min(k++, 1)]!;
    const first = (0x1234 | (3 << 18)) >>> 0;
    expect(drawChildSpi(repeating, { node: 0, worker: 3 }, (spi) => spi === first)).toBe((0x5678 | (3 << 18)) >>> 0);
  });

  it('without an owner draws 32 random bits as before; reserved values are drawn again', () => {
    const draws = [new Uint8Array([0, 0, 0, 7]), new Uint8Array([0xde, 0xad, 0xbe, 0xef])];
    let k = 0;
    expect(drawChildSpi(() => draws[k++]!, undefined, () => false)).toBe(0xdeadbeef);
  });

  it('refuses (throws) rather than spin when the owner has no free SPI left', () => {
    expect(() => drawChildSpi(random, { node: 0, worker: 1 }, () => true)).toThrow(/no free inbound ESP SPI for node 0 worker 1/);
  });
});

describe('WorkerPlacement (dataplane/placement.ts)', () => {
  it('spreads a family over the workers while its members are still being negotiated', () => {
    const sad = new Sad(3, 8);
    const p = new WorkerPlacement();
    // Three clones of one Child SA negotiated at once: one per worker, before any is installed.
    expect([p.place(sad, A, B), p.place(sad, A, B), p.place(sad, A, B)].sort()).toEqual([0, 1, 2]);
    expect(p.pending).toBe(3);
    // Another family on a loaded plane: least loaded first, all three are equal (one each).
    expect(p.place(sad, C, B)).toBe(0);
  });

  it('a rekey stays on its predecessor worker; installs keep their promises; unkept ones lapse', () => {
    let now = 1000;
    const sad = new Sad(2, 8);
    const p = new WorkerPlacement(() => now);
    const old = installed(sad, 1, 1, 0x40100);
    expect(p.place(sad, A, B, old.spiIn)).toBe(1);
    p.kept(1, old.familyKey);
    expect(p.pending).toBe(0);
    expect(p.place(sad, A, B)).toBe(0);
    expect(p.pending).toBe(1);
    now += PROMISE_TTL_MS;
    expect(p.pending).toBe(0);
  });

  it('keeps at most MAX_PROMISES promises, and skips a full worker', () => {
    const sad = new Sad(2, 2);
    const p = new WorkerPlacement();
    installed(sad, 1, 0, 0x100);
    // Worker 0 has no two free slots: everything goes to worker 1.
    const placed = new Set<number>();
    for (let i = 0; i < MAX_PROMISES + 10; i++) placed.add(p.place(sad, A, B));
    expect([...placed]).toEqual([1]);
    expect(p.pending).toBe(MAX_PROMISES);
  });

  it('not running: worker 0', () => {
    expect(new WorkerPlacement().place(undefined, A, B)).toBe(0);
  });
});

const running: Gateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
});

const until = (cond: () => boolean) => waitFor(cond, { timeoutMs: 15000, intervalMs: 10 });

describe('gateways: each Child SA lives on the worker its inbound SPI names', () => {
  it('a clone family of 2 over 2 workers: one member per worker on each side, SPIs carrying that worker; a rekey keeps it', async () => {
    const { initiator, responder } = loopbackPair({ initiatorExtra: { clone: { per: 'worker', count: 2 } } });
    for (const c of [initiator, responder]) {
      c.dataplane.workers = 2;
      c.dataplane.esp = 'udp';
    }
    const gw = new Gateway({ config: responder, log: silentLogger() });
    const client = new Gateway({ config: initiator, log: silentLogger(), spiPrefix: 7 });
    running.push(gw, client);
    await gw.start();
    await client.start();
    const complete = new Promise((r) => client.cloner.once('family-complete', r));
    await client.up('gw');
    await complete;
    const children = (g: Gateway) => g.engine.ikeSas().flatMap((sa) => sa.children).filter((c) => c.state === 'installed');
    await until(() => [gw, client].every((g) => children(g).length === 2 && children(g).every((c) => g.dataPlane.ownerOf(c.id) !== undefined)));
    for (const [g, node] of [[gw, 0], [client, 7]] as const) {
      const owners = children(g).map((c) => {
        expect(espSpiNode(c.spiIn)).toBe(node);
        expect(g.dataPlane.ownerOf(c.id)).toBe(espSpiWorker(c.spiIn));
        return espSpiWorker(c.spiIn);
      });
      expect(owners.sort()).toEqual([0, 1]);
    }
    // A rekey: the successor's SPI names the old one's worker, and it is installed there.
    const old = children(client).find((c) => espSpiWorker(c.spiIn) === 1)!;
    const peerOld = children(gw).find((c) => c.spiOut === old.spiIn)!;
    const next = await client.engine.rekeyChildSa(old);
    await until(() => client.dataPlane.ownerOf(next.id) !== undefined);
    expect(espSpiWorker(next.spiIn)).toBe(1);
    expect(client.dataPlane.ownerOf(next.id)).toBe(1);
    // The responder's half of the new SA: on its predecessor's worker too, named by its own SPI.
    const peerNext = () => gw.engine.ikeSas().flatMap((sa) => sa.children).find((c) => c.spiOut === next.spiIn);
    await until(() => peerNext() !== undefined && gw.dataPlane.ownerOf(peerNext()!.id) !== undefined);
    expect(gw.dataPlane.ownerOf(peerNext()!.id)).toBe(espSpiWorker(peerNext()!.spiIn));
    expect(espSpiWorker(peerNext()!.spiIn)).toBe(espSpiWorker(peerOld.spiIn));
  });
});
