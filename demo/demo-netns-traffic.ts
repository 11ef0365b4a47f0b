// Traffic of the netns demo through the tunnel: ping both ways and a bounded
// iperf3 run between the inner addresses, with iperf3's parallel streams
// spread over every member of the clone family (the SPD's flow hash,
// dataplane/spd.ts), so that every worker on both ends carries some.
import { flowHash, newFlowTuple, parseFlow } from '../dataplane/packet.js';
import { DemoRun, fatal, until } from './demo-netns-run.js';
import { IPERF_PORT, MAX_CLONES, NETNS_DEMO_INNER, PING_COUNT, type NetnsDemoPing, type NetnsDemoResult } from './demo-netns-layout.js';
import { parsePingSummary } from './netns.js';

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

export async function pingOnce(run: DemoRun, ns: string, from: string, to: string): Promise<NetnsDemoPing> {
  const r = await run.runIn(ns, 'ping', ['-n', '-q', '-c', String(PING_COUNT), '-i', '0.2', '-W', '2', '-I', from, to], 15_000);
  const { sent, received, rtt } = parsePingSummary(r.stdout);
  return { from, to, sent, received, rttMs: rtt?.avgMs ?? null };
}

interface IperfJson {
  start?: { connected?: unknown[] };
  end?: { sum_sent?: { bits_per_second?: number; retransmits?: number }; sum_received?: { bits_per_second?: number } };
  error?: string;
}

export async function iperf(run: DemoRun, client: string, server: string, seconds: number, clones: number): Promise<NetnsDemoResult['iperf3']> {
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
