import { VECTORS_DIR } from './support/vectors.js';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHmac } from 'node:crypto';
import { prf, prfPlus } from '../control/crypto/prf.js';
import { hmac, verifyHmac } from '../control/crypto/mac.js';
import { encrInfo, integInfo, prfInfo, type HashName } from '../control/crypto/algorithms.js';
import {
  deriveChildKeys, deriveIkeKeys, deriveRekeyedIkeKeys, isValidNonceLength, wipeChildKeys, wipeIkeKeys, type IkeSuite,
} from '../control/crypto/keys.js';
import { EncrId, IntegId, PrfId } from '../control/wire/constants.js';

const VECTORS = VECTORS_DIR;
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed + i * 7) & 0xff);
/** HMAC composed independently of control/crypto. */
const H = (hash: string, key: Uint8Array, ...data: Uint8Array[]): Uint8Array => {
  const m = createHmac(hash, key);
  for (const d of data) m.update(d);
  return new Uint8Array(m.digest());
};

describe('algorithm table', () => {
  it('describes PRFs, INTEG and ENCR transforms', () => {
    expect(prfInfo(PrfId.HMAC_SHA2_384)).toMatchObject({ hash: 'sha384', length: 48 });
    expect(prfInfo(PrfId.HMAC_SHA1)).toBeUndefined();
    expect(integInfo(IntegId.HMAC_SHA2_512_256)).toMatchObject({ hash: 'sha512', keyLength: 64, icvLength: 32 });
    expect(integInfo(IntegId.NONE)).toBeUndefined();
    expect(encrInfo(EncrId.AES_GCM_16, 256)).toMatchObject({ aead: true, keyLength: 256, keyMaterialLength: 36, ivLength: 8, icvLength: 16, blockSize: 1 });
    expect(encrInfo(EncrId.AES_GCM_8, 128)).toMatchObject({ keyMaterialLength: 20, icvLength: 8 });
    expect(encrInfo(EncrId.AES_GCM_12, 192)).toMatchObject({ keyMaterialLength: 28, icvLength: 12 });
    expect(encrInfo(EncrId.AES_CBC, 128)).toMatchObject({ aead: false, keyMaterialLength: 16, ivLength: 16, icvLength: 0, blockSize: 16 });
    expect(encrInfo(EncrId.CHACHA20_POLY1305)).toMatchObject({ aead: true, keyLength: 256, keyMaterialLength: 36, ivLength: 8, icvLength: 16 });
    // AES needs its Key Length attribute; ChaCha20-Poly1305 has a fixed key
    expect(encrInfo(EncrId.AES_CBC)).toBeUndefined();
    expect(encrInfo(EncrId.AES_GCM_16, 64)).toBeUndefined();
    expect(encrInfo(EncrId.CHACHA20_POLY1305, 128)).toBeUndefined();
    expect(encrInfo(EncrId.AES_CTR, 128)).toBeUndefined();
  });
});

interface MacTest { tcId: number; key: string; msg: string; tag: string; result: 'valid' | 'invalid' }
interface MacFile { numberOfTests: number; testGroups: { keySize: number; tagSize: number; tests: MacTest[] }[] }

