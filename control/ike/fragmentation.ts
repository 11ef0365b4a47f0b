// IKE fragmentation, the sending side (RFC 7383): whether an IKE SA uses it,
// what IKE_SA_INIT announces, and how an encrypted message too large for the
// fragment size is cut into IKE Fragment messages, each protected on its own
// (§2.5). A request that goes unanswered is cut again smaller (§2.5.2).
// Reassembly of what the peer sends is fragments.ts.
//
// Owner: the main thread, like the engine that calls it.
import { ExchangeType, NotifyType } from '../wire/constants.js';
import { IKE_HEADER_LENGTH } from '../wire/header.js';
import { encodePayloadChain, encodeSkfMessage } from '../wire/message.js';
import type { Payload } from '../wire/payloads.js';
import type { IkeContext } from './context.js';
import { DEFAULT_FRAGMENT_SIZE, FRAGMENT_FALLBACK_RETRANSMITS, FRAGMENT_FALLBACK_SIZE } from './defaults.js';
import type { FragmentedMessage, IkeSa, OutstandingRequest } from './ike-sa.js';
import { hasNotify, notify } from './payload-builders.js';
import type { ConnectionPolicy, FragmentationMode } from './policy.js';
import { messageHeader, sealMessage } from './protect.js';

/** Generic payload header and Fragment Number / Total Fragments (RFC 7383 §2.5). */
const SKF_HEADER_LENGTH = 8;
/** UDP header and the non-ESP marker of port 4500 (RFC 3948 §2.2), counted whichever port is in use. */
const UDP_OVERHEAD = 8 + 4;

export function fragmentationMode(policy: ConnectionPolicy): FragmentationMode {
  return policy.fragmentation ?? 'yes';
}

/** RFC 7383 §2.3: N(IKEV2_FRAGMENTATION_SUPPORTED) in our IKE_SA_INIT message, unless the connection says no. */
export function fragmentationNotify(policy: ConnectionPolicy): Payload[] {
  return fragmentationMode(policy) === 'no' ? [] : [notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)];
}

/** RFC 7383 §2.3: both ends support IKE fragmentation when both announced it in IKE_SA_INIT. */
export function recordPeerFragmentation(sa: IkeSa, payloads: Payload[]): void {
  sa.peerFragmentation = fragmentationMode(sa.policy) !== 'no' && hasNotify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED);
}

/**
 * Whether our encrypted messages on `sa` are cut into fragments when too
 * large: with `yes` only if the peer announced support (RFC 7383 §2.5), with
 * `force` regardless, never with `accept` or `no`. IKE_SA_INIT never is (§2.5).
 */
function fragments(sa: IkeSa, exchangeType: number): boolean {
  if (exchangeType === ExchangeType.IKE_SA_INIT || !sa.protectOut) return false;
  const mode = fragmentationMode(sa.policy);
  return mode === 'force' || (mode === 'yes' && sa.peerFragmentation);
}

/** The IP datagram size our fragments on `sa` are cut for now. */
export function fragmentSize(sa: IkeSa): number {
  return sa.fragmentSize ?? sa.policy.fragmentSize ?? DEFAULT_FRAGMENT_SIZE;
}

/** IP and UDP headers and the non-ESP marker around an IKE message to `remote`. */
export function datagramOverhead(remoteAddress: string): number {
  return (remoteAddress.includes(':') ? 40 : 20) + UDP_OVERHEAD;
}

/** A message as it goes out: one datagram, or IKE fragments. */
export interface SealedMessage {
  /** The message, or its first fragment. */
  bytes: Uint8Array;
  fragments?: FragmentedMessage;
}

/**
 * Seal `payloads` for `sa` (protect.ts), cut into IKE fragments when the
 * message would not fit the fragment size and fragmentation is in use
 * (RFC 7383 §2.5). Throws like sealMessage (programmer errors only).
 */
