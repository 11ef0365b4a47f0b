// Payload bodies to bytes (RFC 7296 §3.3–§3.16, RFC 7383 §2.5).
//
// Encoding is of trusted data built by the engine, in two passes: the length
// of every body first (payloadBodyLength, which also checks that each value
// fits its field and throws a RangeError on a programmer error such as a
// 256-byte SPI), then one write into a buffer of the final size. RESERVED
// fields are written as zero (RFC 7296 §3.2).
import { PayloadType, TransformAttr, TsType } from './constants.js';
import type { Payload, Proposal, TrafficSelector, Transform } from './payloads.js';

/** @internal */
export function checkU8(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${what} must be an octet, got ${v}`);
}

/** @internal */
export function checkU16(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${what} must be a uint16, got ${v}`);
}

function checkU15(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0x7fff) throw new RangeError(`${what} must be a 15-bit type, got ${v}`);
}

function checkBytes(what: string, v: unknown): asserts v is Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
}

/** @internal */
export function writeU16(out: Uint8Array, o: number, v: number): void {
  out[o] = v >>> 8;
  out[o + 1] = v & 0xff;
}

function transformLength(t: Transform): number {
  checkU8('transform type', t.type);
  checkU16('transform id', t.id);
  let n = 8;
  if (t.keyLength !== undefined) {
    checkU16('key length', t.keyLength);
    n += 4;
  }
  for (const a of t.attributes ?? []) {
    checkU15('transform attribute type', a.type);
    if (typeof a.value === 'number') {
      checkU16('TV attribute value', a.value);
      n += 4;
    } else {
      checkBytes('TLV attribute value', a.value);
      checkU16('TLV attribute length', a.value.length);
      n += 4 + a.value.length;
    }
  }
  checkU16('transform length', n);
  return n;
}

function proposalLength(p: Proposal): number {
  checkU8('proposal number', p.number);
  checkU8('proposal protocol', p.protocol);
  checkBytes('proposal SPI', p.spi);
  checkU8('proposal SPI size', p.spi.length);
  if (p.transforms.length === 0) throw new RangeError(`proposal ${p.number} has no transforms`);
  checkU8('number of transforms', p.transforms.length);
  let n = 8 + p.spi.length;
  for (const t of p.transforms) n += transformLength(t);
  checkU16('proposal length', n);
  return n;
}

function selectorAddressLength(s: TrafficSelector): number {
  const size = s.tsType === TsType.IPV4_ADDR_RANGE ? 4 : s.tsType === TsType.IPV6_ADDR_RANGE ? 16 : 0;
  if (size === 0) throw new RangeError(`traffic selector type ${s.tsType} cannot be encoded`);
  checkBytes('selector start address', s.startAddress);
  checkBytes('selector end address', s.endAddress);
  if (s.startAddress.length !== size || s.endAddress.length !== size) {
    throw new RangeError(`traffic selector type ${s.tsType} needs ${size}-byte addresses`);
  }
  checkU8('selector IP protocol', s.ipProtocol);
  checkU16('selector start port', s.startPort);
  checkU16('selector end port', s.endPort);
  return size;
}

/**
 * @internal Length of the body of `p` (after its 4-byte generic header), after
 * checking that every value fits its field. Throws RangeError/TypeError otherwise.
 */
export function payloadBodyLength(p: Payload): number {
  let n: number;
  switch (p.type) {
    case PayloadType.SA:
      if (p.proposals.length === 0) throw new RangeError('SA payload without proposals');
      n = 0;
      for (const prop of p.proposals) n += proposalLength(prop);
      break;
    case PayloadType.KE:
      checkU16('KE group', p.group);
      checkBytes('KE data', p.data);
      n = 4 + p.data.length;
      break;
    case PayloadType.IDi:
    case PayloadType.IDr:
      checkU8('ID type', p.idType);
      checkBytes('ID data', p.data);
      n = 4 + p.data.length;
      break;
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      checkU8('certificate encoding', p.encoding);
      checkBytes('certificate data', p.data);
      n = 1 + p.data.length;
      break;
    case PayloadType.AUTH:
      checkU8('auth method', p.method);
      checkBytes('auth data', p.data);
      n = 4 + p.data.length;
      break;
    case PayloadType.NONCE:
    case PayloadType.VENDOR_ID:
    case PayloadType.EAP:
      checkBytes('payload data', p.data);
      n = p.data.length;
      break;
    case PayloadType.NOTIFY:
      checkU8('notify protocol', p.protocol);
      checkU16('notify type', p.notifyType);
      checkBytes('notify SPI', p.spi);
      checkU8('notify SPI size', p.spi.length);
      checkBytes('notify data', p.data);
      n = 4 + p.spi.length + p.data.length;
      break;
    case PayloadType.DELETE:
      checkU8('delete protocol', p.protocol);
      checkU8('delete SPI size', p.spiSize);
      checkU16('number of SPIs', p.spis.length);
      for (const spi of p.spis) {
        checkBytes('delete SPI', spi);
        if (spi.length !== p.spiSize) throw new RangeError(`delete SPI of ${spi.length} bytes, SPI size is ${p.spiSize}`);
      }
      n = 4 + p.spiSize * p.spis.length;
      break;
    case PayloadType.TSi:
    case PayloadType.TSr:
      if (p.selectors.length === 0) throw new RangeError('traffic selector payload without selectors');
      checkU8('number of traffic selectors', p.selectors.length);
      n = 4;
      for (const s of p.selectors) n += 8 + 2 * selectorAddressLength(s);
      break;
    case PayloadType.SK:
      checkU8('SK inner type', p.innerType);
      checkBytes('SK body', p.body);
      n = p.body.length;
      break;
    case PayloadType.CP:
      checkU8('CFG type', p.cfgType);
      n = 4;
      for (const a of p.attributes) {
        checkU15('configuration attribute type', a.type);
        checkBytes('configuration attribute value', a.value);
        checkU16('configuration attribute length', a.value.length);
        n += 4 + a.value.length;
      }
      break;
    case PayloadType.SKF:
      checkU8('SKF inner type', p.innerType);
      checkU16('fragment number', p.fragmentNumber);
      checkU16('total fragments', p.totalFragments);
      checkBytes('SKF body', p.body);
      n = 4 + p.body.length;
      break;
    default:
      checkU8('payload type', p.type);
      if ((p.type as number) === PayloadType.NONE) throw new RangeError('payload type 0 (NONE) cannot be encoded');
      checkBytes('payload data', p.data);
      n = p.data.length;
  }
  if (n + 4 > 0xffff) throw new RangeError(`payload ${p.type} of ${n + 4} bytes exceeds the 16-bit Payload Length`);
  return n;
}

