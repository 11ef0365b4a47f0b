// The IKE engine's SA table (architecture §2.1): IKE SAs by our SPI, Child SAs
// by our inbound SPI, half-open responder SAs, the sessions of RFC 7791 §8 (a
// session lives from its first IKE SA to the deletion of its last clone or
// successor), the peer index the per-peer limits count against, the clone
// family positions, SPI allocation and virtual IP leases. Every SA enters and
// leaves the engine here, and each such step tells listeners (ike-up,
// child-up, session-up, ...).
//
// Owner: the engine's thread. No messages are sent from here; the message
// layer (engine.ts) and the exchanges decide when these steps happen.
import type { EventEmitter } from 'node:events';
import type { RandomSource } from '../crypto/random.js';
import type { Logger } from '../log.js';
import type { Clock } from './clock.js';
import type { EngineEvents } from './context.js';
import { RECENTLY_DELETED_MAX, RECENTLY_DELETED_MS, type EngineLimits } from './defaults.js';
import { type CachedResponse, type ChildSa, type IkeSa, spi64Hex, spiHex } from './ike-sa.js';
import type { KeyLogSink } from './keylog.js';
import { VirtualIpLeases } from './virtual-ip.js';
import type { PeerResources, VirtualIpLeaseSource } from './peer-resources.js';
import { composeIkeSpi, type SpiOwner } from '../../io/spi-layout.js';
import { arrivalSpiChoices } from './arrival-spi.js';
import { drawChildSpi, type ChildSpiPlacement, type ChildSpiRequest } from './child-spi.js';

export interface SaTableDeps {
  random: RandomSource;
  clock: Clock;
  log: Logger;
  keyLog: KeyLogSink | undefined;
  events: Pick<EventEmitter<EngineEvents>, 'emit'>;
  halfOpenTimeout: number;
  /** Half-open lifetime while the table is at or over the COOKIE threshold (architecture §4.6). */
  halfOpenPressureTimeout: number;
  /** Inbound SPIs held back after a half-closed Child SA (deletion.ts). */
  isHeld: (spi: number) => boolean;
  /** Who will own a Child SA, so its inbound SPI carries them (child-spi.ts); none: random SPIs. */
  childSpiPlacement?: ChildSpiPlacement | undefined;
  /** The engine's limits: the half-open table, per source, and the COOKIE threshold. */
  limits: Pick<EngineLimits, 'halfOpenMax' | 'halfOpenPerSource' | 'halfOpenCookieThreshold'>;
  /** Half-open SAs forgotten to make room, by reason (EngineStats.halfOpenEvictions). */
  evictions: Record<string, number>;
  /** Cluster node prefix of our IKE and ESP SPIs (io/spi-layout.ts); 0 on a single gateway. */
  spiPrefix: number;
  /** A cluster's view of per-peer resources (peer-resources.ts); absent: this table alone. */
  peerResources?: PeerResources | undefined;
}

/** Why a half-open responder SA was forgotten to make room (counted in EngineStats.halfOpenEvictions). */
export type HalfOpenEviction = 'per-source' | 'table-full' | 'pressure-timeout';

