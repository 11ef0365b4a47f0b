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
 * Every field has a default unless marked REQUIRED. Durations accept "500ms",
 * "30s", "10m", "4h", "1d" or a number of seconds. Booleans accept
 * true/false and swanctl's yes/no. Lists accept a YAML list or, as in
 * swanctl.conf, one comma-separated string; ike, esp, local_ts, remote_ts
 * and listen.address must not be empty lists (omit them for their defaults).
 * `null` (an empty value) means "not set". YAML anchors and merge keys
 * (`<<: *common`) may share settings between connections; top-level keys
 * starting with "x-" are ignored, so that shared blocks have a place to live
 * (`x-common: &common {...}`).
 *
 * ```yaml
 * log:
 *   level: info                # fatal | error | warn | info | debug | trace | silent
 * keylog: /var/lib/ikeclone/keys  # optional, off by default; an existing directory that receives
 *                              # Wireshark's ikev2_decryption_table and esp_sa files (this exports
 *                              # secrets: the gateway logs a warning while it is on). Relative paths
 *                              # are relative to the configuration file's directory.
 * listen:
 *   address: 0.0.0.0           # IKE socket address(es): an IP literal or a list of them
 *   port: 500                  # IKE port (RFC 7296 §2)
 *   natPort: 4500              # NAT-T port (RFC 7296 §2.23, RFC 3948)
 * limits:
 *   halfOpenCookieThreshold: 32  # half-open IKE SAs before COOKIE challenges (RFC 7296 §2.6);
 *                              # at most halfOpenMax
 *   halfOpenMax: 1024          # past this, new IKE_SA_INIT requests are dropped
 *   childSasPerPeer: 64        # Child SAs over all IKE SAs of one authenticated peer (RFC 7791 §8);
 *                              # replaced ones count until deleted: a rekey past it gets TEMPORARY_FAILURE
 *   ikeSasPerPeer: 16          # IKE SAs of one peer, clones included; NO_ADDITIONAL_SAS past this
 *                              # (a rekey past it, while old SAs wait for their Delete: TEMPORARY_FAILURE)
 * retransmit:                  # RFC 7296 §2.1
 *   timeout: 1s                # first retransmission after this
 *   base: 1.8                  # each further wait is the previous one times base (>= 1)
 *   tries: 5                   # retransmissions before giving up (0..100)
 *   maxTimeout: 30s            # cap on a single wait (>= timeout)
 * dataplane:
 *   workers: auto              # ESP worker threads: auto (= available cores) or an integer 1..1024
 *   tun: ikc0                  # optional (root): a TUN device for inner traffic, created at start;
 *                              # routes to the remote subnets via it are the operator's. Without
 *                              # it, ESP that arrives is verified and counted, then discarded
 *   tun_mtu: 1400              # the TUN device's MTU (576..9000)
 *   tun_queues: 1              # TUN queues (IFF_MULTI_QUEUE when more than 1), 1..64
 *   tun_offload: true          # TUN offloads like a NIC's (segmentation on read, coalescing on
 *                              # write; IFF_VNET_HDR) | false: one packet per read and per write
 *   output: workers            # with a TUN device, who sends ESP and writes decapsulated packets:
 *                              # workers (each its own, one thread hand-off per packet) | io-thread
 *   esp: auto                  # auto: raw ESP (IP protocol 50) when no NAT was detected and raw
 *                              # sockets are available (root), else UDP 4500 (RFC 3948) | udp: always UDP
 * connections:                 # default: none
 *   <name>:                    # letters, digits, '.', '_', '-'; starts with a letter or digit
 *     local_addrs: [192.0.2.1] # IP literals this connection uses; default: any (%any)
 *     remote_addrs: [198.51.100.7]  # peer addresses: IP literals or host names (resolved when
 *                              # initiating), or %any (the default) to accept any peer. REQUIRED,
 *                              # and not %any, when the connection or one of its children has
 *                              # start_action: start. The first one is the one to initiate to.
 *     remote_port: 500         # peer's IKE port when initiating
 *     ike: [aes256gcm16-prfsha256-x25519]   # IKE proposals in strongSwan's keywords (see
 *                              # control/proposal.ts), most preferred first; the entry "default"
 *                              # stands for DEFAULT_IKE_PROPOSALS, which is also the default
 *     local:
 *       id: gw.example.org     # our identity (control/identity.ts forms: IP, FQDN, user@fqdn,
 *                              # @#keyid, DN). Default: the certificate's subject when cert is
 *                              # set, else the single local_addrs address, else the address the
 *                              # IKE SA uses (EndpointConfig.id = 'any')
 *       auth: psk              # psk | pubkey; default psk when the connection has a psk or
 *                              # psk_file, else pubkey
 *       key: gw.key.pem        # pubkey: REQUIRED private key (PEM: path relative to this file's
 *                              # directory, or the PEM text itself)
 *       cert: gw.cert.pem      # optional certificate for our key (sent in CERT payloads)
 *     remote:
 *       id: client.example.org # the peer's identity or a pattern ("*.example.org",
 *                              # "*@example.org", "CN=*"); default %any (any identity)
 *       auth: psk              # psk | pubkey; same default as local.auth
 *       pubkey: client.pub.pem # pubkey: REQUIRED public key or certificate of the peer (PEM path or text)
 *     psk: "a long shared secret"  # REQUIRED when local.auth or remote.auth is psk, and only
 *                              # allowed then. Text (UTF-8), 0x<hex> or 0s<base64>; at least
 *                              # 16 octets: a PSK is the only secret behind AUTH, and short ones
 *                              # fall to offline guessing (RFC 7296 §2.15)
 *     psk_file: peer.psk       # instead of psk: a file holding it (one trailing newline ignored)
 *     mobike: true             # announce MOBIKE (RFC 4555)
 *     encap: false             # force UDP encapsulation of ESP even without NAT (RFC 3948)
 *     clone:                   # RFC 7791 IKE SA cloning
 *       supported: true        # announce CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1); false: this
 *                              # connection's IKE SAs are never cloned, by either end
 *       per: none              # initiator side: none | worker (one IKE SA per data-plane worker) | nic (one per
 *                              # local address in nics, moved there with MOBIKE)
 *       count: 4               # number of IKE SAs including the original; default: workers for
 *                              # per: worker, nics' length for per: nic (round robin if larger)
 *       nics: [10.0.1.2, 10.0.2.2]   # per: nic only, REQUIRED there: local addresses, one per NIC
 *     vips: [request]          # initiator: virtual IPs to request with a CP payload (RFC 7296
 *                              # §2.19): request (= 0.0.0.0), 0.0.0.0, ::, or a specific address
 *     pools: [10.9.0.0/24]     # responder: hand out virtual IPs from these (CIDR or a-b ranges)
 *     start_action: none       # none | start (initiate when the gateway starts)
 *     dpd_delay: 0s            # liveness check interval (RFC 7296 §2.4); 0 = off, else at least 1s
 *     dpd_action: clear        # when the peer is found dead: clear (delete its SAs) | restart
 *                              # (delete them and initiate the connection again)
 *     keepalive: 20s           # NAT keepalive interval while a NAT is in front of us (RFC 3948 §4);
 *                              # sent only when nothing else went out in that time; 0 = off,
 *                              # else at least 1s
 *     rekey_time: 4h           # IKE SA rekeying interval; 0 = never
 *     reauth_time: 0s          # reauthentication interval; 0 = never
 *     over_time: 10%           # hard lifetime past rekey/reauth: a duration or a percentage of the
 *                              # larger of rekey_time and reauth_time (default 10%)
 *     rand_time: <over_time>   # random jitter subtracted from rekey_time (< rekey_time)
 *     children:
 *       <child name>:          # same naming rule as connections
 *         local_ts: [10.1.0.0/24]   # traffic selectors: dynamic (our address or virtual IP; the
 *         remote_ts: [10.2.0.0/24]  # default), an address, CIDR, or a-b range, optionally with
 *                              # [protocol] or [protocol/port] or [protocol/port-port], e.g.
 *                              # 10.2.0.0/16[tcp/443], 0.0.0.0/0[udp/500-501], ::/0[icmpv6]
 *         esp: [aes128gcm16]   # ESP proposals, "default" = DEFAULT_ESP_PROPOSALS (the default);
 *                              # key exchange keywords request PFS (modpnone: PFS optional)
 *         mode: tunnel         # only tunnel mode for now
 *         rekey_time: 1h       # Child SA rekeying interval; 0 = never
 *         life_time: <rekey_time + 10%>  # hard lifetime (> rekey_time)
 *         rand_time: <life_time - rekey_time>  # jitter subtracted from rekey_time
 *         rekey_bytes: 0       # rekey after this many bytes (numbers or 500k/100M/2G); 0 = off
 *         life_bytes: <rekey_bytes + 10%>   # hard byte limit; 0 = none
 *         rekey_packets: 0     # rekey after this many packets; 0 = off
 *         life_packets: <rekey_packets + 10%>  # hard packet limit; 0 = none
 *         start_action: none   # none | start (create this child when the gateway starts, which
 *                              # initiates the connection)
 *         replay_window: 1024  # anti-replay window in packets: a power of two from 64 to 4096
 *                              # (the data plane's range, wasm/layout.ts)
 * ```
 *
 * The library API passes objects instead of YAML: connectionFromObject and
 * configFromObject take the same keys and give the same errors (file
 * "<object>", no line numbers).
 */
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';
import * as z from 'zod';
import { DURATION_EXPECTED, tryParseDuration } from './duration.js';
import { identityFromAddress, isIdentityPattern, parseIdentity, type Identity } from './identity.js';
import {
  DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, editDistance, parseEspProposal, parseIkeProposal,
  type ParseResult, type ProposalSpec,
} from './proposal.js';
import { IdType } from './wire/constants.js';
import { bytesToIp, cidrToRange, ipToBytes, rangePrefixLength } from './wire/ip.js';

