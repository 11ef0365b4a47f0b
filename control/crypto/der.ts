// ASN.1 DER, the little of it ikeclone needs (X.690 §8, §10): one TLV reader
// that never throws on bytes from a peer or a file, one TLV writer, object
// identifiers both ways, and the elements of an X.509 certificate (RFC 5280
// §4.1) as views of its DER: tbsCertificate, serial, both names, validity,
// SubjectPublicKeyInfo, extensions, both AlgorithmIdentifiers and the
// signature, so that certificate decoding never re-encodes them and decodes
// with schemas only what it must. Identities (ID_DER_ASN1_DN, RFC 7296 §3.5)
// and the configuration (a certificate's subject as our default identity)
// both read DER through this module.
//
// Pure functions, no I/O; imports nothing.

/** One DER element: its tag octet and where its contents start and end. */
export interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/**
 * The DER TLV at `pos`, bounded by `limit`; null when it does not fit (a
 * truncated header, a length of more than three octets, contents past the
 * limit). Never throws.
 */
export function readTlv(data: Uint8Array, pos: number, limit = data.length): Tlv | null {
  if (pos + 2 > limit) return null;
  const tag = data[pos]!;
  let len = data[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > limit) return null;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + data[start + i]!;
    start += n;
  }
  if (start + len > limit) return null;
  return { tag, start, end: start + len };
}

/** A DER element: tag, definite length (short form below 128, else one or two octets), contents. */
export function encodeTlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  const out = new Uint8Array(1 + len.length + n);
  out[0] = tag;
  out.set(len, 1);
  out.set(content, 1 + len.length);
  return out;
}

/** "2.5.4.3" -> the contents octets of an OBJECT IDENTIFIER (X.690 §8.19), or null when it is not one. */
export function encodeOid(dotted: string): Uint8Array | null {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0) || arcs[0]! > 2 || (arcs[0]! < 2 && arcs[1]! > 39)) return null;
  const out: number[] = [];
  const push = (v: number): void => {
    const bytes = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) bytes.unshift((v & 0x7f) | 0x80);
    out.push(...bytes);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return Uint8Array.from(out);
}

/** The contents octets of an OBJECT IDENTIFIER -> "2.5.4.3", or null when they are malformed. Never throws. */
export function decodeOid(bytes: Uint8Array): string | null {
  if (bytes.length === 0 || bytes[bytes.length - 1]! & 0x80) return null;
  const arcs: number[] = [];
  let v = 0;
  for (const b of bytes) {
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) return null;
    if (!(b & 0x80)) { arcs.push(v); v = 0; }
  }
  const first = arcs.shift()!;
  const top = first < 80 ? Math.floor(first / 40) : 2;
  return [top, first - top * 40, ...arcs].join('.');
}

/** The DER elements of a certificate that are read as signed, never re-encoded (RFC 5280 §4.1); each a whole TLV. */
export interface CertificateDerFields {
  /** tbsCertificate, exactly as signed (§4.1.1.1). */
  tbs: Uint8Array;
  /** serialNumber, an INTEGER (§4.1.2.2). */
  serial: Uint8Array;
  /** tbsCertificate.signature, the AlgorithmIdentifier inside the signed part (§4.1.2.3). */
  tbsSignatureAlgorithm: Uint8Array;
  issuer: Uint8Array;
  /** validity, a SEQUENCE of two Times (§4.1.2.5). */
  validity: Uint8Array;
  subject: Uint8Array;
  /** subjectPublicKeyInfo (§4.1.2.7). */
  spki: Uint8Array;
  /** The contents of extensions [3] EXPLICIT (a SEQUENCE OF Extension, §4.1.2.9), undefined when absent. */
  extensions?: Uint8Array;
  /** Certificate.signatureAlgorithm, outside the signed part (§4.1.1.2). */
  signatureAlgorithm: Uint8Array;
  /** Certificate.signatureValue, a BIT STRING (§4.1.1.3). */
  signatureValue: Uint8Array;
}

/**
 * Views of a certificate's DER (no copies) for the fields in
 * CertificateDerFields; undefined when the bytes are not laid out as a
 * certificate. Never throws.
 */
export function certificateDerFields(raw: Uint8Array): CertificateDerFields | undefined {
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
  // tbsCertificate ::= SEQUENCE { [0] version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, ... }
  const outer = readTlv(raw, 0);
  if (outer === null) return undefined;
  const tbs = readTlv(raw, outer.start, outer.end);
  if (tbs === null) return undefined;
  const outerAlgorithm = readTlv(raw, tbs.end, outer.end);
  if (outerAlgorithm === null) return undefined;
  const signatureValue = readTlv(raw, outerAlgorithm.end, outer.end);
  if (signatureValue === null || signatureValue.tag !== 0x03 || signatureValue.end !== outer.end) return undefined;
  const elements: Uint8Array[] = [];
  let pos = tbs.start;
  if (raw[pos] === 0xa0) pos = readTlv(raw, pos, tbs.end)?.end ?? tbs.end; // version
  while (elements.length < 6) { // serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    const element = readTlv(raw, pos, tbs.end);
    if (element === null) return undefined;
    elements.push(raw.subarray(pos, element.end));
    pos = element.end;
  }
  // issuerUniqueID [1], subjectUniqueID [2], extensions [3], in that order, each optional.
  let extensions: Uint8Array | undefined;
  for (const tag of [0x81, 0xa1, 0x82, 0xa2, 0xa3]) {
    if (pos >= tbs.end || raw[pos] !== tag) continue;
    const element = readTlv(raw, pos, tbs.end);
    if (element === null) return undefined;
    if (tag === 0xa3) extensions = raw.subarray(element.start, element.end);
    pos = element.end;
  }
  if (pos !== tbs.end) return undefined;
  return {
    tbs: raw.subarray(outer.start, tbs.end), serial: elements[0]!, tbsSignatureAlgorithm: elements[1]!, issuer: elements[2]!, validity: elements[3]!,
    subject: elements[4]!, spki: elements[5]!, extensions, signatureAlgorithm: raw.subarray(tbs.end, outerAlgorithm.end),
    signatureValue: raw.subarray(outerAlgorithm.end, signatureValue.end),
  };
}

/**
 * The DER of a certificate's subject Name (RFC 5280 §4.1.2.6), from the
 * certificate's DER; undefined when the bytes are not laid out as one.
 */
export function certificateSubjectDer(raw: Uint8Array): Uint8Array | undefined {
  const subject = certificateDerFields(raw)?.subject;
  return subject === undefined ? undefined : subject.slice();
}
