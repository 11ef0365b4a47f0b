// Where the time of one idle ping through a tunnel goes (`npm run bench --
// latency-profile --json`, root): the tunnel bench's two namespaces
// (bench/tunnel.ts), a capture on each namespace's TUN device and veth end
// (dumpcap, kernel timestamps at the packet taps), and ping requests 20 ms
// apart, so every thread on the path is asleep when a packet arrives. For
// each echo request the captures give seven stages:
//   left seal     request on the left TUN device -> ESP leaves the left veth
//                 (the left gateway wakes, reads its TUN queue, seals, sends)
//   wire out      left veth -> right veth
//   right open    ESP on the right veth -> request on the right TUN device
//                 (the right gateway wakes, reads its socket, opens, writes)
//   right stack   request -> reply on the right TUN device (the kernel's ICMP)
//   right seal    reply on the right TUN device -> ESP leaves the right veth
//   wire back     right veth -> left veth
//   left open     ESP on the left veth -> reply on the left TUN device
// and the sum (TUN to TUN), beside ping's own round trip. Every case first
// carries WARM_UP_SECONDS of iperf3 each way, so that the gateways are
// profiled in service: ikeclone's data plane is JavaScript, and right after
// start V8 runs it unoptimised (the tunnel benchmark measures those first
// packets apart). Cases: ikeclone
// with ESP in UDP and raw ESP (AES-GCM-128, ChaCha20-Poly1305 in UDP) and
// wireguard-go, in one run. Medians and minima over the requests, µs.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { tunUnavailable } from '../io/tun.js';
import { ikeclonePair, OUTER, Testbed, TUN, until, WG_DEV, wireguardPair } from './tunnel.js';
import { formatTable, round, type SuiteOptions } from './common.js';

export const PROFILE_STAGES = ['leftSeal', 'wireOut', 'rightOpen', 'rightStack', 'rightSeal', 'wireBack', 'leftOpen', 'tunToTun'] as const;
type Stage = (typeof PROFILE_STAGES)[number];

export interface ProfileCase {
  case: string;
  esp: string;
  /** Requests whose seven stages were all found in the captures. */
  matched: number;
  sent: number;
  /** ping's own round trip, ms. */
  rttMs: { min: number; avg: number };
  stages: Record<Stage, { p50Us: number; minUs: number }>;
}

export interface ProfileReport {
  suite: 'latency-profile';
  node: string;
  count: number;
  intervalMs: number;
  /** iperf3 seconds each way through every tunnel before its pings. */
  warmUpSeconds: number;
  cases: ProfileCase[];
  skipped: Array<{ case: string; reason: string }>;
}

const COUNT = 60;
const INTERVAL_MS = 20;
const WARM_UP_SECONDS = 2;

interface Frame {
  t: number;
  iface: string;
  src: string;
  icmpType: number;
  seq: number;
}

function capture(bed: Testbed, ns: string, ifaces: string[], file: string): ChildProcess {
  return bed.spawn(ns, 'dumpcap', ['-q', ...ifaces.flatMap((i) => ['-i', i]), '-w', file]);
}

