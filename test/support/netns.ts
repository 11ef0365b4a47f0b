/**
 * Network namespaces for two-peer and multi-NIC tests, built with the
 * namespace helper the demo and the benchmarks use (demo/netns.ts: lo up,
 * IPv6 off, veth pairs created inside the namespaces). This layer adds what
 * tests need: argument checks, addresses in 10.0.0.0/8 only, links waited on
 * until operationally up, netem, and a record of what it created.
 *
 * Every namespace is named `ikc<pid>-<counter>-<label>`, so the owner process
 * is visible in `ip netns list`.
 *
 * Ownership: this module records the namespaces it created and deletes
 * exactly those (on `cleanupNamespaces()` and, as a last resort, when the
 * process ends, signals included). Deleting a namespace also destroys the veth ends inside it.
 */
import * as netns from '../../demo/netns.js';
import { onProcessEnd, run, runChecked, spawnTracked, waitFor } from './proc.js';
import type { RunOptions, RunResult, SpawnTrackedOptions, TrackedProcess } from './proc.js';

/** Namespace commands through proc.ts, so that their pids are tracked too. */
const runner: netns.CommandRunner = (cmd, args) => run(cmd, args, { timeoutMs: 10_000 });

export const NETNS_PREFIX = 'ikc';

/** A network namespace created by this module. */
export interface NetNs {
  readonly name: string;
  readonly label: string;
}

let counter = 0;
const created = new Set<string>();
let endHookInstalled = false;

function installEndHook(): void {
  if (endHookInstalled) return;
  endHookInstalled = true;
  onProcessEnd(() => {
    netns.deleteNamespacesNow(created);
    created.clear();
  });
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const LABEL_RE = /^[a-z0-9]{1,12}$/;
const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkIfName(dev: string): void {
  if (typeof dev !== 'string' || !IFNAME_RE.test(dev)) throw new TypeError(`invalid interface name ${JSON.stringify(dev)}`);
}

function checkNs(ns: NetNs): void {
  if (!ns || typeof ns.name !== 'string' || !created.has(ns.name)) {
    throw new Error(`not a live namespace created by this harness: ${JSON.stringify(ns?.name)}`);
  }
}

/** Validates a 10.x.x.x/len address; the harness only uses private 10/8 addresses. */
export function checkCidr10(cidr: string): { addr: string; prefixLen: number } {
  const m = typeof cidr === 'string' ? CIDR_RE.exec(cidr) : null;
  if (!m) throw new TypeError(`expected an IPv4 address with prefix length (a.b.c.d/n), got ${JSON.stringify(cidr)}`);
  const octets = m.slice(1, 5).map(Number);
  const prefixLen = Number(m[5]);
  if (octets.some((o) => o > 255) || prefixLen > 32) throw new RangeError(`invalid address ${cidr}`);
  if (octets[0] !== 10) throw new RangeError(`harness addresses must be in 10.0.0.0/8, got ${cidr}`);
  return { addr: octets.join('.'), prefixLen };
}

function checkIpv4(addr: string): void {
  const m = typeof addr === 'string' ? IPV4_RE.exec(addr) : null;
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255)) throw new TypeError(`invalid IPv4 address ${JSON.stringify(addr)}`);
}

/**
 * Creates a namespace `ikc<pid>-<n>-<label>` with `lo` up and IPv6 disabled.
 */
export async function createNamespace(label = 'ns'): Promise<NetNs> {
  if (!LABEL_RE.test(label)) throw new TypeError(`namespace label must match ${LABEL_RE}, got ${JSON.stringify(label)}`);
  installEndHook();
  const name = `${NETNS_PREFIX}${process.pid}-${++counter}-${label}`;
  // Recorded first: a failure half way still leaves it to clean-up.
  created.add(name);
  const ns: NetNs = { name, label };
  try {
    await netns.createNamespace(runner, name);
  } catch (e) {
    await deleteNamespace(ns).catch(() => undefined);
    throw e;
  }
  return ns;
}

/** Runs `cmd args` inside `ns` and captures the output (never throws on a non-zero exit). */
export function exec(ns: NetNs, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  checkNs(ns);
  return run('ip', ['netns', 'exec', ns.name, cmd, ...args], opts);
}

/** Like {@link exec} but throws unless the command exits 0. */
export function execChecked(ns: NetNs, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  checkNs(ns);
  return runChecked('ip', ['netns', 'exec', ns.name, cmd, ...args], opts);
}

