// `node dist/bench/index.js cpu-profile --json` end to end (root, network
// namespaces): one JSON document on stdout and nothing else, every case with
// its four processes accounted, ikeclone's CPU on a thread named as a worker
// that moved the packets. Speed is not asserted (architecture §7: benchmarks
// measure, tests check); the suite's figures are in README.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import type { CpuProfileReport } from '../bench/cpu-profile.js';
import { interopTest, type PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { REPO_ROOT } from './support/vectors.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'iperf3'];

describe('npm run -s bench -- cpu-profile --json (root)', () => {
  useNetnsSuite('cpu-profile', PRE);

  interopTest('prints only JSON on stdout: CPU per GB of both gateways and iperf3, ikeclone\'s on its worker threads', PRE, () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'dist', 'bench', 'index.js'), 'cpu-profile', '--json', '--max-time', '1'], { encoding: 'utf8', timeout: 240_000 });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const report = JSON.parse(r.stdout) as CpuProfileReport;
    expect(report.suite).toBe('cpu-profile');
    const ikeclone = report.cases.filter((c) => c.case === 'ikeclone');
    expect(ikeclone.map((c) => c.esp)).toEqual(['aes128gcm16', 'chacha20poly1305']);
    for (const c of report.cases) {
      const summary = JSON.stringify({ case: c.case, esp: c.esp, processes: c.processes.map((p) => [p.role, p.user, p.system]) });
      expect(c.bytes, summary).toBeGreaterThan(0);
      expect(c.processes.map((p) => p.role).sort(), summary).toEqual(['iperf3 client', 'iperf3 server', 'left gateway', 'right gateway']);
      for (const p of c.processes.filter((x) => x.role.endsWith('gateway'))) expect(p.user + p.system, summary).toBeGreaterThan(0);
      expect(c.machine.busyShare).toBeGreaterThanOrEqual(0);
      expect(c.machine.busyShare).toBeLessThanOrEqual(1);
    }
    for (const c of ikeclone) {
      // The thread named worker N is the one that used the CPU, and the status says that worker moved the packets.
      for (const role of ['left gateway', 'right gateway'] as const) {
        const p = c.processes.find((x) => x.role === role)!;
        const busiest = p.threads[0]!;
        expect(busiest.name, JSON.stringify(p.threads)).toMatch(/^worker \d+$/);
        const index = Number(busiest.name.split(' ')[1]);
        const counters = c.workers!.slice(role === 'left gateway' ? 0 : c.workers!.length / 2).find((w) => w.index === index)!;
        expect(role === 'left gateway' ? counters.encapPackets : counters.decapPackets, JSON.stringify(c.workers)).toBeGreaterThan(100);
      }
    }
  }, 300_000);
});
