// IPv6 end to end in network namespaces: two ikeclone gateways (the built
// CLI) with TUN devices, IKE and ESP between IPv6 outer addresses, over
// UDP-encapsulated ESP (RFC 3948) and over raw ESP (IP protocol 50), carrying
// IPv6 and IPv4 inner traffic (ping, iperf3); a virtual IPv6 (and IPv4)
// address leased with the Configuration payload (RFC 7296 §2.19) and used;
// and ikeclone <-> charon (kernel-libipsec, UDP-encapsulated) over IPv6.
// Addresses: test/support/netns6.ts (fd00:<index>:...), IPv4 inner subnets
// from netns.ts; DAD is off in the namespaces.
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { addRoute, createTopology, exec, ping, spawnIn } from './support/netns.js';
import type { NetNs, Topology } from './support/netns.js';
import { addAddress6, addIpv6, addRoute6, ping6 } from './support/netns6.js';
import type { Topology6 } from './support/netns6.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import type { GatewayStatus } from '../control/status.js';
import { tunUnavailable } from '../io/tun.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'iperf3'];
const PRE_CHARON: PrereqName[] = [...PRE, 'charon', 'swanctl'];
const PSK = 'ipv6-netns-test-psk-0123456789abcdef';
const TUN = 'ikc0';

type Side = 'left' | 'right';

/** Child selectors of a side: both inner subnets (IPv4 and IPv6), or what `children` says. */
function gatewayConfig(t6: Topology6, side: Side, esp: 'udp' | 'auto', connection: Record<string, unknown>): Record<string, unknown> {
  const [me, peer] = side === 'left' ? [t6.leftOuter, t6.rightOuter] : [t6.rightOuter, t6.leftOuter];
  return {
    log: { level: 'debug' },
    listen: { address: me, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    dataplane: { workers: 2, tun: TUN, esp },
    connections: {
      peer: {
        local_addrs: [me],
        remote_addrs: [peer],
        ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: `${side}.ipv6.test`, auth: 'psk' },
        remote: { id: `${side === 'left' ? 'right' : 'left'}.ipv6.test`, auth: 'psk' },
        psk: PSK,
        ...(side === 'left' ? { start_action: 'start' } : {}),
        ...connection,
      },
    },
  };
}

function bothFamilies(topo: Topology, t6: Topology6, side: Side): Record<string, unknown> {
  const [local, remote] = side === 'left' ? [[topo.leftInnerNet, t6.leftInnerNet], [topo.rightInnerNet, t6.rightInnerNet]] : [[topo.rightInnerNet, t6.rightInnerNet], [topo.leftInnerNet, t6.leftInnerNet]];
  return { children: { net: { local_ts: local, remote_ts: remote, esp: ['aes128gcm16'] } } };
}

function childrenInWorkers(st: GatewayStatus): boolean {
  const children = st.ikeSas.flatMap((s) => s.children);
  return children.length > 0 && children.every((c) => typeof c.worker === 'number');
}

async function linkExists(ns: NetNs, dev: string): Promise<boolean> {
  return (await exec(ns, 'ip', ['link', 'show', dev])).code === 0;
}

