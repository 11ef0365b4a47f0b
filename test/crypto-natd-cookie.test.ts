import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { natDetectionHash } from '../control/crypto/natd.js';
import { COOKIE_LENGTH, createCookieSecret, makeCookie, verifyCookie } from '../control/crypto/cookie.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha1 = (s: string): string => createHash('sha1').update(Buffer.from(s, 'hex')).digest('hex');

describe('NAT detection hash (RFC 7296 §2.23)', () => {
  const spiI = hex('0102030405060708'), spiR = hex('a1a2a3a4a5a6a7a8'), zero = new Uint8Array(8);

  it('is SHA-1(SPIi | SPIr | IP | Port) for IPv4 and IPv6', () => {
    expect(toHex(natDetectionHash(spiI, spiR, '192.0.2.1', 500))).toBe(sha1('0102030405060708' + 'a1a2a3a4a5a6a7a8' + 'c0000201' + '01f4'));
    expect(toHex(natDetectionHash(spiI, zero, '198.51.100.7', 4500))).toBe(sha1('0102030405060708' + '0000000000000000' + 'c6336407' + '1194'));
    expect(toHex(natDetectionHash(spiI, spiR, '2001:db8::1', 65535)))
      .toBe(sha1('0102030405060708' + 'a1a2a3a4a5a6a7a8' + '20010db8000000000000000000000001' + 'ffff'));
    expect(natDetectionHash(spiI, spiR, '192.0.2.1', 500).length).toBe(20);
  });

  it('hashes an IPv4-mapped IPv6 address as the IPv4 address on the wire', () => {
    expect(toHex(natDetectionHash(spiI, spiR, '::ffff:192.0.2.1', 500))).toBe(toHex(natDetectionHash(spiI, spiR, '192.0.2.1', 500)));
  });

  it('each input changes the hash', () => {
    const base = toHex(natDetectionHash(spiI, spiR, '192.0.2.1', 500));
    expect(toHex(natDetectionHash(spiR, spiI, '192.0.2.1', 500))).not.toBe(base);
    expect(toHex(natDetectionHash(spiI, spiR, '192.0.2.2', 500))).not.toBe(base);
    expect(toHex(natDetectionHash(spiI, spiR, '192.0.2.1', 4500))).not.toBe(base);
  });

  it('refuses bad SPIs, ports and addresses (programmer errors)', () => {
    expect(() => natDetectionHash(spiI.subarray(1), spiR, '192.0.2.1', 500)).toThrow(RangeError);
    expect(() => natDetectionHash(spiI, spiR, '192.0.2.1', 70000)).toThrow(RangeError);
    expect(() => natDetectionHash(spiI, spiR, 'gw.example', 500)).toThrow(TypeError);
  });
});

describe('stateless COOKIE (RFC 7296 §2.6)', () => {
  const nonceI = hex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff');
  const spiI = hex('0102030405060708');
  const counting = (): ((n: number) => Uint8Array) => {
    let k = 0;
    return (n) => new Uint8Array(n).fill(++k);
  };

  it('is VersionID | SHA-256(Ni | IPi | SPIi | secret)', () => {
    const secret = createCookieSecret(counting()); // first secret: 32 x 0x01
    const cookie = makeCookie(secret, nonceI, '192.0.2.1', spiI);
    expect(cookie.length).toBe(COOKIE_LENGTH);
    const expected = createHash('sha256').update(nonceI).update(hex('c0000201')).update(spiI).update(new Uint8Array(32).fill(1)).digest('hex');
    expect(toHex(cookie)).toBe('00000000' + expected);
    expect(verifyCookie(secret, cookie, nonceI, '192.0.2.1', spiI)).toBe(true);
    expect(verifyCookie(secret, cookie, nonceI, hex('c0000201'), spiI)).toBe(true);
  });

  it('binds the cookie to Ni, IPi and SPIi', () => {
    const secret = createCookieSecret();
    const cookie = makeCookie(secret, nonceI, '2001:db8::5', spiI);
    expect(verifyCookie(secret, cookie, nonceI, '2001:db8::5', spiI)).toBe(true);
    const otherNonce = nonceI.slice();
    otherNonce[0]! ^= 1;
    expect(verifyCookie(secret, cookie, otherNonce, '2001:db8::5', spiI)).toBe(false);
    expect(verifyCookie(secret, cookie, nonceI, '2001:db8::6', spiI)).toBe(false);
    expect(verifyCookie(secret, cookie, nonceI, '2001:db8::5', hex('0102030405060709'))).toBe(false);
    // another responder's secret
    expect(verifyCookie(createCookieSecret(), cookie, nonceI, '2001:db8::5', spiI)).toBe(false);
  });

  it('accepts the current and the previous secret across a rotation, not older ones', () => {
    const secret = createCookieSecret(counting());
    const c0 = makeCookie(secret, nonceI, '192.0.2.1', spiI);
    secret.rotate();
    expect(secret.version).toBe(1);
    const c1 = makeCookie(secret, nonceI, '192.0.2.1', spiI);
    expect(toHex(c1.subarray(0, 4))).toBe('00000001');
    expect(verifyCookie(secret, c0, nonceI, '192.0.2.1', spiI)).toBe(true);
    expect(verifyCookie(secret, c1, nonceI, '192.0.2.1', spiI)).toBe(true);
    secret.rotate();
    expect(verifyCookie(secret, c0, nonceI, '192.0.2.1', spiI)).toBe(false);
    expect(verifyCookie(secret, c1, nonceI, '192.0.2.1', spiI)).toBe(true);
    // a cookie whose version is relabelled to the current one does not verify
    const relabelled = c1.slice();
    relabelled[3] = 2;
    expect(verifyCookie(secret, relabelled, nonceI, '192.0.2.1', spiI)).toBe(false);
  });

  it('malformed cookies are false, never thrown', () => {
    const secret = createCookieSecret();
    const cookie = makeCookie(secret, nonceI, '192.0.2.1', spiI);
    for (const bad of [new Uint8Array(0), cookie.subarray(0, 4), cookie.subarray(0, 35), new Uint8Array([...cookie, 0]), new Uint8Array(64)]) {
      expect(verifyCookie(secret, bad, nonceI, '192.0.2.1', spiI)).toBe(false);
    }
    const flipped = cookie.slice();
    flipped[20]! ^= 1;
    expect(verifyCookie(secret, flipped, nonceI, '192.0.2.1', spiI)).toBe(false);
  });

  it('destroy wipes the secrets', () => {
    const secret = createCookieSecret();
    const cookie = makeCookie(secret, nonceI, '192.0.2.1', spiI);
    secret.destroy();
    expect(verifyCookie(secret, cookie, nonceI, '192.0.2.1', spiI)).toBe(false);
    expect(() => makeCookie(secret, nonceI, '192.0.2.1', spiI)).toThrow(/destroyed/);
  });
});
