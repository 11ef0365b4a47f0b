// `ikeclone demo --netns`: the built CLI as a process (root), building two
// namespaces with TUN devices, a gateway process in each, ping and iperf3
// through the tunnel; and that it leaves no namespace behind, also when
// interrupted. The stream-port choice is checked against the real SPD.
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { ensureCliBuilt, killCli, startCli } from './support/cli-proc.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { iperfStreamPorts, NETNS_DEMO_INNER, NETNS_DEMO_PREFIX, type NetnsDemoResult } from '../demo/demo-netns.js';
import { formatNetnsDemo } from '../control/cli/format.js';
import { Spd } from '../dataplane/spd.js';
import { familyKey, type SaRecord } from '../dataplane/sad.js';
import type { Selector } from '../dataplane/packet.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'iperf3'];
async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Namespaces whose name starts with `prefix` (`ip netns list`). */
function namespacesStartingWith(prefix: string): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5000 });
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.startsWith(prefix));
}

function selector(cidr: string): Selector {
  const [a, len] = cidr.split('/') as [string, string];
  const start = a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const end = start + 2 ** (32 - Number(len)) - 1;
  const bytes = (v: number) => new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
  return { startAddress: bytes(start), endAddress: bytes(end), ipProtocol: 0, startPort: 0, endPort: 0xffff };
}

