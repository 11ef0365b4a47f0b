/**
 * Child processes for the test harness: spawn, capture, bounded waits.
 *
 * Ownership: every process started here is recorded by pid in this module's
 * registry; cleanup signals exactly those pids (never a name, never a process
 * group that is not ours). A process that exits is dropped from the registry.
 * An end-of-process hook sends SIGKILL to whatever is still registered, so a crashed
 * test file does not leave daemons behind (also on SIGTERM, which is how
 * vitest stops its workers).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';

/** How a child process ended. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Result of {@link run}: the whole output, how it ended, how long it took. */
export interface RunResult extends ExitInfo {
  readonly cmd: string;
  readonly args: readonly string[];
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
  /** True when the timeout fired and the process was killed (by pid). */
  readonly timedOut: boolean;
}

export interface RunOptions {
  /** Kill the process (SIGKILL, by pid) after this long. Default 15 000 ms. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Written to stdin, then stdin is closed. */
  readonly input?: string;
}

export interface SpawnTrackedOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Keep at most this many characters of stdout/stderr each (oldest dropped). Default 1 MiB. */
  readonly maxOutputChars?: number;
  /** Keep stdin open as a pipe (default: ignored). */
  readonly stdinPipe?: boolean;
}

/** A running child process that this module tracks by pid. */
export interface TrackedProcess {
  readonly pid: number;
  readonly cmd: string;
  readonly args: readonly string[];
  readonly child: ChildProcess;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  /** Exit status once exited, else undefined. */
  exitInfo(): ExitInfo | undefined;
  stdout(): string;
  stderr(): string;
  /** Sends a signal to this pid if it is still running. */
  signal(sig: NodeJS.Signals): void;
  /**
   * Sends `signal` (default SIGTERM), waits up to `graceMs` (default 3000)
   * for the exit, then SIGKILL and waits again. Resolves with the exit status.
   */
  stop(opts?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<ExitInfo>;
}

const DEFAULT_MAX_OUTPUT = 1 << 20;

/** internal: pid -> process, only processes started by this module and still running. */
const running = new Map<number, TrackedProcess>();
/** internal: synchronous cleanups to run when this process ends, after our children are killed. */
const endCleanups: Array<() => void> = [];
let endHooksInstalled = false;

function runEndCleanups(): void {
  for (const pid of running.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
  for (const fn of endCleanups.splice(0)) {
    try {
      fn();
    } catch {
      // best effort: the process is ending
    }
  }
}

/**
 * Runs the cleanups when this process ends: on 'exit', and on SIGTERM,
 * SIGINT and SIGHUP (vitest stops its fork workers with SIGTERM, which skips
 * 'exit'), after which the signal is raised again so the process still dies
 * of it.
 */
function installEndHooks(): void {
  if (endHooksInstalled) return;
  endHooksInstalled = true;
  process.on('exit', runEndCleanups);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    const handler = (): void => {
      runEndCleanups();
      process.off(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/**
 * Registers a synchronous cleanup for the end of this process (normal exit or
 * termination signal). Tracked child processes are always killed first.
 */
export function onProcessEnd(fn: () => void): void {
  installEndHooks();
  endCleanups.push(fn);
}

function appendBounded(current: string, chunk: string, max: number): string {
  const next = current + chunk;
  return next.length > max ? next.slice(next.length - max) : next;
}

/**
 * Starts `cmd args` and records its pid. stdout and stderr are collected in
 * memory (bounded). Throws if the process could not be started at all.
 */
export function spawnTracked(cmd: string, args: readonly string[], opts: SpawnTrackedOptions = {}): TrackedProcess {
  if (typeof cmd !== 'string' || cmd.length === 0) throw new TypeError('spawnTracked: cmd must be a non-empty string');
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) {
    throw new TypeError('spawnTracked: args must be an array of strings');
  }
  installEndHooks();
  const maxOutput = opts.maxOutputChars ?? DEFAULT_MAX_OUTPUT;
  const spawnOpts: SpawnOptions = {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: [opts.stdinPipe ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  };
  const child = spawn(cmd, [...args], spawnOpts);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    out = appendBounded(out, d, maxOutput);
  });
  child.stderr?.on('data', (d: string) => {
    err = appendBounded(err, d, maxOutput);
  });
  let info: ExitInfo | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.on('error', (e) => {
      spawnError = e;
      if (child.pid === undefined) {
        info = { code: null, signal: null };
        resolve(info);
      }
    });
    // 'exit' frees the pid; 'close' follows once stdout/stderr are drained. A
    // grandchild that inherited the pipes could delay 'close' indefinitely, so
    // the exit status is reported at most 500 ms after 'exit' regardless.
    child.on('exit', (code, signal) => {
      if (child.pid !== undefined) running.delete(child.pid);
      setTimeout(() => {
        info ??= { code, signal };
        resolve(info);
      }, 500).unref();
    });
    child.on('close', (code, signal) => {
      if (child.pid !== undefined) running.delete(child.pid);
      info ??= { code, signal };
      resolve(info);
    });
  });
  if (child.pid === undefined) {
    // spawn failed synchronously (ENOENT and the like): report it right away.
    throw new Error(`cannot start ${cmd}: ${spawnError?.message ?? 'spawn failed (no pid)'}`);
  }
  const pid = child.pid;
  const proc: TrackedProcess = {
    pid,
    cmd,
    args: [...args],
    child,
    exited,
    exitInfo: () => info,
    stdout: () => out,
    stderr: () => err,
    signal(sig) {
      if (info !== undefined || !running.has(pid)) return;
      try {
        process.kill(pid, sig);
      } catch {
        // exited between the check and the kill
      }
    },
    async stop({ signal = 'SIGTERM', graceMs = 3000 } = {}) {
      if (info !== undefined) return info;
      proc.signal(signal);
      const first = await within(exited, graceMs);
      if (first !== undefined) return first;
      proc.signal('SIGKILL');
      const second = await within(exited, 5000);
      if (second === undefined) throw new Error(`pid ${pid} (${cmd}) did not exit after SIGKILL`);
      return second;
    },
  };
  running.set(pid, proc);
  return proc;
}

/**
 * Runs a command to completion and captures its output. Never throws for a
 * non-zero exit (see {@link runChecked}); kills the process by pid when
 * `timeoutMs` passes and reports `timedOut: true`.
 */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('run: timeoutMs must be > 0');
  const started = performance.now();
  const proc = spawnTracked(cmd, args, { env: opts.env, cwd: opts.cwd, stdinPipe: opts.input !== undefined });
  if (opts.input !== undefined) proc.child.stdin?.end(opts.input);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.signal('SIGKILL');
  }, timeoutMs);
  const info = await proc.exited;
  clearTimeout(timer);
  return {
    cmd,
    args: [...args],
    code: info.code,
    signal: info.signal,
    stdout: proc.stdout(),
    stderr: proc.stderr(),
    durationMs: performance.now() - started,
    timedOut,
  };
}

