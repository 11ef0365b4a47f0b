// Whole IKE messages and payload chains (RFC 7296 §3.1, §3.2, §3.14; RFC 7383 §2.5).
//
// Decoding walks the Next Payload chain: for each payload the generic header
// is checked against the enclosing bounds, the body is validated, and only
// then parsed (payload-decode.ts). Decoding never throws; every failure is a
// WireError. Decoded byte fields are subarrays of the input buffer (they alias
// it), which keeps decoding allocation-light: copy what must outlive the buffer.
//
// The outer chain of a message may end with an Encrypted (SK) or Encrypted
// Fragment (SKF) payload, kept opaque (body + AAD); the engine decrypts it and
// decodes the plaintext with decodePayloadChain(sk.innerType, plaintext).
import { PayloadType } from './constants.js';
import { decodeHeader, IKE_HEADER_LENGTH, writeHeader, type IkeHeader } from './header.js';
import { parsePayloadBody, readU16, validatePayloadBody } from './payload-decode.js';
import { checkU16, checkU8, payloadBodyLength, writePayloadBody, writeU16 } from './payload-encode.js';
import { isKnownPayloadType, type Payload, type UnknownPayloadType } from './payloads.js';
import { fail, ok, wireError, type WireResult } from './result.js';

/** RFC 7296 §3.2 generic payload header: Next Payload(1) C|RESERVED(1) Payload Length(2). */
export const GENERIC_HEADER_LENGTH = 4;
const CRITICAL = 0x80;

export interface IkeMessage {
  header: IkeHeader;
  /** The outer payloads; an SK or SKF payload, if any, is last and stays opaque. */
  payloads: Payload[];
}

/** Options of decodePayloadChain. */
export interface ChainOptions {
  /**
   * Accept an Encrypted (SK) or Encrypted Fragment (SKF) payload as the last
   * payload of the chain. False by default: a decrypted SK plaintext must not
   * contain another Encrypted payload (RFC 7296 §3.1). decodeMessage sets it.
   */
  allowEncrypted?: boolean;
}

function isEncrypted(type: number): boolean {
  return type === PayloadType.SK || type === PayloadType.SKF;
}

/** @internal The chain walk; `buf` starts at the message's offset 0 (for the AAD). */
function walkChain(firstType: number, buf: Uint8Array, start: number, end: number, allowEncrypted: boolean): WireResult<Payload[]> {
  const payloads: Payload[] = [];
  let type = firstType;
  let off = start;
  while (type !== PayloadType.NONE) {
    if (end - off < GENERIC_HEADER_LENGTH) {
      return fail(wireError('TRUNCATED', `payload ${type}: generic header needs 4 bytes, ${end - off} remain`, { payloadType: type, offset: off }));
    }
    const next = buf[off];
    const critical = (buf[off + 1] & CRITICAL) !== 0;
    const length = readU16(buf, off + 2);
    if (length < GENERIC_HEADER_LENGTH) {
      return fail(wireError('BAD_LENGTH', `payload ${type}: Payload Length ${length} is below 4`, { payloadType: type, offset: off }));
    }
    if (length > end - off) {
      return fail(wireError('TRUNCATED', `payload ${type}: Payload Length ${length} exceeds the ${end - off} bytes left`, { payloadType: type, offset: off }));
    }
    const bodyStart = off + GENERIC_HEADER_LENGTH;
    const bodyEnd = off + length;
    if (!isKnownPayloadType(type)) {
      // RFC 7296 §3.2: skip unknown payloads unless their critical bit is set.
      if (critical) {
        return fail(
          wireError('UNSUPPORTED_CRITICAL_PAYLOAD', `unsupported critical payload type ${type}`, {
            payloadType: type,
            offset: off,
            data: Uint8Array.of(type),
          }),
        );
      }
      payloads.push({ type: type as UnknownPayloadType, critical: false, data: buf.subarray(bodyStart, bodyEnd) });
    } else {
      if (isEncrypted(type)) {
        if (!allowEncrypted) {
          return fail(wireError('INVALID_SYNTAX', `payload ${type}: an Encrypted payload is not allowed here`, { payloadType: type, offset: off }));
        }
        // RFC 7296 §3.14, RFC 7383 §2.5: the Encrypted payload MUST be the last one.
        if (bodyEnd !== end) {
          return fail(wireError('TRAILING_BYTES', `${end - bodyEnd} bytes follow the Encrypted payload`, { payloadType: type, offset: bodyEnd }));
        }
      }
      const err = validatePayloadBody(type, buf, bodyStart, bodyEnd);
      if (err) return fail(err);
      payloads.push(parsePayloadBody(type, critical, next, buf, bodyStart, bodyEnd));
      // Its Next Payload names the first inner payload, not a following outer one.
      if (isEncrypted(type)) return ok(payloads);
    }
    off = bodyEnd;
    type = next;
  }
  if (off !== end) {
    return fail(wireError('TRAILING_BYTES', `${end - off} bytes follow the last payload`, { offset: off }));
  }
  return ok(payloads);
}

