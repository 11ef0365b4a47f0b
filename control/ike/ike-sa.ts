// The two kinds of SA the IKE engine owns, and the contract of the exchanges
// that run on them:
// - an IKE SA: SPIs, negotiated suite, keys, message-ID state, the exchange in
//   flight and the response cache, and the Child SAs it created;
// - a Child SA as the control plane sees it: negotiated algorithms, SPIs, keys
//   until they are handed to the data plane, and traffic selectors (the data
//   plane's copy, with sequence counter and replay window, is owned by one worker);
// - the exchange contract (strongSwan's task model: each exchange has an
//   initiator half — build the request, process the response — and a responder
//   half — process the request, build the response).
// They refer to each other, so they live in one module (no import cycle).
//
// States change only through setState, against an explicit transition table
// (as OpenBSD iked's sa_stateok); an illegal change is refused and logged,
// never thrown, since untrusted input may lead to it. Owned by the IKE engine
// on the main thread; exchanges mutate an SA only after a message has been
// authenticated (architecture §4.3).
import type { IkeKeys } from '../crypto/keys.js';
import { wipeIkeKeys } from '../crypto/keys.js';
import type { KeyExchange } from '../crypto/keyexchange.js';
import type { SkProtector } from '../crypto/sk.js';
import { wipe } from '../crypto/random.js';
import type { Identity } from './identity.js';
import type { TimerHandle } from './clock.js';
import type { ConnectionPolicy } from './policy.js';
import type { NegotiatedSuite } from './proposals.js';
import type { Datagram, Endpoint } from './transport.js';
import type { ArrivalSpiDraw } from './arrival-spi.js';
import type { Payload, TrafficSelector } from '../wire/payloads.js';
import type { IkeMessage } from '../wire/message.js';
import type { Logger } from '../log.js';
import type { GatewayIdentity } from '../wire/gateway-identity.js';

export type IkeSaState =
  | 'connecting' // IKE_SA_INIT sent or answered, not yet authenticated
  | 'authenticating' // IKE_AUTH in flight
  | 'established'
  | 'deleting'
  | 'dead';

/** installed -> rekeying (we rekey it) -> rekeyed (the successor exists; kept for inbound until deleted) -> deleting -> deleted. */
export type ChildSaState = 'installed' | 'rekeying' | 'rekeyed' | 'deleting' | 'deleted';

// ------------------------------------------------------------ state machines

/**
 * Legal IKE SA state changes (RFC 7296 §1, §2.18): IKE_SA_INIT, then IKE_AUTH
 * (initiator), then established; an SA created by a rekey or a clone goes from
 * 'connecting' straight to 'established'. Anything may die.
 */
export const IKE_SA_TRANSITIONS: Readonly<Record<IkeSaState, readonly IkeSaState[]>> = {
  connecting: ['authenticating', 'established', 'dead'],
  authenticating: ['established', 'dead'],
  established: ['deleting', 'dead'],
  deleting: ['dead'],
  dead: [],
};

/**
 * Legal Child SA state changes (RFC 7296 §1.3.3, §1.4.1, §2.8): a rekey we
 * start may fail (back to installed) or produce a successor (rekeyed); any
 * state but deleted may be deleted.
 */
export const CHILD_SA_TRANSITIONS: Readonly<Record<ChildSaState, readonly ChildSaState[]>> = {
  installed: ['rekeying', 'rekeyed', 'deleting', 'deleted'],
  rekeying: ['installed', 'rekeyed', 'deleting', 'deleted'],
  rekeyed: ['deleting', 'deleted'],
  deleting: ['deleted'],
  deleted: [],
};

/**
 * Whether `from` may become `to` under `table`. Staying in the same state is
 * always allowed (a rebuilt request re-enters its state).
 */
export function stateChangeAllowed<S extends string>(table: Readonly<Record<S, readonly S[]>>, from: S, to: S): boolean {
  return from === to || table[from].includes(to);
}

