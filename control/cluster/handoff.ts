// Clone handoff and fencing through etcd (architecture §8; CLUSTER design §2, §4):
//
//   clones/<family>/<k>/owner -> {"node":..,"epoch":..}
//   clones/<family>/<k>/ike   -> the clone's IKE state, sealed for (this key path, epoch, owner)
//
// - Handoff (step 2): node A exports the clone (its copy is wiped at once, so
//   no exchange can run on it meanwhile), seals the record for B at epoch e+1
//   and commits in ONE transaction `if owner == {A, e} then owner = {B, e+1},
//   ike = sealed`. If the transaction fails, A imports its record back.
// - Arrival (steps 3-7): B's watch sees itself named owner, opens the record
//   (a record that does not open for this key path, epoch and owner is
//   refused, counted and logged, never installed), imports it bound to B's
//   address and runs the path test, address list, the peer's
//   UPDATE_SA_ADDRESSES and the new Child SA (ike/sa-transfer.ts).
// - Fencing: before a request goes out on a clone this node owns, the record
//   (with the message IDs) is rewritten under `if owner == {me, e}`; the
//   engine holds the request until then (IkeEngineOptions.holdRequest). A
//   write refused (another owner) drops the clone locally: keys wiped, its
//   Child SAs deleted; a write etcd gave no verdict on is tried again.
//   The answer to a peer's request waits the same way for the record with
//   the peer's moved message ID (answer-write-ahead.ts, through sync and the
//   'recorded' event).
// - Lease lost: requests on owned clones are held (IKE stops); ESP keeps
//   flowing on the Child SAs that exist.
//
// Owner: the main thread, next to the engine it drives.
import { EventEmitter } from 'node:events';
import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import type { IkeContext } from '../ike/context.js';
import type { ChildSa, IkeSa } from '../ike/ike-sa.js';
import { arrivalRequestCount, completeArrival, decodeTransferRecord, exportIkeSa, importIkeSa, snapshotIkeSa, transferBlocked, type ArrivalResult, type ChildAdmissionVerdict } from '../ike/sa-transfer.js';
import { arrivalTimeline, type ArrivalTimeline } from './handoff-timeline.js';
import { arrivalDraws, handoffDraw, noteSpiDrawMiss, staleDeleteCount } from './arrival-draw.js';
import { wipe } from '../crypto/random.js';
import { clusterPrefix } from './etcd-client.js';
import type { ClusterKey } from './seal.js';

/**
 * Request message IDs the handoff transaction fences for the importing node:
 * every request of its arrival (its address list, which is its path test
 * too, and one CREATE_CHILD_SA per Child SA of the connection; a handed-off
 * clone has no Child SA to delete, only, rarely, the SPI draws of an earlier
 * unfinished arrival: arrival-draw.ts), so none waits for a fencing write. If
 * the importer dies before the client processed them all, a node taking the
 * clone over finds the client's next ID among them with probes
 * (ike/request-resync.ts) before it sends anything else.
 */
export function handoffFencedRequests(sa: IkeSa): number {
  return arrivalRequestCount(sa.orphanSpis?.length ?? 0, sa.policy.children.length);
}

/** How long a request whose fencing write etcd gave no verdict on waits before it is fenced again (as an answer's: answer-write-ahead.ts). */
export const FENCE_RETRY_MS = 100;

/** Owner keys whose record was refused, remembered with the epoch so that it is not tried again (the oldest forgotten first). */
const REFUSALS_KEPT = 1024;
const NO_RECORD = 'no record next to the owner key';

/** How long the importing node waits for the peer's UPDATE_SA_ADDRESSES after its address list. */
export const DEFAULT_ARRIVAL_TIMEOUT_MS = 10_000;

/**
 * How long a clone sent back after its path test failed on a node is not
 * moved to that node again (rebalance.ts): without it a node that holds two
 * members of the family would move the clone there again at its next round,
 * and the clone would bounce between the two nodes while that path is broken.
 */
export const PATH_FAILED_HOLD_DOWN_MS = 300_000;

export interface CloneOwner {
  node: string;
  epoch: number;
}

/** Why an arriving record was not installed (counted in HandoffStats.refused). */
export type RefusalReason = 'missing' | 'seal' | 'decode' | 'import';

export interface HandoffStats {
  handedOff: number;
  arrived: number;
  refused: Record<RefusalReason, number>;
  /** Clones dropped because a fencing write failed (another node owns them now). */
  fenced: number;
  /** Fencing writes (one per request on an owned clone, and one per answer to the peer: answer-write-ahead.ts). */
  writes: number;
  /** Clones that arrived without (some of) their Child SAs: the peer was at childSasPerPeer over the cluster. */
  childRefused?: number;
  /** Arrivals whose Child SA could not take the SPI the handoff drew (a takeover cannot name it: ike/arrival-spi.ts). */
  arrivalSpiMisses?: number;
}

