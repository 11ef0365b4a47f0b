// Signature AlgorithmIdentifiers (RFC 5280 §4.1.1.2) and what node:crypto
// needs to sign or verify with them. One table serves the signatures on
// certificates and CRLs (RFC 5280 §4.1.1.3, §5.1.1.3) and the AUTH payload of
// Digital Signature authentication, which carries the same AlgorithmIdentifier
// in front of the signature (RFC 7427 §3).
//
// Accepted: ECDSA with SHA-256/384/512 (RFC 5758 §3.2, parameters absent),
// Ed25519 (RFC 8410 §3, parameters absent), RSA PKCS#1 v1.5 with SHA-256/384/512
// (RFC 4055 §5, parameters NULL or absent) and RSASSA-PSS (RFC 4055 §3.1) with
// SHA-256/384/512, MGF1 over the same hash and trailerField 1. SHA-1 and MD5
// are refused: the configuration offers nothing that needs them, and RFC 8247
// §3.2 deprecates SHA-1 signatures in IKE.
//
// Decoding goes through @peculiar/asn1-x509 / asn1-rsa schemas; everything
// that reads peer bytes returns a CryptoResult or false and never throws.

import { constants, sign, verify, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { id_mgf1, id_RSASSA_PSS, id_sha256, id_sha384, id_sha512, RsaSaPssParams } from '@peculiar/asn1-rsa';
import { equalBytes } from './bytes.js';
import { fail, ok, type CryptoResult } from './result.js';

export type SignatureHash = 'sha256' | 'sha384' | 'sha512';
export type SignatureFamily = 'ecdsa' | 'ed25519' | 'rsa-pkcs1' | 'rsa-pss';

/** A signature algorithm ikeclone can verify, as decoded from an AlgorithmIdentifier. */
export interface SignatureAlgorithm {
  family: SignatureFamily;
  /** null for Ed25519, which signs the message itself (RFC 8032 §5.1.6). */
  hash: SignatureHash | null;
  /** RSASSA-PSS salt length in octets (RFC 4055 §3.1). */
  saltLength?: number;
  /** Readable name for logs, e.g. "ecdsa-with-SHA384", "RSASSA-PSS (SHA-256, salt 32)". */
  name: string;
}

const HASH_OIDS: Readonly<Record<string, SignatureHash>> = { [id_sha256]: 'sha256', [id_sha384]: 'sha384', [id_sha512]: 'sha512' };
const HASH_OID_OF: Readonly<Record<SignatureHash, string>> = { sha256: id_sha256, sha384: id_sha384, sha512: id_sha512 };
const HASH_LENGTH: Readonly<Record<SignatureHash, number>> = { sha256: 32, sha384: 48, sha512: 64 };
const HASH_TITLE: Readonly<Record<SignatureHash, string>> = { sha256: 'SHA256', sha384: 'SHA384', sha512: 'SHA512' };

/** Algorithms whose parameters are fixed (absent or NULL): OID -> family and hash. */
const FIXED: Readonly<Record<string, { family: SignatureFamily; hash: SignatureHash | null; name: string; nullParams: 'absent' | 'null-or-absent' }>> = {
  '1.2.840.10045.4.3.2': { family: 'ecdsa', hash: 'sha256', name: 'ecdsa-with-SHA256', nullParams: 'absent' },
  '1.2.840.10045.4.3.3': { family: 'ecdsa', hash: 'sha384', name: 'ecdsa-with-SHA384', nullParams: 'absent' },
  '1.2.840.10045.4.3.4': { family: 'ecdsa', hash: 'sha512', name: 'ecdsa-with-SHA512', nullParams: 'absent' },
  '1.3.101.112': { family: 'ed25519', hash: null, name: 'Ed25519', nullParams: 'absent' },
  '1.2.840.113549.1.1.11': { family: 'rsa-pkcs1', hash: 'sha256', name: 'sha256WithRSAEncryption', nullParams: 'null-or-absent' },
  '1.2.840.113549.1.1.12': { family: 'rsa-pkcs1', hash: 'sha384', name: 'sha384WithRSAEncryption', nullParams: 'null-or-absent' },
  '1.2.840.113549.1.1.13': { family: 'rsa-pkcs1', hash: 'sha512', name: 'sha512WithRSAEncryption', nullParams: 'null-or-absent' },
};

const WEAK: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10040.4.3': 'dsa-with-sha1',
};

/** DER NULL, the parameters of the PKCS#1 v1.5 algorithms (RFC 4055 §5). */
function isDerNull(params: ArrayBuffer): boolean {
  const b = new Uint8Array(params);
  return b.length === 2 && b[0] === 0x05 && b[1] === 0x00;
}

