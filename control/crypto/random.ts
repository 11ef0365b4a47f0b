// Randomness and wiping of secrets.
//
// Every function in control/crypto that needs random bytes takes an optional
// RandomSource, so tests can inject deterministic bytes; production code uses
// systemRandom (the operating system CSPRNG through node:crypto).

import { randomBytes } from 'node:crypto';

/** Returns `length` fresh random bytes. */
export type RandomSource = (length: number) => Uint8Array;

/** The system CSPRNG (node:crypto randomBytes). */
export const systemRandom: RandomSource = (length: number): Uint8Array => {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`random length must be a non-negative integer, got ${length}`);
  const bytes = randomBytes(length);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength); // same memory, so wipe() reaches it
};

/**
 * Overwrites each buffer with zeros (architecture §4.5: secrets are
 * zeroised when the SA dies). `undefined` entries are skipped, so optional
 * keys (SK_a* of an AEAD suite) can be passed as they are.
 */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}

/**
 * Draws `length` bytes from `random` and checks that the source honoured the
 * length (a wrong-sized answer from an injected source is a programmer error).
 * @internal
 */
export function drawRandom(random: RandomSource, length: number): Uint8Array {
  const bytes = random(length);
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new RangeError(`random source returned ${bytes?.length} bytes, expected ${length}`);
  }
  return bytes;
}
