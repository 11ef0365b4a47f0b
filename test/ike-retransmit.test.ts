// Retransmission (RFC 7296 §2.1), the response cache for retransmitted and
// duplicated requests, and the retransmission budget after which a peer is
// declared dead (§2.4), over an in-memory wire that loses and duplicates.
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair } from './support/peers.js';
import type { IkeEngineOptions, RetransmitPolicy } from '../control/ike/engine.js';
import type { ChildSa } from '../control/ike/ike-sa.js';
import type { Datagram } from '../control/ike/transport.js';
import { ExchangeType, HeaderFlag } from '../control/wire/constants.js';

/** `p` once the wire has gone quiet: settled by then, or the test fails at once instead of hanging. */
function settled<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet'))))]);
}

const isResponse = (d: Datagram) => (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0;
const isRequestOf = (exchange: number) => (d: Datagram) => d.bytes[18] === exchange && !isResponse(d);
const isResponseOf = (exchange: number) => (d: Datagram) => d.bytes[18] === exchange && isResponse(d);
const messageId = (d: Datagram) => new DataView(d.bytes.buffer, d.bytes.byteOffset, d.bytes.byteLength).getUint32(20);

function pair(opts: { alice?: Partial<IkeEngineOptions>; bob?: Partial<IkeEngineOptions> } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const alice = wire.engine('10.0.0.1', [initiator], opts.alice);
  const bob = wire.engine('10.0.0.2', [responder], opts.bob);
  return { wire, alice, bob };
}

/** Drop the first `n` datagrams matching `match`; record the clock at every datagram that matches. */
function dropFirst(wire: MemoryWire, match: (d: Datagram) => boolean, n = 1) {
  const times: number[] = [];
  let dropped = 0;
  wire.filter = (d) => {
    if (!match(d)) return 'pass';
    times.push(wire.clock.now());
    return dropped++ < n ? 'drop' : 'pass';
  };
  return times;
}

describe('loss: the exchange completes through retransmission (RFC 7296 §2.1)', () => {
  it('the first IKE_SA_INIT request is lost', async () => {
    const { wire, alice, bob } = pair();
    const times = dropFirst(wire, isRequestOf(ExchangeType.IKE_SA_INIT));
    const up = alice.initiate('to-bob');
    wire.run(1000);
    const sa = await settled(up);
    expect(sa.state).toBe('established');
    expect(times).toEqual([0, 500]);
    expect(alice.stats.retransmits).toBe(1);
    expect(bob.stats.responsesFromCache).toBe(0);
    expect(bob.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()[0]!.children).toHaveLength(1);
  });

  it('the first IKE_AUTH response is lost: the retransmitted request is answered from the cache, processed once', async () => {
    const { wire, alice, bob } = pair();
    const bobChildren: ChildSa[] = [];
    bob.on('child-up', (c) => bobChildren.push(c));
    let bobUp = 0;
    bob.on('ike-up', () => bobUp++);
    const responses = dropFirst(wire, isResponseOf(ExchangeType.IKE_AUTH));
    const requests: number[] = [];
    const inner = wire.filter;
    wire.filter = (d, i) => {
      if (isRequestOf(ExchangeType.IKE_AUTH)(d)) requests.push(wire.clock.now());
      return inner(d, i);
    };
    const up = alice.initiate('to-bob');
    wire.run(1000);
    const sa = await settled(up);
    expect(sa.state).toBe('established');
    expect(requests).toHaveLength(2);
    expect(requests[1]! - requests[0]!).toBe(500);
    expect(responses).toHaveLength(2);
    expect(bob.stats.responsesFromCache).toBe(1);
    // The request was processed once: one IKE SA up, one Child SA, message IDs moved once.
    expect(bobUp).toBe(1);
    expect(bobChildren).toHaveLength(1);
    const peerSa = bob.ikeSas()[0]!;
    expect(peerSa.peerRequestId).toBe(2);
    expect(sa.children[0]!.spiOut).toBe(bobChildren[0]!.spiIn);
    expect(sa.children[0]!.spiIn).toBe(bobChildren[0]!.spiOut);
  });

  it('retransmission waits grow exponentially up to maxTimeout, the same bytes each time', async () => {
    const retransmit: RetransmitPolicy = { timeout: 500, base: 2, tries: 6, maxTimeout: 4000 };
    const { wire, alice } = pair({ alice: { retransmit } });
    const sent: Datagram[] = [];
    const times: number[] = [];
    wire.filter = (d) => {
      if (d.local.address === '10.0.0.1') {
        sent.push(d);
        times.push(wire.clock.now());
      }
      return 'drop';
    };
    const up = alice.initiate('to-bob');
    up.catch(() => {});
    wire.run(30_000);
    await expect(settled(up)).rejects.toThrow(/no response to IKE_SA_INIT after 6 retransmissions/);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps).toEqual([500, 1000, 2000, 4000, 4000, 4000]);
    for (const d of sent) expect(Buffer.from(d.bytes).equals(Buffer.from(sent[0]!.bytes))).toBe(true);
  });

  it('an encrypted request (CREATE_CHILD_SA) lost twice still completes; the waits double', async () => {
    const { wire, alice, bob } = pair();
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await settled(up);
    const t0 = wire.clock.now();
    const times = dropFirst(wire, isRequestOf(ExchangeType.CREATE_CHILD_SA), 2);
    const created = alice.createChildSa(sa, 'net', { pfs: false });
    wire.run(2000);
    await settled(created);
    expect(times.map((t) => t - t0)).toEqual([0, 500, 1500]);
    expect(sa.children).toHaveLength(2);
    expect(bob.ikeSas()[0]!.children).toHaveLength(2);
    expect(bob.stats.responsesFromCache).toBe(0);
  });
});

