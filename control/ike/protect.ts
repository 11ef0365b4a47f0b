// Message protection for an IKE SA: builds the header for our role and seals
// the payloads into the Encrypted payload (RFC 7296 §3.14), or opens a received
// one. IKE_SA_INIT travels in clear.
import { ExchangeType, HeaderFlag, IKE_VERSION, PayloadType } from '../wire/constants.js';
import type { IkeHeader } from '../wire/header.js';
import type { IkeMessage } from '../wire/message.js';
import { decodePayloadChain, encodeMessage, encodePayloadChain, encodeSkMessage } from '../wire/message.js';
import type { Payload } from '../wire/payloads.js';
import type { Result } from '../wire/result.js';
import type { IkeSa } from './ike-sa.js';

/** The IKE header of our message on `sa` (RFC 7296 §3.1), but for Next Payload and Length. */
export function messageHeader(sa: IkeSa, exchangeType: number, messageId: number, response: boolean): Omit<IkeHeader, 'nextPayload' | 'length'> {
  return {
    spiI: sa.spiI,
    spiR: sa.spiR,
    version: IKE_VERSION,
    exchangeType,
    // RFC 7296 §3.1: I marks the original initiator, R marks a response.
    flags: (sa.isInitiator ? HeaderFlag.INITIATOR : 0) | (response ? HeaderFlag.RESPONSE : 0),
    messageId,
  };
}

export function sealMessage(sa: IkeSa, exchangeType: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array {
  const header = messageHeader(sa, exchangeType, messageId, response);
  if (exchangeType === ExchangeType.IKE_SA_INIT) return encodeMessage(header, payloads);
  const protector = sa.protectOut;
  if (!protector) throw new Error('IKE SA has no keys to protect a message');
  const inner = encodePayloadChain(payloads);
  return encodeSkMessage(header, inner.firstType, protector.bodyLength(inner.bytes.length), (aad) => protector.seal(aad, inner.bytes));
}

/** Why a protected message could not be opened; 'syntax' (authenticated, malformed inside) is answered with `notify`. */
export interface OpenError {
  reason: 'no-sk' | 'auth' | 'syntax';
  notify?: number;
  data?: Uint8Array;
}

export type OpenResult = Result<Payload[], OpenError>;

/** Verify and decrypt the SK payload of `msg` and decode the inner payloads (RFC 7296 §3.14). */
export function openMessage(sa: IkeSa, msg: IkeMessage): OpenResult {
  const sk = msg.payloads[msg.payloads.length - 1];
  if (!sk || sk.type !== PayloadType.SK || !sa.protectIn) return { ok: false, error: { reason: 'no-sk' } };
  const plain = sa.protectIn.open(sk.aad, sk.body);
  if (!plain.ok) return { ok: false, error: { reason: 'auth' } };
  return decodeInner(sk.innerType, plain.value);
}

/** The inner payloads of an authenticated Encrypted payload's plaintext (or of reassembled fragments, RFC 7383 §2.6). */
export function decodeInner(firstType: number, plaintext: Uint8Array): OpenResult {
  const inner = decodePayloadChain(firstType, plaintext);
  if (!inner.ok) return { ok: false, error: { reason: 'syntax', notify: inner.error.notify, ...(inner.error.data ? { data: inner.error.data } : {}) } };
  return { ok: true, value: inner.value };
}
