// The cpu-profile benchmark's /proc accounting (bench/proc-stat.ts) on sample
// text, its naming of ikeclone's threads, and its place in the bench command
// (listed by --help, a bad option is a usage error: exit 2). The suite itself
// needs root and network namespaces and is run by hand
// (`npm run -s bench -- cpu-profile --json`): speed is never asserted in tests.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ikecloneThreadNames } from '../bench/cpu-profile.js';
import { parsePerfReport, parseSyscallShares, wasmFunctionNames } from '../bench/perf-split.js';
import { machineDelta, parseMachineStat, parseSchedStat, parseTaskStat, readMainThreadSchedStat, schedDelta, taskDelta, type TaskTimes } from '../bench/proc-stat.js';
import { REPO_ROOT } from './support/vectors.js';

// A real /proc/<pid>/task/<tid>/stat line, its comm edited to hold a space and parentheses.
const THREAD_LINE = '25450 (node) x(2)) S 25427 25426 22914 0 -1 4194368 3154 0 0 0 61 46 0 0 20 0 11 0 3722153 1203441664 22190 18446744073709551615 1 1 0 0 0 0 0 16781312 134234626 0 0 0 -1 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n';

const PROC_STAT = `cpu  4337764 194292 1066674 1705630 3678 0 68320 28669 0 0
cpu0 2162216 104048 532775 854486 884 0 33614 14284 0 0
cpu1 2175548 90244 533898 851144 2794 0 34705 14385 0 0
intr 1 2 3
ctxt 123
`;

describe('/proc parsing', () => {
  it('reads comm (spaces, parentheses), state, utime, stime and starttime of a task line', () => {
    expect(parseTaskStat(THREAD_LINE)).toEqual({ pid: 25450, comm: 'node) x(2)', state: 'S', utime: 61, stime: 46, starttime: 3722153 });
  });

  it('gives null for a truncated or foreign line instead of throwing', () => {
    expect(parseTaskStat(THREAD_LINE.slice(0, 60))).toBeNull();
    expect(parseTaskStat('')).toBeNull();
    expect(parseTaskStat('not a stat line')).toBeNull();
    expect(parseTaskStat('12 (x) S a b c d e f g h i j k l m n o p q r s t u v')).toBeNull();
  });

  it('reads the aggregate cpu line of /proc/stat, not a per-CPU one', () => {
    expect(parseMachineStat(PROC_STAT)).toEqual({ user: 4337764, nice: 194292, system: 1066674, idle: 1705630, iowait: 3678, irq: 0, softirq: 68320, steal: 28669 });
    expect(parseMachineStat('cpu0 1 2 3 4 5 6 7 8\n')).toBeNull();
    expect(parseMachineStat('cpu  1 2 3\n')).toBeNull();
  });

  it('turns two machine samples into seconds, busy share (iowait is idle) and softirq share', () => {
    const a = parseMachineStat(PROC_STAT)!;
    // 2 CPUs x 1 s at 100 ticks/s: 200 ticks, of which 50 idle + 10 iowait and 20 softirq.
    const b = { ...a, user: a.user + 100, system: a.system + 20, idle: a.idle + 50, iowait: a.iowait + 10, softirq: a.softirq + 20 };
    const d = machineDelta(a, b, 100);
    expect(d.totalSeconds).toBeCloseTo(2);
    expect(d.busyShare).toBeCloseTo(0.7);
    expect(d.softirqShare).toBeCloseTo(0.1);
    expect(d.seconds.softirq).toBeCloseTo(0.2);
    expect(machineDelta(a, a, 100).busyShare).toBe(0);
  });

  it('counts a task from zero when it started inside the window', () => {
    const b = parseTaskStat(THREAD_LINE)!;
    expect(taskDelta(undefined, b, 100)).toEqual({ user: 0.61, system: 0.46 });
    expect(taskDelta({ ...b, utime: 50, stime: 40 }, b, 100)).toEqual({ user: 0.11, system: 0.06 });
  });
});

describe('schedstat', () => {
  it('reads run, wait and timeslices, and refuses anything else', () => {
    expect(parseSchedStat('1208000000 2059000000 4447\n')).toEqual({ runNs: 1208000000, waitNs: 2059000000, slices: 4447 });
    for (const bad of ['', '1 2', '1 2 3 4', '1 -2 3', 'a b c']) expect(parseSchedStat(bad)).toBeNull();
  });

  it('turns two samples into ms on a CPU, ms waiting for one and the wait per timeslice', () => {
    const d = schedDelta({ runNs: 1_000_000_000, waitNs: 500_000_000, slices: 100 }, { runNs: 2_000_000_000, waitNs: 2_500_000_000, slices: 4100 });
    expect(d).toEqual({ cpuMs: 1000, runQueueWaitMs: 2000, slices: 4000, waitPerSliceMs: 0.5 });
    expect(schedDelta({ runNs: 1, waitNs: 1, slices: 7 }, { runNs: 1, waitNs: 1, slices: 7 }).waitPerSliceMs).toBeNull();
  });

  it('reads this process\'s main thread, and nothing for a pid that is gone', () => {
    const me = readMainThreadSchedStat(process.pid);
    expect(me).toBeDefined();
    expect(me!.runNs).toBeGreaterThan(0);
    expect(readMainThreadSchedStat(2 ** 22 + 1)).toBeUndefined();
  });
});

