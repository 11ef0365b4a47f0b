// Certificate revocation lists (RFC 5280 §5) and the revocation check of path
// validation (RFC 5280 §6.3): a CRL counts only when its issuer is the
// certificate's issuer, its signature verifies with that issuer's key, and it
// is current; complete CRLs only (no delta or indirect CRLs). CRLs come from
// files the configuration names, or from cRLDistributionPoints mapped to
// local files by a resolver: nothing is fetched from the network.
//
// parseCrl reads bytes from disk or a resolver and never throws.

import { AsnConvert } from '@peculiar/asn1-schema';
import {
  CertificateList, CRLReason, id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_cRLReasons, id_ce_invalidityDate,
  id_ce_issuingDistributionPoint, IssuingDistributionPoint, type Name,
} from '@peculiar/asn1-x509';
import { fail, ok, type CryptoResult } from '../result.js';
import { signatureAlgorithmOf, verifyWithAlgorithm, type SignatureAlgorithm } from '../signature-algorithm.js';
import { decodeUntrusted, KeyUsageBit, sameAlgorithm, type ParsedCertificate } from './certificate.js';
import { formatName, namesEqual } from './names.js';

/** CRLs larger than this are refused unread. */
export const MAX_CRL_BYTES = 4 * 1024 * 1024;

export interface RevokedEntry {
  date: Date;
  /** CRLReason name (RFC 5280 §5.3.1), e.g. "keyCompromise", when given. */
  reason?: string;
}

export interface ParsedCrl {
  der: Uint8Array;
  tbs: Uint8Array;
  signatureAlgorithm: CryptoResult<SignatureAlgorithm>;
  signature: Uint8Array;
  issuer: Name;
  issuerText: string;
  thisUpdate: Date;
  nextUpdate?: Date;
  /** Revoked serial numbers (hex, leading zero octets removed). */
  revoked: Map<string, RevokedEntry>;
  /** Why this CRL cannot decide any status (RFC 5280 §5.2, §5.3: unprocessable critical extensions; delta or indirect CRLs). */
  unusable?: string;
  /** issuingDistributionPoint scope (RFC 5280 §5.2.5). */
  onlyUserCerts: boolean;
  onlyCaCerts: boolean;
}

