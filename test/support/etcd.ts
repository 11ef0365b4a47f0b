// A real etcd for cluster tests: the Debian binary (`etcd`, prerequisite
// 'etcd'), one member on loopback or inside a network namespace, with a
// temporary data directory and, optionally, TLS with client certificates
// (a throwaway CA made with openssl). Killed by pid; the data directory and
// the certificates are removed by stop().
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked, spawnTracked, waitFor, type TrackedProcess } from './proc.js';
import { spawnIn, type NetNs } from './netns.js';

export interface EtcdTls {
  ca: string;
  /** Client certificate and key (etcd runs with --client-cert-auth). */
  cert: string;
  key: string;
}

export interface EtcdServer {
  /** Client URL, http(s)://ADDRESS:PORT. */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly proc: TrackedProcess;
  readonly tls: EtcdTls | undefined;
  /** Arguments for etcdctl that reach this server (endpoint and TLS files). */
  ctlArgs(): string[];
  /** SIGKILL by pid (a crash), keeping the data directory. */
  kill(): Promise<void>;
  /** Stop by pid and remove the data directory and certificates. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bound then released; the tests own loopback ports only briefly). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A CA, a server certificate for `address` and a client certificate, in `dir`. */
async function makeTls(dir: string, address: string): Promise<EtcdTls & { serverCert: string; serverKey: string }> {
  const f = (n: string) => join(dir, n);
  const ossl = (args: string[]) => runChecked('openssl', args, { timeoutMs: 20_000 });
  await ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=test etcd CA']);
  for (const [name, ext] of [
    ['server', `subjectAltName=IP:${address},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth`],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(f(`${name}.ext`), `${ext}\n`);
    await ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
    await ossl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`)]);
  }
  return { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key'), serverCert: f('server.pem'), serverKey: f('server.key') };
}

export interface StartEtcdOptions {
  /** Run inside this namespace (its address must be `address`). Default: the host's loopback. */
  ns?: NetNs;
  address?: string;
  tls?: boolean;
  /** Ports to use (default: free loopback ports; inside a namespace: 2379 and 2380). */
  clientPort?: number;
  peerPort?: number;
}

/** Start one etcd member and wait until it answers (bounded). */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const address = opts.address ?? '127.0.0.1';
  const dir = mkdtempSync(join(tmpdir(), 'ikeclone-etcd-'));
  const dataDir = join(dir, 'data');
  const clientPort = opts.clientPort ?? (opts.ns ? 2379 : await freePort());
  const peerPort = opts.peerPort ?? (opts.ns ? 2380 : await freePort());
  const tls = opts.tls ? await makeTls(dir, address) : undefined;
  const scheme = tls ? 'https' : 'http';
  const endpoint = `${scheme}://${address}:${clientPort}`;
  const peer = `http://${address}:${peerPort}`;
  const args = [
    '--name', 'm1', '--data-dir', dataDir,
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `m1=${peer}`, '--initial-cluster-state', 'new',
    '--log-level', 'warn', '--logger', 'zap',
    ...(tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : []),
  ];
  const env = { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' };
  const proc = opts.ns ? spawnIn(opts.ns, 'etcd', args, { env }) : spawnTracked('etcd', args, { env });
  const clientTls = tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined;
  const ctlArgs = () => [`--endpoints=${endpoint}`, ...(clientTls ? [`--cacert=${clientTls.ca}`, `--cert=${clientTls.cert}`, `--key=${clientTls.key}`] : [])];
  const server: EtcdServer = {
    endpoint,
    dataDir,
    proc,
    tls: clientTls,
    ctlArgs,
    async kill() {
      await proc.stop({ signal: 'SIGKILL', graceMs: 2000 });
    },
    async stop() {
      await proc.stop({ graceMs: 3000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    const ctl = opts.ns ? ['ip', ['netns', 'exec', opts.ns.name, 'etcdctl']] as const : ['etcdctl', []] as const;
    await waitFor(
      async () => {
        if (proc.exitInfo()) throw new Error(`etcd exited: ${proc.stderr().slice(-2000)}`);
        const r = await runChecked(ctl[0], [...ctl[1], ...ctlArgs(), '--command-timeout=1s', 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' }, timeoutMs: 5000 });
        return r.code === 0;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: () => `etcd at ${endpoint} to answer (${proc.stderr().slice(-500)})` },
    );
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}
