/**
 * The lossy UDP relay (lossy-relay.mjs) as a tracked process inside a test
 * namespace: the user-space replacement for `tc netem` loss, duplication and
 * reordering between two IKE peers (RFC 7296 §2.1 retransmission under test).
 *
 * The relay is started with `spawnIn` and a stdin pipe: closing the pipe (or
 * this process ending) ends the relay. Counters are read over that pipe: a
 * JSON command line in, a JSON line with the same id out on stdout.
 *
 * Ownership: only the relay's own pid is ever signalled (see proc.ts).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { NetNs } from './netns.js';
import { spawnIn } from './netns.js';
import type { TrackedProcess } from './proc.js';
import { waitFor } from './proc.js';
import { REPO_ROOT } from './vectors.js';

export const RELAY_PATH = resolve(REPO_ROOT, 'test/support/lossy-relay.mjs');

/** Fault probabilities (0..1); the per-direction ones override `loss`. */
export interface RelayFaults {
  readonly loss?: number;
  /** Loss client -> target only. */
  readonly lossC2g?: number;
  /** Loss target -> client only. */
  readonly lossG2c?: number;
  readonly dup?: number;
  readonly reorder?: number;
}

/** The probabilities one direction applies. */
export interface FaultSet {
  readonly loss: number;
  readonly dup: number;
  readonly reorder: number;
}

export interface RelayOptions extends RelayFaults {
  /** Address the relay binds (the client sends here); must already exist in the namespace. */
  readonly listen: string;
  /** Address of the peer behind the relay (same ports). */
  readonly target: string;
  /** UDP ports to relay (default 500 and 4500). */
  readonly ports?: readonly number[];
  /** PRNG seed: the same datagram sequence meets the same faults. */
  readonly seed: number;
  /** Upper bound of a reordered datagram's hold time (default 50 ms). */
  readonly maxDelayMs?: number;
  /** The relay ends itself after this long whatever happens (default 300 s). */
  readonly maxLifetimeS?: number;
  /** Print one JSON line per datagram (what it was, what was done to it) to the relay's log. */
  readonly trace?: boolean;
}

/** Counters of one direction: c2g (client -> target) or g2c (target -> client). */
export interface DirectionCounters {
  /** Datagrams that reached the relay. */
  readonly received: number;
  /** Datagrams sent on, duplicates included. */
  readonly forwarded: number;
  readonly dropped: number;
  /** Datagrams sent twice. */
  readonly duplicated: number;
  /** Datagrams held back (sent after the next one, or after a delay). */
  readonly reordered: number;
  /** Held datagrams that a later one actually overtook. */
  readonly overtaken: number;
  /** Target -> client datagrams before any client was seen on that port. */
  readonly unroutable: number;
  readonly sendErrors: number;
}

/** Counters of one kind of datagram in one direction. */
export interface KindCounters {
  readonly received: number;
  readonly forwarded: number;
  readonly dropped: number;
  readonly duplicated: number;
  readonly reordered: number;
}

export interface RelayStats {
  readonly seed: number;
  readonly uptimeMs: number;
  readonly c2g: DirectionCounters;
  readonly g2c: DirectionCounters;
  /**
   * Counters per direction and kind of datagram: "IKE_SA_INIT request",
   * "IKE_AUTH response", "CREATE_CHILD_SA request", "INFORMATIONAL response",
   * "ESP", "keepalive", ... (only kinds seen are present).
   */
  readonly byKind: { c2g: Record<string, KindCounters>; g2c: Record<string, KindCounters> };
  /** Forwarded datagrams per port and direction. */
  readonly perPort: Record<string, { c2g: number; g2c: number }>;
  /** Client endpoint last seen per port ("a.b.c.d:port"). */
  readonly clients: Record<string, string>;
  /** Fault probabilities in force, per direction. */
  readonly faults: { c2g: FaultSet; g2c: FaultSet };
}

export interface LossyRelay {
  readonly proc: TrackedProcess;
  /** The address the client should send to. */
  readonly address: string;
  readonly ports: readonly number[];
  /** Current counters. */
  stats(): Promise<RelayStats>;
  /** Changes fault probabilities from now on. */
  set(faults: RelayFaults): Promise<void>;
  /** The relay's output so far (JSON lines, errors on stderr). */
  log(): string;
  /** Ends the relay (closes its pipe, then SIGTERM/SIGKILL); resolves with its last counters if it printed them. */
  stop(): Promise<RelayStats | undefined>;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function checkProbability(v: number | undefined, what: string): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) throw new RangeError(`relay: ${what} must be a probability in 0..1, got ${v}`);
}

