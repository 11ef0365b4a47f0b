// Payload bodies from untrusted bytes (RFC 7296 §3.3–§3.16, RFC 7383 §2.5).
//
// Validate, then parse, as OpenBSD iked does: for each payload type a validator
// checks every length, count and marker of the body in buf[start, end) and
// returns a WireError or undefined; only then does the matching parser read the
// body, trusting those checks. Nothing here throws on any input.
//
// Byte fields of the parsed payloads are subarrays of `buf` (they alias it).
import { PayloadType, ProtocolId, TransformAttr, TsType } from './constants.js';
import type {
  CfgAttribute,
  Payload,
  Proposal,
  TrafficSelector,
  Transform,
  TransformAttribute,
} from './payloads.js';
import { wireError, type WireError } from './result.js';

/** @internal */
export function readU16(buf: Uint8Array, o: number): number {
  return (buf[o] << 8) | buf[o + 1];
}

/** RFC 7296 §3.3.1 proposal substructure header: Last Substruc, RESERVED, Length(2), Num, Protocol, SPI Size, Num Transforms. */
const PROPOSAL_HEADER = 8;
/** RFC 7296 §3.3.2 transform substructure header: Last Substruc, RESERVED, Length(2), Type, RESERVED, ID(2). */
const TRANSFORM_HEADER = 8;
/** RFC 7296 §3.3.5 attribute header: AF|Type(2), Length-or-Value(2). */
const ATTRIBUTE_HEADER = 4;
/** Last Substruc values (RFC 7296 §3.3.1, §3.3.2). */
const LAST = 0;
const MORE_PROPOSALS = 2;
const MORE_TRANSFORMS = 3;
/** AF bit of an attribute type (RFC 7296 §3.3.5) / reserved bit of a CP attribute type (§3.15.1). */
const TOP_BIT = 0x8000;
/** RFC 7296 §3.13.1: header(4) ports(4) and two 4- or 16-octet addresses. */
const SELECTOR_LENGTH_V4 = 16;
const SELECTOR_LENGTH_V6 = 40;
/** RFC 7296 §3.9 Nonce Data bounds. */
export const NONCE_MIN = 16;
export const NONCE_MAX = 256;

type Validator = (buf: Uint8Array, start: number, end: number, type: number) => WireError | undefined;

function tooShort(type: number, start: number, end: number, min: number): WireError | undefined {
  if (end - start >= min) return undefined;
  return wireError('BAD_LENGTH', `payload ${type}: body of ${end - start} bytes is below the minimum of ${min}`, {
    payloadType: type,
    offset: start - 4,
  });
}

// ---------------------------------------------------------------- SA (§3.3)

/** RFC 7296 §3.3.5: attributes of one transform in buf[start, end); no type twice. */
function validateAttributes(buf: Uint8Array, start: number, end: number, type: number): WireError | undefined {
  let off = start;
  let first = -1;
  let seen: Set<number> | undefined;
  while (off < end) {
    if (end - off < ATTRIBUTE_HEADER) {
      return wireError('TRUNCATED', 'transform attribute header runs past its transform', { payloadType: type, offset: off });
    }
    const word = readU16(buf, off);
    const attrType = word & ~TOP_BIT;
    const size = word & TOP_BIT ? ATTRIBUTE_HEADER : ATTRIBUTE_HEADER + readU16(buf, off + 2);
    if (off + size > end) {
      return wireError('TRUNCATED', `transform attribute ${attrType} runs past its transform`, { payloadType: type, offset: off });
    }
    // RFC 7296 §3.3: "A transform MUST NOT have multiple attributes of the same type."
    if (first < 0) first = attrType;
    else {
      seen ??= new Set([first]);
      if (seen.has(attrType)) {
        return wireError('INVALID_SYNTAX', `transform attribute ${attrType} appears twice`, { payloadType: type, offset: off });
      }
      seen.add(attrType);
    }
    off += size;
  }
  return undefined;
}

