// `ikeclone demo --netns` (root): the demo through real TUN devices. Two
// network namespaces joined by a veth pair, an ikeclone gateway (the CLI, as
// a process) in each with a TUN device for inner traffic, one IKE SA cloned
// once per data-plane worker (RFC 7791, architecture §5) so that every worker owns
// a Child SA; then ping both ways and a bounded iperf3 run between the inner
// addresses, through the tunnel, and both gateways' per-worker ESP counters.
//
// Layout (namespaces `ikcdemo-<pid>-<n>-initiator` / `-responder`):
//
//   initiator ns                                    responder ns
//   lo 10.254.50.1/24                               lo 10.254.100.1/24
//   ikc0 (TUN) -- route 10.254.100.0/24             ikc0 (TUN) -- route 10.254.50.0/24
//   veth0 10.254.1.1/24  <------ veth pair ------>  veth0 10.254.1.2/24
//
// Host footprint: the two namespaces (and the veth pair inside them), a
// temporary directory for the configs and control sockets, and the processes
// started here. Nothing else on the host is touched: addresses, routes and
// TUN devices live inside the namespaces and go with them.
//
// Ownership: every child process is tracked by pid and only those pids are
// ever signalled; the namespaces are deleted in a finally block. A first
// SIGINT/SIGTERM during the run aborts it (the running commands are stopped,
// the finally block cleans up); a second one removes everything at once and
// exits with 130.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { controlRequest } from './api/control-client.js';
import { compareSaViews, ikecloneVersion } from './demo.js';
import type { GatewayStatus } from './status.js';
import { tunUnavailable } from '../io/tun.js';
import { flowHash, newFlowTuple, parseFlow } from '../dataplane/packet.js';

/** Every namespace the netns demo creates is named `ikcdemo-<pid>-<n>-<role>`. */
export const NETNS_DEMO_PREFIX = 'ikcdemo-';
/** Outer addresses on the veth pair (initiator, responder). */
export const NETNS_DEMO_OUTER = { initiator: '10.254.1.1', responder: '10.254.1.2', prefixLen: 24 } as const;
/** Inner addresses on lo, and the subnets the Child SAs protect. */
export const NETNS_DEMO_INNER = {
  initiator: '10.254.50.1',
  responder: '10.254.100.1',
  initiatorNet: '10.254.50.0/24',
  responderNet: '10.254.100.0/24',
  prefixLen: 24,
} as const;
/** The TUN device in each namespace. */
export const NETNS_DEMO_TUN = 'ikc0';
const VETH = 'veth0';
const CONNECTION = 'demo';
const CHILD = 'net';
const IPERF_PORT = 5201;
/** Most IKE SAs in the family: the responder's default limit per peer (limits.ikeSasPerPeer). */
const MAX_CLONES = 16;
const PING_COUNT = 5;

export interface NetnsDemoOptions {
  /** Receives one human-readable line per step. */
  progress?: (line: string) => void;
  /** iperf3 duration in whole seconds, 1..600 (default 3). */
  seconds?: number;
  /** IKE SAs in the clone family (= data-plane workers on each side), 1..16; default: available cores, at most 16. */
  clones?: number;
  /**
   * ESP transport: udp (RFC 3948 on port 4500, the default, as in the loopback
   * demo) or auto (raw ESP, IP protocol 50, since there is no NAT between the namespaces).
   */
  esp?: 'auto' | 'udp';
  /** The gateways' log level (their logs are kept and quoted when a step fails); default warn. */
  logLevel?: string;
  /** The built CLI the gateways run (default: dist/control/cli.js of this package). */
  cliPath?: string;
  /** Bound on the IKE SA, its clones and their Child SAs reaching both data planes, ms (default 20 000). */
  timeoutMs?: number;
}

/** One side's share of the demo. */
export interface NetnsDemoNamespace {
  name: string;
  role: 'initiator' | 'responder';
  /** Address on the veth end (IKE and ESP). */
  outer: string;
  /** Address on lo (inner traffic through the tunnel). */
  inner: string;
  tun: string;
}

export interface NetnsDemoPing {
  from: string;
  to: string;
  sent: number;
  received: number;
  /** Average round-trip time, ms; null when nothing came back. */
  rttMs: number | null;
}

