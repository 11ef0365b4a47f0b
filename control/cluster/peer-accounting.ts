// Per-peer accounting across a cluster (RFC 7791 §8; architecture §8): each
// node writes how many IKE SAs and Child SAs every authenticated peer holds on
// it under its own lease (peers/<peer>/nodes/<node>, resource-keys.ts), and
// follows what the other nodes wrote. The engine's per-peer limits then count
// the peer's SAs on every node (peer-resources.ts: a clone past ikeSasPerPeer
// gets NO_ADDITIONAL_SAS wherever its siblings live), and a peer's session
// lasts from its first IKE SA on any node to its last clone on any node.
//
// When the last count goes (a node's last SA of the peer died, or a dead
// node's lease lapsed and etcd deleted its counts), the peer's cluster-wide
// resources are released in one transaction guarded by "no node counts the
// peer": its virtual IPs go back to their pools. The check waits
// `releaseGraceMs` first, so that a clone handed from one node to another
// (ike-down here, ike-up there) or an IKE SA rekeyed keeps its addresses. A
// peer whose every node died while no one watched is released by the sweep
// each node runs when it starts.
//
// The counts of other nodes are as fresh as the watch. A new IKE SA of a peer
// (a clone), and a new Child SA, is admitted exactly instead
// (peer-admission.ts): one transaction against every node's count of the peer
// as read, writing ours one higher; the SA it admitted is then counted already
// when it comes up.
//
// Owner: the main thread.
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { EngineEvents } from '../ike/context.js';
import type { ChildSa, IkeSa } from '../ike/ike-sa.js';
import type { Logger } from '../log.js';
import { deleteIfRangeEmpty, deleteNested, followPrefix, setNested, parsePeerCount, parsePeerKey, peerNodeKey, peerPrefix, peerVipKey, type PeerCount } from './resource-keys.js';
import { clusterPrefix } from './etcd-client.js';

/** How long a peer's last count must stay gone before its resources are released. */
export const DEFAULT_RELEASE_GRACE_MS = 3000;

/**
 * How long our count changes wait before they are written. A clone's arrival
 * brings its IKE SA up (a change here, one at the node it left) in the middle
 * of its exchanges with the peer: written at once, the write and the watch
 * events it causes on every node took the main thread between the address
 * list and the peer's answer (the path test took 6-9 ms p50 in the cluster
 * benchmark's moves, 4 ms with the write after them). The others follow the
 * counts through their watch, a round trip late anyway; an admission that
 * needs our count in etcd first (flushed) has it written at once.
 */
export const DEFAULT_COUNT_WRITE_DELAY_MS = 100;

export type { PeerCount };

export interface PeerAccountingOptions {
  client: Etcd3;
  cluster: string;
  node: string;
  /** This node's lease: its counts go when it dies. */
  leaseId: string;
  log: Logger;
  releaseGraceMs?: number;
  /** DEFAULT_COUNT_WRITE_DELAY_MS unless given. */
  countWriteDelayMs?: number;
}

/** One IKE SA (or Child SA) admitted ahead of its coming up (peer-admission.ts). */
export interface AdmittedSlot {
  consumed: boolean;
  kind: keyof PeerCount;
}

export interface PeerAccountingEvents {
  /** The peer's first SA in the cluster (no node counted it before). */
  'session-up': [peer: string];
  /** The peer held nothing anywhere for the grace period: its resources were released. */
  released: [peer: string];
}

export class ClusterPeerAccounting extends EventEmitter<PeerAccountingEvents> {
  /** Every node's counts by peer (ours included), as etcd has them. */
  private readonly counts = new Map<string, Map<string, PeerCount>>();
  /** Our own counts, ahead of etcd. */
  private readonly local = new Map<string, PeerCount>();
  private readonly dirty = new Set<string>();
  private flushing: Promise<void> | undefined;
  /** How long a change waits before it is written (options.countWriteDelayMs). */
  private readonly writeDelayMs: number;
  /** The write `flushing` waits to start (its delay), while it waits: starts it at once. */
  private startWrite: (() => void) | undefined;
  private readonly releaseTimers = new Map<string, NodeJS.Timeout>();
  private watcher: Watcher | undefined;
  private closed = false;
  /** Writes that failed (etcd unreachable): the next change writes again. */
  writeFailures = 0;
  /**
   * The highest revision of any event (or loaded key) under peers/ applied
   * to `counts`: the watch delivers events in revision order, so the counts
   * are etcd's as of this revision for every key not changed since.
   */
  private followedRevision = 0n;
  /** Per peer: IKE SAs and Child SAs admitted (and counted in etcd) that have not come up yet. */
  private readonly admissions = new Map<string, AdmittedSlot[]>();