export class SaTable {
  /** IKE SAs by our own SPI (hex). */
  readonly sas = new Map<string, IkeSa>();
  /** Half-open responder SAs by peer address and initiator SPI, to spot retransmitted IKE_SA_INIT requests. */
  readonly halfOpen = new Map<string, IkeSa>();
  /**
   * The same half-open SAs by source address, oldest first, and each one's
   * source: the per-source limit (strongSwan's block_threshold) and the
   * choice of whom to evict when the table is full.
   */
  private readonly halfOpenBySource = new Map<string, Set<IkeSa>>();
  private readonly halfOpenSource = new Map<IkeSa, string>();
  /** IKE_SA_INIT keys (peer address, port, SPIi) of SAs past IKE_AUTH: late copies are dropped. */
  readonly authenticatedInits = new Map<string, IkeSa>();
  /** Child SAs by our inbound SPI. */
  readonly childrenBySpi = new Map<number, ChildSa>();
  /** Inbound SPIs offered in a request whose response has not arrived yet. */
  readonly reservedSpis = new Set<number>();
  /** IKE SPIs offered in a rekey or clone exchange still in flight. */
  private readonly reservedIkeSpis = new Set<string>();
  /** Live IKE SAs per session (RFC 7791 §8 accounting). */
  private readonly sessions = new Map<number, Set<IkeSa>>();
  /** Established IKE SAs by authenticated peer: per-peer limits without scanning every SA (RFC 7791 §8). */
  private readonly byPeer = new Map<string, Set<IkeSa>>();
  /**
   * The last response of IKE SAs deleted in the last minute, so a peer whose
   * copy of the (Delete) response was lost gets it again instead of silence.
   * Ciphertext only; bounded.
   */
  private readonly recentlyDeleted = new Map<string, CachedResponse & { until: number }>();
  private readonly virtualIps: VirtualIpLeaseSource;

  constructor(private readonly deps: SaTableDeps) {
    this.virtualIps = deps.peerResources?.virtualIps ?? new VirtualIpLeases();
  }

  // ---------------------------------------------------------------- lookups

  ikeSas(): IkeSa[] {
    return [...this.sas.values()];
  }

  findIkeSa(id: number | string): IkeSa | undefined {
    for (const sa of this.sas.values()) if (sa.id === Number(id) || spi64Hex(sa.localSpi) === id) return sa;
    return undefined;
  }

  halfOpenCount(): number {
    return this.halfOpen.size;
  }

  /** Half-open responder SAs whose IKE_SA_INIT came from `source` (an IP address). */
  halfOpenFrom(source: string): number {
    return this.halfOpenBySource.get(source)?.size ?? 0;
  }

  /** The cached last response of a recently deleted IKE SA with our SPI `spi`, for message ID `messageId`. */
  deletedResponse(spi: string, messageId: number): CachedResponse | undefined {
    const gone = this.recentlyDeleted.get(spi);
    return gone && messageId === gone.messageId && gone.until > this.deps.clock.now() ? gone : undefined;
  }

  private rememberDeleted(sa: IkeSa): void {
    if (!sa.lastResponse) return;
    const now = this.deps.clock.now();
    for (const [k, v] of this.recentlyDeleted) if (v.until <= now || this.recentlyDeleted.size >= RECENTLY_DELETED_MAX) this.recentlyDeleted.delete(k);
    this.recentlyDeleted.set(spi64Hex(sa.localSpi), { ...sa.lastResponse, until: now + RECENTLY_DELETED_MS });
  }

  // ------------------------------------------------------------------- SPIs

  newIkeSpi(): Uint8Array {
    for (;;) {
      // Cluster-wide uniqueness: the first byte is this node's prefix (io/spi-layout.ts).
      const drawn = this.deps.random(8);
      const spi = this.deps.spiPrefix === 0 ? drawn : (composeIkeSpi(this.deps.spiPrefix, drawn) ?? drawn);
      const hex = spi64Hex(spi);
      if (spi.some((b) => b !== 0) && !this.sas.has(hex) && !this.reservedIkeSpis.has(hex)) return spi;
    }
  }

  reserveIkeSpi(spi: Uint8Array): void {
    this.reservedIkeSpis.add(spi64Hex(spi));
  }

  releaseIkeSpi(spi: Uint8Array): void {
    this.reservedIkeSpis.delete(spi64Hex(spi));
  }

