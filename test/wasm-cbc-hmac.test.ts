// The AES-CBC and HMAC-SHA2 wasm kernels (wasm/cbc.ts, wasm/aes.ts
// aesDecrypt8, wasm/sha2.ts, wasm/hmac.ts) on their own: Wycheproof vectors
// and node:crypto on random inputs. ESP uses them per RFC 3602 and RFC 4868;
// test/wasm-esp-cbc.test.ts checks the ESP packets.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomInt } from 'node:crypto';
import { EspKernel } from '../dataplane/kernel.js';
import { loadVectors } from './support/vectors.js';

interface PrimitiveExports {
  memory: { buffer: ArrayBuffer };
  scratchPtr(): number;
  scratchSize(): number;
  aesCbcInit(ctx: number, key: number, keyLen: number): void;
  aesCbcEncrypt(ctx: number, iv: number, data: number, len: number): void;
  aesCbcDecrypt(ctx: number, iv: number, data: number, len: number): void;
  hmacInit(ctx: number, bits: number, key: number, keyLen: number): void;
  hmacMac(ctx: number, bits: number, msg: number, len: number, extra: number, extraLen: number, out: number, outLen: number): void;
  hmacVerify(ctx: number, bits: number, msg: number, len: number, extra: number, extraLen: number, icv: number, icvLen: number): number;
}

let wasm: PrimitiveExports;
// Scratch layout: context (2048), key (128), IV (16), extra (16), tag (64), data.
let CTX = 0, KEY = 0, IV = 0, EXTRA = 0, TAG = 0, DATA = 0;
const MAX_DATA = 65536;

beforeAll(async () => {
  wasm = (await EspKernel.create()).exports as unknown as PrimitiveExports;
  CTX = wasm.scratchPtr();
  KEY = CTX + 2048;
  IV = KEY + 128;
  EXTRA = IV + 16;
  TAG = EXTRA + 16;
  DATA = TAG + 64;
  expect(DATA + MAX_DATA).toBeLessThanOrEqual(CTX + wasm.scratchSize());
});

const mem = (): Uint8Array => new Uint8Array(wasm.memory.buffer);
const hex = (s: string): Buffer => Buffer.from(s, 'hex');
type CbcName = 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc';
const cbcName = (key: Uint8Array): CbcName => `aes-${key.length * 8}-cbc` as CbcName;

function wasmCbc(encrypt: boolean, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  if (data.length > MAX_DATA) throw new Error('test input larger than its scratch slot');
  const m = mem();
  m.set(key, KEY);
  m.set(iv, IV);
  m.set(data, DATA);
  wasm.aesCbcInit(CTX, KEY, key.length);
  if (encrypt) wasm.aesCbcEncrypt(CTX, IV, DATA, data.length);
  else wasm.aesCbcDecrypt(CTX, IV, DATA, data.length);
  return Buffer.from(mem().slice(DATA, DATA + data.length));
}

