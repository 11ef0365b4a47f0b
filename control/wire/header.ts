// The fixed 28-octet IKE header (RFC 7296 §3.1).
//
// decodeHeader validates, then reads; it never throws. The SPIs it returns are
// subarrays of the input (they alias it: copy them if the input buffer is reused).
import { HeaderFlag } from './constants.js';
import { fail, ok, wireError, type WireResult } from './result.js';

/** RFC 7296 §3.1: SPIi(8) SPIr(8) Next Payload(1) Version(1) Exchange Type(1) Flags(1) Message ID(4) Length(4). */
export const IKE_HEADER_LENGTH = 28;

/** Length of each IKE SA SPI in the header (RFC 7296 §3.1). */
export const IKE_SPI_LENGTH = 8;

/** The flag bits RFC 7296 §3.1 defines (I, V, R); the others are RESERVED ('X'). */
const DEFINED_FLAGS = HeaderFlag.INITIATOR | HeaderFlag.VERSION | HeaderFlag.RESPONSE;

export interface IkeHeader {
  /** Initiator's SPI, 8 octets. */
  spiI: Uint8Array;
  /** Responder's SPI, 8 octets (zero in the first IKE_SA_INIT request). */
  spiR: Uint8Array;
  /** Type of the first payload (PayloadType). */
  nextPayload: number;
  /** Version octet: major in the high nibble, minor in the low one (0x20 for IKEv2). */
  version: number;
  /** ExchangeType. */
  exchangeType: number;
  /** HeaderFlag bits; reserved bits are dropped on decode and never sent. */
  flags: number;
  /** Message ID, uint32. */
  messageId: number;
  /** Length of the whole message, header included. */
  length: number;
}

/**
 * Decode and validate the IKE header at the start of `buf` (RFC 7296 §3.1).
 *
 * Errors, in the order checked:
 * - fewer than 28 bytes: TRUNCATED with notify 0 (no header to answer to);
 * - major version other than 2: INVALID_MAJOR_VERSION (RFC 7296 §2.5; for
 *   major 1, IKEv1, the engine is expected to drop rather than answer);
 * - Length field below 28: BAD_LENGTH;
 * - Length field beyond the end of `buf`: TRUNCATED.
 *
 * `buf` may be longer than the Length field here (so a caller can peek at a
 * header); decodeMessage is the one that rejects a datagram longer than its
 * Length field. The minor version is returned as received and otherwise ignored;
 * reserved flag bits are cleared.
 */
export function decodeHeader(buf: Uint8Array): WireResult<IkeHeader> {
  if (!(buf instanceof Uint8Array)) return fail(wireError('TRUNCATED', 'IKE header: input is not a byte array', { notify: 0 }));
  if (buf.length < IKE_HEADER_LENGTH) {
    return fail(wireError('TRUNCATED', `IKE header needs ${IKE_HEADER_LENGTH} bytes, got ${buf.length}`, { notify: 0, offset: 0 }));
  }
  const version = buf[17];
  if (version >> 4 !== 2) {
    return fail(wireError('INVALID_MAJOR_VERSION', `IKE major version ${version >> 4}, expected 2`, { offset: 17 }));
  }
  const length = ((buf[24] << 24) | (buf[25] << 16) | (buf[26] << 8) | buf[27]) >>> 0;
  if (length < IKE_HEADER_LENGTH) {
    return fail(wireError('BAD_LENGTH', `IKE header Length ${length} is below ${IKE_HEADER_LENGTH}`, { offset: 24 }));
  }
  if (length > buf.length) {
    return fail(wireError('TRUNCATED', `IKE header Length ${length} exceeds the ${buf.length} bytes received`, { offset: 24 }));
  }
  return ok({
    spiI: buf.subarray(0, 8),
    spiR: buf.subarray(8, 16),
    nextPayload: buf[16],
    version,
    exchangeType: buf[18],
    flags: buf[19] & DEFINED_FLAGS,
    messageId: ((buf[20] << 24) | (buf[21] << 16) | (buf[22] << 8) | buf[23]) >>> 0,
    length,
  });
}

function checkOctet(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`IKE header: ${name} must be an octet, got ${v}`);
}

/**
 * @internal Write a header at `out[offset..offset+28)` with the given Next Payload
 * and Length (the fields the message encoder computes). Throws on values the
 * header cannot carry (programmer error). Reserved flag bits are written as
 * zero (RFC 7296 §3.1).
 */
export function writeHeader(
  h: Omit<IkeHeader, 'nextPayload' | 'length'>,
  nextPayload: number,
  length: number,
  out: Uint8Array,
  offset: number,
): void {
  if (!(h.spiI instanceof Uint8Array) || h.spiI.length !== IKE_SPI_LENGTH) throw new RangeError('IKE header: spiI must be 8 bytes');
  if (!(h.spiR instanceof Uint8Array) || h.spiR.length !== IKE_SPI_LENGTH) throw new RangeError('IKE header: spiR must be 8 bytes');
  checkOctet('nextPayload', nextPayload);
  checkOctet('version', h.version);
  checkOctet('exchangeType', h.exchangeType);
  checkOctet('flags', h.flags);
  if (!Number.isInteger(h.messageId) || h.messageId < 0 || h.messageId > 0xffffffff) {
    throw new RangeError(`IKE header: messageId must be a uint32, got ${h.messageId}`);
  }
  if (!Number.isInteger(length) || length < IKE_HEADER_LENGTH || length > 0xffffffff) {
    throw new RangeError(`IKE header: length must be a uint32 >= ${IKE_HEADER_LENGTH}, got ${length}`);
  }
  if (offset < 0 || offset + IKE_HEADER_LENGTH > out.length) throw new RangeError('IKE header: output buffer too small');
  out.set(h.spiI, offset);
  out.set(h.spiR, offset + 8);
  out[offset + 16] = nextPayload;
  out[offset + 17] = h.version;
  out[offset + 18] = h.exchangeType;
  out[offset + 19] = h.flags & DEFINED_FLAGS;
  writeU32(out, offset + 20, h.messageId);
  writeU32(out, offset + 24, length);
}

function writeU32(out: Uint8Array, o: number, v: number): void {
  out[o] = v >>> 24;
  out[o + 1] = (v >>> 16) & 0xff;
  out[o + 2] = (v >>> 8) & 0xff;
  out[o + 3] = v & 0xff;
}

/** Encode the 28-octet header (RFC 7296 §3.1). Throws on values the header cannot carry. */
export function encodeHeader(h: IkeHeader): Uint8Array {
  const out = new Uint8Array(IKE_HEADER_LENGTH);
  writeHeader(h, h.nextPayload, h.length, out, 0);
  return out;
}

/** R flag: the message is a response (RFC 7296 §3.1). */
export const isResponse = (h: Pick<IkeHeader, 'flags'>): boolean => (h.flags & HeaderFlag.RESPONSE) !== 0;

/** I flag: the sender is the original initiator of the IKE SA (RFC 7296 §3.1). */
export const isInitiatorFlag = (h: Pick<IkeHeader, 'flags'>): boolean => (h.flags & HeaderFlag.INITIATOR) !== 0;
