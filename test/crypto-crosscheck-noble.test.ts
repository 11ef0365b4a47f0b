// node:crypto (OpenSSL) and ikeclone's own key exchange and signatures,
// checked against an independent implementation, @noble/curves (pure
// JavaScript): random keys, both directions, bit for bit. The Wycheproof
// tests pin known answers; these pin agreement on keys nobody chose.
//
// X25519 (RFC 7748; group 31, RFC 8031), P-256 ECDH (group 19, RFC 5903 §7:
// the shared secret is the x coordinate), Ed25519 (RFC 8032; AUTH method 14,
// RFC 8420) and ECDSA P-256 with SHA-256 (RFC 7427 AUTH data).
import { describe, expect, it } from 'vitest';
import {
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { createKeyExchange } from '../control/crypto/keyexchange.js';
import {
  signDigitalSignature,
  verifyDigitalSignature,
  verifyEcdsaP256Sha256,
  verifyEd25519,
} from '../control/crypto/auth.js';
import { HashAlgorithm, KeGroup } from '../control/wire/constants.js';

/** Random keys per check: a slip in encoding or padding (a leading zero byte turns up once in 256 keys) shows within a few runs. */
const ROUNDS = 24;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const fromB64url = (s: string | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? '', 'base64url'));

/** A random message of 1 to 256 bytes. */
function randomMessage(): Uint8Array {
  return new Uint8Array(randomBytes(1 + randomBytes(1)[0]!));
}

function sharedOrThrow(result: { ok: true; value: Uint8Array } | { ok: false; error: string }): Uint8Array {
  if (!result.ok) throw new Error(`key exchange refused a valid public value: ${result.error}`);
  return result.value;
}

// --- X25519 -----------------------------------------------------------------

/** An OpenSSL X25519 key pair as raw bytes (RFC 7748 scalar and u-coordinate). */
function nodeX25519(): { privateKey: KeyObject; secret: Uint8Array; publicKey: Uint8Array } {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return { privateKey, secret: fromB64url(jwk.d), publicKey: fromB64url(jwk.x) };
}

function x25519PublicKeyObject(u: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64url(u) }, format: 'jwk' });
}

describe('X25519: node:crypto and @noble/curves agree', () => {
  it('on public keys and shared secrets, both ways', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const a = nodeX25519();
      const b = x25519.keygen();
      expect(hex(x25519.getPublicKey(a.secret))).toBe(hex(a.publicKey));
      const nodeShared = new Uint8Array(diffieHellman({ privateKey: a.privateKey, publicKey: x25519PublicKeyObject(b.publicKey) }));
      expect(hex(x25519.getSharedSecret(b.secretKey, a.publicKey))).toBe(hex(nodeShared));
      expect(hex(x25519.getSharedSecret(a.secret, b.publicKey))).toBe(hex(nodeShared));
    }
  });
});

describe('X25519 (group 31): the key exchange and @noble/curves agree', () => {
  it('our public value is noble\'s for the same scalar, and both compute the same g^ir', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const ours = x25519.keygen();
      const peer = x25519.keygen();
      const ke = createKeyExchange(KeGroup.CURVE25519, { privateKey: ours.secretKey.slice() });
      expect(hex(ke.publicKey)).toBe(hex(ours.publicKey));
      const shared = sharedOrThrow(ke.computeSharedSecret(peer.publicKey));
      expect(hex(shared)).toBe(hex(x25519.getSharedSecret(peer.secretKey, ke.publicKey)));
      ke.destroy();
    }
  });

  it('with a key drawn by the system random source, too', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const ke = createKeyExchange(KeGroup.CURVE25519);
      const peer = x25519.keygen();
      const shared = sharedOrThrow(ke.computeSharedSecret(peer.publicKey));
      expect(hex(shared)).toBe(hex(x25519.getSharedSecret(peer.secretKey, ke.publicKey)));
      ke.destroy();
    }
  });
});

// --- P-256 ECDH ---------------------------------------------------------------

describe('P-256 ECDH: node:crypto and @noble/curves agree', () => {
  it('on public points and the x coordinate of the shared point, both ways', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const a = createECDH('prime256v1');
      a.generateKeys();
      const b = p256.keygen();
      const bPoint = p256.getPublicKey(b.secretKey, false);
      // node drops leading zero bytes of the scalar; noble takes exactly 32.
      const scalar = new Uint8Array(32);
      const nodeScalar = a.getPrivateKey();
      scalar.set(nodeScalar, 32 - nodeScalar.length);
      expect(hex(p256.getPublicKey(scalar, false))).toBe(hex(a.getPublicKey()));
      const nodeX = new Uint8Array(a.computeSecret(bPoint));
      // noble returns the shared point compressed: 0x02/0x03 | x.
      expect(hex(p256.getSharedSecret(b.secretKey, a.getPublicKey()).subarray(1))).toBe(hex(nodeX));
    }
  });
});