  /**
   * A fresh inbound ESP SPI: >= 256 (RFC 4303 §2.1), unused here, built for
   * the node and worker the placement names for `request` (child-spi.ts).
   */
  newChildSpi(request?: ChildSpiRequest): number {
    // Without a placement (an engine wired in memory) a cluster node's SPIs still carry its prefix.
    const unplaced: SpiOwner | undefined = this.deps.spiPrefix !== 0 ? { node: this.deps.spiPrefix, worker: 0 } : undefined;
    const owner = (request && this.deps.childSpiPlacement?.(request)) ?? unplaced;
    const inUse = (spi: number) => this.childrenBySpi.has(spi) || this.reservedSpis.has(spi) || this.deps.isHeld(spi);
    // An arriving clone's Child SA: the SPI a takeover can name (arrival-spi.ts); all taken: a fresh one.
    const drawn = owner && request?.spiRandom !== undefined ? arrivalSpiChoices(owner, request.spiRandom).find((spi) => !inUse(spi)) : undefined;
    return drawn ?? drawChildSpi(this.deps.random, owner, inUse);
  }

  // --------------------------------------------------- peers and sessions

  /** A cluster's per-peer resources (IkeEngineOptions.peerResources), if any. */
  get peerResources(): PeerResources | undefined {
    return this.deps.peerResources;
  }

  /**
   * Room for another IKE SA (RFC 7791 §5.3 "short of resources" -> TEMPORARY_FAILURE).
   * `replacing`: the new SA replaces a live one (a rekey), so it may take that one's place.
   */
  hasCapacity(maxIkeSas: number, opts: { replacing?: boolean } = {}): boolean {
    return this.sas.size - (opts.replacing ? 1 : 0) < maxIkeSas;
  }

  private trackPeer(sa: IkeSa): void {
    if (!sa.peerKey) return;
    let set = this.byPeer.get(sa.peerKey);
    if (!set) this.byPeer.set(sa.peerKey, (set = new Set()));
    set.add(sa);
  }

  private untrackPeer(sa: IkeSa): void {
    const set = sa.peerKey ? this.byPeer.get(sa.peerKey) : undefined;
    if (!set) return;
    set.delete(sa);
    if (set.size === 0) this.byPeer.delete(sa.peerKey!);
  }

  /** IKE SAs of the authenticated peer of `sa`, `sa` included, on every cluster node (RFC 7791 §8). */
  peerIkeSaCount(sa: IkeSa): number {
    const admitted = this.deps.peerResources?.admittedIkeSaCount?.(sa);
    if (admitted !== undefined) return admitted;
    const here = (sa.peerKey && this.byPeer.get(sa.peerKey)?.size) || 0;
    return here + (sa.peerKey ? (this.deps.peerResources?.ikeSasElsewhere?.(sa.peerKey) ?? 0) : 0);
  }

  /** Child SAs over all IKE SAs with the same authenticated peer (RFC 7791 §8). */
  peerChildCount(sa: IkeSa): number {
    const admitted = this.deps.peerResources?.admittedChildSaCount?.(sa);
    if (admitted !== undefined) return admitted;
    let n = 0;
    for (const other of (sa.peerKey && this.byPeer.get(sa.peerKey)) || []) n += other.children.length;
    return n + (sa.peerKey ? (this.deps.peerResources?.childSasElsewhere?.(sa.peerKey) ?? 0) : 0);
  }

  private joinSession(sa: IkeSa): void {
    let members = this.sessions.get(sa.sessionId);
    const fresh = !members;
    if (!members) this.sessions.set(sa.sessionId, (members = new Set()));
    members.add(sa);
    if (fresh) {
      this.deps.log.info({ session: sa.sessionId, peer: sa.peerKey }, 'session up');
      this.deps.events.emit('session-up', sa.sessionId, sa);
    }
  }

  private leaveSession(sa: IkeSa): void {
    const members = this.sessions.get(sa.sessionId);
    if (!members) return;
    members.delete(sa);
    if (members.size > 0) return;
    this.sessions.delete(sa.sessionId);
    this.deps.log.info({ session: sa.sessionId, peer: sa.peerKey }, 'session down');
    this.deps.events.emit('session-down', sa.sessionId, sa);
  }

  /** IKE SAs of one session (the original, its clones and successors), oldest first. */
  sessionMembers(sessionId: number): IkeSa[] {
    return [...(this.sessions.get(sessionId) ?? [])];
  }