describe('IPv6 end to end: ikeclone <-> ikeclone and ikeclone <-> charon over IPv6 outer addresses', () => {
  const env = useNetnsSuite('ipv6', PRE);

  async function topology(): Promise<{ topo: Topology; t6: Topology6 }> {
    const missing = tunUnavailable();
    if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
    const topo = await createTopology({ labels: ['left', 'right'] });
    env.cleanup(() => topo.destroy());
    return { topo, t6: await addIpv6(topo) };
  }

  async function gateways(name: string, topo: Topology, t6: Topology6, esp: 'udp' | 'auto', left: Record<string, unknown>, right: Record<string, unknown>) {
    const dir = env.dir(name);
    const r: Ikeclone = await startIkeclone(topo.right, { dir: join(dir, 'right'), config: gatewayConfig(t6, 'right', esp, right) });
    env.cleanup(() => r.stop());
    const l: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'left'), config: gatewayConfig(t6, 'left', esp, left) });
    env.cleanup(() => l.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- left ikeclone (tail) ---\n${l.log().split('\n').slice(-60).join('\n')}\n--- right ikeclone (tail) ---\n${r.log().split('\n').slice(-60).join('\n')}\n`);
    });
    await waitFor(async () => childrenInWorkers(await l.status()) && childrenInWorkers(await r.status()), {
      timeoutMs: 15_000, intervalMs: 100, message: 'Child SA not in the data plane on both ends',
    });
    await waitFor(async () => (await linkExists(topo.left, TUN)) && (await linkExists(topo.right, TUN)), { timeoutMs: 5000, intervalMs: 50, message: 'TUN devices' });
    return { left: l, right: r };
  }

  /** Routes to the other side's inner subnets (both families) through the TUN devices. */
  async function innerRoutes(topo: Topology, t6: Topology6, sides: Side[] = ['left', 'right']): Promise<void> {
    if (sides.includes('left')) {
      await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
      await addRoute6(topo.left, t6.rightInnerNet, { dev: TUN, src: t6.leftInner });
    }
    if (sides.includes('right')) {
      await addRoute(topo.right, topo.leftInnerNet, { dev: TUN, src: topo.rightInner });
      await addRoute6(topo.right, t6.leftInnerNet, { dev: TUN, src: t6.rightInner });
    }
  }

  /** Ten echo requests each way, IPv6 and IPv4, between the inner addresses: all answered. */
  async function pingBothFamilies(topo: Topology, t6: Topology6): Promise<void> {
    for (const [ns, dst, src] of [[topo.left, t6.rightInner, t6.leftInner], [topo.right, t6.leftInner, t6.rightInner]] as const) {
      const r = await ping6(ns, dst, { count: 10, intervalS: 0.05, waitS: 5, src });
      expect(r.received, r.result.stdout + r.result.stderr).toBe(10);
    }
    for (const [ns, dst, src] of [[topo.left, topo.rightInner, topo.leftInner], [topo.right, topo.leftInner, topo.rightInner]] as const) {
      const r = await ping(ns, dst, { count: 10, intervalS: 0.05, waitS: 5, src });
      expect(r.received, r.result.stdout + r.result.stderr).toBe(10);
    }
  }

  /** A bounded iperf3 run from `client` (in left) to `server` (in right); received bits per second. */
  async function iperf(topo: Topology, server: string, client: string, seconds = 2): Promise<number> {
    const proc = spawnIn(topo.right, 'iperf3', ['-s', '-1', '-B', server]);
    env.cleanup(() => proc.stop({ graceMs: 1000 }));
    const listening = server.includes(':') ? `[${server}]:5201` : `${server}:5201`;
    await waitFor(async () => (await exec(topo.right, 'ss', ['-ltn'])).stdout.includes(listening), { timeoutMs: 5000, intervalMs: 50, message: 'iperf3 server' });
    const r = await exec(topo.left, 'iperf3', ['-c', server, '-B', client, '-t', String(seconds), '-J'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr + r.stdout.slice(-2000)).toBe(0);
    return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
  }

  /** Both gateways: the IKE SA runs between the IPv6 outer addresses; no ESP failed its checks. */
  async function overIpv6(gw: Ikeclone, local: string, remote: string): Promise<GatewayStatus> {
    const st = await gw.status();
    const sa = st.ikeSas.find((s) => s.state === 'established')!;
    expect(sa.local).toContain(local);
    expect(sa.remote).toContain(remote);
    const dp = st.dataplane!;
    expect(dp.workers.reduce((n, w) => n + w.drops.replay + w.drops.icv + w.drops.malformed, 0)).toBe(0);
    expect(dp.io.dropUnknownSpi).toBe(0);
    expect(dp.io.dropPolicy).toBe(0);
    return st;
  }

  interopTest(
    'UDP-encapsulated ESP between IPv6 outer addresses: IPv6 and IPv4 inner ping both ways, iperf3 over IPv6 and over IPv4 inside',
    PRE,
    async () => {
      const { topo, t6 } = await topology();
      const { left, right } = await gateways('udp', topo, t6, 'udp', bothFamilies(topo, t6, 'left'), bothFamilies(topo, t6, 'right'));
      await innerRoutes(topo, t6);
      await pingBothFamilies(topo, t6);
      const v6 = await iperf(topo, t6.rightInner, t6.leftInner);
      const v4 = await iperf(topo, topo.rightInner, topo.leftInner);
      process.stderr.write(`iperf3 through ikeclone over IPv6 (UDP encap): ${(v6 / 1e6).toFixed(1)} Mbit/s IPv6 inside, ${(v4 / 1e6).toFixed(1)} Mbit/s IPv4 inside\n`);
      expect(v6).toBeGreaterThan(1e6);
      expect(v4).toBeGreaterThan(1e6);
      for (const [gw, me, peer] of [[left, t6.leftOuter, t6.rightOuter], [right, t6.rightOuter, t6.leftOuter]] as const) {
        const st = await overIpv6(gw, me, peer);
        // ESP in UDP 4500 over IPv6, none raw; the SA selects both families.
        // (The sender of the iperf3 stream receives only its ACKs, fewer under load: bounds well below either.)
        // The kernel steers it to the workers' own sockets (dataplane.steering: kernel, the default).
        expect(st.dataplane!.workers.reduce((n, w) => n + (w.steered?.in ?? 0), 0)).toBeGreaterThan(100);
        expect(st.udp!.espIn).toBe(0);
        expect(st.dataplane!.rawEsp).toBeNull();
        expect(st.dataplane!.workers.reduce((n, w) => n + w.espSent, 0)).toBeGreaterThan(100);
        expect(st.ikeSas[0]!.children[0]!.localTs.join(' ')).toMatch(/fd00:/);
      }
    },
    90_000,
  );

  interopTest(
    'raw ESP (IP protocol 50) between IPv6 outer addresses: IPv6 and IPv4 inner ping both ways and iperf3; the IPv6 raw socket carried it',
    PRE,
    async () => {
      const { topo, t6 } = await topology();
      const { left, right } = await gateways('raw', topo, t6, 'auto', bothFamilies(topo, t6, 'left'), bothFamilies(topo, t6, 'right'));
      await innerRoutes(topo, t6);
      await pingBothFamilies(topo, t6);
      const v6 = await iperf(topo, t6.rightInner, t6.leftInner);
      process.stderr.write(`iperf3 through ikeclone over IPv6 (raw ESP): ${(v6 / 1e6).toFixed(1)} Mbit/s\n`);
      expect(v6).toBeGreaterThan(1e6);
      for (const [gw, me, peer] of [[left, t6.leftOuter, t6.rightOuter], [right, t6.rightOuter, t6.leftOuter]] as const) {
        const st = await overIpv6(gw, me, peer);
        const raw = st.dataplane!.rawEsp!;
        expect(raw.ipv6).toBe(true);
        expect(raw.backend).toBe('batched');
        expect(raw.packetsIn).toBeGreaterThan(100);
        expect(raw.malformed).toBe(0);
        expect(st.udp!.espIn).toBe(0);
        expect(st.ikeSas[0]!.children[0]!.udpEncap).toBe(false);
        // The workers sent the ESP through their own descriptors of the IPv6 raw socket.
        expect(st.dataplane!.workers.reduce((n, w) => n + w.espSent, 0)).toBeGreaterThan(100);
        expect(raw.packetsOut).toBe(0);
      }
    },
    90_000,
  );

  interopTest(
    'virtual IPs: the initiator asks for vips [0.0.0.0, ::] over IPv6, gets one of each from the responder pools with DNS servers, and pings and runs iperf3 from them',
    PRE,
    async () => {
      const { topo, t6 } = await topology();
      const { pools: [pool4, pool6], vips: [vip4, vip6], dns } = vipPlan(topo);
      const leftConn = {
        vips: ['0.0.0.0', '::'],
        children: { net: { local_ts: ['dynamic'], remote_ts: [topo.rightInnerNet, t6.rightInnerNet], esp: ['aes128gcm16'] } },
      };
      const rightConn = {
        pools: [pool4, pool6],
        dns,
        children: { net: { local_ts: [topo.rightInnerNet, t6.rightInnerNet], remote_ts: ['dynamic'], esp: ['aes128gcm16'] } },
      };
      const { left, right } = await gateways('vip', topo, t6, 'udp', leftConn, rightConn);
      await leasedToLeft(left, topo, t6, [vip4, vip6], dns);
      expect((await right.status()).ikeSas[0]!.peerVirtualIps).toEqual([vip4, vip6]);
      await addRoute(topo.right, pool4, { dev: TUN });
      await addRoute6(topo.right, pool6, { dev: TUN });
      await pingFromVirtualIps(topo, t6, [vip4, vip6]);
      const back6 = await ping6(topo.right, vip6, { count: 10, intervalS: 0.05, waitS: 5, src: t6.rightInner });
      expect(back6.received, back6.result.stdout).toBe(10);
      const bps = await iperf(topo, t6.rightInner, vip6);
      expect(bps).toBeGreaterThan(1e6);
      await overIpv6(left, t6.leftOuter, t6.rightOuter);
      await overIpv6(right, t6.rightOuter, t6.leftOuter);
    },
    90_000,
  );

  /**
   * The left gateway holds exactly these virtual IPs and DNS servers and its Child SA selects
   * the addresses; then the operator's part (architecture §6): the addresses on lo, and routes
   * to the right's inner subnets through the TUN device from them.
   */
  async function leasedToLeft(gw: Ikeclone, topo: Topology, t6: Topology6, [vip4, vip6]: readonly [string, string], dns: string[]): Promise<void> {
    const mine = (await gw.status()).ikeSas[0]!;
    expect(mine.virtualIps).toEqual([vip4, vip6]);
    expect(mine.dns).toEqual(dns);
    expect(mine.children[0]!.localTs).toEqual([`${vip4}/32`, `${vip6}/128`]);
    await exec(topo.left, 'ip', ['addr', 'add', `${vip4}/32`, 'dev', 'lo']);
    await addAddress6(topo.left, `${vip6}/128`);
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: vip4 });
    await addRoute6(topo.left, t6.rightInnerNet, { dev: TUN, src: vip6 });
  }

  /** Ten echo requests from each left virtual IP to the right's inner address of its family, all answered. */
  async function pingFromVirtualIps(topo: Topology, t6: Topology6, [vip4, vip6]: readonly [string, string]): Promise<void> {
    const there6 = await ping6(topo.left, t6.rightInner, { count: 10, intervalS: 0.05, waitS: 5, src: vip6 });
    expect(there6.received, there6.result.stdout).toBe(10);
    const there4 = await ping(topo.left, topo.rightInner, { count: 10, intervalS: 0.05, waitS: 5, src: vip4 });
    expect(there4.received, there4.result.stdout).toBe(10);
  }

  /** How a charon test differs: charon's selectors and options, its pools, ikeclone's connection, who initiates. */
  interface CharonPeer {
    charonTs: { localTs: string; remoteTs: string; ikeOptions?: string };
    extraSwanctl?: string;
    ikeclone: Record<string, unknown>;
    charonInitiates: boolean;
  }

  /** charon in the right namespace, ikeclone (TUN data plane) in the left, over the IPv6 outer addresses; resolves once both have the Child SA. */
  async function charonPeer(name: string, topo: Topology, t6: Topology6, o: CharonPeer): Promise<{ charon: Charon; ikc: Ikeclone }> {
    const connections = pskConnection({
      localAddrs: t6.rightOuter,
      remoteAddrs: t6.leftOuter,
      proposals: 'aes256gcm16-prfsha256-x25519',
      esp: 'aes128gcm16',
      localId: 'charon.ipv6.test',
      remoteId: 'ikeclone.ipv6.test',
      ...o.charonTs,
    });
    const dir = env.dir(name);
    const charon: Charon = await startCharon(topo.right, {
      dir: join(dir, 'charon'), connections, secrets: pskSecrets('ipv6', ['charon.ipv6.test', 'ikeclone.ipv6.test'], PSK), installRoutes: true,
      ...(o.extraSwanctl ? { extraSwanctl: o.extraSwanctl } : {}),
    });
    env.cleanup(() => charon.stop());
    const config = gatewayConfig(t6, 'left', 'auto', {
      local: { id: 'ikeclone.ipv6.test', auth: 'psk' },
      remote: { id: 'charon.ipv6.test', auth: 'psk' },
      start_action: o.charonInitiates ? 'none' : 'start',
      ...o.ikeclone,
    });
    const ikc: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'ikeclone'), config });
    env.cleanup(() => ikc.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-60).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`);
    });
    if (o.charonInitiates) await charon.initiate('net', 'ikeclone');
    await waitFor(
      async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        return childrenInWorkers(st) && sas.some((s) => s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'));
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'IKE SA and Child SA not established (and in the data plane) on both ends' },
    );
    await waitFor(async () => linkExists(topo.left, TUN), { timeoutMs: 5000, intervalMs: 50, message: 'TUN device' });
    return { charon, ikc };
  }

  /** The first pool addresses (IPv4, IPv6) and DNS servers of the virtual IP tests, in 10.<index>.99.0/24 and fd00:<index>:99::/112. */
  function vipPlan(topo: Topology) {
    const x = topo.index.toString(16);
    return {
      pools: [`10.${topo.index}.99.0/24`, `fd00:${x}:99::/112`] as const,
      vips: [`10.${topo.index}.99.1`, `fd00:${x}:99::1`] as const,
      dns: [`10.${topo.index}.99.53`, `fd00:${x}:99::53`],
    };
  }

  interopTest(
    'virtual IPs from charon: ikeclone asks for vips [0.0.0.0, ::] over IPv6, takes charon\'s INTERNAL_IP6_ADDRESS and DNS servers, and pings from both addresses',
    PRE_CHARON,
    async () => {
      const { topo, t6 } = await topology();
      const { pools, vips: [vip4, vip6], dns } = vipPlan(topo);
      const { ikc } = await charonPeer('swan-vip-i', topo, t6, {
        charonTs: { localTs: `${topo.rightInnerNet},${t6.rightInnerNet}`, remoteTs: 'dynamic', ikeOptions: 'pools = p4,p6' },
        extraSwanctl: `pools {\n  p4 {\n    addrs = ${pools[0]}\n    dns = ${dns[0]}\n  }\n  p6 {\n    addrs = ${pools[1]}\n    dns = ${dns[1]}\n  }\n}`,
        ikeclone: { vips: ['0.0.0.0', '::'], children: { net: { local_ts: ['dynamic'], remote_ts: [topo.rightInnerNet, t6.rightInnerNet], esp: ['aes128gcm16'] } } },
        charonInitiates: false,
      });
      await leasedToLeft(ikc, topo, t6, [vip4, vip6], dns);
      await pingFromVirtualIps(topo, t6, [vip4, vip6]);
      await overIpv6(ikc, t6.leftOuter, t6.rightOuter);
    },
    90_000,
  );

  interopTest(
    'virtual IPs for charon: charon asks for vips 0.0.0.0,:: over IPv6, ikeclone leases one of each from its pools with DNS servers, and charon pings from both',
    PRE_CHARON,
    async () => {
      const { topo, t6 } = await topology();
      const { pools, vips: [vip4, vip6], dns } = vipPlan(topo);
      // The harness's charon leaves virtual IPs off its interfaces (install_virtual_ip = no), but its
      // routes through ipsec0 take them as source: the addresses the pools hand out first go on lo now.
      await exec(topo.right, 'ip', ['addr', 'add', `${vip4}/32`, 'dev', 'lo']);
      await addAddress6(topo.right, `${vip6}/128`);
      const { charon, ikc } = await charonPeer('swan-vip-r', topo, t6, {
        charonTs: { localTs: 'dynamic', remoteTs: `${topo.leftInnerNet},${t6.leftInnerNet}`, ikeOptions: 'vips = 0.0.0.0,::' },
        ikeclone: { pools: [...pools], dns, children: { net: { local_ts: [topo.leftInnerNet, t6.leftInnerNet], remote_ts: ['dynamic'], esp: ['aes128gcm16'] } } },
        charonInitiates: true,
      });
      expect((await ikc.status()).ikeSas[0]!.peerVirtualIps).toEqual([vip4, vip6]);
      const theirs = (await charon.listSas()).find((s) => s.state === 'ESTABLISHED')!.children.find((c) => c.state === 'INSTALLED')!;
      expect([...theirs.localTs].sort()).toEqual([`${vip4}/32`, `${vip6}/128`].sort());
      // charon received the DNS servers of both families too (it has no resolver plugin to hand them to).
      expect(charon.log()).toContain('processing INTERNAL_IP4_DNS attribute');
      expect(charon.log()).toContain('processing INTERNAL_IP6_DNS attribute');
      // charon routes through its ipsec0 from the leased addresses (install_routes); ikeclone routes the pools into its TUN device.
      await addRoute(topo.left, pools[0], { dev: TUN });
      await addRoute6(topo.left, pools[1], { dev: TUN });
      const there6 = await ping6(topo.right, t6.leftInner, { count: 10, intervalS: 0.05, waitS: 5, src: vip6 });
      expect(there6.received, there6.result.stdout).toBe(10);
      const there4 = await ping(topo.right, topo.leftInner, { count: 10, intervalS: 0.05, waitS: 5, src: vip4 });
      expect(there4.received, there4.result.stdout).toBe(10);
      await overIpv6(ikc, t6.leftOuter, t6.rightOuter);
    },
    90_000,
  );

  for (const charonInitiates of [false, true]) {
    interopTest(
      `ikeclone <-> charon over IPv6 outer addresses (${charonInitiates ? 'charon' : 'ikeclone'} initiates): IPv6 and IPv4 inner ping both ways, iperf3 over IPv6 inside`,
      PRE_CHARON,
      async () => {
        const { topo, t6 } = await topology();
        const { charon, ikc } = await charonPeer(charonInitiates ? 'swan-r' : 'swan-i', topo, t6, {
          charonTs: { localTs: `${topo.rightInnerNet},${t6.rightInnerNet}`, remoteTs: `${topo.leftInnerNet},${t6.leftInnerNet}` },
          ikeclone: bothFamilies(topo, t6, 'left'),
          charonInitiates,
        });
        // charon routes through its ipsec0 itself (install_routes); ikeclone's routes are the operator's.
        await innerRoutes(topo, t6, ['left']);
        await pingBothFamilies(topo, t6);
        const bps = await iperf(topo, t6.rightInner, t6.leftInner);
        process.stderr.write(`iperf3 ikeclone -> charon over IPv6: ${(bps / 1e6).toFixed(1)} Mbit/s\n`);
        expect(bps).toBeGreaterThan(1e6);
        const st = await overIpv6(ikc, t6.leftOuter, t6.rightOuter);
        // kernel-libipsec always encapsulates in UDP (RFC 3948), over IPv6 too.
        expect(st.ikeSas[0]!.children[0]!.udpEncap).toBe(true);
        // The kernel steers it to the workers' own sockets (dataplane.steering: kernel, the default).
        expect(st.dataplane!.workers.reduce((n, w) => n + (w.steered?.in ?? 0), 0)).toBeGreaterThan(100);
        expect(st.udp!.espIn).toBe(0);
        const sa = (await charon.listSas()).find((s) => s.state === 'ESTABLISHED')!;
        expect(sa.localHost).toBe(t6.rightOuter);
        const child = sa.children.find((c) => c.state === 'INSTALLED')!;
        expect(child.packetsIn).toBeGreaterThan(100);
        expect(child.packetsOut).toBeGreaterThan(10);
      },
      90_000,
    );
  }
});
