// IKE responder rate (`npm run bench -- ike-load --json`, root): one load
// generator, strongSwan's load-tester plugin in a charon of its own
// (scripts/build-load-tester.sh builds it from Debian's strongswan source
// package), drives in turn an ikeclone responder (the built CLI) and a charon
// responder, each alone in a network namespace joined to the generator's by a
// veth pair, with the same proposals and limits raised out of the way:
//   psk     PSK authentication, AES-GCM-128 / PRF-HMAC-SHA256 / x25519
//   ecdsa   ECDSA P-256 certificates both ways (the generator signs one per
//           initiator with the test CA), the same suite
// The generator runs `initiators` threads of `iterations` IKE SAs each, every
// IKE SA (with its Child SA) deleted once established, with no kernel SAs of
// its own. Measured at the responder's interface (dumpcap, read back with
// tshark): IKE SAs established per second (IKE_AUTH responses over the span
// of the run), handshake latency under that load (first IKE_SA_INIT request
// to IKE_AUTH response of each initiator SPI: p50, p99); and from /proc, the
// responder's CPU time per IKE SA. The ratio ikeclone / charon is taken
// within one run.
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { formatTable, round, type SuiteOptions } from './common.js';
import { Testbed, repoRoot, statusOf, until } from './tunnel.js';

const CHARON = '/usr/lib/ipsec/charon';
const LOAD_TESTER = '/usr/lib/ipsec/plugins/libstrongswan-load-tester.so';
const GEN = '10.250.1.1';
const RESP = '10.250.1.2';
const PSK = 'ike-load-benchmark-psk-0123456789abcdef';
const SUITE = 'aes128gcm16-prfsha256-x25519';
const ESP = 'aes128gcm16';

type Responder = 'ikeclone' | 'charon';
type Auth = 'psk' | 'ecdsa';

export interface IkeLoadResult {
  responder: Responder;
  auth: Auth;
  /** IKE SAs the generator started, and IKE_AUTH responses seen. */
  attempted: number;
  established: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** The responder process's user + system CPU time per IKE SA established. */
  cpuMsPerSa: number;
}

