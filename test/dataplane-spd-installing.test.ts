// The SPD's senders while an SA installs (dataplane/spd.ts senders): an SA
// that sends from the moment its install is posted is named only to its
// owner worker while others of its family can send, so no packet handed to
// the owner from elsewhere can overtake the install; named to everyone when
// nothing else of the family can send. RFC 9611 per-resource SAs keep the
// family's other SAs out, except while the only per-resource one installs.
import { describe, expect, it } from 'vitest';
import { Spd } from '../dataplane/spd.js';
import type { SaRecord } from '../dataplane/sad.js';

const NET = { start: new Uint8Array([10, 0, 0, 0]), end: new Uint8Array([10, 0, 0, 255]), protocol: 0, portStart: 0, portEnd: 65535 };

function sa(id: number, worker: number, state: SaRecord['state'], perResource = false): SaRecord {
  return { id, worker, outSlot: id, outTag: id, familyKey: 'f', localTs: [NET], remoteTs: [NET], perResource, state } as unknown as SaRecord;
}

const senders = (spd: Spd, worker?: number) => spd.policyTable(worker)[0]!.senders.map((s) => s.slot);

describe('SPD senders while an SA installs', () => {
  it('an installing SA is named to its owner only while a sibling can send, to everyone once active', () => {
    const spd = new Spd();
    const old = sa(1, 0, 'active');
    const fresh = sa(2, 1, 'installing');
    spd.add(old);
    spd.add(fresh);
    expect(senders(spd, 1)).toEqual([1, 2]);
    expect(senders(spd, 0)).toEqual([1]);
    expect(senders(spd)).toEqual([1]);
    fresh.state = 'active';
    expect(senders(spd, 0)).toEqual([1, 2]);
    expect(senders(spd)).toEqual([1, 2]);
  });

  it('the only SA of its family is named to everyone while it installs', () => {
    const spd = new Spd();
    spd.add(sa(3, 1, 'installing'));
    expect(senders(spd, 0)).toEqual([3]);
    expect(senders(spd)).toEqual([3]);
  });

  it('a per-resource SA still installing: the other workers keep the family\'s other SAs until it is in', () => {
    const spd = new Spd();
    const fallback = sa(4, 0, 'active');
    const perWorker = sa(5, 1, 'installing', true);
    spd.add(fallback);
    spd.add(perWorker);
    expect(senders(spd, 1)).toEqual([5]);
    expect(senders(spd, 0)).toEqual([4]);
    perWorker.state = 'active';
    expect(senders(spd, 0)).toEqual([5]);
  });

  it('every worker\'s table at once is each worker\'s own view; a family with nothing installing is built once', () => {
    const spd = new Spd();
    const other = { start: new Uint8Array([10, 1, 0, 0]), end: new Uint8Array([10, 1, 0, 255]), protocol: 0, portStart: 0, portEnd: 65535 };
    spd.add(sa(1, 0, 'active'));
    spd.add(sa(2, 1, 'installing'));
    spd.add({ ...sa(3, 0, 'active'), familyKey: 'g', localTs: [other], remoteTs: [other] } as SaRecord);
    const tables = spd.policyTables([0, 1]);
    for (const w of [0, 1]) expect(tables.get(w)).toEqual(spd.policyTable(w));
    expect(tables.get(0)![0]!.senders.map((x) => x.slot)).toEqual([1]);
    expect(tables.get(1)![0]!.senders.map((x) => x.slot)).toEqual([1, 2]);
    expect(tables.get(0)![1]).toBe(tables.get(1)![1]);
  });

  it('refresh() tells the workers\' copies again', () => {
    const spd = new Spd();
    let changes = 0;
    spd.onChange = () => changes++;
    spd.refresh();
    expect(changes).toBe(1);
  });
});
