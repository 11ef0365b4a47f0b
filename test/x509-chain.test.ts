// Certificate chain validation (RFC 5280 §6, RFC 4945 §5) over chains made
// by strongSwan's pki: root CA -> intermediate CA -> end entity, for ECDSA
// P-256, RSA-PSS 3072 and Ed25519, and also ECDSA P-384 and RSA 2048 with
// PKCS#1 v1.5 signatures. A valid chain is accepted; each defect is
// refused with its own reason and a detail fit for the log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { IdType } from '../control/wire/constants.js';
import { signDigitalSignature, verifyDigitalSignature, verifyKeyFromCertificate, verifyKeyFromPublicKey } from '../control/crypto/auth.js';
import {
  keyMatchesCertificate, loadCertificates, loadCrl, loadPrivateKey, localCrlResolver, parseCertificate, validateCertificateChain,
  type ChainValidationOptions, type ParsedCertificate,
} from '../control/crypto/x509/index.js';
import { TestPki, type PkiKeyType } from './support/pki.js';

const DAY = 86_400_000;
const NOW = Date.now();
const fqdn = (s: string) => ({ type: IdType.FQDN, data: new TextEncoder().encode(s) });
const O = 'C=CH, O=ikeclone test';

function firstCert(path: string): ParsedCertificate {
  const certs = loadCertificates(path);
  if (!certs.ok) throw new Error(certs.error);
  return certs.value[0]!;
}

