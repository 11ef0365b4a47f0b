// Tunnel benchmark (`npm run bench -- tunnel --json`, root only): TCP
// throughput with iperf3 through an IPsec tunnel between two network
// namespaces joined by a veth pair, for
//   veth              no IPsec at all (the ceiling of this machine)
//   ikeclone-udp      two ikeclone gateways (the built CLI) with TUN devices,
//                     ESP in UDP 4500 (RFC 3948)
//   ikeclone-raw      the same with raw ESP (IP protocol 50)
//   ikeclone-raw-io-thread
//                     ikeclone-raw with `steering: io-thread`: the I/O thread
//                     reads all raw ESP and hands it to the owner workers
//                     (AES-GCM-128 only; what a filtered raw socket per
//                     worker gains)
//   ikeclone-udp-io-thread
//                     ikeclone-udp with `output: io-thread`: the I/O thread,
//                     not the workers, sends ESP and writes the TUN device
//                     (AES-GCM-128 only; what direct output gains)
//   ikeclone-udp-tun-io-thread
//                     ikeclone-udp with `tun_input: io-thread`: the I/O
//                     thread reads the TUN device and hands every packet to
//                     a worker (AES-GCM-128 only; what a queue per worker gains)
//   strongswan        two strongSwan charons with kernel-libipsec (userspace
//                     ESP over their ipsec0 TUN devices, always in UDP)
//   wireguard-go      two wireguard-go (userspace WireGuard over TUN devices,
//                     ChaCha20-Poly1305 only), configured with wg
// each in both directions (iperf3 and iperf3 -R), 4 x --max-time seconds per
// run (default 1 s; at least 2 s). Latency (ping through the tunnel) is
// measured twice: right after set-up (the first packets of the gateways'
// lives: ikeclone's data plane is JavaScript, which V8 runs unoptimised until
// it has run often) and again after the iperf3 runs (the gateway in service,
// what the ratios compare; every case gets the same traffic first). The IPsec cases run once per ESP cipher, the same on both
// sides of every pair: AES-GCM-128, which strongSwan's OpenSSL runs with
// AES-NI while ikeclone's wasm kernel has no AES instructions, and
// ChaCha20-Poly1305, software on both. Inner traffic runs between addresses on
// lo in each namespace (10.250.50.1 <-> 10.250.100.1), routed through the TUN
// devices. Everything it creates (namespaces, processes, files) is removed
// at the end, also when a step fails. Cases whose tools are missing (charon,
// the TUN addon) are reported as skipped with the reason. The namespaces are
// built with the same helper as the netns demo's and the tests' (demo/netns.ts).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlClient } from '../control/api/control-client.js';
import type { GatewayStatus } from '../control/status.js';
import { tunUnavailable } from '../io/tun.js';
import { addRoute, boundedRunner, createNamespacePair, deleteNamespace, parsePingSummary } from '../demo/netns.js';
import { formatTable, round, type SuiteOptions } from './common.js';

type Case = 'veth' | 'ikeclone-udp' | 'ikeclone-raw' | 'ikeclone-raw-io-thread' | 'ikeclone-udp-io-thread' | 'ikeclone-udp-tun-io-thread' | 'strongswan' | 'wireguard-go';
/** Who reads a gateway's TUN device (config dataplane.tun_input). */
type TunInput = 'workers' | 'io-thread';
/** Who writes a gateway's output (config dataplane.output). */
type Output = 'workers' | 'io-thread';
/** ESP ciphers compared (strongSwan proposal keywords; ikeclone takes the same). */
export const TUNNEL_CIPHERS = ['aes128gcm16', 'chacha20poly1305'] as const;
type Cipher = (typeof TUNNEL_CIPHERS)[number];
/** How each cipher appears in status (ikeclone) and in swanctl --list-sas (strongSwan). */
const CIPHER_NAMES: Record<Cipher, { ikeclone: RegExp; strongswan: RegExp }> = {
  aes128gcm16: { ikeclone: /^AES_GCM_16_128\b/, strongswan: /AES_GCM_16-128|AES_GCM_16_128/ },
  chacha20poly1305: { ikeclone: /^CHACHA20_POLY1305\b/, strongswan: /CHACHA20_POLY1305/ },
};

