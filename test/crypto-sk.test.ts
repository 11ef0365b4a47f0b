import { describe, expect, it } from 'vitest';
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { createSkProtector, type SkProtector } from '../control/crypto/sk.js';
import { encrInfo, integInfo, type EncrInfo, type IntegInfo } from '../control/crypto/algorithms.js';
import { EncrId, IntegId } from '../control/wire/constants.js';

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed + i * 13) & 0xff);
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
/** A stand-in for IKE header (28) + SK generic header (4). */
const aad = bytes(32, 0xa0);

interface Suite { name: string; encr: EncrInfo; integ?: IntegInfo }
const aeadSuites: Suite[] = [
  { name: 'AES-GCM-16-128', encr: encrInfo(EncrId.AES_GCM_16, 128)! },
  { name: 'AES-GCM-16-256', encr: encrInfo(EncrId.AES_GCM_16, 256)! },
  { name: 'AES-GCM-12-192', encr: encrInfo(EncrId.AES_GCM_12, 192)! },
  { name: 'AES-GCM-8-128', encr: encrInfo(EncrId.AES_GCM_8, 128)! },
  { name: 'ChaCha20-Poly1305', encr: encrInfo(EncrId.CHACHA20_POLY1305)! },
];
const cbcSuites: Suite[] = [128, 256].flatMap((bits) =>
  [IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256].map((id) => ({
    name: `AES-CBC-${bits} + ${integInfo(id)!.name}`, encr: encrInfo(EncrId.AES_CBC, bits)!, integ: integInfo(id)!,
  })));
const suites = [...aeadSuites, ...cbcSuites];

function pair(s: Suite, seed = 1): { sender: SkProtector; receiver: SkProtector; key: Uint8Array; integKey?: Uint8Array } {
  const key = bytes(s.encr.keyMaterialLength, seed);
  const integKey = s.integ ? bytes(s.integ.keyLength, seed + 100) : undefined;
  return {
    sender: createSkProtector(s.encr, s.integ, key, integKey),
    receiver: createSkProtector(s.encr, s.integ, key, integKey),
    key, integKey,
  };
}

describe.each(suites)('$name', (s) => {
  it('round-trips inner payloads of many lengths; body length is announced exactly', () => {
    const { sender, receiver } = pair(s);
    expect(sender.ivLength).toBe(s.encr.ivLength);
    expect(sender.icvLength).toBe(s.integ ? s.integ.icvLength : s.encr.icvLength);
    for (const n of [0, 1, 14, 15, 16, 17, 31, 100, 1000]) {
      const inner = bytes(n, n);
      const body = sender.seal(aad, inner);
      expect(body.length).toBe(sender.bodyLength(n));
      if (!s.encr.aead) expect((body.length - sender.ivLength - sender.icvLength) % 16).toBe(0);
      else expect(body.length).toBe(sender.ivLength + n + 1 + sender.icvLength); // no padding sent (RFC 7634 §3)
      const opened = receiver.open(aad, body);
      expect(opened.ok).toBe(true);
      if (opened.ok) expect(toHex(opened.value)).toBe(toHex(inner));
    }
  });

  it('a flipped bit anywhere in the AAD or the body fails open', () => {
    const { sender, receiver } = pair(s);
    const inner = bytes(40, 3);
    const body = sender.seal(aad, inner);
    for (let i = 0; i < aad.length; i++) {
      const a = aad.slice();
      a[i]! ^= 1 << (i % 8);
      expect(receiver.open(a, body).ok, `aad byte ${i}`).toBe(false);
    }
    for (let i = 0; i < body.length; i++) {
      const b = body.slice();
      b[i]! ^= 1 << (i % 8);
      expect(receiver.open(aad, b).ok, `body byte ${i}`).toBe(false);
    }
    expect(receiver.open(aad, body).ok).toBe(true);
  });

  it('malformed bodies give a typed failure, never an exception', () => {
    const { sender, receiver } = pair(s);
    const body = sender.seal(aad, bytes(20, 5));
    for (const bad of [new Uint8Array(0), body.subarray(0, sender.ivLength), body.subarray(0, body.length - 1), body.subarray(1),
      new Uint8Array(body.length + 16), new Uint8Array(sender.ivLength + sender.icvLength)]) {
      const r = receiver.open(aad, bad);
      expect(r.ok).toBe(false);
    }
    // a body made with another key
    const other = pair(s, 9).sender.seal(aad, bytes(20, 5));
    expect(receiver.open(aad, other).ok).toBe(false);
  });

  it('IVs differ between two seals of the same message', () => {
    const { sender } = pair(s);
    const a = sender.seal(aad, bytes(10, 1)), b = sender.seal(aad, bytes(10, 1));
    expect(toHex(a.subarray(0, sender.ivLength))).not.toBe(toHex(b.subarray(0, sender.ivLength)));
    expect(toHex(a)).not.toBe(toHex(b));
  });

  it('destroy: open fails and seal throws', () => {
    const { sender, receiver } = pair(s);
    const body = sender.seal(aad, bytes(10, 1));
    receiver.destroy();
    expect(receiver.open(aad, body).ok).toBe(false);
    sender.destroy();
    expect(() => sender.seal(aad, bytes(10, 1))).toThrow(/destroyed/);
  });
});

