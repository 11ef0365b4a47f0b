// MOBIKE (RFC 4555) with two engines in memory: address updates, return
// routability, NAT prohibition, unacceptable addresses, COOKIE2, path
// failover, address lists, and per-NIC placement of clones (RFC 7791 §3).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExchangeType, HeaderFlag, NotifyType } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';
import type { IkeEngine } from '../control/ike/engine.js';
import { childSaPath, type IkeSa } from '../control/ike/ike-sa.js';
import { CloneOrchestrator } from '../control/ike/clone-family.js';
import { notify } from '../control/ike/payload-builders.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { withoutNatDetection } from './support/nat-detection.js';
import { loopbackPair } from './support/loopback.js';
import { Gateway } from '../control/gateway.js';
import type { AddressMonitor } from '../io/address-monitor.js';
import { silentLogger } from '../control/log.js';

const NIC2 = '10.0.1.1';

/**
 * alice (10.0.0.1, also NIC2 10.0.1.1) -> bob (10.0.0.2); alice is reachable on both addresses.
 * With `natOnFirstPath`, a NAT rewrites the source of everything alice sends from 10.0.0.1 to 192.0.2.99.
 */
async function pair(over: Parameters<typeof pskPair>[0] = {}, aliceAddresses = ['10.0.0.1', NIC2], opts: { natOnFirstPath?: boolean } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const addresses = { alice: [...aliceAddresses] };
  const alice = wire.engine('10.0.0.1', [initiator], { localAddresses: () => addresses.alice });
  const bob = wire.engine('10.0.0.2', [responder], { localAddresses: () => ['10.0.0.2'] });
  wire.engines.set(NIC2, alice);
  if (opts.natOnFirstPath) {
    wire.engines.set('192.0.2.99', alice);
    wire.tamper = (d) => (d.local.address === '10.0.0.1' ? { ...d, local: { ...d.local, address: '192.0.2.99' } } : d);
  }
  const moved: Record<'alice' | 'bob', IkeSa[]> = { alice: [], bob: [] };
  alice.on('ike-moved', (sa) => moved.alice.push(sa));
  bob.on('ike-moved', (sa) => moved.bob.push(sa));
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  return { wire, alice, bob, sa, peerSa: bob.ikeSas()[0]!, moved, addresses };
}

async function move(wire: MemoryWire, engine: IkeEngine, sa: IkeSa, local: string) {
  const p = engine.moveIkeSa(sa, { local });
  p.catch(() => undefined); // awaited by the caller after the wire settles
  await wire.settle(3000);
  return p;
}

describe('MOBIKE negotiation (RFC 4555 §3.2, §3.4)', () => {
  it('both ends negotiate MOBIKE and learn each other\'s additional addresses in IKE_AUTH', async () => {
    const { sa, peerSa } = await pair();
    expect(sa.peerMobike && peerSa.peerMobike).toBe(true);
    expect(peerSa.peerAdditionalAddresses).toEqual([NIC2]);
    expect(sa.peerAdditionalAddresses).toEqual([]);
    // Without NAT, IKE traffic moved to the NAT-T port when MOBIKE is on (§3.3).
    expect(sa.local.port).toBe(4500);
  });

  it('only the original initiator moves an IKE SA (§3.1)', async () => {
    const { bob, peerSa } = await pair();
    await expect(bob.moveIkeSa(peerSa, { local: '10.0.0.2' })).rejects.toThrow(/only the original initiator/);
  });
});

