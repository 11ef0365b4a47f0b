// RFC 7791 (Cloning the IKE SA): one named test per normative statement of
// §5.1, §5.2, §5.3 and the limits of §8, with two ikeclone engines in memory.
import { describe, expect, it } from 'vitest';
import { ExchangeType, NotifyType, PayloadType } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';
import { findNotify } from '../control/wire/payloads.js';
import type { MessageTrace } from '../control/ike/engine.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import { CloneOrchestrator } from '../control/ike/clone-family.js';
import { notify } from '../control/ike/payload-builders.js';
import type { InitiatorExchange } from '../control/ike/ike-sa.js';
import { MemoryWire, pskPair } from './support/peers.js';

type Traced = Parameters<MessageTrace>[0];

/** alice -> bob with tracing of every message's payloads on both ends. */
async function tracedPair(over: Parameters<typeof pskPair>[0] = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const trace: Array<Traced & { who: 'alice' | 'bob' }> = [];
  const alice = wire.engine('10.0.0.1', [initiator], { trace: (e) => trace.push({ ...e, who: 'alice' }) });
  const bob = wire.engine('10.0.0.2', [responder], { trace: (e) => trace.push({ ...e, who: 'bob' }) });
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  return { wire, alice, bob, sa, peerSa: bob.ikeSas()[0]!, trace };
}

function clone(wire: MemoryWire, engine: IkeEngine, sa: IkeSa): Promise<IkeSa> {
  const p = engine.cloneIkeSa(sa);
  wire.run(100);
  return p;
}

const hasClone = (payloads: readonly Payload[]) => findNotify(payloads, NotifyType.CLONE_IKE_SA) !== undefined;

/** An exchange of our own making: arbitrary request payloads on an IKE SA. */
function rawExchange(exchangeType: number, payloads: Payload[]): InitiatorExchange & { response: Promise<Payload[]> } {
  let resolve!: (p: Payload[]) => void;
  const response = new Promise<Payload[]>((r) => (resolve = r));
  return { name: 'test', exchangeType, build: () => payloads, process: (_sa, p) => resolve(p), response };
}

describe('RFC 7791 §5.1 support negotiation', () => {
  it('MUST send CLONE_IKE_SA_SUPPORTED in the initiator\'s first and the responder\'s last IKE_AUTH message', async () => {
    const { trace } = await tracedPair();
    const auth = trace.filter((t) => t.exchangeType === ExchangeType.IKE_AUTH && t.direction === 'out');
    expect(auth.map((t) => [t.who, t.response])).toEqual([['alice', false], ['bob', true]]);
    for (const t of auth) expect(findNotify(t.payloads, NotifyType.CLONE_IKE_SA_SUPPORTED)).toBeDefined();
    // ... and in no other message.
    const elsewhere = trace.filter((t) => t.exchangeType !== ExchangeType.IKE_AUTH && findNotify(t.payloads, NotifyType.CLONE_IKE_SA_SUPPORTED));
    expect(elsewhere).toEqual([]);
  });

  it('peers may clone when both sent it', async () => {
    const { wire, alice, sa } = await tracedPair();
    expect(sa.peerClone).toBe(true);
    expect((await clone(wire, alice, sa)).state).toBe('established');
  });

  it('MUST NOT clone when the responder did not send it: no CLONE_IKE_SA is ever sent', async () => {
    const { alice, sa, trace } = await tracedPair({ responder: { cloneSupport: false } });
    const auth = trace.filter((t) => t.exchangeType === ExchangeType.IKE_AUTH && t.who === 'bob' && t.direction === 'out');
    expect(findNotify(auth[0]!.payloads, NotifyType.CLONE_IKE_SA_SUPPORTED)).toBeUndefined();
    await expect(alice.cloneIkeSa(sa)).rejects.toThrow(/RFC 7791 §5.1/);
    expect(trace.some((t) => hasClone(t.payloads))).toBe(false);
  });

  it('MUST NOT clone when the initiator did not send it: a CLONE_IKE_SA forced onto that SA does not clone', async () => {
    const { wire, alice, bob, sa, peerSa } = await tracedPair({ initiator: { cloneSupport: false } });
    expect(peerSa.peerClone).toBe(false);
    // A misbehaving initiator sends it anyway: the responder must not end up with two IKE SAs.
    sa.peerClone = true;
    const p = alice.cloneIkeSa(sa);
    wire.run(100);
    await p.catch(() => undefined);
    wire.run(100);
    expect(bob.ikeSas().filter((s) => s.state === 'established')).toHaveLength(1);
  });
});

