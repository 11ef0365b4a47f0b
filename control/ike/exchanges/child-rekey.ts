// Child SA rekey in CREATE_CHILD_SA (RFC 7296 §1.3.3, N(REKEY_SA); §2.8).
//
//   Initiator                                   Responder
//   HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  -->
//                           <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//
// The rekey initiator deletes the old Child SA once the new one is installed;
// simultaneous rekeys of the same SA are settled by the nonces (§2.8.1,
// collisions.ts).
import { ExchangeType, NotifyType, PayloadType, ProtocolId, notifyName } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import { findNotify, findPayload } from '../../wire/payloads.js';
import type { KeyExchange } from '../../crypto/keyexchange.js';
import { isValidNonceLength } from '../../crypto/keys.js';
import type { IkeContext } from '../context.js';
import type { ChildSa, IkeSa, InitiatorExchange, ResponderResult } from '../ike-sa.js';
import { acceptChild, childPfsGroup, childRequest, dropOffer, respondChild, responderKeyExchange } from '../child-negotiation.js';
import type { ChildOffer } from '../child-negotiation.js';
import { errorNotify, espNotify, notify, spiNumber } from '../payload-builders.js';
import { NONCE_LENGTH } from '../defaults.js';

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/**
 * The new SA takes over the old one's outbound traffic, and stays on its worker
 * (RFC 9611 §3: "bound to the same resource(s) as the Child SA that is being rekeyed").
 */
function inherit(created: ChildSa, old: ChildSa): void {
  created.replacesId = old.id;
  created.placement = old.placement;
}

// ------------------------------------------------------------------ initiator

/** Rekey a Child SA (RFC 7296 §1.3.3); the old one is deleted once the new one is up. */
export function rekeyChildSa(engine: IkeContext, child: ChildSa, opts: { pfs?: boolean } = {}): Promise<ChildSa> {
  return new Promise((resolve, reject) => engine.queueExchange(child.ike, new ChildRekeyInitiator(engine, child, { pfs: opts.pfs ?? true, resolve, reject })));
}

export class ChildRekeyInitiator implements InitiatorExchange {
  readonly name = 'CREATE_CHILD_SA (rekey Child SA)';
  readonly exchangeType = ExchangeType.CREATE_CHILD_SA;
  private offer: ChildOffer | undefined;
  private keyExchange: KeyExchange | undefined;
  private nonceI: Uint8Array | undefined;

  constructor(
    private readonly engine: IkeContext,
    private readonly old: ChildSa,
    private readonly cb: { pfs: boolean; resolve: (c: ChildSa) => void; reject: (e: Error) => void },
  ) {}

