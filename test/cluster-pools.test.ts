// Cluster-wide virtual IP pools and per-peer limits on a real etcd (TLS with
// client certificates; architecture §8): two nodes leasing from one pool at
// the same time never hand out an address twice; a peer keeps its address on
// every node; the address goes back only when no node holds an SA of the peer
// (a dead node's counts lapse with its lease); exhaustion is
// INTERNAL_ADDRESS_FAILURE in IKE_AUTH (RFC 7296 §3.15.4); a clone past the
// peer's limit counted over both nodes is NO_ADDITIONAL_SAS (RFC 7791 §8).
// Needs the Debian etcd (prerequisite 'etcd').
import { describe, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import { NotifyType } from '../control/wire/constants.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { MemoryWire, child, pskPair } from './support/peers.js';
import { etcdForFile, peerSa as sa, poolKeys, storeNode, type StoreNode as TestNode } from './support/cluster-stores.js';

const env = etcdForFile();

function node(cluster: string, name: string, pools: string[], reserve = 3): Promise<TestNode> {
  return storeNode(env, cluster, name, pools, { reserve, releaseGraceMs: 300 });
}

const POOL = '10.77.0.0/28'; // 14 addresses: .1 to .14

describe('cluster-wide virtual IP pools', () => {
  interopTest('two nodes leasing from one pool at once never lease an address twice; past exhaustion they refuse', ['etcd'], async () => {
    const cluster = `p-${randomBytes(3).toString('hex')}`;
    const [a, b] = await Promise.all([node(cluster, 'gw-a', [POOL]), node(cluster, 'gw-b', [POOL])]);
    const leased = new Map<string, string>();
    const refused: string[] = [];
    const leaseAll = async (n: TestNode, tag: string) => {
      for (let i = 0; i < 10; i++) {
        const peer = `${tag}-peer-${i}`;
        // A refusal with the reserve empty: once more after the node has claimed what etcd still had.
        let got = n.pools.lease([POOL], peer, 4);
        if (!got) {
          await n.pools.settled();
          got = n.pools.lease([POOL], peer, 4);
        }
        if (got) {
          leased.set(peer, got.address);
          n.events.emit('ike-up', sa(peer));
        } else refused.push(peer);
        await new Promise<void>((r) => setImmediate(r));
      }
      await n.pools.settled();
    };
    await Promise.all([leaseAll(a, 'a'), leaseAll(b, 'b')]);
    const addresses = [...leased.values()];
    expect(new Set(addresses).size).toBe(addresses.length);
    expect(refused.length).toBeGreaterThan(0);
    // Every address of the pool is taken in etcd: leased to its peer, or in a node's reserve.
    const keys = await poolKeys(a, cluster, POOL);
    expect(Object.keys(keys)).toHaveLength(14);
    expect(addresses.length + a.pools.reserved(POOL) + b.pools.reserved(POOL)).toBe(14);
    for (const [peer, address] of leased) expect(JSON.parse(keys[address]!)).toEqual({ peer });
    // A peer finally refused was refused twice (before and after the claim); others may have been refused once.
    expect(a.pools.stats.refused + b.pools.stats.refused).toBeGreaterThanOrEqual(refused.length * 2);
  });

  interopTest('a peer keeps its address on another node; it goes back only when no node holds an SA of it, a dead node included', ['etcd'], async () => {
    const cluster = `p-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL]);
    const b = await node(cluster, 'gw-b', [POOL]);
    const first = a.pools.lease([POOL], 'carol', 4)!;
    a.events.emit('ike-up', sa('carol'));
    await a.pools.settled();
    await a.accounting.settled();
    // Node B knows carol's address from etcd: her clone there gets the same one.
    await waitFor(() => b.pools.lease([POOL], 'carol', 4)?.address === first.address, { timeoutMs: 5000, message: 'node B to see carol\'s lease' });
    b.events.emit('ike-up', sa('carol'));
    await b.accounting.settled();
    await waitFor(() => a.accounting.ikeSasElsewhere('carol') === 1, { timeoutMs: 5000, message: 'node A to count carol\'s SA on B' });
    // Her SA on A goes: the address stays hers while B holds one, past the grace period.
    a.events.emit('ike-down', sa('carol'), 'deleted');
    await a.accounting.settled();
    await new Promise((r) => setTimeout(r, 800));
    expect(JSON.parse((await poolKeys(a, cluster, POOL))[first.address]!)).toEqual({ peer: 'carol' });
    // Node B dies (its lease revoked as if it had lapsed): no node counts carol any more, so A releases her address.
    await b.m.lease.revoke();
    await waitFor(async () => (await poolKeys(a, cluster, POOL))[first.address] === undefined, { timeoutMs: 5000, message: 'carol\'s address to go back to the pool' });
    expect(await a.m.client.getAll().prefix(`/ikeclone/v1/${cluster}/peers/`).keys()).toEqual([]);
    // And it can be leased again (to whoever the reserve gives it).
    await a.pools.settled();
    expect(a.pools.lease([POOL], 'dave', 4)).toBeDefined();
  });

  interopTest('an address leased to a peer whose IKE SA never comes up (its IKE_AUTH answer lost) goes back after the grace period', ['etcd'], async () => {
    const cluster = `p-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL]);
    const got = a.pools.lease([POOL], 'frank', 4)!;
    await a.pools.settled();
    expect(JSON.parse((await poolKeys(a, cluster, POOL))[got.address]!)).toEqual({ peer: 'frank' });
    await waitFor(async () => (await poolKeys(a, cluster, POOL))[got.address] === undefined, { timeoutMs: 5000, message: 'frank\'s unused address to go back' });
  });

  interopTest('the node that leased an address dies: the address stays the peer\'s while its clone lives on another node', ['etcd'], async () => {
    const cluster = `p-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', [POOL]);
    const b = await node(cluster, 'gw-b', [POOL]);
    const got = a.pools.lease([POOL], 'erin', 4)!;
    a.events.emit('ike-up', sa('erin'));
    b.events.emit('ike-up', sa('erin'));
    await Promise.all([a.pools.settled(), a.accounting.settled(), b.accounting.settled()]);
    const reservedByA = Object.entries(await poolKeys(b, cluster, POOL)).filter(([, v]) => v.includes('"reserved":"gw-a"')).length;
    expect(reservedByA).toBe(3);
    await a.m.lease.revoke();
    // A's reserve went back with its lease; erin's address did not.
    await waitFor(async () => !Object.values(await poolKeys(b, cluster, POOL)).some((v) => v.includes('gw-a')), { timeoutMs: 5000, message: 'A\'s reserve to lapse' });
    await new Promise((r) => setTimeout(r, 800));
    expect(JSON.parse((await poolKeys(b, cluster, POOL))[got.address]!)).toEqual({ peer: 'erin' });
    b.events.emit('ike-down', sa('erin'), 'deleted');
    await waitFor(async () => (await poolKeys(b, cluster, POOL))[got.address] === undefined, { timeoutMs: 5000, message: 'erin\'s address to go back after her last SA' });
  });

  interopTest('IKE_AUTH on a node whose pool is exhausted cluster-wide answers INTERNAL_ADDRESS_FAILURE (RFC 7296 §3.15.4)', ['etcd'], async () => {
    const cluster = `p-${randomBytes(3).toString('hex')}`;
    const tiny = '10.78.0.1-10.78.0.2';
    const other = await node(cluster, 'gw-b', [tiny], 2);
    // Node B leases both addresses of the pool.
    expect(other.pools.lease([tiny], 'x', 4)).toBeDefined();
    expect(other.pools.lease([tiny], 'y', 4)).toBeDefined();
    await other.pools.settled();
    const a = await node(cluster, 'gw-a', [tiny], 2);
    expect(a.pools.reserved(tiny)).toBe(0);
    const wire = new MemoryWire();
    const dynamic = { children: [{ ...child('net', '10.1.0.0/24', '10.2.0.0/24'), localTs: ['dynamic' as const], remoteTs: child('x', '0.0.0.0/0', '0.0.0.0/0').localTs }] };
    const { initiator, responder } = pskPair({
      initiator: { requestVirtualIp: true, ...dynamic } as Partial<ConnectionPolicy>,
      responder: { pools: [tiny], children: [{ ...child('net', '0.0.0.0/0', '0.0.0.0/0'), remoteTs: ['dynamic'] }] } as Partial<ConnectionPolicy>,
    });
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder], { peerResources: { virtualIps: a.pools } });
    const failed: string[] = [];
    alice.on('child-failed', (_sa, _name, reason) => failed.push(reason));
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const ike = await up;
    expect(ike.state).toBe('established');
    expect(ike.virtualIps).toEqual([]);
    expect(failed).toEqual(['INTERNAL_ADDRESS_FAILURE']);
  });
});

describe('per-peer limits counted over the cluster', () => {
  interopTest('a clone past ikeSasPerPeer counted over both nodes is refused with NO_ADDITIONAL_SAS (RFC 7791 §8), and allowed once the other node\'s SAs go', ['etcd'], async () => {
    const cluster = `p-${randomBytes(3).toString('hex')}`;
    const a = await node(cluster, 'gw-a', []);
    const b = await node(cluster, 'gw-b', []);
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const gw = wire.engine('10.0.0.2', [responder], {
      limits: { ikeSasPerPeer: 3 },
      peerResources: { ikeSasElsewhere: (p) => a.accounting.ikeSasElsewhere(p), childSasElsewhere: (p) => a.accounting.childSasElsewhere(p) },
    });
    a.accounting.follow(gw);
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const ike = await up;
    // Node B holds two IKE SAs of alice (clones handed to it).
    b.events.emit('ike-up', sa('alice@example.org'));
    b.events.emit('ike-up', sa('alice@example.org'));
    await b.accounting.settled();
    await waitFor(() => a.accounting.ikeSasElsewhere('alice@example.org') === 2, { timeoutMs: 5000, message: 'node A to count alice\'s SAs on B' });
    expect(a.accounting.peerCounts('alice@example.org')).toEqual({ 'gw-a': { ike: 1, child: 1 }, 'gw-b': { ike: 2, child: 0 } });
    const refused = alice.cloneIkeSa(ike);
    wire.run(100);
    await expect(refused).rejects.toMatchObject({ notify: NotifyType.NO_ADDITIONAL_SAS });
    b.events.emit('ike-down', sa('alice@example.org'), 'deleted');
    await b.accounting.settled();
    await waitFor(() => a.accounting.ikeSasElsewhere('alice@example.org') === 1, { timeoutMs: 5000, message: 'node A to see one of them go' });
    const clone = alice.cloneIkeSa(ike);
    wire.run(100);
    await expect(clone).resolves.toMatchObject({ state: 'established' });
    // The clone on A is in A's count in etcd too.
    await a.accounting.settled();
    await waitFor(() => b.accounting.ikeSasElsewhere('alice@example.org') === 2, { timeoutMs: 5000, message: 'node B to count both of alice\'s SAs on A' });
  });
});
