import { VECTORS_DIR } from './support/vectors.js';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getDiffieHellman } from 'node:crypto';
import { createKeyExchange, keyExchangeLength } from '../control/crypto/keyexchange.js';
import { SUPPORTED_KE_GROUPS } from '../control/crypto/algorithms.js';
import { KeGroup } from '../control/wire/constants.js';

const VECTORS = VECTORS_DIR;
interface WycheproofFile<T> { numberOfTests: number; testGroups: { tests: T[] }[] }
interface XdhTest { tcId: number; flags: string[]; public: string; private: string; shared: string; result: 'valid' | 'acceptable' | 'invalid' }
function loadTests<T>(name: string): T[] {
  const file = JSON.parse(readFileSync(join(VECTORS, name), 'utf8')) as WycheproofFile<T>;
  const tests = file.testGroups.flatMap((g) => g.tests);
  expect(tests.length).toBe(file.numberOfTests);
  return tests;
}
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('key exchange lengths', () => {
  it('gives the KE data length of every supported group and nothing for others', () => {
    expect(SUPPORTED_KE_GROUPS.map((g) => keyExchangeLength(g))).toEqual([32, 64, 96, 256]);
    expect(keyExchangeLength(KeGroup.MODP_1024)).toBeUndefined();
    expect(() => createKeyExchange(KeGroup.CURVE448)).toThrow(/unsupported/);
  });

  it.each(SUPPORTED_KE_GROUPS.map((g) => [g]))('group %i: both sides agree, public values have the KE length', (group) => {
    const a = createKeyExchange(group);
    const b = createKeyExchange(group);
    expect(a.publicKey.length).toBe(keyExchangeLength(group));
    const sa = a.computeSharedSecret(b.publicKey);
    const sb = b.computeSharedSecret(a.publicKey);
    expect(sa.ok && sb.ok).toBe(true);
    if (!sa.ok || !sb.ok) return;
    expect(toHex(sa.value)).toBe(toHex(sb.value));
    expect(sa.value.length).toBe(group === KeGroup.ECP_384 ? 48 : group === KeGroup.MODP_2048 ? 256 : 32);
    // wrong lengths are refused, never thrown
    for (const bad of [new Uint8Array(0), b.publicKey.subarray(1), new Uint8Array(b.publicKey.length + 1)]) {
      expect(a.computeSharedSecret(bad).ok).toBe(false);
    }
    a.destroy();
    expect(a.computeSharedSecret(b.publicKey)).toEqual({ ok: false, error: 'key exchange destroyed' });
  });

  it('takes the private key from the injected random source', () => {
    const seen: number[] = [];
    const random = (n: number): Uint8Array => { seen.push(n); return new Uint8Array(n).fill(7); };
    const a = createKeyExchange(KeGroup.CURVE25519, { random });
    const b = createKeyExchange(KeGroup.CURVE25519, { privateKey: new Uint8Array(32).fill(7) });
    expect(seen).toEqual([32]);
    expect(toHex(a.publicKey)).toBe(toHex(b.publicKey));
  });
});

