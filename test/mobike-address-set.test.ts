// The peer's address set (RFC 4555 §3.4, §3.6) is the IP header source of its
// address-list message plus the ADDITIONAL_*_ADDRESS notifies in it; when the
// address in use leaves that set, the MOBIKE initiator moves (§3.5) with
// UPDATE_SA_ADDRESSES to an address that is left.
import { describe, expect, it } from 'vitest';
import { ExchangeType, HeaderFlag, NotifyType } from '../control/wire/constants.js';
import type { NotifyPayload } from '../control/wire/payloads.js';
import { NIC2 as NIC2_ALICE, mobikePair } from './support/mobike-peers.js';

const BOB_NEW = '10.0.0.22';

/** bob's IKE traffic now leaves from BOB_NEW (its old address is gone), and it tells alice its addresses. */
async function bobAnnouncesFrom(pair: Awaited<ReturnType<typeof mobikePair>>, bobAddresses: string[]) {
  const { wire, bob, peerSa, addresses } = pair;
  wire.engines.set(BOB_NEW, bob);
  addresses.bob = bobAddresses;
  peerSa.local = { ...peerSa.local, address: BOB_NEW };
  bob.localAddressesChanged();
  await wire.settle(3000);
}

describe('the peer\'s address set includes the IP header source of its address list (RFC 4555 §3.6)', () => {
  it('N(NO_ADDITIONAL_ADDRESSES) from a new address: the set becomes that address, and the initiator moves there with UPDATE_SA_ADDRESSES', async () => {
    const pair = await mobikePair();
    const { wire, sa, peerSa, trace, moved } = pair;
    await bobAnnouncesFrom(pair, [BOB_NEW]);
    // bob's message: NO_ADDITIONAL_ADDRESSES, sent from BOB_NEW.
    const list = trace.find((m) => m.engine === 'bob' && m.direction === 'out' && !m.response && m.payloads.some((p) => p.type === 41 && (p as NotifyPayload).notifyType === NotifyType.NO_ADDITIONAL_ADDRESSES));
    expect(list).toBeDefined();
    // alice moved to the one address left and told bob there.
    expect(sa.remote.address).toBe(BOB_NEW);
    expect(sa.peerAdditionalAddresses).toEqual([]);
    expect(sa.peerWithdrawnAddress).toBeUndefined();
    const updates = wire.log.filter(
      (d) => d.local.address === sa.local.address && d.remote.address === BOB_NEW && d.bytes[18] === ExchangeType.INFORMATIONAL && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0,
    );
    expect(updates.length).toBeGreaterThan(0);
    expect(trace.some((m) => m.engine === 'bob' && m.direction === 'in' && !m.response && m.payloads.some((p) => p.type === 41 && (p as NotifyPayload).notifyType === NotifyType.UPDATE_SA_ADDRESSES))).toBe(true);
    // bob followed on its side: the IKE SA and, once alice proved she receives there, its Child SAs.
    expect(peerSa.local.address).toBe(BOB_NEW);
    expect(peerSa.remote.address).toBe('10.0.0.1');
    expect(moved.alice).toContain(sa);
    expect(sa.state).toBe('established');
  });

  it('a list from a new address that still holds the address in use adds the source and moves nothing', async () => {
    const pair = await mobikePair();
    const { sa } = pair;
    await bobAnnouncesFrom(pair, [BOB_NEW, '10.0.0.2']);
    expect(sa.remote.address).toBe('10.0.0.2');
    expect(sa.peerAdditionalAddresses).toEqual([BOB_NEW]);
    expect(sa.peerWithdrawnAddress).toBeUndefined();
  });

  it('the MOBIKE responder records the set, but only the initiator moves (§3.5)', async () => {
    const pair = await mobikePair();
    const { wire, alice, peerSa, addresses } = pair;
    // alice's list arrives from her second NIC (the IP header source) and leaves out the address in use.
    wire.tamper = (d) => (d.local.address === '10.0.0.1' ? { ...d, local: { ...d.local, address: '10.0.1.1' } } : d);
    addresses.alice = ['10.0.0.1'];
    alice.localAddressesChanged();
    await wire.settle(1000);
    expect(peerSa.peerWithdrawnAddress).toBe('10.0.0.1');
    expect(peerSa.peerAdditionalAddresses).toEqual(['10.0.1.1']);
    expect(peerSa.remote.address).toBe('10.0.0.1');
    expect(peerSa.state).toBe('established');
  });

  it('when our home address returns before the peer\'s address on that network, the initiator waits for the peer\'s list, then moves home (§3.5, §3.6)', async () => {
    const BOB_NIC2 = '10.0.1.2';
    const pair = await mobikePair({}, ['10.0.0.2', BOB_NIC2]);
    const { wire, alice, bob, sa, peerSa, addresses } = pair;
    expect(sa.peerAdditionalAddresses).toEqual([BOB_NIC2]);
    // Both first links go down: alice moves to the second network, bob's list leaves only its address there.
    addresses.alice = [NIC2_ALICE];
    alice.localAddressesChanged();
    await wire.settle(3000);
    addresses.bob = [BOB_NIC2];
    bob.localAddressesChanged();
    await wire.settle(1000);
    expect([sa.local.address, sa.remote.address]).toEqual([NIC2_ALICE, BOB_NIC2]);
    expect(sa.peerAdditionalAddresses).toEqual([]);
    // alice's first link is back before bob's: no path from it to bob's second network.
    const sent = wire.log.length;
    addresses.alice = ['10.0.0.1', NIC2_ALICE];
    alice.localAddressesChanged();
    await wire.settle(1000);
    expect([sa.local.address, sa.remote.address]).toEqual([NIC2_ALICE, BOB_NIC2]);
    expect(wire.log.slice(sent).some((d) => d.local.address === '10.0.0.1')).toBe(false);
    // bob's first link is back and announced: alice moves home.
    addresses.bob = ['10.0.0.2', BOB_NIC2];
    bob.localAddressesChanged();
    await wire.settle(3000);
    expect([sa.local.address, sa.remote.address]).toEqual(['10.0.0.1', '10.0.0.2']);
    expect([peerSa.local.address, peerSa.remote.address]).toEqual(['10.0.0.2', '10.0.0.1']);
  });
});