/** Decodes a parsed AlgorithmIdentifier. Never throws. */
export function signatureAlgorithmOf(alg: AlgorithmIdentifier): CryptoResult<SignatureAlgorithm> {
  const fixed = FIXED[alg.algorithm];
  if (fixed) {
    // The decoder reads NULL parameters as null: the re-encoding tells absent from NULL.
    const encoded = new Uint8Array(AsnConvert.serialize(alg));
    const absent = equalBytes(encoded, new Uint8Array(AsnConvert.serialize(new AlgorithmIdentifier({ algorithm: alg.algorithm }))));
    const isNull = alg.parameters === null || (alg.parameters instanceof ArrayBuffer && isDerNull(alg.parameters));
    if (!absent && !(fixed.nullParams === 'null-or-absent' && isNull)) return fail(`${fixed.name} with unexpected parameters`);
    return ok({ family: fixed.family, hash: fixed.hash, name: fixed.name });
  }
  if (alg.algorithm === id_RSASSA_PSS) return pssAlgorithm(alg.parameters);
  const weak = WEAK[alg.algorithm];
  return fail(weak ? `${weak} signatures are not accepted (weak hash)` : `unsupported signature algorithm ${alg.algorithm}`);
}

/** RFC 4055 §3.1: RSASSA-PSS-params; the defaults (SHA-1, salt 20) are refused with SHA-1. */
function pssAlgorithm(params: ArrayBuffer | null | undefined): CryptoResult<SignatureAlgorithm> {
  if (!params) return fail('RSASSA-PSS without parameters (SHA-1 defaults are not accepted)');
  let p: RsaSaPssParams;
  try {
    p = AsnConvert.parse(params, RsaSaPssParams);
  } catch {
    return fail('RSASSA-PSS parameters cannot be decoded');
  }
  const hash = HASH_OIDS[p.hashAlgorithm.algorithm];
  if (!hash) return fail(`RSASSA-PSS with unsupported hash ${p.hashAlgorithm.algorithm}`);
  if (p.maskGenAlgorithm.algorithm !== id_mgf1 || !p.maskGenAlgorithm.parameters) return fail('RSASSA-PSS with a mask generation function other than MGF1');
  let mgfHash: AlgorithmIdentifier;
  try {
    mgfHash = AsnConvert.parse(p.maskGenAlgorithm.parameters, AlgorithmIdentifier);
  } catch {
    return fail('RSASSA-PSS MGF1 parameters cannot be decoded');
  }
  // node:crypto's PSS uses the message hash for MGF1 as well, as every profile in use does.
  if (HASH_OIDS[mgfHash.algorithm] !== hash) return fail('RSASSA-PSS with an MGF1 hash other than the message hash');
  if (p.trailerField !== 1) return fail(`RSASSA-PSS with trailerField ${p.trailerField}`);
  if (!Number.isInteger(p.saltLength) || p.saltLength < 0 || p.saltLength > 1024) return fail(`RSASSA-PSS with salt length ${p.saltLength}`);
  return ok({ family: 'rsa-pss', hash, saltLength: p.saltLength, name: `RSASSA-PSS (${HASH_TITLE[hash]}, salt ${p.saltLength})` });
}

/**
 * Decoded AlgorithmIdentifiers by their DER: every certificate and every
 * signature AUTH payload carries one of a few, and decoding one (schema
 * parse, two re-encodings) costs more than the lookup. Bounded; the oldest
 * goes first. The verdicts are frozen, as they are shared.
 */
const DECODED_ALGORITHMS_KEPT = 64;
const MAX_ALGORITHM_DER_KEPT = 128;
const decodedAlgorithms = new Map<string, CryptoResult<SignatureAlgorithm>>();

/** Decodes a DER AlgorithmIdentifier (e.g. from an AUTH payload, RFC 7427 §3, or a certificate, RFC 5280 §4.1.1.2). Never throws. */
export function decodeSignatureAlgorithm(der: Uint8Array): CryptoResult<SignatureAlgorithm> {
  if (der.length > MAX_ALGORITHM_DER_KEPT) return decodeAlgorithmIdentifier(der);
  const key = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('latin1');
  const known = decodedAlgorithms.get(key);
  if (known) return known;
  const decoded = decodeAlgorithmIdentifier(der);
  if (decoded.ok) Object.freeze(decoded.value);
  Object.freeze(decoded);
  if (decodedAlgorithms.size >= DECODED_ALGORITHMS_KEPT) decodedAlgorithms.delete(decodedAlgorithms.keys().next().value!);
  decodedAlgorithms.set(key, decoded);
  return decoded;
}

function decodeAlgorithmIdentifier(der: Uint8Array): CryptoResult<SignatureAlgorithm> {
  let alg: AlgorithmIdentifier;
  try {
    alg = AsnConvert.parse(der, AlgorithmIdentifier);
  } catch {
    return fail('AlgorithmIdentifier cannot be decoded');
  }
  // The parser tolerates trailing bytes and BER; only the exact DER re-encoding is one algorithm.
  if (!equalBytes(new Uint8Array(AsnConvert.serialize(alg)), der)) return fail('AlgorithmIdentifier is not DER');
  return signatureAlgorithmOf(alg);
}