describe('AEAD bodies checked with node:crypto directly', () => {
  it.each(aeadSuites)('$name: nonce = salt | IV, AAD as given, plaintext = inner | Pad Length 0', (s) => {
    const { sender, key } = pair(s);
    const inner = bytes(77, 4);
    const body = sender.seal(aad, inner);
    const keyLength = s.encr.keyMaterialLength - 4;
    const iv = body.subarray(0, 8);
    const nonce = Buffer.concat([key.subarray(keyLength), iv]);
    const algorithm = s.encr.id === EncrId.CHACHA20_POLY1305 ? 'chacha20-poly1305' : `aes-${s.encr.keyLength}-gcm`;
    const d = createDecipheriv(algorithm as 'aes-128-gcm', key.subarray(0, keyLength), nonce, { authTagLength: s.encr.icvLength });
    d.setAAD(aad);
    d.setAuthTag(body.subarray(body.length - s.encr.icvLength));
    const pt = Buffer.concat([d.update(body.subarray(8, body.length - s.encr.icvLength)), d.final()]);
    expect(pt.toString('hex')).toBe(toHex(inner) + '00');
  });

  it.each(aeadSuites)('$name: accepts any Pad Length that fits, refuses one that does not', (s) => {
    const { receiver, key } = pair(s);
    const keyLength = s.encr.keyMaterialLength - 4;
    const algorithm = s.encr.id === EncrId.CHACHA20_POLY1305 ? 'chacha20-poly1305' : `aes-${s.encr.keyLength}-gcm`;
    const build = (plaintext: Uint8Array): Uint8Array => {
      const iv = bytes(8, 0x33);
      const c = createCipheriv(algorithm as 'aes-128-gcm', key.subarray(0, keyLength), Buffer.concat([key.subarray(keyLength), iv]), { authTagLength: s.encr.icvLength });
      c.setAAD(aad);
      const ct = Buffer.concat([c.update(plaintext), c.final()]);
      return new Uint8Array(Buffer.concat([iv, ct, c.getAuthTag()]));
    };
    const inner = bytes(9, 1);
    const padded = new Uint8Array([...inner, ...new Uint8Array(200).fill(0xee), 200]);
    const r = receiver.open(aad, build(padded));
    expect(r.ok && toHex(r.value)).toBe(toHex(inner));
    const overlong = new Uint8Array([...inner, 10]); // Pad Length 10 > 9 bytes before it
    expect(receiver.open(aad, build(overlong))).toEqual({ ok: false, error: 'SK payload Pad Length exceeds the plaintext' });
    // all padding, no payloads: valid and empty
    const r2 = receiver.open(aad, build(new Uint8Array([0, 0, 2])));
    expect(r2.ok && r2.value.length).toBe(0);
  });

  it('the IV is a 64-bit counter from a random start, wrapping modulo 2^64', () => {
    const s = aeadSuites[1]!;
    const start = new Uint8Array(8).fill(0xff);
    const sender = createSkProtector(s.encr, undefined, bytes(36, 1), undefined, { random: () => start.slice() });
    const ivs = [0, 1, 2].map(() => toHex(sender.seal(aad, bytes(5, 1)).subarray(0, 8)));
    expect(ivs).toEqual(['ffffffffffffffff', '0000000000000000', '0000000000000001']);
  });
});