export interface TunnelResult {
  case: Case;
  /** The ESP cipher of both peers; 'none' for the bare veth. */
  esp: Cipher | 'none';
  /** left -> right (iperf3) or right -> left (iperf3 -R). */
  direction: 'forward' | 'reverse';
  mbps: number;
  retransmits: number;
}

/**
 * When a latency was measured: 'first-packets' right after set-up, before
 * any other traffic; 'in-service' after the iperf3 runs.
 */
export type LatencyPhase = 'first-packets' | 'in-service';

/** Round-trip time of ping through the tunnel (left -> right inner address). */
export interface LatencyResult {
  case: Case;
  esp: Cipher | 'none';
  phase: LatencyPhase;
  /** Milliseconds between echo requests: 20 (the tunnel idles in between) or 2 (a steady 500 packets/s each way). */
  intervalMs: number;
  /** Echo requests sent, and answered. */
  sent: number;
  received: number;
  minMs: number;
  avgMs: number;
  maxMs: number;
}

export interface TunnelReport {
  suite: 'tunnel';
  node: string;
  seconds: number;
  results: TunnelResult[];
  latency: LatencyResult[];
  skipped: Array<{ case: Case; esp: Cipher | 'none'; reason: string }>;
  /** ikeclone vs strongSwan kernel-libipsec (and vs wireguard-go, ChaCha20-Poly1305) with the same cipher, forward and reverse averaged. */
  ratios: Record<string, { value: number; description: string }>;
}

export const CHARON = '/usr/lib/ipsec/charon';
const PSK = 'tunnel-benchmark-psk-0123456789abcdef';
export const OUTER = { left: '10.250.1.1', right: '10.250.1.2' };
export const INNER = { left: '10.250.50.1', right: '10.250.100.1', leftNet: '10.250.50.0/24', rightNet: '10.250.100.0/24' };
export const TUN = 'ikc0';
/**
 * Latency measurements: echo requests and their spacing. 20 ms apart, every
 * thread on the path sleeps between two requests (the idle tunnel); 2 ms
 * apart, the tunnel carries a steady 500 packets/s each way.
 */
const PING_RUNS = [{ count: 50, intervalMs: 20 }, { count: 200, intervalMs: 2 }] as const;
/** The idle run again before any traffic, for the first packets after start. */
const FIRST_PACKETS_RUN = PING_RUNS[0];
/** After the iperf3 runs, before the pings: its connections close and the threads go idle. */
const SETTLE_MS = 500;

