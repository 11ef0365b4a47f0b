// bench/common.ts --cpu-time: cases timed by this process's CPU time
// (process.cpuUsage), so that time the core spends on other processes of a
// shared machine, or a case spends blocked, is not charged to the case.
import { describe, expect, it } from 'vitest';
import { measureCpu, parseSuiteOptions } from '../bench/common.js';

describe('bench --cpu-time', () => {
  it('is a flag every suite parses; without it, wall time stays the default', () => {
    expect(parseSuiteOptions(['--json', '--cpu-time']).cpuTime).toBe(true);
    expect(parseSuiteOptions(['--json']).cpuTime).toBeUndefined();
    expect(() => parseSuiteOptions(['--cpu'])).toThrow(/unknown option --cpu/);
  });

  it('charges a case its CPU time only: 2 ms blocked per call costs next to nothing', () => {
    const cell = new Int32Array(new SharedArrayBuffer(4));
    let calls = 0;
    const m = measureCpu(() => {
      calls++;
      Atomics.wait(cell, 0, 0, 2); // blocks 2 ms without using the CPU
    }, 0.05);
    // Wall time would give at most 500 calls per second.
    expect(m.hz).toBeGreaterThan(5000);
    expect(Number.isFinite(m.rme)).toBe(true);
    expect(calls).toBeGreaterThan(5);
  });

  it('takes at least five samples of a case that burns CPU, and reports a finite rate', () => {
    let sink = 0;
    const m = measureCpu(() => {
      for (let i = 0; i < 20_000; i++) sink = (sink * 31 + i) | 0;
    }, 0.01);
    expect(m.hz).toBeGreaterThan(0);
    expect(Number.isFinite(m.hz)).toBe(true);
    expect(m.rme).toBeGreaterThanOrEqual(0);
    expect(sink).not.toBe(0.5);
  });
});