function changeState<S extends string>(
  table: Readonly<Record<S, readonly S[]>>,
  what: Record<string, unknown>,
  from: S,
  to: S,
  log: Logger | undefined,
): boolean {
  if (!stateChangeAllowed(table, from, to)) {
    log?.warn({ ...what, from, to }, 'illegal SA state change refused');
    return false;
  }
  if (from !== to) log?.debug({ ...what, from, to }, 'SA state change');
  return true;
}

// ------------------------------------------------------ exchange contract

/** Initiator half of an exchange, queued on an IKE SA and run one at a time (window size 1). */
export interface InitiatorExchange {
  readonly name: string;
  readonly exchangeType: number;
  /** Payloads of the request (encrypted, except in IKE_SA_INIT). */
  build(sa: IkeSa): Payload[];
  /**
   * The response, decrypted and authenticated. Return 'retry' to send a rebuilt
   * request under the same message ID (COOKIE and INVALID_KE_PAYLOAD, RFC 7296 §2.6, §1.2).
   */
  process(sa: IkeSa, payloads: Payload[], raw: Uint8Array): void | 'retry';
  /**
   * For a response that is not authenticated (IKE_SA_INIT): why it cannot be
   * used, or undefined when process() may take it. Changes no SA state; the
   * engine drops an unusable response and keeps the request outstanding
   * (RFC 7296 §2.21.1), since a forged one may precede the genuine answer.
   */
  unusable?(sa: IkeSa, payloads: Payload[], raw: Uint8Array): string | undefined;
  /** The exchange will never complete (retransmissions spent, SA deleted). */
  abort?(sa: IkeSa, reason: string): void;
}

/** What a responder half returns: the response payloads (possibly just an error notify). */
export interface ResponderResult {
  payloads: Payload[];
  /** Run after the response has been sent (e.g. delete the IKE SA after answering its Delete). */
  after?: () => void;
}

// ------------------------------------------------------------------ IKE SA

export type IkeRole = 'initiator' | 'responder';

/** The request we sent and await an answer to (window size 1, RFC 7296 §2.3). */
export interface OutstandingRequest {
  messageId: number;
  bytes: Uint8Array;
  tries: number;
  timer: TimerHandle | undefined;
  exchange: InitiatorExchange;
  /** Why the last unauthenticated response to it was dropped (RFC 7296 §2.21.1): the failure reason if no usable one comes. */
  unusable?: string;
  /** Sent as IKE fragments (RFC 7383 §2.5): a retransmission resends all of them. */
  fragments?: FragmentedMessage;
}

/** A message sent as IKE fragments (RFC 7383 §2.5; fragmentation.ts). */
export interface FragmentedMessage {
  /** The fragment datagrams, in order. */
  datagrams: Uint8Array[];
  /** The IP datagram size they were cut for. */
  size: number;
  /** The plaintext of the Encrypted payload, kept to cut it again smaller (RFC 7383 §2.5.2). */
  inner: { firstType: number; bytes: Uint8Array };
}

let nextIkeId = 1;

/** RFC 5685 client: the gateway that redirected this set-up here (REDIRECTED_FROM, §3) and when each redirect came (loop bound, §7). */
export interface RedirectTrail {
  from: GatewayIdentity;
  times: number[];
}

/**
 * A response kept for retransmissions of the request it answered (RFC 7296
 * §2.1: a retransmitted request is byte-identical, and gets the same response).
 */
export interface CachedResponse {
  messageId: number;
  bytes: Uint8Array;
  /** SHA-256 of the request it answered: only a copy of that request gets it again. */
  requestDigest: Uint8Array;
  /** Sent as IKE fragments (RFC 7383 §2.5): all of them go again (their datagrams only, no plaintext). */
  fragments?: Omit<FragmentedMessage, 'inner'>;
}

