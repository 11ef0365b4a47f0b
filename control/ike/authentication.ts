// The AUTH payload of IKE_AUTH (RFC 7296 §2.15): what each side signs or MACs,
// and the check of the peer's. PSK uses SHARED_KEY_MIC; public keys use
// Digital Signature authentication (RFC 7427) with Ed25519 (RFC 8420), ECDSA
// or RSA. The key that verifies the peer's signature is either pinned in the
// configuration or taken from a certificate chain the peer sends in CERT
// payloads (RFC 7296 §3.6), checked against our trust anchors; CERTREQ
// (§3.7) tells each side which CAs the other trusts.
import { AuthMethod, CertEncoding, PayloadType } from '../wire/constants.js';
import type { AuthPayload, CertPayload, CertReqPayload, IdPayload, Payload } from '../wire/payloads.js';
import {
  pskAuth, signatureHashFor, signDigitalSignature, signedOctets, verifyDigitalSignature, verifyKeyFromPublicKey, verifyPskAuth, type VerifyKey,
} from '../crypto/auth.js';
import { certificatesToSend, decodeCertreqAuthorities, encodeCertreqAuthorities, localCrlResolver, validateCertificateChain } from '../crypto/x509/index.js';
import type { ConnectionPolicy, RemoteAuth } from './policy.js';
import type { IkeSa } from './ike-sa.js';
import { restOfIdPayload } from './payload-builders.js';

/**
 * InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI, and the
 * responder's mirror image (RFC 7296 §2.15).
 */
function octetsFor(sa: IkeSa, signer: 'initiator' | 'responder', id: { idType: number; data: Uint8Array }): Uint8Array {
  const keys = sa.keys!;
  const prf = sa.suite!.prf!;
  const rest = restOfIdPayload(id);
  return signer === 'initiator'
    ? signedOctets(prf, sa.initRequest!, sa.nonceR!, keys.skPi, rest)
    : signedOctets(prf, sa.initResponse!, sa.nonceI!, keys.skPr, rest);
}

/**
 * Why we cannot authenticate to this peer with our configured method, or
 * undefined if we can. A signature (RFC 7427 method 14) needs a hash the
 * peer announced in SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT (RFC 7427 §4);
 * a peer that announced none, or none our key can sign with, cannot be sent
 * one (RFC 8420 §2 for Ed25519). `peerHashes`: the peer's list, by default
 * the one the SA recorded.
 */
export function authRefusal(sa: IkeSa, peerHashes: readonly number[] = sa.peerSignatureHashes): string | undefined {
  const auth = sa.policy.localAuth;
  if (auth.method === 'psk') return auth.psk ? undefined : `connection "${sa.name}" has no pre-shared key`;
  if (!auth.signingKey) return `connection "${sa.name}" has no private key`;
  if (signatureHashFor(auth.signingKey.kind, peerHashes) === undefined) {
    return `the peer announced no signature hash a ${auth.signingKey.kind} key signs with (SIGNATURE_HASH_ALGORITHMS: ${peerHashes.join(', ') || 'none'})`;
  }
  return undefined;
}

/** Our AUTH payload for the ID payload we send; throws what authRefusal() says when it cannot be made. */
export function buildAuth(sa: IkeSa, id: { idType: number; data: Uint8Array }): AuthPayload {
  const refusal = authRefusal(sa);
  if (refusal) throw new Error(refusal);
  const signer = sa.isInitiator ? 'initiator' : 'responder';
  const octets = octetsFor(sa, signer, id);
  const auth = sa.policy.localAuth;
  if (auth.method === 'psk') {
    return { type: PayloadType.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: pskAuth(sa.suite!.prf!, auth.psk!, octets) };
  }
  const key = auth.signingKey!;
  const hash = signatureHashFor(key.kind, sa.peerSignatureHashes)!;
  return { type: PayloadType.AUTH, method: AuthMethod.DIGITAL_SIGNATURE, data: signDigitalSignature(key, octets, hash) };
}

/**
 * Check the peer's AUTH payload against its ID payload, with the policy's
 * expectations (`expected`: the SA's policy unless another is weighed). Never throws.
 */
export function verifyAuth(sa: IkeSa, id: IdPayload, auth: AuthPayload, expected: RemoteAuth = sa.policy.remoteAuth, verifyKey: VerifyKey | undefined = expected.verifyKey): boolean {
  try {
    const signer = sa.isInitiator ? 'responder' : 'initiator';
    const octets = octetsFor(sa, signer, id);
    if (expected.method === 'psk') {
      return auth.method === AuthMethod.SHARED_KEY_MIC && expected.psk !== undefined && verifyPskAuth(sa.suite!.prf!, expected.psk, octets, auth.data);
    }
    return auth.method === AuthMethod.DIGITAL_SIGNATURE && verifyKey !== undefined && verifyDigitalSignature(verifyKey, auth.data, octets);
  } catch {
    return false;
  }
}

