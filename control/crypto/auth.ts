// The AUTH payload (RFC 7296 §2.15, §3.8): the octets each side signs, the
// shared-key MIC, and Digital Signature authentication (RFC 7427, method 14)
// with ECDSA P-256 or P-384, Ed25519 (RFC 8420), and RSA with PKCS#1 v1.5 or
// RSASSA-PSS (RFC 7427 Appendix A.1, A.4).
//
// Keys are loaded at configuration time (load* throw with a clear message).
// Everything that reads peer data (AUTH data, certificates, the
// SIGNATURE_HASH_ALGORITHMS notify) returns false or a CryptoResult and
// never throws.

import {
  createPrivateKey,
  createPublicKey,
  timingSafeEqual,
  verify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { HashAlgorithm } from '../wire/constants.js';
import { concatBytes } from './bytes.js';
import { prf, requirePrf } from './prf.js';
import { fail, ok, type CryptoResult } from './result.js';
import { wipe } from './random.js';
import {
  decodeSignatureAlgorithm, encodeSignatureAlgorithm, MIN_RSA_BITS, signWithAlgorithm, verifyWithAlgorithm,
  type SignatureFamily, type SignatureHash,
} from './signature-algorithm.js';

// --- signed octets and shared-key MIC (RFC 7296 §2.15) -----------------------

/**
 * InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI, and
 * ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR, where
 * MACedIDFor* = prf(SK_p*, RestOfIDPayload) (RFC 7296 §2.15).
 *
 * @param realMessage the whole first message this side sent (IKE_SA_INIT request or response), as sent
 * @param peerNonce the Nonce Data of the other side
 * @param skP SK_pi when computing/verifying the initiator's AUTH, SK_pr for the responder's
 * @param restOfIdPayload the ID payload body after its generic header: ID Type | RESERVED (3) | Identification Data
 */
export function signedOctets(prfId: number, realMessage: Uint8Array, peerNonce: Uint8Array, skP: Uint8Array, restOfIdPayload: Uint8Array): Uint8Array {
  return concatBytes(realMessage, peerNonce, prf(prfId, skP, restOfIdPayload));
}

/** RFC 7296 §2.15: the fixed pad string, 17 ASCII octets without a terminating NUL. */
const KEY_PAD = new TextEncoder().encode('Key Pad for IKEv2');

/** AUTH data for Shared Key Message Integrity Code (method 2): prf(prf(Shared Secret, "Key Pad for IKEv2"), octets). */
export function pskAuth(prfId: number, psk: Uint8Array, octets: Uint8Array): Uint8Array {
  const padded = prf(prfId, psk, KEY_PAD);
  const auth = prf(prfId, padded, octets);
  wipe(padded);
  return auth;
}

/** Checks a peer's shared-key AUTH data in constant time (for equal lengths); any other length is false. */
export function verifyPskAuth(prfId: number, psk: Uint8Array, octets: Uint8Array, authData: Uint8Array): boolean {
  if (!(authData instanceof Uint8Array) || authData.length !== requirePrf(prfId).length) return false;
  return timingSafeEqual(pskAuth(prfId, psk, octets), authData);
}

// --- keys ----------------------------------------------------------------------

/**
 * Signature algorithms ikeclone signs and verifies with. 'rsa' is an
 * rsaEncryption key (PKCS#1 v1.5 or PSS signatures); 'rsa-pss' an
 * id-RSASSA-PSS key, which makes PSS signatures only (RFC 4055 §1.2).
 */
export type SignatureKeyKind = 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'rsa' | 'rsa-pss';
/**
 * `rsaPadding` chooses the signature scheme of an 'rsa' key: PKCS#1 v1.5 by
 * default, as strongSwan (charon.rsa_pss = no), or RSASSA-PSS.
 */
export type SigningKey = { kind: SignatureKeyKind; privateKey: KeyObject; rsaPadding?: 'pkcs1' | 'pss' };
export type VerifyKey = { kind: SignatureKeyKind; publicKey: KeyObject };

/** The kind of an asymmetric key, or undefined if ikeclone cannot use it (RSA under MIN_RSA_BITS included). */
function keyKind(key: KeyObject): SignatureKeyKind | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1') return 'ecdsa-p384';
  const rsaBits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType === 'rsa' && rsaBits >= MIN_RSA_BITS) return 'rsa';
  if (key.asymmetricKeyType === 'rsa-pss' && rsaBits >= MIN_RSA_BITS) return 'rsa-pss';
  return undefined;
}

