// Soak across rekeys (`npm run bench -- soak --minutes N --json`, root): two
// ikeclone gateways (the built CLI) in network namespaces joined by a veth
// pair, the initiator growing a clone family of one IKE SA per data-plane
// worker (RFC 7791, architecture §5), with short lifetimes on both ends: Child
// SAs rekeyed every few seconds (RFC 7296 §2.8), IKE SAs rekeyed (§2.8.2) and
// the session reauthenticated (§2.8.3, make before break) by the initiator.
// Through it, for the whole run, continuous inner traffic with sequence
// numbers (bench/soak-traffic.ts):
//   - a paced UDP stream each way, from several source ports so that its
//     flows spread over the family's Child SAs (dataplane/spd.ts hashes the
//     5-tuple); the receivers count gaps (lost), duplicates and reordering;
//   - a paced TCP stream left -> right whose bytes are checked against a
//     pattern, with the sender namespace's TCP retransmissions
//     (/proc/net/snmp RetransSegs) and the longest pause between reads.
// Every few seconds it samples both gateways' RSS and status (rekey counters,
// families, data-plane drops). The report says how many Child SA rekeys, IKE
// SA rekeys and reauthentications happened, what the streams lost or
// duplicated, and RSS over time. The CI test (test/soak-netns.test.ts) runs a
// short version of the same function; README reports a 30-minute run.
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { GatewayStatus } from '../control/status.js';
import { tunUnavailable } from '../io/tun.js';
import { addRoute } from '../demo/netns.js';
import { formatTable, round, type SuiteOptions } from './common.js';
import { INNER, OUTER, TUN, Testbed, repoRoot, runner, statusOf, until } from './tunnel.js';
import type { SenderCounts, TcpReceiverCounts, UdpReceiverCounts } from './soak-traffic.js';

/** How long, how fast, and the lifetimes of both gateways (seconds). */
export interface SoakOptions {
  seconds: number;
  /** Child SA rekey_time on both ends. */
  childRekey: number;
  /** IKE SA rekey_time on both ends. */
  ikeRekey: number;
  /** reauth_time of the initiator (the responder does not reauthenticate). */
  reauth: number;
  /** Data-plane workers per gateway = IKE SAs in the initiator's clone family. */
  workers: number;
  /** UDP datagrams per second in each direction. */
  udpRate: number;
  /** UDP source ports per direction (flows). */
  udpFlows: number;
  /** TCP bytes per second left -> right. */
  tcpRate: number;
  /** Progress lines on stderr. */
  progress?: (line: string) => void;
}

/** Lifetimes of the long run: over 30 minutes, ~180 Child SA rekeys per SA, ~30 IKE SA rekeys, 6 reauthentications. */
export const LONG_SOAK: Omit<SoakOptions, 'seconds'> = {
  childRekey: 10, ikeRekey: 60, reauth: 300, workers: 2, udpRate: 1000, udpFlows: 4, tcpRate: 256 * 1024,
};

export interface RssSample {
  atSeconds: number;
  leftMiB: number;
  rightMiB: number;
}

export interface SoakReport {
  suite: 'soak';
  node: string;
  options: Omit<SoakOptions, 'progress'>;
  /** Counted by the initiator's engine (each exchange once, whichever end started it). */
  rekeys: { child: number; ike: number; reauth: number };
  udp: { leftToRight: UdpReceiverCounts; rightToLeft: UdpReceiverCounts; sent: SenderCounts[] };
  tcp: TcpReceiverCounts & { sent: number; retransmittedSegments: number };
  /** Data-plane drops of both gateways by reason (summed), and IKE exchanges that failed. */
  drops: Record<string, number>;
  /** Kernel counters of each namespace over the run: losses the data planes cannot see. */
  kernelDrops: { left: KernelDrops; right: KernelDrops };
  /** When data-plane drops happened: the samples at which either gateway's total grew, with the totals by reason. */
  dropTimeline: Array<{ atSeconds: number; total: number; childRekeys: number; drops: Record<string, number> }>;
  /**
   * Steered ESP the workers of both gateways held because its SA was not
   * installed yet (dataplane/steered-hold.ts): opened once it was, or else
   * counted in drops as an unknown SPI.
   */
  heldEsp: number;
  failedExchanges: Record<string, number>;
  rss: { samples: RssSample[]; left: RssSummary; right: RssSummary };
  /** Nothing lost, duplicated or corrupted; the TCP stream ended cleanly. */
  intact: boolean;
}