describe('duplication: each request is processed once (RFC 7296 §2.1)', () => {
  it('every datagram delivered twice: the handshake, a second Child SA, liveness and delete all complete', async () => {
    const { wire, alice, bob } = pair();
    wire.filter = () => 'duplicate';
    const aliceChildren: ChildSa[] = [];
    const bobChildren: ChildSa[] = [];
    alice.on('child-up', (c) => aliceChildren.push(c));
    bob.on('child-up', (c) => bobChildren.push(c));
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await settled(up);
    const peerSa = bob.ikeSas()[0]!;
    expect(bob.ikeSas()).toHaveLength(1);
    expect(aliceChildren).toHaveLength(1);
    expect(bobChildren).toHaveLength(1);
    expect(aliceChildren[0]!.spiIn).toBe(bobChildren[0]!.spiOut);
    expect(aliceChildren[0]!.spiOut).toBe(bobChildren[0]!.spiIn);
    // IKE_SA_INIT and IKE_AUTH duplicates answered from the cache.
    expect(bob.stats.responsesFromCache).toBe(2);
    // Each response reaches Alice four times (two copies, each answered again
    // from the cache, each copy duplicated): one is processed, three find no request outstanding.
    expect(alice.stats.drops['unexpected-response']).toBe(6);

    const created = alice.createChildSa(sa, 'net', { pfs: true });
    wire.run(100);
    await settled(created);
    expect(aliceChildren).toHaveLength(2);
    expect(bobChildren).toHaveLength(2);
    expect(aliceChildren[1]!.spiOut).toBe(bobChildren[1]!.spiIn);
    expect(bob.stats.responsesFromCache).toBe(3);

    const alive = alice.checkLiveness(sa);
    wire.run(100);
    expect(await settled(alive)).toBe(true);
    expect(sa.nextRequestId).toBe(4);
    expect(peerSa.peerRequestId).toBe(4);
    expect(bob.stats.responsesFromCache).toBe(4);
    expect(alice.stats.retransmits).toBe(0);

    const closed = alice.closeIkeSa(sa);
    wire.run(100);
    await settled(closed);
    expect(alice.sas.size).toBe(0);
    expect(bob.sas.size).toBe(0);
    // The duplicate of the Delete request arrives after the SA is gone: answered from the
    // deleted SA's last response (RFC 7296 §2.1), not dropped.
    expect(bob.stats.responsesFromCache).toBe(5);
    expect(bob.stats.drops['unknown-spi']).toBeUndefined();
  });

  it('a request duplicated and reordered behind the next one gets no answer and changes nothing', async () => {
    const { wire, alice, bob } = pair();
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await settled(up);
    const peerSa = bob.ikeSas()[0]!;
    // Record the liveness request (message ID 2), then replay it after message ID 3.
    let held: Datagram | undefined;
    wire.filter = (d) => {
      if (!held && isRequestOf(ExchangeType.INFORMATIONAL)(d)) held = { ...d, bytes: new Uint8Array(d.bytes) };
      return 'pass';
    };
    const a1 = alice.checkLiveness(sa);
    wire.run(100);
    await settled(a1);
    const a2 = alice.checkLiveness(sa);
    wire.run(100);
    await settled(a2);
    expect(peerSa.peerRequestId).toBe(4);
    const sentBefore = bob.stats.sent;
    bob.receive({ bytes: held!.bytes, local: held!.remote, remote: held!.local });
    // §2.1: only the most recent response is cached; an older request is dropped.
    expect(messageId(held!)).toBe(2);
    expect(bob.stats.sent).toBe(sentBefore);
    expect(bob.stats.drops['message-id']).toBe(1);
    expect(peerSa.peerRequestId).toBe(4);
  });
});

