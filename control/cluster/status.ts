// What a cluster looks like in etcd right now (architecture §8): members with
// their load and SPI prefix, and every clone's owner and epoch. Read by
// `ikeclone cluster status` straight from etcd, so it works with any node
// down. Nothing here is secret: records are sealed and are not opened (a
// survivor takes the sealed bytes of a dead node's records along, so that its
// claim is one transaction: failover.ts, reassign.ts).
import type { Etcd3 } from 'etcd3';
import { cloneKeys, clusterPrefix } from './etcd-client.js';
import { readMembers, type MemberInfo } from './membership.js';
import { formatResourceStatus, type ClusterResourceStatus } from './resource-status.js';
import type { ClusterKey } from './seal.js';

export interface ClusterClone {
  family: string;
  index: number;
  owner: string;
  epoch: number;
}

export interface ClusterStatus {
  cluster: string;
  members: Array<MemberInfo & { clones: number }>;
  clones: ClusterClone[];
  /** Clones whose owner is no live member (waiting for a takeover). */
  orphaned: number;
  /** Pools, per-peer accounting and refusals (resource-status.ts), when read: `ikeclone cluster status` reads them. */
  resources?: ClusterResourceStatus;
  /**
   * Which of the configured keys the clones' records open under (sealingStatus), when the
   * sealing keys could be read: a rotation is over once no record needs a previous key.
   */
  sealing?: RecordSealing;
}

/** Clone records by the key they open under: the current one, a previous one (a rotation under way), or none of ours. */
export interface RecordSealing {
  current: number;
  previous: number;
  unopened: number;
}

/** A clone's sealed record as read with the owners, and its revision (a claim compares it). */
export interface SealedRecord {
  value: Buffer;
  modRevision: string;
}

export async function readClusterStatus(client: Etcd3, cluster: string): Promise<ClusterStatus> {
  return (await readClusterState(client, cluster)).status;
}

/** The status and every clone's sealed record, by owner key, from the same read. */
export async function readClusterState(client: Etcd3, cluster: string): Promise<{ status: ClusterStatus; records: Map<string, SealedRecord> }> {
  const members = await readMembers(client, cluster);
  const prefix = `${clusterPrefix(cluster)}clones/`;
  const kvs = (await client.getAll().prefix(prefix).exec()).kvs;
  const records = new Map<string, SealedRecord>();
  const clones: ClusterClone[] = [];
  for (const kv of kvs) {
    const key = kv.key.toString();
    if (key.endsWith('/ike')) records.set(`${key.slice(0, -'ike'.length)}owner`, { value: kv.value, modRevision: kv.mod_revision });
    const m = /^(.+)\/(\d+)\/owner$/.exec(key.slice(prefix.length));
    if (!m) continue;
    try {
      const o = JSON.parse(kv.value.toString()) as { node?: unknown; epoch?: unknown };
      if (typeof o.node === 'string' && Number.isSafeInteger(o.epoch)) clones.push({ family: m[1]!, index: Number(m[2]), owner: o.node, epoch: o.epoch as number });
    } catch {
      // not an owner record: skipped
    }
  }
  clones.sort((a, b) => a.family.localeCompare(b.family) || a.index - b.index);
  const live = new Set(members.map((m) => m.node));
  const status = {
    cluster,
    members: members.map((m) => ({ ...m, clones: clones.filter((c) => c.owner === m.node).length })),
    clones,
    orphaned: clones.filter((c) => !live.has(c.owner)).length,
  };
  return { status, records };
}

/** Open every clone record (its key path, epoch and owner as etcd names them) to see which key it is sealed under. */
export function sealingStatus(cluster: string, status: ClusterStatus, records: ReadonlyMap<string, SealedRecord>, key: Pick<ClusterKey, 'sealedUnder'>): RecordSealing {
  const out: RecordSealing = { current: 0, previous: 0, unopened: 0 };
  for (const c of status.clones) {
    const keys = cloneKeys(cluster, c.family, c.index);
    const record = records.get(keys.owner);
    if (!record) continue;
    const under = key.sealedUnder({ keyPath: keys.record, epoch: c.epoch, owner: c.owner }, new Uint8Array(record.value));
    if (under === 'current') out.current++;
    else if (under === 'previous') out.previous++;
    else out.unopened++;
  }
  return out;
}

/** The human form of `ikeclone cluster status`. */
export function formatClusterStatus(s: ClusterStatus): string {
  const lines = [`cluster ${s.cluster}: ${s.members.length} member${s.members.length === 1 ? '' : 's'}, ${s.clones.length} clone${s.clones.length === 1 ? '' : 's'}${s.orphaned ? `, ${s.orphaned} without a live owner` : ''}`];
  const rows: string[][] = [['NODE', 'ADDRESS', 'SPI PREFIX', 'LOAD', 'CLONES']];
  for (const m of s.members) rows.push([m.node, m.address, String(m.spiPrefix), String(m.load), String(m.clones)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) lines.push(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`);
  if (s.clones.length > 0) {
    lines.push('clones:');
    for (const c of s.clones) lines.push(`  ${c.family}/${c.index}  owner ${c.owner}  epoch ${c.epoch}`);
  }
  if (s.sealing && s.clones.length > 0) {
    const { current, previous, unopened } = s.sealing;
    lines.push(`records: ${current} sealed under the current key, ${previous} under a previous one${unopened ? `, ${unopened} that open under none of this configuration's keys` : ''}`);
  }
  if (s.resources) lines.push(formatResourceStatus(s.resources));
  return lines.join('\n');
}
