// NAT prohibition (RFC 4555 §3.9) applies only "when NAT Traversal is not
// enabled", i.e. when IKE_SA_INIT carried no NAT_DETECTION_*_IP notifies
// (RFC 7296 §2.23). A peer that exchanged NAT-D, found no NAT, and moves
// without NO_NATS_ALLOWED (as strongSwan does) is followed; a peer without
// NAT-D must protect its addresses, and an absent notify is told apart from
// one that does not match the IP header.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExchangeType, NotifyType } from '../control/wire/constants.js';
import type { NotifyPayload, Payload } from '../control/wire/payloads.js';
import { UpdateSaAddressesInitiator, noNatsAllowedData } from '../control/ike/exchanges/mobike.js';
import { notify } from '../control/ike/payload-builders.js';
import { withoutNatDetection } from './support/nat-detection.js';
import { NIC2, WARN, mobikePair, moveAndSettle } from './support/mobike-peers.js';
import type { TracedMessage } from './support/mobike-peers.js';

const has = (payloads: readonly Payload[], type: number) => payloads.some((p) => p.type === 41 && (p as NotifyPayload).notifyType === type);

/** alice's requests that carry `notifyType` (UPDATE_SA_ADDRESSES, NO_ADDITIONAL_ADDRESSES, ...). */
const aliceRequests = (trace: TracedMessage[], exchangeType: number, notifyType?: number) =>
  trace.filter((m) => m.engine === 'alice' && m.direction === 'out' && !m.response && m.exchangeType === exchangeType && (notifyType === undefined || has(m.payloads, notifyType)));

