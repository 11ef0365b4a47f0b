/**
 * A three-node ikeclone cluster in network namespaces (architecture §8), for
 * the cluster tests and the cluster benchmark:
 *
 *   client ──┐                       (or client ── nat ──┐ with `nat: true`:
 *            │ WAN 10.I.1.0/24        nftables masquerade in the nat namespace)
 *   gw-a ────┼──── gw-b ──── gw-c    each gateway: WAN .11+k, LAN .11+k, CTL .11+k
 *            │ LAN 10.I.2.0/24
 *   lan host ┘ (.100), routes to the client's virtual IPs (pool 10.I.9.0/24)
 *              over ECMP through every gateway
 *   CTL 10.I.3.0/24: etcd member k runs in gateway k's namespace on its CTL
 *   address, so that `killNode(k)` takes a gateway down with its etcd member.
 *
 * The three networks are Linux bridges in one switch namespace (`sw`); a
 * capture on the client's bridge port sees every outer packet to and from it. A three-member etcd cluster
 * with TLS (certificates in a temporary directory, test/support/etcd.ts);
 * every gateway is the built CLI (`ikeclone gateway`, dist/) with the same
 * connections and its own `cluster:` node, address and SPI prefix (k + 1).
 * The client is an ikeclone client (RFC 7791 and MOBIKE announced) that asks
 * for a virtual IP from node 0.
 *
 * Ownership: every namespace, process and file is this harness's own;
 * processes are stopped by pid, namespaces deleted by `destroy()`.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startEtcdCluster, type EtcdCluster, type EtcdTiming } from './etcd.js';
import { startIkeclone, type Ikeclone } from './ikeclone-proc.js';
import { createNamespace, deleteNamespace, exec, execChecked, spawnIn, waitOperUp, type NetNs } from './netns.js';
import { runChecked, waitFor } from './proc.js';
import { startCapture, type Capture } from './tshark.js';

export const CLUSTER_PSK = 'cluster-netns pre-shared key 0123456789abcdef';
export const CLUSTER_GW_ID = 'gw.cluster.test';
export const CLUSTER_CLIENT_ID = 'client.cluster.test';
export const CLUSTER_TUN = 'ikc0';
export const CLUSTER_IKE_PROPOSAL = 'aes256gcm16-prfsha256-x25519';
export const CLUSTER_ESP_PROPOSAL = 'aes128gcm16';
/** Node names, in order: node k is NODE_NAMES[k]. */
export const NODE_NAMES = ['gw-a', 'gw-b', 'gw-c'] as const;
/** USER_HZ, the unit of /proc/PID/stat times (100 on Linux everywhere it runs). */
const CLOCK_TICKS = 100;

export interface ClusterNetOptions {
  /** Work directory (configurations, secrets, logs, key logs, captures). */
  dir: string;
  /** Second octet of every address (10.<index>.x.y). Default 77. */
  index?: number;
  /** Put the client behind a NAT (nftables masquerade in its own namespace). */
  nat?: boolean;
  /** Data-plane workers per gateway. Default 1 (the machine has few cores). */
  workers?: number;
  /** ESP encapsulation of the gateways and the client: 'udp' (default) or 'auto'. */
  esp?: 'udp' | 'auto';
  /** The nodes' etcd lease (cluster.lease_ttl). Default '3s'. */
  leaseTtl?: string;
  /** Gateways' and the client's log level. Default 'debug'. */
  logLevel?: string;
  /** Extra fields for every node's connection (the same on every node). */
  connection?: Record<string, unknown>;
  /** Extra fields for the client's connection (e.g. dpd_delay). */
  clientConnection?: Record<string, unknown>;
  /** Extra top-level configuration of every node (e.g. limits). */
  nodeExtra?: Record<string, unknown>;
  /** The etcd members' raft timing (heartbeat, election timeout). Default DEFAULT_ETCD_TIMING (100/1000 ms). */
  etcdTiming?: EtcdTiming;
  /** Where the etcd members keep their data (startEtcdCluster's dataIn). Default: under os.tmpdir(), on disk. */
  etcdDataIn?: string;
}

export interface IperfResult {
  /** Received bits per second (iperf3's sum_received). */
  bitsPerSecond: number;
  bytes: number;
  streams: number;
}

