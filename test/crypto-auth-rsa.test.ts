// RFC 7427 signatures with the keys certificates carry: ECDSA P-384, RSA
// PKCS#1 v1.5 and RSASSA-PSS. AlgorithmIdentifier bytes against RFC 7427
// Appendix A; verification against Wycheproof and node:crypto.
import { beforeAll, describe, expect, it } from 'vitest';
import { constants, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import {
  signatureHashFor, signDigitalSignature, signingKeyFromPrivateKey, verifyDigitalSignature, verifyKeyFromPublicKey,
  type SigningKey, type VerifyKey,
} from '../control/crypto/auth.js';
import {
  decodeSignatureAlgorithm, encodeSignatureAlgorithm, verifyWithAlgorithm, type SignatureAlgorithm,
} from '../control/crypto/signature-algorithm.js';
import { HashAlgorithm } from '../control/wire/constants.js';
import { loadVectors } from './support/vectors.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const { SHA1, SHA2_256, SHA2_384, SHA2_512, IDENTITY } = HashAlgorithm;

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

/** AUTH data of method 14: ASN.1 Length | AlgorithmIdentifier | Signature (RFC 7427 §3). */
const authData = (algId: Uint8Array, signature: Uint8Array): Uint8Array => Uint8Array.of(algId.length, ...algId, ...signature);

describe('RFC 7427 Appendix A AlgorithmIdentifiers', () => {
  it.each([
    ['A.1.2 sha256WithRSAEncryption', 'rsa-pkcs1', 'sha256', '300d 0609 2a86 4886 f70d 0101 0b05 00'],
    ['A.1.3 sha384WithRSAEncryption', 'rsa-pkcs1', 'sha384', '300d 0609 2a86 4886 f70d 0101 0c05 00'],
    ['A.1.4 sha512WithRSAEncryption', 'rsa-pkcs1', 'sha512', '300d 0609 2a86 4886 f70d 0101 0d05 00'],
    ['A.3.2 ecdsa-with-sha256', 'ecdsa', 'sha256', '300a 0608 2a86 48ce 3d04 0302'],
    ['A.3.3 ecdsa-with-sha384', 'ecdsa', 'sha384', '300a 0608 2a86 48ce 3d04 0303'],
    ['A.3.4 ecdsa-with-sha512', 'ecdsa', 'sha512', '300a 0608 2a86 48ce 3d04 0304'],
    ['RFC 8420 A.1 id-Ed25519', 'ed25519', null, '3005 0603 2b65 70'],
  ] as const)('%s is encoded byte for byte as the RFC prints it', (_name, family, hash, bytes) => {
    expect(toHex(encodeSignatureAlgorithm(family, hash))).toBe(toHex(hex(bytes)));
    expect(unwrap(decodeSignatureAlgorithm(hex(bytes)))).toMatchObject({ family, hash });
  });

  // A.4.3 spells out trailerField 1, which DER omits as the DEFAULT (X.690 §11.5); we send the DER form
  // (as strongSwan) and accept both.
  const A43 = '3046 0609 2a86 4886 f70d 0101 0a30 39a0 0f30 0d06 0960 8648 0165 0304 0201 0500 a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500 a203 0201 20a3 0302 0101';
  it('A.4.3 RSASSA-PSS with SHA-256: decoded, and our DER encoding is A.4.3 without the default trailerField', () => {
    expect(unwrap(decodeSignatureAlgorithm(hex(A43)))).toMatchObject({ family: 'rsa-pss', hash: 'sha256', saltLength: 32 });
    const ours = encodeSignatureAlgorithm('rsa-pss', 'sha256');
    // A.4.3 without "a303 0201 01" (trailerField), so the two outer lengths are 5 shorter: 46 -> 41, 39 -> 34
    expect(toHex(ours)).toBe(toHex(hex('3041 0609 2a86 4886 f70d 0101 0a30 34a0 0f30 0d06 0960 8648 0165 0304 0201 0500 a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500 a203 0201 20')));
    expect(unwrap(decodeSignatureAlgorithm(ours))).toMatchObject({ family: 'rsa-pss', hash: 'sha256', saltLength: 32 });
  });

  it('refuses SHA-1 (A.1.1, A.3.1, A.4.1 empty and A.4.2 default PSS parameters), non-DER and unknown algorithms', () => {
    for (const bytes of [
      '300d 0609 2a86 4886 f70d 0101 0505 00', // A.1.1
      '3009 0607 2a86 48ce 3d04 01', // A.3.1
      '300d 0609 2a86 4886 f70d 0101 0a30 00', // A.4.1
      '303e 0609 2a86 4886 f70d 0101 0a30 31a0 0b30 0906 052b 0e03 021a 0500 a118 3016 0609 2a86 4886 f70d 0101 0830 0906 052b 0e03 021a 0500 a203 0201 14a3 0302 0101', // A.4.2
      '3009 0607 2a86 48ce 3804 03', // A.2.1 dsa-with-sha1
      '300c 0608 2a86 48ce 3d04 0302 0500', // ECDSA with NULL parameters
      '3081 0a06 082a 8648 ce3d 0403 02', // BER long-form length
      '300a 0608 2a86 48ce 3d04 0302 00', // trailing octet
      '', '30', '3000',
    ]) {
      expect(decodeSignatureAlgorithm(hex(bytes)).ok, bytes).toBe(false);
    }
    // RFC 4055 §5: PKCS#1 v1.5 parameters NULL or absent
    expect(decodeSignatureAlgorithm(hex('300b 0609 2a86 4886 f70d 0101 0b')).ok).toBe(true);
  });
});

describe('RFC 7427 signatures with P-384 and RSA keys', () => {
  let rsa: { privateKey: KeyObject; publicKey: KeyObject };
  let rsaPss: { privateKey: KeyObject; publicKey: KeyObject };
  let p384: { privateKey: KeyObject; publicKey: KeyObject };
  const octets = new Uint8Array(randomBytes(300));

  beforeAll(() => {
    rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    rsaPss = generateKeyPairSync('rsa-pss', { modulusLength: 2048, hashAlgorithm: 'sha256', mgf1HashAlgorithm: 'sha256', saltLength: 32 });
    p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  });

  const signer = (k: KeyObject, rsaPadding?: 'pkcs1' | 'pss'): SigningKey => unwrap(signingKeyFromPrivateKey(k, rsaPadding ? { rsaPadding } : {}));
  const verifier = (k: KeyObject): VerifyKey => unwrap(verifyKeyFromPublicKey(k));

  it('knows the key kinds and picks hashes the peer announced', () => {
    expect(signer(p384.privateKey).kind).toBe('ecdsa-p384');
    expect(signer(rsa.privateKey)).toMatchObject({ kind: 'rsa', rsaPadding: 'pkcs1' });
    expect(signer(rsaPss.privateKey).kind).toBe('rsa-pss');
    expect(signatureHashFor('ecdsa-p384', [SHA2_256, SHA2_384, SHA2_512])).toBe(SHA2_384);
    expect(signatureHashFor('ecdsa-p384', [SHA2_256])).toBe(SHA2_256);
    expect(signatureHashFor('rsa', [IDENTITY, SHA2_512])).toBe(SHA2_512);
    expect(signatureHashFor('rsa-pss', [SHA1, IDENTITY])).toBeUndefined();
    // RSA under 2048 bits is refused (RFC 8247 §3.2)
    expect(signingKeyFromPrivateKey(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey).ok).toBe(false);
    expect(signingKeyFromPrivateKey(rsa.publicKey).ok).toBe(false);
  });

  it.each([
    ['ECDSA P-384', () => signer(p384.privateKey), () => p384.publicKey, [SHA2_256, SHA2_384, SHA2_512]],
    ['RSA PKCS#1 v1.5', () => signer(rsa.privateKey, 'pkcs1'), () => rsa.publicKey, [SHA2_256, SHA2_384, SHA2_512]],
    ['RSA with RSASSA-PSS', () => signer(rsa.privateKey, 'pss'), () => rsa.publicKey, [SHA2_256, SHA2_384, SHA2_512]],
    ['an RSASSA-PSS key', () => signer(rsaPss.privateKey), () => rsaPss.publicKey, [SHA2_256]],
  ] as const)('%s: sign, verify, and node:crypto agrees', (_name, makeSigner, publicKey, hashes) => {
    const key = makeSigner();
    for (const hash of hashes) {
      const auth = signDigitalSignature(key, octets, hash);
      expect(verifyDigitalSignature(verifier(publicKey()), auth, octets)).toBe(true);
      const other = octets.slice();
      other[7]! ^= 1;
      expect(verifyDigitalSignature(verifier(publicKey()), auth, other)).toBe(false);
      const algLength = auth[0]!;
      const alg = unwrap(decodeSignatureAlgorithm(auth.subarray(1, 1 + algLength)));
      const signature = auth.subarray(1 + algLength);
      // node:crypto, told the parameters directly, verifies what we signed
      const options = alg.family === 'ecdsa' ? { key: publicKey(), dsaEncoding: 'der' as const }
        : alg.family === 'rsa-pss' ? { key: publicKey(), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.saltLength! }
        : { key: publicKey(), padding: constants.RSA_PKCS1_PADDING };
      expect(verify(alg.hash, octets, options, signature)).toBe(true);
    }
  });

  it('a signature made by node:crypto verifies through the AUTH payload', () => {
    const pss = sign('sha384', octets, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
    expect(verifyDigitalSignature(verifier(rsa.publicKey), authData(encodeSignatureAlgorithm('rsa-pss', 'sha384'), pss), octets)).toBe(true);
    const ec = sign('sha512', octets, { key: p384.privateKey, dsaEncoding: 'der' });
    expect(verifyDigitalSignature(verifier(p384.publicKey), authData(encodeSignatureAlgorithm('ecdsa', 'sha512'), ec), octets)).toBe(true);
  });

  it('an algorithm that does not fit the key is refused, never thrown', () => {
    const pkcs1 = signDigitalSignature(signer(rsa.privateKey, 'pkcs1'), octets, SHA2_256);
    const pss = signDigitalSignature(signer(rsa.privateKey, 'pss'), octets, SHA2_256);
    expect(verifyDigitalSignature(verifier(p384.publicKey), pkcs1, octets)).toBe(false);
    // ECDSA on curves other than the NIST ones is refused
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const k1Sig = sign('sha256', octets, { key: k1.privateKey, dsaEncoding: 'der' });
    expect(verifyWithAlgorithm({ family: 'ecdsa', hash: 'sha256', name: 'ecdsa-with-SHA256' }, k1.publicKey, octets, k1Sig)).toBe(false);
    expect(verifyKeyFromPublicKey(k1.publicKey).ok).toBe(false);
    // an RSASSA-PSS key makes PSS signatures only (RFC 4055 §1.2)
    const pssKeyPkcs1 = sign('sha256', octets, { key: rsaPss.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    expect(verifyDigitalSignature(verifier(rsaPss.publicKey), authData(encodeSignatureAlgorithm('rsa-pkcs1', 'sha256'), pssKeyPkcs1), octets)).toBe(false);
    // the padding named is the padding checked
    const swapped = Uint8Array.of(...pss.subarray(0, 1 + pss[0]!), ...pkcs1.subarray(1 + pkcs1[0]!));
    expect(verifyDigitalSignature(verifier(rsa.publicKey), swapped, octets)).toBe(false);
    // RFC 7427 A.4.3's encoding, with the explicit trailerField, carries our PSS signature as well
    const a43 = hex('3046 0609 2a86 4886 f70d 0101 0a30 39a0 0f30 0d06 0960 8648 0165 0304 0201 0500 a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500 a203 0201 20a3 0302 0101');
    expect(verifyDigitalSignature(verifier(rsa.publicKey), authData(a43, pss.subarray(1 + pss[0]!)), octets)).toBe(true);
    for (const junk of [new Uint8Array(0), Uint8Array.of(200), pss.subarray(0, 20), Uint8Array.of(3, 0x30, 0x01, 0x05, 1, 2)]) {
      expect(verifyDigitalSignature(verifier(rsa.publicKey), junk, octets)).toBe(false);
    }
  });
});

interface WycheproofTest { tcId: number; msg: string; sig: string; result: 'valid' | 'invalid' | 'acceptable'; flags: string[] }
interface WycheproofFile { numberOfTests: number; testGroups: { publicKeyDer: string; sLen?: number; tests: WycheproofTest[] }[] }

describe('Wycheproof: ECDSA P-384, RSA PKCS#1 v1.5 and RSASSA-PSS verification', () => {
  it.each([
    ['ecdsa_secp384r1_sha384_test.json', (): SignatureAlgorithm => ({ family: 'ecdsa', hash: 'sha384', name: 'ecdsa-with-SHA384' }), 100],
    ['rsa_signature_2048_sha256_test.json', () => ({ family: 'rsa-pkcs1', hash: 'sha256', name: 'sha256WithRSAEncryption' }), 5],
    ['rsa_signature_3072_sha256_test.json', () => ({ family: 'rsa-pkcs1', hash: 'sha256', name: 'sha256WithRSAEncryption' }), 5],
    ['rsa_pss_2048_sha256_mgf1_32_test.json', () => ({ family: 'rsa-pss', hash: 'sha256', saltLength: 32, name: 'pss' }), 50],
    ['rsa_pss_3072_sha256_mgf1_32_test.json', () => ({ family: 'rsa-pss', hash: 'sha256', saltLength: 32, name: 'pss' }), 50],
  ] as const)('%s', (file, algorithm, minValid) => {
    const data = loadVectors<WycheproofFile>(file);
    const alg = algorithm() as SignatureAlgorithm;
    let count = 0, valid = 0;
    for (const g of data.testGroups) {
      const publicKey = createPublicKey({ key: Buffer.from(g.publicKeyDer, 'hex'), format: 'der', type: 'spki' });
      const key = verifier(publicKey);
      const algId = encodeSignatureAlgorithm(alg.family, alg.hash);
      for (const t of g.tests) {
        count++;
        const msg = hex(t.msg), sig = hex(t.sig);
        const low = verifyWithAlgorithm(alg, publicKey, msg, sig);
        // the same through the AUTH payload (our PSS encoding says salt 32, the vectors' sLen)
        const viaAuth = verifyDigitalSignature(key, authData(algId, sig), msg);
        expect(viaAuth, `tc ${t.tcId}`).toBe(low);
        if (t.result !== 'acceptable') expect(low, `tc ${t.tcId} ${t.flags.join(',')}`).toBe(t.result === 'valid');
        if (low) valid++;
      }
    }
    expect(count).toBe(data.numberOfTests);
    expect(valid).toBeGreaterThanOrEqual(minValid);
  });

  function verifier(k: KeyObject): VerifyKey {
    return unwrap(verifyKeyFromPublicKey(k));
  }
});
