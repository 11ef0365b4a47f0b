// The MOBIKE initiator (RFC 4555 §1.3) is whoever started the first IKE SA of
// the series: it stays so when the peer rekeys the IKE SA (RFC 7296 §2.18
// makes the peer the IKEv2 initiator of the new one) and when the peer clones
// it (RFC 7791: the cloner is the clone's IKEv2 initiator). Only the MOBIKE
// initiator moves an IKE SA, fails over, and has its UPDATE_SA_ADDRESSES
// followed (§3.1, §3.5, §3.10).
import { afterEach, describe, expect, it } from 'vitest';
import { ExchangeType, NotifyType } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { notify } from '../control/ike/payload-builders.js';
import type { MemoryWire } from './support/peers.js';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { loopbackPair } from './support/loopback.js';
import { NIC2, mobikePair, moveAndSettle, sameSa } from './support/mobike-peers.js';

/** bob (the first responder) rekeys the IKE SA; returns both ends' successors. */
async function peerRekeys(wire: MemoryWire, alice: IkeEngine, bob: IkeEngine, peerSa: IkeSa) {
  const rekeyed = bob.rekeyIkeSa(peerSa);
  await wire.settle(1000);
  const bobSa = await rekeyed;
  return { bobSa, aliceSa: sameSa(alice, bobSa) };
}

/** bob sends N(UPDATE_SA_ADDRESSES) on `sa`; resolves with alice's answer. */
async function updateFromBob(wire: MemoryWire, bob: IkeEngine, sa: IkeSa): Promise<Payload[] | undefined> {
  let response: Payload[] | undefined;
  bob.queueExchange(sa, { name: 'update from the MOBIKE responder', exchangeType: ExchangeType.INFORMATIONAL, build: () => [notify(NotifyType.UPDATE_SA_ADDRESSES)], process: (_s, p) => void (response = p) });
  await wire.settle(200);
  return response;
}

describe('after the peer rekeys the IKE SA (RFC 4555 §1.3, RFC 7296 §2.18)', () => {
  it('the IKEv2 roles swap, the MOBIKE roles stay', async () => {
    const { wire, alice, bob, peerSa } = await mobikePair();
    const { aliceSa, bobSa } = await peerRekeys(wire, alice, bob, peerSa);
    expect([aliceSa.isInitiator, aliceSa.mobikeInitiator]).toEqual([false, true]);
    expect([bobSa.isInitiator, bobSa.mobikeInitiator]).toEqual([true, false]);
    expect(aliceSa.children).toHaveLength(1);
  });

  it('ikeclone, the first initiator, still moves the IKE SA and its Child SAs', async () => {
    const { wire, alice, bob, peerSa, moved } = await mobikePair();
    const { aliceSa, bobSa } = await peerRekeys(wire, alice, bob, peerSa);
    const { result } = await moveAndSettle(wire, alice, aliceSa, NIC2);
    await expect(result).resolves.toBe(aliceSa);
    expect(aliceSa.local.address).toBe(NIC2);
    expect(bobSa.remote.address).toBe(NIC2);
    expect(moved.bob).toContain(bobSa);
    // The peer, the IKEv2 initiator now, still may not move it.
    await expect(bob.moveIkeSa(bobSa, { local: '10.0.0.2' })).rejects.toThrow(/only the original initiator/);
  });

  it('ikeclone, the first initiator, fails over when its link goes (§3.10)', async () => {
    const { wire, alice, bob, peerSa } = await mobikePair();
    const { aliceSa, bobSa } = await peerRekeys(wire, alice, bob, peerSa);
    wire.filter = (d) => (d.local.address === '10.0.0.1' || d.remote.address === '10.0.0.1' ? 'drop' : 'pass');
    const live = alice.checkLiveness(aliceSa);
    await wire.settle(30_000, 200);
    expect(await live).toBe(true);
    expect(aliceSa.state).toBe('established');
    expect(aliceSa.local.address).toBe(NIC2);
    expect(bobSa.remote.address).toBe(NIC2);
  });

  it('ikeclone, the first initiator, moves off an address that goes away', async () => {
    const { wire, alice, bob, peerSa, addresses } = await mobikePair();
    const { aliceSa, bobSa } = await peerRekeys(wire, alice, bob, peerSa);
    addresses.alice = [NIC2];
    alice.localAddressesChanged();
    await wire.settle(3000);
    expect(aliceSa.local.address).toBe(NIC2);
    expect(bobSa.remote.address).toBe(NIC2);
  });

  it('an UPDATE_SA_ADDRESSES from the first responder is still ignored (§3.5)', async () => {
    const { wire, alice, bob, peerSa, logs } = await mobikePair();
    const { aliceSa, bobSa } = await peerRekeys(wire, alice, bob, peerSa);
    // bob's datagrams come from a new address; alice must not follow.
    wire.engines.set('10.0.0.22', bob);
    wire.tamper = (d) => (d.local.address === '10.0.0.2' ? { ...d, local: { ...d.local, address: '10.0.0.22' } } : d);
    expect(await updateFromBob(wire, bob, bobSa)).toEqual([]);
    expect(aliceSa.remote.address).toBe('10.0.0.2');
    expect(aliceSa.state).toBe('established');
    expect(logs.alice.lines().some((l) => /ignoring UPDATE_SA_ADDRESSES from the original responder/.test(l.msg))).toBe(true);
  });
});

