// The peer's IKE ID against its certificate (RFC 4945 §3.1), name constraints
// of every supported kind (RFC 5280 §4.2.1.10), and CERTREQ (RFC 7296 §3.7)
// with swanctl's send_cert.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AttributeTypeAndValue, AttributeValue, GeneralName, GeneralSubtree, GeneralSubtrees, Name, NameConstraints, RelativeDistinguishedName,
} from '@peculiar/asn1-x509';
import { IdType } from '../control/wire/constants.js';
import {
  certificatesToSend, certreqNames, decodeCertreqAuthorities, encodeCertreqAuthorities, identityMismatch, loadCertificates, namesEqual,
  parseCertificate, subjectPublicKeyInfoSha1, validateCertificateChain, type ParsedCertificate,
} from '../control/crypto/x509/index.js';
import { nameConstraintViolation } from '../control/crypto/x509/names.js';
import { TestPki } from './support/pki.js';

const text = (s: string) => new TextEncoder().encode(s);
const rdn = (type: string, value: Partial<AttributeValue>) =>
  new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue(value) })]);
const C = '2.5.4.6', O = '2.5.4.10', CN = '2.5.4.3', EMAIL = '1.2.840.113549.1.9.1';

function first(path: string): ParsedCertificate {
  const r = loadCertificates(path);
  if (!r.ok) throw new Error(r.error);
  return r.value[0]!;
}

describe('ID binding (RFC 4945 §3.1)', () => {
  const pki = new TestPki('ecdsa-p256');
  let gw: ParsedCertificate;

  beforeAll(() => {
    pki.key('ca');
    pki.key('gw');
    pki.selfSigned('ca', 'ca', 'C=CH, O=ikeclone test, CN=Root CA');
    pki.issue('gw', 'gw', 'ca', 'ca', 'C=CH, O=ikeclone test, CN=gw.example.org', {
      san: ['gw.example.org', '192.0.2.1', '2001:db8::1', 'admin@example.org'],
    });
    gw = first(pki.path('gw.pem'));
  });
  afterAll(() => pki.cleanup());

  it('binds FQDN, RFC822 and address IDs to subjectAltName entries', () => {
    expect(identityMismatch(gw, { type: IdType.FQDN, data: text('gw.example.org') })).toBeUndefined();
    expect(identityMismatch(gw, { type: IdType.FQDN, data: text('GW.Example.ORG') })).toBeUndefined();
    expect(identityMismatch(gw, { type: IdType.RFC822_ADDR, data: text('admin@example.org') })).toBeUndefined();
    expect(identityMismatch(gw, { type: IdType.IPV4_ADDR, data: Uint8Array.of(192, 0, 2, 1) })).toBeUndefined();
    const v6 = new Uint8Array(16);
    v6.set([0x20, 0x01, 0x0d, 0xb8]);
    v6[15] = 1;
    expect(identityMismatch(gw, { type: IdType.IPV6_ADDR, data: v6 })).toBeUndefined();
  });

  it('refuses IDs the certificate does not name, with a reason', () => {
    expect(identityMismatch(gw, { type: IdType.FQDN, data: text('vpn.example.org') })).toMatch(/fqdn vpn.example.org is not in certificate ".*CN=gw.example.org" \(no such subjectAltName dNSName\)/);
    expect(identityMismatch(gw, { type: IdType.FQDN, data: text('example.org') })).toBeDefined();
    expect(identityMismatch(gw, { type: IdType.RFC822_ADDR, data: text('gw.example.org') })).toMatch(/rfc822Name/);
    expect(identityMismatch(gw, { type: IdType.IPV4_ADDR, data: Uint8Array.of(192, 0, 2, 2) })).toMatch(/address 192.0.2.2/);
    expect(identityMismatch(gw, { type: IdType.IPV4_ADDR, data: Uint8Array.of(192, 0, 2) })).toMatch(/malformed ID_IPV4_ADDR/);
    // an FQDN in the CN alone does not bind (RFC 4945 §3.1.2: subjectAltName dNSName)
    expect(identityMismatch(gw, { type: IdType.KEY_ID, data: text('gw') })).toMatch(/cannot be bound/);
  });

  it('binds a DN ID to the subject by RFC 5280 §7.1 comparison, not octets', () => {
    const exact = new Uint8Array(AsnConvert.serialize(gw.subject));
    expect(identityMismatch(gw, { type: IdType.DER_ASN1_DN, data: exact })).toBeUndefined();
    // other string types, case and spacing: the same name
    const relaxed = new Name([rdn(C, { utf8String: 'ch' }), rdn(O, { utf8String: '  IKECLONE   Test ' }), rdn(CN, { printableString: 'GW.example.org' })]);
    expect(identityMismatch(gw, { type: IdType.DER_ASN1_DN, data: new Uint8Array(AsnConvert.serialize(relaxed)) })).toBeUndefined();
    const other = new Name([rdn(C, { printableString: 'CH' }), rdn(O, { utf8String: 'ikeclone test' }), rdn(CN, { utf8String: 'vpn.example.org' })]);
    expect(identityMismatch(gw, { type: IdType.DER_ASN1_DN, data: new Uint8Array(AsnConvert.serialize(other)) })).toMatch(/DN ".*vpn.example.org" is not in certificate/);
    // order matters
    const reordered = new Name([rdn(O, { utf8String: 'ikeclone test' }), rdn(C, { printableString: 'CH' }), rdn(CN, { utf8String: 'gw.example.org' })]);
    expect(namesEqual(reordered, gw.subject)).toBe(false);
    expect(identityMismatch(gw, { type: IdType.DER_ASN1_DN, data: Uint8Array.of(0x30, 0x05, 1) })).toMatch(/malformed/);
  });
});