/** RFC 7296 §3.3.2: `count` transforms filling buf[start, end) exactly. */
function validateTransforms(buf: Uint8Array, start: number, end: number, count: number, type: number): WireError | undefined {
  let off = start;
  for (let i = 0; i < count; i++) {
    if (end - off < TRANSFORM_HEADER) {
      return wireError('TRUNCATED', `transform ${i + 1} of ${count} runs past its proposal`, { payloadType: type, offset: off });
    }
    const last = buf[off];
    const length = readU16(buf, off + 2);
    if (length < TRANSFORM_HEADER) {
      return wireError('BAD_LENGTH', `transform length ${length} is below ${TRANSFORM_HEADER}`, { payloadType: type, offset: off });
    }
    if (off + length > end) {
      return wireError('TRUNCATED', `transform length ${length} runs past its proposal`, { payloadType: type, offset: off });
    }
    const expected = i === count - 1 ? LAST : MORE_TRANSFORMS;
    if (last !== expected) {
      return wireError('INVALID_SYNTAX', `transform ${i + 1} of ${count}: Last Substruc ${last}, expected ${expected}`, {
        payloadType: type,
        offset: off,
      });
    }
    const err = validateAttributes(buf, off + TRANSFORM_HEADER, off + length, type);
    if (err) return err;
    off += length;
  }
  if (off !== end) {
    return wireError('BAD_LENGTH', `proposal length leaves ${end - off} bytes after its ${count} transforms`, {
      payloadType: type,
      offset: off,
    });
  }
  return undefined;
}

/**
 * RFC 7296 §3.3, §3.3.1: one or more proposals filling the body exactly; Last
 * Substruc 2 before the last, 0 on it; proposal numbers from 1 and one more
 * than the previous when there are several (a lone proposal in an answer
 * carries the accepted number, any value from 1).
 */
const validateSa: Validator = (buf, start, end, type) => {
  if (start === end) return wireError('BAD_LENGTH', 'SA payload without proposals', { payloadType: type, offset: start - 4 });
  let off = start;
  let index = 0;
  let firstNumber = 0;
  let previousNumber = 0;
  while (off < end) {
    if (end - off < PROPOSAL_HEADER) {
      return wireError('TRUNCATED', `proposal ${index + 1} header runs past the SA payload`, { payloadType: type, offset: off });
    }
    const last = buf[off];
    const length = readU16(buf, off + 2);
    const number = buf[off + 4];
    const spiSize = buf[off + 6];
    const count = buf[off + 7];
    if (length < PROPOSAL_HEADER + spiSize) {
      return wireError('BAD_LENGTH', `proposal length ${length} is below ${PROPOSAL_HEADER} + SPI size ${spiSize}`, {
        payloadType: type,
        offset: off,
      });
    }
    if (off + length > end) {
      return wireError('TRUNCATED', `proposal length ${length} runs past the SA payload`, { payloadType: type, offset: off });
    }
    if (last !== LAST && last !== MORE_PROPOSALS) {
      return wireError('INVALID_SYNTAX', `proposal Last Substruc ${last}, expected 0 or 2`, { payloadType: type, offset: off });
    }
    const endsPayload = off + length === end;
    if (last === LAST && !endsPayload) {
      return wireError('BAD_LENGTH', `SA payload continues ${end - off - length} bytes after its last proposal`, {
        payloadType: type,
        offset: off,
      });
    }
    if (last === MORE_PROPOSALS && endsPayload) {
      return wireError('TRUNCATED', 'SA payload ends where its proposal announces another', { payloadType: type, offset: off });
    }
    if (number === 0) return wireError('INVALID_SYNTAX', 'proposal number 0', { payloadType: type, offset: off });
    if (index === 0) firstNumber = number;
    else if (firstNumber !== 1 || number !== previousNumber + 1) {
      return wireError('INVALID_SYNTAX', `proposal number ${number} after ${previousNumber} (expected 1, 2, ...)`, {
        payloadType: type,
        offset: off,
      });
    }
    if (count === 0) return wireError('INVALID_SYNTAX', `proposal ${number} has no transforms`, { payloadType: type, offset: off });
    const err = validateTransforms(buf, off + PROPOSAL_HEADER + spiSize, off + length, count, type);
    if (err) return err;
    previousNumber = number;
    index++;
    off += length;
  }
  return undefined;
};

function parseTransform(buf: Uint8Array, off: number, length: number): Transform {
  const t: Transform = { type: buf[off + 4], id: readU16(buf, off + 6) };
  let a = off + TRANSFORM_HEADER;
  const end = off + length;
  let attributes: TransformAttribute[] | undefined;
  while (a < end) {
    const word = readU16(buf, a);
    const attrType = word & ~TOP_BIT;
    if (word & TOP_BIT) {
      const value = readU16(buf, a + 2);
      if (attrType === TransformAttr.KEY_LENGTH) t.keyLength = value;
      else (attributes ??= []).push({ type: attrType, value });
      a += ATTRIBUTE_HEADER;
    } else {
      const size = readU16(buf, a + 2);
      (attributes ??= []).push({ type: attrType, value: buf.subarray(a + ATTRIBUTE_HEADER, a + ATTRIBUTE_HEADER + size) });
      a += ATTRIBUTE_HEADER + size;
    }
  }
  if (attributes) t.attributes = attributes;
  return t;
}

