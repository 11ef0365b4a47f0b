// Virtual IP pools shared by a cluster's nodes (RFC 7296 §2.19; architecture
// §8): no address is leased twice across nodes, because each one is taken by
// a create-if-absent transaction on its own key (resource-keys.ts:
// pools/<pool>/<address>).
//
// Responders answer in one step (peer-resources.ts), so a node claims a few
// addresses of each pool ahead ({"reserved": node}, under its lease: a dead
// node's reserve goes back by itself) and IKE_AUTH takes one of them at once.
// The lease is then written to etcd: `if the key still says reserved by me
// then {"peer": peer}` without a lease, with peers/<peer>/vip/<address> next
// to it, and the reserve is topped up. A lease outlives the node that made it
// while the peer holds an SA on any node, and goes back when peer-accounting
// finds no node counting the peer (dead nodes included: their counts lapse
// with their leases).
//
// The same peer gets the address it already has, from any node. The reserve
// is `cluster.pool_reserve` addresses per pool (0..64, default 4). An
// IKE_AUTH asking for an address of a family whose pools' reserve is empty
// (always, with pool_reserve 0) waits for one address of each such pool to be
// claimed from etcd first (prepareLease, through PeerResources.prepare and
// control/ike/answer-preparation.ts: one round trip); what the answer did not
// lease goes back once it is built, past the reserve, so with 0 no address stays parked
// on a node. Only then does a node refuse (INTERNAL_ADDRESS_FAILURE, RFC 7296
// §3.10.1): the pool is exhausted for it when etcd has no free address of it;
// other nodes may still hold up to `reserve` unleased addresses each.
//
// Owner: the main thread (the engine calls lease/release synchronously).
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import type { LeasedVirtualIp, PreparedRelease, VirtualIpLeaseSource } from '../ike/peer-resources.js';
import { VirtualIpPool } from '../ike/virtual-ip.js';
import { bytesToIp, ipToBytes } from '../wire/ip.js';
import { clusterPrefix } from './etcd-client.js';
import { deleteNested, followPrefix, parsePeerKey, peerVipKey, poolPrefix, setNested } from './resource-keys.js';

/** Addresses of each pool a node claims ahead of IKE_AUTH, without cluster.pool_reserve. */
export const DEFAULT_POOL_RESERVE = 4;

export interface ClusterPoolOptions {
  client: Etcd3;
  cluster: string;
  node: string;
  /** This node's lease: its reserve goes when it dies. */
  leaseId: string;
  log: Logger;
  reserve?: number;
  /** A lease was written for `peer` (peer-accounting releases it if no SA of the peer comes up anywhere). */
  onLeased?: (peer: string) => void;
}

export interface ClusterPoolStats {
  /** Addresses leased to peers from this node. */
  leased: number;
  /** Leases refused: no address of the family in reserve (INTERNAL_ADDRESS_FAILURE). */
  refused: number;
  /** Addresses claimed from etcd for an IKE_AUTH that found the reserve empty. */
  claimedForAuth: number;
  /** Lease writes etcd did not take (the reserve key was gone: this node lost its lease). */
  lost: number;
}

interface Reserve {
  pool: VirtualIpPool;
  /** Addresses claimed for us in etcd, not leased yet. */
  free: string[];
  /** Addresses of this pool leased to peers from this node. */
  leased: number;
  claiming: Promise<void> | undefined;
}

interface PeerAddress {
  pool: string;
  family: 4 | 6;
}

function reservedValue(node: string): string {
  return JSON.stringify({ reserved: node });
}

export class ClusterVirtualIpLeases implements VirtualIpLeaseSource {
  readonly stats: ClusterPoolStats = { leased: 0, refused: 0, lost: 0, claimedForAuth: 0 };
  private readonly reserves = new Map<string, Reserve>();
  /** Every peer's addresses in the cluster (peers/<peer>/vip/), as etcd has them or as we just leased them. */
  private readonly peers = new Map<string, Map<string, PeerAddress>>();
  private readonly writes = new Set<Promise<void>>();
  private watcher: Watcher | undefined;

