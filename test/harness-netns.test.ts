// Self-tests of the namespace harness (test/support/netns.ts, proc.ts,
// lock.ts, prereq.ts): what the interop suites build on must itself work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NetemUnsupportedError,
  addVeth,
  cleanupNamespaces,
  clearNetem,
  createNamespace,
  createTopology,
  createdNamespaces,
  exec,
  linkDown,
  linkUp,
  listNamespaces,
  ping,
  reapStaleNamespaces,
  setNetem,
} from './support/netns.js';
import { interopTest, requirePrereqs } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { acquireHostLock } from './support/lock.js';
import type { HostLock } from './support/lock.js';
import { run, runChecked, spawnTracked, trackedPids, waitFor } from './support/proc.js';

const NETNS: PrereqName[] = ['root', 'netns'];
const ours = (names: string[]) => names.filter((n) => n.startsWith(`ikc${process.pid}-`));

describe('proc helpers', () => {
  it('waitFor returns the first truthy value and throws a message naming what timed out', async () => {
    let n = 0;
    await expect(waitFor(() => (++n >= 3 ? n : 0), { timeoutMs: 2000, intervalMs: 5 })).resolves.toBe(3);
    await expect(waitFor(() => false, { timeoutMs: 100, intervalMs: 10, message: 'the moon' })).rejects.toThrow(
      /timed out after 100 ms waiting for the moon/,
    );
    await expect(
      waitFor(
        () => {
          throw new Error('not yet');
        },
        { timeoutMs: 60, intervalMs: 10, message: 'x' },
      ),
    ).rejects.toThrow(/last error: not yet/);
  });

  it('run kills a command by pid at its timeout and reports it', async () => {
    const r = await run('sleep', ['30'], { timeoutMs: 200 });
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(r.durationMs).toBeLessThan(5000);
    await expect(runChecked('sh', ['-c', 'echo oops >&2; exit 3'])).rejects.toThrow(/exit 3[\s\S]*oops/);
  });

  it('tracks the pids it starts and forgets them once they exit', async () => {
    const p = spawnTracked('sleep', ['30']);
    expect(trackedPids()).toContain(p.pid);
    const info = await p.stop({ graceMs: 2000 });
    expect(info.signal).toBe('SIGTERM');
    expect(trackedPids()).not.toContain(p.pid);
  });

  it('a host lock is exclusive across holders and free again after release', async () => {
    const first = await acquireHostLock('harness-selftest', { timeoutMs: 10_000 });
    await expect(acquireHostLock('harness-selftest', { timeoutMs: 300 })).rejects.toThrow(/host lock/);
    await first.release();
    const second = await acquireHostLock('harness-selftest', { timeoutMs: 10_000 });
    await second.release();
  });

  it('rejects unknown prerequisite names', () => {
    expect(() => requirePrereqs(['warp-drive' as PrereqName])).toThrow(/unknown prerequisite/);
  });
});

