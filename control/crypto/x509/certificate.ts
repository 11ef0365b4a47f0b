// X.509 certificates (RFC 5280 §4) decoded into what IKE needs: names,
// validity, key, and the extensions path validation reads. The decoding is
// @peculiar/asn1-x509's; OpenSSL (node:crypto's X509Certificate) must accept
// the same bytes, so a certificate is what both parsers say it is.
//
// parseCertificate reads peer bytes (CERT payloads, RFC 7296 §3.6): it
// returns a CryptoResult and never throws.

import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  type AlgorithmIdentifier, AuthorityKeyIdentifier, BasicConstraints, Certificate as AsnCertificate, CRLDistributionPoints, ExtendedKeyUsage, type GeneralName,
  id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_certificatePolicies, id_ce_cRLDistributionPoints, id_ce_extKeyUsage,
  id_ce_keyUsage, id_ce_nameConstraints, id_ce_subjectAltName, id_ce_subjectKeyIdentifier, KeyUsage, type Name, NameConstraints,
  SubjectAlternativeName, SubjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import { fail, ok, type CryptoResult } from '../result.js';
import { signatureAlgorithmOf, type SignatureAlgorithm } from '../signature-algorithm.js';
import { equalBytes } from '../bytes.js';
import { certificateDerFields } from '../der.js';
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
  const cert = AsnConvert.parse(bytes, AsnCertificate);
  const tbsCert = cert.tbsCertificate;
  if (!cert.tbsCertificateRaw) return fail('malformed certificate (no tbsCertificate)');
  // RFC 5280 §4.1.1.2: the same algorithm identifier, here octet for octet.
  if (!equalBytes(fields.signatureAlgorithm, fields.tbsSignatureAlgorithm)) return fail('signatureAlgorithm differs from tbsCertificate.signature');
  const spki = fields.spki;
  let publicKey: KeyObject;
  try {
    // OpenSSL has already decoded the SubjectPublicKeyInfo; its key is the one createPublicKey would make of `spki`.
    publicKey = openssl.publicKey;
  } catch {
    return fail('unsupported or malformed subject public key');
  }
  const parsed: ParsedCertificate = {
    der,
    tbs: new Uint8Array(cert.tbsCertificateRaw),
    signatureAlgorithm: signatureAlgorithmOf(cert.signatureAlgorithm),
    signature: new Uint8Array(cert.signatureValue),
    serial: Buffer.from(tbsCert.serialNumber).toString('hex'),
    issuer: tbsCert.issuer,
    subject: tbsCert.subject,
    issuerText: formatName(tbsCert.issuer),
    subjectText: formatName(tbsCert.subject),
    notBefore: tbsCert.validity.notBefore.getTime(),
    notAfter: tbsCert.validity.notAfter.getTime(),
    spki,
    publicKey,
    subjectAltNames: [],
    crlDistributionPoints: [],
    unhandledCriticalExtensions: [],
  };
  const seen = new Set<string>();
  for (const ext of tbsCert.extensions ?? []) {
    // RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a particular extension."
    if (seen.has(ext.extnID)) return fail(`extension ${ext.extnID} appears twice`);
    seen.add(ext.extnID);
    const value = ext.extnValue.buffer;
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
  if (Number.isNaN(parsed.notBefore.getTime()) || Number.isNaN(parsed.notAfter.getTime())) return fail('unreadable validity dates');
  return ok(parsed);
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