export class IkeSa {
  readonly id = nextIkeId++;
  /**
   * The session this IKE SA belongs to: its own id for an SA created by
   * IKE_AUTH, the original's for rekeyed and cloned SAs. Accounting treats the
   * session as alive until its last IKE SA is gone (RFC 7791 §8).
   */
  sessionId = this.id;
  /**
   * Position in the clone family: 0 for the original, k for the k-th clone
   * (kept across rekeys). Per-worker placement uses it (architecture §5).
   */
  familyIndex = 0;
  private currentState: IkeSaState = 'connecting';
  readonly createdAt: number;
  establishedAt: number | undefined;

  /** SPIs as on the wire (8 bytes each); spiR is zero until the responder's SPI is known. */
  spiI: Uint8Array;
  spiR: Uint8Array;
  suite: NegotiatedSuite | undefined;
  keys: IkeKeys | undefined;
  protectOut: SkProtector | undefined;
  protectIn: SkProtector | undefined;

  // IKE_SA_INIT material kept until IKE_AUTH has used it (RFC 7296 §2.15).
  nonceI: Uint8Array | undefined;
  nonceR: Uint8Array | undefined;
  initRequest: Uint8Array | undefined;
  initResponse: Uint8Array | undefined;
  keyExchange: KeyExchange | undefined;

  /** Message ID of our next request, and of the peer's next request (RFC 7296 §2.2). */
  nextRequestId = 0;
  peerRequestId = 0;
  outstanding: OutstandingRequest | undefined;
  /**
   * Set while request-resync.ts probes for the peer's next message ID: the
   * engine sends nothing else on the SA and hands it every response that
   * answers no outstanding request (true: taken).
   */
  resync: ((msg: IkeMessage, d: Datagram) => boolean) | undefined;
  /**
   * The SPI random parts a handoff drew for an arrival on this clone
   * (arrival-spi.ts), kept in the records this node writes until that
   * arrival is done: a node taking over meanwhile deletes what they name.
   */
  arrivalSpis: ArrivalSpiDraw | undefined;
  /** Previous owners' draws, kept in our records until our arrival deleted what they name (arrival-spi.ts). */
  orphanSpis: ArrivalSpiDraw[] | undefined;
  readonly queue: InitiatorExchange[] = [];
  /** The last response we sent, for retransmitted requests (RFC 7296 §2.1). */
  lastResponse: CachedResponse | undefined;