describe('name constraints (RFC 5280 §4.2.1.10)', () => {
  const subtrees = (...names: Partial<GeneralName>[]) => new GeneralSubtrees(names.map((n) => new GeneralSubtree({ base: new GeneralName(n) })));
  const permitted = (...names: Partial<GeneralName>[]) => new NameConstraints({ permittedSubtrees: subtrees(...names) });
  const excluded = (...names: Partial<GeneralName>[]) => new NameConstraints({ excludedSubtrees: subtrees(...names) });
  const subject = new Name([rdn(C, { printableString: 'CH' }), rdn(O, { utf8String: 'Example' }), rdn(CN, { utf8String: 'gw' })]);
  const check = (san: Partial<GeneralName>[], ...nc: NameConstraints[]) => nameConstraintViolation(subject, san.map((n) => new GeneralName(n)), nc);

  it('dNSName: the name and names below it; a leading dot only below', () => {
    expect(check([{ dNSName: 'gw.example.org' }], permitted({ dNSName: 'example.org' }))).toBeUndefined();
    expect(check([{ dNSName: 'example.org' }], permitted({ dNSName: 'example.org' }))).toBeUndefined();
    expect(check([{ dNSName: 'badexample.org' }], permitted({ dNSName: 'example.org' }))).toMatch(/outside the permitted dNSName/);
    expect(check([{ dNSName: 'example.org' }], permitted({ dNSName: '.example.org' }))).toMatch(/outside/);
    expect(check([{ dNSName: 'x.bad.example.org' }], permitted({ dNSName: 'example.org' }), excluded({ dNSName: 'bad.example.org' }))).toMatch(/excluded dNSName/);
    // a constraint on one kind leaves names of other kinds alone
    expect(check([{ rfc822Name: 'a@elsewhere.net' }], permitted({ dNSName: 'example.org' }))).toBeUndefined();
  });

  it('rfc822Name: a mailbox, a host, or a domain; emailAddress in the subject DN too', () => {
    expect(check([{ rfc822Name: 'a@example.org' }], permitted({ rfc822Name: 'example.org' }))).toBeUndefined();
    expect(check([{ rfc822Name: 'a@mail.example.org' }], permitted({ rfc822Name: 'example.org' }))).toMatch(/outside/);
    expect(check([{ rfc822Name: 'a@mail.example.org' }], permitted({ rfc822Name: '.example.org' }))).toBeUndefined();
    expect(check([{ rfc822Name: 'b@example.org' }], permitted({ rfc822Name: 'a@example.org' }))).toMatch(/outside/);
    const withEmail = new Name([...subject, rdn(EMAIL, { ia5String: 'x@elsewhere.net' } as Partial<AttributeValue>)]);
    expect(nameConstraintViolation(withEmail, [], [permitted({ rfc822Name: 'example.org' })])).toMatch(/x@elsewhere.net is outside/);
  });

  it('iPAddress: IPv4 and IPv6 subnets, permitted and excluded', () => {
    expect(check([{ iPAddress: '192.0.2.7' }], permitted({ iPAddress: '192.0.2.0/24' }))).toBeUndefined();
    expect(check([{ iPAddress: '198.51.100.7' }], permitted({ iPAddress: '192.0.2.0/24' }))).toMatch(/outside the permitted iPAddress/);
    expect(check([{ iPAddress: '2001:db8::1' }], permitted({ iPAddress: '2001:db8::/32' }))).toBeUndefined();
    expect(check([{ iPAddress: '2001:db9::1' }], permitted({ iPAddress: '2001:db8::/32' }))).toMatch(/outside/);
    expect(check([{ iPAddress: '2001:db8::1' }], permitted({ iPAddress: '192.0.2.0/24' }))).toMatch(/outside/);
    expect(check([{ iPAddress: '192.0.2.7' }], excluded({ iPAddress: '192.0.2.0/28' }))).toMatch(/excluded iPAddress/);
  });

  it('directoryName: the subject must lie under a permitted DN and under no excluded one', () => {
    const example = new Name([rdn(C, { printableString: 'CH' }), rdn(O, { printableString: 'EXAMPLE' })]);
    const other = new Name([rdn(C, { printableString: 'CH' }), rdn(O, { printableString: 'Other' })]);
    expect(check([], permitted({ directoryName: example }))).toBeUndefined();
    expect(check([], permitted({ directoryName: other }))).toMatch(/C=CH, O=Example, CN=gw is outside the permitted directoryName/);
    expect(check([], excluded({ directoryName: example }))).toMatch(/excluded directoryName/);
  });

  it('fails closed on a constrained kind it cannot check', () => {
    expect(check([{ uniformResourceIdentifier: 'https://gw.example.org/' }], permitted({ uniformResourceIdentifier: 'example.org' }))).toMatch(/cannot check/);
    expect(check([{ iPAddress: '192.0.2.7' }], permitted({ iPAddress: 'garbage' }))).toMatch(/cannot check/);
  });
});