/** Known CRLReason values, by code (RFC 5280 §5.3.1). */
const REASONS = ['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'unused', 'removeFromCRL', 'privilegeWithdrawn', 'aACompromise'];

/** Serial numbers compare by value: hex of the INTEGER content octets without leading zero octets. */
export function normaliseSerial(hex: string): string {
  return hex.replace(/^(00)+(?=..)/, '');
}

/** Decodes a DER CRL. Never throws. */
export function parseCrl(der: Uint8Array): CryptoResult<ParsedCrl> {
  return decodeUntrusted('CRL', der, MAX_CRL_BYTES, decode);
}

function decode(der: Uint8Array): CryptoResult<ParsedCrl> {
  const list = AsnConvert.parse(Buffer.from(der.buffer, der.byteOffset, der.byteLength), CertificateList);
  const tbs = list.tbsCertList;
  if (!list.tbsCertListRaw) return fail('malformed CRL (no tbsCertList)');
  if (!sameAlgorithm(list.signatureAlgorithm, tbs.signature)) return fail('signatureAlgorithm differs from tbsCertList.signature');
  const crl: ParsedCrl = {
    der,
    tbs: new Uint8Array(list.tbsCertListRaw),
    signatureAlgorithm: signatureAlgorithmOf(list.signatureAlgorithm),
    signature: new Uint8Array(list.signature),
    issuer: tbs.issuer,
    issuerText: formatName(tbs.issuer),
    thisUpdate: tbs.thisUpdate.getTime(),
    revoked: new Map(),
    onlyUserCerts: false,
    onlyCaCerts: false,
  };
  if (tbs.nextUpdate) crl.nextUpdate = tbs.nextUpdate.getTime();
  for (const ext of tbs.crlExtensions ?? []) {
    if (ext.extnID === id_ce_issuingDistributionPoint) {
      const idp = AsnConvert.parse(ext.extnValue.buffer, IssuingDistributionPoint);
      crl.onlyUserCerts = idp.onlyContainsUserCerts;
      crl.onlyCaCerts = idp.onlyContainsCACerts;
      if (idp.indirectCRL) crl.unusable ??= 'indirect CRL';
      else if (idp.onlySomeReasons) crl.unusable ??= 'CRL covers only some reasons';
      else if (idp.onlyContainsAttributeCerts) crl.unusable ??= 'CRL of attribute certificates';
    } else if (ext.critical && ext.extnID !== id_ce_cRLNumber && ext.extnID !== id_ce_authorityKeyIdentifier) {
      // deltaCRLIndicator (2.5.29.27) lands here too: a delta CRL is not a complete list.
      crl.unusable ??= `critical CRL extension ${ext.extnID}`;
    }
  }
  for (const entry of tbs.revokedCertificates ?? []) {
    let reason: string | undefined;
    for (const ext of entry.crlEntryExtensions ?? []) {
      if (ext.extnID === id_ce_cRLReasons) reason = REASONS[AsnConvert.parse(ext.extnValue.buffer, CRLReason).reason];
      else if (ext.critical && ext.extnID !== id_ce_invalidityDate) crl.unusable ??= `critical CRL entry extension ${ext.extnID}`;
    }
    const serial = normaliseSerial(Buffer.from(entry.userCertificate).toString('hex'));
    crl.revoked.set(serial, reason === undefined ? { date: entry.revocationDate.getTime() } : { date: entry.revocationDate.getTime(), reason });
  }
  return ok(crl);
}

export type RevocationStatus =
  | { status: 'good' }
  | { status: 'revoked'; detail: string }
  | { status: 'unknown'; detail: string };

/**
 * The revocation status of `cert` (issued by `issuer`) from `crls` (RFC 5280
 * §6.3.3, complete CRLs): revoked when a CRL of that issuer, signed with its
 * key, lists the serial (even a CRL past its nextUpdate: revocation is
 * final); good when a current CRL of that issuer does not; else unknown,
 * with why.
 */
export function revocationStatus(cert: ParsedCertificate, issuer: ParsedCertificate, crls: readonly ParsedCrl[], now: Date): RevocationStatus {
  const problems: string[] = [];
  let current = false;
  for (const crl of crls) {
    if (!namesEqual(crl.issuer, cert.issuer)) continue;
    const why = crlProblem(crl, cert, issuer);
    if (why) {
      problems.push(why);
      continue;
    }
    const entry = crl.revoked.get(normaliseSerial(cert.serial));
    if (entry) {
      return { status: 'revoked', detail: `certificate "${cert.subjectText}" (serial ${cert.serial}) revoked on ${entry.date.toISOString()}${entry.reason ? ` (${entry.reason})` : ''} by the CRL of "${crl.issuerText}"` };
    }
    if (crl.thisUpdate.getTime() > now.getTime()) problems.push(`CRL of "${crl.issuerText}" issued in the future (${crl.thisUpdate.toISOString()})`);
    else if (crl.nextUpdate && crl.nextUpdate.getTime() < now.getTime()) problems.push(`CRL of "${crl.issuerText}" expired on ${crl.nextUpdate.toISOString()}`);
    else current = true;
  }
  if (current) return { status: 'good' };
  return { status: 'unknown', detail: problems.length > 0 ? problems.join('; ') : `no CRL of "${cert.issuerText}"` };
}

/** Why a CRL cannot speak for `cert`, or undefined when it can. */
function crlProblem(crl: ParsedCrl, cert: ParsedCertificate, issuer: ParsedCertificate): string | undefined {
  if (crl.unusable) return `CRL of "${crl.issuerText}" not used: ${crl.unusable}`;
  const isCa = cert.basicConstraints?.cA === true;
  if ((crl.onlyUserCerts && isCa) || (crl.onlyCaCerts && !isCa)) return `CRL of "${crl.issuerText}" does not cover ${isCa ? 'CA' : 'end-entity'} certificates`;
  // RFC 5280 §6.3.3 (f): the CRL issuer's key must be allowed to sign CRLs.
  if (issuer.keyUsage !== undefined && (issuer.keyUsage & KeyUsageBit.cRLSign) === 0) return `"${issuer.subjectText}" may not sign CRLs (keyUsage without cRLSign)`;
  if (!crl.signatureAlgorithm.ok) return `CRL of "${crl.issuerText}": ${crl.signatureAlgorithm.error}`;
  if (!verifyWithAlgorithm(crl.signatureAlgorithm.value, issuer.publicKey, crl.tbs, crl.signature)) return `CRL of "${crl.issuerText}" has a bad signature`;
  return undefined;
}
