// Exchange collisions (RFC 7296 §2.25) and simultaneous rekeying (§2.8.1,
// §2.8.2): both ends rekey the same Child SA or the same IKE SA at once, a
// rekey crosses a delete, a Child SA task crosses an IKE SA rekey.
//
// The rule for simultaneous rekeys is the same for both kinds of SA: each end
// answers the other's request as usual and notes the collision; once its own
// response arrives it holds both exchanges' nonces, and "the SA created with
// the lowest of the four nonces" is closed by the end that initiated it
// (§2.8.1). Both ends compare the same four byte strings, so both reach the
// same choice without talking about it. The end that initiated the surviving
// SA deletes the replaced one, exactly as in a rekey without collision.
//
// When only one end notices (a request overtaken by the other end's completed
// rekey), the one that did not notice answers TEMPORARY_FAILURE or
// CHILD_SA_NOT_FOUND, or deletes the old SA; the one that did notice then
// adopts the SA it answered for (§2.8.1 second sequence, §2.8.2 last part).
//
// Should the peer not close the redundant SA it is expected to close, we close
// it ourselves after a grace period (the retransmission budget, twice), so
// nothing is left behind whatever the peer does. The same holds for the old SA
// of a plain rekey we answered: the peer should delete it (§2.8, §2.18), and
// if it does not, that SA would otherwise outlive every timer and limit.
//
// Owner: the engine's thread. State lives in WeakMaps keyed by the SA being
// rekeyed, so an SA that goes away takes its record with it.
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../wire/constants.js';
import type { Payload } from '../wire/payloads.js';
import { findPayload } from '../wire/payloads.js';
import { type ChildSa, type IkeSa, type InitiatorExchange, type ResponderResult, spi64Hex, spiHex } from './ike-sa.js';
import type { ExchangeNonces, IkeContext, RekeyCollisionHooks } from './context.js';
import type { TimerHandle } from './clock.js';
import { ChildCreateInitiator } from './exchanges/child-create.js';
import { ChildRekeyInitiator } from './exchanges/child-rekey.js';
import { IkeRekeyInitiator } from './exchanges/ike-rekey.js';
import { DeleteChildInitiator, DeleteSpisInitiator } from './exchanges/delete.js';
import type { RequestKind } from './requests.js';
import { notify } from './payload-builders.js';


/**
 * Octet-by-octet comparison (RFC 7296 §2.8.1): negative when `a` is lower. A
 * nonce that is a prefix of the other is the lower one.
 */
export function compareNonces(a: Uint8Array, b: Uint8Array): number {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array)) throw new TypeError('compareNonces: nonces must be Uint8Arrays');
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function sorted(n: ExchangeNonces): [Uint8Array, Uint8Array] {
  return compareNonces(n[0], n[1]) <= 0 ? [n[0], n[1]] : [n[1], n[0]];
}

/**
 * Whether the SA created by exchange `mine` is the redundant one: the lowest
 * of the four nonces is one of its own (RFC 7296 §2.8.1, §2.8.2). Both ends
 * evaluate this with `mine` and `theirs` swapped and get opposite answers.
 * Equal lowest nonces cannot happen with random nonces; should they, the
 * higher ones decide, and then the exchange started by the IKE SA's original
 * initiator loses, which again gives the two ends opposite answers.
 */
export function losesNonceRule(mine: ExchangeNonces, theirs: ExchangeNonces, mineStartedByOriginalInitiator: boolean): boolean {
  const [myLow, myHigh] = sorted(mine);
  const [theirLow, theirHigh] = sorted(theirs);
  const c = compareNonces(myLow, theirLow);
  if (c !== 0) return c < 0;
  const d = compareNonces(myHigh, theirHigh);
  if (d !== 0) return d < 0;
  return mineStartedByOriginalInitiator;
}

interface Collision<T> {
  /** The SA created by the peer's exchange, which we answered. */
  created: T;
  nonces: ExchangeNonces;
}

function copyNonces(n: ExchangeNonces): ExchangeNonces {
  return [new Uint8Array(n[0]), new Uint8Array(n[1])];
}

/** The IKE SA's own rekey (not a clone) is in flight on `sa`. */
function rekeyingIke(sa: IkeSa): boolean {
  const ex = sa.outstanding?.exchange;
  return ex instanceof IkeRekeyInitiator && !ex.clone;
}

/** A Child SA task (create, rekey, delete) is in flight on `sa` (RFC 7296 §2.25.1, last paragraph). */
function childTaskInFlight(sa: IkeSa): boolean {
  const ex = sa.outstanding?.exchange;
  return ex instanceof ChildCreateInitiator || ex instanceof ChildRekeyInitiator || ex instanceof DeleteChildInitiator || ex instanceof DeleteSpisInitiator;
}