describe.each([
  { file: 'hmac_sha256_test.json', hash: 'sha256' as HashName, prfId: PrfId.HMAC_SHA2_256 },
  { file: 'hmac_sha384_test.json', hash: 'sha384' as HashName, prfId: PrfId.HMAC_SHA2_384 },
  { file: 'hmac_sha512_test.json', hash: 'sha512' as HashName, prfId: PrfId.HMAC_SHA2_512 },
])('Wycheproof $file', ({ file, hash, prfId }) => {
  const data = JSON.parse(readFileSync(join(VECTORS, file), 'utf8')) as MacFile;
  it(`${data.numberOfTests} cases: full and truncated tags verify, modified tags do not`, () => {
    let valid = 0, invalid = 0;
    for (const g of data.testGroups) {
      const tagLength = g.tagSize / 8;
      for (const t of g.tests) {
        const key = hex(t.key), msg = hex(t.msg), tag = hex(t.tag);
        expect(verifyHmac(hash, key, [msg], tag, tagLength), `tc ${t.tcId}`).toBe(t.result === 'valid');
        if (t.result === 'valid') {
          valid++;
          expect(toHex(prf(prfId, key, msg).subarray(0, tagLength))).toBe(t.tag);
          // the same message split into parts authenticates the same
          expect(verifyHmac(hash, key, [msg.subarray(0, 3), msg.subarray(3)], tag, tagLength)).toBe(true);
        } else {
          invalid++;
        }
      }
    }
    expect(valid + invalid).toBe(data.numberOfTests);
    expect(valid).toBe(66);
  });

  it('refuses tags of the wrong length and absurd tag lengths', () => {
    const key = bytes(32, 1), msg = bytes(40, 2);
    const full = hmac(hash, key, msg);
    expect(verifyHmac(hash, key, [msg], full, full.length)).toBe(true);
    expect(verifyHmac(hash, key, [msg], full.subarray(0, full.length / 2), full.length)).toBe(false);
    expect(verifyHmac(hash, key, [msg], full, full.length / 2)).toBe(false);
    expect(verifyHmac(hash, key, [msg], new Uint8Array(0), 0)).toBe(false);
    expect(verifyHmac(hash, key, [msg], new Uint8Array(full.length + 1), full.length + 1)).toBe(false);
  });
});

describe('prf+ (RFC 7296 §2.13)', () => {
  it.each([
    ['sha256', PrfId.HMAC_SHA2_256, 32],
    ['sha384', PrfId.HMAC_SHA2_384, 48],
    ['sha512', PrfId.HMAC_SHA2_512, 64],
  ] as const)('%s: T1 = prf(K, S|0x01), Tn = prf(K, Tn-1|S|n)', (hash, id, hashLength) => {
    const K = bytes(hashLength, 3), S = bytes(77, 9);
    const length = 3 * hashLength + 5;
    const T1 = H(hash, K, S, Uint8Array.of(1));
    const T2 = H(hash, K, T1, S, Uint8Array.of(2));
    const T3 = H(hash, K, T2, S, Uint8Array.of(3));
    const T4 = H(hash, K, T3, S, Uint8Array.of(4));
    const expected = cat(T1, T2, T3, T4).subarray(0, length);
    expect(toHex(prfPlus(id, K, S, length))).toBe(toHex(expected));
    // a shorter request is a prefix
    expect(toHex(prfPlus(id, K, S, 10))).toBe(toHex(T1.subarray(0, 10)));
    expect(prfPlus(id, K, S, 0).length).toBe(0);
  });

  it('stops at 255 blocks: the counter is one octet', () => {
    const out = prfPlus(PrfId.HMAC_SHA2_256, bytes(32, 1), bytes(8, 2), 255 * 32);
    expect(out.length).toBe(255 * 32);
    // the last block uses counter 0xff
    const T254 = out.subarray(253 * 32, 254 * 32);
    expect(toHex(out.subarray(254 * 32))).toBe(toHex(H('sha256', bytes(32, 1), T254, bytes(8, 2), Uint8Array.of(255))));
    expect(() => prfPlus(PrfId.HMAC_SHA2_256, bytes(32, 1), bytes(8, 2), 255 * 32 + 1)).toThrow(RangeError);
    expect(() => prfPlus(PrfId.HMAC_SHA1, bytes(32, 1), bytes(8, 2), 16)).toThrow(/unsupported PRF/);
  });
});

const nonceI = bytes(32, 0x10), nonceR = bytes(32, 0x80);
const spiI = hex('0011223344556677'), spiR = hex('8899aabbccddeeff');
const gir = bytes(32, 0x40);