/** Where an arrived clone sits in etcd, and the node that held it before (the previous owner key). */
export interface ArrivalOrigin {
  family: string;
  index: number;
  epoch: number;
  from: string | undefined;
  /** The clone came back here after its path test failed on `from` (its record's peerStays). */
  sentBack?: boolean;
}

export interface HandoffEvents {
  /** A clone handed to this node has been imported and steps 4-7 ran (`result` says how far they got, `timeline` when). */
  arrived: [sa: IkeSa, result: ArrivalResult, origin: ArrivalOrigin, timeline: ArrivalTimeline];
  refused: [key: string, reason: RefusalReason, detail: string];
  fenced: [sa: IkeSa, reason: string];
  /** A write of `sa`'s record committed under `owner == me`, naming `peerRequestId` as the peer's next request. */
  recorded: [sa: IkeSa, peerRequestId: number];
  /** Owned clone `sa` ended here (the peer deleted it, or it died): its keys leave etcd, nobody takes it over. */
  ended: [sa: IkeSa];
}

interface Owned {
  family: string;
  index: number;
  epoch: number;
  /** The request message ID the last fencing write covers: requests below it go out unheld. */
  writtenNext: number;
  /** The peer's next request message ID in the last record written. */
  writtenPeer?: number;
  writing: boolean;
  /** Time requests waited for fencing writes, and how many waited (an arrival's timeline). */
  heldMs?: number;
  holds?: number;
  /** When the request now held began to wait. */
  heldSince?: number;
  /** IDs given back (release) while a write ran: the record is written again when that write is done. */
  resync?: boolean;
}

export interface HandoffOptions {
  engine: IkeContext;
  client: Etcd3;
  key: ClusterKey;
  cluster: string;
  node: string;
  /** This node's address: imported clones bind to it. */
  address: string;
  log: Logger;
  arrivalTimeoutMs?: number;
  /**
   * Admits one Child SA of an arriving clone against the peer's limit over
   * the cluster (peer-admission.ts admitOwn, RFC 7791 §8); undefined: not
   * asked. Started at import, the CREATE_CHILD_SA waits for it only if it is
   * not in yet.
   */
  admitChild?: (sa: IkeSa) => Promise<ChildAdmissionVerdict | undefined> | undefined;
  /** This node's SPI prefix, and another member's as last read: a handoff draws the new node's Child SA SPI (arrival-draw.ts). */
  spiPrefix?: number;
  spiPrefixOf?: (node: string) => number | undefined;
}

/** The owner value, byte for byte as compared in transactions. */
export function ownerValue(o: CloneOwner): string {
  return JSON.stringify({ node: o.node, epoch: o.epoch });
}

export function parseOwner(text: string): CloneOwner | undefined {
  try {
    const o = JSON.parse(text) as CloneOwner;
    return typeof o.node === 'string' && Number.isSafeInteger(o.epoch) && o.epoch >= 0 ? { node: o.node, epoch: o.epoch } : undefined;
  } catch {
    return undefined;
  }
}

export class CloneHandoff extends EventEmitter<HandoffEvents> {
  readonly stats: HandoffStats = { handedOff: 0, arrived: 0, refused: { missing: 0, seal: 0, decode: 0, import: 0 }, fenced: 0, writes: 0 };
  private readonly owned = new Map<IkeSa, Owned>();
  /** Owner keys being imported or held here, so a repeated watch event does nothing. */
  private readonly arriving = new Set<string>();
  private watcher: Watcher | undefined;
  private suspended: string | undefined;
  /** The etcd revision at which this run joined the cluster (arrive: handoffs before it were a previous run's). */
  private joinedAt: bigint | undefined;
  /** When the steps of the last arrival here ended (cluster status, logs). */
  lastArrival: ArrivalTimeline | undefined;
  /** The clone being exported by handOff (its ike-down is a departure, not an end). */
  private leaving: IkeSa | undefined;
  /** Clones between import and the end of steps 4-7. */
  private readonly landing = new Set<IkeSa>();
  /** Owner key -> the node whose path test failed for that clone, and until when it is not moved there. */
  private readonly pathFailed = new Map<string, { node: string; until: number }>();
  /** Owner key -> the epoch at which its record was refused here (arrive). */
  private readonly refusedEpochs = new Map<string, number>();
  private onIkeDown: ((sa: IkeSa) => void) | undefined;
  private onChildChange: ((child: ChildSa) => void) | undefined;

  constructor(private readonly opts: HandoffOptions) {
    super();
  }

  private get prefix(): string {
    return `${clusterPrefix(this.opts.cluster)}clones/`;
  }

  ownerKey(family: string, index: number): string {
    return `${this.prefix}${family}/${index}/owner`;
  }