// ---------------------------------------------------------------------------
// Result types

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type StartAction = 'none' | 'start';
export type AuthMethod = 'psk' | 'pubkey';

export interface LimitsConfig {
  /** Half-open IKE SAs before IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6). */
  halfOpenCookieThreshold: number;
  /** Half-open IKE SAs past which new IKE_SA_INIT requests are dropped. */
  halfOpenMax: number;
  /** Child SAs over all IKE SAs of one authenticated peer (RFC 7791 §8). */
  childSasPerPeer: number;
  /** IKE SAs of one authenticated peer, clones included; NO_ADDITIONAL_SAS past this (RFC 7791 §5.2). */
  ikeSasPerPeer: number;
}

/** RFC 7296 §2.1 retransmission: wait timeout, then timeout*base, ... capped at maxTimeout, `tries` times. */
export interface RetransmitConfig {
  /** Milliseconds before the first retransmission. */
  timeout: number;
  /** Factor between successive waits (>= 1). */
  base: number;
  /** Retransmissions before the exchange fails. */
  tries: number;
  /** Milliseconds, cap on any single wait. */
  maxTimeout: number;
}

export interface ListenConfig {
  /** Addresses the IKE sockets bind to (IP literals). */
  addresses: string[];
  port: number;
  natPort: number;
}

export interface DataplaneConfig {
  /** Number of ESP worker threads (resolved from "auto" to the available cores). */
  workers: number;
  /** True when the file said "auto" (or nothing). */
  workersAuto: boolean;
  /** A TUN device for inner traffic; absent = none. */
  tun?: { name: string; mtu: number; queues: number; offload: boolean };
  /** How ESP travels without a NAT: 'auto' (raw ESP when possible; the default when absent) or 'udp'. */
  esp?: 'auto' | 'udp';
  /** Who writes the output with a TUN device: 'workers' (the default when absent) or 'io-thread'. */
  output?: 'workers' | 'io-thread';
}

/** One side of a connection (swanctl's local/remote sections). */
export interface EndpointConfig {
  /**
   * Remote: the identity or identity pattern the peer must present, or 'any'.
   * Local: our identity; 'any' means "the IP address the IKE SA uses"
   * (strongSwan's default), to be filled in when the SA's address is known.
   */
  id: Identity | 'any';
  auth: AuthMethod;
  /** Local, pubkey: the private key, PEM text. */
  key?: string;
  /** Local: our certificate, PEM text (optional). */
  cert?: string;
  /** Remote, pubkey: the peer's public key or certificate, PEM text. */
  pubkey?: string;
}

export interface CloneConfig {
  /** Announce CLONE_IKE_SA_SUPPORTED in IKE_AUTH (RFC 7791 §5.1); false turns cloning off both ways. */
  supported: boolean;
  /** RFC 7791: none, one IKE SA per data-plane worker, or one per NIC (moved there with MOBIKE). */
  per: 'none' | 'worker' | 'nic';
  /** IKE SAs in total, the original included (1 for per: none). */
  count: number;
  /** per: nic: the local address of each NIC, in order (clone k uses nics[k % nics.length]). */
  nics: string[];
}

/** A traffic selector range (RFC 7296 §3.13.1); protocol 0 = any, ports 0..65535 = any. */
export interface TrafficSelectorConfig {
  start: string;
  end: string;
  protocol: number;
  startPort: number;
  endPort: number;
}

/** An address pool for virtual IPs (responder side, RFC 7296 §2.19). */
export interface PoolConfig {
  start: string;
  end: string;
  family: 4 | 6;
  /** "10.9.0.0/24" when the range is exactly one prefix. */
  cidr?: string;
}

