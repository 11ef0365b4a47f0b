// X.509 certificates (RFC 5280 §4) decoded into what IKE needs: names,
// validity, key, and the extensions path validation reads. OpenSSL
// (node:crypto's X509Certificate) decodes the whole certificate and must
// accept it; the elements read here are then found as views of the DER
// (der.ts), and only the names and the extensions validation processes go
// through @peculiar/asn1-x509's schemas: decoding the whole certificate with
// them was most of what a chain validation cost. So a certificate is what
// both parsers say it is.
//
// parseCertificate reads peer bytes (CERT payloads, RFC 7296 §3.6): it
// returns a CryptoResult and never throws.

import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  type AlgorithmIdentifier, AuthorityKeyIdentifier, BasicConstraints, CRLDistributionPoints, ExtendedKeyUsage, type GeneralName,
  id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_certificatePolicies, id_ce_cRLDistributionPoints, id_ce_extKeyUsage,
  id_ce_keyUsage, id_ce_nameConstraints, id_ce_subjectAltName, id_ce_subjectKeyIdentifier, KeyUsage, Name, NameConstraints,
  SubjectAlternativeName, SubjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import { fail, ok, type CryptoResult } from '../result.js';
import { decodeSignatureAlgorithm, type SignatureAlgorithm } from '../signature-algorithm.js';
import { equalBytes } from '../bytes.js';
import { certificateDerFields, decodeOid, readTlv } from '../der.js';
import { formatName, namesEqual } from './names.js';

/** Certificates larger than this are refused unread (an RSA-8192 certificate is ~2.5 KB). */
export const MAX_CERTIFICATE_BYTES = 16 * 1024;

/** RFC 5280 §4.2.1.3 KeyUsage bits, as @peculiar/asn1-x509 numbers them. */
export const KeyUsageBit = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
} as const;

/** A decoded certificate. Byte fields are views of `der`. */
export interface ParsedCertificate {
  /** The whole certificate, as received. */
  der: Uint8Array;
  /** tbsCertificate exactly as signed (RFC 5280 §4.1.1.3). */
  tbs: Uint8Array;
  signatureAlgorithm: CryptoResult<SignatureAlgorithm>;
  signature: Uint8Array;
  /** Serial number as lower-case hex of its content octets. */
  serial: string;
  issuer: Name;
  subject: Name;
  /** "C=CH, O=Example, CN=gw" for logs. */
  issuerText: string;
  subjectText: string;
  notBefore: Date;
  notAfter: Date;
  /** SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7). */
  spki: Uint8Array;
  publicKey: KeyObject;
  /** undefined when the extension is absent. */
  basicConstraints?: { cA: boolean; pathLenConstraint?: number };
  /** KeyUsageBit flags, undefined when absent. */
  keyUsage?: number;
  /** KeyPurposeId OIDs, undefined when absent. */
  extKeyUsage?: string[];
  subjectAltNames: GeneralName[];
  nameConstraints?: NameConstraints;
  /** uniformResourceIdentifier fullNames of the cRLDistributionPoints (RFC 5280 §4.2.1.13). */
  crlDistributionPoints: string[];
  authorityKeyId?: Uint8Array;
  subjectKeyId?: Uint8Array;
  /** Critical extensions this implementation does not process (RFC 5280 §4.2: such a certificate MUST be rejected). */
  unhandledCriticalExtensions: string[];
}

/** Extensions validation processes, and so may be critical. certificatePolicies is understood as "any policy" (no explicit policy is required). */
const HANDLED = new Set([
  id_ce_basicConstraints, id_ce_keyUsage, id_ce_extKeyUsage, id_ce_subjectAltName, id_ce_nameConstraints,
  id_ce_cRLDistributionPoints, id_ce_authorityKeyIdentifier, id_ce_subjectKeyIdentifier, id_ce_certificatePolicies,
]);

/** Decodes a DER certificate. Never throws: anything malformed is a failure with a short reason. */
export function parseCertificate(der: Uint8Array): CryptoResult<ParsedCertificate> {
  return decodeUntrusted('certificate', der, MAX_CERTIFICATE_BYTES, decode);
}

/**
 * Runs `decode` over untrusted DER: empty and oversized input is refused
 * unread, and whatever the ASN.1 library throws becomes a failure. @internal
 */
export function decodeUntrusted<T>(what: string, der: Uint8Array, limit: number, decode: (der: Uint8Array) => CryptoResult<T>): CryptoResult<T> {
  if (!(der instanceof Uint8Array) || der.length === 0) return fail(`empty ${what}`);
  if (der.length > limit) return fail(`${what} of ${der.length} bytes (limit ${limit})`);
  try {
    return decode(der);
  } catch (e) {
    return fail(`malformed ${what} (${e instanceof Error ? e.message.split('\n')[0] : 'unreadable'})`);
  }
}

