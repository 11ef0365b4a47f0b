// The certificate decode reads the signed elements from the DER itself (der.ts)
// and only names and extensions through @peculiar/asn1-x509's schemas: what it
// finds must be what the full schema decode of the certificate finds, field
// for field, for certificates with every extension validation reads (basic
// constraints with a path length, key usage, extended key usage, alternative
// names, name constraints, CRL distribution points, key identifiers, an
// unknown critical extension) and dates on both sides of 2050 (UTCTime and
// GeneralizedTime, RFC 5280 §4.1.2.5).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { X509Certificate } from 'node:crypto';
import { parseCertificate, type ParsedCertificate } from '../control/crypto/x509/index.js';
import { decodeSignatureAlgorithm } from '../control/crypto/signature-algorithm.js';
import { TestPki, type PkiKeyType } from './support/pki.js';

const O = 'C=CH, O=ikeclone test';

/** The fields of a certificate as the full @peculiar schema decode gives them. */
function reference(der: Uint8Array) {
  const cert = AsnConvert.parse(der, Certificate);
  const tbs = cert.tbsCertificate;
  return {
    tbs: Buffer.from(cert.tbsCertificateRaw!).toString('hex'),
    signature: Buffer.from(cert.signatureValue).toString('hex'),
    serial: Buffer.from(tbs.serialNumber).toString('hex'),
    issuer: AsnConvert.serialize(tbs.issuer),
    subject: AsnConvert.serialize(tbs.subject),
    notBefore: tbs.validity.notBefore.getTime().getTime(),
    notAfter: tbs.validity.notAfter.getTime().getTime(),
    extensions: (tbs.extensions ?? []).map((e) => ({ id: e.extnID, critical: e.critical })),
  };
}

function decoded(cert: ParsedCertificate) {
  return {
    tbs: Buffer.from(cert.tbs).toString('hex'),
    signature: Buffer.from(cert.signature).toString('hex'),
    serial: cert.serial,
    issuer: AsnConvert.serialize(cert.issuer),
    subject: AsnConvert.serialize(cert.subject),
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
  };
}

describe.each<PkiKeyType>(['ecdsa-p256', 'rsa-2048', 'ed25519'])('decode agrees with the full schema decode (%s)', (keyType) => {
  const pki = new TestPki(keyType);
  const names = ['root', 'int', 'ee', 'ee-2060'];
  beforeAll(() => {
    pki.key('root');
    pki.key('int');
    pki.key('ee');
    pki.selfSigned('root', 'root', `${O}, CN=Root CA`, { serial: '00ff01' });
    pki.issue('int', 'int', 'root', 'root', `${O}, CN=Intermediate CA`, { ca: true, pathlen: 1, ncPermitted: ['example.org'], ncExcluded: ['bad.example.org'] });
    pki.issue('ee', 'ee', 'int', 'int', `${O}, OU=gateways, CN=gw.example.org`, {
      san: ['gw.example.org', '192.0.2.1', 'gw@example.org'], flags: ['serverAuth', 'clientAuth'], crl: ['http://ca.example.org/int.crl', 'file:///tmp/int.crl'],
      critical: ['1.3.6.1.4.1.36906.99'],
    });
    pki.issue('ee-2060', 'ee', 'int', 'int', `${O}, CN=late.example.org`, { notBefore: new Date('2049-12-31T23:59:58Z'), notAfter: new Date('2060-02-29T12:00:00Z') });
  });
  afterAll(() => pki.cleanup());

  it('every field, and the extensions validation reads', () => {
    for (const name of names) {
      const der = new Uint8Array(new X509Certificate(pki.read(`${name}.pem`)).raw);
      const parsed = parseCertificate(der);
      if (!parsed.ok) throw new Error(`${name}: ${parsed.error}`);
      const ref = reference(der);
      const { extensions, ...fields } = ref;
      expect(decoded(parsed.value), name).toEqual(fields);
      // Every extension the schema decode finds critical and this one does not handle is listed as such.
      const unknownCritical = extensions.filter((e) => e.critical && e.id.startsWith('1.3.6.1.4.1.36906.')).map((e) => e.id);
      expect(parsed.value.unhandledCriticalExtensions, name).toEqual(unknownCritical);
    }
    const ee = parseCertificate(new Uint8Array(new X509Certificate(pki.read('ee.pem')).raw));
    if (!ee.ok) throw new Error(ee.error);
    expect(ee.value.unhandledCriticalExtensions).toEqual(['1.3.6.1.4.1.36906.99']);
    expect(ee.value.crlDistributionPoints).toEqual(['http://ca.example.org/int.crl', 'file:///tmp/int.crl']);
    expect(ee.value.subjectAltNames).toHaveLength(3);
    expect(ee.value.extKeyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(ee.value.authorityKeyId).toBeDefined();
    const int = parseCertificate(new Uint8Array(new X509Certificate(pki.read('int.pem')).raw));
    if (!int.ok) throw new Error(int.error);
    expect(int.value.basicConstraints).toEqual({ cA: true, pathLenConstraint: 1 });
    expect(int.value.nameConstraints?.permittedSubtrees).toHaveLength(1);
    expect(int.value.subjectKeyId).toBeDefined();
    const late = parseCertificate(new Uint8Array(new X509Certificate(pki.read('ee-2060.pem')).raw));
    if (!late.ok) throw new Error(late.error);
    expect([late.value.notBefore.toISOString(), late.value.notAfter.toISOString()]).toEqual(['2049-12-31T23:59:58.000Z', '2060-02-29T12:00:00.000Z']);
  });

  it('a decoded AlgorithmIdentifier is kept by its DER: the same frozen verdict again', () => {
    const der = new Uint8Array(new X509Certificate(pki.read('ee.pem')).raw);
    const cert = AsnConvert.parse(der, Certificate);
    const alg = new Uint8Array(AsnConvert.serialize(cert.signatureAlgorithm));
    const first = decodeSignatureAlgorithm(alg);
    expect(first.ok).toBe(true);
    expect(decodeSignatureAlgorithm(alg.slice())).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });
});
