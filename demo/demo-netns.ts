// `ikeclone demo --netns` (root): the demo through real TUN devices. Two
// network namespaces joined by a veth pair, an ikeclone gateway (the CLI, as
// a process) in each with a TUN device for inner traffic, one IKE SA cloned
// once per data-plane worker (RFC 7791, architecture §5) so that every worker owns
// a Child SA; then ping both ways and a bounded iperf3 run between the inner
// addresses, through the tunnel, and both gateways' per-worker ESP counters.
//
// Layout (namespaces `ikcdemo-<pid>-<n>-initiator` / `-responder`):
//
//   initiator ns                                    responder ns
//   lo 10.254.50.1/24                               lo 10.254.100.1/24
//   ikc0 (TUN) -- route 10.254.100.0/24             ikc0 (TUN) -- route 10.254.50.0/24
//   veth0 10.254.1.1/24  <------ veth pair ------>  veth0 10.254.1.2/24
//
// Host footprint: the two namespaces (and the veth pair inside them), a
// temporary directory for the configs and control sockets, and the processes
// started here. Nothing else on the host is touched: addresses, routes and
// TUN devices live inside the namespaces and go with them.
//
// Ownership: every child process is tracked by pid and only those pids are
// ever signalled; the namespaces are deleted in a finally block. A first
// SIGINT/SIGTERM during the run aborts it (the running commands are stopped,
// the finally block cleans up); a second one removes everything at once and
// exits with 130.
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { controlRequest } from '../control/api/control-client.js';
import type { GatewayStatus } from '../control/status.js';
import { ikecloneVersion } from '../control/version.js';
import { tunUnavailable } from '../io/tun.js';
import { compareSaViews } from './demo.js';
import { DemoRun, fatal, ms, until, type Proc } from './demo-netns-run.js';
import {
  CHILD, CONNECTION, MAX_CLONES, NETNS_DEMO_INNER, NETNS_DEMO_OUTER, NETNS_DEMO_PREFIX, NETNS_DEMO_TUN, VETH,
  type NetnsDemoMember, type NetnsDemoOptions, type NetnsDemoResult, type NetnsDemoWorker,
} from './demo-netns-layout.js';
import { iperf, pingOnce } from './demo-netns-traffic.js';
import { addRoute } from './netns.js';

export { NETNS_DEMO_INNER, NETNS_DEMO_OUTER, NETNS_DEMO_PREFIX, NETNS_DEMO_TUN } from './demo-netns-layout.js';
export type {
  NetnsDemoMember, NetnsDemoNamespace, NetnsDemoOptions, NetnsDemoPing, NetnsDemoResult, NetnsDemoWorker,
} from './demo-netns-layout.js';
export { iperfStreamPorts } from './demo-netns-traffic.js';

/** A prerequisite of the netns demo is missing; `missing` has one line per problem. */
export class NetnsDemoUnavailableError extends Error {
  constructor(readonly missing: string[]) {
    super(`ikeclone demo --netns cannot run here:\n  ${missing.join('\n  ')}`);
    this.name = 'NetnsDemoUnavailableError';
  }
}

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** The built CLI beside this module (dist/demo -> dist/control/cli/main.js), or under the package root when run from the sources. */
export function defaultCliPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const built = join(here, '..', 'control', 'cli', 'main.js');
  if (existsSync(built)) return built;
  let dir = here;
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'control', 'cli', 'main.js');
    dir = dirname(dir);
  }
  return built;
}

/**
 * What the netns demo needs and does not find: root, iproute2 (`ip`, `ss`),
 * ping, iperf3, /dev/net/tun, the TUN addon and the built CLI. Empty when
 * everything is there.
 */
export function netnsDemoMissing(cliPath = defaultCliPath()): string[] {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux: network namespaces and TUN devices are Linux only');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root: creating network namespaces needs uid 0 (run with sudo)');
  if (!onPath('ip')) missing.push('ip: not found (apt-get install iproute2)');
  if (!onPath('ss')) missing.push('ss: not found (apt-get install iproute2)');
  if (!onPath('ping')) missing.push('ping: not found (apt-get install iputils-ping)');
  if (!onPath('iperf3')) missing.push('iperf3: not found (apt-get install iperf3)');
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun: missing (modprobe tun)');
  else {
    const tun = tunUnavailable();
    if (tun) missing.push(`TUN addon: ${tun}`);
  }
  if (!existsSync(cliPath)) missing.push(`${cliPath}: missing (npm run build)`);
  return missing;
}

// ------------------------------------------------------------------- gateways