function parseSa(buf: Uint8Array, start: number, end: number): Proposal[] {
  const proposals: Proposal[] = [];
  for (let off = start; off < end; ) {
    const length = readU16(buf, off + 2);
    const spiSize = buf[off + 6];
    const count = buf[off + 7];
    const spiStart = off + PROPOSAL_HEADER;
    const transforms: Transform[] = [];
    let t = spiStart + spiSize;
    for (let i = 0; i < count; i++) {
      const tLength = readU16(buf, t + 2);
      transforms.push(parseTransform(buf, t, tLength));
      t += tLength;
    }
    proposals.push({ number: buf[off + 4], protocol: buf[off + 5], spi: buf.subarray(spiStart, spiStart + spiSize), transforms });
    off += length;
  }
  return proposals;
}

// ---------------------------------------------------------------- simple bodies

/** RFC 7296 §3.4: Group(2) RESERVED(2) data. */
const validateKe: Validator = (_buf, start, end, type) => tooShort(type, start, end, 4);
/** RFC 7296 §3.5: ID Type(1) RESERVED(3) data. */
const validateId: Validator = (_buf, start, end, type) => tooShort(type, start, end, 4);
/** RFC 7296 §3.6, §3.7: Cert Encoding(1) data. */
const validateCert: Validator = (_buf, start, end, type) => tooShort(type, start, end, 1);
/** RFC 7296 §3.8: Auth Method(1) RESERVED(3) data. */
const validateAuth: Validator = (_buf, start, end, type) => tooShort(type, start, end, 4);
/** Bodies with no structure of their own (Vendor ID §3.12, SK §3.14). */
const validateOpaque: Validator = () => undefined;

/** RFC 7296 §3.9: "The size of the Nonce Data MUST be between 16 and 256 octets, inclusive." */
const validateNonce: Validator = (_buf, start, end, type) => {
  const n = end - start;
  if (n >= NONCE_MIN && n <= NONCE_MAX) return undefined;
  return wireError('BAD_LENGTH', `nonce of ${n} bytes, expected ${NONCE_MIN}..${NONCE_MAX}`, { payloadType: type, offset: start - 4 });
};

/** RFC 7296 §3.10: Protocol(1) SPI Size(1) Type(2) SPI data. */
const validateNotify: Validator = (buf, start, end, type) => {
  const err = tooShort(type, start, end, 4);
  if (err) return err;
  const spiSize = buf[start + 1];
  if (4 + spiSize > end - start) {
    return wireError('BAD_LENGTH', `notify SPI size ${spiSize} exceeds the payload`, { payloadType: type, offset: start - 4 });
  }
  return undefined;
};

/**
 * RFC 7296 §3.11: Protocol(1) SPI Size(1) Num SPIs(2) SPIs; the SPIs fill the
 * body exactly; SPI size 0 for IKE (with no SPIs), 4 for AH and ESP.
 */
const validateDelete: Validator = (buf, start, end, type) => {
  const err = tooShort(type, start, end, 4);
  if (err) return err;
  const protocol = buf[start];
  const spiSize = buf[start + 1];
  const count = readU16(buf, start + 2);
  if (4 + spiSize * count !== end - start) {
    return wireError('BAD_LENGTH', `delete: ${count} SPIs of ${spiSize} bytes do not fill ${end - start - 4} bytes`, {
      payloadType: type,
      offset: start - 4,
    });
  }
  if (spiSize === 0 && count !== 0) {
    return wireError('BAD_LENGTH', `delete: ${count} SPIs of size 0`, { payloadType: type, offset: start - 4 });
  }
  const expected = protocol === ProtocolId.IKE ? 0 : protocol === ProtocolId.AH || protocol === ProtocolId.ESP ? 4 : spiSize;
  if (spiSize !== expected) {
    return wireError('INVALID_SYNTAX', `delete: SPI size ${spiSize} for protocol ${protocol}, expected ${expected}`, {
      payloadType: type,
      offset: start - 4,
    });
  }
  return undefined;
};

