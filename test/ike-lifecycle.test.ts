// SA lifecycle between two engines in memory, on a manual clock (RFC 7296
// §2.4, §2.8, §2.21.4, §1.4.1; RFC 3948 §2.3): lifetimes in time, bytes,
// packets and sequence numbers, liveness checks and dead peers, NAT
// keepalives, INVALID_SPI notifies, half-closed Child SAs, zeroised keys, no
// timers left behind, and exchanges that complete over a lossy or duplicating
// wire.
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair, seededRandom } from './support/peers.js';
import type { IkeEngine, IkeEngineOptions } from '../control/ike/engine.js';
import type { ChildSa } from '../control/ike/ike-sa.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import type { ChildPolicy, ConnectionPolicy } from '../control/ike/policy.js';
import type { Datagram, Endpoint } from '../control/ike/transport.js';
import { ExchangeType, HeaderFlag, NotifyType, PayloadType } from '../control/wire/constants.js';
import type { NotifyPayload, Payload } from '../control/wire/payloads.js';
import { spiNumber } from '../control/ike/payload-builders.js';

const isResponse = (d: Datagram) => (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0;
const exchangeOf = (d: Datagram) => d.bytes[18]!;
const fromAlice = (d: Datagram) => d.local.address === '10.0.0.1' || d.local.address === NAT_PUBLIC;
const NAT_PUBLIC = '192.0.2.100';

type Over = { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> };
type ChildOver = Partial<ChildPolicy>;

function withChild(over: Over, side: 'initiator' | 'responder', child: ChildOver): Over {
  const base = pskPair()[side].children[0]!;
  return { ...over, [side]: { ...over[side], children: [{ ...base, ...child }] } };
}

interface Traced {
  engine: 'alice' | 'bob';
  direction: 'in' | 'out';
  response: boolean;
  exchangeType: number;
  payloads: readonly Payload[];
}

async function pair(
  seed: string,
  over: Over = {},
  opts: { alice?: Partial<IkeEngineOptions>; bob?: Partial<IkeEngineOptions>; wire?: MemoryWire; runMs?: number } = {},
) {
  const wire = opts.wire ?? new MemoryWire();
  const trace: Traced[] = [];
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine('10.0.0.1', [initiator], { random: seededRandom(`alice/${seed}`), trace: (e) => trace.push({ engine: 'alice', ...e }), ...opts.alice });
  const bob = wire.engine('10.0.0.2', [responder], { random: seededRandom(`bob/${seed}`), trace: (e) => trace.push({ engine: 'bob', ...e }), ...opts.bob });
  const up = alice.initiate(initiator.name);
  wire.run(opts.runMs ?? 100);
  const sa = await up;
  const peerSa = bob.ikeSas()[0]!;
  return { wire, alice, bob, sa, peerSa, trace };
}

/** Requests `who` sent of an exchange type, with the clock at sending. */
function requestLog(wire: MemoryWire, who: (d: Datagram) => boolean, exchange: number) {
  const times: number[] = [];
  const inner = wire.filter;
  wire.filter = (d, i) => {
    if (who(d) && exchangeOf(d) === exchange && !isResponse(d)) times.push(wire.clock.now());
    return inner(d, i);
  };
  return times;
}

/** Child SAs matched across the two ends. */
function agree(a: IkeEngine, b: IkeEngine): void {
  const mine = [...a.childrenBySpi.values()];
  const theirs = [...b.childrenBySpi.values()];
  expect(mine.length).toBe(theirs.length);
  for (const c of mine) {
    const peer = b.childrenBySpi.get(c.spiOut);
    expect(peer, `peer of ${c.spiIn.toString(16)}`).toBeDefined();
    expect(peer!.spiOut).toBe(c.spiIn);
  }
}

function allZero(...bufs: Uint8Array[]): boolean {
  return bufs.every((b) => b.every((x) => x === 0));
}

describe('Child SA lifetimes (RFC 7296 §2.8)', () => {
  it('the soft time limit rekeys at rekeyTime less a random part of randTime; the jitter differs between runs', async () => {
    const times: number[] = [];
    for (const seed of ['1', '2', '3', '4', '5', '6']) {
      const { wire, alice, bob, sa, peerSa } = await pair(seed, withChild({}, 'initiator', { rekeyTime: 10_000, randTime: 3_000, lifeTime: 12_000 }));
      const old = sa.children[0]!;
      const expired: string[] = [];
      alice.on('child-expired', (c, limit, cause) => {
        expect(c).toBe(old);
        expired.push(`${limit}/${cause}`);
        times.push(wire.clock.now());
      });
      const bobRequests = requestLog(wire, (d) => !fromAlice(d), ExchangeType.CREATE_CHILD_SA);
      const t0 = wire.clock.now();
      wire.run(11_000, 100);
      expect(expired).toEqual(['soft/time']);
      const t = times.at(-1)! - t0;
      expect(t).toBeGreaterThanOrEqual(7_000);
      expect(t).toBeLessThanOrEqual(10_000);
      // Rekeyed, not deleted: a new pair on both ends, the old one gone, no hard limit hit.
      expect(old.state).toBe('deleted');
      expect(sa.children).toHaveLength(1);
      expect(sa.children[0]).not.toBe(old);
      expect(peerSa.children).toHaveLength(1);
      agree(alice, bob);
      // Bob has no lifetimes: he never started a rekey.
      expect(bobRequests).toEqual([]);
    }
    expect(new Set(times.map((t) => t % 100_000)).size).toBeGreaterThan(3);
  });

  it('the hard time limit deletes the Child SA on both ends; the IKE SA stays', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('hard', withChild({}, 'initiator', { rekeyTime: 0, lifeTime: 5_000 }));
    const child = sa.children[0]!;
    const events: string[] = [];
    alice.on('child-expired', (_c, limit, cause) => events.push(`expired ${limit}/${cause} @${wire.clock.now()}`));
    alice.on('child-down', (c, reason) => events.push(`down ${c === child} ${reason} @${wire.clock.now()}`));
    const t0 = child.createdAt;
    wire.run(4_800, 100);
    expect(events).toEqual([]);
    wire.run(200, 100);
    expect(events).toEqual([`expired hard/time @${t0 + 5000}`, `down true hard time limit reached @${t0 + 5000}`]);
    expect(sa.children).toEqual([]);
    expect(peerSa.children).toEqual([]);
    expect(sa.state).toBe('established');
    expect(alice.lifetimes.trackedChildren + bob.lifetimes.trackedChildren).toBe(0);
    wire.run(60_000, 1000);
    expect(wire.clock.pending()).toBe(0);
  });

  it('a Child SA whose every rekey was refused reaches its hard limit and is created again by the end that starts the connection', async () => {
    const over = withChild({ initiator: { startAction: 'start' } }, 'initiator', { rekeyTime: 3_000, randTime: 0, lifeTime: 4_000 });
    const { wire, alice, bob, sa, peerSa } = await pair('expired-again', over);
    const old = sa.children[0]!;
    const logged: string[] = [];
    alice.on('child-expired', (_c, limit) => logged.push(`expired ${limit}`));
    // Bob refuses every Child SA for now (RFC 7296 §2.25 TEMPORARY_FAILURE): alice's rekeys fail until the hard limit.
    bob.limits.childSasPerPeer = 0;
    wire.run(old.createdAt + 4_000 - wire.clock.now() + 50, 50);
    expect(logged).toEqual(['expired soft', 'expired hard']);
    expect(old.state).toBe('deleted');
    expect(sa.children.filter((c) => c.state === 'installed')).toEqual([]);
    // Bob accepts again; alice creates the Child SA anew (once its last rekey settled), bob installs it too.
    bob.limits.childSasPerPeer = 64;
    await wire.settle(1_000);
    const fresh = sa.children.filter((c) => c.state === 'installed');
    expect(fresh).toHaveLength(1);
    expect(fresh[0]!.name).toBe(old.name);
    expect(fresh[0]!.spiIn).not.toBe(old.spiIn);
    expect(peerSa.children.filter((c) => c.state === 'installed').map((c) => c.spiOut)).toEqual([fresh[0]!.spiIn]);
    expect(sa.state).toBe('established');
  });

  it('a Child SA past its hard limit is not created again by the end that does not start the connection', async () => {
    // Bob (start_action none) rekeys his Child SA at 2 s; alice (no rekey of her own) refuses every
    // Child SA from then on, so his copy dies at its hard limit and he tells her.
    const over = withChild(withChild({}, 'responder', { rekeyTime: 2_000, randTime: 0, lifeTime: 2_500 }), 'initiator', { rekeyTime: 0, lifeTime: 0 });
    const { wire, alice, sa, peerSa } = await pair('expired-responder', over);
    alice.limits.childSasPerPeer = 0;
    await wire.settle(4_000, 50);
    alice.limits.childSasPerPeer = 64;
    await wire.settle(2_000, 50);
    expect(peerSa.children.filter((c) => c.state === 'installed')).toEqual([]);
    expect(sa.children.filter((c) => c.state === 'installed')).toEqual([]);
    expect(peerSa.state).toBe('established');
  });

  it('bytes: reportChildUsage rekeys at rekey_bytes once and deletes at life_bytes', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('bytes', withChild({}, 'initiator', { rekeyTime: 0, lifeTime: 0, rekeyBytes: 1_000, lifeBytes: 2_000 }));
    const old = sa.children[0]!;
    const rekeys = requestLog(wire, fromAlice, ExchangeType.CREATE_CHILD_SA);
    expect(alice.reportChildUsage(old.spiIn, { bytes: 500, packets: 1 })).toBe('ok');
    expect(alice.reportChildUsage(old.spiIn, { bytes: 1_000, packets: 2 })).toBe('rekey');
    // Reported again before the rekey finished: no second rekey.
    expect(alice.reportChildUsage(old.spiIn, { bytes: 1_200, packets: 3 })).toBe('rekey');
    wire.run(100);
    expect(rekeys).toHaveLength(1);
    expect(old.state).toBe('deleted');
    expect(alice.reportChildUsage(old.spiIn, { bytes: 1_500, packets: 4 })).toBe('unknown-spi');
    const fresh = sa.children[0]!;
    expect(alice.reportChildUsage(fresh.spiIn, { bytes: 1_999, packets: 4 })).toBe('rekey');
    wire.run(100);
    const third = sa.children[0]!;
    expect(third).not.toBe(fresh);
    expect(alice.reportChildUsage(third.spiIn, { bytes: 2_000, packets: 5 })).toBe('expired');
    wire.run(100);
    expect(sa.children).toEqual([]);
    expect(peerSa.children).toEqual([]);
    expect(bob.childrenBySpi.size).toBe(0);
  });

  it('packets: rekey_packets rekeys, life_packets deletes; sequence-number exhaustion rekeys at once', async () => {
    const { wire, alice, bob, sa } = await pair('packets', withChild({}, 'initiator', { rekeyTime: 0, lifeTime: 0, rekeyPackets: 10, lifePackets: 20 }));
    const expired: string[] = [];
    alice.on('child-expired', (_c, limit, cause) => expired.push(`${limit}/${cause}`));
    const c1 = sa.children[0]!;
    expect(alice.reportChildUsage(c1.spiIn, { bytes: 0, packets: 10 })).toBe('rekey');
    wire.run(100);
    const c2 = sa.children[0]!;
    expect(c2).not.toBe(c1);
    expect(alice.childRekeyNeeded(c2.spiIn)).toBe(true);
    wire.run(100);
    const c3 = sa.children[0]!;
    expect(c3).not.toBe(c2);
    expect(alice.childRekeyNeeded(c2.spiIn)).toBe(false);
    expect(alice.reportChildUsage(c3.spiIn, { bytes: 0, packets: 25 })).toBe('expired');
    wire.run(100);
    expect(expired).toEqual(['soft/packets', 'soft/sequence', 'hard/packets']);
    expect(sa.children).toEqual([]);
    expect(bob.childrenBySpi.size).toBe(0);
  });

  it('reportChildUsage and childRekeyNeeded check their input', async () => {
    const { alice, sa } = await pair('inputs');
    const spi = sa.children[0]!.spiIn;
    expect(() => alice.reportChildUsage(-1, { bytes: 0, packets: 0 })).toThrow(TypeError);
    expect(() => alice.reportChildUsage(2 ** 32, { bytes: 0, packets: 0 })).toThrow(TypeError);
    expect(() => alice.reportChildUsage(spi, { bytes: Number.NaN, packets: 0 })).toThrow(TypeError);
    expect(() => alice.reportChildUsage(spi, { bytes: 1, packets: -1 })).toThrow(TypeError);
    expect(() => alice.reportChildUsage(spi, null as never)).toThrow(TypeError);
    expect(() => alice.reportChildUsage(spi, { bytes: 1, packets: 1, inPackets: Infinity })).toThrow(TypeError);
    expect(() => alice.childRekeyNeeded(1.5)).toThrow(TypeError);
    expect(alice.reportChildUsage(0x1234, { bytes: 1, packets: 1 })).toBe('unknown-spi');
    expect(alice.reportChildUsage(spi, { bytes: 1e12, packets: 1e9 })).toBe('ok');
  });
});