/** RFC 5280 §4.1.1.2, §5.1.1.2: the outer signatureAlgorithm must equal the signed one. @internal */
export function sameAlgorithm(a: AlgorithmIdentifier, b: AlgorithmIdentifier): boolean {
  return equalBytes(new Uint8Array(AsnConvert.serialize(a)), new Uint8Array(AsnConvert.serialize(b)));
}

function decode(der: Uint8Array): CryptoResult<ParsedCertificate> {
  const bytes = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  // OpenSSL is the second opinion, and its length says whether anything trails the certificate.
  let openssl: X509Certificate;
  try {
    openssl = new X509Certificate(bytes);
  } catch {
    return fail('malformed certificate (OpenSSL cannot read it)');
  }
  if (openssl.raw.length !== der.length) return fail('trailing bytes after the certificate');
  // The signed elements are compared and kept as received: re-encoding them would cost more than the decode.
  const fields = certificateDerFields(der);
  if (!fields) return fail('malformed certificate (unexpected layout)');
  // RFC 5280 §4.1.1.2: the same algorithm identifier, here octet for octet.
  if (!equalBytes(fields.signatureAlgorithm, fields.tbsSignatureAlgorithm)) return fail('signatureAlgorithm differs from tbsCertificate.signature');
  const serial = readTlv(fields.serial, 0);
  if (serial?.tag !== 0x02 || serial.end === serial.start) return fail('malformed certificate (serialNumber)');
  const validity = decodeValidity(fields.validity);
  if (!validity) return fail('unreadable validity dates');
  // RFC 5280 §4.1.1.3: the signature is a BIT STRING of whole octets.
  const signature = readTlv(fields.signatureValue, 0);
  if (signature === null || signature.end === signature.start || fields.signatureValue[signature.start] !== 0) return fail('malformed certificate (signatureValue)');
  let publicKey: KeyObject;
  try {
    // OpenSSL has already decoded the SubjectPublicKeyInfo; its key is the one createPublicKey would make of `spki`.
    publicKey = openssl.publicKey;
  } catch {
    return fail('unsupported or malformed subject public key');
  }
  const issuer = AsnConvert.parse(fields.issuer, Name);
  const subject = AsnConvert.parse(fields.subject, Name);
  const parsed: ParsedCertificate = {
    der,
    tbs: fields.tbs,
    signatureAlgorithm: decodeSignatureAlgorithm(fields.signatureAlgorithm),
    signature: fields.signatureValue.subarray(signature.start + 1, signature.end),
    serial: Buffer.from(fields.serial.buffer, fields.serial.byteOffset + serial.start, serial.end - serial.start).toString('hex'),
    issuer,
    subject,
    issuerText: formatName(issuer),
    subjectText: formatName(subject),
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    spki: fields.spki,
    publicKey,
    subjectAltNames: [],
    crlDistributionPoints: [],
    unhandledCriticalExtensions: [],
  };
  const extensions = fields.extensions === undefined ? [] : decodeExtensions(fields.extensions);
  if (!extensions) return fail('malformed certificate (extensions)');
  const seen = new Set<string>();
  for (const ext of extensions) {
    // RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a particular extension."
    if (seen.has(ext.extnID)) return fail(`extension ${ext.extnID} appears twice`);
    seen.add(ext.extnID);
    const value = ext.value;
    switch (ext.extnID) {
      case id_ce_basicConstraints: {
        const bc = AsnConvert.parse(value, BasicConstraints);
        parsed.basicConstraints = bc.pathLenConstraint === undefined ? { cA: bc.cA } : { cA: bc.cA, pathLenConstraint: bc.pathLenConstraint };
        break;
      }
      case id_ce_keyUsage:
        parsed.keyUsage = AsnConvert.parse(value, KeyUsage).toNumber();
        break;
      case id_ce_extKeyUsage:
        parsed.extKeyUsage = [...AsnConvert.parse(value, ExtendedKeyUsage)];
        break;
      case id_ce_subjectAltName:
        parsed.subjectAltNames = [...AsnConvert.parse(value, SubjectAlternativeName)];
        break;
      case id_ce_nameConstraints:
        parsed.nameConstraints = AsnConvert.parse(value, NameConstraints);
        break;
      case id_ce_cRLDistributionPoints:
        for (const dp of AsnConvert.parse(value, CRLDistributionPoints)) {
          for (const name of dp.distributionPoint?.fullName ?? []) {
            if (name.uniformResourceIdentifier !== undefined) parsed.crlDistributionPoints.push(name.uniformResourceIdentifier);
          }
        }
        break;
      case id_ce_authorityKeyIdentifier: {
        const aki = AsnConvert.parse(value, AuthorityKeyIdentifier);
        if (aki.keyIdentifier) parsed.authorityKeyId = new Uint8Array(aki.keyIdentifier.buffer);
        break;
      }
      case id_ce_subjectKeyIdentifier:
        parsed.subjectKeyId = new Uint8Array(AsnConvert.parse(value, SubjectKeyIdentifier).buffer);
        break;
      default:
        break;
    }
    if (ext.critical && !HANDLED.has(ext.extnID)) parsed.unhandledCriticalExtensions.push(ext.extnID);
  }
  return ok(parsed);
}

