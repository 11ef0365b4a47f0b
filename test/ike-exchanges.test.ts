// CREATE_CHILD_SA and INFORMATIONAL exchanges and the responder's defences
// (COOKIE, half-open limits and expiry), two engines wired in memory
// (RFC 7296 §1.3, §1.4, §2.4, §2.6, §2.21).
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair, esp, child } from './support/peers.js';
import type { ChildSa } from '../control/ike/ike-sa.js';
import type { IkeEngine } from '../control/ike/engine.js';
import { ExchangeType, HeaderFlag, KeGroup, PayloadType, TransformType } from '../control/wire/constants.js';
import { decodeMessage } from '../control/wire/message.js';
import { openMessage } from '../control/ike/protect.js';

/** `p` once the wire has gone quiet: settled by then, or the test fails at once instead of hanging. */
function settled<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet'))))]);
}

interface CapturedChild {
  child: ChildSa;
  spiIn: number;
  spiOut: number;
  encIn: string;
  encOut: string;
}

/** Copy each new Child SA's keys while the engine still holds them (listeners run synchronously). */
function captureChildren(engine: IkeEngine): CapturedChild[] {
  const out: CapturedChild[] = [];
  engine.on('child-up', (c) => {
    out.push({
      child: c,
      spiIn: c.spiIn,
      spiOut: c.spiOut,
      encIn: Buffer.from(c.keys!.encIn).toString('hex'),
      encOut: Buffer.from(c.keys!.encOut).toString('hex'),
    });
  });
  return out;
}

const isRequest = (bytes: Uint8Array, exchange: number) => bytes[18] === exchange && (bytes[19]! & HeaderFlag.RESPONSE) === 0;

describe('CREATE_CHILD_SA for an additional Child SA (RFC 7296 §1.3.1)', () => {
  for (const [label, proposal, pfs] of [
    ['with PFS (x25519)', 'aes128gcm16-x25519', true],
    ['without PFS', 'aes128gcm16', false],
  ] as const) {
    it(`creates a second Child SA ${label} whose keys match crosswise`, async () => {
      const wire = new MemoryWire();
      const { initiator, responder } = pskPair({
        initiator: { children: [child('net', '10.1.0.0/24', '10.2.0.0/24', esp(proposal))] },
        responder: { children: [child('net', '10.2.0.0/24', '10.1.0.0/24', esp(proposal))] },
      });
      const alice = wire.engine('10.0.0.1', [initiator]);
      const bob = wire.engine('10.0.0.2', [responder]);
      const aliceUp = captureChildren(alice);
      const bobUp = captureChildren(bob);
      const up = alice.initiate('to-bob');
      wire.run(100);
      const sa = await settled(up);
      expect(aliceUp).toHaveLength(1);
      const logBefore = wire.log.length;

      const second = alice.createChildSa(sa, 'net', { pfs });
      wire.run(100);
      const created = await settled(second);

      expect(aliceUp).toHaveLength(2);
      expect(bobUp).toHaveLength(2);
      const [a1, a2] = aliceUp as [CapturedChild, CapturedChild];
      const [b1, b2] = bobUp as [CapturedChild, CapturedChild];
      expect(created).toBe(a2.child);
      // SPIs cross, keys cross (RFC 7296 §2.17).
      expect(a2.spiIn).toBe(b2.spiOut);
      expect(a2.spiOut).toBe(b2.spiIn);
      expect(a2.encOut).toBe(b2.encIn);
      expect(a2.encIn).toBe(b2.encOut);
      expect(a2.encIn).not.toBe(a2.encOut);
      // A new Child SA: new SPIs, new keys (fresh nonces, §2.17).
      expect(new Set([a1.spiIn, a2.spiIn, b1.spiIn, b2.spiIn]).size).toBe(4);
      expect(a2.encOut).not.toBe(a1.encOut);
      expect(a2.encIn).not.toBe(a1.encIn);
      // The request carried a KE payload exactly when PFS was asked for (§1.3.1).
      const requests = wire.log.slice(logBefore).filter((d) => isRequest(d.bytes, ExchangeType.CREATE_CHILD_SA));
      expect(requests).toHaveLength(1);
      const peerSa = bob.ikeSas()[0]!;
      const decoded = decodeMessage(requests[0]!.bytes);
      const opened = decoded.ok ? openMessage(peerSa, decoded.value) : undefined;
      expect(opened?.ok).toBe(true);
      const ke = opened?.ok ? opened.value.find((x) => x.type === PayloadType.KE) : undefined;
      expect(ke?.type === PayloadType.KE ? ke.group : undefined).toBe(pfs ? KeGroup.CURVE25519 : undefined);
      expect(created.suite.ke).toBe(pfs ? KeGroup.CURVE25519 : undefined);
      expect(sa.children.map((c) => c.spiIn)).toEqual([a1.spiIn, a2.spiIn]);
      expect(peerSa.children.map((c) => c.spiIn)).toEqual([b1.spiIn, b2.spiIn]);
      expect(alice.childrenBySpi.size).toBe(2);
      expect(bob.childrenBySpi.size).toBe(2);
      expect(a2.child.keys).toBeUndefined();
      expect(sa.nextRequestId).toBe(3); // IKE_SA_INIT 0, IKE_AUTH 1, CREATE_CHILD_SA 2
      expect(peerSa.peerRequestId).toBe(3);
    });
  }
});