describe('UPDATE_SA_ADDRESSES (RFC 4555 §3.5)', () => {
  it('moves the IKE SA and its Child SAs on both ends; the responder checks return routability first (§3.7)', async () => {
    const { wire, alice, sa, peerSa, moved } = await pair();
    const before = peerSa.children[0]!;
    await move(wire, alice, sa, NIC2);
    expect(sa.local.address).toBe(NIC2);
    expect(peerSa.remote.address).toBe(NIC2);
    expect(peerSa.verifiedAddresses.has(NIC2)).toBe(true);
    // Both ends told their data plane; the Child SAs stayed the same (moved, not rekeyed).
    expect(moved.alice).toContain(sa);
    expect(moved.bob).toContain(peerSa);
    expect(peerSa.children[0]).toBe(before);
    // The IKE SA works on the new path.
    const live = alice.checkLiveness(sa);
    wire.run(100);
    expect(await live).toBe(true);
  });

  it('an update from the responder is ignored (§3.5)', async () => {
    const { wire, bob, sa, peerSa } = await pair();
    let response: Payload[] | undefined;
    bob.queueExchange(peerSa, { name: 'forged update', exchangeType: ExchangeType.INFORMATIONAL, build: () => [notify(NotifyType.UPDATE_SA_ADDRESSES)], process: (_s, p) => void (response = p) });
    wire.run(100);
    expect(response).toEqual([]);
    expect(sa.remote.address).toBe('10.0.0.2');
    expect(sa.state).toBe('established');
  });

  it('UNACCEPTABLE_ADDRESSES: the responder refuses an address its policy does not allow; the initiator moves back', async () => {
    const { wire, alice, sa, peerSa, moved } = await pair({ responder: { remoteAddrs: ['10.0.0.1'] } });
    await expect(move(wire, alice, sa, NIC2)).rejects.toMatchObject({ notify: NotifyType.UNACCEPTABLE_ADDRESSES });
    expect(sa.local.address).toBe('10.0.0.1');
    expect(peerSa.remote.address).toBe('10.0.0.1');
    expect(moved.bob).toEqual([]);
    expect(sa.state).toBe('established');
  });

  it('NO_NATS_ALLOWED with a NAT present: UNEXPECTED_NAT_DETECTED, retried, then given up; nothing moves (§3.9)', async () => {
    // §3.9 applies without NAT traversal: alice's IKE_SA_INIT carries no NAT-D.
    const { wire, alice, sa, peerSa, moved } = await withoutNatDetection(() => pair());
    // A NAT rewrites the source of everything alice sends from NIC2.
    wire.engines.set('192.0.2.99', alice);
    wire.tamper = (d) => (d.local.address === NIC2 ? { ...d, local: { ...d.local, address: '192.0.2.99' } } : d);
    let updates = 0;
    const origQueue = alice.queueExchange.bind(alice);
    alice.queueExchange = (s, ex) => {
      if (ex.name.includes('UPDATE_SA_ADDRESSES')) updates++;
      origQueue(s, ex);
    };
    await expect(move(wire, alice, sa, NIC2)).rejects.toMatchObject({ notify: NotifyType.UNEXPECTED_NAT_DETECTED });
    expect(updates).toBe(3); // the retries (§3.9), after the first attempt
    expect(peerSa.remote.address).toBe('10.0.0.1');
    expect(moved.bob).toEqual([]);
  });

  it('COOKIE2 mismatch in the response closes the IKE SA (§3.7)', async () => {
    const { wire, alice, sa } = await pair();
    const p = alice.moveIkeSa(sa, { local: NIC2 });
    p.catch(() => undefined);
    // The response will echo what was sent; pretend we sent something else.
    const ex = sa.outstanding!.exchange as unknown as { cookie2: Uint8Array };
    ex.cookie2 = new Uint8Array(16).fill(0xee);
    await wire.settle(500);
    await expect(p).rejects.toThrow(/COOKIE2/);
    expect(sa.state).toBe('dead');
  });

  it('return routability failure: the responder\'s Child SAs do not follow to an address that does not answer', async () => {
    const { wire, alice, sa, peerSa, moved } = await pair();
    // Requests from bob to NIC2 are lost (responses still get through).
    wire.filter = (d) => (d.local.address === '10.0.0.2' && d.remote.address === NIC2 && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0 ? 'drop' : 'pass');
    await move(wire, alice, sa, NIC2).catch(() => undefined);
    // While bob's check goes unanswered, the IKE SA is on the new path and its Child SAs' ESP on the old
    // one, a new Child SA's too (alice rekeys hers: bob answers from the new path, ESP stays on the old).
    expect(peerSa.remote.address).toBe(NIC2);
    expect(childSaPath(peerSa).remote.address).toBe('10.0.0.1');
    const successor = alice.rekeyChildSa(sa.children.find((c) => c.state === 'installed')!);
    wire.run(500, 50);
    const fresh = await successor;
    const onBob = peerSa.children.find((c) => c.spiOut === fresh.spiIn)!;
    expect(childSaPath(onBob.ike).remote.address).toBe('10.0.0.1');
    await wire.settle(20_000, 200);
    expect(moved.bob).toEqual([]);
    expect(peerSa.verifiedAddresses.has(NIC2)).toBe(false);
  });

  it('a return routability check that runs on the rekeyed IKE SA moves the Child SAs there once it passes (§3.7)', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair();
    const movedChildren: string[] = [];
    bob.on('ike-moved', (s) => movedChildren.push(`${s === peerSa ? 'old' : 'successor'}:${s.children.length}:${childSaPath(s).remote.address}`));
    // Bob's check waits behind his own IKE SA rekey, which completes first and takes the queued check along.
    let held = true;
    wire.filter = (d) => (held && d.local.address === '10.0.0.2' && d.remote.address === NIC2 && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0 ? 'drop' : 'pass');
    const rekey = bob.rekeyIkeSa(peerSa);
    void move(wire, alice, sa, NIC2).catch(() => undefined);
    held = false;
    await wire.settle(20_000, 200);
    const successor = await rekey;
    expect(successor.remote.address).toBe(NIC2);
    expect(successor.childPath).toBeUndefined();
    expect(movedChildren).toContain(`successor:1:${NIC2}`);
  });

  it('the NAT state an address update finds goes to the IKE SA the peer rekeyed meanwhile, where the Child SAs are now (§3.5)', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair({}, undefined, { natOnFirstPath: true });
    expect(sa.children[0]!.udpEncap).toBe(true);
    // Bob rekeys the IKE SA while alice's UPDATE_SA_ADDRESSES (to NIC2, without the NAT) is on its way.
    const rekey = bob.rekeyIkeSa(peerSa);
    const moving = alice.moveIkeSa(sa, { local: NIC2 });
    moving.catch(() => undefined);
    await wire.settle(20_000, 200);
    await rekey;
    const successor = alice.ikeSas().find((s) => s.state === 'established')!;
    expect(successor).not.toBe(sa);
    expect(successor.local.address).toBe(NIC2);
    expect(successor.natLocal).toBe(false);
    expect(successor.children.map((c) => c.udpEncap)).toEqual([false]);
  });

  it('NAT -> no NAT: the NAT state changes, yet the responder\'s Child SAs stay put while return routability is unproven (§3.7)', async () => {
    const { wire, alice, sa, peerSa, moved } = await pair({}, undefined, { natOnFirstPath: true });
    expect(peerSa.natRemote).toBe(true);
    expect(peerSa.children[0]!.udpEncap).toBe(true);
    // bob's requests to NIC2 are lost: the return routability check never succeeds.
    wire.filter = (d) => (d.local.address === '10.0.0.2' && d.remote.address === NIC2 && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0 ? 'drop' : 'pass');
    await move(wire, alice, sa, NIC2).catch(() => undefined);
    await wire.settle(20_000, 200);
    // The IKE SA followed the IP header (§3.5) and saw that the NAT is gone ...
    expect(peerSa.remote.address).toBe(NIC2);
    expect(peerSa.natRemote).toBe(false);
    // ... but the data plane was never pointed at the unverified address.
    expect(peerSa.verifiedAddresses.has(NIC2)).toBe(false);
    expect(moved.bob).toEqual([]);
  });

  it('NAT -> no NAT: once return routability is proven, the responder\'s Child SAs move, without UDP encapsulation', async () => {
    const { wire, alice, bob, sa, peerSa } = await pair({}, undefined, { natOnFirstPath: true });
    const seen: Array<{ verified: boolean; remote: string; encap: boolean | undefined }> = [];
    bob.on('ike-moved', (s) => seen.push({ verified: s.verifiedAddresses.has(NIC2), remote: s.remote.address, encap: s.children[0]?.udpEncap }));
    await move(wire, alice, sa, NIC2);
    // One move, after the check, to the new address, with the new path's encapsulation.
    expect(seen).toEqual([{ verified: true, remote: NIC2, encap: false }]);
    expect(peerSa.natRemote).toBe(false);
    expect(sa.natLocal).toBe(false);
    expect(sa.children[0]!.udpEncap).toBe(false);
  });
});

