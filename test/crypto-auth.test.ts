import { VECTORS_DIR } from './support/vectors.js';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHmac, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import {
  decodeSignatureHashes, encodeSignatureHashes, loadSigningKey, loadVerifyKey, pskAuth, signatureHashFor, signDigitalSignature,
  signedOctets, SUPPORTED_SIGNATURE_HASHES, verifyDigitalSignature, verifyEcdsaP256Sha256, verifyEd25519, verifyKeyFromCertificate,
  verifyPskAuth, type VerifyKey,
} from '../control/crypto/auth.js';
import { HashAlgorithm, PrfId } from '../control/wire/constants.js';

const VECTORS = VECTORS_DIR;
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed + i * 11) & 0xff);
const H = (hash: string, key: Uint8Array, ...data: Uint8Array[]): Uint8Array => {
  const m = createHmac(hash, key);
  for (const d of data) m.update(d);
  return new Uint8Array(m.digest());
};

// Self-signed test certificates made with `openssl req -x509` (test data only).
const P256_CERT = `-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUIOhO5J0dsCsGeKgSu24lHwTf3MswCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKZ3cuZXhhbXBsZTAgFw0yNjExMjIxNzAwMThaGA8yMTI2MTAy
OTE3MDAxOFowFTETMBEGA1UEAwwKZ3cuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABNJhqsPkpIui/B4j+hh+RDxaF7tZv3ooXyped4xZrZaTxParbbSK
ymKocQaVW/BFShDL4SXIsQ+1EL5Vw/H20oujUzBRMB0GA1UdDgQWBBS4c23Tw2Bp
GUGr8A2Bug3UeIwhYzAfBgNVHSMEGDAWgBS4c23Tw2BpGUGr8A2Bug3UeIwhYzAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIH0NrlRzdFGhCwLmgqMs
B4gZFfNexZ0hZuw529rcbDHpAiEAzUtR3Km4KDi/1+xOhEnaMyAwTpldta+nFGzK
oOTiuB4=
-----END CERTIFICATE-----`;
const P256_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYl/8ieDV7/m0Ro/1
JQQdd7P3fZb3+ebLbums+oD53qehRANCAATSYarD5KSLovweI/oYfkQ8Whe7Wb96
KF8qXneMWa2Wk8T2q220ispiqHEGlVvwRUoQy+ElyLEPtRC+VcPx9tKL
-----END PRIVATE KEY-----`;
const ED25519_CERT = `-----BEGIN CERTIFICATE-----
MIIBRDCB96ADAgECAhRLIFcBry8NG98uYBIWxJJVnUjl0DAFBgMrZXAwFzEVMBMG
A1UEAwwMcGVlci5leGFtcGxlMCAXDTI2MTEyMjE3MDAxOFoYDzIxMjYxMDI5MTcw
MDE4WjAXMRUwEwYDVQQDDAxwZWVyLmV4YW1wbGUwKjAFBgMrZXADIQDqb/b3tfPA
JGLRJ/nt0mYGHDi5J/nH8VVehAow4oguQ6NTMFEwHQYDVR0OBBYEFBqUdGsp7HLJ
wpYOJh5DwUDWFqIYMB8GA1UdIwQYMBaAFBqUdGsp7HLJwpYOJh5DwUDWFqIYMA8G
A1UdEwEB/wQFMAMBAf8wBQYDK2VwA0EASvpQy6FurWLpg9pmx9J7xoNEE6jqjFPq
8cxBrH5P4bi5Ig4xRfXlno2A4rt8vAo+ACiWgd4H5jn5B5x9Wzh+BA==
-----END CERTIFICATE-----`;
const ED25519_KEY = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIBDeiVcEg7hhOzi5+BjNLMLwb7hC+zOnJJV5llJ20ie4
-----END PRIVATE KEY-----`;