  // ------------------------------------------------------------ virtual IPs

  /** A virtual IP for the (authenticated) peer of `sa` from its connection's pools (RFC 7296 §2.19). */
  leaseVirtualIp(sa: IkeSa, family: 4 | 6 = 4, wanted?: Uint8Array): { address: string; bytes: Uint8Array } | undefined {
    return this.virtualIps.lease(sa.policy.pools, sa.peerKey ?? spi64Hex(sa.spiI), family, wanted, sa);
  }

  private releaseVirtualIp(sa: IkeSa): void {
    if (sa.peerVirtualIps.length === 0 || !sa.peerKey) return;
    const stillUsed = [...(this.byPeer.get(sa.peerKey) ?? [])].some((o) => o !== sa && o.peerVirtualIps.some((a) => sa.peerVirtualIps.includes(a)));
    if (stillUsed) return;
    this.virtualIps.release(sa.peerKey);
  }

  // ------------------------------------------------------- SAs in and out

  /** An IKE SA we initiate: reachable by its SPI from the first request on. */
  addInitiating(sa: IkeSa): void {
    this.sas.set(spi64Hex(sa.spiI), sa);
  }

  registerResponderSa(sa: IkeSa, halfOpenKey: string, deleteIkeSa: (sa: IkeSa, reason: string) => void): void {
    this.sas.set(spi64Hex(sa.spiR), sa);
    this.halfOpen.set(halfOpenKey, sa);
    sa.initKey = halfOpenKey;
    const source = sa.remote.address;
    let fromSource = this.halfOpenBySource.get(source);
    if (!fromSource) this.halfOpenBySource.set(source, (fromSource = new Set()));
    fromSource.add(sa);
    this.halfOpenSource.set(sa, source);
    const timer = this.deps.clock.schedule(this.deps.halfOpenTimeout, () => {
      if (sa.state === 'connecting' || sa.state === 'authenticating') deleteIkeSa(sa, 'half-open IKE SA timed out');
    });
    sa.timers.add(timer);
  }

  /** A half-open SA leaves the per-source index (it authenticated, or it is deleted). */
  private forgetSource(sa: IkeSa): void {
    const source = this.halfOpenSource.get(sa);
    if (source === undefined) return;
    this.halfOpenSource.delete(sa);
    const fromSource = this.halfOpenBySource.get(source);
    fromSource?.delete(sa);
    if (fromSource?.size === 0) this.halfOpenBySource.delete(source);
  }

  /**
   * While the table is at or over `threshold` (the COOKIE threshold), half-open
   * SAs older than the pressure lifetime are forgotten, oldest first: a peer
   * that answered IKE_SA_INIT sends IKE_AUTH within a round trip, and slots held
   * longer only keep others out (architecture §4.6).
   */
  expireUnderPressure(): void {
    const threshold = this.deps.limits.halfOpenCookieThreshold;
    const oldest = this.deps.clock.now() - this.deps.halfOpenPressureTimeout;
    // Map order is insertion order: creation order, as entries only leave.
    for (const sa of this.halfOpen.values()) {
      if (this.halfOpen.size < threshold || sa.createdAt > oldest) break;
      this.evict(sa, 'pressure-timeout');
    }
  }

  /** The oldest half-open SA of the source holding the most (the oldest such on a tie), and how many that source holds. */
  private largestSource(): { oldest: IkeSa; count: number } | undefined {
    let largest: { oldest: IkeSa; count: number } | undefined;
    for (const fromSource of this.halfOpenBySource.values()) {
      const oldest = fromSource.values().next().value!;
      if (!largest || fromSource.size > largest.count || (fromSource.size === largest.count && oldest.createdAt < largest.oldest.createdAt)) {
        largest = { oldest, count: fromSource.size };
      }
    }
    return largest;
  }

