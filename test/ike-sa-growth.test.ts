// What an authenticated peer cannot make the responder keep (RFC 7791 §8,
// architecture §4.5): the old SA of a rekey the peer never deletes (RFC 7296 §2.8,
// §2.18) goes after a grace period and counts against ikeSasPerPeer and
// maxIkeSas until then, Child SA rekeys count against
// childSasPerPeer while the SAs they replaced linger, and an IKE_AUTH refused
// with UNEXPECTED_NAT_DETECTED (RFC 4555 §3.9) leaves no keyed Child SA behind.
import { describe, expect, it, vi } from 'vitest';

// Every ChildSa either engine builds, to check that none keeps its keys.
const builtChildren = vi.hoisted(() => [] as Array<{ keys: unknown }>);
vi.mock('../control/ike/ike-sa.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../control/ike/ike-sa.js')>();
  class Tracked extends orig.ChildSa {
    constructor(...args: ConstructorParameters<typeof orig.ChildSa>) {
      super(...args);
      builtChildren.push(this);
    }
  }
  return { ...orig, ChildSa: Tracked };
});

import { MemoryWire, pskPair } from './support/peers.js';
import { withoutNatDetection } from './support/nat-detection.js';
import type { IkeEngine, EngineLimits } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { Datagram } from '../control/ike/transport.js';
import { ExchangeType, HeaderFlag, NotifyType } from '../control/wire/constants.js';

const ALICE = '10.0.0.1';
const isRequest = (d: Datagram) => (d.bytes[19]! & HeaderFlag.RESPONSE) === 0;
/** Alice's INFORMATIONAL requests (her Deletes after a rekey) are lost. */
const dropAlicesInformationalRequests = (d: Datagram) =>
  d.local.address === ALICE && d.bytes[18] === ExchangeType.INFORMATIONAL && isRequest(d) ? 'drop' : 'pass';

async function setup(limits: Partial<EngineLimits>, over: Parameters<typeof pskPair>[0] = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine(ALICE, [initiator]);
  const bob = wire.engine('10.0.0.2', [responder], { limits });
  const up = alice.initiate('to-bob');
  wire.run(100);
  const sa = await up;
  return { wire, alice, bob, sa };
}

/** A peer that rekeys its Child SAs but never deletes the ones it replaced. */
function neverDeletesChildSas(engine: IkeEngine): void {
  (engine as unknown as { closeChildSa: () => Promise<void> }).closeChildSa = () => Promise.resolve();
}

async function rekeyIke(wire: MemoryWire, alice: IkeEngine, sa: IkeSa): Promise<IkeSa> {
  const p = alice.rekeyIkeSa(sa);
  wire.run(100);
  return p;
}

describe('IKE SA rekeys the peer never follows with a Delete (RFC 7296 §2.18)', () => {
  it('the responder forgets each old IKE SA, keys wiped, after the grace period and not before', async () => {
    const { wire, alice, bob, sa } = await setup({ ikeSasPerPeer: 16, maxIkeSas: 32 });
    wire.filter = dropAlicesInformationalRequests;
    const grace = bob.collisions.graceMs;

    const first = bob.ikeSas()[0]!;
    let cur = await rekeyIke(wire, alice, sa);
    // The peer gets the whole grace period to delete it (its Delete could be retransmitted).
    wire.run(grace - 1000);
    expect(first.state).toBe('deleting');
    expect(first.keys).toBeDefined();
    wire.run(2000);
    expect(first.state).toBe('dead');
    expect(first.keys).toBeUndefined();

    const seen = new Set<IkeSa>(bob.ikeSas());
    for (let i = 0; i < 9; i++) {
      cur = await rekeyIke(wire, alice, cur);
      for (const s of bob.ikeSas()) seen.add(s);
    }
    wire.run(3_600_000, 60_000);

    const left = bob.ikeSas();
    expect(left).toHaveLength(1);
    const survivor = left[0]!;
    expect(survivor.state).toBe('established');
    expect(survivor.children).toHaveLength(1);
    expect(bob.peerIkeSaCount(survivor)).toBe(1);
    expect(alice.ikeSas().map((s) => s.localSpi)).toEqual([cur.localSpi]);
    for (const s of seen) {
      if (s === survivor) continue;
      expect(s.state).toBe('dead');
      expect(s.keys).toBeUndefined();
    }
    // The successor is still usable.
    await expect(rekeyIke(wire, alice, cur)).resolves.toBeDefined();
  });

  it('the same with the responder running its own IKE SA lifetime and liveness checks', async () => {
    const { wire, alice, bob, sa } = await setup(
      { ikeSasPerPeer: 16, maxIkeSas: 32 },
      { responder: { rekeyTime: 600_000, overTime: 60_000, dpdDelay: 30_000 } },
    );
    wire.filter = dropAlicesInformationalRequests;
    let cur: IkeSa = sa;
    for (let i = 0; i < 10; i++) cur = await rekeyIke(wire, alice, cur);
    expect(bob.ikeSas().length).toBe(11);
    wire.run(120_000, 1000);
    expect(bob.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()[0]!.spiI).toEqual(cur.spiI);
  });

  for (const limits of [{ ikeSasPerPeer: 2, maxIkeSas: 64 }, { ikeSasPerPeer: 64, maxIkeSas: 2 }]) {
    it(`old IKE SAs still count against the limits (${JSON.stringify(limits)}): past them a rekey gets TEMPORARY_FAILURE until they go`, async () => {
      const { wire, alice, bob, sa } = await setup(limits);
      wire.filter = dropAlicesInformationalRequests;
      const refusals: number[] = [];
      let cur: IkeSa = sa;
      for (let i = 0; i < 10; i++) {
        try {
          cur = await rekeyIke(wire, alice, cur);
        } catch (e) {
          refusals.push((e as { notify?: number }).notify ?? -1);
        }
        // A rekey may overlap the SA it replaces by one, never more.
        expect(bob.ikeSas().length).toBeLessThanOrEqual(3);
      }
      expect(refusals.length).toBeGreaterThanOrEqual(8);
      expect(new Set(refusals)).toEqual(new Set([NotifyType.TEMPORARY_FAILURE]));
      // Once the grace period has removed the old ones, rekeys go through again.
      wire.run(bob.collisions.graceMs + 1000, 1000);
      expect(bob.ikeSas()).toHaveLength(1);
      cur = await rekeyIke(wire, alice, cur);
      expect(bob.ikeSas().map((s) => s.spiI)).toContainEqual(cur.spiI);
    });
  }
});

