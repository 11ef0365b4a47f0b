// Silent members (control/cluster/silent-member.ts, architecture §8): the
// decision in memory with an injected clock (an etcd election stalls
// everybody: no false positive; real silence: revoked after the lease TTL; a
// member that comes back; our own writes failing or our lease lost: no
// revoke), then on a real etcd (TLS), each node with its liveness probe on
// loopback (control/cluster/liveness-probe.ts): a node that stops is revoked
// before etcd would have expired its lease; a node silent in etcd that
// answers the probe keeps its lease, and loses it once it stops answering; a
// node whose heartbeat announces no probe port is never revoked; and a node
// wrongly suspected (heartbeat and probe stuck, keep-alives not) loses its
// lease and joins again. The etcd part needs the Debian etcd (prerequisite
// 'etcd').
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { ClusterKey } from '../control/cluster/seal.js';
import { LivenessProbe } from '../control/cluster/liveness-probe.js';
import { ClusterMembership, readMembers } from '../control/cluster/membership.js';
import { GAP_FACTOR, RETRY_MS, SERVED_PERIODS, SilentMemberDecision, SilentMembers, aliveKey, parseHeartbeat } from '../control/cluster/silent-member.js';
import type { ClusterConfig } from '../control/config/types.js';
import { silentLogger } from '../control/log.js';
import { capturedLog } from './support/mobike-peers.js';
import { requirePrereqs, interopTest } from './support/prereq.js';
import { startEtcd, type EtcdServer } from './support/etcd.js';
import { waitFor } from './support/proc.js';

const TTL = 3000;
const P = TTL / 3;

/** A decision on a clock the test moves; `tick` steps it in 25 ms steps and collects every silent verdict. */
function decision(self = 'gw-a') {
  let t = 0;
  const d = new SilentMemberDecision({ self, leaseTtlMs: TTL, now: () => t });
  const verdicts: Array<{ at: number; node: string }> = [];
  const tick = (to: number) => {
    while (t < to) {
      t = Math.min(to, t + 25);
      for (const s of d.silent('own-lease')) verdicts.push({ at: t, node: s.node });
    }
  };
  return { d, verdicts, tick, now: () => t };
}

