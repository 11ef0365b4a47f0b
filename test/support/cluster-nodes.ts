// Cluster nodes over in-memory engines (test/support/cluster-peers.ts) and a
// real etcd (test/support/etcd.ts), wired as a gateway's cluster node wires
// them (control/cluster/node.ts): membership under a short lease, clone
// handoff with the fencing of requests, the write-ahead of answers, failover
// and rebalancing. A node can be killed as by kill -9: its datagrams go
// nowhere, its etcd client stops and its lease lapses, never revoked.
import { afterAll, beforeAll } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { CloneHandoff } from '../../control/cluster/handoff.js';
import { CloneFailover } from '../../control/cluster/failover.js';
import { CloneRebalance } from '../../control/cluster/rebalance.js';
import { ClusterMembership } from '../../control/cluster/membership.js';
import { LeaseClock } from '../../control/cluster/answer-fence.js';
import { AnswerWriteAhead } from '../../control/cluster/answer-write-ahead.js';
import { etcdClient } from '../../control/cluster/etcd-client.js';
import type { ClusterKey } from '../../control/cluster/seal.js';
import { decodeTransferRecord, type ArrivalResult, type TransferState } from '../../control/ike/sa-transfer.js';
import { cloneKeys } from '../../control/cluster/reassign.js';
import type { IkeEngine, IkeEngineOptions } from '../../control/ike/engine.js';
import type { IkeSa } from '../../control/ike/ike-sa.js';
import { silentLogger, type Logger } from '../../control/log.js';
import type { MemoryWire } from './peers.js';
import { NODE_SPI_PREFIX } from './cluster-peers.js';
import { startEtcd, type EtcdServer } from './etcd.js';
import { requirePrereqs } from './prereq.js';

/** The etcd a test file runs, the clients it opened and what to undo after it. */
export interface ClusterTestEnv {
  etcd: EtcdServer;
  clients: Etcd3[];
  cleanups: Array<() => Promise<void> | void>;
  log: Logger;
}

/**
 * The etcd of a test file (TLS), started before its tests when the
 * prerequisite 'etcd' is there; its clients, nodes and etcd stopped after
 * them (by pid).
 */
export function useClusterEtcd(): ClusterTestEnv {
  const env = { clients: [], cleanups: [], log: silentLogger() } as unknown as ClusterTestEnv;
  beforeAll(async () => {
    if (requirePrereqs(['etcd']).ok) env.etcd = await startEtcd({ tls: true });
  }, 60_000);
  afterAll(async () => {
    for (const c of env.cleanups.splice(0).reverse()) await c();
    for (const c of env.clients) c.close();
    await env.etcd?.stop();
  });
  return env;
}

export function newEtcdClient(env: ClusterTestEnv): Etcd3 {
  const cl = etcdClient({ etcd: [env.etcd.endpoint], tls: env.etcd.tls! });
  env.clients.push(cl);
  return cl;
}

/** What a node's engine asks of its cluster node, by node name (set once the node has started). */
export type NodeHooks = Map<string, { handoff: CloneHandoff; writeAhead?: AnswerWriteAhead; spiPrefix?: number }>;

/** The engine options of node `name`: its requests fenced, its answers written ahead (control/cluster/node.ts). */
export function engineHooks(hooks: NodeHooks, name: string): Partial<IkeEngineOptions> {
  return {
    holdRequest: (sa: IkeSa) => hooks.get(name)?.handoff.holdRequest(sa) ?? false,
    holdResponse: (sa: IkeSa, send: () => void) => hooks.get(name)?.writeAhead?.holdResponse(sa, send) ?? false,
    mayAnswer: (sa: IkeSa) => hooks.get(name)?.writeAhead?.mayAnswer(sa) ?? true,
  };
}

export interface ClusterTestNode {
  name: string;
  address: string;
  engine: IkeEngine;
  client: Etcd3;
  handoff: CloneHandoff;
  writeAhead: AnswerWriteAhead;
  membership: ClusterMembership;
  failover: CloneFailover;
  rebalance: CloneRebalance;
  arrivals: Array<{ sa: IkeSa; result: ArrivalResult }>;
}

export interface NodeOptions {
  /** Claims dead nodes' clones (default true). */
  claims?: boolean;
  /** Moves clones to nodes that hold none of their family (default true). */
  rebalances?: boolean;
  /** Whether the lease still certainly stands, decided by the test instead of the lease's keep-alives. */
  lease?: Pick<LeaseClock, 'standing'>;
  /** How long each later-ranked survivor waits before it claims a dead node's clone (default 400 ms). */
  claimStaggerMs?: number;
  /** The node's etcd lease (default 1 s: a dead node is noticed soon). */
  leaseTtlMs?: number;
}

