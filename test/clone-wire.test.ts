// RFC 7791 on the wire, decoded independently by tshark: two ikeclone
// processes in network namespaces, the client cloning per worker; tshark
// decrypts every message with the client's key log and shows
// CLONE_IKE_SA_SUPPORTED (16432) only in the initiator's first and the
// responder's last IKE_AUTH message, and CLONE_IKE_SA (16433) only in
// CREATE_CHILD_SA requests.
import { describe, expect, onTestFailed } from 'vitest';
import { createTopology } from './support/netns.js';
import { interopTest } from './support/prereq.js';
import { useNetnsSuite } from './support/netns-suite.js';
import type { PrereqName } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { decode, startCapture } from './support/tshark.js';
import { startIkeclone } from './support/ikeclone-proc.js';

const PRE: PrereqName[] = ['root', 'netns', 'tshark'];
const PSK = 'clone-wire-test-psk-0123456789abcdef';

describe('RFC 7791 notifies on the wire (tshark)', () => {
  const env = useNetnsSuite('clone', PRE);

  interopTest(
    '16432 in the first IKE_AUTH request and the last IKE_AUTH response only; 16433 only in CREATE_CHILD_SA requests',
    PRE,
    async () => {
      const topo = await createTopology({ labels: ['cli', 'gw'] });
      env.cleanup(() => topo.destroy());
      const l = topo.links[0]!;
      const gw = await startIkeclone(topo.right, {
        dir: env.dir('gw'),
        config: {
          listen: { address: l.bAddr },
          connections: {
            clients: {
              local_addrs: [l.bAddr],
              local: { id: 'gw.clone.test' },
              remote: { id: 'client.clone.test' },
              psk: PSK,
              children: { net: { local_ts: [topo.rightInnerNet], remote_ts: [topo.leftInnerNet], esp: ['aes128gcm16'] } },
            },
          },
        },
      });
      env.cleanup(() => gw.stop());
      const capture = await startCapture(topo.left, l.aIf, { file: env.dir('clone.pcap') });
      env.cleanup(() => capture.stop({ timeoutMs: 3000 }).catch(() => {}));
      const client = await startIkeclone(topo.left, {
        dir: env.dir('client'),
        keylog: true,
        config: {
          listen: { address: l.aAddr },
          connections: {
            gw: {
              local_addrs: [l.aAddr],
              remote_addrs: [l.bAddr],
              local: { id: 'client.clone.test' },
              remote: { id: 'gw.clone.test' },
              psk: PSK,
              start_action: 'start',
              clone: { per: 'worker', count: 3 },
              children: { net: { local_ts: [topo.leftInnerNet], remote_ts: [topo.rightInnerNet], esp: ['aes128gcm16'] } },
            },
          },
        },
      });
      env.cleanup(() => client.stop());
      onTestFailed(() => void process.stderr.write(`\n--- client log ---\n${client.log().split('\n').slice(-60).join('\n')}\n`));
      await waitFor(async () => (await client.status()).families[0]?.state === 'complete', { timeoutMs: 15_000, intervalMs: 200, message: 'clone family did not complete' });
      const st = await client.status();
      expect(st.ikeSas).toHaveLength(3);
      expect((await gw.status()).ikeSas).toHaveLength(3);
      await capture.stop({ minPackets: 10, timeoutMs: 5000 });

      const rows = await decode(capture.file, {
        fields: ['frame.number', 'isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.notify.msgtype'],
        displayFilter: 'isakmp',
        keylogDir: client.keylogDir,
      });
      const messages = rows.map(([frame, exch, resp, notifies]) => ({
        frame: Number(frame),
        exchange: Number(exch),
        response: resp === '1' || resp === 'True',
        notifies: (notifies ?? '').split(',').filter(Boolean).map(Number),
      }));
      const auth = messages.filter((m) => m.exchange === 35);
      expect(auth.map((m) => m.response)).toEqual([false, true]);
      for (const m of auth) expect(m.notifies).toContain(16432);
      const with16432 = messages.filter((m) => m.notifies.includes(16432));
      expect(with16432.map((m) => m.frame)).toEqual(auth.map((m) => m.frame));
      const with16433 = messages.filter((m) => m.notifies.includes(16433));
      // Two clones: two CREATE_CHILD_SA requests carry 16433, nothing else does.
      expect(with16433).toHaveLength(2);
      expect(with16433.every((m) => m.exchange === 36 && !m.response)).toBe(true);
      // The decryption really happened: the Child SA creations on the clones are visible as CREATE_CHILD_SA without 16433.
      expect(messages.filter((m) => m.exchange === 36 && !m.response && !m.notifies.includes(16433))).toHaveLength(2);
    },
    90_000,
  );
});
