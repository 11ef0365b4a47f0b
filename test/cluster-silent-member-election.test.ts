// Silent members through real etcd elections (control/cluster/silent-member.ts,
// architecture §8): a three-member etcd with TLS at etcd's default raft timing
// (100/1000 ms), two live nodes with 3 s leases, each writing its heartbeat and
// following the other's. The member that leads is killed (twice, a different
// one each time, brought back in between): every write stalls for the
// election, and neither node may take the other for silent. Root (a
// namespace with the members on loopback addresses; the nodes run in a child
// process inside it) and the Debian etcd.
import { describe, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startEtcdCluster } from './support/etcd.js';
import { REPO_ROOT, ensureCliBuilt } from './support/cli-proc.js';
import { createNamespace, deleteNamespace, execChecked, spawnIn } from './support/netns.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { interopTest, type PrereqName } from './support/prereq.js';
import { sleep, waitFor } from './support/proc.js';

const PRE: PrereqName[] = ['root', 'netns', 'etcd'];
const LEASE_TTL_MS = 3000;

/** Two nodes (membership and silent members, as control/cluster/node.ts wires them); on SIGTERM, what each saw. */
function nodesScript(): string {
  const dist = (p: string) => JSON.stringify(pathToFileURL(join(REPO_ROOT, 'dist', p)).href);
  return `
import { ClusterMembership } from ${dist('control/cluster/membership.js')};
import { SilentMembers } from ${dist('control/cluster/silent-member.js')};
import { LivenessProbe } from ${dist('control/cluster/liveness-probe.js')};
import { ClusterKey } from ${dist('control/cluster/seal.js')};
import { silentLogger } from ${dist('control/log.js')};
const cfg = JSON.parse(process.argv[2]);
const nodes = [];
const key = ClusterKey.derive(Buffer.alloc(32, 7), cfg.name);
for (const node of ['gw-a', 'gw-b']) {
  const m = await ClusterMembership.join({ config: { ...cfg, node }, connectionsHash: 'h', log: silentLogger() });
  const lost = [];
  m.on('lease-lost', (reason) => lost.push(reason));
  const probe = new LivenessProbe({ key, node, address: '127.0.0.1', port: 0, leaseId: () => m.leaseId, log: silentLogger() });
  await probe.bind();
  const s = await new SilentMembers({ client: m.client, cluster: cfg.name, node, leaseTtlMs: cfg.leaseTtlMs, leaseId: () => m.leaseId, leaseHeld: () => lost.length === 0, log: silentLogger(), probe }).start();
  nodes.push({ node, s, lost });
}
const ready = setInterval(() => {
  if (nodes.every((n) => n.s.decision.followed === 1)) { clearInterval(ready); process.stdout.write('ready\\n'); }
}, 100);
process.on('SIGTERM', () => {
  process.stdout.write(JSON.stringify(nodes.map((n) => ({ node: n.node, revoked: n.s.stats.revoked, heartbeatFailures: n.s.stats.heartbeatFailures, followed: n.s.decision.followed, lost: n.lost }))) + '\\n');
  process.exit(0);
});
setTimeout(() => process.exit(3), 180000);
`;
}

describe('silent members through etcd elections', () => {
  const env = useNetnsSuite('silent-election', PRE);

  interopTest('the etcd leader killed twice at default raft timing: both live nodes keep their leases and neither revokes the other', PRE, async () => {
    ensureCliBuilt();
    const ns = await createNamespace('smelect');
    env.cleanup(() => deleteNamespace(ns));
    const addresses = ['127.0.0.21', '127.0.0.22', '127.0.0.23'];
    for (const a of addresses) await execChecked(ns, 'ip', ['addr', 'add', `${a}/32`, 'dev', 'lo']);
    const etcd = await startEtcdCluster({ members: addresses.map((address) => ({ ns, address })), tls: true });
    env.cleanup(() => etcd.stop());
    expect(etcd.timing).toEqual({ heartbeatMs: 100, electionMs: 1000 });
    await etcd.moveLeader(0);

    const script = env.dir('nodes.mjs');
    writeFileSync(script, nodesScript());
    const config = { name: `e-${randomBytes(3).toString('hex')}`, address: '192.0.2.1', etcd: etcd.endpoints, tls: etcd.tls, sealingKeyFile: '/nonexistent', leaseTtlMs: LEASE_TTL_MS, onEtcdUnreachable: 'fail' };
    const nodes = spawnIn(ns, process.execPath, [script, JSON.stringify(config)]);
    env.cleanup(() => nodes.stop({ graceMs: 1000 }));
    await waitFor(() => (nodes.stdout().includes('ready') ? true : undefined), { timeoutMs: 30_000, intervalMs: 100, message: () => `both nodes to follow each other's heartbeat (${nodes.stderr().slice(-500)})` });
    await sleep(LEASE_TTL_MS);

    const term = await etcd.term();
    for (const victim of [0, 1]) {
      await etcd.moveLeader(victim);
      await sleep(LEASE_TTL_MS);
      await etcd.kill(victim);
      // The election, then well past the time a silent node would have been revoked.
      await sleep(3 * LEASE_TTL_MS);
      expect(await etcd.leader()).not.toBe(-1);
      await etcd.restart(victim);
    }
    expect(await etcd.term()).toBeGreaterThanOrEqual(term + 2);

    await nodes.stop({ graceMs: 3000 });
    const seen = JSON.parse(nodes.stdout().split('\n').find((l) => l.startsWith('['))!) as Array<{ node: string; revoked: number; heartbeatFailures: number; followed: number; lost: string[] }>;
    process.stderr.write(`silent members through two elections: ${JSON.stringify(seen)}\n`);
    expect(seen.map((n) => ({ node: n.node, revoked: n.revoked, followed: n.followed, lost: n.lost }))).toEqual([
      { node: 'gw-a', revoked: 0, followed: 1, lost: [] },
      { node: 'gw-b', revoked: 0, followed: 1, lost: [] },
    ]);
  }, 180_000);
});
