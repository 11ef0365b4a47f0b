// Certificate authentication against strongSwan's charon (5.9.8) in network
// namespaces, both directions, with a chain (root CA, intermediate CA, end
// entity) the test makes with strongSwan's pki, for ECDSA P-256, Ed25519 and
// RSA 3072 signing with RSASSA-PSS: CERT payloads carry the end
// entity and the intermediate (RFC 7296 §3.6), CERTREQ names the root (§3.7),
// each end validates the other's chain and binds its ID (RFC 4945 §3.1). A
// revoked certificate presented by charon is refused with
// AUTHENTICATION_FAILED. tshark decrypts ikeclone's IKE_AUTH with our key log
// and sees the CERT and CERTREQ payloads.
import { afterAll, beforeAll, describe, expect, onTestFailed } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CERT_PLUGINS, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import { createTopology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { DEFAULT_IKE_FILTER, decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import type { TestPki, PkiKeyType } from './support/pki.js';
import { charonConnections, ikecloneConfig, makePki } from './support/cert-interop.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'tshark'];
/** The signature scheme charon names when it verified our AUTH payload. */
const SCHEME: Partial<Record<PkiKeyType, RegExp>> = { 'ecdsa-p256': /ECDSA_WITH_SHA\S*/, ed25519: /ED25519/, 'rsa-pss-3072': /RSA_EMSA_PSS\S*/ };

describe.each<PkiKeyType>(['ecdsa-p256', 'ed25519', 'rsa-pss-3072'])('certificate interop with strongSwan charon (%s)', (keyType) => {
  const env = useNetnsSuite(`interop-cert-${keyType}`, PRE);
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki(keyType);
  }, 120_000);
  afterAll(() => pki?.cleanup());

  async function setUp(name: string, ikecloneStarts: boolean, charonCert = 'charon') {
    const topo = await createTopology({ labels: ['ikc', 'swan'] });
    env.cleanup(() => topo.destroy());
    const dir = env.dir(name);
    const charon: Charon = await startCharon(topo.right, {
      dir: join(dir, 'charon'),
      connections: charonConnections(topo, charonCert, keyType),
      plugins: CERT_PLUGINS,
      files: {
        'x509ca/root.pem': readFileSync(pki.path('root.pem')),
        'x509ca/int.pem': readFileSync(pki.path('int.pem')),
        [`x509/${charonCert}.pem`]: readFileSync(pki.path(`${charonCert}.pem`)),
        'private/charon.key': readFileSync(pki.path('charon.key')),
      },
    });
    env.cleanup(() => charon.stop());
    // An IKE_AUTH with RSA 3072 certificates exceeds the MTU and travels as IP fragments (no RFC 7383
    // here): capture the later fragments too (offset != 0, no UDP header) so that tshark can reassemble.
    const filter = `${DEFAULT_IKE_FILTER} or (ip[6:2] & 0x1fff != 0)`;
    const capture = await startCapture(topo.left, topo.links[0]!.aIf, { file: join(dir, 'ike.pcap'), filter });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }).catch(() => {}));
    const ikc: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'ikeclone'), config: ikecloneConfig(topo, pki, ikecloneStarts ? 'start' : 'none'), keylog: true });
    env.cleanup(() => ikc.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-80).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-80).join('\n')}\n`);
    });
    return { topo, charon, ikc, capture };
  }

  async function established(ikc: Ikeclone, charon: Charon) {
    await waitFor(
      async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const mine = st.ikeSas.find((s) => s.state === 'established' && s.children.length > 0);
        const theirs = sas.find((s) => s.state === 'ESTABLISHED' && s.children.length > 0);
        return mine !== undefined && theirs !== undefined && mine.spiI === theirs.spiI && mine.spiR === theirs.spiR;
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'IKE SA and Child SA not established on both ends' },
    );
    const st = await ikc.status();
    return st.ikeSas.find((s) => s.state === 'established')!;
  }

  interopTest(
    'ikeclone initiates: both chains validate; tshark decrypts our IKE_AUTH and sees CERT (end entity, intermediate) and CERTREQ',
    PRE,
    async () => {
      const { ikc, charon, capture } = await setUp('i', true);
      const mine = await established(ikc, charon);
      expect(mine.role).toBe('initiator');
      expect(mine.remoteId).toBe('charon.interop.test');
      // charon checked our chain to its root.
      expect(charon.log()).toMatch(/reached self-signed root ca with a path length of 1/);
      expect(charon.log()).toMatch(new RegExp(`authentication of 'ikeclone.interop.test' with ${SCHEME[keyType]!.source} successful`));
      await capture.stop({ minPackets: 4, timeoutMs: 5000 });
      // charon's IKE_SA_INIT response names its CA (in clear).
      const init = await decode(capture.file, { fields: ['isakmp.certreq.type'], displayFilter: 'isakmp.exchangetype == 34 && isakmp.flag_r == 1' });
      expect(init[0]?.[0]).toBe('4');
      const auth = await decode(capture.file, {
        fields: ['isakmp.flag_r', 'isakmp.cert.encoding', 'isakmp.certreq.type', 'isakmp.auth.method', '_ws.expert.message'],
        displayFilter: 'isakmp.exchangetype == 35',
        keylogDir: ikc.keylogDir,
      });
      // Sent as IKE fragments (RFC 7383, both ends announce it): the payloads are in the frame where tshark reassembles them.
      const request = auth.find((r) => (r[0] === '0' || r[0] === 'False') && r[1] !== '');
      const response = auth.find((r) => (r[0] === '1' || r[0] === 'True') && r[1] !== '');
      expect(request, 'our IKE_AUTH request decrypted').toBeDefined();
      expect(request![1]).toBe('4,4'); // X.509 Certificate - Signature: end entity, intermediate
      expect(request![2]).toBe('4');
      expect(request![3]).toBe('14'); // Digital Signature (RFC 7427)
      expect(request![4] ?? '').not.toMatch(/Integrity Checksum Data is incorrect/);
      expect(response![1]).toMatch(/^4(,4)?$/); // charon's end entity (and intermediate)
    },
    120_000,
  );

  interopTest(
    'charon initiates: both chains validate',
    PRE,
    async () => {
      const { ikc, charon } = await setUp('r', false);
      await charon.initiate('net', 'ikeclone');
      const mine = await established(ikc, charon);
      expect(mine.role).toBe('responder');
      expect(mine.remoteId).toBe('charon.interop.test');
      expect(charon.log()).toMatch(/authentication of 'ikeclone.interop.test' with .* successful/);
    },
    120_000,
  );

  if (keyType === 'ecdsa-p256') {
    interopTest(
      'charon initiates with a revoked certificate: ikeclone answers AUTHENTICATION_FAILED and says why',
      PRE,
      async () => {
        const { ikc, charon } = await setUp('revoked', false, 'charon-revoked');
        await charon.initiate('net', 'ikeclone').catch(() => undefined);
        await charon.waitForLog(/received AUTHENTICATION_FAILED notify error/, 15_000);
        await waitFor(() => /certificate refused \(revoked\)/.test(ikc.log()), { timeoutMs: 5000, intervalMs: 100, message: 'no revocation in the ikeclone log' });
        expect((await ikc.status()).ikeSas).toHaveLength(0);
        expect(ikc.log()).not.toMatch(/\n\s+at .*\.(js|ts):\d+/); // no stack trace
      },
      120_000,
    );
  }
});
