// The `cluster:` section of the configuration (architecture §8): which cluster
// this node joins, under which name and address, through which etcd members,
// and the file holding the secret the cluster key is derived from. Absent:
// the gateway runs alone and needs no etcd.
//
// The secret file's mode is checked here (0600 or stricter), so a too-open
// key is a configuration error with a line number (exit 2); the key itself
// is read and derived when the gateway joins (control/cluster/seal.ts).
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Problem, got, type PathSeg } from './errors.js';
import { boolean, duration, ipLiteral, type Ctx } from './fields.js';
import { NAME_EXPECTED, NAME_RE, type ClusterConfig, type ClusterRedirectConfig } from './types.js';

const KEYS = ['name', 'node', 'address', 'etcd', 'tls', 'sealing_key_file', 'previous_sealing_key_files', 'lease_ttl', 'on_etcd_unreachable', 'spi_prefix', 'redirect', 'pool_reserve', 'suspect_silent', 'probe_port', 'admit_arrival_child'];
const ENDPOINT_EXPECTED = 'etcd client URLs, http(s)://ADDRESS:PORT (a list or one comma-separated string)';
/** Lease TTL bounds: below 2 s a busy node loses its lease; above 60 s failover waits too long. */
export const MIN_LEASE_TTL_MS = 2000;
export const MAX_LEASE_TTL_MS = 60_000;
export const DEFAULT_LEASE_TTL_MS = 5000;
/** Secrets kept from earlier rotations: records sealed under them still open (control/cluster/seal.ts). */
export const MAX_PREVIOUS_SEALING_KEYS = 4;
/** Virtual IPs of each pool a node may claim ahead of IKE_AUTH (control/cluster/pool-store.ts): more parks addresses no peer has. */
export const MAX_POOL_RESERVE = 64;