export interface ChildConfig {
  name: string;
  localTs: Array<TrafficSelectorConfig | 'dynamic'>;
  remoteTs: Array<TrafficSelectorConfig | 'dynamic'>;
  esp: ProposalSpec[];
  mode: 'tunnel';
  /** Milliseconds; 0 = never. */
  rekeyTime: number;
  /** Milliseconds, hard lifetime; 0 = none. */
  lifeTime: number;
  /** Milliseconds of random jitter subtracted from rekeyTime. */
  randTime: number;
  rekeyBytes: number;
  lifeBytes: number;
  rekeyPackets: number;
  lifePackets: number;
  startAction: StartAction;
  /** Anti-replay window in packets (RFC 4303 §3.4.3). */
  replayWindow: number;
}

export interface ConnectionConfig {
  name: string;
  /** Local addresses this connection uses; empty = any. */
  localAddrs: string[];
  /** Peer addresses (IP literals or host names); empty = any peer (responder only). */
  remoteAddrs: string[];
  remotePort: number;
  ike: ProposalSpec[];
  local: EndpointConfig;
  remote: EndpointConfig;
  /** The pre-shared key, when either side authenticates with psk. */
  psk?: Uint8Array;
  mobike: boolean;
  encap: boolean;
  clone: CloneConfig;
  /** Virtual IPs to request: "0.0.0.0" / "::" for any, or a specific address. */
  vips: string[];
  pools: PoolConfig[];
  startAction: StartAction;
  /** Milliseconds; 0 = off. */
  dpdDelay: number;
  /** After a dead peer: 'clear' (the default when absent) or 'restart'. */
  dpdAction?: 'clear' | 'restart';
  /** NAT keepalive interval in milliseconds (absent: 20 s; 0 = off). */
  keepalive?: number;
  /** Milliseconds; 0 = never. */
  rekeyTime: number;
  reauthTime: number;
  overTime: number;
  randTime: number;
  children: ChildConfig[];
}

export interface GatewayConfig {
  /** Absolute path of the file this came from, when it came from a file. */
  file?: string;
  log: { level: LogLevel };
  /** Absolute path of the Wireshark key-log directory; undefined = off. */
  keylog?: string;
  listen: ListenConfig;
  limits: LimitsConfig;
  retransmit: RetransmitConfig;
  dataplane: DataplaneConfig;
  /** In file order. */
  connections: ConnectionConfig[];
}

// ---------------------------------------------------------------------------
// Errors

/** One thing wrong with a configuration. */
export interface ConfigProblem {
  /** Dotted path of the value, e.g. "connections.site-a.children.net.esp[0]"; "" for the document. */
  path: string;
  /** What is wrong. */
  problem: string;
  expected: string;
  /** 1-based line in the file, when known. */
  line?: number;
}

/**
 * An invalid configuration. The message has one line per problem,
 * `${file}:${line}: ${path}: ${problem}; expected ${expected}`; the fields
 * describe the first problem, `problems` lists all of them.
 */
export class ConfigError extends Error {
  readonly file: string;
  readonly path: string;
  readonly expected: string;
  readonly line?: number;
  readonly problems: ConfigProblem[];

  constructor(file: string, problems: ConfigProblem[]) {
    const list = problems.length > 0 ? problems : [{ path: '', problem: 'invalid configuration', expected: 'a valid configuration' }];
    super(list.map((p) => formatProblem(file, p)).join('\n'));
    this.name = 'ConfigError';
    this.file = file;
    this.path = list[0]!.path;
    this.expected = list[0]!.expected;
    if (list[0]!.line !== undefined) this.line = list[0]!.line;
    this.problems = list;
  }
}

function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line === undefined ? file : `${file}:${p.line}`;
  return `${where}: ${p.path === '' ? '(top level)' : p.path}: ${p.problem}; expected ${p.expected}`;
}

// ---------------------------------------------------------------------------
// Defaults

const DEFAULT_LIMITS: LimitsConfig = { halfOpenCookieThreshold: 32, halfOpenMax: 1024, childSasPerPeer: 64, ikeSasPerPeer: 16 };
const DEFAULT_RETRANSMIT: RetransmitConfig = { timeout: 1000, base: 1.8, tries: 5, maxTimeout: 30_000 };
const DEFAULT_IKE_REKEY = 4 * 3_600_000;
const DEFAULT_CHILD_REKEY = 3_600_000;
const DEFAULT_REPLAY_WINDOW = 1024;
/** The data plane's anti-replay window range (wasm/layout.ts MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW). */
const MIN_REPLAY_WINDOW = 64;
const MAX_REPLAY_WINDOW = 4096;
const MIN_PSK_OCTETS = 16;
const MAX_WORKERS = 1024;
const MAX_CLONES = 1024;

/** The configuration of a gateway with no connections: every default. */
export function defaultGatewayConfig(): GatewayConfig {
  return {
    log: { level: 'info' },
    listen: { addresses: ['0.0.0.0'], port: 500, natPort: 4500 },
    limits: { ...DEFAULT_LIMITS },
    retransmit: { ...DEFAULT_RETRANSMIT },
    dataplane: { workers: autoWorkers(), workersAuto: true },
    connections: [],
  };
}

function autoWorkers(): number {
  return Math.max(1, Math.min(MAX_WORKERS, availableParallelism()));
}

/** The connection of that name, or undefined. */
export function findConnection(config: GatewayConfig, name: string): ConnectionConfig | undefined {
  return config.connections.find((c) => c.name === name);
}

// ---------------------------------------------------------------------------
// Validation building blocks (internal)
//
// Zod checks the shape (strict objects: unknown keys are errors); every leaf is
// a small parse function returning a value or a Problem, and cross-field rules
// run in the transform of the enclosing object. Messages travel through zod as
// "problem \x1f expected \x1f allowed keys" and are split again in toProblems.

const SEP = '\u001f';
type PathSeg = string | number;

class Problem {
  constructor(readonly problem: string, readonly expected: string, readonly path: PathSeg[] = []) {}
}

function encode(problem: string, expected: string, keys: readonly string[] = []): string {
  return `${problem}${SEP}${expected}${SEP}${keys.join(',')}`;
}