  recordKey(family: string, index: number): string {
    return `${this.prefix}${family}/${index}/ike`;
  }

  /** Watch for clones handed to this node. */
  async start(): Promise<this> {
    // The previous owner key tells an arriving clone where it came from (a failed path test sends it back there).
    // When this run joined (its member key's creation): owner keys written before it name a previous run.
    const member = await this.opts.client.get(`${clusterPrefix(this.opts.cluster)}members/${this.opts.node}`).exec();
    this.joinedAt = BigInt(member.kvs[0]?.create_revision ?? member.header.revision);
    const w = await this.opts.client.watch().prefix(this.prefix).withPreviousKV().create();
    this.watcher = w;
    // Whole responses, not single events: a handoff's owner key and record are one revision, one response.
    w.on('data', (res: IWatchResponse) => this.onWatch(res));
    const { engine } = this.opts;
    // An owned clone that ends here (the peer deleted it, or is dead) takes its etcd keys with it, so that
    // nobody takes it over later. Not while it leaves (handOff) or arrives (a failed path test sends it
    // back, failover.ts), nor without a lease (then another node owns it, or will).
    this.onIkeDown = (sa: IkeSa) => {
      const o = this.owned.get(sa);
      // A clone leaving (handOff) keeps its owner key marked until its transaction is done: a late watch
      // event of our own write must not import it here meanwhile.
      if (!o || sa === this.leaving) return;
      this.owned.delete(sa);
      const key = this.ownerKey(o.family, o.index);
      if (this.landing.has(sa) || this.suspended !== undefined) return void this.arriving.delete(key);
      // Still marked while its keys go: a scan must not import it again meanwhile (failover.ts).
      void this.retire(o.family, o.index, o.epoch).finally(() => this.arriving.delete(key));
      this.emit('ended', sa);
    };
    // The record names the SPIs of the clone's Child SAs, so a node taking over deletes them (failover.ts).
    this.onChildChange = (child: ChildSa) => void this.sync(child.ike);
    engine.on('ike-down', this.onIkeDown);
    engine.on('child-up', this.onChildChange);
    engine.on('child-down', this.onChildChange);
    // The peer's requests move its message ID: each answer waits for its own write (answer-write-ahead.ts).
    return this;
  }

  async stop(): Promise<void> {
    if (this.onIkeDown) this.opts.engine.off('ike-down', this.onIkeDown);
    if (this.onChildChange) {
      this.opts.engine.off('child-up', this.onChildChange);
      this.opts.engine.off('child-down', this.onChildChange);
    }
    await this.watcher?.cancel().catch(() => undefined);
    this.watcher = undefined;
  }

  /**
   * Rewrite an owned clone's record as it is now (its Child SA SPIs, the
   * peer's message ID) under `owner == me, epoch == e`; a write refused
   * because another node owns the clone drops it. With a write in flight
   * (its snapshot may be older) the record is written again once it is
   * done: one write at a time per clone, each from the SA as it is then, so
   * the record never goes back. Resolves false when nothing was written now.
   */
  async sync(sa: IkeSa): Promise<boolean> {
    const o = this.owned.get(sa);
    if (!o || this.suspended !== undefined || sa.state !== 'established' || !sa.keys) return false;
    if (o.writing) {
      o.resync = true;
      return false;
    }
    o.writing = true;
    const ok = await this.fence(sa, o, Math.max(o.writtenNext, sa.nextRequestId));
    this.written(sa, o);
    if (this.owned.get(sa) !== o) return false;
    // Another node owns it: dropped. An etcd failure is no verdict: the next sync (or request) writes again.
    if (ok === false) this.drop(sa, `ownership of ${o.family}/${o.index} epoch ${o.epoch} lost`);
    // A request held while this write ran goes on now (holdRequest fences it first).
    else this.opts.engine.kick(sa);
    return ok === true;
  }

  /**
   * Remove a clone's owner key and record, if we still own it at `epoch`:
   * the clone ended, nobody is to take it over. Resolves true when removed.
   */
  async retire(family: string, index: number, epoch: number): Promise<boolean> {
    const { client, node, log } = this.opts;
    const ownerKey = this.ownerKey(family, index);
    try {
      const txn = await client
        .if(ownerKey, 'Value', '==', ownerValue({ node, epoch }))
        .then(client.delete().key(ownerKey), client.delete().key(this.recordKey(family, index)))
        .commit();
      if (txn.succeeded) log.info({ family, index, epoch }, 'clone ended: its keys are gone from etcd');
      return txn.succeeded;
    } catch (err) {
      log.warn({ family, index, reason: (err as Error).message }, 'cannot remove an ended clone\'s keys from etcd');
      return false;
    }
  }

  /** The epoch at which the record of clone (family, index) was refused here, if it was: not imported again at that epoch. */
  refusedEpoch(family: string, index: number): number | undefined {
    return this.refusedEpochs.get(this.ownerKey(family, index));
  }