describe('name constraints in certificates made by openssl (iPAddress and directoryName)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ikeclone-nc-'));
  const p = (n: string) => join(dir, n);
  const openssl = (args: string[], input?: Buffer) => execFileSync('openssl', args, { input, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'ignore'] });
  let root: ParsedCertificate;

  beforeAll(() => {
    writeFileSync(p('root.cnf'), [
      '[req]', 'distinguished_name = dn', 'x509_extensions = v3_ca', '[dn]',
      '[v3_ca]', 'basicConstraints = critical, CA:true', 'keyUsage = critical, keyCertSign, cRLSign',
      'nameConstraints = critical, permitted;IP:192.0.2.0/255.255.255.0, permitted;IP:2001:db8::/ffff:ffff::, permitted;dirName:dir_sect, excluded;IP:192.0.2.128/255.255.255.128',
      '[dir_sect]', 'C = CH', 'O = ikeclone test',
    ].join('\n'));
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('root.key'), '-subj', '/C=CH/O=ikeclone test/CN=NC Root', '-days', '30', '-config', p('root.cnf'), '-out', p('root.pem')]);
    openssl(['genpkey', '-algorithm', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p('ee.key')]);
    const issue = (name: string, subject: string, san: string) => {
      writeFileSync(p(`${name}.ext`), `subjectAltName = ${san}\nkeyUsage = digitalSignature\n`);
      const csr = openssl(['req', '-new', '-key', p('ee.key'), '-subj', subject]);
      writeFileSync(p(`${name}.pem`), openssl(['x509', '-req', '-CA', p('root.pem'), '-CAkey', p('root.key'), '-set_serial', '7', '-days', '10', '-extfile', p(`${name}.ext`)], csr));
    };
    issue('inside', '/C=CH/O=ikeclone test/CN=gw', 'IP:192.0.2.7, IP:2001:db8::7');
    issue('outside-ip', '/C=CH/O=ikeclone test/CN=gw', 'IP:198.51.100.7');
    issue('excluded-ip', '/C=CH/O=ikeclone test/CN=gw', 'IP:192.0.2.200');
    issue('outside-v6', '/C=CH/O=ikeclone test/CN=gw', 'IP:2001:db9::7');
    issue('outside-dn', '/C=CH/O=elsewhere/CN=gw', 'IP:192.0.2.7');
    root = first(p('root.pem'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const validate = (name: string) => validateCertificateChain(first(p(`${name}.pem`)).der, [], { now: Date.now(), trustAnchors: [root] });

  it('accepts names inside the permitted subtrees and refuses the rest, with the name', () => {
    expect(validate('inside')).toMatchObject({ ok: true });
    expect(validate('outside-ip')).toMatchObject({ ok: false, reason: 'name-constraints', detail: expect.stringMatching(/198.51.100.7 is outside the permitted iPAddress subtrees/) });
    expect(validate('excluded-ip')).toMatchObject({ ok: false, reason: 'name-constraints', detail: expect.stringMatching(/192.0.2.200 is in an excluded iPAddress subtree/) });
    expect(validate('outside-v6')).toMatchObject({ ok: false, reason: 'name-constraints', detail: expect.stringMatching(/2001:db9::7 is outside/) });
    expect(validate('outside-dn')).toMatchObject({ ok: false, reason: 'name-constraints', detail: expect.stringMatching(/C=CH, O=elsewhere, CN=gw is outside the permitted directoryName/) });
  });
});

