// clone: { per: node } (control/cluster/placement.ts): rendezvous ranking
// weighted by load, and a client's family spread over three gateway engines
// (in memory) that share a real etcd: clone k on node k, each with its own
// Child SA, the original where it was authenticated.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { placeClones, rendezvousRank, NodePlacement } from '../control/cluster/placement.js';
import { CloneHandoff } from '../control/cluster/handoff.js';
import { ClusterMembership, type MemberInfo } from '../control/cluster/membership.js';
import { ClusterKey } from '../control/cluster/seal.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { IkeEngine } from '../control/ike/engine.js';
import { silentLogger } from '../control/log.js';
import { parseConfig } from '../control/config/load.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { startEtcd, type EtcdServer } from './support/etcd.js';
import { interopTest, requirePrereqs } from './support/prereq.js';

const member = (node: string, load = 0): MemberInfo => ({ node, address: '192.0.2.1', load, spiPrefix: 1 });

describe('rendezvous placement', () => {
  test('the ranking is stable, and a node leaving moves only the keys it held', () => {
    const all = ['a', 'b', 'c', 'd'].map((n) => member(n));
    const keys = Array.from({ length: 400 }, (_, i) => `fam${i}/1`);
    const before = keys.map((k) => rendezvousRank(k, all)[0]!.node);
    expect(keys.map((k) => rendezvousRank(k, all)[0]!.node)).toEqual(before);
    const without = all.filter((m) => m.node !== 'c');
    const after = keys.map((k) => rendezvousRank(k, without)[0]!.node);
    keys.forEach((_, i) => {
      if (before[i] !== 'c') expect(after[i]).toBe(before[i]);
    });
    // Every node gets a share of unloaded keys.
    for (const n of ['a', 'b', 'c', 'd']) expect(before.filter((x) => x === n).length).toBeGreaterThan(50);
  });

  test('load weighs: a loaded node wins fewer keys', () => {
    const members = [member('a', 0), member('b', 9)];
    const wins = Array.from({ length: 400 }, (_, i) => rendezvousRank(`k${i}`, members)[0]!.node);
    expect(wins.filter((n) => n === 'a').length).toBeGreaterThan(300);
  });

  test('clone k goes to a distinct node other than the one keeping the original', () => {
    const members = ['a', 'b', 'c'].map((n) => member(n));
    const placed = placeClones('a.7', 'a', members);
    expect(placed.sort()).toEqual(['b', 'c']);
    expect(placeClones('a.7', 'a', [member('a')])).toEqual([]);
  });

  test('per: node needs a cluster: section (configuration error)', () => {
    expect(() => parseConfig('connections:\n  c:\n    clone: { per: node }\n    psk: \"a pre-shared key of decent length\"\n')).toThrow(/connections\.c\.clone\.per: node, but there is no cluster: section; expected per: node only in a cluster/);
  });
});

let etcd: EtcdServer | undefined;
const closers: Array<() => Promise<void> | void> = [];
beforeAll(async () => {
  if (requirePrereqs(['etcd']).ok) etcd = await startEtcd({ tls: true });
}, 60_000);
afterAll(async () => {
  for (const c of closers) await c();
  await etcd?.stop();
});

interopTest('a client family spreads over three nodes: clone k on node k with its own Child SA', ['etcd'], async () => {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({ responder: { clone: { per: 'node', count: 1, nics: [] } } });
  const name = `p-${randomBytes(3).toString('hex')}`;
  const key = ClusterKey.derive(randomBytes(32), name);
  const log = silentLogger();
  const nodes = [
    { node: 'a', address: '10.0.0.2', prefix: 1 },
    { node: 'b', address: '10.0.0.3', prefix: 2 },
    { node: 'c', address: '10.0.0.4', prefix: 3 },
  ];
  const handoffs = new Map<string, CloneHandoff>();
  const engines = new Map<string, IkeEngine>();
  const arrived: Array<{ node: string; sa: IkeSa }> = [];
  let membershipA: ClusterMembership | undefined;
  for (const n of nodes) {
    const engine = wire.engine(n.address, [responder], { localAddresses: () => [n.address], spiPrefix: n.prefix, holdRequest: (sa) => handoffs.get(n.node)?.holdRequest(sa) ?? false });
    engines.set(n.node, engine);
    const cfg = { name, node: n.node, address: n.address, etcd: [etcd!.endpoint], tls: etcd!.tls!, sealingKeyFile: '', leaseTtlMs: 5000, onEtcdUnreachable: 'fail' as const, spiPrefix: n.prefix };
    const membership = await ClusterMembership.join({ config: cfg, connectionsHash: 'same', log });
    closers.push(() => membership.leave());
    if (n.node === 'a') membershipA = membership;
    const handoff = await new CloneHandoff({ engine, client: membership.client, key, cluster: name, node: n.node, address: n.address, log }).start();
    closers.push(() => handoff.stop());
    handoff.on('arrived', (sa, result) => result.ok && arrived.push({ node: n.node, sa }));
    handoffs.set(n.node, handoff);
  }
  const placement = new NodePlacement({ engine: engines.get('a')!, handoff: handoffs.get('a')!, node: 'a', members: () => membershipA!.members(), log }).start();
  const client = wire.engine('10.0.0.1', [initiator], { localAddresses: () => ['10.0.0.1'] });
  const up = client.initiate(initiator.name);
  const end = Date.now() + 30_000;
  while (arrived.length < 2) {
    if (Date.now() > end) throw new Error(`placement did not finish: ${JSON.stringify(placement.placed)}`);
    wire.flush();
    await new Promise((r) => setTimeout(r, 5));
    wire.clock.advance(10);
  }
  await up;
  expect(placement.placed.map((p) => [p.outcome, p.reason])).toEqual([['handed-off', undefined], ['handed-off', undefined]]);
  expect(placement.placed.map((p) => p.node).sort()).toEqual(['b', 'c']);
  // The client's family: three IKE SAs, one per node address, each with one Child SA.
  const family = client.ikeSas().filter((s) => s.state === 'established');
  expect(family).toHaveLength(3);
  expect(family.map((s) => s.remote.address).sort()).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4']);
  for (const s of family) expect(s.children).toHaveLength(1);
  // Each node's Child SA carries its node's SPI prefix.
  for (const { node, sa } of arrived) {
    expect(sa.children).toHaveLength(1);
    expect(sa.children[0]!.spiIn >>> 24).toBe(nodes.find((n) => n.node === node)!.prefix);
  }
}, 60_000);