describe('network namespace harness', () => {
  let lock: HostLock | undefined;

  beforeAll(async () => {
    if (requirePrereqs(NETNS).ok) lock = await acquireHostLock('netns', { timeoutMs: 90_000 });
  }, 110_000);

  afterAll(async () => {
    try {
      await cleanupNamespaces();
    } finally {
      await lock?.release();
    }
  }, 30_000);

  interopTest(
    'two namespaces joined by a veth pair ping each other, IPv6 off, host links untouched',
    NETNS,
    async () => {
      const hostLinksBefore = (await runChecked('ip', ['-o', 'link', 'show'])).stdout.split('\n').length;
      const a = await createNamespace('a');
      const b = await createNamespace('b');
      expect(a.name).toMatch(new RegExp(`^ikc${process.pid}-\\d+-a$`));
      expect(await listNamespaces()).toEqual(expect.arrayContaining([a.name, b.name]));
      const link = await addVeth(a, b, { aCidr: '10.201.1.1/24', bCidr: '10.201.1.2/24' });
      // addVeth returns once both ends are operationally up (their addresses are then listed by getifaddrs).
      for (const ns of [a, b]) expect((await exec(ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'])).stdout).toMatch(/\bstate UP\b/);
      const p = await ping(a, link.bAddr, { count: 2 });
      expect(p.received, p.result.stdout).toBe(2);
      const back = await ping(b, link.aAddr, { count: 1 });
      expect(back.received).toBe(1);
      const v6 = await exec(a, 'sysctl', ['-n', 'net.ipv6.conf.all.disable_ipv6', 'net.ipv6.conf.eth0.disable_ipv6']);
      expect(v6.stdout.trim().split('\n')).toEqual(['1', '1']);
      const hostLinksAfter = (await runChecked('ip', ['-o', 'link', 'show'])).stdout.split('\n').length;
      expect(hostLinksAfter).toBe(hostLinksBefore);
      await expect(addVeth(a, b, { aCidr: '192.168.1.1/24', bCidr: '10.201.1.2/24' })).rejects.toThrow(/10\.0\.0\.0\/8/);
    },
    20_000,
  );

  interopTest(
    'a second veth pair gives each side two working NICs with their own subnets',
    NETNS,
    async () => {
      const topo = await createTopology({ links: 2, labels: ['mob', 'gw'] });
      try {
        expect(topo.links.map((l) => [l.aIf, l.aAddr, l.bAddr])).toEqual([
          ['eth0', `10.${topo.index}.1.1`, `10.${topo.index}.1.2`],
          ['eth1', `10.${topo.index}.2.1`, `10.${topo.index}.2.2`],
        ]);
        for (const l of topo.links) {
          const p = await ping(topo.left, l.bAddr, { count: 1, src: l.aAddr });
          expect(p.received, `${l.aIf}: ${p.result.stdout}`).toBe(1);
        }
        // the inner addresses are local to each side (on lo) and not routed across
        const inner = await exec(topo.left, 'ip', ['-o', 'addr', 'show', 'dev', 'lo']);
        expect(inner.stdout).toContain(`${topo.leftInner}/24`);
        const across = await ping(topo.left, topo.rightInner, { count: 1, waitS: 0.3 });
        expect(across.received).toBe(0);
      } finally {
        await topo.destroy();
      }
    },
    20_000,
  );

  interopTest(
    'taking a link down stops the ping and bringing it up restores it',
    NETNS,
    async () => {
      const topo = await createTopology();
      try {
        const dst = topo.links[0]!.bAddr;
        expect((await ping(topo.left, dst)).received).toBe(1);
        await linkDown(topo.right, 'eth0');
        expect((await ping(topo.left, dst, { count: 2, waitS: 0.3 })).received).toBe(0);
        await linkUp(topo.right, 'eth0');
        // a veth that comes back up needs a moment before it carries traffic
        await waitFor(async () => (await ping(topo.left, dst, { waitS: 0.3 })).received === 1, {
          timeoutMs: 5000,
          intervalMs: 100,
          message: 'ping after link up',
        });
      } finally {
        await topo.destroy();
      }
    },
    20_000,
  );

  interopTest(
    'tc netem loss drops the ping (or is reported as unsupported by this kernel)',
    [...NETNS, 'tc'],
    async () => {
      const topo = await createTopology();
      try {
        const dst = topo.links[0]!.bAddr;
        if (requirePrereqs(['netem']).ok) {
          await setNetem(topo.left, 'eth0', { lossPct: 100 });
          const qdisc = await exec(topo.left, 'tc', ['qdisc', 'show', 'dev', 'eth0']);
          expect(qdisc.stdout).toMatch(/netem.*loss 100%/);
          expect((await ping(topo.left, dst, { count: 3, waitS: 0.3 })).received).toBe(0);
          await clearNetem(topo.left, 'eth0');
          expect((await ping(topo.left, dst)).received).toBe(1);
        } else {
          process.stderr.write(`\n!!! netem unavailable here: ${requirePrereqs(['netem']).reasons.join('; ')}\n`);
          await expect(setNetem(topo.left, 'eth0', { lossPct: 100 })).rejects.toBeInstanceOf(NetemUnsupportedError);
          expect((await ping(topo.left, dst)).received).toBe(1);
        }
      } finally {
        await topo.destroy();
      }
    },
    20_000,
  );

  interopTest(
    'cleanup deletes exactly our namespaces, and stale ones of dead owners can be reaped',
    NETNS,
    async () => {
      await createTopology({ links: 2 });
      await createNamespace('extra');
      expect(ours(await listNamespaces()).length).toBeGreaterThanOrEqual(3);
      // a namespace named after an owner that no longer exists
      const gone = spawnTracked('true', []);
      await gone.exited;
      const stale = `ikc${gone.pid}-1-stale`;
      await runChecked('ip', ['netns', 'add', stale]);
      try {
        await cleanupNamespaces();
        const after = await listNamespaces();
        expect(ours(after)).toEqual([]);
        expect(createdNamespaces()).toEqual([]);
        expect(after).toContain(stale);
        expect(await reapStaleNamespaces()).toContain(stale);
        expect(await listNamespaces()).not.toContain(stale);
      } finally {
        await run('ip', ['netns', 'delete', stale]);
      }
    },
    20_000,
  );
});