/**
 * The DER AlgorithmIdentifier for signing (RFC 7427 Appendix A): PKCS#1 v1.5
 * with NULL parameters (A.1), ECDSA and Ed25519 without (A.3, RFC 8420 A.1),
 * RSASSA-PSS with hash, MGF1 over the same hash and a salt of the hash length,
 * trailerField omitted as its DEFAULT (DER, X.690 §11.5; strongSwan sends the
 * same, while the non-normative example in A.4.3 spells trailerField out).
 */
export function encodeSignatureAlgorithm(family: SignatureFamily, hash: SignatureHash | null): Uint8Array {
  let alg: AlgorithmIdentifier;
  if (family === 'ed25519') {
    alg = new AlgorithmIdentifier({ algorithm: '1.3.101.112' });
  } else {
    if (hash === null) throw new RangeError(`${family} needs a hash`);
    if (family === 'rsa-pss') {
      const hashAlg = new AlgorithmIdentifier({ algorithm: HASH_OID_OF[hash], parameters: null });
      const params = new RsaSaPssParams({
        hashAlgorithm: hashAlg,
        maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: id_mgf1, parameters: AsnConvert.serialize(hashAlg) }),
        saltLength: HASH_LENGTH[hash],
      });
      alg = new AlgorithmIdentifier({ algorithm: id_RSASSA_PSS, parameters: AsnConvert.serialize(params) });
    } else {
      const oid = Object.keys(FIXED).find((o) => FIXED[o]!.family === family && FIXED[o]!.hash === hash)!;
      alg = new AlgorithmIdentifier({ algorithm: oid, parameters: family === 'rsa-pkcs1' ? null : undefined });
    }
  }
  return new Uint8Array(AsnConvert.serialize(alg));
}

/** NIST P-256, P-384 and P-521 (RFC 5480 §2.1.1.1), the curves IKE and PKIX use for ECDSA. */
const ECDSA_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);

/** Whether a key of this node:crypto type can make signatures of this family. */
export function keyFitsAlgorithm(key: KeyObject, alg: SignatureAlgorithm): boolean {
  switch (alg.family) {
    case 'ecdsa':
      return key.asymmetricKeyType === 'ec' && ECDSA_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? '');
    case 'ed25519':
      return key.asymmetricKeyType === 'ed25519';
    case 'rsa-pkcs1':
      return key.asymmetricKeyType === 'rsa';
    case 'rsa-pss':
      return key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss';
  }
}

/** The smallest RSA modulus accepted, in bits (RFC 8247 §3.2 / NIST SP 800-131A). */
export const MIN_RSA_BITS = 2048;

/**
 * Verifies `signature` over `data` with `key` under `alg`. ECDSA signatures
 * are DER Ecdsa-Sig-Value (RFC 3279 §2.2.3). False for a key that does not
 * fit the algorithm, an RSA key under MIN_RSA_BITS, or any error. Never throws.
 */
export function verifyWithAlgorithm(alg: SignatureAlgorithm, key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  if (key.type !== 'public' || !keyFitsAlgorithm(key, alg)) return false;
  if (alg.family.startsWith('rsa') && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) return false;
  try {
    switch (alg.family) {
      case 'ed25519':
        return verify(null, data, key, signature);
      case 'ecdsa':
        return verify(alg.hash, data, { key, dsaEncoding: 'der' }, signature);
      case 'rsa-pkcs1':
        return verify(alg.hash, data, { key, padding: RSA_PKCS1_PADDING }, signature);
      case 'rsa-pss':
        return verify(alg.hash, data, { key, padding: RSA_PKCS1_PSS_PADDING, saltLength: alg.saltLength! }, signature);
    }
  } catch {
    return false;
  }
}

/** Signs `data` with a private key under `family`/`hash` (PSS salt = hash length, as encodeSignatureAlgorithm says). */
export function signWithAlgorithm(family: SignatureFamily, hash: SignatureHash | null, key: KeyObject, data: Uint8Array): Uint8Array {
  switch (family) {
    case 'ed25519':
      return sign(null, data, key);
    case 'ecdsa':
      return sign(hash, data, { key, dsaEncoding: 'der' });
    case 'rsa-pkcs1':
      return sign(hash, data, { key, padding: RSA_PKCS1_PADDING });
    case 'rsa-pss':
      return sign(hash, data, { key, padding: RSA_PKCS1_PSS_PADDING, saltLength: HASH_LENGTH[hash!] });
  }
}

const { RSA_PKCS1_PADDING, RSA_PKCS1_PSS_PADDING } = constants;