  localId: Identity | undefined;
  peerId: Identity | undefined;
  /** The authenticated peer identity as text: the key for per-peer limits (RFC 7791 §8). */
  peerKey: string | undefined;
  /** NAT detected in front of us / in front of the peer (RFC 7296 §2.23). */
  natLocal = false;
  natRemote = false;
  /**
   * IKE_SA_INIT carried NAT_DETECTION_*_IP notifies both ways: NAT traversal is
   * enabled (RFC 7296 §2.23) whether or not a NAT was found, so NO_NATS_ALLOWED
   * (RFC 4555 §3.9) does not apply. Kept across rekeys and clones.
   */
  natDetectionExchanged = false;
  /**
   * Hash algorithms the peer announced in SIGNATURE_HASH_ALGORITHMS in
   * IKE_SA_INIT (RFC 7427 §4); empty if it sent none. Our signature must use
   * one of them.
   */
  peerSignatureHashes: number[] = [];
  /**
   * CA hashes from the peer's X.509 CERTREQ payloads (RFC 7296 §3.7), in
   * IKE_SA_INIT's response or the IKE_AUTH request; undefined while it sent none.
   */
  peerCertreq: Uint8Array[] | undefined;
  peerMobike = false;
  peerClone = false;
  /** Both ends announced IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (RFC 7383 §2.3); kept across rekeys and clones. */
  peerFragmentation = false;
  /**
   * The fragment size this SA uses once it differs from the policy's: after a
   * fallback (RFC 7383 §2.5.2), or the largest fragment the peer sent us
   * (§2.5.1). Later exchanges start from it.
   */
  fragmentSize: number | undefined;
  /**
   * RFC 9611 §3: the peer answered our first Child SA's SA_RESOURCE_INFO with
   * its own, so it accepts per-resource Child SAs for the same selectors.
   */
  peerResourceInfo = false;
  /**
   * MOBIKE initiator (RFC 4555 §1.3): we started the first IKE SA of the series
   * this one descends from by rekeys and clones. Only the MOBIKE initiator
   * moves an IKE SA (§3.1, §3.5); the IKEv2 role (`isInitiator`) follows the
   * latest rekey (RFC 7296 §2.18) and, for a clone, whoever cloned (RFC 7791).
   */
  mobikeInitiator: boolean;
  /** MOBIKE (RFC 4555 §3.4, §3.6): the peer's other addresses, as it announced them. */
  peerAdditionalAddresses: string[] = [];
  /**
   * MOBIKE: the peer address in use when the peer's latest address list (its IP
   * header source and ADDITIONAL_* notifies, §3.6) left it out; the MOBIKE
   * initiator moves away from it (§3.5). Cleared when the SA moves.
   */
  peerWithdrawnAddress: string | undefined;
  /** MOBIKE: bumped on every address change we make, so responses to stale updates are ignored (§3.5). */
  addressGeneration = 0;
  /** MOBIKE responder: peer addresses that passed a return routability check (§3.7). */
  readonly verifiedAddresses = new Set<string>();
  /**
   * MOBIKE initiator: the local address this IKE SA belongs on (its NIC with
   * per-NIC cloning); after a failover it moves back when the address returns.
   */
  homeAddress: string | undefined;
  /**
   * Where the Child SAs' ESP goes while the IKE SA's own path is not the
   * one they may use: the peer moved the IKE SA with UPDATE_SA_ADDRESSES to
   * an address not yet verified (RFC 4555 §3.7), or whose check failed.
   * Undefined: the IKE SA's addresses (childSaPath).
   */
  childPath: { local: Endpoint; remote: Endpoint } | undefined;
  /** RFC 5685 client: how a REDIRECT brought this IKE SA's set-up here; undefined when it was not redirected. */
  redirectTrail: RedirectTrail | undefined;
  /** RFC 5685 gateway: the peer announced REDIRECT_SUPPORTED or REDIRECTED_FROM (§3); no other peer is redirected. */
  peerRedirect = false;
  /** RFC 5685 gateway: the gateway the peer's REDIRECTED_FROM named (§9.3). */
  redirectedFrom: GatewayIdentity | undefined;
  /** RFC 5685 §6 gateway: redirected in IKE_AUTH; only the client's Delete is taken, until it comes or the linger ends. */
  redirectedAway = false;
  /** Virtual IPs the peer assigned us (RFC 7296 §2.19): one per address family at most. */
  virtualIps: string[] = [];
  /** Virtual IPs we assigned the peer from our pools. */
  peerVirtualIps: string[] = [];
  /** DNS servers the peer's CP reply named (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS, RFC 7296 §3.15.1). */
  dns: string[] = [];
  /** The first virtual IP the peer assigned us (an IPv4 one when both families were asked for). */
  get virtualIp(): string | undefined {
    return this.virtualIps[0];
  }
  /** The first virtual IP we assigned the peer. */
  get peerVirtualIp(): string | undefined {
    return this.peerVirtualIps[0];
  }

  readonly children: ChildSa[] = [];
  /** Responder: the IKE_SA_INIT key (peer address, port, SPIi) it was created for. */
  initKey: string | undefined;
  /** Timers bound to this SA (half-open expiry); cancelled when it dies. */
  readonly timers = new Set<TimerHandle>();

  constructor(
    readonly role: IkeRole,
    public policy: ConnectionPolicy,
    public local: Endpoint,
    public remote: Endpoint,
    spiI: Uint8Array,
    spiR: Uint8Array,
    now: number,
  ) {
    this.spiI = spiI;
    this.spiR = spiR;
    this.createdAt = now;
    // A rekey or clone (successorSa) overwrites this with the first SA's role.
    this.mobikeInitiator = role === 'initiator';
  }

