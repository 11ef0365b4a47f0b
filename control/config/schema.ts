/**
 * ikeclone's configuration: one YAML file, modelled on strongSwan's
 * swanctl.conf so that operators can carry their habits over (connection and
 * child names as map keys, snake_case option names, proposal keywords,
 * identities, durations). Validation is strict and precise: every problem is
 * reported with the file, the line, the path of the offending value
 * ("connections.site-a.children.net.esp[0]") and what was expected; unknown
 * keys are errors, not silently ignored. The result is a fully typed,
 * normalised GatewayConfig: durations in milliseconds, proposals parsed,
 * identities parsed, key files read, PSKs as bytes.
 *
 * The reference of every key, its default and its meaning is
 * docs/configuration.md; keep it true when a field changes here.
 *
 * The library API passes objects instead of YAML: connectionFromObject and
 * configFromObject take the same keys and give the same errors (file
 * "<object>", no line numbers).
 */
import * as z from 'zod';
import { identityFromAddress, type Identity } from '../ike/identity.js';
import { IdType } from '../wire/constants.js';
import {
  DEFAULT_CHILD_REKEY, DEFAULT_IKE_PORT, DEFAULT_IKE_REKEY, DEFAULT_LIMITS, DEFAULT_NAT_PORT, DEFAULT_REPLAY_WINDOW, DEFAULT_RETRANSMIT,
  DEFAULT_TUN_MTU, MAX_CLONES, MAX_REPLAY_WINDOW, MAX_WORKERS, MIN_REPLAY_WINDOW, autoWorkers,
} from './defaults.js';
import { Problem, got, report, type IssueSink, type PathSeg } from './errors.js';
import {
  PORT, TS_EXPECTED, boolean, count, duration, durationOrPercent, identityOrAny, integer, interval, ipLiteral, leaf, listOf, localAddress,
  namedMap, oneOf, pool, proposals, remoteAddress, section, trafficSelector, vip, withDefault, type Ctx,
} from './fields.js';
import { PSK_EXPECTED, certificate, certificateFiles, crlFiles, keylogDir, privateKey, pskFile, pskValue, publicKeyOrCert, subjectDer } from './secrets.js';
import { keyMatchesCertificate, parseCertificate } from '../crypto/x509/index.js';
import { certificateSubjectDer } from '../crypto/der.js';
import { signingKeyFromPrivateKey } from '../crypto/auth.js';
import { redirectSchema } from './redirect-schema.js';
import { pathConfig, pathFields } from './path-schema.js';
import { outerHeaderConfig, outerHeaderFields } from './outer-header-schema.js';
import { MIN_FRAGMENT_SIZE } from '../ike/defaults.js';
import type { FragmentationMode } from '../ike/policy.js';
import type {
  AuthMethod, ChildConfig, CloneConfig, ConnectionConfig, DataplaneConfig, EndpointConfig, GatewayConfig, ListenConfig, LimitsConfig,
  LogLevel, MetricsConfig, PoolConfig, RetransmitConfig, TrafficSelectorConfig,
} from './types.js';
import { LOG_LEVELS } from './types.js';
import { clusterSection } from './cluster-section.js';

const METRICS_LISTEN_EXPECTED = 'ADDRESS:PORT with an IP literal and a port from 1 to 65535, e.g. 127.0.0.1:9710 or [::1]:9710';

/** metrics.listen: "127.0.0.1:9710" or "[::1]:9710". */
function metricsListen(v: unknown): MetricsConfig | Problem {
  if (typeof v !== 'string') return new Problem(got(v), METRICS_LISTEN_EXPECTED);
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(v);
  const ip = ipLiteral(m?.[1] ?? m?.[2] ?? '');
  const port = Number(m?.[3]);
  if (!m || !ip.ok || !Number.isInteger(port) || port < 1 || port > 65535) return new Problem(got(v), METRICS_LISTEN_EXPECTED);
  return { address: ip.value, port };
}

