// The outer header of tunnel ESP between two ikeclone gateways in network
// namespaces (RFC 4301 §5.1.2.1, §8.1; RFC 6040), seen by tshark on the
// wire: DSCP and ECN copied from the inner packet or set by the child's
// options, DF copied or cleared, and an outer CE mark (set by nftables on
// the way, as a congested router would) carried into the decapsulated packet
// on the far side's TUN device, or the packet dropped when it is Not-ECT;
// the same through the I/O thread both ways (dataplane output and steering
// io-thread: ESP sent from the workers' out rings, received by the I/O
// thread and handed to the owner worker with its outer TOS in the ring), and
// for raw ESP over IPv6, which the I/O thread reads whatever the steering.
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { addRoute, createTopology, exec, execChecked } from './support/netns.js';
import type { NetNs, Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import { decode, startCapture } from './support/tshark.js';
import type { GatewayStatus } from '../control/status.js';
import { ikeclonePeerConfig } from './support/ikeclone-pair-config.js';
import { addIpv6, type Topology6 } from './support/netns6.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'native', 'tshark', 'nftables'];
const PSK = 'outer-header-netns-test-psk-0123456789';
const TUN = 'ikc0';

type ChildOptions = { dscp?: 'copy' | number; ecn?: 'normal' | 'off'; df?: 'copy' | 'set' | 'clear' };

/** `t6`: IKE and ESP between the IPv6 outer addresses instead (inner traffic stays IPv4). */
function gatewayConfig(topo: Topology, side: 'left' | 'right', child: ChildOptions, esp: 'udp' | 'auto' = 'udp', dataplane: Record<string, unknown> = {}, t6?: Topology6): Record<string, unknown> {
  const other = side === 'left' ? 'right' : 'left';
  const config = ikeclonePeerConfig(topo, {
    side, localId: `${side}.outer.test`, remoteId: `${other}.outer.test`, psk: PSK,
    dataplane: { workers: 2, tun: TUN, esp, ...dataplane },
    ...(side === 'left' ? { connection: { start_action: 'start' } } : {}),
    child,
  });
  if (!t6) return config;
  const [me, peer] = side === 'left' ? [t6.leftOuter, t6.rightOuter] : [t6.rightOuter, t6.leftOuter];
  const c = config as { listen: Record<string, unknown>; connections: { peer: Record<string, unknown> } };
  return { ...config, listen: { ...c.listen, address: me }, connections: { peer: { ...c.connections.peer, local_addrs: [me], remote_addrs: [peer] } } };
}

function childrenInWorkers(st: GatewayStatus): boolean {
  const children = st.ikeSas.flatMap((s) => s.children);
  return children.length > 0 && children.every((c) => typeof c.worker === 'number');
}

/** `count` echo requests with IP TOS `tos` and DF set ('do') or clear ('dont'); bounded. */
async function pingWith(ns: NetNs, src: string, dst: string, tos: number, df: 'do' | 'dont', count = 3): Promise<string> {
  const r = await exec(ns, 'ping', ['-n', '-q', '-c', String(count), '-i', '0.05', '-W', '1', '-Q', String(tos), '-M', df, '-I', src, dst], { timeoutMs: 10_000 });
  return r.stdout + r.stderr;
}

describe('outer header of tunnel ESP (DSCP, ECN, DF) seen on the wire', () => {
  const env = useNetnsSuite('outer', PRE);

  async function setUp(name: string, left: ChildOptions, right: ChildOptions, esp: 'udp' | 'auto' = 'udp', dataplane: Record<string, unknown> = {}, ipv6 = false) {
    const topo = await createTopology({ labels: ['left', 'right'] });
    env.cleanup(() => topo.destroy());
    const t6 = ipv6 ? await addIpv6(topo) : undefined;
    const dir = env.dir(name);
    const r = await startIkeclone(topo.right, { dir: join(dir, 'right'), config: gatewayConfig(topo, 'right', right, esp, dataplane, t6) });
    env.cleanup(() => r.stop());
    const l = await startIkeclone(topo.left, { dir: join(dir, 'left'), config: gatewayConfig(topo, 'left', left, esp, dataplane, t6) });
    env.cleanup(() => l.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- left ikeclone (tail) ---\n${l.log().split('\n').slice(-40).join('\n')}\n--- right ikeclone (tail) ---\n${r.log().split('\n').slice(-40).join('\n')}\n`);
    });
    await waitFor(async () => childrenInWorkers(await l.status()) && childrenInWorkers(await r.status()), {
      timeoutMs: 15_000, intervalMs: 100, message: 'Child SA not in the data plane on both ends',
    });
    await waitFor(async () => (await exec(topo.left, 'ip', ['link', 'show', TUN])).code === 0 && (await exec(topo.right, 'ip', ['link', 'show', TUN])).code === 0, {
      timeoutMs: 5000, intervalMs: 50, message: 'TUN devices',
    });
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
    await addRoute(topo.right, topo.leftInnerNet, { dev: TUN, src: topo.rightInner });
    return { topo, left: l, right: r };
  }

  interopTest('copied: DSCP and ECN of the inner packet on the outer header, DF as the inner one; fixed DSCP, ECN off and DF clear from the right', PRE, async () => {
    const { topo } = await setUp('copy', {}, { dscp: 10, ecn: 'off', df: 'clear' });
    const l = topo.links[0]!;
    const capture = await startCapture(topo.left, l.aIf, { file: env.dir('copy.pcap'), filter: 'udp port 4500' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    // Left -> right: EF with ECT(1), DF set; then AF11 with ECT(0), DF clear. Right -> left: CS5 with CE, DF set.
    const out1 = await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb9, 'do');
    const out2 = await pingWith(topo.left, topo.leftInner, topo.rightInner, 0x2a, 'dont');
    const out3 = await pingWith(topo.right, topo.rightInner, topo.leftInner, 0xa3, 'do');
    for (const out of [out1, out2, out3]) expect(out).toMatch(/3 received/);
    await capture.stop({ minPackets: 18, timeoutMs: 8000 });
    const rows = await decode(capture.file, { fields: ['ip.src', 'ip.dsfield', 'ip.flags.df', 'esp.sequence'], displayFilter: 'esp' });
    const seen = (src: string) => rows.filter((r) => r[0] === src).map((r) => `${r[1]}/${r[2]}`);
    const fromLeft = seen(l.aAddr);
    const fromRight = seen(l.bAddr);
    // Echo requests leave the left with the request's header; replies (Linux copies the request's TOS) come back the same way.
    expect(fromLeft.filter((x) => x.startsWith('0xb9/')).length, fromLeft.join(' ')).toBe(3);
    expect(fromLeft.filter((x) => x === '0xb9/1' || x === '0xb9/True').length, fromLeft.join(' ')).toBe(3);
    expect(fromLeft.filter((x) => x === '0x2a/0' || x === '0x2a/False').length, fromLeft.join(' ')).toBe(3);
    // The right sets DSCP 10 (0x28), ECN off (Not-ECT) and clears DF on everything it sends.
    expect(fromRight.length, fromRight.join(' ')).toBeGreaterThanOrEqual(9);
    expect(fromRight.every((x) => x === '0x28/0' || x === '0x28/False'), fromRight.join(' ')).toBe(true);
  });

  interopTest('raw ESP (IP protocol 50): the outer TOS is copied or fixed the same way', PRE, async () => {
    const { topo } = await setUp('raw', {}, { dscp: 10, ecn: 'off' }, 'auto');
    const l = topo.links[0]!;
    const capture = await startCapture(topo.left, l.aIf, { file: env.dir('raw.pcap'), filter: 'ip proto 50' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    expect(await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb9, 'do')).toMatch(/3 received/);
    await capture.stop({ minPackets: 6, timeoutMs: 8000 });
    const rows = await decode(capture.file, { fields: ['ip.src', 'ip.dsfield', 'ip.proto'], displayFilter: 'esp' });
    const from = (src: string) => rows.filter((r) => r[0] === src).map((r) => `${r[1]}/${r[2]}`);
    expect(from(l.aAddr), rows.join(' ')).toEqual(['0xb9/50', '0xb9/50', '0xb9/50']);
    expect(from(l.bAddr), rows.join(' ')).toEqual(['0x28/50', '0x28/50', '0x28/50']);
  });

  interopTest('an outer CE mark on the way reaches the decapsulated packet; over a Not-ECT one it drops it, counted (RFC 6040 §4.2)', PRE, async () => {
    const { topo, right } = await setUp('ecn', {}, {});
    // Every outer packet from the left leaves marked CE, as from a congested router.
    await markCe(topo.left, topo.links[0]!.aIf, 'udp');
    await expectCeCombined(topo, right, 'ecn');
  });

  /** Every outer packet leaving `ns` on `ifname` to UDP port 4500 or of IP protocol 50 (IPv4, or IPv6: raw6) is marked CE, as by a congested router. */
  async function markCe(ns: NetNs, ifname: string, what: 'udp' | 'raw' | 'raw6'): Promise<void> {
    const [family, ip] = what === 'raw6' ? ['ip6', 'ip6'] : ['ip', 'ip'];
    await execChecked(ns, 'nft', ['add', 'table', family, 'ikc_ecn']);
    await execChecked(ns, 'nft', ['add', 'chain', family, 'ikc_ecn', 'out', '{ type filter hook postrouting priority 0; }']);
    const match = what === 'udp' ? ['udp', 'dport', '4500'] : ['meta', 'l4proto', 'esp'];
    await execChecked(ns, 'nft', ['add', 'rule', family, 'ikc_ecn', 'out', 'oifname', ifname, ...match, ip, 'ecn', 'set', 'ce']);
  }

  /** Under an outer CE from the left, pings to the right: ECN-capable ones arrive CE on its TUN device, Not-ECT ones are dropped (drops.ecn). */
  async function expectCeCombined(topo: Topology, right: Awaited<ReturnType<typeof setUp>>['right'], name: string): Promise<void> {
    const capture = await startCapture(topo.right, TUN, { file: env.dir(`${name}-ecn.pcap`), filter: 'icmp' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    const before = (await right.status()).dataplane?.workers.reduce((n, w) => n + (w.drops.ecn ?? 0), 0) ?? 0;
    // ECT(0) inner: the right's TUN gets it CE, DSCP kept.
    expect(await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb8 | 2, 'do', 3)).toMatch(/3 received/);
    // Not-ECT inner under an outer CE: dropped at decapsulation, never answered.
    expect(await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb8, 'do', 3)).toMatch(/0 received/);
    await capture.stop({ minPackets: 3, timeoutMs: 8000 });
    const rows = await decode(capture.file, { fields: ['ip.src', 'ip.dsfield', 'ip.checksum.status'], displayFilter: 'icmp.type == 8', preferences: { 'ip.check_checksum': 'TRUE' } });
    // DSCP 46 kept, ECN now CE (0xbb); the IPv4 header checksum updated with it (tshark's status 1: good).
    expect(rows.map((r) => r.join('|')), rows.map((r) => r.join('|')).join(' ')).toEqual([1, 2, 3].map(() => `${topo.leftInner}|0xbb|1`));
    const st = await right.status();
    expect(st.dataplane?.workers.reduce((n, w) => n + (w.drops.ecn ?? 0), 0)).toBe(before + 3);
  }

  const IO_THREAD = { output: 'io-thread', steering: 'io-thread' };

  interopTest('through the I/O thread both ways: DSCP, ECN and DF on the wire as configured; an outer CE reaches the inner packet or drops a Not-ECT one', PRE, async () => {
    // ECN stays normal on the right: it combines the outer CE below.
    const { topo, left, right } = await setUp('io-thread', {}, { dscp: 10, df: 'clear' }, 'udp', IO_THREAD);
    for (const g of [left, right]) expect((await g.status()).dataplane?.output).toBe('io-thread');
    const l = topo.links[0]!;
    const capture = await startCapture(topo.left, l.aIf, { file: env.dir('io-thread.pcap'), filter: 'udp port 4500' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    const out1 = await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb9, 'do');
    const out2 = await pingWith(topo.left, topo.leftInner, topo.rightInner, 0x2a, 'dont');
    for (const out of [out1, out2]) expect(out).toMatch(/3 received/);
    await capture.stop({ minPackets: 12, timeoutMs: 8000 });
    const rows = await decode(capture.file, { fields: ['ip.src', 'ip.dsfield', 'ip.flags.df', 'esp.sequence'], displayFilter: 'esp' });
    const seen = (src: string) => rows.filter((r) => r[0] === src).map((r) => `${r[1]}/${r[2] === 'True' ? 1 : r[2] === 'False' ? 0 : r[2]}`);
    const fromLeft = seen(l.aAddr);
    const fromRight = seen(l.bAddr);
    // Copied on the left: DSCP and ECN of each request, its DF (set, then clear: IP_MTU_DISCOVER on the I/O thread's socket).
    expect(fromLeft, fromLeft.join(' ')).toEqual(['0xb9/1', '0xb9/1', '0xb9/1', '0x2a/0', '0x2a/0', '0x2a/0']);
    // On the right: DSCP fixed at 10, ECN copied from each reply (Linux answers with the request's TOS), DF clear.
    expect(fromRight, fromRight.join(' ')).toEqual(['0x29/0', '0x29/0', '0x29/0', '0x2a/0', '0x2a/0', '0x2a/0']);
    // Then an outer CE on the way to the right, whose I/O thread reads the ESP and hands it over in its ring.
    await markCe(topo.left, l.aIf, 'udp');
    await expectCeCombined(topo, right, 'io-thread');
    const rst = await right.status();
    expect(rst.dataplane?.workers.reduce((n, w) => n + (w.steered?.in ?? 0), 0) ?? 0).toBe(0);
  });

  interopTest('raw ESP through the I/O thread: outer TOS as configured on the wire, an outer CE combined on decapsulation', PRE, async () => {
    const { topo, right } = await setUp('raw-io-thread', {}, { dscp: 10 }, 'auto', IO_THREAD);
    const l = topo.links[0]!;
    const capture = await startCapture(topo.left, l.aIf, { file: env.dir('raw-io-thread.pcap'), filter: 'ip proto 50' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    expect(await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb9, 'dont')).toMatch(/3 received/);
    await capture.stop({ minPackets: 6, timeoutMs: 8000 });
    const rows = await decode(capture.file, { fields: ['ip.src', 'ip.dsfield', 'ip.flags.df'], displayFilter: 'esp' });
    const from = (src: string) => rows.filter((r) => r[0] === src).map((r) => `${r[1]}/${r[2] === 'True' ? 1 : r[2] === 'False' ? 0 : r[2]}`);
    expect(from(l.aAddr), rows.join(' ')).toEqual(['0xb9/0', '0xb9/0', '0xb9/0']);
    // DSCP fixed at 10 on the right, ECN copied from the replies (ECT(1)).
    expect(from(l.bAddr).map((x) => x.split('/')[0]), rows.join(' ')).toEqual(['0x29', '0x29', '0x29']);
    await markCe(topo.left, l.aIf, 'raw');
    await expectCeCombined(topo, right, 'raw-io-thread');
  });

  interopTest('raw ESP over IPv6, which the I/O thread reads: the outer Traffic Class on the wire; an outer CE combined on decapsulation', PRE, async () => {
    const { topo, right } = await setUp('raw6', {}, { dscp: 10 }, 'auto', {}, true);
    const l = topo.links[0]!;
    const capture = await startCapture(topo.left, l.aIf, { file: env.dir('raw6.pcap'), filter: 'ip6 proto 50' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    expect(await pingWith(topo.left, topo.leftInner, topo.rightInner, 0xb9, 'do')).toMatch(/3 received/);
    await capture.stop({ minPackets: 6, timeoutMs: 8000 });
    const rows = await decode(capture.file, { fields: ['ipv6.src', 'ipv6.tclass', 'ipv6.nxt'], displayFilter: 'esp' });
    const from = (side: 'left' | 'right') => rows.filter((r) => r[0]!.endsWith(side === 'left' ? '::1' : '::2')).map((r) => `${Number(r[1])}/${r[2]}`);
    expect(from('left'), rows.join(' ')).toEqual(['185/50', '185/50', '185/50']); // 0xb9
    expect(from('right'), rows.join(' ')).toEqual(['41/50', '41/50', '41/50']); // DSCP 10, ECT(1) copied: 0x29
    await markCe(topo.left, l.aIf, 'raw6');
    await expectCeCombined(topo, right, 'raw6');
  });
});
