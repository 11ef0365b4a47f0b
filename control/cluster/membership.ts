// Cluster membership on etcd (architecture §8): a node joins by checking the
// connections' hash, taking a lease, claiming an SPI prefix no other live node
// holds (io/spi-layout.ts) and writing its member key under the lease:
//
//   /ikeclone/v1/<cluster>/config            -> HMAC of the connections (first node writes it)
//   /ikeclone/v1/<cluster>/members/<node>    -> {address, load, spiPrefix}   (lease)
//   /ikeclone/v1/<cluster>/spi/<prefix>      -> <node>                        (lease)
//
// A node that dies stops refreshing its lease; when it lapses etcd deletes
// both keys and the others see it go (sooner when a survivor finds its
// heartbeat, alive/<node>, silent and revokes the lease: silent-member.ts). A node cut off from etcd learns of it
// through the lease's 'lost' event ('lease-lost' here), then tries every
// REJOIN_INTERVAL_MS to join again under a new lease with the same name and
// SPI prefix (its SAs carry that prefix) and says so ('rejoined').

//
// Owner: the main thread.
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, Lease, Watcher } from 'etcd3';
import type { ClusterConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { MAX_SPI_NODES } from '../../io/spi-layout.js';
import { clusterPrefix, etcdClient } from './etcd-client.js';
import { followPrefix } from './resource-keys.js';

/** What a member key holds. */
export interface MemberInfo {
  node: string;
  address: string;
  /** IKE SAs the node holds (rendezvous placement weighs by it). */
  load: number;
  spiPrefix: number;
}

/** Joining failed: `exitCode` 2 for a configuration problem (another hash, a taken name or prefix), 1 when etcd cannot be reached. */
export class ClusterJoinError extends Error {
  constructor(readonly exitCode: 1 | 2, message: string) {
    super(message);
    this.name = 'ClusterJoinError';
  }
}

export interface MembershipEvents {
  /** etcd says our lease is gone (expired while we were cut off, or revoked): IKE on our clones must stop. */
  'lease-lost': [reason: string];
  /**
   * A member key was written or deleted (join, load update, leave, lease
   * lapse); `names` says whether the set of member names changed (false: a
   * load update), and live() holds the members as they are now.
   */
  'members-changed': [names: boolean];
  /** After a lost lease: member and SPI keys written again under a new lease. */
  rejoined: [];
}

/** How often a node whose lease was lost tries to join again. */
export const REJOIN_INTERVAL_MS = 1000;

export interface JoinOptions {
  config: ClusterConfig;
  /** The hash of the connections this node runs, under its current key (config-hash.ts). */
  connectionsHash: string;
  /**
   * The same hash under the node's previous sealing keys (a rotation under
   * way, seal.ts): a cluster whose hash is one of these runs the same
   * connections, and its hash is rewritten under the current key.
   */
  previousConnectionsHashes?: readonly string[];
  log: Logger;
  /** The node's load now (written at join and by updateLoad). */
  load?: () => number;
  /** A client to use instead of one made from config (tests). */
  client?: Etcd3;
}

/** The first prefix a node tries: a stable hash of its name, so a restarted node tends to get its old one. */
function preferredPrefix(node: string): number {
  let h = 2166136261;
  for (const c of Buffer.from(node, 'utf8')) h = Math.imul(h ^ c, 16777619) >>> 0;
  return 1 + (h % (MAX_SPI_NODES - 1));
}

export class ClusterMembership extends EventEmitter<MembershipEvents> {
  private watcher: Watcher | undefined;
  /** The member keys as the watch has them (live()): a load update costs no read. */
  private readonly table = new Map<string, MemberInfo>();
  private closed = false;
  private rejoinTimer: NodeJS.Timeout | undefined;
  /** When the lease held now was asked for after a rejoin (it stands at least its TTL from then). */
  leaseAskedAt: number | undefined;
  private rejoinRefusedLogged = false;

  private constructor(
    readonly client: Etcd3,
    public lease: Lease,
    public leaseId: string,
    readonly config: ClusterConfig,
    readonly spiPrefix: number,
    private readonly log: Logger,
    private readonly load: () => number,
  ) {
    super();
  }

  /** The cluster's key prefix, /ikeclone/v1/<cluster>/. */
  get prefix(): string {
    return clusterPrefix(this.config.name);
  }

  get node(): string {
    return this.config.node;
  }

  /** Join the cluster (see the file comment); throws ClusterJoinError. */
  static async join(opts: JoinOptions): Promise<ClusterMembership> {
    const { config, log } = opts;
    const client = opts.client ?? etcdClient(config);
    const prefix = clusterPrefix(config.name);
    const fail = async (code: 1 | 2, message: string): Promise<never> => {
      if (!opts.client) client.close();
      throw new ClusterJoinError(code, message);
    };
    // Every node runs the same connections (architecture §8): the first node to join sets the hash.
    let stored: string | null;
    try {
      const txn = await client
        .if(`${prefix}config`, 'Create', '==', 0)
        .then(client.put(`${prefix}config`).value(opts.connectionsHash))
        .else(client.get(`${prefix}config`))
        .commit();
      stored = txn.succeeded ? opts.connectionsHash : (txn.responses[0]?.response_range?.kvs?.[0]?.value?.toString() ?? null);
    } catch (err) {
      return fail(1, `cannot reach etcd at ${config.etcd.join(', ')}: ${(err as Error).message}`);
    }
    if (stored !== null && stored !== opts.connectionsHash && opts.previousConnectionsHashes?.includes(stored)) {
      // Made under a key of an earlier rotation: the same connections. The hash moves to the current key (only if
      // unchanged meanwhile), so that nodes holding the current key alone are let in once the rotation is over.
      try {
        const rewrite = await client.if(`${prefix}config`, 'Value', '==', stored).then(client.put(`${prefix}config`).value(opts.connectionsHash)).commit();
        if (rewrite.succeeded) log.info({ cluster: config.name, node: config.node }, 'the cluster\'s connections hash was made under a previous sealing key: rewritten under the current one');
      } catch (err) {
        log.warn({ cluster: config.name, reason: (err as Error).message }, 'cannot rewrite the connections hash under the current sealing key: the next node to join tries again');
      }
      stored = opts.connectionsHash;
    }
    if (stored !== opts.connectionsHash) {
      return fail(
        2,
        `node ${config.node} runs other connections than cluster ${config.name} (connections hash ${opts.connectionsHash.slice(0, 12)}, the cluster's ${String(stored).slice(0, 12)}): every node needs the same connections`,
      );
    }
    const ttlSeconds = Math.max(1, Math.round(config.leaseTtlMs / 1000));
    const lease = client.lease(ttlSeconds, { autoKeepAlive: true });
    let leaseId: string;
    try {
      leaseId = await lease.grant();
    } catch (err) {
      return fail(1, `cannot take a lease from etcd: ${(err as Error).message}`);
    }
    const load = opts.load ?? (() => 0);
    const memberKey = `${prefix}members/${config.node}`;
    const first = config.spiPrefix ?? preferredPrefix(config.node);
    const candidates = config.spiPrefix !== undefined ? [first] : Array.from({ length: MAX_SPI_NODES - 1 }, (_, i) => 1 + ((first - 1 + i) % (MAX_SPI_NODES - 1)));
    for (const spiPrefix of candidates) {
      const info: MemberInfo = { node: config.node, address: config.address, load: load(), spiPrefix };
      const spiKey = `${prefix}spi/${spiPrefix}`;
      let txn;
      try {
        txn = await client
          .if(memberKey, 'Create', '==', 0)
          .and(spiKey, 'Create', '==', 0)
          .then(client.put(memberKey).value(JSON.stringify(info)).lease(leaseId), client.put(spiKey).value(config.node).lease(leaseId))
          .else(client.get(memberKey))
          .commit();
      } catch (err) {
        await lease.revoke().catch(() => undefined);
        return fail(1, `cannot write the member key to etcd: ${(err as Error).message}`);
      }
      if (txn.succeeded) {
        const m = new ClusterMembership(client, lease, leaseId, config, spiPrefix, log, load);
        m.follow();
        log.info({ cluster: config.name, node: config.node, spiPrefix, lease: leaseId }, 'joined the cluster');
        return m;
      }
      if ((txn.responses[0]?.response_range?.kvs?.length ?? 0) > 0) {
        await lease.revoke().catch(() => undefined);
        return fail(2, `node name ${config.node} is already a member of cluster ${config.name} (another gateway holds it): give each node its own cluster.node`);
      }
    }
    await lease.revoke().catch(() => undefined);
    return fail(2, config.spiPrefix !== undefined
      ? `SPI prefix ${config.spiPrefix} is held by another node of cluster ${config.name}: choose another cluster.spi_prefix or omit it`
      : `no free SPI prefix in cluster ${config.name} (${MAX_SPI_NODES - 1} nodes at most)`);
  }

  private followLease(lease: Lease): void {
    lease.on('lost', (err) => {
      if (this.closed || lease !== this.lease) return;
      this.log.error({ cluster: this.config.name, node: this.node, reason: err.message }, 'cluster lease lost: IKE stops on this node\'s clones');
      this.emit('lease-lost', err.message);
      this.scheduleRejoin();
    });
  }

  private scheduleRejoin(): void {
    if (this.closed || this.rejoinTimer) return;
    this.rejoinTimer = setTimeout(() => {
      this.rejoinTimer = undefined;
      void this.rejoin().then((ok) => {
        if (!ok) this.scheduleRejoin();
      });
    }, REJOIN_INTERVAL_MS);
    this.rejoinTimer.unref();
  }

  /** One attempt to join again under a new lease, with our name and SPI prefix; true when done. */
  private async rejoin(): Promise<boolean> {
    const { config, log } = this;
    const askedAt = Date.now();
    const lease = this.client.lease(Math.max(1, Math.round(config.leaseTtlMs / 1000)), { autoKeepAlive: true });
    try {
      const leaseId = await lease.grant();
      const memberKey = `${this.prefix}members/${this.node}`;
      const spiKey = `${this.prefix}spi/${this.spiPrefix}`;
      const info: MemberInfo = { node: this.node, address: config.address, load: this.load(), spiPrefix: this.spiPrefix };
      const txn = await this.client
        .if(memberKey, 'Create', '==', 0)
        .and(spiKey, 'Create', '==', 0)
        .then(this.client.put(memberKey).value(JSON.stringify(info)).lease(leaseId), this.client.put(spiKey).value(this.node).lease(leaseId))
        .commit();
      if (this.closed) return true;
      if (!txn.succeeded) {
        await lease.revoke().catch(() => undefined);
        if (!this.rejoinRefusedLogged) log.error({ cluster: config.name, node: this.node, spiPrefix: this.spiPrefix }, 'cannot join the cluster again: our node name or SPI prefix is held by another gateway');
        this.rejoinRefusedLogged = true;
        return false;
      }
      this.lease = lease;
      this.leaseId = leaseId;
      this.leaseAskedAt = askedAt;
      this.rejoinRefusedLogged = false;
      this.followLease(lease);
      log.warn({ cluster: config.name, node: this.node, spiPrefix: this.spiPrefix, lease: leaseId }, 'joined the cluster again after the lease was lost');
      this.emit('rejoined');
      return true;
    } catch {
      lease.release();
      return false;
    }
  }

  private follow(): void {
    this.followLease(this.lease);
    const prefix = `${this.prefix}members/`;
    let seeded = false;
    void followPrefix(
      this.client,
      prefix,
      (kv: IKeyValue) => {
        const m = parseMember(kv.value.toString());
        const name = kv.key.toString().slice(prefix.length);
        const joined = !this.table.has(name);
        if (m) this.table.set(name, m);
        else this.table.delete(name);
        if (seeded) this.emit('members-changed', joined || !m);
      },
      (kv: IKeyValue) => {
        // A member key goes when its node leaves or its lease lapses: when a dead node is noticed (failover).
        const name = kv.key.toString().slice(prefix.length);
        this.table.delete(name);
        this.log.info({ member: name }, 'cluster member gone');
        this.emit('members-changed', true);
      },
      () => {
        // Whoever read the members before the watch had them hears of the keys as they are now.
        seeded = true;
        this.emit('members-changed', true);
      },
    )
      .then((w) => {
        if (this.closed) return void w.cancel();
        this.watcher = w;
      })
      .catch((err: Error) => this.log.warn({ reason: err.message }, 'cannot watch the cluster members'));
  }

  /**
   * The live members as this node's watch has them, sorted by name (as
   * readMembers): current up to the latest 'members-changed'; empty until
   * the watch has read them once.
   */
  live(): MemberInfo[] {
    return [...this.table.values()].sort((a, b) => a.node.localeCompare(b.node));
  }

  /** Every live member, by name. */
  async members(): Promise<MemberInfo[]> {
    return readMembers(this.client, this.config.name);
  }

  /** Write our current load into our member key (under our lease). */
  async updateLoad(): Promise<void> {
    const info: MemberInfo = { node: this.node, address: this.config.address, load: this.load(), spiPrefix: this.spiPrefix };
    await this.client.put(`${this.prefix}members/${this.node}`).value(JSON.stringify(info)).lease(this.leaseId);
  }

  /** Leave: our keys go at once (the lease is revoked), and the client closes. */
  async leave(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.rejoinTimer) clearTimeout(this.rejoinTimer);
    await this.watcher?.cancel().catch(() => undefined);
    await this.lease.revoke().catch(() => undefined);
    this.client.close();
  }
}

/** The live members of `cluster`, sorted by name; entries that are not member records are skipped. */
export async function readMembers(client: Etcd3, cluster: string): Promise<MemberInfo[]> {
  const all = await client.getAll().prefix(`${clusterPrefix(cluster)}members/`).strings();
  const out: MemberInfo[] = [];
  for (const text of Object.values(all)) {
    const m = parseMember(text);
    if (m) out.push(m);
  }
  return out.sort((a, b) => a.node.localeCompare(b.node));
}

/** A member key's value, or undefined when it is not a member record. */
function parseMember(text: string): MemberInfo | undefined {
  try {
    const m = JSON.parse(text) as MemberInfo;
    if (typeof m.node === 'string' && typeof m.address === 'string' && Number.isInteger(m.spiPrefix) && Number.isFinite(m.load)) return m;
  } catch {
    // not a member record
  }
  return undefined;
}