/**
 * CERT payloads of a message considered at most: an end entity and a few
 * intermediates (strongSwan allows 7 CA levels). More are ignored, so a peer
 * cannot make us parse and try an unbounded number of certificates.
 */
export const MAX_CERT_PAYLOADS = 8;

/** peerAuthFailure's answer when a PSK or pinned-key AUTH payload is simply wrong. */
export const AUTH_DOES_NOT_VERIFY = 'AUTH payload does not verify';

/**
 * Why the peer's IKE_AUTH does not authenticate it, or undefined when it
 * does. With trust anchors and X.509 CERT payloads (RFC 7296 §3.6: the first
 * one holds the key that verifies AUTH), the chain is validated at the
 * engine's wall time and the peer's ID must be named by the end-entity
 * certificate (RFC 4945 §3.1); without CERT payloads, a pinned key is used.
 * Never throws: the reason is for one log line.
 */
export function peerAuthFailure(sa: IkeSa, id: IdPayload, auth: AuthPayload, payloads: readonly Payload[], now: number, expected: RemoteAuth = sa.policy.remoteAuth): string | undefined {
  const anchors = expected.trustAnchors ?? [];
  if (expected.method === 'psk' || anchors.length === 0) {
    return verifyAuth(sa, id, auth, expected) ? undefined : AUTH_DOES_NOT_VERIFY;
  }
  const certs = payloads
    .filter((p): p is CertPayload => p.type === PayloadType.CERT && p.encoding === CertEncoding.X509_SIGNATURE)
    .slice(0, MAX_CERT_PAYLOADS);
  if (certs.length === 0) {
    if (expected.verifyKey) return verifyAuth(sa, id, auth, expected) ? undefined : 'AUTH payload does not verify with the configured public key';
    return 'no X.509 certificate (CERT payload) received';
  }
  const verdict = validateCertificateChain(certs[0]!.data, certs.slice(1).map((c) => c.data), {
    now,
    trustAnchors: anchors,
    crls: expected.crls ?? [],
    resolveCrl: localCrlResolver(),
    revocation: expected.revocation ?? 'relaxed',
    peerId: { type: id.idType, data: id.data },
  });
  if (!verdict.ok) return `certificate refused (${verdict.reason}): ${verdict.detail}`;
  const key = verifyKeyFromPublicKey(verdict.publicKey);
  if (!key.ok) return `certificate key unusable: ${key.error}`;
  return verifyAuth(sa, id, auth, expected, key.value) ? undefined : `AUTH payload does not verify with the key of certificate "${verdict.chain[0]!.subjectText}"`;
}

/**
 * CERTREQ naming our trust anchors by the SHA-1 of their SubjectPublicKeyInfo
 * (RFC 7296 §3.7): in the IKE_SA_INIT response and the IKE_AUTH request, as
 * strongSwan sends it. None without anchors or with send_certreq: no.
 */
export function certreqPayloads(policy: ConnectionPolicy): CertReqPayload[] {
  const anchors = policy.remoteAuth.method === 'pubkey' ? policy.remoteAuth.trustAnchors ?? [] : [];
  if (anchors.length === 0 || policy.sendCertreq === false) return [];
  return [{ type: PayloadType.CERTREQ, encoding: CertEncoding.X509_SIGNATURE, data: encodeCertreqAuthorities(anchors) }];
}

/** Remembers the CA hashes of the peer's X.509 CERTREQ payloads (RFC 7296 §3.7); other encodings are ignored. */
export function recordPeerCertreq(sa: IkeSa, payloads: readonly Payload[]): void {
  for (const p of payloads) {
    if (p.type !== PayloadType.CERTREQ || p.encoding !== CertEncoding.X509_SIGNATURE) continue;
    sa.peerCertreq = [...(sa.peerCertreq ?? []), ...decodeCertreqAuthorities(p.data)].slice(0, MAX_CERTREQ_HASHES_KEPT);
  }
}

/** Hashes kept over all of a peer's CERTREQ payloads. */
const MAX_CERTREQ_HASHES_KEPT = 64;

/**
 * Our CERT payloads (RFC 7296 §3.6, encoding 4 X.509 Certificate -
 * Signature): end entity first, then intermediates, under send_cert (default
 * ifasked: only after the peer sent a CERTREQ, as strongSwan).
 */
export function certPayloads(sa: IkeSa): CertPayload[] {
  const certs = sa.policy.localAuth.method === 'pubkey' ? sa.policy.localAuth.certificates : undefined;
  if (!certs) return [];
  const chosen = certificatesToSend(sa.policy.sendCert ?? 'ifasked', sa.peerCertreq !== undefined, sa.peerCertreq ?? [], certs.endEntity, certs.intermediates);
  return chosen.certificates.map((data) => ({ type: PayloadType.CERT, encoding: CertEncoding.X509_SIGNATURE, data }));
}