/** Deletes an IKE SA that a simultaneous rekey made redundant (§2.8.2), over that SA itself. */
class RedundantIkeDelete implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (delete redundant IKE SA)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  constructor(private readonly engine: IkeContext) {}

  build(): Payload[] {
    return [{ type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }];
  }

  process(sa: IkeSa): void {
    this.engine.deleteIkeSa(sa, 'redundant after a simultaneous rekey (RFC 7296 §2.8.2)');
  }
}

export class RekeyCollisions implements RekeyCollisionHooks {
  private readonly childCollisions = new WeakMap<ChildSa, Collision<ChildSa>>();
  private readonly ikeCollisions = new WeakMap<IkeSa, Collision<IkeSa>>();
  /** Child SAs the peer is expected to close; ours to close if it does not. */
  private readonly childGrace = new Map<ChildSa, TimerHandle>();

  /** The IKE SA that replaced a rekeyed one after a collision, for our own rekey request that can no longer complete. */
  private readonly survivors = new WeakMap<IkeSa, IkeSa>();
  /** Grace timers of IKE SAs the peer is expected to delete (also in sa.timers, cancelled when it dies). */
  private readonly ikeGrace = new WeakMap<IkeSa, TimerHandle>();
  /** IKE SAs that inherited from a rekey: a grace timer never deletes those. */
  private readonly adopted = new WeakSet<IkeSa>();

  constructor(private readonly engine: IkeContext) {
    engine.on('ike-rekeyed', (_old, successor) => {
      this.adopted.add(successor);
      const t = this.ikeGrace.get(successor);
      if (t) {
        t.cancel();
        successor.timers.delete(t);
        this.ikeGrace.delete(successor);
      }
    });
    engine.on('child-down', (child) => {
      const t = this.childGrace.get(child);
      if (t) {
        t.cancel();
        this.childGrace.delete(child);
      }
    });
  }

  /** How long the peer gets to close an SA it should close: twice its retransmission budget. */
  get graceMs(): number {
    const rt = this.engine.retransmit;
    let total = 0;
    for (let k = 0; k <= rt.tries; k++) total += Math.min(rt.timeout * rt.base ** k, rt.maxTimeout);
    return 2 * total;
  }

  // ------------------------------------------------------------ requests

  /**
   * RFC 7296 §2.25.1 (last paragraph) and §2.25.2: a request that collides
   * with a task of ours in flight and cannot be served now gets
   * TEMPORARY_FAILURE. Returns undefined when the request goes ahead.
   */
  guard(sa: IkeSa, kind: RequestKind, payloads: Payload[]): ResponderResult | undefined {
    if (kind === 'ike-auth' || kind === 'ike-delete' || kind === 'informational' || sa.state !== 'established' || !sa.outstanding) return undefined;
    if (!findPayload(payloads, PayloadType.SA)) return undefined;
    const ikeProposal = kind === 'ike-rekey' || kind === 'ike-clone';
    if (kind === 'ike-rekey' && childTaskInFlight(sa)) {
      this.engine.log.info({ ike: sa.id }, 'IKE SA rekey request while a Child SA task is in flight: TEMPORARY_FAILURE (RFC 7296 §2.25.1)');
      return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
    }
    if (!ikeProposal && rekeyingIke(sa)) {
      this.engine.log.info({ ike: sa.id }, 'Child SA request while rekeying the IKE SA: TEMPORARY_FAILURE (RFC 7296 §2.25.2)');
      return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
    }
    return undefined;
  }

  // ------------------------------------------------------------ Child SAs

  /** We answered the peer's rekey of `old` with `created` (responder side). */
  childRekeyAnswered(old: ChildSa, created: ChildSa, nonces: ExchangeNonces): void {
    if (old.state === 'rekeying') {
      // §2.25.1: we are rekeying it too; decide with the nonces once our response is in (§2.8.1).
      this.childCollisions.set(old, { created, nonces: copyNonces(nonces) });
      this.engine.log.info({ ike: old.ike.id, child: old.id, spiIn: spiHex(old.spiIn) }, 'simultaneous Child SA rekey');
      return;
    }
    // The initiator deletes the old SA; until then it still takes inbound traffic (§2.8).
    // A peer that never does would leave it installed, keys and all: we close it after the grace period.
    old.setState('rekeyed', this.engine.log);
    this.expectPeerToClose(old);
  }

