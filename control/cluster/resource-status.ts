// The cluster's shared resources as etcd has them (architecture §8), for
// `ikeclone cluster status` and a node's line in `ikeclone status`: each
// virtual IP pool (its size, the addresses leased to peers across the
// cluster, those each node holds in reserve, the free rest), the per-peer
// accounting (peers counted, and for each per-peer limit the peers at it,
// RFC 7791 §8), and each node's refusals by reason. Refusals are a node's own
// counters: each node publishes them under its lease (stats/<node>), so that
// an operator command reading etcd sees every live node's.
//
// Owner: the main thread (the CLI, or a node publishing its counters).
import type { Etcd3 } from 'etcd3';
import { VirtualIpPool } from '../ike/virtual-ip.js';
import { clusterPrefix } from './etcd-client.js';
import { nodeStatsKey, parsePeerCount, parsePeerKey, type PeerCount } from './resource-keys.js';
import type { NodeResourceRefusals } from '../status.js';

export type { NodeResourceRefusals };

export interface PoolStatus {
  pool: string;
  /** Addresses the pool hands out. */
  size: number;
  /** Leased to peers (on any node; a lease outlives the node that made it). */
  leased: number;
  /** Claimed ahead of IKE_AUTH, by node (each under its node's lease). */
  reserved: Record<string, number>;
  /** Neither leased nor reserved. */
  free: number;
}

/** Peers whose SAs over the cluster are at a per-peer limit (or past it: counts of a moment ago). */
export interface PeerLimitStatus {
  limit: number;
  peers: number;
}

export interface PeerAccountingStatus {
  /** Peers some node counts an SA of. */
  peers: number;
  ikeSas: number;
  childSas: number;
  atLimit: { ikeSasPerPeer?: PeerLimitStatus; childSasPerPeer?: PeerLimitStatus };
}

export interface ClusterResourceStatus {
  pools: PoolStatus[];
  peers: PeerAccountingStatus;
  /** By node, as each live node last published them. */
  refusals: Record<string, NodeResourceRefusals>;
}

export interface ResourceStatusOptions {
  /** The configured pools: listed even before any of their addresses is in etcd. */
  pools?: readonly string[];
  limits?: { ikeSasPerPeer?: number; childSasPerPeer?: number };
}

export function emptyRefusals(): NodeResourceRefusals {
  return { noAdditionalSas: 0, admissionContention: 0, internalAddressFailure: 0, leaseWritesRefused: 0 };
}

/** Pool keys (pools/<pool>/<address> -> {"peer"} or {"reserved"}) as counts per pool. */
export function poolStatus(text: string, values: readonly string[]): PoolStatus {
  let size = 0;
  try {
    size = new VirtualIpPool(text).capacity;
  } catch {
    // a pool no configuration names any more: its size is unknown
  }
  let leased = 0;
  const reserved: Record<string, number> = {};
  for (const v of values) {
    try {
      const o = JSON.parse(v) as { peer?: unknown; reserved?: unknown };
      if (typeof o.peer === 'string') leased++;
      else if (typeof o.reserved === 'string') reserved[o.reserved] = (reserved[o.reserved] ?? 0) + 1;
    } catch {
      // not a pool record
    }
  }
  const taken = leased + Object.values(reserved).reduce((a, b) => a + b, 0);
  return { pool: text, size, leased, reserved, free: Math.max(0, size - taken) };
}

/** Per-peer totals over every node's counts, and the peers at each configured limit. */
export function accountingStatus(byPeer: Iterable<Iterable<PeerCount>>, limits: ResourceStatusOptions['limits'] = {}): PeerAccountingStatus {
  const out: PeerAccountingStatus = { peers: 0, ikeSas: 0, childSas: 0, atLimit: {} };
  const ike = limits.ikeSasPerPeer;
  const child = limits.childSasPerPeer;
  if (ike !== undefined) out.atLimit.ikeSasPerPeer = { limit: ike, peers: 0 };
  if (child !== undefined) out.atLimit.childSasPerPeer = { limit: child, peers: 0 };
  for (const nodes of byPeer) {
    let i = 0;
    let c = 0;
    for (const n of nodes) {
      i += n.ike;
      c += n.child;
    }
    if (i === 0 && c === 0) continue;
    out.peers++;
    out.ikeSas += i;
    out.childSas += c;
    if (ike !== undefined && i >= ike) out.atLimit.ikeSasPerPeer!.peers++;
    if (child !== undefined && c >= child) out.atLimit.childSasPerPeer!.peers++;
  }
  return out;
}

