// Three ikeclone gateway nodes in network namespaces, sharing a three-member
// etcd cluster with TLS (test/support/cluster-netns.ts), and an ikeclone
// client (architecture §8):
// - the family grows to three IKE SAs, one per node; tshark, decrypting with
//   the nodes' key logs, shows each node's address list, the client's
//   UPDATE_SA_ADDRESSES to it, then its CREATE_CHILD_SA; each ESP SPI leaves
//   one address only with sequence numbers from 1; no (IKE SPI, message ID)
//   pair is sent from two addresses;
// - each node's Prometheus cluster series agree with its status after moves;
// - ping and iperf3 reach the LAN host through all three nodes (ECMP on the
//   LAN), each node sending on its own clone's Child SA;
// - etcd holds no key bytes in the clear;
// - `ikeclone move ID --node NAME` hands an established clone to another node;
// - behind a NAT (nftables masquerade) the client's clone stays on its node and works.
import { describe, expect, onTestFailed } from 'vitest';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClusterNet, type ClusterNet } from './support/cluster-netns.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { interopTest, type PrereqName } from './support/prereq.js';
import { runChecked, waitFor } from './support/proc.js';
import { execChecked, ping } from './support/netns.js';
import { parsePrometheus, sampleValue, type PromFamily } from './support/prometheus.js';
import { decode } from './support/tshark.js';
import { startCli } from './support/cli-proc.js';
import type { GatewayStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'etcd', 'tshark', 'iperf3'];
/** Where each node serves /metrics, on the loopback of its own namespace. */
const METRICS_PORT = 9710;
/**
 * IKE on both ports, and of UDP-encapsulated ESP (RFC 3948: the SPI at UDP
 * payload offset 0, the sequence number at 4) the first 63 packets of every
 * SPI and one in 256 after: iperf3's gigabytes would make tshark's output
 * too large to read, and the samples still show every SPI's sender and rising
 * sequence numbers.
 */
const SAMPLED_CAPTURE = 'udp port 500 or (udp port 4500 and (udp[8:4] = 0 or udp[12:4] < 64 or (udp[12:4] & 0xff) = 0))';