/** Rewrite NO_NATS_ALLOWED in every UPDATE_SA_ADDRESSES alice builds (drop it, or replace its data). */
function rewriteNoNatsAllowed(data: Uint8Array | undefined): void {
  const build = UpdateSaAddressesInitiator.prototype.build;
  vi.spyOn(UpdateSaAddressesInitiator.prototype, 'build').mockImplementation(function (this: UpdateSaAddressesInitiator, sa) {
    const payloads = build.call(this, sa).filter((p) => !(p.type === 41 && p.notifyType === NotifyType.NO_NATS_ALLOWED));
    if (data) payloads.splice(1, 0, notify(NotifyType.NO_NATS_ALLOWED, data));
    return payloads;
  });
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('NAT-D exchanged in IKE_SA_INIT, no NAT found (RFC 7296 §2.23)', () => {
  it('both ends record that NAT-D was exchanged, and that no NAT is in the way', async () => {
    const { sa, peerSa } = await mobikePair();
    expect([sa.natDetectionExchanged, peerSa.natDetectionExchanged]).toEqual([true, true]);
    expect([sa.natLocal, sa.natRemote, peerSa.natLocal, peerSa.natRemote]).toEqual([false, false, false, false]);
  });

  it('UPDATE_SA_ADDRESSES without NO_NATS_ALLOWED from a new address moves the IKE SA and its Child SAs', async () => {
    const { wire, alice, sa, peerSa, trace, moved, logs } = await mobikePair();
    const child = peerSa.children[0]!;
    const { result } = await moveAndSettle(wire, alice, sa, NIC2);
    await expect(result).resolves.toBe(sa);
    // §3.9 does not apply: the update carries NAT-D, and no NO_NATS_ALLOWED.
    const updates = aliceRequests(trace, ExchangeType.INFORMATIONAL, NotifyType.UPDATE_SA_ADDRESSES);
    expect(updates).toHaveLength(1);
    expect(has(updates[0]!.payloads, NotifyType.NO_NATS_ALLOWED)).toBe(false);
    expect(has(updates[0]!.payloads, NotifyType.NAT_DETECTION_SOURCE_IP)).toBe(true);
    // bob followed: the IKE SA, then (after return routability) its Child SAs, unencapsulated as before.
    expect(peerSa.remote.address).toBe(NIC2);
    expect(moved.bob).toContain(peerSa);
    expect(peerSa.children[0]).toBe(child);
    expect(child.udpEncap).toBe(false);
    expect(logs.bob.lines().some((l) => /UNEXPECTED_NAT_DETECTED/.test(l.msg))).toBe(false);
  });

  it('our own address-changing requests carry no NO_NATS_ALLOWED (IKE_AUTH, address lists, updates)', async () => {
    const { wire, alice, sa, trace, addresses } = await mobikePair();
    addresses.alice = ['10.0.0.1', NIC2, '10.0.2.1'];
    alice.localAddressesChanged();
    await wire.settle(500);
    const { result } = await moveAndSettle(wire, alice, sa, NIC2);
    await result;
    const auth = aliceRequests(trace, ExchangeType.IKE_AUTH);
    const lists = aliceRequests(trace, ExchangeType.INFORMATIONAL, NotifyType.ADDITIONAL_IP4_ADDRESS);
    const updates = aliceRequests(trace, ExchangeType.INFORMATIONAL, NotifyType.UPDATE_SA_ADDRESSES);
    expect([auth.length, lists.length, updates.length]).toEqual([1, 1, 1]);
    for (const m of [...auth, ...lists, ...updates]) expect(has(m.payloads, NotifyType.NO_NATS_ALLOWED)).toBe(false);
  });
});

describe('no NAT-D in IKE_SA_INIT: NAT prohibition applies (RFC 4555 §3.9)', () => {
  it('both ends record that NAT-D was not exchanged; our requests carry a matching NO_NATS_ALLOWED, and the move works', async () => {
    const { wire, alice, sa, peerSa, trace, addresses } = await withoutNatDetection(() => mobikePair());
    expect([sa.natDetectionExchanged, peerSa.natDetectionExchanged]).toEqual([false, false]);
    addresses.alice = ['10.0.0.1', NIC2, '10.0.2.1'];
    alice.localAddressesChanged();
    await wire.settle(500);
    const { result } = await moveAndSettle(wire, alice, sa, NIC2);
    await expect(result).resolves.toBe(sa);
    expect(peerSa.remote.address).toBe(NIC2);
    const auth = aliceRequests(trace, ExchangeType.IKE_AUTH);
    const lists = aliceRequests(trace, ExchangeType.INFORMATIONAL, NotifyType.ADDITIONAL_IP4_ADDRESS);
    const updates = aliceRequests(trace, ExchangeType.INFORMATIONAL, NotifyType.UPDATE_SA_ADDRESSES);
    expect([auth.length, lists.length, updates.length]).toEqual([1, 1, 1]);
    for (const m of [...auth, ...lists, ...updates]) expect(has(m.payloads, NotifyType.NO_NATS_ALLOWED)).toBe(true);
    // Each protects the addresses it was sent with (§4.2.6): the update those of the new path.
    const nna = updates[0]!.payloads.find((p) => p.type === 41 && p.notifyType === NotifyType.NO_NATS_ALLOWED) as NotifyPayload;
    expect(nna.data).toEqual(noNatsAllowedData({ address: NIC2, port: 4500 }, { address: '10.0.0.2', port: 4500 }));
  });

  it.each([
    { what: 'without NO_NATS_ALLOWED', data: undefined, reason: /absent/, not: /does not match/ },
    {
      what: 'with a NO_NATS_ALLOWED that does not match the IP header',
      data: noNatsAllowedData({ address: '192.0.2.1', port: 4500 }, { address: '10.0.0.2', port: 4500 }),
      reason: /does not match the IP header/,
      not: /absent/,
    },
  ])('an update $what gets UNEXPECTED_NAT_DETECTED, with its own reason logged; nothing moves', async ({ data, reason, not }) => {
    const { wire, alice, sa, peerSa, logs, moved } = await withoutNatDetection(() => mobikePair());
    rewriteNoNatsAllowed(data);
    const { result } = await moveAndSettle(wire, alice, sa, NIC2);
    await expect(result).rejects.toMatchObject({ notify: NotifyType.UNEXPECTED_NAT_DETECTED });
    expect(peerSa.remote.address).toBe('10.0.0.1');
    expect(moved.bob).toEqual([]);
    const refusals = logs.bob.lines().filter((l) => l.level === WARN && /UNEXPECTED_NAT_DETECTED/.test(l.msg));
    expect(refusals.length).toBeGreaterThan(0);
    for (const l of refusals) {
      expect(l.reason).toMatch(reason);
      expect(l.msg).not.toMatch(not);
    }
  });
});