const WORKERS_EXPECTED = `auto or an integer from 1 to ${MAX_WORKERS}`;

/** dataplane.workers: auto (the available cores) or a count. */
export function workersValue(v: unknown): { workers: number; workersAuto: boolean } | Problem {
  if (v === undefined || v === 'auto') return { workers: autoWorkers(), workersAuto: true };
  const n = integer(1, MAX_WORKERS, WORKERS_EXPECTED)(v);
  return n instanceof Problem ? n : { workers: n, workersAuto: false };
}

const AUTH = oneOf(['psk', 'pubkey'] as const);

/** swanctl's fragmentation (RFC 7383): yes | accept | force | no; YAML true and false stand for yes and no. */
function fragmentation(v: unknown): FragmentationMode | Problem {
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return oneOf(['yes', 'accept', 'force', 'no'] as const)(v);
}

function localEndpointSchema(ctx: Ctx) {
  return section({
    id: leaf(identityOrAny(false)),
    // swanctl's rsa/pss: public key authentication, RSA signatures with RSASSA-PSS (RFC 7427).
    auth: leaf(withDefault<AuthMethod | 'rsa/pss' | undefined>(undefined, oneOf(['psk', 'pubkey', 'rsa/pss'] as const))),
    key: leaf(privateKey(ctx)),
    cert: leaf(certificate(ctx)),
    certs: leaf(certificateFiles(ctx)),
  }, 'a mapping with id, auth, key, certs, cert');
}

function remoteEndpointSchema(ctx: Ctx) {
  return section({
    id: leaf(identityOrAny(true)),
    auth: leaf(withDefault<AuthMethod | undefined>(undefined, AUTH)),
    pubkey: leaf(publicKeyOrCert(ctx)),
    cacerts: leaf(certificateFiles(ctx)),
    crls: leaf(crlFiles(ctx)),
    revocation: leaf(withDefault<'strict' | 'ifuri' | 'relaxed' | undefined>(undefined, oneOf(['strict', 'ifuri', 'relaxed'] as const))),
  }, 'a mapping with id, auth, pubkey, cacerts, crls, revocation');
}

function cloneSchema() {
  return section({
    supported: leaf(withDefault(true, boolean)),
    per: leaf(withDefault('none', oneOf(['none', 'worker', 'nic', 'node'] as const))),
    count: leaf(withDefault<number | undefined>(undefined, integer(1, MAX_CLONES))),
    nics: leaf(withDefault<string[] | undefined>(undefined, listOf('local IP addresses, one per NIC', ipLiteral))),
  }, 'a mapping with supported, per, count, nics');
}

