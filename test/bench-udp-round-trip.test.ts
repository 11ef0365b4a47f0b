// The cluster benchmark's measure of one hop between two processes
// (bench/udp-round-trip.ts): an echo and a pinger, here on loopback.
import { describe, expect, test } from 'vitest';
import { PING_WAIT_MS, UDP_PING_SCRIPT, parsePingReport, startUdpRoundTrips } from '../bench/udp-round-trip.js';
import { spawnTracked } from './support/proc.js';
import { freePorts } from './support/loopback.js';

const node = (script: string, args: string[]) => spawnTracked(process.execPath, ['-e', script, ...args]);

describe('UDP round trips between two processes', () => {
  test('every ping of a bounded run comes back, each round trip timed', async () => {
    const { port } = freePorts();
    const running = await startUdpRoundTrips({ echo: node, pinger: node, address: '127.0.0.1', port, count: 20, intervalMs: 5 });
    // The pinger ends by itself after 20 pings; stop() then only collects its report.
    await running.pingerEnded;
    const r = await running.stop();
    expect(r.lost).toBe(0);
    expect(r.rttMs).toHaveLength(20);
    for (const v of r.rttMs) expect(v).toBeGreaterThan(0);
    // Each is a round trip, not the interval between pings.
    expect(Math.min(...r.rttMs)).toBeLessThan(PING_WAIT_MS);
  }, 30_000);

  test('stopped early, the pinger reports the round trips so far', async () => {
    const { port } = freePorts();
    const running = await startUdpRoundTrips({ echo: node, pinger: node, address: '127.0.0.1', port, count: 100_000, intervalMs: 10 });
    // Long enough for a loaded machine to start the pinger and have a few answers.
    await new Promise((r) => setTimeout(r, 3000));
    const r = await running.stop();
    expect(r.rttMs.length).toBeGreaterThan(0);
    // At most one ping per 10 ms: far from the 100,000 it would have sent.
    expect(r.rttMs.length).toBeLessThan(300);
  }, 30_000);

  test('a ping nothing answers counts as lost after its wait', async () => {
    const { port } = freePorts();
    const p = node(UDP_PING_SCRIPT, ['127.0.0.1', String(port), '2', '1', '200']);
    await p.exited;
    expect(parsePingReport(p.stdout())).toEqual({ rttMs: [], lost: 2 });
  }, 30_000);

  test('an echo that exits before it is ready ends the start at once, with its error, and no pinger starts', async () => {
    const pingers: unknown[] = [];
    const dying = () => spawnTracked(process.execPath, ['-e', 'console.error("cannot bind"); process.exit(3)']);
    const started = performance.now();
    await expect(startUdpRoundTrips({ echo: dying, pinger: (s, a) => (pingers.push(a), node(s, a)), address: '127.0.0.1', port: freePorts().port, count: 3, intervalMs: 5 }))
      .rejects.toThrow(/the UDP echo exited: cannot bind/);
    // Not the 10 s wait for the echo's ready line.
    expect(performance.now() - started).toBeLessThan(5000);
    expect(pingers).toEqual([]);
  }, 30_000);

  test('a report that is missing or malformed is an error that says so', () => {
    expect(() => parsePingReport('')).toThrow(/printed no report/);
    expect(() => parsePingReport('{"rttMs":[1,"x"],"lost":0}')).toThrow(/not \{rttMs: number\[\], lost: number\}/);
    expect(() => parsePingReport('null')).toThrow(/not \{rttMs/);
    expect(parsePingReport('ready\n{"rttMs":[0.5,1.25],"lost":1}\n')).toEqual({ rttMs: [0.5, 1.25], lost: 1 });
  });
});
