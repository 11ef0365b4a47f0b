// The cluster benchmark's per-handoff detail (bench/cluster-handoff-detail.ts):
// a Child SA's first ESP is found by its SPIs, never another SA's, and the
// slowest handoffs come first with what was logged meanwhile.
import { describe, expect, it } from 'vitest';
import { firstEspMs, handoffDetail, handoffTimes, resendsBetween, slowestHandoffs, type DetailLogLine, type FirstEsp } from '../bench/cluster-handoff-detail.js';

const node = { name: 'gw-b', wan: '10.81.1.12' };
const client = '10.81.1.100';

/** One handoff decided at t0: the handing node's line, the arrival's and the new node's `Child SA up` (logged before `child`). */
function handoff(t0: number, ike: number, spiIn: string, spiOut: string): { handed: DetailLogLine; arrival: DetailLogLine; log: DetailLogLine[] } {
  const handed = { time: t0 + 12, msg: 'clone handed off', family: 'gw-a.1', index: 1, epoch: 1, decidedAt: t0, sealedAt: t0 + 1, committedAt: t0 + 12 };
  const at = { seen: t0 + 10, read: t0 + 10, imported: t0 + 14, pathTest: t0 + 20, addressList: t0 + 20, update: t0 + 25, child: t0 + 45 };
  const arrival = { time: t0 + 45, msg: 'clone arrival done', ike, family: 'gw-a.1', index: 1, epoch: 1, timeline: { at, fencing: { heldMs: 0, holds: 0 } } };
  const up = { time: t0 + 36, msg: 'Child SA up', ike, spiIn, spiOut };
  return { handed, arrival, log: [up, arrival] };
}

describe('cluster benchmark: per-handoff detail', () => {
  it('finds the Child SA by its IKE SA id and each direction\'s first ESP by its SPIs', () => {
    const h = handoff(1000, 7, '0203ccd7', '000378f0');
    const first: FirstEsp[] = [
      { t: 1030, src: node.wan, dst: client, spi: '0x00099999' }, // another SA of the node: not this one's
      { t: 1041, src: node.wan, dst: client, spi: '0x000378f0' },
      { t: 1052, src: client, dst: node.wan, spi: '0x0203ccd7' },
    ];
    const d = handoffDetail(node, h.handed, h.arrival, h.log, first);
    expect(d.spiIn).toBe('203ccd7');
    expect(d.spiOut).toBe('378f0');
    expect(d.ms).toMatchObject({ sealed: 1, committed: 12, watchEvent: 10, clientUpdate: 25, childSaUp: 45, firstEspFromNode: 41, firstEspFromClient: 52 });
    expect(firstEspMs(d)).toBe(41);
  });

  it('does not charge a Child SA that carried nothing with the next one\'s first ESP', () => {
    const a = handoff(1000, 7, '0203ccd7', '000378f0');
    const b = handoff(1600, 8, '0200aaaa', '0001bbbb');
    const first: FirstEsp[] = [
      { t: 1650, src: node.wan, dst: client, spi: '0x0001bbbb' },
      { t: 1655, src: client, dst: node.wan, spi: '0x0200aaaa' },
    ];
    const log = [...a.log, ...b.log];
    const da = handoffDetail(node, a.handed, a.arrival, log, first);
    const db = handoffDetail(node, b.handed, b.arrival, log, first);
    expect(firstEspMs(da)).toBeUndefined();
    expect(firstEspMs(db)).toBe(50);
    const slowest = slowestHandoffs([db, da], { node: () => log, client: [{ time: 1020, msg: 'IKE SA moved' }] });
    // One without any ESP counts as slowest; its log window runs to its Child SA plus a second.
    expect(slowest.map((s) => s.decidedAt)).toEqual([1000, 1600]);
    expect(slowest[0]!.clientLog).toEqual([{ ms: 20, msg: 'IKE SA moved' }]);
    expect((slowest[0]!.nodeLog as Array<{ msg: string }>).map((l) => l.msg)).toEqual(['Child SA up', 'clone arrival done', 'Child SA up', 'clone arrival done']);
  });

  it('times each handoff by its own arrival, not by another clone a rebalancing round brought to the node meanwhile', () => {
    const t0 = 5000;
    // gw-c hands clone #2 (epoch 4) to gw-b; meanwhile a rebalancing round brings clone #0 there, and its IKE SA
    // moves and its Child SA comes up first.
    const gwC = { name: 'gw-c', wan: '10.81.1.13', log: [{ time: t0 + 12, msg: 'clone handed off', family: 'f', index: 2, epoch: 4, to: 'gw-b', decidedAt: t0 }] };
    const gwA = { name: 'gw-a', wan: '10.81.1.11', log: [{ time: t0 + 3, msg: 'clone handed off', family: 'f', index: 0, epoch: 9, to: 'gw-b', decidedAt: t0 - 20 }] };
    const gwB = {
      ...node,
      log: [
        { time: t0 + 5, msg: 'clone arrived', ike: 30, family: 'f', index: 0, epoch: 9 },
        { time: t0 + 14, msg: 'clone arrived', ike: 31, family: 'f', index: 2, epoch: 4 },
        { time: t0 + 20, msg: 'IKE SA moved', ike: 30 },
        { time: t0 + 40, msg: 'Child SA up', ike: 30, spiIn: 'c0000001', spiOut: '00c00001' },
        { time: t0 + 60, msg: 'IKE SA moved', ike: 31 },
        { time: t0 + 80, msg: 'Child SA up', ike: 31, spiIn: 'c0000002', spiOut: '00c00002' },
      ],
    };
    const first: FirstEsp[] = [
      { t: t0 + 44, src: node.wan, dst: client, spi: '0x00c00001' },
      { t: t0 + 86, src: client, dst: node.wan, spi: '0xc0000002' },
      { t: t0 + 90, src: node.wan, dst: client, spi: '0x00c00002' },
    ];
    // Only the commanded handoff (as the moves part counts): its own points, in order.
    const commanded = handoffTimes([gwA, gwB, gwC], first, t0 - 100, (h) => h.index === 2 && h.epoch === 4);
    expect(commanded).toEqual({ toUpdate: [60], toChild: [80], toEsp: [86] });
    // Both handoffs, each with its own points.
    const all = handoffTimes([gwA, gwB, gwC], first, t0 - 100);
    expect(all).toEqual({ toUpdate: [40, 60], toChild: [60, 80], toEsp: [64, 86] });
    // A handoff whose arrival was never logged is not timed at all.
    expect(handoffTimes([gwC, { ...node, log: [] }], first, t0 - 100)).toEqual({ toUpdate: [], toChild: [], toEsp: [] });
  });

  it('counts retransmissions and cached answers between two readings', () => {
    expect(resendsBetween({ a: { retransmits: 2, responsesFromCache: 1 } }, { a: { retransmits: 5, responsesFromCache: 1 }, b: { retransmits: 1, responsesFromCache: 0 } }))
      .toEqual({ a: { retransmits: 3, responsesFromCache: 0 }, b: { retransmits: 1, responsesFromCache: 0 } });
  });
});
