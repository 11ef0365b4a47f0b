// Untrusted certificate bytes never throw (architecture §4.3): mutated DER
// certificates, CRLs and AlgorithmIdentifiers always come back as a verdict.
// Credential files that are wrong say which file and what is wrong.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { IdType } from '../control/wire/constants.js';
import { decodeSignatureAlgorithm } from '../control/crypto/signature-algorithm.js';
import {
  loadCertificates, loadCrl, loadPrivateKey, localCrlResolver, parseCertificate, parseCrl, validateCertificateChain, type ParsedCertificate,
} from '../control/crypto/x509/index.js';
import { TestPki } from './support/pki.js';

/** A small deterministic generator (xorshift32), so a failure can be replayed from its iteration. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function mutate(input: Uint8Array, next: () => number): Uint8Array {
  const b = input.slice();
  switch (next() % 5) {
    case 0: // flip bits
      for (let n = 1 + (next() % 4); n > 0; n--) b[next() % b.length]! ^= 1 << (next() % 8);
      return b;
    case 1: // truncate
      return b.subarray(0, next() % b.length);
    case 2: { // overwrite a length-looking octet
      const at = next() % b.length;
      b[at] = [0x00, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff][next() % 7]!;
      return b;
    }
    case 3: { // insert bytes
      const at = next() % b.length;
      const extra = Uint8Array.from({ length: 1 + (next() % 8) }, () => next() & 0xff);
      return Uint8Array.of(...b.subarray(0, at), ...extra, ...b.subarray(at));
    }
    default: { // duplicate a slice (repeats extensions, names)
      const from = next() % b.length;
      const len = Math.min(b.length - from, 1 + (next() % 64));
      return Uint8Array.of(...b, ...b.subarray(from, from + len));
    }
  }
}

describe('fuzzing certificate input', () => {
  const pki = new TestPki('ecdsa-p256');
  let root: ParsedCertificate;
  let eeDer: Uint8Array, intDer: Uint8Array, crlDer: Uint8Array;

  beforeAll(() => {
    for (const k of ['root', 'int', 'ee']) pki.key(k);
    pki.selfSigned('root', 'root', 'C=CH, O=ikeclone test, CN=Root CA', { ncPermitted: ['example.org'] });
    pki.issue('int', 'int', 'root', 'root', 'C=CH, O=ikeclone test, CN=Intermediate CA', { ca: true, pathlen: 1 });
    pki.issue('ee', 'ee', 'int', 'int', 'C=CH, O=ikeclone test, CN=gw.example.org', {
      san: ['gw.example.org', '192.0.2.1'], flags: ['serverAuth'], crl: ['file:///nonexistent/int.crl'],
    });
    pki.crl('int.crl', 'int', 'int', ['ee']);
    const load = (n: string) => {
      const r = loadCertificates(pki.path(`${n}.pem`));
      if (!r.ok) throw new Error(r.error);
      return r.value[0]!;
    };
    root = load('root');
    eeDer = load('ee').der;
    intDer = load('int').der;
    crlDer = new Uint8Array(pki.read('int.crl'));
  });
  afterAll(() => pki.cleanup());

  it('2000 mutated end-entity and intermediate certificates: a verdict every time, never a throw, never a pass', () => {
    const next = rng(0x1ce);
    const reasons = new Map<string, number>();
    const original = validateCertificateChain(eeDer, [intDer], { now: Date.now(), trustAnchors: [root] });
    expect(original.ok).toBe(true);
    for (let i = 0; i < 2000; i++) {
      const mutateEe = i % 3 !== 2;
      const ee = mutateEe ? mutate(eeDer, next) : eeDer;
      const int = mutateEe ? intDer : mutate(intDer, next);
      let verdict;
      try {
        verdict = validateCertificateChain(ee, [int], { now: Date.now(), trustAnchors: [root], peerId: { type: IdType.FQDN, data: new TextEncoder().encode('gw.example.org') } });
      } catch (e) {
        throw new Error(`iteration ${i} threw: ${String(e)}`);
      }
      if (verdict.ok) {
        // Only a mutation outside the signed part and the parsers' view (none exists in DER) could pass; it must be byte-identical.
        expect(Buffer.compare(ee, eeDer) === 0 && Buffer.compare(int, intDer) === 0, `iteration ${i} passed a mutated chain`).toBe(true);
      } else {
        expect(typeof verdict.detail).toBe('string');
        reasons.set(verdict.reason, (reasons.get(verdict.reason) ?? 0) + 1);
        expect(verdict.detail, `iteration ${i}`).not.toMatch(/^certificate processing failed/); // nothing escaped to the safety net
      }
    }
    // the mutations reach the decoders and the signature checks alike
    expect(reasons.get('malformed')).toBeGreaterThan(60);
    expect(reasons.get('bad-signature') ?? 0).toBeGreaterThan(30);
  });

  it('mutated CRLs and AlgorithmIdentifiers decode to a result, never a throw', () => {
    const next = rng(7);
    for (let i = 0; i < 1000; i++) {
      expect(() => parseCrl(mutate(crlDer, next))).not.toThrow();
      expect(() => parseCertificate(mutate(eeDer, next).subarray(0, 200))).not.toThrow();
      expect(() => decodeSignatureAlgorithm(mutate(Uint8Array.from(Buffer.from('304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120', 'hex')), next))).not.toThrow();
    }
    expect(parseCertificate(new Uint8Array(20_000)).ok).toBe(false);
    expect(parseCertificate(Uint8Array.of(...eeDer, 0)).ok).toBe(false); // trailing bytes
  });
});

describe('credential files: precise errors, no stack traces', () => {
  const pki = new TestPki('ecdsa-p256');
  beforeAll(() => {
    pki.key('k');
    pki.selfSigned('c', 'k', 'CN=c');
    pki.crl('c.crl', 'c', 'k', []);
  });
  afterAll(() => pki.cleanup());

  it('says which file and what is wrong', () => {
    const p = (n: string) => pki.path(n);
    writeFileSync(p('two.pem'), Buffer.concat([pki.read('c.pem'), pki.read('c.pem')]));
    expect(loadCertificates(p('two.pem'))).toMatchObject({ ok: true, value: { length: 2 } });
    expect(loadCertificates(p('missing.pem'))).toEqual({ ok: false, error: `${p('missing.pem')}: cannot read file (ENOENT)` });
    expect(loadCertificates(p('k.key'))).toMatchObject({ ok: false, error: `${p('k.key')}: line 1: expected CERTIFICATE, found EC PRIVATE KEY` });
    writeFileSync(p('bad64.pem'), '-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n');
    expect(loadCertificates(p('bad64.pem'))).toMatchObject({ ok: false, error: `${p('bad64.pem')}: line 1: CERTIFICATE block is not valid base64` });
    writeFileSync(p('cut.pem'), pki.read('c.pem').toString().split('-----END')[0]!);
    expect(loadCertificates(p('cut.pem'))).toMatchObject({ ok: false, error: `${p('cut.pem')}: unterminated PEM block` });
    writeFileSync(p('junk.pem'), '-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n');
    expect(loadCertificates(p('junk.pem'))).toMatchObject({ ok: false, error: expect.stringMatching(/junk.pem: line 1: malformed certificate/) });
    expect(loadPrivateKey(p('c.pem'))).toMatchObject({ ok: false, error: `${p('c.pem')}: expected one private key block (PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY), found 0` });
    writeFileSync(p('badkey.pem'), '-----BEGIN EC PRIVATE KEY-----\nMAMCAQE=\n-----END EC PRIVATE KEY-----\n');
    expect(loadPrivateKey(p('badkey.pem'))).toMatchObject({ ok: false, error: `${p('badkey.pem')}: SEC1 private key: cannot decode it` });
    expect(loadCrl(p('c.crl')).ok).toBe(true);
    expect(loadCrl('/dev/zero')).toEqual({ ok: false, error: '/dev/zero: not a regular file' });
    expect(localCrlResolver()('file:///dev/zero')).toBeUndefined();
    expect(localCrlResolver({ 'http://ca.example/c.crl': p('c.crl') })('http://ca.example/c.crl')?.length).toBe(pki.read('c.crl').length);
    expect(localCrlResolver()('http://ca.example/c.crl')).toBeUndefined(); // never the network
    expect(loadCrl(p('c.pem'))).toMatchObject({ ok: false, error: `${p('c.pem')}: expected one X509 CRL block, found 0` });
    for (const r of [loadCertificates(p('junk.pem')), loadPrivateKey(p('badkey.pem'))]) {
      expect(r.ok || r.error).not.toMatch(/\n\s+at /);
    }
  });

  it('reads an encrypted PKCS#8 key with its passphrase only', async () => {
    const { createPrivateKey } = await import('node:crypto');
    const key = createPrivateKey(pki.read('k.key'));
    writeFileSync(pki.path('enc.key'), key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'sesame' }));
    expect(loadPrivateKey(pki.path('enc.key'))).toMatchObject({ ok: false, error: expect.stringMatching(/encrypted and no passphrase/) });
    expect(loadPrivateKey(pki.path('enc.key'), { passphrase: 'sesame' })).toMatchObject({ ok: true, value: { kind: 'ecdsa-p256' } });
    // A wrong passphrase passes CBC padding now and then (random salt and IV
    // each export) and then fails as undecodable PKCS#8: the message must
    // still name the passphrase, every time.
    for (let i = 0; i < 600; i++) {
      writeFileSync(pki.path('enc.key'), key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'sesame' }));
      expect(loadPrivateKey(pki.path('enc.key'), { passphrase: 'wrong' })).toMatchObject({ ok: false, error: expect.stringMatching(/encrypted PKCS#8 private key: wrong passphrase/) });
    }
  });
});