/** Alice and Bob with their policies, engines built with per-side options, not yet connected. */
function pair(over: Parameters<typeof pskPair>[0] = {}, opts: { alice?: Parameters<MemoryWire['engine']>[2]; bob?: Parameters<MemoryWire['engine']>[2] } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine('10.0.0.1', [initiator], opts.alice);
  const bob = wire.engine('10.0.0.2', [responder], opts.bob);
  return { wire, alice, bob, initiator, responder };
}

async function up(p: ReturnType<typeof pair>) {
  const done = p.alice.initiate('to-bob');
  p.wire.run(100);
  const sa = await settled(done);
  return { sa, peerSa: p.bob.ikeSas()[0]! };
}

describe('CREATE_CHILD_SA failures (RFC 7296 §1.3, §2.21.3)', () => {
  it('the initiator retries with the group INVALID_KE_PAYLOAD names, under a new message ID', async () => {
    // Bob's answer is forged with Bob's own keys, so that the initiator half is
    // tested on its own, whatever the responder half would choose.
    const p = pair({ initiator: { children: [child('net', '10.1.0.0/24', '10.2.0.0/24', esp('aes128gcm16-x25519-ecp256'))] } });
    const { sa, peerSa } = await up(p);
    const { sealMessage } = await import('../control/ike/protect.js');
    const { notify, u16Bytes } = await import('../control/ike/payload-builders.js');
    const { NotifyType } = await import('../control/wire/constants.js');
    const requests: Array<{ mid: number; ke: number | undefined; proposalGroups: number[] }> = [];
    p.wire.filter = (d) => {
      if (!isRequest(d.bytes, ExchangeType.CREATE_CHILD_SA)) return 'pass';
      const msg = decodeMessage(d.bytes);
      if (!msg.ok) throw new Error('undecodable request');
      const opened = openMessage(peerSa, msg.value);
      if (!opened.ok) throw new Error('request does not open');
      const ke = opened.value.find((x) => x.type === PayloadType.KE);
      const saP = opened.value.find((x) => x.type === PayloadType.SA);
      requests.push({
        mid: msg.value.header.messageId,
        ke: ke?.type === PayloadType.KE ? ke.group : undefined,
        proposalGroups: saP?.type === PayloadType.SA ? saP.proposals.flatMap((pr) => pr.transforms.filter((t) => t.type === TransformType.KE).map((t) => t.id)) : [],
      });
      if (requests.length > 1) return 'drop';
      // Answer the first request with INVALID_KE_PAYLOAD(ecp256), as Bob would.
      peerSa.peerRequestId++;
      const reply = sealMessage(peerSa, ExchangeType.CREATE_CHILD_SA, msg.value.header.messageId, true, [notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(KeGroup.ECP_256))]);
      p.wire.queue.push({ bytes: reply, local: d.remote, remote: d.local });
      return 'drop';
    };
    const created = p.alice.createChildSa(sa, 'net', { pfs: true });
    created.catch(() => {});
    p.wire.run(100);
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({ mid: 2, ke: KeGroup.CURVE25519 });
    expect(requests[1]).toMatchObject({ mid: 3, ke: KeGroup.ECP_256 });
    expect(requests[1]!.proposalGroups).toContain(KeGroup.ECP_256);
    expect(sa.state).toBe('established');
  });

  it('rejects with NO_PROPOSAL_CHOSEN when the ESP proposals do not match; the IKE SA stays up', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    p.initiator.children.push(child('strong', '10.1.0.0/24', '10.2.0.0/24', esp('aes256gcm16')));
    const failed: string[] = [];
    p.alice.on('child-failed', (_sa, name, reason) => failed.push(`${name}: ${reason}`));
    const created = p.alice.createChildSa(sa, 'strong', { pfs: false });
    p.wire.run(100);
    await expect(settled(created)).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    expect(failed).toEqual(['strong: responder answered NO_PROPOSAL_CHOSEN']);
    expect(sa.state).toBe('established');
    expect(peerSa.state).toBe('established');
    expect(sa.children).toHaveLength(1);
    expect(peerSa.children).toHaveLength(1);
    expect(p.alice.reservedSpis.size).toBe(0);
    // The IKE SA still works.
    const alive = p.alice.checkLiveness(sa);
    p.wire.run(100);
    expect(await settled(alive)).toBe(true);
  });

  it('a responder whose proposals require PFS refuses a request without KE (NO_PROPOSAL_CHOSEN)', async () => {
    const p = pair({ responder: { children: [child('net', '10.2.0.0/24', '10.1.0.0/24', esp('aes128gcm16-x25519'))] } });
    const { sa, peerSa } = await up(p);
    const created = p.alice.createChildSa(sa, 'net', { pfs: false });
    p.wire.run(100);
    await expect(settled(created)).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    expect(peerSa.children).toHaveLength(1);
    expect(p.bob.childrenBySpi.size).toBe(1);
    expect(sa.state).toBe('established');
  });

  it('rejects with TS_UNACCEPTABLE when the selectors do not overlap; the IKE SA stays up', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    p.initiator.children.push(child('elsewhere', '10.7.0.0/24', '10.8.0.0/24'));
    const created = p.alice.createChildSa(sa, 'elsewhere', { pfs: false });
    p.wire.run(100);
    await expect(settled(created)).rejects.toThrow(/TS_UNACCEPTABLE/);
    expect(sa.state).toBe('established');
    expect(peerSa.children).toHaveLength(1);
    expect(p.bob.childrenBySpi.size).toBe(1);
    // And a good one afterwards succeeds under the next message ID.
    const again = p.alice.createChildSa(sa, 'net', { pfs: false });
    p.wire.run(100);
    await settled(again);
    expect(sa.children).toHaveLength(2);
    expect(peerSa.children).toHaveLength(2);
  });

  it('answers NO_ADDITIONAL_SAS once limits.childSasPerPeer is reached (architecture §4.6)', async () => {
    const p = pair({}, { bob: { limits: { childSasPerPeer: 2 } } });
    const { sa, peerSa } = await up(p);
    const second = p.alice.createChildSa(sa, 'net', { pfs: false });
    p.wire.run(100);
    await settled(second);
    const third = p.alice.createChildSa(sa, 'net', { pfs: false });
    p.wire.run(100);
    await expect(settled(third)).rejects.toThrow(/NO_ADDITIONAL_SAS/);
    expect(peerSa.children).toHaveLength(2);
    expect(sa.children).toHaveLength(2);
    expect(sa.state).toBe('established');
    // Freeing one makes room again.
    const closed = p.alice.closeChildSa(sa.children[0]!);
    p.wire.run(100);
    await settled(closed);
    const fourth = p.alice.createChildSa(sa, 'net', { pfs: false });
    p.wire.run(100);
    await settled(fourth);
    expect(peerSa.children).toHaveLength(2);
  });
});