  constructor(private readonly opts: PeerAccountingOptions) {
    super();
    this.writeDelayMs = opts.countWriteDelayMs ?? DEFAULT_COUNT_WRITE_DELAY_MS;
  }

  /** Load the counts, follow them, and release peers no node holds any more (a cluster that lost every node of theirs). */
  async start(): Promise<this> {
    const base = `${clusterPrefix(this.opts.cluster)}peers/`;
    const vipPeers = new Set<string>();
    this.watcher = await followPrefix(
      this.opts.client,
      base,
      (kv) => this.onPut(kv, vipPeers),
      (kv) => this.onDelete(kv),
    );
    for (const peer of vipPeers) if (!this.counts.has(peer)) this.scheduleRelease(peer);
    return this;
  }

  /** Count the engine's established IKE SAs and their Child SAs per authenticated peer. */
  follow(engine: Pick<EventEmitter<EngineEvents>, 'on'>): this {
    engine.on('ike-up', (sa: IkeSa) => this.change(sa.peerKey, { ike: 1, child: 0 }));
    engine.on('ike-down', (sa: IkeSa) => this.change(sa.peerKey, { ike: -1, child: 0 }));
    engine.on('child-up', (child: ChildSa) => this.change(child.ike.peerKey, { ike: 0, child: 1 }));
    engine.on('child-down', (child: ChildSa) => this.change(child.ike.peerKey, { ike: 0, child: -1 }));
    return this;
  }

  /**
   * Resources were leased to `peer` here: if no node counts an SA of it when
   * the grace period ends (its IKE_AUTH answer was lost, its SA never came
   * up), they are released.
   */
  leased(peer: string): void {
    if (!this.local.has(peer) && !this.counts.has(peer)) this.scheduleRelease(peer);
  }

  /** IKE SAs `peer` holds on other nodes. */
  ikeSasElsewhere(peer: string): number {
    return this.elsewhere(peer, 'ike');
  }

  /** Child SAs `peer` holds on other nodes. */
  childSasElsewhere(peer: string): number {
    return this.elsewhere(peer, 'child');
  }

  /** The peer's counts on every node, ours as we know them now. */
  peerCounts(peer: string): Record<string, PeerCount> {
    const out: Record<string, PeerCount> = Object.fromEntries(this.counts.get(peer) ?? []);
    const mine = this.local.get(peer);
    if (mine && (mine.ike > 0 || mine.child > 0)) out[this.opts.node] = { ...mine };
    else delete out[this.opts.node];
    return out;
  }

  /** Every peer's counts on every node, ours as we know them now (status). */
  *allPeerCounts(): Generator<PeerCount[]> {
    for (const peer of new Set([...this.counts.keys(), ...this.local.keys()])) yield Object.values(this.peerCounts(peer));
  }

  /**
   * The peer's `what` on other nodes as followed, with the revision the
   * counts hold at (an admission's transaction compares it instead of reading
   * again); undefined before anything was followed.
   */
  followedElsewhere(peer: string, what: keyof PeerCount): { count: number; revision: bigint } | undefined {
    return this.followedRevision === 0n ? undefined : { count: this.elsewhere(peer, what), revision: this.followedRevision };
  }

  private elsewhere(peer: string, what: keyof PeerCount): number {
    let n = 0;
    for (const [node, c] of this.counts.get(peer) ?? []) if (node !== this.opts.node) n += c[what];
    return n;
  }

  /** Our own count of `peer`, admitted IKE SAs that have not come up included (what an admission adds one to). */
  ownCount(peer: string): PeerCount {
    return { ...(this.local.get(peer) ?? { ike: 0, child: 0 }) };
  }

