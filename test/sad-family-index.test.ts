// The SAD's per-family index and per-worker counts (dataplane/sad.ts) against
// a scan of every SA: the install path asks them on every install, so they
// must agree with the SAD after any sequence of adds and deletes.
import { describe, expect, it } from 'vitest';
import { Sad, familyKey, type SaRecord } from '../dataplane/sad.js';
import type { Selector } from '../dataplane/packet.js';

function selector(first: number): Selector {
  return { ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: new Uint8Array([10, first, 0, 0]), endAddress: new Uint8Array([10, first, 0, 255]) } as Selector;
}
const FAMILIES = [1, 2, 3].map((n) => ({ localTs: [selector(n)], remoteTs: [selector(100 + n)] }));

function add(sad: Sad, id: number, worker: number, f: (typeof FAMILIES)[number]): SaRecord {
  const i = sad.slots[worker]!.take()!;
  const o = sad.slots[worker]!.take()!;
  const r: SaRecord = {
    id, worker, inSlot: i.slot, inTag: i.tag, outSlot: o.slot, outTag: o.tag, spiIn: 0x1000 + id, spiOut: 0x9000 + id, ...f,
    familyKey: familyKey(f.localTs, f.remoteTs), local: { address: '127.0.0.1', port: 4500 }, remote: { address: '127.0.0.2', port: 4500 },
    udpEncap: true, transport: 'udp', outbound: true, perResource: false, replaces: [], activatedAt: 1, state: 'active',
  };
  sad.add(r);
  return r;
}

/** chooseOwner as a scan of every SA: the fewest of the family, then the fewest in all, then the lowest index. */
function ownerByScan(sad: Sad, family: string): number | undefined {
  let best: number | undefined;
  const count = (w: number, f?: string) => sad.all().filter((r) => r.worker === w && (f === undefined || r.familyKey === f)).length;
  for (let w = 0; w < sad.workers; w++) {
    if (sad.slots[w]!.available < 2) continue;
    if (best === undefined || count(w, family) < count(best, family) || (count(w, family) === count(best, family) && count(w) < count(best))) best = w;
  }
  return best;
}

describe('Sad family index', () => {
  it('family() and chooseOwner agree with a scan of every SA through 2,000 random adds and deletes', () => {
    const sad = new Sad(3, 64);
    const live: SaRecord[] = [];
    let seed = 12345;
    const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    let id = 0;
    for (let step = 0; step < 2000; step++) {
      const f = FAMILIES[rand(FAMILIES.length)]!;
      const worker = rand(3);
      if ((live.length === 0 || rand(3) > 0) && sad.slots[worker]!.available >= 2) live.push(add(sad, ++id, worker, f));
      else if (live.length > 0) sad.delete(live.splice(rand(live.length), 1)[0]!);
      for (const g of FAMILIES) {
        const key = familyKey(g.localTs, g.remoteTs);
        const scanned = sad.all().filter((r) => r.familyKey === key);
        expect([...sad.family(key)].sort((a, b) => a.id - b.id)).toEqual(scanned.sort((a, b) => a.id - b.id));
        expect(sad.chooseOwner(key)).toBe(ownerByScan(sad, key));
      }
    }
    // Everything deleted: no family is left behind in the index.
    for (const r of live.splice(0)) sad.delete(r);
    for (const g of FAMILIES) expect(sad.family(familyKey(g.localTs, g.remoteTs)).size).toBe(0);
    expect(sad.chooseOwner(familyKey(FAMILIES[0]!.localTs, FAMILIES[0]!.remoteTs))).toBe(0);
  });

  it('a record deleted twice, or one never added, leaves the counts alone', () => {
    const sad = new Sad(2, 8);
    const f = FAMILIES[0]!;
    const key = familyKey(f.localTs, f.remoteTs);
    const a = add(sad, 1, 0, f);
    add(sad, 2, 1, FAMILIES[1]!);
    sad.delete(a);
    sad.delete(a);
    expect(sad.family(key).size).toBe(0);
    // Worker 0 owns nothing now, worker 1 one SA of another family: worker 0 is chosen.
    expect(sad.chooseOwner(key)).toBe(0);
    add(sad, 3, 0, FAMILIES[1]!);
    add(sad, 4, 0, FAMILIES[2]!);
    // Worker 0: two SAs, worker 1: one; none of family 0 anywhere: the fewest in all wins.
    expect(sad.chooseOwner(key)).toBe(1);
  });
});