describe('budget: a peer that never answers (RFC 7296 §2.4)', () => {
  it('initiate() rejects after `tries` retransmissions, 1 + tries datagrams, and the SA is gone', async () => {
    for (const tries of [0, 1, 3, 5]) {
      const { wire, alice } = pair({ alice: { retransmit: { timeout: 500, base: 2, tries, maxTimeout: 4000 } } });
      const failures: string[] = [];
      alice.on('ike-failed', (_s, reason) => failures.push(reason));
      const sent: number[] = [];
      wire.filter = (d) => {
        if (d.local.address === '10.0.0.1') sent.push(wire.clock.now());
        return 'drop';
      };
      const up = alice.initiate('to-bob');
      up.catch(() => {});
      wire.run(40_000, 100);
      await expect(settled(up)).rejects.toThrow(new RegExp(`after ${tries} retransmissions`));
      expect(sent, `tries ${tries}`).toHaveLength(1 + tries);
      expect(alice.stats.retransmits).toBe(tries);
      expect(alice.ikeSas()).toHaveLength(0);
      expect(failures).toHaveLength(1);
      expect(wire.clock.pending()).toBe(0);
    }
  });

  it('IKE_AUTH responses all lost: the initiator exhausts its budget and forgets the SA; the responder keeps its own', async () => {
    const { wire, alice, bob } = pair();
    wire.filter = (d) => (isResponseOf(ExchangeType.IKE_AUTH)(d) ? 'drop' : 'pass');
    // Bob authenticates Alice and establishes; Alice never hears back.
    const up = alice.initiate('to-bob');
    up.catch(() => {});
    wire.run(10_000);
    await expect(settled(up)).rejects.toThrow(/no response to IKE_AUTH after 3 retransmissions/);
    expect(alice.ikeSas()).toHaveLength(0);
    expect(alice.reservedSpis.size).toBe(0);
    // Bob answered the retransmissions from its cache; its SA is established (it cannot know).
    expect(bob.stats.responsesFromCache).toBe(3);
    expect(bob.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()[0]!.state).toBe('established');
  });

  it('an established IKE SA whose CREATE_CHILD_SA goes unanswered is deleted, and the request rejects', async () => {
    const { wire, alice } = pair();
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await settled(up);
    const down: string[] = [];
    alice.on('ike-down', (_s, reason) => down.push(reason));
    wire.filter = () => 'drop';
    const created = alice.createChildSa(sa, 'net', { pfs: false });
    const queued = alice.checkLiveness(sa);
    created.catch(() => {});
    wire.run(10_000);
    await expect(settled(created)).rejects.toThrow(/no response to CREATE_CHILD_SA after 3 retransmissions/);
    expect(await settled(queued)).toBe(false);
    expect(down).toEqual(['no response to CREATE_CHILD_SA after 3 retransmissions']);
    expect(alice.sas.size).toBe(0);
    expect(alice.childrenBySpi.size).toBe(0);
    expect(alice.reservedSpis.size).toBe(0);
  });
});