/** RSS after the warm-up (first sample past 10% of the run), its maximum, and at the end. */
export interface RssSummary {
  afterWarmUpMiB: number;
  maxMiB: number;
  endMiB: number;
}

const UDP_PORT = 5555;
const TCP_PORT = 5556;
const PSK = 'soak-benchmark-psk-0123456789abcdef';

function gatewayConfig(side: 'left' | 'right', o: SoakOptions): string {
  const [me, peer] = side === 'left' ? [OUTER.left, OUTER.right] : [OUTER.right, OUTER.left];
  const [localNet, remoteNet] = side === 'left' ? [INNER.leftNet, INNER.rightNet] : [INNER.rightNet, INNER.leftNet];
  return JSON.stringify({
    log: { level: 'info' },
    listen: { address: me, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 6 },
    dataplane: { workers: o.workers, tun: TUN, esp: 'udp' },
    connections: {
      soak: {
        local_addrs: [me], remote_addrs: [peer], ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: `${side}.soak`, auth: 'psk' }, remote: { id: `${side === 'left' ? 'right' : 'left'}.soak`, auth: 'psk' },
        psk: PSK,
        rekey_time: `${o.ikeRekey}s`,
        ...(side === 'left' ? { start_action: 'start', reauth_time: `${o.reauth}s`, clone: { per: 'worker', count: o.workers } } : {}),
        children: { net: { local_ts: [localNet], remote_ts: [remoteNet], esp: ['aes128gcm16'], rekey_time: `${o.childRekey}s` } },
      },
    },
  });
}

function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? round(Number(m[1]) / 1024, 1) : 0;
  } catch {
    return 0;
  }
}

/** A counter of the TCP line of /proc/net/snmp inside namespace `ns`. */
async function snmpCounter(ns: string, proto: 'Tcp' | 'Udp', name: string): Promise<number> {
  const r = await runner('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp']);
  const rows = r.stdout.split('\n').filter((l) => l.startsWith(`${proto}:`)).map((l) => l.trim().split(/\s+/));
  return Number(rows[1]?.[rows[0]?.indexOf(name) ?? -1] ?? Number.NaN);
}

const tcpCounter = (ns: string, name: string) => snmpCounter(ns, 'Tcp', name);

/**
 * Where a datagram can be lost outside the data planes' own counters: a UDP
 * socket's receive buffer (the gateway's ESP sockets and the soak receivers
 * share the namespace's counters) and the TUN device's queue (TX dropped: the
 * kernel queued more for the gateway than it read in time).
 */
export interface KernelDrops { udpRcvbufErrors: number; udpInErrors: number; tunTxDropped: number; tunRxDropped: number }

async function kernelDrops(ns: string): Promise<KernelDrops> {
  const link = await runner('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', TUN]);
  const stats = (JSON.parse(link.stdout) as Array<{ stats64?: { rx?: { dropped?: number }; tx?: { dropped?: number } } }>)[0]?.stats64;
  return {
    udpRcvbufErrors: await snmpCounter(ns, 'Udp', 'RcvbufErrors'),
    udpInErrors: await snmpCounter(ns, 'Udp', 'InErrors'),
    tunTxDropped: stats?.tx?.dropped ?? Number.NaN,
    tunRxDropped: stats?.rx?.dropped ?? Number.NaN,
  };
}

function kernelDelta(before: KernelDrops, after: KernelDrops): KernelDrops {
  return {
    udpRcvbufErrors: after.udpRcvbufErrors - before.udpRcvbufErrors,
    udpInErrors: after.udpInErrors - before.udpInErrors,
    tunTxDropped: after.tunTxDropped - before.tunTxDropped,
    tunRxDropped: after.tunRxDropped - before.tunRxDropped,
  };
}

/** The JSON line a soak-traffic process prints when it ends. */
function resultOf<T>(p: ChildProcess, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    let out = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => reject(new Error(`soak: ${what} did not report within ${timeoutMs} ms`)), timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as T);
      } catch {
        reject(new Error(`soak: ${what} exited ${code} without a report: ${JSON.stringify(out.slice(-300))}`));
      }
    });
  });
}

