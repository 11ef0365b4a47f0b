// Rekeying requests arriving in CREATE_CHILD_SA: Child SA rekey (RFC 7296
// §1.3.3, N(REKEY_SA)) and IKE SA rekey (§1.3.2), which cloning extends
// (RFC 7791 §5.2, N(CLONE_IKE_SA)).
import { NotifyType } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import type { IkeEngine } from '../engine.js';
import type { ResponderResult } from '../exchange.js';
import type { IkeSa } from '../ike-sa.js';
import { notify } from '../payload-builders.js';

export function respondRekeyRequest(engine: IkeEngine, sa: IkeSa, _payloads: Payload[], ikeRekey: boolean): ResponderResult {
  engine.log.warn({ ike: sa.id, kind: ikeRekey ? 'IKE SA' : 'Child SA' }, 'refusing a rekey request: rekeying is not available yet');
  return { payloads: [notify(NotifyType.NO_PROPOSAL_CHOSEN)] };
}