describe('signed octets and shared-key MIC (RFC 7296 §2.15)', () => {
  const realMessage = bytes(300, 1), peerNonce = bytes(32, 2), skP = bytes(32, 3);
  const restOfId = Uint8Array.from([2, 0, 0, 0, ...new TextEncoder().encode('gw.example')]);

  it('octets = RealMessage | peer NonceData | prf(SK_p, RestOfIDPayload)', () => {
    const octets = signedOctets(PrfId.HMAC_SHA2_256, realMessage, peerNonce, skP, restOfId);
    expect(toHex(octets)).toBe(toHex(realMessage) + toHex(peerNonce) + toHex(H('sha256', skP, restOfId)));
    expect(signedOctets(PrfId.HMAC_SHA2_512, realMessage, peerNonce, skP, restOfId).length).toBe(300 + 32 + 64);
  });

  it.each([
    ['sha256', PrfId.HMAC_SHA2_256],
    ['sha384', PrfId.HMAC_SHA2_384],
    ['sha512', PrfId.HMAC_SHA2_512],
  ] as const)('PSK AUTH = prf(prf(psk, "Key Pad for IKEv2"), octets) with %s', (hash, prfId) => {
    const psk = new TextEncoder().encode('correct horse battery staple');
    const octets = signedOctets(prfId, realMessage, peerNonce, skP, restOfId);
    const keyPad = Buffer.from('4b65792050616420666f7220494b457632', 'hex'); // "Key Pad for IKEv2", 17 octets
    const expected = H(hash, H(hash, psk, keyPad), octets);
    const auth = pskAuth(prfId, psk, octets);
    expect(toHex(auth)).toBe(toHex(expected));
    expect(verifyPskAuth(prfId, psk, octets, expected)).toBe(true);
    // wrong key, other octets, altered or truncated data
    expect(verifyPskAuth(prfId, new TextEncoder().encode('wrong'), octets, expected)).toBe(false);
    const other = octets.slice();
    other[10]! ^= 1;
    expect(verifyPskAuth(prfId, psk, other, expected)).toBe(false);
    const altered = expected.slice();
    altered[altered.length - 1]! ^= 0x80;
    expect(verifyPskAuth(prfId, psk, octets, altered)).toBe(false);
    expect(verifyPskAuth(prfId, psk, octets, expected.subarray(0, 16))).toBe(false);
    expect(verifyPskAuth(prfId, psk, octets, new Uint8Array(0))).toBe(false);
  });
});