function parseRefusals(text: string): NodeResourceRefusals | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const out = emptyRefusals();
    for (const k of Object.keys(out) as Array<keyof NodeResourceRefusals>) {
      if (!Number.isSafeInteger(v[k])) return undefined;
      out[k] = v[k] as number;
    }
    if (Number.isSafeInteger(v.arrivalsWithoutChildSa)) out.arrivalsWithoutChildSa = v.arrivalsWithoutChildSa as number;
    return out;
  } catch {
    return undefined;
  }
}

/** Read the pools, the peers' counts and the nodes' refusals from etcd (three range reads). */
export async function readResourceStatus(client: Etcd3, cluster: string, opts: ResourceStatusOptions = {}): Promise<ClusterResourceStatus> {
  const base = clusterPrefix(cluster);
  const [pools, peers, stats] = await Promise.all([
    client.getAll().prefix(`${base}pools/`).strings(),
    client.getAll().prefix(`${base}peers/`).strings(),
    client.getAll().prefix(`${base}stats/`).strings(),
  ]);
  const byPool = new Map<string, string[]>((opts.pools ?? []).map((p) => [p, []]));
  for (const [key, value] of Object.entries(pools)) {
    const parts = key.slice(`${base}pools/`.length).split('/');
    if (parts.length !== 2) continue;
    let pool: string;
    try {
      pool = decodeURIComponent(parts[0]!);
    } catch {
      continue;
    }
    const list = byPool.get(pool) ?? [];
    list.push(value);
    byPool.set(pool, list);
  }
  const counts = new Map<string, PeerCount[]>();
  for (const [key, value] of Object.entries(peers)) {
    const k = parsePeerKey(cluster, key);
    const c = k?.kind === 'nodes' ? parsePeerCount(value) : undefined;
    if (!k || !c) continue;
    counts.set(k.peer, [...(counts.get(k.peer) ?? []), c]);
  }
  const refusals: Record<string, NodeResourceRefusals> = {};
  for (const [key, value] of Object.entries(stats).sort(([a], [b]) => a.localeCompare(b))) {
    const r = parseRefusals(value);
    if (r) refusals[key.slice(`${base}stats/`.length)] = r;
  }
  return {
    pools: [...byPool].sort(([a], [b]) => a.localeCompare(b)).map(([p, values]) => poolStatus(p, values)),
    peers: accountingStatus(counts.values(), opts.limits),
    refusals,
  };
}

/** Publish this node's refusals under its lease: only when they changed (a node calls this now and then). */
export async function publishRefusals(client: Etcd3, cluster: string, node: string, leaseId: string, refusals: NodeResourceRefusals): Promise<void> {
  await client.put(nodeStatsKey(cluster, node)).value(JSON.stringify(refusals)).lease(leaseId);
}

function limitText(name: string, l: PeerLimitStatus | undefined): string {
  return l ? `, ${l.peers} at ${name} ${l.limit}` : '';
}

/** The pools and accounting block of `ikeclone cluster status`. */
export function formatResourceStatus(r: ClusterResourceStatus): string {
  const lines: string[] = [];
  if (r.pools.length > 0) {
    lines.push('pools:');
    const rows: string[][] = [['POOL', 'SIZE', 'LEASED', 'RESERVED', 'FREE']];
    for (const p of r.pools) {
      const reserved = Object.entries(p.reserved).sort(([a], [b]) => a.localeCompare(b)).map(([n, k]) => `${n} ${k}`).join(', ');
      rows.push([p.pool, String(p.size), String(p.leased), reserved || '0', String(p.free)]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
    for (const row of rows) lines.push(`  ${row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`);
  }
  const a = r.peers;
  lines.push(`peers: ${a.peers} counted, ${a.ikeSas} IKE SA${a.ikeSas === 1 ? '' : 's'}, ${a.childSas} Child SA${a.childSas === 1 ? '' : 's'}` +
    `${limitText('ikeSasPerPeer', a.atLimit.ikeSasPerPeer)}${limitText('childSasPerPeer', a.atLimit.childSasPerPeer)}`);
  const nodes = Object.entries(r.refusals);
  if (nodes.length > 0) {
    lines.push('refusals:');
    for (const [node, f] of nodes) lines.push(`  ${node}  ${refusalsText(f)}`);
  }
  return lines.join('\n');
}

/** One node's refusals by reason, as both status commands print them. */
export function refusalsText(f: NodeResourceRefusals): string {
  return `NO_ADDITIONAL_SAS ${f.noAdditionalSas} (contention ${f.admissionContention}), INTERNAL_ADDRESS_FAILURE ${f.internalAddressFailure}, lease writes refused ${f.leaseWritesRefused}${f.arrivalsWithoutChildSa ? `, clones arrived without a Child SA ${f.arrivalsWithoutChildSa}` : ''}`;
}
