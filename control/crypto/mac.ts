// HMAC-SHA2 with full or truncated tags: the integrity transforms of the SK
// payload (RFC 7296 §3.14, RFC 4868 §2.1.1) and tag checks elsewhere.
// Tags from the network are compared in constant time.

import { createHmac, timingSafeEqual } from 'node:crypto';
import type { HashName } from './algorithms.js';
import { view } from './bytes.js';

const HASH_LENGTH: Record<HashName, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** HMAC(key, parts[0] | parts[1] | ...), full length. */
export function hmac(hash: HashName, key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const mac = createHmac(hash, key);
  for (const p of parts) mac.update(p);
  return view(mac.digest());
}

/**
 * True iff `tag` is HMAC(key, parts...) truncated to `tagLength` bytes
 * (RFC 2104 §5: the leftmost bits). A tag of any other length is false, as
 * is a `tagLength` outside 1..hash length. Never throws on the tag.
 */
export function verifyHmac(hash: HashName, key: Uint8Array, parts: readonly Uint8Array[], tag: Uint8Array, tagLength: number): boolean {
  if (!Number.isInteger(tagLength) || tagLength < 1 || tagLength > HASH_LENGTH[hash]) return false;
  if (!(tag instanceof Uint8Array) || tag.length !== tagLength) return false;
  const expected = hmac(hash, key, ...parts).subarray(0, tagLength);
  return timingSafeEqual(expected, tag);
}
