/**
 * strongSwan's charon as a real IKEv2 peer inside a test network namespace.
 *
 * Each instance runs in its own private mount namespace with a per-instance
 * directory bind-mounted over /run (charon's pid file path is compiled in),
 * and talks VICI on its own socket, so several charons run side by side.
 * The kernel here has no ESP in XFRM, so ESP goes through kernel-libipsec
 * (userspace, TUN device ipsec0, always UDP-encapsulated per RFC 3948).
 *
 * Ownership: the daemon is a tracked child (proc.ts); `stop()` signals that
 * pid only. swanctl runs on the host side and reaches the daemon through the
 * unix socket in the instance directory.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { CHARON_PATH } from './prereq.js';
import { spawnIn } from './netns.js';
import type { NetNs } from './netns.js';
import { describeRun, run, waitFor } from './proc.js';
import type { RunResult, TrackedProcess } from './proc.js';
import { parseCharonKeyLog, parseListSas } from './swanctl-parse.js';
import type { ParsedSa } from './swanctl-parse.js';
import { espSaLine, ikev2DecryptionLine } from './tshark.js';

export type { ParsedChildSa, ParsedSa } from './swanctl-parse.js';

/**
 * Plugins loaded by default, in order: kernel-libipsec must come before
 * kernel-netlink (it provides the IPsec backend, netlink the routes), and
 * 5.9.8 needs `kdf` for prf+ ("KDF_PRF with PRF_HMAC_SHA2_256 not supported").
 */
export const DEFAULT_PLUGINS: readonly string[] = [
  'random',
  'nonce',
  'openssl',
  'aes',
  'gcm',
  'sha2',
  'hmac',
  'kdf',
  'curve25519',
  'gmp',
  'kernel-libipsec',
  'kernel-netlink',
  'socket-default',
  'vici',
];

/**
 * DEFAULT_PLUGINS and what certificate authentication needs: reading PEM
 * (pem), keys (pkcs1, pkcs8, pubkey), certificates (x509), chain constraints
 * (constraints) and CRLs (revocation). Signatures themselves go through openssl.
 */
export const CERT_PLUGINS: readonly string[] = [
  ...DEFAULT_PLUGINS.slice(0, DEFAULT_PLUGINS.indexOf('kernel-libipsec')),
  'pem',
  'pkcs1',
  'pkcs8',
  'pubkey',
  'x509',
  'constraints',
  'revocation',
  ...DEFAULT_PLUGINS.slice(DEFAULT_PLUGINS.indexOf('kernel-libipsec')),
];

/** charon log subsystems (strongswan.conf `filelog` keys). */
export type LogSubsystem = 'default' | 'dmn' | 'mgr' | 'ike' | 'chd' | 'job' | 'cfg' | 'knl' | 'net' | 'asn' | 'enc' | 'lib' | 'esp' | 'tls';

export interface CharonOptions {
  /** Absolute, short (VICI socket path must stay under 108 bytes), not under /run. Created if missing. */
  readonly dir: string;
  /** swanctl.conf `connections { ... }` block (or only its body). */
  readonly connections: string;
  /** swanctl.conf `secrets { ... }` block (or only its body). */
  readonly secrets?: string;
  /** Further swanctl.conf top-level blocks (e.g. `pools { ... }`). */
  readonly extraSwanctl?: string;
  /**
   * Credential files written into the instance's swanctl directory before
   * loading, by path relative to it (e.g. "x509ca/root.pem", "private/gw.key",
   * "x509crl/int.crl"): swanctl --load-all reads them from there.
   */
  readonly files?: Readonly<Record<string, string | Uint8Array>>;
  /** Plugin load list; default {@link DEFAULT_PLUGINS}. */
  readonly plugins?: readonly string[];
  /** Log levels per subsystem; default default 1, ike 2, cfg 1, knl 1, enc 1. */
  readonly logLevel?: Partial<Record<LogSubsystem, number>>;
  /**
   * Log IKE and Child SA keys (ike 4, chd 4), so that a test can build
   * Wireshark decryption tables with {@link charonDecryptionTables}. Test
   * peers only: these levels log every secret, the PSK included.
   */
  readonly logKeys?: boolean;
  /** charon.install_routes (routes via ipsec0 in table 220). Default false. */
  readonly installRoutes?: boolean;
  /** Retransmission: timeout (s), base, tries. Default 1.0, 1.4, 3 (gives up after about 9 s). */
  readonly retransmit?: { timeoutS?: number; base?: number; tries?: number };
  /** Extra lines inside the `charon { }` section of strongswan.conf. */
  readonly extraCharonConf?: string;
  /** Bound on start-up until VICI answers. Default 10 000 ms. */
  readonly startTimeoutMs?: number;
}