describe('IKE SA lifetimes (RFC 7296 §2.8, §2.8.3)', () => {
  it('the soft limit rekeys the IKE SA within [rekeyTime - randTime, rekeyTime]; the successor is armed again', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('ike-soft', { initiator: { rekeyTime: 20_000, randTime: 5_000 } });
    const t0 = wire.clock.now();
    const at: number[] = [];
    alice.on('ike-expired', (s, limit) => at.push(limit === 'rekey' && s === sa ? wire.clock.now() - t0 : -1));
    const child = sa.children[0]!;
    wire.run(20_100, 100);
    expect(at).toHaveLength(1);
    expect(at[0]).toBeGreaterThanOrEqual(15_000);
    expect(at[0]).toBeLessThanOrEqual(20_000);
    const [successor] = alice.ikeSas();
    expect(successor).not.toBe(sa);
    expect(sa.state).toBe('dead');
    expect(peerSa.state).toBe('dead');
    expect(successor!.children).toEqual([child]);
    expect(spi64Hex(bob.ikeSas()[0]!.spiI)).toBe(spi64Hex(successor!.spiI));
    // The successor has its own lifetime: it is rekeyed again about 20 s later.
    wire.run(20_000, 100);
    expect(at).toHaveLength(2);
    expect(alice.ikeSas()[0]).not.toBe(successor);
    expect(alice.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()).toHaveLength(1);
    agree(alice, bob);
  });

  it('reauthentication (make before break): a new IKE SA with new Child SAs, then the old one is deleted', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('reauth', { initiator: { reauthTime: 10_000, randTime: 0, overTime: 5_000 } });
    const oldChild = sa.children[0]!;
    const limits: string[] = [];
    alice.on('ike-expired', (_s, limit) => limits.push(limit));
    await wire.settle(10_500);
    expect(limits).toEqual(['reauth']);
    expect(sa.state).toBe('dead');
    expect(peerSa.state).toBe('dead');
    const [fresh] = alice.ikeSas();
    expect(alice.ikeSas()).toHaveLength(1);
    expect(fresh!.children).toHaveLength(1);
    expect(fresh!.children[0]).not.toBe(oldChild);
    expect(bob.ikeSas()).toHaveLength(1);
    expect(spi64Hex(bob.ikeSas()[0]!.spiR)).toBe(spi64Hex(fresh!.spiR));
    agree(alice, bob);
  });

  it('the hard limit deletes the IKE SA and its Child SAs (a responder that cannot reauthenticate)', async () => {
    const { wire, alice, bob, peerSa } = await pair('ike-hard', { responder: { reauthTime: 5_000, overTime: 2_000, randTime: 0 } });
    const t0 = peerSa.establishedAt!;
    const limits: string[] = [];
    bob.on('ike-expired', (s, limit) => limits.push(`${limit}@${wire.clock.now() - t0}${s === peerSa ? '' : '?'}`));
    await wire.settle(7_500);
    expect(limits).toEqual(['reauth@5000', 'hard@7000']);
    expect(alice.ikeSas()).toEqual([]);
    expect(bob.ikeSas()).toEqual([]);
    expect(alice.childrenBySpi.size + bob.childrenBySpi.size).toBe(0);
    wire.run(60_000, 1000);
    expect(wire.clock.pending()).toBe(0);
  });
});

