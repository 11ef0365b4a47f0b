// What exchanges and lifecycle helpers may ask of the IKE engine (architecture
// §2.1): send a request, emit an event, look up and register SAs, allocate
// SPIs, start follow-up work. strongSwan's task sees its ike_sa and task
// manager the same way: through an interface, never the manager's internals.
//
// Exchanges (control/ike/exchanges/) and the lifecycle helpers (lifetimes,
// liveness, nat-keepalive, collisions, deletion, clone-family) import this
// module, never engine.ts, so nothing here may import them: the interfaces
// they offer the exchanges are declared here, and the engine's concrete
// classes satisfy them.
import type { EventEmitter } from 'node:events';
import type { Payload } from '../wire/payloads.js';
import type { CookieSecret } from '../crypto/cookie.js';
import type { RandomSource } from '../crypto/random.js';
import type { Logger } from '../log.js';
import type { Clock } from './clock.js';
import type { DeletionOptions, EngineLimits, LifetimeOptions, LivenessOptions, MobilityOptions, ReassemblyLimits, RetransmitPolicy } from './defaults.js';
import type { ChildCreateOptions, ChildSa, IkeSa, InitiatorExchange, RedirectTrail, ResponderResult } from './ike-sa.js';
import type { ChildSpiPlacement, ChildSpiRequest } from './child-spi.js';
import type { KeyLogSink } from './keylog.js';
import type { ConnectionPolicy } from './policy.js';
import type { Endpoint, SendFn, SendKeepalive } from './transport.js';
import type { RedirectHooks } from './redirect-policy.js';
import type { PeerResources } from './peer-resources.js';

export type { RedirectHooks };

/** How an IkeEngine is made: its policies, its way out, and what it may override of defaults.ts. */
export interface IkeEngineOptions {
  policies: ConnectionPolicy[];
  send: SendFn;
  /** Our IKE ports: messages float from `ike` to `nat` (RFC 7296 §2.23). */
  ports?: { ike: number; nat: number };
  clock?: Clock;
  random?: RandomSource;
  log?: Logger;
  limits?: Partial<EngineLimits>;
  retransmit?: Partial<RetransmitPolicy>;
  /** Wireshark key log (off unless given). */
  keyLog?: KeyLogSink;
  /** Half-open responder SAs are forgotten after this many ms. */
  halfOpenTimeout?: number;
  /** ... and after this many while the half-open table is at or over the COOKIE threshold. */
  halfOpenPressureTimeout?: number;
  /** Local address to use towards a peer when the policy names none. */
  localAddressFor?: (remote: string) => string;
  /** Sends a NAT keepalive (one octet 0xFF, RFC 3948 §2.3) on the NAT-T socket; without it none are sent. */
  sendKeepalive?: SendKeepalive;
  /** Lifecycle tunables (defaults.ts: lifetimes, liveness, deletion). */
  lifecycle?: Partial<LifetimeOptions & LivenessOptions & DeletionOptions>;
  /** Our usable local addresses right now (MOBIKE: address lists and path failover, RFC 4555 §3.4, §3.10). */
  localAddresses?: () => string[];
  /** MOBIKE responder policy (RFC 4555 §3.7): check return routability before moving Child SAs (default true). */
  mobility?: Partial<MobilityOptions>;
  /** RFC 5685 redirection: the gateway's placement hook and the client's resolvers (redirect-policy.ts). */
  redirect?: RedirectHooks;
  /** Bounds of IKE fragment reassembly (RFC 7383 §2.6, §5; defaults.ts DEFAULT_REASSEMBLY). */
  reassembly?: Partial<ReassemblyLimits>;
  /** Cluster node prefix of the SPIs we allocate (io/spi-layout.ts); 0 on a single gateway. */
  spiPrefix?: number;
  /**
   * Asked before each request on an IKE SA is sent: true holds it back until
   * the caller kicks the SA again (cluster fencing writes the message ID to
   * etcd first, architecture §8). Absent: nothing is held.
   */
  holdRequest?: (sa: IkeSa) => boolean;
  /**
   * Asked before any request on an IKE SA is answered, fresh or from the
   * response cache: false drops it, counted as 'fenced' (a cluster node whose
   * lease may have lapsed answers nothing on its clones, architecture §8).
   * Absent: every request is answered.
   */
  mayAnswer?: (sa: IkeSa) => boolean;
  /**
   * Asked before a fresh response on an IKE SA is sent (it is in the
   * response cache already): true takes it over, and `send` sends it once
   * the caller allows, or never (a cluster node writes the peer's moved
   * message ID to etcd first, architecture §8). Absent, or false: sent now.
   */
  holdResponse?: (sa: IkeSa, send: () => void) => boolean;
  /**
   * Observer of every message's payloads (inner payloads for encrypted ones),
   * after building and after authentication: debugging and protocol tests.
   */
  trace?: MessageTrace;
  /** Who will own each Child SA (data-plane worker, cluster node): its inbound SPI carries them (child-spi.ts). */
  childSpiPlacement?: ChildSpiPlacement;
  /** A cluster's virtual IP leases and per-peer counts (peer-resources.ts); absent: this engine's own. */
  peerResources?: PeerResources;
}

