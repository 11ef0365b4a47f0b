// Requests an IKE SA may answer depend on its state (architecture §4.3): before
// IKE_AUTH has authenticated the peer, only IKE_AUTH may touch the SA. RFC 7296
// §1.4: "INFORMATIONAL exchanges MUST ONLY occur after the initial exchanges".
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair } from './support/peers.js';
import { ExchangeType, HeaderFlag, ProtocolId, PayloadType } from '../control/wire/constants.js';
import { sealMessage } from '../control/ike/protect.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { Datagram } from '../control/ike/transport.js';
import type { Payload } from '../control/wire/payloads.js';

const isAuthRequest = (d: Datagram) => d.bytes[18] === ExchangeType.IKE_AUTH && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0;
const isResponse = (d: Datagram) => (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0;
const deleteIke: Payload = { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] };

/** Alice -> Bob with every IKE_AUTH request lost until `auth.pass` is set: Bob's SA stays half-open. */
function halfOpen() {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  const auth = { pass: false };
  wire.filter = (d) => (!auth.pass && isAuthRequest(d) ? 'drop' : 'pass');
  const up = alice.initiate(initiator.name);
  up.catch(() => undefined);
  wire.flush();
  const aliceSa = alice.ikeSas()[0]!;
  const bobSa = bob.ikeSas()[0]!;
  /** A request Alice's SA seals with the keys of IKE_SA_INIT, sent to Bob from `from`. */
  const toBob = (exchangeType: number, messageId: number, payloads: Payload[], from = '10.0.0.1') => {
    const bytes = sealMessage(aliceSa, exchangeType, messageId, false, payloads);
    bob.receive({ bytes, local: { ...bobSa.local }, remote: { address: from, port: bobSa.remote.port } });
  };
  return { wire, alice, bob, aliceSa, bobSa, auth, up, toBob };
}

describe('requests before IKE_AUTH completes (RFC 7296 §1.4, architecture §4.3)', () => {
  it('a half-open responder SA drops an INFORMATIONAL request: no answer, no message-ID step, no address follow', () => {
    const { wire, bob, bobSa, aliceSa, toBob } = halfOpen();
    expect(bobSa.state).toBe('connecting');
    expect(aliceSa.state).toBe('authenticating');
    const remoteBefore = { ...bobSa.remote };
    const sentBefore = bob.stats.sent;
    toBob(ExchangeType.INFORMATIONAL, 1, [], '10.9.9.9');
    expect(bob.stats.sent).toBe(sentBefore);
    expect(wire.queue.filter(isResponse)).toEqual([]);
    expect(bobSa.peerRequestId).toBe(1);
    expect(bobSa.remote).toEqual(remoteBefore);
    expect(bob.stats.drops['unsupported-exchange']).toBe(1);
  });

  it('a Delete of the IKE SA before IKE_AUTH does not kill the half-open SA, and IKE_AUTH then completes', async () => {
    const { wire, bob, bobSa, auth, up, toBob } = halfOpen();
    toBob(ExchangeType.INFORMATIONAL, 1, []);
    toBob(ExchangeType.INFORMATIONAL, 1, [deleteIke]);
    toBob(ExchangeType.INFORMATIONAL, 2, [deleteIke]);
    expect(bobSa.state).toBe('connecting');
    expect(bob.ikeSas()).toContain(bobSa);
    expect(bob.stats.drops['unsupported-exchange']).toBe(3);
    // The IKE_AUTH retransmission (message ID 1) is still what Bob expects.
    auth.pass = true;
    wire.run(1500);
    const sa = await up;
    expect(sa.state).toBe('established');
    expect(bobSa.state).toBe('established');
    expect(bobSa.peerRequestId).toBe(2);
  });

  it('a CREATE_CHILD_SA request before IKE_AUTH is dropped unanswered too', () => {
    const { bob, bobSa, toBob } = halfOpen();
    const sentBefore = bob.stats.sent;
    toBob(ExchangeType.CREATE_CHILD_SA, 1, []);
    expect(bob.stats.sent).toBe(sentBefore);
    expect(bobSa.peerRequestId).toBe(1);
  });

  it('an initiator with IKE_AUTH in flight drops a request from the responder', () => {
    const { wire, alice, aliceSa, bobSa } = halfOpen();
    const sentBefore = alice.stats.sent;
    const bytes = sealMessage(bobSa, ExchangeType.INFORMATIONAL, 0, false, [deleteIke]);
    alice.receive({ bytes, local: { ...aliceSa.local }, remote: { ...aliceSa.remote } });
    expect(alice.stats.sent).toBe(sentBefore);
    expect(wire.queue.filter(isResponse)).toEqual([]);
    expect(aliceSa.state).toBe('authenticating');
    expect(aliceSa.peerRequestId).toBe(0);
    expect(alice.stats.drops['unsupported-exchange']).toBe(1);
  });
});

describe('requests after IKE_AUTH are still answered', () => {
  it('an established SA answers INFORMATIONAL; IKE_AUTH retransmissions get the cached response', async () => {
    const { wire, alice, bob, bobSa, up } = halfOpen();
    // Let IKE_AUTH through, but lose Bob's first IKE_AUTH response: Alice retransmits.
    let lost = false;
    wire.filter = (d) => {
      if (!lost && isResponse(d) && d.bytes[18] === ExchangeType.IKE_AUTH) {
        lost = true;
        return 'drop';
      }
      return 'pass';
    };
    wire.run(2000);
    const sa: IkeSa = await up;
    expect(lost).toBe(true);
    expect(bob.stats.responsesFromCache).toBeGreaterThanOrEqual(1);
    const live = alice.checkLiveness(sa);
    wire.run(100);
    expect(await live).toBe(true);
    expect(bobSa.peerRequestId).toBe(3);
    expect(bob.stats.drops['unsupported-exchange']).toBeUndefined();
  });
});
