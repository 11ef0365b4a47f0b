// MOBIKE interop with strongSwan's charon (RFC 4555) in network namespaces
// with two NICs each side: a charon initiator loses its first link and moves,
// and the ikeclone responder follows; an ikeclone initiator moves to its
// second NIC and charon follows (charon's kernel-libipsec cannot update SAs in
// place, so it then rekeys the Child SA: that must succeed too); after charon
// rekeys the IKE SA, ikeclone, which started the first one, is still the
// MOBIKE initiator: it fails over and moves (RFC 4555 §1.3).
import { describe, expect, onTestFailed } from 'vitest';
import { pskConnection, pskSecrets, startCharon } from './support/charon.js';
import type { Charon, ParsedSa } from './support/charon.js';
import { createTopology, setLink } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';
import type { Ikeclone } from './support/ikeclone-proc.js';
import { ControlClient } from '../control/api/control-client.js';
import type { IkeSaStatus } from '../control/status.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'tshark'];
const PSK = 'interop-mobike-psk-0123456789abcdef';
const host = (endpoint: string) => endpoint.replace(/:\d+$/, '');

const SECRETS = pskSecrets('mobike', ['charon.mobike.test', 'ikeclone.mobike.test'], PSK);

function charonConnections(topo: Topology, initiator: boolean): string {
  const [n1] = topo.links;
  return pskConnection({
    ...(initiator ? { remoteAddrs: n1!.bAddr } : {}),
    proposals: 'aes256gcm16-prfsha256-x25519',
    esp: 'aes128gcm16',
    localId: 'charon.mobike.test',
    remoteId: 'ikeclone.mobike.test',
    localTs: initiator ? topo.leftInnerNet : topo.rightInnerNet,
    remoteTs: initiator ? topo.rightInnerNet : topo.leftInnerNet,
    ikeOptions: 'mobike = yes',
  });
}

function ikecloneConfig(topo: Topology, initiator: boolean): Record<string, unknown> {
  const [n1] = topo.links;
  const me = initiator ? 'left' : 'right';
  return {
    listen: { address: '0.0.0.0' },
    retransmit: { timeout: '500ms', tries: 4 },
    connections: {
      charon: {
        ...(initiator ? { local_addrs: [n1!.aAddr], remote_addrs: [n1!.bAddr], start_action: 'start' } : {}),
        local: { id: 'ikeclone.mobike.test' },
        remote: { id: 'charon.mobike.test' },
        psk: PSK,
        children: {
          net: {
            local_ts: [me === 'left' ? topo.leftInnerNet : topo.rightInnerNet],
            remote_ts: [me === 'left' ? topo.rightInnerNet : topo.leftInnerNet],
            esp: ['aes128gcm16'],
          },
        },
      },
    },
  };
}