/**
 * RFC 7296 §3.13, §3.13.1: Number of TSs(1) RESERVED(3) and that many selectors
 * filling the body exactly; type 7 selectors are 16 bytes, type 8 are 40; other
 * types are not understood (INVALID_SYNTAX).
 */
const validateTs: Validator = (buf, start, end, type) => {
  const err = tooShort(type, start, end, 4);
  if (err) return err;
  const count = buf[start];
  if (count === 0) return wireError('INVALID_SYNTAX', 'traffic selector payload with no selectors', { payloadType: type, offset: start - 4 });
  let off = start + 4;
  for (let i = 0; i < count; i++) {
    if (end - off < 4) {
      return wireError('TRUNCATED', `traffic selector ${i + 1} of ${count} runs past the payload`, { payloadType: type, offset: off });
    }
    const tsType = buf[off];
    const length = readU16(buf, off + 2);
    const expected =
      tsType === TsType.IPV4_ADDR_RANGE ? SELECTOR_LENGTH_V4 : tsType === TsType.IPV6_ADDR_RANGE ? SELECTOR_LENGTH_V6 : 0;
    if (expected === 0) {
      return wireError('INVALID_SYNTAX', `traffic selector type ${tsType} is not supported`, { payloadType: type, offset: off });
    }
    if (length !== expected) {
      return wireError('BAD_LENGTH', `traffic selector type ${tsType} with length ${length}, expected ${expected}`, {
        payloadType: type,
        offset: off,
      });
    }
    if (off + length > end) {
      return wireError('TRUNCATED', `traffic selector ${i + 1} of ${count} runs past the payload`, { payloadType: type, offset: off });
    }
    off += length;
  }
  if (off !== end) {
    return wireError('BAD_LENGTH', `traffic selector payload continues ${end - off} bytes after its ${count} selectors`, {
      payloadType: type,
      offset: off,
    });
  }
  return undefined;
};

function parseTs(buf: Uint8Array, start: number): TrafficSelector[] {
  const count = buf[start];
  const selectors: TrafficSelector[] = [];
  let off = start + 4;
  for (let i = 0; i < count; i++) {
    const length = readU16(buf, off + 2);
    const addressLength = (length - 8) >> 1;
    const a = off + 8;
    selectors.push({
      tsType: buf[off],
      ipProtocol: buf[off + 1],
      startPort: readU16(buf, off + 4),
      endPort: readU16(buf, off + 6),
      startAddress: buf.subarray(a, a + addressLength),
      endAddress: buf.subarray(a + addressLength, a + 2 * addressLength),
    });
    off += length;
  }
  return selectors;
}

/** RFC 7296 §3.15, §3.15.1: CFG Type(1) RESERVED(3), then Type(2) Length(2) Value attributes filling the body. */
const validateCp: Validator = (buf, start, end, type) => {
  const err = tooShort(type, start, end, 4);
  if (err) return err;
  for (let off = start + 4; off < end; ) {
    if (end - off < 4) return wireError('TRUNCATED', 'configuration attribute header runs past the payload', { payloadType: type, offset: off });
    const size = 4 + readU16(buf, off + 2);
    if (off + size > end) {
      return wireError('TRUNCATED', 'configuration attribute value runs past the payload', { payloadType: type, offset: off });
    }
    off += size;
  }
  return undefined;
};

function parseCp(buf: Uint8Array, start: number, end: number): CfgAttribute[] {
  const attributes: CfgAttribute[] = [];
  for (let off = start + 4; off < end; ) {
    const size = readU16(buf, off + 2);
    attributes.push({ type: readU16(buf, off) & ~TOP_BIT, value: buf.subarray(off + 4, off + 4 + size) });
    off += 4 + size;
  }
  return attributes;
}

/** RFC 7296 §3.16: one EAP message whose own Length equals the payload body length. */
const validateEap: Validator = (buf, start, end, type) => {
  const err = tooShort(type, start, end, 4);
  if (err) return err;
  const eapLength = readU16(buf, start + 2);
  if (eapLength !== end - start) {
    return wireError('BAD_LENGTH', `EAP Length ${eapLength} differs from the payload body of ${end - start} bytes`, {
      payloadType: type,
      offset: start - 4,
    });
  }
  return undefined;
};

/** RFC 7383 §2.5: Fragment Number(2) Total Fragments(2), 1 <= number <= total. */
const validateSkf: Validator = (buf, start, end, type) => {
  const err = tooShort(type, start, end, 4);
  if (err) return err;
  const number = readU16(buf, start);
  const total = readU16(buf, start + 2);
  if (number === 0 || number > total) {
    return wireError('INVALID_SYNTAX', `fragment ${number} of ${total}`, { payloadType: type, offset: start });
  }
  return undefined;
};

