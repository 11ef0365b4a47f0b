// The three-member etcd cluster the cluster tests and benchmark start
// (test/support/etcd.ts): its raft timing is an option, checked before any
// member starts; leader() names the member that leads, moveLeader() hands
// leadership to the member asked for, and term() counts it (every election or
// move adds one). The members' data may live elsewhere than under the
// temporary directory (dataIn: the benchmark's tmpfs). Root (a namespace of
// its own, members on loopback addresses) and the Debian etcd.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ETCD_DATA_TMPFS, startEtcdCluster, type EtcdCluster } from './support/etcd.js';
import { createNamespace, deleteNamespace, execChecked, type NetNs } from './support/netns.js';
import { interopTest } from './support/prereq.js';

let ns: NetNs | undefined;
let cluster: EtcdCluster | undefined;

afterAll(async () => {
  await cluster?.stop();
  if (ns) await deleteNamespace(ns);
});

describe('the etcd cluster of the cluster tests', () => {
  it('refuses an election timeout under five heartbeats before starting anything', async () => {
    const fake = { name: 'none', label: 'none' } as NetNs;
    await expect(startEtcdCluster({ members: [{ ns: fake, address: '127.0.0.1' }], timing: { heartbeatMs: 100, electionMs: 400 } })).rejects.toThrow(RangeError);
    await expect(startEtcdCluster({ members: [{ ns: fake, address: '127.0.0.1' }], timing: { heartbeatMs: 0, electionMs: 400 } })).rejects.toThrow(RangeError);
  });

  interopTest('runs with the timing asked for; leadership moves to the member asked for, and each move adds to the term', ['root', 'netns', 'etcd'], async () => {
    ns = await createNamespace('etcd3');
    const addresses = ['127.0.0.11', '127.0.0.12', '127.0.0.13'];
    for (const a of addresses) await execChecked(ns, 'ip', ['addr', 'add', `${a}/32`, 'dev', 'lo']);
    cluster = await startEtcdCluster({ members: addresses.map((address) => ({ ns: ns!, address })), timing: { heartbeatMs: 50, electionMs: 500 } });
    expect(cluster.timing).toEqual({ heartbeatMs: 50, electionMs: 500 });
    const args = cluster.members[0]!.proc().args.join(' ');
    expect(args).toContain('--heartbeat-interval 50');
    expect(args).toContain('--election-timeout 500');
    const first = await cluster.leader();
    expect(first).toBeGreaterThanOrEqual(0);
    const term = await cluster.term();
    const next = (first + 1) % 3;
    await cluster.moveLeader(next);
    expect(await cluster.leader()).toBe(next);
    expect(await cluster.term()).toBeGreaterThan(term);
    // Asking for the member that already leads changes nothing.
    const now = await cluster.term();
    await cluster.moveLeader(next);
    expect(await cluster.leader()).toBe(next);
    expect(await cluster.term()).toBe(now);
  }, 90_000);

  interopTest('keeps the members\' data in the directory asked for (tmpfs), and stop() removes it', ['root', 'netns', 'etcd'], async () => {
    const parent = mkdtempSync(join(ETCD_DATA_TMPFS, 'ikc-etcd-test-'));
    let ns2: NetNs | undefined;
    let one: EtcdCluster | undefined;
    try {
      ns2 = await createNamespace('etcdd');
      await execChecked(ns2, 'ip', ['addr', 'add', '127.0.0.21/32', 'dev', 'lo']);
      one = await startEtcdCluster({ members: [{ ns: ns2, address: '127.0.0.21' }], dataIn: parent });
      const dataDir = one.members[0]!.dataDir;
      expect(dataDir.startsWith(`${parent}/`)).toBe(true);
      expect(one.members[0]!.proc().args.join(' ')).toContain(`--data-dir ${dataDir}`);
      await one.ctl(['put', '/k', 'v']);
      // etcd wrote its WAL there.
      expect(readdirSync(join(dataDir, 'member', 'wal')).some((f) => f.endsWith('.wal'))).toBe(true);
      await one.stop();
      one = undefined;
      expect(existsSync(dataDir)).toBe(false);
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      await one?.stop();
      if (ns2) await deleteNamespace(ns2);
      rmSync(parent, { recursive: true, force: true });
    }
  }, 60_000);
});
