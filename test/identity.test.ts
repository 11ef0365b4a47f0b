import { describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import {
  formatIdentity, identitiesEqual, identityFromAddress, identityMatches, isIdentityPattern, parseIdentity,
  type Identity,
} from '../control/ike/identity.js';
import { IdType } from '../control/wire/constants.js';

function id(s: string): Identity {
  const r = parseIdentity(s);
  if (!r.ok) throw new Error(`expected '${s}' to parse: ${r.error}`);
  return r.value;
}
function idError(s: string): string {
  const r = parseIdentity(s);
  if (r.ok) throw new Error(`expected '${s}' to be rejected`);
  return r.error;
}
const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('parseIdentity: one string form per ID type (RFC 7296 §3.5)', () => {
  it('IPv4 literal -> ID_IPV4_ADDR', () => {
    expect(id('192.0.2.1')).toEqual({ idType: IdType.IPV4_ADDR, data: Uint8Array.of(192, 0, 2, 1) });
  });

  it('IPv6 literal -> ID_IPV6_ADDR (16 octets)', () => {
    const v = id('2001:db8::1');
    expect(v.idType).toBe(IdType.IPV6_ADDR);
    expect(hex(v.data)).toBe('20010db8000000000000000000000001');
  });

  it('user@host -> ID_RFC822_ADDR', () => {
    expect(id('alice@example.org')).toEqual({ idType: IdType.RFC822_ADDR, data: ascii('alice@example.org') });
  });

  it('@fqdn and a plain name -> ID_FQDN without the @', () => {
    expect(id('@gw.example.org')).toEqual({ idType: IdType.FQDN, data: ascii('gw.example.org') });
    expect(id('gw.example.org')).toEqual({ idType: IdType.FQDN, data: ascii('gw.example.org') });
    expect(id('moon')).toEqual({ idType: IdType.FQDN, data: ascii('moon') });
  });

  it('a leading @ forces FQDN even for address-like text', () => {
    expect(id('@192.0.2.1')).toEqual({ idType: IdType.FQDN, data: ascii('192.0.2.1') });
  });

  it('@#hex -> ID_KEY_ID octets', () => {
    expect(id('@#0123abCD')).toEqual({ idType: IdType.KEY_ID, data: Uint8Array.of(0x01, 0x23, 0xab, 0xcd) });
  });

  it('attribute=value lists -> ID_DER_ASN1_DN (DER Name)', () => {
    const v = id('C=CH, O=strongSwan, CN=moon.strongswan.org');
    expect(v.idType).toBe(IdType.DER_ASN1_DN);
    // The same Name as node:crypto sees it in a certificate subject.
    expect(hex(v.data)).toBe(
      '3040310b3009060355040613024348' + // SET { SEQ { OID 2.5.4.6, PrintableString "CH" } }
      '3113301106035504' + '0a0c0a' + Buffer.from('strongSwan').toString('hex') +
      '311c301a06035504' + '030c13' + Buffer.from('moon.strongswan.org').toString('hex'),
    );
  });

  it('typed prefixes choose the type whatever the value looks like', () => {
    expect(id('fqdn:alice@example.org')).toEqual({ idType: IdType.FQDN, data: ascii('alice@example.org') });
    expect(id('email:alice@example.org').idType).toBe(IdType.RFC822_ADDR);
    expect(id('rfc822:bob@example.org').idType).toBe(IdType.RFC822_ADDR);
    expect(id('userfqdn:carol@example.org').idType).toBe(IdType.RFC822_ADDR);
    expect(id('ipv4:198.51.100.7')).toEqual({ idType: IdType.IPV4_ADDR, data: Uint8Array.of(198, 51, 100, 7) });
    expect(id('ipv6:::1').data[15]).toBe(1);
    expect(id('keyid:#beef')).toEqual({ idType: IdType.KEY_ID, data: Uint8Array.of(0xbe, 0xef) });
    expect(id('keyid:opaque')).toEqual({ idType: IdType.KEY_ID, data: ascii('opaque') });
    expect(id('asn1dn:CN=x')).toEqual(id('CN=x'));
    expect(id(`asn1dn:#${hex(id('CN=x').data)}`)).toEqual(id('CN=x'));
  });

  it('surrounding whitespace is ignored', () => {
    expect(id('  gw.example.org ')).toEqual(id('gw.example.org'));
  });

  it('rejects wildcards, empty and malformed input with a reason', () => {
    expect(idError('%any')).toMatch(/wildcard/);
    expect(idError('%any6')).toMatch(/wildcard/);
    expect(idError('')).toMatch(/empty/);
    expect(idError('@')).toMatch(/empty domain/);
    expect(idError('@#abc')).toMatch(/key ID/);
    expect(idError('@#zz')).toMatch(/key ID/);
    expect(idError('bad@')).toMatch(/email address/);
    expect(idError('gw example.org')).toMatch(/domain name/);
    expect(idError('ipv4:2001:db8::1')).toMatch(/not an IPv4 address/);
    expect(idError('ipv6:10.0.0.1')).toMatch(/not an IPv6 address/);
    expect(idError('C=CH, XX=foo')).toMatch(/unknown attribute 'XX'/);
    expect(idError('C=CH,, CN=a')).toMatch(/empty RDN/);
    expect(idError('CN=')).toMatch(/empty value/);
    expect(idError('asn1dn:#3000ff')).toMatch(/DER-encoded/);
    expect(parseIdentity(7 as unknown as string).ok).toBe(false);
    expect(idError('x'.repeat(2000))).toMatch(/longer than/);
  });
});

describe('formatIdentity', () => {
  it.each([
    '192.0.2.1', '2001:db8::1', 'alice@example.org', 'gw.example.org', '@#0123abcd',
    'C=CH, O=strongSwan, CN=moon.strongswan.org', 'C=DE, O=Example\\, Inc., OU=VPN, CN=gw',
    'CN=gateway, E=ops@example.org, DC=example, DC=org',
  ])('%s prints back as itself and parses to the same identity', (s) => {
    expect(formatIdentity(id(s))).toBe(s);
    expect(id(formatIdentity(id(s)))).toEqual(id(s));
  });

  it('uses the canonical form', () => {
    expect(formatIdentity(id('2001:DB8:0:0:0:0:0:1'))).toBe('2001:db8::1');
    expect(formatIdentity(id('@gw.example.org'))).toBe('gw.example.org');
    expect(formatIdentity(id('/C=CH/O=Example/CN=gw'))).toBe('C=CH, O=Example, CN=gw');
    expect(formatIdentity(id('cn=a, emailAddress=x@y'))).toBe('CN=a, E=x@y');
  });

  it('keeps the type when plain text would read back as another type', () => {
    for (const s of ['@192.0.2.1', 'fqdn:alice@example.org', 'fqdn:#x', 'fqdn:a=b', 'rfc822:a@b=c']) {
      const v = id(s);
      expect(id(formatIdentity(v))).toEqual(v);
    }
  });

  it('prints what a peer sends without throwing, even when malformed', () => {
    expect(formatIdentity({ idType: IdType.IPV4_ADDR, data: Uint8Array.of(1, 2, 3) })).toBe('ipv4:#010203');
    expect(formatIdentity({ idType: IdType.FQDN, data: Uint8Array.of(0x00, 0xff) })).toBe('fqdn:#00ff');
    expect(formatIdentity({ idType: IdType.DER_ASN1_DN, data: Uint8Array.of(0x30, 0x05, 0x31) })).toBe('asn1dn:#300531');
    expect(formatIdentity({ idType: IdType.DER_ASN1_GN, data: Uint8Array.of(0xa0) })).toBe('asn1gn:#a0');
    expect(formatIdentity({ idType: 200, data: new Uint8Array(0) })).toBe('id200:#');
    expect(formatIdentity({ idType: IdType.KEY_ID, data: new Uint8Array(0) })).toBe('keyid:#');
    // Every truncation of a valid DN is handled.
    const dn = id('C=CH, O=strongSwan, CN=moon').data;
    for (let n = 0; n < dn.length; n++) {
      expect(() => formatIdentity({ idType: IdType.DER_ASN1_DN, data: dn.subarray(0, n) })).not.toThrow();
    }
  });

  it('never throws on random identification data of any type', () => {
    let seed = 0x2545f491;
    const next = (): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) & 0xff; };
    const pattern = id('*.example.org');
    const dn = id('C=CH, CN=*');
    for (let i = 0; i < 2000; i++) {
      const data = Uint8Array.from({ length: next() % 48 }, next);
      // Bias towards DER-looking input so the DN decoder is exercised beyond its first byte.
      if (i % 2 === 0 && data.length > 2) { data[0] = 0x30; data[1] = data.length - 2; }
      for (const idType of [1, 2, 3, 5, 9, 10, 11, 200]) {
        const v = { idType, data };
        expect(typeof formatIdentity(v)).toBe('string');
        expect(identitiesEqual(v, { idType, data: Uint8Array.from(data) })).toBe(true);
        identityMatches(pattern, v);
        identityMatches(dn, v);
        isIdentityPattern(v);
      }
    }
  });

  it('encodes a DN exactly as OpenSSL writes a certificate subject', () => {
    // openssl req -x509 -subj "/C=CH/O=strongSwan/CN=moon.strongswan.org" (self-signed, P-256).
    const cert = new X509Certificate(MOON_CERT);
    expect(cert.subject).toBe('C=CH\nO=strongSwan\nCN=moon.strongswan.org');
    // tbsCertificate: version, serial, signature algorithm, issuer, validity, subject (at octet 145).
    const subject = new Uint8Array(cert.raw).subarray(145, 145 + 2 + 64);
    const v = id('C=CH, O=strongSwan, CN=moon.strongswan.org');
    expect(hex(v.data)).toBe(hex(subject));
    expect(formatIdentity({ idType: IdType.DER_ASN1_DN, data: subject })).toBe('C=CH, O=strongSwan, CN=moon.strongswan.org');
  });
});