export interface IkeLoadReport {
  suite: 'ike-load';
  node: string;
  generator: { initiators: number; iterations: number; plugin: string };
  results: IkeLoadResult[];
  skipped: Array<{ responder: Responder | 'all'; auth: Auth | 'all'; reason: string }>;
  ratios: Record<string, { value: number; description: string }>;
}

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, env: env ?? process.env, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0 || r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? ''}${r.stderr ?? ''}`.trim());
  return r.stdout ?? '';
}

/** CPU time (user + system) of a process so far, ms (/proc/PID/stat, clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** An ECDSA P-256 CA and the responder's certificate (strongSwan's pki). */
function makePki(dir: string): void {
  const p = (f: string) => join(dir, f);
  writeFileSync(p('ca.key'), sh('pki', ['--gen', '--type', 'ecdsa', '--size', '256', '--outform', 'pem']));
  writeFileSync(p('ca.pem'), sh('pki', ['--self', '--ca', '--in', p('ca.key'), '--type', 'ecdsa', '--dn', 'CN=ike-load CA', '--digest', 'sha256', '--outform', 'pem']));
  writeFileSync(p('resp.key'), sh('pki', ['--gen', '--type', 'ecdsa', '--size', '256', '--outform', 'pem']));
  const pub = sh('pki', ['--pub', '--in', p('resp.key'), '--type', 'ecdsa', '--outform', 'pem']);
  writeFileSync(p('resp.pub'), pub);
  writeFileSync(p('resp.pem'), sh('pki', ['--issue', '--in', p('resp.pub'), '--type', 'pub', '--cacert', p('ca.pem'), '--cakey', p('ca.key'),
    '--dn', 'CN=responder.load.test', '--san', 'responder.load.test', '--digest', 'sha256', '--outform', 'pem']));
}

function ikecloneConfig(dir: string, auth: Auth): string {
  const creds = auth === 'psk'
    ? { local: { id: 'responder.load.test', auth: 'psk' }, remote: { auth: 'psk' }, psk: PSK }
    : { local: { id: 'responder.load.test', auth: 'pubkey', key: join(dir, 'resp.key'), cert: join(dir, 'resp.pem') },
      remote: { auth: 'pubkey', cacerts: [join(dir, 'ca.pem')], revocation: 'relaxed' }, send_cert: 'always' };
  return JSON.stringify({
    log: { level: 'warn' },
    listen: { address: RESP, port: 500, natPort: 4500 },
    // Every initiator comes from one address: the per-source and per-peer limits are raised as
    // charon's block_threshold and cookie_threshold are.
    limits: { halfOpenCookieThreshold: 100_000, halfOpenMax: 100_000, halfOpenPerSource: 100_000, childSasPerPeer: 100_000, ikeSasPerPeer: 100_000 },
    dataplane: { workers: 1, esp: 'udp' },
    connections: {
      load: { local_addrs: [RESP], ike: [SUITE], mobike: false, ...creds, children: { net: { esp: [ESP] } } },
    },
  });
}

function charonResponderConfig(dir: string, auth: Auth): { conf: string; swanctl: string; vici: string } {
  const vici = join(dir, 'resp.vici');
  const conf = join(dir, 'resp-strongswan.conf');
  const swanctl = join(dir, 'resp-swanctl.conf');
  writeFileSync(conf, `charon {
  port = 500
  port_nat_t = 4500
  install_routes = no
  cookie_threshold = 100000
  block_threshold = 100000
  init_limit_half_open = 0
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey curve25519 kernel-netlink socket-default vici
  filelog { main { path = ${join(dir, 'resp-charon.log')}
    default = ${process.env.IKE_LOAD_CHARON_LOG ?? 0} } }
  syslog { }
  plugins { vici { socket = unix://${vici} } }
}
`);
  const authBlock = auth === 'psk'
    ? `local { auth = psk
      id = responder.load.test }
    remote { auth = psk }`
    : `local { auth = pubkey
      certs = ${join(dir, 'resp.pem')}
      id = responder.load.test }
    remote { auth = pubkey
      cacerts = ${join(dir, 'ca.pem')} }`;
  writeFileSync(swanctl, `connections {
  load {
    version = 2
    local_addrs = ${RESP}
    proposals = ${SUITE}
    mobike = no
    send_cert = always
    ${authBlock}
    children { net { esp_proposals = ${ESP} } }
  }
}
secrets {
  ike-load { secret = "${PSK}" }
}
`);
  // swanctl --file loads private keys from the directories beside that file (ecdsa/ for ECDSA).
  if (auth === 'ecdsa') {
    mkdirSync(join(dir, 'ecdsa'), { recursive: true });
    copyFileSync(join(dir, 'resp.key'), join(dir, 'ecdsa', 'resp.key'));
  }
  return { conf, swanctl, vici };
}

function generatorConfig(dir: string, auth: Auth, initiators: number, iterations: number): string {
  const conf = join(dir, `gen-${auth}.conf`);
  const pubkey = auth === 'ecdsa'
    ? `issuer_cert = ${join(dir, 'ca.pem')}
      issuer_key = ${join(dir, 'ca.key')}
      digest = sha256`
    : '';
  writeFileSync(conf, `charon {
  port = 500
  port_nat_t = 4500
  install_routes = no
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 pubkey curve25519 kernel-netlink socket-default load-tester
  filelog { main { path = ${join(dir, `gen-${auth}.log`)}
    default = 1 } }
  syslog { }
  plugins {
    load-tester {
      enable = yes
      initiators = ${initiators}
      iterations = ${iterations}
      delay = 0
      version = 2
      initiator = ${GEN}
      responder = ${RESP}
      proposal = ${SUITE}
      esp = ${ESP}
      initiator_auth = ${auth === 'psk' ? 'psk' : 'pubkey'}
      responder_auth = ${auth === 'psk' ? 'psk' : 'pubkey'}
      preshared_key = ${PSK}
      initiator_id = c%d-r%d.load.test
      responder_id = responder.load.test
      fake_kernel = yes
      delete_after_established = yes
      shutdown_when_complete = yes
      ${pubkey}
    }
  }
}
`);
  return conf;
}

/**
 * charon in `ns` with its own /run (its pid file path is compiled in) and its
 * own session: the load-tester ends its charon with SIGTERM to the whole
 * process group (shutdown_when_complete). The pid is charon's own.
 */
function startCharon(bed: Testbed, ns: string, conf: string, name: string) {
  const runDir = join(bed.dir, `${name}-run`);
  sh('mkdir', ['-p', runDir]);
  return bed.spawn(ns, 'setsid', ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /run && exec "$1"', runDir, CHARON],
    { ...process.env, STRONGSWAN_CONF: conf });
}

interface Handshake { start: number; end?: number }

/** IKE_SA_INIT requests and IKE_AUTH responses per initiator SPI, from the capture. */
function handshakes(pcap: string): Map<string, Handshake> {
  const out = sh('tshark', ['-r', pcap, '-T', 'fields', '-E', 'separator=,', '-e', 'frame.time_epoch', '-e', 'isakmp.ispi', '-e', 'isakmp.exchangetype', '-e', 'isakmp.flags']);
  const m = new Map<string, Handshake>();
  for (const line of out.split('\n')) {
    const [t, spi, ex, flags] = line.split(',');
    if (!t || !spi || !ex) continue;
    const at = Number(t) * 1000;
    const response = (Number(flags) & 0x20) !== 0;
    if (ex === '34' && !response && !m.has(spi)) m.set(spi, { start: at });
    else if (ex === '35' && response) {
      const h = m.get(spi);
      if (h && h.end === undefined) h.end = at;
    }
  }
  return m;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runCase(responder: Responder, auth: Auth, initiators: number, iterations: number, progress: (l: string) => void): Promise<IkeLoadResult> {
  const bed = new Testbed();
  try {
    await bed.create();
    if (auth === 'ecdsa') makePki(bed.dir);
    // The responder in the right namespace.
    let pid: number | undefined;
    if (responder === 'ikeclone') {
      const file = join(bed.dir, 'ikeclone.yaml');
      writeFileSync(file, ikecloneConfig(bed.dir, auth));
      const socket = join(bed.dir, 'ikeclone.sock');
      const log = openSync(join(bed.dir, 'resp-ikeclone.log'), 'a');
      // IKE_LOAD_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the responder.
      const nodeArgs = process.env.IKE_LOAD_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];
      pid = bed.spawn(bed.right, process.execPath, [...nodeArgs, join(repoRoot(), 'dist', 'control', 'cli', 'main.js'), 'gateway', '--config', file, '--socket', socket], undefined, log).pid;
      closeSync(log);
      await until('ikeclone responder', async () => (await statusOf(socket)) !== undefined);
    } else {
      const cfg = charonResponderConfig(bed.dir, auth);
      pid = startCharon(bed, bed.right, cfg.conf, 'resp').pid;
      const env = { ...process.env, STRONGSWAN_CONF: cfg.conf };
      await until('charon responder VICI', () => spawnSync('swanctl', ['--stats', '--uri', `unix://${cfg.vici}`], { env, timeout: 5000 }).status === 0);
      writeFileSync(join(bed.dir, 'resp-swanctl.log'), sh('swanctl', ['--load-all', '--noprompt', '--file', cfg.swanctl, '--uri', `unix://${cfg.vici}`], env));
    }
    const pcap = join(bed.dir, 'resp.pcapng');
    bed.spawn(bed.right, 'dumpcap', ['-q', '-i', 'eth0', '-f', 'udp port 500 or udp port 4500', '-w', pcap]);
    await until('dumpcap', () => existsSync(pcap), 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const cpuBefore = cpuMs(pid);
    progress(`ike-load: ${responder} (${auth}): ${initiators} x ${iterations} IKE SAs`);
    const gen = startCharon(bed, bed.left, generatorConfig(bed.dir, auth, initiators, iterations), 'gen');
    const bound = 60_000 + initiators * iterations * 100;
    try {
      await until('the load generator to finish', () => gen.exitCode !== null || gen.signalCode !== null, bound);
    } catch (e) {
      const log = (f: string) => (existsSync(join(bed.dir, f)) ? readFileSync(join(bed.dir, f), 'utf8').split('\n').slice(-25).join('\n') : '');
      throw new Error(`${(e as Error).message}\n--- generator log ---\n${log(`gen-${auth}.log`)}\n--- responder log ---\n${log('resp-charon.log')}${log('resp-ikeclone.log')}${log('resp-swanctl.log')}`);
    }
    // The last Deletes are answered, the capture is flushed.
    await new Promise((r) => setTimeout(r, 1000));
    const cpuAfter = cpuMs(pid);
    await bed.stopAll();
    const hs = [...handshakes(pcap).values()];
    const done = hs.filter((h): h is Required<Handshake> => h.end !== undefined);
    const span = done.length > 0 ? (Math.max(...done.map((h) => h.end)) - Math.min(...hs.map((h) => h.start))) / 1000 : Number.NaN;
    const lat = done.map((h) => h.end - h.start).sort((a, b) => a - b);
    return {
      responder, auth, attempted: initiators * iterations, established: done.length, seconds: round(span, 2),
      perSecond: round(done.length / span, 1),
      latencyMs: { p50: round(percentile(lat, 50), 1), p99: round(percentile(lat, 99), 1), max: round(lat.at(-1) ?? Number.NaN, 1) },
      cpuMsPerSa: round((cpuAfter - cpuBefore) / Math.max(1, done.length), 2),
    };
  } finally {
    await bed.destroy();
  }
}

