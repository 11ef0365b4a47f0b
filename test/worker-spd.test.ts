// The worker's copy of the SPD (dataplane/worker-spd.ts): a packet read from
// a worker's own TUN queue is sealed with a member of its family that worker
// owns; only a family without one sends it to another worker, the one the
// I/O thread's SPD picks (same 5-tuple hash), so a flow keeps one SA.
import { describe, expect, it } from 'vitest';
import { MALFORMED, NO_POLICY, WorkerSpd } from '../dataplane/worker-spd.js';
import { writeUdp4, type Selector } from '../dataplane/packet.js';
import type { PolicyFamily } from '../dataplane/messages.js';

function net(a: number, b: number, c: number): Selector {
  return { startAddress: new Uint8Array([a, b, c, 0]), endAddress: new Uint8Array([a, b, c, 255]), ipProtocol: 0, startPort: 0, endPort: 65535 };
}

function udp(srcPort: number, dst = [10, 2, 0, 7]): Uint8Array {
  const p = new Uint8Array(100);
  writeUdp4(p, 0, 100, new Uint8Array([10, 1, 0, 5]), new Uint8Array(dst), srcPort, 9, 1);
  return p;
}

const local = [net(10, 1, 0)];
const remote = [net(10, 2, 0)];

describe('WorkerSpd', () => {
  it('picks a member this worker owns for every flow of a family that has one on every worker (no hand-off)', () => {
    const family: PolicyFamily = { localTs: local, remoteTs: remote, senders: [{ worker: 0, slot: 3, tag: 1 }, { worker: 1, slot: 5, tag: 2 }] };
    for (const me of [0, 1]) {
      const spd = new WorkerSpd(me);
      spd.set([family]);
      for (let port = 1000; port < 1064; port++) expect(spd.choose(udp(port))).toEqual(family.senders[me]);
    }
  });

  it('spreads flows over its own members by the 5-tuple hash when it owns several', () => {
    const spd = new WorkerSpd(1);
    spd.set([{ localTs: local, remoteTs: remote, senders: [{ worker: 1, slot: 1, tag: 1 }, { worker: 0, slot: 2, tag: 1 }, { worker: 1, slot: 3, tag: 1 }] }]);
    const slots = new Set<number>();
    for (let port = 1000; port < 1064; port++) {
      const s = spd.choose(udp(port));
      if (typeof s === 'string') throw new Error(s);
      expect(s.worker).toBe(1);
      slots.add(s.slot);
      // The same flow takes the same member every time (order within the flow).
      expect(spd.choose(udp(port))).toEqual(s);
    }
    expect([...slots].sort()).toEqual([1, 3]);
  });

  it("hands a packet of a family with no member here to the owner the I/O thread's SPD would pick, one SA per flow", () => {
    const spd = new WorkerSpd(2);
    const senders = [{ worker: 0, slot: 7, tag: 4 }, { worker: 1, slot: 9, tag: 6 }];
    spd.set([{ localTs: local, remoteTs: remote, senders }]);
    const owners = new Set<number>();
    for (let port = 1000; port < 1064; port++) {
      const s = spd.choose(udp(port));
      if (typeof s === 'string') throw new Error(s);
      expect(senders).toContainEqual(s);
      owners.add(s.worker);
    }
    expect([...owners].sort()).toEqual([0, 1]);
  });

  it('answers no-policy outside every family (and for a family with no senders) and malformed for bytes that are no IP packet', () => {
    const spd = new WorkerSpd(0);
    expect(spd.choose(udp(1000))).toBe(NO_POLICY);
    spd.set([{ localTs: local, remoteTs: remote, senders: [{ worker: 0, slot: 1, tag: 1 }] }]);
    expect(spd.choose(udp(1000, [10, 3, 0, 1]))).toBe(NO_POLICY);
    expect(spd.choose(new Uint8Array([0x45, 0, 0]))).toBe(MALFORMED);
    expect(spd.choose(new Uint8Array(0))).toBe(MALFORMED);
    spd.set([{ localTs: local, remoteTs: remote, senders: [] }]);
    expect(spd.choose(udp(1000))).toBe(NO_POLICY);
    // A new table replaces the old one.
    spd.set([]);
    expect(spd.choose(udp(1000))).toBe(NO_POLICY);
  });
});
