// One worker choice per Child SA: the RFC 9611 / parallel placement of a
// per-worker Child SA (per-resource.ts, child-spread.ts) is a hint passed
// into the SPI placement (ChildSpiRequest.preferredWorker), which takes it
// when the worker has room, so the SPI and the RFC 9611 placement agree.
import { describe, expect, it } from 'vitest';
import { WorkerPlacement } from '../dataplane/placement.js';
import { Sad } from '../dataplane/sad.js';
import type { Selector } from '../dataplane/packet.js';
import { ChildSpreader } from '../control/ike/child-spread.js';
import type { ChildSpiRequest } from '../control/ike/child-spi.js';
import type { ChildSa, IkeSa } from '../control/ike/ike-sa.js';
import { MemoryWire, pskPair } from './support/peers.js';

const sel = (first: number): Selector[] => [{ ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: new Uint8Array([10, first, 0, 0]), endAddress: new Uint8Array([10, first, 0, 255]) } as Selector];

describe('WorkerPlacement takes a per-worker placement\'s worker as a hint', () => {
  it('a preferred worker with room is taken; out of range, full or a rekey: the usual choice', () => {
    const sad = new Sad(3, 4);
    const p = new WorkerPlacement();
    expect(p.place(sad, sel(1), sel(2), undefined, 2)).toBe(2);
    expect(p.place(sad, sel(1), sel(2), undefined, 2)).toBe(2); // a hint wins over spreading the family
    expect(p.place(sad, sel(1), sel(2), undefined, 7)).toBe(0); // no such worker: least loaded
    sad.slots[1]!.take();
    sad.slots[1]!.take();
    sad.slots[1]!.take();
    expect(p.place(sad, sel(3), sel(4), undefined, 1)).not.toBe(1); // no two free slots there
  });
});

describe('RFC 9611 per-resource Child SAs draw their SPIs for the worker they are placed on', () => {
  it('initiator: the spread asks for worker k; responder: the least-loaded worker it then pins the SA to', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ initiator: { clone: { per: 'worker', count: 3, nics: [] } }, responder: { cloneSupport: false } });
    responder.children = [{ ...responder.children[0]!, perCpuSas: true, perCpuSasMax: 3 }];
    const asked = { alice: [] as ChildSpiRequest[], bob: [] as ChildSpiRequest[] };
    // The placement answers with the hint (or worker 0), as the data plane does when the worker has room.
    const placement = (who: 'alice' | 'bob') => (r: ChildSpiRequest) => (asked[who].push(r), { node: 0, worker: r.preferredWorker ?? 0 });
    const alice = wire.engine('10.0.0.1', [initiator], { childSpiPlacement: placement('alice') });
    const bob = wire.engine('10.0.0.2', [responder], { childSpiPlacement: placement('bob') });
    new ChildSpreader(alice).start();
    new ChildSpreader(bob).start();
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const sa: IkeSa = await up;
    await wire.settle(1500);
    const perResource = (s: IkeSa): ChildSa[] => s.children.filter((c) => c.state === 'installed' && c.placement?.kind === 'per-resource');
    expect(perResource(sa).map((c) => c.placement!.worker).sort()).toEqual([0, 1, 2]);
    // alice: the fallback SA without a hint, then worker 0, 1, 2.
    expect(asked.alice.map((r) => r.preferredWorker)).toEqual([undefined, 0, 1, 2]);
    const bobSa = bob.ikeSas().find((s) => s.state === 'established')!;
    const bobs = perResource(bobSa);
    expect(bobs).toHaveLength(3);
    // bob's hints were the workers it pinned each SA to (RFC 9611 §4), and its SPIs were drawn for them.
    expect(asked.bob.map((r) => r.preferredWorker)).toEqual([undefined, ...bobs.map((c) => c.placement!.worker)]);
    expect(bobs.map((c) => c.placement!.worker).sort()).toEqual([0, 1, 2]);
  });
});