describe('IKE SA keys (RFC 7296 §2.14)', () => {
  it.each<[string, IkeSuite, number[]]>([
    ['AES-GCM-16-256 / PRF-SHA256', { encr: EncrId.AES_GCM_16, encrKeyLength: 256, prf: PrfId.HMAC_SHA2_256, integ: IntegId.NONE }, [32, 0, 0, 36, 36, 32, 32]],
    ['ChaCha20-Poly1305 / PRF-SHA384', { encr: EncrId.CHACHA20_POLY1305, prf: PrfId.HMAC_SHA2_384, integ: IntegId.NONE }, [48, 0, 0, 36, 36, 48, 48]],
    ['AES-CBC-128 / PRF-SHA512 / HMAC-SHA256-128', { encr: EncrId.AES_CBC, encrKeyLength: 128, prf: PrfId.HMAC_SHA2_512, integ: IntegId.HMAC_SHA2_256_128 }, [64, 32, 32, 16, 16, 64, 64]],
    ['AES-CBC-256 / PRF-SHA256 / HMAC-SHA512-256', { encr: EncrId.AES_CBC, encrKeyLength: 256, prf: PrfId.HMAC_SHA2_256, integ: IntegId.HMAC_SHA2_512_256 }, [32, 64, 64, 32, 32, 32, 32]],
  ])('%s: SKEYSEED and the seven keys in order', (_name, suite, lengths) => {
    const { skeyseed, keys } = deriveIkeKeys(suite, { nonceI, nonceR, sharedSecret: gir, spiI, spiR });
    const hash = prfInfo(suite.prf)!.hash;
    expect(toHex(skeyseed)).toBe(toHex(H(hash, cat(nonceI, nonceR), gir)));
    const total = lengths.reduce((a, b) => a + b, 0);
    const stream = prfPlus(suite.prf, skeyseed, cat(nonceI, nonceR, spiI, spiR), total);
    const order = [keys.skD, keys.skAi, keys.skAr, keys.skEi, keys.skEr, keys.skPi, keys.skPr];
    expect(order.map((k) => k.length)).toEqual(lengths);
    expect(toHex(cat(...order))).toBe(toHex(stream));
    wipeIkeKeys(keys);
    expect(order.every((k) => k.every((b) => b === 0))).toBe(true);
  });

  it('refuses suites it cannot derive keys for', () => {
    const base = { nonceI, nonceR, sharedSecret: gir, spiI, spiR };
    expect(() => deriveIkeKeys({ encr: EncrId.AES_GCM_16, encrKeyLength: 128, prf: PrfId.HMAC_SHA2_256, integ: IntegId.HMAC_SHA2_256_128 }, base)).toThrow(/AEAD/);
    expect(() => deriveIkeKeys({ encr: EncrId.AES_CBC, encrKeyLength: 128, prf: PrfId.HMAC_SHA2_256, integ: IntegId.NONE }, base)).toThrow(/integrity/);
    expect(() => deriveIkeKeys({ encr: EncrId.AES_CBC, prf: PrfId.HMAC_SHA2_256, integ: IntegId.HMAC_SHA2_256_128 }, base)).toThrow(/encryption/);
    expect(() => deriveIkeKeys({ encr: EncrId.AES_GCM_16, encrKeyLength: 128, prf: PrfId.HMAC_SHA2_256, integ: IntegId.NONE }, { ...base, spiR: spiR.subarray(1) })).toThrow(/SPI/);
  });

  it('rekey (§2.18): SKEYSEED = prf_old(SK_d old, g^ir new | Ni | Nr), keys from the new PRF', () => {
    const oldSuite: IkeSuite = { encr: EncrId.AES_GCM_16, encrKeyLength: 256, prf: PrfId.HMAC_SHA2_512, integ: IntegId.NONE };
    const newSuite: IkeSuite = { encr: EncrId.AES_GCM_16, encrKeyLength: 128, prf: PrfId.HMAC_SHA2_256, integ: IntegId.NONE };
    const old = deriveIkeKeys(oldSuite, { nonceI, nonceR, sharedSecret: gir, spiI, spiR });
    const rekey = { nonceI: bytes(32, 0x21), nonceR: bytes(48, 0x33), sharedSecret: bytes(32, 0x55), spiI: hex('1111111111111111'), spiR: hex('2222222222222222') };
    const { skeyseed, keys } = deriveRekeyedIkeKeys(newSuite, oldSuite.prf, old.keys.skD, rekey);
    // the old PRF (SHA-512) keyed with the old SK_d
    const expectedSeed = H('sha512', old.keys.skD, rekey.sharedSecret, rekey.nonceI, rekey.nonceR);
    expect(skeyseed.length).toBe(64);
    expect(toHex(skeyseed)).toBe(toHex(expectedSeed));
    // the new PRF (SHA-256) for prf+
    const stream = prfPlus(PrfId.HMAC_SHA2_256, expectedSeed, cat(rekey.nonceI, rekey.nonceR, rekey.spiI, rekey.spiR), 32 + 20 + 20 + 32 + 32);
    expect(toHex(cat(keys.skD, keys.skAi, keys.skAr, keys.skEi, keys.skEr, keys.skPi, keys.skPr))).toBe(toHex(stream));
    expect(keys.skD.length).toBe(32);
    // differs from an initial derivation with the same inputs
    expect(toHex(keys.skD)).not.toBe(toHex(deriveIkeKeys(newSuite, rekey).keys.skD));
  });
});