  /** True while the owner key of (family, index) is being imported or held here. */
  isArriving(family: string, index: number): boolean {
    return this.arriving.has(this.ownerKey(family, index));
  }

  /**
   * Keep clone (family, index) from being imported here until the returned
   * function is called: a clone whose arrival failed is on its way elsewhere
   * (failover.ts), while etcd still names us its owner.
   */
  holdOff(family: string, index: number): () => void {
    const key = this.ownerKey(family, index);
    this.arriving.add(key);
    return () => void this.arriving.delete(key);
  }

  /** True between the import of `sa` and the end of its steps 4-7 (it must not move meanwhile). */
  isLanding(sa: IkeSa): boolean {
    return this.landing.has(sa);
  }

  /** The node clone (family, index) came back from after a failed path test, while that is recent. */
  pathFailedAt(family: string, index: number, now = Date.now()): string | undefined {
    const held = this.pathFailed.get(this.ownerKey(family, index));
    return held !== undefined && held.until > now ? held.node : undefined;
  }

  /** The peer's next request message ID in the last record written for owned clone `sa` (answer-write-ahead.ts). */
  recordedPeer(sa: IkeSa): number | undefined {
    return this.owned.get(sa)?.writtenPeer;
  }

  /** Whether this node owns clone `sa` (its answers are fenced: answer-fence.ts). */
  owns(sa: IkeSa): boolean {
    return this.owned.has(sa);
  }

  /** The clones this node owns, with their family position and epoch. */
  ownedClones(): Array<{ sa: IkeSa; family: string; index: number; epoch: number }> {
    return [...this.owned].map(([sa, o]) => ({ sa, family: o.family, index: o.index, epoch: o.epoch }));
  }

  /**
   * Register a clone this node holds as its owner at epoch 0 (a clone it just
   * made): the owner key and the sealed record are created, only if absent.
   */
  async adopt(sa: IkeSa, family: string, index: number): Promise<number> {
    const { client, key, node } = this.opts;
    const ownerKey = this.ownerKey(family, index);
    const recordKey = this.recordKey(family, index);
    const plain = snapshotIkeSa(this.opts.engine, sa, family);
    const sealed = key.seal({ keyPath: recordKey, epoch: 0, owner: node }, plain);
    wipe(plain);
    // Before the write: our own watch must not take the new owner key for a clone handed to us.
    this.arriving.add(ownerKey);
    const txn = await client
      .if(ownerKey, 'Create', '==', 0)
      .then(client.put(ownerKey).value(ownerValue({ node, epoch: 0 })), client.put(recordKey).value(Buffer.from(sealed)))
      .commit()
      .catch((err: Error) => {
        this.arriving.delete(ownerKey);
        throw err;
      });
    if (!txn.succeeded) {
      this.arriving.delete(ownerKey);
      throw new Error(`${ownerKey} already has an owner`);
    }
    if (sa.state === 'dead') {
      // It ended during the write (onIkeDown passed it by: not ours yet): its keys go, nobody is to take it over.
      void this.retire(family, index, 0).finally(() => this.arriving.delete(ownerKey));
      throw new Error(`IKE SA ${sa.id} ended while it was adopted`);
    }
    this.owned.set(sa, { family, index, epoch: 0, writtenNext: sa.nextRequestId, writtenPeer: sa.peerRequestId, writing: false });
    return 0;
  }