describe('Child SA rekeys the peer never follows with a Delete (RFC 7296 §2.8, RFC 7791 §8)', () => {
  it('the responder closes the replaced Child SA after the grace period', async () => {
    const { wire, alice, bob, sa } = await setup({});
    neverDeletesChildSas(alice);
    const grace = bob.collisions.graceMs;
    const old = bob.ikeSas()[0]!.children[0]!;
    const p = alice.rekeyChildSa(sa.children[0]!, { pfs: false });
    wire.run(100);
    const created = await p;
    expect(old.state).toBe('rekeyed');
    wire.run(grace - 1000);
    expect(old.state).toBe('rekeyed');
    wire.run(2000);
    expect(old.state).toBe('deleted');
    expect(old.keys).toBeUndefined();
    // Closed with a Delete (§1.4.1): the peer forgets its half too.
    const peer = bob.ikeSas()[0]!;
    expect(peer.children.map((c) => c.spiOut)).toEqual([created.spiIn]);
    expect(sa.children.map((c) => c.spiIn)).toEqual([created.spiIn]);
  });

  it('replaced Child SAs still count against childSasPerPeer: the peer cannot pile them up', async () => {
    const { wire, alice, bob, sa } = await setup({ childSasPerPeer: 2 });
    neverDeletesChildSas(alice);
    const peer = bob.ikeSas()[0]!;
    const refusals: number[] = [];
    for (let i = 0; i < 10; i++) {
      const newest = sa.children.filter((c) => c.state === 'installed').at(-1)!;
      const p = alice.rekeyChildSa(newest, { pfs: false });
      wire.run(100);
      await p.catch((e: Error & { notify?: number }) => refusals.push(e.notify ?? -1));
      // A rekey may briefly overlap the SA it replaces, never more.
      expect(peer.children.length).toBeLessThanOrEqual(3);
      expect(bob.childrenBySpi.size).toBeLessThanOrEqual(3);
    }
    // Refused for now, not for good: the peer may retry once the replaced SAs are gone (§2.25).
    expect(refusals.length).toBeGreaterThan(0);
    expect(new Set(refusals)).toEqual(new Set([NotifyType.TEMPORARY_FAILURE]));

    wire.run(2 * bob.collisions.graceMs, 100);
    expect(peer.state).toBe('established');
    expect(peer.children).toHaveLength(1);
    expect(bob.childrenBySpi.size).toBe(1);
    const newest = sa.children.filter((c) => c.state === 'installed').at(-1)!;
    const again = alice.rekeyChildSa(newest, { pfs: false });
    wire.run(100);
    await expect(again).resolves.toBeDefined();
  });

  it('a peer at its limit that deletes as it should rekeys every Child SA', async () => {
    const { wire, alice, bob, sa } = await setup({ childSasPerPeer: 2 });
    const second = alice.createChildSa(sa, 'net');
    wire.run(100);
    await second;
    for (let round = 0; round < 3; round++) {
      for (const child of sa.children.filter((c) => c.state === 'installed')) {
        const p = alice.rekeyChildSa(child, { pfs: false });
        wire.run(100);
        await expect(p).resolves.toBeDefined();
      }
    }
    wire.run(1000);
    expect(bob.ikeSas()[0]!.children.filter((c) => c.state === 'installed')).toHaveLength(2);
    expect(bob.childrenBySpi.size).toBe(2);
  });
});

describe('key wiping on a refused IKE_AUTH (architecture §4.5)', () => {
  it('UNEXPECTED_NAT_DETECTED (RFC 4555 §3.9): no Child SA is keyed for the refused peer', async () => {
    builtChildren.length = 0;
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine(ALICE, [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    // A NAT rewrites the source port of alice's IKE_AUTH request: NO_NATS_ALLOWED no longer matches.
    wire.tamper = (d) => (d.bytes[18] === ExchangeType.IKE_AUTH && isRequest(d) ? { ...d, local: { ...d.local, port: 4501 } } : d);
    // §3.9 applies without NAT traversal: alice's IKE_SA_INIT carries no NAT-D.
    let up!: Promise<IkeSa>;
    await withoutNatDetection(() => {
      up = alice.initiate('to-bob');
      up.catch(() => undefined);
      wire.run(3000);
    });
    await expect(up).rejects.toThrow(/UNEXPECTED_NAT_DETECTED/);
    expect(bob.ikeSas()).toHaveLength(0);
    expect(builtChildren.filter((c) => c.keys !== undefined)).toHaveLength(0);
  });
});
