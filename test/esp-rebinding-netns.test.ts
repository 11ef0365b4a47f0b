// NAT rebinding followed on the ESP path (RFC 7296 §2.23): a client behind a
// NAT namespace (nftables masquerade) sends only ESP after its NAT mapping
// changed (the old one expired, the masquerade now picks ports from another
// range); the gateway's worker sees authenticated ESP from the new port and
// the control plane moves the SA there, so the answers reach the client and
// the traffic goes on without any IKE message.
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { addAddress, addRoute, addVeth, createNamespace, deleteNamespace, exec, execChecked, ping } from './support/netns.js';
import type { NetNs } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { GatewayStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'native', 'nftables'];
const PSK = 'esp-rebinding-netns-test-psk-0123456789';
const TUN = 'ikc0';
const I = 211; // second octet of every address here

function config(side: 'client' | 'gateway'): Record<string, unknown> {
  const client = side === 'client';
  const [me, peer] = client ? [`10.${I}.1.1`, `10.${I}.2.2`] : [`10.${I}.2.2`, `10.${I}.1.1`];
  const [localNet, remoteNet] = client ? [`10.${I}.50.0/24`, `10.${I}.100.0/24`] : [`10.${I}.100.0/24`, `10.${I}.50.0/24`];
  return {
    log: { level: 'debug' },
    listen: { address: me, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    dataplane: { workers: 2, tun: TUN },
    connections: {
      peer: {
        local_addrs: [me],
        // The gateway sees the client behind the NAT: any address.
        remote_addrs: client ? [peer] : [],
        ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: `${side}.rebind.test`, auth: 'psk' },
        remote: { id: `${client ? 'gateway' : 'client'}.rebind.test`, auth: 'psk' },
        psk: PSK,
        // RFC 4555 §3.5: with MOBIKE, addresses move only by UPDATE_SA_ADDRESSES.
        mobike: false,
        // No NAT keepalives in the test's window: only ESP crosses the new mapping.
        keepalive: '0s',
        ...(client ? { start_action: 'start' } : {}),
        children: { net: { local_ts: [localNet], remote_ts: [remoteNet], esp: ['aes128gcm16'] } },
      },
    },
  };
}

async function masquerade(nat: NetNs, ports: string): Promise<void> {
  await exec(nat, 'nft', ['delete', 'table', 'ip', 'ikc_nat']);
  await execChecked(nat, 'nft', ['add', 'table', 'ip', 'ikc_nat']);
  await execChecked(nat, 'nft', ['add', 'chain', 'ip', 'ikc_nat', 'post', '{ type nat hook postrouting priority 100; }']);
  await execChecked(nat, 'nft', ['add', 'rule', 'ip', 'ikc_nat', 'post', 'oifname', 'eth1', 'meta', 'l4proto', 'udp', 'masquerade', 'to', `:${ports}`]);
}

function peerPort(st: GatewayStatus): number | undefined {
  const remote = st.ikeSas[0]?.remote;
  return remote === undefined ? undefined : Number(remote.slice(remote.lastIndexOf(':') + 1));
}

describe('NAT rebinding seen on ESP (RFC 7296 §2.23)', () => {
  const env = useNetnsSuite('rebind', PRE);

  interopTest('the gateway follows the client to its new NAT mapping on authenticated ESP alone; ping goes on', PRE, async () => {
    const client = await createNamespace('client');
    env.cleanup(() => deleteNamespace(client));
    const nat = await createNamespace('nat');
    env.cleanup(() => deleteNamespace(nat));
    const gateway = await createNamespace('gw');
    env.cleanup(() => deleteNamespace(gateway));
    await addVeth(client, nat, { aIf: 'eth0', bIf: 'eth0', aCidr: `10.${I}.1.1/24`, bCidr: `10.${I}.1.2/24` });
    await addVeth(nat, gateway, { aIf: 'eth1', bIf: 'eth0', aCidr: `10.${I}.2.1/24`, bCidr: `10.${I}.2.2/24` });
    await addRoute(client, `10.${I}.2.0/24`, { gateway: `10.${I}.1.2` });
    await addAddress(client, `10.${I}.50.1/24`);
    await addAddress(gateway, `10.${I}.100.1/24`);
    await execChecked(nat, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await masquerade(nat, '20000-20099');
    // Mappings expire 2 s after their last datagram (a real NAT takes longer; same event).
    await execChecked(nat, 'sysctl', ['-qw', 'net.netfilter.nf_conntrack_udp_timeout=2', 'net.netfilter.nf_conntrack_udp_timeout_stream=2']);

    const dir = env.dir('rebind');
    const gw = await startIkeclone(gateway, { dir: join(dir, 'gateway'), config: config('gateway') });
    env.cleanup(() => gw.stop());
    const cl = await startIkeclone(client, { dir: join(dir, 'client'), config: config('client') });
    env.cleanup(() => cl.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- client (tail) ---\n${cl.log().split('\n').slice(-40).join('\n')}\n--- gateway (tail) ---\n${gw.log().split('\n').slice(-60).join('\n')}\n`);
    });
    const up = (st: GatewayStatus) => st.ikeSas.flatMap((s) => s.children).some((c) => typeof c.worker === 'number');
    await waitFor(async () => up(await cl.status()) && up(await gw.status()), { timeoutMs: 15_000, intervalMs: 100, message: 'Child SA up on both ends' });
    await waitFor(async () => (await exec(client, 'ip', ['link', 'show', TUN])).code === 0 && (await exec(gateway, 'ip', ['link', 'show', TUN])).code === 0, {
      timeoutMs: 5000, intervalMs: 50, message: 'TUN devices',
    });
    await addRoute(client, `10.${I}.100.0/24`, { dev: TUN, src: `10.${I}.50.1` });
    await addRoute(gateway, `10.${I}.50.0/24`, { dev: TUN, src: `10.${I}.100.1` });

    const before = await ping(client, `10.${I}.100.1`, { count: 3, intervalS: 0.1, src: `10.${I}.50.1` });
    expect(before.received, before.result.stdout).toBe(3);
    const first = peerPort(await gw.status());
    expect(first).toBeGreaterThanOrEqual(20000);
    expect(first).toBeLessThan(20100);

    // The mapping expires; the next datagram gets a port of the new range.
    await masquerade(nat, '30000-30099');
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const after = await ping(client, `10.${I}.100.1`, { count: 6, intervalS: 0.2, src: `10.${I}.50.1` });
    // The first answer may leave before the move (to the old, expired mapping); the rest arrive.
    expect(after.received, after.result.stdout).toBeGreaterThanOrEqual(4);
    const moved = peerPort(await gw.status());
    expect(moved).toBeGreaterThanOrEqual(30000);
    expect(moved).toBeLessThan(30100);
    expect(gw.log()).toMatch(/peer NAT mapping changed \(seen on ESP\)/);
  });
});
