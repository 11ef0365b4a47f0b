// Typed outcome of a cryptographic operation on untrusted input (a peer's
// public value, an AUTH payload, a ciphertext). Such operations never throw:
// a bad input is an ordinary, expected result that the IKE engine maps to a
// notify (INVALID_SYNTAX, AUTHENTICATION_FAILED, ...) or a counted drop.

import type { Result } from '../wire/result.js';

/** Success with a value, or failure with a short reason fit for a debug log (never secret). */
export type CryptoResult<T> = Result<T, string>;

/** @internal */
export function ok<T>(value: T): CryptoResult<T> {
  return { ok: true, value };
}

/** @internal */
export function fail<T = never>(error: string): CryptoResult<T> {
  return { ok: false, error };
}
