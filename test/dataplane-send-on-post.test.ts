// When a new Child SA starts to send (dataplane/install.ts sendsOnPost): with
// workers that read their own TUN queues, the first SA of a family nothing
// sends for (a clone's Child SA on the cluster node it arrived at) is in the
// SPD from the moment its install is posted, so the policy table reaches the
// worker right behind the install instead of after the worker's answer came
// back to the I/O thread. So does an SA we created while its family has a
// sender (an arriving clone's Child SA on a node holding another member of
// its family): then only its owner worker's table names it until the owner
// has it. A rekey's successor, and an SA the peer created while its family
// has a sender, still wait for the answer (handover.ts).
import { afterEach, describe, expect, it } from 'vitest';
import type { PlaneState } from '../dataplane/state.js';
import { mirroredSpecs, planesBackToBack, stopPlanes } from './support/dataplane-pair.js';

afterEach(stopPlanes);

/** Plane B as if its workers read their own TUN queues; `sendersAt` reads B's SPD senders per family when called. */
async function workersReadTun() {
  const { a, b } = await planesBackToBack();
  const s = (b as unknown as { s: PlaneState }).s;
  s.tunRead = true;
  const senders = () => s.spd.policyTable().map((f) => f.senders.length);
  return { a, b, s, senders };
}

describe('a Child SA whose family has no sender', () => {
  it('is in the SPD once its install is posted, before the worker answered', async () => {
    const { b, senders } = await workersReadTun();
    const installing = b.install(mirroredSpecs(1).b);
    // Synchronously after install(): the worker has not answered yet.
    expect(senders()).toEqual([1]);
    await installing;
    expect(senders()).toEqual([1]);
    expect(b.status().families).toEqual([1]);
  });

  it('sends only once installed when the I/O thread reads the TUN device (its cells could overtake the install)', async () => {
    const { b, s, senders } = await workersReadTun();
    s.tunRead = false;
    const installing = b.install(mirroredSpecs(1).b);
    expect(senders()).toEqual([]);
    await installing;
    expect(senders()).toEqual([1]);
  });
});

describe('a Child SA whose family has a sender', () => {
  it("a rekey's successor takes over only once the worker has it", async () => {
    const { b, senders } = await workersReadTun();
    await b.install(mirroredSpecs(1).b);
    const s = (b as unknown as { s: PlaneState }).s;
    const outbound = () => s.sad!.all().filter((r) => r.outbound).map((r) => r.id);
    const installing = b.install(mirroredSpecs(2, { b: { replaces: [1] } }).b);
    expect(outbound()).toEqual([1]);
    await installing;
    expect(outbound()).toEqual([2]);
    expect(senders()).toEqual([1]);
  });

  it('an SA we created sends at once from its owner worker; the other worker and the I/O thread name it once the owner has it', async () => {
    const { b, s } = await workersReadTun();
    await b.install(mirroredSpecs(1, { b: { worker: 0 } }).b);
    const table = (worker?: number) => s.spd.policyTable(worker).map((f) => f.senders.map((x) => x.worker).sort());
    // What worker 0 (not the owner) would be sent at each change of the SPD.
    const toWorker0: number[][][] = [];
    s.spd.onChange = () => toWorker0.push(table(0));
    const installing = b.install(mirroredSpecs(5, { b: { worker: 1 } }).b);
    // Synchronously after install(): the owner (worker 1) sees both; worker 0 and the I/O thread only the sibling.
    expect(table(1)).toEqual([[0, 1]]);
    expect(table(0)).toEqual([[0]]);
    expect(table()).toEqual([[0]]);
    expect(toWorker0).toEqual([[[0]]]);
    await installing;
    // Installed: everyone's table names it, and worker 0 was sent the new one.
    expect(table(0)).toEqual([[0, 1]]);
    expect(table()).toEqual([[0, 1]]);
    expect(toWorker0.at(-1)).toEqual([[0, 1]]);
    expect(b.status().families).toEqual([2]);
  });

  it('two of one family installing at once on two workers: once both are in, every table names both', async () => {
    const { b, s } = await workersReadTun();
    const table = (worker?: number) => s.spd.policyTable(worker).map((f) => f.senders.map((x) => x.worker).sort());
    // What each worker is sent at each change of the SPD.
    const sent: Array<{ w0: number[][]; w1: number[][] }> = [];
    s.spd.onChange = () => sent.push({ w0: table(0), w1: table(1) });
    // The first has no sibling when posted; the second is ours while the first installs (per-worker clones at start).
    const first = b.install(mirroredSpecs(1, { b: { worker: 0 } }).b);
    const second = b.install(mirroredSpecs(5, { b: { worker: 1 } }).b);
    expect(sent.at(-1)).toEqual({ w0: [[0]], w1: [[1]] });
    await Promise.all([first, second]);
    // Whichever worker answered first, the last tables sent name both, as does the I/O thread's.
    expect(sent.at(-1)).toEqual({ w0: [[0, 1]], w1: [[0, 1]] });
    expect(table()).toEqual([[0, 1]]);
    expect(b.status().families).toEqual([2]);
  });

  it('an SA the peer created waits while a sibling sends', async () => {
    const { b } = await workersReadTun();
    await b.install(mirroredSpecs(1).b);
    const s = (b as unknown as { s: PlaneState }).s;
    const outbound = () => s.sad!.all().filter((r) => r.outbound).map((r) => r.id);
    const installing = b.install(mirroredSpecs(5, { b: { deferOutbound: true } }).b);
    expect(outbound()).toEqual([1]);
    await installing;
    expect(outbound()).toEqual([1]);
  });

  it('one retired while its install is in progress stops sending at once', async () => {
    const { b } = await workersReadTun();
    const s = (b as unknown as { s: PlaneState }).s;
    const outbound = () => s.sad!.all().filter((r) => r.outbound).map((r) => r.id);
    const first = b.install(mirroredSpecs(1).b);
    expect(outbound()).toEqual([1]);
    // A sibling installs meanwhile; the first is deleted before its own install ended.
    const sibling = b.install(mirroredSpecs(5).b);
    await b.retire(1, 60_000);
    expect(outbound()).not.toContain(1);
    await Promise.all([first, sibling]);
    expect(outbound()).toEqual([5]);
  });

  it('an SA we created does not displace a retired SA that still sends for its family until its own install is in', async () => {
    const { b } = await workersReadTun();
    const s = (b as unknown as { s: PlaneState }).s;
    const outbound = () => s.sad!.all().filter((r) => r.outbound).map((r) => r.id).sort();
    await b.install(mirroredSpecs(1).b);
    // The peer's new SA installs; the old one is deleted meanwhile and keeps sending until the new one can.
    const peers = b.install(mirroredSpecs(2, { b: { deferOutbound: true } }).b);
    await b.retire(1, 60_000);
    expect(outbound()).toEqual([1]);
    // One of ours is posted now: the retired one sends on until ours is in (its install could still fail).
    const ours = b.install(mirroredSpecs(5).b);
    expect(outbound()).toEqual([1]);
    await Promise.all([peers, ours]);
    // Both new ones in: ours sends, the retired one no more (the peer's sends too if it was in first: the family had no other sender then).
    expect(outbound()).toContain(5);
    expect(outbound()).not.toContain(1);
  });
});