function summarise(samples: RssSample[], side: 'leftMiB' | 'rightMiB', seconds: number): RssSummary {
  const warm = samples.find((s) => s.atSeconds >= seconds * 0.1) ?? samples[0];
  return {
    afterWarmUpMiB: warm?.[side] ?? 0,
    maxMiB: Math.max(0, ...samples.map((s) => s[side])),
    endMiB: samples.at(-1)?.[side] ?? 0,
  };
}

function addCounts(into: Record<string, number>, from: Record<string, number>, prefix = ''): void {
  for (const [k, v] of Object.entries(from)) if (v > 0) into[prefix + k] = (into[prefix + k] ?? 0) + v;
}

/** Steered ESP a gateway's workers held for SAs not installed yet. */
function heldOf(st: GatewayStatus | undefined): number {
  return st?.dataplane?.workers.reduce((n, w) => n + (w.steered?.held ?? 0), 0) ?? 0;
}

function dropsOf(st: GatewayStatus | undefined, into: Record<string, number>): void {
  const dp = st?.dataplane;
  if (!dp) return;
  for (const w of dp.workers) addCounts(into, w.drops as unknown as Record<string, number>, 'worker.');
  const io = dp.io as unknown as Record<string, number>;
  addCounts(into, Object.fromEntries(Object.entries(io).filter(([k]) => k.startsWith('drop'))), 'io.');
}

