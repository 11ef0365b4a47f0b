// Reauthentication of a clone family (RFC 7296 §2.8.3, RFC 7791 §5) and NAT
// keepalives for a NAT that appears after setup (RFC 3948 §4, RFC 7296
// §2.23, RFC 4555 §3.5), with two engines in memory on a manual clock.
import { describe, expect, it } from 'vitest';
import { MemoryWire, esp, ike, pskPair, seededRandom } from './support/peers.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import type { Endpoint } from '../control/ike/transport.js';
import { CloneOrchestrator } from '../control/ike/clone-family.js';
import { ExchangeType } from '../control/wire/constants.js';

type Over = { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> };

/** alice grows her session to a family of `count` IKE SAs with the clone orchestrator (as the gateway does). */
async function family(seed: string, count: number, over: Over = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({
    ...over,
    initiator: { clone: { per: 'worker', count, nics: [] }, ...over.initiator },
  });
  const alice = wire.engine('10.0.0.1', [initiator], { random: seededRandom(`alice/${seed}`) });
  const bob = wire.engine('10.0.0.2', [responder], { random: seededRandom(`bob/${seed}`), limits: { ikeSasPerPeer: 16 } });
  const orchestrator = new CloneOrchestrator(alice).start();
  const sessions: number[] = [];
  alice.on('session-up', (id) => sessions.push(id));
  const up = alice.initiate(initiator.name);
  await wire.settle(1000);
  const sa = await up;
  expect(alice.sessionMembers(sa.sessionId)).toHaveLength(count);
  return { wire, alice, bob, sa, orchestrator, sessions };
}

const established = (e: IkeEngine) => e.ikeSas().filter((s) => s.state === 'established');

describe('reauthentication of a clone family (RFC 7296 §2.8.3, RFC 7791 §5)', () => {
  it('the session is reauthenticated once: one new session grows to full size, every member of the old one is deleted; the family never multiplies', async () => {
    const { wire, alice, bob, sa, sessions } = await family('reauth-family', 3, { initiator: { reauthTime: 60_000, randTime: 5_000 } });
    const old = alice.sessionMembers(sa.sessionId);
    const reauths: IkeSa[] = [];
    alice.on('ike-expired', (s, limit) => limit === 'reauth' && reauths.push(s));
    await wire.settle(70_000, 250);
    // The members reached the limit, but only one new session was initiated.
    expect(reauths.length).toBeGreaterThanOrEqual(1);
    expect(reauths.every((s) => old.includes(s))).toBe(true);
    expect(sessions).toHaveLength(2);
    expect(old.every((m) => m.state === 'dead')).toBe(true);
    const fresh = alice.sessionMembers(sessions[1]!);
    expect(fresh).toHaveLength(3);
    expect(established(alice)).toHaveLength(3);
    expect(established(bob)).toHaveLength(3);
    expect(fresh.every((m) => m.children.length === 1)).toBe(true);
    // And again for the new session: still one family of three.
    await wire.settle(70_000, 250);
    expect(sessions).toHaveLength(3);
    expect(fresh.every((m) => m.state === 'dead')).toBe(true);
    expect(alice.sessionMembers(sessions[2]!)).toHaveLength(3);
    expect(established(alice)).toHaveLength(3);
    expect(established(bob)).toHaveLength(3);
    expect(alice.ikeSas()).toHaveLength(3);
    expect(bob.ikeSas()).toHaveLength(3);
  });

  it('a failed reauthentication is retried before the hard limit; the old family keeps working meanwhile', async () => {
    const { wire, alice, bob, sa, sessions } = await family('reauth-retry', 2, { initiator: { reauthTime: 60_000, randTime: 0, overTime: 60_000 } });
    const old = alice.sessionMembers(sa.sessionId);
    // bob does not answer new IKE SAs for a while: the first reauthentication fails.
    wire.filter = (d) => (d.bytes[18] === ExchangeType.IKE_SA_INIT ? 'drop' : 'pass');
    const failed: number[] = [];
    alice.on('ike-failed', () => failed.push(wire.clock.now()));
    await wire.settle(75_000, 250);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(sessions).toHaveLength(1);
    expect(old.every((m) => m.state === 'established')).toBe(true);
    // The path is back: a later attempt, still before the hard limit (120 s), replaces the family.
    wire.filter = () => 'pass';
    await wire.settle(40_000, 250);
    expect(wire.clock.now()).toBeLessThan(120_000 + 2_000);
    expect(sessions).toHaveLength(2);
    expect(old.every((m) => m.state === 'dead')).toBe(true);
    expect(alice.sessionMembers(sessions[1]!)).toHaveLength(2);
    expect(established(bob)).toHaveLength(2);
  });

  it('a responder that does not initiate leaves the whole family to the hard limit', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ responder: { reauthTime: 5_000, overTime: 2_000, randTime: 0 } });
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const sa = await up;
    const c = alice.cloneIkeSa(sa);
    wire.run(100);
    await c;
    expect(bob.ikeSas()).toHaveLength(2);
    await wire.settle(8_000);
    expect(bob.ikeSas()).toEqual([]);
    expect(alice.ikeSas()).toEqual([]);
  });
});