describe('liveness checks and dead peers (RFC 7296 §2.4)', () => {
  it('an empty INFORMATIONAL goes out after dpdDelay without a message from the peer, not while packets arrive', async () => {
    const { wire, alice, sa } = await pair('dpd', { initiator: { dpdDelay: 10_000 } });
    const dpd = requestLog(wire, fromAlice, ExchangeType.INFORMATIONAL);
    const t0 = sa.establishedAt!;
    wire.run(25_000, 100);
    expect(dpd.map((t) => t - t0)).toEqual([10_000, 20_000]);
    // ESP packets received count as liveness (§2.4): no checks while they arrive.
    const child = sa.children[0]!;
    let inPackets = 0;
    for (let i = 0; i < 30; i++) {
      alice.reportChildUsage(child.spiIn, { bytes: 0, packets: ++inPackets, inPackets });
      wire.run(1_000, 100);
    }
    expect(dpd).toHaveLength(2);
    wire.run(11_000, 100);
    expect(dpd).toHaveLength(3);
    expect(sa.state).toBe('established');
  });

  it('while requests are held (a cluster node\'s fencing), one liveness check waits: they do not pile up, and one goes out when released', async () => {
    let held = false;
    const { wire, alice, sa } = await pair('dpd-held', { initiator: { dpdDelay: 10_000 } }, { alice: { holdRequest: () => held } });
    const dpd = requestLog(wire, fromAlice, ExchangeType.INFORMATIONAL);
    held = true;
    wire.run(100_000, 1000);
    expect(dpd).toEqual([]);
    expect(sa.queue).toHaveLength(1);
    held = false;
    alice.kick(sa);
    wire.run(1_000, 100);
    expect(dpd).toHaveLength(1);
    expect(sa.queue).toHaveLength(0);
    expect(sa.state).toBe('established');
  });

  it('a dead peer: after the retransmission budget the IKE SA and its Child SAs are deleted and peer-dead is raised', async () => {
    const { wire, alice, sa } = await pair('dead', { initiator: { dpdDelay: 10_000 } });
    const events: string[] = [];
    alice.on('peer-dead', (s) => events.push(`peer-dead ${s === sa}`));
    alice.on('child-down', () => events.push('child-down'));
    alice.on('ike-down', (s, reason) => events.push(`ike-down ${s === sa} ${reason}`));
    alice.on('ike-restart', () => events.push('restart'));
    wire.filter = () => 'drop';
    const t0 = wire.clock.now();
    wire.run(30_000, 100);
    // 10 s of silence, then 500 + 1000 + 2000 + 4000 ms of retransmissions.
    expect(events).toEqual(['peer-dead true', 'child-down', 'ike-down true no response to INFORMATIONAL (DPD) after 3 retransmissions']);
    expect(sa.state).toBe('dead');
    expect(alice.sas.size + alice.childrenBySpi.size).toBe(0);
    expect(wire.clock.now() - t0).toBeGreaterThanOrEqual(17_500);
    expect(wire.clock.pending()).toBe(0);
  });

  it('dpdAction restart: the connection is initiated again until the peer answers (bounded attempts)', async () => {
    const { wire, alice, bob, sa } = await pair('restart', { initiator: { dpdDelay: 10_000, dpdAction: 'restart' } }, { alice: { lifecycle: { restartTries: 3, restartDelay: 2_000 } } });
    const restarts: number[] = [];
    alice.on('ike-restart', (name, attempt) => {
      expect(name).toBe('to-bob');
      restarts.push(attempt);
    });
    wire.filter = () => 'drop';
    await wire.settle(28_000, 100);
    // Death at 17.5 s, attempt 1 fails after its own budget (7.5 s), attempt 2 follows 2 s later.
    expect(restarts).toEqual([1, 2]);
    expect(sa.state).toBe('dead');
    wire.filter = () => 'pass';
    await wire.settle(5_000, 100);
    const [fresh] = alice.ikeSas();
    expect(fresh?.state).toBe('established');
    expect(fresh).not.toBe(sa);
    expect(fresh!.children).toHaveLength(1);
    const peer = bob.ikeSas().find((s) => spi64Hex(s.spiI) === spi64Hex(fresh!.spiI));
    expect(peer?.children[0]!.spiIn).toBe(fresh!.children[0]!.spiOut);
    expect(restarts).toEqual([1, 2]);
  });

  it('dpdAction clear (the default) does not initiate again', async () => {
    const { wire, alice } = await pair('clear', { initiator: { dpdDelay: 5_000 } });
    let restarts = 0;
    alice.on('ike-restart', () => restarts++);
    wire.filter = () => 'drop';
    await wire.settle(40_000, 500);
    expect(restarts).toBe(0);
    expect(alice.ikeSas()).toEqual([]);
    expect(wire.clock.pending()).toBe(0);
  });
});