describe('forced UDP encapsulation across moves (encap = yes; RFC 7296 §2.23, RFC 4555 §3.5)', () => {
  for (const side of ['initiator', 'responder'] as const) {
    it(`the ${side}'s encap = yes survives a move: both ends keep encapsulating (the faked NAT-D source hash is sent again)`, async () => {
      const { wire, alice, sa, peerSa } = await pair({ [side]: { forceEncap: true } });
      // The end that forces encapsulation claims to be behind a NAT; the other sees it as a remote NAT.
      const [forcing, other] = side === 'initiator' ? [sa, peerSa] : [peerSa, sa];
      expect(forcing.natLocal).toBe(true);
      expect(sa.children[0]!.udpEncap && peerSa.children[0]!.udpEncap).toBe(true);
      await move(wire, alice, sa, NIC2);
      expect(peerSa.remote.address).toBe(NIC2);
      expect(forcing.natLocal).toBe(true);
      expect(other.natRemote).toBe(true);
      expect(sa.children[0]!.udpEncap).toBe(true);
      expect(peerSa.children[0]!.udpEncap).toBe(true);
    });
  }
});

describe('path failure and address changes (RFC 4555 §3.5, §3.6, §3.10)', () => {
  it('when the current path stops answering, the initiator moves to another address pair that answers', async () => {
    const { wire, alice, sa, peerSa } = await pair();
    // The first NIC's path dies.
    wire.filter = (d) => (d.local.address === '10.0.0.1' || d.remote.address === '10.0.0.1' ? 'drop' : 'pass');
    const live = alice.checkLiveness(sa);
    await wire.settle(30_000, 200);
    expect(await live).toBe(true);
    expect(sa.state).toBe('established');
    expect(sa.local.address).toBe(NIC2);
    expect(peerSa.remote.address).toBe(NIC2);
  });

  it('an address that goes away moves the IKE SA; when its home address returns, it moves back', async () => {
    const { wire, alice, sa, peerSa, addresses } = await pair();
    addresses.alice = [NIC2];
    alice.localAddressesChanged();
    await wire.settle(3000);
    expect(sa.local.address).toBe(NIC2);
    expect(peerSa.remote.address).toBe(NIC2);
    addresses.alice = ['10.0.0.1', NIC2];
    alice.localAddressesChanged();
    await wire.settle(3000);
    expect(sa.local.address).toBe('10.0.0.1');
    expect(peerSa.remote.address).toBe('10.0.0.1');
  });

  it('ADDITIONAL_*_ADDRESS and NO_ADDITIONAL_ADDRESSES in INFORMATIONAL replace the peer\'s list (§3.6)', async () => {
    const { wire, alice, peerSa, addresses } = await pair();
    addresses.alice = ['10.0.0.1', NIC2, '10.0.2.1'];
    alice.localAddressesChanged();
    await wire.settle(500);
    expect(peerSa.peerAdditionalAddresses.sort()).toEqual(['10.0.2.1', NIC2].sort());
    addresses.alice = ['10.0.0.1'];
    alice.localAddressesChanged();
    await wire.settle(500);
    expect(peerSa.peerAdditionalAddresses).toEqual([]);
  });
});