const NIC2 = '10.0.1.1';
const NAT_PUBLIC = '192.0.2.99';

/**
 * alice (10.0.0.1, and NIC2 10.0.1.1) -> bob (10.0.0.2, encap = yes). The
 * first path has no NAT; a NAT rewrites everything alice sends from NIC2 to
 * NAT_PUBLIC, with other ports.
 */
async function natLaterPair(keepalives: Array<[Endpoint, Endpoint, number]>) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({ responder: { forceEncap: true } });
  const alice = wire.engine('10.0.0.1', [initiator], {
    localAddresses: () => ['10.0.0.1', NIC2],
    sendKeepalive: (l, r) => keepalives.push([l, r, wire.clock.now()]),
  });
  const bob = wire.engine('10.0.0.2', [responder], { localAddresses: () => ['10.0.0.2'] });
  wire.engines.set(NIC2, alice);
  wire.engines.set(NAT_PUBLIC, alice);
  wire.tamper = (d) => {
    if (d.local.address === NIC2) return { ...d, local: { address: NAT_PUBLIC, port: d.local.port + 10_000 } };
    if (d.remote.address === NAT_PUBLIC) return { ...d, remote: { address: NIC2, port: d.remote.port - 10_000 } };
    return d;
  };
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  return { wire, alice, bob, sa };
}

describe('NAT keepalives when a NAT appears after setup (RFC 3948 §4, RFC 4555 §3.5)', () => {
  it('a MOBIKE move behind a NAT starts keepalives; a move back out of it stops them', async () => {
    const sent: Array<[Endpoint, Endpoint, number]> = [];
    const { wire, alice, sa } = await natLaterPair(sent);
    expect(sa.natLocal).toBe(false);
    expect(sa.children[0]!.udpEncap).toBe(true);
    wire.run(45_000, 500);
    expect(sent).toEqual([]);
    const moved = alice.moveIkeSa(sa, { local: NIC2 });
    await wire.settle(1_000);
    await moved;
    expect(sa.local.address).toBe(NIC2);
    expect(sa.natLocal).toBe(true);
    expect(sa.children[0]!.udpEncap).toBe(true);
    const t0 = wire.clock.now();
    wire.run(65_000, 500);
    expect(sent.length).toBeGreaterThanOrEqual(3);
    expect(sent[0]![0]).toEqual({ address: NIC2, port: 4500 });
    expect(sent[0]![1]).toEqual({ address: '10.0.0.2', port: 4500 });
    expect(sent.every(([, , t]) => t > t0)).toBe(true);
    expect(alice.keepalive.trackedPairs).toBe(1);
    // Back on the first path: no NAT in front of us any more, no keepalives.
    const back = alice.moveIkeSa(sa, { local: '10.0.0.1' });
    await wire.settle(1_000);
    await back;
    expect(sa.natLocal).toBe(false);
    const before = sent.length;
    wire.run(65_000, 500);
    expect(sent).toHaveLength(before);
    expect(alice.keepalive.trackedPairs).toBe(0);
    // ... and behind the NAT again: they start again.
    const again = alice.moveIkeSa(sa, { local: NIC2 });
    await wire.settle(1_000);
    await again;
    expect(sa.natLocal).toBe(true);
    wire.run(45_000, 500);
    expect(sent.length).toBeGreaterThanOrEqual(before + 2);
  });
});

