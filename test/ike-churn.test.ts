// Churn: 10,000 Child SA create / rekey / delete cycles (and an IKE SA rekey
// every 1,000) between two engines in memory. Afterwards the tables, timers
// and reserved SPIs are back where they started, and the heap has not grown
// beyond a small bound (architecture §4.6: bounded resources, nothing kept for SAs
// that are gone).
import { describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MemoryWire, pskPair } from './support/peers.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';

const CYCLES = 10_000;
const WARMUP = 500;
const MAX_GROWTH = 10 * 1024 * 1024;

/** A handle on V8's collector without --expose-gc on the command line. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    for (let i = 0; i < 4; i++) gc();
  };
}

function footprint(e: IkeEngine) {
  return {
    sas: e.sas.size,
    children: e.childrenBySpi.size,
    reserved: e.reservedSpis.size,
    halfOpen: e.halfOpenCount(),
    tracked: e.lifetimes.trackedChildren,
    held: e.deletion.heldSpis,
  };
}

describe('churn: Child SA create/rekey/delete cycles in memory', () => {
  it(`${CYCLES} cycles leave no state behind and grow the heap by less than ${MAX_GROWTH / 1024 / 1024} MB`, async () => {
    const gc = collector();
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    // Lifetimes on the children, so that every Child SA arms (and must disarm) timers.
    initiator.children = [{ ...initiator.children[0]!, rekeyTime: 3_600_000, randTime: 60_000 }];
    responder.children = [{ ...responder.children[0]!, rekeyTime: 3_600_000, lifeTime: 4_000_000 }];
    initiator.dpdDelay = 60_000;
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    const up = alice.initiate('to-bob');
    wire.run(100);
    let sa: IkeSa = await up;
    const ups = { alice: 0, bob: 0 };
    alice.on('child-up', () => ups.alice++);
    bob.on('child-up', () => ups.bob++);

    const cycle = async (i: number) => {
      const created = alice.createChildSa(sa, 'net', { pfs: false });
      wire.flush();
      const child = await created;
      const rekeyed = (i & 1) === 0 ? alice.rekeyChildSa(child, { pfs: false }) : bob.rekeyChildSa(bob.childrenBySpi.get(child.spiOut)!, { pfs: false });
      wire.flush();
      const fresh = await rekeyed;
      const closed = (i & 2) === 0 ? alice.closeChildSa(alice.childrenBySpi.get(fresh.spiIn) ?? alice.childrenBySpi.get(fresh.spiOut)!) : bob.closeChildSa(bob.childrenBySpi.get(fresh.spiIn) ?? bob.childrenBySpi.get(fresh.spiOut)!);
      wire.flush();
      await closed;
      if (i % 1000 === 999) {
        const r = alice.rekeyIkeSa(sa);
        wire.flush();
        sa = await r;
      }
      wire.log.length = 0;
    };

    for (let i = 0; i < WARMUP; i++) await cycle(i);
    const before = { alice: footprint(alice), bob: footprint(bob) };
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    for (let i = WARMUP; i < WARMUP + CYCLES; i++) await cycle(i);
    const ms = performance.now() - t0;
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    const growth = heapAfter - heapBefore;
    process.stdout.write(
      `churn: ${CYCLES} cycles (create, rekey, delete; ${CYCLES / 1000} IKE rekeys) in ${Math.round(ms)} ms, ` +
        `${Math.round((CYCLES * 1000) / ms)} cycles/s; heap ${(heapBefore / 1048576).toFixed(1)} -> ${(heapAfter / 1048576).toFixed(1)} MB (${(growth / 1048576).toFixed(2)} MB)\n`,
    );
    expect(ups.alice).toBe(2 * (WARMUP + CYCLES));
    expect(ups.bob).toBe(2 * (WARMUP + CYCLES));
    // Back to the start: one IKE SA and its first Child SA on each end, nothing reserved, tracked or held.
    expect({ alice: footprint(alice), bob: footprint(bob) }).toEqual(before);
    expect(footprint(alice)).toEqual({ sas: 1, children: 1, reserved: 0, halfOpen: 0, tracked: 1, held: 0 });
    // Armed timers: the last Child SA's soft and hard limits on each end, and alice's liveness check.
    expect(wire.clock.pending()).toBe(5);
    expect(alice.ikeSas()).toEqual([sa]);
    expect(sa.children).toHaveLength(1);
    expect(growth).toBeLessThan(MAX_GROWTH);
  }, 60_000);
});