describe('INFORMATIONAL (RFC 7296 §1.4, §2.4)', () => {
  it('closeChildSa removes the Child SA on both ends', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    const down: string[] = [];
    p.alice.on('child-down', (c, reason) => down.push(`alice ${c.spiIn} ${reason}`));
    p.bob.on('child-down', (c, reason) => down.push(`bob ${c.spiIn} ${reason}`));
    const a = sa.children[0]!;
    const b = peerSa.children[0]!;
    const closed = p.alice.closeChildSa(a);
    p.wire.run(100);
    await settled(closed);
    expect(down.sort()).toEqual([`alice ${a.spiIn} deleted`, `bob ${b.spiIn} deleted by peer`].sort());
    expect(sa.children).toHaveLength(0);
    expect(peerSa.children).toHaveLength(0);
    expect(p.alice.childrenBySpi.size).toBe(0);
    expect(p.bob.childrenBySpi.size).toBe(0);
    expect(a.state).toBe('deleted');
    expect(b.state).toBe('deleted');
    expect(sa.state).toBe('established');
    expect(peerSa.state).toBe('established');
  });

  it('closeIkeSa removes the IKE SA and its Child SAs on both ends and leaves no timer armed', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    const second = p.alice.createChildSa(sa, 'net', { pfs: false });
    p.wire.run(100);
    await settled(second);
    const events: string[] = [];
    for (const [name, e] of [['alice', p.alice], ['bob', p.bob]] as const) {
      e.on('ike-down', (_s, reason) => events.push(`${name} ike-down ${reason}`));
      e.on('child-down', () => events.push(`${name} child-down`));
    }
    const closed = p.alice.closeIkeSa(sa);
    p.wire.run(100);
    await settled(closed);
    expect(events.filter((e) => e.includes('ike-down')).sort()).toEqual(['alice ike-down deleted', 'bob ike-down deleted by peer']);
    expect(events.filter((e) => e === 'alice child-down')).toHaveLength(2);
    expect(events.filter((e) => e === 'bob child-down')).toHaveLength(2);
    expect(p.alice.sas.size).toBe(0);
    expect(p.bob.sas.size).toBe(0);
    expect(p.alice.childrenBySpi.size).toBe(0);
    expect(p.bob.childrenBySpi.size).toBe(0);
    expect(p.bob.halfOpenCount()).toBe(0);
    expect(sa.state).toBe('dead');
    expect(peerSa.state).toBe('dead');
    expect(sa.keys).toBeUndefined();
    expect(peerSa.keys).toBeUndefined();
    p.wire.run(1000);
    expect(p.wire.clock.pending()).toBe(0);
  });

  it('checkLiveness resolves true while the peer answers', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    for (let i = 0; i < 3; i++) {
      const alive = p.alice.checkLiveness(sa);
      p.wire.run(100);
      expect(await settled(alive)).toBe(true);
    }
    expect(sa.nextRequestId).toBe(5);
    expect(peerSa.peerRequestId).toBe(5);
    // And from the responder's side too (its own message IDs, §2.2).
    const back = p.bob.checkLiveness(peerSa);
    p.wire.run(100);
    expect(await settled(back)).toBe(true);
    expect(peerSa.nextRequestId).toBe(1);
    expect(sa.peerRequestId).toBe(1);
  });

  it('checkLiveness resolves false when the peer is gone, and the IKE SA is deleted after the retransmission budget (§2.4)', async () => {
    const p = pair();
    const { sa } = await up(p);
    const down: string[] = [];
    p.alice.on('ike-down', (_s, reason) => down.push(reason));
    const childDown: string[] = [];
    p.alice.on('child-down', (_c, reason) => childDown.push(reason));
    p.wire.filter = () => 'drop';
    const start = p.wire.clock.now();
    let answered: boolean | undefined;
    const alive = p.alice.checkLiveness(sa).then((v) => (answered = v));
    // 500 + 1000 + 2000 + 4000 ms: three retransmissions, then the last wait.
    p.wire.run(7400);
    await Promise.resolve();
    expect(answered).toBeUndefined();
    expect(sa.state).toBe('established');
    p.wire.run(200);
    await settled(alive);
    expect(answered).toBe(false);
    expect(p.wire.clock.now() - start).toBeGreaterThanOrEqual(7500);
    expect(sa.state).toBe('dead');
    expect(p.alice.sas.size).toBe(0);
    expect(down).toEqual(['no response to INFORMATIONAL (liveness) after 3 retransmissions']);
    expect(childDown).toHaveLength(1);
    expect(p.alice.childrenBySpi.size).toBe(0);
    expect(p.alice.stats.retransmits).toBe(3);
  });
});