/**
 * Starts a long-running process inside `ns`. `ip netns exec` execs the
 * command, so the tracked pid is the command's own pid.
 */
export function spawnIn(ns: NetNs, cmd: string, args: readonly string[], opts: SpawnTrackedOptions = {}): TrackedProcess {
  checkNs(ns);
  return spawnTracked('ip', ['netns', 'exec', ns.name, cmd, ...args], opts);
}

/** One veth pair between two namespaces. Addresses are without prefix length. */
export interface VethLink {
  readonly a: NetNs;
  readonly b: NetNs;
  readonly aIf: string;
  readonly bIf: string;
  readonly aAddr: string;
  readonly bAddr: string;
  readonly aCidr: string;
  readonly bCidr: string;
}

export interface VethOptions {
  /** Interface name inside `a` (default eth0). */
  readonly aIf?: string;
  /** Interface name inside `b` (default eth0). */
  readonly bIf?: string;
  /** Address with prefix for `a`, e.g. 10.7.1.1/24. */
  readonly aCidr: string;
  /** Address with prefix for `b`, e.g. 10.7.1.2/24. */
  readonly bCidr: string;
  readonly mtu?: number;
}

/** Creates a veth pair with one end in each namespace, assigns the addresses and brings both ends up. */
export async function addVeth(a: NetNs, b: NetNs, opts: VethOptions): Promise<VethLink> {
  checkNs(a);
  checkNs(b);
  if (a.name === b.name) throw new Error('addVeth: both ends in the same namespace');
  const aIf = opts.aIf ?? 'eth0';
  const bIf = opts.bIf ?? 'eth0';
  checkIfName(aIf);
  checkIfName(bIf);
  const aAddr = checkCidr10(opts.aCidr).addr;
  const bAddr = checkCidr10(opts.bCidr).addr;
  if (opts.mtu !== undefined && (!Number.isInteger(opts.mtu) || opts.mtu < 576 || opts.mtu > 65535)) {
    throw new RangeError(`addVeth: mtu out of range: ${opts.mtu}`);
  }
  await netns.addVethPair(runner, { ns: a.name, dev: aIf, cidr: opts.aCidr }, { ns: b.name, dev: bIf, cidr: opts.bCidr }, opts.mtu);
  await waitOperUp(a, aIf);
  await waitOperUp(b, bIf);
  return { a, b, aIf, bIf, aAddr, bAddr, aCidr: opts.aCidr, bCidr: opts.bCidr };
}

/** Adds an address inside `ns` (default on `lo`, which is how inner subnets are modelled). */
export async function addAddress(ns: NetNs, cidr: string, dev = 'lo'): Promise<void> {
  checkNs(ns);
  checkIfName(dev);
  checkCidr10(cidr);
  await netns.addAddress(runner, ns.name, cidr, dev);
}

/** Sets a link administratively up or down inside `ns`. */
export async function setLink(ns: NetNs, dev: string, up: boolean): Promise<void> {
  checkNs(ns);
  checkIfName(dev);
  await netns.setLink(runner, ns.name, dev, up);
}

/**
 * Waits until `dev` is operationally up. The kernel sets the operational state
 * (IFF_RUNNING) from its link-watch work, up to a second after the carrier
 * comes, later on a loaded machine; until then getifaddrs, and so
 * os.networkInterfaces(), leaves the link's addresses out.
 */
export async function waitOperUp(ns: NetNs, dev: string, timeoutMs = 10_000): Promise<void> {
  checkNs(ns);
  checkIfName(dev);
  let last = '';
  await waitFor(
    async () => {
      last = (await runChecked('ip', ['-n', ns.name, '-o', 'link', 'show', 'dev', dev], { timeoutMs: 5000 })).stdout;
      return /\bstate UP\b/.test(last);
    },
    { timeoutMs, intervalMs: 50, message: () => `${ns.name}/${dev} operationally up (${last.trim().slice(0, 160)})` },
  );
}

export const linkUp = (ns: NetNs, dev: string): Promise<void> => setLink(ns, dev, true);
export const linkDown = (ns: NetNs, dev: string): Promise<void> => setLink(ns, dev, false);

/** Adds a route inside `ns`, e.g. `addRoute(ns, '10.7.100.0/24', { dev: 'ipsec0', src: '10.7.50.1' })`. */
export async function addRoute(ns: NetNs, dst: string, via: { dev?: string; gateway?: string; src?: string }): Promise<void> {
  checkNs(ns);
  checkCidr10(dst);
  if (via.gateway !== undefined) checkIpv4(via.gateway);
  if (via.dev !== undefined) checkIfName(via.dev);
  if (via.src !== undefined) checkIpv4(via.src);
  if (via.gateway === undefined && via.dev === undefined) throw new Error('addRoute: needs a gateway or a device');
  await netns.addRoute(runner, ns.name, dst, via);
}

