// Cluster membership on a real etcd (TLS with client certificates): join,
// SPI prefixes, the connections' hash, duplicate names, lease lapse, etcd
// unreachable at join, and the member table the watch keeps. Needs the Debian etcd (prerequisite 'etcd').
import { afterAll, beforeAll, describe, expect, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ClusterJoinError, ClusterMembership, readMembers } from '../control/cluster/membership.js';
import { CloneFailover } from '../control/cluster/failover.js';
import { CloneRebalance } from '../control/cluster/rebalance.js';
import type { CloneHandoff } from '../control/cluster/handoff.js';
import type { ClusterKey } from '../control/cluster/seal.js';
import type { IkeContext } from '../control/ike/context.js';
import { etcdClient } from '../control/cluster/etcd-client.js';
import type { ClusterConfig } from '../control/config/types.js';
import { silentLogger } from '../control/log.js';
import { requirePrereqs, interopTest } from './support/prereq.js';
import { freePort, startEtcd, type EtcdServer } from './support/etcd.js';
import { run, waitFor } from './support/proc.js';

let etcd: EtcdServer | undefined;
const log = silentLogger();

beforeAll(async () => {
  if (requirePrereqs(['etcd']).ok) etcd = await startEtcd({ tls: true });
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
});

function config(node: string, over: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name: `c-${randomBytes(3).toString('hex')}`,
    node,
    address: '192.0.2.1',
    etcd: [etcd!.endpoint],
    tls: etcd!.tls!,
    sealingKeyFile: '/nonexistent',
    leaseTtlMs: 2000,
    onEtcdUnreachable: 'fail',
    ...over,
  };
}

