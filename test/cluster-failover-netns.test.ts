// Failover of a three-node cluster in network namespaces (architecture §8),
// on the harness of test/support/cluster-netns.ts (three-member etcd with
// TLS, one member in each gateway's namespace): `kill -9` of one node's
// gateway and its etcd member; a survivor takes its clone over, the client's
// Child SAs with the dead node are deleted, and traffic from the client's
// virtual IP to the LAN host resumes. The gap is measured with UDP probes on
// many flows (the client spreads flows over its Child SAs by their 5-tuple,
// so some ride the dead node's) and asserted under a generous bound: the
// lease TTL plus a margin. The killed node's etcd member leads at the kill
// (etcd's default raft timing, 100/1000 ms): a survivor notices the dead
// node's heartbeat stop, finds it does not answer the liveness probe on its
// cluster address, and revokes its lease (control/cluster/silent-member.ts,
// liveness-probe.ts; on by default) rather than wait for the new leader's
// lessor to let it lapse; a survivor whose own heartbeat was held up by the
// election answers the probe and keeps its lease.
import { describe, expect, onTestFailed } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClusterNet, type ClusterNet } from './support/cluster-netns.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { interopTest, type PrereqName } from './support/prereq.js';
import { runChecked, waitFor } from './support/proc.js';
import { ping, spawnIn } from './support/netns.js';
import type { GatewayStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'etcd', 'nftables'];

/**
 * Cut a node's namespace off from etcd: no client or peer traffic of etcd
 * leaves or enters it (its own member, reached over lo, stays reachable but
 * has no quorum). Taking the control link down is not a cut: the LAN or WAN
 * side may still route to the other members.
 */
const ETCD_CUT = `table inet ikc_etcd_cut {
  chain in { type filter hook input priority 0; iifname "lo" accept; tcp dport { 2379, 2380 } drop; tcp sport { 2379, 2380 } drop; }
  chain out { type filter hook output priority 0; oifname "lo" accept; tcp dport { 2379, 2380 } drop; tcp sport { 2379, 2380 } drop; }
}
`;
const LEASE_TTL_S = 3;
/** Generous: the lease lapses (TTL), etcd tells the survivors, one claims, path test, address list, UPDATE_SA_ADDRESSES, Delete. */
const GAP_BOUND_MS = LEASE_TTL_S * 1000 + 12_000;
const PROBE_PORT = 9007;
const PROBE_FLOWS = 32;

/** UDP echo on the LAN host. */
const ECHO = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(${PROBE_PORT}, process.argv[2]);
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * Probes from the client's virtual IP: one socket (source port) per flow, a
 * datagram every 100 ms on each; on SIGTERM (or after 120 s) prints, per
 * source port, the times (ms since the epoch) at which answers came back.
 */
const PROBE = `
const dgram = require('node:dgram');
const [src, dst, flows] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const replies = {};
const socks = [];
for (let i = 0; i < flows; i++) {
  const s = dgram.createSocket('udp4');
  s.on('message', () => { const p = s.address().port; (replies[p] ||= []).push(Date.now()); });
  s.on('error', () => {});
  s.bind(0, src, () => socks.push(s));
}
const timer = setInterval(() => { for (const s of socks) s.send('probe', ${PROBE_PORT}, dst, () => {}); }, 100);
const done = () => { clearInterval(timer); process.stdout.write(JSON.stringify(replies)); process.exit(0); };
process.on('SIGTERM', done);
setTimeout(done, 120000);
`;

/** The longest time without an answer on any flow in [from, to], and the flows that went that long without one. */
function longestGap(replies: Record<string, number[]>, from: number, to: number): { gapMs: number; flowsHit: number } {
  let gapMs = 0;
  let flowsHit = 0;
  for (const times of Object.values(replies)) {
    const t = [from, ...times.filter((x) => x > from && x <= to), to];
    let g = 0;
    for (let i = 1; i < t.length; i++) g = Math.max(g, t[i]! - t[i - 1]!);
    if (g > 1000) flowsHit++;
    gapMs = Math.max(gapMs, g);
  }
  return { gapMs, flowsHit };
}