  build(sa: IkeSa): Payload[] {
    const policy = sa.policy.children.find((c) => c.name === this.old.name);
    if (!policy) throw new Error(`Child SA ${this.old.name} no longer has a policy`);
    if (this.old.state !== 'installed') throw new Error(`Child SA ${this.old.id} is ${this.old.state}`);
    this.old.setState('rekeying', this.engine.log);
    const request = childRequest(this.engine, sa, policy, this.cb.pfs ? childPfsGroup(policy) : undefined, this.old);
    ({ offer: this.offer, nonceI: this.nonceI, keyExchange: this.keyExchange } = request);
    return request.payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const fail = (reason: string, notifyType?: number, peerInstalled = false) => {
      if (this.old.state === 'rekeying') this.old.setState('installed', this.engine.log);
      const spiIn = this.offer?.spiIn;
      if (this.offer) dropOffer(this.engine, this.offer);
      this.keyExchange?.destroy();
      // The responder installed the successor it answered with; have it deleted (RFC 7296 §2.21.2, as child-create.ts).
      if (peerInstalled && spiIn !== undefined) this.engine.deleteUnusableChild(sa, spiIn);
      this.cb.reject(Object.assign(new Error(reason), notifyType !== undefined ? { notify: notifyType } : {}));
    };
    const error = errorNotify(payloads);
    if (error) {
      // §2.8.1: the peer's rekey of the same Child SA went through; ours is moot.
      const survivor = this.engine.collisions.childRekeyFailed(this.old);
      if (survivor) {
        if (this.offer) dropOffer(this.engine, this.offer);
        this.keyExchange?.destroy();
        return this.cb.resolve(survivor);
      }
      return fail(`responder answered ${notifyName(error.notifyType)}`, error.notifyType);
    }
    const nonce = findPayload(payloads, PayloadType.NONCE);
    if (!nonce || !isValidNonceLength(sa.suite!.prf!, nonce.data.length)) return fail('response lacks a valid nonce', undefined, true);
    let sharedSecret: Uint8Array | undefined;
    if (this.keyExchange) {
      const ke = findPayload(payloads, PayloadType.KE);
      if (!ke || ke.group !== this.keyExchange.group) return fail('response KE payload does not match our group', undefined, true);
      const shared = this.keyExchange.computeSharedSecret(ke.data);
      if (!shared.ok) return fail(`invalid key exchange value: ${shared.error}`, undefined, true);
      sharedSecret = shared.value;
    }
    const created = acceptChild(this.engine, sa, this.offer!, payloads, { nonceI: this.nonceI!, nonceR: nonce.data, ...(sharedSecret ? { sharedSecret } : {}) });
    sharedSecret?.fill(0);
    this.keyExchange?.destroy();
    if (typeof created === 'string') return fail(created, undefined, true);
    this.offer = undefined;
    inherit(created, this.old);
    this.engine.addChild(created);
    // §2.8: the initiator of the rekey deletes the old Child SA once the new one is in place,
    // unless a simultaneous rekey made ours the redundant one (§2.8.1).
    this.cb.resolve(this.engine.collisions.childRekeyCompleted(this.old, created, [this.nonceI!, nonce.data]));
  }

  abort(_sa: IkeSa, reason: string): void {
    if (this.old.state === 'rekeying') this.old.setState('installed', this.engine.log);
    if (this.offer) dropOffer(this.engine, this.offer);
    this.keyExchange?.destroy();
    this.cb.reject(new Error(reason));
  }
}

// ------------------------------------------------------------------ responder

/** The responder half of a Child SA rekey (RFC 7296 §1.3.3). */
export function respondChildRekey(engine: IkeContext, sa: IkeSa, payloads: Payload[]): ResponderResult {
  const rekey = findNotify(payloads, NotifyType.REKEY_SA)!;
  // §1.3.3: the SPI is the one the exchange initiator receives with: our outbound SPI.
  const spi = spiNumber(rekey.spi);
  const old = rekey.protocol === ProtocolId.ESP ? sa.children.find((c) => c.spiOut === spi) : undefined;
  if (!old || old.state === 'deleted') {
    // RFC 7296 §2.25: the Child SA is gone (deleted meanwhile, or never existed).
    return { payloads: [espNotify(NotifyType.CHILD_SA_NOT_FOUND, spi ?? 0)] };
  }
  // §2.25.1: one we are closing (or have seen rekeyed, about to be closed) cannot be rekeyed now.
  if (old.state === 'deleting' || old.state === 'rekeyed') return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] };
  const nonceI = copy(findPayload(payloads, PayloadType.NONCE)!.data);
  const nonceR = engine.random(NONCE_LENGTH);
  const result = respondChild(engine, sa, payloads, { nonceI, nonceR }, responderKeyExchange(engine, payloads), { only: old.name, replacing: old });
  if (!result.ok) return { payloads: [notify(result.error.notify, result.error.data)] };
  const { payloads: [saOut, ...rest], child } = result.value;
  return {
    payloads: [saOut!, { type: PayloadType.NONCE, data: nonceR }, ...rest],
    after: () => {
      inherit(child, old);
      engine.addChild(child);
      // The initiator deletes the old SA; until then it still takes inbound traffic (§2.8).
      // If we are rekeying it too, the nonces decide later (§2.8.1).
      engine.collisions.childRekeyAnswered(old, child, [nonceI, nonceR]);
    },
  };
}
