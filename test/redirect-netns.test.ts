// RFC 5685 redirect over real sockets: two ikeclone gateways in one namespace
// (A on 10.i.1.1, B on 10.i.1.3), a client in the other. A redirects every
// client that announces support to B, in IKE_SA_INIT or in IKE_AUTH; the
// client's tunnel comes up at B and carries ping both ways. The client is
// strongSwan's charon (it sends REDIRECT_SUPPORTED and follows REDIRECT) or
// ikeclone. tshark, the independent decoder, shows the notifies on the wire
// (IKE_AUTH decrypted with A's key log).
import { describe, expect, onTestFailed } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import { addAddress, addRoute, createTopology, exec, ping } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { decode, startCapture } from './support/tshark.js';
import type { Capture } from './support/tshark.js';
import { tunUnavailable } from '../io/tun.js';

const PRE_CHARON: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'tshark'];
const PRE_IKECLONE: PrereqName[] = ['root', 'netns', 'tun', 'tshark'];
const PSK = 'redirect-interop-psk-0123456789abcdef';
const GW_ID = 'gw.redirect.test';
const CLIENT_ID = 'client.redirect.test';
const TUN = 'ikc0';
const PROPOSAL = 'aes256gcm16-prfsha256-x25519';
const NOTIFY = { REDIRECT_SUPPORTED: '16406', REDIRECT: '16407', REDIRECTED_FROM: '16408' };

interface Net {
  topo: Topology;
  /** Gateway A's and B's addresses, and the client's. */
  a: string;
  b: string;
  client: string;
}