/** Keys a raw public key can be pinned with (loadSigningKey, loadVerifyKey); certificates take every kind. */
function pinnableKind(key: KeyObject): SignatureKeyKind | undefined {
  const kind = keyKind(key);
  return kind === 'ed25519' || kind === 'ecdsa-p256' ? kind : undefined;
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return `${key.asymmetricKeyType}${curve ? ` (${curve})` : ''}`;
}

/**
 * Loads our private key from PEM: PKCS#8 ("PRIVATE KEY") or SEC1 ("EC
 * PRIVATE KEY"), Ed25519 or ECDSA P-256, unencrypted. Throws a message fit
 * for a configuration error otherwise.
 */
export function loadSigningKey(pem: string | Buffer): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new Error(`cannot read private key PEM (expected unencrypted PKCS#8 or SEC1): ${(e as Error).message}`);
  }
  const kind = pinnableKind(privateKey);
  if (!kind) throw new Error(`unsupported private key type ${describeKey(privateKey)}: use Ed25519 or ECDSA P-256`);
  return { kind, privateKey };
}

/**
 * A private key of any kind ikeclone signs with (the key of a certificate:
 * Ed25519, ECDSA P-256/P-384, RSA of at least MIN_RSA_BITS bits).
 */
export function signingKeyFromPrivateKey(privateKey: KeyObject, options: { rsaPadding?: 'pkcs1' | 'pss' } = {}): CryptoResult<SigningKey> {
  const kind = privateKey.type === 'private' ? keyKind(privateKey) : undefined;
  if (!kind) return fail(`unsupported private key type ${describeKey(privateKey)}: use Ed25519, ECDSA P-256 or P-384, or RSA of at least ${MIN_RSA_BITS} bits`);
  return ok(kind === 'rsa' ? { kind, privateKey, rsaPadding: options.rsaPadding ?? 'pkcs1' } : { kind, privateKey });
}

/** A public key of any kind ikeclone verifies with (e.g. from a validated certificate chain). */
export function verifyKeyFromPublicKey(publicKey: KeyObject): CryptoResult<VerifyKey> {
  const kind = publicKey.type === 'public' ? keyKind(publicKey) : undefined;
  return kind ? ok({ kind, publicKey }) : fail(`unsupported public key type ${describeKey(publicKey)}`);
}

/**
 * Loads a peer's public key from PEM: a SubjectPublicKeyInfo ("PUBLIC KEY")
 * or an X.509 certificate ("CERTIFICATE"). Throws for other input
 * (configuration time).
 */
export function loadVerifyKey(pem: string | Buffer): VerifyKey {
  const text = typeof pem === 'string' ? pem : pem.toString('latin1');
  let publicKey: KeyObject;
  try {
    publicKey = text.includes('-----BEGIN CERTIFICATE-----')
      ? new X509Certificate(pem).publicKey
      : createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new Error(`cannot read public key or certificate PEM: ${(e as Error).message}`);
  }
  const kind = pinnableKind(publicKey);
  if (!kind) throw new Error(`unsupported public key type ${describeKey(publicKey)}: use Ed25519 or ECDSA P-256`);
  return { kind, publicKey };
}

/**
 * The public key of a DER X.509 certificate as received in a CERT payload
 * (Certificate Encoding 4, RFC 7296 §3.6). Untrusted input: never throws.
 * This only extracts the key; whether the certificate is trusted is the
 * caller's policy.
 */
export function verifyKeyFromCertificate(der: Uint8Array): CryptoResult<VerifyKey> {
  let publicKey: KeyObject;
  try {
    publicKey = new X509Certificate(Buffer.from(der.buffer, der.byteOffset, der.byteLength)).publicKey;
  } catch {
    return fail('certificate cannot be parsed');
  }
  const key = verifyKeyFromPublicKey(publicKey);
  return key.ok ? key : fail(`unsupported certificate key type ${describeKey(publicKey)}`);
}

// --- Digital Signature authentication (RFC 7427 §3) ------------------------------

/** IKEv2 Hash Algorithm identifiers (RFC 7427 §7) of the hashes RFC 7427 signatures use here. */
const HASH_OF_ID: ReadonlyMap<number, SignatureHash> = new Map([
  [HashAlgorithm.SHA2_256, 'sha256'],
  [HashAlgorithm.SHA2_384, 'sha384'],
  [HashAlgorithm.SHA2_512, 'sha512'],
]);

