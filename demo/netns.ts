// Network namespaces (Linux, root) for the harnesses that run ikeclone
// between real interfaces: `ikeclone demo --netns`, the tunnel benchmark
// (bench/tunnel.ts) and the namespace tests (test/support/netns.ts). One way
// to build them, written once:
//
//   - a namespace comes up with lo up and IPv6 off (router and address events
//     of IPv6 would otherwise start MOBIKE path checks about a second after
//     link-up; every harness here is IPv4 only);
//   - veth pairs are created directly inside the namespaces
//     (`ip link add ... netns A type veth peer ... netns B`), so the host's own
//     interfaces are never touched, and deleting a namespace deletes its ends;
//   - inner subnets live on lo, which keeps tunnel traffic selectors clear of
//     the outer (IKE) addresses.
//
// Every function takes the caller's command runner: the demo and the tests
// record each process they start by pid (and only ever signal those), the
// benchmark runs commands to completion. Names are the caller's too; each
// caller names its namespaces after its own pid.
import { execFile, execFileSync } from 'node:child_process';

/** How a command ended and what it printed. */
export interface CommandOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one command to completion; resolves with a non-zero code rather than rejecting. */
export type CommandRunner = (cmd: string, args: string[]) => Promise<CommandOutcome>;

/** A runner without pid bookkeeping, each command bounded by `timeoutMs` (then SIGKILL). */
export function boundedRunner(timeoutMs = 15_000): CommandRunner {
  return (cmd, args) =>
    new Promise((resolve) => {
      execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr: err !== null && code === null ? `${stderr}${err.message}\n` : stderr });
      });
    });
}

/** Run and throw unless the command exits 0 (the message has the command and what it printed). */
export async function runChecked(run: CommandRunner, cmd: string, args: string[]): Promise<CommandOutcome> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}

/** The command line that runs `cmd args` inside namespace `ns` (`ip netns exec` execs it: the pid is the command's own). */
export function inNamespace(ns: string, cmd: string, args: readonly string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', ns, cmd, ...args]];
}

/** Create namespace `name` with lo up and IPv6 off. */
export async function createNamespace(run: CommandRunner, name: string): Promise<void> {
  await runChecked(run, 'ip', ['netns', 'add', name]);
  await runChecked(run, ...inNamespace(name, 'sysctl', [
    '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1',
  ]));
  await runChecked(run, 'ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** One end of a veth pair: its namespace, interface name and address with prefix length. */
export interface VethEnd {
  ns: string;
  dev: string;
  cidr: string;
}

/** A veth pair with one end in each namespace, both ends addressed and up. */
export async function addVethPair(run: CommandRunner, a: VethEnd, b: VethEnd, mtu?: number): Promise<void> {
  const mtuArgs = mtu === undefined ? [] : ['mtu', String(mtu)];
  await runChecked(run, 'ip', ['link', 'add', 'name', a.dev, 'netns', a.ns, ...mtuArgs, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns, ...mtuArgs]);
  for (const end of [a, b]) await addAddress(run, end.ns, end.cidr, end.dev);
  for (const end of [a, b]) await setLink(run, end.ns, end.dev, true);
}

/** An address with prefix length on `dev` (default lo, where inner subnets live). */
export async function addAddress(run: CommandRunner, ns: string, cidr: string, dev = 'lo'): Promise<void> {
  await runChecked(run, 'ip', ['-n', ns, 'addr', 'add', cidr, 'dev', dev]);
}

/** Set a link administratively up or down. */
export async function setLink(run: CommandRunner, ns: string, dev: string, up: boolean): Promise<void> {
  await runChecked(run, 'ip', ['-n', ns, 'link', 'set', 'dev', dev, up ? 'up' : 'down']);
}

/** A route inside `ns` to `dst`, via a gateway and/or a device, optionally with a source address. */
export async function addRoute(run: CommandRunner, ns: string, dst: string, via: { dev?: string; gateway?: string; src?: string }): Promise<void> {
  const args = ['-n', ns, 'route', 'add', dst];
  if (via.gateway !== undefined) args.push('via', via.gateway);
  if (via.dev !== undefined) args.push('dev', via.dev);
  if (via.src !== undefined) args.push('src', via.src);
  await runChecked(run, 'ip', args);
}

/**
 * Two namespaces joined by veth pairs, with an inner address on each side's
 * lo: the layout of the netns demo, the tunnel benchmark and the two-peer tests.
 */
export interface PairLayout {
  namespaces: readonly [string, string];
  /** One veth pair per entry, named `dev` on both sides, with each side's address and prefix length. */
  links: ReadonlyArray<{ dev: string; cidrs: readonly [string, string] }>;
  /** Each side's inner address with prefix length, on lo. */
  inner: readonly [string, string];
}

/**
 * Build a PairLayout. `created` hears of each namespace before it is
 * created, so that the caller's clean-up never misses one, also when a later
 * step fails.
 */
export async function createNamespacePair(run: CommandRunner, layout: PairLayout, created: (name: string) => void): Promise<void> {
  const [a, b] = layout.namespaces;
  for (const name of layout.namespaces) {
    created(name);
    await createNamespace(run, name);
  }
  for (const link of layout.links) {
    await addVethPair(run, { ns: a, dev: link.dev, cidr: link.cidrs[0] }, { ns: b, dev: link.dev, cidr: link.cidrs[1] });
  }
  await addAddress(run, a, layout.inner[0]);
  await addAddress(run, b, layout.inner[1]);
}

/** Delete a namespace; one that is already gone is not an error. Resolves with what went wrong, if anything. */
export async function deleteNamespace(run: CommandRunner, name: string): Promise<string | undefined> {
  const r = await run('ip', ['netns', 'delete', name]);
  return r.code !== 0 && !/No such file/.test(r.stderr) ? `ip netns delete ${name}: ${r.stderr.trim()}` : undefined;
}

/** Delete namespaces synchronously, ignoring errors: for exit hooks and a second signal, where nothing can wait. */
export function deleteNamespacesNow(names: Iterable<string>): void {
  for (const name of names) {
    try {
      execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore', timeout: 5000 });
    } catch {
      // already gone
    }
  }
}

/** What iputils' ping printed in its summary: requests sent, replies received, round trips in ms when any came back. */
export interface PingSummary {
  sent: number;
  received: number;
  rtt: { minMs: number; avgMs: number; maxMs: number } | null;
}

/** Read ping's summary lines ("N packets transmitted, M received", "rtt min/avg/max/mdev = ..."). */
export function parsePingSummary(stdout: string): PingSummary {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(stdout);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/[\d.]+ ms/.exec(stdout);
  return {
    sent: counts ? Number(counts[1]) : 0,
    received: counts ? Number(counts[2]) : 0,
    rtt: rtt ? { minMs: Number(rtt[1]), avgMs: Number(rtt[2]), maxMs: Number(rtt[3]) } : null,
  };
}