/** A NAT in front of alice: her datagrams leave from 192.0.2.100 with ports + 10000. */
function natWire(): MemoryWire {
  const wire = new MemoryWire();
  wire.tamper = (d) => {
    if (d.local.address === '10.0.0.1') return { ...d, local: { address: NAT_PUBLIC, port: d.local.port + 10_000 } };
    if (d.remote.address === NAT_PUBLIC) return { ...d, remote: { address: '10.0.0.1', port: d.remote.port - 10_000 } };
    return d;
  };
  return wire;
}

describe('NAT keepalives (RFC 3948 §2.3, §4)', () => {
  it('behind a NAT: one 0xFF datagram per interval on the NAT-T ports while idle, none while other traffic goes out; none from the other end', async () => {
    const keepA: Array<[Endpoint, Endpoint, number]> = [];
    const keepB: Array<[Endpoint, Endpoint]> = [];
    const wire = natWire();
    const { alice, bob, sa, peerSa } = await pair('nat', {}, {
      wire,
      alice: { sendKeepalive: (l, r) => keepA.push([l, r, wire.clock.now()]) },
      bob: { sendKeepalive: (l, r) => keepB.push([l, r]) },
    });
    expect(sa.natLocal).toBe(true);
    expect(peerSa.natRemote).toBe(true);
    expect(peerSa.natLocal).toBe(false);
    const t0 = sa.establishedAt!;
    wire.run(65_000, 500);
    expect(keepA.map(([, , t]) => t - t0)).toEqual([20_000, 40_000, 60_000]);
    expect(keepA[0]![0]).toEqual({ address: '10.0.0.1', port: 4500 });
    expect(keepA[0]![1]).toEqual({ address: '10.0.0.2', port: 4500 });
    expect(keepB).toEqual([]);
    // ESP going out (the data plane's outPackets) and IKE requests refresh the mapping: no keepalives.
    const child = sa.children[0]!;
    let out = 0;
    for (let i = 0; i < 12; i++) {
      alice.reportChildUsage(child.spiIn, { bytes: 0, packets: ++out, outPackets: out });
      wire.run(5_000, 500);
    }
    expect(keepA).toHaveLength(3);
    const live = alice.checkLiveness(sa);
    wire.run(100);
    expect(await live).toBe(true);
    expect(alice.keepalive.sent).toBe(3);
    const closed = alice.closeIkeSa(alice.ikeSas()[0]!);
    wire.run(100);
    await closed;
    expect(alice.keepalive.trackedPairs + bob.keepalive.trackedPairs).toBe(0);
  });

  it('the interval is configurable (natKeepalive) and 0 turns keepalives off', async () => {
    const sent: number[] = [];
    const wire = natWire();
    const { sa } = await pair('nat-5s', { initiator: { natKeepalive: 5_000 } }, { wire, alice: { sendKeepalive: () => sent.push(wire.clock.now()) } });
    const t0 = sa.establishedAt!;
    wire.run(16_000, 500);
    expect(sent.map((t) => t - t0)).toEqual([5_000, 10_000, 15_000]);
    const off: number[] = [];
    const wire2 = natWire();
    await pair('nat-off', { initiator: { natKeepalive: 0 } }, { wire: wire2, alice: { sendKeepalive: () => off.push(1) } });
    wire2.run(60_000, 1000);
    expect(off).toEqual([]);
  });

  it('without a NAT nothing is sent', async () => {
    const sent: number[] = [];
    const { wire, sa } = await pair('no-nat', {}, { alice: { sendKeepalive: () => sent.push(1) }, bob: { sendKeepalive: () => sent.push(2) } });
    expect(sa.natLocal).toBe(false);
    wire.run(90_000, 1000);
    expect(sent).toEqual([]);
  });
});

