// IKE fragmentation (RFC 7383) against strongSwan's charon (5.9.8) in network
// namespaces, both directions: certificate chains (root CA, intermediate, end
// entity, ECDSA P-256) make IKE_AUTH several times larger than the small
// fragment size both ends are given (ikeclone fragment_size 560, charon
// charon.fragment_size 600, both fragmentation = force), so each end's
// IKE_AUTH goes out as Encrypted Fragment payloads within its size. The
// tunnel carries traffic both ways, and tshark, independently, sees the SKF
// payloads of both ends and reassembles and decrypts them (with ikeclone's key
// log) into the CERT payloads.
import { afterAll, beforeAll, describe, expect, onTestFailed } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CERT_PLUGINS, startCharon } from './support/charon.js';
import type { Charon } from './support/charon.js';
import { addRoute, createTopology, exec, ping } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import { waitFor } from './support/proc.js';
import { decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import type { TestPki } from './support/pki.js';
import { charonConnections, ikecloneConfig, makePki } from './support/cert-interop.js';
import { tunUnavailable } from '../io/tun.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'tshark'];
const TUN = 'ikcfrag0';
/** IP datagram sizes of each end's fragments: different, so that tshark tells whose limit each fragment kept. */
const IKECLONE_SIZE = 560;
const CHARON_SIZE = 600;

describe('IKE fragmentation interop with strongSwan charon (certificate chains, ECDSA P-256)', () => {
  const env = useNetnsSuite('interop-frag', PRE);
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki('ecdsa-p256');
  }, 120_000);
  afterAll(() => pki?.cleanup());

  async function setUp(name: string, ikecloneStarts: boolean) {
    const missing = tunUnavailable();
    if (missing) throw new Error(`TUN data plane unavailable: ${missing}`);
    const topo = await createTopology({ labels: ['ikc', 'swan'] });
    env.cleanup(() => topo.destroy());
    const dir = env.dir(name);
    const charon: Charon = await startCharon(topo.right, {
      dir: join(dir, 'charon'),
      connections: charonConnections(topo, 'charon', 'ecdsa-p256', 'fragmentation = force'),
      plugins: CERT_PLUGINS,
      installRoutes: true,
      extraCharonConf: `fragment_size = ${CHARON_SIZE}`,
      files: {
        'x509ca/root.pem': readFileSync(pki.path('root.pem')),
        'x509ca/int.pem': readFileSync(pki.path('int.pem')),
        'x509/charon.pem': readFileSync(pki.path('charon.pem')),
        'private/charon.key': readFileSync(pki.path('charon.key')),
      },
    });
    env.cleanup(() => charon.stop());
    const capture = await startCapture(topo.left, topo.links[0]!.aIf, { file: join(dir, 'ike.pcap') });
    env.cleanup(() => capture.stop({ timeoutMs: 3000 }).catch(() => {}));
    const config = ikecloneConfig(topo, pki, ikecloneStarts ? 'start' : 'none', {
      connection: { fragmentation: 'force', fragment_size: IKECLONE_SIZE },
      gateway: { dataplane: { workers: 1, tun: TUN } },
    });
    const ikc: Ikeclone = await startIkeclone(topo.left, { dir: join(dir, 'ikeclone'), config, keylog: true });
    env.cleanup(() => ikc.stop());
    onTestFailed(() => {
      process.stderr.write(`\n--- ikeclone log (tail) ---\n${ikc.log().split('\n').slice(-80).join('\n')}\n--- charon log (tail) ---\n${charon.log().split('\n').slice(-80).join('\n')}\n`);
    });
    await waitFor(async () => (await exec(topo.left, 'ip', ['link', 'show', TUN])).code === 0, { timeoutMs: 5000, intervalMs: 50, message: 'TUN device' });
    await addRoute(topo.left, topo.rightInnerNet, { dev: TUN, src: topo.leftInner });
    return { topo, charon, ikc, capture };
  }

  async function established(ikc: Ikeclone, charon: Charon): Promise<void> {
    await waitFor(
      async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const mine = st.ikeSas.find((s) => s.state === 'established' && s.children.some((c) => typeof c.worker === 'number'));
        const theirs = sas.find((s) => s.state === 'ESTABLISHED' && s.children.some((c) => c.state === 'INSTALLED'));
        return mine !== undefined && theirs !== undefined && mine.spiI === theirs.spiI;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: 'IKE SA and Child SA not established (and in the data plane) on both ends' },
    );
  }

  /** Ping through the tunnel both ways. */
  async function traffic(topo: Topology): Promise<void> {
    const there = await ping(topo.left, topo.rightInner, { count: 5, intervalS: 0.05, src: topo.leftInner });
    expect(there.received, there.result.stdout).toBe(5);
    const back = await ping(topo.right, topo.leftInner, { count: 5, intervalS: 0.05, src: topo.rightInner });
    expect(back.received, back.result.stdout).toBe(5);
  }

  /**
   * tshark on the capture: IKE_AUTH went both ways as SKF fragments (payload 53), each IP datagram
   * within its sender's size, and with ikeclone's key log it reassembles both messages and decrypts
   * the CERT payloads (end entity and intermediate) in each.
   */
  async function fragmentsSeen(file: string, ikc: Ikeclone, ikecloneIsInitiator: boolean): Promise<void> {
    const ikecloneAddr = (r: string[]) => r[0] === (ikecloneIsInitiator ? '0' : '1') || r[0] === (ikecloneIsInitiator ? 'False' : 'True');
    const frags = await decode(file, {
      fields: ['isakmp.flag_r', 'ip.len', 'isakmp.frag.number', 'isakmp.frag.total', 'isakmp.nextpayload'],
      displayFilter: 'isakmp.exchangetype == 35 && isakmp.frag.total',
    });
    const ours = frags.filter(ikecloneAddr);
    const theirs = frags.filter((r) => !ikecloneAddr(r));
    for (const [rows, size] of [[ours, IKECLONE_SIZE], [theirs, CHARON_SIZE]] as const) {
      expect(rows.length, JSON.stringify(frags)).toBeGreaterThan(2);
      const total = Number(rows[0]![3]);
      expect(rows.map((r) => Number(r[3]))).toEqual(rows.map(() => total));
      expect(rows.map((r) => Number(r[2]))).toEqual(rows.map((_, i) => i + 1));
      for (const r of rows) expect(Number(r[1])).toBeLessThanOrEqual(size);
    }
    const certs = await decode(file, {
      fields: ['isakmp.flag_r', 'isakmp.cert.encoding', 'isakmp.reassembled.length'],
      displayFilter: 'isakmp.exchangetype == 35 && isakmp.cert.encoding',
      keylogDir: ikc.keylogDir,
    });
    expect(certs.filter(ikecloneAddr).map((r) => r[1]), JSON.stringify(certs)).toEqual(['4,4']);
    expect(certs.filter((r) => !ikecloneAddr(r)).map((r) => r[1])).toEqual(['4,4']);
  }

  interopTest(
    'ikeclone initiates: IKE_AUTH fragmented both ways within each size, the tunnel carries pings both ways, tshark reassembles and decrypts the fragments',
    PRE,
    async () => {
      const { topo, ikc, charon, capture } = await setUp('i', true);
      await established(ikc, charon);
      await traffic(topo);
      const st = await ikc.status();
      expect(st.ike.fragments.sent).toBeGreaterThan(2);
      expect(st.ike.fragments.reassembled).toBe(1);
      expect(Object.keys(st.ike.drops).filter((k) => k.startsWith('fragment'))).toEqual([]);
      await capture.stop({ minPackets: 8, timeoutMs: 5000 });
      await fragmentsSeen(capture.file, ikc, true);
    },
    120_000,
  );

  interopTest(
    'charon initiates: IKE_AUTH fragmented both ways within each size, the tunnel carries pings both ways, tshark reassembles and decrypts the fragments',
    PRE,
    async () => {
      const { topo, ikc, charon, capture } = await setUp('r', false);
      await charon.initiate('net', 'ikeclone');
      await established(ikc, charon);
      await traffic(topo);
      const st = await ikc.status();
      expect(st.ike.fragments.received).toBeGreaterThan(2);
      expect(st.ike.fragments.reassembled).toBe(1);
      await capture.stop({ minPackets: 8, timeoutMs: 5000 });
      await fragmentsSeen(capture.file, ikc, false);
    },
    120_000,
  );
});
