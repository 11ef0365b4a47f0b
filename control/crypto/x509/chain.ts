// Certification path building and validation (RFC 5280 §6.1) for the
// certificates a peer sends in CERT payloads (RFC 7296 §3.6): from its
// end-entity certificate through the intermediates it sent to a configured
// trust anchor, at an injected time, with the IKE profile of RFC 4945 §5.
//
// Building is greedy and bounded: from the end entity up, each step takes the
// first trust anchor, else the first received certificate, whose subject is
// the current issuer and whose key verifies the current signature. A
// signature check settles which candidate issued a certificate, so there is no
// backtracking and no exponential search: at most maxPathLength steps of at
// most (anchors + maxCertificates) signature checks each.
//
// Every input from the peer is untrusted: the verdict is a value, never an
// exception, with a reason fit for "AUTHENTICATION_FAILED: ..." in the log.

import type { KeyObject } from 'node:crypto';
import { anyExtendedKeyUsage, id_kp_clientAuth, id_kp_serverAuth, type NameConstraints } from '@peculiar/asn1-x509';
import { verifyWithAlgorithm } from '../signature-algorithm.js';
import { isSelfIssued, KeyUsageBit, parseCertificate, type ParsedCertificate } from './certificate.js';
import { revocationStatus, type ParsedCrl } from './crl.js';
import { decodeResolvedCrl } from './crl-file-cache.js';
import { identityMismatch, type IkeIdentity } from './identity.js';
import { nameConstraintViolation, namesEqual } from './names.js';

/** Why a certificate chain was refused. */
export type CertificateFailure =
  | 'malformed' // the end-entity certificate cannot be decoded
  | 'unknown-ca' // no path to a configured trust anchor
  | 'bad-signature' // an issuer was found by name, but its key does not verify the signature
  | 'unsupported-algorithm' // a signature algorithm or key this implementation does not accept
  | 'expired'
  | 'not-yet-valid'
  | 'not-a-ca' // an issuing certificate without basicConstraints cA
  | 'key-usage'
  | 'extended-key-usage'
  | 'path-length'
  | 'chain-too-long'
  | 'name-constraints'
  | 'critical-extension' // an unprocessable critical extension (RFC 5280 §4.2)
  | 'revoked'
  | 'revocation-unknown' // revocation policy strict/ifuri and no usable CRL
  | 'id-mismatch'; // the peer's IKE ID is not in the certificate (RFC 4945 §3.1)

export type CertificateVerdict =
  | {
      ok: true;
      /** End entity first, trust anchor last. */
      chain: ParsedCertificate[];
      /** The end entity's key, which verifies the AUTH payload. */
      publicKey: KeyObject;
    }
  | { ok: false; reason: CertificateFailure; detail: string };

/**
 * swanctl's `revocation`: strict fails unless every certificate's status is
 * known from a current CRL; ifuri fails when a certificate names a CRL
 * distribution point but no usable CRL is found; relaxed (the default) fails
 * only on a revoked certificate.
 */
export type RevocationPolicy = 'strict' | 'ifuri' | 'relaxed';

export interface ChainValidationOptions {
  /** The time to validate at (the engine's injected clock). */
  now: Date | number;
  /** Configured CA certificates (remote.cacerts). */
  trustAnchors: readonly ParsedCertificate[];
  /** CRLs loaded from configured files. */
  crls?: readonly ParsedCrl[];
  /**
   * Maps a cRLDistributionPoints URI to a local CRL (DER), or undefined when
   * it has none; see localCrlResolver. Never fetches from the network.
   */
  resolveCrl?: (uri: string) => Uint8Array | undefined;
  revocation?: RevocationPolicy;
  /** When given, the identity the certificate must name (RFC 4945 §3.1). */
  peerId?: IkeIdentity;
  /** Certificates in a path, end entity and trust anchor included (default 8: strongSwan's 7 CA levels and the end entity). */
  maxPathLength?: number;
  /** Received intermediates considered; the rest are ignored (default 16). */
  maxCertificates?: number;
  /** CRL distribution points read per certificate (default 4). */
  maxCrlDistributionPoints?: number;
}

export const DEFAULT_MAX_PATH_LENGTH = 8;
export const DEFAULT_MAX_CERTIFICATES = 16;
export const DEFAULT_MAX_CRL_DISTRIBUTION_POINTS = 4;

/** id-kp-ipsecIKE (RFC 4945 §5.1.3.12) and iKEIntermediate (1.3.6.1.5.5.8.2.2), which strongSwan and Windows issue. */
const ID_KP_IPSEC_IKE = '1.3.6.1.5.5.7.3.17';
const ID_KP_IKE_INTERMEDIATE = '1.3.6.1.5.5.8.2.2';
/**
 * RFC 4945 §5.1.3.12 admits id-kp-ipsecIKE and anyExtendedKeyUsage. strongSwan
 * does not check EKU for IKE at all, and its `pki --issue --flag serverAuth /
 * clientAuth` is how gateway certificates are commonly made, so those pass too;
 * an EKU that allows only other purposes (code signing, e-mail) is refused.
 */
