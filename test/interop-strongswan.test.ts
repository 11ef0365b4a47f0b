// Interop with strongSwan's charon (Debian 5.9.8) in network namespaces, both
// directions: ikeclone initiates to charon, charon initiates to ikeclone. Each
// case checks, through swanctl and ikeclone's status, that both ends agree on
// SPIs and algorithms; tshark independently decodes ikeclone's IKE_SA_INIT
// and decrypts its IKE_AUTH with the keys from ikeclone's key log.
import { describe, expect, onTestFailed } from 'vitest';
import { join } from 'node:path';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import type { Charon, ParsedSa } from './support/charon.js';
import { createTopology } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { ikecloneToCharonConfig, pskCredentials } from './support/ikeclone-to-charon.js';
import type { IkeSaStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'tshark'];
const PSK = 'interop-test-psk-0123456789abcdef';

interface Suite {
  /** strongSwan proposal keywords (IKE and ESP). */
  ike: string;
  esp: string;
  /** What both ends should report. */
  charonEncr: string;
  charonPrf: string;
  charonDh: string;
  charonChildEncr: string;
  charonChildInteg: string | null;
  ikecloneProposal: string;
  ikecloneChild: string;
}

const SUITES: Record<string, Suite> = {
  gcm: {
    ike: 'aes256gcm16-prfsha256-x25519',
    esp: 'aes128gcm16',
    charonEncr: 'AES_GCM_16-256',
    charonPrf: 'PRF_HMAC_SHA2_256',
    charonDh: 'CURVE_25519',
    charonChildEncr: 'AES_GCM_16-128',
    charonChildInteg: null,
    ikecloneProposal: 'AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519',
    ikecloneChild: 'AES_GCM_16_128/NO_EXT_SEQ',
  },
  cbc: {
    ike: 'aes128-sha256-ecp256',
    esp: 'aes256gcm16',
    charonEncr: 'AES_CBC-128',
    charonPrf: 'PRF_HMAC_SHA2_256',
    charonDh: 'ECP_256',
    charonChildEncr: 'AES_GCM_16-256',
    charonChildInteg: null,
    ikecloneProposal: 'AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256',
    ikecloneChild: 'AES_GCM_16_256/NO_EXT_SEQ',
  },
  modp: {
    ike: 'aes256-sha384-modp2048',
    esp: 'aes128gcm16',
    charonEncr: 'AES_CBC-256',
    charonPrf: 'PRF_HMAC_SHA2_384',
    charonDh: 'MODP_2048',
    charonChildEncr: 'AES_GCM_16-128',
    charonChildInteg: null,
    ikecloneProposal: 'AES_CBC_256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/MODP_2048',
    ikecloneChild: 'AES_GCM_16_128/NO_EXT_SEQ',
  },
};

function charonConnections(topo: Topology, s: Suite): string {
  const l = topo.links[0]!;
  return pskConnection({
    localAddrs: l.bAddr,
    remoteAddrs: l.aAddr,
    proposals: s.ike,
    esp: s.esp,
    localId: 'charon.interop.test',
    remoteId: 'ikeclone.interop.test',
    localTs: topo.rightInnerNet,
    remoteTs: topo.leftInnerNet,
  });
}

const SECRETS = pskSecrets('interop', ['charon.interop.test', 'ikeclone.interop.test'], PSK);

function ikecloneConfig(topo: Topology, s: Suite, startAction: 'start' | 'none', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return ikecloneToCharonConfig(topo, { ike: s.ike, esp: s.esp, startAction, credentials: pskCredentials(PSK), connection: extra });
}

/** Both ends agree on SPIs and algorithms of the IKE SA and its Child SA. */
function expectAgreement(mine: IkeSaStatus, theirs: ParsedSa, s: Suite): void {
  expect(theirs.state).toBe('ESTABLISHED');
  expect(theirs.spiI).toBe(mine.spiI);
  expect(theirs.spiR).toBe(mine.spiR);
  expect(theirs.encr).toBe(s.charonEncr);
  expect(theirs.prf).toBe(s.charonPrf);
  expect(theirs.dhGroup).toBe(s.charonDh);
  expect(mine.proposal).toBe(s.ikecloneProposal);
  expect(mine.remoteId).toBe('charon.interop.test');
  expect(mine.children).toHaveLength(1);
  expect(theirs.children).toHaveLength(1);
  const [c] = mine.children;
  const [tc] = theirs.children;
  expect(tc!.state).toBe('INSTALLED');
  expect(tc!.spiIn).toBe(c!.spiOut);
  expect(tc!.spiOut).toBe(c!.spiIn);
  expect(tc!.encr).toBe(s.charonChildEncr);
  expect(tc!.integ).toBe(s.charonChildInteg);
  expect(c!.proposal).toBe(s.ikecloneChild);
  // kernel-libipsec always encapsulates ESP in UDP (it announces a NAT): we must follow.
  expect(c!.udpEncap).toBe(true);
}

