// MOBIKE without NAT and without UDP encapsulation (RFC 4555 §3.5, §3.9),
// between two ikeclone processes in network namespaces joined by two veth
// pairs, both with `encap: no`: IKE_SA_INIT exchanges NAT-D and finds no NAT,
// so NAT traversal is on but ESP stays raw (IP protocol 50). The initiator's
// address changes (its first NIC's address is removed): it moves to its
// second NIC with UPDATE_SA_ADDRESSES, which carries no NO_NATS_ALLOWED
// (NAT-D was exchanged), the gateway follows, and a ping through the tunnel
// keeps working across the move. tshark, with the client's key log, sees the
// update arrive from the new address and no UNEXPECTED_NAT_DETECTED.
import { describe, expect, onTestFailed } from 'vitest';
import { addRoute, createTopology, exec, ping, spawnIn } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';

const PRE: PrereqName[] = ['root', 'netns', 'tshark', 'tun'];
const TUN = 'ikc0';
const PSK = 'mobike-encap-no-test-psk-0123456789abcdef';
const UPDATE_SA_ADDRESSES = '16400';
const NO_NATS_ALLOWED = '16402';
const UNEXPECTED_NAT_DETECTED = '41';

const host = (endpoint: string) => endpoint.replace(/:\d+$/, '');

/**
 * Both ends' configuration: `encap: no` (ESP stays raw without a NAT), one
 * worker and a TUN device each; the client initiates from NIC 1.
 */
function gatewayConfig(topo: Topology, side: 'client' | 'gw'): Record<string, unknown> {
  const [nic1] = topo.links;
  const client = side === 'client';
  const [me, peer] = client ? ['client', 'gw'] : ['gw', 'client'];
  const connection = {
    local: { id: `${me}.encap-no.test` },
    remote: { id: `${peer}.encap-no.test` },
    psk: PSK,
    encap: 'no',
    children: { net: client ? { local_ts: [topo.leftInnerNet], remote_ts: [topo.rightInnerNet] } : { local_ts: [topo.rightInnerNet], remote_ts: [topo.leftInnerNet] } },
    ...(client ? { local_addrs: [nic1!.aAddr], remote_addrs: [nic1!.bAddr], start_action: 'start' } : {}),
  };
  return {
    listen: { address: '0.0.0.0' },
    dataplane: { workers: 1, tun: TUN },
    ...(client ? { retransmit: { timeout: '300ms', tries: 3, maxTimeout: '1s' } } : {}),
    connections: { [client ? 'gw' : 'clients']: connection },
  };
}