const IKE_KEY_PURPOSES = new Set([ID_KP_IPSEC_IKE, anyExtendedKeyUsage, id_kp_serverAuth, id_kp_clientAuth, ID_KP_IKE_INTERMEDIATE]);

type Failure = Extract<CertificateVerdict, { ok: false }>;

function refuse(reason: CertificateFailure, detail: string): Failure {
  return { ok: false, reason, detail };
}

/**
 * Validates the peer's end-entity certificate (DER, the first CERT payload)
 * with the intermediates it sent (the other CERT payloads, in any order).
 * Never throws.
 */
export function validateCertificateChain(endEntity: Uint8Array, intermediates: readonly Uint8Array[], options: ChainValidationOptions): CertificateVerdict {
  try {
    return validate(endEntity, intermediates, options);
  } catch (e) {
    // Defence in depth: the steps above return values; a library surprise still becomes a verdict.
    return refuse('malformed', `certificate processing failed: ${e instanceof Error ? e.message.split('\n')[0] : 'unknown error'}`);
  }
}

function validate(endEntityDer: Uint8Array, intermediateDers: readonly Uint8Array[], options: ChainValidationOptions): CertificateVerdict {
  const now = new Date(options.now);
  if (!Number.isFinite(now.getTime())) return refuse('malformed', 'no valid time to check certificates at');
  const ee = parseCertificate(endEntityDer);
  if (!ee.ok) return refuse('malformed', `end-entity certificate: ${ee.error}`);
  const received: ParsedCertificate[] = [];
  for (const der of intermediateDers.slice(0, options.maxCertificates ?? DEFAULT_MAX_CERTIFICATES)) {
    const c = parseCertificate(der);
    if (c.ok) received.push(c.value); // an unreadable extra certificate only cannot serve as an issuer
  }
  const built = buildPath(ee.value, received, options);
  if ('reason' in built) return built;
  const path = built.path;
  const failure = checkPath(path, now) ?? checkRevocation(path, now, options);
  if (failure) return failure;
  if (options.peerId) {
    const mismatch = identityMismatch(ee.value, options.peerId);
    if (mismatch) return refuse('id-mismatch', mismatch);
  }
  return { ok: true, chain: path, publicKey: ee.value.publicKey };
}

/** Whether `issuer` may have issued `cert` by name and key identifier (RFC 5280 §4.2.1.1). */
function namedIssuer(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
  if (!namesEqual(cert.issuer, issuer.subject)) return false;
  if (cert.authorityKeyId && issuer.subjectKeyId) return Buffer.compare(cert.authorityKeyId, issuer.subjectKeyId) === 0;
  return true;
}

function signedBy(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
  return cert.signatureAlgorithm.ok && verifyWithAlgorithm(cert.signatureAlgorithm.value, issuer.publicKey, cert.tbs, cert.signature);
}

/** End entity first, trust anchor last; or why no path exists. */
function buildPath(ee: ParsedCertificate, received: readonly ParsedCertificate[], options: ChainValidationOptions): { path: ParsedCertificate[] } | Failure {
  const maxLength = options.maxPathLength ?? DEFAULT_MAX_PATH_LENGTH;
  // A configured anchor sent as the end entity itself is trusted as such.
  if (options.trustAnchors.some((a) => Buffer.compare(a.der, ee.der) === 0)) return { path: [ee] };
  const path = [ee];
  for (;;) {
    const current = path[path.length - 1]!;
    if (!current.signatureAlgorithm.ok) return refuse('unsupported-algorithm', `certificate "${current.subjectText}": ${current.signatureAlgorithm.error}`);
    const anchors = options.trustAnchors.filter((a) => namedIssuer(current, a));
    const anchor = anchors.find((a) => signedBy(current, a));
    if (anchor) {
      path.push(anchor);
      return path.length > maxLength ? refuse('chain-too-long', `path of ${path.length} certificates (limit ${maxLength})`) : { path };
    }
    const candidates = received.filter((c) => !path.includes(c) && namedIssuer(current, c));
    const issuer = candidates.find((c) => signedBy(current, c));
    if (!issuer) {
      if (anchors.length + candidates.length > 0) {
        return refuse('bad-signature', `signature of certificate "${current.subjectText}" does not verify with the key of "${current.issuerText}"`);
      }
      const selfSigned = isSelfIssued(current) ? ' (self-signed, not a configured CA)' : '';
      return refuse('unknown-ca', `no trusted CA certificate for issuer "${current.issuerText}" of "${current.subjectText}"${selfSigned}`);
    }
    path.push(issuer);
    if (path.length >= maxLength) return refuse('chain-too-long', `no trust anchor within ${maxLength} certificates`);
  }
}