describe('RFC 7791 §5.2 cloning the IKE SA', () => {
  it('the initiator includes CLONE_IKE_SA in a CREATE_CHILD_SA request that rekeys the IKE SA (SA, Ni, KEi)', async () => {
    const { wire, alice, sa, trace } = await tracedPair();
    await clone(wire, alice, sa);
    const req = trace.find((t) => t.who === 'alice' && t.direction === 'out' && hasClone(t.payloads))!;
    expect(req.exchangeType).toBe(ExchangeType.CREATE_CHILD_SA);
    expect(req.response).toBe(false);
    expect(req.payloads.map((p) => p.type).sort()).toEqual([PayloadType.SA, PayloadType.KE, PayloadType.NONCE, PayloadType.NOTIFY].sort());
    const saPayload = req.payloads.find((p) => p.type === PayloadType.SA)!;
    expect(saPayload.type === PayloadType.SA && saPayload.proposals.every((p) => p.protocol === 1 && p.spi.length === 8)).toBe(true);
  });

  it('CLONE_IKE_SA MUST appear only in that request: never in the response or any other message', async () => {
    const { wire, alice, sa, trace } = await tracedPair();
    const c = await clone(wire, alice, sa);
    const child = alice.createChildSa(c, 'net');
    wire.run(100);
    await child;
    const withClone = trace.filter((t) => hasClone(t.payloads));
    expect(withClone).toHaveLength(2); // alice's request as sent, and as bob received it
    expect(withClone.every((t) => t.exchangeType === ExchangeType.CREATE_CHILD_SA && !t.response)).toBe(true);
  });

  it('the responder creates the new IKE SA and keeps the old one; both coexist', async () => {
    const { wire, alice, bob, sa, peerSa } = await tracedPair();
    const c = await clone(wire, alice, sa);
    expect(alice.ikeSas()).toEqual(expect.arrayContaining([sa, c]));
    const bobClone = bob.ikeSas().find((s) => s !== peerSa)!;
    expect(peerSa.state).toBe('established');
    expect(bobClone.state).toBe('established');
    expect(spi64Hex(bobClone.spiI)).toBe(spi64Hex(c.spiI));
    expect(spi64Hex(c.spiI)).not.toBe(spi64Hex(sa.spiI));
  });

  it('no additional Notify payloads in the response: exactly SA, Nr, KEr', async () => {
    const { wire, alice, sa, trace } = await tracedPair();
    await clone(wire, alice, sa);
    const resp = trace.find((t) => t.who === 'bob' && t.direction === 'out' && t.response && t.exchangeType === ExchangeType.CREATE_CHILD_SA)!;
    expect(resp.payloads.map((p) => p.type).sort()).toEqual([PayloadType.SA, PayloadType.NONCE, PayloadType.KE].sort());
  });

  it('existing Child SAs MUST NOT move to the new IKE SA: they stay, and their signalling stays on the old SA', async () => {
    const { wire, alice, bob, sa, peerSa } = await tracedPair();
    const old = sa.children[0]!;
    const c = await clone(wire, alice, sa);
    expect(c.children).toEqual([]);
    expect(sa.children).toEqual([old]);
    expect(old.ike).toBe(sa);
    // Rekeying that Child SA runs over the old IKE SA on both ends.
    const before = { mine: sa.nextRequestId, clone: c.nextRequestId };
    const p = alice.rekeyChildSa(old, { pfs: false });
    wire.run(100);
    const fresh = await p;
    expect(fresh.ike).toBe(sa);
    expect(sa.nextRequestId).toBeGreaterThan(before.mine);
    expect(c.nextRequestId).toBe(before.clone);
    expect(peerSa.children.map((x) => x.spiOut)).toEqual([fresh.spiIn]);
    expect(bob.ikeSas().find((s) => s !== peerSa)!.children).toEqual([]);
  });

  it('clones are independent IKE SAs: own keys, message IDs from zero, own retransmission state', async () => {
    const { wire, alice, sa } = await tracedPair();
    const c = await clone(wire, alice, sa);
    expect(c.nextRequestId).toBe(0);
    expect(c.peerRequestId).toBe(0);
    expect(Buffer.from(c.keys!.skD).equals(Buffer.from(sa.keys!.skD))).toBe(false);
    // Loss on the original does not hold up the clone: drop everything alice sends on the original.
    const origSpi = spi64Hex(sa.spiI);
    wire.filter = (d) => (Buffer.from(d.bytes.subarray(0, 8)).toString('hex') === origSpi ? 'drop' : 'pass');
    const stuck = alice.checkLiveness(sa);
    const live = alice.checkLiveness(c);
    wire.run(200);
    expect(await live).toBe(true);
    expect(sa.outstanding).toBeDefined();
    wire.filter = () => 'pass';
    wire.run(2000);
    expect(await stuck).toBe(true);
  });

  it('CLONE_IKE_SA in any other message MUST be ignored: a Child SA creation creates a Child SA', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    const { offerChild, offerPayloads } = await import('../control/ike/child-negotiation.js');
    const offer = offerChild(alice, sa, sa.policy.children[0]!);
    const [saP, tsi, tsr] = offerPayloads(offer);
    const ex = rawExchange(ExchangeType.CREATE_CHILD_SA, [notify(NotifyType.CLONE_IKE_SA), saP!, { type: PayloadType.NONCE, data: new Uint8Array(32).fill(9) }, tsi!, tsr!]);
    alice.queueExchange(sa, ex);
    wire.run(100);
    const resp = await ex.response;
    expect(resp.some((p) => p.type === PayloadType.SA)).toBe(true);
    expect(bob.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()[0]!.children).toHaveLength(2);
  });

  it('... and in INFORMATIONAL it is ignored (an empty answer, no new SA)', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    const ex = rawExchange(ExchangeType.INFORMATIONAL, [notify(NotifyType.CLONE_IKE_SA)]);
    alice.queueExchange(sa, ex);
    wire.run(100);
    expect(await ex.response).toEqual([]);
    expect(bob.ikeSas()).toHaveLength(1);
  });

  it('... and in a response it is ignored: a plain IKE rekey stays a rekey', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    const original = bob.respondRekey.bind(bob);
    bob.respondRekey = (s, p, ike) => {
      const r = original(s, p, ike);
      return { ...r, payloads: [...r.payloads, notify(NotifyType.CLONE_IKE_SA)] };
    };
    const p = alice.rekeyIkeSa(sa);
    wire.run(100);
    const successor = await p;
    wire.run(100);
    expect(alice.ikeSas()).toEqual([successor]);
    expect(successor.children).toHaveLength(1);
    expect(bob.ikeSas()).toHaveLength(1);
  });

  it('... and in IKE_AUTH it is ignored', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder]);
    const startAuth = alice.startIkeAuth.bind(alice);
    alice.startIkeAuth = (sa) => {
      startAuth(sa);
      const auth = sa.queue[0]!;
      const build = auth.build.bind(auth);
      auth.build = (s) => [...build(s), notify(NotifyType.CLONE_IKE_SA)];
    };
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const sa = await up;
    expect(sa.state).toBe('established');
    expect(alice.ikeSas()).toHaveLength(1);
    expect(bob.ikeSas()).toHaveLength(1);
  });
});