describe('cluster membership on etcd', () => {
  interopTest('nodes join with their own SPI prefixes; member keys live under their leases and go when they leave', ['etcd'], async () => {
    const a = await ClusterMembership.join({ config: config('gw-a'), connectionsHash: 'h1', log, load: () => 3 });
    const b = await ClusterMembership.join({ config: { ...config('gw-b'), name: a.config.name, address: '192.0.2.2' }, connectionsHash: 'h1', log });
    try {
      expect(a.spiPrefix).toBeGreaterThanOrEqual(1);
      expect(b.spiPrefix).not.toBe(a.spiPrefix);
      const members = await readMembers(a.client, a.config.name);
      expect(members).toEqual([
        { node: 'gw-a', address: '192.0.2.1', load: 3, spiPrefix: a.spiPrefix },
        { node: 'gw-b', address: '192.0.2.2', load: 0, spiPrefix: b.spiPrefix },
      ]);
      // etcdctl sees the same keys, each bound to a lease.
      const ctl = await run('etcdctl', [...etcd!.ctlArgs(), 'get', '--prefix', `/ikeclone/v1/${a.config.name}/`, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
      const kvs = (JSON.parse(ctl.stdout) as { kvs: Array<{ key: string; lease?: number }> }).kvs;
      const keys = kvs.map((kv) => Buffer.from(kv.key, 'base64').toString()).sort();
      expect(keys).toEqual([
        `/ikeclone/v1/${a.config.name}/config`,
        `/ikeclone/v1/${a.config.name}/members/gw-a`,
        `/ikeclone/v1/${a.config.name}/members/gw-b`,
        `/ikeclone/v1/${a.config.name}/spi/${a.spiPrefix}`,
        `/ikeclone/v1/${a.config.name}/spi/${b.spiPrefix}`,
      ].sort());
      for (const kv of kvs) if (!Buffer.from(kv.key, 'base64').toString().endsWith('/config')) expect(kv.lease).toBeTruthy();
    } finally {
      await b.leave();
    }
    expect((await readMembers(a.client, a.config.name)).map((m) => m.node)).toEqual(['gw-a']);
    await a.leave();
  }, 60_000);

  interopTest('a node with other connections is refused with a clear message (exit 2)', ['etcd'], async () => {
    const a = await ClusterMembership.join({ config: config('gw-a'), connectionsHash: 'aaaa1111', log });
    try {
      const err = await ClusterMembership.join({ config: { ...config('gw-b'), name: a.config.name }, connectionsHash: 'bbbb2222', log }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ClusterJoinError);
      expect((err as ClusterJoinError).exitCode).toBe(2);
      expect((err as Error).message).toMatch(/node gw-b runs other connections than cluster c-\w+ \(connections hash bbbb2222, the cluster's aaaa1111\): every node needs the same connections/);
    } finally {
      await a.leave();
    }
  }, 60_000);

  interopTest('a sealing key rotation: a node holding the cluster\'s key as previous joins and moves the connections hash to its current key; then a node with the old key alone is refused, one with the new key alone joins', ['etcd'], async () => {
    // The same connections hashed under the old and the new key (config-hash.ts: an HMAC under each).
    const [oldHash, newHash] = ['0123old', '4567new'];
    const a = await ClusterMembership.join({ config: config('gw-a'), connectionsHash: oldHash, log });
    const name = a.config.name;
    const joined: ClusterMembership[] = [a];
    try {
      const b = await ClusterMembership.join({ config: { ...config('gw-b'), name }, connectionsHash: newHash, previousConnectionsHashes: [oldHash], log });
      joined.push(b);
      expect(await a.client.get(`/ikeclone/v1/${name}/config`).string()).toBe(newHash);
      const err = await ClusterMembership.join({ config: { ...config('gw-c'), name }, connectionsHash: oldHash, log }).catch((e: unknown) => e);
      expect((err as ClusterJoinError).exitCode).toBe(2);
      expect((err as Error).message).toMatch(/connections hash 0123old, the cluster's 4567new/);
      joined.push(await ClusterMembership.join({ config: { ...config('gw-d'), name }, connectionsHash: newHash, log }));
      // A hash the node does not hold under any key is still refused.
      const other = await ClusterMembership.join({ config: { ...config('gw-e'), name }, connectionsHash: 'feed', previousConnectionsHashes: ['beef'], log }).catch((e: unknown) => e);
      expect((other as ClusterJoinError).exitCode).toBe(2);
    } finally {
      for (const m of joined.reverse()) await m.leave();
    }
  }, 60_000);

  interopTest('a node name already in the cluster, or a fixed SPI prefix already held, is refused (exit 2)', ['etcd'], async () => {
    const a = await ClusterMembership.join({ config: config('gw-a', { spiPrefix: 9 }), connectionsHash: 'h', log });
    try {
      expect(a.spiPrefix).toBe(9);
      const dup = await ClusterMembership.join({ config: { ...config('gw-a'), name: a.config.name }, connectionsHash: 'h', log }).catch((e: unknown) => e);
      expect(dup).toMatchObject({ exitCode: 2, message: expect.stringMatching(/node name gw-a is already a member/) });
      const taken = await ClusterMembership.join({ config: { ...config('gw-b', { spiPrefix: 9 }), name: a.config.name }, connectionsHash: 'h', log }).catch((e: unknown) => e);
      expect(taken).toMatchObject({ exitCode: 2, message: expect.stringMatching(/SPI prefix 9 is held by another node/) });
    } finally {
      await a.leave();
    }
  }, 60_000);

  interopTest('the member table follows the watch: a load update changes no names and is read from the event, a leave does', ['etcd'], async () => {
    let loadB = 0;
    const a = await ClusterMembership.join({ config: config('gw-a'), connectionsHash: 'h', log, load: () => 1 });
    const events: boolean[] = [];
    a.on('members-changed', (names) => events.push(names));
    // The watch has read the members once (its own key at least) before it reports anything.
    await waitFor(() => a.live().some((m) => m.node === 'gw-a'), { timeoutMs: 5000, intervalMs: 20, message: 'the member table seeded' });
    const b = await ClusterMembership.join({ config: { ...config('gw-b'), name: a.config.name, address: '192.0.2.2' }, connectionsHash: 'h', log, load: () => loadB });
    try {
      await waitFor(() => a.live().length === 2, { timeoutMs: 5000, intervalMs: 20, message: 'gw-b in gw-a\'s table' });
      expect(events.at(-1)).toBe(true);
      const joined = events.length;
      loadB = 7;
      await b.updateLoad();
      await waitFor(() => a.live().find((m) => m.node === 'gw-b')?.load === 7, { timeoutMs: 5000, intervalMs: 20, message: 'the new load in gw-a\'s table' });
      expect(events.slice(joined)).toEqual([false]);
      // What the table says is what etcd holds.
      expect(a.live()).toEqual(await readMembers(a.client, a.config.name));
      await b.leave();
      await waitFor(() => a.live().length === 1, { timeoutMs: 5000, intervalMs: 20, message: 'gw-b gone from gw-a\'s table' });
      expect(events.slice(joined)).toEqual([false, true]);
      expect(a.live().map((m) => m.node)).toEqual(['gw-a']);
    } finally {
      await b.leave();
      await a.leave();
    }
  }, 60_000);

  interopTest('a node that stops refreshing its lease disappears after the lease TTL', ['etcd'], async () => {
    const a = await ClusterMembership.join({ config: config('gw-a'), connectionsHash: 'h', log });
    const b = await ClusterMembership.join({ config: { ...config('gw-b'), name: a.config.name }, connectionsHash: 'h', log });
    let changes = 0;
    a.on('members-changed', () => changes++);
    const started = Date.now();
    b.lease.release(); // as if b's process had died: no more keep-alives
    await waitFor(async () => (await a.members()).every((m) => m.node !== 'gw-b'), { timeoutMs: 15_000, intervalMs: 100, message: 'gw-b to lapse' });
    const gap = Date.now() - started;
    expect(gap).toBeGreaterThan(1000);
    expect(gap).toBeLessThan(10_000);
    await waitFor(() => changes > 0, { timeoutMs: 5000, message: 'a watch event for the lapse' });
    b.client.close();
    await a.leave();
  }, 60_000);

  interopTest('etcd unreachable at join is an error with exit code 1, within a bound', ['etcd'], async () => {
    const port = await freePort();
    const cfg = { ...config('gw-a'), etcd: [`http://127.0.0.1:${port}`] };
    delete cfg.tls;
    const started = Date.now();
    const client = etcdClient(cfg);
    const err = await ClusterMembership.join({ config: cfg, connectionsHash: 'h', log, client }).catch((e: unknown) => e);
    client.close();
    expect(err).toMatchObject({ exitCode: 1, message: expect.stringMatching(/cannot reach etcd at http:\/\/127\.0\.0\.1:\d+/) });
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);
});

// A member's load update reads nothing on the other nodes (failover.ts, rebalance.ts): every node writes one
// about a second after its IKE SAs come or go, and the scans a change of names starts read every clone's record.
describe('load updates on a cluster node', () => {
  interopTest('a load update starts no failover scan and no rebalance round; a member that joins starts both', ['etcd'], async () => {
    const name = `c-${randomBytes(3).toString('hex')}`;
    let loadB = 0;
    const a = await ClusterMembership.join({ config: { ...config('gw-a'), name }, connectionsHash: 'h', log });
    await waitFor(() => a.live().length === 1, { timeoutMs: 5000, intervalMs: 20, message: 'the member table seeded' });
    // Nothing of the handoff is reached while no clone exists: the scans read members and clones, and stop there.
    const handoff = { ownedClones: () => [], isArriving: () => false } as unknown as CloneHandoff;
    const shared = { engine: {} as IkeContext, client: a.client, cluster: name, node: 'gw-a', handoff, log };
    // Neither is started: no periodic scan or round, only what the member events start.
    const failover = new CloneFailover({ ...shared, key: {} as ClusterKey });
    const rebalance = new CloneRebalance(shared);
    const reads = vi.spyOn(a.client, 'getAll');
    a.on('members-changed', (names) => {
      failover.membersChanged(names);
      rebalance.membersChanged(names);
    });
    const b = await ClusterMembership.join({ config: { ...config('gw-b'), name }, connectionsHash: 'h', log, load: () => loadB });
    try {
      await waitFor(() => a.live().length === 2 && reads.mock.calls.length >= 4, { timeoutMs: 5000, intervalMs: 20, message: 'the scan and the round after gw-b joined' });
      // Each read the members and every clone once.
      await new Promise((r) => setTimeout(r, 200));
      expect(reads.mock.calls.length).toBe(4);
      reads.mockClear();
      for (const load of [3, 5, 8]) {
        loadB = load;
        await b.updateLoad();
        await waitFor(() => a.live().find((m) => m.node === 'gw-b')?.load === load, { timeoutMs: 5000, intervalMs: 20, message: `load ${load} seen` });
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(reads).not.toHaveBeenCalled();
    } finally {
      reads.mockRestore();
      failover.stop();
      rebalance.stop();
      await b.leave();
      await a.leave();
    }
  }, 60_000);
});
