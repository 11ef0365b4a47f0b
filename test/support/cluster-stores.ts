// The cluster's shared-resource stores (control/cluster/pool-store.ts,
// peer-accounting.ts) as one node, on a real etcd, without a gateway: the
// tests of pools, per-peer accounting, admission and status share them. Also
// a configuration with a cluster: section (its sealing key in a temporary
// file) for the tests of that section's options.
import { afterAll, afterEach, beforeAll } from 'vitest';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterMembership } from '../../control/cluster/membership.js';
import { ClusterVirtualIpLeases } from '../../control/cluster/pool-store.js';
import { ClusterPeerAccounting } from '../../control/cluster/peer-accounting.js';
import type { EngineEvents } from '../../control/ike/context.js';
import type { IkeSa } from '../../control/ike/ike-sa.js';
import type { ClusterConfig, GatewayConfig } from '../../control/config/types.js';
import { parseConfig } from '../../control/config/load.js';
import { silentLogger } from '../../control/log.js';
import { requirePrereqs } from './prereq.js';
import { startEtcd, type EtcdServer } from './etcd.js';

export const log = silentLogger();

/**
 * One etcd (TLS) for the test file, started when the prerequisite is there,
 * and whatever the tests opened closed after each, last first.
 */
export function etcdForFile(): { etcd: () => EtcdServer; open: Array<() => Promise<void>> } {
  let etcd: EtcdServer | undefined;
  const open: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    if (requirePrereqs(['etcd']).ok) etcd = await startEtcd({ tls: true });
  }, 60_000);
  afterEach(async () => {
    for (const close of open.splice(0).reverse()) await close().catch(() => undefined);
  });
  afterAll(async () => {
    await etcd?.stop();
  });
  return { etcd: () => etcd!, open };
}

export function clusterConfig(etcd: EtcdServer, name: string, node: string): ClusterConfig {
  return { name, node, address: '192.0.2.1', etcd: [etcd.endpoint], tls: etcd.tls!, sealingKeyFile: '/nonexistent', leaseTtlMs: 2000, onEtcdUnreachable: 'fail' };
}

export interface StoreNode {
  m: ClusterMembership;
  pools: ClusterVirtualIpLeases;
  accounting: ClusterPeerAccounting;
  /** Stands for the node's engine: its IKE SAs coming and going. */
  events: EventEmitter<EngineEvents>;
}

/** A member with its pools (`reserve` addresses each) and its per-peer accounting, closed through `open`. */
export async function storeNode(
  env: { etcd: () => EtcdServer; open: Array<() => Promise<void>> },
  cluster: string,
  name: string,
  pools: string[],
  opts: { reserve: number; releaseGraceMs: number },
): Promise<StoreNode> {
  const m = await ClusterMembership.join({ config: clusterConfig(env.etcd(), cluster, name), connectionsHash: 'h', log });
  const shared = { client: m.client, cluster, node: name, leaseId: m.leaseId, log };
  const accounting = await new ClusterPeerAccounting({ ...shared, releaseGraceMs: opts.releaseGraceMs }).start();
  const events = new EventEmitter<EngineEvents>();
  accounting.follow(events);
  const p = await new ClusterVirtualIpLeases({ ...shared, reserve: opts.reserve, onLeased: (peer) => accounting.leased(peer) }).start(pools);
  env.open.push(async () => {
    await p.stop();
    await accounting.stop();
    await m.leave();
  });
  return { m, pools: p, accounting, events };
}

/** An established IKE SA of `peer` as the engine announces it (only the authenticated identity is read). */
export function peerSa(peer: string): IkeSa {
  return { peerKey: peer } as IkeSa;
}

/** The pool's keys in etcd: address -> value. */
export async function poolKeys(n: StoreNode, cluster: string, pool: string): Promise<Record<string, string>> {
  const prefix = `/ikeclone/v1/${cluster}/pools/${encodeURIComponent(pool)}/`;
  const all = await n.m.client.getAll().prefix(prefix).strings();
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(prefix.length), v]));
}

/** A configuration whose cluster: section has `lines` (indented two spaces) besides the required keys. */
export function withClusterLines(lines: string, prefix: string): GatewayConfig {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    const key = join(dir, 'cluster.secret');
    writeFileSync(key, 'k'.repeat(32), { mode: 0o600 });
    return parseConfig(`
cluster:
  name: vpn1
  node: gw-a
  address: 192.0.2.1
  etcd: [http://192.0.2.5:2379]
  sealing_key_file: ${key}
${lines}connections: {}
`, 'gw.yaml');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