/** Run the soak; resolves with its report. Everything it started is stopped and removed, also on failure. */
export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  if (process.getuid?.() !== 0) throw new Error('the soak needs root (network namespaces, TUN devices)');
  const missing = tunUnavailable();
  if (missing) throw new Error(`the soak needs the TUN data plane: ${missing}`);
  const progress = o.progress ?? (() => {});
  const bed = new Testbed();
  const cli = join(repoRoot(), 'dist', 'control', 'cli', 'main.js');
  const traffic = join(repoRoot(), 'dist', 'bench', 'soak-traffic.js');
  const stop = () => void bed.destroy().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    await bed.create();
    const gw: Record<'left' | 'right', { socket: string; pid?: number }> = {
      left: { socket: join(bed.dir, 'left.sock') }, right: { socket: join(bed.dir, 'right.sock') },
    };
    for (const side of ['right', 'left'] as const) {
      const file = join(bed.dir, `${side}.yaml`);
      writeFileSync(file, gatewayConfig(side, o)); // JSON is YAML
      const log = openSync(join(bed.dir, `${side}.log`), 'a');
      const p = bed.spawn(side === 'left' ? bed.left : bed.right, process.execPath, [cli, 'gateway', '--config', file, '--socket', gw[side].socket], undefined, log);
      closeSync(log);
      gw[side].pid = p.pid;
    }
    await until('the clone family complete and every Child SA in the data plane', async () => {
      const l = await statusOf(gw.left.socket);
      const r = await statusOf(gw.right.socket);
      const inWorkers = (st?: GatewayStatus) => {
        const cs = st?.ikeSas.flatMap((s) => s.children) ?? [];
        return cs.length >= o.workers && cs.every((c) => typeof c.worker === 'number');
      };
      return l?.families.some((f) => f.state === 'complete' && f.members.length === o.workers) === true && inWorkers(l) && inWorkers(r);
    }, 30_000);
    await addRoute(runner, bed.left, INNER.rightNet, { dev: TUN, src: INNER.left });
    await addRoute(runner, bed.right, INNER.leftNet, { dev: TUN, src: INNER.right });
    progress(`soak: family of ${o.workers} up; traffic for ${o.seconds} s`);

    const node = process.execPath;
    const recvIdle = String(Math.max(30, o.childRekey * 3));
    const pipe = (ns: string, args: string[]) => bed.spawn(ns, node, [traffic, ...args], undefined, 'pipe');
    const udpRecvRight = pipe(bed.right, ['udp-recv', '--bind', INNER.right, '--port', String(UDP_PORT), '--idle', recvIdle]);
    const udpRecvLeft = pipe(bed.left, ['udp-recv', '--bind', INNER.left, '--port', String(UDP_PORT), '--idle', recvIdle]);
    const tcpRecv = pipe(bed.right, ['tcp-recv', '--bind', INNER.right, '--port', String(TCP_PORT)]);
    const reports = {
      udpLR: resultOf<UdpReceiverCounts>(udpRecvRight, 'udp-recv (right)', (o.seconds + 120) * 1000),
      udpRL: resultOf<UdpReceiverCounts>(udpRecvLeft, 'udp-recv (left)', (o.seconds + 120) * 1000),
      tcp: resultOf<TcpReceiverCounts>(tcpRecv, 'tcp-recv', (o.seconds + 120) * 1000),
    };
    await until('receivers listening', async () => {
      const r = await runner('ip', ['netns', 'exec', bed.right, 'ss', '-lntu']);
      const l = await runner('ip', ['netns', 'exec', bed.left, 'ss', '-lnu']);
      return r.stdout.includes(`${INNER.right}:${UDP_PORT}`) && r.stdout.includes(`${INNER.right}:${TCP_PORT}`) && l.stdout.includes(`${INNER.left}:${UDP_PORT}`);
    }, 10_000);
    const retransBefore = await tcpCounter(bed.left, 'RetransSegs');
    const kernelBefore = { left: await kernelDrops(bed.left), right: await kernelDrops(bed.right) };
    const senders: Array<Promise<SenderCounts>> = [];
    // One sender per direction with `udpFlows` sockets (source ports), numbering all its datagrams in
    // one sequence, so one receiver tells loss and duplicates over every flow.
    for (const [ns, from, to] of [[bed.left, INNER.left, INNER.right], [bed.right, INNER.right, INNER.left]] as const) {
      const p = pipe(ns, ['udp-send', '--bind', from, '--to', `${to}:${UDP_PORT}`, '--rate', String(o.udpRate), '--flows', String(o.udpFlows), '--seconds', String(o.seconds)]);
      senders.push(resultOf<SenderCounts>(p, `udp-send (${from})`, (o.seconds + 60) * 1000));
    }
    const tcpSend = pipe(bed.left, ['tcp-send', '--bind', INNER.left, '--to', `${INNER.right}:${TCP_PORT}`, '--rate', String(o.tcpRate), '--seconds', String(o.seconds)]);
    const tcpSent = resultOf<SenderCounts>(tcpSend, 'tcp-send', (o.seconds + 60) * 1000);

    const samples: RssSample[] = [];
    const started = Date.now();
    const sampleEvery = Math.min(10_000, Math.max(1000, (o.seconds * 1000) / 60));
    let lastStatus: { left?: GatewayStatus; right?: GatewayStatus } = {};
    const dropTimeline: SoakReport['dropTimeline'] = [];
    let dropsSeen = 0;
    const sampler = setInterval(() => {
      const at = round((Date.now() - started) / 1000, 1);
      samples.push({ atSeconds: at, leftMiB: rssMiB(gw.left.pid), rightMiB: rssMiB(gw.right.pid) });
      void Promise.all([statusOf(gw.left.socket), statusOf(gw.right.socket)]).then(([st, right]) => {
        if (!st) return;
        lastStatus.left = st;
        const counts: Record<string, number> = {};
        dropsOf(st, counts);
        dropsOf(right, counts);
        const total = Object.values(counts).reduce((a, b) => a + b, 0);
        if (total > dropsSeen) dropTimeline.push({ atSeconds: at, total, childRekeys: st.ike.rekeys.child, drops: counts });
        dropsSeen = Math.max(dropsSeen, total);
        progress(`soak ${at}s: rekeys child ${st.ike.rekeys.child} ike ${st.ike.rekeys.ike}, IKE SAs ${st.ikeSas.length}, RSS ${samples.at(-1)!.leftMiB}/${samples.at(-1)!.rightMiB} MiB`);
      });
    }, sampleEvery);
    let sent: SenderCounts[];
    let tcpSentCounts: SenderCounts;
    try {
      sent = await Promise.all(senders);
      tcpSentCounts = await tcpSent;
    } finally {
      clearInterval(sampler);
    }
    const [udpLR, udpRL, tcp] = await Promise.all([reports.udpLR, reports.udpRL, reports.tcp]);
    const retransAfter = await tcpCounter(bed.left, 'RetransSegs');
    const kernel = {
      left: kernelDelta(kernelBefore.left, await kernelDrops(bed.left)),
      right: kernelDelta(kernelBefore.right, await kernelDrops(bed.right)),
    };
    lastStatus = { left: await statusOf(gw.left.socket), right: await statusOf(gw.right.socket) };
    samples.push({ atSeconds: round((Date.now() - started) / 1000, 1), leftMiB: rssMiB(gw.left.pid), rightMiB: rssMiB(gw.right.pid) });
    const left = lastStatus.left;
    if (!left) throw new Error('soak: the initiator did not answer status at the end');
    const drops: Record<string, number> = {};
    dropsOf(lastStatus.left, drops);
    dropsOf(lastStatus.right, drops);
    const failedExchanges: Record<string, number> = {};
    for (const st of [lastStatus.left, lastStatus.right]) {
      addCounts(failedExchanges, Object.fromEntries(Object.entries(st?.ike.exchanges ?? {}).filter(([k]) => k.endsWith('.failed'))));
    }
    const tcpReport = { ...tcp, sent: tcpSentCounts.sent, retransmittedSegments: retransAfter - retransBefore };
    const intact = [udpLR, udpRL].every((u) => u.sent !== null && u.lost === 0 && u.duplicates === 0 && u.malformed === 0 && u.unique === u.sent)
      && sent.every((s) => s.error === null) && tcp.ended && tcp.error === null && tcp.corrupt === 0 && tcp.bytes === tcpSentCounts.sent;
    const { progress: _progress, ...options } = o;
    return {
      suite: 'soak', node: process.version, options,
      rekeys: { child: left.ike.rekeys.child, ike: left.ike.rekeys.ike, reauth: Math.max(0, (left.ike.exchanges['IKE_AUTH.initiator.ok'] ?? 0) - 1) },
      udp: { leftToRight: udpLR, rightToLeft: udpRL, sent },
      tcp: tcpReport, drops, kernelDrops: kernel, dropTimeline, heldEsp: heldOf(lastStatus.left) + heldOf(lastStatus.right), failedExchanges,
      rss: { samples, left: summarise(samples, 'leftMiB', o.seconds), right: summarise(samples, 'rightMiB', o.seconds) },
      intact,
    };
  } finally {
    process.off('SIGINT', stop);
    await bed.destroy();
  }
}