const MOON_CERT = `-----BEGIN CERTIFICATE-----
MIIB1DCCAXugAwIBAgIUYGeW0IIO6oSX5ENGFWsv+/DpxJcwCgYIKoZIzj0EAwIw
QDELMAkGA1UEBhMCQ0gxEzARBgNVBAoMCnN0cm9uZ1N3YW4xHDAaBgNVBAMME21v
b24uc3Ryb25nc3dhbi5vcmcwHhcNMjYxMTIyMTcwNTM1WhcNMjYxMTIzMTcwNTM1
WjBAMQswCQYDVQQGEwJDSDETMBEGA1UECgwKc3Ryb25nU3dhbjEcMBoGA1UEAwwT
bW9vbi5zdHJvbmdzd2FuLm9yZzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMef
GLEIX0N9+9F5Lv12b2vNU8XxJVYza2+gXTN/zJTxpJNMG8GM7/d7cW3AitgG4olK
VEyEZV3kKTfc4Z1WUS+jUzBRMB0GA1UdDgQWBBS+OfzgTzL/JTZ9QpyOG9BC4D/4
2DAfBgNVHSMEGDAWgBS+OfzgTzL/JTZ9QpyOG9BC4D/42DAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0cAMEQCIH/+OS/hq1bxzPMVyRyyp/s6MVZr819NNXma
P49CGGzJAiBpQCV6NC4XQOSHGT88Mwh0LxIqq9A9Rg5eE63P0nt3XA==
-----END CERTIFICATE-----`;