  get state(): IkeSaState {
    return this.currentState;
  }

  /** Change state against IKE_SA_TRANSITIONS; false (and a warning) for an illegal change, which is not made. */
  setState(to: IkeSaState, log?: Logger): boolean {
    if (!changeState(IKE_SA_TRANSITIONS, { ike: this.id }, this.currentState, to, log)) return false;
    this.currentState = to;
    return true;
  }

  /** Our own SPI: the key of this SA in the engine's table. */
  get localSpi(): Uint8Array {
    return this.role === 'initiator' ? this.spiI : this.spiR;
  }

  get isInitiator(): boolean {
    return this.role === 'initiator';
  }

  get name(): string {
    return this.policy.name;
  }

  /** Release IKE_SA_INIT state that authentication no longer needs. */
  dropInitMaterial(): void {
    this.keyExchange?.destroy();
    this.keyExchange = undefined;
    this.initRequest = undefined;
    this.initResponse = undefined;
  }

  /** Zeroise all key material (architecture §4.5) and stop every timer. */
  destroy(log?: Logger): void {
    this.setState('dead', log);
    for (const t of this.timers) t.cancel();
    this.timers.clear();
    this.outstanding?.timer?.cancel();
    this.outstanding = undefined;
    this.queue.length = 0;
    this.dropInitMaterial();
    if (this.keys) wipeIkeKeys(this.keys);
    this.keys = undefined;
    this.protectOut?.destroy();
    this.protectIn?.destroy();
    this.protectOut = this.protectIn = undefined;
    wipe(this.nonceI, this.nonceR);
    for (const c of this.children) c.wipeKeys();
  }
}

/** What an IKE SA hands on to its successor, its clone, or a copy on another cluster node. */
export interface CarriedState {
  peerKey?: string | undefined;
  peerMobike: boolean;
  peerClone: boolean;
  mobikeInitiator: boolean;
  natDetectionExchanged: boolean;
  natLocal: boolean;
  natRemote: boolean;
  peerAdditionalAddresses: readonly string[];
  peerWithdrawnAddress?: string | undefined;
  verifiedAddresses: Iterable<string>;
  virtualIps: readonly string[];
  peerVirtualIps: readonly string[];
  dns: readonly string[];
  peerFragmentation: boolean;
  fragmentSize?: number | undefined;
}

/**
 * Copy the peer's negotiated extensions (MOBIKE, cloning, fragmentation and
 * the fragment size in use), NAT state, MOBIKE address state, virtual IPs and
 * DNS servers onto `sa`. The MOBIKE initiator stays whoever started the first
 * IKE SA of the series (RFC 4555 §1.3), whoever rekeys, clones or moves it.
 */
export function carryState(sa: IkeSa, from: CarriedState): void {
  sa.peerKey = from.peerKey;
  sa.peerMobike = from.peerMobike;
  sa.peerClone = from.peerClone;
  sa.mobikeInitiator = from.mobikeInitiator;
  sa.natDetectionExchanged = from.natDetectionExchanged;
  sa.natLocal = from.natLocal;
  sa.natRemote = from.natRemote;
  sa.peerAdditionalAddresses = [...from.peerAdditionalAddresses];
  sa.peerWithdrawnAddress = from.peerWithdrawnAddress;
  for (const a of from.verifiedAddresses) sa.verifiedAddresses.add(a);
  sa.virtualIps = [...from.virtualIps];
  sa.peerVirtualIps = [...from.peerVirtualIps];
  sa.dns = [...from.dns];
  sa.peerFragmentation = from.peerFragmentation;
  sa.fragmentSize = from.fragmentSize;
}

/** The addresses the Child SAs of `sa` use for ESP (RFC 4555 §3.7: not an unverified new path of the peer's). */
export function childSaPath(sa: IkeSa): { local: Endpoint; remote: Endpoint } {
  return sa.childPath ?? { local: sa.local, remote: sa.remote };
}

