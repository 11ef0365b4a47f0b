// The etcd keys of a cluster's shared resources (architecture §8), and the
// two etcd idioms they need: following a prefix (a snapshot, then a watch from
// the revision after it, so no change falls between them) and a transaction
// guarded by "no key under this prefix" (etcd compares a key range).
//
//   peers/<peer>/nodes/<node> -> {"ike":n,"child":m}  the peer's SAs on <node>   (that node's lease)
//   peers/<peer>/vip/<address> -> {"pool":..,"family":4|6}  the peer's addresses (no lease)
//   pools/<pool>/<address>     -> {"peer":<peer>}          leased to the peer      (no lease)
//                              or {"reserved":<node>}      claimed ahead by <node> (that node's lease)
//   stats/<node>               -> {"noAdditionalSas":..}   <node>'s refusals by reason (that node's lease; resource-status.ts)
//
// <peer> is the peer's authenticated identity and <pool> the pool's text, both
// URI-encoded so that no '/' of theirs splits a key.
//
// Owner: the main thread.
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { clusterPrefix } from './etcd-client.js';

/** What one node counts of one peer (peers/<peer>/nodes/<node>). */
export interface PeerCount {
  ike: number;
  child: number;
}

/** A node's count of a peer as etcd holds it; undefined: not a count record. */
export function parsePeerCount(text: string): PeerCount | undefined {
  try {
    const v = JSON.parse(text) as PeerCount;
    const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
    return count(v.ike) && count(v.child) ? { ike: v.ike, child: v.child } : undefined;
  } catch {
    return undefined;
  }
}

export function peerPrefix(cluster: string, peer: string): string {
  return `${clusterPrefix(cluster)}peers/${encodeURIComponent(peer)}/`;
}

export function peerNodeKey(cluster: string, peer: string, node: string): string {
  return `${peerPrefix(cluster, peer)}nodes/${node}`;
}

export function peerVipKey(cluster: string, peer: string, address: string): string {
  return `${peerPrefix(cluster, peer)}vip/${address}`;
}

export function poolPrefix(cluster: string, pool: string): string {
  return `${clusterPrefix(cluster)}pools/${encodeURIComponent(pool)}/`;
}

export function nodeStatsKey(cluster: string, node: string): string {
  return `${clusterPrefix(cluster)}stats/${node}`;
}

/** A key under peers/ taken apart: the peer, what the key is (nodes or vip), and its last segment. */
export function parsePeerKey(cluster: string, key: string): { peer: string; kind: string; name: string } | undefined {
  const base = `${clusterPrefix(cluster)}peers/`;
  if (!key.startsWith(base)) return undefined;
  const parts = key.slice(base.length).split('/');
  if (parts.length !== 3) return undefined;
  try {
    return { peer: decodeURIComponent(parts[0]!), kind: parts[1]!, name: parts[2]! };
  } catch {
    return undefined;
  }
}

/** The end of the key range holding every key that starts with `prefix` (etcd's range_end). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix, 'utf8');
  end[end.length - 1]! += 1;
  return end;
}

/**
 * Keep up with every key under `prefix`: `put` for each key there now and
 * each later write, `del` for each later deletion, in etcd's order;
 * `seeded` is called once the keys there now have been put.
 */
export async function followPrefix(client: Etcd3, prefix: string, put: (kv: IKeyValue) => void, del: (kv: IKeyValue) => void, seeded?: () => void): Promise<Watcher> {
  const snapshot = await client.getAll().prefix(prefix).exec();
  for (const kv of snapshot.kvs) put(kv);
  seeded?.();
  const watcher = await client.watch().prefix(prefix).startRevision(String(BigInt(snapshot.header.revision) + 1n)).create();
  watcher.on('put', put);
  watcher.on('delete', del);
  return watcher;
}

/** Delete everything under `prefix` and the `also` keys, if and only if nothing is under `guard` (one transaction). */
export async function deleteIfRangeEmpty(client: Etcd3, guard: string, prefix: string, also: readonly string[]): Promise<boolean> {
  const res = await client.kv.txn({
    compare: [{ key: Buffer.from(guard), range_end: prefixEnd(guard), target: 'Create', result: 'Equal', create_revision: 0 }],
    success: [
      { request_delete_range: { key: Buffer.from(prefix), range_end: prefixEnd(prefix) } },
      ...also.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
    ],
    failure: [],
  });
  return res.succeeded;
}

/** Set `inner` -> `value` in the map of `outer` (made when missing): per-peer tables of per-node or per-address values. */
export function setNested<V>(table: Map<string, Map<string, V>>, outer: string, inner: string, value: V): void {
  let m = table.get(outer);
  if (!m) table.set(outer, (m = new Map()));
  m.set(inner, value);
}

/** Delete `inner` from the map of `outer`, and that map when it is left empty. */
export function deleteNested<V>(table: Map<string, Map<string, V>>, outer: string, inner: string): void {
  const m = table.get(outer);
  m?.delete(inner);
  if (m?.size === 0) table.delete(outer);
}
