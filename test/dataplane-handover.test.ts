// The timing of a rekey handover in the data plane (dataplane/handover.ts,
// RFC 7296 §2.8): ESP for an SA still installing is held and delivered, not
// dropped; an SA the peer created waits to send while its family still has a
// sender, and takes over when the SA it replaces retires (or after
// DEFERRED_OUTBOUND_MS); a retired SA sends nothing but keeps receiving for
// its linger time, and is then removed (also one deleted while its install
// was still in progress); the family's last sender keeps sending while a
// successor still installs; the SPD changes once per handover step, so the
// copies of it that workers read their TUN queues with never lack a sender.
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { DataPlane } from '../dataplane/dataplane.js';
import type { SaSpec } from '../dataplane/sad.js';
import type { PlaneState } from '../dataplane/state.js';
import { writeUdp4 } from '../dataplane/packet.js';
import { DEFERRED_OUTBOUND_MS } from '../dataplane/defaults.js';
import { waitFor } from './support/proc.js';
import { mirroredSpecs, planesBackToBack, stopPlanes } from './support/dataplane-pair.js';

afterEach(stopPlanes);

const until = (cond: () => boolean, timeoutMs = 5000) => waitFor(cond, { timeoutMs, intervalMs: 5 });

/** Matching SaSpecs for A and B (A's out = B's in). */
const mirrored = (id: number, extra: { a?: Partial<SaSpec>; b?: Partial<SaSpec> } = {}) => mirroredSpecs(id, extra);

/** A -> B inner packet (B -> A with `back`). */
function inner(n: number, back = false): Uint8Array {
  const p = new Uint8Array(100);
  const [src, dst] = back ? [[10, 2, 0, 7], [10, 1, 0, 1]] : [[10, 1, 0, 1], [10, 2, 0, 7]];
  writeUdp4(p, 0, p.length, Uint8Array.from(src!), Uint8Array.from(dst!), 4000, 9, n, 0);
  return p;
}

/** Two planes wired back to back; the SPIs each one sent with, and the inner packets each one delivered. */
async function pair() {
  const got = { a: 0, b: 0 };
  const { a, b, sentSpis: sent } = await planesBackToBack();
  a.setInnerSink({ write: () => (got.a++, true) });
  b.setInnerSink({ write: () => (got.b++, true) });
  return { a, b, sent, got };
}

/** B sends one packet; resolves with the SPI it left with. */
async function bSendsWith(b: DataPlane, sent: number[]): Promise<number> {
  const before = sent.length;
  expect(b.sendInner(inner(before, true))).toBe(true);
  await until(() => sent.length > before);
  return sent[sent.length - 1]!;
}

describe('ESP for an SA still installing', () => {
  it('is held and delivered once the worker has the SA, not dropped', async () => {
    const { a, b, got } = await pair();
    const s = mirrored(1);
    await a.install(s.a);
    // B's install is under way (a round trip to its worker) when A's ESP arrives.
    const installing = b.install(s.b);
    for (let i = 0; i < 20; i++) expect(a.sendInner(inner(i))).toBe(true);
    await until(() => a.status().io.espOut === 20);
    await installing;
    await until(() => got.b === 20);
    expect(b.status().io.dropNoSa).toBe(0);
    expect(b.status().io.dropUnknownSpi).toBe(0);
  });
});

describe('an SA the peer created (deferOutbound)', () => {
  it('waits while the SA it replaces sends, and takes over when that one retires', async () => {
    const { a, b, sent } = await pair();
    const old = mirrored(1);
    await Promise.all([a.install(old.a), b.install(old.b)]);
    const next = mirrored(2, { a: { replaces: [1] }, b: { replaces: [1], deferOutbound: true } });
    await Promise.all([a.install(next.a), b.install(next.b)]);
    // B answered the rekey: A may not have the new SA yet, so B still sends on the old one.
    expect(await bSendsWith(b, sent.b)).toBe(old.b.spiOut);
    // A deletes the old SA (its Delete reaches B): B's new SA sends from now on.
    await b.retire(1);
    expect(await bSendsWith(b, sent.b)).toBe(next.b.spiOut);
    expect(b.status().families).toEqual([1]);
  });

  it('sends after DEFERRED_OUTBOUND_MS at the latest', async () => {
    const { a, b, sent } = await pair();
    const old = mirrored(1);
    await Promise.all([a.install(old.a), b.install(old.b)]);
    const next = mirrored(2, { b: { replaces: [1], deferOutbound: true } });
    const installed = Date.now();
    await Promise.all([a.install(next.a), b.install(next.b)]);
    expect(await bSendsWith(b, sent.b)).toBe(old.b.spiOut);
    await until(() => b.status().families[0] === 1 && (b.sendInner(inner(99, true)), sent.b.at(-1) === next.b.spiOut), DEFERRED_OUTBOUND_MS * 3);
    expect(Date.now() - installed).toBeGreaterThanOrEqual(DEFERRED_OUTBOUND_MS - 50);
  });

  it("takes over at the peer's first authenticated packet on it, not at a forged one", async () => {
    const { a, b, sent, got } = await pair();
    const old = mirrored(1);
    await Promise.all([a.install(old.a), b.install(old.b)]);
    const next = mirrored(2, { a: { replaces: [1] }, b: { replaces: [1], deferOutbound: true } });
    const installed = Date.now();
    await Promise.all([a.install(next.a), b.install(next.b)]);
    // A forged packet with the new SPI fails its ICV: B does not take it for the peer's.
    const forged = randomBytes(120);
    new DataView(forged.buffer, forged.byteOffset).setUint32(0, next.b.spiIn);
    new DataView(forged.buffer, forged.byteOffset).setUint32(4, 1);
    b.receiveEsp(forged);
    await until(() => b.status().workers.some((w) => w.drops.icv > 0));
    expect(await bSendsWith(b, sent.b)).toBe(old.b.spiOut);
    // A sends on the new SA (it installed it: the rekey's initiator): B now knows A has it.
    const before = got.b;
    expect(a.sendInner(inner(1))).toBe(true);
    await until(() => got.b > before);
    await until(() => (b.sendInner(inner(98, true)), sent.b.at(-1) === next.b.spiOut), DEFERRED_OUTBOUND_MS * 3);
    expect(Date.now() - installed).toBeLessThan(DEFERRED_OUTBOUND_MS);
    expect(b.status().families).toEqual([1]); // one family, one sender
  });

  it('sends at once when its family has no other sender', async () => {
    const { a, b, sent } = await pair();
    const first = mirrored(1, { b: { deferOutbound: true } });
    await Promise.all([a.install(first.a), b.install(first.b)]);
    expect(await bSendsWith(b, sent.b)).toBe(first.b.spiOut);
  });
});