describe('the silent-member decision (in memory, injected clock)', () => {
  /**
   * Two live nodes, A (the decision's) and B, each writing a heartbeat one at a time as SilentMembers does
   * (the next a period after one succeeded, RETRY_MS after one failed), etcd without a leader during
   * `stall` (writes wait, and fail at their 2 s deadline), B's commits `bLag` ms slower than A's (a busier
   * process). Returns the verdicts of A's decision, checked every 25 ms.
   */
  function simulateStall(stall: [number, number], bPhase: number, bLag: number): Array<{ at: number; node: string }> {
    const { d, verdicts, tick } = decision();
    const DEADLINE = 2000;
    const writers = [
      { name: 'gw-a', lease: 'own-lease', lag: 5, next: 0, inflight: undefined as { at: number; ok: boolean } | undefined },
      { name: 'gw-b', lease: 'lease-b', lag: 5 + bLag, next: bPhase, inflight: undefined as { at: number; ok: boolean } | undefined },
    ];
    for (let t = 0; t <= 15_000; t += 5) {
      tick(t);
      for (const w of writers) {
        if (w.inflight && w.inflight.at <= t) {
          if (w.inflight.ok) d.heartbeat(w.name, w.lease);
          if (w.name === 'gw-a') d.ownWrite(w.inflight.ok);
          w.next = t + (w.inflight.ok ? P : RETRY_MS);
          w.inflight = undefined;
        }
        if (!w.inflight && w.next <= t) {
          const commit = t >= stall[0] && t < stall[1] ? stall[1] + w.lag : t + w.lag;
          w.inflight = commit - t > DEADLINE ? { at: t + DEADLINE, ok: false } : { at: commit, ok: true };
        }
      }
    }
    return verdicts;
  }

  test('an etcd election stalls every write (0.25 to 6 s, any phase, B slower to commit): no live member is declared silent', () => {
    for (let length = 250; length <= 6000; length += 250) {
      for (const from of [2000, 2330, 2700]) {
        for (let bPhase = 0; bPhase < P; bPhase += 100) {
          for (const bLag of [0, 60, 250, 500]) {
            const v = simulateStall([from, from + length], bPhase, bLag);
            expect(v, `stall ${length} ms from ${from}, B's phase ${bPhase}, lag ${bLag}`).toEqual([]);
          }
        }
      }
    }
  });

  test('the same simulation with B stopping for good at the stall: B is declared silent, once per period', () => {
    // B's writes all fail from the stall on (its process is gone): the model's B with an infinite lag.
    const { d, verdicts, tick } = decision();
    let next = 0;
    for (let t = 0; t <= 10_000; t += 5) {
      tick(t);
      if (t === 200) d.heartbeat('gw-b', 'lease-b');
      if (t >= next && (t < 1000 || t >= 3000)) {
        d.heartbeat('gw-a', 'own-lease');
        d.ownWrite(true);
        next = t + P;
      }
    }
    // Our heartbeats at 0, then 3 s, 4 s, 5 s...: the run after the stall proves etcd serves us
    // SERVED_PERIODS after its first; asked again every period until B's key goes.
    const first = 3000 + SERVED_PERIODS * P;
    expect(verdicts[0]).toEqual({ at: first, node: 'gw-b' });
    expect(verdicts.map((v) => v.at)).toEqual([0, 1, 2, 3, 4, 5].map((k) => first + k * P).filter((t) => t <= 10_000));
  });

  test('real silence: the member is declared silent once its heartbeat stopped for the TTL and two of ours landed since, then again each period until it is gone', () => {
    const { d, verdicts, tick, now } = decision();
    const ownBeats = (until: number) => {
      while (now() < until) {
        d.heartbeat('gw-a', 'own-lease');
        d.ownWrite(true);
        tick(now() + P);
      }
    };
    d.heartbeat('gw-b', 'lease-b');
    ownBeats(TTL + 2 * P);
    expect(verdicts[0]).toEqual({ at: TTL, node: 'gw-b' });
    // Asked again a period later (the revoke may have failed), not at every check.
    expect(verdicts.map((v) => v.at)).toEqual([TTL, TTL + P, TTL + 2 * P]);
    d.gone('gw-b');
    ownBeats(now() + 3 * P);
    expect(verdicts).toHaveLength(3);
    expect(d.followed).toBe(0);
  });

  test('a member whose heartbeat comes back before the TTL is not suspected; one that joins again under a new lease starts afresh', () => {
    const { d, verdicts, tick, now } = decision();
    const ownBeat = () => {
      d.heartbeat('gw-a', 'own-lease');
      d.ownWrite(true);
    };
    d.heartbeat('gw-b', 'lease-b');
    for (let i = 0; i < 2; i++) {
      ownBeat();
      tick(now() + P);
    }
    ownBeat();
    tick(now() + P - 100); // 2.9 s of silence, three of our heartbeats since
    d.heartbeat('gw-b', 'lease-b');
    for (let i = 0; i < 2; i++) {
      ownBeat();
      tick(now() + P);
    }
    expect(verdicts).toEqual([]);
    // B silent long enough: asked at 2.9 + 3 s; then it joins again (its new lease's heartbeat): the clock starts again.
    for (let i = 0; i < 4; i++) {
      ownBeat();
      tick(now() + P);
    }
    expect(verdicts[0]).toEqual({ at: 5900, node: 'gw-b' });
    const asked = verdicts.length;
    d.heartbeat('gw-b', 'lease-b2');
    for (let i = 0; i < 2; i++) {
      ownBeat();
      tick(now() + P);
    }
    expect(verdicts).toHaveLength(asked);
  });

  test('our own writes failing, our lease lost, or a watch that delivers none of our heartbeats: no verdict', () => {
    // Writes failing: B silent for ever, we suspect no one until two of ours land again.
    const a = decision();
    a.d.heartbeat('gw-b', 'lease-b');
    a.d.heartbeat('gw-a', 'own-lease');
    a.d.ownWrite(true);
    a.tick(P);
    a.d.heartbeat('gw-a', 'own-lease');
    a.d.ownWrite(true);
    for (let t = P; t < 4 * TTL; t += 100) {
      a.d.ownWrite(false);
      a.tick(t + 100);
    }
    expect(a.verdicts).toEqual([]);
    a.d.heartbeat('gw-a', 'own-lease');
    a.d.ownWrite(true);
    a.tick(a.now() + P);
    expect(a.verdicts).toEqual([]); // one of ours in the new run: not yet
    a.d.heartbeat('gw-a', 'own-lease');
    a.d.ownWrite(true);
    a.tick(a.now() + (SERVED_PERIODS - 1) * P - 25);
    expect(a.verdicts).toEqual([]); // two, but the run is not SERVED_PERIODS old yet
    a.tick(a.now() + 25);
    expect(a.verdicts.map((v) => v.node)).toEqual(['gw-b']);

    // Our lease lost: our writes may even land (a new lease is not ours yet), no verdict.
    const b = decision();
    b.d.heartbeat('gw-b', 'lease-b');
    b.d.ownLease(false);
    for (let i = 0; i < 8; i++) {
      b.d.heartbeat('gw-a', 'own-lease');
      b.d.ownWrite(true);
      b.tick(b.now() + P);
    }
    expect(b.verdicts).toEqual([]);
    b.d.ownLease(true);
    b.tick(b.now() + 25);
    expect(b.verdicts.map((v) => v.node)).toEqual(['gw-b']);

    // Our writes succeed but the watch delivers nothing (a stream to a member cut off from the others).
    const c = decision();
    c.d.heartbeat('gw-b', 'lease-b');
    for (let i = 0; i < 8; i++) {
      c.d.ownWrite(true);
      c.tick(c.now() + P);
    }
    expect(c.verdicts).toEqual([]);
  });

  test('our own heartbeats further apart than GAP_FACTOR periods break the run: two fresh ones are needed', () => {
    const { d, verdicts, tick, now } = decision();
    d.heartbeat('gw-b', 'lease-b');
    d.heartbeat('gw-a', 'own-lease');
    d.ownWrite(true);
    tick(now() + GAP_FACTOR * P + 50);
    d.heartbeat('gw-a', 'own-lease');
    d.ownWrite(true);
    tick(TTL + 100); // B silent for the TTL, two of ours since, but not in one run
    expect(verdicts).toEqual([]);
  });

  test('a member that announces a longer lease TTL (it writes less often) is silent only after it', () => {
    const { d, verdicts, tick, now } = decision();
    d.heartbeat('gw-b', 'lease-b', 6000);
    d.heartbeat('gw-c', 'lease-c', 1000); // a shorter one counts as ours
    for (let i = 0; i < 8; i++) {
      d.heartbeat('gw-a', 'own-lease');
      d.ownWrite(true);
      tick(now() + P);
    }
    expect(verdicts.filter((v) => v.node === 'gw-c')[0]).toEqual({ at: TTL, node: 'gw-c' });
    expect(verdicts.filter((v) => v.node === 'gw-b')[0]).toEqual({ at: 6000, node: 'gw-b' });
    expect(parseHeartbeat('{"seq":3,"ttlMs":5000}')).toEqual({ seq: 3, ttlMs: 5000 });
    for (const bad of ['', '7', '{"seq":1}', '{"seq":1,"ttlMs":-5}', '{"seq":"x","ttlMs":1}']) expect(parseHeartbeat(bad)).toBeUndefined();
  });

  test('never our own name or lease, nor a key without a lease; members are bounded', () => {
    let t = 0;
    const d = new SilentMemberDecision({ self: 'gw-a', leaseTtlMs: TTL, now: () => t, maxMembers: 2 });
    d.heartbeat('gw-x', 'own-lease'); // another name under our lease (a stale key of ours): never revoked
    d.heartbeat('gw-y', '0');
    d.heartbeat('gw-z', 'lease-z');
    expect(d.followed).toBe(2);
    expect(d.ignored).toBe(1);
    for (let i = 0; i < 8; i++) {
      d.heartbeat('gw-a', 'own-lease');
      d.ownWrite(true);
      t += P;
    }
    t -= P - 10;
    expect(d.silent('own-lease')).toEqual([]);
    d.gone('gw-x');
    d.heartbeat('gw-z', 'lease-z');
    expect(d.followed).toBe(2);
  });
});

