// The IKE engine: the SA table, message-ID bookkeeping, retransmission, the
// response cache and the dispatch of each received message to the exchange
// module that handles it. Bytes in, bytes out: no sockets here (architecture §2), so
// two engines can be wired together in memory.
//
// Concurrency: one engine runs on the main thread and is the only owner of its
// IkeSa/ChildSa objects. Exchanges change SA state only after the message that
// asks for it has been authenticated (architecture §4.3); every unauthenticated byte
// that does not lead anywhere is a counted drop.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ExchangeType, HeaderFlag, NotifyType, exchangeName } from '../wire/constants.js';
import { ipToBytes } from '../wire/ip.js';
import { decodeMessage } from '../wire/message.js';
import type { IkeMessage } from '../wire/message.js';
import type { Payload } from '../wire/payloads.js';
import type { RandomSource } from '../crypto/random.js';
import { systemRandom } from '../crypto/random.js';
import { createCookieSecret } from '../crypto/cookie.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import type { ChildSa } from './child-sa.js';
import { spiHex } from './child-sa.js';
import type { InitiatorExchange, ResponderResult } from './exchange.js';
import { IkeSa, spi64Hex } from './ike-sa.js';
import type { CachedResponse } from './ike-sa.js';
import type { ConnectionPolicy } from './policy.js';
import { openMessage, sealMessage } from './protect.js';
import type { Datagram, Endpoint, SendFn } from './transport.js';
import type { KeyLogSink } from './keylog.js';
import { IkeSaInitInitiator, rejectInitRequest, respondIkeSaInit } from './exchanges/ike-init.js';
import { IkeAuthInitiator, respondIkeAuth } from './exchanges/ike-auth.js';
import { ChildCreateInitiator, respondCreateChildSa } from './exchanges/child-create.js';
import { DeleteChildInitiator, DeleteIkeInitiator, DeleteSpisInitiator, LivenessInitiator, respondInformational } from './exchanges/informational.js';
import { ChildRekeyInitiator, IkeRekeyInitiator, respondRekeyRequest } from './exchanges/rekey.js';
import { VirtualIpPool } from './virtual-ip-pool.js';
import { AddressListInitiator, UpdateSaAddressesInitiator, pathAffinity, rankedPaths } from './exchanges/mobike.js';
import { notify } from './payload-builders.js';
import { RekeyCollisions } from './collisions.js';
import { LifetimeManager } from './lifetimes.js';
import type { ChildLimitCause, ChildUsage, LifetimeOptions, UsageVerdict } from './lifetimes.js';
import { LivenessMonitor } from './liveness.js';
import type { LivenessOptions } from './liveness.js';
import { NatKeepalive } from './nat-keepalive.js';
import type { SendKeepalive } from './nat-keepalive.js';
import { DeletionAudit } from './deletion.js';
import type { DeletionOptions, InvalidSpiVerdict } from './deletion.js';
import { noteCreateChildSaRefusal } from './refusals.js';

export interface MobilityOptions {
  /** Check that a MOBIKE peer receives at its new address before moving its Child SAs (RFC 4555 §3.7). */
  returnRoutability: boolean;
}

export interface EngineLimits {
  /** Half-open IKE SAs before new IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6). */
  halfOpenCookieThreshold: number;
  /** Half-open IKE SAs past which IKE_SA_INIT requests are dropped. */
  halfOpenMax: number;
  /** Child SAs over all IKE SAs of one authenticated peer (RFC 7791 §8). */
  childSasPerPeer: number;
  /** IKE SAs (clones included) per authenticated peer (RFC 7791 §5.3, §8). */
  ikeSasPerPeer: number;
  /** IKE SAs in total; past this, clones get TEMPORARY_FAILURE (RFC 7791 §5.3). */
  maxIkeSas: number;
}

export interface RetransmitPolicy {
  /** First retransmission after this many ms (RFC 7296 §2.1). */
  timeout: number;
  /** Each further wait is multiplied by this. */
  base: number;
  /** Retransmissions before the peer is declared dead (RFC 7296 §2.4). */
  tries: number;
  maxTimeout: number;
}

/** Digest of a request whose response is cached (RFC 7296 §2.1: retransmissions are byte-identical). */
function requestDigest(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/** How long, and for how many IKE SAs, the last response of a deleted IKE SA is kept. */
const RECENTLY_DELETED_MS = 60_000;
const RECENTLY_DELETED_MAX = 1024;

export const DEFAULT_LIMITS: EngineLimits = {
  halfOpenCookieThreshold: 32,
  halfOpenMax: 1024,
  childSasPerPeer: 64,
  ikeSasPerPeer: 16,
  maxIkeSas: 100_000,
};

export const DEFAULT_RETRANSMIT: RetransmitPolicy = { timeout: 1000, base: 1.8, tries: 5, maxTimeout: 30_000 };

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
  /** Local address to use towards a peer when the policy names none. */
  localAddressFor?: (remote: string) => string;
  /** Sends a NAT keepalive (one octet 0xFF, RFC 3948 §2.3) on the NAT-T socket; without it none are sent. */
  sendKeepalive?: SendKeepalive;
  /** Lifecycle tunables (control/ike/lifetimes.ts, liveness.ts, deletion.ts). */
  lifecycle?: Partial<LifetimeOptions & LivenessOptions & DeletionOptions>;
  /** Our usable local addresses right now (MOBIKE: address lists and path failover, RFC 4555 §3.4, §3.10). */
  localAddresses?: () => string[];
  /** MOBIKE responder policy (RFC 4555 §3.7): check return routability before moving Child SAs (default true). */
  mobility?: Partial<MobilityOptions>;
  /**
   * Observer of every message's payloads (inner payloads for encrypted ones),
   * after building and after authentication: debugging and protocol tests.
   */
  trace?: MessageTrace;
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
  | 'cache-mismatch';

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
}

type Responder = (engine: IkeEngine, sa: IkeSa, payloads: Payload[], d: Datagram) => ResponderResult;

const RESPONDERS: Record<number, Responder> = {
  [ExchangeType.IKE_AUTH]: respondIkeAuth,
  [ExchangeType.CREATE_CHILD_SA]: respondCreateChildSa,
  [ExchangeType.INFORMATIONAL]: respondInformational,
};

