// Certificate authentication between two in-memory engines: a test PKI
// (root CA, intermediate CA, end entities for alice and bob, made with
// strongSwan's pki) and the LocalAuth / RemoteAuth policy fields that use it,
// as control/config/connection-policy.ts builds them from local.certs,
// local.key, remote.cacerts and remote.crls.
import { loadCertificates, loadCrl, loadPrivateKey, type ParsedCertificate } from '../../control/crypto/x509/index.js';
import type { LocalAuth, RemoteAuth } from '../../control/ike/policy.js';
import { TestPki, type IssueOptions, type PkiKeyType } from './pki.js';

export const O = 'C=CH, O=ikeclone test';
const DAY = 86_400_000;

/** alice (initiator, alice@example.org) and bob (responder, bob.example.org), and certificates that must be refused. */
export class CertPeers {
  readonly pki: TestPki;

  constructor(readonly keyType: PkiKeyType) {
    this.pki = new TestPki(keyType);
  }

  /** Generates the keys, CAs, end entities and the CRL (RSA 3072: several seconds; call in beforeAll). */
  make(): this {
    const pki = this.pki;
    for (const k of ['root', 'int', 'alice', 'bob', 'other']) pki.key(k);
    pki.selfSigned('root', 'root', `${O}, CN=Root CA`);
    pki.issue('int', 'int', 'root', 'root', `${O}, CN=Intermediate CA`, { ca: true });
    const alice: IssueOptions = { san: ['alice@example.org'], flags: ['clientAuth'] };
    const bob: IssueOptions = { san: ['bob.example.org'], flags: ['serverAuth'] };
    pki.issue('alice', 'alice', 'int', 'int', `${O}, CN=alice`, alice);
    pki.issue('bob', 'bob', 'int', 'int', `${O}, CN=bob.example.org`, bob);
    const now = Date.now();
    pki.issue('alice-expired', 'alice', 'int', 'int', `${O}, CN=alice`, { ...alice, notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) });
    pki.issue('bob-expired', 'bob', 'int', 'int', `${O}, CN=bob.example.org`, { ...bob, notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) });
    pki.issue('alice-revoked', 'alice', 'int', 'int', `${O}, CN=alice`, { ...alice, serial: '7e57' });
    pki.crl('int.crl', 'int', 'int', ['alice-revoked'], { pem: true });
    // Unknown CA: a root nobody configured, with a chain of the same shape.
    pki.selfSigned('rogue', 'other', `C=CH, O=elsewhere, CN=Rogue CA`);
    pki.issue('alice-rogue', 'alice', 'rogue', 'other', `${O}, CN=alice`, alice);
    return this;
  }

  cert(name: string): ParsedCertificate {
    const certs = loadCertificates(this.pki.path(`${name}.pem`));
    if (!certs.ok) throw new Error(certs.error);
    return certs.value[0]!;
  }

  /** Our side: the key `<keyName>.key`, the end entity `<certName>.pem` and the intermediate. */
  local(certName: string, keyName = certName.split('-')[0]!): LocalAuth {
    const key = loadPrivateKey(this.pki.path(`${keyName}.key`), this.keyType === 'rsa-pss-3072' ? { rsaPadding: 'pss' } : {});
    if (!key.ok) throw new Error(key.error);
    return { method: 'pubkey', signingKey: key.value, certificates: { endEntity: this.cert(certName), intermediates: [this.cert('int')] } };
  }

  /** The peer's side: the root as trust anchor and the intermediate's CRL. */
  remote(extra: Partial<RemoteAuth> = {}): RemoteAuth {
    const crl = loadCrl(this.pki.path('int.crl'));
    if (!crl.ok) throw new Error(crl.error);
    return { method: 'pubkey', trustAnchors: [this.cert('root')], crls: [crl.value], ...extra };
  }

  cleanup(): void {
    this.pki.cleanup();
  }
}