function freshPem(kind: 'ed25519' | 'p256' | 'p256-sec1'): { priv: string; pub: string } {
  const { privateKey, publicKey } = kind === 'ed25519'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    priv: kind === 'p256-sec1'
      ? privateKey.export({ type: 'sec1', format: 'pem' }) as string
      : privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    pub: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

describe('Digital Signature AUTH (RFC 7427 method 14)', () => {
  const octets = bytes(500, 7);

  it.each(['ed25519', 'p256', 'p256-sec1'] as const)('%s: fresh PEM keys sign and verify; tampering fails', (kind) => {
    const pem = freshPem(kind);
    const signer = loadSigningKey(pem.priv);
    const verifier = loadVerifyKey(pem.pub);
    expect(signer.kind).toBe(kind === 'ed25519' ? 'ed25519' : 'ecdsa-p256');
    expect(verifier.kind).toBe(signer.kind);
    const auth = signDigitalSignature(signer, octets);
    // ASN.1 length | AlgorithmIdentifier | signature
    if (kind === 'ed25519') {
      expect(toHex(auth.subarray(0, 8))).toBe('07' + '3005060' + '32b6570');
      expect(auth.length).toBe(8 + 64);
    } else {
      expect(toHex(auth.subarray(0, 13))).toBe('0c' + '300a06082a8648ce3d040302');
      expect(auth[13]).toBe(0x30); // DER SEQUENCE (Ecdsa-Sig-Value)
      expect(verifyEcdsaP256Sha256(verifier.publicKey, octets, auth.subarray(13), 'der')).toBe(true);
    }
    expect(verifyDigitalSignature(verifier, auth, octets)).toBe(true);
    const tampered = octets.slice();
    tampered[123]! ^= 4;
    expect(verifyDigitalSignature(verifier, auth, tampered)).toBe(false);
    const badSig = auth.slice();
    badSig[badSig.length - 3]! ^= 1;
    expect(verifyDigitalSignature(verifier, badSig, octets)).toBe(false);
    // another key of the same kind
    expect(verifyDigitalSignature(loadVerifyKey(freshPem(kind).pub), auth, octets)).toBe(false);
  });

  it('an AlgorithmIdentifier that does not match the key kind fails', () => {
    const ed = freshPem('ed25519'), ec = freshPem('p256');
    const edAuth = signDigitalSignature(loadSigningKey(ed.priv), octets);
    const ecAuth = signDigitalSignature(loadSigningKey(ec.priv), octets);
    expect(verifyDigitalSignature(loadVerifyKey(ec.pub), edAuth, octets)).toBe(false);
    expect(verifyDigitalSignature(loadVerifyKey(ed.pub), ecAuth, octets)).toBe(false);
    // a valid Ed25519 signature relabelled as ECDSA, and the reverse
    const relabelled = new Uint8Array([...ecAuth.subarray(0, 13), ...edAuth.subarray(8)]);
    expect(verifyDigitalSignature(loadVerifyKey(ec.pub), relabelled, octets)).toBe(false);
    const relabelled2 = new Uint8Array([...edAuth.subarray(0, 8), ...ecAuth.subarray(13)]);
    expect(verifyDigitalSignature(loadVerifyKey(ed.pub), relabelled2, octets)).toBe(false);
    // the Ed25519 verifier refuses a P-256 KeyObject and vice versa
    expect(verifyEd25519(loadVerifyKey(ec.pub).publicKey, octets, edAuth.subarray(8))).toBe(false);
    expect(verifyEcdsaP256Sha256(loadVerifyKey(ed.pub).publicKey, octets, ecAuth.subarray(13), 'der')).toBe(false);
  });

  it('accepts ecdsa-with-SHA384 and SHA512 from a P-256 peer', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { sign } = await import('node:crypto');
    const verifier: VerifyKey = { kind: 'ecdsa-p256', publicKey };
    for (const [hash, last] of [['sha384', '03'], ['sha512', '04']] as const) {
      const sig = sign(hash, octets, { key: privateKey, dsaEncoding: 'der' });
      const auth = new Uint8Array([12, ...hex('300a06082a8648ce3d0403' + last), ...sig]);
      expect(verifyDigitalSignature(verifier, auth, octets)).toBe(true);
      // labelled with the wrong hash
      const wrong = auth.slice();
      wrong[12] = last === '03' ? 4 : 3;
      expect(verifyDigitalSignature(verifier, wrong, octets)).toBe(false);
    }
  });

  it('garbage AUTH data returns false without throwing', () => {
    const ed = loadVerifyKey(freshPem('ed25519').pub), ec = loadVerifyKey(freshPem('p256').pub);
    const garbage = [
      new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(7), Uint8Array.of(255, 1, 2, 3), Uint8Array.of(7, ...hex('30050603'), 0, 0),
      Uint8Array.of(7, ...hex('3005060' + '32b6570')), // algorithm but no signature
      Uint8Array.of(7, ...hex('3005060' + '32b6570'), 1, 2, 3), // short signature
      Uint8Array.of(12, ...hex('300a06082a8648ce3d040302'), 0x30, 0x02, 0x02, 0x00), // broken DER
      bytes(200, 9),
    ];
    for (const g of garbage) {
      expect(verifyDigitalSignature(ed, g, octets)).toBe(false);
      expect(verifyDigitalSignature(ec, g, octets)).toBe(false);
    }
  });
});

