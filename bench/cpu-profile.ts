// CPU profile of the tunnel benchmark (`npm run bench -- cpu-profile --json`,
// root only): where the CPU time of a single-stream iperf3 through the tunnel
// goes, per transferred GB, for
//   ikeclone       AES-GCM-128 and ChaCha20-Poly1305 (ESP in UDP, the
//                  default data plane: workers read their own socket and TUN
//                  queue)
//   strongswan     kernel-libipsec, AES-GCM-128
//   wireguard-go   ChaCha20-Poly1305
// built with the tunnel benchmark's own set-up (bench/tunnel.ts: Testbed,
// ikeclonePair, strongswanPair, wireguardPair). One direction (left -> right:
// the left gateway seals, the right one opens), --max-time x 4 seconds
// (at least 4). While iperf3 runs, /proc is sampled every POLL_MS: user and
// system CPU of every process involved (both gateways, iperf3 client and
// server) and of each of their threads (bench/proc-stat.ts), and the
// machine's /proc/stat (softirq, idle). ikeclone's threads are named:
// the main thread is the control plane and the I/O thread; its data-plane
// workers are the newest threads of the process (piscina starts one thread per
// worker after the gateway has loaded, status says how many); the rest are
// Node's own (V8 platform, libuv pool). The machine is shared: its busy share
// includes everybody else's load, so the per-process figures are the ones to
// compare, within one run.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tunUnavailable } from '../io/tun.js';
import { formatTable, round, type SuiteOptions } from './common.js';
import { PERF_MAP_FLAG, perfUsable, recordThread, removePerfMaps, reportThread, type PerfSplit } from './perf-split.js';
import { machineDelta, readMachine, readProcess, readThreads, taskDelta, type MachineTimes, type TaskTimes } from './proc-stat.js';
import { CHARON, INNER, Testbed, ikeclonePair, onPath, repoRoot, statusOf, strongswanPair, until, wireguardPair, withTestbed } from './tunnel.js';
import { within } from '../test/support/proc.js';

type Cipher = 'aes128gcm16' | 'chacha20poly1305';
type CaseName = 'ikeclone' | 'strongswan' | 'wireguard-go';

/** How often /proc is sampled while iperf3 runs. */
const POLL_MS = 100;
/** Bytes of one ESP-sized packet, for the per-packet figure. */
const PACKET_BYTES = 1400;

export interface ThreadProfile {
  tid: number;
  /** ikeclone: 'main (control, I/O)', 'worker N' or 'node (V8, libuv)'; others: the thread's comm. */
  name: string;
  user: number;
  system: number;
}

export interface ProcessProfile {
  role: 'left gateway' | 'right gateway' | 'iperf3 client' | 'iperf3 server';
  comm: string;
  pid: number;
  /** CPU seconds during the measured window. */
  user: number;
  system: number;
  /** CPU seconds per GB of iperf3 payload received. */
  perGb: { user: number; system: number; total: number };
  /** Threads that used CPU in the window, busiest first. */
  threads: ThreadProfile[];
}

export interface CaseProfile {
  case: CaseName;
  esp: Cipher;
  /** Wall seconds measured (iperf3's run, sampled). */
  seconds: number;
  gbitPerSecond: number;
  bytes: number;
  retransmits: number;
  processes: ProcessProfile[];
  /** All the case's processes together. */
  total: { cpuSeconds: number; perGb: number; microsPerPacket: number; cpusBusy: number };
  /** Both gateways together (what the peers are compared by). */
  gateways: { cpuSeconds: number; perGb: number; userPerGb: number; systemPerGb: number; microsPerPacket: number };
  /** The whole machine (shared: other load included). */
  machine: { cpus: number; busyShare: number; idleShare: number; softirqShare: number; softirqSeconds: number; softirqPerGb: number };
  /** ikeclone: packets each worker sealed and opened in the window (checks the thread naming: busy workers move packets). */
  workers?: Array<{ index: number; encapPackets: number; decapPackets: number; tunReads: number; handOffsOut: number }>;
  /**
   * ikeclone, when perf can sample: the busiest worker of each gateway
   * (left seals, right opens) split by perf record over the middle of the
   * run (bench/perf-split.ts).
   */
  perf?: Array<{ role: 'left gateway' | 'right gateway'; thread: string; tid: number; split: PerfSplit }>;
}