describe('INVALID_SPI (RFC 7296 §2.21.4)', () => {
  it('ESP with an unknown SPI from a peer we have an IKE SA with: a rate-limited INFORMATIONAL with N(INVALID_SPI); no state changes', async () => {
    const { wire, alice, bob, sa, peerSa, trace } = await pair('invalid-spi');
    const peer = { address: '10.0.0.2', port: 500 };
    expect(alice.reportInvalidSpi(0xdeadbeef, peer)).toBe('sent');
    expect(alice.reportInvalidSpi(0xdeadbeef, peer)).toBe('rate-limited');
    wire.run(100);
    const got = trace.filter((t) => t.engine === 'bob' && t.direction === 'in' && !t.response && t.exchangeType === ExchangeType.INFORMATIONAL);
    expect(got).toHaveLength(1);
    const n = got[0]!.payloads.find((p): p is NotifyPayload => p.type === PayloadType.NOTIFY)!;
    expect(n.notifyType).toBe(NotifyType.INVALID_SPI);
    expect(spiNumber(n.data)).toBe(0xdeadbeef);
    // Bob answered and changed nothing.
    expect(sa.state).toBe('established');
    expect(peerSa.children).toHaveLength(1);
    expect(bob.childrenBySpi.size).toBe(1);
    wire.run(1_000);
    expect(alice.reportInvalidSpi(0x1234, peer)).toBe('sent');
    expect(alice.reportInvalidSpi(0x1234, { address: '10.9.9.9', port: 4500 })).toBe('no-ike-sa');
    expect(() => alice.reportInvalidSpi(-5, peer)).toThrow(TypeError);
    expect(() => alice.reportInvalidSpi(1, { address: 5 } as never)).toThrow(TypeError);
  });

  it('the rate limiter remembers a bounded number of peers', async () => {
    const { alice } = await pair('invalid-spi-bound', {}, { alice: { lifecycle: { invalidSpiPeers: 0 } } });
    expect(alice.reportInvalidSpi(7, { address: '10.0.0.2', port: 500 })).toBe('rate-limited');
  });
});