/**
 * Decode the payload chain in buf[start, end) whose first payload has type
 * `firstType` (RFC 7296 §3.2). The chain must fill the range exactly. The
 * engine uses it on decrypted SK plaintext: decodePayloadChain(sk.innerType, plaintext).
 *
 * Unknown payload types with the critical bit clear come back as
 * UnknownPayload; with it set, the result is UNSUPPORTED_CRITICAL_PAYLOAD with
 * data = [type]. An SK/SKF payload is INVALID_SYNTAX unless options.allowEncrypted.
 * Never throws.
 */
export function decodePayloadChain(
  firstType: number,
  buf: Uint8Array,
  start = 0,
  end: number = buf instanceof Uint8Array ? buf.length : 0,
  options: ChainOptions = {},
): WireResult<Payload[]> {
  if (!(buf instanceof Uint8Array)) return fail(wireError('INVALID_SYNTAX', 'payload chain: input is not a byte array'));
  if (!Number.isInteger(firstType) || firstType < 0 || firstType > 0xff) {
    return fail(wireError('INVALID_SYNTAX', `payload chain: first payload type ${firstType} is not an octet`));
  }
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > buf.length) {
    return fail(wireError('INVALID_SYNTAX', `payload chain: bounds [${start}, ${end}) are outside the ${buf.length}-byte input`));
  }
  return walkChain(firstType, buf, start, end, options.allowEncrypted === true);
}

/**
 * Decode a whole IKE message (RFC 7296 §3.1): header, then the payload chain
 * that must fill the header's Length exactly. A datagram longer than its Length
 * field is rejected (TRAILING_BYTES, notify INVALID_SYNTAX) rather than
 * silently trimmed: nothing legitimate sends one. Never throws.
 */
export function decodeMessage(buf: Uint8Array): WireResult<IkeMessage> {
  const h = decodeHeader(buf);
  if (!h.ok) return fail(h.error);
  const header = h.value;
  if (buf.length > header.length) {
    return fail(
      wireError('TRAILING_BYTES', `datagram of ${buf.length} bytes is longer than its Length field ${header.length}`, {
        offset: header.length,
      }),
    );
  }
  const chain = walkChain(header.nextPayload, buf, IKE_HEADER_LENGTH, header.length, true);
  if (!chain.ok) return fail(chain.error);
  return ok({ header, payloads: chain.value });
}

/** @internal Total encoded size of a chain (generic headers included); checks placement of SK/SKF. */
function chainLength(payloads: readonly Payload[]): number {
  let n = 0;
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i]!;
    if (isEncrypted(p.type) && i !== payloads.length - 1) {
      throw new RangeError(`payload ${p.type} (Encrypted) must be the last payload of a chain (RFC 7296 §3.14)`);
    }
    n += GENERIC_HEADER_LENGTH + payloadBodyLength(p);
  }
  return n;
}

/**
 * @internal Write a chain at `off`; returns the offset after it. Call chainLength
 * first. `nextAfterLast` is the Next Payload of the last payload (0, or the type
 * of a payload the caller writes after the chain).
 */
function writeChain(payloads: readonly Payload[], out: Uint8Array, off: number, nextAfterLast: number = PayloadType.NONE): number {
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i]!;
    const start = off;
    const encrypted = p.type === PayloadType.SK || p.type === PayloadType.SKF;
    out[off] = encrypted ? (p as { innerType: number }).innerType : (payloads[i + 1]?.type ?? nextAfterLast);
    out[off + 1] = p.critical ? CRITICAL : 0;
    off = writePayloadBody(p, out, off + GENERIC_HEADER_LENGTH);
    writeU16(out, start + 2, off - start);
  }
  return off;
}

/**
 * Encode a payload chain (RFC 7296 §3.2): each Next Payload names the payload
 * after it, the last is 0, except an SK/SKF payload (which must be last) whose
 * Next Payload is its innerType. `firstType` is the type of the first payload
 * (0 for an empty chain), for the header or the enclosing SK payload.
 * Throws on values that do not fit their fields (programmer error).
 */
export function encodePayloadChain(payloads: readonly Payload[]): { firstType: number; bytes: Uint8Array } {
  const bytes = new Uint8Array(chainLength(payloads));
  writeChain(payloads, bytes, 0);
  return { firstType: payloads[0]?.type ?? PayloadType.NONE, bytes };
}

/**
 * Encode a message whose payloads are sent as they are (IKE_SA_INIT, or an
 * unprotected error response), RFC 7296 §3.1. Next Payload and Length are
 * computed. An SK payload in `payloads` is written as given (its body must
 * already be sealed); to seal over the final AAD use encodeSkMessage.
 */
