// An IKE SA: SPIs, negotiated suite, keys, message-ID state, the exchange in
// flight and the response cache, and the Child SAs it created. Owned by the
// IKE engine on the main thread; exchanges mutate it only after a message has
// been authenticated (architecture §4.3).
import type { IkeKeys } from '../crypto/keys.js';
import { wipeIkeKeys } from '../crypto/keys.js';
import type { KeyExchange } from '../crypto/keyexchange.js';
import type { SkProtector } from '../crypto/sk.js';
import { wipe } from '../crypto/random.js';
import type { Identity } from '../identity.js';
import type { TimerHandle } from './clock.js';
import type { ChildSa } from './child-sa.js';
import type { ConnectionPolicy } from './policy.js';
import type { NegotiatedSuite } from './proposals.js';
import type { Endpoint } from './transport.js';
import type { InitiatorExchange } from './exchange.js';

export type IkeSaState =
  | 'connecting' // IKE_SA_INIT sent or answered, not yet authenticated
  | 'authenticating' // IKE_AUTH in flight
  | 'established'
  | 'deleting'
  | 'dead';

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
}

let nextIkeId = 1;

/**
 * A response kept for retransmissions of the request it answered (RFC 7296
 * §2.1: a retransmitted request is byte-identical, and gets the same response).
 */
export interface CachedResponse {
  messageId: number;
  bytes: Uint8Array;
  /** SHA-256 of the request it answered: only a copy of that request gets it again. */
  requestDigest: Uint8Array;
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
  state: IkeSaState = 'connecting';
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
  peerMobike = false;
  peerClone = false;
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
  /** Virtual IP the peer assigned us, or we assigned the peer (RFC 7296 §2.19). */
  virtualIp: string | undefined;
  peerVirtualIp: string | undefined;

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
  destroy(): void {
    this.state = 'dead';
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

export function spi64Hex(spi: Uint8Array): string {
  return Buffer.from(spi.buffer, spi.byteOffset, spi.byteLength).toString('hex');
}