describe('cluster failover in network namespaces', () => {
  const env = useNetnsSuite('cluster-failover', PRE);

  function dumpOnFailure(net: ClusterNet): void {
    onTestFailed(() => {
      for (const node of net.nodes) process.stderr.write(`\n--- ${node.name} log (tail) ---\n${node.gateway()?.log().split('\n').slice(-60).join('\n') ?? '(not running)'}\n`);
      process.stderr.write(`\n--- client log (tail) ---\n${net.clientProcess()?.log().split('\n').slice(-80).join('\n') ?? '(not running)'}\n`);
    });
  }

  /** The client's established IKE SAs with a Child SA, by the node address they lead to. */
  async function familyByNode(net: ClusterNet): Promise<Map<string, GatewayStatus['ikeSas'][number]>> {
    const out = new Map<string, GatewayStatus['ikeSas'][number]>();
    for (const s of await familySas(net)) out.set(s.remote.split(':')[0]!, s);
    return out;
  }

  /**
   * The client's established IKE SAs that carry a Child SA. After a takeover
   * two of them lead to the same survivor (its own clone and the one it took
   * over) until rebalancing moves one: a map by node would keep only one.
   */
  async function familySas(net: ClusterNet): Promise<GatewayStatus['ikeSas']> {
    const st = await net.clientProcess()!.status();
    return st.ikeSas.filter((s) => s.state === 'established' && s.children.length > 0);
  }

  /** The client's IKE SA with SPIs `of`, once none of the family leads to `gone` any more. */
  async function takenOver(net: ClusterNet, gone: string, of: { spiI: string; spiR: string }): Promise<GatewayStatus['ikeSas'][number] | undefined> {
    const sas = await familySas(net);
    if (sas.some((s) => s.remote.split(':')[0] === gone)) return undefined;
    return sas.find((s) => s.spiI === of.spiI && s.spiR === of.spiR);
  }

  /**
   * Ping from the client's virtual IP to the LAN host until five in a row
   * come back (bounded): traffic works again, whatever moves the cluster is
   * still finishing (a rebalanced clone's Child SA is briefly gone).
   */
  async function pingsThrough(net: ClusterNet, vip: string): Promise<void> {
    let last = '';
    await waitFor(
      async () => {
        const r = await ping(net.client, net.lanHost, { count: 5, intervalS: 0.1, waitS: 2, src: vip });
        last = r.result.stdout;
        return r.received === 5 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, message: () => `five pings in a row through the cluster (${last.trim().slice(-200)})` },
    );
  }

  /** Three nodes (3 s leases) and the client, its family grown to one IKE SA with a Child SA per node. */
  async function familyOnThreeNodes(dir: string): Promise<{ net: ClusterNet; vip: string }> {
    const net = await createClusterNet({ dir, leaseTtl: `${LEASE_TTL_S}s`, logLevel: 'info' });
    env.cleanup(() => net.destroy());
    dumpOnFailure(net);
    await net.startNodes();
    await net.startClient();
    const vip = await net.clientVip();
    await waitFor(async () => ((await familyByNode(net)).size === 3 ? true : undefined), { timeoutMs: 60_000, intervalMs: 250, message: "the client's family on every node" });
    return { net, vip };
  }

  interopTest(
    'kill -9 of a node (gateway and etcd member, the etcd leader): a survivor revokes its silent lease (no answer to the liveness probe) and takes its clone over, both survivors keep theirs, the old Child SAs are deleted, traffic resumes within the lease TTL and a margin',
    PRE,
    async () => {
      const dir = env.dir('kill');
      const { net, vip } = await familyOnThreeNodes(dir);
      const victim = net.nodes[2]!;
      // The victim's etcd member leads: its death costs an election, and the new leader's lessor would
      // renew the victim's lease for its TTL plus an election timeout.
      await net.etcd.moveLeader(victim.index);
      // Leadership moved: the new leader renewed every lease; keep-alives and heartbeats settle for a lease's time.
      await new Promise((r) => setTimeout(r, LEASE_TTL_S * 1000));
      expect(await net.etcd.leader()).toBe(victim.index);
      const before = (await familyByNode(net)).get(victim.wan)!;
      const oldSpis = new Set(before.children.flatMap((c) => [c.spiIn, c.spiOut]));

      // Traffic on many flows, answered by the LAN host.
      writeFileSync(join(dir, 'echo.cjs'), ECHO);
      writeFileSync(join(dir, 'probe.cjs'), PROBE);
      const echo = spawnIn(net.lan, process.execPath, [join(dir, 'echo.cjs'), net.lanHost]);
      env.cleanup(() => echo.stop({ graceMs: 1000 }));
      const probe = spawnIn(net.client, process.execPath, [join(dir, 'probe.cjs'), vip, net.lanHost, String(PROBE_FLOWS)]);
      env.cleanup(() => probe.stop({ graceMs: 1000 }));
      await new Promise((r) => setTimeout(r, 2000));

      const killedAt = Date.now();
      await net.killNode(victim.index);
      // The LAN's router drops the dead node's next hop (as its health check or BFD would): that
      // part of the path is the router's, not the cluster's.
      const I = net.index;
      await runChecked('ip', ['-n', net.lan.name, 'route', 'replace', net.poolNet, ...[0, 1].flatMap((k) => ['nexthop', 'via', `10.${I}.2.${11 + k}`, 'weight', '1'])], { timeoutMs: 10_000 });

      // A survivor owns the clone now: the client's IKE SA of it leads to a survivor, with a new Child SA.
      const survivors = net.nodes.slice(0, 2);
      const taken = await waitFor(
        async () => {
          const sa = await takenOver(net, victim.wan, before);
          return sa && sa.children.length > 0 && sa.children.every((c) => !oldSpis.has(c.spiIn)) ? sa : undefined;
        },
        { timeoutMs: GAP_BOUND_MS + 20_000, intervalMs: 200, message: 'a survivor to take the clone over' },
      );
      const takenBy = survivors.find((n) => taken.remote.split(':')[0] === n.wan)!;
      expect(takenBy).toBeDefined();
      // The old Child SAs are gone at the client (deleted by their SPIs), none of the family holds them.
      const after = await net.clientProcess()!.status();
      expect(after.ikeSas.flatMap((s) => s.children).filter((c) => oldSpis.has(c.spiIn) || oldSpis.has(c.spiOut))).toEqual([]);
      // The new Child SA carries the survivor's SPI prefix (its index + 1, io/spi-layout.ts).
      expect(Number.parseInt(taken.children[0]!.spiOut.replace(/^0x/, '').padStart(8, '0').slice(0, 2), 16)).toBe(takenBy.index + 1);
      expect(takenBy.gateway()!.log()).toContain('clone taken over from a node that is gone');
      // suspect_silent is on by default: a survivor revoked exactly the dead node's lease once its heartbeat
      // stopped and it did not answer the liveness probe (etcd's lessor would have kept it longer); neither
      // survivor lost its lease through the election (a survivor silent in etcd answers the probe).
      const survivorStatus = await Promise.all(survivors.map((n) => n.gateway()!.status()));
      process.stderr.write(`survivors: ${JSON.stringify(survivorStatus.map((st) => ({ node: st.cluster!.node, revoked: st.cluster!.revokedSilent, spared: st.cluster!.silentSpared, probe: st.cluster!.livenessProbe })))}\n`);
      expect(survivorStatus.reduce((sum, st) => sum + (st.cluster!.revokedSilent ?? 0), 0)).toBe(1);
      for (const st of survivorStatus) expect(st.cluster).toMatchObject({ lease: 'held', livenessProbe: { port: 4501 } });
      const revokes = survivors.flatMap((n) => n.gateway()!.log().split('\n').filter((l) => /member silent for \d+ ms while etcd served us: its lease revoked/.test(l)));
      expect(revokes).toHaveLength(1);
      expect(revokes[0]).toContain(`"member":"${victim.name}"`);
      expect(revokes[0]).toContain('"probe":"no answer"');
      for (const n of survivors) expect(n.gateway()!.log()).not.toMatch(/cluster lease lost|joined the cluster again/);
      // etcd names the survivor owner one epoch on.
      const owners = await net.etcd.ctl(['get', '--prefix', `/ikeclone/v1/${net.clusterName}/clones/`]);
      expect(owners).toContain(`{"node":"${takenBy.name}","epoch":2}`);

      // Traffic resumed on every flow; the longest silence is under the bound.
      await new Promise((r) => setTimeout(r, 3000));
      const stoppedAt = Date.now();
      await probe.stop({ graceMs: 3000 });
      const replies = JSON.parse(probe.stdout() || '{}') as Record<string, number[]>;
      expect(Object.keys(replies).length).toBe(PROBE_FLOWS);
      for (const [port, times] of Object.entries(replies)) expect(times.some((t) => t > stoppedAt - 1500), `flow from port ${port} answered after the takeover`).toBe(true);
      const { gapMs, flowsHit } = longestGap(replies, killedAt, stoppedAt);
      process.stderr.write(`failover gap: ${gapMs} ms on ${flowsHit} of ${PROBE_FLOWS} flows (lease TTL ${LEASE_TTL_S} s)\n`);
      expect(flowsHit).toBeGreaterThan(0); // some flows rode the dead node's Child SA
      expect(gapMs).toBeLessThan(GAP_BOUND_MS);
      await pingsThrough(net, vip);

      // The node comes back (its etcd member on its data, then its gateway once the old lease is gone):
      // the survivor holding two members of the family hands one to it (rebalancing), and the client's
      // family has an IKE SA with a Child SA on every node again.
      await runChecked('ip', ['-n', net.lan.name, 'route', 'replace', net.poolNet, ...[0, 1, 2].flatMap((k) => ['nexthop', 'via', `10.${I}.2.${11 + k}`, 'weight', '1'])], { timeoutMs: 10_000 });
      await net.restartNode(victim.index);
      await waitFor(async () => ((await familyByNode(net)).has(victim.wan) ? true : undefined), { timeoutMs: 60_000, intervalMs: 250, message: 'a clone back on the restarted node' });
      const back = await familyByNode(net);
      expect(back.size).toBe(3);
      expect(Number.parseInt(back.get(victim.wan)!.children[0]!.spiOut.padStart(8, '0').slice(0, 2), 16)).toBe(victim.index + 1);
      expect(takenBy.gateway()!.log()).toContain('clone rebalanced');
      const status = await victim.gateway()!.status();
      expect(status.cluster).toMatchObject({ node: victim.name, lease: 'held' });
      expect(status.cluster!.clones).toHaveLength(1);
      await pingsThrough(net, vip);
    },
    300_000,
  );

  interopTest(
    'a node cut off from etcd stops IKE on its clone after its lease (logs and status say so) and keeps its Child SA; a survivor takes the clone over',
    PRE,
    async () => {
      const { net, vip } = await familyOnThreeNodes(env.dir('cut'));
      const cut = net.nodes[1]!;
      const cutGw = cut.gateway()!;
      const before = (await cutGw.status()).ikeSas.filter((s) => s.state === 'established');
      expect(before).toHaveLength(1);
      const child = before[0]!.children[0]!;
      // etcd goes out of the node's reach (its member cut off from the others too): the other two
      // members keep their quorum. Its WAN, LAN and control links stay up.
      await runChecked('ip', ['netns', 'exec', cut.ns.name, 'nft', '-f', '-'], { timeoutMs: 10_000, input: ETCD_CUT });
      const cutAt = Date.now();
      await waitFor(async () => ((await cutGw.status()).cluster?.lease === 'lost' ? true : undefined), {
        timeoutMs: LEASE_TTL_S * 1000 + 20_000,
        intervalMs: 250,
        message: 'the cut-off node to notice that its lease is gone',
      });
      expect(Date.now() - cutAt).toBeGreaterThanOrEqual(LEASE_TTL_S * 1000 - 1000);
      const st = await cutGw.status();
      expect(st.cluster).toMatchObject({ node: cut.name, lease: 'lost' });
      expect(cutGw.log()).toContain('cluster lease lost: IKE stops on this node');
      expect(cutGw.log()).toContain("IKE stopped on this node's clones until the lease is back");
      // Its Child SA is still installed there: the node tears nothing down on its own.
      expect(st.ikeSas.flatMap((s) => s.children).map((c) => c.spiIn)).toContain(child.spiIn);
      // A survivor takes the clone over; the client's Child SA with the cut-off node is deleted.
      await runChecked('ip', ['-n', net.lan.name, 'route', 'replace', net.poolNet, ...[0, 2].flatMap((k) => ['nexthop', 'via', `10.${net.index}.2.${11 + k}`, 'weight', '1'])], { timeoutMs: 10_000 });
      await waitFor(
        async () => {
          return (await takenOver(net, cut.wan, before[0]!)) ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250, message: 'a survivor to take the clone over' },
      );
      const client = await net.clientProcess()!.status();
      expect(client.ikeSas.flatMap((s) => s.children).filter((c) => c.spiOut === child.spiIn)).toEqual([]);
      // The cut-off node sent no IKE request on its clone once its lease was gone (the requests are held).
      const sentThen = (await cutGw.status()).ike.exchanges;
      await new Promise((r) => setTimeout(r, 2000));
      expect((await cutGw.status()).ike.exchanges).toEqual(sentThen);
      await pingsThrough(net, vip);

      // etcd comes back within reach: the node joins again and drops its stale copy of the clone; then
      // rebalancing gives it a clone again, and the family has a member on every node once more.
      await runChecked('ip', ['netns', 'exec', cut.ns.name, 'nft', 'delete', 'table', 'inet', 'ikc_etcd_cut'], { timeoutMs: 10_000 });
      await runChecked('ip', ['-n', net.lan.name, 'route', 'replace', net.poolNet, ...[0, 1, 2].flatMap((k) => ['nexthop', 'via', `10.${net.index}.2.${11 + k}`, 'weight', '1'])], { timeoutMs: 10_000 });
      await waitFor(async () => ((await cutGw.status()).cluster?.lease === 'held' ? true : undefined), { timeoutMs: 60_000, intervalMs: 250, message: 'the node to join again' });
      await waitFor(async () => (cutGw.log().includes('clone dropped: another node owns it now') || cutGw.log().includes('arrived again at epoch') ? true : undefined), {
        timeoutMs: 20_000,
        intervalMs: 250,
        message: 'the node to drop its stale copy of the clone',
      });
      expect(cutGw.log()).toContain('joined the cluster again after the lease was lost');
      // etcdctl may reach the member that was cut off while it catches up with the others: retried.
      await waitFor(async () => ((await net.liveMembers()).includes(cut.name) ? true : undefined), { timeoutMs: 20_000, intervalMs: 500, message: `${cut.name} among etcd's members` });
      await waitFor(async () => ((await familyByNode(net)).size === 3 ? true : undefined), { timeoutMs: 60_000, intervalMs: 250, message: 'a clone back on the node that was cut off' });
      const back = await cutGw.status();
      expect(back.ikeSas.filter((s) => s.state === 'established')).toHaveLength(1);
      expect(back.ikeSas[0]!.children.map((c) => c.spiIn)).not.toContain(child.spiIn);
      await pingsThrough(net, vip);
    },
    240_000,
  );
});
