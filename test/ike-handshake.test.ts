import { describe, expect, it } from 'vitest';
import { establish, MemoryWire, pskPair, ike, esp, child, PSK } from './support/peers.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import type { ChildSa } from '../control/ike/ike-sa.js';

function keysOf(events: ChildSa[]) {
  return events.map((c) => ({ spiIn: c.spiIn, spiOut: c.spiOut, encIn: Buffer.from(c.keys!.encIn).toString('hex'), encOut: Buffer.from(c.keys!.encOut).toString('hex') }));
}

describe('IKE_SA_INIT + IKE_AUTH in memory (RFC 7296 §1.2)', () => {
  it('establishes an IKE SA and a Child SA with matching SPIs and keys on both ends', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    const aliceChildren: ChildSa[] = [];
    const bobChildren: ChildSa[] = [];
    const aliceKeys: ReturnType<typeof keysOf> = [];
    const bobKeys: ReturnType<typeof keysOf> = [];
    alice.on('child-up', (c) => { aliceChildren.push(c); aliceKeys.push(...keysOf([c])); });
    bob.on('child-up', (c) => { bobChildren.push(c); bobKeys.push(...keysOf([c])); });
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await up;
    const peer = bob.ikeSas()[0]!;
    expect(sa.state).toBe('established');
    expect(peer.state).toBe('established');
    expect(spi64Hex(sa.spiI)).toBe(spi64Hex(peer.spiI));
    expect(spi64Hex(sa.spiR)).toBe(spi64Hex(peer.spiR));
    expect(sa.suite).toMatchObject({ encr: 20, encrKeyLength: 256, prf: 5, ke: 31 });
    expect(peer.peerKey).toBe('alice@example.org');
    expect(sa.peerKey).toBe('bob.example.org');
    expect(sa.peerMobike && peer.peerMobike).toBe(true);
    expect(sa.peerClone && peer.peerClone).toBe(true);
    // One Child SA each side, SPIs crossed, keys crossed (RFC 7296 §2.17).
    expect(aliceKeys).toHaveLength(1);
    expect(bobKeys).toHaveLength(1);
    expect(aliceKeys[0]!.spiIn).toBe(bobKeys[0]!.spiOut);
    expect(aliceKeys[0]!.spiOut).toBe(bobKeys[0]!.spiIn);
    expect(aliceKeys[0]!.encOut).toBe(bobKeys[0]!.encIn);
    expect(aliceKeys[0]!.encIn).toBe(bobKeys[0]!.encOut);
    expect(aliceKeys[0]!.encOut).not.toBe(aliceKeys[0]!.encIn);
    expect(aliceKeys[0]!.encOut).toHaveLength(40); // AES-128 key + 4-byte salt, hex
    // The engine wiped its copy after handing the keys to listeners (architecture §4.5).
    expect(aliceChildren[0]!.keys).toBeUndefined();
    expect(sa.children).toHaveLength(1);
    expect(sa.keyExchange).toBeUndefined();
  });

  it('works with ECDSA-less suites too: AES-CBC + HMAC-SHA2 with ecp256 and modp2048', async () => {
    for (const proposal of ['aes128-sha256-ecp256', 'aes256-sha384-modp2048', 'aes256-sha512-prfsha512-ecp384', 'chacha20poly1305-prfsha256-x25519']) {
      const { sa, peerSa } = await establish({ initiator: { ike: ike(proposal) }, responder: { ike: ike(proposal) } });
      expect(sa.state, proposal).toBe('established');
      expect(peerSa.children).toHaveLength(1);
    }
  });

  it('retries with the group the responder asks for (INVALID_KE_PAYLOAD, §1.2)', async () => {
    const { sa, wire } = await establish({
      initiator: { ike: ike('aes256gcm16-prfsha256-x25519-ecp256') },
      responder: { ike: ike('aes256gcm16-prfsha256-ecp256') },
    });
    expect(sa.suite?.ke).toBe(19);
    const inits = wire.log.filter((d) => d.bytes[18] === 34);
    expect(inits.length).toBe(4); // request, INVALID_KE_PAYLOAD, request, response
  });

  it('fails with NO_PROPOSAL_CHOSEN when nothing matches', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ initiator: { ike: ike('aes128-sha256-modp2048') }, responder: { ike: ike('aes256gcm16-prfsha256-x25519') } });
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    const up = alice.initiate('to-bob');
    // Unauthenticated, the error is final only once the retransmission budget is spent (RFC 7296 §2.21.1).
    wire.run(10_000);
    await expect(up).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    expect(alice.ikeSas()).toHaveLength(0);
  });

  it('fails with AUTHENTICATION_FAILED on a wrong PSK, and the responder forgets the SA', async () => {
    const wire = new MemoryWire();
    const wrong = new TextEncoder().encode('another pre-shared key entirely');
    const { initiator, responder } = pskPair({ initiator: { localAuth: { method: 'psk', psk: wrong } } });
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    const up = alice.initiate('to-bob');
    wire.run(100);
    await expect(up).rejects.toThrow(/AUTHENTICATION_FAILED/);
    expect(bob.ikeSas()).toHaveLength(0);
    expect(alice.ikeSas()).toHaveLength(0);
  });

  it('rejects a responder whose identity is not the configured one', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    responder.localId = { idType: 2, data: new TextEncoder().encode('mallory.example.org') };
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    const up = alice.initiate('to-bob');
    wire.run(100);
    await expect(up).rejects.toThrow(/identity/);
  });

  it('keeps the IKE SA but reports TS_UNACCEPTABLE for a Child SA whose selectors do not overlap', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ responder: { children: [child('net', '10.2.0.0/24', '10.9.0.0/24')] } });
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    const failed: string[] = [];
    alice.on('child-failed', (_sa, _name, reason) => failed.push(reason));
    const up = alice.initiate('to-bob');
    wire.run(100);
    const sa = await up;
    expect(sa.state).toBe('established');
    expect(sa.children).toHaveLength(0);
    expect(failed).toEqual(['TS_UNACCEPTABLE']);
  });

  it('narrows traffic selectors to the responder policy (§2.9)', async () => {
    const { sa, peerSa } = await establish({
      initiator: { children: [child('net', '10.1.0.0/16', '10.2.0.0/16')] },
      responder: { children: [child('net', '10.2.3.0/24', '10.1.4.0/24')] },
    });
    const { formatSelector } = await import('../control/ike/traffic-selectors.js');
    expect(sa.children[0]!.localTs.map(formatSelector)).toEqual(['10.1.4.0/24']);
    expect(sa.children[0]!.remoteTs.map(formatSelector)).toEqual(['10.2.3.0/24']);
    expect(peerSa.children[0]!.localTs.map(formatSelector)).toEqual(['10.2.3.0/24']);
  });

  it('reports NO_PROPOSAL_CHOSEN for the Child SA when ESP proposals do not match', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ responder: { children: [child('net', '10.2.0.0/24', '10.1.0.0/24', esp('aes256gcm16'))] } });
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    const failed: string[] = [];
    alice.on('child-failed', (_sa, _name, reason) => failed.push(reason));
    const up = alice.initiate('to-bob');
    wire.run(100);
    expect((await up).children).toHaveLength(0);
    expect(failed).toEqual(['NO_PROPOSAL_CHOSEN']);
  });

  it('assigns a virtual IP from a pool to an initiator that asks with CP (§2.19)', async () => {
    const { sa, peerSa } = await establish({
      initiator: { requestVirtualIp: true, children: [{ ...child('net', '10.1.0.0/24', '10.2.0.0/24'), localTs: ['dynamic'] }] },
      responder: { pools: ['10.99.0.0/24'], children: [{ ...child('net', '10.2.0.0/24', '10.1.0.0/24'), remoteTs: ['dynamic'] }] },
    });
    expect(sa.virtualIp).toBe('10.99.0.1');
    expect(peerSa.peerVirtualIp).toBe('10.99.0.1');
    const { formatSelector } = await import('../control/ike/traffic-selectors.js');
    expect(sa.children[0]!.localTs.map(formatSelector)).toEqual(['10.99.0.1/32']);
  });

  it('PSK and identities of every type authenticate', async () => {
    for (const [a, b] of [['10.0.0.1', '10.0.0.2'], ['@#0102abcd', 'gw.example.org'], ['alice@example.org', '2001:db8::2']]) {
      const { id } = await import('./support/peers.js');
      const { sa } = await establish({
        initiator: { localId: id(a!), remoteId: id(b!) },
        responder: { localId: id(b!), remoteId: id(a!) },
      });
      expect(sa.state).toBe('established');
    }
    expect(PSK.length).toBeGreaterThan(16);
  });
});