/** Short description of a received value for messages. */
function got(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'got null';
  if (typeof v === 'string') return `got '${v.length > 60 ? `${v.slice(0, 57)}...` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return `got ${v}`;
  if (v instanceof Uint8Array) return 'got binary data';
  if (Array.isArray(v)) return 'got a list';
  return `got ${typeof v === 'object' ? 'a mapping' : typeof v}`;
}

/**
 * Like got(), but never shows the value: for fields that hold secrets (a PSK
 * mistyped as a number is still the PSK, or most of it).
 */
function gotKind(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'got null';
  if (typeof v === 'string') return 'got a string';
  if (typeof v === 'number') return 'got a number';
  if (typeof v === 'boolean') return 'got a boolean';
  return got(v); // binary data, a list or a mapping: got() names only the kind
}

interface IssueSink {
  issues: Array<{ code: 'custom'; message: string; input: unknown; path?: PathSeg[] }>;
}

function report(ctx: IssueSink, p: Problem, input: unknown): void {
  ctx.issues.push({ code: 'custom', message: encode(p.problem, p.expected), input, path: p.path });
}

/** A leaf value: `parse` gets the value (null and absent both as undefined). */
function leaf<T>(parse: (v: unknown) => T | Problem) {
  return z.unknown().optional().transform((v, ctx): T => {
    const r = parse(v === null ? undefined : v);
    if (r instanceof Problem) {
      report(ctx as unknown as IssueSink, r, v);
      return z.NEVER;
    }
    return r;
  });
}

/** A strict mapping; null or absent becomes {} so that every default applies. */
function section<S extends z.core.$ZodLooseShape>(shape: S, what: string) {
  const keys = Object.keys(shape);
  return z.preprocess(
    (v) => (v === null || v === undefined ? {} : v),
    z.strictObject(shape, {
      error: (iss) => {
        if (iss.code === 'unrecognized_keys') return encode('unknown key', `one of ${keys.join(', ')}`, keys);
        return encode(got(iss.input), what);
      },
    }),
  );
}

/** A map of user-chosen names (connections, children) to sections. */
function namedMap<T extends z.ZodType>(value: T, what: string) {
  return z.preprocess(
    (v) => (v === null || v === undefined ? {} : v),
    z.record(
      z.string().regex(NAME_RE, { error: (iss) => encode(`invalid name '${String(iss.input)}'`, NAME_EXPECTED) }),
      value,
      { error: (iss) => encode(got(iss.input), what) },
    ),
  );
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const NAME_EXPECTED = "a name of letters, digits, '.', '_' and '-' (up to 64, starting with a letter or digit)";

function withDefault<T>(def: T | (() => T), parse: (v: unknown) => T | Problem): (v: unknown) => T | Problem {
  return (v) => (v === undefined ? (typeof def === 'function' ? (def as () => T)() : def) : parse(v));
}

function integer(min: number, max: number, expected = `an integer from ${min} to ${max}`): (v: unknown) => number | Problem {
  return (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : new Problem(got(v), expected));
}

const PORT = integer(1, 65535);

function boolean(v: unknown): boolean | Problem {
  if (typeof v === 'boolean') return v;
  if (v === 'yes') return true;
  if (v === 'no') return false;
  return new Problem(got(v), 'true or false (or yes / no)');
}

function duration(v: unknown): number | Problem {
  const r = tryParseDuration(v);
  return r.ok ? r.value : new Problem(r.error, DURATION_EXPECTED);
}

/** Shortest dpd_delay / keepalive other than 0 (off). */
const MIN_INTERVAL_MS = 1000;

/**
 * A periodic liveness interval: 0 (off) or at least MIN_INTERVAL_MS. A few
 * milliseconds would flood the peer or the NAT with a message per tick and is
 * never what was meant (a unit left off, "1ms" for "1m").
 */
function interval(field: string): (v: unknown) => number | Problem {
  return (v) => {
    const d = duration(v);
    if (d instanceof Problem || d === 0 || d >= MIN_INTERVAL_MS) return d;
    return new Problem(`${field} of ${d} ms is too short`, `0 (off) or at least ${MIN_INTERVAL_MS / 1000}s`);
  };
}

function oneOf<const T extends string>(values: readonly T[]): (v: unknown) => T | Problem {
  return (v) => (typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : new Problem(got(v), `one of ${values.join(', ')}`));
}

/** A list of strings: a YAML list, a single string, or a comma-separated string as in swanctl.conf. */
function stringList(v: unknown, expected: string): Array<{ text: string; path: PathSeg[] }> | Problem {
  if (typeof v === 'string') {
    const items = v.split(',').map((s) => s.trim());
    if (items.some((s) => s === '')) return new Problem(`empty item in '${v}'`, expected);
    return items.map((text) => ({ text, path: [] }));
  }
  if (Array.isArray(v)) {
    const out: Array<{ text: string; path: PathSeg[] }> = [];
    for (let i = 0; i < v.length; i++) {
      const item = v[i] as unknown;
      if (typeof item !== 'string' || item.trim() === '') return new Problem(got(item), expected, [i]);
      out.push({ text: item.trim(), path: [i] });
    }
    return out;
  }
  return new Problem(got(v), `${expected}, or a list of them`);
}

/**
 * Parse every item of a list with `item`, first failure wins. `nonEmpty` (what
 * to write instead) rejects [] for lists where nothing is not a meaningful
 * setting: without it an empty list passes and fails later, at run time.
 */
function listOf<T>(expected: string, item: (text: string) => ParseResult<T>, nonEmpty?: string): (v: unknown) => T[] | Problem {
  return (v) => {
    const list = stringList(v, expected);
    if (list instanceof Problem) return list;
    if (nonEmpty !== undefined && list.length === 0) return new Problem('got an empty list', nonEmpty);
    const out: T[] = [];
    for (const { text, path } of list) {
      const r = item(text);
      if (!r.ok) return new Problem(r.error, expected, path);
      out.push(r.value);
    }
    return out;
  };
}

function ipLiteral(text: string): ParseResult<string> {
  const b = ipToBytes(text);
  if (b === undefined || text.includes('%')) return { ok: false, error: `'${text}' is not an IP address` };
  return { ok: true, value: bytesToIp(b) };
}

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function remoteAddress(text: string): ParseResult<string> {
  if (text === '%any') return { ok: true, value: '%any' };
  const ip = ipLiteral(text);
  if (ip.ok) return ip;
  // Digits and dots only would be a mistyped IPv4 address, not a host name.
  if (HOSTNAME_RE.test(text) && !/^[\d.]+$/.test(text)) return { ok: true, value: text.replace(/\.$/, '') };
  return { ok: false, error: `'${text}' is neither an IP address nor a host name` };
}

function localAddress(text: string): ParseResult<string> {
  if (text === '%any') return { ok: true, value: '%any' };
  return ipLiteral(text);
}

/** Byte or packet counts: integers, or strings with k / m / g (powers of 1024) as strongSwan reads them. */
function count(v: unknown): number | Problem {
  const expected = 'a non-negative integer, optionally with k, m or g (e.g. 500m)';
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : new Problem(got(v), expected);
  if (typeof v === 'string') {
    const m = /^(\d+)\s*([kKmMgG]?)$/.exec(v.trim());
    if (m === null) return new Problem(got(v), expected);
    const n = Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2]!.toLowerCase()]!;
    return Number.isSafeInteger(n) ? n : new Problem(`${got(v)} is too large`, expected);
  }
  return new Problem(got(v), expected);
}

/** over_time: a duration or a percentage ("10%") of the IKE SA's lifetime. */
function durationOrPercent(v: unknown): { ms: number } | { percent: number } | Problem {
  if (typeof v === 'string' && v.trim().endsWith('%')) {
    const n = Number(v.trim().slice(0, -1));
    if (v.trim().length > 1 && Number.isFinite(n) && n >= 0 && n <= 1000) return { percent: n };
    return new Problem(got(v), 'a duration or a percentage such as 10%');
  }
  const d = duration(v);
  return d instanceof Problem ? new Problem(d.problem, `${DURATION_EXPECTED}, or a percentage such as 10%`) : { ms: d };
}

// -- traffic selectors and pools (RFC 7296 §3.13.1) --

const PROTOCOLS: Readonly<Record<string, number>> = { any: 0, icmp: 1, tcp: 6, udp: 17, gre: 47, esp: 50, icmpv6: 58, ipv6icmp: 58, sctp: 132 };
const TS_EXPECTED = "dynamic, or an address, CIDR prefix or a-b range, optionally followed by [protocol] or [protocol/port] or [protocol/port-port]";

/** Inclusive address range of "a", "a/len" or "a-b"; both ends of one family. */
function addressRange(text: string): ParseResult<{ start: Uint8Array; end: Uint8Array }> {
  const dash = text.indexOf('-');
  if (dash >= 0) {
    const start = ipToBytes(text.slice(0, dash).trim());
    const end = ipToBytes(text.slice(dash + 1).trim());
    if (start === undefined || end === undefined) return { ok: false, error: `'${text}' is not an address range` };
    if (start.length !== end.length) return { ok: false, error: `'${text}' mixes IPv4 and IPv6` };
    if (Buffer.compare(start, end) > 0) return { ok: false, error: `'${text}' ends before it starts` };
    return { ok: true, value: { start, end } };
  }
  if (text.includes('%')) return { ok: false, error: `'${text}' is not an address or prefix` };
  const r = cidrToRange(text);
  if (r === undefined) return { ok: false, error: `'${text}' is not an address or prefix` };
  return { ok: true, value: r };
}

function trafficSelector(text: string): ParseResult<TrafficSelectorConfig | 'dynamic'> {
  if (text === 'dynamic' || text === '%dynamic') return { ok: true, value: 'dynamic' };
  const m = /^([^[\]]+?)\s*(?:\[([^\]]*)\])?$/.exec(text);
  if (m === null) return { ok: false, error: `'${text}' is not a traffic selector` };
  const range = addressRange(m[1]!);
  if (!range.ok) return range;
  let protocol = 0;
  let startPort = 0;
  let endPort = 65535;
  if (m[2] !== undefined) {
    const [protoText, portText] = m[2].split('/', 2) as [string, string | undefined];
    const p = protoText.trim().toLowerCase();
    if (p in PROTOCOLS) protocol = PROTOCOLS[p]!;
    else if (/^\d{1,3}$/.test(p) && Number(p) <= 255) protocol = Number(p);
    else return { ok: false, error: `unknown protocol '${protoText}' in '${text}' (names: ${Object.keys(PROTOCOLS).join(' ')}, or 0..255)` };
    if (portText !== undefined && portText.trim() !== '' && portText.trim() !== '%any') {
      if (protocol === 0) return { ok: false, error: `'${text}' has a port but no protocol` };
      const pm = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(portText.trim());
      if (pm === null) return { ok: false, error: `'${portText}' in '${text}' is not a port or port range` };
      startPort = Number(pm[1]);
      endPort = pm[2] === undefined ? startPort : Number(pm[2]);
      if (startPort > 65535 || endPort > 65535 || startPort > endPort) return { ok: false, error: `'${portText}' in '${text}' is not a port range within 0..65535` };
    }
  }
  return { ok: true, value: { start: bytesToIp(range.value.start), end: bytesToIp(range.value.end), protocol, startPort, endPort } };
}

function pool(text: string): ParseResult<PoolConfig> {
  const r = addressRange(text);
  if (!r.ok) return r;
  const { start, end } = r.value;
  const prefix = rangePrefixLength(start, end);
  const out: PoolConfig = { start: bytesToIp(start), end: bytesToIp(end), family: start.length === 4 ? 4 : 6 };
  if (prefix !== undefined) out.cidr = `${bytesToIp(start)}/${prefix}`;
  return { ok: true, value: out };
}

function vip(text: string): ParseResult<string> {
  if (text === 'request' || text === '%any') return { ok: true, value: '0.0.0.0' };
  if (text === '%any6') return { ok: true, value: '::' };
  const ip = ipLiteral(text);
  return ip.ok ? ip : { ok: false, error: `'${text}' is neither "request" nor an IP address` };
}

function proposals(kind: 'IKE' | 'ESP', field: string): (v: unknown) => ProposalSpec[] | Problem {
  const defaults = kind === 'IKE' ? DEFAULT_IKE_PROPOSALS : DEFAULT_ESP_PROPOSALS;
  const parse = kind === 'IKE' ? parseIkeProposal : parseEspProposal;
  const expected = `${kind} proposals such as ${kind === 'IKE' ? 'aes256gcm16-prfsha256-x25519' : 'aes256gcm16'} (strongSwan keywords), or default`;
  const list = listOf<ProposalSpec[]>(expected, (text) =>
    text === 'default' ? { ok: true, value: defaults.map((d) => unwrap(parse(d))) } : mapResult(parse(text), (p) => [p]),
  // Nothing to offer means no SA can be negotiated.
  `at least one ${kind} proposal (omit ${field}, or write default, for the defaults)`);
  return (v) => {
    if (v === undefined) return defaults.map((s) => unwrap(parse(s)));
    const r = list(v);
    if (r instanceof Problem) return r;
    return r.flat();
  };
}

function mapResult<A, B>(r: ParseResult<A>, f: (a: A) => B): ParseResult<B> {
  return r.ok ? { ok: true, value: f(r.value) } : r;
}

function unwrap<T>(r: ParseResult<T>): T {
  if (!r.ok) throw new Error(`built-in default does not parse: ${r.error}`);
  return r.value;
}

// -- files, keys and secrets --

interface Ctx {
  /** Directory relative paths are resolved against. */
  baseDir: string;
  /** Resolved worker count (clone per: worker default). */
  workers: number;
}

const PEM_RE = /^\s*-----BEGIN [A-Z0-9 ]+-----/;

/** PEM text given inline or as a path; Problem when unreadable. `secret`: never echo the value. */
function pemSource(ctx: Ctx, v: unknown, expected: string, secret = false): { pem: string; where: string } | Problem {
  if (typeof v !== 'string' || v.trim() === '') return new Problem(secret ? gotKind(v) : got(v), expected);
  if (PEM_RE.test(v)) return { pem: v, where: 'inline PEM' };
  const file = resolve(ctx.baseDir, v);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return new Problem(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected);
  }
  if (!PEM_RE.test(text)) return new Problem(`${file} is not PEM (no -----BEGIN line)`, expected);
  return { pem: text, where: file };
}

function privateKey(ctx: Ctx): (v: unknown) => { pem: string; key: KeyObject } | undefined | Problem {
  const expected = 'a PEM private key: a file path (relative to the configuration file) or the PEM text';
  return (v) => {
    if (v === undefined) return undefined;
    const src = pemSource(ctx, v, expected, true);
    if (src instanceof Problem) return src;
    try {
      return { pem: src.pem, key: createPrivateKey(src.pem) };
    } catch (e) {
      return new Problem(`${src.where} holds no usable private key (${(e as Error).message})`, expected);
    }
  };
}

function certificate(ctx: Ctx): (v: unknown) => { pem: string; cert: X509Certificate } | undefined | Problem {
  const expected = 'a PEM certificate: a file path (relative to the configuration file) or the PEM text';
  return (v) => {
    if (v === undefined) return undefined;
    const src = pemSource(ctx, v, expected);
    if (src instanceof Problem) return src;
    try {
      return { pem: src.pem, cert: new X509Certificate(src.pem) };
    } catch (e) {
      return new Problem(`${src.where} holds no usable certificate (${(e as Error).message})`, expected);
    }
  };
}

function publicKeyOrCert(ctx: Ctx): (v: unknown) => string | undefined | Problem {
  const expected = 'a PEM public key or certificate: a file path (relative to the configuration file) or the PEM text';
  return (v) => {
    if (v === undefined) return undefined;
    const src = pemSource(ctx, v, expected);
    if (src instanceof Problem) return src;
    try {
      if (/-----BEGIN CERTIFICATE-----/.test(src.pem)) new X509Certificate(src.pem);
      else createPublicKey(src.pem);
      return src.pem;
    } catch (e) {
      return new Problem(`${src.where} holds no usable public key or certificate (${(e as Error).message})`, expected);
    }
  };
}

const PSK_EXPECTED = `a secret of at least ${MIN_PSK_OCTETS} octets: text, 0x<hex> or 0s<base64>`;

function pskValue(v: unknown): Uint8Array | undefined | Problem {
  if (v === undefined) return undefined;
  let bytes: Uint8Array;
  if (v instanceof Uint8Array) {
    bytes = Uint8Array.from(v);
  } else if (typeof v === 'string') {
    if (/^0x/i.test(v)) {
      const hex = v.slice(2);
      if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) return new Problem('not valid hex after 0x', PSK_EXPECTED);
      bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
    } else if (/^0s/.test(v)) {
      const b64 = v.slice(2);
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) return new Problem('not valid base64 after 0s', PSK_EXPECTED);
      bytes = Uint8Array.from(Buffer.from(b64, 'base64'));
    } else {
      bytes = new TextEncoder().encode(v);
    }
  } else {
    return new Problem(gotKind(v), PSK_EXPECTED);
  }
  // RFC 7296 §2.15: the PSK is all that protects AUTH against offline guessing.
  if (bytes.length < MIN_PSK_OCTETS) return new Problem(`the PSK has only ${bytes.length} octets`, PSK_EXPECTED);
  return bytes;
}

function pskFile(ctx: Ctx): (v: unknown) => Uint8Array | undefined | Problem {
  const expected = `a file holding the PSK (at least ${MIN_PSK_OCTETS} octets), path relative to the configuration file`;
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '') return new Problem(got(v), expected);
    const file = resolve(ctx.baseDir, v);
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch (e) {
      return new Problem(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected);
    }
    let n = data.length;
    if (n > 0 && data[n - 1] === 0x0a) n--;
    if (n > 0 && data[n - 1] === 0x0d) n--;
    const bytes = Uint8Array.from(data.subarray(0, n));
    if (bytes.length < MIN_PSK_OCTETS) return new Problem(`${file} holds only ${bytes.length} octets`, expected);
    return bytes;
  };
}

function keylogDir(ctx: Ctx): (v: unknown) => string | undefined | Problem {
  const expected = 'an existing directory for the Wireshark key log (path relative to the configuration file)';
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '') return new Problem(got(v), expected);
    const dir = resolve(ctx.baseDir, v);
    try {
      if (!statSync(dir).isDirectory()) return new Problem(`${dir} is not a directory`, expected);
    } catch (e) {
      return new Problem(`cannot use ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected);
    }
    return dir;
  };
}

