// CREATE_CHILD_SA for an additional Child SA (RFC 7296 §1.3.1), with optional
// PFS (a KE payload) and the INVALID_KE_PAYLOAD retry (§1.3).
//
//   Initiator                         Responder
//   HDR, SK {SA, Ni, [KEi,] TSi, TSr}  -->
//                           <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//
// Requests that rekey a Child SA (N(REKEY_SA)) or an IKE SA (an IKE proposal,
// and with N(CLONE_IKE_SA) a clone) use the same exchange type; they pass the
// same checks here and are answered by their own modules.
import { findPayload, findNotifies } from '../../wire/payloads.js';
import { ExchangeType, NotifyType, PayloadType, TransformType, notifyName } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import type { KeyExchange } from '../../crypto/keyexchange.js';
import { isValidNonceLength } from '../../crypto/keys.js';
import type { ChildCreateOptions, ChildPlacement, ChildSa, IkeSa, InitiatorExchange, ResponderResult } from '../ike-sa.js';
import type { IkeContext } from '../context.js';
import { classifyRequest } from '../requests.js';
import type { ChildPolicy } from '../policy.js';
import { acceptChild, childPfsGroup, childRequest, dropOffer, respondChild, responderKeyExchange } from '../child-negotiation.js';
import type { ChildOffer } from '../child-negotiation.js';
import { errorNotify, notify, u16 } from '../payload-builders.js';
import { NONCE_LENGTH } from '../defaults.js';
import { hasResourceInfo, placeResponderChild, resourceInfoNotify, responderWorkerHint } from '../per-resource.js';

export interface ChildCreateCallbacks {
  pfs: boolean;
  resolve: (child: ChildSa) => void;
  reject: (err: Error) => void;
  /** KE group to use instead of the configured first one (after INVALID_KE_PAYLOAD). */
  group?: number;
  retries?: number;
  /**
   * A per-worker Child SA (architecture §5.1): 'per-resource' ones carry
   * SA_RESOURCE_INFO with `resourceId` (RFC 9611 §3); the new SA gets this placement.
   */
  placement?: ChildPlacement;
  /** The random part a handoff drew for this Child SA's SPI (arrival-spi.ts). */
  spiRandom?: number;
}

// ------------------------------------------------------------------ initiator

/** Create an additional Child SA on an established IKE SA (CREATE_CHILD_SA, RFC 7296 §1.3.1). */
export function createChildSa(engine: IkeContext, sa: IkeSa, childName: string, opts: ChildCreateOptions = {}): Promise<ChildSa> {
  const child = sa.policy.children.find((c) => c.name === childName);
  if (!child) return Promise.reject(new Error(`connection "${sa.name}" has no child "${childName}"`));
  return new Promise((resolve, reject) => {
    const placement = opts.placement ? { placement: opts.placement } : {};
    const drawn = opts.spiRandom !== undefined ? { spiRandom: opts.spiRandom } : {};
    engine.queueExchange(sa, new ChildCreateInitiator(engine, child, { pfs: opts.pfs ?? true, resolve, reject, ...placement, ...drawn }));
  });
}

export class ChildCreateInitiator implements InitiatorExchange {
  readonly name = 'CREATE_CHILD_SA';
  readonly exchangeType = ExchangeType.CREATE_CHILD_SA;
  private offer: ChildOffer | undefined;
  private keyExchange: KeyExchange | undefined;
  private nonceI: Uint8Array | undefined;

  constructor(
    private readonly engine: IkeContext,
    private readonly child: ChildPolicy,
    private readonly cb: ChildCreateCallbacks,
  ) {}

  private get group(): number | undefined {
    return this.cb.pfs ? (this.cb.group ?? childPfsGroup(this.child)) : undefined;
  }