describe.each<PkiKeyType>(['ecdsa-p256', 'rsa-pss-3072', 'ed25519', 'ecdsa-p384', 'rsa-2048'])('chain validation with %s', (keyType) => {
  const pki = new TestPki(keyType);
  let root: ParsedCertificate;
  let int: ParsedCertificate;
  const der = (name: string): Uint8Array => firstCert(pki.path(`${name}.pem`)).der;
  const validate = (ee: string, extra: Partial<ChainValidationOptions> = {}, intermediates = [der('int')]) =>
    validateCertificateChain(der(ee), intermediates, { now: NOW + 60_000, trustAnchors: [root], peerId: fqdn('gw.example.org'), ...extra });

  beforeAll(() => {
    // Three keys per algorithm (RSA 3072 generation is the slow part: a second or two each).
    pki.key('root');
    pki.key('int');
    pki.key('ee');
    pki.selfSigned('root', 'root', `${O}, CN=Root CA`);
    pki.issue('int', 'int', 'root', 'root', `${O}, CN=Intermediate CA`, { ca: true });
    const crlUri = `file://${pki.path('int.crl')}`;
    const gw = { san: ['gw.example.org', '192.0.2.1', 'gw@example.org'], flags: ['serverAuth'], crl: [crlUri] };
    pki.issue('ee', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, gw);
    pki.issue('ee-expired', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, { ...gw, notBefore: new Date(NOW - 30 * DAY), notAfter: new Date(NOW - DAY) });
    pki.issue('ee-future', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, { ...gw, notBefore: new Date(NOW + 10 * DAY), notAfter: new Date(NOW + 40 * DAY) });
    pki.issue('ee-ku', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, { ...gw, flags: ['crlSign'] });
    pki.issue('ee-revoked', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, gw);
    pki.issue('ee-eku', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, { ...gw, flags: ['ocspSigning'] });
    pki.issue('ee-client', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, { ...gw, flags: ['clientAuth'] });
    pki.issue('ee-critical', 'ee', 'int', 'int', `${O}, CN=gw.example.org`, { ...gw, critical: ['1.3.6.1.4.1.36906.99'] });
    // An intermediate without basicConstraints cA, and what it signed.
    pki.issue('int-noca', 'int', 'root', 'root', `${O}, CN=Not a CA`);
    pki.issueWithOpenssl('ee-noca', 'ee', 'int-noca', 'int', '/C=CH/O=ikeclone test/CN=gw.example.org');
    pki.crl('int.crl', 'int', 'int', ['ee-revoked']);
    pki.crl('root.crl', 'root', 'root', []);
    // Unknown CA: the same DN shape under a root nobody configured.
    pki.selfSigned('rogue', 'int', `C=CH, O=elsewhere, CN=Rogue CA`);
    pki.issue('ee-rogue', 'ee', 'rogue', 'int', `${O}, CN=gw.example.org`, gw);
    // Path length: a root that allows no intermediate.
    pki.selfSigned('root0', 'root', `${O}, CN=Root CA pathlen 0`, { pathlen: 0 });
    pki.issue('int0', 'int', 'root0', 'root', `${O}, CN=Intermediate CA under pathlen 0`, { ca: true });
    pki.issue('ee0', 'ee', 'int0', 'int', `${O}, CN=gw.example.org`, gw);
    // Name constraints: a root that permits names under example.org only.
    pki.selfSigned('rootnc', 'root', `${O}, CN=Root CA example.org only`, { ncPermitted: ['example.org'] });
    pki.issue('intnc', 'int', 'rootnc', 'root', `${O}, CN=Intermediate CA example.org only`, { ca: true });
    pki.issue('ee-nc-ok', 'ee', 'intnc', 'int', `${O}, CN=gw.example.org`, gw);
    pki.issue('ee-nc-bad', 'ee', 'intnc', 'int', `${O}, CN=gw.example.net`, { ...gw, san: ['gw.example.org', 'gw.example.net'] });
    root = firstCert(pki.path('root.pem'));
    int = firstCert(pki.path('int.pem'));
  });

  afterAll(() => pki.cleanup());

  it('accepts root -> intermediate -> end entity, and its key verifies an RFC 7427 AUTH made with the loaded private key', () => {
    const v = validate('ee');
    expect(v).toMatchObject({ ok: true });
    if (!v.ok) return;
    expect(v.chain.map((c) => c.subjectText)).toEqual([`${O}, CN=gw.example.org`, `${O}, CN=Intermediate CA`, `${O}, CN=Root CA`]);
    const key = loadPrivateKey(pki.path('ee.key'), { rsaPadding: keyType === 'rsa-2048' ? 'pkcs1' : 'pss' });
    expect(key.ok).toBe(true);
    if (!key.ok) return;
    expect(keyMatchesCertificate(key.value, v.chain[0]!)).toBe(true);
    expect(keyMatchesCertificate(key.value, int)).toBe(false);
    const verifyKey = verifyKeyFromPublicKey(v.publicKey);
    expect(verifyKey.ok).toBe(true);
    const kind = { 'ecdsa-p256': 'ecdsa-p256', 'ecdsa-p384': 'ecdsa-p384', 'rsa-2048': 'rsa', 'rsa-pss-3072': 'rsa', ed25519: 'ed25519' }[keyType];
    expect(verifyKeyFromCertificate(v.chain[0]!.der)).toMatchObject({ ok: true, value: { kind } });
    if (!verifyKey.ok) return;
    const octets = new TextEncoder().encode('InitiatorSignedOctets');
    const auth = signDigitalSignature(key.value, octets, keyType === 'ed25519' ? 5 : 2);
    expect(verifyDigitalSignature(verifyKey.value, auth, octets)).toBe(true);
    expect(verifyDigitalSignature(verifyKey.value, auth, new TextEncoder().encode('other octets'))).toBe(false);
  });

  it('agrees with OpenSSL (node:crypto X509Certificate.verify / checkIssued) on every link', () => {
    const v = validate('ee');
    if (!v.ok) throw new Error(v.detail);
    for (let i = 0; i + 1 < v.chain.length; i++) {
      const cert = new X509Certificate(Buffer.from(v.chain[i]!.der));
      const issuer = new X509Certificate(Buffer.from(v.chain[i + 1]!.der));
      expect(cert.checkIssued(issuer)).toBe(true);
      expect(cert.verify(issuer.publicKey)).toBe(true);
    }
    const flipped = der('ee').slice();
    flipped[flipped.length - 1]! ^= 0x01;
    expect(new X509Certificate(Buffer.from(flipped)).verify(int.publicKey)).toBe(false);
  });

  it('accepts intermediates in any order and ignores extra certificates', () => {
    expect(validate('ee', {}, [der('rogue'), der('int0'), der('int'), new Uint8Array([0x30, 0x00])]).ok).toBe(true);
    // the peer may send the root as well; an intermediate may itself be the configured anchor
    expect(validate('ee', {}, [der('root'), der('int')])).toMatchObject({ ok: true, chain: { length: 3 } });
    expect(validate('ee', { trustAnchors: [int] }, [])).toMatchObject({ ok: true, chain: { length: 2 } });
  });

  it('refuses an expired certificate', () => {
    expect(validate('ee-expired')).toMatchObject({ ok: false, reason: 'expired', detail: expect.stringMatching(/certificate ".*CN=gw.example.org" expired on \d{4}-/) });
    // and the valid one expires too, ten years on
    expect(validate('ee', { now: NOW + 20 * 365 * DAY })).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('refuses a certificate that is not yet valid', () => {
    expect(validate('ee-future')).toMatchObject({ ok: false, reason: 'not-yet-valid', detail: expect.stringMatching(/is not valid before/) });
    expect(validate('ee-future', { now: NOW + 11 * DAY }).ok).toBe(true);
  });

  it('refuses a chain to an unknown CA', () => {
    expect(validate('ee-rogue', {}, [der('rogue')])).toMatchObject({ ok: false, reason: 'unknown-ca', detail: expect.stringMatching(/Rogue CA/) });
    expect(validate('ee', {}, [])).toMatchObject({ ok: false, reason: 'unknown-ca', detail: expect.stringMatching(/no trusted CA certificate for issuer ".*Intermediate CA"/) });
    expect(validate('ee', { trustAnchors: [] })).toMatchObject({ ok: false, reason: 'unknown-ca' });
  });

  it('refuses an end entity whose keyUsage does not allow signatures', () => {
    expect(validate('ee-ku')).toMatchObject({ ok: false, reason: 'key-usage', detail: expect.stringMatching(/without digitalSignature/) });
  });

  it('refuses an extendedKeyUsage without an IKE purpose, accepts clientAuth (RFC 4945 §5.1.3.12, strongSwan practice)', () => {
    expect(validate('ee-eku')).toMatchObject({ ok: false, reason: 'extended-key-usage', detail: expect.stringMatching(/1.3.6.1.5.5.7.3.9 without an IKE purpose/) });
    expect(validate('ee-client').ok).toBe(true);
  });

  it('refuses a certificate issued by a non-CA, and one with an unknown critical extension', () => {
    expect(validate('ee-noca', { peerId: undefined }, [der('int-noca')])).toMatchObject({ ok: false, reason: 'not-a-ca', detail: expect.stringMatching(/"C=CH, O=ikeclone test, CN=Not a CA" issued/) });
    expect(validate('ee-critical')).toMatchObject({ ok: false, reason: 'critical-extension', detail: expect.stringMatching(/1.3.6.1.4.1.36906.99/) });
  });

  it('refuses a path longer than a pathLenConstraint allows', () => {
    const root0 = firstCert(pki.path('root0.pem'));
    expect(validate('ee0', { trustAnchors: [root0] }, [der('int0')])).toMatchObject({ ok: false, reason: 'path-length' });
  });

  it('refuses a certificate revoked by a CRL file, and by its distribution point mapped to a local file', () => {
    const crl = loadCrl(pki.path('int.crl'));
    expect(crl.ok).toBe(true);
    if (!crl.ok) return;
    expect(validate('ee-revoked', { crls: [crl.value] })).toMatchObject({ ok: false, reason: 'revoked', detail: expect.stringMatching(/revoked on .*keyCompromise/) });
    const rootCrl = loadCrl(pki.path('root.crl'));
    if (!rootCrl.ok) throw new Error(rootCrl.error);
    const both = [crl.value, rootCrl.value];
    expect(validate('ee', { crls: both, revocation: 'strict' }).ok).toBe(true);
    expect(validate('ee-revoked', { resolveCrl: localCrlResolver() })).toMatchObject({ ok: false, reason: 'revoked' });
    expect(validate('ee-revoked')).toMatchObject({ ok: true }); // no CRL at hand, revocation relaxed
    // strict needs a current CRL for the intermediate too (the root's)
    expect(validate('ee', { crls: [crl.value], revocation: 'strict' })).toMatchObject({ ok: false, reason: 'revocation-unknown', detail: expect.stringMatching(/Intermediate CA.*no CRL of ".*Root CA"/) });
    expect(validate('ee', { revocation: 'strict' })).toMatchObject({ ok: false, reason: 'revocation-unknown' });
    // ifuri: only a certificate naming a distribution point must have a known status
    expect(validate('ee', { revocation: 'ifuri' })).toMatchObject({ ok: false, reason: 'revocation-unknown' });
    expect(validate('ee', { revocation: 'ifuri', resolveCrl: localCrlResolver() }).ok).toBe(true);
    // past the CRL's nextUpdate (15 days), strict cannot decide, and a revoked entry still counts
    expect(validate('ee', { crls: both, revocation: 'strict', now: NOW + 20 * DAY })).toMatchObject({ ok: false, reason: 'revocation-unknown', detail: expect.stringMatching(/expired on/) });
    expect(validate('ee-revoked', { crls: [crl.value], now: NOW + 20 * DAY })).toMatchObject({ ok: false, reason: 'revoked' });
  });

  it('refuses a CRL not signed by the issuer', () => {
    const crl = loadCrl(pki.path('int.crl'));
    if (!crl.ok) throw new Error(crl.error);
    const forged = { ...crl.value, signature: crl.value.signature.slice() };
    forged.signature[forged.signature.length - 1]! ^= 0x01;
    expect(validate('ee-revoked', { crls: [forged] }).ok).toBe(true);
    expect(validate('ee-revoked', { crls: [forged], revocation: 'strict' })).toMatchObject({ ok: false, reason: 'revocation-unknown', detail: expect.stringMatching(/bad signature/) });
  });

  it('refuses a peer whose ID is not in the certificate', () => {
    expect(validate('ee', { peerId: fqdn('other.example.org') })).toMatchObject({ ok: false, reason: 'id-mismatch', detail: expect.stringMatching(/fqdn other.example.org is not in certificate/) });
    expect(validate('ee', { peerId: { type: IdType.IPV4_ADDR, data: Uint8Array.of(192, 0, 2, 1) } }).ok).toBe(true);
  });

  it('refuses a certificate with a bad signature (a flipped byte)', () => {
    const flipped = der('ee').slice();
    flipped[flipped.length - 1]! ^= 0x01;
    const v = validateCertificateChain(flipped, [der('int')], { now: NOW, trustAnchors: [root] });
    expect(v).toMatchObject({ ok: false, reason: keyType === 'ecdsa-p256' ? expect.stringMatching(/^(bad-signature|malformed)$/) : 'bad-signature' });
    // a flipped byte inside the signed part (the subject's key) is a bad signature as well
    const tbsFlip = der('ee').slice();
    const at = Buffer.from(tbsFlip).indexOf(Buffer.from('gw.example.org')) + 1;
    tbsFlip[at]! ^= 0x20; // gw -> gW in the subject CN
    expect(validateCertificateChain(tbsFlip, [der('int')], { now: NOW, trustAnchors: [root] })).toMatchObject({ ok: false, reason: 'bad-signature' });
  });

  it('refuses a certificate outside the name constraints of a CA above it', () => {
    const rootnc = firstCert(pki.path('rootnc.pem'));
    expect(validate('ee-nc-ok', { trustAnchors: [rootnc] }, [der('intnc')]).ok).toBe(true);
    expect(validate('ee-nc-bad', { trustAnchors: [rootnc], peerId: fqdn('gw.example.net') }, [der('intnc')]))
      .toMatchObject({ ok: false, reason: 'name-constraints', detail: expect.stringMatching(/gw.example.net is outside the permitted dNSName subtrees/) });
  });

  it('bounds the path length', () => {
    expect(validate('ee', { maxPathLength: 2 })).toMatchObject({ ok: false, reason: 'chain-too-long' });
    expect(validate('ee', { maxPathLength: 3 }).ok).toBe(true);
    expect(validate('ee', { maxCertificates: 0 })).toMatchObject({ ok: false, reason: 'unknown-ca' });
    expect(validate('ee', { now: Number.NaN })).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('reads what pki wrote: PEM keys of its format, DER and PEM CRLs', () => {
    expect(readFileSync(pki.path('ee.key'), 'latin1')).toMatch(keyType === 'ed25519' ? /BEGIN PRIVATE KEY/ : keyType.startsWith('rsa') ? /BEGIN RSA PRIVATE KEY/ : /BEGIN EC PRIVATE KEY/);
    // the signature algorithm pki chose is the one we decoded
    const expected = { 'ecdsa-p256': 'ecdsa-with-SHA256', 'ecdsa-p384': 'ecdsa-with-SHA384', 'rsa-2048': 'sha256WithRSAEncryption', 'rsa-pss-3072': 'RSASSA-PSS (SHA256, salt 32)', ed25519: 'Ed25519' }[keyType];
    const ee = parseCertificate(der('ee'));
    expect(ee.ok && ee.value.signatureAlgorithm.ok && ee.value.signatureAlgorithm.value.name).toBe(expected);
    expect(loadPrivateKey(pki.path('ee.key')).ok).toBe(true);
    pki.crl('int-pem.crl', 'int', 'int', ['ee-revoked'], { pem: true });
    const crl = loadCrl(pki.path('int-pem.crl'));
    expect(crl.ok && crl.value.revoked.size).toBe(1);
  });
});
