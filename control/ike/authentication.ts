// The AUTH payload of IKE_AUTH (RFC 7296 §2.15): what each side signs or MACs,
// and the check of the peer's. PSK uses SHARED_KEY_MIC; public keys use
// Digital Signature authentication (RFC 7427) with Ed25519 (RFC 8420) or ECDSA.
import { AuthMethod, PayloadType } from '../wire/constants.js';
import type { AuthPayload, IdPayload } from '../wire/payloads.js';
import { pskAuth, signDigitalSignature, signedOctets, verifyDigitalSignature, verifyPskAuth } from '../crypto/auth.js';
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

/** Our AUTH payload for the ID payload we send. */
export function buildAuth(sa: IkeSa, id: { idType: number; data: Uint8Array }): AuthPayload {
  const signer = sa.isInitiator ? 'initiator' : 'responder';
  const octets = octetsFor(sa, signer, id);
  const auth = sa.policy.localAuth;
  if (auth.method === 'psk') {
    if (!auth.psk) throw new Error(`connection "${sa.name}" has no pre-shared key`);
    return { type: PayloadType.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: pskAuth(sa.suite!.prf!, auth.psk, octets) };
  }
  if (!auth.signingKey) throw new Error(`connection "${sa.name}" has no private key`);
  return { type: PayloadType.AUTH, method: AuthMethod.DIGITAL_SIGNATURE, data: signDigitalSignature(auth.signingKey, octets) };
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
