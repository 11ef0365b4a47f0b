// AES-GCM wasm kernels (wasm/aes.ts, wasm/ghash.ts, wasm/gcm.ts) against
// Wycheproof and node:crypto. ESP uses GCM as RFC 4106 defines it: 12-byte
// nonce, 16/12/8-byte ICV that is a prefix of the full tag (RFC 4106 §3).
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { loadVectors } from './support/vectors.js';

const ROOT = new URL('../', import.meta.url);
const WASM = new URL('wasm/build/esp.wasm', ROOT);
const SOURCES = ['wasm/aes.ts', 'wasm/ghash.ts', 'wasm/gcm.ts', 'wasm/index.ts'];

interface GcmExports {
  memory: WebAssembly.Memory;
  scratchPtr(): number;
  scratchSize(): number;
  gcmCtxSize(): number;
  gcmInit(ctx: number, key: number, keyLen: number): void;
  gcmSeal(ctx: number, nonce: number, aad: number, aadLen: number, data: number, dataLen: number, tag: number, tagLen: number): void;
  gcmOpen(ctx: number, nonce: number, aad: number, aadLen: number, data: number, dataLen: number, tag: number, tagLen: number): number;
  gcmWipe(ctx: number): void;
}

let wasm: GcmExports;
// Scratch-region layout for the calls below.
let CTX = 0, KEY = 0, NONCE = 0, AAD = 0, TAG = 0, DATA = 0;
const MAX_AAD = 1024;
const MAX_DATA = 65536;

function checkFits(aad: Uint8Array, data: Uint8Array): void {
  if (aad.length > MAX_AAD || data.length > MAX_DATA) throw new Error('test input larger than its scratch slot');
}

function stale(): boolean {
  try {
    const built = statSync(WASM).mtimeMs;
    return SOURCES.some((s) => statSync(new URL(s, ROOT)).mtimeMs > built);
  } catch {
    return true;
  }
}

beforeAll(async () => {
  if (stale()) execFileSync('npm', ['run', '--silent', 'build:wasm'], { cwd: ROOT, stdio: 'pipe' });
  const { instance } = await WebAssembly.instantiate(readFileSync(WASM), {
    env: { abort: () => { throw new Error('wasm abort'); } },
  });
  wasm = instance.exports as unknown as GcmExports;
  const s = wasm.scratchPtr();
  CTX = s;
  KEY = CTX + wasm.gcmCtxSize();
  NONCE = KEY + 32;
  AAD = NONCE + 16;
  TAG = AAD + MAX_AAD;
  DATA = TAG + 16;
  expect(DATA + MAX_DATA).toBeLessThanOrEqual(s + wasm.scratchSize());
});

const mem = (): Uint8Array => new Uint8Array(wasm.memory.buffer);
const cipherName = (key: Uint8Array): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' =>
  `aes-${key.length * 8}-gcm` as 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm';

/** Seals in wasm; returns ciphertext and tag copies. */
function wasmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, tagLen: number) {
  checkFits(aad, pt);
  const m = mem();
  m.set(key, KEY);
  m.set(nonce, NONCE);
  m.set(aad, AAD);
  m.set(pt, DATA);
  wasm.gcmInit(CTX, KEY, key.length);
  wasm.gcmSeal(CTX, NONCE, AAD, aad.length, DATA, pt.length, TAG, tagLen);
  return { ct: m.slice(DATA, DATA + pt.length), tag: m.slice(TAG, TAG + tagLen) };
}

/** Opens in wasm; returns the verdict and whatever is at DATA afterwards. */
function wasmOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array) {
  checkFits(aad, ct);
  const m = mem();
  m.set(key, KEY);
  m.set(nonce, NONCE);
  m.set(aad, AAD);
  m.set(ct, DATA);
  m.set(tag, TAG);
  wasm.gcmInit(CTX, KEY, key.length);
  const ok = wasm.gcmOpen(CTX, NONCE, AAD, aad.length, DATA, ct.length, TAG, tag.length) === 1;
  return { ok, data: m.slice(DATA, DATA + ct.length) };
}

function nodeSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array) {
  const c = createCipheriv(cipherName(key), key, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(pt), c.final()]);
  return { ct, tag: c.getAuthTag() };
}

function nodeOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Buffer | null {
  const d = createDecipheriv(cipherName(key), key, nonce, { authTagLength: tag.length });
  d.setAAD(aad);
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(ct), d.final()]);
  } catch {
    return null;
  }
}

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