const ID_EXPECTED = 'an identity: IP address, FQDN (@host or host), user@host, @#hex key ID or a DN (C=.., O=.., CN=..)';

function identityOrAny(allowAny: boolean): (v: unknown) => Identity | 'any' | undefined | Problem {
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') return new Problem(got(v), allowAny ? `${ID_EXPECTED}, or %any` : ID_EXPECTED);
    if (v.trim() === '%any' || v.trim() === '%any6') {
      return allowAny ? 'any' : new Problem("'%any' names no one", `${ID_EXPECTED} (omit local.id to use the IKE SA's address)`);
    }
    const r = parseIdentity(v);
    if (!r.ok) return new Problem(r.error, allowAny ? `${ID_EXPECTED}, or %any` : ID_EXPECTED);
    if (!allowAny && isIdentityPattern(r.value)) return new Problem(`'${v}' is a pattern, not an identity of our own`, ID_EXPECTED);
    return r.value;
  };
}

// ---------------------------------------------------------------------------
// Schemas

const WORKERS_EXPECTED = `auto or an integer from 1 to ${MAX_WORKERS}`;

function workersValue(v: unknown): { workers: number; workersAuto: boolean } | Problem {
  if (v === undefined || v === 'auto') return { workers: autoWorkers(), workersAuto: true };
  const n = integer(1, MAX_WORKERS, WORKERS_EXPECTED)(v);
  return n instanceof Problem ? n : { workers: n, workersAuto: false };
}