/** Run the suite; prints a table (or JSON with opts.json). */
export async function runIkeLoadBench(opts: SuiteOptions): Promise<IkeLoadReport> {
  if (process.getuid?.() !== 0) throw new Error('the ike-load benchmark needs root (network namespaces)');
  const progress = (l: string): void => void process.stderr.write(`${l}\n`);
  const initiators = 4;
  const iterations = Math.max(25, Math.round(100 * opts.maxTime / 0.25));
  const skipped: IkeLoadReport['skipped'] = [];
  const results: IkeLoadResult[] = [];
  const missing = [CHARON, LOAD_TESTER].find((f) => !existsSync(f));
  const tools = ['dumpcap', 'tshark', 'pki', 'swanctl', 'unshare'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing) skipped.push({ responder: 'all', auth: 'all', reason: `${missing} is missing (scripts/build-load-tester.sh builds and installs the load-tester plugin)` });
  else if (tools.length > 0) skipped.push({ responder: 'all', auth: 'all', reason: `missing: ${tools.join(', ')} (apt-get install tshark strongswan-pki strongswan-swanctl util-linux)` });
  else {
    // IKE_LOAD_CASES=charon:ecdsa,... runs only those (looking into one case).
    const only = process.env.IKE_LOAD_CASES?.split(',');
    for (const auth of ['psk', 'ecdsa'] as const) {
      for (const responder of ['ikeclone', 'charon'] as const) {
        if (only && !only.includes(`${responder}:${auth}`)) continue;
        results.push(await runCase(responder, auth, initiators, iterations, progress));
      }
    }
  }
  const ratio = (auth: Auth) => {
    const i = results.find((r) => r.responder === 'ikeclone' && r.auth === auth);
    const c = results.find((r) => r.responder === 'charon' && r.auth === auth);
    return { value: i && c ? round(i.perSecond / c.perSecond, 2) : Number.NaN, description: `IKE SAs established per second, ikeclone / charon responder, ${auth}` };
  };
  const report: IkeLoadReport = {
    suite: 'ike-load', node: process.version, generator: { initiators, iterations, plugin: LOAD_TESTER },
    results, skipped, ratios: { psk: ratio('psk'), ecdsa: ratio('ecdsa') },
  };
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else {
    console.log(`IKE responder rate: strongSwan load-tester, ${initiators} initiators x ${iterations} IKE SAs, ${SUITE}\n`);
    console.log(formatTable(['responder', 'auth', 'established', 'IKE SA/s', 'p50 ms', 'p99 ms', 'CPU ms/SA'],
      results.map((r) => [r.responder, r.auth, `${r.established}/${r.attempted}`, r.perSecond, r.latencyMs.p50, r.latencyMs.p99, r.cpuMsPerSa])));
    for (const s of skipped) console.log(`skipped ${s.responder} (${s.auth}): ${s.reason}`);
    console.log('\nRatios');
    console.log(formatTable(['ratio', 'value'], Object.values(report.ratios).map((r) => [r.description, r.value])));
  }
  return report;
}