/** One data-plane worker's counters at the end of the run. */
export interface NetnsDemoWorker {
  index: number;
  /** Child SAs the worker owns. */
  sas: number;
  /** Packets it sealed (TUN -> ESP). */
  encapPackets: number;
  /** Packets it opened and verified (ESP -> TUN). */
  decapPackets: number;
  /** Packets it dropped: replay, ICV, malformed, sequence exhausted, no SA, ring full. */
  drops: number;
}

/** One IKE SA of the clone family as the initiator sees it, and where its Child SA lives on both ends. */
export interface NetnsDemoMember {
  familyIndex: number;
  spiI: string;
  spiR: string;
  /** The Child SA's SPIs at the initiator (in = the responder's out). */
  childSpiIn: string | null;
  childSpiOut: string | null;
  /** Owner workers of the Child SA at the initiator and at the responder. */
  worker: number | null;
  peerWorker: number | null;
}

/**
 * What `ikeclone demo --netns --json` prints. Field names are stable: add
 * fields, never rename them.
 *
 * - `demo`: always "ikeclone-netns"; `version`: ikeclone's package version.
 * - `namespaces`: the two namespaces (name, role, outer and inner address, TUN device).
 * - `esp`: the ESP transport both ends used: "raw" (IP protocol 50) or "udp" (RFC 3948).
 * - `establishMs`: from starting the initiator until every Child SA of the family was in both data planes.
 * - `ping.toResponder`, `ping.toInitiator`: echo requests between the inner addresses, through the tunnel.
 * - `iperf3`: one TCP run from the initiator's inner address to the responder's: `seconds`,
 *   `mbps` (received, Mbit/s), `sentMbps`, `retransmits`, `streams` (parallel TCP streams, spread over the family).
 * - `family`: the clone family: `target` IKE SAs wanted, `state` (complete, fallback, ...), `members`.
 * - `workers.initiator`, `workers.responder`: per-worker encap/decap packets and drops.
 * - `agree`: every member's IKE SPIs, proposal, Child SA SPIs and selectors match across both ends.
 * - `mismatches`: what differs when `agree` is false.
 * - `durationMs`: the whole demo, namespaces created to namespaces deleted.
 */
export interface NetnsDemoResult {
  demo: 'ikeclone-netns';
  version: string;
  namespaces: NetnsDemoNamespace[];
  esp: 'raw' | 'udp';
  establishMs: number;
  ping: { toResponder: NetnsDemoPing; toInitiator: NetnsDemoPing };
  iperf3: { seconds: number; mbps: number; sentMbps: number; retransmits: number; streams: number };
  family: { target: number; state: string; members: NetnsDemoMember[] };
  workers: { initiator: NetnsDemoWorker[]; responder: NetnsDemoWorker[] };
  agree: boolean;
  mismatches: string[];
  durationMs: number;
}

/** A prerequisite of the netns demo is missing; `missing` has one line per problem. */
export class NetnsDemoUnavailableError extends Error {
  constructor(readonly missing: string[]) {
    super(`ikeclone demo --netns cannot run here:\n  ${missing.join('\n  ')}`);
    this.name = 'NetnsDemoUnavailableError';
  }
}

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** The built CLI next to this module (dist/control/cli.js), or under the package root when run from the sources. */
export function defaultCliPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'cli.js');
  if (existsSync(sibling)) return sibling;
  let dir = here;
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'control', 'cli.js');
    dir = dirname(dir);
  }
  return sibling;
}

/**
 * What the netns demo needs and does not find: root, iproute2 (`ip`, `ss`),
 * ping, iperf3, /dev/net/tun, the TUN addon and the built CLI. Empty when
 * everything is there.
 */
export function netnsDemoMissing(cliPath = defaultCliPath()): string[] {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux: network namespaces and TUN devices are Linux only');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root: creating network namespaces needs uid 0 (run with sudo)');
  if (!onPath('ip')) missing.push('ip: not found (apt-get install iproute2)');
  if (!onPath('ss')) missing.push('ss: not found (apt-get install iproute2)');
  if (!onPath('ping')) missing.push('ping: not found (apt-get install iputils-ping)');
  if (!onPath('iperf3')) missing.push('iperf3: not found (apt-get install iperf3)');
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun: missing (modprobe tun)');
  else {
    const tun = tunUnavailable();
    if (tun) missing.push(`TUN addon: ${tun}`);
  }
  if (!existsSync(cliPath)) missing.push(`${cliPath}: missing (npm run build)`);
  return missing;
}