/** One-line description of a finished command, for error messages. */
export function describeRun(r: RunResult): string {
  const how = r.timedOut ? `timed out after ${Math.round(r.durationMs)} ms` : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  const tail = (s: string) => (s.length > 2000 ? `…${s.slice(-2000)}` : s).trim();
  const parts = [`\`${[r.cmd, ...r.args].join(' ')}\` ${how}`];
  if (r.stderr.trim()) parts.push(`stderr: ${tail(r.stderr)}`);
  if (r.stdout.trim()) parts.push(`stdout: ${tail(r.stdout)}`);
  return parts.join('\n');
}

/** Like {@link run}, but throws (with command, status and output) unless the exit code is 0. */
export async function runChecked(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0 || r.timedOut) throw new Error(describeRun(r));
  return r;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `p`'s value, or undefined once `ms` have passed first. The timer is cleared
 * as soon as `p` settles: a pending bound would keep a finished benchmark's
 * process alive until it fired.
 */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p, bound]);
  } finally {
    clearTimeout(timer);
  }
}

export interface WaitForOptions {
  /** Give up after this long. Required: every wait in the harness is bounded. */
  readonly timeoutMs: number;
  /** Poll period. Default 50 ms. */
  readonly intervalMs?: number;
  /** What was awaited, for the timeout message (string or lazily built). */
  readonly message?: string | (() => string);
}

/**
 * Polls `predicate` until it returns a truthy value and returns that value.
 * Errors thrown by the predicate count as "not yet" (the last one is quoted
 * in the timeout message). Throws after `timeoutMs`.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  opts: WaitForOptions,
): Promise<Exclude<T, null | undefined | false | 0 | ''>> {
  const { timeoutMs, intervalMs = 50 } = opts;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('waitFor: timeoutMs must be > 0');
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new RangeError('waitFor: intervalMs must be > 0');
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v as Exclude<T, null | undefined | false | 0 | ''>;
    } catch (e) {
      lastError = e;
    }
    if (performance.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(1, deadline - performance.now())));
  }
  const what = typeof opts.message === 'function' ? opts.message() : (opts.message ?? 'condition');
  const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
}

/** Pids started by this module that are still running. */
export function trackedPids(): number[] {
  return [...running.keys()];
}

/** Stops every process this module started that is still running (by pid). */
export async function stopAllTracked(graceMs = 2000): Promise<void> {
  await Promise.all([...running.values()].map((p) => p.stop({ graceMs }).catch(() => undefined)));
}
