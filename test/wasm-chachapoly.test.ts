// ChaCha20, Poly1305 and AEAD_CHACHA20_POLY1305 in the wasm kernel module:
// RFC 8439 test vectors, the RFC 7634 ESP example, and random agreement with
// node:crypto in both directions.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

interface ChachaExports {
  memory: WebAssembly.Memory;
  scratchPtr(): number;
  scratchSize(): number;
  chacha20Blocks4(key: number, nonce: number, counter: number, out: number): void;
  chacha20Xor(key: number, nonce: number, counter: number, data: number, len: number): void;
  poly1305Mac(out: number, key: number, msg: number, len: number): void;
  CHACHAPOLY_CTX_SIZE: WebAssembly.Global;
  chachaPolyInit(ctx: number, key: number, keyLen: number): void;
  chachaPolySeal(ctx: number, nonce: number, aad: number, aadLen: number, data: number, dataLen: number, tag: number, tagLen: number): void;
  chachaPolyOpen(ctx: number, nonce: number, aad: number, aadLen: number, data: number, dataLen: number, tag: number, tagLen: number): number;
  chachaPolyWipe(ctx: number): void;
}

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/[\s:]/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

let wasm: ChachaExports;
let mem: Uint8Array;
// Scratch sub-regions used by these tests.
let CTX = 0, KEY = 0, NONCE = 0, AAD = 0, TAG = 0, OUT = 0, DATA = 0;

beforeAll(async () => {
  const bytes = readFileSync(new URL('../wasm/build/esp.wasm', import.meta.url));
  const { instance } = await WebAssembly.instantiate(bytes, {});
  wasm = instance.exports as unknown as ChachaExports;
  mem = new Uint8Array(wasm.memory.buffer);
  const s = wasm.scratchPtr();
  CTX = s; KEY = s + 64; NONCE = s + 128; AAD = s + 160; TAG = s + 224; OUT = s + 256; DATA = s + 512;
});

function put(ptr: number, bytes: Uint8Array): void {
  mem.set(bytes, ptr);
}
function get(ptr: number, len: number): Uint8Array {
  return mem.slice(ptr, ptr + len);
}

/** Seal with the wasm AEAD; returns ciphertext || tag. */
function wasmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, tagLen = 16): Uint8Array {
  put(KEY, key);
  wasm.chachaPolyInit(CTX, KEY, key.length);
  put(NONCE, nonce);
  put(AAD, aad);
  put(DATA, pt);
  wasm.chachaPolySeal(CTX, NONCE, AAD, aad.length, DATA, pt.length, TAG, tagLen);
  const out = new Uint8Array(pt.length + tagLen);
  out.set(get(DATA, pt.length));
  out.set(get(TAG, tagLen), pt.length);
  return out;
}

/** Open with the wasm AEAD; returns the plaintext or null. Leaves the data region as the kernel left it. */
function wasmOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Uint8Array | null {
  put(KEY, key);
  wasm.chachaPolyInit(CTX, KEY, key.length);
  put(NONCE, nonce);
  put(AAD, aad);
  put(DATA, ct);
  put(TAG, tag);
  const ok = wasm.chachaPolyOpen(CTX, NONCE, AAD, aad.length, DATA, ct.length, TAG, tag.length);
  return ok ? get(DATA, ct.length) : null;
}