describe('AES-CBC + HMAC bodies checked with node:crypto directly', () => {
  it.each(cbcSuites)('$name: ICV = HMAC(SK_a, aad | IV | ciphertext) truncated; minimal padding', (s) => {
    const { sender, key, integKey } = pair(s);
    const inner = bytes(21, 8);
    const body = sender.seal(aad, inner);
    const icvLength = s.integ!.icvLength;
    const signed = body.subarray(0, body.length - icvLength);
    const icv = createHmac(s.integ!.hash, integKey!).update(aad).update(signed).digest().subarray(0, icvLength);
    expect(toHex(body.subarray(body.length - icvLength))).toBe(icv.toString('hex'));
    const d = createDecipheriv(`aes-${s.encr.keyLength}-cbc`, key, body.subarray(0, 16)).setAutoPadding(false);
    const pt = Buffer.concat([d.update(signed.subarray(16)), d.final()]);
    // 21 + 10 padding + 1 Pad Length = 32
    expect(pt.length).toBe(32);
    expect(pt[31]).toBe(10);
    expect(pt.subarray(0, 21).toString('hex')).toBe(toHex(inner));
  });

  it.each(cbcSuites.slice(0, 2))('$name: accepts extra padding, refuses a Pad Length beyond the plaintext', (s) => {
    const { receiver, key, integKey } = pair(s);
    const build = (plaintext: Uint8Array): Uint8Array => {
      const iv = bytes(16, 0x44);
      const c = createCipheriv(`aes-${s.encr.keyLength}-cbc`, key, iv).setAutoPadding(false);
      const signed = Buffer.concat([iv, c.update(plaintext), c.final()]);
      const icv = createHmac(s.integ!.hash, integKey!).update(aad).update(signed).digest().subarray(0, s.integ!.icvLength);
      return new Uint8Array(Buffer.concat([signed, icv]));
    };
    const inner = bytes(5, 1);
    const r = receiver.open(aad, build(new Uint8Array([...inner, ...new Uint8Array(26), 26])));
    expect(r.ok && toHex(r.value)).toBe(toHex(inner));
    const bad = new Uint8Array(32);
    bad[31] = 40;
    expect(receiver.open(aad, build(bad))).toEqual({ ok: false, error: 'SK payload Pad Length exceeds the plaintext' });
  });

  it('draws a fresh random IV for every message', () => {
    const s = cbcSuites[0]!;
    const drawn: Uint8Array[] = [];
    const random = (n: number): Uint8Array => { const b = bytes(n, drawn.length * 31 + 1); drawn.push(b); return b; };
    const sender = createSkProtector(s.encr, s.integ, bytes(16, 1), bytes(32, 2), { random });
    const a = sender.seal(aad, bytes(3, 1)), b = sender.seal(aad, bytes(3, 1));
    expect(drawn.length).toBe(2);
    expect(toHex(a.subarray(0, 16))).toBe(toHex(drawn[0]!));
    expect(toHex(b.subarray(0, 16))).toBe(toHex(drawn[1]!));
  });
});

describe('construction checks', () => {
  it('refuses keys of the wrong size and mismatched transforms', () => {
    const gcm = encrInfo(EncrId.AES_GCM_16, 128)!, cbc = encrInfo(EncrId.AES_CBC, 128)!, sha = integInfo(IntegId.HMAC_SHA2_256_128)!;
    expect(() => createSkProtector(gcm, undefined, bytes(16, 1), undefined)).toThrow(/20 bytes/);
    expect(() => createSkProtector(gcm, sha, bytes(20, 1), bytes(32, 1))).toThrow(/AEAD/);
    expect(() => createSkProtector(cbc, undefined, bytes(16, 1), undefined)).toThrow(/integrity/);
    expect(() => createSkProtector(cbc, sha, bytes(16, 1), bytes(16, 1))).toThrow(/32-byte/);
    const p = createSkProtector(cbc, sha, bytes(16, 1), bytes(32, 1));
    expect(() => p.bodyLength(-1)).toThrow(RangeError);
    expect(p.bodyLength(0)).toBe(16 + 16 + 16);
    expect(p.bodyLength(15)).toBe(16 + 16 + 16);
    expect(p.bodyLength(16)).toBe(16 + 32 + 16);
  });

  it('copies its keys: wiping the caller\'s buffers does not break it', () => {
    const gcm = encrInfo(EncrId.AES_GCM_16, 256)!;
    const key = bytes(36, 1);
    const sender = createSkProtector(gcm, undefined, key, undefined);
    const receiver = createSkProtector(gcm, undefined, key.slice(), undefined);
    key.fill(0);
    const r = receiver.open(aad, sender.seal(aad, bytes(12, 1)));
    expect(r.ok).toBe(true);
  });
});