const AUTH = oneOf(['psk', 'pubkey'] as const);

function localEndpointSchema(ctx: Ctx) {
  return section({
    id: leaf(identityOrAny(false)),
    auth: leaf(withDefault<AuthMethod | undefined>(undefined, AUTH)),
    key: leaf(privateKey(ctx)),
    cert: leaf(certificate(ctx)),
  }, 'a mapping with id, auth, key, cert');
}

function remoteEndpointSchema(ctx: Ctx) {
  return section({
    id: leaf(identityOrAny(true)),
    auth: leaf(withDefault<AuthMethod | undefined>(undefined, AUTH)),
    pubkey: leaf(publicKeyOrCert(ctx)),
  }, 'a mapping with id, auth, pubkey');
}

function cloneSchema() {
  return section({
    supported: leaf(withDefault(true, boolean)),
    per: leaf(withDefault('none', oneOf(['none', 'worker', 'nic'] as const))),
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
    replay_window: leaf(withDefault(DEFAULT_REPLAY_WINDOW, (v) => {
      const expected = `a power of two from ${MIN_REPLAY_WINDOW} to ${MAX_REPLAY_WINDOW}`;
      const n = integer(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW, expected)(v);
      return n instanceof Problem || (n & (n - 1)) === 0 ? n : new Problem(got(v), expected);
    })),
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
    };
    return child;
  });
}

