// The short soak across rekeys (bench/soak.ts, whose long run README
// reports): two ikeclone gateways in network namespaces, the initiator with
// a clone family of two IKE SAs, Child SAs rekeyed every 3 s by both ends,
// IKE SAs every 12 s, the session reauthenticated every 25 s (RFC 7296 §2.8,
// §2.8.3), while a sequence-numbered UDP stream runs each way and a
// pattern-checked TCP stream one way. Not one inner packet may be lost or
// duplicated, and the data planes count no drop of any kind.
import { describe, expect } from 'vitest';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { runSoak } from '../bench/soak.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun'];

describe('soak across rekeys (bench/soak.ts, short)', () => {
  useNetnsSuite('soak', PRE);

  interopTest(
    '45 s of UDP each way and TCP across Child SA rekeys, IKE SA rekeys and reauthentication of a cloned pair: nothing lost, duplicated or dropped',
    PRE,
    async () => {
      const lines: string[] = [];
      const r = await runSoak({
        seconds: 45, childRekey: 3, ikeRekey: 12, reauth: 25, workers: 2, udpRate: 400, udpFlows: 4, tcpRate: 128 * 1024,
        progress: (l) => void lines.push(l),
      });
      const summary = JSON.stringify({ rekeys: r.rekeys, udp: r.udp, tcp: r.tcp, drops: r.drops, kernelDrops: r.kernelDrops, dropTimeline: r.dropTimeline, heldEsp: r.heldEsp, failed: r.failedExchanges, progress: lines.slice(-5) });
      // Enough of each event to matter: each Child SA of the family rekeys about a dozen times.
      expect(r.rekeys.child, summary).toBeGreaterThanOrEqual(15);
      expect(r.rekeys.ike, summary).toBeGreaterThanOrEqual(3);
      expect(r.rekeys.reauth, summary).toBeGreaterThanOrEqual(1);
      for (const u of [r.udp.leftToRight, r.udp.rightToLeft]) {
        expect(u.sent, summary).toBeGreaterThan(15_000);
        expect({ lost: u.lost, duplicates: u.duplicates, malformed: u.malformed, unique: u.unique }, summary)
          .toEqual({ lost: 0, duplicates: 0, malformed: 0, unique: u.sent });
      }
      expect(r.udp.sent.every((s) => s.error === null), summary).toBe(true);
      expect({ ended: r.tcp.ended, error: r.tcp.error, corrupt: r.tcp.corrupt, bytes: r.tcp.bytes }, summary)
        .toEqual({ ended: true, error: null, corrupt: 0, bytes: r.tcp.sent });
      expect(r.tcp.sent, summary).toBeGreaterThan(2_000_000);
      // No ESP dropped by either data plane for any reason (unknown SPI, SA not installed, no policy, replay, ICV).
      expect(r.drops, summary).toEqual({});
      expect(r.intact, summary).toBe(true);
    },
    180_000,
  );
});