describe('a clone made by the MOBIKE responder (RFC 7791 with RFC 4555 §1.3)', () => {
  async function bobClones() {
    const pair = await mobikePair();
    const cloned = pair.bob.cloneIkeSa(pair.peerSa);
    await pair.wire.settle(1000);
    const bobClone = await cloned;
    return { ...pair, bobClone, aliceClone: sameSa(pair.alice, bobClone) };
  }

  it('keeps the client as MOBIKE initiator, though the gateway is the clone\'s IKEv2 initiator', async () => {
    const { aliceClone, bobClone } = await bobClones();
    expect([aliceClone.isInitiator, aliceClone.mobikeInitiator]).toEqual([false, true]);
    expect([bobClone.isInitiator, bobClone.mobikeInitiator]).toEqual([true, false]);
  });

  it('the client moves the clone; the gateway refuses to', async () => {
    const { wire, alice, bob, sa, peerSa, aliceClone, bobClone } = await bobClones();
    await expect(bob.moveIkeSa(bobClone, { local: '10.0.0.2' })).rejects.toThrow(/only the original initiator/);
    const { result } = await moveAndSettle(wire, alice, aliceClone, NIC2);
    await expect(result).resolves.toBe(aliceClone);
    expect(bobClone.remote.address).toBe(NIC2);
    // The original stays where it was (clones are independent IKE SAs, architecture §4.2).
    expect(sa.local.address).toBe('10.0.0.1');
    expect(peerSa.remote.address).toBe('10.0.0.1');
  });

  it('an UPDATE_SA_ADDRESSES the gateway sends on its clone is ignored by the client', async () => {
    const { wire, bob, aliceClone, bobClone } = await bobClones();
    wire.engines.set('10.0.0.22', bob);
    wire.tamper = (d) => (d.local.address === '10.0.0.2' ? { ...d, local: { ...d.local, address: '10.0.0.22' } } : d);
    expect(await updateFromBob(wire, bob, bobClone)).toEqual([]);
    expect(aliceClone.remote.address).toBe('10.0.0.2');
  });
});

describe('`ikeclone move` on the gateway after the peer rekeyed the IKE SA (UDP on loopback)', () => {
  const running: Gateway[] = [];
  afterEach(async () => {
    for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
  });

  it('the client, which started the first IKE SA, moves the rekeyed SA; the gateway refuses to', async () => {
    const { initiator, responder } = loopbackPair();
    // The client has a second address to move to.
    initiator.listen.addresses = ['127.0.0.1', '127.0.0.3'];
    const gw = new Gateway({ config: responder, log: silentLogger() });
    const client = new Gateway({ config: initiator, log: silentLogger() });
    running.push(gw, client);
    await gw.start();
    await client.start();
    const first = await client.up('gw');
    const rekeyed = new Promise<IkeSa>((resolve) => client.engine.once('ike-rekeyed', (_old, successor) => resolve(successor)));
    const gwSa = await gw.engine.rekeyIkeSa(gw.engine.ikeSas().find((s) => s.state === 'established')!);
    const clientSa = await rekeyed;
    expect(clientSa).not.toBe(first);
    expect([clientSa.isInitiator, clientSa.mobikeInitiator]).toEqual([false, true]);
    await expect(gw.move(gwSa.id, '127.0.0.2')).rejects.toThrow(/only the original initiator/);
    const moved = await client.move(clientSa.id, '127.0.0.3');
    expect(moved.local.address).toBe('127.0.0.3');
    const view = gw.status().ikeSas.find((s) => s.id === gwSa.id)!;
    expect(view.remote.startsWith('127.0.0.3:')).toBe(true);
  });
});
