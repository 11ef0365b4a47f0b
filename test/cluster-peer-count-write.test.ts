// When a node's per-peer counts reach etcd (control/cluster/peer-accounting.ts):
// changes wait countWriteDelayMs and go in one write per peer, so a clone's
// arrival does not write (and wake every node's watch) between its exchanges
// with the peer; an admission that needs our count in etcd has the write
// started at once (flushed), and a node that stops writes nothing after.
// On a real etcd (TLS). Needs the Debian etcd (prerequisite 'etcd').
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ClusterMembership } from '../control/cluster/membership.js';
import { ClusterPeerAccounting } from '../control/cluster/peer-accounting.js';
import { parsePeerCount, peerNodeKey } from '../control/cluster/resource-keys.js';
import type { EngineEvents } from '../control/ike/context.js';
import { interopTest } from './support/prereq.js';
import { clusterConfig, etcdForFile, log, peerSa } from './support/cluster-stores.js';
import { sleep } from './support/proc.js';

const env = etcdForFile();
/** Long enough that a loaded machine does not pass it between a change and the read after it. */
const DELAY_MS = 2000;

async function accountingNode(delayMs = DELAY_MS) {
  const cluster = `w-${randomBytes(3).toString('hex')}`;
  const m = await ClusterMembership.join({ config: clusterConfig(env.etcd(), cluster, 'gw-a'), connectionsHash: 'h', log });
  const accounting = await new ClusterPeerAccounting({ client: m.client, cluster, node: 'gw-a', leaseId: m.leaseId, log, countWriteDelayMs: delayMs }).start();
  const events = new EventEmitter<EngineEvents>();
  accounting.follow(events);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await accounting.stop();
    await m.leave();
  };
  env.open.push(stop);
  const key = peerNodeKey(cluster, 'alice', 'gw-a');
  /** Our count of alice in etcd, and how many times it was written. */
  const stored = async () => {
    const r = await m.client.get(key).exec();
    const kv = r.kvs[0];
    return kv ? { count: JSON.parse(kv.value.toString()) as { ike: number; child: number }, writes: Number(kv.version) } : undefined;
  };
  return { accounting, events, stored, stop };
}

describe('a node\'s per-peer count as etcd holds it (parsePeerCount)', () => {
  test('two counts of whole SAs, nothing else', () => {
    expect(parsePeerCount('{"ike":2,"child":3}')).toEqual({ ike: 2, child: 3 });
    for (const text of ['{"ike":-1,"child":0}', '{"ike":1,"child":0.5}', '{"ike":"1","child":0}', '{"ike":1}', 'null', '[]', '', '{']) {
      expect(parsePeerCount(text), text).toBeUndefined();
    }
  });
});

describe('a node\'s per-peer counts in etcd', () => {
  interopTest('changes wait for the delay and reach etcd in one write', ['etcd'], async () => {
    const n = await accountingNode();
    const t0 = Date.now();
    n.events.emit('ike-up', peerSa('alice'));
    n.events.emit('ike-up', peerSa('alice'));
    n.events.emit('ike-down', peerSa('alice'));
    expect(await n.stored()).toBeUndefined();
    await n.accounting.settled();
    expect(await n.stored()).toEqual({ count: { ike: 1, child: 0 }, writes: 1 });
    // settled() waits for no delay: it started the write.
    expect(Date.now() - t0).toBeLessThan(DELAY_MS);
  }, 30_000);

  interopTest('left alone, the write comes after the delay', ['etcd'], async () => {
    const delayMs = 500;
    const n = await accountingNode(delayMs);
    const t0 = Date.now();
    n.events.emit('ike-up', peerSa('alice'));
    const deadline = t0 + delayMs * 20;
    let s = await n.stored();
    while (!s && Date.now() < deadline) {
      await sleep(25);
      s = await n.stored();
    }
    // Seen once it was written: not before its delay.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(delayMs);
    expect(s).toEqual({ count: { ike: 1, child: 0 }, writes: 1 });
  }, 30_000);

  interopTest('an admission that needs our count in etcd has it written at once (flushed)', ['etcd'], async () => {
    const n = await accountingNode(60_000);
    n.events.emit('ike-up', peerSa('alice'));
    const t0 = Date.now();
    await n.accounting.flushed();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await n.stored()).toEqual({ count: { ike: 1, child: 0 }, writes: 1 });
    // A change after it waits for its own delay again.
    n.events.emit('ike-up', peerSa('alice'));
    await sleep(200);
    expect((await n.stored())?.count.ike).toBe(1);
    await n.accounting.flushed();
    expect(await n.stored()).toEqual({ count: { ike: 2, child: 0 }, writes: 2 });
  }, 30_000);

  interopTest('a node that stops while a write waits writes nothing, and nothing hangs', ['etcd'], async () => {
    const n = await accountingNode(60_000);
    n.events.emit('ike-up', peerSa('alice'));
    await n.accounting.stop();
    await n.accounting.settled();
    expect(await n.stored()).toBeUndefined();
    await n.stop();
  }, 30_000);
});