function gatewayConfig(role: 'initiator' | 'responder', opts: { workers: number; esp: 'auto' | 'udp'; psk: string }): Record<string, unknown> {
  const me = NETNS_DEMO_OUTER[role];
  const peer = NETNS_DEMO_OUTER[role === 'initiator' ? 'responder' : 'initiator'];
  const [localNet, remoteNet] = role === 'initiator'
    ? [NETNS_DEMO_INNER.initiatorNet, NETNS_DEMO_INNER.responderNet]
    : [NETNS_DEMO_INNER.responderNet, NETNS_DEMO_INNER.initiatorNet];
  return {
    listen: { address: me, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    limits: { ikeSasPerPeer: MAX_CLONES },
    // The I/O thread reads the TUN device, so the SPD's flow hash (not the kernel's choice of
    // queue) spreads iperf3's streams over every member (demo-netns-traffic.ts iperfStreamPorts).
    dataplane: { workers: opts.workers, tun: NETNS_DEMO_TUN, esp: opts.esp, tun_input: 'io-thread' },
    connections: {
      [CONNECTION]: {
        local_addrs: [me],
        remote_addrs: [peer],
        ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: `${role}.netns.demo.ikeclone`, auth: 'psk' },
        remote: { id: `${role === 'initiator' ? 'responder' : 'initiator'}.netns.demo.ikeclone`, auth: 'psk' },
        psk: opts.psk,
        // The initiator clones its IKE SA once per worker, so every worker owns a Child SA (RFC 7791, architecture §5).
        ...(role === 'initiator' ? { start_action: 'start', clone: { per: 'worker', count: opts.workers } } : {}),
        children: { [CHILD]: { local_ts: [localNet], remote_ts: [remoteNet], esp: ['aes128gcm16'] } },
      },
    },
  };
}

interface RunningGateway {
  role: 'initiator' | 'responder';
  proc: Proc;
  socket: string;
  status(): Promise<GatewayStatus>;
  /** The tail of its log, for error messages. */
  logTail(): string;
}

async function startGateway(run: DemoRun, ns: string, role: 'initiator' | 'responder', dir: string, config: Record<string, unknown>, cliPath: string, logLevel: string): Promise<RunningGateway> {
  const file = join(dir, `${role}.yaml`);
  writeFileSync(file, stringify(config), { mode: 0o600 });
  const socket = join(dir, `${role}.sock`);
  const proc = run.startIn(ns, process.execPath, [cliPath, '--log-level', logLevel, 'gateway', '--config', file, '--socket', socket]);
  const logTail = () => proc.output().split('\n').slice(-30).join('\n');
  const status = () => controlRequest(socket, (c) => c.status({ timeoutMs: 5000 }), { connectTimeoutMs: 2000 });
  const gw: RunningGateway = { role, proc, socket, status, logTail };
  await until(run, `the ${role} gateway's control socket`, async () => {
    if (proc.exitCode() !== undefined) throw fatal(`the ${role} gateway exited (code ${proc.exitCode()}):\n${logTail()}`);
    if (!existsSync(socket)) return undefined;
    await status();
    return true;
  }, 15_000);
  return gw;
}

/** Children of every IKE SA, with their owner workers. */
function childrenPlaced(st: GatewayStatus): number | undefined {
  const children = st.ikeSas.flatMap((s) => s.children);
  if (children.length === 0 || !children.every((c) => typeof c.worker === 'number')) return undefined;
  return children.length;
}

function workerRows(st: GatewayStatus): NetnsDemoWorker[] {
  return (st.dataplane?.workers ?? []).map((w) => ({
    index: w.index,
    sas: w.sas,
    encapPackets: w.encapPackets,
    decapPackets: w.decapPackets,
    drops: w.drops.replay + w.drops.icv + w.drops.malformed + w.drops.seqExhausted + w.drops.noSa + w.drops.queueFull,
  }));
}

// ------------------------------------------------------------------------ run

/**
 * Run the netns demo: check the prerequisites (NetnsDemoUnavailableError
 * names what is missing), build the namespaces, start both gateways, wait for
 * the clone family and its Child SAs in both data planes, route the inner
 * subnets through the TUN devices, ping both ways, run iperf3, read both
 * gateways' status, stop them and delete the namespaces (always). Rejects
 * when a step fails or exceeds its bound, after cleaning up.
 */