  /**
   * Our rekey of `old` produced `created`. Returns the Child SA that replaces
   * `old` (ours, or the peer's when a collision made ours redundant).
   */
  childRekeyCompleted(old: ChildSa, created: ChildSa, nonces: ExchangeNonces): ChildSa {
    const c = this.childCollisions.get(old);
    this.childCollisions.delete(old);
    if (!c || c.created.state === 'deleted' || c.created.state === 'deleting') {
      // §2.8: the initiator of the rekey deletes the old Child SA once the new one is in place.
      old.setState('rekeyed', this.engine.log);
      void this.engine.closeChildSa(old);
      return created;
    }
    const weLose = losesNonceRule(nonces, c.nonces, old.ike.isInitiator);
    const survivor = weLose ? c.created : created;
    this.engine.log.info(
      { ike: old.ike.id, old: spiHex(old.spiIn), ours: spiHex(created.spiIn), theirs: spiHex(c.created.spiIn), survivor: spiHex(survivor.spiIn) },
      'simultaneous Child SA rekey resolved by nonces (RFC 7296 §2.8.1)',
    );
    if (weLose) {
      // Ours holds the lowest nonce: we close it; the peer initiated the survivor and deletes `old`.
      if (old.state === 'rekeying' || old.state === 'installed') old.setState('rekeyed', this.engine.log);
      void this.engine.closeChildSa(created);
      this.expectPeerToClose(old);
    } else {
      old.setState('rekeyed', this.engine.log);
      void this.engine.closeChildSa(old);
      this.expectPeerToClose(c.created);
    }
    this.engine.emit('rekey-collision', 'child', survivor);
    return survivor;
  }

  /**
   * Our rekey of `old` failed with an error notify. When we had answered the
   * peer's rekey of the same SA, the peer's went through and ours is moot
   * (§2.8.1, second sequence): returns the peer's SA as the replacement.
   */
  childRekeyFailed(old: ChildSa): ChildSa | undefined {
    const c = this.childCollisions.get(old);
    this.childCollisions.delete(old);
    if (!c || c.created.state === 'deleted' || c.created.state === 'deleting') return undefined;
    this.engine.log.info({ ike: old.ike.id, child: old.id, survivor: spiHex(c.created.spiIn) }, "simultaneous Child SA rekey: the peer's rekey went through");
    if (old.state === 'rekeying' || old.state === 'installed') {
      old.setState('rekeyed', this.engine.log);
      this.expectPeerToClose(old);
    }
    this.engine.emit('rekey-collision', 'child', c.created);
    return c.created;
  }

  /** Close `child` ourselves unless the peer has done so within the grace period. */
  private expectPeerToClose(child: ChildSa): void {
    if (child.state === 'deleted' || this.childGrace.has(child)) return;
    const timer = this.engine.clock.schedule(this.graceMs, () => {
      this.childGrace.delete(child);
      if (child.state === 'deleted' || child.state === 'deleting' || child.ike.state === 'dead') return;
      this.engine.log.warn({ ike: child.ike.id, child: child.id, spiIn: spiHex(child.spiIn) }, 'the peer did not close a Child SA after a rekey: closing it');
      void this.engine.closeChildSa(child);
    });
    this.childGrace.set(child, timer);
  }

  // ------------------------------------------------------------- IKE SAs

  /** We answered the peer's rekey (or clone) request on `old`; `created` is the new IKE SA. */
  ikeRekeyAnswered(old: IkeSa, created: IkeSa, clone: boolean, nonces: ExchangeNonces): void {
    if (clone || !rekeyingIke(old)) {
      this.engine.adoptSuccessor(old, created, clone);
      // §2.18: the rekey initiator deletes `old`. Should it never do so, `old` would stay here
      // with its keys, outside every lifetime and liveness check and past the per-peer limits:
      // it is forgotten after the grace period (strongSwan likewise deletes it after 90 s).
      if (!clone) this.expectPeerToCloseIke(old, 'the peer did not delete the IKE SA it rekeyed (RFC 7296 §2.18)');
      return;
    }
    // §2.25.2: we are rekeying it too. The new SA exists (the peer may use it), but
    // which one inherits the Child SAs is decided when our own response arrives.
    this.register(created);
    this.ikeCollisions.set(old, { created, nonces: copyNonces(nonces) });
    this.expectPeerToCloseIke(created);
    this.engine.log.info({ ike: old.id, theirs: created.id }, 'simultaneous IKE SA rekey');
  }