describe('identitiesEqual', () => {
  it('same type and data', () => {
    expect(identitiesEqual(id('192.0.2.1'), id('192.0.2.1'))).toBe(true);
    expect(identitiesEqual(id('192.0.2.1'), id('192.0.2.2'))).toBe(false);
    expect(identitiesEqual(id('@#01'), id('@#01'))).toBe(true);
  });

  it('FQDN and RFC822 ignore ASCII case, other types do not mix', () => {
    expect(identitiesEqual(id('GW.Example.ORG'), id('gw.example.org'))).toBe(true);
    expect(identitiesEqual(id('Alice@Example.org'), id('alice@example.org'))).toBe(true);
    expect(identitiesEqual(id('gw.example.org'), id('fqdn:gw.example.org'))).toBe(true);
    expect(identitiesEqual(id('keyid:gw.example.org'), id('gw.example.org'))).toBe(false);
    expect(identitiesEqual(id('@192.0.2.1'), id('192.0.2.1'))).toBe(false);
  });

  it('DNs compare attribute by attribute, whatever string type the peer used', () => {
    const ours = id('C=CH, O=strongSwan, CN=moon');
    // The same Name with CN as PrintableString (0x13) and O as UTF8String.
    const theirs = Uint8Array.from(ours.data);
    const cnTag = theirs.length - 'moon'.length - 2;
    expect(theirs[cnTag]).toBe(0x0c);
    theirs[cnTag] = 0x13;
    expect(identitiesEqual(ours, { idType: IdType.DER_ASN1_DN, data: theirs })).toBe(true);
    expect(identitiesEqual(id('C=ch, CN=moon'), id('C=CH, CN=moon'))).toBe(true); // PrintableString: caseless
    expect(identitiesEqual(id('C=CH, CN=Moon'), id('C=CH, CN=moon'))).toBe(false); // UTF8String: exact
    expect(identitiesEqual(id('C=CH, CN=moon'), id('CN=moon, C=CH'))).toBe(false); // order matters
  });

  it('rejects non-identities without throwing', () => {
    expect(identitiesEqual(null as unknown as Identity, id('a'))).toBe(false);
    expect(identitiesEqual(id('a'), { idType: 2, data: [97] } as unknown as Identity)).toBe(false);
  });
});

