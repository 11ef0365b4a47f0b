// The liveness check ("dead peer detection", RFC 7296 §2.4, §1.4): an empty
// INFORMATIONAL request; the peer is alive if it answers. The monitor
// (control/ike/liveness.ts) sends it when nothing was heard for dpdDelay;
// checkLiveness sends it on demand. A request that is never answered is
// retransmitted with the engine's budget, and its name appears in the reason
// the IKE SA is then deleted for.
//
//   Initiator                         Responder
//   HDR, SK {}  -->
//                           <--  HDR, SK {}
//
// The responder half is the empty answer any INFORMATIONAL request without
// anything to act on gets (exchanges/delete.ts respondInformational).
import { ExchangeType } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import type { IkeContext } from '../context.js';
import type { IkeSa, InitiatorExchange } from '../ike-sa.js';

/** Liveness check: an empty INFORMATIONAL request (RFC 7296 §1.4, §2.4). Resolves true if answered. */
export function checkLiveness(engine: IkeContext, sa: IkeSa): Promise<boolean> {
  return new Promise((resolve) => engine.queueExchange(sa, new LivenessInitiator(resolve)));
}

/** The name of a check on demand, and of the monitor's periodic one. */
export const LIVENESS_CHECK = 'INFORMATIONAL (liveness)';
export const DPD_CHECK = 'INFORMATIONAL (DPD)';

export class LivenessInitiator implements InitiatorExchange {
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  constructor(
    private readonly done: (alive: boolean) => void = () => {},
    readonly name: string = LIVENESS_CHECK,
  ) {}

  build(): Payload[] {
    return [];
  }

  process(): void {
    this.done(true);
  }

  abort(): void {
    this.done(false);
  }
}