export async function runNetnsDemo(opts: NetnsDemoOptions = {}): Promise<NetnsDemoResult> {
  if (opts === null || typeof opts !== 'object') throw new TypeError('runNetnsDemo: options must be an object');
  const seconds = opts.seconds ?? 3;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) throw new RangeError('runNetnsDemo: seconds must be an integer from 1 to 600');
  const clones = opts.clones ?? Math.min(MAX_CLONES, Math.max(1, availableParallelism()));
  if (!Number.isInteger(clones) || clones < 1 || clones > MAX_CLONES) throw new RangeError(`runNetnsDemo: clones must be an integer from 1 to ${MAX_CLONES}`);
  const esp = opts.esp ?? 'udp';
  if (esp !== 'auto' && esp !== 'udp') throw new RangeError('runNetnsDemo: esp must be auto or udp');
  const timeoutMs = opts.timeoutMs ?? 20_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('runNetnsDemo: timeoutMs must be a positive number');
  const cliPath = opts.cliPath ?? defaultCliPath();
  const logLevel = opts.logLevel ?? 'warn';
  const progress = opts.progress ?? (() => {});
  const missing = netnsDemoMissing(cliPath);
  if (missing.length > 0) throw new NetnsDemoUnavailableError(missing);

  const run = new DemoRun();
  const onSignal = (signal: NodeJS.Signals) => {
    if (run.interrupted) {
      // Second signal: no more waiting.
      run.cleanupNow();
      process.exit(130);
    }
    progress(`${signal}: stopping and deleting the namespaces`);
    run.interrupt(signal);
  };
  const onExit = () => run.cleanupNow();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
  const t0 = performance.now();
  // Named after the process too: the gateways' command lines (--config) show whose they are.
  const dir = mkdtempSync(join(tmpdir(), `${NETNS_DEMO_PREFIX}${process.pid}-`));
  let result: NetnsDemoResult;
  let cleanupErrors: string[] = [];
  try {
    result = await demo(run, { seconds, clones, esp, timeoutMs, cliPath, logLevel, progress, dir });
  } finally {
    progress('stopping the gateways and deleting the namespaces');
    cleanupErrors = await run.cleanup();
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    if (cleanupErrors.length > 0) progress(`cleaning up: ${cleanupErrors.join('; ')}`);
  }
  // The run worked but left a namespace behind: that is a failure too.
  if (cleanupErrors.length > 0) throw new Error(`cleaning up: ${cleanupErrors.join('; ')}`);
  result.durationMs = ms(t0);
  return result;
}

interface DemoParams {
  seconds: number;
  clones: number;
  esp: 'auto' | 'udp';
  timeoutMs: number;
  cliPath: string;
  logLevel: string;
  progress: (line: string) => void;
  dir: string;
}

let demoCounter = 0;

