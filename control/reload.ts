// What a configuration reload changes: the difference between the running
// configuration and the one just read from the file, by connection, and the
// settings outside `connections` that only a restart can apply (sockets,
// worker threads, the TUN device, the metrics listener, ...).
//
// Owner: the main thread (Gateway.reload). Pure: no SA is touched here.
import { createHash, KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConnectionConfig, GatewayConfig } from './config/index.js';

/** The running configuration's identity, as `status` shows it. */
export interface ConfigInfo {
  /** When it was loaded (ISO 8601). */
  loadedAt: string;
  /** SHA-256 of the file's bytes, hex, first 16 characters; null when it did not come from a file. */
  hash: string | null;
  file: string | null;
}

/** Result of a reload (`ikeclone reload`, SIGHUP). */
export interface ReloadResult {
  added: string[];
  removed: string[];
  /** Connections whose settings changed: new SAs use them, existing SAs keep theirs. */
  changed: string[];
  unchanged: string[];
  /** Top-level settings that differ but need a restart; the running values stay. */
  needsRestart: string[];
  config: ConfigInfo;
}

/** Settings outside `connections` that the running gateway cannot change. */
// `cluster`: membership, the etcd client, the sealing key and the node's SPI
// prefix are fixed when the node joins (control/cluster/node.ts).
const RESTART_KEYS = ['listen', 'limits', 'retransmit', 'dataplane', 'keylog', 'metrics', 'log', 'cluster'] as const;

/** SHA-256 of a configuration file, hex, shortened to 16 characters (enough to tell versions apart). */
export function configHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/** The identity of `config` read from `bytes` (or of a configuration built in memory). */
export function configInfo(config: GatewayConfig, bytes?: Uint8Array): ConfigInfo {
  let data = bytes;
  if (data === undefined && config.file !== undefined) {
    try {
      data = readFileSync(config.file);
    } catch {
      data = undefined;
    }
  }
  return { loadedAt: new Date().toISOString(), hash: data ? configHash(data) : null, file: config.file ?? null };
}

/** A comparable text of a configuration value: keys and certificates by their DER, byte arrays by their hex. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof KeyObject) {
      if (v.type === 'secret') return `secret:${v.export().toString('hex')}`;
      const der = v.type === 'private' ? v.export({ format: 'der', type: 'pkcs8' }) : v.export({ format: 'der', type: 'spki' });
      return `${v.type}:${der.toString('hex')}`;
    }
    if (v instanceof X509Certificate) return `cert:${v.raw.toString('hex')}`;
    if (v instanceof Uint8Array) return `bytes:${Buffer.from(v).toString('hex')}`;
    return v;
  });
}

export interface ConfigDiff {
  added: ConnectionConfig[];
  removed: string[];
  changed: ConnectionConfig[];
  unchanged: string[];
  needsRestart: string[];
}

/** How `next` differs from `running`, connection by connection. */
export function diffConfig(running: GatewayConfig, next: GatewayConfig): ConfigDiff {
  const before = new Map(running.connections.map((c) => [c.name, c]));
  const after = new Map(next.connections.map((c) => [c.name, c]));
  const diff: ConfigDiff = { added: [], removed: [], changed: [], unchanged: [], needsRestart: [] };
  for (const c of next.connections) {
    const old = before.get(c.name);
    if (!old) diff.added.push(c);
    else if (canonical(old) !== canonical(c)) diff.changed.push(c);
    else diff.unchanged.push(c.name);
  }
  for (const name of before.keys()) if (!after.has(name)) diff.removed.push(name);
  for (const key of RESTART_KEYS) {
    if (canonical(running[key]) !== canonical(next[key])) diff.needsRestart.push(key);
  }
  return diff;
}
