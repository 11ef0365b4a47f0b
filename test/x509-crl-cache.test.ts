// CRLs resolved through a certificate's cRLDistributionPoints from local
// files are read and decoded once per version of the file (crl-file-cache.ts):
// an unchanged file is not read again, a changed one is (a new revocation is
// seen at the next validation), a vanished one resolves to nothing, and the
// cache holds at most its bound of files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, renameSync, rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { IdType } from '../control/wire/constants.js';
import {
  CrlFileCache, decodeResolvedCrl, loadCertificates, localCrlResolver, validateCertificateChain, type ParsedCertificate,
} from '../control/crypto/x509/index.js';
import { TestPki } from './support/pki.js';

const O = 'C=CH, O=ikeclone test';
const fqdn = (s: string) => ({ type: IdType.FQDN, data: new TextEncoder().encode(s) });

function firstCert(path: string): ParsedCertificate {
  const certs = loadCertificates(path);
  if (!certs.ok) throw new Error(certs.error);
  return certs.value[0]!;
}

describe('CRLs from distribution points: cached by file and version', () => {
  const pki = new TestPki('ecdsa-p256');
  const crlPath = () => pki.path('root.crl');
  let root: ParsedCertificate;
  let ee: ParsedCertificate;

  beforeAll(() => {
    pki.key('root');
    pki.key('ee');
    pki.selfSigned('root', 'root', `${O}, CN=Root CA`);
    pki.issue('ee', 'ee', 'root', 'root', `${O}, CN=gw.example.org`, { san: ['gw.example.org'], crl: [pathToFileURL(crlPath()).href] });
    pki.crl('root.crl', 'root', 'root', []);
    pki.crl('root-revoking.crl', 'root', 'root', ['ee'], { pem: true });
    pki.crl('other-1.crl', 'root', 'root', []);
    pki.crl('other-2.crl', 'root', 'root', []);
    root = firstCert(pki.path('root.pem'));
    ee = firstCert(pki.path('ee.pem'));
  });
  afterAll(() => pki.cleanup());

  const validate = (cache: CrlFileCache) =>
    validateCertificateChain(ee.der, [], { now: Date.now() + 60_000, trustAnchors: [root], peerId: fqdn('gw.example.org'), revocation: 'ifuri', resolveCrl: localCrlResolver({}, cache) });

  it('an unchanged file is read once and its CRL decoded once; a changed file is read again and its revocation applies at once', () => {
    const cache = new CrlFileCache();
    expect(validate(cache).ok).toBe(true);
    expect(validate(cache).ok).toBe(true);
    expect(validate(cache).ok).toBe(true);
    expect(cache.stats).toEqual({ hits: 2, reads: 1, evictions: 0 });
    const resolve = localCrlResolver({}, cache);
    const der = resolve(pathToFileURL(crlPath()).href)!;
    expect(resolve(pathToFileURL(crlPath()).href)).toBe(der);
    const first = decodeResolvedCrl(der);
    expect(first.ok).toBe(true);
    expect(decodeResolvedCrl(der)).toBe(first);
    // The CA publishes a CRL revoking ee (PEM this time), renamed over the old file as a CRL fetcher does.
    copyFileSync(pki.path('root-revoking.crl'), pki.path('root.crl.new'));
    renameSync(pki.path('root.crl.new'), crlPath());
    expect(validate(cache)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(validate(cache)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(cache.stats.reads).toBe(2);
    // Rewritten in place (same inode) with the old list: read again too.
    copyFileSync(pki.path('other-1.crl'), crlPath());
    expect(validate(cache).ok).toBe(true);
    expect(cache.stats.reads).toBe(3);
    // Gone: nothing resolves (ifuri: unknown status), and nothing stale is used.
    rmSync(crlPath());
    expect(validate(cache)).toMatchObject({ ok: false, reason: 'revocation-unknown' });
    expect(cache.size).toBe(0);
  });

  it('holds at most maxEntries files, least recently used out first (counted)', () => {
    const cache = new CrlFileCache(2);
    const resolve = localCrlResolver({ a: pki.path('root-revoking.crl'), b: pki.path('other-1.crl'), c: pki.path('other-2.crl') }, cache);
    const a = resolve('a');
    expect(a).toBeDefined();
    expect(resolve('b')).toBeDefined();
    expect(resolve('a')).toBe(a); // a is now the most recently used
    expect(resolve('c')).toBeDefined(); // b goes
    expect([cache.size, cache.stats.evictions]).toEqual([2, 1]);
    expect(resolve('a')).toBe(a);
    resolve('b');
    expect(cache.stats).toEqual({ hits: 2, reads: 4, evictions: 2 });
    // An unreadable path is not kept.
    expect(localCrlResolver({}, cache)('file:///dev/zero')).toBeUndefined();
    expect(cache.size).toBe(2);
  });
});
