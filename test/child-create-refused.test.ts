import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair } from './support/peers.js';
import { ExchangeType, HeaderFlag, PayloadType } from '../control/wire/constants.js';
import { decodeMessage } from '../control/wire/message.js';
import { openMessage, sealMessage } from '../control/ike/protect.js';
import type { IkeSa } from '../control/ike/ike-sa.js';

function settled<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet'))))]);
}

/** The responder's CREATE_CHILD_SA answers rewritten (and sealed again with its keys) to widen TSr beyond the offer. */
function widenResponses(wire: MemoryWire, sa: IkeSa, peerSa: IkeSa): void {
  wire.filter = (d) => {
    if (d.bytes[18] !== ExchangeType.CREATE_CHILD_SA || (d.bytes[19]! & HeaderFlag.RESPONSE) === 0) return 'pass';
    const msg = decodeMessage(d.bytes);
    const opened = msg.ok ? openMessage(sa, msg.value) : undefined;
    if (!msg.ok || !opened?.ok) throw new Error('response does not open');
    const payloads = opened.value.map((p) =>
      p.type === PayloadType.TSr
        ? { ...p, selectors: [{ ...p.selectors[0]!, startAddress: new Uint8Array([0, 0, 0, 0]), endAddress: new Uint8Array([255, 255, 255, 255]) }] }
        : p,
    );
    wire.queue.push({ ...d, bytes: sealMessage(peerSa, ExchangeType.CREATE_CHILD_SA, msg.value.header.messageId, true, payloads) });
    return 'drop';
  };
}

/** alice and bob in memory with their IKE SA (and its Child SA) up. */
async function established() {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  const up = alice.initiate('to-bob');
  wire.run(100);
  const sa = await settled(up);
  return { wire, alice, bob, sa, peerSa: bob.ikeSas()[0]! };
}

describe('CREATE_CHILD_SA: a response the initiator cannot accept', () => {
  it('the responder is told to delete the Child SA it installed (as after IKE_AUTH, RFC 7296 §2.21.2)', async () => {
    const { wire, alice, bob, sa, peerSa } = await established();
    widenResponses(wire, sa, peerSa);
    const created = alice.createChildSa(sa, 'net', { pfs: false });
    wire.run(100);
    await expect(settled(created)).rejects.toThrow(/widened/);
    expect(sa.children).toHaveLength(1);
    expect(alice.reservedSpis.size).toBe(0);
    // Bob installed the Child SA when it answered; Alice must have it deleted.
    wire.run(1000);
    expect(peerSa.children).toHaveLength(1);
    expect(bob.childrenBySpi.size).toBe(1);
  });

  it('a rekey whose answer cannot be accepted: the responder is told to delete the successor it installed; the old Child SA stays', async () => {
    const { wire, alice, bob, sa, peerSa } = await established();
    const old = sa.children[0]!;
    widenResponses(wire, sa, peerSa);
    const rekeyed = alice.rekeyChildSa(old, { pfs: false });
    wire.run(100);
    await expect(settled(rekeyed)).rejects.toThrow(/widened/);
    expect(old.state).toBe('installed');
    expect(alice.reservedSpis.size).toBe(0);
    // Bob installed the successor when it answered; Alice has it deleted, and both keep the old one.
    wire.run(1000);
    expect(peerSa.children.map((c) => c.spiOut)).toEqual([old.spiIn]);
    expect(bob.childrenBySpi.size).toBe(1);
  });
});
