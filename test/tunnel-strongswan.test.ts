// ESP interop with strongSwan's kernel-libipsec (userspace ESP over its ipsec0
// TUN device, always UDP-encapsulated, RFC 3948): ikeclone with its TUN data
// plane in one namespace, charon in the other; ping and a short iperf3 through
// the tunnel, with ikeclone initiating and with charon initiating; with AES-GCM
// and with AES-CBC + HMAC-SHA2 ESP (RFC 3602, RFC 4868).
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import { addRoute, createTopology, exec, ping, spawnIn } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import { decode, startCapture } from './support/tshark.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { tunUnavailable } from '../io/tun.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'iperf3', 'tshark'];
const PSK = 'tunnel-interop-psk-0123456789abcdef';
const TUN = 'ikc0';

function charonConnections(topo: Topology, esp: string): string {
  const l = topo.links[0]!;
  return pskConnection({
    localAddrs: l.bAddr,
    remoteAddrs: l.aAddr,
    proposals: 'aes256gcm16-prfsha256-x25519',
    esp,
    localId: 'charon.tunnel.test',
    remoteId: 'ikeclone.tunnel.test',
    localTs: topo.rightInnerNet,
    remoteTs: topo.leftInnerNet,
  });
}

const SECRETS = pskSecrets('tunnel', ['charon.tunnel.test', 'ikeclone.tunnel.test'], PSK);

function ikecloneConfig(topo: Topology, startAction: 'start' | 'none', esp: string): Record<string, unknown> {
  const l = topo.links[0]!;
  return {
    log: { level: 'debug' },
    listen: { address: l.aAddr, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    dataplane: { workers: 2, tun: TUN },
    connections: {
      charon: {
        local_addrs: [l.aAddr],
        remote_addrs: [l.bAddr],
        ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: 'ikeclone.tunnel.test', auth: 'psk' },
        remote: { id: 'charon.tunnel.test', auth: 'psk' },
        psk: PSK,
        start_action: startAction,
        children: { net: { local_ts: [topo.leftInnerNet], remote_ts: [topo.rightInnerNet], esp: [esp] } },
      },
    },
  };
}

