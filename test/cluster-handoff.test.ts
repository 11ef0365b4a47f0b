// Clone handoff and fencing through a real etcd (control/cluster/handoff.ts):
// engines in memory (a client, nodes A and B), etcd as the Debian binary with
// TLS. A hands its clone to B in one transaction; B's watch imports it, the
// client moves it with UPDATE_SA_ADDRESSES and B creates its Child SA; every
// request on an owned clone is covered by a fencing write (its own, or for an
// arrival's requests the handoff's transaction); records hold no
// key bytes in the clear; a record copied under another key path is refused.
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { CloneHandoff, ownerValue } from '../control/cluster/handoff.js';
import { ClusterKey } from '../control/cluster/seal.js';
import { etcdClient } from '../control/cluster/etcd-client.js';
import { decodeTransferRecord, type ArrivalResult } from '../control/ike/sa-transfer.js';
import type { ArrivalTimeline } from '../control/cluster/handoff-timeline.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { silentLogger } from '../control/log.js';
import { CLIENT, NODE_A, NODE_B, cluster, drive, ikeMessages } from './support/cluster-peers.js';
import { startEtcd, type EtcdServer } from './support/etcd.js';
import { interopTest, requirePrereqs } from './support/prereq.js';
import { run, waitFor } from './support/proc.js';
import { readClusterState, sealingStatus } from '../control/cluster/status.js';
import { moveClone } from '../control/cluster/rebalance.js';

let etcd: EtcdServer | undefined;
const clients: Etcd3[] = [];

beforeAll(async () => {
  if (requirePrereqs(['etcd']).ok) etcd = await startEtcd({ tls: true });
}, 60_000);
afterAll(async () => {
  for (const c of clients) c.close();
  await etcd?.stop();
});

