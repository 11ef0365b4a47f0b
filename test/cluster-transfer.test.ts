// Moving a clone's IKE state between two gateway engines (control/ike/sa-transfer.ts,
// architecture §8): node A clones the client's IKE SA and exports the clone, node B
// imports it, announces itself, the client moves the clone with UPDATE_SA_ADDRESSES
// and B creates the clone's Child SA with fresh keys. All in memory.
import { describe, expect, test } from 'vitest';
import { ExchangeType, NotifyType } from '../control/wire/constants.js';
import { amendTransferRecord, completeArrival, decodeTransferRecord, exportIkeSa, importIkeSa, snapshotIkeSa, type TransferRecord } from '../control/ike/sa-transfer.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { espSpiNode, ikeSpiNode } from '../io/spi-layout.js';
import { CLIENT, NODE_A, NODE_B, cluster, ikeMessages } from './support/cluster-peers.js';

async function moveToB(c: Awaited<ReturnType<typeof cluster>>) {
  const exported = exportIkeSa(c.nodeA, c.clone, 'family-1', 'handed off to node-b');
  if (!exported.ok) throw new Error(exported.error);
  const decoded = decodeTransferRecord(exported.value);
  if (!decoded.ok) throw new Error(decoded.error);
  const imported = importIkeSa(c.nodeB, decoded.value, NODE_B);
  if (!imported.ok) throw new Error(imported.error);
  const arrival = completeArrival(c.nodeB, imported.value, [NODE_B], 5000);
  await c.wire.settle(3000);
  return { record: exported.value, onB: imported.value, arrival: await arrival };
}

/** Node A's clone exported (handed off to b) and decoded again. */
function exportedRecord(c: Awaited<ReturnType<typeof cluster>>): TransferRecord {
  const exported = exportIkeSa(c.nodeA, c.clone, 'f', 'handed off to b');
  if (!exported.ok) throw new Error(exported.error);
  const decoded = decodeTransferRecord(exported.value);
  if (!decoded.ok) throw new Error(decoded.error);
  return decoded.value;
}

/** A cached response as a record carries it. */
const CACHED = { messageId: 1, bytes: '00', requestDigest: '00'.repeat(32) };

/** A record of `state` alone (length, JSON; no keys): for records that must not decode. */
function json(state: object): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(state));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

