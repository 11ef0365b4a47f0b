import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { establish, ike } from './support/peers.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import { EncrId, KeGroup, NotifyType, PayloadType, PrfId, ProtocolId, TransformType } from '../control/wire/constants.js';
import { respondCreateChildSa } from '../control/ike/exchanges/child-create.js';
import type { Payload } from '../control/wire/payloads.js';
import type { ChildSa } from '../control/ike/ike-sa.js';

describe('IKE SA rekey (RFC 7296 §1.3.2, §2.18)', () => {
  it('creates a successor with new SPIs and keys, moves the Child SAs, and deletes the old SA on both ends', async () => {
    const { wire, alice, bob, sa, peerSa } = await establish();
    const childSpis = sa.children.map((c) => c.spiIn);
    const oldSkD = Buffer.from(sa.keys!.skD).toString('hex');
    const rekeyed = alice.rekeyIkeSa(sa);
    wire.run(100);
    const successor = await rekeyed;
    expect(alice.ikeSas()).toEqual([successor]);
    expect(bob.ikeSas()).toHaveLength(1);
    const peerSuccessor = bob.ikeSas()[0]!;
    expect(peerSuccessor).not.toBe(peerSa);
    expect(spi64Hex(peerSuccessor.spiI)).toBe(spi64Hex(successor.spiI));
    expect(spi64Hex(successor.spiI)).not.toBe(spi64Hex(sa.spiI));
    expect(Buffer.from(successor.keys!.skD).toString('hex')).toBe(Buffer.from(peerSuccessor.keys!.skD).toString('hex'));
    expect(Buffer.from(successor.keys!.skD).toString('hex')).not.toBe(oldSkD);
    expect(successor.children.map((c) => c.spiIn)).toEqual(childSpis);
    expect(successor.children[0]!.ike).toBe(successor);
    expect(sa.state).toBe('dead');
    expect(peerSa.state).toBe('dead');
    // Message IDs restart at zero on the new SA, and it works: a liveness check round-trips.
    expect(successor.nextRequestId).toBe(0);
    const alive = alice.checkLiveness(successor);
    wire.run(100);
    expect(await alive).toBe(true);
  });
});

describe('Child SA rekey (RFC 7296 §1.3.3)', () => {
  it('replaces the Child SA on both ends and deletes the old one', async () => {
    const { wire, alice, bob, sa, peerSa } = await establish();
    const old = sa.children[0]!;
    const up: ChildSa[] = [];
    const down: ChildSa[] = [];
    bob.on('child-up', (c) => up.push(c));
    bob.on('child-down', (c) => down.push(c));
    const p = alice.rekeyChildSa(old, { pfs: false });
    wire.run(100);
    const fresh = await p;
    expect(fresh.spiIn).not.toBe(old.spiIn);
    expect(sa.children).toEqual([fresh]);
    expect(peerSa.children).toHaveLength(1);
    expect(peerSa.children[0]!.spiOut).toBe(fresh.spiIn);
    expect(up).toHaveLength(1);
    expect(down.map((c) => c.spiOut)).toEqual([old.spiIn]);
  });

  it('answers CHILD_SA_NOT_FOUND for a Child SA the responder does not have', async () => {
    const { wire, alice, bob, sa } = await establish();
    const old = sa.children[0]!;
    // The responder forgets it (as if it had been deleted meanwhile).
    bob.removeChild(bob.ikeSas()[0]!.children[0]!, 'test');
    const p = alice.rekeyChildSa(old, { pfs: false });
    wire.run(100);
    await expect(p).rejects.toThrow(/CHILD_SA_NOT_FOUND/);
    expect(old.state).toBe('installed');
  });
});