  /**
   * An admission wrote `written` (our count plus one SA of `kind`) to etcd:
   * the SA it admitted counts from now on, and is not counted again when it
   * comes up. withdraw() takes the slot back if it never does.
   */
  admitted(peer: string, written: PeerCount, kind: keyof PeerCount = 'ike'): AdmittedSlot {
    const c = this.local.get(peer) ?? { ike: 0, child: 0 };
    c[kind]++;
    this.local.set(peer, c);
    this.cancelRelease(peer);
    // Our SAs changed between the admission's read and its write: the count is written again.
    if (c.ike !== written.ike || c.child !== written.child) this.change(peer, { ike: 0, child: 0 });
    const slot: AdmittedSlot = { consumed: false, kind };
    this.admissions.set(peer, [...(this.admissions.get(peer) ?? []), slot]);
    return slot;
  }

  /**
   * The admitted SA did not come up (the answer refused it for another reason,
   * or was never sent). A slot another SA of the peer consumed meanwhile (a
   * rekey's successor, which came up without one of its own) counts that SA
   * now: it stays.
   */
  withdraw(peer: string, slot: AdmittedSlot): void {
    if (slot.consumed) return;
    this.takeSlot(peer, slot.kind, slot);
    this.change(peer, slot.kind === 'ike' ? { ike: -1, child: 0 } : { ike: 0, child: -1 });
  }

  private takeSlot(peer: string, kind: keyof PeerCount, slot?: AdmittedSlot): boolean {
    const slots = this.admissions.get(peer);
    const i = slots ? (slot ? slots.indexOf(slot) : slots.findIndex((s) => s.kind === kind)) : -1;
    if (!slots || i < 0 || i >= slots.length) return false;
    slots[i]!.consumed = true;
    slots.splice(i, 1);
    if (slots.length === 0) this.admissions.delete(peer);
    return true;
  }

  /** One of our SAs of `peer` came or went: written to etcd soon (changes in one turn are one write). */
  change(peer: string | undefined, delta: PeerCount): void {
    if (!peer || this.closed) return;
    // An IKE SA (or Child SA) an admission counted already.
    if (delta.ike > 0 && this.takeSlot(peer, 'ike')) delta = { ike: delta.ike - 1, child: delta.child };
    if (delta.child > 0 && this.takeSlot(peer, 'child')) delta = { ike: delta.ike, child: delta.child - 1 };
    const c = this.local.get(peer) ?? { ike: 0, child: 0 };
    c.ike = Math.max(0, c.ike + delta.ike);
    c.child = Math.max(0, c.child + delta.child);
    this.local.set(peer, c);
    this.dirty.add(peer);
    if (c.ike > 0) this.cancelRelease(peer);
    this.scheduleWrite(this.writeDelayMs);
  }

  /** Our lease changed (the node joined again; etcd deleted the counts kept under the old one): every count is written again. */
  rewriteAll(): void {
    if (this.closed) return;
    for (const peer of this.local.keys()) this.dirty.add(peer);
    this.scheduleWrite(0);
  }

  /** The write of the counts changed so far, started now if it waits for its delay (one pass: not the retries of a failed one). */
  flushed(): Promise<void> {
    this.startWrite?.();
    return this.flushing ?? Promise.resolve();
  }

  /** Wait for the counts changed so far to be in etcd (tests, shutdown): no delay is waited for. */
  async settled(): Promise<void> {
    while (this.flushing) {
      this.startWrite?.();
      await this.flushing;
    }
  }

  /** A write of the dirty counts in `delayMs`, unless one is waiting or under way (it takes them, or the next pass does). */
  private scheduleWrite(delayMs: number): void {
    if (this.flushing) return;
    this.flushing = new Promise<void>((resolve) => {
      const start = () => {
        clearTimeout(timer);
        this.startWrite = undefined;
        resolve();
      };
      const timer = setTimeout(start, delayMs);
      this.startWrite = start;
    }).then(() => this.flush());
  }