describe('interop with strongSwan charon', () => {
  const env = useNetnsSuite('interop', PRE);

  async function setUp(name: string, suite: Suite, ikecloneStarts: boolean, extra: Record<string, unknown> = {}) {
    const topo = await createTopology({ labels: ['ikc', 'swan'] });
    env.cleanup(() => topo.destroy());
    const dir = env.dir(name);
    const charon: Charon = await startCharon(topo.right, { dir: join(dir, 'charon'), connections: charonConnections(topo, suite), secrets: SECRETS });
    env.cleanup(() => charon.stop());
    const capture = await startCapture(topo.left, topo.links[0]!.aIf, { file: join(dir, 'ike.pcap') });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }).catch(() => {}));
    const ikc: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'ikeclone'), config: ikecloneConfig(topo, suite, ikecloneStarts ? 'start' : 'none', extra), keylog: true });
    env.cleanup(() => ikc.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-80).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-80).join('\n')}\n`);
    });
    return { topo, charon, ikc, capture, dir };
  }

  async function established(ikc: Ikeclone, charon: Charon): Promise<{ mine: IkeSaStatus; theirs: ParsedSa }> {
    let result: { mine: IkeSaStatus; theirs: ParsedSa } | undefined;
    await waitFor(
      async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const mine = st.ikeSas.find((s) => s.state === 'established' && s.children.length > 0);
        const theirs = sas.find((s) => s.state === 'ESTABLISHED' && s.children.length > 0);
        if (mine && theirs) result = { mine, theirs };
        return result !== undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, message: 'IKE SA and Child SA not established on both ends' },
    );
    return result!;
  }

  interopTest(
    'ikeclone initiates to charon (aes256gcm16-prfsha256-x25519, esp aes128gcm16); tshark decrypts IKE_AUTH with our key log',
    PRE,
    async () => {
      const { ikc, charon, capture } = await setUp('i-gcm', SUITES.gcm!, true);
      const { mine, theirs } = await established(ikc, charon);
      expect(mine.role).toBe('initiator');
      expect(theirs.initiator).toBe(false);
      expectAgreement(mine, theirs, SUITES.gcm!);
      await capture.stop({ minPackets: 4, timeoutMs: 5000 });
      // tshark, independently: our IKE_SA_INIT request parses with our SPI, and IKE_AUTH decrypts.
      const init = await decode(capture.file, {
        fields: ['isakmp.ispi', 'isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.nextpayload'],
        displayFilter: 'isakmp.exchangetype == 34 && isakmp.flag_r == 0',
      });
      expect(init.length).toBeGreaterThanOrEqual(1);
      expect(init[0]![0]!.replace(/:/g, '')).toBe(mine.spiI);
      const auth = await decode(capture.file, {
        fields: ['isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.id.type', 'isakmp.auth.method', '_ws.expert.message'],
        displayFilter: 'isakmp.exchangetype == 35',
        keylogDir: ikc.keylogDir,
      });
      expect(auth.length).toBe(2);
      for (const row of auth) {
        expect(row[2], 'IDi/IDr decoded inside SK').not.toBe('');
        expect(row[3]).toBe('2'); // SHARED_KEY_MIC
        expect(row[4] ?? '').not.toMatch(/Integrity Checksum Data is incorrect/);
      }
    },
    90_000,
  );

  interopTest(
    'charon initiates to ikeclone (aes256gcm16-prfsha256-x25519, esp aes128gcm16)',
    PRE,
    async () => {
      const { ikc, charon } = await setUp('r-gcm', SUITES.gcm!, false);
      await charon.initiate('net', 'ikeclone');
      const { mine, theirs } = await established(ikc, charon);
      expect(mine.role).toBe('responder');
      expect(theirs.initiator).toBe(true);
      expectAgreement(mine, theirs, SUITES.gcm!);
    },
    90_000,
  );

  interopTest(
    'ikeclone initiates to charon with AES-CBC + HMAC-SHA2 and ecp256',
    PRE,
    async () => {
      const { ikc, charon } = await setUp('i-cbc', SUITES.cbc!, true);
      const { mine, theirs } = await established(ikc, charon);
      expectAgreement(mine, theirs, SUITES.cbc!);
    },
    90_000,
  );

  interopTest(
    'charon initiates to ikeclone with AES-CBC + HMAC-SHA2-384 and modp2048',
    PRE,
    async () => {
      const { ikc, charon } = await setUp('r-modp', SUITES.modp!, false);
      await charon.initiate('net', 'ikeclone');
      const { mine, theirs } = await established(ikc, charon);
      expectAgreement(mine, theirs, SUITES.modp!);
    },
    90_000,
  );

  interopTest(
    'charon deletes the IKE SA and ikeclone follows; ikeclone deletes and charon follows',
    PRE,
    async () => {
      const { ikc, charon } = await setUp('delete', SUITES.gcm!, true);
      await established(ikc, charon);
      await charon.terminate({ ike: 'ikeclone' });
      await waitFor(async () => (await ikc.status()).ikeSas.length === 0, { timeoutMs: 10_000, intervalMs: 100, message: 'ikeclone kept the IKE SA' });
      await charon.initiate('net', 'ikeclone');
      await established(ikc, charon);
      await ikc.down('charon');
      await waitFor(async () => (await charon.listSas()).length === 0, { timeoutMs: 10_000, intervalMs: 100, message: 'charon kept the IKE SA' });
    },
    90_000,
  );

  interopTest(
    'clone per: worker against charon (no RFC 7791): one IKE SA, never a CLONE_IKE_SA, and the fallback is in status and logs',
    PRE,
    async () => {
      const { ikc, charon, capture } = await setUp('fallback', SUITES.gcm!, true, { clone: { per: 'worker', count: 4 } });
      const { mine, theirs } = await established(ikc, charon);
      // The first Child SA agrees; since the per-worker policy (architecture §5.1) parallel Child SAs
      // with the same selectors follow it, one per worker, all installed on both ends.
      const first = mine.children[0]!;
      expectAgreement({ ...mine, children: [first] }, { ...theirs, children: theirs.children.filter((c) => c.spiIn === first.spiOut) }, SUITES.gcm!);
      await waitFor(async () => (await ikc.status()).ikeSas[0]!.children.length === 4 && (await charon.listSas())[0]!.children.filter((c) => c.state === 'INSTALLED').length === 4, {
        timeoutMs: 10_000, intervalMs: 100, message: 'parallel Child SAs on both ends',
      });
      expect((await ikc.status()).ikeSas[0]!.children.map((c) => c.placement?.kind)).toEqual(['parallel', 'parallel', 'parallel', 'parallel']);
      await waitFor(async () => (await ikc.status()).families[0]?.state === 'fallback', { timeoutMs: 5000, intervalMs: 100, message: 'no fallback reported' });
      const st = await ikc.status();
      expect(st.ikeSas).toHaveLength(1);
      expect(st.families[0]).toMatchObject({ target: 4, state: 'fallback', reason: expect.stringMatching(/CLONE_IKE_SA_SUPPORTED/) });
      expect(ikc.log()).toMatch(/not cloning: the peer did not send CLONE_IKE_SA_SUPPORTED/);
      expect(await charon.listSas()).toHaveLength(1);
      await capture.stop({ minPackets: 4, timeoutMs: 5000 });
      const rows = await decode(capture.file, {
        fields: ['isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.notify.msgtype'],
        displayFilter: 'isakmp',
        keylogDir: ikc.keylogDir,
      });
      const notifies = rows.flatMap((r) => (r[2] ?? '').split(',').filter(Boolean).map(Number));
      // Decryption worked (IKE_AUTH's inner notifies are visible), and 16433 never went out.
      expect(notifies).toContain(16432);
      expect(notifies).not.toContain(16433);
      // CREATE_CHILD_SA only for the three parallel Child SAs (request and response each), none a clone.
      expect(rows.filter((r) => r[0] === '36')).toHaveLength(6);
    },
    90_000,
  );
});