/** Nodes A and B with the client's clone on A; `keys` gives each node its own key (a rotation), else both share one. */
async function setup(keys?: (name: string) => { a: ClusterKey; b: ClusterKey }) {
  const name = `h-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const keyOf = keys?.(name) ?? { a: key, b: key };
  const handoffs: { a?: CloneHandoff; b?: CloneHandoff } = {};
  const c = await cluster({
    a: { holdRequest: (sa) => handoffs.a?.holdRequest(sa) ?? false },
    b: { holdRequest: (sa) => handoffs.b?.holdRequest(sa) ?? false },
  });
  const client = () => {
    const cl = etcdClient({ etcd: [etcd!.endpoint], tls: etcd!.tls! });
    clients.push(cl);
    return cl;
  };
  const log = silentLogger();
  const a = new CloneHandoff({ engine: c.nodeA, client: client(), key: keyOf.a, cluster: name, node: 'a', address: NODE_A, log });
  const b = new CloneHandoff({ engine: c.nodeB, client: client(), key: keyOf.b, cluster: name, node: 'b', address: NODE_B, log });
  handoffs.a = a;
  handoffs.b = b;
  await a.start();
  await b.start();
  const arrivals: Array<{ sa: IkeSa; result: ArrivalResult; timeline: ArrivalTimeline }> = [];
  b.on('arrived', (sa, result, _origin, timeline) => arrivals.push({ sa, result, timeline }));
  await a.adopt(c.clone, 'fam1', 1);
  const arrivalsOnA: Array<{ sa: IkeSa; result: ArrivalResult }> = [];
  a.on('arrived', (sa, result) => arrivalsOnA.push({ sa, result }));
  return { ...c, name, key, keyOf, a, b, arrivals, arrivalsOnA, etcdOf: client() };
}

describe('clone handoff through etcd', () => {
  interopTest('A hands its clone to B in one transaction; B imports it, the client follows, B creates the Child SA', ['etcd'], async () => {
    const s = await setup();
    // A fencing write precedes A's own request on the clone.
    const alive = s.nodeA.checkLiveness(s.clone);
    let answered: boolean | undefined;
    void alive.then((v) => (answered = v));
    expect(s.wire.queue).toHaveLength(0); // held until the write is done
    await drive(s.wire, () => answered !== undefined, 'the liveness check on A');
    expect(answered).toBe(true);
    expect(s.a.stats.writes).toBe(1);

    const epoch = await s.a.handOff(s.clone, 'b');
    expect(epoch).toBe(1);
    expect(s.clone.state).toBe('dead');
    await drive(s.wire, () => s.arrivals.length > 0, 'the clone to arrive on B');
    expect(s.arrivals[0]!.result).toMatchObject({ ok: true });
    const onB = s.arrivals[0]!.sa;
    expect(onB.local.address).toBe(NODE_B);
    expect(s.clientClone.remote.address).toBe(NODE_B);
    expect(s.clientClone.children).toHaveLength(1);
    expect(s.b.ownedClones()).toEqual([{ sa: onB, family: 'fam1', index: 1, epoch: 1 }]);
    // The handoff transaction fenced B's arrival requests (address list, CREATE_CHILD_SA); B rewrites the
    // record once its Child SA is up (its SPIs, the client's message ID).
    expect(s.b.stats.writes).toBeGreaterThanOrEqual(1);
    expect(await s.etcdOf.get(`/ikeclone/v1/${s.name}/clones/fam1/1/owner`).string()).toBe(ownerValue({ node: 'b', epoch: 1 }));

    // No (IKE SPI, message ID) pair from two addresses, with the etcd round trips in between.
    const sources = new Map<string, Set<string>>();
    for (const m of ikeMessages(s.wire)) {
      const k = `${m.spis}/${m.mid}/${m.response}/${m.byOriginalInitiator}`;
      sources.set(k, (sources.get(k) ?? new Set()).add(m.from));
    }
    expect([...sources.values()].filter((v) => v.size > 1)).toEqual([]);

    // etcd holds no key bytes in the clear (etcdctl's view of the whole cluster prefix).
    const keys = onB.keys!;
    const ctl = await run('etcdctl', [...etcd!.ctlArgs(), 'get', '--prefix', `/ikeclone/v1/${s.name}/`, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    const values = (JSON.parse(ctl.stdout) as { kvs: Array<{ value: string }> }).kvs.map((kv) => Buffer.from(kv.value, 'base64'));
    expect(values.length).toBeGreaterThanOrEqual(2);
    for (const secret of [keys.skD, keys.skEi, keys.skEr]) {
      const raw = Buffer.from(secret);
      for (const v of values) {
        expect(v.includes(raw.subarray(0, 12))).toBe(false);
        expect(v.toString('latin1').includes(raw.toString('hex').slice(0, 24))).toBe(false);
        expect(v.toString('latin1').includes(raw.toString('base64').slice(0, 16))).toBe(false);
      }
    }
  }, 60_000);

  interopTest('a sealing key rotation under way: each node seals under its current key and opens the other\'s through its previous one; a record written again is under the new key', ['etcd'], async () => {
    const [oldSecret, newSecret] = [randomBytes(32), randomBytes(32)];
    // Step 1 of a rotation on A (the old key current, the new one accepted), step 2 on B (the new one current).
    const s = await setup((name) => ({
      a: ClusterKey.derive(oldSecret, name).withPrevious([ClusterKey.derive(newSecret, name)]),
      b: ClusterKey.derive(newSecret, name).withPrevious([ClusterKey.derive(oldSecret, name)]),
    }));
    const sealing = async (key: ClusterKey) => {
      const { status, records } = await readClusterState(s.etcdOf, s.name);
      return sealingStatus(s.name, status, records, key);
    };
    const [oldOnly, newOnly] = [ClusterKey.derive(oldSecret, s.name), ClusterKey.derive(newSecret, s.name)];
    expect(await sealing(oldOnly)).toEqual({ current: 1, previous: 0, unopened: 0 });

    await s.a.handOff(s.clone, 'b');
    await drive(s.wire, () => s.arrivals.length > 0, 'the clone to arrive on B');
    expect(s.arrivals[0]!.result).toMatchObject({ ok: true });
    expect(s.clientClone.remote.address).toBe(NODE_B);
    expect(s.clientClone.children).toHaveLength(1);
    // A sealed it under the old key: B opened it with its previous one.
    expect(s.keyOf.b.openedWithPrevious).toBe(1);
    // B wrote the record again once the Child SA was up: under the new key now, which the old one alone does not open.
    await waitFor(async () => (await sealing(newOnly)).current === 1, { timeoutMs: 5000, intervalMs: 50, message: "B's record under the new key" });
    expect(await sealing(oldOnly)).toEqual({ current: 0, previous: 0, unopened: 1 });
    expect(await sealing(s.keyOf.a)).toEqual({ current: 0, previous: 1, unopened: 0 });

    // Back to A, which opens B's record with its previous key (the new one).
    // Its Child SA is deleted first (a clone moves without one, RFC 7791 §5.2).
    let moved: number | undefined;
    void moveClone(s.nodeB, s.b, s.arrivals[0]!.sa, 'a').then((e) => (moved = e));
    await drive(s.wire, () => moved !== undefined && s.arrivalsOnA.length > 0, 'the clone back on A');
    expect(moved).toBe(2);
    expect(s.arrivalsOnA[0]!.result).toMatchObject({ ok: true });
    expect(s.keyOf.a.openedWithPrevious).toBe(1);
    expect(s.clientClone.remote.address).toBe(NODE_A);
    expect(s.b.stats.refused.seal + s.a.stats.refused.seal).toBe(0);
  }, 60_000);

  interopTest('a record copied under another key path is refused, counted, and never installed', ['etcd'], async () => {
    const s = await setup();
    await s.a.handOff(s.clone, 'b');
    await drive(s.wire, () => s.arrivals.length > 0, 'the arrival');
    const prefix = `/ikeclone/v1/${s.name}/clones/`;
    // Sealed for (fam1/1, epoch 1, owner b): only the key path will differ.
    const sealed = await s.etcdOf.get(`${prefix}fam1/1/ike`).buffer();
    const refused: string[] = [];
    s.b.on('refused', (_key, reason) => refused.push(reason));
    const before = s.nodeB.ikeSas().length;
    await s.etcdOf.put(`${prefix}fam2/1/ike`).value(sealed!);
    await s.etcdOf.put(`${prefix}fam2/1/owner`).value(ownerValue({ node: 'b', epoch: 1 }));
    await drive(s.wire, () => refused.length > 0, 'the refusal');
    expect(refused).toEqual(['seal']);
    expect(s.b.stats.refused.seal).toBe(1);
    expect(s.nodeB.ikeSas()).toHaveLength(before);
    expect(s.b.refusedEpoch('fam2', 1)).toBe(1);
    expect(s.b.isArriving('fam2', 1)).toBe(false);
    // The same epoch named again is not tried (nor counted) again; a later epoch is a new record, tried.
    await s.etcdOf.put(`${prefix}fam2/1/owner`).value(ownerValue({ node: 'b', epoch: 1 }));
    await s.etcdOf.put(`${prefix}fam2/1/owner`).value(ownerValue({ node: 'b', epoch: 3 }));
    await drive(s.wire, () => refused.length > 1, 'the refusal at epoch 3');
    expect(s.b.stats.refused.seal).toBe(2);
    expect(s.b.refusedEpoch('fam2', 1)).toBe(3);
    // Another clone of the family at another epoch does not open either.
    await s.etcdOf.put(`${prefix}fam1/2/ike`).value(sealed!);
    await s.etcdOf.put(`${prefix}fam1/2/owner`).value(ownerValue({ node: 'b', epoch: 2 }));
    await drive(s.wire, () => refused.length > 2, 'the third refusal');
    expect(s.b.stats.refused.seal).toBe(3);
    expect(s.nodeB.ikeSas()).toHaveLength(before);
  }, 60_000);

  interopTest('the handoff transaction fences every request of B\'s arrival (address list, CREATE_CHILD_SA): none waits for a write; every step is timed', ['etcd'], async () => {
    const s = await setup();
    const next = s.clone.nextRequestId;
    const spiHex = Buffer.from(s.clone.spiI).toString('hex');
    await s.a.handOff(s.clone, 'b');
    // The record the transaction wrote (at the owner key's revision: B rewrites it soon after), as B opens it:
    // B starts at `next`, anyone after B above its arrival's requests.
    const ownerKv = await s.etcdOf.get(`/ikeclone/v1/${s.name}/clones/fam1/1/owner`).exec();
    const sealed = await s.etcdOf.get(`/ikeclone/v1/${s.name}/clones/fam1/1/ike`).revision(ownerKv.kvs[0]!.mod_revision).buffer();
    const opened = s.key.open({ keyPath: `/ikeclone/v1/${s.name}/clones/fam1/1/ike`, epoch: 1, owner: 'b' }, new Uint8Array(sealed!));
    if (!opened.ok) throw new Error(opened.error);
    const record = decodeTransferRecord(opened.value);
    expect(record.ok && record.value.state).toMatchObject({ nextRequestId: next, fencedNextRequestId: next + 2 });
    const writesBefore = s.b.stats.writes;
    await drive(s.wire, () => s.arrivals.length > 0, 'the arrival');
    const { result, timeline } = s.arrivals[0]!;
    expect(result).toMatchObject({ ok: true });
    // B's requests: message IDs from `next` on, none skipped.
    const fromB = ikeMessages(s.wire).filter((m) => m.spis.startsWith(spiHex) && m.from === NODE_B && !m.response);
    expect(fromB.map((m) => m.mid)).toEqual([next, next + 1]);
    // No request of the arrival waited for a fencing write (the record is rewritten once the Child SA is up).
    expect(timeline.fencing).toEqual({ heldMs: 0, holds: 0 });
    expect(s.b.stats.writes - writesBefore).toBeGreaterThanOrEqual(1);
    const at = timeline.at;
    const order = [at.seen, at.read, at.imported, at.pathTest, at.addressList, at.update, at.child];
    expect(order.every((t) => typeof t === 'number')).toBe(true);
    expect(order.every((t, i) => i === 0 || t! >= order[i - 1]!)).toBe(true);
    // The clone's record in etcd now covers every ID B sent: a node taking it over starts above them.
    await drive(s.wire, () => s.b.ownedClones().length === 1 && !s.arrivals[0]!.sa.outstanding, 'B idle');
    const again = await s.etcdOf.get(`/ikeclone/v1/${s.name}/clones/fam1/1/ike`).buffer();
    const o2 = s.key.open({ keyPath: `/ikeclone/v1/${s.name}/clones/fam1/1/ike`, epoch: 1, owner: 'b' }, new Uint8Array(again!));
    if (!o2.ok) throw new Error(o2.error);
    const r2 = decodeTransferRecord(o2.value);
    expect(r2.ok && r2.value.state.nextRequestId).toBeGreaterThanOrEqual(next + 2);
  }, 60_000);

  interopTest('a failed fencing write drops the clone locally (wiped, Child SAs deleted); nothing is sent', ['etcd'], async () => {
    const s = await setup();
    await s.a.handOff(s.clone, 'b');
    await drive(s.wire, () => s.arrivals.length > 0, 'the arrival');
    const onB = s.arrivals[0]!.sa;
    const children = [...onB.children];
    expect(children).toHaveLength(1);
    // Another node took the clone over behind B's back (a higher epoch).
    await s.etcdOf.put(`/ikeclone/v1/${s.name}/clones/fam1/1/owner`).value(ownerValue({ node: 'a', epoch: 7 }));
    const sent = s.wire.log.length;
    const fenced: string[] = [];
    s.b.on('fenced', (_sa, reason) => fenced.push(reason));
    void s.nodeB.checkLiveness(onB);
    await drive(s.wire, () => fenced.length > 0, 'the fencing failure');
    expect(fenced[0]).toMatch(/ownership of fam1\/1 epoch 1 lost/);
    expect(onB.state).toBe('dead');
    expect(onB.keys).toBeUndefined();
    expect(children.every((ch) => ch.state === 'deleted')).toBe(true);
    expect(s.wire.log.slice(sent).filter((d) => d.local.address === NODE_B)).toEqual([]);
    expect(s.b.stats.fenced).toBe(1);
  }, 60_000);

  interopTest('a fencing write etcd gives no verdict on (an error, not a refusal) holds the request and is tried again: the clone stays', ['etcd'], async () => {
    const s = await setup();
    await s.a.handOff(s.clone, 'b');
    await drive(s.wire, () => s.arrivals.length > 0, 'the arrival');
    const onB = s.arrivals[0]!.sa;
    // B's next transaction fails as a call (an election, a deadline), without a verdict.
    const client = (s.b as unknown as { opts: { client: Etcd3 } }).opts.client;
    const realIf = client.if.bind(client);
    let failures = 1;
    client.if = ((...args: Parameters<Etcd3['if']>) => {
      const builder = realIf(...args);
      if (failures-- > 0) builder.commit = () => Promise.reject(new Error('deadline exceeded'));
      return builder;
    }) as Etcd3['if'];
    const writes = s.b.stats.writes;
    let alive: boolean | undefined;
    void s.nodeB.checkLiveness(onB).then((ok) => (alive = ok));
    await drive(s.wire, () => alive !== undefined, 'the liveness check');
    expect(alive).toBe(true);
    // Held through the failed write, sent after the one that was written.
    expect(s.b.stats.writes).toBe(writes + 2);
    expect(s.b.stats.fenced).toBe(0);
    expect(onB.state).toBe('established');
    expect(s.b.owns(onB)).toBe(true);
  }, 60_000);

  interopTest('a clone that ends while it is adopted is not registered, and its new keys go from etcd', ['etcd'], async () => {
    const s = await setup();
    const adopted = s.b.adopt(s.clone, 'fam9', 1).then(() => 'adopted', (err: Error) => err.message);
    // It ends before the transaction is back (the client deleted it right after it was made).
    s.clone.setState('dead', silentLogger());
    expect(await adopted).toMatch(/ended while it was adopted/);
    expect(s.b.owns(s.clone)).toBe(false);
    await waitFor(async () => (await s.etcdOf.getAll().prefix(`/ikeclone/v1/${s.name}/clones/fam9/`).keys()).length === 0, { timeoutMs: 5000, message: 'its keys gone' });
    await waitFor(() => !s.b.isArriving('fam9', 1), { timeoutMs: 5000, message: 'its mark gone' });
  }, 60_000);

  interopTest('a handoff whose transaction committed but whose answer was lost is a handoff: the clone is not taken back, B has it', ['etcd'], async () => {
    const s = await setup();
    const client = (s.a as unknown as { opts: { client: Etcd3 } }).opts.client;
    const realIf = client.if.bind(client);
    client.if = ((...args: Parameters<Etcd3['if']>) => {
      const builder = realIf(...args);
      const commit = builder.commit.bind(builder);
      builder.commit = () => commit().then(() => Promise.reject(new Error('deadline exceeded')));
      client.if = realIf;
      return builder;
    }) as Etcd3['if'];
    expect(await s.a.handOff(s.clone, 'b')).toBe(1);
    await drive(s.wire, () => s.arrivals.length > 0, 'the arrival');
    expect(s.arrivals[0]!.result).toMatchObject({ ok: true });
    // One voice on the clone: A holds no copy.
    expect(s.a.ownedClones()).toEqual([]);
    expect(s.nodeA.ikeSas().filter((sa) => sa.state !== 'dead' && Buffer.compare(sa.spiI, s.clone.spiI) === 0)).toEqual([]);
  }, 60_000);

  interopTest('a handoff whose transaction fails (the owner changed) leaves the clone where it was', ['etcd'], async () => {
    const s = await setup();
    await s.etcdOf.put(`/ikeclone/v1/${s.name}/clones/fam1/1/owner`).value(ownerValue({ node: 'c', epoch: 3 }));
    await expect(s.a.handOff(s.clone, 'b')).rejects.toThrow(/handoff of IKE SA \d+ to b failed \(ownership changed\); the clone stays here/);
    const back = s.a.ownedClones()[0]!.sa;
    expect(back.state).toBe('established');
    expect(back.local.address).toBe(NODE_A);
    // It still works with the client.
    const ok = s.client.checkLiveness(s.clientClone);
    let answered: boolean | undefined;
    void ok.then((v) => (answered = v));
    await drive(s.wire, () => answered !== undefined, 'the client\'s check');
    expect(answered).toBe(true);
    expect(ikeMessages(s.wire).at(-1)).toMatchObject({ from: NODE_A, to: CLIENT, response: true });
  }, 60_000);
});
