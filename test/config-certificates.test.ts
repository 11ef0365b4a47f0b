// Certificate keys of the configuration (swanctl's local.certs, local.key,
// remote.cacerts, remote.crls, remote.revocation, send_cert, send_certreq):
// what a valid set becomes in the connection policy, and the precise error of
// each wrong one (a ConfigError, which the ikeclone command turns into exit 2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../control/config/index.js';
import { connectionPolicy } from '../control/config/connection-policy.js';
import { IdType } from '../control/wire/constants.js';
import { CertPeers } from './support/cert-peers.js';

const peers = new CertPeers('ecdsa-p256');
beforeAll(() => void peers.make(), 60_000);
afterAll(() => peers.cleanup());

const yaml = (local: string, remote: string, extra = '') => `
connections:
  site:
    remote_addrs: [192.0.2.2]
    local:
${local.split('\n').map((l) => `      ${l}`).join('\n')}
    remote:
${remote.split('\n').map((l) => `      ${l}`).join('\n')}
${extra}
    children:
      net: {}
`;

const parse = (text: string) => parseConfig(text, join(peers.pki.dir, 'ikeclone.yaml'));

function problem(text: string): ConfigError {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const bob = 'auth: pubkey\nkey: bob.key\ncerts: [bob.pem, int.pem]';
const trust = 'auth: pubkey\nid: alice@example.org\ncacerts: root.pem\ncrls: [int.crl]\nrevocation: strict';

describe('certificate configuration', () => {
  it('local.certs, remote.cacerts, crls, revocation, send_cert and send_certreq reach the policy', () => {
    const c = parse(yaml(bob, trust, '    send_cert: always\n    send_certreq: no')).connections[0]!;
    expect(c.local.certs?.map((x) => x.subjectText)).toEqual([peers.cert('bob').subjectText, peers.cert('int').subjectText]);
    // Without local.id, the identity is the certificate's subject DN (as strongSwan).
    expect(c.local.id).toMatchObject({ idType: IdType.DER_ASN1_DN });
    const p = connectionPolicy(c, undefined);
    expect(p.localAuth.certificates?.endEntity.der).toEqual(peers.cert('bob').der);
    expect(p.localAuth.certificates?.intermediates.map((x) => x.der)).toEqual([peers.cert('int').der]);
    expect(p.remoteAuth.trustAnchors?.map((x) => x.der)).toEqual([peers.cert('root').der]);
    expect(p.remoteAuth.crls).toHaveLength(1);
    expect(p.remoteAuth.revocation).toBe('strict');
    expect(p.remoteAuth.verifyKey).toBeUndefined();
    expect(p.sendCert).toBe('always');
    expect(p.sendCertreq).toBe(false);
  });

  it('defaults: send_cert ifasked, send_certreq yes, revocation relaxed', () => {
    const p = connectionPolicy(parse(yaml(bob, 'auth: pubkey\ncacerts: [root.pem]')).connections[0]!, undefined);
    expect([p.sendCert, p.sendCertreq, p.remoteAuth.revocation]).toEqual(['ifasked', true, 'relaxed']);
  });

  it('a missing certificate file names the file', () => {
    const e = problem(yaml(bob, 'auth: pubkey\ncacerts: [nowhere.pem]'));
    expect(e.path).toBe('connections.site.remote.cacerts[0]');
    expect(e.problems[0]!.problem).toMatch(/nowhere\.pem: cannot read file \(ENOENT\)/);
  });

  it('a key file given as a CA certificate is the wrong type', () => {
    const e = problem(yaml(bob, 'auth: pubkey\ncacerts: root.key'));
    expect(e.problems[0]!.problem).toMatch(/root\.key: line 1: expected CERTIFICATE, found EC PRIVATE KEY/);
  });

  it('a certificate that is not for local.key', () => {
    const e = problem(yaml('auth: pubkey\nkey: alice.key\ncerts: [bob.pem, int.pem]', trust));
    expect(e.path).toBe('connections.site.local.certs');
    expect(e.problems[0]!.problem).toMatch(/the first certificate \(".*CN=bob.example.org"\) is not for local\.key/);
  });

  it('a certificate given as a CRL', () => {
    const e = problem(yaml(bob, 'auth: pubkey\ncacerts: root.pem\ncrls: root.pem'));
    expect(e.problems[0]!.problem).toMatch(/root\.pem: expected one X509 CRL block, found 0/);
  });

  it('crls without cacerts, and bad enumerations', () => {
    expect(problem(yaml(bob, 'auth: pubkey\npubkey: alice.pem\ncrls: int.crl')).problems[0]!.problem).toMatch(/set, but remote\.cacerts is not/);
    expect(problem(yaml(bob, 'auth: pubkey\ncacerts: root.pem\nrevocation: sometimes')).problems[0]!.problem).toMatch(/got 'sometimes'|sometimes/);
    expect(problem(yaml(bob, trust, '    send_cert: maybe')).path).toBe('connections.site.send_cert');
  });

  it('local.auth rsa/pss needs an RSA key; with an ECDSA key it is an error', () => {
    const e = problem(yaml('auth: rsa/pss\nkey: bob.key\ncerts: [bob.pem, int.pem]', trust));
    expect(e.path).toBe('connections.site.local.auth');
    expect(e.problems[0]!.problem).toMatch(/rsa\/pss, but local\.key is a ec key/);
  });

  it('pubkey without pubkey or cacerts says what is missing', () => {
    const e = problem(yaml(bob, 'auth: pubkey'));
    expect(e.path).toBe('connections.site.remote.pubkey');
    expect(e.expected).toMatch(/or remote\.cacerts/);
  });
});

describe('certificate configuration with RSA keys', () => {
  const rsa = new CertPeers('rsa-2048');
  beforeAll(() => void rsa.make(), 60_000);
  afterAll(() => rsa.cleanup());

  it('local.auth rsa/pss signs with RSASSA-PSS, pubkey with PKCS#1 v1.5', () => {
    const text = (auth: string) => yaml(`auth: ${auth}\nkey: bob.key\ncerts: [bob.pem, int.pem]`, trust);
    const policy = (auth: string) => connectionPolicy(parseConfig(text(auth), join(rsa.pki.dir, 'ikeclone.yaml')).connections[0]!, undefined);
    expect(policy('rsa/pss').localAuth.signingKey).toMatchObject({ kind: 'rsa', rsaPadding: 'pss' });
    expect(policy('pubkey').localAuth.signingKey).toMatchObject({ kind: 'rsa', rsaPadding: 'pkcs1' });
  });
});
