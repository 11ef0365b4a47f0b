// The harness's bounded wait (test/support/proc.ts `within`): the value when
// it comes first, undefined when the bound does, and no timer left behind
// either way (a pending bound kept the cluster benchmark's process alive for
// its whole length after the report was printed).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { within } from './support/proc.js';

describe('within', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('gives the value that comes first and clears its bound', async () => {
    vi.useFakeTimers();
    await expect(within(Promise.resolve(7), 100_000)).resolves.toBe(7);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('gives undefined once the bound passes first, and leaves no timer', async () => {
    vi.useFakeTimers();
    const never = new Promise<number>(() => undefined);
    const r = within(never, 1000);
    await vi.advanceTimersByTimeAsync(999);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await expect(r).resolves.toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('passes a rejection on and clears its bound', async () => {
    vi.useFakeTimers();
    await expect(within(Promise.reject(new Error('gone')), 100_000)).rejects.toThrow('gone');
    expect(vi.getTimerCount()).toBe(0);
  });
});
