// Redirect placement in a cluster over real sockets (RFC 5685; architecture
// §8): two ikeclone gateway nodes in one namespace (A on 10.i.1.1, B on
// 10.i.1.3) joined to an etcd (TLS) in that namespace, A with
// `cluster.redirect: { above: 1 }`. A first client that does not follow
// redirects (no REDIRECT_SUPPORTED) loads A; then strongSwan's charon, from
// the other namespace, asks A and is sent to B, the member with the fewest
// IKE SAs, in IKE_SA_INIT (charon 5.9.8 aborts when redirected in IKE_AUTH);
// its tunnel comes up at B and carries ping both ways.
import { describe, expect, onTestFailed } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import { addAddress, addRoute, createTopology, exec, ping } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import { startEtcd } from './support/etcd.js';
import { tunUnavailable } from '../io/tun.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'etcd'];
const PSK = 'cluster-redirect-psk-0123456789abcdef';
const GW_ID = 'gw.redirect.test';
const CLIENT_ID = 'client.redirect.test';
const LOADER_ID = 'loader.redirect.test';
const TUN = 'ikc0';
const PROPOSAL = 'aes256gcm16-prfsha256-x25519';

describe('cluster redirect placement over veth', () => {
  const env = useNetnsSuite('cluster-redirect', PRE);

  interopTest('charon asks a loaded node and is redirected in IKE_SA_INIT to the least-loaded one; its tunnel works there', PRE, async () => {
    const missing = tunUnavailable();
    if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
    const topo = await createTopology({ labels: ['gws', 'cli'] });
    env.cleanup(() => topo.destroy());
    const link = topo.links[0]!;
    const a = link.aAddr;
    const b = `10.${topo.index}.1.3`;
    const loader = `10.${topo.index}.1.4`;
    await addAddress(topo.left, `${b}/24`, link.aIf);
    await addAddress(topo.left, `${loader}/24`, link.aIf);
    const dir = env.dir('charon');
    mkdirSync(dir, { recursive: true });
    const etcd = await startEtcd({ ns: topo.left, address: a, tls: true });
    env.cleanup(() => etcd.stop());
    const keyFile = join(dir, 'cluster.secret');
    writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
    const clusterName = `r${randomBytes(3).toString('hex')}`;
    // Every node runs the same connections (the cluster checks their hash); each listens on its own address.
    const gateway = (node: string, address: string, extra: Record<string, unknown>, tun?: string) => ({
      log: { level: 'debug' },
      listen: { address, port: 500, natPort: 4500 },
      retransmit: { timeout: '500ms', tries: 4 },
      dataplane: { workers: 1, esp: 'udp', ...(tun ? { tun } : {}) },
      cluster: { name: clusterName, node, address, etcd: [etcd.endpoint], tls: etcd.tls, sealing_key_file: keyFile, lease_ttl: '5s', ...extra },
      connections: {
        clients: {
          ike: [PROPOSAL],
          local: { id: GW_ID, auth: 'psk' },
          remote: { id: '*.redirect.test', auth: 'psk' },
          psk: PSK,
          children: { net: { local_ts: [topo.leftInnerNet], remote_ts: [topo.rightInnerNet], esp: ['aes128gcm16'] } },
        },
      },
    });
    const gwA = await startIkeclone(topo.left, { dir: join(dir, 'a'), config: gateway('gw-a', a, { redirect: { above: 1, at: 'init' } }) });
    env.cleanup(() => gwA.stop());
    const gwB = await startIkeclone(topo.left, { dir: join(dir, 'b'), config: gateway('gw-b', b, {}, TUN) });
    env.cleanup(() => gwB.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- node A log (tail) ---\n${gwA.log().split('\n').slice(-40).join('\n')}\n--- node B log (tail) ---\n${gwB.log().split('\n').slice(-40).join('\n')}\n`);
    });
    // The first client does not follow redirects (no REDIRECT_SUPPORTED): A serves it and is loaded.
    const first = await startIkeclone(topo.left, {
      dir: join(dir, 'loader'),
      config: {
        log: { level: 'debug' },
        listen: { address: loader, port: 500, natPort: 4500 },
        dataplane: { workers: 1, esp: 'udp' },
        connections: {
          gateways: {
            local_addrs: [loader],
            remote_addrs: [a],
            ike: [PROPOSAL],
            local: { id: LOADER_ID, auth: 'psk' },
            remote: { id: GW_ID, auth: 'psk' },
            psk: PSK,
            start_action: 'start',
            redirect: { follow: false },
            children: { net: { local_ts: [topo.rightInnerNet], remote_ts: [topo.leftInnerNet], esp: ['aes128gcm16'] } },
          },
        },
      },
    });
    env.cleanup(() => first.stop());
    await waitFor(async () => (await gwA.status()).ikeSas.filter((s) => s.state === 'established').length === 1, { timeoutMs: 20_000, intervalMs: 200, message: 'the first client at node A' });
    await waitFor(async () => (await exec(topo.left, 'ip', ['link', 'show', TUN])).code === 0, { timeoutMs: 5000, intervalMs: 50, message: 'B: TUN device' });
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });

    const charon = await startCharon(topo.right, {
      dir: join(dir, 'charon'),
      connections: pskConnection({ remoteAddrs: a, proposals: PROPOSAL, esp: 'aes128gcm16', localId: CLIENT_ID, remoteId: GW_ID, localTs: topo.rightInnerNet, remoteTs: topo.leftInnerNet }),
      secrets: pskSecrets('redirect', [CLIENT_ID, GW_ID], PSK),
      installRoutes: true,
    });
    env.cleanup(() => charon.stop());
    onTestFailed(() => process.stderr.write(`\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`));
    await charon.initiate('net', 'ikeclone', { timeoutMs: 30_000 });
    await waitFor(
      async () => (await gwB.status()).ikeSas.some((s) => s.state === 'established' && s.children.some((c) => typeof c.worker === 'number')),
      { timeoutMs: 20_000, intervalMs: 200, message: 'charon\'s IKE SA and Child SA at node B' },
    );
    const atB = (await gwB.status()).ikeSas.find((s) => s.state === 'established')!;
    expect(atB.remote.split(':')[0]).toBe(link.bAddr);
    const statusA = await gwA.status();
    expect(statusA.ikeSas.filter((s) => s.state === 'established')).toHaveLength(1);
    expect(statusA.ike.redirects['sent.init']).toBe(1);
    const sas = await charon.listSas();
    expect(sas.some((s) => s.state === 'ESTABLISHED' && s.remoteHost === b), JSON.stringify(sas)).toBe(true);
    const there = await ping(topo.right, topo.leftInner, { count: 5, intervalS: 0.05, src: topo.rightInner });
    expect(there.received, there.result.stdout).toBe(5);
    const back = await ping(topo.left, topo.rightInner, { count: 5, intervalS: 0.05, src: topo.leftInner });
    expect(back.received, back.result.stdout).toBe(5);
  }, 120_000);
});