describe('deletion (RFC 7296 §1.4.1) and clean-up', () => {
  it('a completed Delete of the IKE SA counts as a successful INFORMATIONAL on both ends, not a failed one', async () => {
    const { wire, alice, bob, sa } = await pair('delete-counted');
    const closed = alice.closeIkeSa(sa);
    wire.run(100);
    await closed;
    expect(alice.ikeSas()).toHaveLength(0);
    expect(alice.stats.exchanges['INFORMATIONAL.initiator.ok']).toBe(1);
    expect(alice.stats.exchanges['INFORMATIONAL.initiator.failed']).toBeUndefined();
    expect(bob.stats.exchanges['INFORMATIONAL.responder.ok']).toBe(1);
  });

  it('a Delete answered without the paired Delete leaves a half-closed Child SA: audited, its SPI kept out of use for a while', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair('half', {}, { alice: { lifecycle: { halfClosedHold: 30_000 } } });
    const child = sa.children[0]!;
    const half: ChildSa[] = [];
    alice.on('child-half-closed', (c) => half.push(c));
    // Bob forgets his side without telling alice.
    bob.removeChild(peerSa.children[0]!, 'lost state');
    const closed = alice.closeChildSa(child);
    wire.run(100);
    await closed;
    expect(half).toEqual([child]);
    expect(child.state).toBe('deleted');
    expect(alice.deletion.isHeld(child.spiIn)).toBe(true);
    wire.run(30_000, 1000);
    expect(alice.deletion.isHeld(child.spiIn)).toBe(false);
    // A regular delete is not half-closed.
    const c2 = alice.createChildSa(sa, 'net', { pfs: false });
    wire.run(100);
    const fresh = await c2;
    const d2 = alice.closeChildSa(fresh);
    wire.run(100);
    await d2;
    expect(half).toEqual([child]);
    expect(alice.deletion.heldSpis).toBe(0);
  });

  it('keys are zeroised: Child SA keys right after hand-off, IKE SA keys and protectors when the SA dies (by rekey or delete)', async () => {
    const wire = new MemoryWire();
    const childKeys: Uint8Array[] = [];
    const nonZeroAtUp: boolean[] = [];
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    for (const e of [alice, bob]) {
      e.on('child-up', (c) => {
        const k = c.keys!;
        childKeys.push(k.encIn, k.encOut);
        nonZeroAtUp.push(!allZero(k.encIn, k.encOut));
      });
    }
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await up;
    const peerSa = bob.ikeSas()[0]!;
    expect(nonZeroAtUp).toEqual([true, true]);
    expect(allZero(...childKeys)).toBe(true);
    expect(sa.children[0]!.keys).toBeUndefined();
    const keysOf = (s: IkeSa) => {
      const k = s.keys!;
      return [k.skD, k.skAi, k.skAr, k.skEi, k.skEr, k.skPi, k.skPr].filter((b) => b.length > 0);
    };
    const oldKeys = [...keysOf(sa), ...keysOf(peerSa)];
    expect(allZero(...oldKeys)).toBe(false);
    const r = alice.rekeyIkeSa(sa);
    wire.run(100);
    const successor = await r;
    expect(allZero(...oldKeys)).toBe(true);
    expect(sa.keys).toBeUndefined();
    expect(sa.protectIn).toBeUndefined();
    expect(peerSa.protectOut).toBeUndefined();
    const rc = alice.rekeyChildSa(successor.children[0]!);
    wire.run(100);
    await rc;
    expect(allZero(...childKeys)).toBe(true);
    const newKeys = [...keysOf(successor), ...keysOf(bob.ikeSas()[0]!)];
    const closed = alice.closeIkeSa(successor);
    wire.run(100);
    await closed;
    expect(allZero(...newKeys)).toBe(true);
    expect(alice.sas.size + bob.sas.size + alice.childrenBySpi.size + bob.childrenBySpi.size).toBe(0);
  });

  it('with every timer in use (lifetimes, liveness, keepalives), closing the IKE SA leaves no timer, table entry or tracked state', async () => {
    const wire = natWire();
    const over = withChild({ initiator: { rekeyTime: 30_000, randTime: 1_000, dpdDelay: 5_000 }, responder: { rekeyTime: 40_000, dpdDelay: 7_000 } }, 'initiator', { rekeyTime: 8_000, randTime: 1_000 });
    const { alice, bob, sa } = await pair('cleanup', over, { wire, alice: { sendKeepalive: () => {} }, bob: { sendKeepalive: () => {} } });
    wire.run(70_000, 250);
    expect(alice.ikeSas()).toHaveLength(1);
    expect(alice.ikeSas()[0]).not.toBe(sa);
    agree(alice, bob);
    expect(wire.clock.pending()).toBeGreaterThan(0);
    const closing = alice.closeIkeSa(alice.ikeSas()[0]!);
    wire.run(100);
    await closing;
    wire.run(1_000);
    expect(alice.sas.size + bob.sas.size).toBe(0);
    expect(alice.childrenBySpi.size + bob.childrenBySpi.size).toBe(0);
    expect(alice.reservedSpis.size + bob.reservedSpis.size).toBe(0);
    expect(alice.lifetimes.trackedChildren + bob.lifetimes.trackedChildren).toBe(0);
    expect(alice.keepalive.trackedPairs + bob.keepalive.trackedPairs).toBe(0);
    expect(wire.clock.pending()).toBe(0);
  });
});