export interface PingResult {
  readonly sent: number;
  readonly received: number;
  readonly result: RunResult;
}

/**
 * Pings `dst` from inside `ns` (`count` echo requests, `intervalS` apart,
 * waiting `waitS` for the last reply), optionally from source address `src`.
 */
export async function ping(
  ns: NetNs,
  dst: string,
  opts: { count?: number; intervalS?: number; waitS?: number; src?: string } = {},
): Promise<PingResult> {
  checkIpv4(dst);
  const count = opts.count ?? 1;
  const intervalS = opts.intervalS ?? 0.2;
  const waitS = opts.waitS ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new RangeError('ping: count must be 1..10000');
  if (!(intervalS >= 0.002) || !(waitS > 0)) throw new RangeError('ping: intervalS >= 0.002 and waitS > 0 required');
  const args = ['-n', '-q', '-c', String(count), '-i', String(intervalS), '-W', String(waitS)];
  if (opts.src !== undefined) {
    checkIpv4(opts.src);
    args.push('-I', opts.src);
  }
  args.push(dst);
  const result = await exec(ns, 'ping', args, { timeoutMs: Math.ceil((count * intervalS + waitS) * 1000) + 5000 });
  const { sent, received } = netns.parsePingSummary(result.stdout);
  return { sent, received, result };
}

/** Parameters of a `tc netem` qdisc; percentages are 0..100. */
export interface NetemOptions {
  readonly lossPct?: number;
  readonly duplicatePct?: number;
  /** Reordering needs a delay: packets not reordered are held `delayMs`. */
  readonly reorderPct?: number;
  readonly delayMs?: number;
}

/** Thrown when the kernel has no netem qdisc. */
export class NetemUnsupportedError extends Error {
  override readonly name = 'NetemUnsupportedError';
}

/** Installs (or replaces) a netem root qdisc on `dev` inside `ns`. */
export async function setNetem(ns: NetNs, dev: string, opts: NetemOptions): Promise<void> {
  checkNs(ns);
  checkIfName(dev);
  const pct = (v: number | undefined, what: string): string | undefined => {
    if (v === undefined) return undefined;
    if (!Number.isFinite(v) || v < 0 || v > 100) throw new RangeError(`setNetem: ${what} must be 0..100`);
    return `${v}%`;
  };
  const args = ['-n', ns.name, 'qdisc', 'replace', 'dev', dev, 'root', 'netem'];
  const delay = opts.delayMs ?? (opts.reorderPct ? 10 : undefined);
  if (delay !== undefined) {
    if (!Number.isFinite(delay) || delay < 0 || delay > 60_000) throw new RangeError('setNetem: delayMs must be 0..60000');
    args.push('delay', `${delay}ms`);
  }
  const loss = pct(opts.lossPct, 'lossPct');
  if (loss) args.push('loss', loss);
  const dup = pct(opts.duplicatePct, 'duplicatePct');
  if (dup) args.push('duplicate', dup);
  const reorder = pct(opts.reorderPct, 'reorderPct');
  if (reorder) args.push('reorder', reorder);
  const r = await run('tc', args, { timeoutMs: 10_000 });
  if (r.code === 0) return;
  if (/unknown|not supported|No such file/i.test(r.stderr)) {
    throw new NetemUnsupportedError(`tc netem is not available in this kernel: ${r.stderr.trim()}`);
  }
  throw new Error(`tc ${args.join(' ')} failed: ${r.stderr.trim()}`);
}

/** Removes the root qdisc installed by {@link setNetem}. */
export async function clearNetem(ns: NetNs, dev: string): Promise<void> {
  checkNs(ns);
  checkIfName(dev);
  await runChecked('tc', ['-n', ns.name, 'qdisc', 'del', 'dev', dev, 'root'], { timeoutMs: 10_000 });
}

/** All network namespace names on the host (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const r = await runChecked('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

/** Names of the namespaces this process created and has not deleted yet. */
export function createdNamespaces(): string[] {
  return [...created];
}

/** Deletes one namespace created by this module. */
export async function deleteNamespace(ns: NetNs): Promise<void> {
  if (!created.has(ns.name)) return;
  const error = await netns.deleteNamespace(runner, ns.name);
  if (error !== undefined) throw new Error(error);
  created.delete(ns.name);
}

