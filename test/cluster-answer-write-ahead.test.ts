// Write-ahead of answers on a cluster node (control/cluster/answer-write-ahead.ts,
// architecture §8), engines in memory and a real etcd (TLS): a request the
// client sends on a clone a node owns moves the client's message ID; the
// node's answer leaves only once etcd holds the clone's record with that ID
// moved past it. So a node that dies right after answering leaves a record
// its survivor can go on from (the client's next request is the one it
// expects), and a write refused because another node owns the clone drops
// the clone without an answer. Last, the module's bookkeeping alone (no
// etcd): answers leave in order, each once a write covers it.
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { AnswerWriteAhead, type RecordWriter } from '../control/cluster/answer-write-ahead.js';
import type { HandoffEvents } from '../control/cluster/handoff.js';
import { ownerValue } from '../control/cluster/handoff.js';
import { cloneKeys } from '../control/cluster/reassign.js';
import { ClusterKey } from '../control/cluster/seal.js';
import { decodeTransferRecord } from '../control/ike/sa-transfer.js';
import { decodeMessage } from '../control/wire/message.js';
import { HeaderFlag } from '../control/wire/constants.js';
import type { Datagram } from '../control/ike/transport.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { silentLogger } from '../control/log.js';
import { CLIENT, NODE_A, NODE_B, cluster, drive } from './support/cluster-peers.js';
import { engineHooks, killNode, newEtcdClient, startNode, useClusterEtcd, type NodeHooks, type NodeOptions } from './support/cluster-nodes.js';
import { interopTest } from './support/prereq.js';

const env = useClusterEtcd();