/** The bench suite: `--minutes N` (default 30), lifetimes of LONG_SOAK. */
export async function runSoakBench(opts: SuiteOptions): Promise<SoakReport> {
  const seconds = Math.round((opts.minutes ?? 30) * 60);
  const report = await runSoak({ ...LONG_SOAK, seconds, progress: (l) => void process.stderr.write(`${l}\n`) });
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return report;
  }
  const r = report;
  console.log(`Soak: ${seconds} s, Child SA rekey ${r.options.childRekey} s, IKE SA rekey ${r.options.ikeRekey} s, reauthentication ${r.options.reauth} s, family of ${r.options.workers}\n`);
  console.log(formatTable(['what', 'count'], [
    ['Child SA rekeys', r.rekeys.child], ['IKE SA rekeys', r.rekeys.ike], ['reauthentications', r.rekeys.reauth],
    ['UDP left->right sent', r.udp.leftToRight.sent ?? -1], ['  lost', r.udp.leftToRight.lost], ['  duplicated', r.udp.leftToRight.duplicates],
    ['UDP right->left sent', r.udp.rightToLeft.sent ?? -1], ['  lost', r.udp.rightToLeft.lost], ['  duplicated', r.udp.rightToLeft.duplicates],
    ['TCP bytes', r.tcp.bytes], ['  corrupt', r.tcp.corrupt], ['  retransmitted segments', r.tcp.retransmittedSegments], ['  longest pause ms', r.tcp.maxGapMs],
  ]));
  console.log(`\nRSS MiB (after warm-up / max / end): left ${r.rss.left.afterWarmUpMiB} / ${r.rss.left.maxMiB} / ${r.rss.left.endMiB}, right ${r.rss.right.afterWarmUpMiB} / ${r.rss.right.maxMiB} / ${r.rss.right.endMiB}`);
  console.log(`held ESP (SA not installed yet): ${r.heldEsp}`);
  console.log(`drops: ${JSON.stringify(r.drops)}; kernel drops: ${JSON.stringify(r.kernelDrops)}; failed exchanges: ${JSON.stringify(r.failedExchanges)}; intact: ${r.intact}`);
  return report;
}
