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

/** A CA, a server certificate for `address` (or each of several) and a client certificate, in `dir`. */
async function makeTls(dir: string, address: string | readonly string[]): Promise<EtcdTls & { serverCert: string; serverKey: string }> {
  const sans = [...new Set([...(typeof address === 'string' ? [address] : address), '127.0.0.1'])].map((a) => `IP:${a}`).join(',');
  const f = (n: string) => join(dir, n);
  const ossl = (args: string[]) => runChecked('openssl', args, { timeoutMs: 20_000 });
  await ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=test etcd CA']);
  for (const [name, ext] of [
    ['server', `subjectAltName=${sans}\nextendedKeyUsage=serverAuth,clientAuth`],
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
  /** Where the free loopback ports come from (default freePort): a test of the retry hands out a taken one. */
  freePort?: () => Promise<number>;
}

/** Starts of one etcd on ports found free, when another process took one of them first. */
export const ETCD_START_ATTEMPTS = 3;

/** Start one etcd member and wait until it answers (bounded). */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  // Ports found free can be taken by another process (test files run side by side) before etcd binds them:
  // then etcd exits with "address already in use", and new ports are tried, a bounded number of times.
  const attempts = opts.clientPort === undefined && opts.peerPort === undefined && !opts.ns ? ETCD_START_ATTEMPTS : 1;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEtcdOnce(opts);
    } catch (err) {
      if (attempt >= attempts || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startEtcdOnce(opts: StartEtcdOptions): Promise<EtcdServer> {
  const address = opts.address ?? '127.0.0.1';
  const dir = mkdtempSync(join(tmpdir(), 'ikeclone-etcd-'));
  const dataDir = join(dir, 'data');
  const nextFree = opts.freePort ?? freePort;
  const clientPort = opts.clientPort ?? (opts.ns ? 2379 : await nextFree());
  const peerPort = opts.peerPort ?? (opts.ns ? 2380 : await nextFree());
  const tls = opts.tls ? await makeTls(dir, address) : undefined;
  const scheme = tls ? 'https' : 'http';
  const endpoint = `${scheme}://${address}:${clientPort}`;
  const peer = `http://${address}:${peerPort}`;
  const args = [
    '--name', 'm1', '--data-dir', dataDir, '--grpc-keepalive-min-time', '1s',
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
    // An etcd that exited (a port taken) ends the wait at once: startEtcd tries new ports.
    let exited = false;
    await waitFor(
      async () => {
        if (proc.exitInfo()) return (exited = true);
        const r = await runChecked(ctl[0], [...ctl[1], ...ctlArgs(), '--command-timeout=1s', 'endpoint', 'health'], { env: { ...process.env, ETCDCTL_API: '3' }, timeoutMs: 5000 });
        return r.code === 0;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: () => `etcd at ${endpoint} to answer (${proc.stderr().slice(-500)})` },
    );
    if (exited) throw new Error(`etcd exited: ${proc.stderr().slice(-2000)}`);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** One member of a multi-member etcd cluster: where it runs and how to reach it. */
export interface EtcdMember {
  readonly name: string;
  readonly ns: NetNs;
  readonly address: string;
  /** Client URL, https://ADDRESS:2379 (http without TLS). */
  readonly endpoint: string;
  readonly dataDir: string;
  /** The running process (a new one after restart()). */
  proc(): TrackedProcess;
  running(): boolean;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client URL. */
  readonly endpoints: string[];
  readonly tls: EtcdTls | undefined;
  /** Arguments for etcdctl that reach the cluster (all endpoints, or one member's, and the TLS files). */
  ctlArgs(member?: number): string[];
  /**
   * Runs etcdctl inside member `from`'s namespace (default: the first running
   * member) against every endpoint; throws unless it exits 0.
   */
  ctl(args: readonly string[], opts?: { from?: number; timeoutMs?: number }): Promise<string>;
  /** SIGKILL member i by pid (a crash); its data directory stays for restart(). */
  kill(i: number): Promise<void>;
  /** Start member i again on its data directory and wait until the cluster is healthy through it (bounded). */
  restart(i: number): Promise<void>;
  /** The index of the member that leads now (`etcdctl endpoint status`), -1 when none does. */
  leader(): Promise<number>;
  /** The highest raft term the running members report: every election (or leader move) adds one. */
  term(): Promise<number>;
  /** Make member i the leader (`etcdctl move-leader`) and wait until the running members agree (bounded). */
  moveLeader(i: number): Promise<void>;
  /** The raft timing the members run with. */
  readonly timing: EtcdTiming;
  /** Stop every member by pid and remove the data directories and certificates. */
  stop(): Promise<void>;
}

/**
 * etcd's raft timing (--heartbeat-interval, --election-timeout): a follower
 * that hears no heartbeat for the election timeout starts an election, so a
 * dead leader is replaced after about that long (etcd's tuning guide: the
 * election timeout at least ten times the members' round trip, the
 * heartbeat about that round trip).
 */
export interface EtcdTiming {
  heartbeatMs: number;
  electionMs: number;
}

/** The timing the tests' etcd clusters run with: a killed leader's place is taken within about a second. */
export const DEFAULT_ETCD_TIMING: EtcdTiming = { heartbeatMs: 100, electionMs: 1000 };

export interface StartEtcdClusterOptions {
  /** One member per entry: the namespace it runs in and its address there (reachable from the others). */
  members: ReadonlyArray<{ ns: NetNs; address: string }>;
  tls?: boolean;
  /** Raft timing of every member. Default DEFAULT_ETCD_TIMING. */
  timing?: EtcdTiming;
  /** Bound on the cluster becoming healthy. Default 40 s. */
  timeoutMs?: number;
  /**
   * The directory the members' data directories are made in (each a fresh
   * temporary directory, removed by stop()). Default os.tmpdir(), on the
   * machine's disk: every commit fsyncs each member's WAL there, as in
   * production. ETCD_DATA_TMPFS (tmpfs) makes fsync free: a lower bound on
   * what etcd's storage costs, for measurements only (each member
   * preallocates a 64 MiB WAL segment, memory there, and a run that dies
   * before stop() leaves it until the next boot: the tests keep the disk).
   */
  dataIn?: string;
}

/** A tmpfs every Linux machine has: etcd data there costs no disk flush (and does not survive a reboot). */
export const ETCD_DATA_TMPFS = '/dev/shm';

const ETCD_CLIENT_PORT = 2379;
const ETCD_PEER_PORT = 2380;

/**
 * Start an etcd cluster of several members, each in its own namespace, with
 * TLS (one throwaway CA; the server certificate names every member's address
 * and serves client and peer connections, both with client-certificate
 * authentication). Returns once every member answers `endpoint health`.
 */
export async function startEtcdCluster(opts: StartEtcdClusterOptions): Promise<EtcdCluster> {
  if (opts.members.length < 1) throw new Error('startEtcdCluster: at least one member');
  const timing = opts.timing ?? DEFAULT_ETCD_TIMING;
  if (!(Number.isInteger(timing.heartbeatMs) && timing.heartbeatMs > 0 && Number.isInteger(timing.electionMs) && timing.electionMs >= 5 * timing.heartbeatMs)) {
    throw new RangeError('startEtcdCluster: timing needs whole milliseconds, an election timeout at least 5 heartbeats (etcd refuses less)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'ikeclone-etcd-cluster-'));
  // The data directories apart from the certificates: they may live on another file system.
  const dataRoot = opts.dataIn === undefined ? dir : mkdtempSync(join(opts.dataIn, 'ikeclone-etcd-data-'));
  const tls = opts.tls ? await makeTls(dir, opts.members.map((m) => m.address)) : undefined;
  const scheme = tls ? 'https' : 'http';
  const specs = opts.members.map((m, i) => ({
    name: `m${i + 1}`,
    ns: m.ns,
    address: m.address,
    endpoint: `${scheme}://${m.address}:${ETCD_CLIENT_PORT}`,
    peer: `${scheme}://${m.address}:${ETCD_PEER_PORT}`,
    dataDir: join(dataRoot, `data-m${i + 1}`),
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peer}`).join(',');
  const env = { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' };
  const spawnMember = (s: (typeof specs)[number]): TrackedProcess =>
    spawnIn(s.ns, 'etcd', [
      '--name', s.name, '--data-dir', s.dataDir, '--grpc-keepalive-min-time', '1s',
      '--listen-client-urls', s.endpoint, '--advertise-client-urls', s.endpoint,
      '--listen-peer-urls', s.peer, '--initial-advertise-peer-urls', s.peer,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', 'ikeclone-test',
      // Short heartbeats and elections (by default): a killed member's leadership moves within a second.
      '--heartbeat-interval', String(timing.heartbeatMs), '--election-timeout', String(timing.electionMs),
      '--log-level', 'warn', '--logger', 'zap',
      ...(tls
        ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.ca, '--client-cert-auth',
          '--peer-cert-file', tls.serverCert, '--peer-key-file', tls.serverKey, '--peer-trusted-ca-file', tls.ca, '--peer-client-cert-auth']
        : []),
    ], { env });
  const procs = specs.map(spawnMember);
  const clientTls = tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined;
  const tlsArgs = clientTls ? [`--cacert=${clientTls.ca}`, `--cert=${clientTls.cert}`, `--key=${clientTls.key}`] : [];
  const ctlArgs = (member?: number) => [`--endpoints=${(member === undefined ? specs : [specs[member]!]).map((s) => s.endpoint).join(',')}`, ...tlsArgs];
  const running = (i: number) => procs[i]!.exitInfo() === undefined;
  const ctlEnv = { ...process.env, ETCDCTL_API: '3' };
  const ctlIn = (from: number, args: readonly string[], timeoutMs: number) =>
    runChecked('ip', ['netns', 'exec', specs[from]!.ns.name, 'etcdctl', ...args], { env: ctlEnv, timeoutMs });
  const healthy = (i: number, timeoutMs: number) =>
    waitFor(
      async () => {
        if (!running(i)) throw new Error(`etcd ${specs[i]!.name} exited: ${procs[i]!.stderr().slice(-2000)}`);
        await ctlIn(i, [...ctlArgs(i), '--command-timeout=1s', 'endpoint', 'health'], 5000);
        return true;
      },
      { timeoutMs, intervalMs: 200, message: () => `etcd ${specs[i]!.name} at ${specs[i]!.endpoint} to answer (${procs[i]!.stderr().slice(-500)})` },
    );
  /**
   * Each running member's view (`endpoint status -w simple`: endpoint, member
   * ID in hex, version, DB size, is leader, ...); members that do not answer
   * are left out. Hex IDs, since JSON's 64-bit member IDs lose precision.
   */
  const memberStatus = async (): Promise<Array<{ index: number; id: string; leader: boolean; term: number }>> => {
    const out: Array<{ index: number; id: string; leader: boolean; term: number }> = [];
    for (let i = 0; i < specs.length; i++) {
      if (!running(i)) continue;
      const r = await ctlIn(i, [...ctlArgs(i), '--command-timeout=2s', 'endpoint', 'status', '-w', 'simple'], 5000).catch(() => undefined);
      const f = r?.stdout.trim().split(',').map((x) => x.trim());
      // endpoint, ID, version, DB size, is leader, is learner, raft term, ...
      if (f && f.length >= 7 && /^[0-9a-f]+$/.test(f[1]!)) out.push({ index: i, id: f[1]!, leader: f[4] === 'true', term: Number(f[6]) || 0 });
    }
    return out;
  };
  const cluster: EtcdCluster = {
    members: specs.map((s, i) => ({ name: s.name, ns: s.ns, address: s.address, endpoint: s.endpoint, dataDir: s.dataDir, proc: () => procs[i]!, running: () => running(i) })),
    endpoints: specs.map((s) => s.endpoint),
    tls: clientTls,
    ctlArgs,
    async ctl(args, o = {}) {
      const from = o.from ?? specs.findIndex((_, i) => running(i));
      if (from < 0) throw new Error('etcdctl: no etcd member is running');
      return (await ctlIn(from, [...ctlArgs(), '--command-timeout=3s', ...args], o.timeoutMs ?? 10_000)).stdout;
    },
    async kill(i) {
      await procs[i]!.stop({ signal: 'SIGKILL', graceMs: 2000 });
    },
    async restart(i) {
      if (running(i)) throw new Error(`etcd ${specs[i]!.name} is still running`);
      // On an existing data directory the --initial-cluster flags are ignored: the member rejoins as itself.
      procs[i] = spawnMember(specs[i]!);
      await healthy(i, opts.timeoutMs ?? 40_000);
    },
    timing,
    async leader() {
      return (await memberStatus()).findIndex((m) => m.leader);
    },
    async term() {
      return Math.max(0, ...(await memberStatus()).map((m) => m.term));
    },
    async moveLeader(i) {
      const status = await memberStatus();
      const target = status[i];
      if (!target) throw new Error(`etcd ${specs[i]!.name} does not answer: it cannot lead`);
      if (!target.leader) await cluster.ctl(['move-leader', target.id]);
      await waitFor(async () => (await memberStatus()).every((m) => m.leader === (m.index === i)), {
        timeoutMs: 10_000,
        intervalMs: 100,
        message: `etcd ${specs[i]!.name} to lead`,
      });
    },
    async stop() {
      await Promise.all(procs.map((p) => p.stop({ graceMs: 3000 }).catch(() => undefined)));
      rmSync(dir, { recursive: true, force: true });
      rmSync(dataRoot, { recursive: true, force: true });
    },
  };
  try {
    for (let i = 0; i < specs.length; i++) await healthy(i, opts.timeoutMs ?? 40_000);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
