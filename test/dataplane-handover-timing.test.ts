// dataplane/handover.ts on its own: the peer's first authenticated packet on
// an SA the peer created can be reported before the SA starts waiting to
// send (the worker opens ESP it held for the SA while it installs it, before
// its answer to the install reaches the I/O thread). The SA must then send
// at once, not after DEFERRED_OUTBOUND_MS.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HandoverTiming } from '../dataplane/handover.js';
import { DEFERRED_OUTBOUND_MS } from '../dataplane/defaults.js';
import type { RingFeed } from '../dataplane/ring-feed.js';
import type { SaRecord } from '../dataplane/sad.js';
import type { PlaneState } from '../dataplane/state.js';

/** An installed SA that does not send yet: the fields defer() and peerHas() read. */
const record = (): SaRecord => ({ state: 'active', retiring: false, outbound: false }) as unknown as SaRecord;
/** The timing alone: deferral and the peer's report touch neither the plane's state nor its rings. */
const timing = () => new HandoverTiming({} as PlaneState, {} as RingFeed);

describe('an SA the peer created, and the report of the peer\'s first packet', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('sends at once when the report came before it began to wait', () => {
    const h = timing();
    const r = record();
    const start = vi.fn();
    h.peerHas(r, start); // the worker's report, ahead of its answer to the install
    expect(start).not.toHaveBeenCalled();
    h.defer(r, start);
    expect(start).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(DEFERRED_OUTBOUND_MS * 2);
    expect(start).toHaveBeenCalledTimes(1);
  });

  it('waits for the report, or the bound, when none came before', () => {
    const h = timing();
    const [r1, r2] = [record(), record()];
    const start = vi.fn();
    h.defer(r1, start);
    h.defer(r2, start);
    h.peerHas(r1, start);
    expect(start.mock.calls).toEqual([[r1]]);
    vi.advanceTimersByTime(DEFERRED_OUTBOUND_MS - 1);
    expect(start).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(start.mock.calls).toEqual([[r1], [r2]]);
  });

  it('forgets an early report with the SA', () => {
    const h = timing();
    const r = record();
    const start = vi.fn();
    h.peerHas(r, start);
    h.forget(r);
    h.defer(r, start);
    expect(start).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DEFERRED_OUTBOUND_MS);
    expect(start).toHaveBeenCalledTimes(1);
  });
});