describe('collisions (RFC 7296 §2.25)', () => {
  it('both ends delete the same Child SA at once: each answers without re-listing it, and it is gone on both (§2.25.1)', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    const down: string[] = [];
    p.alice.on('child-down', () => down.push('alice'));
    p.bob.on('child-down', () => down.push('bob'));
    const answers: Uint8Array[] = [];
    p.wire.filter = (d) => {
      if (d.bytes[18] === ExchangeType.INFORMATIONAL && (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0) answers.push(d.bytes);
      return 'pass';
    };
    const a = p.alice.closeChildSa(sa.children[0]!);
    const b = p.bob.closeChildSa(peerSa.children[0]!);
    p.wire.run(100);
    await settled(Promise.all([a, b]));
    expect(down.sort()).toEqual(['alice', 'bob']);
    expect(p.alice.childrenBySpi.size).toBe(0);
    expect(p.bob.childrenBySpi.size).toBe(0);
    expect(sa.state).toBe('established');
    expect(peerSa.state).toBe('established');
    // Both responses are empty INFORMATIONALs: header + SK with no inner payload.
    expect(answers).toHaveLength(2);
    for (const r of answers) expect(r[28]).toBe(0);
  });

  it('both ends delete the IKE SA at once: both promises resolve, nothing is left (§2.25.2)', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    const downs: string[] = [];
    p.alice.on('ike-down', (_s, reason) => downs.push(`alice ${reason}`));
    p.bob.on('ike-down', (_s, reason) => downs.push(`bob ${reason}`));
    const a = p.alice.closeIkeSa(sa);
    const b = p.bob.closeIkeSa(peerSa);
    p.wire.run(100);
    await settled(Promise.all([a, b]));
    expect(downs).toHaveLength(2);
    expect(p.alice.sas.size + p.bob.sas.size).toBe(0);
    expect(p.alice.childrenBySpi.size + p.bob.childrenBySpi.size).toBe(0);
    p.wire.run(10_000);
    expect(p.wire.clock.pending()).toBe(0);
  });

  it('CREATE_CHILD_SA from both ends at once: two more Child SAs, each side with the other as responder', async () => {
    const p = pair();
    const { sa, peerSa } = await up(p);
    const a = p.alice.createChildSa(sa, 'net', { pfs: false });
    const b = p.bob.createChildSa(peerSa, 'net', { pfs: false });
    p.wire.run(100);
    const [ca, cb] = await settled(Promise.all([a, b]));
    expect(sa.children).toHaveLength(3);
    expect(peerSa.children).toHaveLength(3);
    expect(peerSa.children.find((c) => c.spiIn === ca.spiOut)).toBeDefined();
    expect(sa.children.find((c) => c.spiIn === cb.spiOut)).toBeDefined();
    expect(new Set([...p.alice.childrenBySpi.keys(), ...p.bob.childrenBySpi.keys()]).size).toBe(6);
  });
});