/** alice -> bob with the given policies; `bobPolicy` is the responder's live policy object. */
async function plainPair(seed: string, over: Over) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine('10.0.0.1', [initiator], { random: seededRandom(`alice/${seed}`) });
  const bob = wire.engine('10.0.0.2', [responder], { random: seededRandom(`bob/${seed}`) });
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  const bobPolicy = bob.ikeSas()[0]!.policy;
  return { wire, alice, bob, sa, bobPolicy };
}

describe('rekeys that fail otherwise than with TEMPORARY_FAILURE (RFC 7296 §2.8, §2.25)', () => {
  it('an IKE SA rekey refused with NO_PROPOSAL_CHOSEN is tried again before the hard limit', async () => {
    const { wire, alice, bob, sa, bobPolicy } = await plainPair('ike-refused', { initiator: { rekeyTime: 20_000, randTime: 0, overTime: 30_000 } });
    const offered = bobPolicy.ike;
    bobPolicy.ike = ike('aes128gcm16-prfsha384-ecp384');
    const refused: number[] = [];
    alice.on('ike-expired', (_s, limit) => limit === 'rekey' && refused.push(wire.clock.now()));
    await wire.settle(21_000, 250);
    expect(refused).toHaveLength(1);
    expect(sa.state).toBe('established');
    bobPolicy.ike = offered;
    await wire.settle(25_000, 250);
    expect(wire.clock.now()).toBeLessThan(sa.establishedAt! + 50_000);
    expect(sa.state).toBe('dead');
    const [successor] = alice.ikeSas();
    expect(successor?.state).toBe('established');
    expect(successor!.children).toHaveLength(1);
    expect(bob.ikeSas()).toHaveLength(1);
  });

  it('a Child SA rekey refused with NO_PROPOSAL_CHOSEN is tried again before the hard limit', async () => {
    const base = pskPair().initiator.children[0]!;
    const { wire, alice, bob, sa, bobPolicy } = await plainPair('child-refused', { initiator: { children: [{ ...base, rekeyTime: 10_000, lifeTime: 40_000, randTime: 0 }] } });
    const child = sa.children[0]!;
    const offered = bobPolicy.children[0]!.esp;
    bobPolicy.children[0]!.esp = esp('aes256gcm16');
    await wire.settle(11_000, 250);
    expect(child.state).toBe('installed');
    bobPolicy.children[0]!.esp = offered;
    await wire.settle(25_000, 250);
    expect(child.state).toBe('deleted');
    expect(sa.children).toHaveLength(1);
    expect(sa.children[0]).not.toBe(child);
    expect(bob.childrenBySpi.size).toBe(1);
  });

  it('sequence numbers running out rekey the Child SA even after an earlier soft limit led to no rekey', async () => {
    const base = pskPair().initiator.children[0]!;
    const { wire, alice, sa, bobPolicy } = await plainPair('seq-after-soft', { initiator: { children: [{ ...base, rekeyBytes: 1_000 }] } });
    const child = sa.children[0]!;
    const offered = bobPolicy.children[0]!.esp;
    bobPolicy.children[0]!.esp = esp('aes256gcm16');
    // A rekey (here: an operator's) is under way when the volume soft limit is reached; it fails.
    const manual = alice.rekeyChildSa(child);
    expect(alice.reportChildUsage(child.spiIn, { bytes: 2_000, packets: 10 })).toBe('rekey');
    wire.run(100);
    await expect(manual).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    bobPolicy.children[0]!.esp = offered;
    expect(child.state).toBe('installed');
    // The data plane runs out of sequence numbers: the Child SA must be rekeyed now.
    expect(alice.childRekeyNeeded(child.spiIn)).toBe(true);
    wire.run(100);
    expect(child.state).toBe('deleted');
    expect(sa.children).toHaveLength(1);
    expect(sa.children[0]).not.toBe(child);
  });
});