/** Pids of processes whose command line mentions `text` (the demo's config paths name its pid). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(text)) pids.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function tcpPacket(src: string, srcPort: number, dst: string, dstPort: number): Uint8Array {
  const p = new Uint8Array(40);
  p[0] = 0x45;
  p[3] = 40;
  p[8] = 64;
  p[9] = 6;
  p.set(src.split('.').map(Number), 12);
  p.set(dst.split('.').map(Number), 16);
  p.set([srcPort >> 8, srcPort & 0xff, dstPort >> 8, dstPort & 0xff], 20);
  return p;
}

describe('iperfStreamPorts', () => {
  it('spreads the streams over every member of the clone family in both directions, as the data plane\'s SPD picks them', () => {
    const left = [selector(NETNS_DEMO_INNER.initiatorNet)];
    const right = [selector(NETNS_DEMO_INNER.responderNet)];
    for (let n = 1; n <= 16; n++) {
      const { base, streams } = iperfStreamPorts(n);
      expect(streams).toBeGreaterThanOrEqual(n);
      // One SPD per gateway, with the family's n members as the data plane installs them.
      const out = new Spd();
      const back = new Spd();
      const members = (local: Selector[], remote: Selector[]) =>
        Array.from({ length: n }, (_, id) => ({ id, familyKey: familyKey(local, remote), localTs: local, remoteTs: remote }) as unknown as SaRecord);
      const outMembers = members(left, right);
      const backMembers = members(right, left);
      for (const m of outMembers) out.add(m);
      for (const m of backMembers) back.add(m);
      const hitOut = new Set<number>();
      const hitBack = new Set<number>();
      for (let i = 0; i < streams; i++) {
        const port = n === 1 ? 50000 + i : base + i;
        const a = out.lookup(tcpPacket(NETNS_DEMO_INNER.initiator, port, NETNS_DEMO_INNER.responder, 5201));
        const b = back.lookup(tcpPacket(NETNS_DEMO_INNER.responder, 5201, NETNS_DEMO_INNER.initiator, port));
        expect(typeof a).toBe('object');
        expect(typeof b).toBe('object');
        hitOut.add((a as SaRecord).id);
        hitBack.add((b as SaRecord).id);
      }
      expect(hitOut.size, `n=${n} initiator -> responder`).toBe(n);
      expect(hitBack.size, `n=${n} responder -> initiator`).toBe(n);
    }
    expect(() => iperfStreamPorts(0)).toThrow(RangeError);
    expect(() => iperfStreamPorts(17)).toThrow(RangeError);
  });
});

describe('ikeclone demo --netns (built CLI, root)', () => {
  // Namespace suites run one at a time (host lock).
  const suite = useNetnsSuite('demo-netns', PRE);

  it('--seconds without --netns is a usage error (exit 2)', async () => {
    ensureCliBuilt();
    const r = startCli(['demo', '--seconds', '2']);
    suite.cleanup(() => killCli(r.proc));
    expect(await r.exited).toBe(2);
    expect(r.stderr()).toMatch(/--seconds applies to --netns only/);
    expect(r.stdout()).toBe('');
  });

  interopTest(
    'demo --netns --json --seconds 2: pings answered both ways, iperf3 through the tunnel, every worker of both gateways carried ESP, both ends agree, no namespace left',
    PRE,
    async () => {
      ensureCliBuilt();
      const r = startCli(['demo', '--netns', '--json', '--seconds', '2']);
      suite.cleanup(() => killCli(r.proc));
      const code = await r.exited;
      expect(code, r.stderr()).toBe(0);
      const mine = `${NETNS_DEMO_PREFIX}${r.proc.pid}-`;
      const res = JSON.parse(r.stdout()) as NetnsDemoResult;
      // Progress went to stderr, stdout is the JSON document alone.
      expect(r.stderr()).toMatch(/creating namespaces/);
      expect(r.stdout().trim().startsWith('{')).toBe(true);

      expect(res.demo).toBe('ikeclone-netns');
      expect(res.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(res.namespaces.map((n) => n.role)).toEqual(['initiator', 'responder']);
      for (const ns of res.namespaces) expect(ns.name.startsWith(mine)).toBe(true);
      expect(res.esp).toBe('udp');

      for (const p of [res.ping.toResponder, res.ping.toInitiator]) {
        expect(p.sent).toBe(5);
        expect(p.received).toBe(5);
        expect(p.rttMs).toBeGreaterThan(0);
      }
      expect(res.ping.toResponder.to).toBe(NETNS_DEMO_INNER.responder);
      expect(res.ping.toInitiator.to).toBe(NETNS_DEMO_INNER.initiator);

      expect(res.iperf3.seconds).toBe(2);
      expect(res.iperf3.mbps).toBeGreaterThan(1);
      expect(res.iperf3.streams).toBe(iperfStreamPorts(res.family.target).streams);
      process.stderr.write(`demo --netns: iperf3 ${res.iperf3.mbps} Mbit/s over ${res.iperf3.streams} streams, ${res.iperf3.retransmits} retransmits\n`);

      // One IKE SA per worker on either side, each Child SA owned by its own worker.
      const workers = res.workers.initiator.length;
      expect(workers).toBeGreaterThanOrEqual(1);
      expect(res.workers.responder).toHaveLength(workers);
      expect(res.family.target).toBe(workers);
      expect(res.family.state).toBe(workers > 1 ? 'complete' : 'single');
      expect(res.family.members).toHaveLength(workers);
      expect(new Set(res.family.members.map((m) => m.worker)).size).toBe(workers);
      expect(new Set(res.family.members.map((m) => m.peerWorker)).size).toBe(workers);
      for (const m of res.family.members) expect(m.childSpiIn).toMatch(/^[0-9a-f]{8}$/);

      // Every worker of both gateways sealed and opened packets (the streams cover the family both ways).
      for (const side of [res.workers.initiator, res.workers.responder]) {
        for (const w of side) {
          expect(w.sas).toBe(1);
          expect(w.encapPackets, `worker ${w.index}`).toBeGreaterThan(0);
          expect(w.decapPackets, `worker ${w.index}`).toBeGreaterThan(0);
        }
      }
      // What one end sealed, the other opened (nothing forged or replayed). The two gateways'
      // counters are read moments apart while the last TCP segments may still flow, so the
      // responder may count a few packets the initiator's snapshot did not yet include.
      const SNAPSHOT_SKEW = 64;
      const sum = (ws: typeof res.workers.initiator, f: (w: (typeof ws)[number]) => number) => ws.reduce((n, w) => n + f(w), 0);
      expect(sum(res.workers.responder, (w) => w.decapPackets)).toBeLessThanOrEqual(sum(res.workers.initiator, (w) => w.encapPackets) + SNAPSHOT_SKEW);
      expect(sum(res.workers.responder, (w) => w.decapPackets)).toBeGreaterThan(1000);

      expect(res.agree).toBe(true);
      expect(res.mismatches).toEqual([]);
      expect(res.durationMs).toBeGreaterThan(res.establishMs);

      expect(namespacesStartingWith(mine)).toEqual([]);
      expect(processesMentioning(`/${mine}`)).toEqual([]);

      // The human summary of the same result.
      const text = formatNetnsDemo(res);
      expect(text).toContain(`${res.iperf3.mbps} Mbit/s received`);
      expect(text).toContain(`ping ${NETNS_DEMO_INNER.initiator} -> ${NETNS_DEMO_INNER.responder}  5/5 answered`);
      expect(text.split('\n').filter((l) => /^ {2}(initiator|responder) +\d+ +\d+ +\d+ +\d+$/.test(l))).toHaveLength(2 * workers);
      expect(text).toMatch(/both ends agree/);
    },
    60_000,
  );

  interopTest(
    'SIGINT during iperf3: the demo stops its processes, deletes both namespaces and exits 1',
    PRE,
    async () => {
      ensureCliBuilt();
      const r = startCli(['demo', '--netns', '--seconds', '20']);
      suite.cleanup(() => killCli(r.proc));
      const mine = `${NETNS_DEMO_PREFIX}${r.proc.pid}-`;
      await waitFor('iperf3 to start', () => r.stdout().includes('iperf3 for 20 s') || r.proc.exitCode !== null, 20_000);
      expect(r.proc.exitCode, r.stdout() + r.stderr()).toBeNull();
      expect(namespacesStartingWith(mine)).toHaveLength(2);
      // Both gateways run, their configs in the demo's directory.
      expect(processesMentioning(`/${mine}`).length).toBeGreaterThanOrEqual(2);
      r.proc.kill('SIGINT');
      const code = await Promise.race([r.exited, new Promise<'slow'>((res) => setTimeout(() => res('slow'), 15_000))]);
      expect(code).toBe(1);
      expect(r.stderr()).toMatch(/interrupted by SIGINT/);
      expect(r.stdout()).toMatch(/deleting the namespaces/);
      expect(namespacesStartingWith(mine)).toEqual([]);
      expect(processesMentioning(`/${mine}`)).toEqual([]);
    },
    60_000,
  );
});