/** How initiate() starts an IKE SA: to and from where, and (after an RFC 5685 redirect) how the client got there. */
export interface InitiateOptions {
  remote?: Endpoint;
  local?: Endpoint;
  redirectTrail?: RedirectTrail;
}

export type MessageTrace = (event: { direction: 'in' | 'out'; sa: IkeSa; exchangeType: number; response: boolean; messageId: number; payloads: readonly Payload[] }) => void;

export type DropReason =
  | 'malformed'
  | 'unknown-spi'
  | 'bad-flags'
  | 'unexpected-response'
  | 'message-id'
  | 'decrypt'
  | 'syntax'
  | 'half-open-limit'
  | 'cookie'
  | 'no-policy'
  | 'unsupported-exchange'
  | 'late-retransmit'
  /** An IKE_SA_INIT response with an error or fields we cannot use: unauthenticated, so not final (RFC 7296 §2.21.1). */
  | 'unusable-init-response'
  /** A request with a cached response's message ID that is not a byte-identical retransmission (RFC 7296 §2.1). */
  | 'cache-mismatch'
  /** A request on a cluster clone whose owner's lease may have lapsed: not answered, not even from the cache (architecture §8). */
  | 'fenced'
  /** A retransmitted request whose answer waits for a cluster's resources (answer-preparation.ts). */
  | 'answer-pending'
  // IKE fragments (RFC 7383 §2.6; fragments.ts):
  /** A fragment on a connection with fragmentation: no (we never announced support, §2.3). */
  | 'fragment-unsupported'
  /** Total Fragments below the set in reassembly (§2.6), or a retransmitted fragment other than the first (§2.6.1). */
  | 'fragment-stale'
  /** The same Fragment Number and Total Fragments again (§2.6: a replay). */
  | 'fragment-duplicate'
  /** Integrity check failed: forged or corrupted (§2.6); nothing was stored. */
  | 'fragment-auth'
  /** Past a reassembly bound: fragments per message, octets per message or in all, messages in reassembly (§5). */
  | 'fragment-limit'
  /** A message incomplete when its reassembly time ran out (§2.6). */
  | 'fragment-timeout'
  /** A new message from a source address that already holds maxMessagesPerSource in reassembly (§5). */
  | 'fragment-source-limit'
  /** A message incomplete past the shorter lifetime of a reassembly table under pressure (§5). */
  | 'fragment-pressure-timeout';

/** Why a Child SA reached a limit (RFC 7296 §2.8; sequence numbers: architecture §4.4). */
export type ChildLimitCause = 'time' | 'bytes' | 'packets' | 'sequence';

export interface EngineEvents {
  'ike-up': [sa: IkeSa];
  'ike-down': [sa: IkeSa, reason: string];
  /** An IKE SA we initiated could not be established. */
  'ike-failed': [sa: IkeSa, reason: string];
  /** A Child SA is negotiated. Listeners copy child.keys synchronously: the engine wipes them right after. */
  'child-up': [child: ChildSa];
  'child-down': [child: ChildSa, reason: string];
  /** A Child SA could not be created (the IKE SA stays). */
  'child-failed': [sa: IkeSa, name: string, reason: string];
  /** An IKE SA was rekeyed: its Child SAs now belong to `successor`; `old` goes away next. */
  'ike-rekeyed': [old: IkeSa, successor: IkeSa];
  /**
   * A gateway redirected an IKE SA we initiated (RFC 5685 §3, §6): it is deleted next, and `next`
   * resolves with the IKE SA started towards `to` (or rejects when there is none).
   */
  'ike-redirected': [sa: IkeSa, next: Promise<IkeSa>, to: string];
  /** An IKE SA was cloned (RFC 7791): `clone` is a new, independent IKE SA of the same session. */
  'ike-cloned': [original: IkeSa, clone: IkeSa];
  /**
   * MOBIKE (RFC 4555): the IKE SA's Child SAs now use the IKE SA's addresses
   * (and its NAT state decides UDP encapsulation); the data plane updates them.
   */
  'ike-moved': [sa: IkeSa];
  /** A peer's session begins with its first authenticated IKE SA (RFC 7791 §8). */
  'session-up': [sessionId: number, sa: IkeSa];
  /** ... and ends when the last IKE SA of the session (clones and successors included) is gone. */
  'session-down': [sessionId: number, sa: IkeSa];
  /** Retransmissions to the peer of an established IKE SA are spent: it is dead, its SAs go next (RFC 7296 §2.4). */
  'peer-dead': [sa: IkeSa];
  /** dpdAction restart: the connection is initiated again after a dead peer (attempt 1, 2, ...). */
  'ike-restart': [name: string, attempt: number];
  /** An IKE SA reached a lifetime: 'rekey' or 'reauth' (soft), 'hard' (it is deleted). */
  'ike-expired': [sa: IkeSa, limit: 'rekey' | 'reauth' | 'hard'];
  /** A Child SA reached a soft (rekey) or hard (delete) limit. */
  'child-expired': [child: ChildSa, limit: 'soft' | 'hard', cause: ChildLimitCause];
  /** Both ends rekeyed the same SA at once (RFC 7296 §2.8.1, §2.8.2); `survivor` replaces it on both. */
  'rekey-collision': [kind: 'child' | 'ike', survivor: ChildSa | IkeSa];
  /** Our Delete was answered without the paired Delete (RFC 7296 §1.4.1). */
  'child-half-closed': [child: ChildSa];
  drop: [reason: DropReason, detail: string];
}

