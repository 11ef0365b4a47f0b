// Every worker carries traffic whatever the peer (architecture §5.1), through
// TUN devices in network namespaces:
// - two ikeclone gateways, cloning switched off on the responder, which takes
//   RFC 9611 per-resource Child SAs (per_cpu_sas): a fallback SA and one
//   per-resource Child SA per worker on both ends;
// - ikeclone against strongSwan 5.9 (kernel-libipsec), which knows neither
//   cloning nor RFC 9611: parallel Child SAs with the same selectors (RFC 7296
//   §2.8), one per ikeclone worker, all installed on both ends.
// Ping both ways and iperf3 with parallel streams (many flows, spread by the
// flow hash), then every worker's ESP counters.
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import { addRoute, createTopology, exec, ping, spawnIn } from './support/netns.js';
import type { NetNs, Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite, type NetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import { killCli, startCli } from './support/cli-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { ikeclonePeerConfig } from './support/ikeclone-pair-config.js';
import type { ChildSaStatus, GatewayStatus } from '../control/status.js';
import { tunUnavailable } from '../io/tun.js';
import { DEFERRED_OUTBOUND_MS } from '../dataplane/defaults.js';

const PSK = 'per-worker-netns-psk-0123456789abcdef';
const TUN = 'ikc0';
const WORKERS = 2;
/** iperf3 streams: each a flow of its own, so the flow hash spreads them over every SA (2^-15 that all land on one). */
const STREAMS = 16;

function ikecloneConnection(
  topo: Topology, side: 'left' | 'right', peerId: string, extra: Record<string, unknown>, child: Record<string, unknown> = {}, dataplane: Record<string, unknown> = {},
): Record<string, unknown> {
  return ikeclonePeerConfig(topo, {
    side, localId: `${side}.per-worker.test`, remoteId: peerId, psk: PSK, dataplane: { workers: WORKERS, tun: TUN, esp: 'udp', ...dataplane }, connection: extra, child,
  });
}

/** Two namespaces joined by a veth pair, deleted after the test; the TUN data plane must be there. */
async function topology(env: NetnsSuite, labels: [string, string]): Promise<Topology> {
  const missing = tunUnavailable();
  if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
  const topo = await createTopology({ labels });
  env.cleanup(() => topo.destroy());
  return topo;
}

const installedChildren = (st: GatewayStatus): ChildSaStatus[] => st.ikeSas.flatMap((s) => s.children.filter((c) => c.state === 'installed' && typeof c.worker === 'number'));

async function tunAndRoute(ns: NetNs, to: string, src: string): Promise<void> {
  await waitFor(async () => (await exec(ns, 'ip', ['link', 'show', TUN])).code === 0, { timeoutMs: 5000, intervalMs: 50, message: 'TUN device' });
  await addRoute(ns, to, { dev: TUN, src });
}

/** Ten echo requests each way between the inner addresses, all answered. */
async function pingBothWays(topo: Topology): Promise<void> {
  const there = await ping(topo.left, topo.rightInner, { count: 10, intervalS: 0.05, src: topo.leftInner });
  expect(there.received, there.result.stdout).toBe(10);
  const back = await ping(topo.right, topo.leftInner, { count: 10, intervalS: 0.05, src: topo.rightInner });
  expect(back.received, back.result.stdout).toBe(10);
}

/** iperf3 from left to right with STREAMS parallel TCP streams (`reverse`: right sends); the received rate. */
async function iperf(env: NetnsSuite, topo: Topology, reverse: boolean): Promise<number> {
  const server = spawnIn(topo.right, 'iperf3', ['-s', '-1', '-B', topo.rightInner]);
  env.cleanup(() => server.stop({ graceMs: 1000 }));
  await waitFor(async () => (await exec(topo.right, 'ss', ['-ltn'])).stdout.includes(`${topo.rightInner}:5201`), { timeoutMs: 5000, intervalMs: 50, message: 'iperf3 server' });
  const args = ['-c', topo.rightInner, '-B', topo.leftInner, '-t', '2', '-P', String(STREAMS), '-J', ...(reverse ? ['-R'] : [])];
  const r = await exec(topo.left, 'iperf3', args, { timeoutMs: 30_000 });
  expect(r.code, r.stderr + r.stdout.slice(-2000)).toBe(0);
  const bps = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
  process.stderr.write(`iperf3 ${reverse ? 'right -> left' : 'left -> right'}, ${STREAMS} streams: ${(bps / 1e6).toFixed(1)} Mbit/s\n`);
  expect(bps).toBeGreaterThan(1e6);
  return bps;
}

/** Every worker of `st` sealed (and, with `opened`, opened) ESP; nothing failed its ICV or replay check. */
function everyWorker(st: GatewayStatus, opened: boolean): void {
  const dp = st.dataplane!;
  expect(dp.workers).toHaveLength(WORKERS);
  for (const w of dp.workers) {
    expect(w.encapPackets, JSON.stringify(dp.workers)).toBeGreaterThan(10);
    if (opened) expect(w.decapPackets, JSON.stringify(dp.workers)).toBeGreaterThan(10);
    expect(w.drops.icv + w.drops.replay + w.drops.malformed).toBe(0);
  }
  expect(dp.io.dropUnknownSpi).toBe(0);
}

describe('ikeclone <-> ikeclone, cloning off on one side: RFC 9611 per-resource Child SAs', () => {
  const PRE: PrereqName[] = ['root', 'netns', 'tun', 'iperf3'];
  const env = useNetnsSuite('per-resource', PRE);

  interopTest(
    'a fallback SA and one per-resource Child SA per worker on both ends; ping and iperf3 both ways with every worker sealing and opening ESP on both ends',
    PRE,
    async () => {
      const topo = await topology(env, ['left', 'right']);
      const right: Ikeclone = await startIkeclone(topo.right, {
        dir: join(env.dir('9611'), 'right'),
        config: ikecloneConnection(topo, 'right', 'left.per-worker.test', { clone: { supported: false } }, { per_cpu_sas: 'yes' }),
      });
      env.cleanup(() => right.stop());
      const left: Ikeclone = await startIkeclone(topo.left, {
        dir: join(env.dir('9611'), 'left'),
        config: ikecloneConnection(topo, 'left', 'right.per-worker.test', { start_action: 'start', clone: { per: 'worker' } }),
      });
      env.cleanup(() => left.stop());
      onTestFailed(() => {
        process.stderr.write(`\n--- left ikeclone (tail) ---\n${left.log().split('\n').slice(-60).join('\n')}\n--- right ikeclone (tail) ---\n${right.log().split('\n').slice(-60).join('\n')}\n`);
      });
      await waitFor(async () => installedChildren(await left.status()).length === WORKERS + 1 && installedChildren(await right.status()).length === WORKERS + 1, {
        timeoutMs: 20_000, intervalMs: 100, message: 'a fallback and per-resource Child SAs in the data plane on both ends',
      });
      for (const gw of [left, right]) {
        const st = await gw.status();
        expect(st.ikeSas.filter((s) => s.state === 'established')).toHaveLength(1);
        const children = installedChildren(st);
        expect(children.filter((c) => c.placement?.kind === 'fallback')).toHaveLength(1);
        const perResource = children.filter((c) => c.placement?.kind === 'per-resource');
        // One per worker, owned by (installed on) that worker.
        expect(perResource.map((c) => c.worker).sort()).toEqual([0, 1]);
        expect(perResource.every((c) => c.worker === c.placement!.resource)).toBe(true);
      }
      expect((await left.status()).families[0]!.perWorker).toMatchObject({ mode: 'per-resource', state: 'complete' });
      // A Child SA the peer created sends once the peer has it, at the latest after DEFERRED_OUTBOUND_MS
      // (dataplane/handover.ts); until then the fallback SA carries the responder's traffic rather than lose it.
      await new Promise((r) => setTimeout(r, DEFERRED_OUTBOUND_MS + 500));
      await tunAndRoute(topo.left, topo.rightInnerNet, topo.leftInner);
      await tunAndRoute(topo.right, topo.leftInnerNet, topo.rightInner);
      await pingBothWays(topo);
      await iperf(env, topo, false);
      await iperf(env, topo, true);
      for (const gw of [left, right]) {
        const st = await gw.status();
        everyWorker(st, true);
        // RFC 9611 §4: with per-resource SAs up, the fallback SA sends nothing.
        const fallback = installedChildren(st).find((c) => c.placement?.kind === 'fallback')!;
        expect(fallback.packetsOut ?? 0).toBe(0);
      }
      // The CLI says so too.
      const cli = startCli(['status', '--socket', left.socket]);
      env.cleanup(() => killCli(cli.proc));
      expect(await cli.exited, cli.stderr()).toBe(0);
      const text = cli.stdout();
      expect(text).toContain('fallback SA (RFC 9611)');
      expect(text).toMatch(/per-worker SAs: per-resource/);
    },
    90_000,
  );
});

describe('ikeclone <-> strongSwan 5.9 (kernel-libipsec): parallel Child SAs, one per ikeclone worker', () => {
  const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'iperf3'];
  const env = useNetnsSuite('parallel-swan', PRE);

  interopTest(
    'ikeclone initiates with clone per worker: parallel Child SAs installed on both ends (swanctl --list-sas), ping and iperf3, every ikeclone worker encrypting',
    PRE,
    async () => {
      const topo = await topology(env, ['ikc', 'swan']);
      const l = topo.links[0]!;
      const connections = pskConnection({
        localAddrs: l.bAddr,
        remoteAddrs: l.aAddr,
        proposals: 'aes256gcm16-prfsha256-x25519',
        esp: 'aes128gcm16',
        localId: 'charon.per-worker.test',
        remoteId: 'left.per-worker.test',
        localTs: topo.rightInnerNet,
        remoteTs: topo.leftInnerNet,
      });
      const secrets = pskSecrets('perworker', ['charon.per-worker.test', 'left.per-worker.test'], PSK);
      const charon: Charon = await startCharon(topo.right, { dir: join(env.dir('swan'), 'charon'), connections, secrets, installRoutes: true });
      env.cleanup(() => charon.stop());
      const ikc: Ikeclone = await startIkeclone(topo.left, {
        dir: join(env.dir('swan'), 'ikeclone'),
        // The I/O thread reads the TUN device and spreads flows by the SPD's hash. With a TUN queue per
        // worker the kernel picks the queue, and it follows the queue that wrote the flow's last inbound
        // packet: charon sends on one of the parallel SAs, so every flow would come back to one worker.
        config: ikecloneConnection(topo, 'left', 'charon.per-worker.test', { start_action: 'start', clone: { per: 'worker' } }, {}, { tun_input: 'io-thread' }),
      });
      env.cleanup(() => ikc.stop());
      onTestFailed(() => {
        process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-60).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`);
      });
      await waitFor(
        async () => {
          const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
          const theirs = sas.filter((s) => s.state === 'ESTABLISHED').flatMap((s) => s.children.filter((c) => c.state === 'INSTALLED'));
          return installedChildren(st).length === WORKERS && theirs.length === WORKERS;
        },
        { timeoutMs: 20_000, intervalMs: 200, message: 'parallel Child SAs installed on both ends' },
      );
      const st = await ikc.status();
      // One IKE SA (charon cannot clone), one Child SA per worker, all with the same selectors.
      expect(st.ikeSas.filter((s) => s.state === 'established')).toHaveLength(1);
      const mine = installedChildren(st);
      expect(mine.map((c) => c.placement?.kind)).toEqual(['parallel', 'parallel']);
      expect(mine.map((c) => c.worker).sort()).toEqual([0, 1]);
      expect(new Set(mine.map((c) => `${c.localTs.join()}|${c.remoteTs.join()}`)).size).toBe(1);
      expect(st.families[0]!.perWorker).toMatchObject({ mode: 'parallel', state: 'complete' });
      expect(st.families[0]!.perWorker!.reason).toMatch(/neither CLONE_IKE_SA_SUPPORTED nor SA_RESOURCE_INFO/);
      // charon has both, with the SPIs ikeclone has (theirs in = our out).
      const theirs = (await charon.listSas()).flatMap((s) => s.children.filter((c) => c.state === 'INSTALLED'));
      expect(theirs.map((c) => c.spiIn).sort()).toEqual(mine.map((c) => c.spiOut).sort());
      expect(new Set(theirs.map((c) => `${c.localTs.join()}|${c.remoteTs.join()}`)).size).toBe(1);

      await tunAndRoute(topo.left, topo.rightInnerNet, topo.leftInner);
      await pingBothWays(topo);
      await iperf(env, topo, false);
      const after = await ikc.status();
      // Every ikeclone worker encrypted (charon's outbound picks one of the SAs for itself).
      everyWorker(after, false);
      expect(installedChildren(after).every((c) => (c.packetsOut ?? 0) > 10)).toBe(true);
      // ... and charon received on every one of them.
      const counted = (await charon.listSas()).flatMap((s) => s.children.filter((c) => c.state === 'INSTALLED'));
      expect(counted.every((c) => c.packetsIn > 10), JSON.stringify(counted)).toBe(true);
    },
    90_000,
  );
});