describe('a retired SA', () => {
  it('sends nothing, receives for its linger time, then is removed', async () => {
    const { a, b, sent, got } = await pair();
    const s = mirrored(1);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    // A sibling in B's family (a clone's Child SA) goes on carrying B's traffic.
    const sibling = mirrored(5);
    await b.install(sibling.b);
    await b.retire(1, 400);
    expect(b.status().families).toEqual([1]);
    expect(await bSendsWith(b, sent.b)).toBe(sibling.b.spiOut);
    // What A sent before it deleted its side still arrives and is delivered.
    for (let i = 0; i < 10; i++) a.sendInner(inner(i));
    await until(() => got.b === 10);
    await until(() => !b.saIds().includes(1));
    expect(b.saIds()).toEqual([5]);
    a.sendInner(inner(11));
    await until(() => b.status().io.dropUnknownSpi === 1);
    expect(got.b).toBe(10);
  });

  it('the last of its family goes at once (the tunnel goes down)', async () => {
    const { a, b } = await pair();
    const s = mirrored(1);
    await Promise.all([a.install(s.a), b.install(s.b)]);
    await b.retire(1, 60_000);
    expect(b.saIds()).toEqual([]);
    expect(b.status().families).toEqual([]);
  });

  it('keeps sending while it is the last sender and a successor still installs, until that one sends', async () => {
    const { a, b, sent } = await pair();
    const old = mirrored(1);
    await Promise.all([a.install(old.a), b.install(old.b)]);
    await a.install(mirrored(9).a); // unrelated, keeps A busy the same way
    const next = mirrored(2, { b: { replaces: [1], deferOutbound: true } });
    await a.install(next.a);
    const installing = b.install(next.b);
    // The peer's Delete of the old SA overtook our install of the new one.
    await b.retire(1);
    expect(await bSendsWith(b, sent.b)).toBe(old.b.spiOut);
    await installing;
    expect(await bSendsWith(b, sent.b)).toBe(next.b.spiOut);
    expect(b.status().families).toEqual([1]);
  });

  it('deleted while its install is still in progress: receives once installed, for its linger time, and never sends', async () => {
    const { a, b, sent, got } = await pair();
    const old = mirrored(1);
    await Promise.all([a.install(old.a), b.install(old.b)]);
    // A simultaneous rekey (RFC 7296 §2.8.1): the peer's new SA turned out redundant and the
    // peer, which sent on it meanwhile, deletes it while B still installs it.
    const theirs = mirrored(2, { a: { replaces: [1] }, b: { replaces: [1], deferOutbound: true } });
    await a.install(theirs.a);
    const installing = b.install(theirs.b);
    await b.retire(2, 400);
    for (let i = 0; i < 10; i++) expect(a.sendInner(inner(i))).toBe(true);
    await installing;
    await until(() => got.b === 10);
    expect(await bSendsWith(b, sent.b)).toBe(old.b.spiOut);
    await until(() => !b.saIds().includes(2));
    expect(b.saIds()).toEqual([1]);
    expect(b.status().io.dropUnknownSpi + b.status().io.dropNoSa).toBe(0);
  });

  it('gives its inbound SPI up to a new install that needs it', async () => {
    const { b } = await pair();
    const s = mirrored(1);
    await b.install(s.b);
    await b.install(mirrored(2).b);
    await b.retire(1, 60_000);
    expect(b.saIds().sort()).toEqual([1, 2]);
    await b.install({ ...mirrored(3).b, spiIn: s.b.spiIn });
    expect(b.saIds().sort()).toEqual([2, 3]);
  });
});

describe("the SPD the workers copy (they read their own TUN queues with it)", () => {
  it('changes once per handover step: no copy shows a family without the sender it has before and after', async () => {
    const { b } = await pair();
    const spd = (b as unknown as { s: PlaneState }).s.spd;
    const tables: number[][] = [];
    spd.onChange = () => tables.push(spd.policyTable().map((f) => f.senders.length));
    await b.install(mirrored(1).b);
    tables.length = 0;
    // Our rekey: the successor takes over from the only sender.
    await b.install(mirrored(2, { b: { replaces: [1] } }).b);
    await b.retire(1);
    // The peer's rekey: its SA waits while ours sends; the peer deletes ours, its SA takes over.
    await b.install(mirrored(3, { b: { replaces: [2], deferOutbound: true } }).b);
    await b.retire(2);
    expect(tables).toEqual([[1], [1]]);
  });
});
