// The AUTH payload of IKE_AUTH (RFC 7296 §2.15): what each side signs or MACs,
// and the check of the peer's. PSK uses SHARED_KEY_MIC; public keys use
// Digital Signature authentication (RFC 7427) with Ed25519 (RFC 8420) or ECDSA.
import { AuthMethod, PayloadType } from '../wire/constants.js';
import type { AuthPayload, IdPayload } from '../wire/payloads.js';
import { pskAuth, signatureHashFor, signDigitalSignature, signedOctets, verifyDigitalSignature, verifyPskAuth } from '../crypto/auth.js';
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

/** Check the peer's AUTH payload against its ID payload, with the policy's expectations. Never throws. */
export function verifyAuth(sa: IkeSa, id: IdPayload, auth: AuthPayload): boolean {
  try {
    const signer = sa.isInitiator ? 'responder' : 'initiator';
    const octets = octetsFor(sa, signer, id);
    const expected = sa.policy.remoteAuth;
    if (expected.method === 'psk') {
      return auth.method === AuthMethod.SHARED_KEY_MIC && expected.psk !== undefined && verifyPskAuth(sa.suite!.prf!, expected.psk, octets, auth.data);
    }
    return auth.method === AuthMethod.DIGITAL_SIGNATURE && expected.verifyKey !== undefined && verifyDigitalSignature(expected.verifyKey, auth.data, octets);
  } catch {
    return false;
  }
}