  private async flush(): Promise<void> {
    const { client, cluster, node, leaseId } = this.opts;
    // Stopped while the write waited for its delay: the counts go with our lease.
    if (this.closed) {
      this.flushing = undefined;
      return;
    }
    const peers = [...this.dirty];
    this.dirty.clear();
    let failed = false;
    for (const peer of peers) {
      const c = this.local.get(peer)!;
      const key = peerNodeKey(cluster, peer, node);
      try {
        if (c.ike > 0 || c.child > 0) {
          const fresh = !this.counts.has(peer);
          await client.put(key).value(JSON.stringify(c)).lease(leaseId);
          if (fresh) {
            this.opts.log.info({ peer }, 'cluster session up');
            this.emit('session-up', peer);
          }
        } else {
          this.local.delete(peer);
          await client.delete().key(key);
          this.scheduleRelease(peer);
        }
      } catch (err) {
        this.writeFailures++;
        failed = true;
        this.dirty.add(peer);
        this.opts.log.warn({ peer, reason: (err as Error).message }, 'cannot write the peer\'s SA count to etcd');
      }
    }
    this.flushing = undefined;
    // Changed meanwhile: written after the same delay; failed: tried again in half a second.
    if (this.dirty.size > 0 && !this.closed) this.scheduleWrite(failed ? 500 : this.writeDelayMs);
  }

  private onPut(kv: IKeyValue, vipPeers?: Set<string>): void {
    this.noteRevision(kv);
    const k = parsePeerKey(this.opts.cluster, kv.key.toString());
    if (!k) return;
    if (k.kind === 'vip') return void vipPeers?.add(k.peer);
    if (k.kind !== 'nodes') return;
    const count = parsePeerCount(kv.value.toString());
    if (!count) return;
    setNested(this.counts, k.peer, k.name, count);
    this.cancelRelease(k.peer);
  }

  private onDelete(kv: IKeyValue): void {
    this.noteRevision(kv);
    const k = parsePeerKey(this.opts.cluster, kv.key.toString());
    if (!k || k.kind !== 'nodes') return;
    deleteNested(this.counts, k.peer, k.name);
    // A dead node's lease lapsed (or a node let go): whoever still holds nothing of the peer checks.
    if (!this.counts.has(k.peer) && !this.local.has(k.peer)) this.scheduleRelease(k.peer);
  }

  private noteRevision(kv: IKeyValue): void {
    const rev = BigInt(kv.mod_revision || '0');
    if (rev > this.followedRevision) this.followedRevision = rev;
  }

  private cancelRelease(peer: string): void {
    const t = this.releaseTimers.get(peer);
    if (t) clearTimeout(t);
    this.releaseTimers.delete(peer);
  }

  private scheduleRelease(peer: string): void {
    if (this.closed) return;
    this.cancelRelease(peer);
    const t = setTimeout(() => {
      this.releaseTimers.delete(peer);
      void this.release(peer);
    }, this.opts.releaseGraceMs ?? DEFAULT_RELEASE_GRACE_MS);
    t.unref();
    this.releaseTimers.set(peer, t);
  }

  /** Release the peer's addresses (and its record) if no node counts it: one guarded transaction. */
  async release(peer: string): Promise<boolean> {
    const { client, cluster, log } = this.opts;
    if (this.local.has(peer)) return false;
    const prefix = peerPrefix(cluster, peer);
    try {
      const vips = await client.getAll().prefix(`${prefix}vip/`).strings();
      const poolKeys: string[] = [];
      for (const [key, text] of Object.entries(vips)) {
        try {
          const v = JSON.parse(text) as { pool?: unknown };
          const address = key.slice(key.lastIndexOf('/') + 1);
          if (typeof v.pool === 'string' && key === peerVipKey(cluster, peer, address)) poolKeys.push(`${clusterPrefix(cluster)}pools/${encodeURIComponent(v.pool)}/${address}`);
        } catch {
          // not a lease record: deleted with the prefix
        }
      }
      const done = await deleteIfRangeEmpty(client, `${prefix}nodes/`, prefix, poolKeys);
      if (done) {
        log.info({ peer, addresses: Object.keys(vips).length }, 'cluster session down: the peer\'s virtual IPs are released');
        this.emit('released', peer);
      }
      return done;
    } catch (err) {
      log.warn({ peer, reason: (err as Error).message }, 'cannot release the peer\'s cluster resources; tried again when a node starts');
      return false;
    }
  }

  async stop(): Promise<void> {
    this.closed = true;
    // A write waiting for its delay ends now, writing nothing (flush).
    this.startWrite?.();
    for (const t of this.releaseTimers.values()) clearTimeout(t);
    this.releaseTimers.clear();
    // Once: a watcher cancelled before never answers a second cancel.
    const watcher = this.watcher;
    this.watcher = undefined;
    await watcher?.cancel().catch(() => undefined);
  }
}
