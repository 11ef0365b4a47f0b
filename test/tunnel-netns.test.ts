// Two ikeclone gateways (the built CLI, one per network namespace) with TUN
// devices for inner traffic: ping and a bounded iperf3 run through the tunnel,
// over UDP-encapsulated ESP (RFC 3948) and over raw ESP (IP protocol 50).
// Inner subnets sit on lo in each namespace (10.i.50.0/24 and 10.i.100.0/24);
// routes to the other side go through the TUN device.
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { addRoute, createTopology, exec, ping, spawnIn } from './support/netns.js';
import type { NetNs, Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { ikeclonePeerConfig } from './support/ikeclone-pair-config.js';
import type { GatewayStatus } from '../control/status.js';
import { tunUnavailable } from '../io/tun.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'iperf3'];
const PSK = 'tunnel-netns-test-psk-0123456789abcdef';
const TUN = 'ikc0';

/** TUN settings beyond the device name (config keys of the dataplane section). */
type TunSettings = { tun_queues?: number; tun_offload?: boolean; output?: 'workers' | 'io-thread'; tunnel_mtu?: number; icmp_rate?: number };

function gatewayConfig(topo: Topology, side: 'left' | 'right', esp: 'udp' | 'auto', tun: TunSettings = {}): Record<string, unknown> {
  return ikeclonePeerConfig(topo, {
    side, localId: `${side}.tunnel.test`, remoteId: `${side === 'left' ? 'right' : 'left'}.tunnel.test`, psk: PSK,
    dataplane: { workers: 2, tun: TUN, ...tun, esp }, connection: side === 'left' ? { start_action: 'start' } : {},
  });
}

/** Every Child SA of the gateway is owned by a data-plane worker. */
function childrenInWorkers(st: GatewayStatus): boolean {
  const children = st.ikeSas.flatMap((s) => s.children);
  return children.length > 0 && children.every((c) => typeof c.worker === 'number');
}

async function linkExists(ns: NetNs, dev: string): Promise<boolean> {
  return (await exec(ns, 'ip', ['link', 'show', dev])).code === 0;
}

describe('ikeclone <-> ikeclone through TUN devices in network namespaces', () => {
  const env = useNetnsSuite('tunnel', PRE);

  async function setUp(name: string, esp: 'udp' | 'auto', tun: TunSettings = {}) {
    // The TUN addon is built with the package (native/tun); without it there is no tunnel to test.
    const missing = tunUnavailable();
    if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
    const topo = await createTopology({ labels: ['left', 'right'] });
    env.cleanup(() => topo.destroy());
    const dir = env.dir(name);
    const right: Ikeclone = await startIkeclone(topo.right, { dir: join(dir, 'right'), config: gatewayConfig(topo, 'right', esp, tun) });
    env.cleanup(() => right.stop());
    const left: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'left'), config: gatewayConfig(topo, 'left', esp, tun) });
    env.cleanup(() => left.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- left ikeclone (tail) ---\n${left.log().split('\n').slice(-60).join('\n')}\n--- right ikeclone (tail) ---\n${right.log().split('\n').slice(-60).join('\n')}\n`);
    });
    await waitFor(async () => childrenInWorkers(await left.status()) && childrenInWorkers(await right.status()), {
      timeoutMs: 15_000, intervalMs: 100, message: 'Child SA not in the data plane on both ends',
    });
    await waitFor(async () => (await linkExists(topo.left, TUN)) && (await linkExists(topo.right, TUN)), { timeoutMs: 5000, intervalMs: 50, message: 'TUN devices' });
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
    await addRoute(topo.right, topo.leftInnerNet, { dev: TUN, src: topo.rightInner });
    return { topo, left, right };
  }

  /** Ten echo requests each way between the inner addresses, all answered. */
  async function pingBothWays(topo: Topology): Promise<void> {
    const there = await ping(topo.left, topo.rightInner, { count: 10, intervalS: 0.05, src: topo.leftInner });
    expect(there.received, there.result.stdout).toBe(10);
    const back = await ping(topo.right, topo.leftInner, { count: 10, intervalS: 0.05, src: topo.rightInner });
    expect(back.received, back.result.stdout).toBe(10);
  }

  /** TCP checksum errors counted by the namespace's stack (/proc/net/snmp), and the segments it took in. */
  async function tcpInCounters(ns: NetNs): Promise<{ inCsumErrors: number; inSegs: number }> {
    const snmp = await exec(ns, 'cat', ['/proc/net/snmp'], { timeoutMs: 5000 });
    const tcp = snmp.stdout.split('\n').filter((l) => l.startsWith('Tcp:')).map((l) => l.trim().split(/\s+/));
    return { inCsumErrors: Number(tcp[1]![tcp[0]!.indexOf('InCsumErrors')]), inSegs: Number(tcp[1]![tcp[0]!.indexOf('InSegs')]) };
  }

  async function iperf(topo: Topology, seconds = 3): Promise<{ sentBps: number; receivedBps: number; retransmits: number }> {
    const server = spawnIn(topo.right, 'iperf3', ['-s', '-1', '-B', topo.rightInner]);
    env.cleanup(() => server.stop({ graceMs: 1000 }));
    await waitFor(async () => (await exec(topo.right, 'ss', ['-ltn'])).stdout.includes(`${topo.rightInner}:5201`), { timeoutMs: 5000, intervalMs: 50, message: 'iperf3 server' });
    const r = await exec(topo.left, 'iperf3', ['-c', topo.rightInner, '-B', topo.leftInner, '-t', String(seconds), '-J'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr + r.stdout.slice(-2000)).toBe(0);
    const j = JSON.parse(r.stdout) as { end: { sum_sent: { bits_per_second: number; retransmits?: number }; sum_received: { bits_per_second: number } } };
    return { sentBps: j.end.sum_sent.bits_per_second, receivedBps: j.end.sum_received.bits_per_second, retransmits: j.end.sum_sent.retransmits ?? 0 };
  }

  interopTest(
    'UDP-encapsulated ESP: ping both ways and iperf3 for 3 s through the tunnel; every worker path counted, nothing dropped as replay or ICV failure',
    PRE,
    async () => {
      const { topo, left, right } = await setUp('udp', 'udp');
      await pingBothWays(topo);
      const perf = await iperf(topo);
      process.stderr.write(`iperf3 through ikeclone (UDP encap): ${(perf.receivedBps / 1e6).toFixed(1)} Mbit/s received, ${perf.retransmits} retransmits\n`);
      expect(perf.receivedBps).toBeGreaterThan(5e6);
      for (const gw of [left, right]) {
        const st = (await gw.status()).dataplane!;
        expect(st.tun!.name).toBe(TUN);
        expect(st.tun!.rxPackets).toBeGreaterThan(1000);
        expect(st.tun!.txPackets).toBeGreaterThan(1000);
        expect(st.io.espIn).toBeGreaterThan(1000);
        expect(st.rawEsp).toBeNull();
        const drops = st.workers.reduce((n, w) => n + w.drops.replay + w.drops.icv + w.drops.malformed, 0);
        expect(drops).toBe(0);
        expect(st.io.dropUnknownSpi).toBe(0);
        expect(st.io.dropPolicy).toBe(0);
        // Direct output (the default with a TUN device): the workers sent every ESP packet and
        // wrote every decapsulated packet themselves; the I/O thread only read.
        expect(st.output).toBe('workers');
        expect(st.workers.reduce((n, w) => n + w.espSent, 0)).toBe(st.io.espOut);
        expect(st.workers.reduce((n, w) => n + w.innerWritten, 0)).toBe(st.tun!.txPackets);
        expect(st.io.dropSend).toBe(0);
        expect(st.io.espOut).toBeGreaterThan(1000);
      }
      // ESP arrived on the NAT-T port (UDP 4500), not on a raw socket: at the owner workers'
      // own sockets of it, steered by the kernel (dataplane.steering: kernel, the default), so
      // none through the I/O thread's socket.
      const rightWorkers = (await right.status()).dataplane!.workers;
      expect(rightWorkers.reduce((n, w) => n + (w.steered?.in ?? 0), 0)).toBeGreaterThan(1000);
      expect((await right.status()).udp!.espIn).toBe(0);
      // The receiving TUN coalesced the iperf3 stream's segments (GRO) into fewer writes, and the
      // kernel took the GSO packets: no TCP checksum error in the receiving namespace.
      const rx = (await right.status()).dataplane!.tun!;
      expect(rx.txCoalesced).toBeGreaterThan(1000);
      expect(rx.txWrites).toBeLessThan(rx.txPackets / 2);
      const tcp = await tcpInCounters(topo.right);
      expect(tcp.inCsumErrors).toBe(0);
      expect(tcp.inSegs).toBeGreaterThan(100);
      // The sending TUN took the stream as GSO packets (TSO) and split them itself: far fewer
      // reads than packets; the split segments carried valid checksums (InCsumErrors above).
      const tx = (await left.status()).dataplane!.tun!;
      expect(tx.rxSegmented).toBeGreaterThan(1000);
      expect(tx.rxReads).toBeLessThan(tx.rxPackets / 2);
      expect(tx.errors).toBe(0);
      // The sealing worker handed the stream's ESP to the kernel in UDP_SEGMENT runs (one SA, one length), none
      // refused on the veth; the receiver got them as datagrams (espIn above, no ICV failure or replay).
      const sealing = (await left.status()).dataplane!;
      expect(sealing.udpGso!.refused).toBe(0);
      expect(sealing.udpGso!.runs).toBeGreaterThan(100);
      expect(sealing.udpGso!.datagrams).toBeGreaterThan(sealing.udpGso!.runs * 4);
      expect(sealing.udpGso!.datagrams).toBeLessThanOrEqual(sealing.io.espOut);
    },
    60_000,
  );

  interopTest(
    'raw ESP (IP protocol 50) without a NAT: ping both ways and iperf3 for 3 s',
    PRE,
    async () => {
      const { topo, left, right } = await setUp('raw', 'auto');
      await pingBothWays(topo);
      const perf = await iperf(topo);
      process.stderr.write(`iperf3 through ikeclone (raw ESP): ${(perf.receivedBps / 1e6).toFixed(1)} Mbit/s received, ${perf.retransmits} retransmits\n`);
      expect(perf.receivedBps).toBeGreaterThan(1e6);
      for (const gw of [left, right]) {
        const st = await gw.status();
        // Raw ESP is read by its owner workers' filtered raw sockets (io/raw-esp-steering.ts), none by the I/O thread's.
        expect(st.dataplane!.rawEsp!.workers).toBe(true);
        expect(st.dataplane!.workers.reduce((n, w) => n + (w.steered?.in ?? 0), 0)).toBeGreaterThan(10);
        expect(st.dataplane!.rawEsp!.packetsIn).toBe(0);
        expect(st.dataplane!.rawEsp!.backend).toBe('batched');
        expect(st.udp!.espIn).toBe(0);
        // The workers sent the raw ESP through their own descriptors of the raw socket.
        expect(st.dataplane!.output).toBe('workers');
        expect(st.dataplane!.rawEsp!.packetsOut).toBe(0);
        expect(st.dataplane!.workers.reduce((n, w) => n + w.espSent, 0)).toBeGreaterThan(10);
      }
    },
    60_000,
  );

  interopTest(
    'TUN without offloads, two queues (IFF_MULTI_QUEUE): one read and one write per packet; ping both ways and iperf3 for 2 s',
    PRE,
    async () => {
      const { topo, left, right } = await setUp('plain', 'udp', { tun_queues: 2, tun_offload: false });
      // The kernel's own view of the devices: no virtio_net_hdr framing, two queues attached.
      for (const ns of [topo.left, topo.right]) {
        const link = await exec(ns, 'ip', ['-d', 'link', 'show', TUN]);
        expect(link.stdout).toMatch(/\bvnet_hdr off\b/);
        expect(link.stdout).toMatch(/\bmulti_queue numqueues 2\b/);
      }
      await pingBothWays(topo);
      const perf = await iperf(topo, 2);
      process.stderr.write(`iperf3 through ikeclone (TUN without offloads, 2 queues): ${(perf.receivedBps / 1e6).toFixed(1)} Mbit/s received, ${perf.retransmits} retransmits\n`);
      expect(perf.receivedBps).toBeGreaterThan(1e6);
      for (const gw of [left, right]) {
        const st = (await gw.status()).dataplane!;
        const tun = st.tun!;
        expect(tun.rxPackets).toBeGreaterThan(100);
        expect(tun.txPackets).toBeGreaterThan(100);
        // Every packet its own read and its own write: nothing split, nothing coalesced.
        expect(tun.rxSegmented).toBe(0);
        expect(tun.rxReads).toBe(tun.rxPackets);
        expect(tun.txCoalesced).toBe(0);
        expect(tun.txWrites).toBe(tun.txPackets + tun.txDropped);
        expect(tun.errors).toBe(0);
        // Written by the workers, one write(2) each, through their own descriptors of the queues.
        expect(st.workers.reduce((n, w) => n + w.innerWritten, 0)).toBe(tun.txPackets);
        expect(st.workers.reduce((n, w) => n + w.drops.replay + w.drops.icv + w.drops.malformed, 0)).toBe(0);
        expect(st.io.dropUnknownSpi).toBe(0);
      }
      // The inner stacks checksummed their own segments; none arrived corrupted.
      for (const ns of [topo.left, topo.right]) expect((await tcpInCounters(ns)).inCsumErrors).toBe(0);
    },
    60_000,
  );

  interopTest(
    'output: io-thread: the workers hand their output back through the rings and the I/O thread sends and writes it; ping both ways and iperf3 for 2 s',
    PRE,
    async () => {
      const { topo, left, right } = await setUp('io-thread', 'udp', { output: 'io-thread' });
      await pingBothWays(topo);
      const perf = await iperf(topo, 2);
      process.stderr.write(`iperf3 through ikeclone (output: io-thread): ${(perf.receivedBps / 1e6).toFixed(1)} Mbit/s received, ${perf.retransmits} retransmits
`);
      expect(perf.receivedBps).toBeGreaterThan(1e6);
      for (const gw of [left, right]) {
        const st = (await gw.status()).dataplane!;
        expect(st.output).toBe('io-thread');
        expect(st.workers.every((w) => w.espSent === 0 && w.innerWritten === 0)).toBe(true);
        expect(st.io.espOut).toBeGreaterThan(100);
        expect(st.tun!.txPackets).toBeGreaterThan(100);
        expect(st.tun!.errors).toBe(0);
        expect(st.workers.reduce((n, w) => n + w.drops.replay + w.drops.icv + w.drops.malformed + w.drops.queueFull, 0)).toBe(0);
      }
      // The UDP transport's own sends: what the I/O thread sent.
      expect((await left.status()).udp!.espOut).toBeGreaterThan(100);
    },
    60_000,
  );

  interopTest(
    'tunnel_mtu: ping -M do past the tunnel MTU is answered "fragmentation needed" with that MTU (RFC 4301 §8.2); smaller pings cross',
    PRE,
    async () => {
      const { topo, left } = await setUp('path-mtu', 'udp', { tunnel_mtu: 1300, icmp_rate: 100 });
      const big = await exec(topo.left, 'ping', ['-n', '-c', '3', '-i', '0.2', '-W', '1', '-M', 'do', '-s', '1372', '-I', topo.leftInner, topo.rightInner], { timeoutMs: 15_000 });
      // The first answer comes from the gateway as ICMP; later attempts meet the route's learned PMTU.
      expect(big.stdout + big.stderr, big.stdout + big.stderr + JSON.stringify((await left.status()).dataplane!.io)).toMatch(/mtu ?= ?1300/i);
      const st = (await left.status()).dataplane!;
      expect(st.io.dropTooBig).toBeGreaterThanOrEqual(1);
      expect(st.io.icmpTooBig).toBeGreaterThanOrEqual(1);
      // 1272 + 28 = 1300 bytes fit; 1273 would not.
      const fits = await exec(topo.left, 'ping', ['-n', '-c', '3', '-i', '0.2', '-W', '1', '-M', 'do', '-s', '1272', '-I', topo.leftInner, topo.rightInner], { timeoutMs: 15_000 });
      expect(fits.stdout).toMatch(/3 received/);
    },
    60_000,
  );
});