  /**
   * Hand an owned clone to node `to` (step 2): resolves with the new epoch.
   * Refused while the clone cannot move (transferBlocked); if the
   * transaction fails the clone is imported back here.
   */
  async handOff(sa: IkeSa, to: string): Promise<number> {
    const o = this.owned.get(sa);
    if (!o) throw new Error(`IKE SA ${sa.id} is not a clone this node owns`);
    const blocked = transferBlocked(sa);
    if (blocked) throw new Error(blocked);
    const { client, key, node, engine } = this.opts;
    const local = sa.local.address;
    const decidedAt = Date.now();
    this.leaving = sa;
    // The record names B's first requests as fenced already: this transaction makes B the owner, and a
    // node taking over from B later starts above them (sa-transfer.ts, fencedNextRequestId).
    const arrivalSpis = handoffDraw(engine, sa, this.opts.spiPrefixOf?.(to));
    const exported = exportIkeSa(engine, sa, o.family, `handed off to ${to}`, { fencedAhead: handoffFencedRequests(sa), ...(arrivalSpis && { arrivalSpis }) });
    this.leaving = undefined;
    if (!exported.ok) throw new Error(exported.error);
    this.owned.delete(sa);
    const ownerKey = this.ownerKey(o.family, o.index);
    const recordKey = this.recordKey(o.family, o.index);
    const epoch = o.epoch + 1;
    const sealed = key.seal({ keyPath: recordKey, epoch, owner: to }, exported.value);
    const sealedAt = Date.now();
    let ok = false;
    let failure = 'ownership changed';
    try {
      const txn = await client
        .if(ownerKey, 'Value', '==', ownerValue({ node, epoch: o.epoch }))
        .then(client.put(ownerKey).value(ownerValue({ node: to, epoch })), client.put(recordKey).value(Buffer.from(sealed)))
        .commit();
      ok = txn.succeeded;
    } catch (err) {
      // No answer is no verdict: the transaction may have committed (a deadline after the commit).
      failure = (err as Error).message;
      const now = await client.get(ownerKey).string().catch(() => undefined);
      if (now === ownerValue({ node: to, epoch })) ok = true;
      else if (now !== ownerValue({ node, epoch: o.epoch })) {
        // Unknown, or another owner: not taken back here, where it could be a second voice on the clone.
        // If etcd still names us, a scan imports it from the record (failover.ts).
        wipe(exported.value);
        this.arriving.delete(ownerKey);
        throw new Error(`handoff of IKE SA ${sa.id} to ${to}: no answer from etcd (${failure}) and its owner is not known; the clone is left to the owner etcd names`);
      }
    }
    if (ok) {
      wipe(exported.value);
      this.arriving.delete(ownerKey);
      this.stats.handedOff++;
      // decidedAt -> sealedAt: the export (our copy wiped) and the sealing; -> committedAt: the one transaction (step 2).
      this.opts.log.info({ ike: sa.id, family: o.family, index: o.index, to, epoch, decidedAt, sealedAt, committedAt: Date.now() }, 'clone handed off');
      return epoch;
    }
    // Not handed over: the clone comes back here, as it was.
    const back = decodeTransferRecord(exported.value);
    wipe(exported.value);
    const restored = back.ok ? importIkeSa(engine, back.value, local) : back;
    // The draw was for `to`, whose arrival never starts: it leaves the records written here.
    if (restored.ok) this.owned.set(Object.assign(restored.value, { arrivalSpis: undefined }), { ...o, writtenNext: restored.value.nextRequestId, writing: false });
    throw new Error(`handoff of IKE SA ${sa.id} to ${to} failed (${failure})${restored.ok ? '; the clone stays here' : `; the clone is lost: ${restored.error}`}`);
  }

  /**
   * IkeEngineOptions.holdRequest: a request on an owned clone waits for its
   * fencing write (one per request); requests on other SAs are never held.
   */
  holdRequest(sa: IkeSa): boolean {
    const o = this.owned.get(sa);
    if (!o) return false;
    if (this.suspended !== undefined) return true;
    if (o.writtenNext > sa.nextRequestId) {
      if (o.heldSince !== undefined) {
        o.heldMs = (o.heldMs ?? 0) + Date.now() - o.heldSince;
        o.holds = (o.holds ?? 0) + 1;
        o.heldSince = undefined;
      }
      return false;
    }
    o.heldSince ??= Date.now();
    if (o.writing) return true;
    o.writing = true;
    void this.fence(sa, o, sa.nextRequestId + 1).then((ok) => {
      this.written(sa, o);
      if (ok === false) return this.drop(sa, `ownership of ${o.family}/${o.index} epoch ${o.epoch} lost`);
      if (ok) return this.opts.engine.kick(sa);
      // etcd gave no verdict (an election, a deadline): no request leaves unfenced, and the clone is still
      // ours as far as we know. Tried again shortly; a lost lease suspends IKE here meanwhile.
      setTimeout(() => {
        if (this.owned.get(sa) === o) this.opts.engine.kick(sa);
      }, FENCE_RETRY_MS).unref();
    });
    return true;
  }

  /**
   * Fence our next `count` requests with one write (completeArrival's
   * reserve: the requests of an arrival go out one after the other, each
   * held only if its ID is not covered yet). The record then names the IDs
   * after them as the next: a node taking over starts above every ID we may
   * send. Unused IDs are given back when the arrival ends (release).
   */
  async reserve(sa: IkeSa, count: number): Promise<void> {
    const o = this.owned.get(sa);
    if (!o || this.suspended !== undefined) return;
    const next = sa.nextRequestId + count;
    if (o.writtenNext >= next) return;
    // A write in flight (a sync, or a request's own fencing): each request is then held for its own write.
    if (o.writing) return;
    o.writing = true;
    const ok = await this.fence(sa, o, next);
    this.written(sa, o);
    if (this.owned.get(sa) !== o) return;
    if (ok === false) this.drop(sa, `ownership of ${o.family}/${o.index} epoch ${o.epoch} lost`);
    else this.opts.engine.kick(sa);
  }