interface WycheproofTest {
  tcId: number; comment: string; flags: string[];
  key: string; iv: string; aad: string; msg: string; ct: string; tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface WycheproofGroup { ivSize: number; keySize: number; tagSize: number; tests: WycheproofTest[] }

describe('AES-GCM wasm: Wycheproof aes_gcm_test.json (96-bit IVs, the ESP nonce size)', () => {
  const file = loadVectors<{ testGroups: WycheproofGroup[] }>('aes_gcm_test.json');
  // ESP nonces are always 96 bits (RFC 4106 §4); other IV sizes need GHASH-derived
  // counters, which this kernel does not implement. All three key sizes are supported.
  const groups = file.testGroups.filter((g) => g.ivSize === 96);

  it('valid vectors seal to exactly the expected ciphertext and tag, and open back', () => {
    const perKey: Record<number, number> = { 128: 0, 192: 0, 256: 0 };
    for (const g of groups) {
      for (const t of g.tests.filter((x) => x.result === 'valid')) {
        const key = hex(t.key), iv = hex(t.iv), aad = hex(t.aad), msg = hex(t.msg);
        const sealed = wasmSeal(key, iv, aad, msg, g.tagSize / 8);
        expect(Buffer.from(sealed.ct).toString('hex'), `tcId ${t.tcId}`).toBe(t.ct);
        expect(Buffer.from(sealed.tag).toString('hex'), `tcId ${t.tcId}`).toBe(t.tag);
        const opened = wasmOpen(key, iv, aad, hex(t.ct), hex(t.tag));
        expect(opened.ok, `tcId ${t.tcId}`).toBe(true);
        expect(Buffer.from(opened.data).toString('hex'), `tcId ${t.tcId}`).toBe(t.msg);
        perKey[g.keySize] = (perKey[g.keySize] ?? 0) + 1;
      }
    }
    expect(perKey).toEqual({ 128: 40, 192: 37, 256: 39 });
  });

  it('invalid vectors are rejected by gcmOpen and leave the data untouched', () => {
    const perKey: Record<number, number> = { 128: 0, 192: 0, 256: 0 };
    for (const g of groups) {
      for (const t of g.tests.filter((x) => x.result === 'invalid')) {
        const ct = hex(t.ct);
        const opened = wasmOpen(hex(t.key), hex(t.iv), hex(t.aad), ct, hex(t.tag));
        expect(opened.ok, `tcId ${t.tcId} ${t.comment}`).toBe(false);
        expect(Buffer.from(opened.data).equals(ct), `tcId ${t.tcId}`).toBe(true);
        perKey[g.keySize] = (perKey[g.keySize] ?? 0) + 1;
      }
    }
    expect(perKey).toEqual({ 128: 27, 192: 27, 256: 27 });
  });

  it('the file holds no "acceptable" 96-bit-IV vectors that would escape both checks', () => {
    expect(groups.flatMap((g) => g.tests).filter((t) => t.result === 'acceptable')).toEqual([]);
    expect(groups.reduce((n, g) => n + g.tests.length, 0)).toBe(197);
  });
});

describe('AES-GCM wasm against node:crypto (random cases)', () => {
  const KEY_LENS = [16, 24, 32];
  const TAG_LENS = [16, 12, 8];

  /** Plaintext lengths: half near block and batch boundaries, half spread to 9000. */
  function randomLength(i: number): number {
    if (i % 2 === 0) return Math.floor(Math.random() * 9001);
    return Math.floor(Math.random() * 300);
  }

  it('10,000 cases: wasm seals -> node opens, node seals -> wasm opens (AES-128/192/256, ICV 16/12/8)', () => {
    const counts = { keys: { 16: 0, 24: 0, 32: 0 } as Record<number, number>, tags: { 16: 0, 12: 0, 8: 0 } as Record<number, number>, rejected: 0 };
    for (let i = 0; i < 10_000; i++) {
      const keyLen = KEY_LENS[i % 3]!;
      const tagLen = TAG_LENS[Math.floor(i / 3) % 3]!;
      const key = randomBytes(keyLen);
      const nonce = randomBytes(12);
      const aad = randomBytes(Math.floor(Math.random() * 33));
      const pt = randomBytes(randomLength(i));

      // wasm seals, node opens; the truncated ICV is the prefix of node's full tag.
      const sealed = wasmSeal(key, nonce, aad, pt, tagLen);
      const reference = nodeSeal(key, nonce, aad, pt);
      expect(Buffer.from(sealed.ct).equals(reference.ct)).toBe(true);
      expect(Buffer.from(sealed.tag).equals(reference.tag.subarray(0, tagLen))).toBe(true);
      const back = nodeOpen(key, nonce, aad, sealed.ct, sealed.tag);
      expect(back !== null && back.equals(pt)).toBe(true);

      // node seals, wasm opens.
      const nonce2 = randomBytes(12);
      const byNode = nodeSeal(key, nonce2, aad, pt);
      const opened = wasmOpen(key, nonce2, aad, byNode.ct, byNode.tag.subarray(0, tagLen));
      expect(opened.ok).toBe(true);
      expect(Buffer.from(opened.data).equals(pt)).toBe(true);

      // Every 8th case: one flipped bit anywhere in AAD, ciphertext or ICV is rejected.
      if (i % 8 === 0) {
        const ct = Buffer.from(byNode.ct), tag = Buffer.from(byNode.tag.subarray(0, tagLen)), aad2 = Buffer.from(aad);
        const fields = [ct, tag, aad2].filter((f) => f.length > 0);
        const f = fields[i % fields.length]!;
        f[Math.floor(Math.random() * f.length)]! ^= 1 << Math.floor(Math.random() * 8);
        const bad = wasmOpen(key, nonce2, aad2, ct, tag);
        expect(bad.ok).toBe(false);
        expect(Buffer.from(bad.data).equals(ct)).toBe(true);
        counts.rejected++;
      }
      counts.keys[keyLen] = (counts.keys[keyLen] ?? 0) + 1;
      counts.tags[tagLen] = (counts.tags[tagLen] ?? 0) + 1;
    }
    expect(counts.keys).toEqual({ 16: 3334, 24: 3333, 32: 3333 });
    expect(counts.tags).toEqual({ 16: 3334, 12: 3333, 8: 3333 });
    expect(counts.rejected).toBe(1250);
  });

  it('lengths around every block and eight-block batch boundary match node:crypto', () => {
    const key = randomBytes(16);
    for (let n = 0; n <= 300; n++) {
      for (const aadLen of [0, 1, 8, 12, 15, 16, 17, 32, 33, 128, 129]) {
        const nonce = randomBytes(12), aad = randomBytes(aadLen), pt = randomBytes(n);
        const sealed = wasmSeal(key, nonce, aad, pt, 16);
        const reference = nodeSeal(key, nonce, aad, pt);
        expect(Buffer.from(sealed.ct).equals(reference.ct), `len ${n} aad ${aadLen}`).toBe(true);
        expect(Buffer.from(sealed.tag).equals(reference.tag), `len ${n} aad ${aadLen}`).toBe(true);
      }
    }
  });

  it('maximum-size ESP payloads (64 KiB) match node:crypto in both directions', () => {
    for (const keyLen of [16, 32]) {
      const key = randomBytes(keyLen), nonce = randomBytes(12), aad = randomBytes(12);
      const pt = randomBytes(65519);
      const sealed = wasmSeal(key, nonce, aad, pt, 16);
      const reference = nodeSeal(key, nonce, aad, pt);
      expect(Buffer.from(sealed.ct).equals(reference.ct)).toBe(true);
      expect(Buffer.from(sealed.tag).equals(reference.tag)).toBe(true);
      const opened = wasmOpen(key, nonce, aad, reference.ct, reference.tag);
      expect(opened.ok).toBe(true);
      expect(Buffer.from(opened.data).equals(pt)).toBe(true);
    }
  });

  it('works on unaligned buffers (ESP packets sit at any offset)', () => {
    const base = DATA + MAX_DATA + 64;
    for (let i = 0; i < 64; i++) {
      const key = randomBytes(i % 2 ? 32 : 16), nonce = randomBytes(12), aad = randomBytes(i % 13), pt = randomBytes(i * 37);
      // Distinct odd offsets for every input.
      const keyAt = base + 1, nonceAt = base + 67, aadAt = base + 131, tagAt = base + 197, dataAt = base + 259 + (i % 16);
      const m = mem();
      m.set(key, keyAt);
      m.set(nonce, nonceAt);
      m.set(aad, aadAt);
      m.set(pt, dataAt);
      wasm.gcmInit(CTX, keyAt, key.length);
      wasm.gcmSeal(CTX, nonceAt, aadAt, aad.length, dataAt, pt.length, tagAt, 12);
      const reference = nodeSeal(key, nonce, aad, pt);
      expect(Buffer.from(m.subarray(dataAt, dataAt + pt.length)).equals(reference.ct)).toBe(true);
      expect(Buffer.from(m.subarray(tagAt, tagAt + 12)).equals(reference.tag.subarray(0, 12))).toBe(true);
      expect(wasm.gcmOpen(CTX, nonceAt, aadAt, aad.length, dataAt, pt.length, tagAt, 12)).toBe(1);
      expect(Buffer.from(m.subarray(dataAt, dataAt + pt.length)).equals(pt)).toBe(true);
    }
  });

  it('two contexts used alternately do not disturb each other (per-SA state stays in its context)', () => {
    const CTX2 = DATA + MAX_DATA + 1024;
    const keyA = randomBytes(16), keyB = randomBytes(32);
    const m = mem();
    m.set(keyA, KEY);
    wasm.gcmInit(CTX, KEY, 16);
    m.set(keyB, KEY);
    wasm.gcmInit(CTX2, KEY, 32);
    for (let i = 0; i < 50; i++) {
      const [ctx, key] = i % 2 ? [CTX2, keyB] : [CTX, keyA];
      const nonce = randomBytes(12), aad = randomBytes(8), pt = randomBytes(100 + i * 29);
      m.set(nonce, NONCE);
      m.set(aad, AAD);
      m.set(pt, DATA);
      wasm.gcmSeal(ctx, NONCE, AAD, 8, DATA, pt.length, TAG, 16);
      const reference = nodeSeal(key, nonce, aad, pt);
      expect(Buffer.from(m.subarray(DATA, DATA + pt.length)).equals(reference.ct)).toBe(true);
      expect(Buffer.from(m.subarray(TAG, TAG + 16)).equals(reference.tag)).toBe(true);
    }
  });

  it('one context seals many packets (key setup is not redone per call)', () => {
    const key = randomBytes(32);
    const m = mem();
    m.set(key, KEY);
    wasm.gcmInit(CTX, KEY, 32);
    for (let i = 0; i < 200; i++) {
      const nonce = randomBytes(12), aad = randomBytes(8), pt = randomBytes(i * 7);
      m.set(nonce, NONCE);
      m.set(aad, AAD);
      m.set(pt, DATA);
      wasm.gcmSeal(CTX, NONCE, AAD, 8, DATA, pt.length, TAG, 16);
      const reference = nodeSeal(key, nonce, aad, pt);
      expect(Buffer.from(m.subarray(DATA, DATA + pt.length)).equals(reference.ct)).toBe(true);
      expect(Buffer.from(m.subarray(TAG, TAG + 16)).equals(reference.tag)).toBe(true);
    }
  });
});

describe('AES block function of the GCM kernel against node:crypto AES-ECB (random keys)', () => {
  /**
   * E_K of the counter blocks nonce ‖ [2..n+1]32 (SP 800-38D §7.1 GCTR from
   * inc32(J0)), as node:crypto's AES-ECB computes them.
   */
  function ecbCounterBlocks(key: Uint8Array, nonce: Uint8Array, blocks: number): Buffer {
    const input = Buffer.alloc(blocks * 16);
    for (let i = 0; i < blocks; i++) {
      input.set(nonce, i * 16);
      input.writeUInt32BE(i + 2, i * 16 + 12);
    }
    const c = createCipheriv(`aes-${key.length * 8}-ecb` as 'aes-128-ecb', key, null);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(input), c.final()]);
  }