  build(sa: IkeSa): Payload[] {
    this.release();
    // A per-worker Child SA (child-spread.ts): its SPI is drawn for the worker it serves.
    const request = childRequest(this.engine, sa, this.child, this.group, undefined, this.cb.placement?.worker, this.cb.spiRandom);
    ({ offer: this.offer, nonceI: this.nonceI, keyExchange: this.keyExchange } = request);
    // RFC 9611 §3: a per-resource Child SA is asked for with SA_RESOURCE_INFO.
    const resourceId = this.cb.placement?.kind === 'per-resource' ? this.cb.placement.resourceId : undefined;
    if (resourceId !== undefined) return [resourceInfoNotify(Buffer.from(resourceId, 'hex')), ...request.payloads];
    return request.payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const offer = this.offer!;
    const fail = (reason: string, peerInstalled = false) => {
      this.release();
      // The responder installed the Child SA it answered with; have it deleted (as after IKE_AUTH, RFC 7296 §2.21.2).
      if (peerInstalled) this.engine.deleteUnusableChild(sa, offer.spiIn);
      this.engine.emit('child-failed', sa, this.child.name, reason);
      this.cb.reject(Object.assign(new Error(reason), refusal !== undefined ? { notify: refusal } : {}));
    };
    let refusal: number | undefined;
    const invalidKe = findNotifies(payloads, NotifyType.INVALID_KE_PAYLOAD)[0];
    if (invalidKe) {
      const group = u16(invalidKe.data);
      const allowed = this.child.esp.some((s) => s.transforms.some((t) => t.type === TransformType.KE && t.id === group));
      const retries = (this.cb.retries ?? 0) + 1;
      if (group === undefined || !allowed || group === this.group || retries > 3) return fail(`INVALID_KE_PAYLOAD asks for group ${group}, which we do not offer`);
      this.release();
      // A new exchange with a new message ID (RFC 7296 §1.3).
      this.engine.queueExchange(sa, new ChildCreateInitiator(this.engine, this.child, { ...this.cb, group, retries }));
      return;
    }
    const error = errorNotify(payloads);
    if (error) {
      refusal = error.notifyType;
      return fail(`responder answered ${notifyName(error.notifyType)}`);
    }
    const nonce = findPayload(payloads, PayloadType.NONCE);
    if (!nonce || !isValidNonceLength(sa.suite!.prf!, nonce.data.length)) return fail('response lacks a valid nonce', true);
    let sharedSecret: Uint8Array | undefined;
    const chosenKe = findPayload(payloads, PayloadType.SA)?.proposals[0]?.transforms.find((t) => t.type === TransformType.KE)?.id;
    if (this.keyExchange) {
      const ke = findPayload(payloads, PayloadType.KE);
      if (!ke || ke.group !== this.keyExchange.group || chosenKe !== ke.group) return fail('response KE payload does not match our group', true);
      const shared = this.keyExchange.computeSharedSecret(ke.data);
      if (!shared.ok) return fail(`invalid key exchange value: ${shared.error}`, true);
      sharedSecret = shared.value;
    } else if (chosenKe !== undefined && chosenKe !== 0) {
      return fail('responder chose a KE group we did not send', true);
    }
    const child = acceptChild(this.engine, sa, offer, payloads, { nonceI: this.nonceI!, nonceR: nonce.data, ...(sharedSecret ? { sharedSecret } : {}) });
    sharedSecret?.fill(0);
    this.keyExchange?.destroy();
    this.keyExchange = undefined;
    if (typeof child === 'string') return fail(child, true);
    this.offer = undefined;
    const placement = this.cb.placement;
    // RFC 9611 §3: a responder that does not answer SA_RESOURCE_INFO made an ordinary Child SA,
    // another one with the same selectors (RFC 7296 §2.8): it stays on its worker as a parallel SA.
    if (placement) child.placement = placement.kind === 'per-resource' && !hasResourceInfo(payloads) ? { kind: 'parallel', worker: placement.worker! } : placement;
    this.engine.addChild(child);
    this.cb.resolve(child);
  }

  abort(_sa: IkeSa, reason: string): void {
    this.release();
    this.cb.reject(new Error(reason));
  }

  private release(): void {
    if (this.offer) dropOffer(this.engine, this.offer);
    this.offer = undefined;
    this.keyExchange?.destroy();
    this.keyExchange = undefined;
  }
}

// ------------------------------------------------------------------ responder

/**
 * What every CREATE_CHILD_SA request must pass, whatever it asks for: an SA
 * that is not going away (RFC 7296 §2.25, RFC 7791 §5.3), an SA payload and a
 * nonce long enough for the PRF (§2.10). A refusal, or undefined.
 */
function checkCreateChildSa(sa: IkeSa, payloads: Payload[]): ResponderResult | undefined {
  if (sa.state !== 'established') return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  const saPayload = findPayload(payloads, PayloadType.SA);
  const nonce = findPayload(payloads, PayloadType.NONCE);
  if (!saPayload || !nonce) return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  if (!isValidNonceLength(sa.suite!.prf!, nonce.data.length)) return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  return undefined;
}

/**
 * The responder half of CREATE_CHILD_SA: the common checks, then a new Child
 * SA here, or the rekey and clone responders (child-rekey.ts, ike-rekey.ts,
 * ike-clone.ts) through the engine, by the request's kind (requests.ts).
 */
export function respondCreateChildSa(
  engine: IkeContext,
  sa: IkeSa,
  payloads: Payload[],
  kind = classifyRequest(sa, ExchangeType.CREATE_CHILD_SA, payloads),
): ResponderResult {
  const refused = checkCreateChildSa(sa, payloads);
  if (refused) return refused;
  if (kind !== 'child-create') return engine.respondRekey(sa, payloads, kind !== 'child-rekey');
  return respondNewChild(engine, sa, payloads, findPayload(payloads, PayloadType.NONCE)!.data);
}

function respondNewChild(engine: IkeContext, sa: IkeSa, payloads: Payload[], nonceI: Uint8Array): ResponderResult {
  const nonceR = engine.random(NONCE_LENGTH);
  // RFC 9611 §4: a per-resource Child SA's SPI is drawn for the worker placeResponderChild will name.
  const result = respondChild(engine, sa, payloads, { nonceI: new Uint8Array(nonceI), nonceR }, responderKeyExchange(engine, payloads), {
    workerHint: responderWorkerHint(sa, payloads),
  });
  if (!result.ok) return { payloads: [notify(result.error.notify, result.error.data)] };
  const { payloads: [saOut, ...rest], child } = result.value;
  // RFC 9611 §3, §6; RFC 7296 §2.8: a per-resource, fallback or parallel Child SA, or TS_MAX_QUEUE.
  const placed = placeResponderChild(engine, sa, payloads, child, false);
  if (!placed.ok) {
    child.wipeKeys();
    return { payloads: [notify(placed.notify)] };
  }
  return { payloads: [saOut!, { type: PayloadType.NONCE, data: nonceR }, ...rest, ...placed.payloads], after: () => engine.addChild(child) };
}