const validators: ReadonlyMap<number, Validator> = new Map<number, Validator>([
  [PayloadType.SA, validateSa],
  [PayloadType.KE, validateKe],
  [PayloadType.IDi, validateId],
  [PayloadType.IDr, validateId],
  [PayloadType.CERT, validateCert],
  [PayloadType.CERTREQ, validateCert],
  [PayloadType.AUTH, validateAuth],
  [PayloadType.NONCE, validateNonce],
  [PayloadType.NOTIFY, validateNotify],
  [PayloadType.DELETE, validateDelete],
  [PayloadType.VENDOR_ID, validateOpaque],
  [PayloadType.TSi, validateTs],
  [PayloadType.TSr, validateTs],
  [PayloadType.SK, validateOpaque],
  [PayloadType.CP, validateCp],
  [PayloadType.EAP, validateEap],
  [PayloadType.SKF, validateSkf],
]);

/**
 * @internal Validate the body buf[start, end) of a payload of a known `type`.
 * Returns undefined when the body may be parsed.
 */
export function validatePayloadBody(type: number, buf: Uint8Array, start: number, end: number): WireError | undefined {
  const validate = validators.get(type);
  if (!validate) return wireError('INVALID_SYNTAX', `payload type ${type} has no validator`, { payloadType: type, offset: start - 4 });
  return validate(buf, start, end, type);
}

/**
 * @internal Parse the body buf[start, end) of a known payload that passed
 * validatePayloadBody. `next` is the generic header's Next Payload (the inner
 * type for SK and SKF). `buf` starts at offset 0 of the message, where the
 * SK/SKF AAD begins.
 */
export function parsePayloadBody(
  type: number,
  critical: boolean,
  next: number,
  buf: Uint8Array,
  start: number,
  end: number,
): Payload {
  let p: Payload;
  switch (type) {
    case PayloadType.SA:
      p = { type, proposals: parseSa(buf, start, end) };
      break;
    case PayloadType.KE:
      p = { type, group: readU16(buf, start), data: buf.subarray(start + 4, end) };
      break;
    case PayloadType.IDi:
    case PayloadType.IDr:
      p = { type, idType: buf[start], data: buf.subarray(start + 4, end) };
      break;
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      p = { type, encoding: buf[start], data: buf.subarray(start + 1, end) };
      break;
    case PayloadType.AUTH:
      p = { type, method: buf[start], data: buf.subarray(start + 4, end) };
      break;
    case PayloadType.NONCE:
    case PayloadType.VENDOR_ID:
      p = { type, data: buf.subarray(start, end) };
      break;
    case PayloadType.NOTIFY: {
      const spiEnd = start + 4 + buf[start + 1];
      p = {
        type,
        protocol: buf[start],
        spi: buf.subarray(start + 4, spiEnd),
        notifyType: readU16(buf, start + 2),
        data: buf.subarray(spiEnd, end),
      };
      break;
    }
    case PayloadType.DELETE: {
      const spiSize = buf[start + 1];
      const count = readU16(buf, start + 2);
      const spis: Uint8Array[] = new Array(count);
      for (let i = 0, o = start + 4; i < count; i++, o += spiSize) spis[i] = buf.subarray(o, o + spiSize);
      p = { type, protocol: buf[start], spiSize, spis };
      break;
    }
    case PayloadType.TSi:
    case PayloadType.TSr:
      p = { type, selectors: parseTs(buf, start) };
      break;
    case PayloadType.SK:
      p = { type, innerType: next, body: buf.subarray(start, end), aad: buf.subarray(0, start) };
      break;
    case PayloadType.CP:
      p = { type, cfgType: buf[start], attributes: parseCp(buf, start, end) };
      break;
    case PayloadType.EAP:
      p = { type, data: buf.subarray(start, end) };
      break;
    case PayloadType.SKF:
      p = {
        type,
        innerType: next,
        fragmentNumber: readU16(buf, start),
        totalFragments: readU16(buf, start + 2),
        body: buf.subarray(start + 4, end),
        aad: buf.subarray(0, start + 4),
      };
      break;
    default:
      // Unreachable for types that passed validatePayloadBody.
      throw new Error(`payload type ${type} has no parser`);
  }
  if (critical) p.critical = true;
  return p;
}