/** Nodes a and b (each its own etcd client and lease) and the client's clone made on a, owned by a as clone 1 of family a.1; b claims it when a dies. */
async function twoNodes(label: string, aOpts: NodeOptions = {}) {
  const name = `${label}-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const hooks: NodeHooks = new Map();
  const c = await cluster({ a: engineHooks(hooks, 'a'), b: engineHooks(hooks, 'b') });
  // No rebalancing: a holds two members of the family and b none, and the clone is to stay on a.
  const a = await startNode(env, name, key, 'a', NODE_A, c.nodeA, hooks, { rebalances: false, ...aOpts });
  const b = await startNode(env, name, key, 'b', NODE_B, c.nodeB, hooks, { rebalances: false });
  await a.handoff.adopt(c.clone, 'a.1', 1);
  const etcdOf = newEtcdClient(env);
  const keys = cloneKeys(name, 'a.1', 1);
  /** The client's next request ID as the clone's record in etcd names it (sealed for `owner` at `epoch`). */
  const recordedPeer = async (owner = 'a', epoch = 0): Promise<number> => {
    const sealed = await etcdOf.get(keys.record).buffer();
    if (!sealed) throw new Error('no record');
    const opened = key.open({ keyPath: keys.record, epoch, owner }, new Uint8Array(sealed));
    if (!opened.ok) throw new Error(opened.error);
    const record = decodeTransferRecord(opened.value);
    if (!record.ok) throw new Error(record.error);
    return record.value.state.peerRequestId;
  };
  return { ...c, name, key, a, b, etcdOf, keys, recordedPeer };
}

/** A response sent from `from` on IKE SA `sa` (its SPIs) to the client. */
function responseOn(sa: IkeSa, from: string) {
  const spiI = Buffer.from(sa.spiI).toString('hex');
  return (d: Datagram): boolean => {
    const m = decodeMessage(d.bytes);
    return m.ok && d.local.address === from && d.remote.address === CLIENT && (m.value.header.flags & HeaderFlag.RESPONSE) !== 0 && Buffer.from(m.value.header.spiI).toString('hex') === spiI;
  };
}

describe('answers written ahead', () => {
  interopTest('the answer to a client request on an owned clone leaves only after etcd holds the client\'s moved message ID; retransmissions meanwhile go unanswered', ['etcd'], async () => {
    const s = await twoNodes('w');
    const fromA = responseOn(s.clone, NODE_A);
    const before = await s.recordedPeer();
    expect(before).toBe(s.clientClone.nextRequestId);
    // At the moment each answer leaves A, read the record back from etcd (a linearizable read).
    const readAtSend: Array<Promise<number>> = [];
    s.wire.filter = (d) => {
      if (fromA(d)) readAtSend.push(s.recordedPeer());
      return 'pass';
    };
    // etcd stops (SIGSTOP, by pid): A's write cannot commit, so its answer must wait.
    env.etcd.proc.signal('SIGSTOP');
    let alive: boolean | undefined;
    try {
      void s.client.checkLiveness(s.clientClone).then((v) => (alive = v));
      // 600 ms of wire time: the client retransmits its request once.
      for (let i = 0; i < 60; i++) {
        s.wire.flush();
        await new Promise((r) => setTimeout(r, 5));
        s.wire.clock.advance(10);
      }
      s.wire.flush();
      expect(s.wire.log.filter(fromA)).toEqual([]);
      expect(s.a.writeAhead.stats.held).toBe(1);
      expect(s.a.writeAhead.stats.unanswered).toBeGreaterThanOrEqual(1);
      expect(s.nodeA.stats.responsesFromCache).toBe(0);
    } finally {
      env.etcd.proc.signal('SIGCONT');
    }
    await drive(s.wire, () => alive !== undefined, 'the answer once etcd is back');
    expect(alive).toBe(true);
    expect(readAtSend.length).toBeGreaterThanOrEqual(1);
    // Every answer that left found the moved ID in etcd already.
    for (const peer of await Promise.all(readAtSend)) expect(peer).toBe(before + 1);
    expect(s.clientClone.nextRequestId).toBe(before + 1);
    expect(s.a.writeAhead.stats.sent + s.a.writeAhead.stats.dropped).toBe(1);

    // With etcd running, the next request's answer is written ahead as well (no SIGSTOP needed to see it).
    let again: boolean | undefined;
    void s.client.checkLiveness(s.clientClone).then((v) => (again = v));
    await drive(s.wire, () => again !== undefined, 'the second liveness check');
    expect(again).toBe(true);
    for (const peer of (await Promise.all(readAtSend)).slice(-1)) expect(peer).toBe(before + 2);
  }, 60_000);

  interopTest('a node that dies right after answering: the survivor that takes its clone over accepts the client\'s next request', ['etcd'], async () => {
    const s = await twoNodes('d');
    const fromA = responseOn(s.clone, NODE_A);
    let answered = 0;
    const pass = s.wire.filter;
    s.wire.filter = (d, i) => {
      if (fromA(d)) answered++;
      return pass(d, i);
    };
    // The client's liveness check on its clone, answered by A; A dies at once after the answer left.
    let alive: boolean | undefined;
    void s.client.checkLiveness(s.clientClone).then((v) => (alive = v));
    await drive(s.wire, () => alive !== undefined, 'A\'s answer');
    expect(alive).toBe(true);
    expect(answered).toBe(1);
    await killNode(s.wire, s.a);
    // b claims the clone; its arrival needs the client's UPDATE_SA_ADDRESSES, the client's next request.
    await drive(s.wire, () => s.b.arrivals.length > 0, 'the takeover by b', 30_000);
    expect(s.b.arrivals[0]!.result).toMatchObject({ ok: true });
    const onB = s.b.arrivals[0]!.sa;
    expect(s.clientClone.remote.address).toBe(NODE_B);
    expect(s.clientClone.children.filter((ch) => ch.state === 'installed')).toHaveLength(1);
    // And the client's requests go on there.
    let onward: boolean | undefined;
    void s.client.checkLiveness(s.clientClone).then((v) => (onward = v));
    await drive(s.wire, () => onward !== undefined, 'the client\'s liveness check on b');
    expect(onward).toBe(true);
    expect(onB.peerRequestId).toBe(s.clientClone.nextRequestId);
    expect(s.nodeB.stats.drops['message-id'] ?? 0).toBe(0);
  }, 90_000);

  interopTest('a write refused because another node owns the clone drops it, and the answer never leaves', ['etcd'], async () => {
    const s = await twoNodes('r');
    const fromA = responseOn(s.clone, NODE_A);
    // Another node took the clone over (its owner key says so); A does not know yet.
    await s.etcdOf.put(s.keys.owner).value(ownerValue({ node: 'b', epoch: 7 }));
    const children = [...s.clone.children];
    void s.client.checkLiveness(s.clientClone);
    await drive(s.wire, () => s.a.handoff.stats.fenced === 1, 'the refused write');
    s.wire.run(3000);
    expect(s.wire.log.filter(fromA)).toEqual([]);
    expect(s.clone.state).toBe('dead');
    expect(children.every((ch) => ch.state === 'deleted')).toBe(true);
    expect(s.a.handoff.ownedClones()).toEqual([]);
    expect(s.a.writeAhead.stats).toMatchObject({ held: 1, sent: 0, discarded: 1 });
  }, 60_000);

  interopTest('the client\'s Delete of its clone is answered at once: the clone\'s keys leave etcd, there is nothing to take over', ['etcd'], async () => {
    const s = await twoNodes('e');
    const retransmits = s.client.stats.retransmits;
    let closed = false;
    void s.client.closeIkeSa(s.clientClone).then(() => (closed = true));
    // One flush: the Delete, A's answer (not held for a write), the client done; no wire time passes.
    s.wire.flush();
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(true);
    expect(s.client.stats.retransmits).toBe(retransmits);
    expect(s.a.writeAhead.stats).toMatchObject({ sent: 1, discarded: 0, dropped: 0 });
    expect(s.a.writeAhead.pending).toBe(0);
    await drive(s.wire, () => s.a.handoff.ownedClones().length === 0, 'the clone to end on A');
    for (let i = 0; i < 100 && (await s.etcdOf.get(s.keys.owner).string()) !== null; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await s.etcdOf.get(s.keys.owner).string()).toBeNull();
  }, 60_000);

  interopTest('etcd gives no verdict until the lease may have lapsed: the answer is dropped and counted; the client\'s retransmission is answered once a write covered it', ['etcd'], async () => {
    let standing = true;
    const s = await twoNodes('x', { lease: { standing: () => standing } });
    const fromA = responseOn(s.clone, NODE_A);
    const before = await s.recordedPeer();
    const readAtSend: Array<Promise<number>> = [];
    s.wire.filter = (d) => {
      if (fromA(d)) readAtSend.push(s.recordedPeer());
      return 'pass';
    };
    let alive: boolean | undefined;
    env.etcd.proc.signal('SIGSTOP');
    try {
      void s.client.checkLiveness(s.clientClone).then((v) => (alive = v));
      s.wire.flush();
      expect(s.a.writeAhead.stats.held).toBe(1);
      // The lease may have lapsed now: the held answer goes (retried writes stop).
      standing = false;
      for (let i = 0; i < 100 && s.a.writeAhead.stats.dropped === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(s.a.writeAhead.stats).toMatchObject({ held: 1, sent: 0, dropped: 1 });
      expect(s.a.writeAhead.pending).toBe(0);
    } finally {
      env.etcd.proc.signal('SIGCONT');
    }
    // The lease stands again: once a write covered the client's moved ID (the one in flight, or one a
    // retransmission starts), a retransmission is answered from the response cache.
    standing = true;
    await drive(s.wire, () => alive !== undefined, 'the answer to a retransmission', 30_000);
    expect(alive).toBe(true);
    expect(s.wire.log.filter(fromA)).toHaveLength(1);
    expect(s.nodeA.stats.responsesFromCache).toBe(1);
    expect(await Promise.all(readAtSend)).toEqual([before + 1]);
  }, 60_000);
});

describe('write-ahead bookkeeping', () => {
  /** A clone's record as handoff.ts keeps it: owned or not, the peer ID last written, the writes asked for. */
  function records() {
    const events = new EventEmitter<HandoffEvents>();
    const state = { owned: true, written: 4 as number | undefined, syncs: 0 };
    const writer: RecordWriter = {
      owns: () => state.owned,
      recordedPeer: () => (state.owned ? state.written : undefined),
      sync: async () => {
        state.syncs++;
        return false;
      },
      on: ((event: keyof HandoffEvents, listener: (...args: never[]) => void) => events.on(event, listener)) as RecordWriter['on'],
    };
    return { events, state, writer };
  }
  const sa = (peerRequestId: number) => ({ id: 1, peerRequestId, state: 'established' }) as unknown as IkeSa;

  test('answers leave in order, each once a write names the peer\'s ID past its request; the record covering them answers at once', () => {
    const r = records();
    const wa = new AnswerWriteAhead({ records: r.writer, lease: { standing: () => true }, log: silentLogger(), retryMs: 60_000 });
    const clone = sa(4);
    // Covered (the record names 4, the peer's next): a retransmission of request 3 is answered from the cache.
    expect(wa.mayAnswer(clone)).toBe(true);
    const sent: string[] = [];
    (clone as { peerRequestId: number }).peerRequestId = 5;
    expect(wa.holdResponse(clone, () => sent.push('answer 4'))).toBe(true);
    expect(r.state.syncs).toBe(1);
    // A peer that does not wait for answer 4 (window 1 broken) gets answer 5 only after it.
    (clone as { peerRequestId: number }).peerRequestId = 6;
    expect(wa.holdResponse(clone, () => sent.push('answer 5'))).toBe(true);
    expect(wa.mayAnswer(clone)).toBe(false);
    // A write that covers only request 4 (its snapshot was taken before request 5): answer 4 leaves.
    r.state.written = 5;
    r.events.emit('recorded', clone, 5);
    expect(sent).toEqual(['answer 4']);
    r.state.written = 6;
    r.events.emit('recorded', clone, 6);
    expect(sent).toEqual(['answer 4', 'answer 5']);
    expect(wa.pending).toBe(0);
    expect(wa.stats).toMatchObject({ held: 2, sent: 2, discarded: 0, dropped: 0, unanswered: 1 });
    // Not an owned clone: never held.
    r.state.owned = false;
    (clone as { peerRequestId: number }).peerRequestId = 7;
    expect(wa.holdResponse(clone, () => sent.push('answer 6'))).toBe(false);
    expect(wa.mayAnswer(clone)).toBe(true);
    wa.stop();
  });

  test('a refused write (the clone dropped) discards the held answer; a clone that ended here sends it', () => {
    const r = records();
    const wa = new AnswerWriteAhead({ records: r.writer, lease: { standing: () => true }, log: silentLogger(), retryMs: 60_000 });
    const sent: string[] = [];
    const dropped = sa(5);
    expect(wa.holdResponse(dropped, () => sent.push('dropped'))).toBe(true);
    r.state.owned = false;
    r.events.emit('fenced', dropped, 'ownership lost');
    expect(sent).toEqual([]);
    expect(wa.stats).toMatchObject({ held: 1, sent: 0, discarded: 1 });
    r.state.owned = true;
    const ended = sa(5);
    expect(wa.holdResponse(ended, () => sent.push('delete answered'))).toBe(true);
    r.state.owned = false;
    r.events.emit('ended', ended);
    expect(sent).toEqual(['delete answered']);
    expect(wa.pending).toBe(0);
    wa.stop();
  });
});