  /**
   * Whether a new half-open SA from `source` is refused: only when the table
   * is full and `source` already holds as many as any other source, after its
   * own limit has made room (makeRoomForHalfOpen). A new source never is.
   */
  refusesHalfOpen(source: string): boolean {
    const { limits } = this.deps;
    const own = this.halfOpenFrom(source);
    if (own >= limits.halfOpenPerSource || this.halfOpen.size < limits.halfOpenMax) return false;
    return own >= (this.largestSource()?.count ?? 0);
  }

  /**
   * Room for one more half-open SA from `source`, made before it is registered
   * and only for a request that proved its source address with a COOKIE (RFC
   * 7296 §2.6), so that forged sources cannot evict anyone. A source at its
   * own limit gives up its oldest (so that SAs forged in its name before the
   * COOKIE threshold cannot lock it out); a full table gives up the oldest SA
   * of the source holding the most, so that a flood from a few addresses, or
   * from many, cannot keep a new source out.
   */
  makeRoomForHalfOpen(source: string): void {
    const { limits } = this.deps;
    for (;;) {
      const own = this.halfOpenBySource.get(source);
      if (!own || own.size < limits.halfOpenPerSource) break;
      this.evict(own.values().next().value!, 'per-source');
    }
    while (this.halfOpen.size >= limits.halfOpenMax) {
      const largest = this.largestSource();
      if (!largest) break;
      this.evict(largest.oldest, 'table-full');
    }
  }

  /** A half-open SA forgotten to make room: counted by reason, logged at debug only (a flood makes thousands). */
  private evict(sa: IkeSa, reason: HalfOpenEviction): void {
    this.deps.evictions[reason] = (this.deps.evictions[reason] ?? 0) + 1;
    this.deleteIkeSa(sa, `half-open IKE SA evicted (${reason})`, { quiet: true });
  }

  /** The IKE SA has authenticated: it leaves the half-open set. */
  markEstablished(sa: IkeSa): void {
    sa.setState('established', this.deps.log);
    sa.establishedAt = this.deps.clock.now();
    this.forgetSource(sa);
    if (sa.initKey !== undefined && this.halfOpen.delete(sa.initKey)) {
      // RFC 7296 §2.1: a late copy of its IKE_SA_INIT must not start another SA.
      this.authenticatedInits.set(sa.initKey, sa);
    }
    sa.dropInitMaterial();
    this.joinSession(sa);
    this.trackPeer(sa);
    this.deps.log.info(
      { ike: sa.id, conn: sa.name, spiI: spi64Hex(sa.spiI), spiR: spi64Hex(sa.spiR), remote: `${sa.remote.address}:${sa.remote.port}` },
      'IKE SA established',
    );
    this.deps.events.emit('ike-up', sa);
  }

  /** Record a negotiated Child SA, tell listeners (the data plane), then wipe the keys the engine held. */
  addChild(child: ChildSa): void {
    child.ike.children.push(child);
    this.childrenBySpi.set(child.spiIn, child);
    this.reservedSpis.delete(child.spiIn);
    this.deps.keyLog?.child(child);
    this.deps.log.info(
      { ike: child.ike.id, child: child.id, childName: child.name, spiIn: spiHex(child.spiIn), spiOut: spiHex(child.spiOut), encap: child.udpEncap },
      'Child SA established',
    );
    this.deps.events.emit('child-up', child);
    child.wipeKeys();
  }

  /** Forget a Child SA locally (after a Delete exchange, or with its IKE SA). */
  removeChild(child: ChildSa, reason: string): void {
    if (child.state === 'deleted') return;
    child.setState('deleted', this.deps.log);
    const list = child.ike.children;
    const i = list.indexOf(child);
    if (i >= 0) list.splice(i, 1);
    this.childrenBySpi.delete(child.spiIn);
    child.wipeKeys();
    this.deps.log.info({ ike: child.ike.id, child: child.id, spiIn: spiHex(child.spiIn), reason }, 'Child SA deleted');
    this.deps.events.emit('child-down', child, reason);
  }