describe('address lists go out when the address set changes (RFC 4555 §3.6)', () => {
  /** INFORMATIONAL requests an engine sent (address lists, updates, liveness checks). */
  const informationalRequests = (wire: MemoryWire, from: string[]) =>
    wire.log.filter((d) => from.includes(d.local.address) && d.bytes[18] === ExchangeType.INFORMATIONAL && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0).length;

  it('repeated notifications with the same set send one address list per SA; a new set sends another', async () => {
    const { wire, alice, bob, sa, peerSa, addresses } = await pair();
    const aliceAddrs = ['10.0.0.1', NIC2];
    addresses.alice = ['10.0.0.1', NIC2, '10.0.2.1'];
    for (let i = 0; i < 5; i++) alice.localAddressesChanged();
    await wire.settle(500);
    expect(informationalRequests(wire, aliceAddrs)).toBe(1);
    expect(peerSa.peerAdditionalAddresses.sort()).toEqual(['10.0.2.1', NIC2].sort());
    // The same set in another order is the same set.
    addresses.alice = ['10.0.2.1', NIC2, '10.0.0.1'];
    alice.localAddressesChanged();
    await wire.settle(500);
    expect(informationalRequests(wire, aliceAddrs)).toBe(1);
    addresses.alice = ['10.0.0.1', NIC2];
    for (let i = 0; i < 3; i++) alice.localAddressesChanged();
    await wire.settle(500);
    expect(informationalRequests(wire, aliceAddrs)).toBe(2);
    expect(peerSa.peerAdditionalAddresses).toEqual([NIC2]);
    // The responder side too: Bob's list goes out once.
    for (let i = 0; i < 3; i++) bob.localAddressesChanged();
    await wire.settle(500);
    expect(informationalRequests(wire, ['10.0.0.2'])).toBe(1);
    expect(sa.state).toBe('established');
  });

  it('the path is still re-evaluated on a change that moves the SA, and the list follows a later change', async () => {
    const { wire, alice, sa, peerSa, addresses } = await pair();
    addresses.alice = [NIC2];
    alice.localAddressesChanged();
    alice.localAddressesChanged();
    await wire.settle(3000);
    expect(sa.local.address).toBe(NIC2);
    expect(peerSa.remote.address).toBe(NIC2);
    addresses.alice = [NIC2, '10.0.2.1'];
    alice.localAddressesChanged();
    await wire.settle(500);
    expect(sa.local.address).toBe(NIC2);
    expect(peerSa.peerAdditionalAddresses).toContain('10.0.2.1');
  });
});