function childSchema() {
  // A Child SA needs a traffic selector on each side (RFC 7296 §3.13: a TS payload holds at least one).
  const ts = (field: string) => leaf(withDefault<Array<TrafficSelectorConfig | 'dynamic'>>(() => ['dynamic'],
    listOf(TS_EXPECTED, trafficSelector, `at least one traffic selector (omit ${field} for dynamic)`)));
  return section({
    local_ts: ts('local_ts'),
    remote_ts: ts('remote_ts'),
    esp: leaf(proposals('ESP', 'esp')),
    mode: leaf(withDefault('tunnel', oneOf(['tunnel'] as const))),
    rekey_time: leaf(withDefault(DEFAULT_CHILD_REKEY, duration)),
    life_time: leaf(withDefault<number | undefined>(undefined, duration)),
    rand_time: leaf(withDefault<number | undefined>(undefined, duration)),
    rekey_bytes: leaf(withDefault(0, count)),
    life_bytes: leaf(withDefault<number | undefined>(undefined, count)),
    rekey_packets: leaf(withDefault(0, count)),
    life_packets: leaf(withDefault<number | undefined>(undefined, count)),
    start_action: leaf(withDefault('none', oneOf(['none', 'start'] as const))),
    per_cpu_sas: leaf(withDefault(false, boolean)),
    per_cpu_sas_max: leaf(withDefault<number | undefined>(undefined, integer(1, MAX_WORKERS))),
    replay_window: leaf(withDefault(DEFAULT_REPLAY_WINDOW, (v) => {
      const expected = `a power of two from ${MIN_REPLAY_WINDOW} to ${MAX_REPLAY_WINDOW}`;
      const n = integer(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW, expected)(v);
      return n instanceof Problem || (n & (n - 1)) === 0 ? n : new Problem(got(v), expected);
    })),
    ...outerHeaderFields(),
  }, 'a mapping of child options (local_ts, remote_ts, esp, ...)').transform((raw, zctx) => {
    const ctx = zctx as unknown as IssueSink;
    const plus10 = (n: number): number => n + Math.round(n / 10);
    const lifeTime = raw.life_time ?? plus10(raw.rekey_time);
    if (raw.rekey_time > 0 && lifeTime > 0 && lifeTime <= raw.rekey_time) {
      report(ctx, new Problem(`life_time (${lifeTime} ms) is not longer than rekey_time (${raw.rekey_time} ms)`, 'a life_time greater than rekey_time', ['life_time']), raw);
      return z.NEVER;
    }
    const randTime = raw.rand_time ?? Math.max(0, lifeTime - raw.rekey_time);
    if (raw.rekey_time > 0 && randTime >= raw.rekey_time) {
      report(ctx, new Problem(`rand_time (${randTime} ms) is not shorter than rekey_time (${raw.rekey_time} ms)`, 'a rand_time smaller than rekey_time', ['rand_time']), raw);
      return z.NEVER;
    }
    const lifeBytes = raw.life_bytes ?? plus10(raw.rekey_bytes);
    const lifePackets = raw.life_packets ?? plus10(raw.rekey_packets);
    for (const [field, rekey, life] of [['life_bytes', raw.rekey_bytes, lifeBytes], ['life_packets', raw.rekey_packets, lifePackets]] as const) {
      if (rekey > 0 && life > 0 && life <= rekey) {
        report(ctx, new Problem(`${field} (${life}) is not larger than ${field.replace('life', 'rekey')} (${rekey})`, `a ${field} greater than the rekey limit, or 0`, [field]), raw);
        return z.NEVER;
      }
    }
    const child: Omit<ChildConfig, 'name'> = {
      localTs: raw.local_ts,
      remoteTs: raw.remote_ts,
      esp: raw.esp,
      mode: raw.mode,
      rekeyTime: raw.rekey_time,
      lifeTime,
      randTime,
      rekeyBytes: raw.rekey_bytes,
      lifeBytes,
      rekeyPackets: raw.rekey_packets,
      lifePackets,
      startAction: raw.start_action,
      replayWindow: raw.replay_window,
      perCpuSas: raw.per_cpu_sas,
      ...outerHeaderConfig(raw),
    };
    if (raw.per_cpu_sas_max !== undefined) child.perCpuSasMax = raw.per_cpu_sas_max;
    return child;
  });
}

