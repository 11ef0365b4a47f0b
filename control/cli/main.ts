#!/usr/bin/env node
// The `ikeclone` command line (architecture §6): demo, gateway, up, down, status, top, reload.
//
// Output contract: results go to stdout (a human tree/table, or with --json
// one JSON document and nothing else); logs and progress lines go to stderr
// (progress goes to stdout only in the human form of `demo`). Exit codes:
// 0 success, 1 failure (connection failed, no gateway on the socket, ...),
// 2 invalid configuration or command line.
//
// Owner: the main thread. Long-running commands (gateway, up without --once)
// stop on SIGINT/SIGTERM: SAs are deleted (bounded), sockets closed, the
// control socket file removed; a second signal exits at once.
import { isIP } from 'node:net';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, LOG_LEVELS, loadConfigFile, type GatewayConfig } from '../config/index.js';
import { poolText } from '../config/connection-policy.js';
// Cluster modules load etcd's gRPC client: imported only when a cluster: section asks for them.
import type { ClusterNode } from '../cluster/node.js';
import type { IkeSa } from '../ike/ike-sa.js';
import { Gateway } from '../gateway.js';
import { createLogger, type Logger } from '../log.js';
import { childStatus, ikeSaStatus } from '../status.js';
import { ControlServer, upConnection } from '../api/control-server.js';
import { ControlRequestError, ControlSocketError, controlRequest, type ControlClient } from '../api/control-client.js';
import { MAX_CLONE_COUNT, defaultSocketLocation, defaultSocketPath, type SocketLocation } from '../api/protocol.js';
import { ikecloneVersion } from '../version.js';
import { runDemo } from '../../demo/demo.js';
import { NetnsDemoUnavailableError, runNetnsDemo } from '../../demo/demo-netns.js';
import { formatDemo, formatFamily, formatIkeSa, formatNetnsDemo, formatStatus } from './format.js';
import { runTop } from './top.js';
import { serviceNotifier, type ServiceNotifier } from '../../io/sd-notify.js';
import type { ReloadResult } from '../reload.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** Bound on deleting SAs and closing sockets at shut-down. */
const STOP_TIMEOUT_MS = 3000;

/** A failure with the exit code and message the user sees. */
class CliExit extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    if (text === '') return resolve();
    stream.write(text.endsWith('\n') ? text : `${text}\n`, () => resolve());
  });
}

const stdout = (text: string) => write(process.stdout, text);
const stderr = (text: string) => write(process.stderr, text);

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

interface GlobalOptions {
  logLevel?: string;
}

function logger(globals: GlobalOptions, fallback: string): Logger {
  return createLogger({ level: globals.logLevel ?? fallback });
}

/** Load, validate and build a gateway; configuration problems become exit code 2 with ConfigError's message. */
function loadGateway(file: string, globals: GlobalOptions, loaded?: { config: GatewayConfig; node?: ClusterNode }): { gateway: Gateway; config: GatewayConfig; log: Logger } {
  // A ConfigError reaches main(), which prints its message as is (file:line: path: problem; expected ...).
  const config = loaded?.config ?? loadConfigFile(file);
  const log = logger(globals, config.log.level);
  try {
    const node = loaded?.node;
    const cluster = node ? { spiPrefix: node.spiPrefix, holdRequest: (sa: IkeSa) => node.holdRequest(sa), mayAnswer: (sa: IkeSa) => node.mayAnswer(sa), holdResponse: (sa: IkeSa, send: () => void) => node.holdResponse(sa, send), peerResources: node.peerResources, ...(node.redirectPolicy && { redirectPolicy: node.redirectPolicy }) } : {};
    return { gateway: new Gateway({ config, log, ...cluster }), config, log };
  } catch (err) {
    // Problems only visible when building policies (identities, keys) are configuration problems too.
    throw new CliExit(EXIT_USAGE, `${file}: ${(err as Error).message}`);
  }
}

