// `ikeclone top`'s screen from two status snapshots: rates are differences
// over the time between them, and the screen fits any terminal size.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { humanRate, renderTop, runTop } from '../control/cli/top.js';
import type { TopSample } from '../control/cli/top.js';
import type { GatewayStatus } from '../control/status.js';

function status(packets: number, opts: { workers?: number; children?: number } = {}): GatewayStatus {
  const children = Array.from({ length: opts.children ?? 2 }, (_, i) => ({
    id: 10 + i,
    name: 'net',
    state: 'installed',
    spiIn: 'c0000001',
    spiOut: 'c0000002',
    proposal: 'AES_GCM_16_256',
    localTs: [],
    remoteTs: [],
    udpEncap: true,
    ageSeconds: 1,
    worker: i,
    packetsIn: packets * (i + 1),
    packetsOut: packets * (i + 1),
  }));
  return {
    ikeSas: [
      {
        id: 1, sessionId: 1, familyIndex: 0, name: 'home', state: 'established', role: 'initiator', spiI: 'a', spiR: 'b',
        local: '10.0.0.1:4500', remote: '10.0.0.2:4500', localId: null, remoteId: null, proposal: null, natLocal: false,
        natRemote: false, mobike: true, clone: true, virtualIp: null, peerVirtualIp: null, ageSeconds: 5, children,
      },
    ],
    families: [{ sessionId: 1, peer: 'bob', members: [1, 2], target: 2, state: 'complete', reason: null }],
    halfOpen: 0,
    ike: { received: 4, sent: 4, retransmits: 0, responsesFromCache: 0, drops: {} },
    udp: null,
    dataplane: {
      workers: Array.from({ length: opts.workers ?? 2 }, (_, index) => ({
        index, sas: 1, encapPackets: packets * (index + 1), encapBytes: packets * 1000, decapPackets: packets, decapBytes: packets * 500,
        espBytesOut: 0, drops: { replay: packets / 100, icv: 0, malformed: 0, seqExhausted: 0, noSa: 0, queueFull: 0 }, batches: 1, busyMs: 1, espSent: 0, innerWritten: 0,
      })),
    } as unknown as GatewayStatus['dataplane'],
  };
}

const sample = (packets: number, at: number, opts = {}): TopSample => ({ status: status(packets, opts), at });

describe('ikeclone top: the screen', () => {
  it('shows per-worker rates from two snapshots a second apart', () => {
    const screen = renderTop(sample(1000, 0), sample(3000, 1000), 120, 40).join('\n');
    // worker 1: 2 * (3000 - 1000) packets in 1 s = 4000 pps out; 2000 packets of 1000 B = 16 Mbit/s; 30 drops, 20 in that second.
    expect(screen).toMatch(/^\s+1\s+1\s+4\.00k\s+2\.00k\s+16\.0M\s+8\.00M\s+20\s+30$/m);
    expect(screen).toContain('IKE SAs 1  Child SAs 2  families 1');
    expect(screen).toMatch(/^\s+1\s+2\/2 complete\s+bob/m);
    // The busiest Child SA first: child 11 moved 2 * 2 * 2000 packets.
    const order = screen.split('\n').filter((l) => /^\s+1[01]\s+1\s/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
    expect(order).toEqual(['11', '10']);
    expect(screen).toMatch(/q quits$/);
  });

  it('shows no rates before a second snapshot', () => {
    const screen = renderTop(undefined, sample(1000, 0), 120, 40).join('\n');
    expect(screen).toMatch(/^\s+0\s+1\s+-\s+-\s+-\s+-\s+-\s+10$/m);
  });

  it('fits a narrow and a short terminal', () => {
    const lines = renderTop(sample(1, 0, { workers: 8, children: 30 }), sample(2, 1000, { workers: 8, children: 30 }), 32, 12);
    expect(lines.length).toBeLessThanOrEqual(12);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(32);
    expect(lines.at(-2)).toMatch(/^… \d+ more lines/);
    expect(lines.at(-1)).toBe('q quits');
  });

  it('says so when there is no data plane', () => {
    const s = status(1);
    s.dataplane = null;
    expect(renderTop(undefined, { status: s, at: 0 }, 80, 24).join('\n')).toContain('no data plane');
  });

  it('humanRate', () => {
    expect([humanRate(0), humanRate(999), humanRate(1234), humanRate(12_345_678), humanRate(NaN), humanRate(2.5)]).toEqual(['0', '999', '1.23k', '12.3M', '-', '2.5']);
  });
});

describe('ikeclone top: the loop', () => {
  it('redraws every interval, tells when the gateway goes away, and ends on q', async () => {
    const written: string[] = [];
    const input = new PassThrough();
    let calls = 0;
    const done = runTop({
      fetchStatus: async () => {
        calls++;
        if (calls === 3) throw new Error('connect ENOENT /run/ikeclone/ikeclone.sock');
        return status(calls * 1000);
      },
      term: { columns: 100, rows: 30, write: (t) => written.push(t) },
      input,
      intervalMs: 20,
    });
    for (let i = 0; i < 100 && calls < 4; i++) await new Promise((r) => setTimeout(r, 10));
    input.write('q');
    await done;
    const frames = written.join('');
    expect(frames.startsWith('\x1b[?1049h')).toBe(true);
    expect(frames.endsWith('\x1b[?25h\x1b[?1049l')).toBe(true);
    expect(frames).toContain('the gateway cannot be reached: connect ENOENT');
    expect(frames.match(/ikeclone top {2}\d\d:\d\d:\d\d/g)!.length).toBeGreaterThanOrEqual(3);
    const after = written.length;
    await new Promise((r) => setTimeout(r, 60));
    expect(written.length).toBe(after);
  });
});
