// IKE setup benchmark (`npm run bench -- ike [--json]`): what an additional
// authenticated IKE SA costs by a full IKE_SA_INIT + IKE_AUTH versus by
// cloning an existing one (RFC 7791), over UDP on loopback, with PSK and with
// ECDSA P-256 signatures; and how fast a family of 64 grows.
//
// Both gateways run in this process, so CPU time covers both ends of every
// exchange. Ratios are measured in one run (the machines are shared and noisy).
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromObject } from '../control/config/index.js';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { formatTable, round, type SuiteOptions } from './common.js';

export interface IkeSetupResult {
  auth: 'psk' | 'ecdsa';
  method: 'full' | 'clone';
  samples: number;
  /** Wall time per additional IKE SA (ms): mean and median. */
  meanMs: number;
  p50Ms: number;
  /** CPU time (user + system, both ends) per additional IKE SA (ms). */
  cpuMs: number;
  /** Additional IKE SAs per second, one at a time. */
  perSecond: number;
}

export interface IkeBenchReport {
  suite: 'ike';
  node: string;
  results: IkeSetupResult[];
  family: { size: number; ms: number; clonesPerSecond: number };
  ratios: Record<string, { value: number; description: string }>;
}

const SAMPLES = 40;
const FAMILY = 64;
const PSK = 'ike-bench pre-shared key, 0123456789';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function gatewayPair(auth: 'psk' | 'ecdsa', dir: string, port: number): Promise<{ gw: Gateway; client: Gateway }> {
  const common = { log: { level: 'silent' }, limits: { ikeSasPerPeer: 10_000, childSasPerPeer: 10_000, halfOpenCookieThreshold: 1000 } };
  let gwAuth: Record<string, unknown> = { psk: PSK };
  let clientAuth: Record<string, unknown> = { psk: PSK };
  if (auth === 'ecdsa') {
    const keys = ['gw', 'client'].map((name) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const key = join(dir, `${name}.key.pem`);
      const pub = join(dir, `${name}.pub.pem`);
      writeFileSync(key, privateKey.export({ type: 'pkcs8', format: 'pem' }));
      writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
      return { key, pub };
    });
    gwAuth = { local: { id: 'gw.bench', auth: 'pubkey', key: keys[0]!.key }, remote: { id: 'client.bench', auth: 'pubkey', pubkey: keys[1]!.pub } };
    clientAuth = { local: { id: 'client.bench', auth: 'pubkey', key: keys[1]!.key }, remote: { id: 'gw.bench', auth: 'pubkey', pubkey: keys[0]!.pub } };
  } else {
    gwAuth = { ...gwAuth, local: { id: 'gw.bench' }, remote: { id: 'client.bench' } };
    clientAuth = { ...clientAuth, local: { id: 'client.bench' }, remote: { id: 'gw.bench' } };
  }
  const child = (l: string, r: string) => ({ net: { local_ts: [l], remote_ts: [r], esp: ['aes128gcm16'] } });
  const gw = new Gateway({
    log: silentLogger(),
    config: configFromObject(
      { ...common, listen: { address: '127.0.0.2', port, natPort: port + 1 }, connections: { c: { local_addrs: ['127.0.0.2'], ike: ['aes256gcm16-prfsha256-x25519'], mobike: false, children: child('10.2.0.0/24', '10.1.0.0/24'), ...gwAuth } } },
      { baseDir: dir },
    ),
  });
  const client = new Gateway({
    log: silentLogger(),
    config: configFromObject(
      {
        ...common,
        listen: { address: '127.0.0.1', port, natPort: port + 1 },
        connections: { c: { local_addrs: ['127.0.0.1'], remote_addrs: ['127.0.0.2'], remote_port: port, ike: ['aes256gcm16-prfsha256-x25519'], mobike: false, children: child('10.1.0.0/24', '10.2.0.0/24'), ...clientAuth } },
      },
      { baseDir: dir },
    ),
  });
  await gw.start();
  await client.start();
  return { gw, client };
}

function cpuMs(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

async function timed(n: number, one: () => Promise<unknown>): Promise<{ times: number[]; cpu: number }> {
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await one();
    times.push(performance.now() - t0);
  }
  return { times, cpu: cpuMs(cpu0) / n };
}

function summarise(auth: 'psk' | 'ecdsa', method: 'full' | 'clone', r: { times: number[]; cpu: number }): IkeSetupResult {
  const mean = r.times.reduce((a, b) => a + b, 0) / r.times.length;
  return { auth, method, samples: r.times.length, meanMs: round(mean), p50Ms: round(median(r.times)), cpuMs: round(r.cpu), perSecond: round(1000 / mean, 1) };
}

export async function runIkeBench(opts: SuiteOptions): Promise<IkeBenchReport> {
  const dir = mkdtempSync(join(tmpdir(), 'ikc-bench-ike-'));
  const results: IkeSetupResult[] = [];
  let family = { size: FAMILY, ms: 0, clonesPerSecond: 0 };
  let port = 30000 + (process.pid % 1000) * 20;
  try {
    for (const auth of ['psk', 'ecdsa'] as const) {
      process.stderr.write(`ike: ${auth}: ${SAMPLES} full handshakes, ${SAMPLES} clones...\n`);
      const { gw, client } = await gatewayPair(auth, dir, (port += 4));
      try {
        // Warm-up: JIT and the first socket round trips.
        const base: IkeSa = await client.up('c');
        for (let i = 0; i < 3; i++) await client.up('c');
        for (let i = 0; i < 3; i++) await client.engine.cloneIkeSa(base);
        results.push(summarise(auth, 'full', await timed(SAMPLES, () => client.up('c'))));
        results.push(summarise(auth, 'clone', await timed(SAMPLES, () => client.engine.cloneIkeSa(base))));
        if (auth === 'psk') {
          await client.down();
          const original = await client.up('c');
          const t0 = performance.now();
          for (let i = 1; i < FAMILY; i++) await client.engine.cloneIkeSa(original);
          const ms = performance.now() - t0;
          family = { size: FAMILY, ms: round(ms), clonesPerSecond: round(((FAMILY - 1) * 1000) / ms, 1) };
        }
      } finally {
        await client.stop({ notifyPeers: false });
        await gw.stop({ notifyPeers: false });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const find = (auth: string, method: string) => results.find((r) => r.auth === auth && r.method === method)!;
  const ratios: IkeBenchReport['ratios'] = {};
  for (const auth of ['psk', 'ecdsa']) {
    ratios[`clone_vs_full_time_${auth}`] = { value: round(find(auth, 'full').meanMs / find(auth, 'clone').meanMs, 2), description: `full handshake time / clone time (${auth}); > 1 means cloning is faster` };
    ratios[`clone_vs_full_cpu_${auth}`] = { value: round(find(auth, 'full').cpuMs / find(auth, 'clone').cpuMs, 2), description: `full handshake CPU / clone CPU (${auth})` };
  }
  const report: IkeBenchReport = { suite: 'ike', node: process.version, results, family, ratios };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const rows = results.map((r) => [r.auth, r.method, r.samples, r.meanMs, r.p50Ms, r.cpuMs, r.perSecond]);
    process.stdout.write(`${formatTable(['auth', 'additional IKE SA by', 'n', 'mean ms', 'p50 ms', 'CPU ms (both ends)', 'per second'], rows)}\n\n`);
    process.stdout.write(`family of ${family.size}: ${family.ms} ms, ${family.clonesPerSecond} clones/s\n`);
    for (const [name, r] of Object.entries(ratios)) process.stdout.write(`${name}: ${r.value}x  (${r.description})\n`);
  }
  return report;
}
