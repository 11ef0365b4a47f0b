import { afterEach, describe, expect, it } from 'vitest';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { loopbackPair } from './support/loopback.js';

const running: Gateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
});

async function pair(opts: Parameters<typeof loopbackPair>[0] = {}) {
  const { initiator, responder } = loopbackPair(opts);
  const gw = new Gateway({ config: responder, log: silentLogger() });
  const client = new Gateway({ config: initiator, log: silentLogger() });
  running.push(gw, client);
  await gw.start();
  await client.start();
  return { gw, client };
}

describe('two gateways over UDP on loopback', () => {
  it('establish an IKE SA and a Child SA and agree on SPIs and algorithms in status', async () => {
    const { gw, client } = await pair();
    const sa = await client.up('gw');
    expect(sa.state).toBe('established');
    await new Promise((r) => setTimeout(r, 50));
    const a = client.status().ikeSas;
    const b = gw.status().ikeSas;
    expect(a).toHaveLength(1);
    expect(b).toHaveLength(1);
    expect(a[0]!.spiI).toBe(b[0]!.spiI);
    expect(a[0]!.spiR).toBe(b[0]!.spiR);
    expect(a[0]!.proposal).toBe('AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519');
    expect(b[0]!.proposal).toBe(a[0]!.proposal);
    expect(a[0]!.children[0]!.spiIn).toBe(b[0]!.children[0]!.spiOut);
    expect(a[0]!.children[0]!.spiOut).toBe(b[0]!.children[0]!.spiIn);
    expect(a[0]!.children[0]!.proposal).toBe('AES_GCM_16_128/NO_EXT_SEQ');
    expect(b[0]!.remoteId).toBe('client.loopback.test');
    // MOBIKE is on by default: IKE_AUTH moved to the NAT-T port with the non-ESP marker.
    expect(a[0]!.local.endsWith(`:${client.config.listen.natPort}`)).toBe(true);
    expect(gw.transport.stats.ikeIn).toBeGreaterThanOrEqual(2);
  });

  it('deletes the IKE SA on both ends with an INFORMATIONAL exchange', async () => {
    const { gw, client } = await pair({ ike: 'aes128-sha256-ecp256' });
    await client.up('gw');
    const down = new Promise((r) => gw.once('ike-down', r));
    await client.down('gw');
    await down;
    expect(client.status().ikeSas).toHaveLength(0);
    expect(gw.status().ikeSas).toHaveLength(0);
  });

  it('creates a second Child SA with PFS over UDP', async () => {
    const { client } = await pair({ esp: 'aes256gcm16-x25519' });
    const sa = await client.up('gw');
    const child = await client.engine.createChildSa(sa, 'net', { pfs: true });
    expect(child.suite.ke).toBe(31);
    expect(sa.children).toHaveLength(2);
  });
});