describe('IKE SA export and import between cluster nodes', () => {
  test('SPIs carry the node prefix (io/spi-layout.ts)', async () => {
    const c = await cluster();
    // A allocated the clone's SPIi (it initiated the clone) and its own SPIr of the original.
    expect(ikeSpiNode(c.clone.spiI)).toBe(1);
    expect(ikeSpiNode(c.nodeA.ikeSas().find((s) => s !== c.clone)!.spiR)).toBe(1);
    for (const child of c.nodeA.childrenBySpi.values()) expect(espSpiNode(child.spiIn)).toBe(1);
  });

  test('the clone moves to node B: path test, address list, UPDATE_SA_ADDRESSES to B, then a fresh Child SA on B', async () => {
    const c = await cluster();
    // An exchange on the clone at A first, each way, so message IDs have advanced before the move.
    const alive = c.nodeA.checkLiveness(c.clone);
    await c.wire.settle(200);
    expect(await alive).toBe(true);
    const clientAlive = c.client.checkLiveness(c.clientClone);
    await c.wire.settle(200);
    expect(await clientAlive).toBe(true);
    const nextRequest = c.clone.nextRequestId;
    const peerRequest = c.clone.peerRequestId;
    const spiHex = Buffer.from(c.clone.spiI).toString('hex');
    const childrenBefore = new Set([...c.client.childrenBySpi.keys()]);

    const { onB, arrival } = await moveToB(c);

    // Export wiped A's copy: gone from its table, keys zeroised.
    expect(c.nodeA.ikeSas().some((s) => Buffer.from(s.spiI).toString('hex') === spiHex)).toBe(false);
    expect(c.clone.keys).toBeUndefined();
    expect(c.clone.state).toBe('dead');
    // Import bound the clone to B's address with the record's message IDs.
    expect(onB.local.address).toBe(NODE_B);
    expect(onB.isInitiator).toBe(true);
    expect(onB.mobikeInitiator).toBe(false);
    expect(onB.nextRequestId).toBeGreaterThan(nextRequest);
    expect(onB.peerRequestId).toBe(peerRequest + 1);

    expect(arrival).toMatchObject({ ok: true });
    expect(c.clientClone.remote.address).toBe(NODE_B);
    // Step 5 then 6: B's address list, then the client's UPDATE_SA_ADDRESSES to B.
    const list = c.notifies.findIndex((n) => n.notify === NotifyType.NO_ADDITIONAL_ADDRESSES);
    const update = c.notifies.findIndex((n) => n.notify === NotifyType.UPDATE_SA_ADDRESSES);
    expect(c.notifies[list]).toMatchObject({ from: NODE_B, to: CLIENT });
    expect(c.notifies[update]).toMatchObject({ from: CLIENT, to: NODE_B });
    expect(update).toBeGreaterThan(list);

    // Step 7: B created the clone's Child SA: fresh SPIs (B's prefix), on the client too.
    if (!arrival.ok) throw new Error('arrival failed');
    expect(arrival.children).toHaveLength(1);
    const child = arrival.children[0]!;
    expect(espSpiNode(child.spiIn)).toBe(2);
    expect(childrenBefore.has(child.spiOut)).toBe(false);
    expect(c.client.childrenBySpi.get(child.spiOut)?.ike).toBe(c.clientClone);
    expect(c.clientClone.children).toHaveLength(1);

    // The CREATE_CHILD_SA of step 7 left B's address, on the clone's SPIs, after the client's update.
    const msgs = ikeMessages(c.wire).filter((m) => m.spis.startsWith(spiHex));
    const create = msgs.findIndex((m) => m.exchange === ExchangeType.CREATE_CHILD_SA && !m.response);
    const upd = msgs.findIndex((m) => m.from === CLIENT && m.to === NODE_B && !m.response && m.exchange === ExchangeType.INFORMATIONAL);
    expect(upd).toBeGreaterThan(-1);
    expect(create).toBeGreaterThan(upd);
    expect(msgs[create]!.from).toBe(NODE_B);

    // No (IKE SPI, message ID) pair was ever sent from two addresses.
    const sources = new Map<string, Set<string>>();
    for (const m of ikeMessages(c.wire)) {
      const key = `${m.spis}/${m.mid}/${m.response ? 'response' : 'request'}/${m.byOriginalInitiator ? 'I' : 'R'}`;
      if (!sources.has(key)) sources.set(key, new Set());
      sources.get(key)!.add(m.from);
    }
    for (const [key, from] of sources) expect([key, [...from]]).toEqual([key, [...from].slice(0, 1)]);
    // ... and the clone really was used from both nodes.
    expect(new Set(msgs.filter((m) => m.from !== CLIENT).map((m) => m.from))).toEqual(new Set([NODE_A, NODE_B]));
  });

  test('after the move, a request of the client to A finds nothing there and the clone keeps working on B', async () => {
    const c = await cluster();
    const { arrival } = await moveToB(c);
    expect(arrival.ok).toBe(true);
    const ok = c.client.checkLiveness(c.clientClone);
    await c.wire.settle(200);
    expect(await ok).toBe(true);
    const last = ikeMessages(c.wire).at(-1)!;
    expect(last).toMatchObject({ from: NODE_B, to: CLIENT, response: true });
  });

  test('export is refused while an exchange is outstanding or Child SAs exist; the SA stays', async () => {
    const c = await cluster();
    void c.nodeA.checkLiveness(c.clone);
    expect(exportIkeSa(c.nodeA, c.clone, 'f', 'x')).toMatchObject({ ok: false, error: expect.stringMatching(/outstanding/) });
    await c.wire.settle(200);
    const onA = c.nodeA.ikeSas().find((s) => s.children.length > 0)!;
    expect(exportIkeSa(c.nodeA, onA, 'f', 'x')).toMatchObject({ ok: false, error: expect.stringMatching(/Child SAs/) });
    expect(c.clone.state).toBe('established');
    expect(onA.state).toBe('established');
  });

  test('import refuses an unknown connection, an SPI already in use, and malformed records without throwing', async () => {
    const c = await cluster();
    const snap = snapshotIkeSa(c.nodeA, c.clone, 'f');
    const decoded = decodeTransferRecord(snap);
    if (!decoded.ok) throw new Error(decoded.error);
    // A still holds it: importing on A is refused (same SPI).
    expect(importIkeSa(c.nodeA, decoded.value, NODE_A)).toMatchObject({ ok: false, error: expect.stringMatching(/already in use/) });
    const other = { ...decoded.value, state: { ...decoded.value.state, conn: 'nope' } };
    expect(importIkeSa(c.nodeB, other, NODE_B)).toMatchObject({ ok: false, error: expect.stringMatching(/no connection named "nope"/) });
    for (const n of [0, 3, 4, 20, snap.length - 1]) expect(decodeTransferRecord(snap.subarray(0, n)).ok).toBe(false);
    const bad = Uint8Array.from(snap);
    bad[10] = 0x7b; // corrupt the JSON
    expect(decodeTransferRecord(bad).ok).toBe(false);
    for (const s of [{}, { ...decoded.value.state, v: 2 }, { ...decoded.value.state, spiI: 'zz' }, { ...decoded.value.state, window: 5 }, { ...decoded.value.state, children: 'x' }]) {
      expect(decodeTransferRecord(json(s)).ok).toBe(false);
    }
  });

  test('IDs a handoff fences ahead: the importer starts below them, whoever takes the record over starts above them', async () => {
    const c = await cluster();
    const next = c.clone.nextRequestId;
    const exported = exportIkeSa(c.nodeA, c.clone, 'f', 'handed off to b', { fencedAhead: 2 });
    if (!exported.ok) throw new Error(exported.error);
    const decoded = decodeTransferRecord(exported.value);
    if (!decoded.ok) throw new Error(decoded.error);
    expect(decoded.value.state).toMatchObject({ nextRequestId: next, fencedNextRequestId: next + 2 });
    // Imported as handed over: the importer's first request carries the ID the peer expects.
    const onB = importIkeSa(c.nodeB, decoded.value, NODE_B);
    if (!onB.ok) throw new Error(onB.error);
    expect(onB.value.nextRequestId).toBe(next);
    // Reassigned (a claim after the importer died): above every fenced ID, and the mark does not carry over.
    const claimed = amendTransferRecord(exported.value, {});
    if (!claimed.ok) throw new Error(claimed.error);
    const c2 = decodeTransferRecord(claimed.value);
    if (!c2.ok) throw new Error(c2.error);
    expect(c2.value.state.nextRequestId).toBe(next + 2);
    expect(c2.value.state.fencedNextRequestId).toBeUndefined();
    // Sent back with the ID the peer still expects: that one wins.
    const back = amendTransferRecord(exported.value, { nextRequestId: next + 1, peerStays: true });
    if (!back.ok) throw new Error(back.error);
    const b2 = decodeTransferRecord(back.value);
    expect(b2.ok && b2.value.state).toMatchObject({ nextRequestId: next + 1, peerStays: true });
    expect(b2.ok && b2.value.state.fencedNextRequestId).toBeUndefined();
    // A mark below the next ID is refused.
    expect(decodeTransferRecord(json({ ...decoded.value.state, fencedNextRequestId: next - 1 }))).toMatchObject({ ok: false, error: 'record fenced message ID invalid' });
  });

  test('a record whose fields have the wrong JSON types (null where an object goes, a string for a flag or an age) is refused, never thrown on', async () => {
    const c = await cluster();
    // A real clock's age has a fraction of a millisecond: such a record decodes.
    c.wire.clock.advance(0.25);
    const { state } = exportedRecord(c);
    expect(Number.isInteger(state.ageMs)).toBe(false);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ lastResponse: null }, 'record last response invalid'],
      [{ lastResponse: 7 }, 'record last response invalid'],
      [{ localId: null }, 'record identity invalid'],
      [{ peerId: 'alice' }, 'record identity invalid'],
      [{ peerKey: 42 }, 'record peer invalid'],
      [{ peerWithdrawnAddress: [] }, 'record address set invalid'],
      [{ natRemote: 'yes' }, 'record extension flags invalid'],
      [{ mobikeInitiator: null }, 'record extension flags invalid'],
      [{ ageMs: '1000' }, 'record age invalid'],
      [{ ageMs: -1 }, 'record age invalid'],
      [{ ageMs: null }, 'record age invalid'],
      [{ lastResponse: { ...CACHED, fragments: { datagrams: [], size: 576 } } }, 'record last response invalid'],
      [{ lastResponse: { ...CACHED, fragments: { datagrams: ['zz'], size: 576 } } }, 'record last response invalid'],
      [{ lastResponse: { ...CACHED, fragments: { datagrams: Array(129).fill('00'), size: 576 } } }, 'record last response invalid'],
      [{ lastResponse: { ...CACHED, fragments: null } }, 'record last response invalid'],
    ];
    for (const [change, error] of cases) {
      expect(() => decodeTransferRecord(json({ ...state, ...change }))).not.toThrow();
      expect(decodeTransferRecord(json({ ...state, ...change })), JSON.stringify(change)).toMatchObject({ ok: false, error });
    }
  });

  test('a cached response sent as fragments moves with all of them, not only the first (RFC 7383 §2.6.1: a retransmission gets them all)', async () => {
    const c = await cluster();
    const fragments = [new Uint8Array([1, 1, 1]), new Uint8Array([2, 2]), new Uint8Array([3])];
    const requestDigest = new Uint8Array(32).fill(7);
    c.clone.lastResponse = { messageId: 5, bytes: fragments[0]!, requestDigest, fragments: { datagrams: fragments, size: 576 } };
    const record = exportedRecord(c);
    expect(record.state.lastResponse?.fragments).toEqual({ datagrams: ['010101', '0202', '03'], size: 576 });
    const onB = importIkeSa(c.nodeB, record, NODE_B);
    if (!onB.ok) throw new Error(onB.error);
    expect(onB.value.lastResponse?.fragments).toEqual({ datagrams: fragments, size: 576 });
  });

  test('a record refused at import (no such connection here) has its keys wiped', async () => {
    const c = await cluster();
    const decoded = exportedRecord(c);
    const record = { ...decoded, state: { ...decoded.state, conn: 'not-here' } };
    const keys = Object.values(record.keys);
    expect(keys.some((k) => k.some((b) => b !== 0))).toBe(true);
    expect(importIkeSa(c.nodeB, record, NODE_B)).toMatchObject({ ok: false, error: 'no connection named "not-here" on this node' });
    expect(keys.every((k) => k.every((b) => b === 0))).toBe(true);
  });

  test('the address list is the path test and verifies the client\'s address: its UPDATE_SA_ADDRESSES moves the SA with no second check', async () => {
    const c = await cluster();
    const { arrival } = await moveToB(c);
    expect(arrival).toMatchObject({ ok: true });
    const spiHex = Buffer.from(c.clone.spiI).toString('hex');
    const fromB = ikeMessages(c.wire).filter((m) => m.spis.startsWith(spiHex) && m.from === NODE_B && !m.response);
    // The address list (with COOKIE2: the path test), then CREATE_CHILD_SA: nothing between the update and the Child SA.
    expect(fromB.map((m) => m.exchange)).toEqual([ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA]);
    expect(c.clientClone.remote.address).toBe(NODE_B);
    if (!arrival.ok) throw new Error('arrival failed');
    const { pathTest, addressList, update, child } = arrival.steps;
    expect([pathTest, addressList, update, child].every((t) => typeof t === 'number')).toBe(true);
    expect(pathTest! <= addressList! && addressList! <= update! && update! <= child!).toBe(true);
  });

  test('the record holds IKE keys but never SK_pi/SK_pr nor any Child SA key', async () => {
    const c = await cluster();
    const onA = c.nodeA.ikeSas().find((s) => s.children.length > 0)! as IkeSa;
    const snap = Buffer.from(snapshotIkeSa(c.nodeA, c.clone, 'f'));
    const keys = c.clone.keys!;
    expect(snap.includes(Buffer.from(keys.skD))).toBe(true);
    expect(snap.includes(Buffer.from(keys.skPi))).toBe(false);
    expect(snap.includes(Buffer.from(keys.skPr))).toBe(false);
    const decoded = decodeTransferRecord(snapshotIkeSa(c.nodeA, onA, 'f'));
    if (!decoded.ok) throw new Error(decoded.error);
    // Child SAs travel by SPI only.
    expect(decoded.value.state.children).toEqual(onA.children.map((ch) => ({ name: ch.name, spiIn: ch.spiIn, spiOut: ch.spiOut })));
    expect(Object.keys(decoded.value.keys).sort()).toEqual(['skAi', 'skAr', 'skD', 'skEi', 'skEr']);
    void (c.nodeB as IkeEngine);
  });
});