describe('the gateway tells the engine only about changes to its usable addresses (RFC 4555 §3.6)', () => {
  let gw: Gateway | undefined;
  afterEach(async () => {
    await gw?.stop({ notifyPeers: false });
    gw = undefined;
  });

  it('an address the gateway does not listen on coming or going is no address change', async () => {
    gw = new Gateway({ config: loopbackPair().responder, log: silentLogger(), addressPollMs: 3_600_000 });
    await gw.start();
    const monitor = (gw as unknown as { addressMonitor: AddressMonitor }).addressMonitor;
    const setList = (list: string[]) => {
      (monitor as unknown as { list: () => string[] }).list = () => list;
      monitor.poll();
    };
    const settled = () => new Promise((r) => setTimeout(r, 20));
    const base = monitor.current().filter((a) => a !== '127.0.0.2' && a !== '192.0.2.77');
    setList(base);
    await settled();
    const changed = vi.spyOn(gw.engine, 'localAddressesChanged');
    // The listen address comes up: usable now.
    setList([...base, '127.0.0.2']);
    await settled();
    expect(changed).toHaveBeenCalledTimes(1);
    // An address outside the listen configuration comes and goes: nothing usable changed.
    setList([...base, '127.0.0.2', '192.0.2.77']);
    await settled();
    setList([...base, '127.0.0.2']);
    await settled();
    expect(changed).toHaveBeenCalledTimes(1);
    // The listen address goes away.
    setList(base);
    await settled();
    expect(changed).toHaveBeenCalledTimes(2);
  });
});

describe('per-NIC clone placement (RFC 7791 §3 with RFC 4555)', () => {
  it('clone k moves to NIC k before its Child SA is created; both IKE SAs answer on their own paths', async () => {
    const { wire, alice, bob, sa } = await pair({ initiator: { clone: { per: 'nic', count: 2, nics: ['10.0.0.1', NIC2] } } });
    const orchestrator = new CloneOrchestrator(alice);
    const grown = orchestrator.grow(sa, 2);
    await wire.settle(3000);
    expect((await grown).state).toBe('complete');
    const clone = alice.ikeSas().find((s) => s !== sa)!;
    expect(sa.local.address).toBe('10.0.0.1');
    expect(clone.local.address).toBe(NIC2);
    expect(clone.homeAddress).toBe(NIC2);
    const peerClone = bob.ikeSas().find((s) => s.spiI.every((b, i) => b === clone.spiI[i]))!;
    expect(peerClone.remote.address).toBe(NIC2);
    expect(clone.children).toHaveLength(1);
    // Liveness on each path: datagrams of each IKE SA leave from its own NIC.
    const from = new Map<string, string>();
    wire.filter = (d) => {
      if (d.local.address !== '10.0.0.2') from.set(Buffer.from(d.bytes.subarray(0, 8)).toString('hex'), d.local.address);
      return 'pass';
    };
    const checks = [alice.checkLiveness(sa), alice.checkLiveness(clone)];
    wire.run(100);
    expect(await Promise.all(checks)).toEqual([true, true]);
    expect(from.get(Buffer.from(sa.spiI).toString('hex'))).toBe('10.0.0.1');
    expect(from.get(Buffer.from(clone.spiI).toString('hex'))).toBe(NIC2);
  });
});