/** Deletes every namespace this process created (and only those). */
export async function cleanupNamespaces(): Promise<void> {
  const errors: string[] = [];
  for (const name of [...created]) {
    await deleteNamespace({ name, label: '' }).catch((e: unknown) => errors.push(String(e)));
  }
  if (errors.length > 0) throw new Error(`namespace cleanup failed:\n${errors.join('\n')}`);
}

/**
 * Deletes `ikc<pid>-...` namespaces whose owner process no longer exists
 * (left behind by a run that was killed with SIGKILL). Never touches a
 * namespace whose owner is alive. Returns the names deleted.
 */
export async function reapStaleNamespaces(): Promise<string[]> {
  const reaped: string[] = [];
  for (const name of await listNamespaces()) {
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-\\d+-[a-z0-9]+$`).exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (alive) continue;
    const r = await run('ip', ['netns', 'delete', name], { timeoutMs: 10_000 });
    if (r.code === 0) reaped.push(name);
  }
  return reaped;
}

/** Two namespaces joined by one or two veth pairs, with an inner subnet on each side. */
export interface Topology {
  /** Second octet of every address in this topology (10.<index>.x.y). */
  readonly index: number;
  readonly left: NetNs;
  readonly right: NetNs;
  /** links[k]: eth<k> on both sides, 10.<index>.<k+1>.1/24 (left) and .2/24 (right). */
  readonly links: VethLink[];
  /** Inner address on the left's `lo`, 10.<index>.50.1. */
  readonly leftInner: string;
  /** Inner address on the right's `lo`, 10.<index>.100.1. */
  readonly rightInner: string;
  /** 10.<index>.50.0/24 */
  readonly leftInnerNet: string;
  /** 10.<index>.100.0/24 */
  readonly rightInnerNet: string;
  /** Deletes both namespaces (and with them the veth pairs). */
  destroy(): Promise<void>;
}

let topologyIndex = 0;

/**
 * Builds the standard two-peer topology: `left` and `right` namespaces,
 * `links` veth pairs (1 or 2; two NICs each side for MOBIKE), and inner
 * subnets 10.i.50.0/24 (left) and 10.i.100.0/24 (right) on `lo`, which keep
 * tunnel traffic selectors clear of the outer IKE addresses.
 */
export async function createTopology(
  opts: { index?: number; links?: 1 | 2; labels?: [string, string]; innerPrefixLen?: number } = {},
): Promise<Topology> {
  const index = opts.index ?? (topologyIndex++ % 250) + 1;
  if (!Number.isInteger(index) || index < 1 || index > 254) throw new RangeError('createTopology: index must be 1..254');
  const nLinks = opts.links ?? 1;
  if (nLinks !== 1 && nLinks !== 2) throw new RangeError('createTopology: links must be 1 or 2');
  const innerLen = opts.innerPrefixLen ?? 24;
  if (!Number.isInteger(innerLen) || innerLen < 8 || innerLen > 32) throw new RangeError('createTopology: innerPrefixLen 8..32');
  const [leftLabel, rightLabel] = opts.labels ?? ['left', 'right'];
  const left = await createNamespace(leftLabel);
  let right: NetNs | undefined;
  try {
    right = await createNamespace(rightLabel);
    const links: VethLink[] = [];
    for (let k = 0; k < nLinks; k++) {
      links.push(
        await addVeth(left, right, {
          aIf: `eth${k}`,
          bIf: `eth${k}`,
          aCidr: `10.${index}.${k + 1}.1/24`,
          bCidr: `10.${index}.${k + 1}.2/24`,
        }),
      );
    }
    const leftInner = `10.${index}.50.1`;
    const rightInner = `10.${index}.100.1`;
    await addAddress(left, `${leftInner}/${innerLen}`);
    await addAddress(right, `${rightInner}/${innerLen}`);
    const l = left;
    const r = right;
    return {
      index,
      left,
      right,
      links,
      leftInner,
      rightInner,
      leftInnerNet: `10.${index}.50.0/24`,
      rightInnerNet: `10.${index}.100.0/24`,
      async destroy() {
        await deleteNamespace(l);
        await deleteNamespace(r);
      },
    };
  } catch (e) {
    await deleteNamespace(left).catch(() => undefined);
    if (right) await deleteNamespace(right).catch(() => undefined);
    throw e;
  }
}