function connectionSchema(ctx: Ctx) {
  return section({
    local_addrs: leaf(withDefault<string[]>(() => [], listOf('local IP addresses or %any', localAddress))),
    remote_addrs: leaf(withDefault<string[]>(() => [], listOf('peer IP addresses, host names or %any', remoteAddress))),
    remote_port: leaf(withDefault(500, PORT)),
    ike: leaf(proposals('IKE', 'ike')),
    local: localEndpointSchema(ctx),
    remote: remoteEndpointSchema(ctx),
    psk: leaf(pskValue),
    psk_file: leaf(pskFile(ctx)),
    mobike: leaf(withDefault(true, boolean)),
    encap: leaf(withDefault(false, boolean)),
    clone: cloneSchema(),
    vips: leaf(withDefault<string[]>(() => [], listOf('request, 0.0.0.0, :: or a specific IP address', vip))),
    pools: leaf(withDefault<PoolConfig[]>(() => [], listOf('address pools: CIDR prefixes or a-b ranges', pool))),
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
    const localAuth = raw.local.auth ?? defaultAuth;
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
    if (remoteAuth === 'pubkey' && raw.remote.pubkey === undefined) {
      problem(['remote', 'pubkey'], 'missing, but remote.auth is pubkey', "the peer's PEM public key or certificate (file path or PEM text)");
    }
    if (remoteAuth === 'psk' && raw.remote.pubkey !== undefined) problem(['remote', 'pubkey'], 'set, but remote.auth is psk', 'no pubkey, or auth: pubkey');

    // Our identity: as configured, else the certificate subject, else our single address.
    let localId: Identity | 'any' = raw.local.id ?? 'any';
    if (raw.local.id === undefined && raw.local.cert !== undefined) {
      localId = { idType: IdType.DER_ASN1_DN, data: subjectDer(raw.local.cert.cert) ?? new Uint8Array(0) };
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
      else if (c.count !== undefined) problem(['clone', 'count'], 'set, but clone.per is none', 'count only with per: worker or per: nic');
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
    if (raw.local.key !== undefined) local.key = raw.local.key.pem;
    if (raw.local.cert !== undefined) local.cert = raw.local.cert.pem;
    const remote: EndpointConfig = { id: raw.remote.id ?? 'any', auth: remoteAuth };
    if (raw.remote.pubkey !== undefined) remote.pubkey = raw.remote.pubkey;

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
      vips: raw.vips,
      pools: raw.pools,
      startAction: raw.start_action,
      dpdDelay: raw.dpd_delay,
      rekeyTime: raw.rekey_time,
      reauthTime: raw.reauth_time,
      overTime,
      randTime,
      children: Object.entries(raw.children).map(([name, child]) => ({ name, ...child })),
    };
    if (psk !== undefined) conn.psk = psk;
    if (raw.dpd_action !== undefined) conn.dpdAction = raw.dpd_action;
    if (raw.keepalive !== undefined) conn.keepalive = raw.keepalive;
    return conn;
  });
}

/** The DER of a certificate's subject Name (strongSwan's default identity for a certificate). */
function subjectDer(cert: X509Certificate): Uint8Array | undefined {
  // tbsCertificate ::= SEQUENCE { [0] version, serial, signature, issuer, validity, subject, ... }
  const raw = new Uint8Array(cert.raw);
  const outer = tlv(raw, 0);
  if (outer === undefined) return undefined;
  const tbs = tlv(raw, outer.start);
  if (tbs === undefined) return undefined;
  let pos = tbs.start;
  let element = tlv(raw, pos);
  if (element !== undefined && raw[pos] === 0xa0) { pos = element.end; element = tlv(raw, pos); } // version
  for (let i = 0; i < 4 && element !== undefined; i++) { pos = element.end; element = tlv(raw, pos); } // serial .. validity
  return element === undefined ? undefined : raw.slice(pos, element.end);
}

function tlv(b: Uint8Array, pos: number): { start: number; end: number } | undefined {
  if (pos + 2 > b.length) return undefined;
  let len = b[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > b.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  return start + len > b.length ? undefined : { start, end: start + len };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function gatewaySchema(ctx: Ctx) {
  return section({
    log: section({ level: leaf(withDefault<LogLevel>('info', oneOf(LOG_LEVELS))) }, 'a mapping with level'),
    keylog: leaf(keylogDir(ctx)),
    listen: section({
      // Without an address the gateway has no socket to start on.
      address: leaf(withDefault<string[]>(() => ['0.0.0.0'], listOf('IP addresses to listen on', ipLiteral, 'at least one IP address to listen on (omit address for 0.0.0.0)'))),
      port: leaf(withDefault(500, PORT)),
      natPort: leaf(withDefault(4500, PORT)),
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
      childSasPerPeer: leaf(withDefault(DEFAULT_LIMITS.childSasPerPeer, integer(1, 1_000_000))),
      ikeSasPerPeer: leaf(withDefault(DEFAULT_LIMITS.ikeSasPerPeer, integer(1, 1_000_000))),
    }, 'a mapping with halfOpenCookieThreshold, halfOpenMax, childSasPerPeer, ikeSasPerPeer').transform((l, zctx) => {
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
      tun_mtu: leaf(withDefault(1400, integer(576, 9000))),
      tun_queues: leaf(withDefault(1, integer(1, 64))),
      tun_offload: leaf(withDefault(true, boolean)),
      esp: leaf(withDefault('auto', oneOf(['auto', 'udp'] as const))),
      output: leaf(withDefault('workers', oneOf(['workers', 'io-thread'] as const))),
    }, 'a mapping with workers, tun, tun_mtu, tun_queues, tun_offload, esp, output').transform((d): DataplaneConfig => ({
      ...d.workers,
      ...(d.tun !== undefined ? { tun: { name: d.tun, mtu: d.tun_mtu, queues: d.tun_queues, offload: d.tun_offload } } : {}),
      // 'auto' is what an absent field means: keep the default configuration's shape.
      ...(d.esp !== 'auto' ? { esp: d.esp } : {}),
      ...(d.output !== 'workers' ? { output: d.output } : {}),
    })),
    connections: namedMap(connectionSchema(ctx), 'a mapping of connection names to connection options'),
  }, 'a mapping with log, keylog, listen, limits, retransmit, dataplane, connections').transform((raw): GatewayConfig => {
    const out: GatewayConfig = {
      log: raw.log,
      listen: raw.listen,
      limits: raw.limits,
      retransmit: raw.retransmit,
      dataplane: raw.dataplane,
      connections: Object.entries(raw.connections).map(([name, c]) => ({ name, ...c })),
    };
    if (raw.keylog !== undefined) out.keylog = raw.keylog;
    return out;
  });
}

// ---------------------------------------------------------------------------
// Zod issues -> ConfigProblems

function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? String(seg) : `.${String(seg)}`;
  }
  return s;
}