describe('COOKIE (RFC 7296 §2.6)', () => {
  const bytesOf = (d: { bytes: Uint8Array }) => d.bytes;
  it('challenges every IKE_SA_INIT at threshold 0; the initiator retries with N(COOKIE) first and the SA comes up', async () => {
    const p = pair({}, { bob: { limits: { halfOpenCookieThreshold: 0 } } });
    const bobSasWhenAnswering: number[] = [];
    const inits: Uint8Array[] = [];
    p.wire.filter = (d) => {
      if (d.bytes[18] === ExchangeType.IKE_SA_INIT) inits.push(bytesOf(d));
      if (d.local.address === '10.0.0.2' && d.bytes[18] === ExchangeType.IKE_SA_INIT) bobSasWhenAnswering.push(p.bob.ikeSas().length);
      return 'pass';
    };
    const { sa, peerSa } = await up(p);
    expect(sa.state).toBe('established');
    expect(peerSa.state).toBe('established');
    expect(inits).toHaveLength(4); // request, COOKIE, request with cookie, response
    const [req1, challenge, req2, resp] = inits as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    // The challenge: a response with a zero responder SPI carrying only N(COOKIE).
    expect(challenge[19]! & HeaderFlag.RESPONSE).toBe(HeaderFlag.RESPONSE);
    expect([...challenge.subarray(8, 16)]).toEqual(new Array(8).fill(0));
    expect(challenge[16]).toBe(41); // first payload: Notify
    expect((challenge[28 + 6]! << 8) | challenge[28 + 7]!).toBe(16390); // COOKIE
    const cookie = challenge.subarray(28 + 8);
    // The retry puts N(COOKIE) first with the same data, and is otherwise the first request (same SPI, §2.6).
    expect(req2[16]).toBe(41);
    expect((req2[28 + 6]! << 8) | req2[28 + 7]!).toBe(16390);
    expect(Buffer.from(req2.subarray(36, 36 + cookie.length)).equals(Buffer.from(cookie))).toBe(true);
    expect(Buffer.from(req2.subarray(0, 8)).equals(Buffer.from(req1.subarray(0, 8)))).toBe(true);
    expect(Buffer.from(req2.subarray(28 + 8 + cookie.length)).equals(Buffer.from(req1.subarray(28)))).toBe(true);
    expect(resp[19]! & HeaderFlag.RESPONSE).toBe(HeaderFlag.RESPONSE);
    // No state for the request without a cookie; state only once the cookie checked out.
    expect(bobSasWhenAnswering).toEqual([0, 1]);
    expect(p.bob.stats.drops.cookie).toBe(1);
  });

  it('refuses a wrong cookie and keeps no state for it', async () => {
    const p = pair({}, { bob: { limits: { halfOpenCookieThreshold: 0 } } });
    let tampered = 0;
    p.wire.tamper = (d) => {
      // Flip a bit of the cookie hash in every request that carries one.
      if (d.bytes[18] === ExchangeType.IKE_SA_INIT && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0 && d.bytes[16] === 41) {
        const bytes = new Uint8Array(d.bytes);
        bytes[28 + 8 + 10]! ^= 0x01;
        tampered++;
        return { ...d, bytes };
      }
      return d;
    };
    const bobSeen: number[] = [];
    p.bob.on('drop', () => bobSeen.push(p.bob.ikeSas().length));
    const failed = p.alice.initiate('to-bob');
    // The fourth challenge is not followed; being unauthenticated (RFC 7296 §2.21.1) it does
    // not end the SA either: the request is retransmitted (3 times) until the budget is spent.
    p.wire.run(10_000);
    await expect(settled(failed)).rejects.toThrow(/COOKIE/);
    expect(tampered).toBe(3 + 3); // three requests with a cookie, then three retransmissions of the last
    expect(p.bob.stats.drops.cookie).toBe(4 + 3);
    expect(bobSeen).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(p.bob.ikeSas()).toHaveLength(0);
    expect(p.bob.halfOpenCount()).toBe(0);
    expect(p.alice.ikeSas()).toHaveLength(0);
  });

  it('a cookie made for another initiator SPI does not verify', async () => {
    const p = pair({}, { bob: { limits: { halfOpenCookieThreshold: 0 } } });
    const { makeCookie } = await import('../control/crypto/cookie.js');
    // A cookie for the right nonce and address but another SPI (replayed from another exchange).
    const wrong = makeCookie(p.bob.cookieSecret, new Uint8Array(32), '10.0.0.1', new Uint8Array(8).fill(7));
    p.wire.tamper = (d) => {
      if (d.bytes[18] === ExchangeType.IKE_SA_INIT && (d.bytes[19]! & HeaderFlag.RESPONSE) === 0 && d.bytes[16] === 41) {
        const bytes = new Uint8Array(d.bytes);
        bytes.set(wrong, 36);
        return { ...d, bytes };
      }
      return d;
    };
    const failed = p.alice.initiate('to-bob');
    p.wire.run(10_000); // the last challenge waits out the retransmission budget (RFC 7296 §2.21.1)
    await expect(settled(failed)).rejects.toThrow(/COOKIE/);
    expect(p.bob.ikeSas()).toHaveLength(0);
  });
});

