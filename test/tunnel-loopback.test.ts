// ESP between two ikeclone gateways over UDP on loopback (RFC 3948 on the
// NAT-T port, shared with IKE): Child SAs negotiated by IKE go to the data
// plane's workers, generated traffic crosses, the receiver verifies and counts.
import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { loopbackPair } from './support/loopback.js';
import { interopTest } from './support/prereq.js';

const running: Gateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
});

async function pair(opts: Parameters<typeof loopbackPair>[0] & { transport?: 'udp' | 'auto' } = {}) {
  const { initiator, responder } = loopbackPair(opts);
  for (const c of [initiator, responder]) {
    c.dataplane.workers = 2;
    c.dataplane.esp = opts.transport ?? 'udp';
  }
  const gw = new Gateway({ config: responder, log: silentLogger() });
  const client = new Gateway({ config: initiator, log: silentLogger() });
  running.push(gw, client);
  await gw.start();
  await client.start();
  return { gw, client };
}

async function until(cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('ESP between two gateways on loopback', () => {
  it('installs the Child SA in one worker on each side and carries generated traffic both ways over UDP 4500', async () => {
    const { gw, client } = await pair();
    onTestFailed(() => {
      process.stderr.write(`client ${JSON.stringify(client.status().dataplane)}\ngw ${JSON.stringify(gw.status().dataplane)}\n`);
    });
    const sa = await client.up('gw');
    const child = sa.children[0]!;
    await until(() => client.dataPlane.ownerOf(child.id) !== undefined && gw.dataPlane.saIds().length === 1);
    const st = client.status();
    expect(st.ikeSas[0]!.children[0]!.worker).toBe(client.dataPlane.ownerOf(child.id));
    expect(st.dataplane!.sas).toBe(1);

    const report = await client.dataPlane.generate({ packets: 3000, size: 1000, flows: 8 });
    expect(report.sent).toBe(3000);
    const back = await gw.dataPlane.generate({ packets: 500, size: 200 });
    expect(back.sent).toBe(500);
    // Loopback UDP may drop under a burst only if socket buffers overflow: require almost everything.
    await until(() => {
      const r = gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
      const l = client.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
      return r >= 2990 && l >= 495;
    });
    const c = await gw.dataPlane.counters();
    expect(c.sa).toHaveLength(1);
    expect(Number(c.sa[0]!.in.packetsIn)).toBeGreaterThanOrEqual(2990);
    expect(Number(c.sa[0]!.in.bytesIn)).toBe(Number(c.sa[0]!.in.packetsIn) * 1000);
    expect(c.sa[0]!.in.dropsAuth + c.sa[0]!.in.dropsReplay).toBe(0n);
    // ESP came in on the NAT-T socket, next to IKE.
    expect(gw.transport.stats.espIn).toBeGreaterThanOrEqual(2990);
    expect(c.io.dropUnknownSpi).toBe(0);
  });

  interopTest('without a NAT, as root, ESP travels raw (IP protocol 50) and still reaches the owner worker', ['root'], async () => {
    const { gw, client } = await pair({ transport: 'auto' });
    await client.up('gw');
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.saIds().length === 1);
    expect(client.status().dataplane!.rawEsp).not.toBeNull();
    const report = await client.dataPlane.generate({ packets: 300, size: 500 });
    expect(report.sent).toBe(300);
    await until(() => gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0) >= 295);
    // Nothing came over UDP; the raw socket delivered it, and only to the gateway it was addressed to.
    expect(gw.transport.stats.espIn).toBe(0);
    expect(gw.status().dataplane!.rawEsp!.packetsIn).toBeGreaterThanOrEqual(295);
    expect(client.status().dataplane!.io.dropUnknownSpi).toBe(0);
    expect(gw.status().dataplane!.io.dropUnknownSpi).toBe(0);
  });

  it('removes the SA from the data plane when the Child SA is deleted', async () => {
    const { gw, client } = await pair();
    await client.up('gw');
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.saIds().length === 1);
    const down = new Promise((r) => gw.once('ike-down', r));
    await client.down('gw');
    await down;
    expect(client.dataPlane.saIds()).toEqual([]);
    expect(gw.dataPlane.saIds()).toEqual([]);
  });
});