export class IkeEngine extends EventEmitter<EngineEvents> {
  readonly policies: ConnectionPolicy[];
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly log: Logger;
  readonly limits: EngineLimits;
  readonly retransmit: RetransmitPolicy;
  readonly ports: { ike: number; nat: number };
  readonly keyLog: KeyLogSink | undefined;
  readonly halfOpenTimeout: number;
  /** SA lifecycle: exchange collisions, lifetimes, liveness, NAT keepalives, deletion audit. */
  readonly collisions: RekeyCollisions;
  readonly lifetimes: LifetimeManager;
  readonly liveness: LivenessMonitor;
  readonly keepalive: NatKeepalive;
  readonly deletion: DeletionAudit;
  readonly stats: EngineStats = { received: 0, sent: 0, retransmits: 0, responsesFromCache: 0, drops: {}, refusals: {} };

  /** IKE SAs by our own SPI (hex). */
  readonly sas = new Map<string, IkeSa>();
  /** Half-open responder SAs by peer address and initiator SPI, to spot retransmitted IKE_SA_INIT requests. */
  readonly halfOpen = new Map<string, IkeSa>();
  /** IKE_SA_INIT keys (peer address, port, SPIi) of SAs past IKE_AUTH: late copies are dropped. */
  readonly authenticatedInits = new Map<string, IkeSa>();
  /**
   * The last response of IKE SAs deleted in the last minute, so a peer whose
   * copy of the (Delete) response was lost gets it again instead of silence.
   * Ciphertext only; bounded.
   */
  private readonly recentlyDeleted = new Map<string, CachedResponse & { until: number }>();

  private rememberDeleted(sa: IkeSa): void {
    if (!sa.lastResponse) return;
    const now = this.clock.now();
    for (const [k, v] of this.recentlyDeleted) if (v.until <= now || this.recentlyDeleted.size >= RECENTLY_DELETED_MAX) this.recentlyDeleted.delete(k);
    this.recentlyDeleted.set(spi64Hex(sa.localSpi), { ...sa.lastResponse, until: now + RECENTLY_DELETED_MS });
  }

  /**
   * A request with the message ID of `cached`: the cached response again, but
   * only for a byte-identical retransmission of the request it answered (RFC
   * 7296 §2.1), never for any datagram that merely names the SPIs and message
   * ID from a spoofed source (reflection, amplification).
   */
  private resendResponse(cached: CachedResponse, d: Datagram, what: string): void {
    const digest = requestDigest(d.bytes);
    if (!digest.every((v, i) => v === cached.requestDigest[i])) return this.countDrop('cache-mismatch', what);
    this.stats.responsesFromCache++;
    this.sendDatagram(d.local, d.remote, cached.bytes);
  }

  /** Child SAs by our inbound SPI. */
  readonly childrenBySpi = new Map<number, ChildSa>();
  /** The COOKIE secret (RFC 7296 §2.6), rotated by the gateway. */
  cookieSecret: ReturnType<typeof createCookieSecret>;

  private readonly sendFn: SendFn;
  private readonly trace: MessageTrace | undefined;
  /** Live IKE SAs per session (RFC 7791 §8 accounting). */
  private readonly sessions = new Map<number, Set<IkeSa>>();
  private readonly localAddressFor: (remote: string) => string;
  private readonly localAddressList: () => string[];
  readonly mobility: MobilityOptions;

  constructor(opts: IkeEngineOptions) {
    super();
    this.policies = opts.policies;
    this.sendFn = opts.send;
    this.trace = opts.trace;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? systemRandom;
    this.log = opts.log ?? silentLogger();
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.retransmit = { ...DEFAULT_RETRANSMIT, ...opts.retransmit };
    this.ports = opts.ports ?? { ike: 500, nat: 4500 };
    this.keyLog = opts.keyLog;
    this.halfOpenTimeout = opts.halfOpenTimeout ?? 30_000;
    this.localAddressFor = opts.localAddressFor ?? (() => '0.0.0.0');
    this.localAddressList = opts.localAddresses ?? (() => []);
    this.mobility = { returnRoutability: true, ...opts.mobility };
    this.cookieSecret = createCookieSecret(this.random);
    this.collisions = new RekeyCollisions(this);
    this.lifetimes = new LifetimeManager(this, opts.lifecycle);
    this.liveness = new LivenessMonitor(this, opts.lifecycle);
    this.keepalive = new NatKeepalive(this, opts.sendKeepalive);
    this.deletion = new DeletionAudit(this, opts.lifecycle);
  }

  // ---------------------------------------------------------------- lookups

  policy(name: string): ConnectionPolicy | undefined {
    return this.policies.find((p) => p.name === name);
  }

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

  // ------------------------------------------------------------ initiating

  /**
   * Establish an IKE SA (and the connection's Child SAs) for policy `name`.
   * Resolves when IKE_AUTH has completed; rejects when the attempt fails.
   */
  initiate(name: string, opts: { remote?: Endpoint; local?: Endpoint } = {}): Promise<IkeSa> {
    const policy = this.policy(name);
    if (!policy) return Promise.reject(new Error(`no connection named "${name}"`));
    const remoteAddr = opts.remote?.address ?? policy.remoteAddrs.find((a) => a !== '%any');
    if (!remoteAddr) return Promise.reject(new Error(`connection "${name}" has no remote address to initiate to`));
    const remote: Endpoint = opts.remote ?? { address: remoteAddr, port: policy.remotePort };
    const local: Endpoint = opts.local ?? { address: policy.localAddrs[0] ?? this.localAddressFor(remote.address), port: this.ports.ike };
    const sa = new IkeSa('initiator', policy, local, remote, this.newIkeSpi(), new Uint8Array(8), this.clock.now());
    this.sas.set(spi64Hex(sa.spiI), sa);
    this.log.info({ ike: sa.id, conn: name, remote: `${remote.address}:${remote.port}` }, 'initiating IKE SA');
    const done = this.waitEstablished(sa);
    this.queueExchange(sa, new IkeSaInitInitiator(this));
    return done;
  }