/** A running charon. */
export interface Charon {
  readonly ns: NetNs;
  readonly pid: number;
  readonly dir: string;
  readonly viciUri: string;
  readonly strongswanConf: string;
  readonly swanctlConf: string;
  readonly logPath: string;
  /** Milliseconds from spawn until VICI answered. */
  readonly startupMs: number;
  /** Milliseconds `swanctl --load-all` took. */
  readonly loadMs: number;
  /** Runs swanctl against this instance; throws with output and log tail on failure. */
  swanctl(args: readonly string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** `swanctl --initiate --child CHILD [--ike IKE]`, waits for completion (bounded). */
  initiate(child: string, ike?: string, opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Initiates only the IKE SA of connection `ike`. */
  initiateIke(ike: string, opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** `swanctl --terminate`; pass ike or child (name) or ikeId/childId (unique ids). */
  terminate(sel: { ike?: string; child?: string; ikeId?: number; childId?: number; force?: boolean }, opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** `swanctl --rekey` of an IKE or Child SA. */
  rekey(sel: { ike?: string; child?: string; ikeId?: number; childId?: number; reauth?: boolean }): Promise<RunResult>;
  /** Current SAs (`swanctl --list-sas --pretty`). */
  listSas(filter?: { ike?: string }): Promise<ParsedSa[]>;
  /** The charon log so far. */
  log(): string;
  /** Waits until the log matches `re` (bounded); returns the match. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** SIGTERM (then SIGKILL) to this charon's pid, waits for the exit. Idempotent. */
  stop(): Promise<void>;
  /** True once the daemon has exited. */
  exited(): boolean;
}

const live = new Set<Charon>();

const SWANCTL_SUBDIRS = [
  'x509',
  'x509ca',
  'x509ocsp',
  'x509aa',
  'x509ac',
  'x509crl',
  'pubkey',
  'private',
  'rsa',
  'ecdsa',
  'bliss',
  'pkcs8',
  'pkcs12',
];

function block(name: string, text: string): string {
  if (typeof text !== 'string') throw new TypeError(`startCharon: ${name} must be a string`);
  return new RegExp(`^\\s*${name}\\s*\\{`).test(text) ? text : `${name} {\n${text}\n}`;
}

function strongswanConf(opts: CharonOptions, dir: string, logPath: string, viciUri: string): string {
  const plugins = opts.plugins ?? DEFAULT_PLUGINS;
  for (const p of plugins) if (!/^[a-z0-9-]+$/.test(p)) throw new TypeError(`startCharon: invalid plugin name ${p}`);
  const levels: Partial<Record<LogSubsystem, number>> = { default: 1, ike: 2, cfg: 1, knl: 1, enc: 1, ...opts.logLevel };
  if (opts.logKeys) {
    levels.ike = 4;
    levels.chd = 4;
  }
  for (const [k, v] of Object.entries(levels)) {
    if (!Number.isInteger(v) || v < -1 || v > 4) throw new RangeError(`startCharon: log level ${k}=${v} out of -1..4`);
  }
  const rt = { timeoutS: 1.0, base: 1.4, tries: 3, ...opts.retransmit };
  if (!(rt.timeoutS > 0) || !(rt.base >= 1) || !Number.isInteger(rt.tries) || rt.tries < 0) {
    throw new RangeError('startCharon: retransmit needs timeoutS > 0, base >= 1, integer tries >= 0');
  }
  const levelLines = Object.entries(levels)
    .map(([k, v]) => `        ${k} = ${v}`)
    .join('\n');
  return `# written by the ikeclone test harness for one charon instance in ${dir}
charon {
    port = 500
    port_nat_t = 4500
    install_routes = ${opts.installRoutes ? 'yes' : 'no'}
    install_virtual_ip = no
    retransmit_timeout = ${rt.timeoutS}
    retransmit_base = ${rt.base}
    retransmit_tries = ${rt.tries}
    load = ${plugins.join(' ')}
    filelog {
        main {
            path = ${logPath}
            time_format = %H:%M:%S
            ike_name = yes
            flush_line = yes
            append = no
${levelLines}
        }
    }
    syslog {
        # no syslog: everything goes to the file above
    }
    plugins {
        vici {
            socket = ${viciUri}
        }
    }
${opts.extraCharonConf ?? ''}
}
`;
}

/**
 * Writes strongswan.conf and swanctl.conf into `opts.dir`, starts charon in
 * `ns` (private mount namespace, private /run), waits until VICI answers and
 * loads the configuration. Throws with the log on any failure (and stops the
 * daemon it started).
 */
export async function startCharon(ns: NetNs, opts: CharonOptions): Promise<Charon> {
  if (!opts || typeof opts.dir !== 'string' || !isAbsolute(opts.dir)) throw new TypeError('startCharon: dir must be an absolute path');
  const dir = resolve(opts.dir);
  if (dir === '/run' || dir.startsWith('/run/') || dir.startsWith('/var/run/')) {
    throw new Error('startCharon: dir must not be under /run (it is hidden by the private /run)');
  }
  const viciPath = join(dir, 'charon.vici');
  if (Buffer.byteLength(viciPath) > 100) throw new Error(`startCharon: VICI socket path too long (${viciPath})`);
  const viciUri = `unix://${viciPath}`;
  const logPath = join(dir, 'charon.log');
  const runDir = join(dir, 'run');
  const swanctlDir = join(dir, 'swanctl');
  mkdirSync(runDir, { recursive: true });
  for (const sub of SWANCTL_SUBDIRS) mkdirSync(join(swanctlDir, sub), { recursive: true });
  const confPath = join(dir, 'strongswan.conf');
  const swanctlConf = join(swanctlDir, 'swanctl.conf');
  writeFileSync(confPath, strongswanConf(opts, dir, logPath, viciUri));
  writeFileSync(
    swanctlConf,
    [block('connections', opts.connections), opts.secrets ? block('secrets', opts.secrets) : '', opts.extraSwanctl ?? ''].join('\n\n') + '\n',
  );
  for (const [rel, data] of Object.entries(opts.files ?? {})) {
    if (!SWANCTL_SUBDIRS.includes(rel.split('/')[0]!) || rel.split('/').length !== 2) throw new TypeError(`startCharon: files key ${rel} is not <swanctl subdirectory>/<name>`);
    writeFileSync(join(swanctlDir, rel), data);
  }
  writeFileSync(logPath, '');
  // SWANCTL_DIR: swanctl loads credentials from this instance's directory, not /etc/swanctl.
  const env = { ...process.env, STRONGSWAN_CONF: confPath, SWANCTL_DIR: swanctlDir };
  const started = performance.now();
  // `ip netns exec` -> `unshare` -> `sh` -> exec charon: one pid all the way.
  const daemon: TrackedProcess = spawnIn(
    ns,
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$1"', runDir, CHARON_PATH],
    { env },
  );
  const readLog = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  const tail = (s: string, n = 40) => s.split('\n').slice(-n).join('\n');
  const failure = (what: string) =>
    new Error(`${what}\n--- charon stderr ---\n${daemon.stderr().trim()}\n--- ${logPath} (tail) ---\n${tail(readLog())}`);

  const swanctl = async (args: readonly string[], o: { timeoutMs?: number } = {}): Promise<RunResult> => {
    const r = await run('swanctl', [...args, '--uri', viciUri], { env, timeoutMs: o.timeoutMs ?? 15_000 });
    if (r.code !== 0 || r.timedOut) throw failure(describeRun(r));
    return r;
  };

  let startupMs: number;
  let loadMs: number;
  try {
    await waitFor(
      async () => {
        if (daemon.exitInfo() !== undefined) throw failure(`charon exited during start-up (${JSON.stringify(daemon.exitInfo())})`);
        const r = await run('swanctl', ['--stats', '--uri', viciUri], { env, timeoutMs: 2000 });
        return r.code === 0;
      },
      { timeoutMs: opts.startTimeoutMs ?? 10_000, intervalMs: 25, message: `charon VICI at ${viciUri}` },
    ).catch((e: unknown) => {
      if (daemon.exitInfo() !== undefined) throw failure(`charon exited during start-up (${JSON.stringify(daemon.exitInfo())})`);
      throw failure(e instanceof Error ? e.message : String(e));
    });
    startupMs = performance.now() - started;
    const t0 = performance.now();
    const r = await swanctl(['--load-all', '--noprompt', '--file', swanctlConf]);
    loadMs = performance.now() - t0;
    if (/fail|error|invalid/i.test(r.stdout + r.stderr.replace(/opening directory .* failed.*\n?/g, ''))) {
      throw failure(`swanctl --load-all reported a problem:\n${r.stdout}${r.stderr}`);
    }
  } catch (e) {
    await daemon.stop({ graceMs: 2000 }).catch(() => undefined);
    throw e;
  }

  let stopped: Promise<void> | undefined;
  const handle: Charon = {
    ns,
    pid: daemon.pid,
    dir,
    viciUri,
    strongswanConf: confPath,
    swanctlConf,
    logPath,
    startupMs,
    loadMs,
    swanctl,
    initiate(child, ike, o = {}) {
      const timeoutMs = o.timeoutMs ?? 10_000;
      const args = ['--initiate', '--child', child];
      if (ike !== undefined) args.push('--ike', ike);
      args.push('--timeout', String(Math.max(1, Math.ceil(timeoutMs / 1000) - 1)));
      return swanctl(args, { timeoutMs });
    },
    initiateIke(ike, o = {}) {
      const timeoutMs = o.timeoutMs ?? 10_000;
      return swanctl(['--initiate', '--ike', ike, '--timeout', String(Math.max(1, Math.ceil(timeoutMs / 1000) - 1))], { timeoutMs });
    },
    terminate(sel, o = {}) {
      const timeoutMs = o.timeoutMs ?? 10_000;
      const args = ['--terminate'];
      if (sel.ike !== undefined) args.push('--ike', sel.ike);
      if (sel.child !== undefined) args.push('--child', sel.child);
      if (sel.ikeId !== undefined) args.push('--ike-id', String(sel.ikeId));
      if (sel.childId !== undefined) args.push('--child-id', String(sel.childId));
      if (args.length === 1) throw new TypeError('terminate: give ike, child, ikeId or childId');
      if (sel.force) args.push('--force');
      args.push('--timeout', String(Math.max(1, Math.ceil(timeoutMs / 1000) - 1)));
      return swanctl(args, { timeoutMs });
    },
    rekey(sel) {
      const args = ['--rekey'];
      if (sel.ike !== undefined) args.push('--ike', sel.ike);
      if (sel.child !== undefined) args.push('--child', sel.child);
      if (sel.ikeId !== undefined) args.push('--ike-id', String(sel.ikeId));
      if (sel.childId !== undefined) args.push('--child-id', String(sel.childId));
      if (args.length === 1) throw new TypeError('rekey: give ike, child, ikeId or childId');
      if (sel.reauth) args.push('--reauth');
      return swanctl(args);
    },
    async listSas(filter = {}) {
      const args = ['--list-sas', '--pretty', '--noblock'];
      if (filter.ike !== undefined) args.push('--ike', filter.ike);
      return parseListSas((await swanctl(args)).stdout);
    },
    log: readLog,
    async waitForLog(re, timeoutMs = 10_000) {
      return waitFor(() => re.exec(readLog()), { timeoutMs, intervalMs: 50, message: `charon log ${logPath} to match ${re}` });
    },
    stop() {
      stopped ??= (async () => {
        try {
          await daemon.stop({ signal: 'SIGTERM', graceMs: 5000 });
        } finally {
          live.delete(handle);
        }
      })();
      return stopped;
    },
    exited: () => daemon.exitInfo() !== undefined,
  };
  live.add(handle);
  return handle;
}

/** Stops every charon started by this process that is still running. */
export async function stopAllCharons(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop().catch(() => undefined)));
}

/** Wireshark names of charon's algorithm identifiers (IKEv2 decryption table). */
function wiresharkIkeEncr(alg: string, keyBits: number): string | undefined {
  const gcm = /^AES_GCM_(8|12|16)$/.exec(alg);
  if (gcm) return `AES-GCM-${keyBits} with ${gcm[1]} octet ICV [RFC5282]`;
  if (alg === 'AES_CBC') return `AES-CBC-${keyBits} [RFC3602]`;
  return undefined;
}

const IKE_INTEG: Record<string, string> = {
  HMAC_SHA1_96: 'HMAC_SHA1_96 [RFC2404]',
  HMAC_SHA2_256_128: 'HMAC_SHA2_256_128 [RFC4868]',
  HMAC_SHA2_384_192: 'HMAC_SHA2_384_192 [RFC4868]',
  HMAC_SHA2_512_256: 'HMAC_SHA2_512_256 [RFC4868]',
};

const ESP_INTEG: Record<string, string> = {
  HMAC_SHA1_96: 'HMAC-SHA-1-96 [RFC2404]',
  HMAC_SHA2_256_128: 'HMAC-SHA-256-128 [RFC4868]',
  HMAC_SHA2_384_192: 'HMAC-SHA-384-192 [RFC4868]',
  HMAC_SHA2_512_256: 'HMAC-SHA-512-256 [RFC4868]',
};

function wiresharkEspEncr(alg: string): string | undefined {
  const gcm = /^AES_GCM_(8|12|16)$/.exec(alg);
  if (gcm) return `AES-GCM with ${gcm[1]} octet ICV [RFC4106]`;
  if (alg === 'AES_CBC') return 'AES-CBC [RFC3602]';
  return undefined;
}

/**
 * Builds Wireshark UAT lines (`ikev2_decryption_table`, `esp_sa`) from the
 * log of a charon started with `logKeys: true` and its current SAs (which
 * give SPIs, algorithms and roles). The role of each Child SA is taken to be
 * that of its IKE SA, which holds for Child SAs created with IKE_AUTH and by
 * the IKE initiator; a responder-initiated CREATE_CHILD_SA would be mapped the
 * wrong way round.
 */
export function charonDecryptionTables(log: string, sas: readonly ParsedSa[]): { ikeDecryptionTable: string[]; espSas: string[] } {
  const keys = parseCharonKeyLog(log);
  const ikeDecryptionTable: string[] = [];
  const espSas: string[] = [];
  for (const sa of sas) {
    const k = keys.ike.find((x) => x.uniqueId === sa.uniqueId)?.keys;
    const [encrAlg, bits] = sa.encr.split('-');
    const encr = wiresharkIkeEncr(encrAlg ?? '', Number(bits));
    if (k?.skEi && k.skEr && encr) {
      const integ = sa.integ === null ? undefined : IKE_INTEG[sa.integ];
      if (sa.integ === null || integ) {
        ikeDecryptionTable.push(
          ikev2DecryptionLine({
            spiI: sa.spiI,
            spiR: sa.spiR,
            skEi: k.skEi,
            skEr: k.skEr,
            encr,
            integ: integ ?? 'NONE [RFC4306]',
            skAi: k.skAi ?? '',
            skAr: k.skAr ?? '',
          }),
        );
      }
    }
    for (const child of sa.children) {
      const ck = keys.children.find((x) => x.inbound?.spi === child.spiIn && x.outbound?.spi === child.spiOut);
      const [alg] = child.encr.split('-');
      const encrName = wiresharkEspEncr(alg ?? '');
      const integName = child.integ === null ? 'NULL' : ESP_INTEG[child.integ];
      if (!ck || !encrName || !integName) continue;
      // Initiator -> responder traffic uses the initiator keys (RFC 7296 §2.17).
      const outKey = sa.initiator ? ck.encrI : ck.encrR;
      const inKey = sa.initiator ? ck.encrR : ck.encrI;
      const outInteg = (sa.initiator ? ck.integI : ck.integR) ?? '';
      const inInteg = (sa.initiator ? ck.integR : ck.integI) ?? '';
      if (outKey) espSas.push(espSaLine({ spi: child.spiOut, encr: encrName, key: outKey, integ: integName, integKey: outInteg }));
      if (inKey) espSas.push(espSaLine({ spi: child.spiIn, encr: encrName, key: inKey, integ: integName, integKey: inInteg }));
    }
  }
  return { ikeDecryptionTable, espSas };
}

/** One PSK connection with one child "net", as the interop suites configure charon. */
export interface PskConnectionOptions {
  /** Connection name (default "ikeclone"). */
  readonly name?: string;
  readonly localAddrs?: string;
  readonly remoteAddrs?: string;
  readonly proposals: string;
  readonly esp: string;
  readonly localId: string;
  readonly remoteId: string;
  readonly localTs: string;
  readonly remoteTs: string;
  /** Extra lines in the connection section (e.g. "mobike = yes", lifetimes). */
  readonly ikeOptions?: string;
  /** Extra lines in the child section. */
  readonly childOptions?: string;
}

/**
 * swanctl.conf `secrets { ... }` with one IKE pre-shared key for the two
 * identities (a section name of letters, digits and '-').
 */
export function pskSecrets(name: string, ids: [string, string], psk: string): string {
  if (!/^[A-Za-z0-9-]{1,32}$/.test(name)) throw new TypeError(`pskSecrets: invalid section name ${JSON.stringify(name)}`);
  if (psk.includes('"') || psk.includes('\\')) throw new TypeError('pskSecrets: the key must not contain quotes or backslashes');
  return `secrets {
  ike-${name} {
    id-1 = ${ids[0]}
    id-2 = ${ids[1]}
    secret = "${psk}"
  }
}`;
}

/** swanctl.conf `connections { ... }` for {@link PskConnectionOptions}. */
export function pskConnection(o: PskConnectionOptions): string {
  const line = (s: string | undefined) => (s ? `\n    ${s.trim().split('\n').join('\n    ')}` : '');
  return `connections {
  ${o.name ?? 'ikeclone'} {
    version = 2${o.localAddrs ? `\n    local_addrs = ${o.localAddrs}` : ''}${o.remoteAddrs ? `\n    remote_addrs = ${o.remoteAddrs}` : ''}
    proposals = ${o.proposals}${line(o.ikeOptions)}
    local {
      auth = psk
      id = ${o.localId}
    }
    remote {
      auth = psk
      id = ${o.remoteId}
    }
    children {
      net {
        local_ts = ${o.localTs}
        remote_ts = ${o.remoteTs}
        esp_proposals = ${o.esp}${line(o.childOptions)}
      }
    }
  }
}`;
}