export interface CpuProfileReport {
  suite: 'cpu-profile';
  node: string;
  seconds: number;
  clockTicks: number;
  cases: CaseProfile[];
  skipped: Array<{ case: CaseName; esp: Cipher; reason: string }>;
  /**
   * ikeclone against its peer with the same cipher: throughput, and CPU per GB
   * of the gateways and of all the case's processes (peer / ikeclone: > 1
   * means ikeclone is cheaper; on a saturated machine the throughput ratio
   * follows the total's).
   */
  ratios: Record<string, { throughput: number; gatewayCpuPerGb: number; totalCpuPerGb: number; description: string }>;
}

function clockTicks(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 });
  const v = Number((r.stdout ?? '').trim());
  return v > 0 ? v : 100;
}

function netnsPids(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
  return (r.stdout ?? '').split('\n').map(Number).filter((p) => Number.isInteger(p) && p > 0);
}

interface Tracked {
  role: ProcessProfile['role'];
  pid: number;
  /** Threads at the start of the window (absent for a process started inside it). */
  first: Map<number, TaskTimes> | null;
  last: Map<number, TaskTimes>;
}

function sample(pid: number): Map<number, TaskTimes> {
  return new Map(readThreads(pid).map((t) => [t.pid, t]));
}

/** Label ikeclone's threads (see the header): main, the `workers` newest as worker 0..N-1, the rest Node's. */
export function ikecloneThreadNames(pid: number, threads: readonly TaskTimes[], workers: number): Map<number, string> {
  const names = new Map<number, string>();
  const others = threads.filter((t) => t.pid !== pid).sort((a, b) => a.starttime - b.starttime || a.pid - b.pid);
  const newest = others.slice(Math.max(0, others.length - workers));
  for (const t of threads) names.set(t.pid, t.pid === pid ? 'main (control, I/O)' : 'node (V8, libuv)');
  newest.forEach((t, i) => names.set(t.pid, `worker ${i}`));
  return names;
}

function profileProcess(t: Tracked, ticks: number, gb: number, names?: Map<number, string>): ProcessProfile {
  const threads: ThreadProfile[] = [];
  let user = 0;
  let system = 0;
  const grouped = new Map<string, ThreadProfile>();
  for (const [tid, b] of t.last) {
    const d = taskDelta(t.first?.get(tid), b, ticks);
    user += d.user;
    system += d.system;
    const name = names?.get(tid) ?? b.comm;
    // Node's helper threads are summed into one row; every other thread has its own.
    const key = name === 'node (V8, libuv)' ? name : `${name}#${tid}`;
    const row = grouped.get(key) ?? { tid: name === 'node (V8, libuv)' ? 0 : tid, name, user: 0, system: 0 };
    row.user += d.user;
    row.system += d.system;
    grouped.set(key, row);
  }
  for (const r of grouped.values()) if (r.user + r.system > 0) threads.push({ ...r, user: round(r.user, 2), system: round(r.system, 2) });
  threads.sort((a, b) => b.user + b.system - (a.user + a.system));
  const comm = readProcess(t.pid)?.comm ?? t.last.get(t.pid)?.comm ?? '?';
  return {
    role: t.role, comm, pid: t.pid, user: round(user, 2), system: round(system, 2),
    perGb: { user: round(user / gb, 2), system: round(system / gb, 2), total: round((user + system) / gb, 2) },
    threads: threads.slice(0, 12),
  };
}

async function gatewayWorkers(socket: string): Promise<CaseProfile['workers']> {
  const st = await statusOf(socket);
  return st?.dataplane?.workers.map((w) => ({ index: w.index, encapPackets: w.encapPackets, decapPackets: w.decapPackets, tunReads: w.tunReads, handOffsOut: w.handOffsOut }));
}

