// The processes and namespaces of one `ikeclone demo --netns` run
// (demo/demo-netns.ts), and how they are stopped.
//
// Ownership: every child process is tracked by pid and only those pids are
// ever signalled; every namespace is recorded before it is created, so the
// clean-up (a finally block, or synchronously on a second signal or at exit)
// never misses one. Namespaces are built with the shared helper (demo/netns.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import {
  createNamespacePair, deleteNamespace, deleteNamespacesNow, inNamespace, type CommandOutcome, type CommandRunner, type PairLayout,
} from './netns.js';

/** A process this run started, with its output kept (bounded). */
export interface Proc {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitCode(): number | null | undefined;
  /** stdout and stderr interleaved. */
  output(): string;
  stdout(): string;
  stderr(): string;
}

const MAX_OUTPUT = 256 * 1024;

/**
 * One run of the demo: the namespaces and processes it created, and whether
 * it was interrupted. Everything it starts is recorded here first.
 */
export class DemoRun {
  readonly namespaces: string[] = [];
  private readonly procs = new Map<number, Proc>();
  interrupted: NodeJS.Signals | null = null;
  /** Set once cleanup() runs: a signal then no longer stops its own commands. */
  private cleaning = false;

  /** Throw when the run was interrupted (checked between steps). */
  check(): void {
    if (this.interrupted) throw new Error(`interrupted by ${this.interrupted}`);
  }

  /** Start `cmd args`, recording its pid; stdout and stderr are kept (bounded). */
  start(cmd: string, args: string[]): Proc {
    this.check();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let all = '';
    const keep = (s: string, d: string) => (s.length + d.length > MAX_OUTPUT ? (s + d).slice(-MAX_OUTPUT) : s + d);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => ((out = keep(out, d)), (all = keep(all, d))));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => ((err = keep(err, d)), (all = keep(all, d))));
    let code: number | null | undefined;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('error', (e) => {
        err = keep(err, `${e.message}\n`);
        all = keep(all, `${e.message}\n`);
        if (child.pid === undefined) resolve({ code: (code = null), signal: null });
      });
      child.once('close', (c, signal) => {
        code = c;
        if (child.pid !== undefined) this.procs.delete(child.pid);
        resolve({ code: c, signal });
      });
    });
    const proc: Proc = { pid: child.pid ?? -1, child, exited, exitCode: () => code, output: () => all, stdout: () => out, stderr: () => err };
    if (child.pid !== undefined) this.procs.set(child.pid, proc);
    return proc;
  }

  /** Run `cmd args` to completion, bounded by `timeoutMs` (then SIGKILL by pid). Never throws on a non-zero exit. */
  async run(cmd: string, args: string[], timeoutMs = 10_000): Promise<CommandOutcome> {
    const p = this.start(cmd, args);
    const timer = setTimeout(() => signalPid(p.pid, 'SIGKILL'), timeoutMs);
    const { code } = await p.exited;
    clearTimeout(timer);
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  }

  /** run() with its default bound, for the namespace helper (demo/netns.ts). */
  readonly runner: CommandRunner = (cmd, args) => this.run(cmd, args);

  /** `ip netns exec NS cmd args`: the command is exec'd, so the recorded pid is the command's own. */
  runIn(ns: string, cmd: string, args: string[], timeoutMs?: number): Promise<CommandOutcome> {
    return this.run(...inNamespace(ns, cmd, args), timeoutMs);
  }

  startIn(ns: string, cmd: string, args: string[]): Proc {
    return this.start(...inNamespace(ns, cmd, args));
  }

  /** Create the two namespaces and what joins them; each name is recorded before it is created, so cleanup never misses it. */
  async createNamespaces(layout: PairLayout): Promise<void> {
    this.check();
    await createNamespacePair(this.runner, layout, (name) => this.namespaces.push(name));
  }

  /** SIGTERM, a grace period, then SIGKILL; only this pid. */
  async stop(p: Proc, graceMs = 5000): Promise<void> {
    if (p.exitCode() !== undefined) return;
    signalPid(p.pid, 'SIGTERM');
    const timer = setTimeout(() => signalPid(p.pid, 'SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
  }

  /** Interrupted: stop what is running so the current step ends; the finally block does the rest. */
  interrupt(signal: NodeJS.Signals): void {
    this.interrupted ??= signal;
    if (this.cleaning) return;
    for (const pid of this.procs.keys()) signalPid(pid, 'SIGTERM');
  }

  /** Everything still running, then every namespace: the finally block. */
  async cleanup(): Promise<string[]> {
    const errors: string[] = [];
    this.cleaning = true;
    await Promise.all([...this.procs.values()].map((p) => this.stop(p, 3000)));
    for (const name of this.namespaces.splice(0).reverse()) {
      const error = await deleteNamespace((cmd, args) => this.runUnchecked(cmd, args), name);
      if (error !== undefined) errors.push(error);
    }
    return errors;
  }

  /** Second signal or process exit: kill our pids and delete our namespaces synchronously. */
  cleanupNow(): void {
    for (const pid of this.procs.keys()) signalPid(pid, 'SIGKILL');
    this.procs.clear();
    deleteNamespacesNow(this.namespaces.splice(0));
  }

  /** run() that works after an interruption (cleanup must not refuse); check() runs synchronously inside run(). */
  private runUnchecked(cmd: string, args: string[]): Promise<CommandOutcome> {
    const saved = this.interrupted;
    this.interrupted = null;
    try {
      return this.run(cmd, args);
    } finally {
      this.interrupted = saved;
    }
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `probe` every `intervalMs` until it returns a value, bounded by `timeoutMs`. */
export async function until<T>(run: DemoRun, what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const end = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    run.check();
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      if ((err as { fatal?: boolean }).fatal) throw err;
      last = err;
    }
    if (performance.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(intervalMs);
  }
}

export function fatal(message: string): Error {
  return Object.assign(new Error(message), { fatal: true });
}

export function ms(from: number): number {
  return Math.round((performance.now() - from) * 10) / 10;
}