describe('half-open IKE SAs (architecture §4.6)', () => {
  const dropAuthRequests = (d: { bytes: Uint8Array }) => (isRequest(d.bytes, ExchangeType.IKE_AUTH) ? 'drop' : 'pass') as 'drop' | 'pass';

  it('drops IKE_SA_INIT requests past halfOpenMax, and accepts again once a slot is free', async () => {
    const p = pair({}, { bob: { limits: { halfOpenMax: 2 }, halfOpenTimeout: 1000 } });
    p.wire.filter = dropAuthRequests;
    const attempts = [p.alice.initiate('to-bob'), p.alice.initiate('to-bob'), p.alice.initiate('to-bob')];
    for (const a of attempts) a.catch(() => {});
    p.wire.run(100);
    expect(p.bob.halfOpenCount()).toBe(2);
    expect(p.bob.ikeSas()).toHaveLength(2);
    expect(p.bob.ikeSas().every((s) => s.state === 'connecting')).toBe(true);
    expect(p.bob.stats.drops['half-open-limit']).toBe(1);
    // The third initiator's retransmission at 500 ms is dropped as well.
    p.wire.run(500);
    expect(p.bob.stats.drops['half-open-limit']).toBe(2);
    expect(p.bob.halfOpenCount()).toBe(2);
    // At 1000 ms the first two expire; the retransmission at 1500 ms gets in.
    p.wire.run(1000);
    expect(p.bob.halfOpenCount()).toBe(1);
    expect(p.bob.stats.drops['half-open-limit']).toBe(2);
    p.wire.run(10_000);
    await settled(Promise.allSettled(attempts));
    expect(p.bob.halfOpenCount()).toBe(0);
    expect(p.alice.ikeSas()).toHaveLength(0);
  });

  it('deletes a responder SA whose IKE_AUTH never arrives after halfOpenTimeout', async () => {
    const p = pair({}, { bob: { halfOpenTimeout: 2000 } });
    const failed: string[] = [];
    p.bob.on('ike-failed', (_s, reason) => failed.push(reason));
    p.wire.filter = dropAuthRequests;
    const attempt = p.alice.initiate('to-bob');
    attempt.catch(() => {});
    p.wire.run(100);
    const [half] = p.bob.ikeSas();
    expect(half?.state).toBe('connecting');
    expect(p.bob.halfOpenCount()).toBe(1);
    p.wire.run(1800);
    expect(p.bob.ikeSas()).toHaveLength(1);
    p.wire.run(200);
    expect(p.bob.ikeSas()).toHaveLength(0);
    expect(p.bob.halfOpenCount()).toBe(0);
    expect(half!.state).toBe('dead');
    expect(half!.keys).toBeUndefined();
    expect(failed).toEqual(['half-open IKE SA timed out']);
    // A late IKE_AUTH (the retransmission at 3500 ms) finds nothing.
    p.wire.filter = () => 'pass';
    p.wire.run(2000);
    expect(p.bob.stats.drops['unknown-spi']).toBe(1);
    p.wire.run(10_000);
    await expect(settled(attempt)).rejects.toThrow(/no response to IKE_AUTH/);
    expect(p.wire.clock.pending()).toBe(0);
  });
});

