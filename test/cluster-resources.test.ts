// The cluster's shared resources as status reads them, on a real etcd (TLS;
// architecture §8): per pool its size, the addresses leased across the
// cluster, each node's reserve and the free rest; peers counted and those at
// each per-peer limit; each node's refusals as it published them. And the
// pool reserve as an option: with `pool_reserve: 0` no address is parked on a
// node, and IKE_AUTH takes its address from etcd in one round trip
// (control/ike/answer-preparation.ts). Needs the Debian etcd (prerequisite 'etcd').
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { formatResourceStatus, publishRefusals, readResourceStatus } from '../control/cluster/resource-status.js';
import { requestedAddressFamilies } from '../control/ike/config-payload.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { MemoryWire, child, pskPair } from './support/peers.js';
import { etcdForFile, peerSa as sa, poolKeys, storeNode, withClusterLines, type StoreNode as TestNode } from './support/cluster-stores.js';

const env = etcdForFile();

function node(cluster: string, name: string, pools: string[], reserve: number): Promise<TestNode> {
  return storeNode(env, cluster, name, pools, { reserve, releaseGraceMs: 60_000 });
}

const POOL = '10.77.0.0/28'; // 14 addresses
const TINY = '10.78.0.1-10.78.0.2';

describe('cluster status: pools, per-peer accounting, refusals', () => {
  interopTest('the numbers after leasing, reserving and refusing on two nodes', ['etcd'], async () => {
    const cluster = `r-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL, TINY], 3);
    const b = await node(cluster, 'gw-b', [POOL, TINY], 2);
    // TINY: A holds both addresses (b found none free), so B refuses.
    expect(a.pools.reserved(TINY) + b.pools.reserved(TINY)).toBe(2);
    const [rich, poor] = a.pools.reserved(TINY) === 2 ? [a, b] : [b, a];
    expect(poor.pools.lease([TINY], 'nobody', 4)).toBeUndefined();
    // POOL: A leases to alice and bob, B to carol; alice has an IKE SA on both nodes.
    for (const peer of ['alice', 'bob']) expect(a.pools.lease([POOL], peer, 4)).toBeDefined();
    expect(b.pools.lease([POOL], 'carol', 4)).toBeDefined();
    a.events.emit('ike-up', sa('alice'));
    a.events.emit('ike-up', sa('bob'));
    b.events.emit('ike-up', sa('alice'));
    b.events.emit('ike-up', sa('carol'));
    await Promise.all([a.pools.settled(), b.pools.settled(), a.accounting.settled(), b.accounting.settled()]);
    await publishRefusals(poor.m.client, cluster, poor === a ? 'gw-a' : 'gw-b', poor.m.leaseId, {
      noAdditionalSas: 0, admissionContention: 0, internalAddressFailure: poor.pools.stats.refused, leaseWritesRefused: poor.pools.stats.lost,
    });
    const s = await readResourceStatus(a.m.client, cluster, { pools: [POOL, TINY, '10.79.0.0/30'], limits: { ikeSasPerPeer: 2, childSasPerPeer: 64 } });
    expect(s.pools).toEqual([
      // Reserves are topped up again after leases: 3 on A, 2 on B.
      { pool: POOL, size: 14, leased: 3, reserved: { 'gw-a': 3, 'gw-b': 2 }, free: 14 - 3 - 5 },
      { pool: TINY, size: 2, leased: 0, reserved: { [rich === a ? 'gw-a' : 'gw-b']: 2 }, free: 0 },
      // Configured but never claimed: all of it free.
      { pool: '10.79.0.0/30', size: 2, leased: 0, reserved: {}, free: 2 },
    ]);
    expect(s.peers).toEqual({ peers: 3, ikeSas: 4, childSas: 0, atLimit: { ikeSasPerPeer: { limit: 2, peers: 1 }, childSasPerPeer: { limit: 64, peers: 0 } } });
    expect(s.refusals).toEqual({ [poor === a ? 'gw-a' : 'gw-b']: { noAdditionalSas: 0, admissionContention: 0, internalAddressFailure: 1, leaseWritesRefused: 0 } });
    const text = formatResourceStatus(s);
    expect(text).toMatch(/^pools:\n\s+POOL\s+SIZE\s+LEASED\s+RESERVED\s+FREE\n\s+10\.77\.0\.0\/28\s+14\s+3\s+gw-a 3, gw-b 2\s+6\n/);
    expect(text).toMatch(/\npeers: 3 counted, 4 IKE SAs, 0 Child SAs, 1 at ikeSasPerPeer 2, 0 at childSasPerPeer 64\n/);
    expect(text).toMatch(/\nrefusals:\n\s+gw-\w  NO_ADDITIONAL_SAS 0 \(contention 0\), INTERNAL_ADDRESS_FAILURE 1, lease writes refused 0$/);
    // A lease write etcd refuses (the reserve key is gone: as if this node's lease had lapsed) is counted.
    const address = Object.entries(await poolKeys(a, cluster, POOL)).find(([, v]) => v === JSON.stringify({ reserved: 'gw-a' }))![0];
    await a.m.client.delete().key(`/ikeclone/v1/${cluster}/pools/${encodeURIComponent(POOL)}/${address}`);
    expect(a.pools.lease([POOL], 'dave', 4, new Uint8Array(address.split('.').map(Number)))?.address).toBe(address);
    await a.pools.settled();
    expect(a.pools.stats.lost).toBe(1);
    // Not leased after all: not counted as this node's, and not given to dave again.
    expect(a.pools.poolCounts()).toEqual([{ pool: POOL, reserved: 3, leased: 2 }, { pool: TINY, reserved: rich === a ? 2 : 0, leased: 0 }]);
    expect(a.pools.lease([POOL], 'dave', 4)?.address).not.toBe(address);
  });
});

describe('cluster.pool_reserve', () => {
  interopTest('0: no address parked on the node; IKE_AUTH claims one from etcd and leases it, and an unused claim goes back', ['etcd'], async () => {
    const cluster = `r-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL], 0);
    expect(await poolKeys(a, cluster, POOL)).toEqual({});
    // Without the preparation there is nothing to lease from.
    expect(a.pools.lease([POOL], 'nobody', 4)).toBeUndefined();
    // A claim nobody leases from goes back right after the answer.
    const nobody = sa('nobody');
    const release = await a.pools.prepareLease(nobody, [4]);
    // Held for that answer, not in the reserve: another answer cannot take it.
    expect(a.pools.reserved(POOL)).toBe(0);
    expect(a.pools.lease([POOL], 'somebody', 4, undefined, sa('somebody'))).toBeUndefined();
    await new Promise((r) => setImmediate(r));
    release!();
    await a.pools.settled();
    expect(a.pools.reserved(POOL)).toBe(0);
    expect(await poolKeys(a, cluster, POOL)).toEqual({});
    // Nothing to claim for a family without pools.
    expect(a.pools.prepareLease(nobody, [6])).toBeUndefined();

    // IKE_AUTH through the engine: its answer waits for the claim, then leases the claimed address.
    const wire = new MemoryWire();
    const dynamic = { children: [{ ...child('net', '10.1.0.0/24', '10.2.0.0/24'), localTs: ['dynamic' as const], remoteTs: child('x', '0.0.0.0/0', '0.0.0.0/0').localTs }] };
    const { initiator, responder } = pskPair({
      initiator: { requestVirtualIp: true, ...dynamic } as Partial<ConnectionPolicy>,
      responder: { pools: [POOL], children: [{ ...child('net', '0.0.0.0/0', '0.0.0.0/0'), remoteTs: ['dynamic'] }] } as Partial<ConnectionPolicy>,
    });
    const alice = wire.engine('10.0.0.1', [initiator]);
    const gw = wire.engine('10.0.0.2', [responder], {
      peerResources: { virtualIps: a.pools, prepare: (s, kind, payloads) => (kind === 'ike-auth' ? a.pools.prepareLease(s, requestedAddressFamilies(payloads)) : undefined) },
    });
    let established: IkeSa | undefined;
    void alice.initiate(initiator.name).then((s) => (established = s));
    for (let i = 0; i < 200 && !established; i++) {
      wire.flush();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(established?.state).toBe('established');
    expect(established!.virtualIps).toEqual(['10.77.0.1']);
    expect(gw.stats.drops['answer-pending'] ?? 0).toBe(0);
    await a.pools.settled();
    await new Promise((r) => setImmediate(r));
    await a.pools.settled();
    // Leased to the peer in etcd; nothing in reserve.
    expect(await poolKeys(a, cluster, POOL)).toEqual({ '10.77.0.1': JSON.stringify({ peer: 'alice@example.org' }) });
    // The refusals are 'nobody' before any claim, and 'somebody' while the claim was held for another answer.
    expect(a.pools.stats).toMatchObject({ leased: 1, refused: 2, claimedForAuth: 2 });
  });

  interopTest('4 (the default): the reserve is kept full ahead of IKE_AUTH, which then asks etcd nothing', ['etcd'], async () => {
    const cluster = `r-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL], 4);
    expect(Object.values(await poolKeys(a, cluster, POOL))).toEqual(Array(4).fill(JSON.stringify({ reserved: 'gw-a' })));
    const alice = sa('alice');
    expect(a.pools.prepareLease(alice, [4])).toBeUndefined();
    // An answer that waits for something else (its Child SA's admission) has an address held for it from the reserve.
    const release = await a.pools.prepareLease(alice, [4], true);
    expect(a.pools.reserved(POOL)).toBe(3);
    // The reserve is topped up meanwhile: four in reserve, one held.
    await a.pools.settled();
    expect(a.pools.reserved(POOL)).toBe(4);
    expect(Object.keys(await poolKeys(a, cluster, POOL))).toHaveLength(5);
    // Not leased by its answer: past the reserve, back to etcd.
    release!();
    await a.pools.settled();
    expect(a.pools.reserved(POOL)).toBe(4);
    expect(Object.keys(await poolKeys(a, cluster, POOL))).toHaveLength(4);
  });

  interopTest('a claim held for one answer is not taken by another; what the answer did not lease goes back', ['etcd'], async () => {
    const cluster = `r-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL], 0);
    // Two IKE_AUTHs found the reserve empty at once: each gets its own claim.
    const [first, second] = [sa('alice'), sa('bob')];
    const [releaseFirst, releaseSecond] = await Promise.all([a.pools.prepareLease(first, [4], true), a.pools.prepareLease(second, [4], true)]);
    expect(a.pools.stats.claimedForAuth).toBe(2);
    expect(Object.keys(await poolKeys(a, cluster, POOL))).toHaveLength(2);
    // A third answer (nothing held for it) finds nothing; each held answer gets its own address.
    expect(a.pools.lease([POOL], 'carol', 4, undefined, sa('carol'))).toBeUndefined();
    const leased = [a.pools.lease([POOL], 'alice', 4, undefined, first)?.address, a.pools.lease([POOL], 'bob', 4, undefined, second)?.address];
    expect(new Set(leased).size).toBe(2);
    releaseFirst!();
    releaseSecond!();
    await a.pools.settled();
    expect(Object.values(await poolKeys(a, cluster, POOL)).sort()).toEqual([JSON.stringify({ peer: 'alice' }), JSON.stringify({ peer: 'bob' })]);

    // One held and not leased (its IKE_AUTH failed): back to etcd past the reserve of 0.
    const dave = sa('dave');
    const releaseDave = await a.pools.prepareLease(dave, [4]);
    expect(Object.keys(await poolKeys(a, cluster, POOL))).toHaveLength(3);
    releaseDave!();
    await a.pools.settled();
    expect(Object.keys(await poolKeys(a, cluster, POOL))).toHaveLength(2);
  });

  interopTest('a lost lease drops the reserve (another node may claim those addresses); joined again, it is claimed afresh', ['etcd'], async () => {
    const cluster = `r-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL], 2);
    expect(a.pools.reserved(POOL)).toBe(2);
    a.pools.leaseLost();
    expect(a.pools.reserved(POOL)).toBe(0);
    expect(a.pools.lease([POOL], 'alice', 4)).toBeUndefined();
    // The lease in this test is still good: the reserve comes back under it.
    a.pools.rejoined();
    await waitFor(() => a.pools.reserved(POOL) === 2, { timeoutMs: 5000, message: 'the reserve claimed again' });
    expect(a.pools.lease([POOL], 'alice', 4)).toBeDefined();
  });
});

describe('cluster.pool_reserve in the configuration', () => {
  const withReserve = (reserve: string) => withClusterLines(reserve === '' ? '' : `  pool_reserve: ${reserve}\n`, 'ikeclone-reserve-cfg-');

  it('reads 0 to 64; absent leaves the default to the pool store', () => {
    expect(withReserve('0').cluster?.poolReserve).toBe(0);
    expect(withReserve('64').cluster?.poolReserve).toBe(64);
    expect(withReserve('').cluster?.poolReserve).toBeUndefined();
  });

  it('refuses anything else with the path and what is expected', () => {
    for (const bad of ['65', '-1', '2.5', 'many']) {
      expect(() => withReserve(bad)).toThrow(/cluster\.pool_reserve: .*an integer from 0 to 64/);
    }
  });
});
