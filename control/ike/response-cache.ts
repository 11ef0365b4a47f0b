// The response cache (RFC 7296 §2.1): a retransmitted request gets the
// response it had, without being processed again, and only a genuine
// retransmission does: a byte-identical copy of the request, or (RFC 7383
// §2.6.1) an authenticated first fragment of it. Responses sent as IKE
// fragments go out again as all their fragments.
//
// Owner: the main thread, like the engine that calls it.
import { createHash } from 'node:crypto';
import { equalBytes } from '../crypto/bytes.js';
import type { IkeContext } from './context.js';
import type { SealedMessage } from './fragmentation.js';
import type { CachedResponse } from './ike-sa.js';
import type { Datagram, Endpoint } from './transport.js';

/** Digest of a request whose response is cached (RFC 7296 §2.1: retransmissions are byte-identical). */
function requestDigest(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/** The cache entry for `response` (as sealed) to `request`. */
export function cachedResponse(messageId: number, response: SealedMessage, request: Datagram): CachedResponse {
  // Only the datagrams: a response is never cut again smaller (requests are), so its plaintext is not kept.
  const fragments = response.fragments && { datagrams: response.fragments.datagrams, size: response.fragments.size };
  return { messageId, bytes: response.bytes, ...(fragments && { fragments }), requestDigest: requestDigest(request.bytes) };
}

/** A message's datagrams: itself, or all its fragments (RFC 7383 §2.5). */
export function sendSealed(ctx: Pick<IkeContext, 'sendDatagram' | 'stats'>, local: Endpoint, remote: Endpoint, m: SealedMessage | CachedResponse): void {
  if (m.fragments) ctx.stats.fragments.sent += m.fragments.datagrams.length;
  for (const bytes of m.fragments?.datagrams ?? [m.bytes]) ctx.sendDatagram(local, remote, bytes);
}

/**
 * A request with the message ID of `cached`: the cached response again, but
 * only for a byte-identical retransmission of the request it answered (RFC
 * 7296 §2.1), never for any datagram that merely names the SPIs and message
 * ID from a spoofed source (reflection, amplification). `fragment` is the
 * reassembler's verdict on a retransmitted IKE fragment (RFC 7383 §2.6.1),
 * which stands instead of the byte comparison.
 */
export function resendResponse(ctx: Pick<IkeContext, 'sendDatagram' | 'stats' | 'countDrop'>, cached: CachedResponse, d: Datagram, what: string, fragment?: boolean): void {
  if (fragment === false) return;
  if (fragment === undefined && !equalBytes(requestDigest(d.bytes), cached.requestDigest)) return ctx.countDrop('cache-mismatch', what);
  ctx.stats.responsesFromCache++;
  sendSealed(ctx, d.local, d.remote, cached);
}