/** One connection (connections.<name>): its fields and the rules between them. */
export function connectionSchema(ctx: Ctx) {
  return section({
    local_addrs: leaf(withDefault<string[]>(() => [], listOf('local IP addresses or %any', localAddress))),
    remote_addrs: leaf(withDefault<string[]>(() => [], listOf('peer IP addresses, host names or %any', remoteAddress))),
    remote_port: leaf(withDefault(DEFAULT_IKE_PORT, PORT)),
    ike: leaf(proposals('IKE', 'ike')),
    local: localEndpointSchema(ctx),
    remote: remoteEndpointSchema(ctx),
    psk: leaf(pskValue),
    psk_file: leaf(pskFile(ctx)),
    send_cert: leaf(withDefault<'ifasked' | 'always' | 'never' | undefined>(undefined, oneOf(['ifasked', 'always', 'never'] as const))),
    send_certreq: leaf(withDefault<boolean | undefined>(undefined, boolean)),
    mobike: leaf(withDefault(true, boolean)),
    encap: leaf(withDefault(false, boolean)),
    fragmentation: leaf(withDefault<FragmentationMode | undefined>(undefined, fragmentation)),
    fragment_size: leaf(withDefault<number | undefined>(undefined, integer(MIN_FRAGMENT_SIZE, 65535))),
    clone: cloneSchema(),
    redirect: redirectSchema(),
    vips: leaf(withDefault<string[]>(() => [], listOf('request, 0.0.0.0, :: or a specific IP address', vip))),
    pools: leaf(withDefault<PoolConfig[]>(() => [], listOf('address pools: CIDR prefixes or a-b ranges', pool))),
    dns: leaf(withDefault<string[]>(() => [], listOf('DNS server IP addresses', ipLiteral))),
    start_action: leaf(withDefault('none', oneOf(['none', 'start'] as const))),
    dpd_delay: leaf(withDefault(0, interval('dpd_delay'))),
    dpd_action: leaf(withDefault<'clear' | 'restart' | undefined>(undefined, oneOf(['clear', 'restart'] as const))),
    keepalive: leaf(withDefault<number | undefined>(undefined, interval('keepalive'))),
    rekey_time: leaf(withDefault(DEFAULT_IKE_REKEY, duration)),
    reauth_time: leaf(withDefault(0, duration)),
    over_time: leaf(withDefault<{ ms: number } | { percent: number }>({ percent: 10 }, durationOrPercent)),
    rand_time: leaf(withDefault<number | undefined>(undefined, duration)),
    children: namedMap(childSchema(), 'a mapping of child names to child options'),
  }, 'a mapping of connection options (remote_addrs, ike, local, remote, children, ...)').transform((raw, zctx) => {
    const issues = zctx as unknown as IssueSink;
    const problems: Problem[] = [];
    const problem = (path: PathSeg[], what: string, expected: string): void => { problems.push(new Problem(what, expected, path)); };

    // %any: alone, it means "any address" (the empty list).
    const anyList = (list: string[], field: string): string[] => {
      if (!list.includes('%any')) return list;
      if (list.length > 1) problem([field], '%any together with addresses', 'either %any or a list of addresses');
      return [];
    };
    const localAddrs = anyList(raw.local_addrs, 'local_addrs');
    const remoteAddrs = anyList(raw.remote_addrs, 'remote_addrs');

    // PSK: psk or psk_file, required exactly when a side uses psk.
    if (raw.psk !== undefined && raw.psk_file !== undefined) problem(['psk_file'], 'both psk and psk_file are set', 'only one of psk and psk_file');
    const psk = raw.psk ?? raw.psk_file;
    const defaultAuth: AuthMethod = psk !== undefined ? 'psk' : 'pubkey';
    const rsaPss = raw.local.auth === 'rsa/pss';
    const localAuth: AuthMethod = raw.local.auth === 'rsa/pss' ? 'pubkey' : raw.local.auth ?? defaultAuth;
    const remoteAuth = raw.remote.auth ?? defaultAuth;
    const usesPsk = localAuth === 'psk' || remoteAuth === 'psk';
    if (usesPsk && psk === undefined) {
      problem(['psk'], `missing, but ${localAuth === 'psk' ? 'local' : 'remote'}.auth is psk`, `psk or psk_file (${PSK_EXPECTED})`);
    }
    if (!usesPsk && psk !== undefined) {
      problem([raw.psk !== undefined ? 'psk' : 'psk_file'], 'set, but neither local.auth nor remote.auth is psk', 'no psk, or auth: psk on a side');
    }

    // Keys: pubkey authentication needs our private key / the peer's public key.
    if (localAuth === 'pubkey' && raw.local.key === undefined) {
      problem(['local', 'key'], 'missing, but local.auth is pubkey', 'a PEM private key (file path or PEM text)');
    }
    if (localAuth === 'psk' && raw.local.key !== undefined) problem(['local', 'key'], 'set, but local.auth is psk', 'no key, or auth: pubkey');
    if (raw.local.cert !== undefined && raw.local.key !== undefined && !raw.local.cert.cert.checkPrivateKey(raw.local.key.key)) {
      problem(['local', 'cert'], 'the certificate is not for local.key', 'the certificate of the private key in local.key');
    }
    // Certificates (RFC 7296 §3.6): local.certs is our end entity first, then intermediates.
    if (raw.local.cert !== undefined && raw.local.certs !== undefined) problem(['local', 'certs'], 'both cert and certs are set', 'only one of cert and certs');
    if (localAuth === 'psk' && (raw.local.certs ?? raw.local.cert) !== undefined) {
      problem(['local', raw.local.certs !== undefined ? 'certs' : 'cert'], 'set, but local.auth is psk', 'no certificate, or auth: pubkey');
    }
    if (rsaPss && raw.local.key !== undefined && raw.local.key.key.asymmetricKeyType !== 'rsa') {
      problem(['local', 'auth'], `rsa/pss, but local.key is a ${raw.local.key.key.asymmetricKeyType ?? 'non-RSA'} key`, 'pubkey, or an RSA key in local.key');
    }
    const localEe = raw.local.certs?.[0];
    if (localEe !== undefined && raw.local.key !== undefined) {
      const signing = signingKeyFromPrivateKey(raw.local.key.key);
      if (!signing.ok) problem(['local', 'key'], signing.error, 'an Ed25519, ECDSA P-256/P-384 or RSA private key');
      else if (!keyMatchesCertificate(signing.value, localEe)) {
        problem(['local', 'certs'], `the first certificate ("${localEe.subjectText}") is not for local.key`, 'the certificate of the private key in local.key first, then intermediates');
      }
    }
    const remoteCerts = raw.remote.cacerts !== undefined || raw.remote.crls !== undefined || raw.remote.revocation !== undefined;
    if (remoteAuth === 'pubkey' && raw.remote.pubkey === undefined && raw.remote.cacerts === undefined) {
      problem(['remote', 'pubkey'], 'missing, but remote.auth is pubkey', "the peer's PEM public key or certificate (file path or PEM text), or remote.cacerts");
    }
    if (remoteAuth === 'psk' && raw.remote.pubkey !== undefined) problem(['remote', 'pubkey'], 'set, but remote.auth is psk', 'no pubkey, or auth: pubkey');
    if (remoteAuth === 'psk' && remoteCerts) {
      const key = raw.remote.cacerts !== undefined ? 'cacerts' : raw.remote.crls !== undefined ? 'crls' : 'revocation';
      problem(['remote', key], 'set, but remote.auth is psk', `no ${key}, or auth: pubkey`);
    }
    if (raw.remote.cacerts === undefined && (raw.remote.crls !== undefined || raw.remote.revocation !== undefined)) {
      problem(['remote', raw.remote.crls !== undefined ? 'crls' : 'revocation'], 'set, but remote.cacerts is not', 'remote.cacerts to validate certificates against');
    }

    // Our identity: as configured, else the certificate subject, else our single address.
    let localId: Identity | 'any' = raw.local.id ?? 'any';
    if (raw.local.id === undefined && (localEe !== undefined || raw.local.cert !== undefined)) {
      const subject = localEe !== undefined ? certificateSubjectDer(localEe.der) : subjectDer(raw.local.cert!.cert);
      localId = { idType: IdType.DER_ASN1_DN, data: subject ?? new Uint8Array(0) };
      if (localId.data.length === 0) localId = 'any';
    } else if (raw.local.id === undefined && localAddrs.length === 1) {
      localId = identityFromAddress(localAddrs[0]!) ?? 'any';
    }

    // Initiating needs somewhere to send IKE_SA_INIT.
    const startsChild = Object.entries(raw.children).find(([, c]) => c.startAction === 'start');
    if ((raw.start_action === 'start' || startsChild !== undefined) && remoteAddrs.length === 0) {
      const why = raw.start_action === 'start' ? 'start_action is start' : `children.${startsChild![0]}.start_action is start`;
      problem(['remote_addrs'], `${raw.remote_addrs.length === 0 ? 'missing' : '%any'}, but ${why}`, 'the address or host name of the peer to initiate to');
    }

    // Cloning (RFC 7791): count defaults to one IKE SA per worker / per NIC.
    const c = raw.clone;
    let clone: CloneConfig = { supported: c.supported, per: c.per, count: 1, nics: [] };
    if (c.per !== 'none' && !c.supported) problem(['clone', 'per'], `${c.per}, but clone.supported is false`, 'per: none when cloning is not supported');
    if (c.per === 'nic') {
      if (c.nics === undefined || c.nics.length === 0) problem(['clone', 'nics'], 'missing, but clone.per is nic', 'the local address of each NIC');
      else clone = { supported: c.supported, per: 'nic', count: c.count ?? c.nics.length, nics: c.nics };
    } else {
      if (c.nics !== undefined) problem(['clone', 'nics'], `set, but clone.per is ${c.per}`, 'nics only with per: nic');
      if (c.per === 'worker') clone = { supported: c.supported, per: 'worker', count: c.count ?? ctx.workers, nics: [] };
      // per: node: the family's size is the cluster's (count 1 keeps the per-worker/NIC orchestrator out of it).
      else if (c.per === 'node' && c.count === undefined) clone = { supported: c.supported, per: 'node', count: 1, nics: [] };
      else if (c.count !== undefined) problem(['clone', 'count'], `set, but clone.per is ${c.per}`, 'count only with per: worker or per: nic');
    }

    // IKE SA lifetimes (strongSwan: over_time defaults to 10% of the longer of rekey and reauth).
    const lifetime = Math.max(raw.rekey_time, raw.reauth_time);
    const overTime = 'ms' in raw.over_time ? raw.over_time.ms : Math.round((lifetime * raw.over_time.percent) / 100);
    const randTime = raw.rand_time ?? overTime;
    if (raw.rekey_time > 0 && randTime >= raw.rekey_time) {
      problem([raw.rand_time !== undefined ? 'rand_time' : 'over_time'], `rand_time (${randTime} ms) is not shorter than rekey_time (${raw.rekey_time} ms)`, 'a rand_time smaller than rekey_time');
    }

    if (problems.length > 0) {
      for (const p of problems) report(issues, p, raw);
      return z.NEVER;
    }

    const local: EndpointConfig = { id: localId, auth: localAuth };
    if (rsaPss) local.rsaPadding = 'pss';
    if (raw.local.key !== undefined) local.key = raw.local.key.pem;
    if (raw.local.cert !== undefined) local.cert = raw.local.cert.pem;
    if (raw.local.certs !== undefined) local.certs = raw.local.certs;
    else if (raw.local.cert !== undefined) {
      const parsed = parseCertificate(new Uint8Array(raw.local.cert.cert.raw));
      if (parsed.ok) local.certs = [parsed.value];
    }
    const remote: EndpointConfig = { id: raw.remote.id ?? 'any', auth: remoteAuth };
    if (raw.remote.pubkey !== undefined) remote.pubkey = raw.remote.pubkey;
    if (raw.remote.cacerts !== undefined) remote.cacerts = raw.remote.cacerts;
    if (raw.remote.crls !== undefined) remote.crls = raw.remote.crls;
    if (raw.remote.revocation !== undefined) remote.revocation = raw.remote.revocation;

    const conn: Omit<ConnectionConfig, 'name'> = {
      localAddrs,
      remoteAddrs,
      remotePort: raw.remote_port,
      ike: raw.ike,
      local,
      remote,
      mobike: raw.mobike,
      encap: raw.encap,
      clone,
      redirect: raw.redirect,
      vips: raw.vips,
      pools: raw.pools,
      startAction: raw.start_action,
      dpdDelay: raw.dpd_delay,
      rekeyTime: raw.rekey_time,
      reauthTime: raw.reauth_time,
      overTime,
      randTime,
      // RFC 9611: per-resource Child SAs default to one per data-plane worker.
      children: Object.entries(raw.children).map(([name, child]) => ({ name, ...child, perCpuSasMax: child.perCpuSasMax ?? ctx.workers })),
    };
    if (psk !== undefined) conn.psk = psk;
    if (raw.send_cert !== undefined) conn.sendCert = raw.send_cert;
    if (raw.send_certreq !== undefined) conn.sendCertreq = raw.send_certreq;
    if (raw.dpd_action !== undefined) conn.dpdAction = raw.dpd_action;
    if (raw.keepalive !== undefined) conn.keepalive = raw.keepalive;
    if (raw.fragmentation !== undefined) conn.fragmentation = raw.fragmentation;
    if (raw.fragment_size !== undefined) conn.fragmentSize = raw.fragment_size;
    if (raw.dns.length > 0) conn.dns = raw.dns;
    return conn;
  });
}