function readableFile(ctx: Ctx, v: unknown, what: string, path: PathSeg[]): string | Problem {
  if (typeof v !== 'string' || v.trim() === '') return new Problem(got(v), `the path of ${what}`, path);
  const file = resolve(ctx.baseDir, v);
  try {
    if (!statSync(file).isFile()) return new Problem(`${file} is not a regular file`, `the path of ${what}`, path);
  } catch (e) {
    return new Problem(`cannot use ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, `the path of ${what}`, path);
  }
  return file;
}

/** A secret file: a regular file no one but its owner may read or write (0600 or stricter). */
function secretFile(ctx: Ctx, v: unknown, path: PathSeg[]): string | Problem {
  const file = readableFile(ctx, v, 'the cluster secret (mode 0600)', path);
  if (file instanceof Problem) return file;
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    return new Problem(`mode ${mode.toString(8).padStart(4, '0')} lets others read or write the sealing key`, 'a file with mode 0600 or stricter', path);
  }
  return file;
}

/**
 * cluster.previous_sealing_key_files: the secrets of earlier rotations, each
 * checked like sealing_key_file, none the current one, none twice. Records
 * and hashes under them are still accepted; nothing is sealed with them.
 */
function previousSecretFiles(ctx: Ctx, v: unknown, current: string): string[] | Problem {
  if (v === undefined) return [];
  const expected = `a list of 1 to ${MAX_PREVIOUS_SEALING_KEYS} secret files (mode 0600) of earlier rotations, none of them sealing_key_file`;
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_PREVIOUS_SEALING_KEYS) return new Problem(got(v), expected, ['previous_sealing_key_files']);
  const out: string[] = [];
  for (const [i, item] of v.entries()) {
    const file = secretFile(ctx, item, ['previous_sealing_key_files', i]);
    if (file instanceof Problem) return file;
    if (file === current) return new Problem(`${file} is sealing_key_file`, 'a secret of an earlier rotation, not the current one', ['previous_sealing_key_files', i]);
    if (out.includes(file)) return new Problem(`${file} is listed twice`, expected, ['previous_sealing_key_files', i]);
    out.push(file);
  }
  return out;
}

function endpoints(v: unknown): string[] | Problem {
  const items = typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v;
  if (!Array.isArray(items) || items.length === 0) return new Problem(got(v), ENDPOINT_EXPECTED, ['etcd']);
  const out: string[] = [];
  for (const [i, item] of items.entries()) {
    let url: URL | undefined;
    try {
      url = typeof item === 'string' ? new URL(item) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.port === '' || url.pathname !== '/') {
      return new Problem(got(item), ENDPOINT_EXPECTED, ['etcd', i]);
    }
    out.push(`${url.protocol}//${url.host}`);
  }
  return out;
}

/** cluster.redirect: {above: IKE SAs (0..10^6), at: init | auth (default init)}. */
function clusterRedirect(v: unknown): ClusterRedirectConfig | Problem {
  const expected = 'a mapping with above (IKE SAs from which this node redirects new clients) and at (init or auth)';
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return new Problem(got(v), expected, ['redirect']);
  const r = v as Record<string, unknown>;
  for (const k of Object.keys(r)) if (k !== 'above' && k !== 'at') return new Problem('unknown key', 'one of above, at', ['redirect', k]);
  const above = r.above;
  if (typeof above !== 'number' || !Number.isInteger(above) || above < 0 || above > 1_000_000) {
    return new Problem(above === undefined ? 'missing' : got(above), 'an integer from 0 to 1000000: established IKE SAs from which new clients are redirected', ['redirect', 'above']);
  }
  const at = r.at ?? 'init';
  if (at !== 'init' && at !== 'auth') return new Problem(got(at), 'one of init, auth', ['redirect', 'at']);
  return { above, at };
}

/** cluster: absent -> undefined (a single gateway); present -> every field checked. */
export function clusterSection(ctx: Ctx): (v: unknown) => ClusterConfig | undefined | Problem {
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return new Problem(got(v), `a mapping with ${KEYS.join(', ')}`);
    const raw = v as Record<string, unknown>;
    for (const k of Object.keys(raw)) if (!KEYS.includes(k)) return new Problem('unknown key', `one of ${KEYS.join(', ')}`, [k]);
    for (const k of ['name', 'node'] as const) {
      if (typeof raw[k] !== 'string' || !NAME_RE.test(raw[k] as string)) return new Problem(raw[k] === undefined ? 'missing' : got(raw[k]), NAME_EXPECTED, [k]);
    }
    const address = typeof raw.address === 'string' ? ipLiteral(raw.address) : undefined;
    if (!address?.ok) return new Problem(raw.address === undefined ? 'missing' : got(raw.address), "this node's IP address (clones handed to it bind there)", ['address']);
    const etcd = raw.etcd === undefined ? new Problem('missing', ENDPOINT_EXPECTED, ['etcd']) : endpoints(raw.etcd);
    if (etcd instanceof Problem) return etcd;
    const keyFile = secretFile(ctx, raw.sealing_key_file, ['sealing_key_file']);
    if (keyFile instanceof Problem) return keyFile;
    const previous = previousSecretFiles(ctx, raw.previous_sealing_key_files, keyFile);
    if (previous instanceof Problem) return previous;
    const out: ClusterConfig = {
      name: raw.name as string,
      node: raw.node as string,
      address: address.value,
      etcd,
      sealingKeyFile: keyFile,
      ...(previous.length > 0 && { previousSealingKeyFiles: previous }),
      leaseTtlMs: DEFAULT_LEASE_TTL_MS,
      onEtcdUnreachable: 'fail',
    };
    if (raw.lease_ttl !== undefined) {
      const ttl = duration(raw.lease_ttl);
      const expected = `a duration from ${MIN_LEASE_TTL_MS / 1000}s to ${MAX_LEASE_TTL_MS / 1000}s`;
      if (ttl instanceof Problem) return new Problem(ttl.problem, expected, ['lease_ttl']);
      if (ttl < MIN_LEASE_TTL_MS || ttl > MAX_LEASE_TTL_MS) return new Problem(`${ttl} ms`, expected, ['lease_ttl']);
      out.leaseTtlMs = ttl;
    }
    if (raw.on_etcd_unreachable !== undefined) {
      if (raw.on_etcd_unreachable !== 'fail' && raw.on_etcd_unreachable !== 'standalone') return new Problem(got(raw.on_etcd_unreachable), 'one of fail, standalone', ['on_etcd_unreachable']);
      out.onEtcdUnreachable = raw.on_etcd_unreachable;
    }
    if (raw.spi_prefix !== undefined) {
      const p = raw.spi_prefix;
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 255) return new Problem(got(p), 'an integer from 1 to 255 (0 is a single gateway)', ['spi_prefix']);
      out.spiPrefix = p;
    }
    if (raw.pool_reserve !== undefined) {
      const n = raw.pool_reserve;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_POOL_RESERVE) {
        return new Problem(got(n), `an integer from 0 to ${MAX_POOL_RESERVE}: virtual IPs of each pool this node claims ahead of IKE_AUTH (0: each lease is taken from etcd in IKE_AUTH)`, ['pool_reserve']);
      }
      out.poolReserve = n;
    }
    if (raw.suspect_silent !== undefined) {
      const b = boolean(raw.suspect_silent);
      if (b instanceof Problem) return new Problem(b.problem, "yes or no: whether this node writes a heartbeat and revokes the lease of a member silent for lease_ttl that does not answer a liveness probe", ['suspect_silent']);
      out.suspectSilent = b;
    }
    if (raw.probe_port !== undefined) {
      const p = raw.probe_port;
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) {
        return new Problem(got(p), "an integer from 1 to 65535: the UDP port on this node's address where it answers other members' liveness probes", ['probe_port']);
      }
      out.probePort = p;
    }
    if (raw.admit_arrival_child !== undefined) {
      const b = boolean(raw.admit_arrival_child);
      if (b instanceof Problem) return new Problem(b.problem, "yes or no: whether the Child SA this node creates for an arriving clone waits for an exact per-peer admission in etcd", ['admit_arrival_child']);
      out.admitArrivalChild = b;
    }
    if (raw.redirect !== undefined) {
      const r = clusterRedirect(raw.redirect);
      if (r instanceof Problem) return r;
      out.redirect = r;
    }
    if (raw.tls !== undefined) {
      const tls = raw.tls as Record<string, unknown>;
      if (typeof tls !== 'object' || tls === null || Array.isArray(tls)) return new Problem(got(raw.tls), 'a mapping with ca, cert, key', ['tls']);
      for (const k of Object.keys(tls)) if (!['ca', 'cert', 'key'].includes(k)) return new Problem('unknown key', 'one of ca, cert, key', ['tls', k]);
      const files: Record<string, string> = {};
      for (const k of ['ca', 'cert', 'key'] as const) {
        if (tls[k] === undefined) continue;
        const f = readableFile(ctx, tls[k], `a PEM file (${k})`, ['tls', k]);
        if (f instanceof Problem) return f;
        files[k] = f;
      }
      if (files.ca === undefined) return new Problem('missing', "the CA that signed etcd's certificate", ['tls', 'ca']);
      if ((files.cert === undefined) !== (files.key === undefined)) return new Problem('cert without key or key without cert', 'both cert and key, or neither', ['tls']);
      if (!out.etcd.every((e) => e.startsWith('https:'))) return new Problem('tls is set but an etcd endpoint is http://', 'https:// endpoints with tls', ['etcd']);
      out.tls = { ...files, ca: files.ca };
    }
    return out;
  };
}
