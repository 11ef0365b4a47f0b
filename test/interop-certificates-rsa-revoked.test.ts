// Certificate interop with strongSwan's charon (5.9.8) in network namespaces,
// beyond test/interop-certificates.test.ts: charon refuses ikeclone's revoked
// certificate from the intermediate's CRL (AUTHENTICATION_FAILED, RFC 7296
// §2.21.2), and RSA signing with PKCS#1 v1.5 through RFC 7427 (swanctl's and
// our auth = pubkey with an RSA key) works both ways.
import { afterAll, beforeAll, describe, expect, onTestFailed } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CERT_PLUGINS, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import { createTopology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite, type NetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import type { PkiKeyType, TestPki } from './support/pki.js';
import { charonConnections, ikecloneConfig, localAuth, makePki } from './support/cert-interop.js';

const PRE: PrereqName[] = ['root', 'netns', 'charon', 'swanctl'];

/** charon (with the intermediate's CRL) and ikeclone presenting `ikecloneCert`. */
async function setUp(env: NetnsSuite, pki: TestPki, name: string, ikecloneStarts: boolean, ikecloneCert = 'ikeclone') {
  const topo = await createTopology({ labels: ['ikc', 'swan'] });
  env.cleanup(() => topo.destroy());
  const dir = env.dir(name);
  const charon: Charon = await startCharon(topo.right, {
    dir: join(dir, 'charon'),
    connections: charonConnections(topo, 'charon', pki.keyType),
    plugins: CERT_PLUGINS,
    files: {
      'x509ca/root.pem': readFileSync(pki.path('root.pem')),
      'x509ca/int.pem': readFileSync(pki.path('int.pem')),
      'x509crl/int.crl': readFileSync(pki.path('int.crl')),
      'x509/charon.pem': readFileSync(pki.path('charon.pem')),
      'private/charon.key': readFileSync(pki.path('charon.key')),
    },
  });
  env.cleanup(() => charon.stop());
  const local = { id: 'ikeclone.interop.test', auth: localAuth(pki.keyType), key: pki.path('ikeclone.key'), certs: [pki.path(`${ikecloneCert}.pem`), pki.path('int.pem')] };
  const config = ikecloneConfig(topo, pki, ikecloneStarts ? 'start' : 'none', { connection: { local } });
  const ikc: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'ikeclone'), config });
  env.cleanup(() => ikc.stop());
  onTestFailed(() => {
    process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-60).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`);
  });
  return { ikc, charon };
}

async function bothEstablished(ikc: Ikeclone, charon: Charon): Promise<void> {
  await waitFor(
    async () => {
      const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
      const mine = st.ikeSas.find((s) => s.state === 'established' && s.children.length > 0);
      return mine !== undefined && sas.some((s) => s.state === 'ESTABLISHED' && s.spiI === mine.spiI && s.children.length > 0);
    },
    { timeoutMs: 15_000, intervalMs: 200, message: 'IKE SA and Child SA not established on both ends' },
  );
}

describe.each<PkiKeyType>(['ecdsa-p256', 'rsa-2048'])('more certificate interop with strongSwan charon (%s)', (keyType) => {
  const env = useNetnsSuite(`interop-cert2-${keyType}`, PRE);
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki(keyType);
  }, 120_000);
  afterAll(() => pki?.cleanup());

  if (keyType === 'ecdsa-p256') {
    interopTest(
      'ikeclone initiates with a revoked certificate: charon refuses it from the CRL with AUTHENTICATION_FAILED; ikeclone keeps no SA',
      PRE,
      async () => {
        const { ikc, charon } = await setUp(env, pki, 'revoked', true, 'ikeclone-revoked');
        await charon.waitForLog(/certificate was revoked on .*/, 15_000);
        await waitFor(() => /AUTHENTICATION_FAILED/.test(ikc.log()), { timeoutMs: 10_000, intervalMs: 100, message: 'no AUTHENTICATION_FAILED in the ikeclone log' });
        expect(charon.log()).toMatch(/sending AUTHENTICATION_FAILED|generating IKE_AUTH response .* N\(AUTH_FAILED\)/);
        expect((await ikc.status()).ikeSas.filter((s) => s.state === 'established')).toEqual([]);
        expect((await charon.listSas()).filter((s) => s.state === 'ESTABLISHED')).toEqual([]);
        expect(ikc.log()).not.toMatch(/\n\s+at .*\.(js|ts):\d+/); // no stack trace
      },
      120_000,
    );
  }

  if (keyType === 'rsa-2048') {
    interopTest(
      'ikeclone initiates: RSA PKCS#1 v1.5 signatures (RFC 7427) verify both ways',
      PRE,
      async () => {
        const { ikc, charon } = await setUp(env, pki, 'rsa-i', true);
        await bothEstablished(ikc, charon);
        expect(charon.log()).toMatch(/authentication of 'ikeclone.interop.test' with RSA_EMSA_PKCS1_SHA2_\d+ successful/);
        expect(charon.log()).toMatch(/authentication of 'charon.interop.test' \(myself\) with RSA_EMSA_PKCS1_SHA2_\d+ successful/);
      },
      120_000,
    );

    interopTest(
      'charon initiates: RSA PKCS#1 v1.5 signatures (RFC 7427) verify both ways',
      PRE,
      async () => {
        const { ikc, charon } = await setUp(env, pki, 'rsa-r', false);
        await charon.initiate('net', 'ikeclone');
        await bothEstablished(ikc, charon);
        expect(charon.log()).toMatch(/authentication of 'ikeclone.interop.test' with RSA_EMSA_PKCS1_SHA2_\d+ successful/);
        const st = await ikc.status();
        expect(st.ikeSas.find((s) => s.state === 'established')?.role).toBe('responder');
      },
      120_000,
    );
  }
});