function toProblems(issues: readonly z.core.$ZodIssue[], prefix: PathSeg[], locate: (path: PathSeg[]) => number | undefined): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const add = (path: PathSeg[], problem: string, expected: string): void => {
    const full = [...prefix, ...path];
    const p: ConfigProblem = { path: formatPath(full), problem, expected };
    const line = locate(full);
    if (line !== undefined) p.line = line;
    out.push(p);
  };
  for (const iss of issues) {
    const path = iss.path.filter((s): s is PathSeg => typeof s === 'string' || typeof s === 'number');
    if (iss.code === 'invalid_key') {
      const inner = iss.issues[0];
      const [problem, expected] = split(inner?.message ?? `invalid name '${String(path[path.length - 1])}'`);
      add(path, problem, expected || NAME_EXPECTED);
      continue;
    }
    const [problem, expected, keys] = split(iss.message);
    if (iss.code === 'unrecognized_keys') {
      const allowed = keys === '' ? [] : keys.split(',');
      for (const key of iss.keys) add([...path, key], `unknown key '${key}'${suggestKey(key, allowed)}`, expected);
      continue;
    }
    add(path, problem, expected || 'a valid value');
  }
  // File order reads best; problems without a line keep their order at the end.
  return out.map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.line ?? Infinity) - (b.p.line ?? Infinity) || a.i - b.i)
    .map(({ p }) => p);
}

function split(message: string): [string, string, string] {
  const parts = message.split(SEP);
  return [parts[0] ?? message, parts[1] ?? '', parts[2] ?? ''];
}

function suggestKey(key: string, allowed: string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of allowed) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return best === undefined ? '' : ` (did you mean '${best}'?)`;
}

// ---------------------------------------------------------------------------
// YAML -> object, with line numbers for paths

/** 1-based line of the deepest node on `path` (the key's line when the path ends at a map key). */
function yamlLocator(contents: unknown, lineCounter: LineCounter): (path: PathSeg[]) => number | undefined {
  const lineOf = (offset: number | undefined): number | undefined => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  return (path) => {
    let node = contents as YamlNode | null | undefined;
    let line = lineOf((node as { range?: [number] } | null | undefined)?.range?.[0]);
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (pair === undefined) break;
        line = lineOf((pair.key as { range?: [number] } | null)?.range?.[0]) ?? line;
        node = pair.value as YamlNode | null;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as YamlNode | undefined;
        if (item === undefined) break;
        line = lineOf((item as { range?: [number] }).range?.[0]) ?? line;
        node = item;
      } else {
        break;
      }
    }
    return line;
  };
}

/**
 * Parse and validate configuration text. `fileName` is used in messages and,
 * when it is a path, to resolve relative key and PSK file paths (its directory;
 * the working directory otherwise). Throws ConfigError listing every problem.
 */
export function parseConfig(text: string, fileName = '<config>'): GatewayConfig {
  if (typeof text !== 'string') throw new TypeError('parseConfig: text must be a string');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, merge: true, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(fileName, doc.errors.map((e) => ({
      path: '',
      problem: `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
      expected: 'valid YAML',
      // Errors at the very end (an unclosed bracket) belong to the last written line.
      line: lineCounter.linePos(Math.min(e.pos[0], Math.max(0, text.trimEnd().length - 1))).line,
    })));
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new ConfigError(fileName, [{ path: '', problem: `YAML: ${(e as Error).message}`, expected: 'valid YAML' }]);
  }
  const baseDir = fileName.startsWith('<') ? process.cwd() : dirname(resolve(fileName));
  return validateGateway(data, fileName, baseDir, yamlLocator(doc.contents, lineCounter));
}

/** Read, parse and validate a configuration file. Throws ConfigError. */
export function loadConfigFile(path: string): GatewayConfig {
  if (typeof path !== 'string' || path === '') throw new TypeError('loadConfigFile: path must be a non-empty string');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(path, [{ path: '', problem: `cannot read the file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected: 'a readable YAML file' }]);
  }
  const config = parseConfig(text, path);
  config.file = resolve(path);
  return config;
}

export interface FromObjectOptions {
  /** Directory relative key/PSK paths are resolved against; default: the working directory. */
  baseDir?: string;
  /** Name used in error messages instead of "<object>". */
  file?: string;
}

/** Validate a whole configuration given as a plain object (same keys as the YAML). Throws ConfigError. */
export function configFromObject(obj: unknown, options: FromObjectOptions = {}): GatewayConfig {
  return validateGateway(obj, options.file ?? '<object>', options.baseDir ?? process.cwd(), () => undefined);
}

function validateGateway(data: unknown, file: string, baseDir: string, locate: (path: PathSeg[]) => number | undefined): GatewayConfig {
  // Workers first: per-worker cloning counts default to it.
  const dataplane = (data !== null && typeof data === 'object' ? (data as Record<string, unknown>).dataplane : undefined);
  const w = workersValue(dataplane !== null && typeof dataplane === 'object' ? ((dataplane as Record<string, unknown>).workers ?? undefined) : undefined);
  const ctx: Ctx = { baseDir, workers: w instanceof Problem ? autoWorkers() : w.workers };
  // Top-level "x-" keys carry YAML anchors only.
  let input = data === null || data === undefined ? {} : data;
  if (typeof input === 'object' && !Array.isArray(input) && !(input instanceof Uint8Array)) {
    input = Object.fromEntries(Object.entries(input).filter(([k]) => !k.startsWith('x-')));
  }
  const r = gatewaySchema(ctx).safeParse(input);
  if (!r.success) throw new ConfigError(file, toProblems(r.error.issues, [], locate));
  return r.data;
}

export interface ConnectionFromObjectOptions extends FromObjectOptions {
  /** The connection's name (default "default"); error paths start with "connections.<name>". */
  name?: string;
  /** Worker count for clone per: worker (default: the available cores). */
  workers?: number;
}

/**
 * Validate one connection given as a plain object with the YAML's keys
 * (remote_addrs, ike, local, remote, psk, children, ...), as the library API
 * passes it. Same rules and errors as in a file. Throws ConfigError.
 */
export function connectionFromObject(obj: unknown, options: ConnectionFromObjectOptions = {}): ConnectionConfig {
  const name = options.name ?? 'default';
  const file = options.file ?? '<object>';
  const prefix: PathSeg[] = ['connections', name];
  if (!NAME_RE.test(name)) throw new ConfigError(file, [{ path: formatPath(prefix), problem: `invalid name '${name}'`, expected: NAME_EXPECTED }]);
  const workers = options.workers ?? autoWorkers();
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) throw new RangeError(`connectionFromObject: workers must be an integer from 1 to ${MAX_WORKERS}`);
  const r = connectionSchema({ baseDir: options.baseDir ?? process.cwd(), workers }).safeParse(obj);
  if (!r.success) throw new ConfigError(file, toProblems(r.error.issues, prefix, () => undefined));
  return { name, ...r.data };
}