function sh(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 15_000 });
  if ((r.status !== 0 || r.error) && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? ''}${r.stderr ?? ''}`.trim());
  }
  return r.stdout ?? '';
}

export function onPath(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).status === 0;
}

/** Namespace set-up and tear-down (demo/netns.ts), each command bounded as sh() bounds them. */
export const runner = boundedRunner(15_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`tunnel bench: ${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** The two namespaces and everything started in them. */
export class Testbed {
  readonly left = `ikcb${process.pid}-l`;
  readonly right = `ikcb${process.pid}-r`;
  readonly dir = mkdtempSync(join(tmpdir(), 'ikc-bench-tunnel-'));
  private readonly procs: ChildProcess[] = [];

  /** Namespaces this testbed created (recorded before each is created), for destroy(). */
  private readonly namespaces: string[] = [];

  async create(): Promise<void> {
    await createNamespacePair(runner, {
      namespaces: [this.left, this.right],
      links: [{ dev: 'eth0', cidrs: [`${OUTER.left}/24`, `${OUTER.right}/24`] }],
      inner: [`${INNER.left}/24`, `${INNER.right}/24`],
    }, (name) => this.namespaces.push(name));
  }

  /** Start `cmd` in namespace `ns`; its stdout is discarded unless `stdout` says where it goes (a pipe, a file descriptor). */
  spawn(ns: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv, stdout: 'ignore' | 'pipe' | number = 'ignore'): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', stdout, 'pipe'], env: env ?? process.env });
    p.stderr?.resume();
    this.procs.push(p);
    return p;
  }

  /** Stop everything started so far (SIGTERM, then SIGKILL). */
  async stopAll(): Promise<void> {
    const live = this.procs.splice(0).filter((p) => p.exitCode === null && p.signalCode === null);
    for (const p of live) p.kill('SIGTERM');
    const deadline = Date.now() + 4000;
    while (live.some((p) => p.exitCode === null && p.signalCode === null) && Date.now() < deadline) await sleep(50);
    for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }

  async destroy(): Promise<void> {
    await this.stopAll();
    for (const ns of this.namespaces.splice(0)) {
      // Tried twice (a process killed a moment ago may still be leaving it); a namespace left behind is said.
      let failed = await deleteNamespace(runner, ns);
      if (failed) {
        await sleep(500);
        failed = await deleteNamespace(runner, ns);
      }
      if (failed) process.stderr.write(`tunnel bench: namespace ${ns} left behind: ${failed}\n`);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * ping from the left's inner address to the right's: `count` requests
   * `intervalMs` apart on an otherwise idle tunnel, after one that may still
   * find a path to set up (ARP, a worker asleep). Returns iputils' rtt summary.
   */
  ping(count: number, intervalMs: number, bind = INNER): Omit<LatencyResult, 'case' | 'esp' | 'phase'> {
    sh('ip', ['netns', 'exec', this.left, 'ping', '-c', '1', '-W', '2', '-I', bind.left, bind.right], { allowFail: true });
    const interval = (intervalMs / 1000).toFixed(3);
    const out = sh('ip', ['netns', 'exec', this.left, 'ping', '-q', '-c', String(count), '-i', interval, '-W', '2', '-I', bind.left, bind.right], { allowFail: true, timeoutMs: 30_000 });
    const { sent, received, rtt } = parsePingSummary(out);
    if (rtt === null) throw new Error(`ping through the tunnel: no summary in ${JSON.stringify(out.slice(-300))}`);
    return { intervalMs, sent, received, ...rtt };
  }

  /** iperf3 from the left's inner address to the right's (reverse: data flows right -> left). */
  async iperf(seconds: number, reverse: boolean, bind = INNER): Promise<{ mbps: number; retransmits: number }> {
    const server = this.spawn(this.right, 'iperf3', ['-s', '-1', '-B', bind.right]);
    await until('iperf3 server', () => sh('ip', ['netns', 'exec', this.right, 'ss', '-ltn'], { allowFail: true }).includes(`${bind.right}:5201`), 5000);
    const args = ['netns', 'exec', this.left, 'iperf3', '-c', bind.right, '-B', bind.left, '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])];
    const out = sh('ip', args, { timeoutMs: (seconds + 20) * 1000 });
    server.kill('SIGTERM');
    const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
    return { mbps: round(j.end.sum_received.bits_per_second / 1e6, 1), retransmits: j.end.sum_sent.retransmits ?? 0 };
  }
}

/** Run `fn` on a fresh testbed, destroyed afterwards: also when a step fails, and on SIGINT. */
export async function withTestbed<T>(fn: (bed: Testbed) => Promise<T>): Promise<T> {
  const bed = new Testbed();
  const stop = () => void bed.destroy().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    await bed.create();
    return await fn(bed);
  } finally {
    process.off('SIGINT', stop);
    await bed.destroy();
  }
}

/** The repository's root: from dist/bench/ when built, from bench/ when a test imports the source. */
export function repoRoot(): string {
  const here = resolve(fileURLToPath(import.meta.url), '..');
  return basename(resolve(here, '..')) === 'dist' ? resolve(here, '..', '..') : resolve(here, '..');
}

function ikecloneYaml(side: 'left' | 'right', esp: 'udp' | 'auto', cipher: Cipher, output: Output, tunInput: TunInput, steering: 'kernel' | 'io-thread' = 'kernel'): string {
  const [me, peer] = side === 'left' ? [OUTER.left, OUTER.right] : [OUTER.right, OUTER.left];
  const [localNet, remoteNet] = side === 'left' ? [INNER.leftNet, INNER.rightNet] : [INNER.rightNet, INNER.leftNet];
  return JSON.stringify({
    log: { level: 'warn' },
    listen: { address: me, port: 500, natPort: 4500 },
    dataplane: { workers: 'auto', tun: TUN, esp, output, ...(tunInput !== 'workers' ? { tun_input: tunInput } : {}), ...(steering !== 'kernel' ? { steering } : {}) },
    connections: {
      peer: {
        local_addrs: [me], remote_addrs: [peer], ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: `${side}.bench`, auth: 'psk' }, remote: { id: `${side === 'left' ? 'right' : 'left'}.bench`, auth: 'psk' },
        psk: PSK, ...(side === 'left' ? { start_action: 'start' } : {}),
        children: { net: { local_ts: [localNet], remote_ts: [remoteNet], esp: [cipher] } },
      },
    },
  });
}

export async function statusOf(socket: string): Promise<GatewayStatus | undefined> {
  try {
    const c = await ControlClient.connect(socket, { connectTimeoutMs: 1000 });
    try {
      return (await c.request('status', undefined, { timeoutMs: 3000 })) as GatewayStatus;
    } finally {
      c.close();
    }
  } catch {
    return undefined;
  }
}

export async function ikeclonePair(bed: Testbed, esp: 'udp' | 'auto', cipher: Cipher, output: Output = 'workers', tunInput: TunInput = 'workers', steering: 'kernel' | 'io-thread' = 'kernel'): Promise<void> {
  const cli = join(repoRoot(), 'dist', 'control', 'cli', 'main.js');
  const sockets: string[] = [];
  for (const side of ['right', 'left'] as const) {
    const file = join(bed.dir, `${side}-${esp}.yaml`);
    writeFileSync(file, ikecloneYaml(side, esp, cipher, output, tunInput, steering)); // JSON is YAML
    const socket = join(bed.dir, `${side}-${esp}.sock`);
    sockets.push(socket);
    bed.spawn(side === 'left' ? bed.left : bed.right, process.execPath, [cli, 'gateway', '--config', file, '--socket', socket]);
  }
  await until('ikeclone Child SAs in the data plane on both ends', async () => {
    for (const s of sockets) {
      const st = await statusOf(s);
      const children = st?.ikeSas.flatMap((sa) => sa.children) ?? [];
      if (children.length === 0 || !children.every((c) => typeof c.worker === 'number')) return false;
      if (st!.dataplane?.output !== output) throw new Error(`tunnel bench: ikeclone output is ${st!.dataplane?.output}, not ${output}`);
      const reads = output === 'workers' ? tunInput : 'io-thread';
      if (st!.dataplane?.tunInput !== reads) throw new Error(`tunnel bench: ikeclone TUN input is ${st!.dataplane?.tunInput}, not ${reads}`);
      const other = children.find((c) => !CIPHER_NAMES[cipher].ikeclone.test(c.proposal));
      if (other) throw new Error(`tunnel bench: ikeclone negotiated ${other.proposal}, not ${cipher}`);
    }
    return true;
  });
  await addRoute(runner, bed.left, INNER.rightNet, { dev: TUN, src: INNER.left });
  await addRoute(runner, bed.right, INNER.leftNet, { dev: TUN, src: INNER.right });
}

function charonConfigs(dir: string, side: 'left' | 'right', cipher: Cipher): { conf: string; swanctl: string; vici: string } {
  const [me, peer] = side === 'left' ? [OUTER.left, OUTER.right] : [OUTER.right, OUTER.left];
  const [localNet, remoteNet] = side === 'left' ? [INNER.leftNet, INNER.rightNet] : [INNER.rightNet, INNER.leftNet];
  const vici = join(dir, `${side}.vici`);
  const conf = join(dir, `${side}-strongswan.conf`);
  const swanctl = join(dir, `${side}-swanctl.conf`);
  writeFileSync(conf, `charon {
  port = 500
  port_nat_t = 4500
  install_routes = yes
  install_virtual_ip = no
  load = random nonce openssl aes gcm sha2 hmac kdf curve25519 gmp kernel-libipsec kernel-netlink socket-default vici
  filelog {
    main {
      path = ${join(dir, `${side}-charon.log`)}
      default = 0
    }
  }
  syslog {
  }
  plugins {
    vici {
      socket = unix://${vici}
    }
  }
}
`);
  writeFileSync(swanctl, `connections {
  bench {
    version = 2
    local_addrs = ${me}
    remote_addrs = ${peer}
    proposals = aes256gcm16-prfsha256-x25519
    local {
      auth = psk
      id = ${side}.bench
    }
    remote {
      auth = psk
      id = ${side === 'left' ? 'right' : 'left'}.bench
    }
    children {
      net {
        local_ts = ${localNet}
        remote_ts = ${remoteNet}
        esp_proposals = ${cipher}
      }
    }
  }
}
secrets {
  ike-bench {
    id-1 = left.bench
    id-2 = right.bench
    secret = "${PSK}"
  }
}
`);
  return { conf, swanctl, vici };
}

export async function strongswanPair(bed: Testbed, cipher: Cipher): Promise<void> {
  const cfg = { left: charonConfigs(bed.dir, 'left', cipher), right: charonConfigs(bed.dir, 'right', cipher) };
  for (const side of ['left', 'right'] as const) {
    const runDir = join(bed.dir, `${side}-run`);
    sh('mkdir', ['-p', runDir]);
    const env = { ...process.env, STRONGSWAN_CONF: cfg[side].conf };
    // A private /run per charon: its pid file path is compiled in.
    bed.spawn(side === 'left' ? bed.left : bed.right, 'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$1"', runDir, CHARON], env);
  }
  const swanctlRun = (side: 'left' | 'right', args: string[]) =>
    spawnSync('swanctl', [...args, '--uri', `unix://${cfg[side].vici}`], {
      encoding: 'utf8', timeout: 15_000, env: { ...process.env, STRONGSWAN_CONF: cfg[side].conf },
    });
  const swanctl = (side: 'left' | 'right', args: string[]) => swanctlRun(side, args).status === 0;
  await until('charon VICI', () => swanctl('left', ['--stats']) && swanctl('right', ['--stats']));
  for (const side of ['left', 'right'] as const) {
    if (!swanctl(side, ['--load-all', '--noprompt', '--file', cfg[side].swanctl])) throw new Error(`tunnel bench: swanctl --load-all (${side}) failed`);
  }
  if (!swanctl('left', ['--initiate', '--child', 'net', '--ike', 'bench', '--timeout', '10'])) throw new Error('tunnel bench: charon did not establish the tunnel');
  const sas = swanctlRun('left', ['--list-sas']).stdout ?? '';
  if (!CIPHER_NAMES[cipher].strongswan.test(sas)) throw new Error(`tunnel bench: charon's Child SA does not use ${cipher}: ${sas.slice(0, 600)}`);
}

