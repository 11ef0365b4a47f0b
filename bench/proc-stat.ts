// CPU accounting from Linux's /proc for the CPU profile benchmark
// (bench/cpu-profile.ts): the pure parsers of /proc/<pid>/stat,
// /proc/<pid>/task/<tid>/stat and the "cpu" line of /proc/stat, the
// differences between two samples, and the thin readers that feed them;
// and a thread's schedstat (time on a CPU against time waiting for one,
// for the cluster benchmark, bench/cluster.ts).
// Parsing is separate from reading so that it can be tested on sample text.
// Field numbers are proc(5)'s (1-based): 2 comm, 3 state, 14 utime,
// 15 stime, 22 starttime; times in clock ticks (sysconf(_SC_CLK_TCK)).
import { readdirSync, readFileSync } from 'node:fs';

/** One process's or thread's CPU times, in clock ticks. */
export interface TaskTimes {
  pid: number;
  comm: string;
  state: string;
  utime: number;
  stime: number;
  /** Ticks after boot when the task started (orders threads by creation). */
  starttime: number;
}

/**
 * Parse one /proc/<pid>/stat (or task/<tid>/stat) line. The comm field is in
 * parentheses and may itself hold spaces and parentheses, so the fields after
 * it are counted from the last ')'. Returns null for text that is not such a
 * line (the task exited while it was read, a truncated read).
 */
export function parseTaskStat(text: string): TaskTimes | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 1 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state): field n is rest[n - 3].
  if (!Number.isInteger(pid) || rest.length < 20) return null;
  const num = (field: number): number => Number(rest[field - 3]);
  const t = { pid, comm: text.slice(open + 1, close), state: rest[0]!, utime: num(14), stime: num(15), starttime: num(22) };
  return [t.utime, t.stime, t.starttime].every(Number.isFinite) ? t : null;
}

/** The machine's CPU time by kind (the "cpu" line of /proc/stat, all CPUs summed), in clock ticks. */
export interface MachineTimes {
  user: number;
  nice: number;
  system: number;
  idle: number;
  iowait: number;
  irq: number;
  softirq: number;
  steal: number;
}

const MACHINE_FIELDS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;

/** Parse the aggregate "cpu " line of /proc/stat; null when it is missing or short. */
export function parseMachineStat(text: string): MachineTimes | null {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) return null;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  if (v.length < MACHINE_FIELDS.length || v.slice(0, MACHINE_FIELDS.length).some((x) => !Number.isFinite(x))) return null;
  return Object.fromEntries(MACHINE_FIELDS.map((f, i) => [f, v[i]!])) as unknown as MachineTimes;
}

/** What the machine did between two samples: seconds of each kind, and the busy share of all CPUs. */
export interface MachineDelta {
  seconds: Record<keyof MachineTimes, number>;
  /** All CPUs' ticks in the interval, as seconds (wall time x CPUs). */
  totalSeconds: number;
  /** Share of the CPUs not idle (idle and iowait count as idle), 0..1. */
  busyShare: number;
  /** Share of the CPUs in softirq, 0..1. */
  softirqShare: number;
}

export function machineDelta(a: MachineTimes, b: MachineTimes, ticksPerSecond: number): MachineDelta {
  const d = Object.fromEntries(MACHINE_FIELDS.map((f) => [f, Math.max(0, b[f] - a[f])])) as unknown as MachineTimes;
  const total = MACHINE_FIELDS.reduce((s, f) => s + d[f], 0);
  const idle = d.idle + d.iowait;
  return {
    seconds: Object.fromEntries(MACHINE_FIELDS.map((f) => [f, d[f] / ticksPerSecond])) as Record<keyof MachineTimes, number>,
    totalSeconds: total / ticksPerSecond,
    busyShare: total > 0 ? (total - idle) / total : 0,
    softirqShare: total > 0 ? d.softirq / total : 0,
  };
}

/** A task's CPU seconds between two samples (a task first seen in `b` counts from zero). */
export function taskDelta(a: TaskTimes | undefined, b: TaskTimes, ticksPerSecond: number): { user: number; system: number } {
  return {
    user: Math.max(0, b.utime - (a?.utime ?? 0)) / ticksPerSecond,
    system: Math.max(0, b.stime - (a?.stime ?? 0)) / ticksPerSecond,
  };
}

/** Read /proc/<pid>/stat; undefined when the process is gone. */
export function readProcess(pid: number): TaskTimes | undefined {
  try {
    return parseTaskStat(readFileSync(`/proc/${pid}/stat`, 'utf8')) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Read every thread of a process (/proc/<pid>/task/*\/stat); empty when the process is gone. */
export function readThreads(pid: number): TaskTimes[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: TaskTimes[] = [];
  for (const tid of tids) {
    try {
      const t = parseTaskStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      if (t) out.push(t);
    } catch {
      // The thread exited between the listing and the read.
    }
  }
  return out;
}

/** Read the machine's CPU times. */
export function readMachine(): MachineTimes {
  const m = parseMachineStat(readFileSync('/proc/stat', 'utf8'));
  if (m === null) throw new Error('/proc/stat has no aggregate cpu line');
  return m;
}

/**
 * A thread as the scheduler counts it (/proc/<pid>/task/<tid>/schedstat,
 * Documentation/scheduler/sched-stats.rst): ns on a CPU, ns runnable but
 * waiting in a run queue, and timeslices run.
 */
export interface SchedStat {
  runNs: number;
  waitNs: number;
  slices: number;
}

/** Parse a schedstat line ("run wait slices"); null for anything else. */
export function parseSchedStat(text: string): SchedStat | null {
  const f = text.trim().split(/\s+/).map(Number);
  if (f.length !== 3 || !f.every((v) => Number.isSafeInteger(v) && v >= 0)) return null;
  return { runNs: f[0]!, waitNs: f[1]!, slices: f[2]! };
}

/** A process's main thread's schedstat; undefined when it is gone (or the kernel keeps no schedstats). */
export function readMainThreadSchedStat(pid: number): SchedStat | undefined {
  try {
    return parseSchedStat(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8')) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Between two samples of one thread: ms on a CPU, ms waiting for one, and
 * the mean wait per timeslice (each wake-up of a thread that sleeps between
 * events is one).
 */
export function schedDelta(a: SchedStat, b: SchedStat): { cpuMs: number; runQueueWaitMs: number; slices: number; waitPerSliceMs: number | null } {
  const slices = b.slices - a.slices;
  const waitMs = (b.waitNs - a.waitNs) / 1e6;
  return {
    cpuMs: Math.round((b.runNs - a.runNs) / 1e5) / 10,
    runQueueWaitMs: Math.round(waitMs * 10) / 10,
    slices,
    waitPerSliceMs: slices > 0 ? Math.round((waitMs / slices) * 1000) / 1000 : null,
  };
}