/** The whole file: every section, each with its defaults. */
export function gatewaySchema(ctx: Ctx) {
  return section({
    log: section({ level: leaf(withDefault<LogLevel>('info', oneOf(LOG_LEVELS))) }, 'a mapping with level'),
    keylog: leaf(keylogDir(ctx)),
    listen: section({
      // Without an address the gateway has no socket to start on.
      address: leaf(withDefault<string[]>(() => ['0.0.0.0'], listOf('IP addresses to listen on', ipLiteral, 'at least one IP address to listen on (omit address for 0.0.0.0)'))),
      port: leaf(withDefault(DEFAULT_IKE_PORT, PORT)),
      natPort: leaf(withDefault(DEFAULT_NAT_PORT, PORT)),
    }, 'a mapping with address, port, natPort').transform((l, zctx) => {
      if (l.port === l.natPort) {
        report(zctx as unknown as IssueSink, new Problem(`natPort equals port (${l.port})`, 'two different ports', ['natPort']), l);
        return z.NEVER;
      }
      return { addresses: l.address, port: l.port, natPort: l.natPort } satisfies ListenConfig;
    }),
    limits: section({
      halfOpenCookieThreshold: leaf(withDefault(DEFAULT_LIMITS.halfOpenCookieThreshold, integer(0, 1_000_000))),
      halfOpenMax: leaf(withDefault(DEFAULT_LIMITS.halfOpenMax, integer(1, 1_000_000))),
      halfOpenPerSource: leaf(withDefault(DEFAULT_LIMITS.halfOpenPerSource, integer(1, 1_000_000))),
      childSasPerPeer: leaf(withDefault(DEFAULT_LIMITS.childSasPerPeer, integer(1, 1_000_000))),
      ikeSasPerPeer: leaf(withDefault(DEFAULT_LIMITS.ikeSasPerPeer, integer(1, 1_000_000))),
    }, 'a mapping with halfOpenCookieThreshold, halfOpenMax, halfOpenPerSource, childSasPerPeer, ikeSasPerPeer').transform((l, zctx) => {
      if (l.halfOpenCookieThreshold > l.halfOpenMax) {
        report(zctx as unknown as IssueSink, new Problem(`${l.halfOpenCookieThreshold} is above halfOpenMax (${l.halfOpenMax})`, 'a threshold no larger than halfOpenMax', ['halfOpenCookieThreshold']), l);
        return z.NEVER;
      }
      return l satisfies LimitsConfig;
    }),
    retransmit: section({
      timeout: leaf(withDefault(DEFAULT_RETRANSMIT.timeout, duration)),
      base: leaf(withDefault(DEFAULT_RETRANSMIT.base, (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 1 && v <= 10 ? v : new Problem(got(v), 'a number from 1 to 10')))),
      tries: leaf(withDefault(DEFAULT_RETRANSMIT.tries, integer(0, 100))),
      maxTimeout: leaf(withDefault(DEFAULT_RETRANSMIT.maxTimeout, duration)),
    }, 'a mapping with timeout, base, tries, maxTimeout').transform((r, zctx) => {
      const sink = zctx as unknown as IssueSink;
      if (r.timeout === 0) { report(sink, new Problem('0 ms', 'a timeout above zero', ['timeout']), r); return z.NEVER; }
      if (r.maxTimeout < r.timeout) {
        report(sink, new Problem(`${r.maxTimeout} ms is below timeout (${r.timeout} ms)`, 'a maxTimeout no smaller than timeout', ['maxTimeout']), r);
        return z.NEVER;
      }
      return r satisfies RetransmitConfig;
    }),
    dataplane: section({
      workers: leaf(workersValue),
      tun: leaf(withDefault<string | undefined>(undefined, (v) => (typeof v === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(v) ? v : new Problem(got(v), "an interface name of 1 to 15 letters, digits, '.', '_' or '-'")))),
      tun_mtu: leaf(withDefault(DEFAULT_TUN_MTU, integer(576, 9000))),
      tun_queues: leaf(withDefault(1, integer(1, 64))),
      tun_offload: leaf(withDefault(true, boolean)),
      esp: leaf(withDefault('auto', oneOf(['auto', 'udp'] as const))),
      output: leaf(withDefault('workers', oneOf(['workers', 'io-thread'] as const))),
      tun_input: leaf(withDefault('workers', oneOf(['workers', 'io-thread'] as const))),
      worker_loop: leaf(withDefault<'epoll' | 'event-loop' | undefined>(undefined, oneOf(['epoll', 'event-loop'] as const))),
      ...pathFields(),
      steering: leaf(withDefault('kernel', oneOf(['kernel', 'io-thread'] as const))),
    }, 'a mapping with workers, tun, tun_mtu, tun_queues, tun_offload, tun_input, worker_loop, esp, output, steering, tunnel_mtu, outer_mtu, icmp_rate').transform((d): DataplaneConfig => ({
      ...d.workers,
      ...pathConfig(d),
      ...(d.tun !== undefined ? { tun: { name: d.tun, mtu: d.tun_mtu, queues: d.tun_queues, offload: d.tun_offload } } : {}),
      // 'auto' is what an absent field means: keep the default configuration's shape.
      ...(d.esp !== 'auto' ? { esp: d.esp } : {}),
      ...(d.output !== 'workers' ? { output: d.output } : {}),
      ...(d.tun_input !== 'workers' ? { tunInput: d.tun_input } : {}),
      ...(d.worker_loop !== undefined ? { workerLoop: d.worker_loop } : {}),
      ...(d.steering !== 'kernel' ? { steering: d.steering } : {}),
    })),
    metrics: section({
      listen: leaf(withDefault<MetricsConfig | undefined>(undefined, metricsListen)),
    }, 'a mapping with listen'),
    cluster: leaf(clusterSection(ctx)),
    connections: namedMap(connectionSchema(ctx), 'a mapping of connection names to connection options'),
  }, 'a mapping with log, keylog, listen, limits, retransmit, dataplane, metrics, cluster, connections').transform((raw, zctx): GatewayConfig => {
    const perNode = Object.entries(raw.connections).find(([, c]) => c.clone.per === 'node');
    if (perNode && raw.cluster === undefined) {
      report(zctx as unknown as IssueSink, new Problem('node, but there is no cluster: section', 'per: node only in a cluster', ['connections', perNode[0], 'clone', 'per']), raw);
      return z.NEVER;
    }
    const out: GatewayConfig = {
      log: raw.log,
      listen: raw.listen,
      limits: raw.limits,
      retransmit: raw.retransmit,
      dataplane: raw.dataplane,
      connections: Object.entries(raw.connections).map(([name, c]) => ({ name, ...c })),
    };
    if (raw.keylog !== undefined) out.keylog = raw.keylog;
    if (raw.metrics?.listen !== undefined) out.metrics = raw.metrics.listen;
    if (raw.cluster !== undefined) out.cluster = raw.cluster;
    return out;
  });
}