describe('ikeclone thread names', () => {
  const task = (pid: number, starttime: number): TaskTimes => ({ pid, comm: 'node', state: 'S', utime: 0, stime: 0, starttime });

  it('names the main thread, the newest threads workers in order of creation, the rest Node\'s', () => {
    const threads = [task(100, 10), task(101, 10), task(102, 11), task(140, 90), task(139, 90), task(120, 50)];
    const names = ikecloneThreadNames(100, threads, 2);
    expect(names.get(100)).toBe('main (control, I/O)');
    expect(names.get(139)).toBe('worker 0');
    expect(names.get(140)).toBe('worker 1');
    for (const tid of [101, 102, 120]) expect(names.get(tid)).toBe('node (V8, libuv)');
  });

  it('names no worker when the gateway reported none', () => {
    const names = ikecloneThreadNames(100, [task(100, 10), task(101, 20)], 0);
    expect([...names.values()]).toEqual(['main (control, I/O)', 'node (V8, libuv)']);
  });
});

// Excerpt of `perf report --stdio --no-children --sort dso,sym` for one worker thread.
const PERF_REPORT = `# Total Lost Samples: 0
#
# Samples: 2K of event 'cpu-clock'
# Event count (approx.): 1242500000
#
# Overhead  Shared Object      Symbol
# ........  .................  ......
#
    40.00%  [JIT] tid 27160    [.] JS:wasm-function[1]-1-turbofan
    20.00%  [JIT] tid 27160    [.] JS:wasm-function[9]-9-turbofan
    25.00%  [kernel.kallsyms]  [k] udp_sendmsg
     5.00%  node               [.] Builtins_CreateTypedArray
     4.00%  [JIT] tid 27160    [.] JS:*take file:///x/dist/dataplane/worker-tun-input.js:119:9
     3.00%  ikeclone_io.node   [.] tun_read_segments
     2.00%  libc.so.6          [.] __memmove_avx_unaligned_erms
     1.00%  [unknown]          [.] 0x00007f0000000000
`;

describe('perf split of a worker thread', () => {
  it('takes wasm function names in index order from the text format', () => {
    expect(wasmFunctionNames(' (func $wasm/aes/aesOrtho (param $0 i32)\n  (local $1 i32)\n (func $wasm/ghash/kindProduct (param $0 i32)\n')).toEqual(['wasm/aes/aesOrtho', 'wasm/ghash/kindProduct']);
  });

  it('splits the samples into wasm, JIT JavaScript, V8, kernel, addon, libc and the rest', () => {
    const split = parsePerfReport(PERF_REPORT, ['wasm/aes/aesOrtho', 'wasm/ghash/kindProduct']);
    expect(split.samples).toBe(2000);
    expect(split.shares).toEqual({ wasm: 0.6, js: 0.04, v8: 0.05, kernel: 0.25, addon: 0.03, libc: 0.02, other: 0.01 });
    expect(split.top[0]).toEqual({ share: 0.4, category: 'wasm', symbol: 'wasm wasm/ghash/kindProduct' });
    // An index without a known name keeps V8's.
    expect(split.top.find((t) => t.share === 0.2)?.symbol).toBe('JS:wasm-function[9]-9-turbofan');
  });

  it('reads each system call\'s inclusive share from a --children report', () => {
    const text = [
      '    44.34%     0.10%  [k] do_syscall_64',
      '    40.29%     0.00%  [k] __x64_sys_sendmmsg',
      '    14.64%     0.70%  [k] handle_softirqs',
      '     0.51%     0.00%  [k] __x64_sys_recvmmsg',
      '     0.26%     0.03%  [k] __x64_sys_epoll_wait',
      '    22.25%    22.25%  [.] JS:wasm-function[1]-1-turbofan',
    ].join('\n');
    expect(parseSyscallShares(text)).toEqual({ sendmmsg: 0.403, recvmmsg: 0.005, epoll_wait: 0.003 });
    expect(parseSyscallShares('')).toEqual({});
  });

  it('gives an empty split for text that is no report', () => {
    expect(parsePerfReport('garbage\n\n').samples).toBe(0);
    expect(parsePerfReport('garbage').top).toEqual([]);
  });
});

describe('the bench command', () => {
  const bench = join(REPO_ROOT, 'dist', 'bench', 'index.js');
  const run = (args: string[]) => spawnSync(process.execPath, [bench, ...args], { encoding: 'utf8', timeout: 30_000 });

  it('lists cpu-profile in --help', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ {2}cpu-profile /m);
  });

  it('refuses an unknown option with exit 2 and the usage, before any work', () => {
    const r = run(['cpu-profile', '--bogus']);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/unknown option --bogus/);
    expect(r.stderr).toMatch(/cpu-profile/);
  });
});