  constructor(private readonly opts: ClusterPoolOptions) {}

  /** Follow the peers' addresses and fill the reserve of each pool; resolves when they are in etcd. */
  async start(pools: readonly string[]): Promise<this> {
    this.watcher = await followPrefix(
      this.opts.client,
      `${clusterPrefix(this.opts.cluster)}peers/`,
      (kv) => this.onPut(kv),
      (kv) => this.onDelete(kv),
    );
    await Promise.all([...new Set(pools)].map((p) => this.topUp(this.reserveOf(p))));
    return this;
  }

  async stop(): Promise<void> {
    await this.settled();
    await this.watcher?.cancel().catch(() => undefined);
  }

  /** Wait for lease writes and claims in flight (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
    await Promise.all([...this.reserves.values()].map((r) => r.claiming));
  }

  /** How many addresses of `pool` this node holds ahead. */
  reserved(pool: string): number {
    return this.reserves.get(pool)?.free.length ?? 0;
  }

  /** Per pool: the addresses this node holds ahead, and those it leased to peers (status). */
  poolCounts(): Array<{ pool: string; reserved: number; leased: number }> {
    return [...this.reserves].sort(([a], [b]) => a.localeCompare(b)).map(([pool, r]) => ({ pool, reserved: r.free.length, leased: r.leased }));
  }

  private get target(): number {
    return this.opts.reserve ?? DEFAULT_POOL_RESERVE;
  }

  /**
   * Before an IKE_AUTH asking for addresses of `families` is answered: each
   * pool of those families whose reserve is empty gets one address claimed
   * from etcd (undefined: nothing to wait for). Settles to the release the
   * engine calls after the answer: what it did not lease goes back then, past
   * the reserve.
   */
  prepareLease(families: ReadonlyArray<4 | 6>): Promise<PreparedRelease> | undefined {
    const empty = [...this.reserves.values()].filter((r) => families.includes(r.pool.family) && r.free.length === 0);
    if (empty.length === 0) return undefined;
    const claims = Promise.all(empty.map((r) => this.claim(r, r.free.length + 1, 'claimedForAuth')));
    return claims.then(() => () => empty.forEach((r) => this.track(this.giveBack(r))));
  }

  lease(pools: readonly string[], peer: string, family: 4 | 6, wanted?: Uint8Array): LeasedVirtualIp | undefined {
    // The peer keeps the address it has, whichever node leased it (RFC 7296 §2.19).
    for (const [address, a] of this.peers.get(peer) ?? []) {
      if (a.family === family && pools.includes(a.pool)) return { address, bytes: ipToBytes(address)! };
    }
    const wantedText = wanted && wanted.length === (family === 4 ? 4 : 16) ? bytesToIp(wanted) : undefined;
    for (const text of pools) {
      const r = this.reserveOf(text);
      if (r.pool.family !== family) continue;
      // RFC 7296 §3.15.1: the address asked for when we hold it, else any.
      const i = wantedText !== undefined && r.free.includes(wantedText) ? r.free.indexOf(wantedText) : 0;
      const address = r.free.splice(i, 1)[0];
      void this.topUp(r);
      if (address === undefined) continue;
      setNested(this.peers, peer, address, { pool: text, family });
      this.track(this.commit(text, address, peer, family));
      this.stats.leased++;
      r.leased++;
      return { address, bytes: ipToBytes(address)! };
    }
    this.stats.refused++;
    this.opts.log.warn({ peer, family, pools }, 'no virtual IP in reserve: refused (INTERNAL_ADDRESS_FAILURE)');
    return undefined;
  }

  /** Our last SA of the peer is gone: the address stays leased while the peer holds SAs elsewhere (peer-accounting releases it). */
  release(_peer: string): void {}