  /** Resolves when `sa` reaches 'established', rejects when it dies first. */
  waitEstablished(sa: IkeSa): Promise<IkeSa> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        this.off('ike-up', onUp);
        this.off('ike-failed', onFail);
        this.off('ike-down', onFail);
      };
      const onUp = (s: IkeSa) => {
        if (s !== sa) return;
        cleanup();
        resolve(sa);
      };
      const onFail = (s: IkeSa, reason: string) => {
        if (s !== sa) return;
        cleanup();
        reject(new Error(reason));
      };
      this.on('ike-up', onUp);
      this.on('ike-failed', onFail);
      this.on('ike-down', onFail);
    });
  }

  /** Create an additional Child SA on an established IKE SA (CREATE_CHILD_SA, RFC 7296 §1.3.1). */
  createChildSa(sa: IkeSa, childName: string, opts: { pfs?: boolean } = {}): Promise<ChildSa> {
    const child = sa.policy.children.find((c) => c.name === childName);
    if (!child) return Promise.reject(new Error(`connection "${sa.name}" has no child "${childName}"`));
    return new Promise((resolve, reject) => {
      this.queueExchange(sa, new ChildCreateInitiator(this, child, { pfs: opts.pfs ?? true, resolve, reject }));
    });
  }

  /** Delete a Child SA with an INFORMATIONAL exchange (RFC 7296 §1.4.1). */
  closeChildSa(child: ChildSa): Promise<void> {
    if (child.state === 'deleted') return Promise.resolve();
    return new Promise((resolve) => {
      child.state = 'deleting';
      this.queueExchange(child.ike, new DeleteChildInitiator(this, child, resolve));
    });
  }

  /** Delete an IKE SA and its Child SAs with an INFORMATIONAL exchange (RFC 7296 §1.4.1). */
  closeIkeSa(sa: IkeSa): Promise<void> {
    if (sa.state === 'dead') return Promise.resolve();
    return new Promise((resolve) => {
      if (sa.state !== 'established') {
        this.deleteIkeSa(sa, 'closed before established');
        resolve();
        return;
      }
      sa.state = 'deleting';
      // A delete goes ahead of anything queued (RFC 7296 §2.25: nothing else matters once it is sent);
      // what was queued fails now instead of never settling.
      for (const dropped of sa.queue.splice(0)) dropped.abort?.(sa, 'IKE SA is being deleted');
      this.queueExchange(sa, new DeleteIkeInitiator(this, resolve));
    });
  }

  /** Liveness check: an empty INFORMATIONAL request (RFC 7296 §1.4). Resolves true if answered. */
  checkLiveness(sa: IkeSa): Promise<boolean> {
    return new Promise((resolve) => this.queueExchange(sa, new LivenessInitiator(resolve)));
  }

  // -------------------------------------------------------------- requests

  queueExchange(sa: IkeSa, exchange: InitiatorExchange): void {
    if (sa.state === 'dead') {
      exchange.abort?.(sa, 'IKE SA is gone');
      return;
    }
    sa.queue.push(exchange);
    this.kick(sa);
  }

  /** Start the next queued exchange if none is in flight (window size 1, RFC 7296 §2.3). */
  private kick(sa: IkeSa): void {
    if (sa.outstanding || sa.state === 'dead') return;
    const exchange = sa.queue.shift();
    if (!exchange) return;
    this.transmit(sa, exchange, sa.nextRequestId++);
  }

  private transmit(sa: IkeSa, exchange: InitiatorExchange, messageId: number): void {
    let bytes: Uint8Array;
    try {
      const payloads = exchange.build(sa);
      this.trace?.({ direction: 'out', sa, exchangeType: exchange.exchangeType, response: false, messageId, payloads });
      bytes = sealMessage(sa, exchange.exchangeType, messageId, false, payloads);
    } catch (err) {
      this.log.error({ ike: sa.id, exchange: exchange.name, err: String(err) }, 'could not build request');
      // Nothing was sent: the message ID goes back, or the peer would wait for it forever (RFC 7296 §2.2).
      if (sa.nextRequestId === messageId + 1) sa.nextRequestId = messageId;
      exchange.abort?.(sa, String(err));
      // Without an established SA there is nothing left to run later exchanges on.
      if (sa.state !== 'established') this.deleteIkeSa(sa, `could not build ${exchange.name}: ${String(err)}`);
      else this.kick(sa);
      return;
    }
    // RFC 7296 §2.15: AUTH signs our first message as sent.
    if (exchange.exchangeType === ExchangeType.IKE_SA_INIT) sa.initRequest = bytes;
    sa.outstanding = { messageId, bytes, tries: 0, timer: undefined, exchange };
    this.log.debug({ ike: sa.id, exchange: exchange.name, mid: messageId }, 'sending request');
    this.sendDatagram(sa.local, sa.remote, bytes);
    this.armRetransmit(sa);
  }


  /** Exponential back-off with a bounded number of tries (RFC 7296 §2.1, §2.4). */
  private armRetransmit(sa: IkeSa): void {
    const out = sa.outstanding;
    if (!out) return;
    const rt = this.retransmit;
    const delay = Math.min(rt.timeout * rt.base ** out.tries, rt.maxTimeout);
    out.timer = this.clock.schedule(delay, () => {
      if (sa.outstanding !== out) return;
      if (out.tries >= rt.tries && this.failover(sa)) {
        // RFC 4555 §3.5, §3.10: the path is dead but another one may work; the request goes there.
        out.tries = 0;
        this.sendDatagram(sa.local, sa.remote, out.bytes);
        this.armRetransmit(sa);
        return;
      }
      if (out.tries >= rt.tries) {
        // RFC 7296 §2.21.1: an unauthenticated error we kept waiting past is the reason now.
        const unusable = out.unusable;
        const reason = unusable
          ? `${unusable} (no usable response to ${out.exchange.name} after ${out.tries} retransmissions)`
          : `no response to ${out.exchange.name} after ${out.tries} retransmissions`;
        this.log.warn({ ike: sa.id, exchange: out.exchange.name }, 'peer not answering, deleting IKE SA');
        sa.outstanding = undefined;
        if (sa.state === 'established') this.emit('peer-dead', sa);
        out.exchange.abort?.(sa, reason);
        this.deleteIkeSa(sa, reason);
        return;
      }
      out.tries++;
      this.stats.retransmits++;
      this.sendDatagram(sa.local, sa.remote, out.bytes);
      this.armRetransmit(sa);
    });
  }

  // -------------------------------------------------------------- receiving

  /** Entry point for every IKE datagram (port 500, or 4500 after the non-ESP marker). Never throws. */
  receive(d: Datagram): void {
    this.stats.received++;
    try {
      this.dispatch(d);
    } catch (err) {
      // A bug, not a peer's fault: keep the process and the other SAs alive.
      this.log.error({ err: String(err), stack: (err as Error)?.stack }, 'internal error while processing a message');
      this.countDrop('malformed', 'internal error');
    }
  }

  private dispatch(d: Datagram): void {
    const decoded = decodeMessage(d.bytes);
    if (!decoded.ok) {
      this.countDrop('malformed', decoded.error.message);
      rejectInitRequest(this, d, decoded.error);
      return;
    }
    const msg = decoded.value;
    const h = msg.header;
    const isResponse = (h.flags & HeaderFlag.RESPONSE) !== 0;
    const fromOriginalInitiator = (h.flags & HeaderFlag.INITIATOR) !== 0;

    if (h.exchangeType === ExchangeType.IKE_SA_INIT && !isResponse) {
      if (!fromOriginalInitiator) return this.countDrop('bad-flags', 'IKE_SA_INIT request without the I flag');
      respondIkeSaInit(this, msg, d);
      return;
    }
    // RFC 7296 §3.1: our SPI is the responder SPI when the sender is the original initiator.
    const ourSpi = fromOriginalInitiator ? h.spiR : h.spiI;
    const sa = this.sas.get(spi64Hex(ourSpi));
    if (!sa) {
      // A retransmitted request of an exchange that deleted the SA: its response again (RFC 7296 §2.1).
      const gone = this.recentlyDeleted.get(spi64Hex(ourSpi));
      if (gone && !isResponse && h.messageId === gone.messageId && gone.until > this.clock.now()) {
        return this.resendResponse(gone, d, `${spi64Hex(ourSpi)} mid ${h.messageId}`);
      }
      return this.countDrop('unknown-spi', spi64Hex(ourSpi));
    }
    if (fromOriginalInitiator === sa.isInitiator) return this.countDrop('bad-flags', 'I flag does not match our role');
    if (isResponse) this.handleResponse(sa, msg, d);
    else this.handleRequest(sa, msg, d);
  }

  private handleResponse(sa: IkeSa, msg: IkeMessage, d: Datagram): void {
    const h = msg.header;
    const out = sa.outstanding;
    if (!out || out.messageId !== h.messageId || out.exchange.exchangeType !== h.exchangeType) {
      return this.countDrop('unexpected-response', `${exchangeName(h.exchangeType)} mid ${h.messageId}`);
    }
    let payloads: Payload[];
    if (h.exchangeType === ExchangeType.IKE_SA_INIT) {
      payloads = msg.payloads;
      // RFC 7296 §2.21.1: IKE_SA_INIT responses are unauthenticated, so an error
      // (or a malformed answer) may be forged: drop it and keep trying. The request
      // stays outstanding on its retransmission timer; the reason is reported only
      // if no usable response comes before the retransmission budget runs out.
      const unusable = out.exchange.unusable?.(sa, payloads, d.bytes);
      if (unusable !== undefined) {
        out.unusable = unusable;
        return this.countDrop('unusable-init-response', unusable);
      }
    } else {
      const opened = openMessage(sa, msg);
      if (!opened.ok) return this.countDrop(opened.reason === 'syntax' ? 'syntax' : 'decrypt', `${exchangeName(h.exchangeType)} response`);
      payloads = opened.payloads;
    }
    out.timer?.cancel();
    sa.outstanding = undefined;
    this.liveness.heard(sa);
    this.trace?.({ direction: 'in', sa, exchangeType: h.exchangeType, response: true, messageId: h.messageId, payloads });
    const result = out.exchange.process(sa, payloads, d.bytes);
    if (result === 'retry' && sa.state !== 'dead') {
      this.transmit(sa, out.exchange, out.messageId);
      return;
    }
    this.kick(sa);
  }

  private handleRequest(sa: IkeSa, msg: IkeMessage, d: Datagram): void {
    const h = msg.header;
    // A retransmitted request gets the cached response, without processing (RFC 7296 §2.1).
    if (sa.lastResponse && h.messageId === sa.lastResponse.messageId) {
      return this.resendResponse(sa.lastResponse, d, `${exchangeName(h.exchangeType)} mid ${h.messageId}`);
    }
    // RFC 7296 §1.4, §1.3: INFORMATIONAL and CREATE_CHILD_SA exchanges MUST ONLY occur after
    // the initial exchanges. Until IKE_AUTH has authenticated the peer, SK keys prove only that
    // someone ran IKE_SA_INIT with us, so nothing but IKE_AUTH may touch the SA (architecture §4.3):
    // no response, no message-ID step, no address follow, no liveness credit. 'connecting' is a
    // half-open responder (or an initiator before IKE_AUTH), 'authenticating' an initiator with
    // IKE_AUTH in flight; 'deleting' SAs were established (closeIkeSa kills the others at once).
    if ((sa.state === 'connecting' || sa.state === 'authenticating') && h.exchangeType !== ExchangeType.IKE_AUTH) {
      return this.countDrop('unsupported-exchange', `${exchangeName(h.exchangeType)} before IKE_AUTH completed`);
    }
    if (h.messageId !== sa.peerRequestId) return this.countDrop('message-id', `expected ${sa.peerRequestId}, got ${h.messageId}`);
    const opened = openMessage(sa, msg);
    if (!opened.ok) {
      if (opened.reason !== 'syntax') return this.countDrop('decrypt', exchangeName(h.exchangeType));
      // Authenticated but malformed inside: answer INVALID_SYNTAX (RFC 7296 §2.21.3).
      sa.peerRequestId++;
      this.sendResponse(sa, h.exchangeType, h.messageId, [notify(opened.notify || NotifyType.INVALID_SYNTAX, opened.data)], d);
      return;
    }
    const responder = RESPONDERS[h.exchangeType];
    if (!responder) return this.countDrop('unsupported-exchange', exchangeName(h.exchangeType));
    sa.peerRequestId++;
    this.followPeer(sa, d);
    this.liveness.heard(sa);
    this.trace?.({ direction: 'in', sa, exchangeType: h.exchangeType, response: false, messageId: h.messageId, payloads: opened.payloads });
    const result = this.collisions.guard(sa, h.exchangeType, opened.payloads) ?? responder(this, sa, opened.payloads, d);
    if (h.exchangeType === ExchangeType.CREATE_CHILD_SA) noteCreateChildSaRefusal(this, sa, opened.payloads, result.payloads);
    if (sa.state !== 'dead' || result.after) this.sendResponse(sa, h.exchangeType, h.messageId, result.payloads, d);
    result.after?.();
  }

  /**
   * Port floating and NAT mapping changes (RFC 7296 §2.23): answer where an
   * authenticated request came from. With MOBIKE, addresses change only through
   * UPDATE_SA_ADDRESSES once the SA is up (RFC 4555 §3.5).
   */
  private followPeer(sa: IkeSa, d: Datagram): void {
    const moving = d.remote.address !== sa.remote.address || d.remote.port !== sa.remote.port || d.local.port !== sa.local.port;
    if (!moving) return;
    if (sa.state === 'established' && (sa.peerMobike || !sa.natRemote)) return;
    if (sa.state === 'established') {
      // A NAT mapping changed: the Child SAs (the data plane) follow like after a MOBIKE move.
      this.relocate(sa, d.local, d.remote);
      return;
    }
    sa.remote = { ...d.remote };
    sa.local = { ...d.local };
  }

  private sendResponse(sa: IkeSa, exchangeType: number, messageId: number, payloads: Payload[], d: Datagram): void {
    if (!sa.protectOut) return;
    this.trace?.({ direction: 'out', sa, exchangeType, response: true, messageId, payloads });
    const bytes = sealMessage(sa, exchangeType, messageId, true, payloads);
    sa.lastResponse = { messageId, bytes, requestDigest: requestDigest(d.bytes) };
    this.sendDatagram(d.local, d.remote, bytes);
  }

  sendDatagram(local: Endpoint, remote: Endpoint, bytes: Uint8Array): void {
    this.stats.sent++;
    this.keepalive.noteSent(local, remote);
    this.sendFn({ bytes, local, remote });
  }

  countDrop(reason: DropReason, detail: string): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + 1;
    this.log.debug({ reason, detail }, 'dropped IKE message');
    this.emit('drop', reason, detail);
  }

  // --------------------------------------------------------- SA bookkeeping

  newIkeSpi(): Uint8Array {
    for (;;) {
      const spi = this.random(8);
      const hex = spi64Hex(spi);
      if (spi.some((b) => b !== 0) && !this.sas.has(hex) && !this.reservedIkeSpis.has(hex)) return spi;
    }
  }

  /** IKE SPIs offered in a rekey or clone exchange still in flight. */
  private readonly reservedIkeSpis = new Set<string>();

  reserveIkeSpi(spi: Uint8Array): void {
    this.reservedIkeSpis.add(spi64Hex(spi));
  }

  releaseIkeSpi(spi: Uint8Array): void {
    this.reservedIkeSpis.delete(spi64Hex(spi));
  }

  /**
   * Room for another IKE SA (RFC 7791 §5.3 "short of resources" -> TEMPORARY_FAILURE).
   * `replacing`: the new SA replaces a live one (a rekey), so it may take that one's place.
   */
  hasCapacity(opts: { replacing?: boolean } = {}): boolean {
    return this.sas.size - (opts.replacing ? 1 : 0) < this.limits.maxIkeSas;
  }

  /** Established IKE SAs by authenticated peer: per-peer limits without scanning every SA (RFC 7791 §8). */
  private readonly byPeer = new Map<string, Set<IkeSa>>();

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

  /** IKE SAs of the authenticated peer of `sa`, `sa` included (RFC 7791 §8). */
  peerIkeSaCount(sa: IkeSa): number {
    return (sa.peerKey && this.byPeer.get(sa.peerKey)?.size) || 0;
  }

  /**
   * Install the IKE SA a rekey or clone exchange created (RFC 7296 §2.18,
   * RFC 7791 §5.2). A rekey moves the Child SAs to it and retires `old` (the
   * rekey initiator deletes it); a clone leaves `old` and its children alone.
   */
  adoptSuccessor(old: IkeSa, created: IkeSa, clone: boolean): void {
    this.releaseIkeSpi(created.localSpi);
    this.sas.set(spi64Hex(created.localSpi), created);
    this.trackPeer(created);
    created.state = 'established';
    created.establishedAt = this.clock.now();
    this.log.info(
      { ike: created.id, from: old.id, clone, spiI: spi64Hex(created.spiI), spiR: spi64Hex(created.spiR) },
      clone ? 'IKE SA cloned' : 'IKE SA rekeyed',
    );
    if (clone) {
      // The clone takes the lowest position free in its family.
      const taken = new Set(this.sessionMembers(old.sessionId).map((m) => m.familyIndex));
      created.familyIndex = 0;
      while (taken.has(created.familyIndex)) created.familyIndex++;
      this.joinSession(created);
      this.emit('ike-cloned', old, created);
      this.emit('ike-up', created);
      return;
    }
    this.joinSession(created);
    for (const child of old.children) {
      child.ike = created;
      created.children.push(child);
    }
    old.children.length = 0;
    old.state = 'deleting';
    this.emit('ike-rekeyed', old, created);
    // Queued work moves over (§2.8); after our own rekey we delete the old IKE SA (§2.18).
    this.collisions.moveQueuedWork(old, created);
    if (created.isInitiator) this.queueExchange(old, new DeleteIkeInitiator(this, () => {}));
  }

  /** Rekey an IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2); resolves with the successor. */
  rekeyIkeSa(sa: IkeSa): Promise<IkeSa> {
    return new Promise((resolve, reject) => this.queueExchange(sa, new IkeRekeyInitiator(this, { clone: false, resolve, reject })));
  }

  /**
   * Clone an IKE SA (RFC 7791 §5.2): a new, independent IKE SA with the same
   * peer and no Child SAs. Rejects with `err.notify` set to NO_ADDITIONAL_SAS
   * or TEMPORARY_FAILURE when the peer refuses (§5.3).
   */
  cloneIkeSa(sa: IkeSa): Promise<IkeSa> {
    if (!sa.peerClone) return Promise.reject(new Error(`IKE SA ${sa.id}: the peer did not negotiate cloning (RFC 7791 §5.1)`));
    return new Promise((resolve, reject) => this.queueExchange(sa, new IkeRekeyInitiator(this, { clone: true, resolve, reject })));
  }

  /** Rekey a Child SA (RFC 7296 §1.3.3); the old one is deleted once the new one is up. */
  rekeyChildSa(child: ChildSa, opts: { pfs?: boolean } = {}): Promise<ChildSa> {
    return new Promise((resolve, reject) => this.queueExchange(child.ike, new ChildRekeyInitiator(this, child, { pfs: opts.pfs ?? true, resolve, reject })));
  }

  /**
   * The data plane's cumulative counters of Child SA `spiIn`: volume limits
   * (rekey_bytes/rekey_packets soft, life_bytes/life_packets hard, RFC 7296
   * §2.8), liveness (inPackets, §2.4) and NAT keepalives (outPackets, RFC 3948
   * §4). Returns what it caused.
   */
  reportChildUsage(spiIn: number, usage: ChildUsage): UsageVerdict {
    const verdict = this.lifetimes.reportUsage(spiIn, usage);
    const child = this.childrenBySpi.get(spiIn);
    if (child) {
      this.liveness.noteChildUsage(child, usage.inPackets);
      this.keepalive.noteChildUsage(child, usage.outPackets);
    }
    return verdict;
  }

  /** The data plane's outbound sequence numbers of `spiIn` run out (architecture §4.4): rekey now. False without such a Child SA. */
  childRekeyNeeded(spiIn: number): boolean {
    return this.lifetimes.sequenceExhausted(spiIn);
  }

  /** The data plane got ESP with an SPI no Child SA owns, from `remote`: a rate-limited N(INVALID_SPI) (RFC 7296 §2.21.4). */
  reportInvalidSpi(spi: number, remote: Endpoint): InvalidSpiVerdict {
    return this.deletion.reportInvalidSpi(spi, remote);
  }

  /** A fresh inbound ESP SPI: random, >= 256 (RFC 4303 §2.1), unused here. */
  newChildSpi(): number {
    for (;;) {
      const b = this.random(4);
      const spi = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
      if (spi >= 256 && !this.childrenBySpi.has(spi) && !this.reservedSpis.has(spi) && !this.deletion.isHeld(spi)) return spi;
    }
  }

  /** Inbound SPIs offered in a request whose response has not arrived yet. */
  readonly reservedSpis = new Set<number>();

  registerResponderSa(sa: IkeSa, halfOpenKey: string): void {
    this.sas.set(spi64Hex(sa.spiR), sa);
    this.halfOpen.set(halfOpenKey, sa);
    sa.initKey = halfOpenKey;
    const timer = this.clock.schedule(this.halfOpenTimeout, () => {
      if (sa.state === 'connecting' || sa.state === 'authenticating') this.deleteIkeSa(sa, 'half-open IKE SA timed out');
    });
    sa.timers.add(timer);
  }

  /** The IKE SA has authenticated: it leaves the half-open set. */
  markEstablished(sa: IkeSa): void {
    sa.state = 'established';
    sa.establishedAt = this.clock.now();
    if (sa.initKey !== undefined && this.halfOpen.delete(sa.initKey)) {
      // RFC 7296 §2.1: a late copy of its IKE_SA_INIT must not start another SA.
      this.authenticatedInits.set(sa.initKey, sa);
    }
    sa.dropInitMaterial();
    this.joinSession(sa);
    this.trackPeer(sa);
    this.log.info(
      { ike: sa.id, conn: sa.name, spiI: spi64Hex(sa.spiI), spiR: spi64Hex(sa.spiR), remote: `${sa.remote.address}:${sa.remote.port}` },
      'IKE SA established',
    );
    this.emit('ike-up', sa);
  }

  /** Record a negotiated Child SA, tell listeners (the data plane), then wipe the keys the engine held. */
  addChild(child: ChildSa): void {
    child.ike.children.push(child);
    this.childrenBySpi.set(child.spiIn, child);
    this.reservedSpis.delete(child.spiIn);
    this.keyLog?.child(child);
    this.log.info(
      { ike: child.ike.id, child: child.id, childName: child.name, spiIn: spiHex(child.spiIn), spiOut: spiHex(child.spiOut), encap: child.udpEncap },
      'Child SA established',
    );
    this.emit('child-up', child);
    child.wipeKeys();
  }

  /** Forget a Child SA locally (after a Delete exchange, or with its IKE SA). */
  removeChild(child: ChildSa, reason: string): void {
    if (child.state === 'deleted') return;
    child.state = 'deleted';
    const list = child.ike.children;
    const i = list.indexOf(child);
    if (i >= 0) list.splice(i, 1);
    this.childrenBySpi.delete(child.spiIn);
    child.wipeKeys();
    this.log.info({ ike: child.ike.id, child: child.id, spiIn: spiHex(child.spiIn), reason }, 'Child SA deleted');
    this.emit('child-down', child, reason);
  }

  /** Forget an IKE SA and its Child SAs locally, zeroising keys (no message is sent). */
  deleteIkeSa(sa: IkeSa, reason: string): void {
    if (sa.state === 'dead') return;
    const wasEstablished = sa.establishedAt !== undefined;
    for (const child of [...sa.children]) this.removeChild(child, reason);
    const pending = sa.outstanding;
    const queued = [...sa.queue];
    this.sas.delete(spi64Hex(sa.localSpi));
    if (sa.initKey !== undefined) {
      if (this.halfOpen.get(sa.initKey) === sa) this.halfOpen.delete(sa.initKey);
      if (this.authenticatedInits.get(sa.initKey) === sa) this.authenticatedInits.delete(sa.initKey);
    }
    this.rememberDeleted(sa);
    this.untrackPeer(sa);
    this.releaseVirtualIp(sa);
    sa.destroy();
    pending?.exchange.abort?.(sa, reason);
    for (const q of queued) q.abort?.(sa, reason);
    if (wasEstablished) {
      this.log.info({ ike: sa.id, conn: sa.name, reason }, 'IKE SA deleted');
      this.emit('ike-down', sa, reason);
      this.leaveSession(sa);
    } else {
      this.log.warn({ ike: sa.id, conn: sa.name, reason }, 'IKE SA failed');
      this.emit('ike-failed', sa, reason);
    }
  }

  private joinSession(sa: IkeSa): void {
    let members = this.sessions.get(sa.sessionId);
    const fresh = !members;
    if (!members) this.sessions.set(sa.sessionId, (members = new Set()));
    members.add(sa);
    if (fresh) {
      this.log.info({ session: sa.sessionId, peer: sa.peerKey }, 'session up');
      this.emit('session-up', sa.sessionId, sa);
    }
  }

  private leaveSession(sa: IkeSa): void {
    const members = this.sessions.get(sa.sessionId);
    if (!members) return;
    members.delete(sa);
    if (members.size > 0) return;
    this.sessions.delete(sa.sessionId);
    this.log.info({ session: sa.sessionId, peer: sa.peerKey }, 'session down');
    this.emit('session-down', sa.sessionId, sa);
  }

  /** IKE SAs of one session (the original, its clones and successors), oldest first. */
  sessionMembers(sessionId: number): IkeSa[] {
    return [...(this.sessions.get(sessionId) ?? [])];
  }

  /** Child SAs over all IKE SAs with the same authenticated peer (RFC 7791 §8). */
  peerChildCount(sa: IkeSa): number {
    let n = 0;
    for (const other of (sa.peerKey && this.byPeer.get(sa.peerKey)) || []) n += other.children.length;
    return n;
  }

  /** Stop every timer and forget all SAs (no messages are sent). */
  shutdown(): void {
    for (const sa of [...this.sas.values()]) this.deleteIkeSa(sa, 'shutdown');
    this.liveness.stop();
    this.deletion.stop();
  }

  // ------------------------------------------------------------- MOBIKE

  /** Our local addresses now (for ADDITIONAL_*_ADDRESS and failover). */
  localAddresses(): string[] {
    return this.localAddressList();
  }

  /**
   * Move an IKE SA we originally initiated to other addresses (RFC 4555 §3.5):
   * we started the first IKE SA of its series (§1.3), whoever rekeyed or cloned
   * it since. The IKE SA and its Child SAs switch at once, then UPDATE_SA_ADDRESSES
   * tells the peer from the new path. Resolves when the peer has followed.
   */
  moveIkeSa(sa: IkeSa, to: { local: string; remote?: string }): Promise<IkeSa> {
    if (sa.state !== 'established') return Promise.reject(new Error(`IKE SA ${sa.id} is ${sa.state}`));
    if (!sa.mobikeInitiator) return Promise.reject(new Error(`IKE SA ${sa.id}: only the original initiator moves an IKE SA (RFC 4555 §1.3, §3.1)`));
    if (!sa.peerMobike) return Promise.reject(new Error(`IKE SA ${sa.id}: MOBIKE was not negotiated (RFC 4555 §3.2)`));
    const previous = { local: { ...sa.local }, remote: { ...sa.remote } };
    this.relocate(sa, { address: to.local, port: sa.local.port }, { address: to.remote ?? sa.remote.address, port: sa.remote.port });
    return this.announceMove(sa, previous);
  }

  private announceMove(sa: IkeSa, previous: { local: Endpoint; remote: Endpoint }): Promise<IkeSa> {
    return new Promise((resolve, reject) => {
      // §3.5: sent as soon as the window allows, ahead of other queued work.
      sa.queue.unshift(new UpdateSaAddressesInitiator(this, previous, { resolve, reject }));
      this.kick(sa);
    });
  }

  /**
   * Point an IKE SA (and, unless told otherwise, its Child SAs) at new
   * endpoints. No message is sent; MOBIKE exchanges call this.
   */
  relocate(sa: IkeSa, local: Endpoint, remote: Endpoint, opts: { children?: boolean } = {}): void {
    // The peer's address set is the one in use plus the ones it announced (RFC 4555 §3.4): keep it whole,
    // less an address its latest list withdrew (§3.6).
    if (remote.address !== sa.remote.address) {
      const previous = sa.remote.address === sa.peerWithdrawnAddress ? [] : [sa.remote.address];
      sa.peerAdditionalAddresses = [...previous, ...sa.peerAdditionalAddresses.filter((a) => a !== remote.address && a !== sa.remote.address)];
      sa.peerWithdrawnAddress = undefined;
    }
    sa.local = { ...local };
    sa.remote = { ...remote };
    sa.addressGeneration++;
    this.log.info({ ike: sa.id, local: `${local.address}:${local.port}`, remote: `${remote.address}:${remote.port}` }, 'IKE SA moved');
    if (opts.children ?? true) this.emit('ike-moved', sa);
  }

  /**
   * New NAT detection results (RFC 4555 §3.5, §3.8): UDP encapsulation of the Child SAs follows.
   * `emit: false` records the new state without telling the data plane: the
   * MOBIKE responder must not move its Child SAs to an unverified address
   * (§3.7), so its 'ike-moved' comes after the return routability check and
   * carries this encapsulation then.
   */
  updateNat(sa: IkeSa, nat: { natLocal: boolean; natRemote: boolean }, opts: { emit?: boolean } = {}): void {
    const encap = nat.natLocal || nat.natRemote;
    const changed = sa.children.some((c) => c.udpEncap !== encap) || sa.natLocal !== nat.natLocal || sa.natRemote !== nat.natRemote;
    sa.natLocal = nat.natLocal;
    sa.natRemote = nat.natRemote;
    for (const c of sa.children) c.udpEncap = encap;
    if (changed && (opts.emit ?? true)) this.emit('ike-moved', sa);
  }

  /** Whether a MOBIKE peer may use `address` (the connection's remote_addrs; none = any). */
  acceptablePeerAddress(sa: IkeSa, address: string): boolean {
    return sa.policy.remoteAddrs.length === 0 || sa.policy.remoteAddrs.includes(address);
  }

  /** Address pairs tried during the current failover of each IKE SA. */
  private readonly failoverTried = new WeakMap<IkeSa, Set<string>>();

  /**
   * RFC 4555 §3.10: the current path stopped answering; move to the next
   * untried pair of (our address, peer address) of the same family. Returns
   * false when none is left (the IKE SA is then given up).
   */
  private failover(sa: IkeSa): boolean {
    if (!sa.mobikeInitiator || !sa.peerMobike || sa.state !== 'established') return false;
    let tried = this.failoverTried.get(sa);
    if (!tried) this.failoverTried.set(sa, (tried = new Set()));
    tried.add(`${sa.local.address}|${sa.remote.address}`);
    for (const { local, remote } of this.candidatePaths(sa)) {
      if (tried.has(`${local}|${remote}`)) continue;
      this.log.warn({ ike: sa.id, from: `${sa.local.address} -> ${sa.remote.address}`, to: `${local} -> ${remote}` }, 'path failed, trying another (RFC 4555 §3.10)');
      const previous = { local: { ...sa.local }, remote: { ...sa.remote } };
      this.relocate(sa, { address: local, port: sa.local.port }, { address: remote, port: sa.remote.port });
      this.announceMove(sa, previous).then(
        () => this.failoverTried.delete(sa),
        () => undefined,
      );
      return true;
    }
    this.failoverTried.delete(sa);
    return false;
  }

  /** Usable (local, peer) address pairs for an IKE SA, best first (same family; see rankedPaths). */
  private candidatePaths(sa: IkeSa): Array<{ local: string; remote: string }> {
    const v6 = sa.remote.address.includes(':');
    const locals = this.localAddresses().filter((a) => a.includes(':') === v6);
    // An address the peer withdrew from its set (RFC 4555 §3.6) is no path to move to or stay on.
    const peers = [sa.remote.address, ...sa.peerAdditionalAddresses].filter((a) => a.includes(':') === v6 && a !== sa.peerWithdrawnAddress);
    return rankedPaths(locals, peers);
  }

  /**
   * The path an IKE SA we initiated should use now (RFC 4555 §3.5): from its
   * home address when that is up (to the peer address on the same network),
   * else from its current address if still up, else the best pair left.
   * Moves it when that differs from the path in use.
   */
  reevaluatePath(sa: IkeSa): void {
    if (!sa.mobikeInitiator || !sa.peerMobike || sa.state !== 'established') return;
    const paths = this.candidatePaths(sa);
    const pick =
      paths.find((p) => p.local === sa.homeAddress) ?? paths.find((p) => p.local === sa.local.address) ?? paths[0];
    if (!pick || (pick.local === sa.local.address && pick.remote === sa.remote.address)) return;
    // A usable path is left only for one that looks at least as link-local: when our home address
    // returns before the peer's address on that network does (§3.6), we wait for its address list.
    const current = paths.find((p) => p.local === sa.local.address && p.remote === sa.remote.address);
    if (current && pathAffinity(pick) < pathAffinity(current)) return;
    this.moveIkeSa(sa, pick).catch((err: Error) => this.log.warn({ ike: sa.id, reason: err.message }, 'address update failed'));
  }

  /**
   * The address set each IKE SA last sent in an address-list INFORMATIONAL
   * (sorted, joined). RFC 4555 §3.6: the list is an update to send when the set
   * changes; an SA without an entry has announced nothing since IKE_AUTH.
   */
  private readonly announcedAddresses = new WeakMap<IkeSa, string>();

  /**
   * Our addresses changed (RFC 4555 §3.5, §3.6): IKE SAs on an address that
   * went away move to one that is left, SAs whose home address is back move
   * home, and every MOBIKE peer that has not yet been told gets our new
   * address list.
   */
  localAddressesChanged(): void {
    const available = this.localAddresses();
    // The peer's view of our addresses is the IP header plus the list (§3.6), so the whole set is the key.
    const key = [...new Set(available)].sort().join(',');
    for (const sa of this.sas.values()) {
      if (sa.state !== 'established' || !sa.peerMobike) continue;
      const before = sa.addressGeneration;
      // Paths are re-evaluated on every call, the list or not: a home address that came back is
      // moved to (§3.5), and failover (§3.10) picks from localAddresses() itself.
      if (sa.mobikeInitiator) this.reevaluatePath(sa);
      // A move already tells the peer everything it needs; otherwise send our address list (§3.6),
      // but only if it differs from the one this SA last sent: a repeat would be a redundant
      // exchange per SA per notification, and the peer's set would not change.
      if (sa.addressGeneration !== before || this.announcedAddresses.get(sa) === key) continue;
      this.announcedAddresses.set(sa, key);
      this.queueExchange(sa, new AddressListInitiator(this, available));
    }
  }

  // ------------------------------------------------- follow-up exchanges

  /** After IKE_SA_INIT: IKE_AUTH goes first, ahead of anything queued meanwhile. */
  startIkeAuth(sa: IkeSa): void {
    sa.queue.unshift(new IkeAuthInitiator(this));
  }

  /** Children beyond the first are created with CREATE_CHILD_SA once the IKE SA is up. */
  startRemainingChildren(sa: IkeSa): void {
    for (const child of sa.policy.children.slice(1)) {
      this.createChildSa(sa, child.name).catch((err: Error) => {
        this.log.warn({ ike: sa.id, child: child.name, reason: err.message }, 'could not create Child SA');
      });
    }
  }

  /** Tell the peer to drop a Child SA we will not use (RFC 7296 §2.21.2). */
  deleteUnusableChild(sa: IkeSa, spiIn: number): void {
    this.queueExchange(sa, new DeleteSpisInitiator([spiIn]));
  }

  /** Rekeying and cloning requests (RFC 7296 §1.3.2, §1.3.3; RFC 7791 §5.2). */
  respondRekey(sa: IkeSa, payloads: Payload[], ikeRekey: boolean): ResponderResult {
    return respondRekeyRequest(this, sa, payloads, ikeRekey);
  }

  // ----------------------------------------------------------- virtual IPs

  private readonly pools = new Map<string, VirtualIpPool>();

  /** A virtual IP for the (authenticated) peer of `sa` from its connection's pools. */
  leaseVirtualIp(sa: IkeSa): { address: string; bytes: Uint8Array } | undefined {
    for (const cidr of sa.policy.pools) {
      let pool = this.pools.get(cidr);
      if (!pool) this.pools.set(cidr, (pool = new VirtualIpPool(cidr)));
      const address = pool.acquire(sa.peerKey ?? spi64Hex(sa.spiI));
      if (address) return { address, bytes: ipToBytes(address)! };
    }
    return undefined;
  }

  private releaseVirtualIp(sa: IkeSa): void {
    if (!sa.peerVirtualIp || !sa.peerKey) return;
    const stillUsed = [...(this.byPeer.get(sa.peerKey) ?? [])].some((o) => o !== sa && o.peerVirtualIp === sa.peerVirtualIp);
    if (stillUsed) return;
    for (const pool of this.pools.values()) pool.release(sa.peerKey);
  }
}