describe('Child SA keys (RFC 7296 §2.17)', () => {
  const skD = bytes(32, 0x77);
  it('AEAD: encrI | encrR with salt, no integrity keys', () => {
    const encr = encrInfo(EncrId.AES_GCM_16, 256)!;
    const k = deriveChildKeys(PrfId.HMAC_SHA2_256, skD, { nonceI, nonceR }, encr);
    const stream = prfPlus(PrfId.HMAC_SHA2_256, skD, cat(nonceI, nonceR), 72);
    expect(toHex(k.encrI)).toBe(toHex(stream.subarray(0, 36)));
    expect(toHex(k.encrR)).toBe(toHex(stream.subarray(36, 72)));
    expect(k.integI.length + k.integR.length).toBe(0);
  });

  it('CBC + HMAC with PFS: encrI | integI | encrR | integR from prf+(SK_d, g^ir | Ni | Nr)', () => {
    const encr = encrInfo(EncrId.AES_CBC, 128)!, integ = integInfo(IntegId.HMAC_SHA2_256_128)!;
    const k = deriveChildKeys(PrfId.HMAC_SHA2_256, skD, { nonceI, nonceR, sharedSecret: gir }, encr, integ);
    const stream = prfPlus(PrfId.HMAC_SHA2_256, skD, cat(gir, nonceI, nonceR), 16 + 32 + 16 + 32);
    expect(toHex(cat(k.encrI, k.integI, k.encrR, k.integR))).toBe(toHex(stream));
    expect([k.encrI.length, k.integI.length, k.encrR.length, k.integR.length]).toEqual([16, 32, 16, 32]);
    wipeChildKeys(k);
    expect(k.integR.every((b) => b === 0)).toBe(true);
  });

  it('refuses a mismatched ENCR/INTEG pair', () => {
    expect(() => deriveChildKeys(PrfId.HMAC_SHA2_256, skD, { nonceI, nonceR }, encrInfo(EncrId.AES_CBC, 128)!)).toThrow();
    expect(() => deriveChildKeys(PrfId.HMAC_SHA2_256, skD, { nonceI, nonceR }, encrInfo(EncrId.CHACHA20_POLY1305)!, integInfo(IntegId.HMAC_SHA2_256_128))).toThrow();
  });
});

describe('nonce lengths (RFC 7296 §2.10, §3.9)', () => {
  it('accepts 16..256 octets and at least half the PRF key size', () => {
    expect(isValidNonceLength(PrfId.HMAC_SHA2_256, 16)).toBe(true);
    expect(isValidNonceLength(PrfId.HMAC_SHA2_256, 15)).toBe(false);
    expect(isValidNonceLength(PrfId.HMAC_SHA2_256, 256)).toBe(true);
    expect(isValidNonceLength(PrfId.HMAC_SHA2_256, 257)).toBe(false);
    expect(isValidNonceLength(PrfId.HMAC_SHA2_384, 23)).toBe(false);
    expect(isValidNonceLength(PrfId.HMAC_SHA2_512, 31)).toBe(false);
    expect(isValidNonceLength(PrfId.HMAC_SHA2_512, 32)).toBe(true);
  });
});