describe('unauthenticated errors for undecodable IKE_SA_INIT requests (RFC 7296 §2.5)', () => {
  async function answerTo(bytes: Uint8Array) {
    const { MemoryWire: Wire, pskPair: pair } = await import('./support/peers.js');
    const { decodeMessage } = await import('../control/wire/message.js');
    const wire = new Wire();
    const bob = wire.engine('10.0.0.2', [pair().responder]);
    const replies: Uint8Array[] = [];
    wire.engine('10.0.0.1', []).receive = (d) => void replies.push(d.bytes);
    bob.receive({ bytes, local: { address: '10.0.0.2', port: 500 }, remote: { address: '10.0.0.1', port: 500 } });
    wire.flush();
    expect(bob.ikeSas()).toHaveLength(0);
    return replies.map((r) => decodeMessage(r));
  }

  function initRequest(payloads: import('../control/wire/payloads.js').Payload[]) {
    return import('../control/wire/message.js').then(({ encodeMessage }) =>
      encodeMessage({ spiI: new Uint8Array(8).fill(7), spiR: new Uint8Array(8), version: 0x20, exchangeType: 34, flags: 0x08, messageId: 0 }, payloads),
    );
  }

  it('answers INVALID_MAJOR_VERSION to a higher major version, and nothing to IKEv1', async () => {
    const bytes = await initRequest([{ type: 40, data: new Uint8Array(32) }]);
    bytes[17] = 0x30;
    const [reply] = await answerTo(bytes);
    expect(reply?.ok && reply.value.payloads[0]).toMatchObject({ type: 41, notifyType: 5 });
    expect(reply?.ok && reply.value.header.version).toBe(0x20);
    bytes[17] = 0x10;
    expect(await answerTo(bytes)).toHaveLength(0);
  });

  it('answers UNSUPPORTED_CRITICAL_PAYLOAD naming the payload type', async () => {
    const bytes = await initRequest([{ type: 200, critical: false, data: new Uint8Array(4) }, { type: 40, data: new Uint8Array(32) }]);
    bytes[28 + 1]! |= 0x80; // set the C bit of the unknown payload
    const [reply] = await answerTo(bytes);
    expect(reply?.ok && reply.value.payloads[0]).toMatchObject({ type: 41, notifyType: 1, data: new Uint8Array([200]) });
  });
});