describe('IKE SA cloning (RFC 7791)', () => {
  it('§5.2: the clone is a new IKE SA with its own SPIs and keys; the old SA and its Child SAs stay', async () => {
    const { wire, alice, bob, sa, peerSa } = await establish();
    const p = alice.cloneIkeSa(sa);
    wire.run(100);
    const clone = await p;
    expect(alice.ikeSas()).toHaveLength(2);
    expect(bob.ikeSas()).toHaveLength(2);
    expect(sa.state).toBe('established');
    expect(peerSa.state).toBe('established');
    expect(sa.children).toHaveLength(1);
    expect(clone.children).toHaveLength(0);
    expect(clone.sessionId).toBe(sa.sessionId);
    const peerClone = bob.ikeSas().find((s) => s !== peerSa)!;
    expect(spi64Hex(peerClone.spiR)).toBe(spi64Hex(clone.spiR));
    expect(Buffer.from(clone.keys!.skEi).equals(Buffer.from(sa.keys!.skEi))).toBe(false);
    // Both are usable independently: a Child SA on the clone, a liveness check on the original.
    const c = alice.createChildSa(clone, 'net');
    const live = alice.checkLiveness(sa);
    wire.run(100);
    expect((await c).ike).toBe(clone);
    expect(await live).toBe(true);
    expect(peerClone.children).toHaveLength(1);
    expect(peerSa.children).toHaveLength(1);
  });

  it('§5.3: the responder refuses past its per-peer limit with NO_ADDITIONAL_SAS', async () => {
    const { wire, alice, bob, sa } = await establish();
    bob.limits.ikeSasPerPeer = 2;
    const first = alice.cloneIkeSa(sa);
    wire.run(100);
    await first;
    const second = alice.cloneIkeSa(sa);
    wire.run(100);
    await expect(second).rejects.toMatchObject({ notify: NotifyType.NO_ADDITIONAL_SAS });
    expect(bob.ikeSas()).toHaveLength(2);
  });

  it('§5.1: an IKE SA is never cloned unless both ends sent CLONE_IKE_SA_SUPPORTED', async () => {
    const { alice, sa } = await establish({ responder: { cloneSupport: false } });
    expect(sa.peerClone).toBe(false);
    await expect(alice.cloneIkeSa(sa)).rejects.toThrow(/did not negotiate cloning/);
  });
});

describe('IKE SA rekey to another PRF: the nonce is checked against the new one (RFC 7296 §2.10)', () => {
  it('a 16-octet Ni is enough for the HMAC-SHA2-256 SA it arrives on, not for an HMAC-SHA2-512 successor', async () => {
    const proposals = ike('aes256gcm16-prfsha256-x25519', 'aes256gcm16-prfsha512-x25519');
    const { peerSa, bob } = await establish({ initiator: { ike: proposals }, responder: { ike: proposals } });
    expect(peerSa.suite?.prf).toBe(PrfId.HMAC_SHA2_256);
    const request = (nonceLength: number): Payload[] => [
      {
        type: PayloadType.SA,
        proposals: [{
          number: 1, protocol: ProtocolId.IKE, spi: randomBytes(8),
          transforms: [
            { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
            { type: TransformType.PRF, id: PrfId.HMAC_SHA2_512 },
            { type: TransformType.KE, id: KeGroup.CURVE25519 },
          ],
        }],
      },
      { type: PayloadType.NONCE, data: randomBytes(nonceLength) },
      { type: PayloadType.KE, group: KeGroup.CURVE25519, data: randomBytes(32) },
    ];
    // HMAC-SHA2-512 has a 64-octet key: Ni must have at least 32 octets.
    const short = respondCreateChildSa(bob, peerSa, request(16));
    expect(short.payloads.map((p) => (p.type === PayloadType.NOTIFY ? p.notifyType : p.type))).toEqual([NotifyType.INVALID_SYNTAX]);
    expect(short.after).toBeUndefined();
    const enough = respondCreateChildSa(bob, peerSa, request(32));
    expect(enough.payloads.map((p) => p.type)).toEqual([PayloadType.SA, PayloadType.NONCE, PayloadType.KE]);
  });
});