let etcd: EtcdServer | undefined;
beforeAll(async () => {
  if (requirePrereqs(['etcd']).ok) etcd = await startEtcd({ tls: true });
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
});

function config(name: string, node: string, leaseTtlMs: number): ClusterConfig {
  return { name, node, address: '192.0.2.1', etcd: [etcd!.endpoint], tls: etcd!.tls!, sealingKeyFile: '/nonexistent', leaseTtlMs, onEtcdUnreachable: 'fail' };
}

const clusterKey = ClusterKey.derive(randomBytes(32), 'silent');

/** The liveness probe of membership `m` on loopback (any free port), answering under m's lease. */
async function probeOf(m: ClusterMembership): Promise<LivenessProbe> {
  const probe = new LivenessProbe({ key: clusterKey, node: m.node, address: '127.0.0.1', port: 0, leaseId: () => m.leaseId, log: silentLogger() });
  await probe.bind();
  return probe;
}

/** SilentMembers of membership `m` with its own probe, judging (and announcing) silence after `leaseTtlMs` (default: m's lease TTL). */
async function silentMembersOf(m: ClusterMembership, log = silentLogger(), leaseTtlMs = m.config.leaseTtlMs): Promise<SilentMembers & { probe: LivenessProbe }> {
  const probe = await probeOf(m);
  const s = await new SilentMembers({ client: m.client, cluster: m.config.name, node: m.node, leaseTtlMs, leaseId: () => m.leaseId, leaseHeld: () => true, log, probe }).start();
  const stop = s.stop.bind(s);
  return Object.assign(s, {
    probe,
    stop: async () => {
      await stop();
      probe.close();
    },
  });
}