describe('lossy and duplicating wire (in memory; tc netem is not available on this kernel)', () => {
  for (const loss of [0.2, 0.3]) {
    it(`${loss * 100} % loss: IKE_SA_INIT, IKE_AUTH, Child SA create, Child SA rekey and IKE SA rekey complete through retransmission`, async () => {
      const wire = new MemoryWire();
      const rnd = seededRandom(`loss/${loss}`);
      let dropped = 0;
      let seen = 0;
      wire.filter = () => {
        seen++;
        if (rnd(1)[0]! < loss * 256) {
          dropped++;
          return 'drop';
        }
        return 'pass';
      };
      const retransmit = { timeout: 500, base: 1.5, tries: 10, maxTimeout: 4000 };
      const { initiator, responder } = pskPair();
      const alice = wire.engine('10.0.0.1', [initiator], { retransmit });
      const bob = wire.engine('10.0.0.2', [responder], { retransmit });
      const up = alice.initiate('to-bob');
      await wire.settle(60_000, 100);
      const sa = await up;
      const created = alice.createChildSa(sa, 'net');
      await wire.settle(60_000, 100);
      const second = await created;
      const rekeyed = alice.rekeyChildSa(second);
      await wire.settle(60_000, 100);
      await rekeyed;
      const ike = alice.rekeyIkeSa(sa);
      await wire.settle(60_000, 100);
      const successor = await ike;
      await wire.settle(60_000, 100);
      expect(alice.stats.retransmits + bob.stats.retransmits).toBeGreaterThan(0);
      expect(dropped / seen).toBeGreaterThan(loss / 2);
      expect(alice.ikeSas()).toEqual([successor]);
      expect(bob.ikeSas()).toHaveLength(1);
      expect(successor.children).toHaveLength(2);
      agree(alice, bob);
    });
  }

  it('every datagram duplicated: each request is processed once, the copies are answered from the response cache', async () => {
    const wire = new MemoryWire();
    wire.filter = () => 'duplicate';
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    const bobUp: ChildSa[] = [];
    bob.on('child-up', (c) => bobUp.push(c));
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await up;
    const rk = alice.rekeyChildSa(sa.children[0]!);
    wire.run(100);
    await rk;
    const ik = alice.rekeyIkeSa(sa);
    wire.run(100);
    await ik;
    expect(bob.stats.responsesFromCache).toBeGreaterThanOrEqual(4);
    expect(bobUp).toHaveLength(2);
    expect(alice.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()).toHaveLength(1);
    agree(alice, bob);
  });
});

