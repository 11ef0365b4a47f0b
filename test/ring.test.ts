// The packet rings between the I/O thread and the workers (dataplane/ring.ts):
// cells in order across the wrap, a full ring refusing, and the doorbell the
// I/O thread sleeps on for every worker's out ring at once.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { CellKind, Doorbell, RingReader, RingWriter, createRing, metaKind, metaSlot, metaTag } from '../dataplane/ring.js';

describe('packet ring', () => {
  it('carries cells in order across the wrap, with slot, kind and tag; a full ring refuses', () => {
    const ring = createRing(4, 64);
    const w = new RingWriter(ring);
    const r = new RingReader(ring);
    let sent = 0;
    let received = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3; i++, sent++) expect(w.push(Uint8Array.of(sent, sent + 1), sent & 0xffff, CellKind.ENCAP, sent & 0xff)).toBe(true);
      expect(r.available()).toBe(0); // staged, not yet published
      w.publish();
      expect(r.available()).toBe(3);
      for (let i = 0; i < 3; i++, received++) {
        expect(r.payload(i)).toEqual(Uint8Array.of(received, received + 1));
        expect([metaSlot(r.meta(i)), metaKind(r.meta(i)), metaTag(r.meta(i))]).toEqual([received, CellKind.ENCAP, received]);
      }
      r.release(3);
    }
    for (let i = 0; i < 4; i++) expect(w.push(Uint8Array.of(i), 0, CellKind.DECAP, 0)).toBe(true);
    expect(w.push(Uint8Array.of(9), 0, CellKind.DECAP, 0)).toBe(false);
    expect(w.push(new Uint8Array(64 - 8 + 1), 0, CellKind.DECAP, 0)).toBe(false); // larger than a cell
  });
});

describe('doorbell', () => {
  it('a writer with a doorbell rings it on every publish that makes cells visible', () => {
    const bell = new Doorbell();
    const w = new RingWriter(createRing(4, 64), bell);
    const before = bell.value();
    w.publish(); // nothing staged
    expect(bell.value()).toBe(before);
    w.push(Uint8Array.of(1), 0, CellKind.ESP, 0);
    w.publish();
    expect(bell.value()).toBe(before + 1);
  });

  it('wait() returns at once when the bell rang after value() was read, and after the timeout when it did not', async () => {
    const bell = new Doorbell();
    const seen = bell.value();
    bell.ring();
    const t0 = performance.now();
    await bell.wait(seen, 5000);
    expect(performance.now() - t0).toBeLessThan(1000);
    const t1 = performance.now();
    await bell.wait(bell.value(), 50);
    expect(performance.now() - t1).toBeGreaterThanOrEqual(40);
  });

  it('wakes a waiting reader when another thread publishes', async () => {
    const bell = new Doorbell();
    const ring = createRing(4, 64);
    const reader = new RingReader(ring);
    const seen = bell.value();
    // The other thread runs the built module (a worker thread cannot load TypeScript).
    const built = new URL('../dist/dataplane/ring.js', import.meta.url).href;
    const thread = new Worker(
      `const { workerData } = require('node:worker_threads');
       import(workerData.built).then(({ Doorbell, RingWriter, CellKind }) => {
         const writer = new RingWriter(workerData.ring, new Doorbell(workerData.bell));
         setTimeout(() => {
           writer.push(Uint8Array.of(7), 1, CellKind.INNER, 2);
           writer.publish();
         }, 100);
       });`,
      { eval: true, workerData: { built, ring, bell: bell.sab } },
    );
    try {
      const t0 = performance.now();
      await bell.wait(seen, 10_000);
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(reader.available()).toBe(1);
      expect(reader.payload(0)).toEqual(Uint8Array.of(7));
    } finally {
      await thread.terminate();
    }
  });
});