export function spi64Hex(spi: Uint8Array): string {
  return Buffer.from(spi.buffer, spi.byteOffset, spi.byteLength).toString('hex');
}

// ---------------------------------------------------------------- Child SA

export interface ChildKeyMaterial {
  /** Inbound (peer -> us) encryption key material (key || salt for AEAD) and integrity key. */
  encIn: Uint8Array;
  integIn: Uint8Array;
  encOut: Uint8Array;
  integOut: Uint8Array;
}

/**
 * Why a Child SA shares its selectors with others of the same IKE SA, and the
 * data-plane worker it belongs on (architecture §5.1):
 * - fallback: the first Child SA of an RFC 9611 negotiation (§3, §4), for
 *   every worker while per-resource ones are missing; it only receives once
 *   one exists;
 * - per-resource: an RFC 9611 Child SA carrying SA_RESOURCE_INFO, bound to one worker;
 * - parallel: one of several Child SAs with identical selectors (RFC 7296 §2.8)
 *   with a peer that knows neither cloning nor RFC 9611.
 * `worker` absent: the data plane chooses (the fewest SAs of the family).
 */
export interface ChildPlacement {
  kind: 'fallback' | 'per-resource' | 'parallel';
  worker?: number;
  /** Our opaque SA_RESOURCE_INFO identifier (hex), never the worker number (RFC 9611 §7). */
  resourceId?: string;
}

/** How a Child SA is asked for with CREATE_CHILD_SA: PFS, and a per-worker placement. */
export interface ChildCreateOptions {
  pfs?: boolean;
  placement?: ChildPlacement;
  /** The random part a handoff drew for the Child SA's inbound SPI (arrival-spi.ts). */
  spiRandom?: number;
}

let nextChildId = 1;

export class ChildSa {
  readonly id = nextChildId++;
  private currentState: ChildSaState = 'installed';
  readonly createdAt: number;
  /**
   * The peer initiated the exchange that created it (we were its responder):
   * the peer has it only once our response arrives (the data plane lets it
   * send once the peer has it, dataplane/handover.ts).
   */
  peerCreated = false;
  /** Per-worker placement of a Child SA that shares its selectors (RFC 9611, RFC 7296 §2.8); kept across rekeys. */
  placement: ChildPlacement | undefined;
  /** The id of the Child SA this one rekeyed (RFC 7296 §1.3.3): it takes over that one's outbound traffic. */
  replacesId: number | undefined;

  constructor(
    /** The IKE SA that manages it; changes when that IKE SA is rekeyed (not when cloned). */
    public ike: IkeSa,
    readonly name: string,
    /** Our inbound SPI (the peer sends ESP with it). */
    readonly spiIn: number,
    /** The peer's inbound SPI (we send ESP with it). */
    readonly spiOut: number,
    readonly suite: NegotiatedSuite,
    public keys: ChildKeyMaterial | undefined,
    readonly localTs: TrafficSelector[],
    readonly remoteTs: TrafficSelector[],
    /** ESP travels in UDP (RFC 3948) because a NAT was detected or the peer requires it; MOBIKE may change it. */
    public udpEncap: boolean,
    now: number,
  ) {
    this.createdAt = now;
  }

  get state(): ChildSaState {
    return this.currentState;
  }

  /** Change state against CHILD_SA_TRANSITIONS; false (and a warning) for an illegal change, which is not made. */
  setState(to: ChildSaState, log?: Logger): boolean {
    if (!changeState(CHILD_SA_TRANSITIONS, { ike: this.ike.id, child: this.id }, this.currentState, to, log)) return false;
    this.currentState = to;
    return true;
  }

  /** Zeroise key material (architecture §4.5): after hand-off to the data plane and on delete. */
  wipeKeys(): void {
    if (!this.keys) return;
    wipe(this.keys.encIn, this.keys.integIn, this.keys.encOut, this.keys.integOut);
    this.keys = undefined;
  }
}

export function spiHex(spi: number): string {
  return spi.toString(16).padStart(8, '0');
}