export interface EngineStats {
  received: number;
  sent: number;
  retransmits: number;
  responsesFromCache: number;
  drops: Record<string, number>;
  /** CREATE_CHILD_SA requests we refused, by notify name (refusals.ts). */
  refusals: Record<string, number>;
  /**
   * Exchanges completed, by `TYPE.role.result` (e.g. `IKE_AUTH.responder.ok`,
   * `CREATE_CHILD_SA.initiator.failed`): exchange type name, initiator or
   * responder, ok or failed (an error notify, or no response at all). Bounded:
   * only exchange types the engine runs or classified appear.
   */
  exchanges: Record<string, number>;
  /** Rekeys completed (either end started them): Child SAs and IKE SAs (RFC 7296 §1.3.2, §1.3.3). */
  rekeys: { child: number; ike: number };
  /** Half-open IKE SAs forgotten to make room, by reason (sa-table.ts HalfOpenEviction). */
  halfOpenEvictions: Record<string, number>;
  /** RFC 5685 redirects by `sent.PHASE`, `followed.PHASE` and `refused.REASON` (redirect.ts). */
  redirects: Record<string, number>;
  /**
   * IKE fragmentation (RFC 7383): fragment datagrams sent (retransmissions
   * included) and received authenticated, messages reassembled, requests cut
   * smaller after unanswered retransmissions (§2.5.2).
   */
  fragments: { sent: number; received: number; reassembled: number; fallbacks: number };
}

/** The two nonces of one CREATE_CHILD_SA exchange: [Ni, Nr]. */
export type ExchangeNonces = readonly [Uint8Array, Uint8Array];

/** What the rekey exchanges tell the collision handling (RFC 7296 §2.8.1, §2.8.2, §2.25; collisions.ts). */
export interface RekeyCollisionHooks {
  childRekeyAnswered(old: ChildSa, created: ChildSa, nonces: ExchangeNonces): void;
  childRekeyCompleted(old: ChildSa, created: ChildSa, nonces: ExchangeNonces): ChildSa;
  childRekeyFailed(old: ChildSa): ChildSa | undefined;
  ikeRekeyAnswered(old: IkeSa, created: IkeSa, clone: boolean, nonces: ExchangeNonces): void;
  ikeRekeyCompleted(old: IkeSa, created: IkeSa, nonces: ExchangeNonces): IkeSa;
  ikeRekeyFailed(old: IkeSa): IkeSa | undefined;
  ikeRekeyAborted(old: IkeSa): IkeSa | undefined;
  beforePeerDeletesIke(sa: IkeSa): void;
}

/** What the Delete exchange tells the deletion audit (RFC 7296 §1.4.1; deletion.ts). */
export interface DeletionHooks {
  deleteAnswered(child: ChildSa, response: Payload[]): void;
  isHeld(spi: number): boolean;
}

/** The engine as exchanges and lifecycle helpers see it. IkeEngine implements it. */
export interface IkeContext extends Pick<EventEmitter<EngineEvents>, 'on' | 'off' | 'emit'> {
  // --- configuration and services
  readonly policies: ConnectionPolicy[];
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly log: Logger;
  readonly limits: EngineLimits;
  readonly retransmit: RetransmitPolicy;
  readonly ports: { ike: number; nat: number };
  readonly keyLog: KeyLogSink | undefined;
  readonly mobility: MobilityOptions;
  /** RFC 5685: the placement hook and the client's resolvers. */
  readonly redirect: RedirectHooks;
  readonly stats: EngineStats;
  /** The COOKIE secret (RFC 7296 §2.6). */
  readonly cookieSecret: CookieSecret;
  readonly collisions: RekeyCollisionHooks;
  readonly deletion: DeletionHooks;
  policy(name: string): ConnectionPolicy | undefined;
  /** Our usable local addresses now (MOBIKE, RFC 4555 §3.4, §3.10). */
  localAddresses(): string[];