describe('a three-node cluster in network namespaces', () => {
  const env = useNetnsSuite('cluster', [...PRE, 'nftables']);

  function dumpOnFailure(net: ClusterNet): void {
    onTestFailed(() => {
      // IKC_KEEP_LOGS=DIR keeps every process's whole log for a failed test.
      const keep = process.env.IKC_KEEP_LOGS;
      if (keep) {
        mkdirSync(keep, { recursive: true });
        for (const node of net.nodes) writeFileSync(join(keep, `${node.name}.log`), node.gateway()?.log() ?? '');
        writeFileSync(join(keep, 'client.log'), net.clientProcess()?.log() ?? '');
      }
      for (const node of net.nodes) {
        process.stderr.write(`\n--- ${node.name} log (tail) ---\n${node.gateway()?.log().split('\n').slice(-60).join('\n') ?? '(not running)'}\n`);
      }
      process.stderr.write(`\n--- client log (tail) ---\n${net.clientProcess()?.log().split('\n').slice(-80).join('\n') ?? '(not running)'}\n`);
    });
  }

  /** The client's established IKE SAs, each with a Child SA, one per node address. */
  async function familyOnEveryNode(net: ClusterNet, timeoutMs = 60_000): Promise<GatewayStatus> {
    const client = net.clientProcess()!;
    return waitFor(
      async () => {
        const st = await client.status();
        const ready = st.ikeSas.filter((s) => s.state === 'established' && s.children.length > 0);
        const remotes = new Set(ready.map((s) => s.remote.split(':')[0]));
        return net.nodes.every((n) => remotes.has(n.wan)) ? st : undefined;
      },
      { timeoutMs, intervalMs: 250, message: "the client's family on every node" },
    );
  }

  /** Hex digits only, lower case (tshark and status print SPIs differently). */
  const hex = (v: string) => v.toLowerCase().replace(/^0x/, '').replace(/[^0-9a-f]/g, '');

  /** Key bytes (hex) from the nodes' key logs: SK_ei/SK_er/SK_ai/SK_ar of every IKE SA, every ESP key. */
  function keysFromKeylogs(net: ClusterNet): string[] {
    const { ike, esp } = net.keylogLines();
    const keys = new Set<string>();
    for (const l of ike) {
      const f = l.split(',');
      for (const i of [2, 3, 5, 6]) if ((f[i] ?? '').length >= 32) keys.add(hex(f[i]!));
    }
    for (const l of esp) {
      for (const m of l.matchAll(/"0x([0-9a-fA-F]{32,})"/g)) keys.add(hex(m[1]!));
    }
    return [...keys];
  }

  interopTest(
    'the family grows to one clone per node: tshark shows each node\'s address list, the client\'s UPDATE_SA_ADDRESSES, then CREATE_CHILD_SA; ping and iperf3 through every node; etcd holds no key bytes',
    PRE,
    async () => {
      const net = await createClusterNet({ dir: env.dir('three') });
      env.cleanup(() => net.destroy());
      dumpOnFailure(net);
      const capture = await net.captureWan(join(env.dir('three'), 'wan.pcap'), SAMPLED_CAPTURE);
      env.cleanup(() => capture.stop({ timeoutMs: 3000 }));
      await net.startNodes();
      await net.startClient();
      const vip = await net.clientVip();
      expect(vip.startsWith(net.poolNet.slice(0, net.poolNet.lastIndexOf('.') + 1))).toBe(true);
      const st = await familyOnEveryNode(net);
      const family = st.ikeSas.filter((s) => s.state === 'established');
      // Exactly one IKE SA per node, each with one Child SA.
      expect(family).toHaveLength(3);
      expect(family.map((s) => s.remote.split(':')[0]).sort()).toEqual(net.nodes.map((n) => n.wan).sort());
      for (const s of family) expect(s.children).toHaveLength(1);

      // Every node holds exactly its own member of the family, and sends on its own Child SA:
      // its outbound SPI is the client's inbound SPI of the IKE SA whose peer is that node.
      const nodeSas = await Promise.all(net.nodes.map(async (n) => (await n.gateway()!.status()).ikeSas.filter((s) => s.state === 'established')));
      net.nodes.forEach((n, k) => {
        const mine = family.find((s) => s.remote.split(':')[0] === n.wan)!;
        expect(nodeSas[k], n.name).toHaveLength(1);
        const there = nodeSas[k]![0]!;
        expect(hex(there.spiI) + hex(there.spiR)).toBe(hex(mine.spiI) + hex(mine.spiR));
        expect(there.children).toHaveLength(1);
        expect(hex(there.children[0]!.spiOut)).toBe(hex(mine.children[0]!.spiIn));
        expect(hex(there.children[0]!.spiIn)).toBe(hex(mine.children[0]!.spiOut));
        // The node's SPI prefix (k + 1) leads the SPIs it allocated (io/spi-layout.ts).
        expect(Number.parseInt(hex(there.children[0]!.spiIn).slice(0, 2), 16)).toBe(k + 1);
      });
      // The client's UPDATE_SA_ADDRESSES to each node its clone went to was answered only once that
      // node's etcd record named the client's moved message ID (control/cluster/answer-write-ahead.ts).
      for (const n of net.nodes.slice(1)) {
        const answers = (await n.gateway()!.status()).cluster?.answers;
        expect(answers?.sent, n.name).toBeGreaterThanOrEqual(1);
        expect(answers, n.name).toMatchObject({ discarded: 0, dropped: 0 });
      }

      // Traffic: ping, then iperf3 both ways with enough streams that the client's flow hash
      // and the LAN's ECMP hash put some on every node.
      const before = await Promise.all(net.nodes.map((_, k) => net.espCounters(k)));
      const pinged = await ping(net.client, net.lanHost, { count: 10, intervalS: 0.05, waitS: 3, src: vip });
      expect(pinged.received, pinged.result.stdout).toBe(10);
      const up = await net.iperf(vip, { seconds: 2, streams: 24 });
      const down = await net.iperf(vip, { seconds: 2, streams: 24, reverse: true });
      expect(up.bitsPerSecond).toBeGreaterThan(1e6);
      expect(down.bitsPerSecond).toBeGreaterThan(1e6);
      const after = await Promise.all(net.nodes.map((_, k) => net.espCounters(k)));
      net.nodes.forEach((n, k) => {
        expect(after[k]!.decapPackets - before[k]!.decapPackets, `${n.name} opened ESP`).toBeGreaterThan(100);
        expect(after[k]!.encapPackets - before[k]!.encapPackets, `${n.name} sealed ESP`).toBeGreaterThan(100);
        expect(after[k]!.failed, `${n.name}: ESP that failed its checks`).toBe(0);
      });

      // etcd: the clones' records are there, and no key from any key log is, in any encoding.
      const dump = JSON.parse(await net.etcd.ctl(['get', '--prefix', '/ikeclone/', '-w', 'json'])) as { kvs?: Array<{ key: string; value: string }> };
      const kvs = (dump.kvs ?? []).map((kv) => ({ key: Buffer.from(kv.key, 'base64').toString(), value: Buffer.from(kv.value, 'base64') }));
      expect(kvs.filter((kv) => kv.key.endsWith('/ike')).length).toBeGreaterThanOrEqual(2);
      const keys = keysFromKeylogs(net);
      // Both ends' SK_e and SK_a of the three IKE SAs, and both directions of the three Child SAs.
      expect(keys.length).toBeGreaterThanOrEqual(12);
      for (const kv of kvs) {
        const text = kv.value.toString('latin1').toLowerCase();
        for (const k of keys) {
          const raw = Buffer.from(k, 'hex');
          expect(kv.value.includes(raw), `${kv.key} holds key bytes`).toBe(false);
          expect(text.includes(k), `${kv.key} holds a key in hex`).toBe(false);
          expect(kv.value.toString('latin1').includes(raw.toString('base64')), `${kv.key} holds a key in base64`).toBe(false);
        }
      }

      // The wire, as tshark reads it with the nodes' key logs.
      await capture.stop({ timeoutMs: 5000 });
      if (process.env.IKC_KEEP_LOGS) onTestFailed(() => copyFileSync(capture.file, join(process.env.IKC_KEEP_LOGS!, 'wan.pcap')));
      const { ike: ikeTable, esp: espTable } = net.keylogLines();
      const rows = await decode(capture.file, {
        fields: ['frame.number', 'ip.src', 'ip.dst', 'isakmp.ispi', 'isakmp.rspi', 'isakmp.exchangetype', 'isakmp.flags', 'isakmp.messageid', 'isakmp.notify.msgtype', 'esp.spi', 'esp.sequence'],
        displayFilter: 'isakmp or esp',
        ikeDecryptionTable: ikeTable,
        espSas: espTable,
        timeoutMs: 120_000,
      });
      const ikeRows = rows.filter((r) => r[3]).map((r) => ({
        frame: Number(r[0]),
        src: r[1]!.split(',')[0]!,
        dst: r[2]!.split(',')[0]!,
        spis: hex(r[3]!) + hex(r[4]!),
        exchange: Number(r[5]),
        response: (Number(r[6]) & 0x20) !== 0,
        initiator: (Number(r[6]) & 0x08) !== 0,
        mid: Number(r[7]),
        notifies: (r[8] ?? '').split(',').filter(Boolean).map(Number),
      }));
      const trace = (spis: string) => `${spis}: ${JSON.stringify(ikeRows.filter((r) => r.spis === spis)).slice(0, 4000)} (all: ${JSON.stringify(ikeRows.map((r) => [r.src, r.spis, r.exchange, r.mid, r.notifies])).slice(0, 6000)})`;
      // RFC 4555 §3.6, §3.5: on each node's clone, the node's address list (NO_ADDITIONAL_ADDRESSES or
      // ADDITIONAL_IP4_ADDRESS) from its address, the client's UPDATE_SA_ADDRESSES to it, then the
      // clone's CREATE_CHILD_SA, in that order.
      const NOTIFY = { ADDITIONAL_IP4_ADDRESS: 16397, NO_ADDITIONAL_ADDRESSES: 16399, UPDATE_SA_ADDRESSES: 16400 };
      for (const n of net.nodes.slice(1)) {
        const sa = family.find((s) => s.remote.split(':')[0] === n.wan)!;
        const spis = hex(sa.spiI) + hex(sa.spiR);
        const on = ikeRows.filter((r) => r.spis === spis && !r.response);
        const list = on.find((r) => r.src === n.wan && r.exchange === 37 && (r.notifies.includes(NOTIFY.NO_ADDITIONAL_ADDRESSES) || r.notifies.includes(NOTIFY.ADDITIONAL_IP4_ADDRESS)));
        expect(list, `${n.name}'s address list: ${trace(spis)}`).toBeDefined();
        const update = on.find((r) => r.src === net.clientWan && r.dst === n.wan && r.exchange === 37 && r.notifies.includes(NOTIFY.UPDATE_SA_ADDRESSES));
        expect(update, `the client's UPDATE_SA_ADDRESSES to ${n.name}: ${trace(spis)}`).toBeDefined();
        const child = on.find((r) => r.exchange === 36 && r.frame > update!.frame && (r.src === n.wan || r.dst === n.wan));
        expect(child, `CREATE_CHILD_SA with ${n.name} after the update: ${trace(spis)}`).toBeDefined();
        expect(list!.frame).toBeLessThan(update!.frame);
      }
      // No (IKE SPIs, message ID, request/response, sender role) is ever sent from two addresses.
      const senders = new Map<string, Set<string>>();
      for (const r of ikeRows) {
        const id = `${r.spis}/${r.mid}/${r.response ? 'response' : 'request'}/${r.initiator ? 'I' : 'R'}`;
        if (!senders.has(id)) senders.set(id, new Set());
        senders.get(id)!.add(r.src);
      }
      const twice = [...senders].filter(([, s]) => s.size > 1).map(([id, s]) => `${id} from ${[...s].join(' and ')}`);
      expect(twice).toEqual([]);
      expect(senders.size).toBeGreaterThan(10);
      // ESP: every SPI leaves one address only, and its sequence numbers start at 1 and rise.
      const esp = new Map<string, { srcs: Set<string>; seqs: number[] }>();
      for (const r of rows.filter((x) => x[9])) {
        // The first ESP header of the datagram: a node sends a run of one SA's ESP as one UDP_SEGMENT
        // message (native/io/udp.c), which the bridge here passes on whole, so the capture can hold one
        // datagram of several ESP packets, consecutive and of that SA; tshark reads on into the first
        // one's payload and reports a second "SPI" (an inner IPv4 header's first word).
        const spi = hex(r[9]!.split(',')[0]!);
        if (!esp.has(spi)) esp.set(spi, { srcs: new Set(), seqs: [] });
        // The outer source (decrypted ESP adds the inner header's to ip.src).
        esp.get(spi)!.srcs.add(r[1]!.split(',')[0]!);
        esp.get(spi)!.seqs.push(Number(r[10]!.split(',')[0]));
      }
      // Three Child SAs, two directions each.
      expect(esp.size, JSON.stringify([...esp].map(([spi, e]) => [spi, [...e.srcs], e.seqs.length, e.seqs.slice(0, 3)]))).toBe(6);
      for (const [spi, { srcs, seqs }] of esp) {
        expect([...srcs], `ESP SPI ${spi}`).toHaveLength(1);
        expect(seqs[0], `first sequence number of ESP SPI ${spi}`).toBe(1);
        expect(seqs.every((q, i) => i === 0 || q > seqs[i - 1]!), `sequence numbers of ESP SPI ${spi} rise`).toBe(true);
      }
      // Each node sends ESP only on its own Child SA.
      net.nodes.forEach((n, k) => {
        const out = [...esp].filter(([, e]) => e.srcs.has(n.wan)).map(([spi]) => spi);
        expect(out, `${n.name} sent ESP on ${JSON.stringify([...esp].map(([spi, e]) => [spi, [...e.srcs], e.seqs.length]))}`).toEqual([hex(nodeSas[k]![0]!.children[0]!.spiOut)]);
      });
    },
    240_000,
  );

  /** A node's /metrics, fetched inside its namespace and read by the Prometheus parser. */
  async function scrapeNode(net: ClusterNet, k: number): Promise<PromFamily[]> {
    const fetchMetrics = `fetch('http://127.0.0.1:${METRICS_PORT}/metrics',{signal:AbortSignal.timeout(5000)}).then(async(r)=>{if(r.status!==200)throw new Error('HTTP '+r.status);process.stdout.write(await r.text())})`;
    return parsePrometheus((await execChecked(net.nodes[k]!.ns, process.execPath, ['-e', fetchMetrics], { timeoutMs: 10_000 })).stdout);
  }

  interopTest('ikeclone move ID --node NAME hands an established clone on: its Child SA deleted first, the client follows, the new node creates one; rebalancing evens the family out again; the nodes\' cluster metrics say so', [...PRE, 'prometheus'], async () => {
    const net = await createClusterNet({ dir: env.dir('move'), index: 80, nodeExtra: { metrics: { listen: `127.0.0.1:${METRICS_PORT}` } } });
    env.cleanup(() => net.destroy());
    dumpOnFailure(net);
    await net.startNodes();
    await net.startClient();
    const vip = await net.clientVip();
    await familyOnEveryNode(net);
    const [, b, c] = net.nodes;
    const bSt = await b!.gateway()!.status();
    expect(bSt.cluster!.clones).toHaveLength(1);
    const clone = bSt.cluster!.clones[0]!;
    const oldChild = bSt.ikeSas.find((s) => s.id === clone.ike)!.children[0]!;
    const spis = (s: { spiI: string; spiR: string }) => hex(s.spiI) + hex(s.spiR);
    const moved = spis(bSt.ikeSas.find((s) => s.id === clone.ike)!);

    // As an operator runs it, against gw-b's control socket.
    const cli = startCli(['move', String(clone.ike), '--node', c!.name, '--socket', b!.gateway()!.socket]);
    expect(await cli.exited, cli.stderr()).toBe(0);
    expect(cli.stdout()).toContain(`IKE SA #${clone.ike} handed to ${c!.name} (epoch ${clone.epoch + 1})`);
    // gw-c owns the clone at the next epoch and has created its Child SA: new SPIs, gw-c's SPI prefix (3).
    const atC = await waitFor(async () => {
      const st = await c!.gateway()!.status();
      const mine = st.cluster!.clones.find((x) => x.family === clone.family && x.index === clone.index);
      const sa = mine && st.ikeSas.find((s) => s.id === mine.ike);
      return sa?.state === 'established' && sa.children.length === 1 ? { mine: mine!, sa } : undefined;
    }, { timeoutMs: 15_000, intervalMs: 100, message: `${c!.name} to own the moved clone with a Child SA` });
    expect(atC.mine.epoch).toBe(clone.epoch + 1);
    expect(spis(atC.sa)).toBe(moved);
    const newChild = atC.sa.children[0]!;
    expect(hex(newChild.spiIn)).not.toBe(hex(oldChild.spiIn));
    expect(Number.parseInt(hex(newChild.spiIn).slice(0, 2), 16)).toBe(3);
    // The client moved the same IKE SA to gw-c's address and holds the new Child SA only.
    const atClient = (await net.clientProcess()!.status()).ikeSas.find((s) => spis(s) === moved)!;
    expect(atClient.remote.split(':')[0]).toBe(c!.wan);
    expect(atClient.children.map((ch) => hex(ch.spiOut))).toEqual([hex(newChild.spiIn)]);
    expect((await b!.gateway()!.status()).cluster!.handoff.handedOff).toBeGreaterThanOrEqual(1);
    // gw-c now holds two members and gw-b none: its next rebalancing round hands one back.
    await familyOnEveryNode(net, 30_000);
    const nodes = await Promise.all(net.nodes.map((n) => n.gateway()!.status()));
    expect(nodes.map((st) => st.ikeSas.filter((s) => s.state === 'established').length)).toEqual([1, 1, 1]);
    expect(nodes[2]!.cluster!.rebalance.moved).toBe(1);
    const pinged = await ping(net.client, net.lanHost, { count: 10, intervalS: 0.05, waitS: 3, src: vip });
    expect(pinged.received, pinged.result.stdout).toBe(10);

    // Quiet now: each node's cluster series are its status. gw-b handed the clone on and got one back,
    // gw-c got it and handed one back; every arrival reached its Child SA, and each is in the histogram.
    // A counter may still move between two reads (a fencing write for the client's DPD): it lies between
    // the status read before the scrape and the one after.
    for (const k of [0, 1, 2]) {
      const gateway = net.nodes[k]!.gateway()!;
      const before = (await gateway.status()).cluster!;
      const families = await scrapeNode(net, k);
      const after = (await gateway.status()).cluster!;
      const metric = (name: string, labels: Record<string, string> = {}) => sampleValue(families, name, labels);
      const between = (name: string, labels: Record<string, string>, of: (st: typeof before) => number) => {
        const v = metric(name, labels);
        expect(v, `${name} ${JSON.stringify(labels)} on ${net.nodes[k]!.name}`).toBeGreaterThanOrEqual(of(before));
        expect(v, `${name} ${JSON.stringify(labels)} on ${net.nodes[k]!.name}`).toBeLessThanOrEqual(of(after));
      };
      expect(metric('ikeclone_cluster_lease_held')).toBe(1);
      expect(metric('ikeclone_cluster_owned_clones')).toBe(after.clones.length);
      between('ikeclone_cluster_handoffs_total', { direction: 'out' }, (st) => st.handoff.handedOff);
      between('ikeclone_cluster_handoffs_total', { direction: 'in' }, (st) => st.handoff.arrived);
      between('ikeclone_cluster_arrival_duration_seconds_count', {}, (st) => st.handoff.arrived);
      for (const step of ['path-test', 'address-update', 'child']) expect(metric('ikeclone_cluster_arrivals_failed_total', { step })).toBe(0);
      expect(metric('ikeclone_cluster_records_refused_total', { reason: 'seal' })).toBe(0);
      between('ikeclone_cluster_rebalance_total', { outcome: 'moved' }, (st) => st.rebalance.moved);
      between('ikeclone_cluster_record_writes_total', {}, (st) => st.handoff.writes);
    }
    const [famB, famC] = [await scrapeNode(net, 1), await scrapeNode(net, 2)];
    expect(sampleValue(famB, 'ikeclone_cluster_handoffs_total', { direction: 'out' })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(famC, 'ikeclone_cluster_handoffs_total', { direction: 'in' })).toBeGreaterThanOrEqual(2);
    expect(sampleValue(famC, 'ikeclone_cluster_arrival_duration_seconds_sum')).toBeGreaterThan(0);
  }, 180_000);

  interopTest('a client behind a NAT (nftables masquerade): its IKE SA stays on its node, unspread, and keeps working', [...PRE, 'nftables'], async () => {
    const net = await createClusterNet({ dir: env.dir('nat'), index: 78, nat: true, clientConnection: { dpd_delay: '1s' } });
    env.cleanup(() => net.destroy());
    dumpOnFailure(net);
    await net.startNodes();
    const client = await net.startClient();
    const vip = await net.clientVip();
    const [a] = net.nodes;
    const gwA = a!.gateway()!;
    // Node A had its chance to spread the family, and said why it did not.
    await waitFor(() => /per: node placement skipped: the peer is behind a NAT/.test(gwA.log()), { timeoutMs: 10_000, message: "gw-a's placement decision" });
    // Only node A holds the client's IKE SA: the address the NAT mapped is A's alone.
    const route = ['-n', net.lan.name, 'route', 'add', `${vip}/32`, 'via', a!.lan];
    await runChecked('ip', route);
    const st = await client.status();
    const sas = st.ikeSas.filter((s) => s.state === 'established');
    expect(sas).toHaveLength(1);
    expect(sas[0]!.remote).toBe(`${a!.wan}:4500`);
    expect(sas[0]!.natLocal).toBe(true);
    const atA = (await gwA.status()).ikeSas.filter((s) => s.state === 'established');
    expect(atA).toHaveLength(1);
    expect(atA[0]!.natRemote).toBe(true);
    expect(atA[0]!.remote.split(':')[0]).toBe(net.clientWan);
    for (const n of net.nodes.slice(1)) expect((await n.gateway()!.status()).ikeSas, n.name).toHaveLength(0);
    expect(await net.etcd.ctl(['get', '--prefix', `/ikeclone/v1/${net.clusterName}/clones/`, '--keys-only'])).toBe('');
    // It works: ping and iperf3 both ways through node A, and it still does after a few DPD rounds.
    const before = await net.espCounters(0);
    const pinged = await ping(net.client, net.lanHost, { count: 10, intervalS: 0.05, waitS: 3, src: vip });
    expect(pinged.received, pinged.result.stdout).toBe(10);
    expect((await net.iperf(vip, { seconds: 2, streams: 4 })).bitsPerSecond).toBeGreaterThan(1e6);
    expect((await net.iperf(vip, { seconds: 2, streams: 4, reverse: true })).bitsPerSecond).toBeGreaterThan(1e6);
    const after = await net.espCounters(0);
    expect(after.decapPackets - before.decapPackets).toBeGreaterThan(100);
    expect(after.encapPackets - before.encapPackets).toBeGreaterThan(100);
    expect(after.failed).toBe(0);
    // Liveness checks (RFC 7296 §2.4: INFORMATIONAL, answered by node A through the NAT) keep succeeding.
    const informational = async () => (await client.status()).ike.exchanges['INFORMATIONAL.initiator.ok'] ?? 0;
    const checked = await informational();
    await waitFor(async () => (await informational()) >= checked + 3, { timeoutMs: 15_000, intervalMs: 250, message: 'three more answered liveness checks' });
    const later = (await client.status()).ikeSas.filter((s) => s.state === 'established');
    expect(later.map((s) => s.id)).toEqual([sas[0]!.id]);
    const again = await ping(net.client, net.lanHost, { count: 5, intervalS: 0.05, waitS: 3, src: vip });
    expect(again.received, again.result.stdout).toBe(5);
  }, 180_000);

  interopTest('kill -9 of a node (gateway and etcd member): the others keep quorum, its lease lapses, and it comes back as a member', PRE, async () => {
    const net = await createClusterNet({ dir: env.dir('kill'), index: 79, leaseTtl: '2s' });
    env.cleanup(() => net.destroy());
    dumpOnFailure(net);
    await net.startNodes();
    expect((await net.liveMembers()).sort()).toEqual(['gw-a', 'gw-b', 'gw-c']);
    const killed = net.nodes[2]!;
    const pid = killed.gateway()!.proc.pid;
    await net.killNode(2);
    expect(killed.gateway()!.proc.exitInfo()?.signal).toBe('SIGKILL');
    expect(net.etcd.members[2]!.running()).toBe(false);
    // Two of three etcd members: writes still commit, and the dead gateway's member key goes with its lease.
    // Retried while the two elect a new leader (the killed member may have led).
    await waitFor(async () => ((await net.etcd.ctl(['put', `/ikeclone/v1/${net.clusterName}/probe`, 'x'])) ? true : undefined), { timeoutMs: 20_000, intervalMs: 500, message: 'a write to commit on the two members left' });
    await waitFor(async () => !(await net.liveMembers()).includes(killed.name), { timeoutMs: 15_000, intervalMs: 250, message: `${killed.name}'s member key to lapse` });
    expect((await net.liveMembers()).sort()).toEqual(['gw-a', 'gw-b']);
    const back = await net.restartNode(2);
    expect(back.proc.pid).not.toBe(pid);
    expect(net.etcd.members[2]!.running()).toBe(true);
    expect((await net.liveMembers()).sort()).toEqual(['gw-a', 'gw-b', 'gw-c']);
    // Reached from the restarted member's namespace, the cluster still holds the write made without it.
    expect(await net.etcd.ctl(['get', '--print-value-only', `/ikeclone/v1/${net.clusterName}/probe`], { from: 2 })).toBe('x\n');
  }, 180_000);
});
