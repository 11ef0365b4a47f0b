// The IKE engine's message layer (architecture §2.1): receive and decode each
// datagram, find its IKE SA, check message IDs, answer retransmitted requests
// from the response cache, classify a request by its exchange type and
// payloads and hand it to the responder half of its exchange, and run our own
// requests one at a time with retransmission. Bytes in, bytes out: no sockets
// here (architecture §2), so two engines can be wired together in memory.
//
// The SAs live in the SA table (sa-table.ts); exchanges (exchanges/) and the
// lifecycle helpers see the engine only through IkeContext (context.ts).
//
// Concurrency: one engine runs on the main thread and is the only owner of its
// IkeSa/ChildSa objects. Exchanges change SA state only after the message that
// asks for it has been authenticated (architecture §4.3); every unauthenticated byte
// that does not lead anywhere is a counted drop.
import { EventEmitter } from 'node:events';
import { ExchangeType, HeaderFlag, NotifyType, exchangeName } from '../wire/constants.js';
import { decodeMessage, type IkeMessage } from '../wire/message.js';
import type { Payload } from '../wire/payloads.js';
import { createCookieSecret } from '../crypto/cookie.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { silentLogger, type Logger } from '../log.js';
import { systemClock, type Clock } from './clock.js';
import type { DropReason, EngineEvents, EngineStats, IkeContext, IkeEngineOptions, InitiateOptions, MessageTrace, RedirectHooks } from './context.js';
import { DEFAULT_HALF_OPEN_PRESSURE_TIMEOUT, DEFAULT_HALF_OPEN_TIMEOUT, DEFAULT_LIMITS, DEFAULT_MOBILITY, DEFAULT_PORTS, DEFAULT_RETRANSMIT } from './defaults.js';
import type { EngineLimits, MobilityOptions, RetransmitPolicy } from './defaults.js';
import { IkeSa, spi64Hex, type ChildCreateOptions, type ChildSa, type InitiatorExchange, type ResponderResult } from './ike-sa.js';
import type { KeyLogSink } from './keylog.js';
import type { ConnectionPolicy } from './policy.js';
import { fallBackToSmallerFragments, sealOutgoing } from './fragmentation.js';
import { FragmentReassembler, isFragmentMessage } from './fragments.js';
import { cachedResponse, resendResponse, sendSealed } from './response-cache.js';
import { classifyRequest, type RequestKind } from './requests.js';
import { SaTable } from './sa-table.js';
import type { ChildSpiRequest } from './child-spi.js';
import { countExchange, newEngineStats } from './engine-stats.js';
import type { Datagram, Endpoint, SendFn } from './transport.js';
import { errorNotify, notify } from './payload-builders.js';
import { IkeSaInitInitiator, rejectInitRequest, respondIkeSaInit } from './exchanges/ike-init.js';
import { IkeAuthInitiator, authenticatedPeerOf, respondIkeAuth, startRemainingChildren, waitEstablished } from './exchanges/ike-auth.js';
import { createChildSa, respondCreateChildSa } from './exchanges/child-create.js';
import { ChildRekeyInitiator, rekeyChildSa, respondChildRekey } from './exchanges/child-rekey.js';
import { rekeyIkeSa, respondIkeRekey } from './exchanges/ike-rekey.js';
import { cloneIkeSa, respondIkeClone } from './exchanges/ike-clone.js';
import { holdForResources } from './answer-preparation.js';
import { noteCreateChildSaRefusal } from './refusals.js';
import { awaitsRedirectDelete } from './redirect.js';
import { DeleteIkeInitiator, DeleteSpisInitiator, closeChildSa, closeIkeSa, respondIkeDelete, respondInformational } from './exchanges/delete.js';
import { checkLiveness } from './exchanges/liveness.js';
import { failover, localAddressesChanged, moveIkeSa, relocate } from './exchanges/mobike.js';
import { RekeyCollisions } from './collisions.js';
import { DeletionAudit, type InvalidSpiVerdict } from './deletion.js';
import { LifetimeManager, type ChildUsage, type UsageVerdict } from './lifetimes.js';
import { LivenessMonitor } from './liveness.js';
import { NatKeepalive } from './nat-keepalive.js';

export type { EngineLimits, MobilityOptions, RetransmitPolicy } from './defaults.js';
export { DEFAULT_LIMITS, DEFAULT_RETRANSMIT } from './defaults.js';
export type { DropReason, EngineEvents, EngineStats, IkeEngineOptions, MessageTrace } from './context.js';