describe('key loading', () => {
  it('loads PKCS#8 and certificate PEMs made by openssl; the certificate key verifies signatures of its private key', () => {
    for (const [cert, key, kind] of [[P256_CERT, P256_KEY, 'ecdsa-p256'], [ED25519_CERT, ED25519_KEY, 'ed25519']] as const) {
      const signer = loadSigningKey(Buffer.from(key));
      const verifier = loadVerifyKey(cert);
      expect([signer.kind, verifier.kind]).toEqual([kind, kind]);
      const octets = bytes(64, 1);
      expect(verifyDigitalSignature(verifier, signDigitalSignature(signer, octets), octets)).toBe(true);
    }
  });

  it('extracts the key of a DER certificate from a CERT payload, and never throws on junk', () => {
    const der = (pem: string): Uint8Array => new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
    const r = verifyKeyFromCertificate(der(ED25519_CERT));
    expect(r.ok && r.value.kind).toBe('ed25519');
    const signer = loadSigningKey(ED25519_KEY);
    const octets = bytes(10, 2);
    expect(r.ok && verifyDigitalSignature(r.value, signDigitalSignature(signer, octets), octets)).toBe(true);
    expect(verifyKeyFromCertificate(bytes(100, 1)).ok).toBe(false);
    expect(verifyKeyFromCertificate(der(P256_CERT).subarray(0, 200)).ok).toBe(false);
    expect(verifyKeyFromCertificate(new Uint8Array(0)).ok).toBe(false);
  });

  it('refuses other key types and malformed PEM with a clear error', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const pem = (k: KeyObject, type: 'pkcs8' | 'spki'): string => k.export({ type, format: 'pem' } as never) as string;
    expect(() => loadSigningKey(pem(rsa.privateKey, 'pkcs8'))).toThrow(/unsupported private key type rsa: use Ed25519 or ECDSA P-256/);
    expect(() => loadSigningKey(pem(p384.privateKey, 'pkcs8'))).toThrow(/ec \(secp384r1\)/);
    expect(() => loadVerifyKey(pem(rsa.publicKey, 'spki'))).toThrow(/unsupported public key type rsa/);
    expect(() => loadSigningKey('not a key')).toThrow(/cannot read private key PEM/);
    expect(() => loadVerifyKey('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')).toThrow(/cannot read public key or certificate/);
  });
});

describe('SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4)', () => {
  it('announces SHA2-256/384/512 and Identity, and codes 16-bit lists', () => {
    expect(SUPPORTED_SIGNATURE_HASHES).toEqual([2, 3, 4, 5]);
    expect(toHex(encodeSignatureHashes(SUPPORTED_SIGNATURE_HASHES))).toBe('0002000300040005');
    expect(decodeSignatureHashes(hex('0002000300040005'))).toEqual([2, 3, 4, 5]);
    expect(decodeSignatureHashes(hex('0001ff0007'))).toEqual([1, 0xff00]); // odd trailing octet ignored
    expect(decodeSignatureHashes(new Uint8Array(0))).toEqual([]);
    expect(() => encodeSignatureHashes([65536])).toThrow(RangeError);
  });

  it('signs only with a hash the peer announced (RFC 7427 §4, RFC 8420 §2)', () => {
    const { SHA1, SHA2_256, SHA2_384, SHA2_512, IDENTITY } = HashAlgorithm;
    expect(signatureHashFor('ed25519', SUPPORTED_SIGNATURE_HASHES)).toBe(IDENTITY);
    expect(signatureHashFor('ed25519', [SHA2_256, SHA2_512])).toBeUndefined();
    expect(signatureHashFor('ed25519', [])).toBeUndefined();
    expect(signatureHashFor('ecdsa-p256', SUPPORTED_SIGNATURE_HASHES)).toBe(SHA2_256);
    expect(signatureHashFor('ecdsa-p256', [IDENTITY, SHA2_512, SHA2_384])).toBe(SHA2_384);
    expect(signatureHashFor('ecdsa-p256', [SHA2_512])).toBe(SHA2_512);
    expect(signatureHashFor('ecdsa-p256', [SHA1, IDENTITY])).toBeUndefined();
  });

  it('an ECDSA signature names the hash it was made with, and verifies with it alone', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'sec1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const signer = loadSigningKey(privateKey);
    const verifier = loadVerifyKey(publicKey);
    const octets = randomBytes(200);
    // RFC 7427 Appendix A.3.2-A.3.4: ecdsa-with-SHA256/384/512 end in 02/03/04.
    for (const [hash, oidTail] of [[HashAlgorithm.SHA2_256, 0x02], [HashAlgorithm.SHA2_384, 0x03], [HashAlgorithm.SHA2_512, 0x04]] as const) {
      const auth = signDigitalSignature(signer, octets, hash);
      expect(auth[0]).toBe(12);
      expect(auth[12]).toBe(oidTail);
      expect(verifyDigitalSignature(verifier, auth, octets)).toBe(true);
      // The same signature under another hash's identifier does not verify.
      const relabelled = Uint8Array.from(auth);
      relabelled[12] = oidTail === 0x02 ? 0x03 : 0x02;
      expect(verifyDigitalSignature(verifier, relabelled, octets)).toBe(false);
    }
    expect(() => signDigitalSignature(signer, octets, HashAlgorithm.SHA1)).toThrow(RangeError);
    const ed = generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    expect(() => signDigitalSignature(loadSigningKey(ed.privateKey), octets, HashAlgorithm.SHA2_256)).toThrow(RangeError);
  });
});