describe('forced UDP encapsulation (encap: true, RFC 3948)', () => {
  it('the forcing end announces a NAT in front of itself, and both ends encapsulate ESP in UDP', async () => {
    const { sa, peerSa } = await establish({ initiator: { forceEncap: true } });
    expect(sa.natLocal).toBe(true);
    expect(peerSa.natRemote).toBe(true);
    expect(sa.children[0]!.udpEncap).toBe(true);
    expect(peerSa.children[0]!.udpEncap).toBe(true);
    // Without it, the same path has no NAT and no encapsulation.
    const plain = await establish();
    expect(plain.sa.natLocal || plain.sa.natRemote).toBe(false);
    expect(plain.sa.children[0]!.udpEncap).toBe(false);
  });

  it('a responder forcing encapsulation makes the initiator see a NAT too', async () => {
    const { sa, peerSa } = await establish({ responder: { forceEncap: true } });
    expect(peerSa.natLocal).toBe(true);
    expect(sa.natRemote).toBe(true);
    expect(sa.children[0]!.udpEncap && peerSa.children[0]!.udpEncap).toBe(true);
  });
});

describe('late and repeated requests around an IKE SA\'s life (RFC 7296 §2.1)', () => {
  it('a late copy of IKE_SA_INIT after IKE_AUTH starts no second SA', async () => {
    const { wire, bob } = await establish();
    const init = wire.log.find((d) => d.bytes[18] === 34 && (d.bytes[19]! & 0x20) === 0)!;
    bob.receive({ bytes: init.bytes, local: init.remote, remote: init.local });
    wire.flush();
    expect(bob.ikeSas()).toHaveLength(1);
    expect(bob.halfOpenCount()).toBe(0);
    expect(bob.stats.drops['late-retransmit']).toBe(1);
  });

  it('a lost answer to a Delete is sent again from the deleted SA\'s cache, so the peer is not left retrying', async () => {
    const { wire, alice, bob, sa } = await establish();
    let dropped = 0;
    // Lose bob's first answer to the Delete (an INFORMATIONAL response).
    wire.filter = (d) => (d.local.address === '10.0.0.2' && d.bytes[18] === 37 && (d.bytes[19]! & 0x20) !== 0 && dropped++ === 0 ? 'drop' : 'pass');
    const closed = alice.closeIkeSa(sa);
    wire.run(2000);
    await closed;
    expect(bob.ikeSas()).toHaveLength(0);
    expect(alice.ikeSas()).toHaveLength(0);
    expect(dropped).toBeGreaterThanOrEqual(1);
    expect(bob.stats.responsesFromCache).toBe(1);
    // Alice got the answer on her first retransmission, long before her budget ran out.
    expect(alice.stats.retransmits).toBe(1);
  });
});

