// The clone family policy (architecture §5, RFC 7791 §5.3) over time: families grow
// back after a member dies, a peer that kills every clone is not hammered,
// stop() ends pending work and start() resumes it, and an IKE rekey is not
// mistaken for a deleted SA. Two engines in memory on a manual clock.
import { afterEach, describe, expect, it } from 'vitest';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import { CloneOrchestrator, type CloneFamily } from '../control/ike/clone-family.js';
import type { CloneBackoff } from '../control/ike/defaults.js';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { loopbackPair } from './support/loopback.js';

const FAST: CloneBackoff = { baseMs: 200, maxMs: 1600, tries: 4 };

/**
 * alice -> bob with an orchestrator on alice that follows the engine, so the
 * family grows to `count` by itself after IKE_AUTH (architecture §5 step 2).
 */
async function family(count: number, backoff: CloneBackoff = FAST, limits: { ikeSasPerPeer?: number } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({ initiator: { clone: { per: 'worker', count, nics: [] } } });
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  if (limits.ikeSasPerPeer !== undefined) bob.limits.ikeSasPerPeer = limits.ikeSasPerPeer;
  const orchestrator = new CloneOrchestrator(alice, backoff).start();
  const cloned: number[] = [];
  alice.on('ike-cloned', () => cloned.push(wire.clock.now()));
  // Every CLONE_IKE_SA request, refused ones included.
  const attempts: number[] = [];
  const cloneIkeSa = alice.cloneIkeSa.bind(alice);
  alice.cloneIkeSa = (s: IkeSa) => {
    attempts.push(wire.clock.now());
    return cloneIkeSa(s);
  };
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  const established = () => alice.sessionMembers(sa.sessionId).filter((m) => m.state === 'established');
  return { wire, alice, bob, sa, orchestrator, cloned, attempts, established, state: () => orchestrator.family(sa.sessionId)?.state };
}

/** `p`, or undefined if it has not settled within `ms` of real time (a hang fails the test, not the run). */
function within<T>(p: Promise<T>, ms = 2000): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);
}

/** Settle the wire until `done()` or `ms` of manual time have passed (bounded in steps and time). */
async function settleUntil(wire: MemoryWire, done: () => boolean, ms: number, step = 50): Promise<void> {
  for (let t = 0; t < ms && !done(); t += step) await wire.settle(step, step);
}

describe('a clone family re-grows after a member dies (architecture §5)', () => {
  it('closing a clone of a complete family of 3 makes it grow back to 3, and it is not reported complete meanwhile', async () => {
    const f = await family(3);
    await settleUntil(f.wire, () => f.state() === 'complete', 3000);
    expect(f.established()).toHaveLength(3);
    const victim = f.established().find((m) => m !== f.sa)!;
    const closed = f.alice.closeIkeSa(victim);
    await f.wire.settle(100);
    await closed;
    expect(victim.state).toBe('dead');
    // Two members, target 3: growing (after the back-off), not complete.
    expect(f.state()).toBe('growing');
    await settleUntil(f.wire, () => f.state() === 'complete', 5000);
    expect(f.state()).toBe('complete');
    const members = f.established();
    expect(members).toHaveLength(3);
    expect(members.every((m) => m.children.length === 1)).toBe(true);
  });

  it('the peer deleting a clone also makes the family grow back', async () => {
    const f = await family(3);
    await settleUntil(f.wire, () => f.state() === 'complete', 3000);
    const theirs = f.bob.ikeSas().find((s) => s.familyIndex !== 0)!;
    const closed = f.bob.closeIkeSa(theirs);
    await f.wire.settle(100);
    await within(closed, 500);
    expect(theirs.state).toBe('dead');
    expect(f.established()).toHaveLength(2);
    expect(f.state()).toBe('growing');
    await settleUntil(f.wire, () => f.state() === 'complete', 5000);
    expect(f.established()).toHaveLength(3);
    expect(f.state()).toBe('complete');
  });

  it('a family that lost every member is not re-grown (nothing to clone from)', async () => {
    const f = await family(2);
    await settleUntil(f.wire, () => f.state() === 'complete', 3000);
    const all = f.established();
    const closed = Promise.all(all.map((m) => f.alice.closeIkeSa(m)));
    await f.wire.settle(3000);
    await closed;
    expect(f.alice.ikeSas()).toEqual([]);
    expect(f.cloned).toHaveLength(1);
  });
});

