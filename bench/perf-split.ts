// Where one ikeclone data-plane worker thread spends its CPU, from `perf
// record` (software cpu-clock sampling, so it works in a VM without hardware
// counters) for the CPU profile benchmark (bench/cpu-profile.ts): the wasm
// kernel (V8 names its compiled functions wasm-function[N]; N is the
// function's index in wasm/build/esp.wat, which has no imports), JavaScript
// compiled by V8 and V8/Node itself, the kernel (system calls, the network
// stack, TUN), the native addon and libc. The gateway must run with
// --perf-basic-prof-only-functions so that perf can name JIT code
// (/tmp/perf-<pid>.map). The parsers are pure, for tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { round } from './common.js';

export type PerfCategory = 'wasm' | 'js' | 'v8' | 'kernel' | 'addon' | 'libc' | 'other';

export interface PerfSplit {
  samples: number;
  /** Share of the thread's samples by category, 0..1. */
  shares: Record<PerfCategory, number>;
  /** The busiest symbols (wasm functions by their name in esp.wat). */
  top: Array<{ share: number; category: PerfCategory; symbol: string }>;
  /** Share of the thread's samples inside each system call (its kernel entry and all below it, softirq work done there included). */
  syscalls: Record<string, number>;
}

/**
 * Parse `perf report --children --sort sym --stdio -g none` of a call-graph
 * recording: the inclusive share of each system call's entry point
 * (`__x64_sys_NAME`, `__arm64_sys_NAME`), by NAME.
 */
export function parseSyscallShares(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)%\s+[\d.]+%\s+\[k\]\s+__(?:x64|arm64|ia32)_sys_(\w+)\s*$/.exec(line);
    if (m) out[m[2]!] = round((out[m[2]!] ?? 0) + Number(m[1]) / 100, 3);
  }
  return out;
}

/** The wasm module's function names in index order, from the text format (`(func $name ...`). */
export function wasmFunctionNames(wat: string): string[] {
  return [...wat.matchAll(/^\s*\(func \$(\S+)/gm)].map((m) => m[1]!);
}

function categorise(dso: string, sym: string): PerfCategory {
  if (sym.startsWith('JS:wasm-function[')) return 'wasm';
  if (dso.startsWith('[JIT]')) return 'js';
  if (dso === '[kernel.kallsyms]' || dso.startsWith('[kernel')) return 'kernel';
  if (dso === 'node') return 'v8';
  if (dso.endsWith('.node')) return 'addon';
  if (dso.startsWith('libc.') || dso.startsWith('libc-')) return 'libc';
  return 'other';
}

/**
 * Parse `perf report --stdio --no-children --sort dso,sym` (lines like
 * "  22.25%  [JIT] tid 27160    [.] JS:wasm-function[1]-1-turbofan") and the
 * sample count of its header. Lines that are not such rows are skipped.
 */
export function parsePerfReport(text: string, wasmNames: readonly string[] = []): PerfSplit {
  const shares: Record<PerfCategory, number> = { wasm: 0, js: 0, v8: 0, kernel: 0, addon: 0, libc: 0, other: 0 };
  const top: PerfSplit['top'] = [];
  const count = /^# Samples: (\d+)([KM]?)/m.exec(text);
  const samples = count ? Number(count[1]) * (count[2] === 'K' ? 1000 : count[2] === 'M' ? 1e6 : 1) : 0;
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)%\s+(.+?)\s+\[([.k])\]\s+(.+?)\s*$/.exec(line);
    if (!m) continue;
    const share = Number(m[1]) / 100;
    const dso = m[2]!;
    let sym = m[4]!;
    const category = categorise(dso, sym);
    if (category === 'wasm') {
      const index = Number(/wasm-function\[(\d+)\]/.exec(sym)?.[1]);
      if (wasmNames[index] !== undefined) sym = `wasm ${wasmNames[index]}`;
    }
    shares[category] += share;
    top.push({ share, category, symbol: sym });
  }
  for (const k of Object.keys(shares) as PerfCategory[]) shares[k] = round(shares[k], 3);
  top.sort((a, b) => b.share - a.share);
  return { samples, shares, top: top.slice(0, 10).map((t) => ({ ...t, share: round(t.share, 3) })), syscalls: {} };
}

/** perf on PATH and able to sample (perf_event_paranoid, a container may forbid it). */
export function perfUsable(): boolean {
  const r = spawnSync('perf', ['stat', '-e', 'cpu-clock', '--', 'true'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0;
}

/** Node flag that makes V8 write /tmp/perf-<pid>.map for its compiled functions (wasm included). */
export const PERF_MAP_FLAG = '--perf-basic-prof-only-functions';

/** Sample thread `tid` for `seconds` into `file`; resolves when perf has written it. */
export function recordThread(tid: number, seconds: number, file: string): { proc: ChildProcess; done: Promise<boolean> } {
  const proc = spawn('perf', ['record', '-q', '-g', '-e', 'cpu-clock', '-F', '2000', '-t', String(tid), '-o', file, '--', 'sleep', String(seconds)], { stdio: 'ignore' });
  const done = new Promise<boolean>((resolve) => {
    proc.once('exit', (code) => resolve(code === 0));
    proc.once('error', () => resolve(false));
  });
  return { proc, done };
}

/** The split of a recorded file (the gateway's perf map must still be in /tmp). */
export function reportThread(file: string, repoRoot: string): PerfSplit | null {
  const r = spawnSync('perf', ['report', '-i', file, '--stdio', '--no-children', '-g', 'none', '--sort', 'dso,sym'], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 });
  if (r.status !== 0) return null;
  const wat = join(repoRoot, 'wasm', 'build', 'esp.wat');
  const split = parsePerfReport(r.stdout, existsSync(wat) ? wasmFunctionNames(readFileSync(wat, 'utf8')) : []);
  const calls = spawnSync('perf', ['report', '-i', file, '--stdio', '--children', '-g', 'none', '--sort', 'sym'], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 });
  if (calls.status === 0) split.syscalls = parseSyscallShares(calls.stdout);
  return split;
}

/** Remove the perf maps V8 wrote for these processes. */
export function removePerfMaps(pids: readonly number[]): void {
  for (const pid of pids) rmSync(`/tmp/perf-${pid}.map`, { force: true });
}