describe('MOBIKE with encap: no and no NAT (network namespaces)', () => {
  const env = useNetnsSuite('mobike-encap-no', PRE);

  interopTest(
    'the initiator changes address, sends UPDATE_SA_ADDRESSES from its second NIC, and ping through the tunnel keeps working',
    PRE,
    async () => {
      const topo = await createTopology({ links: 2, labels: ['cli', 'gw'] });
      env.cleanup(() => topo.destroy());
      const [nic1, nic2] = topo.links as [(typeof topo.links)[0], (typeof topo.links)[0]];
      const gw: Ikeclone = await startIkeclone(topo.right, { dir: env.dir('gw'), config: gatewayConfig(topo, 'gw') });
      env.cleanup(() => gw.stop());
      const ikeCapture = await startCapture(topo.right, nic2.bIf, { file: env.dir('nic2-ike.pcap') });
      const espCapture = await startCapture(topo.right, nic2.bIf, { file: env.dir('nic2-esp.pcap'), filter: 'ip proto 50' });
      env.cleanup(() => ikeCapture.stop({ timeoutMs: 3000 }));
      env.cleanup(() => espCapture.stop({ timeoutMs: 3000 }));
      const client: Ikeclone = await startIkeclone(topo.left, { dir: env.dir('client'), keylog: true, config: gatewayConfig(topo, 'client') });
      env.cleanup(() => client.stop());
      onTestFailed(() => void process.stderr.write(`\n--- client log ---\n${client.log().split('\n').slice(-80).join('\n')}\n--- gw log ---\n${gw.log().split('\n').slice(-60).join('\n')}\n`));

      // Up on NIC 1, no NAT, raw ESP; both Child SAs in their data planes.
      await waitFor(async () => {
        const [c, g] = await Promise.all([client.status(), gw.status()]);
        return [c, g].every((st) => st.ikeSas.length === 1 && st.ikeSas[0]!.mobike && st.ikeSas[0]!.children.length === 1 && typeof st.ikeSas[0]!.children[0]!.worker === 'number');
      }, { timeoutMs: 15_000, intervalMs: 200, message: 'IKE SA with MOBIKE and a Child SA not established' });
      const before = (await client.status()).ikeSas[0]!;
      expect(host(before.local)).toBe(nic1.aAddr);
      expect([before.natLocal, before.natRemote, before.children[0]!.udpEncap]).toEqual([false, false, false]);
      await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
      await addRoute(topo.right, topo.leftInnerNet, { dev: TUN, src: topo.rightInner });
      const first = await ping(topo.left, topo.rightInner, { count: 3, src: topo.leftInner });
      expect(first.received, first.result.stdout).toBe(3);

      // A ping runs across the move: 10 per second for 8 s.
      const running = spawnIn(topo.left, 'ping', ['-n', '-q', '-c', '80', '-i', '0.1', '-W', '1', '-I', topo.leftInner, topo.rightInner]);
      env.cleanup(() => running.stop({ graceMs: 500 }));
      await new Promise((r) => setTimeout(r, 1000));
      // The initiator's address changes: NIC 1 loses its address, NIC 2 is what is left.
      const del = await exec(topo.left, 'ip', ['addr', 'del', `${nic1.aAddr}/24`, 'dev', nic1.aIf]);
      expect(del.code, del.stderr).toBe(0);
      await waitFor(async () => {
        const [c, g] = await Promise.all([client.status(), gw.status()]);
        return host(c.ikeSas[0]?.local ?? '') === nic2.aAddr && host(g.ikeSas[0]?.remote ?? '') === nic2.aAddr;
      }, { timeoutMs: 15_000, intervalMs: 200, message: 'the IKE SA did not move to NIC 2' });
      await waitFor(() => running.exitInfo() !== undefined, { timeoutMs: 15_000, intervalMs: 200, message: 'ping did not finish' });
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(running.stdout());
      expect(m, running.stdout() + running.stderr()).not.toBeNull();
      const [sent, received] = [Number(m![1]), Number(m![2])];
      // The move costs at most the address monitor's poll, the update and the return routability check.
      expect(sent).toBe(80);
      expect(received, running.stdout()).toBeGreaterThanOrEqual(50);
      const after = await ping(topo.left, topo.rightInner, { count: 5, src: topo.leftInner });
      expect(after.received, after.result.stdout).toBe(5);

      // Same IKE SA and Child SA, on NIC 2, still without NAT and without UDP encapsulation.
      const [c, g] = await Promise.all([client.status(), gw.status()]);
      expect(c.ikeSas).toHaveLength(1);
      expect(c.ikeSas[0]!.spiI).toBe(before.spiI);
      expect(c.ikeSas[0]!.children[0]!.spiIn).toBe(before.children[0]!.spiIn);
      for (const sa of [c.ikeSas[0]!, g.ikeSas[0]!]) expect([sa.natLocal, sa.natRemote, sa.children[0]!.udpEncap]).toEqual([false, false, false]);
      expect(g.ike.drops).not.toHaveProperty('decrypt');

      const esp = await espCapture.stop({ minPackets: 5, timeoutMs: 5000 });
      expect(esp.packets).toBeGreaterThanOrEqual(5);
      await ikeCapture.stop({ minPackets: 2, timeoutMs: 5000 });
      const rows = await decode(ikeCapture.file, { fields: ['ip.src', 'isakmp.ispi', 'isakmp.flag_r', 'isakmp.notify.msgtype'], displayFilter: 'isakmp', keylogDir: client.keylogDir });
      const notifies = (r: string[]) => (r[3] ?? '').split(',');
      const updates = rows.filter((r) => notifies(r).includes(UPDATE_SA_ADDRESSES));
      expect(updates.length).toBeGreaterThan(0);
      expect(updates.every((r) => r[0] === nic2.aAddr && r[2] === '0')).toBe(true);
      // NAT-D was exchanged in IKE_SA_INIT: no NO_NATS_ALLOWED (RFC 4555 §3.9), and nothing refused.
      expect(updates.some((r) => notifies(r).includes(NO_NATS_ALLOWED))).toBe(false);
      expect(rows.some((r) => notifies(r).includes(UNEXPECTED_NAT_DETECTED))).toBe(false);
    },
    120_000,
  );
});