  it('3,000 random keys and nonces: the keystream of every lane of every eight-block batch is AES-ECB of its counter block', () => {
    // Sealing zeros returns the keystream itself; 1..40 blocks cover the first
    // batch (seven data blocks beside E_K(J0)) and up to five further batches
    // at every fill, so each lane of the bitsliced state is compared.
    let compared = 0;
    for (let i = 0; i < 3000; i++) {
      const key = randomBytes([16, 24, 32][i % 3]!);
      const nonce = randomBytes(12);
      const blocks = 1 + (i % 40);
      const { ct } = wasmSeal(key, nonce, new Uint8Array(0), new Uint8Array(blocks * 16), 16);
      expect(Buffer.from(ct).equals(ecbCounterBlocks(key, nonce, blocks)), `key ${key.toString('hex')}`).toBe(true);
      compared += blocks;
    }
    expect(compared).toBe(75 * (40 * 41) / 2);
  });

  it('keys of all-zero, all-one and single-bit patterns expand and encrypt like node:crypto (key schedule S-box inputs at the extremes)', () => {
    const keys: Buffer[] = [];
    for (const len of [16, 24, 32]) {
      keys.push(Buffer.alloc(len, 0), Buffer.alloc(len, 0xff));
      for (let bit = 0; bit < len * 8; bit += 7) {
        const k = Buffer.alloc(len, 0);
        k[bit >> 3] = 1 << (bit & 7);
        keys.push(k);
      }
    }
    for (const key of keys) {
      for (const nonce of [Buffer.alloc(12, 0), Buffer.alloc(12, 0xff), randomBytes(12)]) {
        const { ct } = wasmSeal(key, nonce, new Uint8Array(0), new Uint8Array(17 * 16), 16);
        expect(Buffer.from(ct).equals(ecbCounterBlocks(key, nonce, 17)), `key ${key.toString('hex')}`).toBe(true);
      }
    }
    expect(keys.length).toBe(6 + 19 + 28 + 37);
  });
});