/** RFC 5280 §6.1.3-6.1.5 with the IKE profile (RFC 4945 §5.1.3), from the trust anchor down. */
function checkPath(path: readonly ParsedCertificate[], now: Date): Failure | undefined {
  const topDown = [...path].reverse();
  const constraints: NameConstraints[] = [];
  let maxPathLength = Number.POSITIVE_INFINITY;
  for (let i = 0; i < topDown.length; i++) {
    const cert = topDown[i]!;
    const isAnchor = i === 0 && topDown.length > 1;
    const isEndEntity = i === topDown.length - 1;
    const name = `"${cert.subjectText}"`;
    // RFC 5280 §6.1.3 (a)(2): validity, the anchor's included (strongSwan checks it too).
    if (now.getTime() < cert.notBefore.getTime()) return refuse('not-yet-valid', `certificate ${name} is not valid before ${cert.notBefore.toISOString()}`);
    if (now.getTime() > cert.notAfter.getTime()) return refuse('expired', `certificate ${name} expired on ${cert.notAfter.toISOString()}`);
    if (!isAnchor && cert.unhandledCriticalExtensions.length > 0) {
      return refuse('critical-extension', `certificate ${name} has unsupported critical extension ${cert.unhandledCriticalExtensions.join(', ')}`);
    }
    // RFC 5280 §6.1.3 (b)-(c): names against the constraints of every CA above, except self-issued intermediates.
    if (!isAnchor && (isEndEntity || !isSelfIssued(cert))) {
      const violation = nameConstraintViolation(cert.subject, cert.subjectAltNames, constraints);
      if (violation) return refuse('name-constraints', `certificate ${name}: ${violation}`);
    }
    if (isEndEntity) return checkEndEntity(cert);
    // An issuing certificate (RFC 5280 §6.1.4 (k), (l), (m), (n)).
    if (cert.basicConstraints?.cA !== true) return refuse('not-a-ca', `certificate ${name} issued "${topDown[i + 1]!.subjectText}" but is not a CA (basicConstraints cA)`);
    if (cert.keyUsage !== undefined && (cert.keyUsage & KeyUsageBit.keyCertSign) === 0) {
      return refuse('key-usage', `CA certificate ${name} lacks keyUsage keyCertSign`);
    }
    if (!isAnchor && !isSelfIssued(cert)) {
      if (maxPathLength <= 0) return refuse('path-length', `certificate ${name} exceeds the path length constraint of the CA above it`);
      maxPathLength--;
    }
    const pathLen = cert.basicConstraints.pathLenConstraint;
    if (pathLen !== undefined && pathLen < maxPathLength) maxPathLength = pathLen;
    if (cert.nameConstraints) constraints.push(cert.nameConstraints);
  }
  return undefined;
}

/** RFC 4945 §5.1.3.2 (keyUsage) and §5.1.3.12 (extendedKeyUsage) for the certificate that signs AUTH. */
function checkEndEntity(cert: ParsedCertificate): Failure | undefined {
  const name = `"${cert.subjectText}"`;
  if (cert.keyUsage !== undefined && (cert.keyUsage & (KeyUsageBit.digitalSignature | KeyUsageBit.nonRepudiation)) === 0) {
    return refuse('key-usage', `certificate ${name} has keyUsage without digitalSignature or nonRepudiation`);
  }
  if (cert.extKeyUsage !== undefined && !cert.extKeyUsage.some((p) => IKE_KEY_PURPOSES.has(p))) {
    return refuse('extended-key-usage', `certificate ${name} has extendedKeyUsage ${cert.extKeyUsage.join(', ')} without an IKE purpose`);
  }
  return undefined;
}

/** RFC 5280 §6.3 for every certificate below the trust anchor, with swanctl's revocation policy. */
function checkRevocation(path: readonly ParsedCertificate[], now: Date, options: ChainValidationOptions): Failure | undefined {
  const policy = options.revocation ?? 'relaxed';
  for (let i = 0; i + 1 < path.length; i++) {
    const cert = path[i]!;
    const crls = [...(options.crls ?? []), ...distributionPointCrls(cert, options)];
    const status = revocationStatus(cert, path[i + 1]!, crls, now);
    if (status.status === 'revoked') return refuse('revoked', status.detail);
    if (status.status === 'unknown' && (policy === 'strict' || (policy === 'ifuri' && cert.crlDistributionPoints.length > 0))) {
      return refuse('revocation-unknown', `revocation status of "${cert.subjectText}" unknown (revocation ${policy}): ${status.detail}`);
    }
  }
  return undefined;
}

function distributionPointCrls(cert: ParsedCertificate, options: ChainValidationOptions): ParsedCrl[] {
  if (!options.resolveCrl) return [];
  const out: ParsedCrl[] = [];
  for (const uri of cert.crlDistributionPoints.slice(0, options.maxCrlDistributionPoints ?? DEFAULT_MAX_CRL_DISTRIBUTION_POINTS)) {
    const der = options.resolveCrl(uri);
    const crl = der ? decodeResolvedCrl(der) : undefined;
    if (crl?.ok) out.push(crl.value);
  }
  return out;
}