export function sealOutgoing(sa: IkeSa, exchangeType: number, messageId: number, response: boolean, payloads: Payload[]): SealedMessage {
  if (fragments(sa, exchangeType)) {
    const size = fragmentSize(sa);
    const inner = encodePayloadChain(payloads);
    const whole = IKE_HEADER_LENGTH + 4 + sa.protectOut!.bodyLength(inner.bytes.length);
    if (whole + datagramOverhead(sa.remote.address) > size) {
      const cut = cutFragments(sa, exchangeType, messageId, response, inner, size);
      if (cut) return { bytes: cut.datagrams[0]!, fragments: cut };
    }
  }
  return { bytes: sealMessage(sa, exchangeType, messageId, response, payloads) };
}

/**
 * The plaintext of the Encrypted payload cut into chunks that fit `size`,
 * each sealed in its own Encrypted Fragment payload under the original
 * message's header (RFC 7383 §2.5). Undefined when `size` leaves no room for
 * content.
 */
function cutFragments(
  sa: IkeSa,
  exchangeType: number,
  messageId: number,
  response: boolean,
  inner: { firstType: number; bytes: Uint8Array },
  size: number,
): FragmentedMessage | undefined {
  const protector = sa.protectOut!;
  const budget = size - datagramOverhead(sa.remote.address) - IKE_HEADER_LENGTH - SKF_HEADER_LENGTH;
  // The largest chunk whose sealed body fits: padding rounds up by less than a cipher block.
  let chunk = budget - protector.ivLength - protector.icvLength - 1;
  while (chunk > 0 && protector.bodyLength(chunk) > budget) chunk--;
  if (chunk < 1) return undefined;
  const total = Math.max(1, Math.ceil(inner.bytes.length / chunk));
  if (total > 0xffff) return undefined;
  // RFC 7383 §2.5: the header is the original message's, but for Length and Next Payload.
  const header = messageHeader(sa, exchangeType, messageId, response);
  const datagrams: Uint8Array[] = [];
  for (let n = 1; n <= total; n++) {
    const part = inner.bytes.subarray((n - 1) * chunk, n * chunk);
    datagrams.push(encodeSkfMessage(header, inner.firstType, n, total, protector.bodyLength(part.length), (aad) => protector.seal(aad, part)));
  }
  return { datagrams, size, inner };
}

/** The next smaller size to try after `size` went unanswered (RFC 7383 §2.5.1, §2.5.2), if any. */
function smallerSize(size: number, remoteAddress: string): number | undefined {
  const floor = remoteAddress.includes(':') ? FRAGMENT_FALLBACK_SIZE.ipv6 : FRAGMENT_FALLBACK_SIZE.ipv4;
  return size > floor ? floor : undefined;
}

/**
 * RFC 7383 §2.5.2: after FRAGMENT_FALLBACK_RETRANSMITS unanswered
 * retransmissions of a fragmented request, cut it again at the next smaller
 * size (Total Fragments must grow, so the peer starts its reassembly over);
 * the back-off starts over and later exchanges keep the smaller size. True
 * when `out` was cut again.
 */
export function fallBackToSmallerFragments(ctx: IkeContext, sa: IkeSa, out: OutstandingRequest): boolean {
  const f = out.fragments;
  if (!f || out.tries < FRAGMENT_FALLBACK_RETRANSMITS || !sa.protectOut) return false;
  const next = smallerSize(f.size, sa.remote.address);
  if (next === undefined) return false;
  const cut = cutFragments(sa, out.exchange.exchangeType, out.messageId, false, f.inner, next);
  if (!cut || cut.datagrams.length <= f.datagrams.length) return false;
  ctx.log.info({ ike: sa.id, exchange: out.exchange.name, from: f.size, to: next, fragments: cut.datagrams.length }, 'no answer to IKE fragments, cutting them smaller');
  sa.fragmentSize = next;
  out.fragments = cut;
  out.bytes = cut.datagrams[0]!;
  out.tries = 0;
  ctx.stats.fragments.fallbacks++;
  return true;
}