  // --- the message layer
  /** Queue an initiator exchange; it runs when the window allows (RFC 7296 §2.3). */
  queueExchange(sa: IkeSa, exchange: InitiatorExchange): void;
  /** Start the next queued exchange if none is in flight. */
  kick(sa: IkeSa): void;
  sendDatagram(local: Endpoint, remote: Endpoint, bytes: Uint8Array): void;
  countDrop(reason: DropReason, detail: string): void;

  // --- the SA table (sa-table.ts)
  /** IKE SAs by our own SPI (hex). */
  readonly sas: Map<string, IkeSa>;
  /** Half-open responder SAs by IKE_SA_INIT key; past-IKE_AUTH ones by the same key. */
  readonly halfOpen: Map<string, IkeSa>;
  readonly authenticatedInits: Map<string, IkeSa>;
  readonly childrenBySpi: Map<number, ChildSa>;
  /** Inbound SPIs offered in a request whose response has not arrived yet. */
  readonly reservedSpis: Set<number>;
  ikeSas(): IkeSa[];
  halfOpenCount(): number;
  /** Half-open IKE SAs from one source address (the per-source limit). */
  halfOpenFrom(source: string): number;
  /** Forget half-open SAs past the pressure lifetime while the table is at or over the COOKIE threshold. */
  expireHalfOpenUnderPressure(): void;
  /** A full table refuses a source that holds as many half-open SAs as any other. */
  refusesHalfOpen(source: string): boolean;
  /** Room for one more half-open SA from `source` (its limit, then the table's); only after a verified COOKIE. */
  makeRoomForHalfOpen(source: string): void;
  sessionMembers(sessionId: number): IkeSa[];
  peerIkeSaCount(sa: IkeSa): number;
  peerChildCount(sa: IkeSa): number;
  hasCapacity(opts?: { replacing?: boolean }): boolean;
  newIkeSpi(): Uint8Array;
  reserveIkeSpi(spi: Uint8Array): void;
  releaseIkeSpi(spi: Uint8Array): void;
  /** A fresh inbound ESP SPI, for the owner the placement names for `request` (child-spi.ts). */
  newChildSpi(request?: ChildSpiRequest): number;
  registerResponderSa(sa: IkeSa, halfOpenKey: string): void;
  markEstablished(sa: IkeSa): void;
  addChild(child: ChildSa): void;
  removeChild(child: ChildSa, reason: string): void;
  deleteIkeSa(sa: IkeSa, reason: string): void;
  /** Install the IKE SA a rekey or clone created (RFC 7296 §2.18, RFC 7791 §5.2). */
  adoptSuccessor(old: IkeSa, created: IkeSa, clone: boolean): void;
  /** A virtual IP of `family` for the peer of `sa` from its pools (RFC 7296 §2.19); `wanted`: the address it asked for. */
  leaseVirtualIp(sa: IkeSa, family?: 4 | 6, wanted?: Uint8Array): { address: string; bytes: Uint8Array } | undefined;
  /** Install an established IKE SA another node handed over (sa-transfer.ts, architecture §8). */
  installImported(sa: IkeSa): void;

  // --- follow-up work, the public API exchanges and helpers start
  initiate(name: string, opts?: InitiateOptions): Promise<IkeSa>;
  startIkeAuth(sa: IkeSa): void;
  startRemainingChildren(sa: IkeSa): void;
  createChildSa(sa: IkeSa, childName: string, opts?: ChildCreateOptions): Promise<ChildSa>;
  deleteUnusableChild(sa: IkeSa, spiIn: number): void;
  rekeyChildSa(child: ChildSa, opts?: { pfs?: boolean }): Promise<ChildSa>;
  rekeyIkeSa(sa: IkeSa): Promise<IkeSa>;
  cloneIkeSa(sa: IkeSa): Promise<IkeSa>;
  closeChildSa(child: ChildSa): Promise<void>;
  closeIkeSa(sa: IkeSa): Promise<void>;
  moveIkeSa(sa: IkeSa, to: { local: string; remote?: string }): Promise<IkeSa>;
  /** Rekeying and cloning requests (RFC 7296 §1.3.2, §1.3.3; RFC 7791 §5.2). */
  respondRekey(sa: IkeSa, payloads: Payload[], ikeRekey: boolean): ResponderResult;
}