describe('ESP through an ikeclone <-> strongSwan kernel-libipsec tunnel', () => {
  const env = useNetnsSuite('tunnel-swan', PRE);

  async function setUp(name: string, ikecloneStarts: boolean, esp = 'aes128gcm16') {
    const missing = tunUnavailable();
    if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
    const topo = await createTopology({ labels: ['ikc', 'swan'] });
    env.cleanup(() => topo.destroy());
    const dir = env.dir(name);
    const charon: Charon = await startCharon(topo.right, { dir: join(dir, 'charon'), connections: charonConnections(topo, esp), secrets: SECRETS, installRoutes: true });
    env.cleanup(() => charon.stop());
    const ikc: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'ikeclone'), config: ikecloneConfig(topo, ikecloneStarts ? 'start' : 'none', esp), keylog: true });
    env.cleanup(() => ikc.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-60).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`);
    });
    await waitFor(async () => (await exec(topo.left, 'ip', ['link', 'show', TUN])).code === 0, { timeoutMs: 5000, intervalMs: 50, message: 'TUN device' });
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
    return { topo, charon, ikc };
  }

  async function established(ikc: Ikeclone, charon: Charon): Promise<void> {
    await waitFor(
      async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const mine = st.ikeSas.find((s) => s.state === 'established' && s.children.some((c) => typeof c.worker === 'number'));
        const theirs = sas.find((s) => s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'));
        return mine !== undefined && theirs !== undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'IKE SA and Child SA not established (and in the data plane) on both ends' },
    );
  }

  async function traffic(topo: Topology, ikc: Ikeclone): Promise<void> {
    // Each direction starts its own flows: ikeclone's SPD -> charon's ipsec0, and back.
    const there = await ping(topo.left, topo.rightInner, { count: 10, intervalS: 0.05, src: topo.leftInner });
    expect(there.received, there.result.stdout).toBe(10);
    const back = await ping(topo.right, topo.leftInner, { count: 10, intervalS: 0.05, src: topo.rightInner });
    expect(back.received, back.result.stdout).toBe(10);
    const server = spawnIn(topo.right, 'iperf3', ['-s', '-1', '-B', topo.rightInner]);
    env.cleanup(() => server.stop({ graceMs: 1000 }));
    await waitFor(async () => (await exec(topo.right, 'ss', ['-ltn'])).stdout.includes(`${topo.rightInner}:5201`), { timeoutMs: 5000, intervalMs: 50, message: 'iperf3 server' });
    const r = await exec(topo.left, 'iperf3', ['-c', topo.rightInner, '-B', topo.leftInner, '-t', '2', '-J'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr + r.stdout.slice(-2000)).toBe(0);
    const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
    process.stderr.write(`iperf3 ikeclone -> charon (kernel-libipsec): ${(bps / 1e6).toFixed(1)} Mbit/s\n`);
    expect(bps).toBeGreaterThan(1e6);
    const st = await ikc.status();
    // kernel-libipsec forces UDP encapsulation: the SA says so, and ESP came in on UDP 4500,
    // at the owner worker's own socket of it (dataplane.steering: kernel, the default).
    expect(st.ikeSas[0]!.children[0]!.udpEncap).toBe(true);
    expect(st.dataplane!.workers.reduce((n, w) => n + (w.steered?.in ?? 0), 0)).toBeGreaterThan(100);
    const dp = st.dataplane!;
    expect(dp.workers.reduce((n, w) => n + w.decapPackets, 0)).toBeGreaterThan(100);
    expect(dp.workers.reduce((n, w) => n + w.drops.icv + w.drops.malformed, 0)).toBe(0);
    expect(dp.io.dropUnknownSpi).toBe(0);
  }

  /** tshark, independently, decrypts the ESP ikeclone sends with the keys of ikeclone's key log (inner ICMP visible). */
  async function espDecrypted(topo: Topology, ikc: Ikeclone, dir: string): Promise<void> {
    const link = topo.links[0]!;
    const capture = await startCapture(topo.left, link.aIf, { file: join(dir, 'esp.pcap'), filter: 'udp port 4500' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    const there = await ping(topo.left, topo.rightInner, { count: 5, intervalS: 0.05, src: topo.leftInner });
    expect(there.received).toBe(5);
    await capture.stop({ minPackets: 10, timeoutMs: 5000 });
    const spiOut = (await ikc.status()).ikeSas[0]!.children[0]!.spiOut;
    const rows = await decode(capture.file, { fields: ['ip.src', 'esp.spi', 'icmp.type'], displayFilter: 'esp', keylogDir: ikc.keylogDir });
    const ours = rows.filter((r) => r[0]?.split(',')[0] === link.aAddr && (r[1] ?? '').toLowerCase().includes(spiOut));
    expect(ours.length, JSON.stringify(rows.slice(0, 5))).toBeGreaterThanOrEqual(5);
    // Echo requests (type 8) decrypted from inside ikeclone's ESP.
    expect(ours.filter((r) => (r[2] ?? '').split(',').includes('8')).length).toBeGreaterThanOrEqual(5);
  }

  interopTest('ikeclone initiates: ping both ways and iperf3 through the tunnel; tshark decrypts our ESP with the key log', PRE, async () => {
    const { topo, charon, ikc } = await setUp('i', true);
    await established(ikc, charon);
    await espDecrypted(topo, ikc, env.dir('i'));
    await traffic(topo, ikc);
  }, 60_000);

  interopTest('charon initiates: ping both ways and iperf3 through the tunnel', PRE, async () => {
    const { topo, charon, ikc } = await setUp('r', false);
    await charon.initiate('net', 'ikeclone');
    await established(ikc, charon);
    await traffic(topo, ikc);
  }, 60_000);

  /** charon installed the AES-CBC suite and its ESP counters moved both ways. */
  async function charonUsedCbc(charon: Charon, encr: RegExp, integ: RegExp): Promise<void> {
    const child = (await charon.listSas())[0]!.children.find((c) => c.state === 'INSTALLED')!;
    expect(child.encr, JSON.stringify(child)).toMatch(encr);
    expect(child.integ ?? '', JSON.stringify(child)).toMatch(integ);
    expect(child.packetsIn).toBeGreaterThan(100);
    expect(child.packetsOut).toBeGreaterThan(10);
  }

  // AES-CBC + HMAC-SHA2 ESP (RFC 3602, RFC 4868): charon runs it in kernel-libipsec with its aes, sha2 and hmac plugins.
  interopTest('AES-CBC ESP aes256-sha256, ikeclone initiates: ping both ways and iperf3; tshark decrypts our ESP with the key log', PRE, async () => {
    const { topo, charon, ikc } = await setUp('cbc-i', true, 'aes256-sha256');
    await established(ikc, charon);
    await espDecrypted(topo, ikc, env.dir('cbc-i'));
    await traffic(topo, ikc);
    await charonUsedCbc(charon, /AES_CBC.*256/, /HMAC_SHA2_256_128/);
  }, 60_000);

  interopTest('AES-CBC ESP aes128-sha512, charon initiates: ping both ways and iperf3; tshark decrypts our ESP with the key log', PRE, async () => {
    const { topo, charon, ikc } = await setUp('cbc-r', false, 'aes128-sha512');
    await charon.initiate('net', 'ikeclone');
    await established(ikc, charon);
    await espDecrypted(topo, ikc, env.dir('cbc-r'));
    await traffic(topo, ikc);
    await charonUsedCbc(charon, /AES_CBC.*128/, /HMAC_SHA2_512_256/);
  }, 60_000);
});