describe('AES-GCM wasm: input checks and key wiping', () => {
  it('gcmOpen rejects ICV lengths other than 16, 12, 8 and negative lengths without touching data', () => {
    const key = randomBytes(16), nonce = randomBytes(12), pt = randomBytes(40);
    const { ct, tag } = nodeSeal(key, nonce, new Uint8Array(0), pt);
    const m = mem();
    m.set(key, KEY);
    wasm.gcmInit(CTX, KEY, 16);
    m.set(nonce, NONCE);
    m.set(tag, TAG);
    for (const tagLen of [0, 4, 7, 9, 13, 15, 17, -1]) {
      m.set(ct, DATA);
      expect(wasm.gcmOpen(CTX, NONCE, AAD, 0, DATA, ct.length, TAG, tagLen)).toBe(0);
      expect(Buffer.from(m.subarray(DATA, DATA + ct.length)).equals(ct)).toBe(true);
    }
    m.set(ct, DATA);
    expect(wasm.gcmOpen(CTX, NONCE, AAD, -1, DATA, ct.length, TAG, 16)).toBe(0);
    expect(wasm.gcmOpen(CTX, NONCE, AAD, 0, DATA, -16, TAG, 16)).toBe(0);
    expect(wasm.gcmOpen(CTX, NONCE, AAD, 0, DATA, ct.length, TAG, 16)).toBe(1);
    expect(Buffer.from(m.subarray(DATA, DATA + ct.length)).equals(pt)).toBe(true);
  });

  it('gcmInit and gcmSeal trap on bad key or ICV lengths', () => {
    expect(() => wasm.gcmInit(CTX, KEY, 20)).toThrow(WebAssembly.RuntimeError);
    wasm.gcmInit(CTX, KEY, 16);
    expect(() => wasm.gcmSeal(CTX, NONCE, AAD, 0, DATA, 16, TAG, 10)).toThrow(WebAssembly.RuntimeError);
    expect(() => wasm.gcmSeal(CTX, NONCE, AAD, 0, DATA, -1, TAG, 16)).toThrow(WebAssembly.RuntimeError);
  });

  it('gcmWipe zeroes the whole context, after which it neither seals nor opens', () => {
    const size = wasm.gcmCtxSize();
    expect(size % 16).toBe(0);
    const key = randomBytes(32);
    key[0] = 0xa5;
    mem().set(key, KEY); // KEY sits right after the context
    wasm.gcmInit(CTX, KEY, 32);
    const ctxBytes = (): Uint8Array => mem().subarray(CTX, CTX + size);
    expect(ctxBytes().some((b) => b !== 0)).toBe(true);
    wasm.gcmWipe(CTX);
    expect(ctxBytes().every((b) => b === 0)).toBe(true);
    // The bytes just past the context are not the context's to clear.
    expect(mem()[CTX + size]).toBe(0xa5);
    expect(() => wasm.gcmSeal(CTX, NONCE, AAD, 0, DATA, 16, TAG, 16)).toThrow(WebAssembly.RuntimeError);
    expect(wasm.gcmOpen(CTX, NONCE, AAD, 0, DATA, 16, TAG, 16)).toBe(0);
  });
});
