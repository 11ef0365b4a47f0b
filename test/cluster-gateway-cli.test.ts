// `ikeclone gateway` with a cluster: section, against a real etcd: the node
// joins (member key with its SPI prefix) and leaves on SIGTERM; a too-open
// sealing key file is a configuration error (exit 2); etcd unreachable is
// exit 1 unless the section says to run standalone; another set of
// connections is refused with a clear message (exit 2).
import { afterAll, afterEach, beforeAll, describe, expect } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { ensureCliBuilt, killCli, startCli, type CliProcess } from './support/cli-proc.js';
import { freePort, startEtcd, type EtcdServer } from './support/etcd.js';
import { interopTest, requirePrereqs } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { etcdClient } from '../control/cluster/etcd-client.js';

let dir: string;
let etcd: EtcdServer | undefined;
let client: Etcd3 | undefined;
const started = new Set<ChildProcess>();

beforeAll(async () => {
  ensureCliBuilt();
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-cluster-cli-'));
  if (requirePrereqs(['etcd']).ok) {
    etcd = await startEtcd({ tls: true });
    client = etcdClient({ etcd: [etcd.endpoint], tls: etcd.tls! });
  }
}, 60_000);
afterEach(() => {
  for (const p of started) killCli(p);
  started.clear();
});
afterAll(async () => {
  client?.close();
  await etcd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function start(args: string[]): CliProcess {
  const r = startCli(args, { cwd: dir });
  started.add(r.proc);
  return r;
}

async function exitOf(r: CliProcess, timeoutMs = 30_000): Promise<number | null> {
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return code;
}

function secret(name: string, mode = 0o600): string {
  const file = join(dir, name);
  writeFileSync(file, randomBytes(32), { mode });
  chmodSync(file, mode);
  return file;
}

let portBase = 21000 + 2 * Math.floor(Math.random() * 10000);

/** A gateway configuration on 127.0.0.1 with a cluster: section. */
function config(name: string, opts: { cluster: string; node: string; keyFile: string; etcd?: string; standalone?: boolean; psk?: string; poolReserve?: number | string; pools?: string; probePort?: number }): string {
  const port = (portBase += 2);
  const tls = etcd!.tls!;
  const file = join(dir, name);
  writeFileSync(file, `
log: { level: info }
listen: { address: 127.0.0.1, port: ${port}, natPort: ${port + 1} }
cluster:
  name: ${opts.cluster}
  node: ${opts.node}
  address: 127.0.0.1
  etcd: [${opts.etcd ?? etcd!.endpoint}]
  ${opts.etcd?.startsWith('http:') ? '' : `tls: { ca: ${tls.ca}, cert: ${tls.cert}, key: ${tls.key} }`}
  sealing_key_file: ${opts.keyFile}
  lease_ttl: 2s
  on_etcd_unreachable: ${opts.standalone ? 'standalone' : 'fail'}
${opts.poolReserve === undefined ? '' : `  pool_reserve: ${opts.poolReserve}\n`}${opts.probePort === undefined ? '' : `  probe_port: ${opts.probePort}\n`}connections:
  clients:
    local: { id: gw.cluster.test, auth: psk }
    remote: { id: "*.cluster.test", auth: psk }
    psk: "${opts.psk ?? 'cluster test pre-shared key 0123456789'}"
${opts.pools ? `    pools: [${opts.pools}]\n` : ''}    children:
      net: { local_ts: 10.2.0.0/24, remote_ts: 10.1.0.0/24, esp: aes128gcm16 }
`);
  return file;
}

describe('ikeclone gateway in a cluster', () => {
  interopTest('joins with a member key and an SPI prefix, refuses other connections, and leaves on SIGTERM', ['etcd'], async () => {
    const cluster = `cli-${randomBytes(3).toString('hex')}`;
    const key = secret('k1');
    const aConfig = config('a.yaml', { cluster, node: 'gw-a', keyFile: key });
    const a = start(['gateway', '--config', aConfig, '--socket', join(dir, 'a.sock')]);
    const member = await waitFor(async () => client!.get(`/ikeclone/v1/${cluster}/members/gw-a`).string(), {
      timeoutMs: 20_000,
      message: () => `gw-a's member key (${a.stderr().slice(-1000)})`,
    });
    expect(JSON.parse(member)).toMatchObject({ node: 'gw-a', address: '127.0.0.1', load: 0, spiPrefix: expect.any(Number) });
    // ikeclone cluster status reads the same from etcd.
    const st = start(['cluster', 'status', '--config', aConfig, '--json']);
    expect(await exitOf(st)).toBe(0);
    // (and the cluster's pools, per-peer accounting and refusals: cluster-resources.test.ts and the test below)
    // (sealing: which key the clones' records open under, with the keys of the configuration: none yet.)
    expect(JSON.parse(st.stdout())).toEqual({ cluster, members: [{ ...JSON.parse(member), clones: 0 }], clones: [], orphaned: 0, resources: expect.any(Object), sealing: { current: 0, previous: 0, unopened: 0 } });
    const text = start(['cluster', 'status', '--config', aConfig]);
    expect(await exitOf(text)).toBe(0);
    expect(text.stdout()).toMatch(new RegExp(`cluster ${cluster}: 1 member, 0 clones\\n\\s+NODE\\s+ADDRESS\\s+SPI PREFIX\\s+LOAD\\s+CLONES\\n\\s+gw-a\\s+127\\.0\\.0\\.1\\s+\\d+\\s+0\\s+0`));
    // Another PSK: other connections, refused.
    const b = start(['gateway', '--config', config('b.yaml', { cluster, node: 'gw-b', keyFile: key, psk: 'another pre-shared key 0123456789' }), '--socket', join(dir, 'b.sock')]);
    expect(await exitOf(b)).toBe(2);
    expect(b.stderr()).toMatch(/cannot join cluster cli-\w+: node gw-b runs other connections than cluster cli-\w+ .*every node needs the same connections/);
    a.proc.kill('SIGTERM');
    expect(await exitOf(a)).toBe(0);
    expect(await client!.get(`/ikeclone/v1/${cluster}/members/gw-a`).string()).toBeNull();
  }, 90_000);

  interopTest('cluster status shows each pool\'s size, leases, reserves and free addresses, the peers counted and each node\'s refusals; pool_reserve sets the reserve', ['etcd'], async () => {
    const cluster = `cli-${randomBytes(3).toString('hex')}`;
    const key = secret('k3');
    const aConfig = config('ra.yaml', { cluster, node: 'gw-a', keyFile: key, poolReserve: 2, pools: '10.9.0.0/29' });
    start(['gateway', '--config', aConfig, '--socket', join(dir, 'ra.sock')]);
    // The node's refusals are published once it is attached (after its reserve is claimed).
    await waitFor(async () => client!.get(`/ikeclone/v1/${cluster}/stats/gw-a`).string(), { timeoutMs: 20_000, message: 'gw-a\'s refusals in etcd' });
    const st = start(['cluster', 'status', '--config', aConfig, '--json']);
    expect(await exitOf(st)).toBe(0);
    expect(JSON.parse(st.stdout()).resources).toEqual({
      pools: [{ pool: '10.9.0.0/29', size: 6, leased: 0, reserved: { 'gw-a': 2 }, free: 4 }],
      peers: { peers: 0, ikeSas: 0, childSas: 0, atLimit: { ikeSasPerPeer: { limit: 16, peers: 0 }, childSasPerPeer: { limit: 64, peers: 0 } } },
      refusals: { 'gw-a': { noAdditionalSas: 0, admissionContention: 0, internalAddressFailure: 0, leaseWritesRefused: 0 } },
    });
    const text = start(['cluster', 'status', '--config', aConfig]);
    expect(await exitOf(text)).toBe(0);
    expect(text.stdout()).toMatch(/\npools:\n\s+POOL\s+SIZE\s+LEASED\s+RESERVED\s+FREE\n\s+10\.9\.0\.0\/29\s+6\s+0\s+gw-a 2\s+4\npeers: 0 counted, 0 IKE SAs, 0 Child SAs, 0 at ikeSasPerPeer 16, 0 at childSasPerPeer 64\nrefusals:\n\s+gw-a  NO_ADDITIONAL_SAS 0 \(contention 0\), INTERNAL_ADDRESS_FAILURE 0, lease writes refused 0\n?$/);
    // The node's own view in ikeclone status: its reserve and leases per pool, the peers counted, its refusals.
    const own = start(['status', '--socket', join(dir, 'ra.sock'), '--json']);
    expect(await exitOf(own)).toBe(0);
    expect(JSON.parse(own.stdout()).cluster.resources).toEqual({
      pools: [{ pool: '10.9.0.0/29', reserved: 2, leased: 0 }],
      peers: { counted: 0, atIkeSaLimit: 0, atChildSaLimit: 0 },
      refusals: { noAdditionalSas: 0, admissionContention: 0, internalAddressFailure: 0, leaseWritesRefused: 0 },
    });
    const ownText = start(['status', '--socket', join(dir, 'ra.sock')]);
    expect(await exitOf(ownText)).toBe(0);
    expect(ownText.stdout()).toMatch(/; pools: 10\.9\.0\.0\/29 2 in reserve, 0 leased here; peers counted 0 \(0 at the IKE SA limit, 0 at the Child SA limit\); refused: NO_ADDITIONAL_SAS 0, INTERNAL_ADDRESS_FAILURE 0, lease writes 0/);
    // Outside 0..64: a configuration error naming the key (exit 2).
    const bad = start(['cluster', 'status', '--config', config('rb.yaml', { cluster, node: 'gw-b', keyFile: key, poolReserve: 65 })]);
    expect(await exitOf(bad)).toBe(2);
    expect(bad.stderr()).toMatch(/cluster\.pool_reserve: .*an integer from 0 to 64/);
  }, 90_000);

  interopTest('a liveness probe that cannot bind (its port taken) is named in status: that node neither suspects nor is suspected', ['etcd'], async () => {
    const cluster = `cli-${randomBytes(3).toString('hex')}`;
    const key = secret('k4');
    const probePort = await freePort();
    const status = async (sock: string) => {
      const st = start(['status', '--socket', join(dir, sock), '--json']);
      expect(await exitOf(st)).toBe(0);
      return JSON.parse(st.stdout()).cluster;
    };
    const a = start(['gateway', '--config', config('pa.yaml', { cluster, node: 'gw-a', keyFile: key, probePort }), '--socket', join(dir, 'pa.sock')]);
    await waitFor(() => /gateway running/.test(a.stdout() + a.stderr()), { timeoutMs: 30_000, message: () => `gw-a to run (${a.stderr().slice(-1000)})` });
    const sa = await status('pa.sock');
    expect(sa.livenessProbe).toMatchObject({ port: probePort });
    expect(sa.livenessProbeUnbound).toBeUndefined();
    // gw-b on the same address and probe port: it runs, without the probe, and says so.
    const b = start(['gateway', '--config', config('pb.yaml', { cluster, node: 'gw-b', keyFile: key, probePort }), '--socket', join(dir, 'pb.sock')]);
    await waitFor(() => /gateway running/.test(b.stdout() + b.stderr()), { timeoutMs: 30_000, message: () => `gw-b to run (${b.stderr().slice(-1000)})` });
    expect(b.stdout() + b.stderr()).toMatch(/cannot bind the liveness probe/);
    const sb = await status('pb.sock');
    expect(sb.livenessProbe).toBeUndefined();
    expect(sb.livenessProbeUnbound).toEqual({ address: '127.0.0.1', port: probePort, reason: expect.stringMatching(/EADDRINUSE/) });
    const text = start(['status', '--socket', join(dir, 'pb.sock')]);
    expect(await exitOf(text)).toBe(0);
    expect(text.stdout()).toMatch(new RegExp(`liveness probe NOT bound on 127\\.0\\.0\\.1:${probePort} \\(.*EADDRINUSE.*\\): silent members neither suspected nor suspecting`));
    // No heartbeat from gw-b (nothing to suspect it by), one from gw-a.
    await waitFor(async () => client!.get(`/ikeclone/v1/${cluster}/alive/gw-a`).string(), { timeoutMs: 10_000, message: 'gw-a\'s heartbeat' });
    expect(await client!.get(`/ikeclone/v1/${cluster}/alive/gw-b`).string()).toBeNull();
  }, 90_000);

  interopTest('a sealing key file readable by others is a configuration error (exit 2)', ['etcd'], async () => {
    const r = start(['gateway', '--config', config('wide.yaml', { cluster: 'w', node: 'n', keyFile: secret('wide', 0o644) })]);
    expect(await exitOf(r)).toBe(2);
    expect(r.stderr()).toMatch(/wide\.yaml:\d+: cluster\.sealing_key_file: mode 0644 lets others read or write the sealing key; expected a file with mode 0600 or stricter/);
  }, 60_000);

  interopTest('etcd unreachable at start: exit 1, or a single gateway with on_etcd_unreachable: standalone', ['etcd'], async () => {
    const port = await freePort();
    const down = `http://127.0.0.1:${port}`;
    const r = start(['gateway', '--config', config('down.yaml', { cluster: 'd', node: 'n', keyFile: secret('k2'), etcd: down }), '--socket', join(dir, 'd.sock')]);
    expect(await exitOf(r)).toBe(1);
    expect(r.stderr()).toMatch(/cannot join cluster d: cannot reach etcd at http:\/\/127\.0\.0\.1:\d+/);
    const s = start(['gateway', '--config', config('alone.yaml', { cluster: 'd', node: 'n', keyFile: secret('k3'), etcd: down, standalone: true }), '--socket', join(dir, 's.sock')]);
    const out = () => s.stdout() + s.stderr();
    await waitFor(() => /gateway running/.test(out()), { timeoutMs: 30_000, message: () => `the standalone gateway to run (${out().slice(-1000)})` });
    expect(out()).toMatch(/etcd unreachable: running as a single gateway/);
    s.proc.kill('SIGTERM');
    expect(await exitOf(s)).toBe(0);
  }, 60_000);
});
