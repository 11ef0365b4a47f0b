// Cloning an IKE SA (RFC 7791): a CREATE_CHILD_SA that rekeys the IKE SA with
// N(CLONE_IKE_SA) and keeps the old SA and its Child SAs, so the two IKE SAs
// are fully independent afterwards (own SPIs, keys, message IDs; §5.2). Only
// an IKE SA on which both ends announced CLONE_IKE_SA_SUPPORTED in IKE_AUTH
// is cloned (§5.1); the clone family orchestrator (clone-family.ts) decides
// when.
//
//   Initiator                                   Responder
//   HDR, SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
//                                  <--  HDR, SK {SA, Nr, KEr}
//   or                             <--  HDR, SK {N(NO_ADDITIONAL_SAS)}
//   or                             <--  HDR, SK {N(TEMPORARY_FAILURE)}
//
// The keys, the proposal and the successor SA are those of an IKE SA rekey
// (RFC 7296 §2.18, exchanges/ike-rekey.ts).
import { NotifyType } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import type { ExchangeNonces, IkeContext } from '../context.js';
import type { IkeSa, InitiatorExchange, ResponderResult } from '../ike-sa.js';
import { notify } from '../payload-builders.js';
import { IkeRekeyInitiator, answerSuccessor } from './ike-rekey.js';
import type { IkeRekeyCallbacks } from './ike-rekey.js';

// ------------------------------------------------------------------ initiator

/**
 * Clone an IKE SA (RFC 7791 §5.2): a new, independent IKE SA with the same
 * peer and no Child SAs. Rejects with `err.notify` set to NO_ADDITIONAL_SAS
 * or TEMPORARY_FAILURE when the peer refuses (§5.3).
 */
export function cloneIkeSa(engine: IkeContext, sa: IkeSa): Promise<IkeSa> {
  if (!sa.peerClone) return Promise.reject(new Error(`IKE SA ${sa.id}: the peer did not negotiate cloning (RFC 7791 §5.1)`));
  return new Promise((resolve, reject) => engine.queueExchange(sa, new IkeCloneInitiator(engine, { resolve, reject })));
}

/** Rejects with `err.notify` set to NO_ADDITIONAL_SAS or TEMPORARY_FAILURE when the peer refuses (RFC 7791 §5.3). */
export class IkeCloneInitiator extends IkeRekeyInitiator {
  constructor(engine: IkeContext, cb: IkeRekeyCallbacks) {
    super(engine, cb);
  }

  override get name(): string {
    return 'CREATE_CHILD_SA (clone IKE SA)';
  }

  override get clone(): boolean {
    return true;
  }

  protected override requestNotifies(sa: IkeSa): Payload[] {
    if (!sa.peerClone) throw new Error('the peer did not negotiate IKE SA cloning (RFC 7791 §5.1)');
    return [notify(NotifyType.CLONE_IKE_SA)];
  }

  protected override again(cb: IkeRekeyCallbacks): InitiatorExchange {
    return new IkeCloneInitiator(this.engine, cb);
  }

  /** §5.2: a clone replaces nothing, so no simultaneous rekey can take its place. */
  protected override survivorAfterError(): IkeSa | undefined {
    return undefined;
  }

  protected override survivorAfterAbort(): IkeSa | undefined {
    return undefined;
  }

  protected override completed(sa: IkeSa, created: IkeSa, _nonces: ExchangeNonces): void {
    this.engine.adoptSuccessor(sa, created, true);
    this.cb.resolve(created);
  }
}

// ------------------------------------------------------------------ responder

/**
 * The responder half (RFC 7791 §5.2, §5.3): NO_ADDITIONAL_SAS past the
 * per-peer limit, which counts every IKE SA of the peer (§8), and
 * TEMPORARY_FAILURE when short of resources; else a new IKE SA as for a rekey,
 * with no additional notify in the response.
 */
export function respondIkeClone(engine: IkeContext, sa: IkeSa, payloads: Payload[]): ResponderResult {
  if (engine.peerIkeSaCount(sa) >= engine.limits.ikeSasPerPeer) {
    engine.log.info({ ike: sa.id, peer: sa.peerKey }, 'clone refused: NO_ADDITIONAL_SAS');
    return { payloads: [notify(NotifyType.NO_ADDITIONAL_SAS)] };
  }
  if (!engine.hasCapacity()) return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  return answerSuccessor(engine, sa, payloads, true);
}