  /**
   * IDs fenced ahead but not used (an arrival that stopped early) are given
   * back: the record is written again with the SA's own next request ID, so
   * that a node taking over later does not start above the ID the peer
   * expects. Requests from here on are held for their own write.
   */
  private release(sa: IkeSa): void {
    const o = this.owned.get(sa);
    if (!o || o.writtenNext <= sa.nextRequestId || sa.outstanding) return;
    o.writtenNext = sa.nextRequestId;
    if (o.writing) o.resync = true;
    else void this.sync(sa);
  }

  /** A write on `o` ended: the next may start; one asked for meanwhile runs now. */
  private written(sa: IkeSa, o: Owned): void {
    o.writing = false;
    if (!o.resync || this.owned.get(sa) !== o) return;
    o.resync = false;
    queueMicrotask(() => void this.sync(sa));
  }

  /** Write the clone's record (message IDs included) under `owner == me, epoch == e`. */
  /** Resolves true when written, false when another node owns the clone, undefined when etcd failed. */
  private async fence(sa: IkeSa, o: Owned, next: number): Promise<boolean | undefined> {
    const { client, key, node, engine } = this.opts;
    const recordKey = this.recordKey(o.family, o.index);
    // The record names the IDs below `next` as used, and the lowest the peer may still expect (our request
    // outstanding, else our next): whoever takes over after a crash probes between them (request-resync.ts).
    const peer = sa.peerRequestId;
    const low = Math.min(sa.outstanding?.messageId ?? sa.nextRequestId, next);
    const plain = snapshotIkeSa(engine, sa, o.family, { nextRequestId: low, fencedNextRequestId: next });
    const sealed = key.seal({ keyPath: recordKey, epoch: o.epoch, owner: node }, plain);
    wipe(plain);
    this.stats.writes++;
    try {
      const txn = await client
        .if(this.ownerKey(o.family, o.index), 'Value', '==', ownerValue({ node, epoch: o.epoch }))
        .then(client.put(recordKey).value(Buffer.from(sealed)))
        .commit();
      if (txn.succeeded) {
        o.writtenNext = Math.max(o.writtenNext, next);
        o.writtenPeer = Math.max(o.writtenPeer ?? peer, peer);
        // Answers held for this write may leave now (answer-write-ahead.ts).
        this.emit('recorded', sa, o.writtenPeer);
      }
      return txn.succeeded;
    } catch (err) {
      this.opts.log.warn({ ike: sa.id, reason: (err as Error).message }, 'fencing write failed');
      return undefined;
    }
  }

  /** Drop a clone we no longer own: wiped, its Child SAs deleted (ESP stops), nothing sent. */
  private drop(sa: IkeSa, reason: string): void {
    const o = this.owned.get(sa);
    this.owned.delete(sa);
    if (o) this.arriving.delete(this.ownerKey(o.family, o.index));
    this.stats.fenced++;
    this.opts.log.warn({ ike: sa.id, reason }, 'clone dropped: another node owns it now');
    // Another node answers on it now: not even a cached response (one held for this write, answer-write-ahead.ts) leaves here.
    sa.lastResponse = undefined;
    this.opts.engine.deleteIkeSa(sa, `fenced: ${reason}`);
    this.emit('fenced', sa, reason);
  }

  /** etcd lost our lease: IKE stops on owned clones (requests held), ESP goes on. */
  suspend(reason: string): void {
    this.suspended = reason;
    this.opts.log.error({ reason, clones: this.owned.size }, 'IKE stopped on this node\'s clones until the lease is back');
  }

  /**
   * We hold a lease again: each owned clone's record is written first under
   * `owner == me, epoch == e` (sync); a clone another node took over
   * meanwhile is dropped (wiped, Child SAs deleted), the others go on.
   */
  resume(): void {
    if (this.suspended === undefined) return;
    this.suspended = undefined;
    this.opts.log.warn({ clones: this.owned.size }, 'IKE resumes on this node\'s clones that no other node took over');
    for (const sa of [...this.owned.keys()]) void this.sync(sa);
  }

  /**
   * Owner keys that name this node arrive. A handoff's transaction puts the
   * owner key and the record in one revision, so its watch response carries
   * both: when that revision is the response's own (no later change), the
   * record is taken from it and not read again.
   */
  private onWatch(res: IWatchResponse): void {
    const seenAt = Date.now();
    const puts = res.events.filter((ev) => ev.type === 'Put');
    for (const ev of puts) {
      const kv: IKeyValue = ev.kv;
      const key = kv.key.toString();
      if (!key.endsWith('/owner')) continue;
      const owner = parseOwner(kv.value.toString());
      if (!owner || owner.node !== this.opts.node) continue;
      const m = /^(.+)\/(\d+)\/owner$/.exec(key.slice(this.prefix.length));
      if (!m) continue;
      const recordKey = this.recordKey(m[1]!, Number(m[2]));
      const record = res.header.revision === kv.mod_revision
        ? puts.find((r) => r.kv.key.toString() === recordKey && r.kv.mod_revision === kv.mod_revision)?.kv.value
        : undefined;
      const previous = ev.prev_kv ? parseOwner(ev.prev_kv.value.toString())?.node : undefined;
      void this.arrive(m[1]!, Number(m[2]), owner, previous, { record, seenAt });
    }
  }

