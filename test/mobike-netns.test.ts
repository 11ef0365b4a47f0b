// MOBIKE (RFC 4555) and per-NIC clones (RFC 7791 §3) between two ikeclone
// processes in network namespaces joined by two veth pairs (two NICs each
// side, IPv6 off): the client clones per NIC and moves clone 1 to NIC 2; both
// IKE SAs answer liveness checks on their own paths; taking NIC 1's link down
// moves the original to NIC 2, and back when the link returns. tshark, with
// the client's key log, sees UPDATE_SA_ADDRESSES arrive from the new address.
// Both gateways carry inner traffic through TUN devices: while NIC 1 is down,
// TCP streams spread over both Child SAs all get through, so every worker
// that sends ESP itself (direct output) was given its SA's new route.
import { describe, expect, onTestFailed } from 'vitest';
import { addRoute, createTopology, exec, setLink, spawnIn } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import type { IkeSaStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tshark', 'tun', 'iperf3'];
const TUN = 'ikc0';
const PSK = 'mobike-netns-test-psk-0123456789abcdef';

const host = (endpoint: string) => endpoint.replace(/:\d+$/, '');

describe('MOBIKE across two NICs (network namespaces)', () => {
  const env = useNetnsSuite('mobike', PRE);

  interopTest(
    'clone per NIC, liveness on each path, link down moves the original to NIC 2 and back; UPDATE_SA_ADDRESSES seen from the new address',
    PRE,
    async () => {
      const topo = await createTopology({ links: 2, labels: ['cli', 'gw'] });
      env.cleanup(() => topo.destroy());
      const [nic1, nic2] = topo.links as [(typeof topo.links)[0], (typeof topo.links)[0]];
      const gw: Ikeclone = await startIkeclone(topo.right, {
        dir: env.dir('gw'),
        config: {
          listen: { address: '0.0.0.0' },
          dataplane: { workers: 2, tun: TUN },
          connections: {
            clients: {
              local: { id: 'gw.mobike.test' },
              remote: { id: 'client.mobike.test' },
              psk: PSK,
              children: { net: { local_ts: [topo.rightInnerNet], remote_ts: [topo.leftInnerNet], esp: ['aes128gcm16'] } },
            },
          },
        },
      });
      env.cleanup(() => gw.stop());
      const capture1 = await startCapture(topo.right, nic1.bIf, { file: env.dir('nic1.pcap') });
      const capture2 = await startCapture(topo.right, nic2.bIf, { file: env.dir('nic2.pcap') });
      env.cleanup(() => capture1.stop({ timeoutMs: 3000 }));
      env.cleanup(() => capture2.stop({ timeoutMs: 3000 }));
      const client: Ikeclone = await startIkeclone(topo.left, {
        dir: env.dir('client'),
        keylog: true,
        config: {
          listen: { address: '0.0.0.0' },
          dataplane: { workers: 2, tun: TUN },
          retransmit: { timeout: '300ms', tries: 3, maxTimeout: '1s' },
          connections: {
            gw: {
              local_addrs: [nic1.aAddr],
              remote_addrs: [nic1.bAddr],
              local: { id: 'client.mobike.test' },
              remote: { id: 'gw.mobike.test' },
              psk: PSK,
              start_action: 'start',
              dpd_delay: '1s',
              clone: { per: 'nic', nics: [nic1.aAddr, nic2.aAddr] },
              children: { net: { local_ts: [topo.leftInnerNet], remote_ts: [topo.rightInnerNet], esp: ['aes128gcm16'] } },
            },
          },
        },
      });
      env.cleanup(() => client.stop());
      onTestFailed(() => void process.stderr.write(`\n--- client log ---\n${client.log().split('\n').slice(-80).join('\n')}\n--- gw log ---\n${gw.log().split('\n').slice(-40).join('\n')}\n`));

      // Clone 1 lives on NIC 2 on both ends.
      await waitFor(async () => (await client.status()).families[0]?.state === 'complete', { timeoutMs: 15_000, intervalMs: 200, message: 'clone family did not complete' });
      const onPath = async (c: Ikeclone, local: string, remote: string) => (await c.status()).ikeSas.find((s) => host(s.local) === local && host(s.remote) === remote);
      let original: IkeSaStatus | undefined;
      let clone: IkeSaStatus | undefined;
      await waitFor(async () => {
        original = await onPath(client, nic1.aAddr, nic1.bAddr);
        clone = await onPath(client, nic2.aAddr, nic2.bAddr);
        return original !== undefined && clone !== undefined && clone.children.length === 1;
      }, { timeoutMs: 10_000, intervalMs: 200, message: 'the clone did not move to NIC 2' });
      expect(original!.familyIndex).toBe(0);
      expect(clone!.familyIndex).toBe(1);
      await waitFor(async () => (await onPath(gw, nic2.bAddr, nic2.aAddr))?.spiI === clone!.spiI, { timeoutMs: 10_000, intervalMs: 200, message: 'the gateway did not follow the clone' });

      // Liveness (dpd_delay 1s) on each path: each IKE SA's INFORMATIONALs go over its own NIC.
      await new Promise((r) => setTimeout(r, 3000));

      // NIC 1 goes down: the original moves to NIC 2; NIC 1 comes back: it moves home.
      await setLink(topo.left, nic1.aIf, false);
      await waitFor(async () => (await onPath(gw, nic2.bAddr, nic2.aAddr)) !== undefined && (await gw.status()).ikeSas.filter((s) => host(s.remote) === nic2.aAddr).length === 2, {
        timeoutMs: 15_000,
        intervalMs: 250,
        message: 'the original did not move to NIC 2 when NIC 1 went down',
      });
      expect((await client.status()).ikeSas.every((s) => host(s.local) === nic2.aAddr)).toBe(true);
      // Inner traffic over NIC 2 alone: 16 TCP streams, spread over both Child SAs by the flow hash.
      await waitFor(async () => (await gw.status()).ikeSas.every((s) => s.children.every((c) => typeof c.worker === 'number')), { timeoutMs: 5000, intervalMs: 100, message: 'gateway Child SAs in the data plane' });
      await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
      await addRoute(topo.right, topo.leftInnerNet, { dev: TUN, src: topo.rightInner });
      const server = spawnIn(topo.right, 'iperf3', ['-s', '-1', '-B', topo.rightInner]);
      env.cleanup(() => server.stop({ graceMs: 1000 }));
      await waitFor(async () => (await exec(topo.right, 'ss', ['-ltn'])).stdout.includes(`${topo.rightInner}:5201`), { timeoutMs: 5000, intervalMs: 50, message: 'iperf3 server' });
      const perf = await exec(topo.left, 'iperf3', ['-c', topo.rightInner, '-B', topo.leftInner, '-P', '16', '-t', '2', '-J'], { timeoutMs: 20_000 });
      expect(perf.code, perf.stderr + perf.stdout.slice(-2000)).toBe(0);
      const streams = (JSON.parse(perf.stdout) as { end: { streams: Array<{ receiver: { bytes: number } }> } }).end.streams;
      expect(streams).toHaveLength(16);
      expect(streams.every((st) => st.receiver.bytes > 0)).toBe(true);
      for (const side of [client, gw]) {
        const st = await side.status();
        expect(st.dataplane!.output).toBe('workers');
        // Each Child SA's owner sent ESP itself, and nothing was refused by the kernel.
        for (const w of new Set(st.ikeSas.flatMap((s) => s.children.map((c) => c.worker!)))) expect(st.dataplane!.workers[w]!.espSent).toBeGreaterThan(0);
        expect(st.dataplane!.io.dropSend).toBe(0);
      }
      await setLink(topo.left, nic1.aIf, true);
      await waitFor(async () => (await onPath(client, nic1.aAddr, nic1.bAddr))?.spiI === original!.spiI, { timeoutMs: 15_000, intervalMs: 250, message: 'the original did not move back to NIC 1' });
      await waitFor(async () => (await onPath(gw, nic1.bAddr, nic1.aAddr))?.spiI === original!.spiI, { timeoutMs: 10_000, intervalMs: 250, message: 'the gateway did not follow the original back' });

      await capture1.stop({ minPackets: 4, timeoutMs: 5000 });
      await capture2.stop({ minPackets: 4, timeoutMs: 5000 });
      const fields = ['ip.src', 'isakmp.ispi', 'isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.notify.msgtype'];
      const rows2 = await decode(capture2.file, { fields, displayFilter: 'isakmp', keylogDir: client.keylogDir });
      const spi = (s: string) => s.replace(/:/g, '');
      // UPDATE_SA_ADDRESSES (16400) for the clone and, after the link went down, for the original, both from NIC 2.
      const updates = rows2.filter((r) => (r[4] ?? '').split(',').includes('16400'));
      expect(updates.every((r) => r[0] === nic2.aAddr && r[3] === '0')).toBe(true);
      expect(new Set(updates.map((r) => spi(r[1]!)))).toEqual(new Set([clone!.spiI, original!.spiI]));
      // The clone's liveness checks (empty INFORMATIONAL requests) went over NIC 2.
      expect(rows2.some((r) => spi(r[1]!) === clone!.spiI && r[2] === '37' && r[0] === nic2.aAddr)).toBe(true);
      // On NIC 1: the original's traffic, and none of the clone's after it moved.
      const rows1 = await decode(capture1.file, { fields, displayFilter: 'isakmp', keylogDir: client.keylogDir });
      expect(rows1.some((r) => spi(r[1]!) === original!.spiI && r[2] === '37')).toBe(true);
    },
    120_000,
  );
});