export function encodeMessage(header: Omit<IkeHeader, 'nextPayload' | 'length'>, payloads: readonly Payload[]): Uint8Array {
  const length = IKE_HEADER_LENGTH + chainLength(payloads);
  const out = new Uint8Array(length);
  writeHeader(header, payloads[0]?.type ?? PayloadType.NONE, length, out, 0);
  writeChain(payloads, out, IKE_HEADER_LENGTH);
  return out;
}

function sealInto(out: Uint8Array, bodyStart: number, bodyLength: number, seal: (aad: Uint8Array) => Uint8Array): Uint8Array {
  const body = seal(out.slice(0, bodyStart));
  if (!(body instanceof Uint8Array) || body.length !== bodyLength) {
    throw new RangeError(`seal returned ${body instanceof Uint8Array ? body.length : typeof body} bytes, expected ${bodyLength}`);
  }
  out.set(body, bodyStart);
  return out;
}

/**
 * Encrypted message (RFC 7296 §3.14): header || [leading payloads] || SK
 * generic header || body. `seal` receives a copy of the AAD (header + leading
 * payloads + SK generic header, with Length fields already final, RFC 5282 §5.1)
 * and must return exactly `bodyLength` bytes (IV || ciphertext || ICV).
 * `leading` holds unencrypted payloads that precede SK (rare; RFC 7383 §2.5.3).
 */
export function encodeSkMessage(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  innerFirstType: number,
  bodyLength: number,
  seal: (aad: Uint8Array) => Uint8Array,
  leading: readonly Payload[] = [],
): Uint8Array {
  checkU8('SK inner type', innerFirstType);
  if (!Number.isInteger(bodyLength) || bodyLength < 0) throw new RangeError(`SK body length ${bodyLength}`);
  checkU16('SK payload length', GENERIC_HEADER_LENGTH + bodyLength);
  return encodeEncrypted(header, leading, PayloadType.SK, bodyLength, seal, (out, o) => {
    out[o] = innerFirstType;
    writeU16(out, o + 2, GENERIC_HEADER_LENGTH + bodyLength);
    return o + GENERIC_HEADER_LENGTH;
  });
}

/**
 * One IKE fragment message (RFC 7383 §2.5): header || SKF header (Fragment
 * Number, Total Fragments) || body. `innerFirstType` goes in fragment 1 only;
 * the others carry 0, as the RFC requires. `seal` receives the AAD (through
 * Total Fragments) and returns exactly `bodyLength` bytes.
 */
export function encodeSkfMessage(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  innerFirstType: number,
  fragmentNumber: number,
  totalFragments: number,
  bodyLength: number,
  seal: (aad: Uint8Array) => Uint8Array,
): Uint8Array {
  checkU8('SKF inner type', innerFirstType);
  checkU16('fragment number', fragmentNumber);
  checkU16('total fragments', totalFragments);
  if (fragmentNumber < 1 || fragmentNumber > totalFragments) throw new RangeError(`fragment ${fragmentNumber} of ${totalFragments}`);
  if (!Number.isInteger(bodyLength) || bodyLength < 0) throw new RangeError(`SKF body length ${bodyLength}`);
  const payloadLength = GENERIC_HEADER_LENGTH + 4 + bodyLength;
  checkU16('SKF payload length', payloadLength);
  return encodeEncrypted(header, [], PayloadType.SKF, 4 + bodyLength, seal, (out, o) => {
    out[o] = fragmentNumber === 1 ? innerFirstType : 0;
    writeU16(out, o + 2, payloadLength);
    writeU16(out, o + 4, fragmentNumber);
    writeU16(out, o + 6, totalFragments);
    return o + 8;
  });
}

/** @internal Shared framing of encodeSkMessage/encodeSkfMessage. `afterHeader` is the encrypted payload's size past its generic header. */
function encodeEncrypted(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  leading: readonly Payload[],
  type: number,
  afterHeader: number,
  seal: (aad: Uint8Array) => Uint8Array,
  writeEncryptedHeader: (out: Uint8Array, offset: number) => number,
): Uint8Array {
  for (const p of leading) if (isEncrypted(p.type)) throw new RangeError('an Encrypted payload cannot precede another');
  const leadingLength = chainLength(leading);
  const skStart = IKE_HEADER_LENGTH + leadingLength;
  const length = skStart + GENERIC_HEADER_LENGTH + afterHeader;
  const out = new Uint8Array(length);
  writeHeader(header, leading[0]?.type ?? type, length, out, 0);
  writeChain(leading, out, IKE_HEADER_LENGTH, type);
  const bodyStart = writeEncryptedHeader(out, skStart);
  return sealInto(out, bodyStart, length - bodyStart, seal);
}