/** One Extension (RFC 5280 §4.1): its OID, criticality and the contents of extnValue (a view). */
interface RawExtension {
  extnID: string;
  critical: boolean;
  value: Uint8Array;
}

/** The contents of extensions [3]: SEQUENCE OF Extension { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }; undefined when malformed. */
function decodeExtensions(explicit: Uint8Array): RawExtension[] | undefined {
  const list = readTlv(explicit, 0);
  if (list?.tag !== 0x30 || list.end !== explicit.length) return undefined;
  const out: RawExtension[] = [];
  for (let pos = list.start; pos < list.end;) {
    const ext = readTlv(explicit, pos, list.end);
    if (ext?.tag !== 0x30) return undefined;
    const oid = readTlv(explicit, ext.start, ext.end);
    if (oid?.tag !== 0x06) return undefined;
    const extnID = decodeOid(explicit.subarray(oid.start, oid.end));
    if (extnID === null) return undefined;
    let next = readTlv(explicit, oid.end, ext.end);
    let critical = false;
    if (next?.tag === 0x01) {
      if (next.end - next.start !== 1) return undefined;
      critical = explicit[next.start] !== 0;
      next = readTlv(explicit, next.end, ext.end);
    }
    if (next?.tag !== 0x04 || next.end !== ext.end) return undefined;
    out.push({ extnID, critical, value: explicit.subarray(next.start, next.end) });
    pos = ext.end;
  }
  return out;
}

/** validity (RFC 5280 §4.1.2.5): two Times, UTCTime "YYMMDDHHMMSSZ" (years 1950-2049) or GeneralizedTime "YYYYMMDDHHMMSSZ". */
function decodeValidity(validity: Uint8Array): { notBefore: Date; notAfter: Date } | undefined {
  const seq = readTlv(validity, 0);
  if (seq?.tag !== 0x30 || seq.end !== validity.length) return undefined;
  const first = readTlv(validity, seq.start, seq.end);
  if (first === null) return undefined;
  const second = readTlv(validity, first.end, seq.end);
  if (second === null || second.end !== seq.end) return undefined;
  const notBefore = decodeTime(validity, first.tag, first.start, first.end);
  const notAfter = decodeTime(validity, second.tag, second.start, second.end);
  return notBefore && notAfter ? { notBefore, notAfter } : undefined;
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

function decodeTime(data: Uint8Array, tag: number, start: number, end: number): Date | undefined {
  const text = Buffer.from(data.buffer, data.byteOffset + start, end - start).toString('latin1');
  const m = tag === 0x17 ? UTC_TIME.exec(text) : tag === 0x18 ? GENERALIZED_TIME.exec(text) : null;
  if (!m) return undefined;
  let year = Number(m[1]);
  if (tag === 0x17) year += year < 50 ? 2000 : 1900; // RFC 5280 §4.1.2.5.1
  const [month, day, hour, minute, second] = [2, 3, 4, 5, 6].map((i) => Number(m[i]));
  const date = new Date(Date.UTC(year, month! - 1, day, hour, minute, second));
  // Out-of-range fields (month 13, 31 February, hour 24, second 60) do not survive the round trip.
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month! - 1 || date.getUTCDate() !== day
    || date.getUTCHours() !== hour || date.getUTCMinutes() !== minute || date.getUTCSeconds() !== second) return undefined;
  return date;
}

/**
 * The Certification Authority value of CERTREQ and the hash in hash-and-URL
 * (RFC 7296 §3.7): SHA-1 of the DER SubjectPublicKeyInfo.
 */
export function subjectPublicKeyInfoSha1(cert: ParsedCertificate): Uint8Array {
  return new Uint8Array(createHash('sha1').update(cert.spki).digest());
}

/** Whether issuer and subject are the same name (a self-issued certificate, RFC 5280 §6.1). */
export function isSelfIssued(cert: ParsedCertificate): boolean {
  return namesEqual(cert.issuer, cert.subject);
}

