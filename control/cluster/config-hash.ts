// The connections' hash checked when a node joins (architecture §8): every
// node of a cluster must run the same connections, or a clone handed to a node
// would meet another policy there. The hash covers the normalised connections
// (not the file: the node's own name, address and listen section differ) and
// is an HMAC under the cluster key, so etcd learns nothing about PSKs or keys.
import { KeyObject, X509Certificate } from 'node:crypto';
import type { ConnectionConfig } from '../config/types.js';
import type { ClusterKey } from './seal.js';

/** JSON with sorted keys; bytes, keys and certificates by content. */
export function canonicalJson(value: unknown): string {
  const norm = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
    if (v instanceof KeyObject) {
      return { key: v.type === 'secret' ? v.export().toString('hex') : v.export({ format: 'der', type: v.type === 'private' ? 'pkcs8' : 'spki' }).toString('hex') };
    }
    if (v instanceof X509Certificate) return { cert: v.raw.toString('hex') };
    if (v instanceof Map) return { map: [...v.entries()].map(([k, x]) => [norm(k), norm(x)]) };
    if (v instanceof Set) return { set: [...v].map(norm) };
    if (Array.isArray(v)) return v.map(norm);
    if (typeof v === 'function' || typeof v === 'symbol') return undefined;
    if (typeof v === 'bigint') return v.toString();
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) out[k] = norm((v as Record<string, unknown>)[k]);
      return out;
    }
    return v;
  };
  return JSON.stringify(norm(value));
}

/**
 * The connections' hash a cluster's nodes must agree on, under the current
 * key, then under each previous one (a rotation under way, seal.ts).
 */
export function acceptedConnectionsHashes(key: ClusterKey, connections: readonly ConnectionConfig[]): string[] {
  const bytes = new TextEncoder().encode(canonicalJson(connections));
  const macs = key.acceptedMacs(bytes);
  bytes.fill(0);
  return macs;
}
