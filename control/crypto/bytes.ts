// Byte helpers shared by the crypto modules. @internal
//
// node:crypto returns Buffers. Handing those out would give callers a type
// whose slice() is a view, not a copy; `view` re-types the same memory as a
// plain Uint8Array, so wiping it still clears the bytes node produced.

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

/** Byte-wise equality for public data (identifiers, encodings); secrets compare with timingSafeEqual. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
