// Byte helpers shared by the crypto modules. @internal
//
// node:crypto returns Buffers. Handing those out would give callers a type
// whose slice() is a view, not a copy; `view` re-types the same memory as a
// plain Uint8Array, so wiping it still clears the bytes node produced.
import { timingSafeEqual } from 'node:crypto';

/** The same memory as a plain Uint8Array (no copy). */
export function view(buf: Uint8Array): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** parts[0] | parts[1] | ... in a fresh buffer. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** True iff every byte is zero, without an early exit on the first non-zero byte. */
export function isAllZero(v: Uint8Array): boolean {
  let acc = 0;
  for (const b of v) acc |= b;
  return acc === 0;
}

/**
 * True iff `a` and `b` hold the same bytes. The time taken depends on the
 * length only, not on where they differ, so it also compares secrets (AUTH
 * values, COOKIEs, MACs).
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The big-endian 32-bit unsigned integer at an offset (network byte order); the caller checks the length. */
export { readU32 } from '../../io/bytes.js';