function writeTransform(t: Transform, last: boolean, out: Uint8Array, off: number): number {
  const start = off;
  out[off] = last ? 0 : 3; // RFC 7296 §3.3.2 Last Substruc
  out[off + 4] = t.type;
  writeU16(out, off + 6, t.id);
  off += 8;
  if (t.keyLength !== undefined) {
    writeU16(out, off, 0x8000 | TransformAttr.KEY_LENGTH); // TV format (RFC 7296 §3.3.5)
    writeU16(out, off + 2, t.keyLength);
    off += 4;
  }
  for (const a of t.attributes ?? []) {
    if (typeof a.value === 'number') {
      writeU16(out, off, 0x8000 | a.type);
      writeU16(out, off + 2, a.value);
      off += 4;
    } else {
      writeU16(out, off, a.type);
      writeU16(out, off + 2, a.value.length);
      out.set(a.value, off + 4);
      off += 4 + a.value.length;
    }
  }
  writeU16(out, start + 2, off - start);
  return off;
}

function writeProposal(p: Proposal, last: boolean, out: Uint8Array, off: number): number {
  const start = off;
  out[off] = last ? 0 : 2; // RFC 7296 §3.3.1 Last Substruc
  out[off + 4] = p.number;
  out[off + 5] = p.protocol;
  out[off + 6] = p.spi.length;
  out[off + 7] = p.transforms.length;
  out.set(p.spi, off + 8);
  off += 8 + p.spi.length;
  const count = p.transforms.length;
  for (let i = 0; i < count; i++) off = writeTransform(p.transforms[i]!, i === count - 1, out, off);
  writeU16(out, start + 2, off - start);
  return off;
}

/**
 * @internal Write the body of `p` at `off` (the buffer is zero-filled, so RESERVED
 * fields stay zero); returns the offset after it. Call payloadBodyLength first.
 */
export function writePayloadBody(p: Payload, out: Uint8Array, off: number): number {
  switch (p.type) {
    case PayloadType.SA: {
      const count = p.proposals.length;
      for (let i = 0; i < count; i++) off = writeProposal(p.proposals[i]!, i === count - 1, out, off);
      return off;
    }
    case PayloadType.KE:
      writeU16(out, off, p.group);
      out.set(p.data, off + 4);
      return off + 4 + p.data.length;
    case PayloadType.IDi:
    case PayloadType.IDr:
      out[off] = p.idType;
      out.set(p.data, off + 4);
      return off + 4 + p.data.length;
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      out[off] = p.encoding;
      out.set(p.data, off + 1);
      return off + 1 + p.data.length;
    case PayloadType.AUTH:
      out[off] = p.method;
      out.set(p.data, off + 4);
      return off + 4 + p.data.length;
    case PayloadType.NONCE:
    case PayloadType.VENDOR_ID:
    case PayloadType.EAP:
      out.set(p.data, off);
      return off + p.data.length;
    case PayloadType.NOTIFY:
      out[off] = p.protocol;
      out[off + 1] = p.spi.length;
      writeU16(out, off + 2, p.notifyType);
      out.set(p.spi, off + 4);
      out.set(p.data, off + 4 + p.spi.length);
      return off + 4 + p.spi.length + p.data.length;
    case PayloadType.DELETE:
      out[off] = p.protocol;
      out[off + 1] = p.spiSize;
      writeU16(out, off + 2, p.spis.length);
      off += 4;
      for (const spi of p.spis) {
        out.set(spi, off);
        off += spi.length;
      }
      return off;
    case PayloadType.TSi:
    case PayloadType.TSr:
      out[off] = p.selectors.length;
      off += 4;
      for (const s of p.selectors) {
        const size = s.startAddress.length;
        out[off] = s.tsType;
        out[off + 1] = s.ipProtocol;
        writeU16(out, off + 2, 8 + 2 * size);
        writeU16(out, off + 4, s.startPort);
        writeU16(out, off + 6, s.endPort);
        out.set(s.startAddress, off + 8);
        out.set(s.endAddress, off + 8 + size);
        off += 8 + 2 * size;
      }
      return off;
    case PayloadType.SK:
      out.set(p.body, off);
      return off + p.body.length;
    case PayloadType.CP:
      out[off] = p.cfgType;
      off += 4;
      for (const a of p.attributes) {
        writeU16(out, off, a.type);
        writeU16(out, off + 2, a.value.length);
        out.set(a.value, off + 4);
        off += 4 + a.value.length;
      }
      return off;
    case PayloadType.SKF:
      writeU16(out, off, p.fragmentNumber);
      writeU16(out, off + 2, p.totalFragments);
      out.set(p.body, off + 4);
      return off + 4 + p.body.length;
    default:
      out.set(p.data, off);
      return off + p.data.length;
  }
}