/** Hash algorithms announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4, RFC 8420 §2). */
export const SUPPORTED_SIGNATURE_HASHES: number[] = [
  HashAlgorithm.SHA2_256,
  HashAlgorithm.SHA2_384,
  HashAlgorithm.SHA2_512,
  HashAlgorithm.IDENTITY,
];

/** Our order of preference per key kind: P-384 keys pair with SHA2-384 first (RFC 5656 §6.2.1 sizing). */
const HASH_PREFERENCE: Readonly<Record<Exclude<SignatureKeyKind, 'ed25519'>, readonly number[]>> = {
  'ecdsa-p256': [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512],
  'ecdsa-p384': [HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, HashAlgorithm.SHA2_256],
  rsa: [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512],
  'rsa-pss': [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512],
};

/**
 * The hash to sign with, for a key of `kind`, towards a peer that announced
 * `peerHashes` in SIGNATURE_HASH_ALGORITHMS. RFC 7427 §4: "a peer MUST pick
 * one algorithm sent by the other peer". Ed25519 signs with Identity, and
 * only for a peer that announced it (RFC 8420 §2); ECDSA and RSA with the
 * first of our preferred SHA-2 hashes the peer announced (SHA2-256 first,
 * SHA2-384 first for P-384). undefined when the peer announced none of them:
 * no signature it accepts can be made.
 */
export function signatureHashFor(kind: SignatureKeyKind, peerHashes: readonly number[]): number | undefined {
  if (kind === 'ed25519') return peerHashes.includes(HashAlgorithm.IDENTITY) ? HashAlgorithm.IDENTITY : undefined;
  return HASH_PREFERENCE[kind].find((id) => peerHashes.includes(id));
}

/** The signature family a key of `kind` signs with. */
function signingFamily(key: SigningKey): SignatureFamily {
  switch (key.kind) {
    case 'ed25519':
      return 'ed25519';
    case 'ecdsa-p256':
    case 'ecdsa-p384':
      return 'ecdsa';
    case 'rsa':
      return key.rsaPadding === 'pss' ? 'rsa-pss' : 'rsa-pkcs1';
    case 'rsa-pss':
      return 'rsa-pss';
  }
}

/** Whether a verify key of `kind` may be used with a signature of `family` (a P-256 key never checks an RSA AUTH). */
function familyFitsKind(family: SignatureFamily, kind: SignatureKeyKind): boolean {
  switch (kind) {
    case 'ed25519':
      return family === 'ed25519';
    case 'ecdsa-p256':
    case 'ecdsa-p384':
      return family === 'ecdsa';
    case 'rsa':
      return family === 'rsa-pkcs1' || family === 'rsa-pss';
    case 'rsa-pss':
      return family === 'rsa-pss';
  }
}

/**
 * AUTH data for method 14 (RFC 7427 §3):
 * ASN.1 Length (1 octet) | AlgorithmIdentifier (DER) | Signature.
 * Ed25519 signs the octets directly (RFC 8420 §2; `hash` must be Identity);
 * ECDSA uses ecdsa-with-SHA256/384/512 as `hash` says (default SHA2-256) and
 * a DER Ecdsa-Sig-Value (RFC 7427 §3 via RFC 3279 §2.2.3, as strongSwan
 * sends); RSA uses sha*WithRSAEncryption (Appendix A.1) or RSASSA-PSS with
 * MGF1 over the same hash and a salt of the hash length (Appendix A.4.3).
 */
export function signDigitalSignature(key: SigningKey, octets: Uint8Array, hash?: number): Uint8Array {
  const family = signingFamily(key);
  let hashName: SignatureHash | null = null;
  if (family === 'ed25519') {
    if (hash !== undefined && hash !== HashAlgorithm.IDENTITY) throw new RangeError(`Ed25519 signs with the Identity hash, not ${hash} (RFC 8420 §2)`);
  } else {
    hashName = HASH_OF_ID.get(hash ?? HashAlgorithm.SHA2_256) ?? null;
    if (hashName === null) throw new RangeError(`no ${family === 'ecdsa' ? 'ECDSA' : 'RSA'} signature with hash algorithm ${hash}`);
  }
  const algId = encodeSignatureAlgorithm(family, hashName);
  const signature = signWithAlgorithm(family, hashName, key.privateKey, octets);
  const out = new Uint8Array(1 + algId.length + signature.length);
  out[0] = algId.length;
  out.set(algId, 1);
  out.set(signature, 1 + algId.length);
  return out;
}