describe('configuration: lifetimes, dpd and keepalive reach the engine', () => {
  it('the gateway maps rekey/reauth/over/rand times, dpd_delay, dpd_action, keepalive and the child limits onto the policy', async () => {
    const { configFromObject } = await import('../control/config/index.js');
    const { Gateway } = await import('../control/gateway.js');
    const { silentLogger } = await import('../control/log.js');
    const config = configFromObject({
      listen: { address: '127.0.0.1', port: 50_500, natPort: 54_500 },
      connections: {
        peer: {
          remote_addrs: ['127.0.0.2'],
          psk: 'a pre-shared key of decent length',
          rekey_time: '2h',
          reauth_time: '1d',
          over_time: '30m',
          rand_time: '5m',
          dpd_delay: '30s',
          dpd_action: 'restart',
          keepalive: '15s',
          children: {
            net: { rekey_time: '20m', life_time: '30m', rand_time: '1m', rekey_bytes: '500M', life_bytes: '1G', rekey_packets: 1_000_000, life_packets: 2_000_000 },
          },
        },
        quiet: { remote_addrs: ['127.0.0.3'], psk: 'a pre-shared key of decent length', children: { net: {} } },
      },
    });
    const gw = new Gateway({ config, log: silentLogger() });
    try {
      const p = gw.engine.policy('peer')!;
      expect(p).toMatchObject({ rekeyTime: 7_200_000, reauthTime: 86_400_000, overTime: 1_800_000, randTime: 300_000, dpdDelay: 30_000, dpdAction: 'restart', natKeepalive: 15_000 });
      expect(p.children[0]).toMatchObject({
        rekeyTime: 1_200_000, lifeTime: 1_800_000, randTime: 60_000,
        rekeyBytes: 500 * 1024 ** 2, lifeBytes: 1024 ** 3, rekeyPackets: 1_000_000, lifePackets: 2_000_000,
      });
      // Defaults: strongSwan's lifetimes, no liveness checks, dpd_action clear, keepalives every 20 s.
      const q = gw.engine.policy('quiet')!;
      expect(q).toMatchObject({ rekeyTime: 14_400_000, reauthTime: 0, overTime: 1_440_000, randTime: 1_440_000, dpdDelay: 0, dpdAction: 'clear', natKeepalive: 20_000 });
      expect(q.children[0]).toMatchObject({ rekeyTime: 3_600_000, lifeTime: 3_960_000, randTime: 360_000, rekeyBytes: 0, lifeBytes: 0 });
    } finally {
      await gw.stop({ notifyPeers: false });
    }
  });

  it('dpd_action and keepalive are validated', async () => {
    const { configFromObject } = await import('../control/config/index.js');
    const conn = (extra: Record<string, unknown>) => ({ connections: { c: { remote_addrs: ['127.0.0.2'], psk: 'a pre-shared key of decent length', ...extra } } });
    expect(() => configFromObject(conn({ dpd_action: 'hold' }))).toThrow(/dpd_action[\s\S]*one of clear, restart/);
    expect(() => configFromObject(conn({ keepalive: 'soon' }))).toThrow(/keepalive/);
    expect(configFromObject(conn({ keepalive: 0 })).connections[0]!.keepalive).toBe(0);
    expect(configFromObject(conn({})).connections[0]!.dpdAction).toBeUndefined();
  });
});
