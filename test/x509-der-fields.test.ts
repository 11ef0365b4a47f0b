// The signed elements of a certificate are kept as received (RFC 5280 §4.1):
// SubjectPublicKeyInfo and both AlgorithmIdentifiers are views of the DER,
// never re-encoded, and the outer signatureAlgorithm must equal the signed
// one octet for octet (§4.1.1.2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, X509Certificate } from 'node:crypto';
import { certificateDerFields, certificateSubjectDer } from '../control/crypto/der.js';
import { parseCertificate, subjectPublicKeyInfoSha1 } from '../control/crypto/x509/index.js';
import { TestPki, type PkiKeyType } from './support/pki.js';

const types: PkiKeyType[] = ['ecdsa-p256', 'ed25519'];

describe.each(types)('certificate DER fields (%s)', (keyType) => {
  const pki = new TestPki(keyType);
  let der: Uint8Array;

  beforeAll(() => {
    pki.key('ca');
    pki.key('gw');
    pki.selfSigned('ca', 'ca', 'C=CH, O=ikeclone test, CN=Root CA');
    pki.issue('gw', 'gw', 'ca', 'ca', 'C=CH, O=ikeclone test, CN=gw.example.org', { san: ['gw.example.org'] });
    der = new Uint8Array(new X509Certificate(pki.read('gw.pem')).raw);
  });
  afterAll(() => pki.cleanup());

  it('finds SubjectPublicKeyInfo, subject and both AlgorithmIdentifiers as views of the DER', () => {
    const fields = certificateDerFields(der)!;
    expect(fields).toBeDefined();
    const openssl = new X509Certificate(der);
    expect(Buffer.from(fields.spki)).toEqual(openssl.publicKey.export({ type: 'spki', format: 'der' }));
    expect(fields.spki.buffer).toBe(der.buffer);
    expect(fields.signatureAlgorithm[0]).toBe(0x30);
    expect(Buffer.from(fields.signatureAlgorithm)).toEqual(Buffer.from(fields.tbsSignatureAlgorithm));
    expect(Buffer.from(certificateSubjectDer(der)!)).toEqual(Buffer.from(fields.subject));
  });

  it('parseCertificate keeps the received SubjectPublicKeyInfo and OpenSSL\'s key', () => {
    const parsed = parseCertificate(der);
    if (!parsed.ok) throw new Error(parsed.error);
    expect(Buffer.from(parsed.value.spki)).toEqual(Buffer.from(certificateDerFields(der)!.spki));
    expect(parsed.value.publicKey.equals(new X509Certificate(der).publicKey)).toBe(true);
    expect(Buffer.from(subjectPublicKeyInfoSha1(parsed.value))).toEqual(createHash('sha1').update(parsed.value.spki).digest());
  });

  it('refuses an outer signatureAlgorithm that differs from the signed one', () => {
    const fields = certificateDerFields(der)!;
    const at = fields.signatureAlgorithm.byteOffset - der.byteOffset;
    const changed = der.slice();
    // The last octet of the outer OID: another algorithm, same length, so the layout still reads.
    const oid = changed.subarray(at + 2, at + 2 + 2 + changed[at + 3]!);
    oid[oid.length - 1] ^= 0x01;
    const r = parseCertificate(changed);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toBe('signatureAlgorithm differs from tbsCertificate.signature');
  });

  it('gives no fields for truncated or foreign bytes, never throwing', () => {
    for (let n = 0; n < der.length; n += 7) expect(certificateDerFields(der.subarray(0, n))).toBeUndefined();
    expect(certificateDerFields(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]))).toBeUndefined();
  });
});