/** WireGuard's UDP port, and the interface names (distinct: wireguard-go's UAPI sockets share /var/run/wireguard). */
const WG_PORT = 51820;
export const WG_DEV = { left: 'wgl', right: 'wgr' } as const;

/** Two wireguard-go devices, one per namespace, peered over the veth with wg; routes to the inner nets through them. */
export async function wireguardPair(bed: Testbed): Promise<void> {
  const keys = { left: '', right: '' };
  const pub = { left: '', right: '' };
  for (const side of ['left', 'right'] as const) {
    keys[side] = join(bed.dir, `${side}-wg.key`);
    writeFileSync(keys[side], sh('wg', ['genkey']), { mode: 0o600 });
    pub[side] = spawnSync('wg', ['pubkey'], { input: sh('cat', [keys[side]]), encoding: 'utf8', timeout: 5000 }).stdout.trim();
    // -f: stay in the foreground, so that the testbed owns (and stops) the process.
    bed.spawn(side === 'left' ? bed.left : bed.right, 'wireguard-go', ['-f', WG_DEV[side]]);
  }
  for (const side of ['left', 'right'] as const) {
    const ns = side === 'left' ? bed.left : bed.right;
    const other = side === 'left' ? 'right' : 'left';
    await until(`wireguard-go ${WG_DEV[side]}`, () => sh('ip', ['netns', 'exec', ns, 'wg', 'show', WG_DEV[side]], { allowFail: true }).includes('listening port'), 10_000);
    sh('ip', ['netns', 'exec', ns, 'wg', 'set', WG_DEV[side], 'private-key', keys[side], 'listen-port', String(WG_PORT),
      'peer', pub[other], 'endpoint', `${OUTER[other]}:${WG_PORT}`, 'allowed-ips', side === 'left' ? INNER.rightNet : INNER.leftNet]);
    sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', WG_DEV[side], 'up']);
  }
  await addRoute(runner, bed.left, INNER.rightNet, { dev: WG_DEV.left, src: INNER.left });
  await addRoute(runner, bed.right, INNER.leftNet, { dev: WG_DEV.right, src: INNER.right });
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runTunnelBench(opts: SuiteOptions): Promise<TunnelReport> {
  if (process.getuid?.() !== 0) throw new Error('the tunnel benchmark needs root (network namespaces, TUN devices)');
  for (const bin of ['ip', 'iperf3', 'unshare']) if (!onPath(bin)) throw new Error(`the tunnel benchmark needs ${bin} (apt-get install iproute2 iperf3 util-linux)`);
  const seconds = Math.max(2, Math.round(opts.maxTime * 4));
  const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);
  const results: TunnelResult[] = [];
  const latency: LatencyResult[] = [];
  const skipped: TunnelReport['skipped'] = [];
  const tunMissing = tunUnavailable();
  const charonMissing = existsSync(CHARON) && onPath('swanctl') ? null : `${CHARON} or swanctl missing (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins)`;
  const wgMissing = onPath('wireguard-go') && onPath('wg') ? null : 'wireguard-go or wg missing (apt-get install --no-install-recommends wireguard-go wireguard-tools)';
  type Run = { name: Case; esp: Cipher | 'none'; missing: string | null; setUp: (bed: Testbed) => Promise<void>; bind?: typeof INNER };
  const cases: Run[] = [
    { name: 'veth', esp: 'none', missing: null, setUp: async () => {}, bind: { ...INNER, left: OUTER.left, right: OUTER.right } },
    ...TUNNEL_CIPHERS.flatMap((cipher): Run[] => [
      { name: 'ikeclone-udp', esp: cipher, missing: tunMissing, setUp: (bed) => ikeclonePair(bed, 'udp', cipher) },
      { name: 'ikeclone-raw', esp: cipher, missing: tunMissing, setUp: (bed) => ikeclonePair(bed, 'auto', cipher) },
      ...(cipher === 'aes128gcm16'
        ? [
          { name: 'ikeclone-raw-io-thread', esp: cipher, missing: tunMissing, setUp: (bed: Testbed) => ikeclonePair(bed, 'auto', cipher, 'workers', 'workers', 'io-thread') } satisfies Run,
          { name: 'ikeclone-udp-io-thread', esp: cipher, missing: tunMissing, setUp: (bed: Testbed) => ikeclonePair(bed, 'udp', cipher, 'io-thread') } satisfies Run,
          { name: 'ikeclone-udp-tun-io-thread', esp: cipher, missing: tunMissing, setUp: (bed: Testbed) => ikeclonePair(bed, 'udp', cipher, 'workers', 'io-thread') } satisfies Run,
        ]
        : []),
      { name: 'strongswan', esp: cipher, missing: charonMissing, setUp: (bed) => strongswanPair(bed, cipher) },
      ...(cipher === 'chacha20poly1305'
        ? [{ name: 'wireguard-go', esp: cipher, missing: wgMissing, setUp: (bed: Testbed) => wireguardPair(bed) } satisfies Run]
        : []),
    ]),
  ];
  const started = Date.now();
  for (const c of cases) {
    if (c.missing) {
      skipped.push({ case: c.name, esp: c.esp, reason: c.missing });
      progress(`${c.name} (${c.esp}): skipped (${c.missing})`);
      continue;
    }
    await withTestbed(async (bed) => {
      await c.setUp(bed);
      const ping = (phase: LatencyPhase, p: { count: number; intervalMs: number }) => {
        progress(`${c.name} (${c.esp}), ${phase}: ping x${p.count}, ${p.intervalMs} ms apart`);
        latency.push({ case: c.name, esp: c.esp, phase, ...bed.ping(p.count, p.intervalMs, c.bind) });
      };
      ping('first-packets', FIRST_PACKETS_RUN);
      for (const reverse of [false, true]) {
        progress(`${c.name} (${c.esp}) ${reverse ? 'reverse' : 'forward'}: iperf3 -t ${seconds}`);
        const r = await bed.iperf(seconds, reverse, c.bind);
        results.push({ case: c.name, esp: c.esp, direction: reverse ? 'reverse' : 'forward', ...r });
      }
      await sleep(SETTLE_MS);
      for (const p of PING_RUNS) ping('in-service', p);
    });
  }
  const mean = (name: Case, esp: Cipher) => {
    const rs = results.filter((r) => r.case === name && r.esp === esp);
    return rs.length ? rs.reduce((a, r) => a + r.mbps, 0) / rs.length : Number.NaN;
  };
  const ratio = (name: Case, esp: Cipher, what: string) => ({
    value: round(mean(name, esp) / mean('strongswan', esp), 2),
    description: `ikeclone (${what}) vs strongSwan kernel-libipsec, ${esp} on both, mean of both directions`,
  });
  const ratios: TunnelReport['ratios'] = {
    ikecloneUdpVsStrongswan: ratio('ikeclone-udp', 'aes128gcm16', 'ESP in UDP'),
    ikecloneRawVsStrongswan: ratio('ikeclone-raw', 'aes128gcm16', 'raw ESP'),
    ikecloneUdpVsStrongswanChacha20Poly1305: ratio('ikeclone-udp', 'chacha20poly1305', 'ESP in UDP'),
    ikecloneRawVsStrongswanChacha20Poly1305: ratio('ikeclone-raw', 'chacha20poly1305', 'raw ESP'),
    ikecloneUdpVsWireguardGo: {
      value: round(mean('ikeclone-udp', 'chacha20poly1305') / mean('wireguard-go', 'chacha20poly1305'), 2),
      description: 'ikeclone (ESP in UDP) vs wireguard-go, chacha20poly1305 on both, mean of both directions',
    },
    ikecloneRawVsWireguardGo: {
      value: round(mean('ikeclone-raw', 'chacha20poly1305') / mean('wireguard-go', 'chacha20poly1305'), 2),
      description: 'ikeclone (raw ESP) vs wireguard-go, chacha20poly1305 on both, mean of both directions',
    },
    workerOutputVsIoThread: {
      value: round(mean('ikeclone-udp', 'aes128gcm16') / mean('ikeclone-udp-io-thread', 'aes128gcm16'), 2),
      description: 'ikeclone ESP in UDP, workers write their own output vs the I/O thread writes it, aes128gcm16, mean of both directions',
    },
    workerRawInputVsIoThread: {
      value: round(mean('ikeclone-raw', 'aes128gcm16') / mean('ikeclone-raw-io-thread', 'aes128gcm16'), 2),
      description: 'ikeclone raw ESP, each worker reads its own filtered raw socket vs the I/O thread reads all raw ESP, aes128gcm16, mean of both directions',
    },
    workerTunInputVsIoThread: {
      value: round(mean('ikeclone-udp', 'aes128gcm16') / mean('ikeclone-udp-tun-io-thread', 'aes128gcm16'), 2),
      description: 'ikeclone ESP in UDP, each worker reads its own TUN queue vs the I/O thread reads the device, aes128gcm16, mean of both directions',
    },
  };
  Object.assign(ratios, latencyRatios(latency));
  const report: TunnelReport = { suite: 'tunnel', node: process.version, seconds, results, latency, skipped, ratios };
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    console.log(`Tunnel throughput: iperf3 TCP between two network namespaces, ${seconds} s per run (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
    console.log(formatTable(['case', 'esp', 'direction', 'Mbit/s', 'retransmits'], results.map((r) => [r.case, r.esp, r.direction, r.mbps, r.retransmits])));
    console.log(`\nLatency: ping through the tunnel right after set-up (first-packets), then after the iperf3 runs (in-service): ${PING_RUNS.map((p) => `${p.count} requests ${p.intervalMs} ms apart`).join(', then ')}\n`);
    console.log(formatTable(['case', 'esp', 'phase', 'interval ms', 'received', 'min ms', 'avg ms', 'max ms'], latency.map((l) => [l.case, l.esp, l.phase, l.intervalMs, `${l.received}/${l.sent}`, l.minMs, l.avgMs, l.maxMs])));
    for (const s of skipped) console.log(`skipped ${s.case} (${s.esp}): ${s.reason}`);
    console.log('\nRatios');
    console.log(formatTable(['ratio', 'value'], Object.values(ratios).map((r) => [r.description, r.value])));
  }
  return report;
}

/**
 * The latency targets as ratios of minimum round trips within one run
 * (a loaded machine's averages are dominated by scheduling outliers; the
 * minimum survives them): ikeclone over ESP in UDP against strongSwan with
 * AES-GCM-128 and against wireguard-go with ChaCha20-Poly1305, idle (20 ms
 * apart) and warm (2 ms apart), in service and for the first packets.
 * A ratio whose cases did not run is NaN (JSON null).
 */
export function latencyRatios(latency: readonly LatencyResult[]): TunnelReport['ratios'] {
  const min = (name: Case, esp: Cipher, phase: LatencyPhase, intervalMs: number) =>
    latency.find((l) => l.case === name && l.esp === esp && l.phase === phase && l.intervalMs === intervalMs && l.received > 0)?.minMs ?? Number.NaN;
  const pace = (intervalMs: number) => (intervalMs === PING_RUNS[0].intervalMs ? 'idle' : 'warm');
  const entry = (peer: 'strongswan' | 'wireguard-go', esp: Cipher, phase: LatencyPhase, intervalMs: number) => ({
    value: round(min('ikeclone-udp', esp, phase, intervalMs) / min(peer, esp, phase, intervalMs), 2),
    description: `ping min, ${pace(intervalMs)} tunnel (${intervalMs} ms apart), ${phase}: ikeclone (ESP in UDP) vs ${peer === 'strongswan' ? 'strongSwan kernel-libipsec' : 'wireguard-go'}, ${esp} on both`,
  });
  const [idle, warm] = PING_RUNS.map((p) => p.intervalMs) as [number, number];
  return {
    idlePingVsStrongswan: entry('strongswan', 'aes128gcm16', 'in-service', idle),
    warmPingVsStrongswan: entry('strongswan', 'aes128gcm16', 'in-service', warm),
    idlePingVsWireguardGo: entry('wireguard-go', 'chacha20poly1305', 'in-service', idle),
    warmPingVsWireguardGo: entry('wireguard-go', 'chacha20poly1305', 'in-service', warm),
    firstPacketsIdlePingVsStrongswan: entry('strongswan', 'aes128gcm16', 'first-packets', idle),
    firstPacketsIdlePingVsWireguardGo: entry('wireguard-go', 'chacha20poly1305', 'first-packets', idle),
  };
}