describe('grow() is bounded: a peer that deletes every clone at once (RFC 7791 §5.3 back-off)', () => {
  it('waits the back-off after each lost clone and gives up after backoff.tries, as failed with a reason', async () => {
    const f = await family(1); // no automatic growth: grow() is called below
    // The peer accepts every clone, then deletes it straight away.
    f.bob.on('ike-cloned', (_o, c) => queueMicrotask(() => void f.bob.closeIkeSa(c)));
    const limited: CloneFamily[] = [];
    f.orchestrator.on('family-limited', (fam) => limited.push({ ...fam }));
    const grown = f.orchestrator.grow(f.sa, 3);
    await f.wire.settle(5000);
    const fam = await within(grown);
    expect(fam?.state).toBe('failed');
    expect(fam?.reason).toMatch(/clone/i);
    expect(limited).toHaveLength(1);
    // At most backoff.tries attempts, spaced by at least half the (doubling) back-off.
    expect(f.attempts.length).toBeLessThanOrEqual(FAST.tries);
    expect(f.attempts.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < f.attempts.length; i++) {
      expect(f.attempts[i]! - f.attempts[i - 1]!).toBeGreaterThanOrEqual(0.5 * FAST.baseMs * 2 ** (i - 1));
    }
    // ... and nothing more afterwards.
    const n = f.attempts.length;
    await f.wire.settle(5000, 250);
    expect(f.attempts).toHaveLength(n);
    expect(f.established()).toEqual([f.sa]);
  });

  it('concurrent grow() calls on one session do not overshoot the target', async () => {
    const f = await family(1);
    const a = f.orchestrator.grow(f.sa, 3);
    const b = f.orchestrator.grow(f.sa, 3);
    const c = f.orchestrator.grow(f.sa, 2);
    await f.wire.settle(2000);
    const [fa, fb, fc] = await Promise.all([a, b, c]);
    expect([fa.state, fb.state, fc.state]).toEqual(['complete', 'complete', 'complete']);
    expect(f.established()).toHaveLength(3);
    expect(f.attempts).toHaveLength(2);
    expect(f.orchestrator.family(f.sa.sessionId)!.target).toBe(3);
  });
});

describe('stop() and resume()', () => {
  it('stop() ends a grow() that waits for its TEMPORARY_FAILURE back-off: it resolves as failed', async () => {
    const f = await family(1, { baseMs: 1000, maxMs: 4000, tries: 5 });
    f.bob.limits.maxIkeSas = 1; // TEMPORARY_FAILURE (RFC 7791 §5.3)
    const grown = f.orchestrator.grow(f.sa, 2);
    await f.wire.settle(200); // refused; now in the back-off wait
    expect(f.state()).toBe('growing');
    f.orchestrator.stop();
    let settled: CloneFamily | undefined;
    void grown.then((fam) => (settled = fam));
    await f.wire.settle(100);
    expect(settled?.state).toBe('failed');
    expect(settled?.reason).toMatch(/stopped/);
    // Nothing is attempted later.
    f.bob.limits.maxIkeSas = 100;
    await f.wire.settle(10_000, 500);
    expect(f.attempts).toHaveLength(1);
  });

  it('grow() while stopped does not leave the family "growing"', async () => {
    const f = await family(1);
    f.orchestrator.stop();
    const fam = await within(f.orchestrator.grow(f.sa, 2));
    expect(fam?.state).toBe('failed');
    expect(f.attempts).toEqual([]);
  });

  it('resume() after stop() clones again, and re-grows what stop() cut short', async () => {
    const f = await family(1, { baseMs: 1000, maxMs: 4000, tries: 5 });
    f.bob.limits.maxIkeSas = 1;
    const grown = f.orchestrator.grow(f.sa, 2);
    await f.wire.settle(200);
    f.orchestrator.stop();
    await f.wire.settle(100);
    expect((await within(grown))?.state).toBe('failed');
    f.bob.limits.maxIkeSas = 100;
    f.orchestrator.resume();
    await settleUntil(f.wire, () => f.state() === 'complete', 3000);
    expect(f.state()).toBe('complete');
    expect(f.established()).toHaveLength(2);
  });
});