/** A gateway's configuration: its own address, and for A where it sends clients. */
function gatewayConfig(net: Net, address: string, redirect?: { to: string[]; at: 'init' | 'auth' }, tun?: string): Record<string, unknown> {
  return {
    log: { level: 'debug' },
    listen: { address, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    dataplane: { workers: 1, esp: 'udp', ...(tun ? { tun } : {}) },
    connections: {
      clients: {
        local_addrs: [address],
        ike: [PROPOSAL],
        local: { id: GW_ID, auth: 'psk' },
        remote: { id: CLIENT_ID, auth: 'psk' },
        psk: PSK,
        ...(redirect ? { redirect } : {}),
        children: { net: { local_ts: [net.topo.leftInnerNet], remote_ts: [net.topo.rightInnerNet], esp: ['aes128gcm16'] } },
      },
    },
  };
}

describe('RFC 5685 redirect between two ikeclone gateways, over veth', () => {
  const env = useNetnsSuite('redirect', [...new Set([...PRE_CHARON, ...PRE_IKECLONE])]);

  /** The namespaces, both gateways (B with a TUN device and a route to the client's inner net), a capture on the gateways' side. */
  async function setUp(name: string, at: 'init' | 'auth'): Promise<{ net: Net; gwA: Ikeclone; gwB: Ikeclone; capture: Capture }> {
    const missing = tunUnavailable();
    if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
    const topo = await createTopology({ labels: ['gws', 'cli'] });
    env.cleanup(() => topo.destroy());
    const link = topo.links[0]!;
    const b = `10.${topo.index}.1.3`;
    await addAddress(topo.left, `${b}/24`, link.aIf);
    const net: Net = { topo, a: link.aAddr, b, client: link.bAddr };
    const dir = env.dir(name);
    mkdirSync(dir, { recursive: true });
    const capture = await startCapture(topo.left, link.aIf, { file: join(dir, 'ike.pcap'), filter: 'udp port 500 or udp port 4500' });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
    const gwA = await startIkeclone(topo.left, { dir: join(dir, 'a'), config: gatewayConfig(net, net.a, { to: [b], at }), keylog: true });
    env.cleanup(() => gwA.stop());
    const gwB = await startIkeclone(topo.left, { dir: join(dir, 'b'), config: gatewayConfig(net, b, undefined, TUN), keylog: true });
    env.cleanup(() => gwB.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- gateway A log (tail) ---\n${gwA.log().split('\n').slice(-40).join('\n')}\n--- gateway B log (tail) ---\n${gwB.log().split('\n').slice(-40).join('\n')}\n`);
    });
    await waitFor(async () => (await exec(topo.left, 'ip', ['link', 'show', TUN])).code === 0, { timeoutMs: 5000, intervalMs: 50, message: 'B: TUN device' });
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
    return { net, gwA, gwB, capture };
  }

  /** B holds the client's IKE SA and Child SA (in its data plane); A holds nothing and counted what it sent. */
  async function servedByB(net: Net, gwA: Ikeclone, gwB: Ikeclone, at: 'init' | 'auth'): Promise<void> {
    await waitFor(
      async () => (await gwB.status()).ikeSas.some((s) => s.state === 'established' && s.children.some((c) => typeof c.worker === 'number')),
      { timeoutMs: 20_000, intervalMs: 200, message: 'IKE SA and Child SA at gateway B' },
    );
    const atB = (await gwB.status()).ikeSas.find((s) => s.state === 'established')!;
    expect(atB.remote.split(':')[0]).toBe(net.client);
    const a = await gwA.status();
    expect(a.ikeSas).toHaveLength(0);
    expect(a.ike.redirects[`sent.${at}`]).toBeGreaterThanOrEqual(1);
  }

  async function pingBothWays(net: Net): Promise<void> {
    const { topo } = net;
    const there = await ping(topo.right, topo.leftInner, { count: 5, intervalS: 0.05, src: topo.rightInner });
    expect(there.received, there.result.stdout).toBe(5);
    const back = await ping(topo.left, topo.rightInner, { count: 5, intervalS: 0.05, src: topo.leftInner });
    expect(back.received, back.result.stdout).toBe(5);
  }

  /**
   * tshark's reading of the capture: the client announced support to A, A's
   * REDIRECT named B, and the client's IKE_SA_INIT to B named A in REDIRECTED_FROM.
   */
  async function wireShows(net: Net, gwA: Ikeclone, capture: Capture, at: 'init' | 'auth'): Promise<void> {
    await capture.stop({ minPackets: 4, timeoutMs: 5000 });
    const rows = await decode(capture.file, {
      fields: ['ip.src', 'ip.dst', 'isakmp.exchangetype', 'isakmp.notify.msgtype', 'isakmp.notify.data.redirect.new_resp_gw_ident.ipv4', 'isakmp.notify.data.redirect.org_resp_gw_ident.ipv4'],
      displayFilter: 'isakmp',
      keylogDir: gwA.keylogDir,
    });
    const has = (r: string[], n: string) => (r[3] ?? '').split(',').includes(n);
    const toA = rows.filter((r) => r[0] === net.client && r[1] === net.a);
    const fromA = rows.filter((r) => r[0] === net.a && r[1] === net.client);
    const toB = rows.filter((r) => r[0] === net.client && r[1] === net.b);
    const dump = JSON.stringify(rows, null, 1).slice(0, 3000);
    expect(toA.some((r) => r[2] === '34' && has(r, NOTIFY.REDIRECT_SUPPORTED)), dump).toBe(true);
    const redirect = fromA.find((r) => has(r, NOTIFY.REDIRECT));
    expect(redirect, dump).toBeDefined();
    expect(redirect![2]).toBe(at === 'init' ? '34' : '35');
    expect(redirect![4]).toBe(net.b);
    const from = toB.find((r) => r[2] === '34' && has(r, NOTIFY.REDIRECTED_FROM));
    expect(from, dump).toBeDefined();
    expect(from![5]).toBe(net.a);
  }

  // charon 5.9.8 follows a REDIRECT in IKE_AUTH as far as its new IKE_SA_INIT, then dies ("free(): double
  // free detected"), with or without MOBIKE and a waiting `swanctl --initiate`: the IKE_AUTH phase is
  // covered over veth by the ikeclone client below, and against charon only in IKE_SA_INIT.
  for (const at of ['init'] as const) {
    interopTest(`charon is redirected from A to B in IKE_SA_INIT; its tunnel works at B; tshark shows the REDIRECT`, PRE_CHARON, async () => {
      const { net, gwA, gwB, capture } = await setUp(`charon-${at}`, at);
      const charon: Charon = await startCharon(net.topo.right, {
        dir: join(env.dir(`charon-${at}`), 'charon'),
        connections: pskConnection({
          remoteAddrs: net.a,
          proposals: PROPOSAL,
          esp: 'aes128gcm16',
          localId: CLIENT_ID,
          remoteId: GW_ID,
          localTs: net.topo.rightInnerNet,
          remoteTs: net.topo.leftInnerNet,
        }),
        secrets: pskSecrets('redirect', [CLIENT_ID, GW_ID], PSK),
        installRoutes: true,
      });
      env.cleanup(() => charon.stop());
      onTestFailed(() => process.stderr.write(`\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`));
      await charon.initiate('net', 'ikeclone', { timeoutMs: 30_000 });
      await servedByB(net, gwA, gwB, at);
      const sas = await charon.listSas();
      expect(sas.some((s) => s.state === 'ESTABLISHED' && s.remoteHost === net.b), JSON.stringify(sas)).toBe(true);
      await pingBothWays(net);
      await wireShows(net, gwA, capture, at);
    }, 90_000);
  }

  interopTest('an ikeclone client is redirected from A to B in IKE_AUTH; its tunnel works at B; tshark shows the REDIRECT', PRE_IKECLONE, async () => {
    const at = 'auth';
    const { net, gwA, gwB, capture } = await setUp('ikeclone', at);
    const { topo } = net;
    const client = await startIkeclone(topo.right, {
      dir: join(env.dir('ikeclone'), 'client'),
      config: {
        log: { level: 'debug' },
        listen: { address: net.client, port: 500, natPort: 4500 },
        retransmit: { timeout: '500ms', tries: 4 },
        dataplane: { workers: 1, esp: 'udp', tun: TUN },
        connections: {
          gateways: {
            local_addrs: [net.client],
            remote_addrs: [net.a],
            ike: [PROPOSAL],
            local: { id: CLIENT_ID, auth: 'psk' },
            remote: { id: GW_ID, auth: 'psk' },
            psk: PSK,
            start_action: 'start',
            children: { net: { local_ts: [topo.rightInnerNet], remote_ts: [topo.leftInnerNet], esp: ['aes128gcm16'] } },
          },
        },
      },
    });
    env.cleanup(() => client.stop());
    onTestFailed(() => process.stderr.write(`\n--- client log (tail) ---\n${client.log().split('\n').slice(-60).join('\n')}\n`));
    await waitFor(async () => (await exec(topo.right, 'ip', ['link', 'show', TUN])).code === 0, { timeoutMs: 5000, intervalMs: 50, message: 'client: TUN device' });
    await addRoute(topo.right, topo.leftInnerNet, { dev: TUN, src: topo.rightInner });
    await servedByB(net, gwA, gwB, at);
    await waitFor(
      async () => (await client.status()).ikeSas.some((s) => s.state === 'established' && s.remote.startsWith(net.b) && s.children.some((c) => typeof c.worker === 'number')),
      { timeoutMs: 20_000, intervalMs: 200, message: 'client: IKE SA and Child SA with B' },
    );
    const st = await client.status();
    expect(st.ike.redirects['followed.auth']).toBe(1);
    await pingBothWays(net);
    await wireShows(net, gwA, capture, at);
  }, 90_000);
});