interface SigTest { tcId: number; msg: string; sig: string; result: 'valid' | 'invalid' | 'acceptable'; flags: string[] }
interface SigFile { numberOfTests: number; testGroups: { publicKey: { pk?: string; uncompressed?: string }; tests: SigTest[] }[] }
const loadSig = (name: string): SigFile => JSON.parse(readFileSync(join(VECTORS, name), 'utf8')) as SigFile;

describe('Wycheproof signature verification', () => {
  it.each([
    ['ed25519_test.json', (pk: Uint8Array, m: Uint8Array, s: Uint8Array) => verifyEd25519(pk, m, s), 'pk'],
    ['ecdsa_secp256r1_sha256_test.json', (pk: Uint8Array, m: Uint8Array, s: Uint8Array) => verifyEcdsaP256Sha256(pk, m, s, 'der'), 'uncompressed'],
    ['ecdsa_secp256r1_sha256_p1363_test.json', (pk: Uint8Array, m: Uint8Array, s: Uint8Array) => verifyEcdsaP256Sha256(pk, m, s, 'p1363'), 'uncompressed'],
  ] as const)('%s', (file, verifyFn, field) => {
    const data = loadSig(file);
    let count = 0, valid = 0;
    for (const g of data.testGroups) {
      const pk = hex(g.publicKey[field]!);
      for (const t of g.tests) {
        count++;
        expect(t.result, `tc ${t.tcId}`).not.toBe('acceptable');
        const r = verifyFn(pk, hex(t.msg), hex(t.sig));
        expect(r, `tc ${t.tcId} ${t.flags.join(',')}`).toBe(t.result === 'valid');
        if (r) valid++;
      }
    }
    expect(count).toBe(data.numberOfTests);
    expect(valid).toBeGreaterThan(80);
  });

  it('raw public keys of the wrong size are refused, not thrown', () => {
    expect(verifyEd25519(new Uint8Array(31), bytes(3, 1), new Uint8Array(64))).toBe(false);
    expect(verifyEcdsaP256Sha256(new Uint8Array(64), bytes(3, 1), new Uint8Array(64), 'p1363')).toBe(false);
    // 65 bytes but not on the curve
    expect(verifyEcdsaP256Sha256(Uint8Array.of(4, ...new Uint8Array(64).fill(1)), bytes(3, 1), new Uint8Array(64), 'p1363')).toBe(false);
  });
});