  /**
   * Forget an IKE SA and its Child SAs locally, zeroising keys (no message is
   * sent). `quiet`: a failure logged at debug (half-open evictions come by the
   * thousand under a flood; they are counted instead).
   */
  deleteIkeSa(sa: IkeSa, reason: string, opts: { quiet?: boolean } = {}): void {
    if (sa.state === 'dead') return;
    const wasEstablished = sa.establishedAt !== undefined;
    for (const child of [...sa.children]) this.removeChild(child, reason);
    const pending = sa.outstanding;
    const queued = [...sa.queue];
    this.sas.delete(spi64Hex(sa.localSpi));
    this.forgetSource(sa);
    if (sa.initKey !== undefined) {
      if (this.halfOpen.get(sa.initKey) === sa) this.halfOpen.delete(sa.initKey);
      if (this.authenticatedInits.get(sa.initKey) === sa) this.authenticatedInits.delete(sa.initKey);
    }
    this.rememberDeleted(sa);
    this.untrackPeer(sa);
    this.releaseVirtualIp(sa);
    sa.destroy(this.deps.log);
    pending?.exchange.abort?.(sa, reason);
    for (const q of queued) q.abort?.(sa, reason);
    if (wasEstablished) {
      this.deps.log.info({ ike: sa.id, conn: sa.name, reason }, 'IKE SA deleted');
      this.deps.events.emit('ike-down', sa, reason);
      this.leaveSession(sa);
    } else {
      this.deps.log[opts.quiet ? 'debug' : 'warn']({ ike: sa.id, conn: sa.name, reason }, 'IKE SA failed');
      this.deps.events.emit('ike-failed', sa, reason);
    }
  }

  /**
   * An established IKE SA another node handed over (sa-transfer.ts): reachable
   * by its SPI, in its session and the peer index, and announced like any SA
   * that comes up (architecture §8).
   */
  installImported(sa: IkeSa): void {
    this.sas.set(spi64Hex(sa.localSpi), sa);
    sa.setState('established', this.deps.log);
    sa.establishedAt = this.deps.clock.now();
    this.joinSession(sa);
    this.trackPeer(sa);
    this.deps.log.info({ ike: sa.id, conn: sa.name, spiI: spi64Hex(sa.spiI), spiR: spi64Hex(sa.spiR), local: sa.local.address }, 'IKE SA imported');
    this.deps.events.emit('ike-up', sa);
  }

  /**
   * Install the IKE SA a rekey or clone exchange created (RFC 7296 §2.18,
   * RFC 7791 §5.2). A rekey moves the Child SAs to it and retires `old`; a
   * clone leaves `old` and its children alone and takes the lowest position
   * free in its family (architecture §5).
   */
  installSuccessor(old: IkeSa, created: IkeSa, clone: boolean): void {
    this.releaseIkeSpi(created.localSpi);
    this.sas.set(spi64Hex(created.localSpi), created);
    this.trackPeer(created);
    created.setState('established', this.deps.log);
    created.establishedAt = this.deps.clock.now();
    this.deps.log.info(
      { ike: created.id, from: old.id, clone, spiI: spi64Hex(created.spiI), spiR: spi64Hex(created.spiR) },
      clone ? 'IKE SA cloned' : 'IKE SA rekeyed',
    );
    if (clone) {
      const taken = new Set(this.sessionMembers(old.sessionId).map((m) => m.familyIndex));
      created.familyIndex = 0;
      while (taken.has(created.familyIndex)) created.familyIndex++;
      this.joinSession(created);
      this.deps.events.emit('ike-cloned', old, created);
      this.deps.events.emit('ike-up', created);
      return;
    }
    this.joinSession(created);
    for (const child of old.children) {
      child.ike = created;
      created.children.push(child);
    }
    old.children.length = 0;
    old.setState('deleting', this.deps.log);
    this.deps.events.emit('ike-rekeyed', old, created);
  }
}