/** The frames of a capture: time (µs), interface, IPv4 source, ICMP type and sequence (-1 when not ICMP). */
function frames(file: string): Frame[] {
  const r = spawnSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=;', '-E', 'occurrence=f',
    '-e', 'frame.time_epoch', '-e', 'frame.interface_name', '-e', 'ip.src', '-e', 'icmp.type', '-e', 'icmp.seq'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tshark -r ${file}: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter(Boolean).map((line) => {
    const [t, iface, src, type, seq] = line.split(';');
    return { t: Number(t) * 1e6, iface: iface ?? '', src: src ?? '', icmpType: type ? Number(type) : -1, seq: seq ? Number(seq) : -1 };
  }).sort((a, b) => a.t - b.t);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** The seven stages of each request found whole in both captures. */
function stagesOf(left: Frame[], right: Frame[], tun: { left: string; right: string }, count: number): Array<Record<Stage, number>> {
  const icmp = (fs: Frame[], iface: string, type: number, seq: number) => fs.find((f) => f.iface === iface && f.icmpType === type && f.seq === seq)?.t;
  // Outer packets: on the veth, from the given outer address, not ICMP (ESP, or WireGuard's UDP).
  const outerAfter = (fs: Frame[], src: string, after: number) => fs.find((f) => f.iface === 'eth0' && f.src === src && f.icmpType < 0 && f.t >= after)?.t;
  const out: Array<Record<Stage, number>> = [];
  for (let seq = 1; seq <= count; seq++) {
    const lReq = icmp(left, tun.left, 8, seq);
    if (lReq === undefined) continue;
    const lOut = outerAfter(left, OUTER.left, lReq);
    const rIn = lOut === undefined ? undefined : outerAfter(right, OUTER.left, lOut - 50);
    const rReq = icmp(right, tun.right, 8, seq);
    const rRep = icmp(right, tun.right, 0, seq);
    const rOut = rRep === undefined ? undefined : outerAfter(right, OUTER.right, rRep);
    const lIn = rOut === undefined ? undefined : outerAfter(left, OUTER.right, rOut - 50);
    const lRep = icmp(left, tun.left, 0, seq);
    if ([lOut, rIn, rReq, rRep, rOut, lIn, lRep].some((x) => x === undefined)) continue;
    const stages: Record<Stage, number> = {
      leftSeal: lOut! - lReq, wireOut: rIn! - lOut!, rightOpen: rReq! - rIn!, rightStack: rRep! - rReq!,
      rightSeal: rOut! - rRep!, wireBack: lIn! - rOut!, leftOpen: lRep! - lIn!, tunToTun: lRep! - lReq,
    };
    // A request whose outer packets could not be told apart (a late one overtaken by the next, a
    // handshake or keepalive in between) shows a stage out of order: left out, not guessed.
    if (Object.values(stages).some((us) => us < 0)) continue;
    out.push(stages);
  }
  return out;
}

async function profile(name: string, esp: string, setUp: (bed: Testbed) => Promise<void>, tun: { left: string; right: string }): Promise<ProfileCase> {
  const bed = new Testbed();
  try {
    await bed.create();
    await setUp(bed);
    for (const reverse of [false, true]) await bed.iperf(WARM_UP_SECONDS, reverse);
    bed.ping(5, INTERVAL_MS); // paths set up (ARP) and the threads idle again before the capture
    const files = { left: join(bed.dir, 'left.pcapng'), right: join(bed.dir, 'right.pcapng') };
    const caps = [capture(bed, bed.left, [tun.left, 'eth0'], files.left), capture(bed, bed.right, [tun.right, 'eth0'], files.right)];
    await new Promise((r) => setTimeout(r, 1500)); // dumpcap opens its interfaces
    const ping = bed.ping(COUNT, INTERVAL_MS);
    await new Promise((r) => setTimeout(r, 300));
    for (const c of caps) c.kill('SIGINT');
    await until('dumpcap exits', () => caps.every((c) => c.exitCode !== null || c.signalCode !== null), 10_000);
    const runs = stagesOf(frames(files.left), frames(files.right), tun, COUNT);
    const stages = Object.fromEntries(PROFILE_STAGES.map((s) => {
      const xs = runs.map((r) => r[s]);
      return [s, { p50Us: round(median(xs), 1), minUs: round(Math.min(...xs), 1) }];
    })) as ProfileCase['stages'];
    return { case: name, esp, matched: runs.length, sent: ping.sent, rttMs: { min: ping.minMs, avg: ping.avgMs }, stages };
  } finally {
    await bed.destroy();
  }
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runLatencyProfileBench(opts: SuiteOptions): Promise<ProfileReport> {
  if (process.getuid?.() !== 0) throw new Error('the latency-profile benchmark needs root (network namespaces, TUN devices, captures)');
  for (const bin of ['dumpcap', 'tshark', 'ip', 'iperf3']) if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) throw new Error(`the latency-profile benchmark needs ${bin} (apt-get install tshark iproute2 iperf3)`);
  const cases: ProfileCase[] = [];
  const skipped: ProfileReport['skipped'] = [];
  const tunMissing = tunUnavailable();
  const wgMissing = spawnSync('sh', ['-c', 'command -v wireguard-go && command -v wg']).status === 0 ? null : 'wireguard-go or wg missing';
  const ike = { left: TUN, right: TUN };
  const runs: Array<{ name: string; esp: string; missing: string | null; setUp: (bed: Testbed) => Promise<void>; tun: { left: string; right: string } }> = [
    { name: 'ikeclone-udp', esp: 'aes128gcm16', missing: tunMissing, setUp: (b) => ikeclonePair(b, 'udp', 'aes128gcm16'), tun: ike },
    { name: 'ikeclone-raw', esp: 'aes128gcm16', missing: tunMissing, setUp: (b) => ikeclonePair(b, 'auto', 'aes128gcm16'), tun: ike },
    { name: 'ikeclone-udp', esp: 'chacha20poly1305', missing: tunMissing, setUp: (b) => ikeclonePair(b, 'udp', 'chacha20poly1305'), tun: ike },
    { name: 'wireguard-go', esp: 'chacha20poly1305', missing: wgMissing, setUp: wireguardPair, tun: { left: WG_DEV.left, right: WG_DEV.right } },
  ];
  for (const r of runs) {
    if (r.missing) {
      skipped.push({ case: r.name, reason: r.missing });
      continue;
    }
    process.stderr.write(`${r.name} (${r.esp}): ${COUNT} pings ${INTERVAL_MS} ms apart, captured\n`);
    cases.push(await profile(r.name, r.esp, r.setUp, r.tun));
  }
  const report: ProfileReport = { suite: 'latency-profile', node: process.version, count: COUNT, intervalMs: INTERVAL_MS, warmUpSeconds: WARM_UP_SECONDS, cases, skipped };
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else {
    console.log(`Idle ping (${COUNT} requests ${INTERVAL_MS} ms apart, after ${WARM_UP_SECONDS} s of iperf3 each way): median (min) µs per stage\n`);
    console.log(formatTable(['stage', ...cases.map((c) => `${c.case} ${c.esp}`)],
      [...PROFILE_STAGES.map((s) => [s, ...cases.map((c) => `${c.stages[s].p50Us} (${c.stages[s].minUs})`)]),
        ['ping rtt min/avg ms', ...cases.map((c) => `${c.rttMs.min}/${c.rttMs.avg}`)],
        ['matched', ...cases.map((c) => `${c.matched}/${c.sent}`)]]));
  }
  return report;
}