export interface EspCounters {
  encapPackets: number;
  encapBytes: number;
  decapPackets: number;
  decapBytes: number;
  /** ESP octets sent (encapsulated, on the wire). */
  espBytesOut: number;
  /** Drops of ESP that failed its checks (replay, ICV, malformed). */
  failed: number;
}

export interface ClusterNodeNet {
  readonly index: number;
  readonly name: string;
  readonly ns: NetNs;
  /** Outer (WAN) address: the node's IKE and ESP address and its cluster.address. */
  readonly wan: string;
  readonly lan: string;
  /** Control address, where this node's etcd member listens. */
  readonly ctl: string;
  /** The running gateway, if any. */
  gateway(): Ikeclone | undefined;
}

export interface ClusterNet {
  readonly index: number;
  readonly wanNet: string;
  readonly lanNet: string;
  /** The pool the gateways lease virtual IPs from (the LAN routes it over ECMP to every node). */
  readonly poolNet: string;
  readonly sw: NetNs;
  readonly client: NetNs;
  /** The NAT namespace (with `nat: true`). */
  readonly nat: NetNs | undefined;
  readonly lan: NetNs;
  readonly lanHost: string;
  /** The client's own outer address. */
  readonly clientAddress: string;
  /** The address the gateways see the client at (the NAT's WAN address behind a NAT). */
  readonly clientWan: string;
  readonly nodes: readonly ClusterNodeNet[];
  readonly etcd: EtcdCluster;
  readonly clusterName: string;
  /** The sealing key file every node shares (mode 0600). */
  readonly secretFile: string;
  /** Every node's configuration (an object written as YAML by startIkeclone). */
  nodeConfig(k: number): Record<string, unknown>;
  /** Start node k's gateway and wait until its member key is in etcd (bounded). */
  startNode(k: number): Promise<Ikeclone>;
  /** Start every node's gateway, one after the other. */
  startNodes(): Promise<void>;
  /** SIGKILL node k's gateway and etcd member by pid (a crashed machine). Returns when both are gone. */
  killNode(k: number, opts?: { etcd?: boolean }): Promise<void>;
  /**
   * Bring node k back after killNode: its etcd member on its data directory,
   * then, once the dead gateway's lease has lapsed (its member key gone), the gateway.
   */
  restartNode(k: number): Promise<Ikeclone>;
  /** Stop node k's gateway with SIGTERM (it leaves the cluster). */
  stopNode(k: number): Promise<void>;
  /** The client's configuration. */
  clientConfig(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Start the ikeclone client (it initiates to node 0). */
  startClient(extra?: Record<string, unknown>): Promise<Ikeclone>;
  /** The running client, if any. */
  clientProcess(): Ikeclone | undefined;
  /**
   * Wait for the client's virtual IP, put it on the client's lo and route the
   * LAN through the TUN device from it (the operator's part). Returns it.
   */
  clientVip(timeoutMs?: number): Promise<string>;
  /**
   * Capture on the client's port of the WAN bridge: every outer packet between
   * the client (after its NAT) and any node. (The bridge device itself sees
   * only what is flooded, not what it forwards.)
   */
  captureWan(file: string, filter?: string): Promise<Capture>;
  /** Every node's Wireshark key log lines, merged: IKE (ikev2_decryption_table) and ESP (esp_sa). */
  keylogLines(): { ike: string[]; esp: string[] };
  /**
   * iperf3 from the client's virtual IP to the LAN host (reverse: the LAN host
   * sends), `streams` parallel TCP streams for `seconds`. Bounded; throws when
   * iperf3 fails.
   */
  iperf(vip: string, opts?: { seconds?: number; streams?: number; reverse?: boolean; port?: number }): Promise<IperfResult>;
  /** Node k's ESP totals over its workers (packets and bytes sealed and opened). */
  espCounters(k: number): Promise<EspCounters>;
  /** Route the pool from the LAN host over ECMP through these nodes only (default at creation: all). */
  setLanNexthops(nodes: readonly number[]): Promise<void>;
  /** CPU seconds (user + system, all threads) node k's running gateway has used so far. */
  cpuSeconds(k: number): number;
  /** Members as etcd lists them (`etcdctl get --prefix .../members/ --keys-only`). */
  liveMembers(): Promise<string[]>;
  /** Stop every process (by pid) and delete every namespace. */
  destroy(): Promise<void>;
}

async function ip(args: string[]): Promise<void> {
  await runChecked('ip', args, { timeoutMs: 10_000 });
}

/** A bridge in `sw`. */
async function addBridge(sw: NetNs, name: string): Promise<void> {
  await ip(['-n', sw.name, 'link', 'add', name, 'type', 'bridge']);
  await ip(['-n', sw.name, 'link', 'set', name, 'up']);
}

/** A veth from `ns` (named `dev`, addressed `cidr`) to bridge `bridge` in `sw` (port `port`). */
async function attach(sw: NetNs, bridge: string, port: string, ns: NetNs, dev: string, cidr: string): Promise<void> {
  await ip(['link', 'add', 'name', dev, 'netns', ns.name, 'type', 'veth', 'peer', 'name', port, 'netns', sw.name]);
  await ip(['-n', sw.name, 'link', 'set', port, 'master', bridge, 'up']);
  await ip(['-n', ns.name, 'addr', 'add', cidr, 'dev', dev]);
  await ip(['-n', ns.name, 'link', 'set', dev, 'up']);
  await waitOperUp(ns, dev);
}

async function sysctl(ns: NetNs, ...settings: string[]): Promise<void> {
  await execChecked(ns, 'sysctl', ['-q', '-w', ...settings]);
}

/** Build the namespaces, the etcd cluster and the shared secret (no gateway runs yet). */
export async function createClusterNet(opts: ClusterNetOptions): Promise<ClusterNet> {
  const I = opts.index ?? 77;
  const n = NODE_NAMES.length;
  const wanNet = `10.${I}.1.0/24`;
  const lanNet = `10.${I}.2.0/24`;
  const poolNet = `10.${I}.9.0/24`;
  const lanHost = `10.${I}.2.100`;
  const natInner = { nat: `10.${I}.4.1`, client: `10.${I}.4.2` };
  const clientWan = `10.${I}.1.100`;
  const clientAddress = opts.nat ? natInner.client : clientWan;
  const made: NetNs[] = [];
  const ns = async (label: string) => {
    const x = await createNamespace(label);
    made.push(x);
    return x;
  };
  const gateways: Array<Ikeclone | undefined> = new Array(n).fill(undefined);
  let client: Ikeclone | undefined;
  let etcd: EtcdCluster | undefined;
  const stopAll = async () => {
    await client?.stop().catch(() => undefined);
    for (const g of gateways) await g?.stop().catch(() => undefined);
    await etcd?.stop().catch(() => undefined);
    for (const x of made.splice(0).reverse()) await deleteNamespace(x).catch(() => undefined);
  };
  try {
    const sw = await ns('sw');
    for (const b of ['brwan', 'brlan', 'brctl']) await addBridge(sw, b);
    const nodeNs: NetNs[] = [];
    for (let k = 0; k < n; k++) {
      const g = await ns(`gw${k}`);
      nodeNs.push(g);
      await attach(sw, 'brwan', `wan${k}`, g, 'eth0', `10.${I}.1.${11 + k}/24`);
      await attach(sw, 'brlan', `lan${k}`, g, 'eth1', `10.${I}.2.${11 + k}/24`);
      await attach(sw, 'brctl', `ctl${k}`, g, 'eth2', `10.${I}.3.${11 + k}/24`);
      // A gateway forwards between its TUN device and the LAN; replies may come back through another node (ECMP).
      await sysctl(g, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0');
    }
    const lan = await ns('lan');
    await attach(sw, 'brlan', 'lanhost', lan, 'eth0', `${lanHost}/24`);
    // ECMP to the virtual IPs through every node, hashed on the 5-tuple so that flows spread over the nodes.
    await sysctl(lan, 'net.ipv4.fib_multipath_hash_policy=1');
    await ip(['-n', lan.name, 'route', 'add', poolNet, ...nodeNs.flatMap((_, k) => ['nexthop', 'via', `10.${I}.2.${11 + k}`, 'weight', '1'])]);
    const cli = await ns('client');
    let nat: NetNs | undefined;
    if (opts.nat) {
      nat = await ns('nat');
      await attach(sw, 'brwan', 'wannat', nat, 'eth0', `${clientWan}/24`);
      await ip(['link', 'add', 'name', 'eth1', 'netns', nat.name, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', cli.name]);
      await ip(['-n', nat.name, 'addr', 'add', `${natInner.nat}/24`, 'dev', 'eth1']);
      await ip(['-n', cli.name, 'addr', 'add', `${natInner.client}/24`, 'dev', 'eth0']);
      await ip(['-n', nat.name, 'link', 'set', 'eth1', 'up']);
      await ip(['-n', cli.name, 'link', 'set', 'eth0', 'up']);
      await waitOperUp(nat, 'eth1');
      await waitOperUp(cli, 'eth0');
      await ip(['-n', cli.name, 'route', 'add', wanNet, 'via', natInner.nat]);
      await sysctl(nat, 'net.ipv4.ip_forward=1');
      // Masquerade (RFC 3948 clients behind a NAPT): the gateways see only the NAT's WAN address.
      await execChecked(nat, 'nft', ['-f', '-'], {
        input: `table ip ikcnat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "eth0" masquerade\n }\n}\n`,
      });
    } else {
      await attach(sw, 'brwan', 'wancli', cli, 'eth0', `${clientWan}/24`);
    }
    mkdirSync(opts.dir, { recursive: true });
    const secretFile = join(opts.dir, 'cluster.secret');
    writeFileSync(secretFile, randomBytes(32), { mode: 0o600 });
    chmodSync(secretFile, 0o600);
    etcd = await startEtcdCluster({
      members: nodeNs.map((g, k) => ({ ns: g, address: `10.${I}.3.${11 + k}` })),
      tls: true,
      ...(opts.etcdTiming ? { timing: opts.etcdTiming } : {}),
      ...(opts.etcdDataIn !== undefined ? { dataIn: opts.etcdDataIn } : {}),
    });
    const etcdCluster = etcd;
    const clusterName = `cn${randomBytes(3).toString('hex')}`;
    const nodes: ClusterNodeNet[] = nodeNs.map((g, k) => ({
      index: k,
      name: NODE_NAMES[k]!,
      ns: g,
      wan: `10.${I}.1.${11 + k}`,
      lan: `10.${I}.2.${11 + k}`,
      ctl: `10.${I}.3.${11 + k}`,
      gateway: () => gateways[k],
    }));
    const esp = opts.esp ?? 'udp';
    const connection = {
      ike: [CLUSTER_IKE_PROPOSAL],
      local: { id: CLUSTER_GW_ID, auth: 'psk' },
      remote: { id: CLUSTER_CLIENT_ID, auth: 'psk' },
      psk: CLUSTER_PSK,
      mobike: true,
      clone: { per: 'node' },
      pools: [poolNet],
      children: { lan: { local_ts: [lanNet], remote_ts: ['dynamic'], esp: [CLUSTER_ESP_PROPOSAL] } },
      ...opts.connection,
    };
    const nodeConfig = (k: number): Record<string, unknown> => {
      const node = nodes[k]!;
      return {
        log: { level: opts.logLevel ?? 'debug' },
        listen: { address: node.wan, port: 500, natPort: 4500 },
        retransmit: { timeout: '500ms', tries: 4 },
        dataplane: { workers: opts.workers ?? 1, esp, tun: CLUSTER_TUN },
        cluster: {
          name: clusterName,
          node: node.name,
          address: node.wan,
          etcd: etcdCluster.endpoints,
          tls: etcdCluster.tls,
          sealing_key_file: secretFile,
          lease_ttl: opts.leaseTtl ?? '3s',
          spi_prefix: k + 1,
        },
        ...opts.nodeExtra,
        connections: { clients: connection },
      };
    };
    const memberKey = (k: number) => `/ikeclone/v1/${clusterName}/members/${nodes[k]!.name}`;
    const liveMembers = async () =>
      (await etcdCluster.ctl(['get', '--prefix', `/ikeclone/v1/${clusterName}/members/`, '--keys-only']))
        .split('\n')
        .filter((l) => l.trim().length > 0)
        .map((l) => l.slice(l.lastIndexOf('/') + 1));
    const startNode = async (k: number): Promise<Ikeclone> => {
      if (gateways[k]?.proc.exitInfo() === undefined && gateways[k]) throw new Error(`${nodes[k]!.name} is already running`);
      const node = nodes[k]!;
      const gw = await startIkeclone(node.ns, { dir: join(opts.dir, node.name), config: nodeConfig(k), keylog: true, logLevel: opts.logLevel ?? 'debug' });
      gateways[k] = gw;
      // The TUN device exists once the gateway runs; the client's virtual IPs are reached through it.
      await waitFor(async () => (await exec(node.ns, 'ip', ['link', 'show', CLUSTER_TUN])).code === 0, { timeoutMs: 10_000, message: `${node.name}: TUN device` });
      await ip(['-n', node.ns.name, 'route', 'replace', poolNet, 'dev', CLUSTER_TUN, 'src', node.lan]);
      await waitFor(async () => (await liveMembers()).includes(node.name), { timeoutMs: 20_000, intervalMs: 200, message: () => `${node.name}'s member key (${gw.log().slice(-1500)})` });
      return gw;
    };
    const net: ClusterNet = {
      index: I,
      wanNet,
      lanNet,
      poolNet,
      sw,
      client: cli,
      nat,
      lan,
      lanHost,
      clientAddress,
      clientWan,
      nodes,
      etcd: etcdCluster,
      clusterName,
      secretFile,
      nodeConfig,
      startNode,
      async startNodes() {
        for (let k = 0; k < n; k++) await startNode(k);
      },
      async killNode(k, o = {}) {
        const gw = gateways[k];
        const kills: Array<Promise<unknown>> = [];
        if (gw) kills.push(gw.proc.stop({ signal: 'SIGKILL', graceMs: 2000 }));
        if (o.etcd ?? true) kills.push(etcdCluster.kill(k));
        await Promise.all(kills);
      },
      async restartNode(k) {
        if (!etcdCluster.members[k]!.running()) await etcdCluster.restart(k);
        const ttlMs = Number.parseFloat(opts.leaseTtl ?? '3s') * 1000;
        // The killed gateway's lease must lapse first: its node name and SPI prefix are held until then.
        await waitFor(async () => !(await liveMembers()).includes(nodes[k]!.name), {
          timeoutMs: ttlMs + 20_000,
          intervalMs: 250,
          message: `${memberKey(k)} to go with the dead gateway's lease`,
        });
        return startNode(k);
      },
      async stopNode(k) {
        await gateways[k]?.stop();
      },
      clientConfig(extra = {}) {
        return {
          log: { level: opts.logLevel ?? 'debug' },
          listen: { address: clientAddress, port: 500, natPort: 4500 },
          retransmit: { timeout: '500ms', tries: 4 },
          dataplane: { workers: opts.workers ?? 1, esp, tun: CLUSTER_TUN },
          connections: {
            cluster: {
              remote_addrs: [nodes[0]!.wan],
              ike: [CLUSTER_IKE_PROPOSAL],
              local: { id: CLUSTER_CLIENT_ID, auth: 'psk' },
              remote: { id: CLUSTER_GW_ID, auth: 'psk' },
              psk: CLUSTER_PSK,
              mobike: true,
              clone: { supported: true },
              vips: ['0.0.0.0'],
              start_action: 'start',
              children: { lan: { local_ts: ['dynamic'], remote_ts: [lanNet], esp: [CLUSTER_ESP_PROPOSAL] } },
              ...opts.clientConnection,
            },
          },
          ...extra,
        };
      },
      async startClient(extra) {
        if (client && client.proc.exitInfo() === undefined) throw new Error('the client is already running');
        client = await startIkeclone(cli, { dir: join(opts.dir, 'client'), config: net.clientConfig(extra), keylog: true, logLevel: opts.logLevel ?? 'debug' });
        return client;
      },
      clientProcess: () => client,
      async clientVip(timeoutMs = 30_000) {
        const c = client;
        if (!c) throw new Error('the client is not running');
        const vip = await waitFor(async () => (await c.status()).ikeSas.find((s) => s.state === 'established' && s.virtualIps.length > 0)?.virtualIps[0], {
          timeoutMs,
          intervalMs: 200,
          message: () => `the client's virtual IP (${c.log().slice(-1500)})`,
        });
        await waitFor(async () => (await exec(cli, 'ip', ['link', 'show', CLUSTER_TUN])).code === 0, { timeoutMs: 10_000, message: 'client: TUN device' });
        await ip(['-n', cli.name, 'addr', 'replace', `${vip}/32`, 'dev', 'lo']);
        await ip(['-n', cli.name, 'route', 'replace', lanNet, 'dev', CLUSTER_TUN, 'src', vip]);
        return vip;
      },
      captureWan(file, filter = 'udp port 500 or udp port 4500 or esp') {
        return startCapture(sw, opts.nat ? 'wannat' : 'wancli', { file, filter });
      },
      keylogLines() {
        const lines = (file: string) =>
          nodes.flatMap((node) => {
            const p = join(opts.dir, node.name, 'keylog', file);
            return existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter((l) => l.trim().length > 0 && !l.startsWith('#')) : [];
          });
        return { ike: lines('ikev2_decryption_table'), esp: lines('esp_sa') };
      },
      async iperf(vip, o = {}) {
        const port = String(o.port ?? 5201);
        const seconds = o.seconds ?? 3;
        const srv = spawnIn(lan, 'iperf3', ['-s', '-1', '-B', lanHost, '-p', port]);
        try {
          await waitFor(async () => (await exec(lan, 'ss', ['-ltnH'])).stdout.includes(`${lanHost}:${port}`), { timeoutMs: 5000, intervalMs: 50, message: 'the iperf3 server' });
          const args = ['-c', lanHost, '-p', port, '-B', vip, '-t', String(seconds), '-J', '-P', String(o.streams ?? 1), ...(o.reverse ? ['-R'] : [])];
          const r = await exec(cli, 'iperf3', args, { timeoutMs: seconds * 1000 + 30_000 });
          let j: { end?: { sum_received?: { bits_per_second?: number; bytes?: number } }; start?: { connected?: unknown[] }; error?: string };
          try {
            j = JSON.parse(r.stdout) as typeof j;
          } catch {
            throw new Error(`iperf3 -c failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-500)}`);
          }
          if (r.code !== 0 || j.error) throw new Error(`iperf3 -c failed (exit ${r.code}): ${j.error ?? r.stderr.trim().slice(-500)}`);
          return { bitsPerSecond: j.end?.sum_received?.bits_per_second ?? 0, bytes: j.end?.sum_received?.bytes ?? 0, streams: j.start?.connected?.length ?? 0 };
        } finally {
          await srv.stop({ graceMs: 1000 });
        }
      },
      async espCounters(k) {
        const gw = gateways[k];
        if (!gw) throw new Error(`${nodes[k]!.name} is not running`);
        const workers = (await gw.status()).dataplane?.workers ?? [];
        const sum = (f: (w: (typeof workers)[number]) => number) => workers.reduce((t, w) => t + f(w), 0);
        return {
          encapPackets: sum((w) => w.encapPackets),
          encapBytes: sum((w) => w.encapBytes),
          decapPackets: sum((w) => w.decapPackets),
          decapBytes: sum((w) => w.decapBytes),
          espBytesOut: sum((w) => w.espBytesOut),
          failed: sum((w) => w.drops.replay + w.drops.icv + w.drops.malformed),
        };
      },
      async setLanNexthops(ks) {
        if (ks.length === 0) throw new Error('setLanNexthops: at least one node');
        await ip(['-n', lan.name, 'route', 'replace', poolNet, ...ks.flatMap((k) => ['nexthop', 'via', nodes[k]!.lan, 'weight', '1'])]);
      },
      cpuSeconds(k) {
        const gw = gateways[k];
        if (!gw) throw new Error(`${nodes[k]!.name} is not running`);
        // /proc/PID/stat: fields 14 and 15 (utime, stime) in clock ticks, after the parenthesised command name.
        const stat = readFileSync(`/proc/${gw.proc.pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
      },
      liveMembers,
      async destroy() {
        await stopAll();
      },
    };
    return net;
  } catch (err) {
    await stopAll();
    throw err;
  }
}