describe('silent members on etcd', () => {
  interopTest('a node that stops (heartbeat and keep-alives) has its lease revoked by the other before etcd would have expired it', ['etcd'], async () => {
    const name = `c-${randomBytes(3).toString('hex')}`;
    const captured = capturedLog();
    // Both judge silence after 2 s, but etcd holds B's lease for 20 s: only a revoke removes B's keys within the bound below.
    const a = await ClusterMembership.join({ config: config(name, 'gw-a', 2000), connectionsHash: 'h', log: silentLogger() });
    const b = await ClusterMembership.join({ config: config(name, 'gw-b', 20_000), connectionsHash: 'h', log: silentLogger() });
    const sa = await silentMembersOf(a, captured.log);
    const sb = await silentMembersOf(b, silentLogger(), 2000);
    try {
      await waitFor(() => (sa.decision.followed === 1 ? true : undefined), { timeoutMs: 5000, message: "A follows B's heartbeat" });
      await new Promise((r) => setTimeout(r, 2500));
      expect(sa.stats.revoked).toBe(0); // both alive: nobody suspected
      // B's process stops: no heartbeat, no keep-alive, no answer to probes, nothing revoked by B itself.
      await sb.stop();
      b.lease.release();
      const stoppedAt = Date.now();
      await waitFor(async () => ((await readMembers(a.client, name)).some((m) => m.node === 'gw-b') ? undefined : true), { timeoutMs: 12_000, intervalMs: 100, message: "B's member key to go" });
      const goneMs = Date.now() - stoppedAt;
      expect(goneMs).toBeLessThan(10_000); // its own lease had 20 s
      expect(sa.stats.revoked).toBe(1);
      const line = captured.lines().find((l) => /^member silent for \d+ ms while etcd served us: its lease revoked$/.test(l.msg));
      expect(line).toMatchObject({ member: 'gw-b', lease: b.leaseId, probe: 'no answer' });
      expect(sa.stats.spared).toBe(0);
      expect(Number(line!.silentMs)).toBeGreaterThanOrEqual(2000);
      // Its heartbeat key went with the lease; A follows no one now.
      expect((await a.client.get(aliveKey(name, 'gw-b')).string())).toBeNull();
      await waitFor(() => (sa.decision.followed === 0 ? true : undefined), { timeoutMs: 5000, message: "B's heartbeat key deletion seen" });
    } finally {
      await sa.stop();
      await sb.stop();
      b.client.close();
      await a.leave();
    }
  }, 60_000);

  interopTest('a live node wrongly suspected (its heartbeat stopped, its keep-alives not) loses its lease and joins the cluster again', ['etcd'], async () => {
    const name = `c-${randomBytes(3).toString('hex')}`;
    const a = await ClusterMembership.join({ config: config(name, 'gw-a', 2000), connectionsHash: 'h', log: silentLogger() });
    const b = await ClusterMembership.join({ config: config(name, 'gw-b', 2000), connectionsHash: 'h', log: silentLogger() });
    const sa = await silentMembersOf(a);
    const events: string[] = [];
    b.on('lease-lost', () => events.push('lease-lost'));
    b.on('rejoined', () => events.push('rejoined'));
    const oldLease = b.leaseId;
    // B's probe socket takes datagrams and never answers (its event loop stuck for the probe, as its heartbeat writer).
    const stuck = createSocket('udp4');
    await new Promise<void>((r) => stuck.bind(0, '127.0.0.1', r));
    try {
      // One heartbeat of B under its lease, then none (its heartbeat writer stuck), while its keep-alives go on.
      await b.client.put(aliveKey(name, 'gw-b')).value(JSON.stringify({ seq: 1, ttlMs: 2000, probe: { address: '127.0.0.1', port: stuck.address().port } })).lease(b.leaseId);
      await waitFor(() => (events.includes('rejoined') ? true : undefined), { timeoutMs: 15_000, intervalMs: 100, message: 'B to lose its lease and join again' });
      expect(events).toEqual(['lease-lost', 'rejoined']);
      expect(sa.stats.revoked).toBe(1);
      expect(b.leaseId).not.toBe(oldLease);
      // B is a member again, under its new lease, with its SPI prefix.
      const members = await readMembers(a.client, name);
      expect(members.find((m) => m.node === 'gw-b')).toMatchObject({ spiPrefix: b.spiPrefix });
      // Without a heartbeat of its new lease B is not followed, so not suspected again.
      await new Promise((r) => setTimeout(r, 3000));
      expect(sa.stats.revoked).toBe(1);
      expect((await readMembers(a.client, name)).map((m) => m.node)).toEqual(['gw-a', 'gw-b']);
    } finally {
      stuck.close();
      await sa.stop();
      await b.leave();
      await a.leave();
    }
  }, 60_000);

  interopTest('a member silent in etcd that answers the liveness probe under its lease keeps it (logged once); once it stops answering, its lease is revoked', ['etcd'], async () => {
    const name = `c-${randomBytes(3).toString('hex')}`;
    const captured = capturedLog();
    const a = await ClusterMembership.join({ config: config(name, 'gw-a', 2000), connectionsHash: 'h', log: silentLogger() });
    // B's lease would last 20 s: only a revoke removes its member key within the bounds below.
    const b = await ClusterMembership.join({ config: config(name, 'gw-b', 20_000), connectionsHash: 'h', log: silentLogger() });
    const sa = await silentMembersOf(a, captured.log);
    const probeB = await probeOf(b);
    try {
      // One heartbeat of B announcing its probe, then none (as when its etcd client switches members), while it answers.
      await b.client.put(aliveKey(name, 'gw-b')).value(JSON.stringify({ seq: 1, ttlMs: 2000, probe: probeB.announced })).lease(b.leaseId);
      await waitFor(() => (sa.decision.followed === 1 ? true : undefined), { timeoutMs: 5000, message: "A follows B's heartbeat" });
      // Silent for 2 s, then asked about once per period (2/3 s): several probes, each answered.
      await waitFor(() => (sa.stats.spared >= 3 ? true : undefined), { timeoutMs: 10_000, intervalMs: 100, message: 'A to probe B three times' });
      expect(sa.stats.revoked).toBe(0);
      expect(probeB.stats.pongsSent).toBeGreaterThanOrEqual(3);
      expect((await readMembers(a.client, name)).map((m) => m.node)).toEqual(['gw-a', 'gw-b']);
      // Asked at most once per period: three probes took at least two periods.
      const spared = captured.lines().filter((l) => /answers on its cluster address: its lease kept/.test(l.msg));
      expect(spared).toHaveLength(1);
      expect(spared[0]).toMatchObject({ member: 'gw-b', lease: b.leaseId });
      expect(JSON.stringify(captured.lines())).not.toMatch(/[0-9a-f]{32}/); // no MAC or nonce in the log
      // B stops answering: the next probe gets no answer and A revokes B's lease.
      probeB.close();
      await waitFor(async () => ((await readMembers(a.client, name)).some((m) => m.node === 'gw-b') ? undefined : true), { timeoutMs: 5000, intervalMs: 100, message: "B's member key to go" });
      expect(sa.stats.revoked).toBe(1);
    } finally {
      probeB.close();
      await sa.stop();
      b.lease.release();
      b.client.close();
      await a.leave();
    }
  }, 60_000);

  interopTest('a member whose heartbeat announces no probe port (an older version) is never revoked by this rule', ['etcd'], async () => {
    const name = `c-${randomBytes(3).toString('hex')}`;
    const a = await ClusterMembership.join({ config: config(name, 'gw-a', 2000), connectionsHash: 'h', log: silentLogger() });
    const b = await ClusterMembership.join({ config: config(name, 'gw-b', 2000), connectionsHash: 'h', log: silentLogger() });
    const sa = await silentMembersOf(a);
    try {
      await b.client.put(aliveKey(name, 'gw-b')).value(JSON.stringify({ seq: 1, ttlMs: 2000 })).lease(b.leaseId);
      await waitFor(() => (sa.stats.notProbed >= 2 ? true : undefined), { timeoutMs: 10_000, intervalMs: 100, message: 'A to find B silent twice' });
      expect(sa.stats).toMatchObject({ revoked: 0, spared: 0 });
      expect(sa.probe.stats.pingsSent).toBe(0);
      expect((await readMembers(a.client, name)).map((m) => m.node)).toEqual(['gw-a', 'gw-b']);
    } finally {
      await sa.stop();
      await b.leave();
      await a.leave();
    }
  }, 60_000);
});