async function demo(run: DemoRun, p: DemoParams): Promise<NetnsDemoResult> {
  const { progress } = p;
  const stem = `${NETNS_DEMO_PREFIX}${process.pid}-${++demoCounter}`;
  const ns = { initiator: `${stem}-initiator`, responder: `${stem}-responder` };
  const outer = NETNS_DEMO_OUTER;
  const inner = NETNS_DEMO_INNER;

  progress(`creating namespaces ${ns.initiator} and ${ns.responder}: veth ${outer.initiator} <-> ${outer.responder}, inner ${inner.initiator} and ${inner.responder} on lo`);
  await run.createNamespaces({
    namespaces: [ns.initiator, ns.responder],
    links: [{ dev: VETH, cidrs: [`${outer.initiator}/${outer.prefixLen}`, `${outer.responder}/${outer.prefixLen}`] }],
    inner: [`${inner.initiator}/${inner.prefixLen}`, `${inner.responder}/${inner.prefixLen}`],
  });

  const psk = `0x${randomBytes(32).toString('hex')}`;
  const cfg = { workers: p.clones, esp: p.esp, psk };
  progress(`starting the responder gateway in ${ns.responder} (${p.clones} worker${p.clones === 1 ? '' : 's'}, TUN ${NETNS_DEMO_TUN})`);
  const responder = await startGateway(run, ns.responder, 'responder', p.dir, gatewayConfig('responder', cfg), p.cliPath, p.logLevel);
  progress(`starting the initiator gateway in ${ns.initiator}: IKE_SA_INIT + IKE_AUTH, then ${p.clones - 1} clone${p.clones === 2 ? '' : 's'} (RFC 7791), one Child SA per worker`);
  const tUp = performance.now();
  const initiator = await startGateway(run, ns.initiator, 'initiator', p.dir, gatewayConfig('initiator', cfg), p.cliPath, p.logLevel);
  const gone = (gw: RunningGateway) => {
    if (gw.proc.exitCode() !== undefined) throw fatal(`the ${gw.role} gateway exited (code ${gw.proc.exitCode()}):\n${gw.logTail()}`);
  };

  // The family is complete (or settled short of its target) and every Child SA is in a worker on both ends.
  const settled = await until(run, 'the IKE SAs and Child SAs in both data planes', async () => {
    gone(initiator);
    gone(responder);
    const [a, b] = [await initiator.status(), await responder.status()];
    const fam = a.families[0];
    if (!fam || fam.state === 'growing' || fam.members.length < 1) return undefined;
    const n = childrenPlaced(a);
    if (n === undefined || n < fam.members.length || childrenPlaced(b) !== n) return undefined;
    return { a, b, fam };
  }, p.timeoutMs);
  const establishMs = ms(tUp);
  const { fam } = settled;
  progress(`clone family ${fam.state}: ${fam.members.length} of ${fam.target} IKE SAs, each Child SA in its own worker on both ends, in ${establishMs.toFixed(0)} ms`);

  for (const role of ['initiator', 'responder'] as const) {
    await until(run, `TUN device ${NETNS_DEMO_TUN} in ${ns[role]}`, async () => ((await run.runIn(ns[role], 'ip', ['link', 'show', NETNS_DEMO_TUN])).code === 0 ? true : undefined), 5000, 50);
  }
  await addRoute(run.runner, ns.initiator, inner.responderNet, { dev: NETNS_DEMO_TUN, src: inner.initiator });
  await addRoute(run.runner, ns.responder, inner.initiatorNet, { dev: NETNS_DEMO_TUN, src: inner.responder });
  progress(`routes: ${inner.responderNet} and ${inner.initiatorNet} via ${NETNS_DEMO_TUN} on either side`);

  const toResponder = await pingOnce(run, ns.initiator, inner.initiator, inner.responder);
  run.check();
  progress(`ping ${inner.initiator} -> ${inner.responder}: ${toResponder.received}/${toResponder.sent} answered${toResponder.rttMs !== null ? `, avg ${toResponder.rttMs} ms` : ''}`);
  const toInitiator = await pingOnce(run, ns.responder, inner.responder, inner.initiator);
  run.check();
  progress(`ping ${inner.responder} -> ${inner.initiator}: ${toInitiator.received}/${toInitiator.sent} answered${toInitiator.rttMs !== null ? `, avg ${toInitiator.rttMs} ms` : ''}`);

  progress(`iperf3 for ${p.seconds} s from ${inner.initiator} to ${inner.responder}, through the tunnel`);
  const perf = await iperf(run, ns.initiator, ns.responder, p.seconds, p.clones);
  progress(`iperf3: ${perf.mbps} Mbit/s received over ${perf.streams} TCP stream${perf.streams === 1 ? '' : 's'}, ${perf.retransmits} retransmits`);

  gone(initiator);
  gone(responder);
  const [a, b] = [await initiator.status(), await responder.status()];
  const members = a.ikeSas.filter((s) => s.sessionId === fam.sessionId).sort((x, y) => x.familyIndex - y.familyIndex);
  const mismatches: string[] = [];
  const rows: NetnsDemoMember[] = members.map((m) => {
    const peer = b.ikeSas.find((s) => s.spiI === m.spiI && s.spiR === m.spiR);
    if (!peer) mismatches.push(`IKE SA ${m.spiI}_i ${m.spiR}_r: unknown to the responder`);
    else mismatches.push(...compareSaViews(m, peer).map((d) => `family member ${m.familyIndex}: ${d}`));
    const c = m.children[0];
    const pc = peer?.children.find((x) => x.spiIn === c?.spiOut);
    return {
      familyIndex: m.familyIndex,
      spiI: m.spiI,
      spiR: m.spiR,
      childSpiIn: c?.spiIn ?? null,
      childSpiOut: c?.spiOut ?? null,
      worker: c?.worker ?? null,
      peerWorker: pc?.worker ?? null,
    };
  });
  if (members.length === 0) mismatches.push('the initiator has no IKE SA left');
  const rawIn = (st: GatewayStatus) => st.dataplane?.rawEsp?.packetsIn ?? 0;
  const espMode = rawIn(a) > 0 && rawIn(b) > 0 ? 'raw' : 'udp';
  const result: NetnsDemoResult = {
    demo: 'ikeclone-netns',
    version: ikecloneVersion(),
    namespaces: (['initiator', 'responder'] as const).map((role) => ({ name: ns[role], role, outer: outer[role], inner: inner[role], tun: NETNS_DEMO_TUN })),
    esp: espMode,
    establishMs,
    ping: { toResponder, toInitiator },
    iperf3: perf,
    family: { target: fam.target, state: fam.state, members: rows },
    workers: { initiator: workerRows(a), responder: workerRows(b) },
    agree: mismatches.length === 0,
    mismatches,
    durationMs: 0,
  };
  progress(result.agree ? `both ends agree on the SPIs of all ${members.length} IKE SAs and their Child SAs` : `the ends disagree: ${mismatches.join('; ')}`);
  // Stop the initiator first: it deletes the SAs (INFORMATIONAL) while the responder still listens.
  await run.stop(initiator.proc);
  await run.stop(responder.proc);
  return result;
}