/** One cluster node over `engine`: its own etcd client, membership (1 s lease unless opts say), handoff, write-ahead, failover and rebalancing. */
export async function startNode(env: ClusterTestEnv, clusterName: string, key: ClusterKey, name: string, address: string, engine: IkeEngine, hooks: NodeHooks, opts: NodeOptions = {}): Promise<ClusterTestNode> {
  const { log } = env;
  const leaseTtlMs = opts.leaseTtlMs ?? 1000;
  const client = newEtcdClient(env);
  const joinStartedAt = Date.now();
  const membership = await ClusterMembership.join({
    config: { name: clusterName, node: name, address, etcd: [env.etcd.endpoint], tls: env.etcd.tls!, sealingKeyFile: '/nonexistent', leaseTtlMs, onEtcdUnreachable: 'fail' },
    connectionsHash: 'same connections',
    log,
    client,
  });
  // As a gateway's cluster node does: its own SPI prefix, and the other nodes' (a handoff draws the new node's Child SA SPI).
  const spiPrefix = NODE_SPI_PREFIX[address];
  const handoff = new CloneHandoff({ engine, client, key, cluster: clusterName, node: name, address, log, ...(spiPrefix !== undefined && { spiPrefix }), spiPrefixOf: (n) => hooks.get(n)?.spiPrefix });
  const lease = new LeaseClock(membership.lease, leaseTtlMs, joinStartedAt);
  const writeAhead = new AnswerWriteAhead({ records: handoff, lease: opts.lease ?? lease, log });
  hooks.set(name, { handoff, writeAhead, ...(spiPrefix !== undefined && { spiPrefix }) });
  await handoff.start();
  const shared = { engine, client, cluster: clusterName, node: name, handoff, log };
  const failover = new CloneFailover({ ...shared, key, staggerMs: opts.claimStaggerMs ?? 400, ...(spiPrefix !== undefined && { spiPrefix }), spiPrefixOf: (n) => hooks.get(n)?.spiPrefix });
  if (opts.claims !== false) failover.start();
  const rebalance = new CloneRebalance({ ...shared, intervalMs: 1000, movesPerSecond: 5 });
  if (opts.rebalances !== false) rebalance.start();
  membership.on('members-changed', (names) => {
    if (opts.claims !== false) failover.membersChanged(names);
    if (opts.rebalances !== false) rebalance.membersChanged(names);
  });
  // As a gateway's cluster node does (control/cluster/node.ts).
  membership.on('lease-lost', (reason) => {
    handoff.suspend(reason);
    failover.pause();
    rebalance.pause();
  });
  membership.on('rejoined', () => {
    lease.follow(membership.lease, membership.leaseAskedAt ?? Date.now());
    handoff.resume();
    failover.resume();
    rebalance.resume();
  });
  const arrivals: ClusterTestNode['arrivals'] = [];
  handoff.on('arrived', (sa, result) => arrivals.push({ sa, result }));
  const node: ClusterTestNode = { name, address, engine, client, handoff, writeAhead, membership, failover, rebalance, arrivals };
  env.cleanups.push(() => stopNode(node));
  return node;
}

export async function stopNode(n: ClusterTestNode): Promise<void> {
  n.failover.stop();
  n.rebalance.stop();
  n.writeAhead.stop();
  await n.handoff.stop();
}

/** Kill a node: no more datagrams from or to its address, no etcd client (its lease lapses, never revoked). */
export async function killNode(wire: MemoryWire, n: ClusterTestNode): Promise<void> {
  const previous = wire.filter;
  wire.filter = (d, i) => (d.local.address === n.address || d.remote.address === n.address ? 'drop' : previous(d, i));
  await stopNode(n);
  n.membership.lease.release(); // no more keep-alives, as after kill -9
  n.client.close();
}

/** The state of clone (family, index)'s record in etcd, opened as sealed for `owner` at `epoch`. */
export async function readRecordState(env: ClusterTestEnv, cluster: string, key: ClusterKey, family: string, index: number, epoch: number, owner: string): Promise<TransferState> {
  const k = cloneKeys(cluster, family, index);
  const client = newEtcdClient(env);
  const sealed = await client.get(k.record).buffer();
  client.close();
  if (!sealed) throw new Error(`no record at ${k.record}`);
  const opened = key.open({ keyPath: k.record, epoch, owner }, new Uint8Array(sealed));
  if (!opened.ok) throw new Error(opened.error);
  const record = decodeTransferRecord(opened.value);
  if (!record.ok) throw new Error(record.error);
  return record.value.state;
}