describe('MOBIKE interop with strongSwan charon', () => {
  const env = useNetnsSuite('imobike', PRE);

  async function both(ikc: Ikeclone, charon: Charon, ok: (mine: IkeSaStatus, theirs: ParsedSa) => boolean, message: string, timeoutMs = 20_000) {
    let result: { mine: IkeSaStatus; theirs: ParsedSa } | undefined;
    await waitFor(
      async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const mine = st.ikeSas.find((s) => s.state === 'established');
        const theirs = sas.find((s) => s.state === 'ESTABLISHED');
        if (mine && theirs && mine.spiI === theirs.spiI && ok(mine, theirs)) result = { mine, theirs };
        return result !== undefined;
      },
      { timeoutMs, intervalMs: 250, message },
    );
    return result!;
  }

  interopTest(
    'a charon initiator loses its first link, moves with UPDATE_SA_ADDRESSES, and the ikeclone responder follows',
    PRE,
    async () => {
      // charon on the left (two NICs), ikeclone on the right.
      const topo = await createTopology({ links: 2, labels: ['swan', 'ikc'] });
      env.cleanup(() => topo.destroy());
      const [n1, n2] = topo.links as [(typeof topo.links)[0], (typeof topo.links)[0]];
      const ikc = await startIkeclone(topo.right, { dir: env.dir('r-ikc'), config: ikecloneConfig(topo, false), keylog: true });
      env.cleanup(() => ikc.stop());
      const capture = await startCapture(topo.right, n2.bIf, { file: env.dir('r-nic2.pcap') });
      env.cleanup(() => capture.stop({ timeoutMs: 3000 }).catch(() => {}));
      const charon = await startCharon(topo.left, { dir: env.dir('r-charon'), connections: charonConnections(topo, true), secrets: SECRETS });
      env.cleanup(() => charon.stop());
      onTestFailed(() => void process.stderr.write(`\n--- ikeclone ---\n${ikc.log().split('\n').slice(-60).join('\n')}\n--- charon ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`));
      await charon.initiate('net', 'ikeclone');
      const first = await both(ikc, charon, (m) => m.children.length === 1 && m.mobike, 'IKE SA with MOBIKE not established');
      expect(host(first.mine.remote)).toBe(n1.aAddr);
      await setLink(topo.left, n1.aIf, false);
      const moved = await both(ikc, charon, (m, t) => host(m.remote) === n2.aAddr && t.localHost === n2.aAddr && m.children.length >= 1 && t.children.length >= 1, 'ikeclone did not follow charon to its second address');
      expect(host(moved.mine.local)).toBe(n2.bAddr);
      expect(moved.mine.spiI).toBe(first.mine.spiI);
      // Child SAs agree after the move (charon's kernel-libipsec rekeys them).
      await waitFor(async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const c = st.ikeSas[0]?.children ?? [];
        const t = sas[0]?.children ?? [];
        return c.length === 1 && t.length === 1 && c[0]!.spiIn === t[0]!.spiOut && c[0]!.spiOut === t[0]!.spiIn;
      }, { timeoutMs: 15_000, intervalMs: 250, message: 'Child SAs disagree after the move' });
      await capture.stop({ minPackets: 2, timeoutMs: 5000 });
      // tshark: UPDATE_SA_ADDRESSES (16400), decrypted with ikeclone's key log, came from charon's second address.
      const rows = await decode(capture.file, { fields: ['ip.src', 'isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.notify.msgtype'], displayFilter: 'isakmp', keylogDir: ikc.keylogDir });
      const updates = rows.filter((r) => (r[3] ?? '').split(',').includes('16400'));
      expect(updates.length).toBeGreaterThanOrEqual(1);
      expect(updates.every((r) => r[0] === n2.aAddr && r[1] === '37' && r[2] === '0')).toBe(true);
    },
    120_000,
  );

  interopTest(
    'an ikeclone initiator moves to its second NIC (ikeclone move) and charon follows, then rekeys the Child SA',
    PRE,
    async () => {
      // ikeclone on the left (two NICs), charon on the right.
      const topo = await createTopology({ links: 2, labels: ['ikc', 'swan'] });
      env.cleanup(() => topo.destroy());
      const [n1, n2] = topo.links as [(typeof topo.links)[0], (typeof topo.links)[0]];
      const charon = await startCharon(topo.right, { dir: env.dir('i-charon'), connections: charonConnections(topo, false), secrets: SECRETS });
      env.cleanup(() => charon.stop());
      const ikc = await startIkeclone(topo.left, { dir: env.dir('i-ikc'), config: ikecloneConfig(topo, true), keylog: true });
      env.cleanup(() => ikc.stop());
      onTestFailed(() => void process.stderr.write(`\n--- ikeclone ---\n${ikc.log().split('\n').slice(-60).join('\n')}\n--- charon ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`));
      const first = await both(ikc, charon, (m) => m.children.length === 1 && m.mobike, 'IKE SA with MOBIKE not established');
      const childBefore = first.mine.children[0]!.spiIn;
      const client = await ControlClient.connect(ikc.socket);
      try {
        const result = await client.move(first.mine.id, n2.aAddr, n2.bAddr);
        expect(host(result.ike.local)).toBe(n2.aAddr);
      } finally {
        client.close();
      }
      const moved = await both(ikc, charon, (m, t) => t.remoteHost === n2.aAddr && t.localHost === n2.bAddr && host(m.local) === n2.aAddr, 'charon did not follow the move');
      expect(moved.theirs.spiI).toBe(first.mine.spiI);
      // charon (kernel-libipsec) rekeys the Child SA after the move; both ends agree on the new SPIs.
      await waitFor(async () => {
        const [st, sas] = await Promise.all([ikc.status(), charon.listSas()]);
        const c = st.ikeSas[0]?.children ?? [];
        const t = sas[0]?.children ?? [];
        return c.length === 1 && t.length === 1 && c[0]!.spiIn !== childBefore && c[0]!.spiIn === t[0]!.spiOut && c[0]!.spiOut === t[0]!.spiIn;
      }, { timeoutMs: 15_000, intervalMs: 250, message: 'the Child SA was not rekeyed into agreement after the move' });
      expect(n1.aAddr).not.toBe(n2.aAddr);
    },
    120_000,
  );
  interopTest(
    'after charon (the first responder) rekeys the IKE SA, the ikeclone initiator still fails over when its link goes and moves with ikeclone move (RFC 4555 §1.3)',
    PRE,
    async () => {
      // ikeclone on the left (two NICs), charon on the right.
      const topo = await createTopology({ links: 2, labels: ['ikc', 'swan'] });
      env.cleanup(() => topo.destroy());
      const [n1, n2] = topo.links as [(typeof topo.links)[0], (typeof topo.links)[0]];
      const charon = await startCharon(topo.right, { dir: env.dir('k-charon'), connections: charonConnections(topo, false), secrets: SECRETS });
      env.cleanup(() => charon.stop());
      const ikc = await startIkeclone(topo.left, { dir: env.dir('k-ikc'), config: ikecloneConfig(topo, true) });
      env.cleanup(() => ikc.stop());
      onTestFailed(() => void process.stderr.write(`\n--- ikeclone ---\n${ikc.log().split('\n').slice(-80).join('\n')}\n--- charon ---\n${charon.log().split('\n').slice(-60).join('\n')}\n`));
      const first = await both(ikc, charon, (m) => m.children.length === 1 && m.mobike, 'IKE SA with MOBIKE not established');
      expect(first.mine.role).toBe('initiator');
      // charon rekeys the IKE SA: it is the IKEv2 initiator of the new one (RFC 7296 §2.18), ikeclone stays the MOBIKE initiator.
      await charon.rekey({ ike: 'ikeclone' });
      const rekeyed = await both(ikc, charon, (m) => m.spiI !== first.mine.spiI && m.children.length === 1, 'charon did not rekey the IKE SA');
      expect(rekeyed.mine.role).toBe('responder');
      // NIC 1's link goes: ikeclone moves to NIC 2, charon follows.
      await setLink(topo.left, n1.aIf, false);
      const failedOver = await both(ikc, charon, (m, t) => host(m.local) === n2.aAddr && t.remoteHost === n2.aAddr, 'ikeclone did not move to NIC 2 when NIC 1 went down');
      expect(failedOver.mine.spiI).toBe(rekeyed.mine.spiI);
      // NIC 1 returns: home again.
      await setLink(topo.left, n1.aIf, true);
      await both(ikc, charon, (m, t) => host(m.local) === n1.aAddr && t.remoteHost === n1.aAddr, 'ikeclone did not move home to NIC 1');
      // ikeclone move (the control socket's move) to NIC 2: charon follows.
      const client = await ControlClient.connect(ikc.socket);
      try {
        const result = await client.move(rekeyed.mine.id, n2.aAddr, n2.bAddr);
        expect(host(result.ike.local)).toBe(n2.aAddr);
      } finally {
        client.close();
      }
      const moved = await both(ikc, charon, (m, t) => host(m.local) === n2.aAddr && t.remoteHost === n2.aAddr && t.localHost === n2.bAddr, 'charon did not follow ikeclone move');
      expect(moved.mine.spiI).toBe(rekeyed.mine.spiI);
    },
    120_000,
  );
});