function checkFaults(f: RelayFaults): void {
  checkProbability(f.loss, 'loss');
  checkProbability(f.lossC2g, 'lossC2g');
  checkProbability(f.lossG2c, 'lossG2c');
  checkProbability(f.dup, 'dup');
  checkProbability(f.reorder, 'reorder');
}

function checkIpv4(addr: string, what: string): void {
  const m = typeof addr === 'string' ? IPV4_RE.exec(addr) : null;
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255)) throw new TypeError(`relay: ${what} must be an IPv4 address, got ${JSON.stringify(addr)}`);
}

/** internal: the newest stdout JSON line that satisfies `match`, parsed. */
function findLine(out: string, match: (o: Record<string, unknown>) => boolean): Record<string, unknown> | undefined {
  const lines = out.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (!line.startsWith('{')) continue;
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (match(o)) return o;
    } catch {
      // a partial line: not complete yet
    }
  }
  return undefined;
}

/** Starts the relay inside `ns` and waits until its sockets are bound. */
export async function startRelay(ns: NetNs, opts: RelayOptions): Promise<LossyRelay> {
  checkIpv4(opts.listen, 'listen');
  checkIpv4(opts.target, 'target');
  checkFaults(opts);
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new RangeError('relay: seed must be an integer 0..2^32-1');
  const ports = opts.ports ?? [500, 4500];
  if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new RangeError('relay: ports must be 1..65535');
  if (!existsSync(RELAY_PATH)) throw new Error(`${RELAY_PATH} is missing`);
  const args = [RELAY_PATH, '--listen', opts.listen, '--target', opts.target, '--ports', ports.join(','), '--seed', String(opts.seed)];
  if (opts.loss !== undefined) args.push('--loss', String(opts.loss));
  if (opts.lossC2g !== undefined) args.push('--loss-c2g', String(opts.lossC2g));
  if (opts.lossG2c !== undefined) args.push('--loss-g2c', String(opts.lossG2c));
  if (opts.dup !== undefined) args.push('--dup', String(opts.dup));
  if (opts.reorder !== undefined) args.push('--reorder', String(opts.reorder));
  if (opts.maxDelayMs !== undefined) args.push('--max-delay', String(opts.maxDelayMs));
  if (opts.maxLifetimeS !== undefined) args.push('--max-lifetime', String(opts.maxLifetimeS));
  if (opts.trace) args.push('--trace');
  const proc = spawnIn(ns, process.execPath, args, { stdinPipe: true });
  const log = () => proc.stdout() + proc.stderr();
  try {
    await waitFor(
      () => {
        if (proc.exitInfo()) throw new Error(`relay exited: ${log().slice(-2000)}`);
        return findLine(proc.stdout(), (o) => o.type === 'ready') !== undefined;
      },
      { timeoutMs: 10_000, intervalMs: 25, message: () => `the relay to start: ${log().slice(-1000)}` },
    );
  } catch (err) {
    await proc.stop({ graceMs: 1000 });
    throw err;
  }

  let nextId = 1;
  const command = async (cmd: Record<string, unknown>, type: string): Promise<Record<string, unknown>> => {
    if (proc.exitInfo()) throw new Error(`relay is not running: ${log().slice(-1000)}`);
    const id = nextId++;
    proc.child.stdin?.write(`${JSON.stringify({ ...cmd, id })}\n`);
    const answer = await waitFor(
      () => {
        if (proc.exitInfo()) throw new Error(`relay exited: ${log().slice(-1000)}`);
        return findLine(proc.stdout(), (o) => o.id === id);
      },
      { timeoutMs: 5000, intervalMs: 10, message: `the relay's answer to ${String(cmd.cmd)}` },
    );
    if (answer.type !== type) throw new Error(`relay: ${String(answer.error ?? JSON.stringify(answer))}`);
    return answer;
  };

  return {
    proc,
    address: opts.listen,
    ports,
    stats: async () => (await command({ cmd: 'stats' }, 'stats')) as unknown as RelayStats,
    async set(faults) {
      checkFaults(faults);
      await command({ cmd: 'set', ...faults }, 'set');
    },
    log,
    async stop() {
      proc.child.stdin?.end();
      await proc.stop({ signal: 'SIGTERM', graceMs: 2000 });
      return findLine(proc.stdout(), (o) => o.type === 'exit') as unknown as RelayStats | undefined;
    },
  };
}