describe('RFC 7791 §5.3 error handling', () => {
  it('the responder SHOULD answer TEMPORARY_FAILURE when short of resources', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    bob.limits.maxIkeSas = 1;
    const p = alice.cloneIkeSa(sa);
    wire.run(100);
    await expect(p).rejects.toMatchObject({ notify: NotifyType.TEMPORARY_FAILURE });
  });

  it('the responder SHOULD answer TEMPORARY_FAILURE when the IKE SA is being deleted', async () => {
    const { wire, alice, sa, peerSa } = await tracedPair();
    peerSa.setState('deleting');
    const p = alice.cloneIkeSa(sa);
    wire.run(100);
    await expect(p).rejects.toMatchObject({ notify: NotifyType.TEMPORARY_FAILURE });
  });

  it('the initiator MAY retry after TEMPORARY_FAILURE: retried after a randomised, bounded back-off', async () => {
    const { wire, alice, bob, sa } = await tracedPair({ initiator: { clone: { per: 'worker', count: 2, nics: [] } } });
    bob.limits.maxIkeSas = 1;
    const orchestrator = new CloneOrchestrator(alice, { baseMs: 1000, maxMs: 4000, tries: 5 });
    const sends: number[] = [];
    alice.on('ike-cloned', () => sends.push(wire.clock.now()));
    const grown = orchestrator.grow(sa, 2);
    await wire.settle(300);
    expect(alice.ikeSas()).toHaveLength(1);
    bob.limits.maxIkeSas = 100; // resources are back
    await wire.settle(6000);
    const family = await grown;
    expect(family.state).toBe('complete');
    expect(alice.ikeSas()).toHaveLength(2);
    // The retry waited at least half the base back-off (jitter is in [0.5, 1.5)).
    expect(sends[0]!).toBeGreaterThanOrEqual(500);
  });

  it('the responder SHOULD answer NO_ADDITIONAL_SAS past its per-peer IKE SA limit', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    bob.limits.ikeSasPerPeer = 2;
    await clone(wire, alice, sa);
    const p = alice.cloneIkeSa(sa);
    wire.run(100);
    await expect(p).rejects.toMatchObject({ notify: NotifyType.NO_ADDITIONAL_SAS });
  });

  it('the initiator SHOULD NOT retry after NO_ADDITIONAL_SAS until one of the peer\'s IKE SAs is deleted', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    bob.limits.ikeSasPerPeer = 2;
    const orchestrator = new CloneOrchestrator(alice, { baseMs: 100, maxMs: 100, tries: 3 }).start();
    const family = orchestrator.grow(sa, 3);
    await wire.settle(500);
    const f = await family;
    expect(f.state).toBe('blocked');
    expect(alice.ikeSas()).toHaveLength(2);
    // Nothing more is attempted while blocked, however long we wait.
    const before = alice.stats.sent;
    await wire.settle(5000, 500);
    expect(alice.stats.sent).toBe(before);
    // Deleting one of the peer's IKE SAs unblocks: the family grows back to its target.
    bob.limits.ikeSasPerPeer = 3;
    const clone1 = alice.ikeSas().find((s) => s !== sa)!;
    const closed = alice.closeIkeSa(clone1);
    await wire.settle(2000);
    await closed;
    expect(alice.ikeSas().filter((s) => s.state === 'established')).toHaveLength(3);
    expect(orchestrator.family(sa.sessionId)!.state).toBe('complete');
  });
});