  /**
   * Our rekey of `old` produced `created`. Returns the IKE SA that replaces
   * `old` and has inherited its Child SAs.
   */
  ikeRekeyCompleted(old: IkeSa, created: IkeSa, nonces: ExchangeNonces): IkeSa {
    const c = this.ikeCollisions.get(old);
    this.ikeCollisions.delete(old);
    if (!c || c.created.state === 'dead') {
      this.engine.adoptSuccessor(old, created, false);
      return created;
    }
    const weLose = losesNonceRule(nonces, c.nonces, old.isInitiator);
    const survivor = weLose ? c.created : created;
    this.engine.log.info(
      { ike: old.id, ours: spi64Hex(created.localSpi), theirs: spi64Hex(c.created.localSpi), survivor: survivor.id },
      'simultaneous IKE SA rekey resolved by nonces (RFC 7296 §2.8.2)',
    );
    if (weLose) {
      // Ours holds the lowest nonce: we delete it; the peer's inherits the Child SAs and the peer deletes `old`.
      this.register(created);
      this.engine.queueExchange(created, new RedundantIkeDelete(this.engine));
      this.engine.adoptSuccessor(old, c.created, false);
      this.expectPeerToCloseIke(old);
    } else {
      this.engine.adoptSuccessor(old, created, false);
    }
    this.engine.emit('rekey-collision', 'ike', survivor);
    return survivor;
  }

  /**
   * Our rekey of `old` failed (TEMPORARY_FAILURE: the peer had already rekeyed
   * it, §2.8.2). When we had answered the peer's rekey, that one is the
   * successor: it inherits the Child SAs. Returns it, or undefined.
   */
  ikeRekeyFailed(old: IkeSa): IkeSa | undefined {
    const c = this.ikeCollisions.get(old);
    this.ikeCollisions.delete(old);
    if (!c || c.created.state === 'dead' || old.state === 'dead') return undefined;
    this.engine.log.info({ ike: old.id, survivor: c.created.id }, "simultaneous IKE SA rekey: the peer's rekey went through");
    this.engine.adoptSuccessor(old, c.created, false);
    this.expectPeerToCloseIke(old);
    this.engine.emit('rekey-collision', 'ike', c.created);
    return c.created;
  }

  /**
   * The peer deletes `old` while we hold the SA of its rekey, which we
   * answered during our own: the peer did not notice the collision, and its
   * SA is the successor (§2.8.2). Moves the Child SAs before `old` goes.
   */
  beforePeerDeletesIke(old: IkeSa): void {
    const c = this.ikeCollisions.get(old);
    this.ikeCollisions.delete(old);
    if (!c || c.created.state === 'dead') return;
    this.engine.log.info({ ike: old.id, survivor: c.created.id }, 'the peer deletes the IKE SA we both rekeyed: its successor inherits the Child SAs');
    this.survivors.set(old, c.created);
    this.engine.adoptSuccessor(old, c.created, false);
    this.engine.emit('rekey-collision', 'ike', c.created);
  }

  /**
   * Our rekey of `old` was cut short (the peer deleted `old`). When the peer's
   * own rekey of it took over (beforePeerDeletesIke), that SA is the answer.
   */
  ikeRekeyAborted(old: IkeSa): IkeSa | undefined {
    const s = this.survivors.get(old);
    return s && s.state !== 'dead' ? s : undefined;
  }

  /**
   * Queued work moves from a rekeyed IKE SA to its successor (RFC 7296 §2.8):
   * it manages the Child SAs now. A queued rekey of the old SA is moot.
   */
  moveQueuedWork(old: IkeSa, successor: IkeSa): void {
    const queued = old.queue.splice(0);
    for (const ex of queued) {
      if (ex instanceof IkeRekeyInitiator && !ex.clone) {
        ex.abort?.(old, 'superseded: the IKE SA has been rekeyed');
        continue;
      }
      this.engine.queueExchange(successor, ex);
    }
  }

  /** Make an IKE SA created by a rekey reachable without giving it the Child SAs. */
  private register(sa: IkeSa): void {
    const engine = this.engine;
    engine.releaseIkeSpi(sa.localSpi);
    engine.sas.set(spi64Hex(sa.localSpi), sa);
    sa.setState('established', this.engine.log);
    sa.establishedAt = engine.clock.now();
  }

  /** Delete `sa` ourselves unless it is gone or has become the successor within the grace period. */
  private expectPeerToCloseIke(sa: IkeSa, reason = 'redundant after a simultaneous rekey; the peer did not delete it (RFC 7296 §2.8.2)'): void {
    this.ikeGrace.get(sa)?.cancel();
    const timer = this.engine.clock.schedule(this.graceMs, () => {
      sa.timers.delete(timer);
      this.ikeGrace.delete(sa);
      // Never an SA that holds Child SAs or became a successor (possibly of an SA without Child SAs).
      if (sa.state === 'dead' || sa.children.length > 0) return;
      if (sa.state === 'established' && this.adopted.has(sa)) return;
      // The peer has forgotten it without a Delete (or never completed it): a Delete would go
      // unanswered for a whole retransmission budget, so it is forgotten locally.
      this.engine.log.warn({ ike: sa.id }, 'the peer did not delete an IKE SA made redundant by a rekey: forgetting it');
      this.engine.deleteIkeSa(sa, reason);
    });
    sa.timers.add(timer);
    this.ikeGrace.set(sa, timer);
  }
}