export class IkeEngine extends EventEmitter<EngineEvents> implements IkeContext {
  readonly policies: ConnectionPolicy[];
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly log: Logger;
  readonly limits: EngineLimits;
  readonly retransmit: RetransmitPolicy;
  readonly ports: { ike: number; nat: number };
  readonly keyLog: KeyLogSink | undefined;
  readonly halfOpenTimeout: number;
  readonly mobility: MobilityOptions;
  readonly redirect: RedirectHooks;
  /** SA lifecycle: exchange collisions, lifetimes, liveness, NAT keepalives, deletion audit. */
  readonly collisions: RekeyCollisions;
  readonly lifetimes: LifetimeManager;
  readonly liveness: LivenessMonitor;
  readonly keepalive: NatKeepalive;
  readonly deletion: DeletionAudit;
  readonly stats: EngineStats = newEngineStats();
  /** IKE SAs, Child SAs, half-open SAs, sessions and the peer index. */
  readonly table: SaTable;
  /** Received IKE fragments in reassembly (RFC 7383 §2.6). */
  readonly fragments: FragmentReassembler;
  /** The COOKIE secret (RFC 7296 §2.6), rotated by the gateway. */
  cookieSecret: ReturnType<typeof createCookieSecret>;

  private readonly sendFn: SendFn;
  private readonly trace: MessageTrace | undefined;
  private readonly localAddressFor: (remote: string) => string;
  private readonly localAddressList: () => string[];
  /** A cluster node's fencing of requests and answers on the clones it owns (control/cluster). */
  private readonly fencing: Pick<IkeEngineOptions, 'holdRequest' | 'mayAnswer' | 'holdResponse'>;

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
    this.ports = opts.ports ?? { ...DEFAULT_PORTS };
    this.keyLog = opts.keyLog;
    this.halfOpenTimeout = opts.halfOpenTimeout ?? DEFAULT_HALF_OPEN_TIMEOUT;
    const halfOpenPressureTimeout = Math.min(this.halfOpenTimeout, opts.halfOpenPressureTimeout ?? DEFAULT_HALF_OPEN_PRESSURE_TIMEOUT);
    this.localAddressFor = opts.localAddressFor ?? ((remote) => (remote.includes(':') ? '::' : '0.0.0.0'));
    this.localAddressList = opts.localAddresses ?? (() => []);
    this.fencing = { holdRequest: opts.holdRequest, mayAnswer: opts.mayAnswer, holdResponse: opts.holdResponse };
    this.mobility = { ...DEFAULT_MOBILITY, ...opts.mobility };
    this.redirect = opts.redirect ?? {};
    this.cookieSecret = createCookieSecret(this.random);
    const { clock, random, log, keyLog, halfOpenTimeout } = this;
    const deps = { clock, random, log, keyLog, halfOpenTimeout, halfOpenPressureTimeout, limits: this.limits, evictions: this.stats.halfOpenEvictions, spiPrefix: opts.spiPrefix ?? 0 };
    this.table = new SaTable({ ...deps, events: this, isHeld: (spi) => this.deletion.isHeld(spi), childSpiPlacement: opts.childSpiPlacement, peerResources: opts.peerResources });
    this.collisions = new RekeyCollisions(this);
    this.lifetimes = new LifetimeManager(this, opts.lifecycle);
    this.liveness = new LivenessMonitor(this, opts.lifecycle);
    this.keepalive = new NatKeepalive(this, opts.sendKeepalive);
    this.deletion = new DeletionAudit(this, opts.lifecycle);
    this.fragments = new FragmentReassembler(this, opts.reassembly);
    this.on('ike-rekeyed', () => this.stats.rekeys.ike++);
  }

  // ------------------------------------------------------- the SA table

  get sas(): Map<string, IkeSa> { return this.table.sas; }
  get halfOpen(): Map<string, IkeSa> { return this.table.halfOpen; }
  get authenticatedInits(): Map<string, IkeSa> { return this.table.authenticatedInits; }
  get childrenBySpi(): Map<number, ChildSa> { return this.table.childrenBySpi; }
  get reservedSpis(): Set<number> { return this.table.reservedSpis; }
  ikeSas(): IkeSa[] { return this.table.ikeSas(); }
  findIkeSa(id: number | string): IkeSa | undefined { return this.table.findIkeSa(id); }
  halfOpenCount(): number { return this.table.halfOpenCount(); }
  halfOpenFrom(source: string): number { return this.table.halfOpenFrom(source); }
  expireHalfOpenUnderPressure(): void { this.table.expireUnderPressure(); }
  refusesHalfOpen(source: string): boolean { return this.table.refusesHalfOpen(source); }
  makeRoomForHalfOpen(source: string): void { this.table.makeRoomForHalfOpen(source); }
  sessionMembers(sessionId: number): IkeSa[] { return this.table.sessionMembers(sessionId); }
  peerIkeSaCount(sa: IkeSa): number { return this.table.peerIkeSaCount(sa); }
  peerChildCount(sa: IkeSa): number { return this.table.peerChildCount(sa); }
  hasCapacity(opts: { replacing?: boolean } = {}): boolean { return this.table.hasCapacity(this.limits.maxIkeSas, opts); }
  newIkeSpi(): Uint8Array { return this.table.newIkeSpi(); }
  reserveIkeSpi(spi: Uint8Array): void { this.table.reserveIkeSpi(spi); }
  releaseIkeSpi(spi: Uint8Array): void { this.table.releaseIkeSpi(spi); }
  newChildSpi(request?: ChildSpiRequest): number { return this.table.newChildSpi(request); }
  registerResponderSa(sa: IkeSa, halfOpenKey: string): void { this.table.registerResponderSa(sa, halfOpenKey, (s, r) => this.deleteIkeSa(s, r)); }
  markEstablished(sa: IkeSa): void { this.table.markEstablished(sa); }
  addChild(child: ChildSa): void { this.table.addChild(child); }
  removeChild(child: ChildSa, reason: string): void { this.table.removeChild(child, reason); }
  deleteIkeSa(sa: IkeSa, reason: string): void { this.table.deleteIkeSa(sa, reason); }
  leaseVirtualIp(sa: IkeSa, family?: 4 | 6, wanted?: Uint8Array): { address: string; bytes: Uint8Array } | undefined { return this.table.leaseVirtualIp(sa, family, wanted); }
  installImported(sa: IkeSa): void { this.table.installImported(sa); }

  /**
   * Install the IKE SA a rekey or clone exchange created (RFC 7296 §2.18,
   * RFC 7791 §5.2). After a rekey, queued work moves over (§2.8) and the rekey
   * initiator deletes the old IKE SA (§2.18).
   */
  adoptSuccessor(old: IkeSa, created: IkeSa, clone: boolean): void {
    this.table.installSuccessor(old, created, clone);
    if (clone) return;
    this.collisions.moveQueuedWork(old, created);
    if (created.isInitiator) this.queueExchange(old, new DeleteIkeInitiator(this, () => {}));
  }

  policy(name: string): ConnectionPolicy | undefined {
    return this.policies.find((p) => p.name === name);
  }

  /** Our local addresses now (for ADDITIONAL_*_ADDRESS and failover). */
  localAddresses(): string[] {
    return this.localAddressList();
  }

  // ------------------------------------ initiating: each exchange's module starts it

  /**
   * Establish an IKE SA (and the connection's Child SAs) for policy `name`.
   * Resolves when IKE_AUTH has completed; rejects when the attempt fails.
   */
  initiate(name: string, opts: InitiateOptions = {}): Promise<IkeSa> {
    const policy = this.policy(name);
    if (!policy) return Promise.reject(new Error(`no connection named "${name}"`));
    const remoteAddr = opts.remote?.address ?? policy.remoteAddrs.find((a) => a !== '%any');
    if (!remoteAddr) return Promise.reject(new Error(`connection "${name}" has no remote address to initiate to`));
    const remote: Endpoint = opts.remote ?? { address: remoteAddr, port: policy.remotePort };
    const local: Endpoint = opts.local ?? { address: policy.localAddrs[0] ?? this.localAddressFor(remote.address), port: this.ports.ike };
    const sa = new IkeSa('initiator', policy, local, remote, this.newIkeSpi(), new Uint8Array(8), this.clock.now());
    sa.redirectTrail = opts.redirectTrail;
    this.table.addInitiating(sa);
    this.log.info({ ike: sa.id, conn: name, remote: `${remote.address}:${remote.port}` }, 'initiating IKE SA');
    const done = this.waitEstablished(sa);
    this.queueExchange(sa, new IkeSaInitInitiator(this));
    return done;
  }

  /** Resolves when `sa` reaches 'established', rejects when it dies first. */
  waitEstablished(sa: IkeSa): Promise<IkeSa> { return waitEstablished(this, sa); }

  /** After IKE_SA_INIT: IKE_AUTH goes first, ahead of anything queued meanwhile. */
  startIkeAuth(sa: IkeSa): void {
    sa.queue.unshift(new IkeAuthInitiator(this));
  }

  /** Children beyond the first are created with CREATE_CHILD_SA once the IKE SA is up. */
  startRemainingChildren(sa: IkeSa): void { startRemainingChildren(this, sa); }

  /** Create an additional Child SA on an established IKE SA (CREATE_CHILD_SA, RFC 7296 §1.3.1). */
  createChildSa(sa: IkeSa, childName: string, opts: ChildCreateOptions = {}): Promise<ChildSa> { return createChildSa(this, sa, childName, opts); }

  /** Tell the peer to drop a Child SA we will not use (RFC 7296 §2.21.2). */
  deleteUnusableChild(sa: IkeSa, spiIn: number): void {
    this.queueExchange(sa, new DeleteSpisInitiator([spiIn]));
  }

  /** Rekey a Child SA (RFC 7296 §1.3.3); the old one is deleted once the new one is up. */
  rekeyChildSa(child: ChildSa, opts: { pfs?: boolean } = {}): Promise<ChildSa> { return rekeyChildSa(this, child, opts); }

  /** Rekey an IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2); resolves with the successor. */
  rekeyIkeSa(sa: IkeSa): Promise<IkeSa> { return rekeyIkeSa(this, sa); }

  /** Clone an IKE SA (RFC 7791 §5.2); rejects with `err.notify` NO_ADDITIONAL_SAS or TEMPORARY_FAILURE when refused (§5.3). */
  cloneIkeSa(sa: IkeSa): Promise<IkeSa> { return cloneIkeSa(this, sa); }

  /** Delete a Child SA with an INFORMATIONAL exchange (RFC 7296 §1.4.1). */
  closeChildSa(child: ChildSa): Promise<void> { return closeChildSa(this, child); }

  /** Delete an IKE SA and its Child SAs with an INFORMATIONAL exchange (RFC 7296 §1.4.1). */
  closeIkeSa(sa: IkeSa): Promise<void> { return closeIkeSa(this, sa); }

  /** Liveness check: an empty INFORMATIONAL request (RFC 7296 §1.4, §2.4). Resolves true if answered. */
  checkLiveness(sa: IkeSa): Promise<boolean> { return checkLiveness(this, sa); }

  /** MOBIKE (RFC 4555 §3.5): move an IKE SA we originally initiated to other addresses; see exchanges/mobike.ts. */
  moveIkeSa(sa: IkeSa, to: { local: string; remote?: string }): Promise<IkeSa> { return moveIkeSa(this, sa, to); }

  /** Our addresses changed (RFC 4555 §3.5, §3.6): move, return home, announce; see exchanges/mobike.ts. */
  localAddressesChanged(): void {
    localAddressesChanged(this);
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

  /** Stop every timer and forget all SAs (no messages are sent). */
  shutdown(): void {
    for (const sa of [...this.sas.values()]) this.deleteIkeSa(sa, 'shutdown');
    this.liveness.stop();
    this.deletion.stop();
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
  kick(sa: IkeSa): void {
    if (sa.outstanding || sa.resync || sa.state === 'dead' || (sa.queue.length > 0 && this.fencing.holdRequest?.(sa))) return;
    const exchange = sa.queue.shift();
    if (!exchange) return;
    this.transmit(sa, exchange, sa.nextRequestId++);
  }

  private transmit(sa: IkeSa, exchange: InitiatorExchange, messageId: number): void {
    let sealed: ReturnType<typeof sealOutgoing>;
    try {
      const payloads = exchange.build(sa);
      this.trace?.({ direction: 'out', sa, exchangeType: exchange.exchangeType, response: false, messageId, payloads });
      sealed = sealOutgoing(sa, exchange.exchangeType, messageId, false, payloads);
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
    if (exchange.exchangeType === ExchangeType.IKE_SA_INIT) sa.initRequest = sealed.bytes;
    sa.outstanding = { messageId, ...sealed, tries: 0, timer: undefined, exchange };
    this.log.debug({ ike: sa.id, exchange: exchange.name, mid: messageId }, 'sending request');
    sendSealed(this, sa.local, sa.remote, sealed);
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
      if (out.tries >= rt.tries && failover(this, sa)) {
        // RFC 4555 §3.5, §3.10: the path is dead but another one may work; the request goes there.
        out.tries = 0;
        sendSealed(this, sa.local, sa.remote, out);
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
        countExchange(this.stats, out.exchange.exchangeType, 'initiator', false);
        if (sa.state === 'established') this.emit('peer-dead', sa);
        out.exchange.abort?.(sa, reason);
        this.deleteIkeSa(sa, reason);
        return;
      }
      fallBackToSmallerFragments(this, sa, out);
      out.tries++;
      this.stats.retransmits++;
      sendSealed(this, sa.local, sa.remote, out);
      this.armRetransmit(sa);
    });
  }

  // -------------------------------------------------------------- receiving

  /** Entry point for every IKE datagram (port 500, or 4500 after the non-ESP marker). Never throws. */
  receive(d: Datagram): void {
    this.stats.received++;
    this.contained(() => this.dispatch(d));
  }

  /** Handling of one message (as it arrives, or a held request again): never throws. */
  private contained(handle: () => void): void {
    try {
      handle();
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
      // Counted ok when it made a half-open SA; a refusal or a COOKIE challenge counts as failed.
      const halfOpen = this.table.halfOpen.size;
      respondIkeSaInit(this, msg, d);
      countExchange(this.stats, ExchangeType.IKE_SA_INIT, 'responder', this.table.halfOpen.size > halfOpen);
      return;
    }
    // RFC 7296 §3.1: our SPI is the responder SPI when the sender is the original initiator.
    const ourSpi = fromOriginalInitiator ? h.spiR : h.spiI;
    const sa = this.table.sas.get(spi64Hex(ourSpi));
    if (!sa) {
      // A retransmitted request of an exchange that deleted the SA: its response again (RFC 7296 §2.1).
      const gone = isResponse ? undefined : this.table.deletedResponse(spi64Hex(ourSpi), h.messageId);
      if (gone) return resendResponse(this, gone, d, `${spi64Hex(ourSpi)} mid ${h.messageId}`);
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
      if (sa.resync?.(msg, d)) return; // a probe's answer (request-resync.ts)
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
      const opened = this.fragments.open(sa, msg, true);
      if (!opened) return;
      if (!opened.ok) return this.countDrop(opened.error.reason === 'syntax' ? 'syntax' : 'decrypt', `${exchangeName(h.exchangeType)} response`);
      payloads = opened.value;
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
    // An exchange failed when its response carries an error notify (RFC 7296 §3.10.1: types below 16384),
    // or left the SA dead, unless it was an INFORMATIONAL: deleting the IKE SA is what that one is for.
    const ok = errorNotify(payloads) === undefined && (sa.state !== 'dead' || h.exchangeType === ExchangeType.INFORMATIONAL);
    countExchange(this.stats, h.exchangeType, 'initiator', ok);
    if (ok && out.exchange instanceof ChildRekeyInitiator) this.stats.rekeys.child++;
    this.kick(sa);
  }

  private handleRequest(sa: IkeSa, msg: IkeMessage, d: Datagram, prepared?: Payload[]): void {
    const h = msg.header;
    if (this.fencing.mayAnswer?.(sa) === false) return this.countDrop('fenced', `${exchangeName(h.exchangeType)} mid ${h.messageId}`);
    // A retransmitted request gets the cached response, without processing (RFC 7296 §2.1).
    if (sa.lastResponse && h.messageId === sa.lastResponse.messageId) {
      const fragment = isFragmentMessage(msg) ? this.fragments.answersRetransmission(sa, msg) : undefined;
      return resendResponse(this, sa.lastResponse, d, `${exchangeName(h.exchangeType)} mid ${h.messageId}`, fragment);
    }
    // RFC 7296 §1.4, §1.3: INFORMATIONAL and CREATE_CHILD_SA exchanges MUST ONLY occur after
    // the initial exchanges. Until IKE_AUTH has authenticated the peer, SK keys prove only that
    // someone ran IKE_SA_INIT with us, so nothing but IKE_AUTH may touch the SA (architecture §4.3):
    // no response, no message-ID step, no address follow, no liveness credit. 'connecting' is a
    // half-open responder (or an initiator before IKE_AUTH), 'authenticating' an initiator with
    // IKE_AUTH in flight; 'deleting' SAs were established (closeIkeSa kills the others at once).
    if ((sa.state === 'connecting' || sa.state === 'authenticating') && h.exchangeType !== ExchangeType.IKE_AUTH && !awaitsRedirectDelete(sa, h.exchangeType)) {
      return this.countDrop('unsupported-exchange', `${exchangeName(h.exchangeType)} before IKE_AUTH completed`);
    }
    if (h.messageId !== sa.peerRequestId) return this.countDrop('message-id', `expected ${sa.peerRequestId}, got ${h.messageId}`);
    const opened = prepared ? { ok: true as const, value: prepared } : this.fragments.open(sa, msg, false);
    if (!opened) return;
    if (!opened.ok) {
      if (opened.error.reason !== 'syntax') return this.countDrop('decrypt', exchangeName(h.exchangeType));
      // Authenticated but malformed inside: answer INVALID_SYNTAX (RFC 7296 §2.21.3).
      sa.peerRequestId++;
      this.sendResponse(sa, h.exchangeType, h.messageId, [notify(opened.error.notify || NotifyType.INVALID_SYNTAX, opened.error.data)], d);
      return;
    }
    const payloads = opened.value;
    const kind = classifyRequest(sa, h.exchangeType, payloads);
    if (!kind || (sa.redirectedAway && kind !== 'ike-delete')) return this.countDrop('unsupported-exchange', exchangeName(h.exchangeType));
    const peer = () => (kind === 'ike-auth' ? authenticatedPeerOf(this, sa, payloads) : sa.peerKey);
    if (holdForResources(this.table.peerResources, this, sa, h.messageId, kind, payloads, peer, () => this.contained(() => this.handleRequest(sa, msg, d, payloads)))) return;
    sa.peerRequestId++;
    this.followPeer(sa, d);
    this.liveness.heard(sa);
    this.trace?.({ direction: 'in', sa, exchangeType: h.exchangeType, response: false, messageId: h.messageId, payloads });
    const result = this.collisions.guard(sa, kind, payloads) ?? this.respond(kind, sa, payloads, d);
    if (h.exchangeType === ExchangeType.CREATE_CHILD_SA) noteCreateChildSaRefusal(this, sa, payloads, result.payloads);
    const ok = errorNotify(result.payloads) === undefined;
    countExchange(this.stats, h.exchangeType, 'responder', ok);
    if (ok && kind === 'child-rekey') this.stats.rekeys.child++;
    if (sa.state !== 'dead' || result.after) this.sendResponse(sa, h.exchangeType, h.messageId, result.payloads, d);
    result.after?.();
  }

  /** The responder half for each kind of request (strongSwan's process_request). */
  private respond(kind: RequestKind, sa: IkeSa, payloads: Payload[], d: Datagram): ResponderResult {
    switch (kind) {
      case 'ike-auth':
        return respondIkeAuth(this, sa, payloads);
      case 'child-create':
      case 'child-rekey':
      case 'ike-rekey':
      case 'ike-clone':
        return respondCreateChildSa(this, sa, payloads, kind);
      case 'ike-delete':
        return respondIkeDelete(this, sa);
      case 'informational':
        return respondInformational(this, sa, payloads, d);
    }
  }

  /** Rekeying and cloning requests (RFC 7296 §1.3.2, §1.3.3; RFC 7791 §5.2), after the checks every CREATE_CHILD_SA gets. */
  respondRekey(sa: IkeSa, payloads: Payload[], ikeRekey: boolean): ResponderResult {
    if (!ikeRekey) return respondChildRekey(this, sa, payloads);
    return classifyRequest(sa, ExchangeType.CREATE_CHILD_SA, payloads) === 'ike-clone' ? respondIkeClone(this, sa, payloads) : respondIkeRekey(this, sa, payloads);
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
      relocate(this, sa, d.local, d.remote);
      return;
    }
    sa.remote = { ...d.remote };
    sa.local = { ...d.local };
  }

  private sendResponse(sa: IkeSa, exchangeType: number, messageId: number, payloads: Payload[], d: Datagram): void {
    if (!sa.protectOut) return;
    this.trace?.({ direction: 'out', sa, exchangeType, response: true, messageId, payloads });
    const response = (sa.lastResponse = cachedResponse(messageId, sealOutgoing(sa, exchangeType, messageId, true, payloads), d));
    if (!this.fencing.holdResponse?.(sa, () => sendSealed(this, d.local, d.remote, response))) sendSealed(this, d.local, d.remote, response);
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
}