/** Join the cluster the configuration names (none: undefined); a refusal is the exit code it carries. */
async function joinCluster(config: GatewayConfig, log: Logger): Promise<ClusterNode | undefined> {
  if (!config.cluster) return undefined;
  const [{ ClusterNode }, { ClusterJoinError }] = await Promise.all([import('../cluster/node.js'), import('../cluster/membership.js')]);
  try {
    return await ClusterNode.join(config, log);
  } catch (err) {
    if (err instanceof ClusterJoinError) throw new CliExit(err.exitCode, `cannot join cluster ${config.cluster?.name}: ${err.message}`);
    throw err;
  }
}

/** Resolves with the first SIGINT/SIGTERM; a second one exits at once. */
function untilSignal(log: Logger): { signal: Promise<NodeJS.Signals>; dispose: () => void } {
  let first = true;
  let resolveSignal!: (s: NodeJS.Signals) => void;
  const signal = new Promise<NodeJS.Signals>((r) => (resolveSignal = r));
  const handler = (s: NodeJS.Signals) => {
    if (!first) {
      log.warn({ signal: s }, 'second signal: exiting without cleaning up');
      process.exit(130);
    }
    first = false;
    resolveSignal(s);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** Log what the gateway negotiates in operator terms (the engine logs the mechanics). */
function logEvents(gateway: Gateway, log: Logger): void {
  const now = () => gateway.engine.clock.now();
  gateway.on('ike-up', (sa) => {
    // A status is built for this line only: not at all when info is not logged (one per IKE SA under load).
    if (!log.isLevelEnabled('info')) return;
    const s = ikeSaStatus(sa, now());
    log.info({ ike: s.id, conn: s.name, role: s.role, remote: s.remote, remoteId: s.remoteId, proposal: s.proposal }, 'IKE SA up');
  });
  gateway.on('child-up', (c) => {
    if (!log.isLevelEnabled('info')) return;
    const s = childStatus(c, now());
    log.info({ ike: c.ike.id, child: s.name, spiIn: s.spiIn, spiOut: s.spiOut, proposal: s.proposal, localTs: s.localTs, remoteTs: s.remoteTs }, 'Child SA up');
  });
  gateway.on('child-failed', (sa, name, reason) => log.warn({ ike: sa.id, conn: sa.name, child: name, reason }, 'Child SA failed'));
}

/** Start the gateway's sockets; a bind failure is exit code 1 with the reason. */
async function startGateway(gateway: Gateway): Promise<void> {
  try {
    await gateway.start();
  } catch (err) {
    await gateway.stop({ notifyPeers: false });
    throw new CliExit(EXIT_FAILURE, `cannot start the gateway: ${(err as Error).message}`);
  }
}

/**
 * The control socket to use: --socket as given, else the default location
 * (whose directory, when under /tmp, must be private to this user).
 */
function socketOf(explicit: string | undefined): SocketLocation {
  return explicit !== undefined ? { path: explicit, privateDir: false } : defaultSocketLocation();
}

/** One request to the gateway on the control socket `explicit` (or the default one). */
function askGateway<T>(explicit: string | undefined, fn: (client: ControlClient) => Promise<T>): Promise<T> {
  const { path, privateDir } = socketOf(explicit);
  return controlRequest(path, fn, { privateDir });
}

async function serveSocket(gateway: Gateway, socket: SocketLocation, log: Logger): Promise<ControlServer> {
  const { path, privateDir } = socket;
  const server = new ControlServer({ gateway, path, privateDir, log });
  try {
    await server.listen();
  } catch (err) {
    await gateway.stop({ notifyPeers: false });
    throw new CliExit(EXIT_FAILURE, `cannot serve the control socket ${path}: ${(err as Error).message}`);
  }
  return server;
}

/** Delete SAs and close everything, bounded: past the bound the process exits anyway. */
async function shutdown(gateway: Gateway, server: ControlServer | undefined, log: Logger): Promise<void> {
  const guard = setTimeout(() => {
    log.error('shut-down took too long; exiting');
    process.exit(EXIT_FAILURE);
  }, STOP_TIMEOUT_MS + 2000);
  guard.unref();
  await server?.close();
  await gateway.stop({ timeoutMs: STOP_TIMEOUT_MS });
  clearTimeout(guard);
}

// ------------------------------------------------------------------ commands

interface DemoCommandOptions {
  json?: boolean;
  netns?: boolean;
  seconds?: string;
}

async function demoCommand(opts: DemoCommandOptions, globals: GlobalOptions): Promise<number> {
  const toStderr = opts.json === true;
  const say = (line: string) => void (toStderr ? stderr(line) : stdout(line));
  if (opts.netns) return netnsDemoCommand(opts, globals, say);
  if (opts.seconds !== undefined) throw new CliExit(EXIT_USAGE, 'demo: --seconds applies to --netns only');
  say(`ikeclone ${ikecloneVersion()} demo: an IKEv2 initiator and responder in this process, on loopback`);
  const result = await runDemo({
    log: logger(globals, 'warn'),
    progress: (line) => say(`  ${line}`),
  });
  if (opts.json) await stdout(json(result));
  else await stdout(`\n${formatDemo(result)}`);
  return result.agree && result.deleted ? EXIT_OK : EXIT_FAILURE;
}

/** `demo --netns` (root): two gateway processes in network namespaces, ping and iperf3 through their TUN devices. */
async function netnsDemoCommand(opts: DemoCommandOptions, globals: GlobalOptions, say: (line: string) => void): Promise<number> {
  const seconds = opts.seconds === undefined ? 3 : Number(opts.seconds);
  if (!/^\d+$/.test(opts.seconds ?? '3') || !Number.isInteger(seconds) || seconds < 1 || seconds > 600) {
    throw new CliExit(EXIT_USAGE, `demo: --seconds must be a whole number of seconds from 1 to 600, got ${JSON.stringify(opts.seconds)}`);
  }
  say(`ikeclone ${ikecloneVersion()} demo --netns: two gateway processes in network namespaces, traffic through their TUN devices`);
  let result;
  try {
    result = await runNetnsDemo({
      seconds,
      ...(globals.logLevel ? { logLevel: globals.logLevel } : {}),
      progress: (line) => say(`  ${line}`),
    });
  } catch (err) {
    if (err instanceof NetnsDemoUnavailableError) throw new CliExit(EXIT_FAILURE, err.message);
    throw err;
  }
  if (opts.json) await stdout(json(result));
  else await stdout(`\n${formatNetnsDemo(result)}`);
  const answered = (p: { sent: number; received: number }) => p.sent > 0 && p.received === p.sent;
  return result.agree && answered(result.ping.toResponder) && answered(result.ping.toInitiator) ? EXIT_OK : EXIT_FAILURE;
}

/** The STATUS= line systemd shows for a running gateway. */
function serviceStatus(gateway: Gateway): string {
  const s = gateway.status();
  const children = s.ikeSas.reduce((n, sa) => n + sa.children.length, 0);
  return `${gateway.engine.policies.length} connections, ${s.ikeSas.length} IKE SAs, ${children} Child SAs; configuration ${s.config?.hash ?? '-'}`;
}

/** One line for the log and the service manager about what a reload did. */
function reloadSummary(r: ReloadResult): string {
  const list = (what: string, names: string[]) => (names.length ? `${what}: ${names.join(', ')}` : '');
  const parts = [list('added', r.added), list('removed', r.removed), list('changed', r.changed)].filter(Boolean);
  const restart = r.needsRestart.length ? `; needs a restart (kept as running): ${r.needsRestart.join(', ')}` : '';
  return `configuration ${r.config.hash ?? '-'} loaded${parts.length ? `; ${parts.join('; ')}` : '; no connection changed'}${restart}`;
}

/**
 * Tell the service manager about reloads (RELOADING=1 ... READY=1) and log
 * their outcome; SIGHUP starts one. The control socket's `reload` goes through
 * the same Gateway.reload, so both are framed alike.
 */
function serveReloads(gateway: Gateway, notifier: ServiceNotifier, log: Logger): () => void {
  gateway.on('reloading', () => notifier.reloading('reloading the configuration'));
  gateway.on('reloaded', (result, error) => {
    if (error) log.error({ reason: error.message }, 'reload refused: the running configuration stays');
    else if (result) {
      const line = reloadSummary(result);
      if (result.needsRestart.length > 0) log.warn({ needsRestart: result.needsRestart }, line);
      else log.info({ added: result.added, removed: result.removed, changed: result.changed }, line);
    }
    notifier.ready(serviceStatus(gateway));
  });
  const onHup = () => {
    log.info('SIGHUP: reloading the configuration');
    gateway.reload().catch(() => undefined);
  };
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

async function gatewayCommand(opts: { config: string; socket?: string }, globals: GlobalOptions): Promise<number> {
  // With a cluster: section the node joins first: its SPI prefix is claimed before the engine allocates any SPI.
  const config = loadConfigFile(opts.config);
  const node = await joinCluster(config, logger(globals, config.log.level));
  const { gateway, log } = loadGateway(opts.config, globals, { config, ...(node && { node }) });
  await node?.attach(gateway.engine);
  if (node) {
    gateway.clusterMove = (sa, to) => node.move(sa, to);
    gateway.clusterStatus = () => node.status();
    gateway.metrics?.addCluster(node);
  }
  const stop = untilSignal(log);
  const notifier = serviceNotifier({ onError: (err) => log.warn({ reason: err.message }, 'cannot notify the service manager') });
  let stopReloads = () => {};
  try {
    logEvents(gateway, log);
    await startGateway(gateway);
    const server = await serveSocket(gateway, socketOf(opts.socket), log);
    stopReloads = serveReloads(gateway, notifier, log);
    // READY=1 once listening with the connections to start begun (systemd's Type=notify).
    notifier.ready(serviceStatus(gateway));
    log.info({ config: opts.config, socket: server.path, connections: gateway.engine.policies.map((p) => p.name) }, 'gateway running; SIGHUP reloads the configuration, SIGINT or SIGTERM stops it');
    const signal = await stop.signal;
    notifier.stopping(`stopping on ${signal}: deleting SAs`);
    log.info({ signal }, 'stopping: deleting SAs');
    await shutdown(gateway, server, log);
    log.info('stopped');
    return EXIT_OK;
  } finally {
    // Leaving revokes the lease: the node's keys go now instead of after its TTL.
    await node?.leave().catch((err: Error) => log.warn({ reason: err.message }, 'cannot leave the cluster cleanly'));
    stopReloads();
    notifier.close();
    stop.dispose();
  }
}

async function reloadCommand(opts: { json?: boolean; socket?: string }): Promise<number> {
  let result: ReloadResult;
  try {
    result = await askGateway(opts.socket, (c) => c.reload());
  } catch (err) {
    // The gateway refused the file: its precise error, as at start.
    if (err instanceof ControlRequestError) throw new CliExit(EXIT_FAILURE, `reload refused, the running configuration stays:\n${err.message}`);
    throw err;
  }
  await stdout(opts.json ? json(result) : reloadSummary(result));
  return EXIT_OK;
}

async function topCommand(opts: { socket?: string; interval?: string }): Promise<number> {
  const interval = opts.interval === undefined ? 1 : Number(opts.interval);
  if (!/^\d+(\.\d+)?$/.test(opts.interval ?? '1') || !(interval >= 0.2 && interval <= 60)) {
    throw new CliExit(EXIT_USAGE, `top: --interval must be a number of seconds from 0.2 to 60, got ${JSON.stringify(opts.interval)}`);
  }
  const { path, privateDir } = socketOf(opts.socket);
  const out = process.stdout;
  await runTop({
    // One connection per refresh: a gateway that restarts is picked up again.
    fetchStatus: () => controlRequest(path, (c) => c.status({ timeoutMs: 5000 }), { privateDir }),
    term: {
      get columns() { return out.columns ?? 80; },
      get rows() { return out.rows ?? 24; },
      write: (text) => void out.write(text),
    },
    input: process.stdin,
    intervalMs: interval * 1000,
  });
  return EXIT_OK;
}

interface UpOptions {
  config?: string;
  socket?: string;
  json?: boolean;
  once?: boolean;
}

async function upCommand(name: string, opts: UpOptions, globals: GlobalOptions): Promise<number> {
  if (opts.config === undefined) {
    // Ask a running gateway.
    if (opts.once) throw new CliExit(EXIT_USAGE, 'up: --once needs --config (it runs its own gateway)');
    await stderr(`asking the gateway on ${socketOf(opts.socket).path} to initiate "${name}"`);
    const result = await askGateway(opts.socket, (c) => c.up(name));
    await stdout(opts.json ? json(result.ike) : formatIkeSa(result.ike));
    if (result.failedChildren.length > 0) {
      throw new CliExit(EXIT_FAILURE, result.failedChildren.map((f) => `connection "${name}": Child SA "${f.name}" failed: ${f.reason}`).join('\n'));
    }
    return EXIT_OK;
  }

  const { gateway, log } = loadGateway(opts.config, globals);
  const policy = gateway.engine.policy(name);
  if (!policy) {
    const known = gateway.engine.policies.map((p) => p.name);
    throw new CliExit(EXIT_USAGE, `${opts.config}: no connection named "${name}"${known.length ? ` (connections: ${known.join(', ')})` : ''}`);
  }
  const stop = untilSignal(log);
  let server: ControlServer | undefined;
  try {
    logEvents(gateway, log);
    await startGateway(gateway);
    if (opts.socket !== undefined) server = await serveSocket(gateway, socketOf(opts.socket), log);
    await stderr(`initiating "${name}" to ${policy.remoteAddrs[0] ?? '(no remote address)'} port ${policy.remotePort}: IKE_SA_INIT + IKE_AUTH`);
    let outcome;
    try {
      outcome = await Promise.race([upConnection(gateway, name), stop.signal.then((s) => { throw new Error(`interrupted by ${s}`); })]);
    } catch (err) {
      await shutdown(gateway, server, log);
      throw new CliExit(EXIT_FAILURE, `connection "${name}" failed: ${(err as Error).message}`);
    }
    const s = ikeSaStatus(outcome.sa, gateway.engine.clock.now());
    await stdout(opts.json ? json(s) : formatIkeSa(s));
    if (outcome.failedChildren.length > 0) {
      await shutdown(gateway, server, log);
      throw new CliExit(EXIT_FAILURE, outcome.failedChildren.map((f) => `connection "${name}": Child SA "${f.name}" failed: ${f.reason}`).join('\n'));
    }
    if (!opts.once) {
      await stderr(`"${name}" is up; SIGINT or SIGTERM deletes the SAs and exits`);
      await stop.signal;
    }
    await shutdown(gateway, server, log);
    return EXIT_OK;
  } finally {
    stop.dispose();
  }
}

async function statusCommand(opts: { json?: boolean; socket?: string }): Promise<number> {
  const status = await askGateway(opts.socket, (c) => c.status());
  await stdout(opts.json ? json(status) : formatStatus(status));
  return EXIT_OK;
}

async function downCommand(name: string | undefined, opts: { json?: boolean; socket?: string }): Promise<number> {
  const result = await askGateway(opts.socket, (c) => c.down(name));
  await stdout(opts.json ? json(result) : `deleted ${result.deleted} IKE SA${result.deleted === 1 ? '' : 's'}`);
  return EXIT_OK;
}

/**
 * A positive integer as the user typed it: decimal digits only, so that
 * "0x10", "1e3", " 7" or "" are usage errors, not ids Number() happens to
 * accept. undefined when it is not one.
 */
function positiveInteger(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

/** An IKE SA id argument, or a usage error. */
function ikeSaId(command: string, text: string): number {
  const id = positiveInteger(text);
  if (id === undefined) throw new CliExit(EXIT_USAGE, `${command}: "${text}" is not an IKE SA id (see ikeclone status)`);
  return id;
}

async function cloneCommand(ike: string, opts: { count?: string; json?: boolean; socket?: string }): Promise<number> {
  const id = ikeSaId('clone', ike);
  // The gateway refuses more than MAX_CLONE_COUNT too, but that would be a failure (1), not the usage error (2) it is.
  const count = positiveInteger(opts.count ?? '1');
  if (count === undefined || count > MAX_CLONE_COUNT) {
    throw new CliExit(EXIT_USAGE, `clone: --count must be a whole number from 1 to ${MAX_CLONE_COUNT}, got ${JSON.stringify(opts.count)}`);
  }
  const result = await askGateway(opts.socket, (c) => c.clone(id, count));
  if (opts.json) {
    await stdout(json(result));
  } else {
    const f = result.family;
    await stdout(formatFamily({ sessionId: f.sessionId, peer: result.members[0]?.remoteId ?? null, members: result.members.map((m) => m.id), target: f.target, state: f.state, reason: f.reason ?? null }, result.members));
  }
  return result.family.state === 'complete' ? EXIT_OK : EXIT_FAILURE;
}

async function moveCommand(ike: string, opts: { local?: string; remote?: string; node?: string; json?: boolean; socket?: string }): Promise<number> {
  const id = ikeSaId('move', ike);
  if ((opts.node === undefined) === (opts.local === undefined)) throw new CliExit(EXIT_USAGE, 'move: give either --local (MOBIKE, this gateway) or --node (a cluster node)');
  if (opts.node !== undefined) {
    if (opts.remote !== undefined) throw new CliExit(EXIT_USAGE, 'move: --remote goes with --local, not --node');
    const node = opts.node;
    const moved = await askGateway(opts.socket, (c) => c.moveToNode(id, node));
    await stdout(opts.json ? json(moved) : `IKE SA #${id} handed to ${node} (epoch ${moved.handedOff?.epoch})`);
    return EXIT_OK;
  }
  const local = opts.local!;
  // Checked here so that a typo is a usage error (2), not the gateway's bad-args failure (1).
  for (const [flag, addr] of [['--local', opts.local], ['--remote', opts.remote]] as const) {
    if (addr !== undefined && isIP(addr) === 0) throw new CliExit(EXIT_USAGE, `move: ${flag} must be an IP address, got ${JSON.stringify(addr)}`);
  }
  const result = await askGateway(opts.socket, (c) => c.move(id, local, opts.remote));
  await stdout(opts.json ? json(result) : formatIkeSa(result.ike));
  return EXIT_OK;
}

async function clusterStatusCommand(opts: { config: string; json?: boolean }): Promise<number> {
  const config = loadConfigFile(opts.config);
  if (!config.cluster) throw new CliExit(EXIT_USAGE, `${opts.config}: no cluster: section`);
  const [{ etcdClient }, { formatClusterStatus, readClusterState, sealingStatus }, { readResourceStatus }, { loadClusterKeyRing }] = await Promise.all([
    import('../cluster/etcd-client.js'), import('../cluster/status.js'), import('../cluster/resource-status.js'), import('../cluster/seal.js'),
  ]);
  const cluster = config.cluster;
  // The records are opened only to say which key they are sealed under (a rotation, docs/cluster.md section 2);
  // without read access to the sealing keys the rest of the status still stands.
  let key: ReturnType<typeof loadClusterKeyRing> | undefined;
  try {
    key = loadClusterKeyRing(cluster);
  } catch {
    key = undefined;
  }
  const client = etcdClient(cluster);
  try {
    // The pools this configuration names are listed even before any of their addresses is in etcd.
    const resources = { pools: [...new Set(config.connections.flatMap((c) => c.pools.map(poolText)))], limits: config.limits };
    const [{ status, records }, shared] = await Promise.all([readClusterState(client, cluster.name), readResourceStatus(client, cluster.name, resources)]).catch((err: Error) => {
      throw new CliExit(EXIT_FAILURE, `cannot read cluster ${cluster.name} from etcd: ${err.message}`);
    });
    status.resources = shared;
    if (key) status.sealing = sealingStatus(cluster.name, status, records, key);
    await stdout(opts.json ? json(status) : formatClusterStatus(status));
    return EXIT_OK;
  } finally {
    client.close();
  }
}

// -------------------------------------------------------------------- program

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}

function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command();
  program
    .name('ikeclone')
    .description('IKEv2 gateway that clones IKE SAs (RFC 7791) per core or per NIC, with a WebAssembly ESP data plane')
    .version(ikecloneVersion(), '-V, --version')
    .addOption(new Option('--log-level <level>', 'log level (logs go to stderr); default: the config file\'s, or warn for demo').choices([...LOG_LEVELS]))
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .exitOverride();
  const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions;

  program
    .command('demo')
    .description('set up an IKE SA and a Child SA between two in-process gateways on loopback, show what was negotiated, delete them')
    .option('--json', 'print one JSON document on stdout (progress goes to stderr)')
    .option('--netns', 'root: two gateway processes in network namespaces with TUN devices; ping and iperf3 through the tunnel')
    .option('--seconds <n>', 'with --netns: iperf3 duration in seconds (default 3)')
    .addHelpText('after', examples(
      '$ ikeclone demo',
      '$ ikeclone demo --json | jq .durationMs',
      '$ npm start            # builds, then runs this demo',
      '$ sudo ikeclone demo --netns --seconds 5',
      '$ sudo ikeclone demo --netns --json | jq .iperf3.mbps',
    ))
    .action(async (opts: DemoCommandOptions, cmd: Command) => setExit(await demoCommand(opts, globals(cmd))));

  program
    .command('gateway')
    .description('run a gateway (responder, and initiator of connections with start_action: start) until SIGINT/SIGTERM')
    .requiredOption('-c, --config <file>', 'YAML configuration (reference: docs/configuration.md)')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .addHelpText('after', examples(
      '$ ikeclone gateway --config examples/gateway.yaml',
      '$ ikeclone gateway --config /etc/ikeclone.yaml --socket /tmp/gw.sock --log-level debug',
    ))
    .action(async (opts: { config: string; socket?: string }, cmd: Command) => setExit(await gatewayCommand(opts, globals(cmd))));

  program
    .command('up')
    .description('initiate a connection: with --config in a gateway of its own (foreground), else in the running gateway')
    .argument('<name>', 'connection name (a key under connections: in the config)')
    .option('-c, --config <file>', 'run a gateway from this configuration in the foreground until SIGINT/SIGTERM')
    .option('-s, --socket <path>', 'control socket: of the running gateway to ask (without --config), or to serve (with --config)')
    .option('--json', 'print the established IKE SA as JSON (the status fields of one IKE SA)')
    .option('--once', 'with --config: delete the SAs and exit right after printing')
    .addHelpText('after', examples(
      '$ ikeclone up home --config examples/client.yaml            # stays up until Ctrl-C',
      '$ ikeclone up home --config examples/client.yaml --once --json',
      '$ ikeclone up home --socket /tmp/gw.sock                     # ask a running gateway',
    ))
    .action(async (name: string, opts: UpOptions, cmd: Command) => setExit(await upCommand(name, opts, globals(cmd))));

  program
    .command('down')
    .description('delete the IKE SAs (and their Child SAs) of one connection, or all, in the running gateway')
    .argument('[name]', 'connection name (default: every IKE SA)')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .option('--json', 'print {"deleted": N} as JSON')
    .addHelpText('after', examples('$ ikeclone down home', '$ ikeclone down --socket /tmp/gw.sock'))
    .action(async (name: string | undefined, opts: { json?: boolean; socket?: string }) => setExit(await downCommand(name, opts)));

  program
    .command('clone')
    .description('clone an established IKE SA in the running gateway (RFC 7791): each clone gets the connection\'s Child SAs')
    .argument('<ike-sa>', 'IKE SA id, as `ikeclone status` shows it (#N)')
    .option('-n, --count <n>', 'clones to add', '1')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .option('--json', 'print the family and its members as JSON')
    .addHelpText('after', examples('$ ikeclone clone 1', '$ ikeclone clone 1 --count 3 --json --socket /tmp/gw.sock'))
    .action(async (ike: string, opts: { count?: string; json?: boolean; socket?: string }) => setExit(await cloneCommand(ike, opts)));

  program
    .command('move')
    .description('move an IKE SA this gateway initiated, and its Child SAs, to other addresses with MOBIKE (RFC 4555); or, in a cluster, hand a clone to another node')
    .argument('<ike-sa>', 'IKE SA id, as `ikeclone status` shows it (#N)')
    .option('-l, --local <addr>', 'local address to move to (e.g. the second NIC\'s)')
    .option('-n, --node <name>', 'cluster node to hand the clone to (it announces itself and the peer moves the clone there)')
    .option('-r, --remote <addr>', 'peer address to use (one it announced); default: the current one')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .option('--json', 'print the moved IKE SA as JSON')
    .addHelpText('after', examples('$ ikeclone move 2 --local 10.0.2.2', '$ ikeclone move 2 --local 10.0.2.2 --remote 192.0.2.7 --json', '$ ikeclone move 5 --node gw-b'))
    .action(async (ike: string, opts: { local?: string; remote?: string; node?: string; json?: boolean; socket?: string }) => setExit(await moveCommand(ike, opts)));

  program
    .command('cluster')
    .description('a gateway cluster on etcd (the cluster: section of the configuration)')
    .command('status')
    .description('members (address, SPI prefix, load), clones per node and their epochs, pools (size, leased, reserved per node, free), peers counted and at each per-peer limit, and each node\'s refusals, read from etcd')
    .requiredOption('-c, --config <file>', 'a node\'s configuration (its cluster: section names etcd and the cluster)')
    .option('--json', 'print the cluster status (ClusterStatus, control/cluster/status.ts) as JSON')
    .addHelpText('after', examples('$ ikeclone cluster status --config /etc/ikeclone.yaml', '$ ikeclone cluster status --config /etc/ikeclone.yaml --json | jq .members'))
    .action(async (opts: { config: string; json?: boolean }) => setExit(await clusterStatusCommand(opts)));

  program
    .command('status')
    .description('show the IKE SAs and Child SAs of the running gateway')
    .option('--json', 'print the gateway status (GatewayStatus, control/status.ts) as JSON')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .addHelpText('after', examples('$ ikeclone status', '$ ikeclone status --json --socket /tmp/gw.sock | jq \'.ikeSas[].children\''))
    .action(async (opts: { json?: boolean; socket?: string }) => setExit(await statusCommand(opts)));

  program
    .command('reload')
    .description('make the running gateway re-read its configuration file (as SIGHUP does): new connections are loaded, removed ones deleted, changed ones apply to new SAs; SAs of unchanged connections keep running')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .option('--json', 'print what changed (added, removed, changed, unchanged, needsRestart, config) as JSON')
    .addHelpText('after', examples('$ ikeclone reload', '$ ikeclone reload --json --socket /tmp/gw.sock', '$ systemctl reload ikeclone   # the same, through the service (SIGHUP)'))
    .action(async (opts: { json?: boolean; socket?: string }) => setExit(await reloadCommand(opts)));

  program
    .command('top')
    .description('a live view of the running gateway: per-worker packet and bit rates and drops, clone families, the busiest Child SAs; q quits')
    .option('-s, --socket <path>', `control socket (default: ${defaultSocketPath()})`)
    .option('-i, --interval <seconds>', 'refresh interval in seconds', '1')
    .addHelpText('after', examples('$ ikeclone top', '$ ikeclone top --socket /tmp/gw.sock --interval 2'))
    .action(async (opts: { socket?: string; interval?: string }) => setExit(await topCommand(opts)));

  program.addHelpText('after', examples(
    '$ ikeclone demo',
    '$ ikeclone gateway --config examples/gateway.yaml',
    '$ ikeclone status --json',
    '$ ikeclone <command> --help',
  ));
  return program;
}

async function main(argv: string[]): Promise<number> {
  // `ikeclone status --json | head` closes our stdout early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_OK);
  });
  let code = EXIT_OK;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      return EXIT_USAGE;
    }
    if (err instanceof CliExit) {
      await stderr(`ikeclone: ${err.message}`);
      return err.code;
    }
    if (err instanceof ControlSocketError || err instanceof ControlRequestError) {
      await stderr(`ikeclone: ${err.message}`);
      return EXIT_FAILURE;
    }
    if (err instanceof ConfigError) {
      await stderr(err.message);
      return EXIT_USAGE;
    }
    await stderr(`ikeclone: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_FAILURE;
  }
}

main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ikeclone: internal error: ${String(err)}\n`);
    process.exit(EXIT_FAILURE);
  },
);