  /**
   * Import clone (family, index), which etcd names ours at `owner.epoch`, and
   * run steps 4-7: from the watch, and directly after a claim or when a scan
   * finds a clone named ours that is not here (a watch on a member cut off
   * from the others may stay silent). Does nothing while that clone is being
   * imported or held here.
   */
  async arrive(family: string, index: number, owner: CloneOwner, from: string | undefined, known: { record?: Buffer; seenAt?: number } = {}): Promise<void> {
    const key = this.ownerKey(family, index);
    // A record refused at this epoch is not tried again (nor counted twice): a later epoch is a new record.
    if (this.arriving.has(key) || this.refusedEpochs.get(key) === owner.epoch) return;
    this.arriving.add(key);
    const seenAt = known.seenAt ?? Date.now();
    const origin: ArrivalOrigin = { family, index, epoch: owner.epoch, from };
    const recordKey = this.recordKey(family, index);
    const refuse = (reason: RefusalReason, detail: string) => {
      this.stats.refused[reason]++;
      this.opts.log.warn({ key: recordKey, epoch: owner.epoch, reason, detail }, 'clone record refused, not installed');
      this.arriving.delete(key);
      // A failed read is no verdict on the record: the next event or scan reads again.
      if (reason !== 'missing' || detail === NO_RECORD) this.noteRefused(key, owner.epoch);
      this.emit('refused', recordKey, reason, detail);
    };
    let sealed: Buffer | null = known.record ?? null;
    let current: string | null = ownerValue(owner);
    /** Whether etcd named us owner before this run joined (a restart): see previousRun below. */
    let namedBefore = false;
    try {
      // The owner key and the record of the watch's own revision, or read now (a claim, a scan, a catch-up).
      if (!known.record) {
        const [record, ownerKv] = await Promise.all([this.opts.client.get(recordKey).buffer(), this.opts.client.get(key).exec()]);
        sealed = record;
        const kv = ownerKv.kvs[0];
        current = kv ? kv.value.toString() : null;
        namedBefore = kv !== undefined && this.joinedAt !== undefined && BigInt(kv.mod_revision) < this.joinedAt;
      }
    } catch (err) {
      return refuse('missing', (err as Error).message);
    }
    const readAt = Date.now();
    // A stale event (the clone moved on meanwhile): the owner key says so.
    if (current !== ownerValue(owner)) {
      this.arriving.delete(key);
      return;
    }
    if (!sealed) return refuse('missing', NO_RECORD);
    const opened = this.opts.key.open({ keyPath: recordKey, epoch: owner.epoch, owner: this.opts.node }, new Uint8Array(sealed));
    if (!opened.ok) return refuse('seal', opened.error);
    const decoded = decodeTransferRecord(opened.value);
    wipe(opened.value);
    if (!decoded.ok) return refuse('decode', decoded.error);
    // A copy of this clone from an older epoch (held while our lease was lost) is stale: the record wins.
    for (const [old, o] of [...this.owned]) if (o.family === family && o.index === index && o.epoch < owner.epoch) this.drop(old, `${family}/${index} arrived again at epoch ${owner.epoch}`);
    // Child SAs the record names live on no node now: a handoff moves only clones without any, so these
    // are a dead node's (failover.ts), deleted at the peer by SPI once the clone has moved here.
    const stale = decoded.value.state.children.map((c) => c.spiIn);
    const peerStays = decoded.value.state.peerStays === true;
    // A record whose peer stays is a clone sent back after its path test failed on `from` (failover.ts).
    if (peerStays && origin.from !== undefined) this.notePathFailed(key, origin.from);
    if (peerStays) origin.sentBack = true;
    // The handoff's transaction fenced our first requests (fencedNextRequestId). A handoff made to this run
    // (after it joined) starts below that mark. One made before, or a clone held before a restart: the
    // previous run may have sent IDs up to the mark, and the client processed some of them; they are probed
    // as after a claim (request-resync.ts) once a write of this run covers the mark too.
    const fenced = decoded.value.state.fencedNextRequestId;
    const previousRun = namedBefore && fenced !== undefined && fenced > decoded.value.state.nextRequestId ? fenced : undefined;
    let resyncThrough = decoded.value.state.resyncThrough;
    // The handoff's SPI draw: ours to use, or a previous owner's whose Child SA may be at the client (arrival-draw.ts).
    const draws = arrivalDraws(decoded.value.state, this.opts.spiPrefix, previousRun !== undefined);
    const imported = importIkeSa(this.opts.engine, decoded.value, this.opts.address);
    if (!imported.ok) return refuse('import', imported.error);
    const sa = imported.value;
    const o: Owned = { family, index, epoch: owner.epoch, writtenNext: Math.max(sa.nextRequestId, fenced ?? 0), writtenPeer: sa.peerRequestId, writing: false };
    this.owned.set(sa, o);
    this.landing.add(sa);
    this.stats.arrived++;
    // The clone's Child SAs are admitted against the peer's limit now, while the path test and the update run.
    const childAdmissions = sa.policy.children.map(() => this.opts.admitChild?.(sa));
    const clock = this.opts.engine.clock;
    const importedAt = Date.now();
    const clockAt = clock.now();
    this.opts.log.info({ ike: sa.id, family, index, epoch: owner.epoch, from: origin.from, staleChildSpis: stale.length }, 'clone arrived');
    if (previousRun !== undefined) {
      await this.reserve(sa, previousRun - sa.nextRequestId + 1 + arrivalRequestCount(staleDeleteCount(decoded.value.state), sa.policy.children.length));
      // Not written (etcd failed): we start above every ID the previous run may have sent, unprobed.
      if (o.writtenNext > previousRun) resyncThrough = previousRun;
      else sa.nextRequestId = previousRun;
    }
    // The CREATE_CHILD_SA waits for the peer's UPDATE_SA_ADDRESSES, not only for the path test's answer,
    // though its message ID is fenced already: the peer moves when it sends that update (RFC 4555 §3.5),
    // and a peer whose own request is outstanding (window size 1: a liveness check queued for the old
    // node) sends it later, so a Child SA negotiated before it would be created, on the peer's side, toward
    // the old node's address. The order address list, update, CREATE_CHILD_SA is also what the cluster's
    // capture test pins. The update arrives right behind the path test's answer (0.6 ms median in a trace
    // of 24 handoffs): the wait is mostly the update's own processing here (docs/cluster.md section 4).
    const result = await completeArrival(this.opts.engine, sa, [this.opts.address], this.opts.arrivalTimeoutMs ?? DEFAULT_ARRIVAL_TIMEOUT_MS, {
      staleChildSpis: stale,
      peerStays,
      ...draws,
      reserve: (count) => this.reserve(sa, count),
      // A claim, a send-back or a restart: the peer's next request ID is found first (its range fenced).
      resyncThrough,
      childAdmissions,
    });
    // Slots admitted for Child SAs the arrival did not create (it ended early) go back.
    for (const p of childAdmissions) void p?.then((v) => v?.settle?.(false));
    if (result.ok && result.childrenRefused) {
      this.stats.childRefused = (this.stats.childRefused ?? 0) + 1;
      this.opts.log.warn({ ike: sa.id, family, index, refused: result.childrenRefused }, 'clone arrived without its Child SA: the peer is at childSasPerPeer over the cluster; the clone stays here, carrying no traffic, until a Child SA fits');
    }
    if (result.ok && result.spiDrawMissed) noteSpiDrawMiss(this.stats, this.opts.log, sa, result.spiDrawMissed);
    // IDs fenced for steps that never ran go back (a failed arrival's clone may still be taken over); not
    // after probes that found nothing: the record keeps their range for whoever probes next.
    if (result.ok || result.steps.resync !== undefined || resyncThrough === undefined) this.release(sa);
    const timeline = arrivalTimeline({ seenAt, readAt, importedAt }, result.steps, (t) => importedAt + (t - clockAt), { heldMs: o.heldMs ?? 0, holds: o.holds ?? 0 });
    this.lastArrival = timeline;
    if (!result.ok) this.opts.log.warn({ ike: sa.id, step: result.step, reason: result.reason, timeline }, 'clone arrived but the peer did not follow');
    else this.opts.log.info({ ike: sa.id, family, index, epoch: owner.epoch, timeline, orphanSpisDeleted: result.orphanSpisDeleted ?? 0 }, 'clone arrival done');
    this.emit('arrived', sa, result, origin, timeline);
    this.landing.delete(sa);
  }

  private noteRefused(key: string, epoch: number): void {
    this.refusedEpochs.delete(key);
    this.refusedEpochs.set(key, epoch);
    // Bounded: the oldest refusals go first.
    for (const k of this.refusedEpochs.keys()) {
      if (this.refusedEpochs.size <= REFUSALS_KEPT) break;
      this.refusedEpochs.delete(k);
    }
  }

  private notePathFailed(key: string, node: string): void {
    const now = Date.now();
    // Bounded: entries last PATH_FAILED_HOLD_DOWN_MS, and expired ones go at every insert.
    for (const [k, v] of this.pathFailed) if (v.until <= now) this.pathFailed.delete(k);
    this.pathFailed.set(key, { node, until: now + PATH_FAILED_HOLD_DOWN_MS });
  }
}
