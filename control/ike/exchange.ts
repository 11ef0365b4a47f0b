// The contract between the engine and the exchange modules (strongSwan's task
// model: each exchange has an initiator half — build the request, process the
// response — and a responder half — process the request, build the response).
import type { Payload } from '../wire/payloads.js';
import type { IkeSa } from './ike-sa.js';

/** Initiator half of an exchange, queued on an IKE SA and run one at a time (window size 1). */
export interface InitiatorExchange {
  readonly name: string;
  readonly exchangeType: number;
  /** Payloads of the request (encrypted, except in IKE_SA_INIT). */
  build(sa: IkeSa): Payload[];
  /**
   * The response, decrypted and authenticated. Return 'retry' to send a rebuilt
   * request under the same message ID (COOKIE and INVALID_KE_PAYLOAD, RFC 7296 §2.6, §1.2).
   */
  process(sa: IkeSa, payloads: Payload[], raw: Uint8Array): void | 'retry';
  /**
   * For a response that is not authenticated (IKE_SA_INIT): why it cannot be
   * used, or undefined when process() may take it. Changes no SA state; the
   * engine drops an unusable response and keeps the request outstanding
   * (RFC 7296 §2.21.1), since a forged one may precede the genuine answer.
   */
  unusable?(sa: IkeSa, payloads: Payload[], raw: Uint8Array): string | undefined;
  /** The exchange will never complete (retransmissions spent, SA deleted). */
  abort?(sa: IkeSa, reason: string): void;
}

/** What a responder half returns: the response payloads (possibly just an error notify). */
export interface ResponderResult {
  payloads: Payload[];
  /** Run after the response has been sent (e.g. delete the IKE SA after answering its Delete). */
  after?: () => void;
}