describe('CERTREQ (RFC 7296 §3.7) and send_cert', () => {
  const pki = new TestPki('ed25519');
  let root: ParsedCertificate, int: ParsedCertificate, ee: ParsedCertificate, other: ParsedCertificate;

  beforeAll(() => {
    for (const k of ['root', 'int', 'ee', 'other']) pki.key(k);
    pki.selfSigned('root', 'root', 'C=CH, O=ikeclone test, CN=Root CA');
    pki.selfSigned('other', 'other', 'C=CH, O=elsewhere, CN=Other CA');
    pki.issue('int', 'int', 'root', 'root', 'C=CH, O=ikeclone test, CN=Intermediate CA', { ca: true });
    pki.issue('ee', 'ee', 'int', 'int', 'C=CH, O=ikeclone test, CN=gw.example.org', { san: ['gw.example.org'] });
    [root, int, ee, other] = ['root', 'int', 'ee', 'other'].map((n) => first(pki.path(`${n}.pem`))) as [ParsedCertificate, ParsedCertificate, ParsedCertificate, ParsedCertificate];
  });
  afterAll(() => pki.cleanup());

  it('the Certification Authority value is the SHA-1 of the SubjectPublicKeyInfo, as strongSwan computes it', () => {
    const keyid = execFileSync('pki', ['--keyid', '--in', pki.path('root.pem'), '--type', 'x509', '--format', 'hex'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString().trim().split('\n');
    // pki prints the subjectKeyIdentifier-style hash first, then the SHA-1 of the SubjectPublicKeyInfo
    expect(Buffer.from(subjectPublicKeyInfoSha1(root)).toString('hex')).toBe(keyid[1]);
    const spki = new X509Certificate(Buffer.from(root.der)).publicKey.export({ type: 'spki', format: 'der' });
    expect(Buffer.from(subjectPublicKeyInfoSha1(root)).toString('hex')).toBe(createHash('sha1').update(spki).digest('hex'));
  });

  it('encodes our trust anchors once each and decodes what a peer sends without throwing', () => {
    const data = encodeCertreqAuthorities([root, other, root]);
    expect(data.length).toBe(40);
    const hashes = decodeCertreqAuthorities(data);
    expect(certreqNames(hashes, root) && certreqNames(hashes, other)).toBe(true);
    expect(certreqNames(hashes, int)).toBe(false);
    expect(decodeCertreqAuthorities(data.subarray(0, 39)).length).toBe(1); // a partial hash is not read
    expect(decodeCertreqAuthorities(new Uint8Array(0))).toEqual([]);
    expect(decodeCertreqAuthorities(new Uint8Array(20 * 1000)).length).toBe(64);
  });

  it('send_cert: ifasked sends end entity and intermediates after any CERTREQ, as strongSwan; always and never', () => {
    const asked = decodeCertreqAuthorities(encodeCertreqAuthorities([root]));
    const unknownCa = decodeCertreqAuthorities(encodeCertreqAuthorities([other]));
    const chain = [ee.der, int.der];
    expect(certificatesToSend('ifasked', true, asked, ee, [int], [root])).toEqual({ certificates: chain, requestedCaKnown: true });
    // a CERTREQ naming none of our CAs, or an empty one, still gets the chain (strongSwan's COND_CERTREQ_SEEN)
    expect(certificatesToSend('ifasked', true, unknownCa, ee, [int], [root])).toEqual({ certificates: chain, requestedCaKnown: false });
    expect(certificatesToSend('ifasked', true, [], ee, [int])).toEqual({ certificates: chain, requestedCaKnown: false });
    expect(certificatesToSend('ifasked', false, [], ee, [int]).certificates).toEqual([]);
    expect(certificatesToSend('always', false, [], ee, [int]).certificates).toEqual(chain);
    expect(certificatesToSend('never', true, asked, ee, [int]).certificates).toEqual([]);
    // a self-signed root configured among the intermediates is not sent
    expect(certificatesToSend('always', false, [], ee, [int, root]).certificates).toEqual(chain);
    expect(parseCertificate(chain[0]!).ok).toBe(true);
  });
});