describe('NAT mapping changes (RFC 7296 §2.23)', () => {
  it('a request from a new port behind a NAT moves the IKE SA, and its Child SAs follow (ike-moved)', async () => {
    const { wire, alice, bob, sa, peerSa } = await establish({ initiator: { forceEncap: true, mobike: false }, responder: { mobike: false } });
    expect(peerSa.natRemote).toBe(true);
    const moved: number[] = [];
    bob.on('ike-moved', (s) => moved.push(s.remote.port));
    // The NAT in front of alice picks a new public port.
    wire.tamper = (d) => (d.local.address === '10.0.0.1' ? { ...d, local: { ...d.local, port: 31000 } } : d);
    const live = alice.checkLiveness(sa);
    wire.run(100);
    wire.tamper = undefined;
    expect(peerSa.remote.port).toBe(31000);
    expect(moved).toEqual([31000]);
    expect(await live).toBe(true);
  });

  it('without a NAT in front of the peer, an established SA does not follow a changed source', async () => {
    const { wire, alice, bob, sa, peerSa } = await establish({ initiator: { mobike: false }, responder: { mobike: false } });
    const moved: unknown[] = [];
    bob.on('ike-moved', (s) => moved.push(s));
    wire.tamper = (d) => (d.local.address === '10.0.0.1' ? { ...d, local: { ...d.local, port: 31000 } } : d);
    const live = alice.checkLiveness(sa);
    wire.run(100);
    wire.tamper = undefined;
    expect(peerSa.remote.port).toBe(500);
    expect(moved).toEqual([]);
    // The answer still goes where the request came from (§2.23), so liveness holds.
    expect(await live).toBe(true);
  });
});