describe('P-256 (group 19): the key exchange and @noble/curves agree', () => {
  it('KE data is x | y without the SEC1 prefix, and g^ir is the shared x coordinate (RFC 5903 §7)', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const ours = p256.keygen();
      const peer = p256.keygen();
      const ke = createKeyExchange(KeGroup.ECP_256, { privateKey: ours.secretKey.slice() });
      expect(hex(ke.publicKey)).toBe(hex(p256.getPublicKey(ours.secretKey, false).subarray(1)));
      const shared = sharedOrThrow(ke.computeSharedSecret(p256.getPublicKey(peer.secretKey, false).subarray(1)));
      const peerPoint = new Uint8Array([0x04, ...ke.publicKey]);
      expect(shared.length).toBe(32);
      expect(hex(shared)).toBe(hex(p256.getSharedSecret(peer.secretKey, peerPoint).subarray(1)));
      ke.destroy();
    }
  });
});

// --- Ed25519 ------------------------------------------------------------------

function ed25519KeyObjects(secret: Uint8Array, publicKey: Uint8Array): { privateKey: KeyObject; publicKey: KeyObject } {
  const jwk = { kty: 'OKP', crv: 'Ed25519', d: b64url(secret), x: b64url(publicKey) };
  return {
    privateKey: createPrivateKey({ key: jwk, format: 'jwk' }),
    publicKey: createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' }),
  };
}

/** AUTH data of method 14 is ASN.1 length | AlgorithmIdentifier | signature (RFC 7427 §3). */
function signatureOf(authData: Uint8Array): Uint8Array {
  return authData.subarray(1 + authData[0]!);
}

describe('Ed25519: node:crypto and @noble/curves agree', () => {
  it('on public keys and signatures (deterministic, RFC 8032 §5.1.6), and each verifies the other\'s', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const jwk = privateKey.export({ format: 'jwk' });
      const secret = fromB64url(jwk.d);
      const rawPublic = fromB64url(jwk.x);
      expect(hex(ed25519.getPublicKey(secret))).toBe(hex(rawPublic));
      const msg = randomMessage();
      const nodeSig = new Uint8Array(sign(null, msg, privateKey));
      const nobleSig = ed25519.sign(msg, secret);
      expect(hex(nobleSig)).toBe(hex(nodeSig));
      expect(ed25519.verify(nodeSig, msg, rawPublic)).toBe(true);
      expect(verify(null, msg, publicKey, nobleSig)).toBe(true);
      const other = new Uint8Array(msg);
      other[0] ^= 1;
      expect(ed25519.verify(nodeSig, other, rawPublic)).toBe(false);
      expect(verify(null, other, publicKey, nobleSig)).toBe(false);
    }
  });
});

describe('Ed25519 AUTH (RFC 8420): ikeclone and @noble/curves agree', () => {
  it('our AUTH signature is noble\'s, noble\'s signature passes our check, and a changed octet fails both', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const keys = ed25519.keygen();
      const objects = ed25519KeyObjects(keys.secretKey, keys.publicKey);
      const octets = randomMessage();
      const authData = signDigitalSignature({ kind: 'ed25519', privateKey: objects.privateKey }, octets, HashAlgorithm.IDENTITY);
      const nobleSig = ed25519.sign(octets, keys.secretKey);
      expect(hex(signatureOf(authData))).toBe(hex(nobleSig));
      expect(ed25519.verify(signatureOf(authData), octets, keys.publicKey)).toBe(true);
      expect(verifyEd25519(keys.publicKey, octets, nobleSig)).toBe(true);
      expect(verifyDigitalSignature({ kind: 'ed25519', publicKey: objects.publicKey }, authData, octets)).toBe(true);
      const changed = new Uint8Array(octets);
      changed[changed.length - 1] ^= 0x80;
      expect(verifyEd25519(keys.publicKey, changed, nobleSig)).toBe(false);
      expect(ed25519.verify(signatureOf(authData), changed, keys.publicKey)).toBe(false);
    }
  });
});

// --- ECDSA P-256 AUTH -----------------------------------------------------------

describe('ECDSA P-256 with SHA-256 AUTH (RFC 7427): ikeclone and @noble/curves agree', () => {
  it('our DER signature verifies with noble, noble\'s verifies with ours, and a changed octet fails both', () => {
    for (let i = 0; i < ROUNDS; i++) {
      const keys = p256.keygen();
      const point = p256.getPublicKey(keys.secretKey, false);
      const jwk = {
        kty: 'EC', crv: 'P-256',
        x: b64url(point.subarray(1, 33)), y: b64url(point.subarray(33)), d: b64url(keys.secretKey),
      };
      const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
      const octets = randomMessage();
      const authData = signDigitalSignature({ kind: 'ecdsa-p256', privateKey }, octets, HashAlgorithm.SHA2_256);
      // OpenSSL does not normalise s to the lower half; ECDSA allows either.
      expect(p256.verify(signatureOf(authData), octets, point, { format: 'der', lowS: false })).toBe(true);
      const nobleSig = p256.sign(octets, keys.secretKey); // r | s, SHA-256 of the octets
      expect(verifyEcdsaP256Sha256(point, octets, nobleSig, 'p1363')).toBe(true);
      const nobleDer = p256.sign(octets, keys.secretKey, { format: 'der' });
      expect(verifyEcdsaP256Sha256(point, octets, nobleDer, 'der')).toBe(true);
      const changed = new Uint8Array(octets);
      changed[0] ^= 1;
      expect(verifyEcdsaP256Sha256(point, changed, nobleSig, 'p1363')).toBe(false);
      expect(p256.verify(signatureOf(authData), changed, point, { format: 'der', lowS: false })).toBe(false);
    }
  });
});