function nodeCbc(encrypt: boolean, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = encrypt ? createCipheriv(cbcName(key), key, iv) : createDecipheriv(cbcName(key), key, iv);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** PKCS#5/7 padding of `msg` to whole blocks (what the Wycheproof ciphertexts encrypt). */
function pkcs5(msg: Buffer): Buffer {
  const n = 16 - (msg.length % 16);
  return Buffer.concat([msg, Buffer.alloc(n, n)]);
}

interface CbcTest { tcId: number; key: string; iv: string; msg: string; ct: string; result: 'valid' | 'invalid'; flags: string[] }
interface CbcGroup { keySize: number; ivSize: number; tests: CbcTest[] }

describe('AES-CBC wasm: Wycheproof aes_cbc_pkcs5_test.json on whole blocks (RFC 3602 leaves padding to ESP)', () => {
  const groups = loadVectors<{ testGroups: CbcGroup[] }>('aes_cbc_pkcs5_test.json').testGroups;

  it('valid vectors: the padded message encrypts to exactly the ciphertext, which decrypts back', () => {
    const perKey: Record<number, number> = {};
    for (const g of groups) {
      for (const t of g.tests.filter((x) => x.result === 'valid')) {
        const key = hex(t.key), iv = hex(t.iv), padded = pkcs5(hex(t.msg));
        expect(wasmCbc(true, key, iv, padded).toString('hex'), `tcId ${t.tcId}`).toBe(t.ct);
        expect(wasmCbc(false, key, iv, hex(t.ct)).equals(padded), `tcId ${t.tcId}`).toBe(true);
        perKey[g.keySize] = (perKey[g.keySize] ?? 0) + 1;
      }
    }
    expect(Object.keys(perKey).sort()).toEqual(['128', '192', '256']);
    expect(Object.values(perKey).every((n) => n > 20)).toBe(true);
  });

  it('invalid (bad padding) vectors: the raw block decryption equals node:crypto without padding removal', () => {
    let n = 0;
    for (const g of groups) {
      for (const t of g.tests.filter((x) => x.result === 'invalid' && x.ct.length % 32 === 0 && x.ct.length > 0)) {
        const key = hex(t.key), iv = hex(t.iv), ct = hex(t.ct);
        expect(wasmCbc(false, key, iv, ct).equals(nodeCbc(false, key, iv, ct)), `tcId ${t.tcId}`).toBe(true);
        n++;
      }
    }
    expect(n).toBeGreaterThan(50);
  });
});

describe('AES-CBC wasm against node:crypto', () => {
  it('random keys, IVs and lengths of 1..300 blocks agree both ways, for all key sizes', () => {
    for (let i = 0; i < 600; i++) {
      const key = randomBytes([16, 24, 32][i % 3]!);
      const iv = randomBytes(16);
      const pt = randomBytes(16 * (i < 40 ? i + 1 : randomInt(1, 301)));
      const ct = nodeCbc(true, key, iv, pt);
      expect(wasmCbc(true, key, iv, pt).equals(ct), `encrypt #${i} (${pt.length} bytes)`).toBe(true);
      expect(wasmCbc(false, key, iv, ct).equals(pt), `decrypt #${i}`).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------
// HMAC-SHA2.

type Hash = 'sha256' | 'sha384' | 'sha512';
const HASHES: Array<{ hash: Hash; bits: number; block: number; file: string }> = [
  { hash: 'sha256', bits: 256, block: 64, file: 'hmac_sha256_test.json' },
  { hash: 'sha384', bits: 384, block: 128, file: 'hmac_sha384_test.json' },
  { hash: 'sha512', bits: 512, block: 128, file: 'hmac_sha512_test.json' },
];

/** HMAC in wasm (truncated to `outLen`) of msg || extra. */
function wasmHmac(bits: number, key: Uint8Array, msg: Uint8Array, outLen: number, extra = new Uint8Array(0)): Buffer {
  const m = mem();
  m.set(key, KEY);
  m.set(msg, DATA);
  m.set(extra, EXTRA);
  wasm.hmacInit(CTX, bits, KEY, key.length);
  wasm.hmacMac(CTX, bits, DATA, msg.length, EXTRA, extra.length, TAG, outLen);
  return Buffer.from(mem().slice(TAG, TAG + outLen));
}

function wasmHmacVerify(bits: number, key: Uint8Array, msg: Uint8Array, icv: Uint8Array): boolean {
  const m = mem();
  m.set(key, KEY);
  m.set(msg, DATA);
  m.set(icv, TAG);
  wasm.hmacInit(CTX, bits, KEY, key.length);
  return wasm.hmacVerify(CTX, bits, DATA, msg.length, EXTRA, 0, TAG, icv.length) === 1;
}

interface MacTest { tcId: number; key: string; msg: string; tag: string; result: 'valid' | 'invalid' }
interface MacGroup { keySize: number; tagSize: number; tests: MacTest[] }

describe('HMAC-SHA2 wasm: Wycheproof hmac_sha256/384/512_test.json', () => {
  for (const h of HASHES) {
    it(`${h.hash}: valid tags match (full and truncated), invalid ones are refused`, () => {
      const groups = loadVectors<{ testGroups: MacGroup[] }>(h.file).testGroups;
      let valid = 0, invalid = 0;
      for (const g of groups) {
        for (const t of g.tests) {
          // Keys longer than a block are hashed first (RFC 2104 §2); ESP keys never are (RFC 4868 §2.1.1).
          let key = hex(t.key);
          if (key.length > h.block) key = createHash(h.hash).update(key).digest();
          const msg = hex(t.msg), tagLen = g.tagSize / 8;
          const tag = wasmHmac(h.bits, key, msg, tagLen);
          if (t.result === 'valid') {
            expect(tag.toString('hex'), `tcId ${t.tcId}`).toBe(t.tag);
            valid++;
          } else {
            expect(tag.toString('hex'), `tcId ${t.tcId}`).not.toBe(t.tag);
            invalid++;
          }
          if (tagLen % 8 === 0 && t.tag.length === tagLen * 2) {
            expect(wasmHmacVerify(h.bits, key, msg, hex(t.tag)), `verify tcId ${t.tcId}`).toBe(t.result === 'valid');
          }
        }
      }
      expect(valid).toBe(66);
      expect(invalid).toBe(108);
    });
  }

  it('agrees with node:crypto on random keys and messages of every length around the block boundaries, with an appended ESN word', () => {
    for (const h of HASHES) {
      for (let len = 0; len <= 3 * h.block + 3; len++) {
        const key = randomBytes(h.bits / 8);
        const msg = randomBytes(len);
        const extra = randomBytes(len % 2 === 0 ? 4 : 0);
        const want = createHmac(h.hash, key).update(msg).update(extra).digest();
        expect(wasmHmac(h.bits, key, msg, h.bits / 8, extra).equals(want), `${h.hash} len ${len}`).toBe(true);
        expect(wasmHmac(h.bits, key, msg, h.bits / 16, extra).equals(want.subarray(0, h.bits / 16))).toBe(true);
      }
      for (let i = 0; i < 50; i++) {
        const key = randomBytes(h.bits / 8);
        const msg = randomBytes(randomInt(0, 9000));
        const want = createHmac(h.hash, key).update(msg).digest();
        expect(wasmHmac(h.bits, key, msg, h.bits / 8).equals(want), `${h.hash} ${msg.length} bytes`).toBe(true);
      }
    }
  });

  it('verify compares the truncated ICV and refuses any single flipped bit', () => {
    for (const h of HASHES) {
      const key = randomBytes(h.bits / 8);
      const msg = randomBytes(333);
      const icv = createHmac(h.hash, key).update(msg).digest().subarray(0, h.bits / 16);
      expect(wasmHmacVerify(h.bits, key, msg, icv)).toBe(true);
      for (let bit = 0; bit < icv.length * 8; bit += 7) {
        const bad = Buffer.from(icv);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(wasmHmacVerify(h.bits, key, msg, bad)).toBe(false);
      }
    }
  });
});
