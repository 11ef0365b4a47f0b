// The demo's traffic stage (ikeclone demo, no root): generated packets through
// every worker's Child SA of the clone family, UDP-encapsulated on loopback,
// verified and counted by the responder's owner workers.
import { describe, expect, it } from 'vitest';
import { runDemo } from '../demo/demo.js';

describe('demo traffic through the data plane', () => {
  it('pushes packets through one Child SA per worker and reports per-worker figures and drops', async () => {
    const lines: string[] = [];
    const r = await runDemo({ clones: 2, traffic: { packets: 4000, size: 600 }, progress: (l) => lines.push(l) });
    const d = r.dataplane!;
    expect(d).not.toBeNull();
    expect(r.family.members).toHaveLength(2);
    expect(d.packetSize).toBe(600);
    expect(d.sent).toBe(4000);
    // Everything sent is received, or dropped for a counted reason.
    const counted = d.drops.replay + d.drops.icv + d.drops.unknownSpi + d.drops.malformed + d.drops.queueFull + d.drops.lostInTransit;
    expect(d.received + counted).toBe(4000);
    expect(d.received).toBeGreaterThan(3600);
    expect(d.drops.icv + d.drops.replay + d.drops.unknownSpi).toBe(0);
    // One Child SA per worker on each side, and every worker carried traffic.
    for (const side of [d.initiator, d.responder]) {
      expect(side).toHaveLength(2);
      for (const w of side) {
        expect(w.sas).toBe(1);
        expect(w.packets).toBeGreaterThan(0);
        expect(w.pps).toBeGreaterThan(0);
      }
    }
    expect(d.initiator.reduce((n, w) => n + w.packets, 0)).toBe(4000);
    expect(d.responder.reduce((n, w) => n + w.packets, 0)).toBe(d.received);
    expect(d.pps).toBeGreaterThan(0);
    expect(d.gbps).toBeGreaterThan(0);
    expect(d.singleWriter).toBe(true);
    expect(lines.some((l) => /^traffic: \d+\/4000 packets received/.test(l))).toBe(true);
    expect(lines.filter((l) => /^\s+(sealed|opened)\s+worker/.test(l))).toHaveLength(4);
    // Both gateways' status name each Child SA's worker.
    expect(r.ike.children.every((c) => typeof c.worker === 'number')).toBe(true);
    expect(r.deleted).toBe(true);
  });

  it('runs without traffic when asked (dataplane: null)', async () => {
    const r = await runDemo({ clones: 1, traffic: false });
    expect(r.dataplane).toBeNull();
    expect(r.agree).toBe(true);
  });
});