describe('RFC 7791 §8 security considerations', () => {
  it('limits count Child SAs over all IKE SAs of one peer: clones cannot bypass a per-peer Child SA limit', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    bob.limits.childSasPerPeer = 2;
    const c1 = await clone(wire, alice, sa);
    const ok = alice.createChildSa(c1, 'net');
    wire.run(100);
    await ok;
    const c2 = await clone(wire, alice, sa);
    const refused = alice.createChildSa(c2, 'net');
    wire.run(100);
    await expect(refused).rejects.toThrow(/NO_ADDITIONAL_SAS/);
  });

  it('an implementation can limit the number of cloned IKE SAs', async () => {
    const { wire, alice, bob, sa } = await tracedPair();
    bob.limits.ikeSasPerPeer = 1;
    const p = alice.cloneIkeSa(sa);
    wire.run(100);
    await expect(p).rejects.toMatchObject({ notify: NotifyType.NO_ADDITIONAL_SAS });
  });

  it('the session is alive from the first authentication until the last clone is deleted; clones may outlive the original', async () => {
    const { wire, alice, bob, sa, peerSa } = await tracedPair();
    const events: string[] = [];
    for (const [name, e] of [['alice', alice], ['bob', bob]] as const) {
      e.on('session-down', (id) => events.push(`${name} down ${id}`));
    }
    const c = await clone(wire, alice, sa);
    expect(c.sessionId).toBe(sa.sessionId);
    expect(bob.ikeSas().every((s) => s.sessionId === peerSa.sessionId)).toBe(true);
    const closed = alice.closeIkeSa(sa);
    wire.run(100);
    await closed;
    expect(events).toEqual([]);
    expect(c.state).toBe('established');
    const live = alice.checkLiveness(c);
    wire.run(100);
    expect(await live).toBe(true);
    const last = alice.closeIkeSa(c);
    wire.run(100);
    await last;
    expect(events.sort()).toEqual([`alice down ${sa.sessionId}`, `bob down ${peerSa.sessionId}`]);
  });
});

describe('a clone family of 8 (architecture §5)', () => {
  it('grows to 8 IKE SAs with a Child SA each; deleting the original leaves the clones working; deleting clones frees room for new ones', async () => {
    const { wire, alice, bob, sa } = await tracedPair({ initiator: { clone: { per: 'worker', count: 8, nics: [] } } });
    bob.limits.ikeSasPerPeer = 8;
    const orchestrator = new CloneOrchestrator(alice).start();
    const grown = orchestrator.grow(sa, 8);
    await wire.settle(1000);
    expect((await grown).state).toBe('complete');
    const family = alice.sessionMembers(sa.sessionId);
    expect(family).toHaveLength(8);
    expect(family.map((m) => m.familyIndex).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(family.every((m) => m.children.length === 1)).toBe(true);
    expect(new Set(family.flatMap((m) => m.children.map((c) => c.spiIn))).size).toBe(8);
    expect(bob.ikeSas()).toHaveLength(8);
    // A ninth is refused.
    const ninth = alice.cloneIkeSa(sa);
    wire.run(100);
    await expect(ninth).rejects.toMatchObject({ notify: NotifyType.NO_ADDITIONAL_SAS });
    // Deleting the original leaves the clones working.
    const closed = alice.closeIkeSa(sa);
    wire.run(100);
    await closed;
    const clones = alice.ikeSas();
    expect(clones).toHaveLength(7);
    const checks = clones.map((c) => alice.checkLiveness(c));
    wire.run(100);
    expect(await Promise.all(checks)).toEqual(Array(7).fill(true));
    // The freed place takes a new clone.
    const again = alice.cloneIkeSa(clones[0]!);
    wire.run(100);
    expect((await again).familyIndex).toBe(0);
  });
});