describe('an IKE rekey is not a deleted SA (RFC 7791 §5.3, RFC 7296 §2.18)', () => {
  it('rekeying a member of a NO_ADDITIONAL_SAS-blocked family keeps it blocked: nothing is sent but the rekey', async () => {
    const f = await family(3, FAST, { ikeSasPerPeer: 2 });
    await settleUntil(f.wire, () => f.state() === 'blocked', 3000);
    expect(f.state()).toBe('blocked');
    expect(f.established()).toHaveLength(2);
    const attemptsBefore = f.attempts.length;
    const p = f.alice.rekeyIkeSa(f.sa);
    await f.wire.settle(500);
    const successor = await p;
    await f.wire.settle(3000, 100);
    expect(f.sa.state).toBe('dead');
    expect(successor.state).toBe('established');
    // §5.3: the peer still has as many IKE SAs as when it refused: no new attempt.
    expect(f.attempts).toHaveLength(attemptsBefore);
    expect(f.state()).toBe('blocked');
    expect(f.established()).toHaveLength(2);
  });

  it('a rekeyed member of a complete family is replaced by its successor: no re-growth, no extra clone', async () => {
    const f = await family(3);
    await settleUntil(f.wire, () => f.state() === 'complete', 3000);
    const attemptsBefore = f.attempts.length;
    const member = f.established().find((m) => m !== f.sa)!;
    const p = f.alice.rekeyIkeSa(member);
    await f.wire.settle(500);
    const successor = await p;
    await f.wire.settle(3000, 100);
    expect(member.state).toBe('dead');
    expect(successor.children).toHaveLength(1);
    expect(f.attempts).toHaveLength(attemptsBefore);
    expect(f.established()).toHaveLength(3);
    expect(f.state()).toBe('complete');
  });

  it('an old SA still being deleted after its rekey does not count as a member: its successor does', async () => {
    const f = await family(1);
    // Hold the old SA in 'deleting': once rekeyed, drop alice's DELETE for it (its SPIi leads the IKE header).
    const oldSpi = spi64Hex(f.sa.spiI);
    f.alice.once('ike-rekeyed', () => {
      f.wire.filter = (d) => (d.local.address === '10.0.0.1' && Buffer.from(d.bytes.subarray(0, 8)).toString('hex') === oldSpi ? 'drop' : 'pass');
    });
    const p = f.alice.rekeyIkeSa(f.sa);
    f.wire.run(100);
    const successor = await p;
    expect(f.sa.state).toBe('deleting');
    // Not complete at once on the strength of the dying SA: a clone is made.
    const grown = f.orchestrator.grow(successor, 2);
    await settleUntil(f.wire, () => f.state() === 'complete', 2000);
    expect((await within(grown))?.state).toBe('complete');
    f.wire.filter = () => 'pass';
    await f.wire.settle(6000, 250);
    expect(f.attempts).toHaveLength(1);
    expect(f.established()).toHaveLength(2);
    expect(f.state()).toBe('complete');
  });

  it('the peer rekeying a member (we are the rekey responder) does not re-grow either', async () => {
    const f = await family(2);
    await settleUntil(f.wire, () => f.state() === 'complete', 3000);
    const attemptsBefore = f.attempts.length;
    const theirs = f.bob.ikeSas().find((s) => s.familyIndex !== 0)!;
    const p = f.bob.rekeyIkeSa(theirs);
    await f.wire.settle(500);
    await p;
    await f.wire.settle(3000, 100);
    expect(f.attempts).toHaveLength(attemptsBefore);
    expect(f.established()).toHaveLength(2);
    expect(f.state()).toBe('complete');
  });
});

describe('Gateway.stop() then start() (architecture §6 library use)', () => {
  const running: Gateway[] = [];
  afterEach(async () => {
    for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
  });

  it('clones again after a restart', async () => {
    const { initiator, responder } = loopbackPair({ initiatorExtra: { clone: { per: 'worker', count: 2 } } });
    const gw = new Gateway({ config: responder, log: silentLogger() });
    const client = new Gateway({ config: initiator, log: silentLogger() });
    running.push(gw, client);
    await gw.start();
    await client.start();
    const complete = () =>
      new Promise<string>((resolve) => {
        const t = setTimeout(() => resolve('timeout'), 3000);
        client.cloner.once('family-complete', () => {
          clearTimeout(t);
          resolve('complete');
        });
      });
    let done = complete();
    await client.up('gw');
    expect(await done).toBe('complete');
    await client.stop();
    await client.start();
    done = complete();
    const sa: IkeSa = await client.up('gw');
    expect(await done).toBe('complete');
    expect(client.engine.sessionMembers(sa.sessionId).filter((m) => m.state === 'established')).toHaveLength(2);
  });
});
