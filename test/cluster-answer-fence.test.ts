// Fencing of answers on a cluster node (control/cluster/answer-fence.ts,
// architecture §8), with a real etcd (TLS) of its own that the test kills:
// while the node's lease certainly stands it answers on the clone it owns;
// once it may have lapsed, a retransmitted request is not answered from the
// response cache (nor a fresh one), and is counted as 'fenced'; IKE SAs that
// are not owned clones are still answered.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { CloneHandoff } from '../control/cluster/handoff.js';
import { AnswerFence, LeaseClock } from '../control/cluster/answer-fence.js';
import { ClusterKey } from '../control/cluster/seal.js';
import { etcdClient } from '../control/cluster/etcd-client.js';
import { decodeMessage } from '../control/wire/message.js';
import { HeaderFlag } from '../control/wire/constants.js';
import type { Datagram } from '../control/ike/transport.js';
import { silentLogger } from '../control/log.js';
import { CLIENT, NODE_A, cluster } from './support/cluster-peers.js';
import { startEtcd, type EtcdServer } from './support/etcd.js';
import { interopTest, requirePrereqs } from './support/prereq.js';
import { waitFor } from './support/proc.js';

let etcd: EtcdServer | undefined;
let client: Etcd3 | undefined;

beforeAll(async () => {
  if (requirePrereqs(['etcd']).ok) etcd = await startEtcd({ tls: true });
}, 60_000);
afterAll(async () => {
  client?.close();
  await etcd?.stop();
});

function isResponseFromA(d: Datagram): boolean {
  const m = decodeMessage(d.bytes);
  return d.local.address === NODE_A && d.remote.address === CLIENT && m.ok && (m.value.header.flags & HeaderFlag.RESPONSE) !== 0;
}

describe('LeaseClock', () => {
  test('an answer confirms the oldest keep-alive not yet answered, not the latest sent; a new stream starts over', () => {
    let now = 0;
    const lease = new EventEmitter();
    const clock = new LeaseClock(lease as never, 3000, 0, () => now);
    const at = (t: number) => (now = t);
    // Sent at 1000 and 2000; the answer that comes at 2100 is the one to 1000 (answers come in order).
    at(1000);
    lease.emit('keepaliveFired');
    at(2000);
    lease.emit('keepaliveFired');
    at(2100);
    lease.emit('keepaliveSucceeded');
    // Standing until 1000 + 3000 - 750 (the margin), not 2000 + 3000 - 750.
    at(3249);
    expect(clock.standing()).toBe(true);
    at(3250);
    expect(clock.standing()).toBe(false);
    // The answer to 2000 comes: standing again, until 4250.
    lease.emit('keepaliveSucceeded');
    at(4249);
    expect(clock.standing()).toBe(true);
    // A keep-alive on a stream that broke is never answered: a new stream's first answer confirms its own.
    at(4300);
    lease.emit('keepaliveFired');
    at(4400);
    lease.emit('keepaliveEstablished');
    at(5000);
    lease.emit('keepaliveFired');
    at(5100);
    lease.emit('keepaliveSucceeded');
    at(7249);
    expect(clock.standing()).toBe(true);
    at(7250);
    expect(clock.standing()).toBe(false);
    // An answer with nothing sent confirms nothing; 'lost' ends it at once.
    lease.emit('keepaliveSucceeded');
    expect(clock.standing()).toBe(false);
    at(5100);
    expect(clock.standing()).toBe(true);
    lease.emit('lost');
    expect(clock.standing()).toBe(false);
  });
});

describe('fencing of answers', () => {
  interopTest('once its lease may have lapsed, a node answers nothing on its clones, not even a retransmission from its response cache', ['etcd'], async () => {
    const name = `f-${randomBytes(3).toString('hex')}`;
    const log = silentLogger();
    const fence: { current?: AnswerFence } = {};
    const c = await cluster({ a: { mayAnswer: (sa) => fence.current?.mayAnswer(sa) ?? true } });
    client = etcdClient({ etcd: [etcd!.endpoint], tls: etcd!.tls! });
    const handoff = await new CloneHandoff({ engine: c.nodeA, client, key: ClusterKey.derive(randomBytes(32), name), cluster: name, node: 'a', address: NODE_A, log }).start();
    await handoff.adopt(c.clone, 'fam', 1);
    const grantedAt = Date.now();
    const lease = client.lease(2, { autoKeepAlive: true });
    await lease.grant();
    const clock = new LeaseClock(lease, 2000, grantedAt);
    fence.current = new AnswerFence({ owns: (sa) => handoff.owns(sa), lease: clock, log });
    expect(clock.standing()).toBe(true);

    // The lease stands: the clone answers.
    const first = c.client.checkLiveness(c.clientClone);
    c.wire.run(100);
    expect(await first).toBe(true);

    // The next answer is lost on the way: the client will retransmit its request.
    let dropped = 0;
    c.wire.filter = (d) => (isResponseFromA(d) && dropped++ === 0 ? 'drop' : 'pass');
    const second = c.client.checkLiveness(c.clientClone);
    c.wire.flush();
    expect(dropped).toBe(1);
    const answersBefore = c.wire.log.filter(isResponseFromA).length;

    // etcd goes away (killed by pid): no keep-alive is confirmed any more, and the lease may lapse.
    await etcd!.kill();
    await waitFor(() => !clock.standing(), { timeoutMs: 5000, intervalMs: 50, message: 'the lease to be in doubt' });

    // The client retransmits: node A's cached response does not leave; the drops are counted.
    c.wire.run(10_000);
    expect(await second).toBe(false);
    expect(c.wire.log.filter(isResponseFromA).length).toBe(answersBefore);
    expect(c.nodeA.stats.drops.fenced).toBeGreaterThanOrEqual(2);
    expect(fence.current.fenced).toBe(c.nodeA.stats.drops.fenced);

    // The client's original IKE SA on A is no owned clone: still answered.
    const original = c.client.checkLiveness(c.original);
    c.wire.run(100);
    expect(await original).toBe(true);
  }, 60_000);
});