// ------------------------------------------------------------ child processes

interface Proc {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitCode(): number | null | undefined;
  /** stdout and stderr interleaved. */
  output(): string;
  stdout(): string;
  stderr(): string;
}

interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const MAX_OUTPUT = 256 * 1024;

/**
 * internal: one run of the demo: the namespaces and processes it created, and
 * whether it was interrupted. Everything it starts is recorded here first.
 */
class DemoRun {
  readonly namespaces: string[] = [];
  private readonly procs = new Map<number, Proc>();
  interrupted: NodeJS.Signals | null = null;
  /** Set once cleanup() runs: a signal then no longer stops its own commands. */
  private cleaning = false;

  /** Throw when the run was interrupted (checked between steps). */
  check(): void {
    if (this.interrupted) throw new Error(`interrupted by ${this.interrupted}`);
  }

  /** Start `cmd args`, recording its pid; stdout and stderr are kept (bounded). */
  start(cmd: string, args: string[]): Proc {
    this.check();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let all = '';
    const keep = (s: string, d: string) => (s.length + d.length > MAX_OUTPUT ? (s + d).slice(-MAX_OUTPUT) : s + d);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => ((out = keep(out, d)), (all = keep(all, d))));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => ((err = keep(err, d)), (all = keep(all, d))));
    let code: number | null | undefined;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('error', (e) => {
        err = keep(err, `${e.message}\n`);
        all = keep(all, `${e.message}\n`);
        if (child.pid === undefined) resolve({ code: (code = null), signal: null });
      });
      child.once('close', (c, signal) => {
        code = c;
        if (child.pid !== undefined) this.procs.delete(child.pid);
        resolve({ code: c, signal });
      });
    });
    const proc: Proc = { pid: child.pid ?? -1, child, exited, exitCode: () => code, output: () => all, stdout: () => out, stderr: () => err };
    if (child.pid !== undefined) this.procs.set(child.pid, proc);
    return proc;
  }

  /** Run `cmd args` to completion, bounded by `timeoutMs` (then SIGKILL by pid). Never throws on a non-zero exit. */
  async run(cmd: string, args: string[], timeoutMs = 10_000): Promise<CommandResult> {
    const p = this.start(cmd, args);
    const timer = setTimeout(() => signalPid(p.pid, 'SIGKILL'), timeoutMs);
    const { code } = await p.exited;
    clearTimeout(timer);
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  }

  /** Like run() but throws unless the command exits 0. */
  async runChecked(cmd: string, args: string[], timeoutMs = 10_000): Promise<CommandResult> {
    const r = await this.run(cmd, args, timeoutMs);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r;
  }

  /** `ip netns exec NS cmd args`: the command is exec'd, so the recorded pid is the command's own. */
  runIn(ns: string, cmd: string, args: string[], timeoutMs?: number): Promise<CommandResult> {
    return this.run('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
  }

  startIn(ns: string, cmd: string, args: string[]): Proc {
    return this.start('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /** Create a namespace; its name is recorded before `ip netns add` runs, so cleanup never misses it. */
  async addNamespace(name: string): Promise<void> {
    this.check();
    this.namespaces.push(name);
    await this.runChecked('ip', ['netns', 'add', name]);
  }

  /** SIGTERM, a grace period, then SIGKILL; only this pid. */
  async stop(p: Proc, graceMs = 5000): Promise<void> {
    if (p.exitCode() !== undefined) return;
    signalPid(p.pid, 'SIGTERM');
    const timer = setTimeout(() => signalPid(p.pid, 'SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
  }

  /** Interrupted: stop what is running so the current step ends; the finally block does the rest. */
  interrupt(signal: NodeJS.Signals): void {
    this.interrupted ??= signal;
    if (this.cleaning) return;
    for (const pid of this.procs.keys()) signalPid(pid, 'SIGTERM');
  }

  /** Everything still running, then every namespace: the finally block. */
  async cleanup(): Promise<string[]> {
    const errors: string[] = [];
    this.cleaning = true;
    await Promise.all([...this.procs.values()].map((p) => this.stop(p, 3000)));
    for (const name of this.namespaces.splice(0).reverse()) {
      const r = await this.runUnchecked('ip', ['netns', 'delete', name]);
      if (r.code !== 0 && !/No such file/.test(r.stderr)) errors.push(`ip netns delete ${name}: ${r.stderr.trim()}`);
    }
    return errors;
  }

  /** Second signal or process exit: kill our pids and delete our namespaces synchronously. */
  cleanupNow(): void {
    for (const pid of this.procs.keys()) signalPid(pid, 'SIGKILL');
    this.procs.clear();
    for (const name of this.namespaces.splice(0)) {
      try {
        execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore', timeout: 5000 });
      } catch {
        // already gone
      }
    }
  }

  /** run() that works after an interruption (cleanup must not refuse); check() runs synchronously inside run(). */
  private runUnchecked(cmd: string, args: string[]): Promise<CommandResult> {
    const saved = this.interrupted;
    this.interrupted = null;
    try {
      return this.run(cmd, args);
    } finally {
      this.interrupted = saved;
    }
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `probe` every `intervalMs` until it returns a value, bounded by `timeoutMs`. */
async function until<T>(run: DemoRun, what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const end = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    run.check();
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      if ((err as { fatal?: boolean }).fatal) throw err;
      last = err;
    }
    if (performance.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(intervalMs);
  }
}

function fatal(message: string): Error {
  return Object.assign(new Error(message), { fatal: true });
}

function ms(from: number): number {
  return Math.round((performance.now() - from) * 10) / 10;
}

// ------------------------------------------------------------------- gateways

function gatewayConfig(role: 'initiator' | 'responder', opts: { workers: number; esp: 'auto' | 'udp'; psk: string }): Record<string, unknown> {
  const me = NETNS_DEMO_OUTER[role];
  const peer = NETNS_DEMO_OUTER[role === 'initiator' ? 'responder' : 'initiator'];
  const [localNet, remoteNet] = role === 'initiator'
    ? [NETNS_DEMO_INNER.initiatorNet, NETNS_DEMO_INNER.responderNet]
    : [NETNS_DEMO_INNER.responderNet, NETNS_DEMO_INNER.initiatorNet];
  return {
    listen: { address: me, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    limits: { ikeSasPerPeer: MAX_CLONES },
    dataplane: { workers: opts.workers, tun: NETNS_DEMO_TUN, esp: opts.esp },
    connections: {
      [CONNECTION]: {
        local_addrs: [me],
        remote_addrs: [peer],
        ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: `${role}.netns.demo.ikeclone`, auth: 'psk' },
        remote: { id: `${role === 'initiator' ? 'responder' : 'initiator'}.netns.demo.ikeclone`, auth: 'psk' },
        psk: opts.psk,
        // The initiator clones its IKE SA once per worker, so every worker owns a Child SA (RFC 7791, architecture §5).
        ...(role === 'initiator' ? { start_action: 'start', clone: { per: 'worker', count: opts.workers } } : {}),
        children: { [CHILD]: { local_ts: [localNet], remote_ts: [remoteNet], esp: ['aes128gcm16'] } },
      },
    },
  };
}

interface RunningGateway {
  role: 'initiator' | 'responder';
  proc: Proc;
  socket: string;
  status(): Promise<GatewayStatus>;
  /** The tail of its log, for error messages. */
  logTail(): string;
}

async function startGateway(run: DemoRun, ns: string, role: 'initiator' | 'responder', dir: string, config: Record<string, unknown>, cliPath: string, logLevel: string): Promise<RunningGateway> {
  const file = join(dir, `${role}.yaml`);
  writeFileSync(file, stringify(config), { mode: 0o600 });
  const socket = join(dir, `${role}.sock`);
  const proc = run.startIn(ns, process.execPath, [cliPath, '--log-level', logLevel, 'gateway', '--config', file, '--socket', socket]);
  const logTail = () => proc.output().split('\n').slice(-30).join('\n');
  const status = () => controlRequest(socket, (c) => c.status({ timeoutMs: 5000 }), { connectTimeoutMs: 2000 });
  const gw: RunningGateway = { role, proc, socket, status, logTail };
  await until(run, `the ${role} gateway's control socket`, async () => {
    if (proc.exitCode() !== undefined) throw fatal(`the ${role} gateway exited (code ${proc.exitCode()}):\n${logTail()}`);
    if (!existsSync(socket)) return undefined;
    await status();
    return true;
  }, 15_000);
  return gw;
}

/** Children of every IKE SA, with their owner workers. */
function childrenPlaced(st: GatewayStatus): number | undefined {
  const children = st.ikeSas.flatMap((s) => s.children);
  if (children.length === 0 || !children.every((c) => typeof c.worker === 'number')) return undefined;
  return children.length;
}

function workerRows(st: GatewayStatus): NetnsDemoWorker[] {
  return (st.dataplane?.workers ?? []).map((w) => ({
    index: w.index,
    sas: w.sas,
    encapPackets: w.encapPackets,
    decapPackets: w.decapPackets,
    drops: w.drops.replay + w.drops.icv + w.drops.malformed + w.drops.seqExhausted + w.drops.noSa + w.drops.queueFull,
  }));
}

// -------------------------------------------------------------------- traffic

function ipv4Bytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

/** internal: the SPD's family member index for a TCP packet (dataplane/spd.ts: flow hash mod family size). */
function memberFor(src: string, srcPort: number, dst: string, dstPort: number, n: number): number {
  const p = new Uint8Array(40);
  p[0] = 0x45;
  p[3] = 40;
  p[9] = 6;
  p.set(ipv4Bytes(src), 12);
  p.set(ipv4Bytes(dst), 16);
  p[20] = srcPort >> 8;
  p[21] = srcPort & 0xff;
  p[22] = dstPort >> 8;
  p[23] = dstPort & 0xff;
  const f = newFlowTuple();
  if (!parseFlow(p, f)) return 0;
  return flowHash(p, f) % n;
}

/**
 * Client ports for iperf3's parallel streams (`--cport base` numbers them
 * base, base+1, ...) such that the flow hash puts at least one stream on
 * every member of the clone family, in both directions: every worker of both
 * gateways then seals and opens packets. Streams: n when 1, else 2n..4n.
 */
export function iperfStreamPorts(n: number): { base: number; streams: number } {
  if (!Number.isInteger(n) || n < 1 || n > MAX_CLONES) throw new RangeError(`iperfStreamPorts: n must be an integer from 1 to ${MAX_CLONES}`);
  if (n === 1) return { base: 0, streams: 1 };
  const [a, b] = [NETNS_DEMO_INNER.initiator, NETNS_DEMO_INNER.responder];
  for (let streams = 2 * n; streams <= 4 * n; streams += n) {
    for (let base = 41000; base < 41000 + 4000; base++) {
      const out = new Set<number>();
      const back = new Set<number>();
      for (let i = 0; i < streams; i++) {
        out.add(memberFor(a, base + i, b, IPERF_PORT, n));
        back.add(memberFor(b, IPERF_PORT, a, base + i, n));
      }
      if (out.size === n && back.size === n) return { base, streams };
    }
  }
  return { base: 0, streams: 4 * n };
}

async function pingOnce(run: DemoRun, ns: string, from: string, to: string): Promise<NetnsDemoPing> {
  const r = await run.runIn(ns, 'ping', ['-n', '-q', '-c', String(PING_COUNT), '-i', '0.2', '-W', '2', '-I', from, to], 15_000);
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
  const rtt = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(r.stdout);
  return {
    from,
    to,
    sent: counts ? Number(counts[1]) : 0,
    received: counts ? Number(counts[2]) : 0,
    rttMs: rtt ? Number(rtt[1]) : null,
  };
}

interface IperfJson {
  start?: { connected?: unknown[] };
  end?: { sum_sent?: { bits_per_second?: number; retransmits?: number }; sum_received?: { bits_per_second?: number } };
  error?: string;
}

async function iperf(run: DemoRun, client: string, server: string, seconds: number, clones: number): Promise<NetnsDemoResult['iperf3']> {
  const srv = run.startIn(server, 'iperf3', ['-s', '-1', '-B', NETNS_DEMO_INNER.responder, '-p', String(IPERF_PORT)]);
  try {
    await until(run, 'the iperf3 server', async () => {
      if (srv.exitCode() !== undefined) throw fatal(`iperf3 -s exited: ${srv.output().trim()}`);
      const r = await run.runIn(server, 'ss', ['-ltnH']);
      return r.stdout.includes(`${NETNS_DEMO_INNER.responder}:${IPERF_PORT}`) ? true : undefined;
    }, 5000, 50);
    const { base, streams } = iperfStreamPorts(clones);
    const args = ['-c', NETNS_DEMO_INNER.responder, '-p', String(IPERF_PORT), '-B', NETNS_DEMO_INNER.initiator, '-t', String(seconds), '-J', '-P', String(streams)];
    if (base > 0) args.push('--cport', String(base));
    const r = await run.runIn(client, 'iperf3', args, seconds * 1000 + 20_000);
    run.check();
    let j: IperfJson;
    try {
      j = JSON.parse(r.stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 -c failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-500)}`);
    }
    if (r.code !== 0 || j.error) throw new Error(`iperf3 -c failed (exit ${r.code}): ${j.error ?? r.stderr.trim().slice(-500)}`);
    const mbit = (bps: number | undefined) => Math.round((bps ?? 0) / 1e5) / 10;
    return {
      seconds,
      mbps: mbit(j.end?.sum_received?.bits_per_second),
      sentMbps: mbit(j.end?.sum_sent?.bits_per_second),
      retransmits: j.end?.sum_sent?.retransmits ?? 0,
      streams: j.start?.connected?.length ?? streams,
    };
  } finally {
    await run.stop(srv, 1000);
  }
}

// ------------------------------------------------------------------------ run

/**
 * Run the netns demo: check the prerequisites (NetnsDemoUnavailableError
 * names what is missing), build the namespaces, start both gateways, wait for
 * the clone family and its Child SAs in both data planes, route the inner
 * subnets through the TUN devices, ping both ways, run iperf3, read both
 * gateways' status, stop them and delete the namespaces (always). Rejects
 * when a step fails or exceeds its bound, after cleaning up.
 */
export async function runNetnsDemo(opts: NetnsDemoOptions = {}): Promise<NetnsDemoResult> {
  if (opts === null || typeof opts !== 'object') throw new TypeError('runNetnsDemo: options must be an object');
  const seconds = opts.seconds ?? 3;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) throw new RangeError('runNetnsDemo: seconds must be an integer from 1 to 600');
  const clones = opts.clones ?? Math.min(MAX_CLONES, Math.max(1, availableParallelism()));
  if (!Number.isInteger(clones) || clones < 1 || clones > MAX_CLONES) throw new RangeError(`runNetnsDemo: clones must be an integer from 1 to ${MAX_CLONES}`);
  const esp = opts.esp ?? 'udp';
  if (esp !== 'auto' && esp !== 'udp') throw new RangeError('runNetnsDemo: esp must be auto or udp');
  const timeoutMs = opts.timeoutMs ?? 20_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('runNetnsDemo: timeoutMs must be a positive number');
  const cliPath = opts.cliPath ?? defaultCliPath();
  const logLevel = opts.logLevel ?? 'warn';
  const progress = opts.progress ?? (() => {});
  const missing = netnsDemoMissing(cliPath);
  if (missing.length > 0) throw new NetnsDemoUnavailableError(missing);

  const run = new DemoRun();
  const onSignal = (signal: NodeJS.Signals) => {
    if (run.interrupted) {
      // Second signal: no more waiting.
      run.cleanupNow();
      process.exit(130);
    }
    progress(`${signal}: stopping and deleting the namespaces`);
    run.interrupt(signal);
  };
  const onExit = () => run.cleanupNow();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
  const t0 = performance.now();
  // Named after the process too: the gateways' command lines (--config) show whose they are.
  const dir = mkdtempSync(join(tmpdir(), `${NETNS_DEMO_PREFIX}${process.pid}-`));
  let result: NetnsDemoResult;
  let cleanupErrors: string[] = [];
  try {
    result = await demo(run, { seconds, clones, esp, timeoutMs, cliPath, logLevel, progress, dir });
  } finally {
    progress('stopping the gateways and deleting the namespaces');
    cleanupErrors = await run.cleanup();
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    if (cleanupErrors.length > 0) progress(`cleaning up: ${cleanupErrors.join('; ')}`);
  }
  // The run worked but left a namespace behind: that is a failure too.
  if (cleanupErrors.length > 0) throw new Error(`cleaning up: ${cleanupErrors.join('; ')}`);
  result.durationMs = ms(t0);
  return result;
}

interface DemoParams {
  seconds: number;
  clones: number;
  esp: 'auto' | 'udp';
  timeoutMs: number;
  cliPath: string;
  logLevel: string;
  progress: (line: string) => void;
  dir: string;
}

let demoCounter = 0;

async function demo(run: DemoRun, p: DemoParams): Promise<NetnsDemoResult> {
  const { progress } = p;
  const stem = `${NETNS_DEMO_PREFIX}${process.pid}-${++demoCounter}`;
  const ns = { initiator: `${stem}-initiator`, responder: `${stem}-responder` };
  const outer = NETNS_DEMO_OUTER;
  const inner = NETNS_DEMO_INNER;

  progress(`creating namespaces ${ns.initiator} and ${ns.responder}: veth ${outer.initiator} <-> ${outer.responder}, inner ${inner.initiator} and ${inner.responder} on lo`);
  for (const role of ['initiator', 'responder'] as const) {
    await run.addNamespace(ns[role]);
    // Router and address events of IPv6 would start MOBIKE path checks: the demo is IPv4 only.
    await run.runIn(ns[role], 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1']);
    await run.runChecked('ip', ['-n', ns[role], 'link', 'set', 'lo', 'up']);
  }
  await run.runChecked('ip', ['link', 'add', 'name', VETH, 'netns', ns.initiator, 'type', 'veth', 'peer', 'name', VETH, 'netns', ns.responder]);
  for (const role of ['initiator', 'responder'] as const) {
    await run.runChecked('ip', ['-n', ns[role], 'addr', 'add', `${outer[role]}/${outer.prefixLen}`, 'dev', VETH]);
    await run.runChecked('ip', ['-n', ns[role], 'link', 'set', VETH, 'up']);
    await run.runChecked('ip', ['-n', ns[role], 'addr', 'add', `${inner[role]}/${inner.prefixLen}`, 'dev', 'lo']);
  }

  const psk = `0x${randomBytes(32).toString('hex')}`;
  const cfg = { workers: p.clones, esp: p.esp, psk };
  progress(`starting the responder gateway in ${ns.responder} (${p.clones} worker${p.clones === 1 ? '' : 's'}, TUN ${NETNS_DEMO_TUN})`);
  const responder = await startGateway(run, ns.responder, 'responder', p.dir, gatewayConfig('responder', cfg), p.cliPath, p.logLevel);
  progress(`starting the initiator gateway in ${ns.initiator}: IKE_SA_INIT + IKE_AUTH, then ${p.clones - 1} clone${p.clones === 2 ? '' : 's'} (RFC 7791), one Child SA per worker`);
  const tUp = performance.now();
  const initiator = await startGateway(run, ns.initiator, 'initiator', p.dir, gatewayConfig('initiator', cfg), p.cliPath, p.logLevel);
  const gone = (gw: RunningGateway) => {
    if (gw.proc.exitCode() !== undefined) throw fatal(`the ${gw.role} gateway exited (code ${gw.proc.exitCode()}):\n${gw.logTail()}`);
  };

  // The family is complete (or settled short of its target) and every Child SA is in a worker on both ends.
  const settled = await until(run, 'the IKE SAs and Child SAs in both data planes', async () => {
    gone(initiator);
    gone(responder);
    const [a, b] = [await initiator.status(), await responder.status()];
    const fam = a.families[0];
    if (!fam || fam.state === 'growing' || fam.members.length < 1) return undefined;
    const n = childrenPlaced(a);
    if (n === undefined || n < fam.members.length || childrenPlaced(b) !== n) return undefined;
    return { a, b, fam };
  }, p.timeoutMs);
  const establishMs = ms(tUp);
  const { fam } = settled;
  progress(`clone family ${fam.state}: ${fam.members.length} of ${fam.target} IKE SAs, each Child SA in its own worker on both ends, in ${establishMs.toFixed(0)} ms`);

  for (const role of ['initiator', 'responder'] as const) {
    await until(run, `TUN device ${NETNS_DEMO_TUN} in ${ns[role]}`, async () => ((await run.runIn(ns[role], 'ip', ['link', 'show', NETNS_DEMO_TUN])).code === 0 ? true : undefined), 5000, 50);
  }
  await run.runChecked('ip', ['-n', ns.initiator, 'route', 'add', inner.responderNet, 'dev', NETNS_DEMO_TUN, 'src', inner.initiator]);
  await run.runChecked('ip', ['-n', ns.responder, 'route', 'add', inner.initiatorNet, 'dev', NETNS_DEMO_TUN, 'src', inner.responder]);
  progress(`routes: ${inner.responderNet} and ${inner.initiatorNet} via ${NETNS_DEMO_TUN} on either side`);

  const toResponder = await pingOnce(run, ns.initiator, inner.initiator, inner.responder);
  run.check();
  progress(`ping ${inner.initiator} -> ${inner.responder}: ${toResponder.received}/${toResponder.sent} answered${toResponder.rttMs !== null ? `, avg ${toResponder.rttMs} ms` : ''}`);
  const toInitiator = await pingOnce(run, ns.responder, inner.responder, inner.initiator);
  run.check();
  progress(`ping ${inner.responder} -> ${inner.initiator}: ${toInitiator.received}/${toInitiator.sent} answered${toInitiator.rttMs !== null ? `, avg ${toInitiator.rttMs} ms` : ''}`);

  progress(`iperf3 for ${p.seconds} s from ${inner.initiator} to ${inner.responder}, through the tunnel`);
  const perf = await iperf(run, ns.initiator, ns.responder, p.seconds, p.clones);
  progress(`iperf3: ${perf.mbps} Mbit/s received over ${perf.streams} TCP stream${perf.streams === 1 ? '' : 's'}, ${perf.retransmits} retransmits`);

  gone(initiator);
  gone(responder);
  const [a, b] = [await initiator.status(), await responder.status()];
  const members = a.ikeSas.filter((s) => s.sessionId === fam.sessionId).sort((x, y) => x.familyIndex - y.familyIndex);
  const mismatches: string[] = [];
  const rows: NetnsDemoMember[] = members.map((m) => {
    const peer = b.ikeSas.find((s) => s.spiI === m.spiI && s.spiR === m.spiR);
    if (!peer) mismatches.push(`IKE SA ${m.spiI}_i ${m.spiR}_r: unknown to the responder`);
    else mismatches.push(...compareSaViews(m, peer).map((d) => `family member ${m.familyIndex}: ${d}`));
    const c = m.children[0];
    const pc = peer?.children.find((x) => x.spiIn === c?.spiOut);
    return {
      familyIndex: m.familyIndex,
      spiI: m.spiI,
      spiR: m.spiR,
      childSpiIn: c?.spiIn ?? null,
      childSpiOut: c?.spiOut ?? null,
      worker: c?.worker ?? null,
      peerWorker: pc?.worker ?? null,
    };
  });
  if (members.length === 0) mismatches.push('the initiator has no IKE SA left');
  const rawIn = (st: GatewayStatus) => st.dataplane?.rawEsp?.packetsIn ?? 0;
  const espMode = rawIn(a) > 0 && rawIn(b) > 0 ? 'raw' : 'udp';
  const result: NetnsDemoResult = {
    demo: 'ikeclone-netns',
    version: ikecloneVersion(),
    namespaces: (['initiator', 'responder'] as const).map((role) => ({ name: ns[role], role, outer: outer[role], inner: inner[role], tun: NETNS_DEMO_TUN })),
    esp: espMode,
    establishMs,
    ping: { toResponder, toInitiator },
    iperf3: perf,
    family: { target: fam.target, state: fam.state, members: rows },
    workers: { initiator: workerRows(a), responder: workerRows(b) },
    agree: mismatches.length === 0,
    mismatches,
    durationMs: 0,
  };
  progress(result.agree ? `both ends agree on the SPIs of all ${members.length} IKE SAs and their Child SAs` : `the ends disagree: ${mismatches.join('; ')}`);
  // Stop the initiator first: it deletes the SAs (INFORMATIONAL) while the responder still listens.
  await run.stop(initiator.proc);
  await run.stop(responder.proc);
  return result;
}

