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
// control/ike/answer-preparation.ts: a read and a create-if-absent
// transaction). A claimed address is held for that IKE_AUTH's answer, as is
// one taken from the reserve for an answer that waits for something else (its
// Child SA's admission): no other answer takes it meanwhile. What the answer
// did not lease goes back once it is built, past the reserve, so with 0 no
// address stays parked on a node. Only then does a node refuse
// (INTERNAL_ADDRESS_FAILURE, RFC 7296 §3.10.1): the pool is exhausted for it
// when etcd has no free address of it; other nodes may still hold up to
// `reserve` unleased addresses each.
//
// The reserved keys live under the node's lease: when it is lost they are
// gone (another node may claim them), so the reserve and the held addresses
// are dropped at once, and claimed again under the new lease.
//
// Owner: the main thread (the engine calls lease/release synchronously).
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import type { IkeSa } from '../ike/ike-sa.js';
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

/** An address held for one IKE_AUTH's answer (prepareLease): lease() for that SA takes it first. */
interface HeldAddress {
  r: Reserve;
  address: string;
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
  /** Per IKE_AUTH waiting for its answer: the addresses held for it, until the engine's release. */
  private readonly held = new Map<IkeSa, HeldAddress[]>();
  /** Counts lost leases: a claim that began under an earlier one keeps nothing. */
  private generation = 0;
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
   * Before the IKE_AUTH of `sa` asking for addresses of `families` is
   * answered: one address of each pool of those families is held for its
   * answer, claimed from etcd when the pool's reserve is empty, else taken
   * from the reserve if the answer `waits` for something else anyway (another
   * answer could take the reserve's address meanwhile; an answer built at once
   * cannot be overtaken). Undefined: nothing to hold. Settles to the release
   * the engine calls after the answer: what it did not lease goes back to the
   * reserve, and what is past the reserve back to etcd.
   */
  prepareLease(sa: IkeSa, families: ReadonlyArray<4 | 6>, waits = false): Promise<PreparedRelease> | undefined {
    const mine: HeldAddress[] = [];
    const claims: Promise<void>[] = [];
    for (const r of this.reserves.values()) {
      if (!families.includes(r.pool.family)) continue;
      if (r.free.length === 0) {
        const claimed = () => mine.some((h) => h.r === r);
        claims.push(this.claim(r, claimed, (address) => {
          mine.push({ r, address });
          this.stats.claimedForAuth++;
        }));
      } else if (waits) {
        mine.push({ r, address: r.free.shift()! });
        void this.topUp(r);
      }
    }
    if (mine.length === 0 && claims.length === 0) return undefined;
    this.held.set(sa, mine);
    const done = Promise.all(claims).then(() => undefined);
    this.track(done);
    return done.then(() => () => this.releaseHeld(sa));
  }

  /** The answer is built: what was held for it and not leased goes back. */
  private releaseHeld(sa: IkeSa): void {
    const mine = this.held.get(sa) ?? [];
    this.held.delete(sa);
    for (const h of mine) h.r.free.push(h.address);
    for (const r of new Set(mine.map((h) => h.r))) this.track(this.giveBack(r));
  }

  /** This node's lease is lost: the reserved keys went with it, and another node may claim them now. */
  leaseLost(): void {
    this.generation++;
    for (const r of this.reserves.values()) r.free.length = 0;
    for (const mine of this.held.values()) mine.length = 0;
  }

  /** Joined again under a new lease: each reserve is claimed afresh (after a claim still running under the old one). */
  rejoined(): void {
    for (const r of this.reserves.values()) void (r.claiming ?? Promise.resolve()).then(() => this.topUp(r));
  }

  lease(pools: readonly string[], peer: string, family: 4 | 6, wanted?: Uint8Array, sa?: IkeSa): LeasedVirtualIp | undefined {
    // The peer keeps the address it has, whichever node leased it (RFC 7296 §2.19).
    for (const [address, a] of this.peers.get(peer) ?? []) {
      if (a.family === family && pools.includes(a.pool)) return { address, bytes: ipToBytes(address)! };
    }
    const wantedText = wanted && wanted.length === (family === 4 ? 4 : 16) ? bytesToIp(wanted) : undefined;
    const mine = sa ? this.held.get(sa) : undefined;
    for (const text of pools) {
      const r = this.reserveOf(text);
      if (r.pool.family !== family) continue;
      const address = this.take(r, wantedText, mine);
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

  /**
   * An address of `r` for an answer: RFC 7296 §3.15.1, the address asked for
   * when we hold it (for this answer or in the reserve), else the one held for
   * this answer, else any of the reserve.
   */
  private take(r: Reserve, wanted: string | undefined, mine: HeldAddress[] | undefined): string | undefined {
    const heldAt = (address?: string) => mine?.findIndex((h) => h.r === r && (address === undefined || h.address === address)) ?? -1;
    if (wanted !== undefined) {
      const i = heldAt(wanted);
      if (i >= 0) return mine!.splice(i, 1)[0]!.address;
      if (r.free.includes(wanted)) return r.free.splice(r.free.indexOf(wanted), 1)[0];
    }
    const i = heldAt();
    if (i >= 0) return mine!.splice(i, 1)[0]!.address;
    return r.free.shift();
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
      this.leaseNotWritten(pool, address, peer);
      log.error({ peer, address, pool }, 'virtual IP lease not written: this node no longer holds the address in etcd');
    } catch (err) {
      this.leaseNotWritten(pool, address, peer);
      log.error({ peer, address, pool, reason: (err as Error).message }, 'virtual IP lease not written to etcd');
    }
  }

  /** The peer has the address from its answer, but not in etcd: not given to it (or counted as ours) again. */
  private leaseNotWritten(pool: string, address: string, peer: string): void {
    this.stats.lost++;
    const r = this.reserves.get(pool);
    if (r) r.leased = Math.max(0, r.leased - 1);
    if (this.peers.get(peer)?.get(address)) deleteNested(this.peers, peer, address);
  }

  /** Claim free addresses of the pool until the reserve is full: one create-if-absent transaction per address. */
  private topUp(r: Reserve): Promise<void> {
    r.claiming ??= this.claim(r, () => r.free.length >= this.target, (address) => r.free.push(address)).finally(() => (r.claiming = undefined));
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

  /** Claim free addresses of the pool, each with a create-if-absent transaction under our lease, until `enough`. */
  private async claim(r: Reserve, enough: () => boolean, claimed: (address: string) => void): Promise<void> {
    const { client, cluster, node, leaseId, log } = this.opts;
    if (enough()) return;
    const generation = this.generation;
    const prefix = poolPrefix(cluster, r.pool.text);
    try {
      const taken = new Set((await client.getAll().prefix(prefix).keys()).map((k) => k.slice(prefix.length)));
      for (const address of r.pool.addresses()) {
        if (enough() || generation !== this.generation) break;
        if (taken.has(address)) continue;
        const key = `${prefix}${address}`;
        const txn = await client.if(key, 'Create', '==', 0).then(client.put(key).value(reservedValue(node)).lease(leaseId)).commit();
        // Written under a lease lost since: it lapses with it.
        if (!txn.succeeded || generation !== this.generation) continue;
        claimed(address);
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