describe('identityMatches', () => {
  it("'any' matches every identity", () => {
    for (const s of ['192.0.2.1', 'a@b.c', 'x.y', '@#00', 'CN=z']) expect(identityMatches('any', id(s))).toBe(true);
  });

  it('without wildcards it is equality', () => {
    expect(identityMatches(id('client.example.org'), id('CLIENT.example.org'))).toBe(true);
    expect(identityMatches(id('client.example.org'), id('other.example.org'))).toBe(false);
    expect(identityMatches(id('192.0.2.1'), id('192.0.2.1'))).toBe(true);
  });

  it('*.example.org matches subdomains at any depth, not the domain itself', () => {
    const p = id('*.example.org');
    expect(isIdentityPattern(p)).toBe(true);
    expect(identityMatches(p, id('vpn.example.org'))).toBe(true);
    expect(identityMatches(p, id('a.b.Example.org'))).toBe(true);
    expect(identityMatches(p, id('example.org'))).toBe(false);
    expect(identityMatches(p, id('vpn.example.org.evil'))).toBe(false);
    expect(identityMatches(p, id('vpnexample.org'))).toBe(false);
    // An FQDN pattern never matches another ID type.
    expect(identityMatches(p, id('a@x.example.org'))).toBe(false);
  });

  it('*@example.org matches any user of the domain', () => {
    const p = id('*@example.org');
    expect(p.idType).toBe(IdType.RFC822_ADDR);
    expect(identityMatches(p, id('alice@example.org'))).toBe(true);
    expect(identityMatches(p, id('bob@EXAMPLE.org'))).toBe(true);
    expect(identityMatches(p, id('alice@sub.example.org'))).toBe(false);
    expect(identityMatches(p, id('alice@example.org.evil'))).toBe(false);
    expect(identityMatches(p, id('example.org'))).toBe(false);
  });

  it('wildcards elsewhere in the pattern and several of them', () => {
    expect(identityMatches(id('vpn-*.example.org'), id('vpn-3.example.org'))).toBe(true);
    expect(identityMatches(id('vpn-*.example.org'), id('web-3.example.org'))).toBe(false);
    expect(identityMatches(id('*.*.example.org'), id('a.b.example.org'))).toBe(true);
    expect(identityMatches(id('*.*.example.org'), id('a.example.org'))).toBe(false);
    expect(identityMatches(id('fqdn:*'), id('anything.at.all'))).toBe(true);
  });

  it('a * RDN value matches any value of that attribute', () => {
    const p = id('C=CH, O=strongSwan, CN=*');
    expect(isIdentityPattern(p)).toBe(true);
    expect(identityMatches(p, id('C=CH, O=strongSwan, CN=carol'))).toBe(true);
    expect(identityMatches(p, id('C=CH, O=other, CN=carol'))).toBe(false);
    expect(identityMatches(p, id('C=CH, O=strongSwan, OU=x, CN=carol'))).toBe(false);
  });

  it('a * in a literal identity is an ordinary character for other types', () => {
    expect(isIdentityPattern(id('192.0.2.1'))).toBe(false);
    expect(identityMatches(id('keyid:*'), id('keyid:abc'))).toBe(false);
  });
});

describe('identityFromAddress', () => {
  it('gives the address identity strongSwan uses by default', () => {
    expect(identityFromAddress('192.0.2.1')).toEqual(id('192.0.2.1'));
    expect(identityFromAddress('2001:db8::7')).toEqual(id('2001:db8::7'));
    expect(identityFromAddress('gw.example.org')).toBeNull();
  });
});