  private reserveOf(text: string): Reserve {
    let r = this.reserves.get(text);
    if (!r) this.reserves.set(text, (r = { pool: new VirtualIpPool(text), free: [], leased: 0, claiming: undefined }));
    return r;
  }

  private track(p: Promise<void>): void {
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p));
  }


  /** The lease in etcd: only if the key still names our reserve (else our lease lapsed and someone may have it). */
  private async commit(pool: string, address: string, peer: string, family: 4 | 6): Promise<void> {
    const { client, cluster, node, log } = this.opts;
    const poolKey = `${poolPrefix(cluster, pool)}${address}`;
    try {
      const txn = await client
        .if(poolKey, 'Value', '==', reservedValue(node))
        .then(client.put(poolKey).value(JSON.stringify({ peer })), client.put(peerVipKey(cluster, peer, address)).value(JSON.stringify({ pool, family })))
        .commit();
      if (txn.succeeded) return void this.opts.onLeased?.(peer);
      this.stats.lost++;
      log.error({ peer, address, pool }, 'virtual IP lease not written: this node no longer holds the address in etcd');
    } catch (err) {
      this.stats.lost++;
      log.error({ peer, address, pool, reason: (err as Error).message }, 'virtual IP lease not written to etcd');
    }
  }

  /** Claim free addresses of the pool until the reserve is full: one create-if-absent transaction per address. */
  private topUp(r: Reserve): Promise<void> {
    r.claiming ??= this.claim(r, this.target).finally(() => (r.claiming = undefined));
    return r.claiming;
  }

  /** Addresses claimed past the reserve (for an IKE_AUTH) and not leased go back: deleted if etcd still has them as ours. */
  private async giveBack(r: Reserve): Promise<void> {
    const { client, cluster, node, log } = this.opts;
    while (r.free.length > this.target) {
      const address = r.free.pop()!;
      const key = `${poolPrefix(cluster, r.pool.text)}${address}`;
      try {
        await client.if(key, 'Value', '==', reservedValue(node)).then(client.delete().key(key)).commit();
      } catch (err) {
        // Under our lease: it lapses with it at the latest.
        log.warn({ pool: r.pool.text, address, reason: (err as Error).message }, 'cannot give a claimed virtual IP back to etcd');
      }
    }
  }

  private async claim(r: Reserve, target: number, count?: 'claimedForAuth'): Promise<void> {
    const { client, cluster, node, leaseId, log } = this.opts;
    if (r.free.length >= target) return;
    const prefix = poolPrefix(cluster, r.pool.text);
    try {
      const taken = new Set((await client.getAll().prefix(prefix).keys()).map((k) => k.slice(prefix.length)));
      for (const address of r.pool.addresses()) {
        if (r.free.length >= target) break;
        if (taken.has(address)) continue;
        const key = `${prefix}${address}`;
        const txn = await client.if(key, 'Create', '==', 0).then(client.put(key).value(reservedValue(node)).lease(leaseId)).commit();
        if (!txn.succeeded) continue;
        r.free.push(address);
        if (count) this.stats[count]++;
      }
    } catch (err) {
      log.warn({ pool: r.pool.text, reason: (err as Error).message }, 'cannot claim virtual IPs in etcd');
    }
  }

  private onPut(kv: IKeyValue): void {
    const k = parsePeerKey(this.opts.cluster, kv.key.toString());
    if (!k || k.kind !== 'vip') return;
    try {
      const v = JSON.parse(kv.value.toString()) as PeerAddress;
      if (typeof v.pool === 'string' && (v.family === 4 || v.family === 6)) setNested(this.peers, k.peer, k.name, { pool: v.pool, family: v.family });
    } catch {
      // not a lease record
    }
  }

  private onDelete(kv: IKeyValue): void {
    const k = parsePeerKey(this.opts.cluster, kv.key.toString());
    if (!k || k.kind !== 'vip') return;
    deleteNested(this.peers, k.peer, k.name);
  }
}