describe('Curve25519 (group 31, RFC 8031)', () => {
  it('RFC 7748 §6.1 test vector', () => {
    const alice = createKeyExchange(KeGroup.CURVE25519, { privateKey: hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a') });
    const bob = createKeyExchange(KeGroup.CURVE25519, { privateKey: hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb') });
    expect(toHex(alice.publicKey)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(bob.publicKey)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(alice.computeSharedSecret(bob.publicKey)).toEqual({ ok: true, value: hex(k) });
    expect(bob.computeSharedSecret(alice.publicKey)).toEqual({ ok: true, value: hex(k) });
  });

  // Policy: every Wycheproof case yields the expected X25519 output (twist
  // points, non-canonical u, the masked top bit), except an all-zero output,
  // which is refused (RFC 7748 §6.1 MAY check, adopted here).
  const tests = loadTests<XdhTest>('x25519_test.json');
  it(`Wycheproof x25519: ${tests.length} cases`, () => {
    const counts = { valid: 0, acceptable: 0, rejectedZero: 0 };
    for (const t of tests) {
      const kx = createKeyExchange(KeGroup.CURVE25519, { privateKey: hex(t.private) });
      const r = kx.computeSharedSecret(hex(t.public));
      const zero = /^(00)+$/.test(t.shared);
      expect(zero).toBe(t.flags.includes('ZeroSharedSecret'));
      if (zero) {
        expect(r.ok, `tc ${t.tcId}`).toBe(false);
        counts.rejectedZero++;
      } else {
        expect(r, `tc ${t.tcId}`).toEqual({ ok: true, value: hex(t.shared) });
        counts[t.result === 'valid' ? 'valid' : 'acceptable']++;
      }
    }
    expect(counts).toEqual({ valid: 264, acceptable: 254 - 31, rejectedZero: 31 });
  });
});

interface EcdhTest { tcId: number; flags: string[]; public: string; private: string; shared: string; result: 'valid' | 'acceptable' | 'invalid' }

/** Wycheproof private keys are ASN.1 integers: strip a sign octet, left-pad to the scalar size. */
function scalar(h: string, size: number): Uint8Array {
  const v = hex(h);
  const out = new Uint8Array(size);
  const start = Math.max(0, v.length - size);
  expect(v.subarray(0, start).every((b) => b === 0)).toBe(true);
  out.set(v.subarray(start), size - (v.length - start));
  return out;
}

describe.each([
  { group: KeGroup.ECP_256, file: 'ecdh_secp256r1_ecpoint_test.json', size: 32 },
  { group: KeGroup.ECP_384, file: 'ecdh_secp384r1_ecpoint_test.json', size: 48 },
])('ECP group $group (RFC 5903), Wycheproof $file', ({ group, file, size }) => {
  const tests = loadTests<EcdhTest>(file);
  it(`${tests.length} cases: valid points agree, invalid and compressed points are refused`, () => {
    let agreed = 0, refused = 0;
    for (const t of tests) {
      const kx = createKeyExchange(group, { privateKey: scalar(t.private, size) });
      const point = hex(t.public);
      // IKE carries x | y: drop the SEC1 0x04 prefix of uncompressed points; anything else goes in as is.
      const keData = point.length === 1 + 2 * size && point[0] === 4 ? point.subarray(1) : point;
      const r = kx.computeSharedSecret(keData);
      if (t.result === 'valid') {
        expect(r, `tc ${t.tcId}`).toEqual({ ok: true, value: hex(t.shared) });
        agreed++;
      } else {
        // the only "acceptable" case is a compressed point, which IKE never carries
        if (t.result === 'acceptable') expect(t.flags.some((f) => f.startsWith('Compressed'))).toBe(true);
        expect(r.ok, `tc ${t.tcId} ${t.flags.join(',')}`).toBe(false);
        refused++;
      }
    }
    expect(agreed + refused).toBe(tests.length);
    expect(refused).toBe(tests.filter((t) => t.result !== 'valid').length);
  });
});

describe('ECP RFC 5903 §8 test data in IKEv2 form', () => {
  it.each([
    {
      group: KeGroup.ECP_256,
      i: 'C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433',
      kei: 'DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180 5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3',
      r: 'C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53',
      ker: 'D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63 56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB',
      girx: 'D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE',
    },
    {
      group: KeGroup.ECP_384,
      i: '099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655 E35B5380 41E649EE 3FAEF896 783AB194',
      kei: '667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA 9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C',
      r: '41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942 E0308312 916B8ED2 960E4BD5 5A7448FC',
      ker: 'E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571 DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C',
      girx: '11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4 D6031355 69B9E9D0 9CF5D4A2 70F59746',
    },
  ])('group $group', ({ group, i, kei, r, ker, girx }) => {
    const initiator = createKeyExchange(group, { privateKey: hex(i) });
    const responder = createKeyExchange(group, { privateKey: hex(r) });
    expect(toHex(initiator.publicKey)).toBe(toHex(hex(kei)));
    expect(toHex(responder.publicKey)).toBe(toHex(hex(ker)));
    expect(initiator.computeSharedSecret(responder.publicKey)).toEqual({ ok: true, value: hex(girx) });
    expect(responder.computeSharedSecret(initiator.publicKey)).toEqual({ ok: true, value: hex(girx) });
    // a coordinate flipped by one bit is off the curve
    const bad = hex(ker);
    bad[bad.length - 1]! ^= 1;
    expect(initiator.computeSharedSecret(bad).ok).toBe(false);
  });

  // (0, y) is on both curves; the same point written with x + p (= p) must be refused, not reduced mod p.
  it.each([
    { group: KeGroup.ECP_256, size: 32, p: 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n,
      b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn },
    { group: KeGroup.ECP_384, size: 48, p: 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n,
      b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn },
  ])('group $group: a coordinate >= p is refused', ({ group, size, p, b }) => {
    const modpow = (x: bigint, e: bigint, m: bigint): bigint => {
      let r = 1n;
      for (x %= m; e > 0n; e >>= 1n, x = (x * x) % m) if (e & 1n) r = (r * x) % m;
      return r;
    };
    const y = modpow(b, (p + 1n) / 4n, p); // p = 3 mod 4
    expect((y * y) % p).toBe(b);
    const enc = (x: bigint, yy: bigint): Uint8Array => hex(x.toString(16).padStart(2 * size, '0') + yy.toString(16).padStart(2 * size, '0'));
    const kx = createKeyExchange(group);
    expect(kx.computeSharedSecret(enc(0n, y)).ok).toBe(true);
    expect(kx.computeSharedSecret(enc(0n, p - y)).ok).toBe(true);
    expect(kx.computeSharedSecret(enc(p, y)).ok).toBe(false);
    expect(kx.computeSharedSecret(enc(0n, 0n)).ok).toBe(false);
  });

  it('refuses private keys outside [1, n-1]', () => {
    expect(() => createKeyExchange(KeGroup.ECP_256, { privateKey: new Uint8Array(32) })).toThrow(/\[1, n-1\]/);
    expect(() => createKeyExchange(KeGroup.ECP_256, { privateKey: new Uint8Array(32).fill(0xff) })).toThrow(/\[1, n-1\]/);
    expect(() => createKeyExchange(KeGroup.ECP_384, { privateKey: new Uint8Array(32).fill(1) })).toThrow();
  });

  it('redraws a random scalar that is out of range', () => {
    const draws = [new Uint8Array(32).fill(0xff), new Uint8Array(32), new Uint8Array(32).fill(3)];
    const kx = createKeyExchange(KeGroup.ECP_256, { random: () => draws.shift()! });
    expect(draws.length).toBe(0);
    expect(toHex(kx.publicKey)).toBe(toHex(createKeyExchange(KeGroup.ECP_256, { privateKey: new Uint8Array(32).fill(3) }).publicKey));
  });
});

describe('MODP-2048 (group 14, RFC 3526)', () => {
  const p = getDiffieHellman('modp14').getPrime();
  const be = (n: bigint): Uint8Array => hex(n.toString(16).padStart(512, '0'));
  const P = BigInt('0x' + p.toString('hex'));
  const modpow = (b: bigint, e: bigint, m: bigint): bigint => {
    let r = 1n;
    for (b %= m; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
    return r;
  };

  it('uses the RFC 3526 prime', () => {
    // RFC 3526 §3, 2048-bit MODP Group: 2^2048 - 2^1984 - 1 + 2^64 * ( [2^1918 pi] + 124476 )
    const rfc3526 = hex(`
      FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
      EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
      EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
      83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
      E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
      15728E5A 8AACAA68 FFFFFFFF FFFFFFFF`);
    expect(toHex(p)).toBe(toHex(rfc3526));
  });

  it('public value and shared secret are g^x mod p left-padded to 256 bytes', () => {
    const x = 0x1234567890abcdefn, y = 0xfedcba0987654321n;
    const a = createKeyExchange(KeGroup.MODP_2048, { privateKey: hex(x.toString(16)) });
    expect(toHex(a.publicKey)).toBe(toHex(be(modpow(2n, x, P))));
    // a peer value with leading zero octets, and the shared secret computed independently
    const peer = 5n;
    const r = a.computeSharedSecret(be(peer));
    expect(r).toEqual({ ok: true, value: be(modpow(peer, x, P)) });
    const b = createKeyExchange(KeGroup.MODP_2048, { privateKey: hex(y.toString(16)) });
    expect(b.computeSharedSecret(a.publicKey)).toEqual({ ok: true, value: be(modpow(2n, x * y, P)) });
  });

  it('rejects peer values <= 1 and >= p-1', () => {
    const a = createKeyExchange(KeGroup.MODP_2048);
    for (const v of [0n, 1n, P - 1n, P, P + 1n, (1n << 2048n) - 1n]) {
      const r = a.computeSharedSecret(be(v));
      expect(r.ok, v.toString(16).slice(0, 8)).toBe(false);
    }
    expect(a.computeSharedSecret(be(2n)).ok).toBe(true);
    expect(a.computeSharedSecret(be(P - 2n)).ok).toBe(true);
  });

  it('refuses private exponents outside (1, p-1)', () => {
    expect(() => createKeyExchange(KeGroup.MODP_2048, { privateKey: new Uint8Array([1]) })).toThrow();
    expect(() => createKeyExchange(KeGroup.MODP_2048, { privateKey: p })).toThrow();
  });
});
