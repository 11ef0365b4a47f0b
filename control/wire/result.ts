// Typed outcome of decoding untrusted IKE bytes (RFC 7296 §3).
//
// Decoding never throws: a malformed datagram is an ordinary, expected input.
// Every failure is a WireError value that says what was wrong (code, message),
// where (offset, payloadType) and which notify the engine should answer with
// (RFC 7296 §2.21, §3.10.1), so the engine can map it without re-parsing.
import { NotifyType } from './constants.js';

/**
 * What went wrong:
 * - TRUNCATED: the input (or the enclosing structure) ends before a header or
 *   before the length a structure declares.
 * - BAD_LENGTH: a length field is impossible for its structure (below the
 *   minimum, not the size its type requires, inconsistent with a count).
 * - INVALID_MAJOR_VERSION: the header's major version is not 2 (RFC 7296 §3.1).
 * - INVALID_SYNTAX: a field holds a value out of range (substructure markers,
 *   proposal numbering, unknown traffic selector type, misplaced Encrypted payload).
 * - UNSUPPORTED_CRITICAL_PAYLOAD: an unknown payload type with the critical bit set (§3.2).
 * - TRAILING_BYTES: bytes after the last payload of a chain, after the
 *   Encrypted payload, or after the header's Length in the datagram.
 */
export type WireErrorCode =
  | 'TRUNCATED'
  | 'BAD_LENGTH'
  | 'INVALID_MAJOR_VERSION'
  | 'INVALID_SYNTAX'
  | 'UNSUPPORTED_CRITICAL_PAYLOAD'
  | 'TRAILING_BYTES';

/** Every WireErrorCode, for exhaustive checks. */
export const WIRE_ERROR_CODES: readonly WireErrorCode[] = Object.freeze([
  'TRUNCATED',
  'BAD_LENGTH',
  'INVALID_MAJOR_VERSION',
  'INVALID_SYNTAX',
  'UNSUPPORTED_CRITICAL_PAYLOAD',
  'TRAILING_BYTES',
]);

export interface WireError {
  code: WireErrorCode;
  /** Short human description, safe to log (never contains secrets). */
  message: string;
  /**
   * NotifyType to answer with: INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD
   * (with `data` = the one-octet payload type), INVALID_MAJOR_VERSION, or 0
   * when there is nothing to answer (fewer bytes than an IKE header).
   */
  notify: number;
  /** Notification Data to send with `notify`, when it has any. */
  data?: Uint8Array;
  /** Payload type being decoded when the error was found. */
  payloadType?: number;
  /** Offset in the decoded buffer of the structure at fault. */
  offset?: number;
}

/**
 * Success with a value, or failure with a typed error: the one result shape of
 * the control plane (decoding here, cryptography in control/crypto, message
 * protection and negotiation in control/ike). Untrusted input yields one of
 * these, never an exception.
 */
export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E };

export type WireResult<T> = Result<T, WireError>;

/** The notify each error code answers with unless the caller says otherwise. */
function defaultNotify(code: WireErrorCode): number {
  switch (code) {
    case 'INVALID_MAJOR_VERSION':
      return NotifyType.INVALID_MAJOR_VERSION;
    case 'UNSUPPORTED_CRITICAL_PAYLOAD':
      return NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD;
    default:
      return NotifyType.INVALID_SYNTAX;
  }
}

/** @internal Build a WireError; `notify` defaults from the code. */
export function wireError(
  code: WireErrorCode,
  message: string,
  where: { payloadType?: number; offset?: number; notify?: number; data?: Uint8Array } = {},
): WireError {
  const error: WireError = { code, message, notify: where.notify ?? defaultNotify(code) };
  if (where.data !== undefined) error.data = where.data;
  if (where.payloadType !== undefined) error.payloadType = where.payloadType;
  if (where.offset !== undefined) error.offset = where.offset;
  return error;
}

/** @internal */
export function ok<T>(value: T): WireResult<T> {
  return { ok: true, value };
}

/** @internal */
export function fail<T = never>(error: WireError): WireResult<T> {
  return { ok: false, error };
}

/** True when `x` has the shape of a WireError with a known code. */
export function isWireError(x: unknown): x is WireError {
  if (typeof x !== 'object' || x === null) return false;
  const e = x as Partial<WireError>;
  return (
    typeof e.code === 'string' &&
    (WIRE_ERROR_CODES as readonly string[]).includes(e.code) &&
    typeof e.message === 'string' &&
    typeof e.notify === 'number'
  );
}
