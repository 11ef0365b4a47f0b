// What a request asks for, from its exchange type and payloads, as strongSwan's
// process_request decides which task answers it. The engine picks the
// responder half by this kind; collision handling (collisions.ts) judges
// crossing requests by it.
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../wire/constants.js';
import type { Payload } from '../wire/payloads.js';
import { findPayload } from '../wire/payloads.js';
import type { IkeSa } from './ike-sa.js';
import { hasNotify } from './payload-builders.js';

export type RequestKind =
  | 'ike-auth' // RFC 7296 §1.2
  | 'child-create' // §1.3.1
  | 'child-rekey' // §1.3.3: N(REKEY_SA)
  | 'ike-rekey' // §1.3.2: an IKE proposal
  | 'ike-clone' // RFC 7791 §5.2: an IKE proposal and N(CLONE_IKE_SA)
  | 'ike-delete' // §1.4.1: Delete of the IKE SA
  | 'informational'; // §1.4: Child SA deletes, MOBIKE (RFC 4555), liveness (§2.4: empty)

/** The kind of an authenticated request on `sa`, or undefined for an exchange type we do not answer. */
export function classifyRequest(sa: IkeSa, exchangeType: number, payloads: Payload[]): RequestKind | undefined {
  switch (exchangeType) {
    case ExchangeType.IKE_AUTH:
      return 'ike-auth';
    case ExchangeType.CREATE_CHILD_SA: {
      if (findPayload(payloads, PayloadType.SA)?.proposals.some((p) => p.protocol === ProtocolId.IKE)) {
        // RFC 7791 §5.2: CLONE_IKE_SA counts only here, and only on an SA that negotiated it (§5.1).
        return hasNotify(payloads, NotifyType.CLONE_IKE_SA) && sa.peerClone ? 'ike-clone' : 'ike-rekey';
      }
      return hasNotify(payloads, NotifyType.REKEY_SA) ? 'child-rekey' : 'child-create';
    }
    case ExchangeType.INFORMATIONAL:
      return payloads.some((p) => p.type === PayloadType.DELETE && p.protocol === ProtocolId.IKE) ? 'ike-delete' : 'informational';
    default:
      return undefined;
  }
}