describe('ChaCha20 (RFC 8439 §2.3, §2.4)', () => {
  it('block function test vector (§2.3.2)', () => {
    put(KEY, hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'));
    put(NONCE, hex('000000090000004a00000000'));
    wasm.chacha20Blocks4(KEY, NONCE, 1, OUT);
    expect(toHex(get(OUT, 64))).toBe(
      '10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e'
      + 'd2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e');
  });

  it('four-block call yields consecutive counters, wrapping mod 2^32', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    put(KEY, key);
    put(NONCE, nonce);
    wasm.chacha20Blocks4(KEY, NONCE, 0xfffffffe, OUT);
    const four = get(OUT, 256);
    for (let j = 0; j < 4; j++) {
      wasm.chacha20Blocks4(KEY, NONCE, (0xfffffffe + j) >>> 0, OUT);
      expect(toHex(four.subarray(64 * j, 64 * j + 64))).toBe(toHex(get(OUT, 64)));
    }
  });

  it('encryption test vector (§2.4.2)', () => {
    const pt = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    put(KEY, hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'));
    put(NONCE, hex('000000000000004a00000000'));
    put(DATA, pt);
    wasm.chacha20Xor(KEY, NONCE, 1, DATA, pt.length);
    expect(toHex(get(DATA, pt.length))).toBe(
      '6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b357'
      + '1639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736'
      + '5af90bbf74a35be6b40b8eedf2785e42874d');
  });

  it('agrees with node:crypto chacha20 over multi-chunk lengths', () => {
    for (const len of [0, 1, 63, 64, 65, 255, 256, 257, 511, 1000, 4097]) {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const pt = randomBytes(len);
      // node's chacha20 takes a 16-byte IV: 32-bit little-endian counter || 96-bit nonce.
      const iv = Buffer.concat([Buffer.from([7, 0, 0, 0]), nonce]);
      const c = createCipheriv('chacha20', key, iv);
      const expected = Buffer.concat([c.update(pt), c.final()]);
      put(KEY, key);
      put(NONCE, nonce);
      put(DATA, pt);
      wasm.chacha20Xor(KEY, NONCE, 7, DATA, len);
      expect(toHex(get(DATA, len))).toBe(expected.toString('hex'));
    }
  });
});

describe('Poly1305 (RFC 8439 §2.5)', () => {
  const cases: Array<[string, string, string, string]> = [
    ['§2.5.2', '85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b',
      Buffer.from('Cryptographic Forum Research Group').toString('hex'), 'a8061dc1305136c6c22b8baf0c0127a9'],
    ['A.3 #1', '00'.repeat(32), '00'.repeat(64), '00'.repeat(16)],
    ['A.3 #4', '1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0',
      Buffer.from("'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\nAll mimsy were the borogoves,\nAnd the mome raths outgrabe.").toString('hex'),
      '4541669a7eaaee61e708dc7cbcc5eb62'],
    ['A.3 #5', '02' + '00'.repeat(31), 'ff'.repeat(16), '03' + '00'.repeat(15)],
    ['A.3 #6', '02' + '00'.repeat(15) + 'ff'.repeat(16), '02' + '00'.repeat(15), '03' + '00'.repeat(15)],
    ['A.3 #7', '01' + '00'.repeat(31), 'ff'.repeat(16) + 'f0' + 'ff'.repeat(15) + '11' + '00'.repeat(15), '05' + '00'.repeat(15)],
    ['A.3 #8', '01' + '00'.repeat(31), 'ff'.repeat(16) + 'fb' + 'fe'.repeat(15) + '01'.repeat(16), '00'.repeat(16)],
    ['A.3 #9', '02' + '00'.repeat(31), 'fd' + 'ff'.repeat(15), 'fa' + 'ff'.repeat(15)],
    ['A.3 #10', '01' + '00'.repeat(7) + '04' + '00'.repeat(23),
      'e33594d7505e43b9' + '00'.repeat(8) + '3394d7505e4379cd01' + '00'.repeat(7) + '00'.repeat(16) + '01' + '00'.repeat(15),
      '1400000000000000' + '5500000000000000'],
    ['A.3 #11', '01' + '00'.repeat(7) + '04' + '00'.repeat(23),
      'e33594d7505e43b9' + '00'.repeat(8) + '3394d7505e4379cd01' + '00'.repeat(7) + '00'.repeat(16),
      '13' + '00'.repeat(15)],
  ];
  for (const [name, key, msg, tag] of cases) {
    it(`test vector ${name}`, () => {
      const m = hex(msg);
      put(KEY, hex(key));
      put(DATA, m);
      wasm.poly1305Mac(OUT, KEY, DATA, m.length);
      expect(toHex(get(OUT, 16))).toBe(tag);
    });
  }
});

describe('AEAD_CHACHA20_POLY1305 (RFC 8439 §2.8)', () => {
  it('exposes a 16-byte aligned context size', () => {
    expect(Number(wasm.CHACHAPOLY_CTX_SIZE.value) % 16).toBe(0);
    expect(Number(wasm.CHACHAPOLY_CTX_SIZE.value)).toBeGreaterThanOrEqual(32);
  });

  it('§2.8.2 example: seal', () => {
    const pt = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    const out = wasmSeal(
      hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
      hex('070000004041424344454647'), hex('50515253c0c1c2c3c4c5c6c7'), pt);
    expect(toHex(out)).toBe(
      'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b'
      + '1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc'
      + '3ff4def08e4b7a9de576d26586cec64b6116' + '1ae10b594f09e26a7e902ecbd0600691');
  });

  const a5 = {
    key: hex('1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0'),
    nonce: hex('000000000102030405060708'),
    aad: hex('f33388860000000000004e91'),
    tag: hex('eead9d67890cbb22392336fea1851f38'),
    ct: hex('64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb24c6cfc18755d43eea09ee94e382d26b0'
      + 'bdb7b73c321b0100d4f03b7f355894cf332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855'
      + '9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4b9166c767b804d46a59b5216cde7a4e9'
      + '9040c5a40433225ee282a1b0a06c523eaf4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a'
      + '0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a1049e617d91d361094fa68f0ff77987130'
      + '305beaba2eda04df997b714d6c6f2c29a6ad5cb4022b02709b'),
  };

  it('Appendix A.5 decryption example: open', () => {
    const pt = wasmOpen(a5.key, a5.nonce, a5.aad, a5.ct, a5.tag);
    expect(pt).not.toBeNull();
    expect(toHex(pt!)).toBe(
      '496e7465726e65742d4472616674732061726520647261667420646f63756d656e74732076616c696420666f722061206d'
      + '6178696d756d206f6620736978206d6f6e74687320616e64206d617920626520757064617465642c207265706c616365'
      + '642c206f72206f62736f6c65746564206279206f7468657220646f63756d656e747320617420616e792074696d652e20'
      + '497420697320696e617070726f70726961746520746f2075736520496e7465726e65742d447261667473206173207265'
      + '666572656e6365206d6174657269616c206f7220746f2063697465207468656d206f74686572207468616e206173202f'
      + 'e2809c776f726b20696e2070726f67726573732e2fe2809d');
  });

  it('Appendix A.5: a wrong tag, AAD or ciphertext byte is refused and the data is left encrypted', () => {
    const badTag = a5.tag.slice(); badTag[15] ^= 1;
    expect(wasmOpen(a5.key, a5.nonce, a5.aad, a5.ct, badTag)).toBeNull();
    expect(toHex(get(DATA, a5.ct.length))).toBe(toHex(a5.ct));
    const badAad = a5.aad.slice(); badAad[0] ^= 0x80;
    expect(wasmOpen(a5.key, a5.nonce, badAad, a5.ct, a5.tag)).toBeNull();
    const badCt = a5.ct.slice(); badCt[200] ^= 4;
    expect(wasmOpen(a5.key, a5.nonce, a5.aad, badCt, a5.tag)).toBeNull();
    const badNonce = a5.nonce.slice(); badNonce[11] ^= 1;
    expect(wasmOpen(a5.key, badNonce, a5.aad, a5.ct, a5.tag)).toBeNull();
  });

  it('refuses an empty or over-long tag length', () => {
    put(KEY, a5.key);
    wasm.chachaPolyInit(CTX, KEY, 32);
    put(DATA, a5.ct);
    expect(wasm.chachaPolyOpen(CTX, NONCE, AAD, 0, DATA, a5.ct.length, TAG, 0)).toBe(0);
    expect(wasm.chachaPolyOpen(CTX, NONCE, AAD, 0, DATA, a5.ct.length, TAG, 17)).toBe(0);
  });

  it('RFC 7634 Appendix A ESP example: nonce = salt || IV, AAD = SPI || seq', () => {
    const keymat = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3');
    const nonce = new Uint8Array(12);
    nonce.set(keymat.subarray(32, 36));
    nonce.set(hex('1011121314151617'), 4);
    const plaintext = hex('45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec100007362708090a0b0c0d0e0f'
      + '101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363701020204');
    const out = wasmSeal(keymat.subarray(0, 32), nonce, hex('0102030400000005'), plaintext);
    expect(toHex(out)).toBe(
      '24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95dfab4c02f7'
      + '2aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641e0'
      + '76aaa8266b7fb0f7b11b369907e1ad43');
  });

  it('chachaPolyWipe zeroes the context', () => {
    put(KEY, randomBytes(32));
    wasm.chachaPolyInit(CTX, KEY, 32);
    const size = Number(wasm.CHACHAPOLY_CTX_SIZE.value);
    expect(get(CTX, size).some((b) => b !== 0)).toBe(true);
    wasm.chachaPolyWipe(CTX);
    expect(get(CTX, size).every((b) => b === 0)).toBe(true);
  });

  it('10,000 random packets of 0..9000 bytes agree with node:crypto in both directions', () => {
    const key = randomBytes(32);
    let checked = 0;
    for (let i = 0; i < 10_000; i++) {
      if (i % 500 === 0) key.set(randomBytes(32));
      const nonce = randomBytes(12);
      const aad = randomBytes(i % 3 === 0 ? 12 : 8);
      const len = Math.floor(Math.random() * 9001);
      const pt = randomBytes(len);

      // wasm seals, node opens.
      const sealed = wasmSeal(key, nonce, aad, pt);
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAAD(aad, { plaintextLength: len });
      d.setAuthTag(sealed.subarray(len));
      const opened = Buffer.concat([d.update(sealed.subarray(0, len)), d.final()]);
      if (!opened.equals(pt)) throw new Error(`node could not open wasm packet ${i} (len ${len})`);

      // node seals, wasm opens.
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      c.setAAD(aad, { plaintextLength: len });
      const ct = Buffer.concat([c.update(pt), c.final()]);
      const tag = c.getAuthTag();
      if (!Buffer.from(sealed.subarray(0, len)).equals(ct) || !Buffer.from(sealed.subarray(len)).equals(tag)) {
        throw new Error(`ciphertext differs from node:crypto for packet ${i} (len ${len})`);
      }
      const back = wasmOpen(key, nonce, aad, ct, tag);
      if (back === null || !Buffer.from(back).equals(pt)) throw new Error(`wasm could not open node packet ${i} (len ${len})`);
      checked++;
    }
    expect(checked).toBe(10_000);
  });
});