/**
 * Checks AUTH data of method 14 against `octets` with the peer's key. The
 * AlgorithmIdentifier must be DER and fit the key kind (id-Ed25519 for
 * Ed25519; ecdsa-with-SHA256/384/512 for P-256 and P-384; PKCS#1 v1.5 or
 * RSASSA-PSS for RSA, PSS alone for an RSASSA-PSS key). Malformed data is
 * false; never throws.
 */
export function verifyDigitalSignature(key: VerifyKey, authData: Uint8Array, octets: Uint8Array): boolean {
  if (!(authData instanceof Uint8Array) || authData.length < 1) return false;
  const algLength = authData[0]!;
  if (authData.length <= 1 + algLength) return false;
  const algorithm = decodeSignatureAlgorithm(authData.subarray(1, 1 + algLength));
  if (!algorithm.ok || !familyFitsKind(algorithm.value.family, key.kind)) return false;
  return verifyWithAlgorithm(algorithm.value, key.publicKey, octets, authData.subarray(1 + algLength));
}

// --- low-level verification -------------------------------------------------------

// SubjectPublicKeyInfo DER prefixes for raw keys (RFC 8410 §4; RFC 5480 §2 with an uncompressed point).
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

function publicKeyObject(pub: KeyObject | Uint8Array, prefix: Buffer, rawLength: number): KeyObject | undefined {
  if (!(pub instanceof Uint8Array)) return pub;
  if (pub.length !== rawLength) return undefined;
  try {
    return createPublicKey({ key: Buffer.concat([prefix, pub]), format: 'der', type: 'spki' });
  } catch {
    return undefined; // e.g. a P-256 point that is not on the curve
  }
}

/**
 * Ed25519 verification (RFC 8032 §5.1.7). `pub` is a KeyObject or the raw
 * 32-byte public key. Never throws.
 */
export function verifyEd25519(pub: KeyObject | Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const key = publicKeyObject(pub, ED25519_SPKI_PREFIX, 32);
  if (!key || keyKind(key) !== 'ed25519' || sig.length !== 64) return false;
  try {
    return verify(null, msg, key, sig);
  } catch {
    return false;
  }
}

/**
 * ECDSA P-256 with SHA-256. `pub` is a KeyObject or the 65-byte uncompressed
 * SEC1 point; `format` is 'der' (Ecdsa-Sig-Value, strict DER) or 'p1363'
 * (r | s, 64 bytes). Never throws.
 */
export function verifyEcdsaP256Sha256(pub: KeyObject | Uint8Array, msg: Uint8Array, sig: Uint8Array, format: 'der' | 'p1363'): boolean {
  return verifyEcdsaP256(pub, msg, sig, 'sha256', format);
}

function verifyEcdsaP256(pub: KeyObject | Uint8Array, msg: Uint8Array, sig: Uint8Array, hash: string, format: 'der' | 'p1363'): boolean {
  const key = publicKeyObject(pub, P256_SPKI_PREFIX, 65);
  if (!key || keyKind(key) !== 'ecdsa-p256') return false;
  if (format === 'p1363' && sig.length !== 64) return false;
  try {
    return verify(hash, msg, { key, dsaEncoding: format === 'der' ? 'der' : 'ieee-p1363' }, sig);
  } catch {
    return false;
  }
}

// --- SIGNATURE_HASH_ALGORITHMS notify data (RFC 7427 §4) --------------------------

/** Notify data: a list of 16-bit Hash Algorithm identifiers. */
export function encodeSignatureHashes(ids: number[]): Uint8Array {
  const out = new Uint8Array(2 * ids.length);
  const view = new DataView(out.buffer);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw new RangeError(`hash algorithm id out of range: ${id}`);
    view.setUint16(2 * i, id);
  });
  return out;
}

/** Peer's notify data to identifiers; a trailing odd octet is ignored. Never throws. */
export function decodeSignatureHashes(data: Uint8Array): number[] {
  const ids: number[] = [];
  for (let i = 0; i + 1 < data.length; i += 2) ids.push((data[i]! << 8) | data[i + 1]!);
  return ids;
}