/** iperf3 left -> right with /proc sampled throughout; the profile of the window. */
async function measure(bed: Testbed, c: { name: CaseName; esp: Cipher }, seconds: number, ticks: number, perf: boolean): Promise<CaseProfile> {
  const socketOf = (side: 'left' | 'right') => join(bed.dir, `${side}-udp.sock`);
  const server = bed.spawn(bed.right, 'iperf3', ['-s', '-1', '-B', INNER.right]);
  await until('iperf3 server', () => spawnSync('ip', ['netns', 'exec', bed.right, 'ss', '-ltn'], { encoding: 'utf8' }).stdout.includes(`${INNER.right}:5201`), 5000);
  const tracked: Tracked[] = [];
  for (const [ns, role] of [[bed.left, 'left gateway'], [bed.right, 'right gateway']] as const) {
    for (const pid of netnsPids(ns)) if (pid !== server.pid) tracked.push({ role, pid, first: sample(pid), last: new Map() });
  }
  tracked.push({ role: 'iperf3 server', pid: server.pid!, first: sample(server.pid!), last: new Map() });
  const workersBefore = c.name === 'ikeclone' ? await gatewayWorkers(socketOf('left')) : undefined;
  const workersBeforeRight = c.name === 'ikeclone' ? await gatewayWorkers(socketOf('right')) : undefined;
  const m0: MachineTimes = readMachine();
  const t0 = performance.now();
  const client: ChildProcess = bed.spawn(bed.left, 'iperf3', ['-c', INNER.right, '-B', INNER.left, '-t', String(seconds), '-J'], undefined, 'pipe');
  tracked.push({ role: 'iperf3 client', pid: client.pid!, first: null, last: new Map() });
  let out = '';
  client.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<void>((r) => client.once('exit', () => r()));
  let m1 = m0;
  let t1 = t0;
  const deadline = Date.now() + (seconds + 20) * 1000;
  let done = false;
  void exited.then(() => { done = true; });
  // perf record starts a second into the run, on the busiest worker of each gateway, and stops a second before its end.
  const recordings: Array<{ role: 'left gateway' | 'right gateway'; thread: string; tid: number; file: string; done: Promise<boolean> }> = [];
  let perfPending = perf && c.name === 'ikeclone';
  while (!done && Date.now() < deadline) {
    if (perfPending && performance.now() - t0 >= 1000) {
      perfPending = false;
      for (const t of tracked.filter((x) => x.role.endsWith('gateway'))) {
        const now = [...sample(t.pid).values()];
        const names = ikecloneThreadNames(t.pid, now, (t.role === 'left gateway' ? workersBefore : workersBeforeRight)?.length ?? 0);
        const busiest = now.filter((x) => names.get(x.pid)?.startsWith('worker'))
          .map((x) => ({ x, d: x.utime + x.stime - ((t.first?.get(x.pid)?.utime ?? 0) + (t.first?.get(x.pid)?.stime ?? 0)) }))
          .sort((a, b) => b.d - a.d)[0];
        if (busiest === undefined) continue;
        const file = join(bed.dir, `perf-${t.role.split(' ')[0]}.data`);
        const role = t.role as 'left gateway' | 'right gateway';
        recordings.push({ role, thread: names.get(busiest.x.pid)!, tid: busiest.x.pid, file, done: recordThread(busiest.x.pid, Math.max(1, seconds - 2), file).done });
      }
    }
    // Keep the last sample taken while the client was alive: the window ends there.
    const s = tracked.map((t) => sample(t.pid));
    if (client.exitCode !== null || client.signalCode !== null || s[s.length - 1]!.size === 0) break;
    tracked.forEach((t, i) => { if (s[i]!.size > 0) t.last = s[i]!; });
    m1 = readMachine();
    t1 = performance.now();
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  await within(exited, 5000);
  server.kill('SIGTERM');
  const perfSplits: NonNullable<CaseProfile['perf']> = [];
  for (const r of recordings) {
    const ok = (await within(r.done, 10_000)) ?? false;
    const split = ok ? reportThread(r.file, repoRoot()) : null;
    if (split) perfSplits.push({ role: r.role, thread: r.thread, tid: r.tid, split });
  }
  const j = JSON.parse(out) as { end: { sum_received: { bytes: number; bits_per_second: number }; sum_sent: { retransmits?: number } } };
  const bytes = j.end.sum_received.bytes;
  const gb = bytes / 1e9;
  const wall = (t1 - t0) / 1000;
  const machine = machineDelta(m0, m1, ticks);
  const cpus = Math.max(1, Math.round(machine.totalSeconds / Math.max(wall, 1e-3)));
  const processes: ProcessProfile[] = [];
  for (const t of tracked) {
    if (t.last.size === 0) continue;
    let names: Map<number, string> | undefined;
    if (c.name === 'ikeclone' && t.role.endsWith('gateway')) {
      const before = t.role === 'left gateway' ? workersBefore : workersBeforeRight;
      names = ikecloneThreadNames(t.pid, [...t.last.values()], before?.length ?? 0);
    }
    processes.push(profileProcess(t, ticks, gb, names));
  }
  const sum = (ps: ProcessProfile[], f: (p: ProcessProfile) => number) => ps.reduce((a, p) => a + f(p), 0);
  const all = sum(processes, (p) => p.user + p.system);
  const gws = processes.filter((p) => p.role.endsWith('gateway'));
  const gwCpu = sum(gws, (p) => p.user + p.system);
  const packets = bytes / PACKET_BYTES;
  const profile: CaseProfile = {
    case: c.name, esp: c.esp, seconds: round(wall, 2),
    gbitPerSecond: round(j.end.sum_received.bits_per_second / 1e9, 3), bytes, retransmits: j.end.sum_sent.retransmits ?? 0,
    processes,
    total: { cpuSeconds: round(all, 2), perGb: round(all / gb, 2), microsPerPacket: round((all * 1e6) / packets, 2), cpusBusy: round(all / wall, 2) },
    gateways: {
      cpuSeconds: round(gwCpu, 2), perGb: round(gwCpu / gb, 2), userPerGb: round(sum(gws, (p) => p.user) / gb, 2),
      systemPerGb: round(sum(gws, (p) => p.system) / gb, 2), microsPerPacket: round((gwCpu * 1e6) / packets, 2),
    },
    machine: {
      cpus, busyShare: round(machine.busyShare, 3), idleShare: round(1 - machine.busyShare, 3), softirqShare: round(machine.softirqShare, 3),
      softirqSeconds: round(machine.seconds.softirq, 2), softirqPerGb: round(machine.seconds.softirq / gb, 2),
    },
  };
  if (c.name === 'ikeclone') {
    const after = await gatewayWorkers(socketOf('left'));
    const afterRight = await gatewayWorkers(socketOf('right'));
    const delta = (a: CaseProfile['workers'], b: CaseProfile['workers']) => (b ?? []).map((w, i) => ({
      index: w.index, encapPackets: w.encapPackets - (a?.[i]?.encapPackets ?? 0), decapPackets: w.decapPackets - (a?.[i]?.decapPackets ?? 0),
      tunReads: w.tunReads - (a?.[i]?.tunReads ?? 0), handOffsOut: w.handOffsOut - (a?.[i]?.handOffsOut ?? 0),
    }));
    profile.workers = [...delta(workersBefore, after), ...delta(workersBeforeRight, afterRight)];
    if (perfSplits.length > 0) profile.perf = perfSplits;
  }
  return profile;
}

function printHuman(report: CpuProfileReport): void {
  console.log(`CPU profile: single-stream iperf3 left -> right, ${report.seconds} s per case, CPU seconds per GB received\n`);
  for (const c of report.cases) {
    console.log(`${c.case} (${c.esp}): ${c.gbitPerSecond} Gbit/s, case CPUs busy ${c.total.cpusBusy} of ${c.machine.cpus}, machine busy ${c.machine.busyShare}, softirq ${c.machine.softirqPerGb} s/GB`);
    const rows = c.processes.flatMap((p) => [
      [p.role, p.comm, p.perGb.user, p.perGb.system, p.perGb.total],
      ...p.threads.filter((t) => t.user + t.system > 0.05).map((t) => [`  ${t.name}`, String(t.tid || ''), round(t.user / (c.bytes / 1e9), 2), round(t.system / (c.bytes / 1e9), 2), round((t.user + t.system) / (c.bytes / 1e9), 2)]),
    ]);
    console.log(formatTable(['process / thread', 'comm / tid', 'user s/GB', 'system s/GB', 'total s/GB'], rows));
    for (const p of c.perf ?? []) {
      console.log(`perf, ${p.role} ${p.thread} (${p.split.samples} samples): ${Object.entries(p.split.shares).map(([k, v]) => `${k} ${round(v * 100, 1)} %`).join(', ')}`);
      console.log(`  in system calls: ${Object.entries(p.split.syscalls).map(([k, v]) => `${k} ${round(v * 100, 1)} %`).join(', ')}`);
    }
    console.log('');
  }
  for (const s of report.skipped) console.log(`skipped ${s.case} (${s.esp}): ${s.reason}`);
  console.log(formatTable(['ratio', 'throughput', 'gateway CPU/GB (peer/ikeclone)', 'total CPU/GB (peer/ikeclone)'],
    Object.values(report.ratios).map((r) => [r.description, r.throughput, r.gatewayCpuPerGb, r.totalCpuPerGb])));
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runCpuProfileBench(opts: SuiteOptions): Promise<CpuProfileReport> {
  if (process.getuid?.() !== 0) throw new Error('the cpu-profile benchmark needs root (network namespaces, TUN devices)');
  for (const bin of ['ip', 'iperf3', 'unshare', 'getconf']) if (!onPath(bin)) throw new Error(`the cpu-profile benchmark needs ${bin}`);
  const seconds = Math.max(4, Math.round(opts.maxTime * 4));
  const ticks = clockTicks();
  const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);
  const tunMissing = tunUnavailable();
  const charonMissing = existsSync(CHARON) && onPath('swanctl') ? null : `${CHARON} or swanctl missing`;
  const wgMissing = onPath('wireguard-go') && onPath('wg') ? null : 'wireguard-go or wg missing';
  const runs: Array<{ name: CaseName; esp: Cipher; missing: string | null; setUp: (bed: Testbed) => Promise<void> }> = [
    { name: 'ikeclone', esp: 'aes128gcm16', missing: tunMissing, setUp: (bed) => ikeclonePair(bed, 'udp', 'aes128gcm16') },
    { name: 'strongswan', esp: 'aes128gcm16', missing: charonMissing, setUp: (bed) => strongswanPair(bed, 'aes128gcm16') },
    { name: 'ikeclone', esp: 'chacha20poly1305', missing: tunMissing, setUp: (bed) => ikeclonePair(bed, 'udp', 'chacha20poly1305') },
    { name: 'wireguard-go', esp: 'chacha20poly1305', missing: wgMissing, setUp: (bed) => wireguardPair(bed) },
  ];
  const perf = onPath('perf') && perfUsable();
  progress(perf ? 'perf: sampling the busiest ikeclone worker of each gateway' : 'perf: not usable, /proc accounting only');
  const cases: CaseProfile[] = [];
  const skipped: CpuProfileReport['skipped'] = [];
  for (const c of runs) {
    if (c.missing) {
      skipped.push({ case: c.name, esp: c.esp, reason: c.missing });
      progress(`${c.name} (${c.esp}): skipped (${c.missing})`);
      continue;
    }
    // The gateways inherit this process's environment: with perf, V8 writes the map that names its compiled code.
    const nodeOptions = process.env.NODE_OPTIONS;
    const mapped = perf && c.name === 'ikeclone';
    if (mapped) process.env.NODE_OPTIONS = `${nodeOptions ?? ''} ${PERF_MAP_FLAG}`.trim();
    let gatewayPids: number[] = [];
    try {
      cases.push(await withTestbed(async (bed) => {
        await c.setUp(bed);
        gatewayPids = [...netnsPids(bed.left), ...netnsPids(bed.right)];
        progress(`${c.name} (${c.esp}): iperf3 -t ${seconds}, /proc every ${POLL_MS} ms`);
        return measure(bed, c, seconds, ticks, perf);
      }));
    } finally {
      if (mapped) {
        if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
        else process.env.NODE_OPTIONS = nodeOptions;
        removePerfMaps(gatewayPids);
      }
    }
  }
  const find = (name: CaseName, esp: Cipher) => cases.find((c) => c.case === name && c.esp === esp);
  const ratios: CpuProfileReport['ratios'] = {};
  for (const [key, peer, esp, what] of [
    ['ikecloneVsStrongswan', 'strongswan', 'aes128gcm16', 'strongSwan kernel-libipsec'],
    ['ikecloneVsWireguardGo', 'wireguard-go', 'chacha20poly1305', 'wireguard-go'],
  ] as const) {
    const a = find('ikeclone', esp);
    const b = find(peer, esp);
    if (a && b) {
      ratios[key] = {
        throughput: round(a.gbitPerSecond / b.gbitPerSecond, 2), gatewayCpuPerGb: round(b.gateways.perGb / a.gateways.perGb, 2),
        totalCpuPerGb: round(b.total.perGb / a.total.perGb, 2),
        description: `ikeclone vs ${what}, ${esp}`,
      };
    }
  }
  const report: CpuProfileReport = { suite: 'cpu-profile', node: process.version, seconds, clockTicks: ticks, cases, skipped, ratios };
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else printHuman(report);
  return report;
}
