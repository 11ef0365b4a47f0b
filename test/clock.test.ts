// systemClock with delays beyond setTimeout's 32-bit limit. vitest's fake
// timers behave like Node here: a delay above 2^31-1 ms fires after 1 ms, so
// these tests catch a clock that hands long lifetimes straight to setTimeout.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_TIMEOUT_MS, systemClock } from '../control/ike/clock.js';

const DAY = 86_400_000;

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('systemClock.schedule', () => {
  it('fires a 30-day timer after 30 days, not after 1 ms', () => {
    const fn = vi.fn();
    systemClock.schedule(30 * DAY, fn);
    vi.advanceTimersByTime(1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(MAX_TIMEOUT_MS); // past the first link of the chain
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(30 * DAY - MAX_TIMEOUT_MS - 2);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60 * DAY);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('fires exactly at the 32-bit limit and one past it', () => {
    const atLimit = vi.fn();
    const pastLimit = vi.fn();
    systemClock.schedule(MAX_TIMEOUT_MS, atLimit);
    systemClock.schedule(MAX_TIMEOUT_MS + 1, pastLimit);
    vi.advanceTimersByTime(MAX_TIMEOUT_MS - 1);
    expect(atLimit).not.toHaveBeenCalled();
    expect(pastLimit).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(atLimit).toHaveBeenCalledTimes(1);
    expect(pastLimit).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(pastLimit).toHaveBeenCalledTimes(1);
  });

  it('cancel stops the whole chain, before and after the first link has run', () => {
    const early = vi.fn();
    const late = vi.fn();
    const a = systemClock.schedule(100 * DAY, early);
    const b = systemClock.schedule(100 * DAY, late);
    a.cancel();
    vi.advanceTimersByTime(MAX_TIMEOUT_MS * 2 + 5); // b is now on its third link
    b.cancel();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(200 * DAY);
    expect(early).not.toHaveBeenCalled();
    expect(late).not.toHaveBeenCalled();
  });

  it('short and negative delays behave as before', () => {
    const fn = vi.fn();
    systemClock.schedule(1500, fn);
    systemClock.schedule(-5, fn);
    vi.advanceTimersByTime(0);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1499);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(2);
  });
});
