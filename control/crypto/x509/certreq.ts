// CERTREQ (RFC 7296 §3.7) and what to answer it with (§3.6), under swanctl's
// send_cert policy.
//
// The Certification Authority field of a CERTREQ with encoding 4 (X.509
// Certificate - Signature) is a concatenation of SHA-1 hashes of trusted
// CAs' SubjectPublicKeyInfo. We send one listing our trust anchors, and read
// the peer's without throwing.

import { equalBytes } from '../bytes.js';
import { isSelfIssued, subjectPublicKeyInfoSha1, type ParsedCertificate } from './certificate.js';

/** RFC 7296 §3.7: each Certification Authority value is a 20-octet SHA-1 hash. */
export const CA_HASH_LENGTH = 20;
/** The hashes read from one CERTREQ payload; more are ignored (a peer trusts a handful of CAs). */
export const MAX_CERTREQ_HASHES = 64;

/** CERTREQ Certification Authority data for our trust anchors (remote.cacerts), each CA once. */
export function encodeCertreqAuthorities(trustAnchors: readonly ParsedCertificate[]): Uint8Array {
  const hashes: Uint8Array[] = [];
  for (const ca of trustAnchors) {
    const h = subjectPublicKeyInfoSha1(ca);
    if (!hashes.some((x) => equalBytes(x, h))) hashes.push(h);
  }
  const out = new Uint8Array(hashes.length * CA_HASH_LENGTH);
  hashes.forEach((h, i) => out.set(h, i * CA_HASH_LENGTH));
  return out;
}

/**
 * The peer's Certification Authority data as hashes. A length that is not a
 * multiple of 20 leaves its tail unread (strongSwan does the same); at most
 * MAX_CERTREQ_HASHES. Never throws.
 */
export function decodeCertreqAuthorities(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i + CA_HASH_LENGTH <= data.length && out.length < MAX_CERTREQ_HASHES; i += CA_HASH_LENGTH) {
    out.push(data.slice(i, i + CA_HASH_LENGTH));
  }
  return out;
}

/** Whether a CERTREQ names this CA (by the SHA-1 of its SubjectPublicKeyInfo). */
export function certreqNames(hashes: readonly Uint8Array[], ca: ParsedCertificate): boolean {
  const h = subjectPublicKeyInfoSha1(ca);
  return hashes.some((x) => equalBytes(x, h));
}

/** swanctl's send_cert. */
export type SendCertPolicy = 'ifasked' | 'always' | 'never';

export interface CertificatesToSend {
  /**
   * DER certificates for CERT payloads, end entity first (RFC 7296 §3.6: "the
   * first certificate provided MUST contain the public key used to verify the
   * AUTH field"), then the intermediates in configured order.
   */
  certificates: Uint8Array[];
  /** For the log: whether the CERTREQ named a CA of our chain (an intermediate, or one of `issuingCas`). */
  requestedCaKnown: boolean;
}

/**
 * The CERT payloads to send with our AUTH. `certreqSeen` is whether the peer
 * sent any CERTREQ payload in this IKE SA, `requestedCas` the hashes it
 * listed; `issuingCas` are CA certificates above our chain that we hold (our
 * own root, if configured) and only serve to say whether the peer asked for
 * a CA of ours.
 *
 * As strongSwan (ike_cert_post.c, COND_CERTREQ_SEEN): ifasked sends the end
 * entity and every configured intermediate as soon as any CERTREQ arrived,
 * even one naming none of our CAs or none at all, since a peer that asks but
 * does not know our CA still needs the end entity to verify AUTH and to log a
 * precise refusal. always sends them unasked; never sends nothing (the peer
 * must have our certificate). A self-signed certificate among the
 * intermediates is not sent: the peer trusts it already or cannot use it.
 */
export function certificatesToSend(
  policy: SendCertPolicy,
  certreqSeen: boolean,
  requestedCas: readonly Uint8Array[],
  endEntity: ParsedCertificate,
  intermediates: readonly ParsedCertificate[],
  issuingCas: readonly ParsedCertificate[] = [],
): CertificatesToSend {
  const chain = [endEntity, ...intermediates.filter((c) => !isSelfIssued(c))];
  const requestedCaKnown = [...intermediates, ...issuingCas].some((ca) => certreqNames(requestedCas, ca));
  const send = policy === 'always' || (policy === 'ifasked' && certreqSeen);
  return { certificates: send ? chain.map((c) => c.der) : [], requestedCaKnown };
}
