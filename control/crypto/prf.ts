// The negotiated pseudorandom function and its expansion prf+ (RFC 7296 §2.13).
// Inputs here are keys and data the engine already holds (nonces, shared
// secrets, SK_d), so a bad argument is a programmer error and throws.

import { createHmac } from 'node:crypto';
import { prfInfo, type PrfInfo } from './algorithms.js';
import { view } from './bytes.js';
import { wipe } from './random.js';

/** @internal */
export function requirePrf(id: number): PrfInfo {
  const info = prfInfo(id);
  if (!info) throw new RangeError(`unsupported PRF transform ${id}`);
  return info;
}

/** prf(key, data) for PRF transform `id` (HMAC-SHA2, RFC 4868 §2.1.2). The output is `prfInfo(id).length` bytes. */
export function prf(id: number, key: Uint8Array, data: Uint8Array): Uint8Array {
  const { hash } = requirePrf(id);
  return view(createHmac(hash, key).update(data).digest());
}

/**
 * prf+(K, S) = T1 | T2 | T3 | ..., truncated to `length` bytes (RFC 7296 §2.13):
 *
 *     T1 = prf(K, S | 0x01)
 *     T2 = prf(K, T1 | S | 0x02)
 *     Tn = prf(K, T(n-1) | S | n)
 *
 * The counter is one octet, so at most 255 blocks can be produced; asking for
 * more is a programmer error and throws.
 */
export function prfPlus(id: number, key: Uint8Array, seed: Uint8Array, length: number): Uint8Array {
  const { hash, length: hashLength } = requirePrf(id);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`prf+ length must be a non-negative integer, got ${length}`);
  if (length > 255 * hashLength) throw new RangeError(`prf+ cannot produce ${length} bytes with a ${hashLength}-byte PRF (max ${255 * hashLength})`);
  const out = new Uint8Array(length);
  const counter = new Uint8Array(1);
  let previous: Uint8Array | undefined;
  for (let offset = 0, n = 1; offset < length; n++) {
    const mac = createHmac(hash, key);
    if (previous) mac.update(previous);
    counter[0] = n;
    const block = mac.update(seed).update(counter).digest();
    wipe(previous);
    previous = block;
    const take = Math.min(block.length, length - offset);
    out.set(block.subarray(0, take), offset);
    offset += take;
  }
  wipe(previous);
  return out;
}