describe('fixed engine bugs: PFS group retry and queued exchanges on close', () => {
  it('INVALID_KE_PAYLOAD: the responder asks for its group, the initiator retries with it and the Child SA comes up', async () => {
    const p = pair({
      initiator: { children: [child('net', '10.1.0.0/24', '10.2.0.0/24', esp('aes128gcm16-x25519-ecp256'))] },
      responder: { children: [child('net', '10.2.0.0/24', '10.1.0.0/24', esp('aes128gcm16-ecp256'))] },
    });
    const { sa, peerSa } = await up(p);
    const aliceUp = captureChildren(p.alice);
    const bobUp = captureChildren(p.bob);
    const before = p.wire.log.length;
    const created = p.alice.createChildSa(sa, 'net', { pfs: true });
    p.wire.run(100);
    const c = await settled(created);
    expect(c.suite.ke).toBe(19);
    // Two CREATE_CHILD_SA exchanges: INVALID_KE_PAYLOAD, then the retry under the next message ID (§1.3).
    const requests = p.wire.log.slice(before).filter((d) => isRequest(d.bytes, ExchangeType.CREATE_CHILD_SA));
    expect(requests.map((d) => new DataView(d.bytes.buffer, d.bytes.byteOffset).getUint32(20))).toEqual([2, 3]);
    expect(aliceUp).toHaveLength(1);
    expect(bobUp).toHaveLength(1);
    expect(aliceUp[0]!.encOut).toBe(bobUp[0]!.encIn);
    expect(aliceUp[0]!.spiOut).toBe(bobUp[0]!.spiIn);
    expect(peerSa.children).toHaveLength(2);
  });

  it('a close of the IKE SA goes ahead of queued exchanges, which are aborted', async () => {
    const p = pair();
    const { sa } = await up(p);
    const liveness = p.alice.checkLiveness(sa); // in flight
    let queuedOutcome = 'pending';
    // Waits behind it; dropped by the close (RFC 7296 §2.25), so it must fail, not hang.
    p.alice.createChildSa(sa, 'net', { pfs: false }).then(
      () => (queuedOutcome = 'created'),
      (err: Error) => (queuedOutcome = `rejected: ${err.message}`),
    );
    const closed = p.alice.closeIkeSa(sa);
    p.wire.run(100);
    expect(await settled(liveness)).toBe(true);
    await settled(closed);
    expect(p.alice.sas.size).toBe(0);
    expect(p.bob.sas.size).toBe(0);
    expect(p.bob.childrenBySpi.size).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(queuedOutcome).toMatch(/^rejected/);
  });
});
