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

describe('IKE SA cloning over UDP on loopback (RFC 7791)', () => {
  it('clone per: worker grows the family after IKE_AUTH, one Child SA per IKE SA, shown as one family in status', async () => {
    const { gw, client } = await pair({ initiatorExtra: { clone: { per: 'worker', count: 3 } } });
    const complete = new Promise((r) => client.cloner.once('family-complete', r));
    const sa = await client.up('gw');
    await complete;
    const mine = client.status();
    expect(mine.ikeSas).toHaveLength(3);
    expect(mine.families).toEqual([expect.objectContaining({ sessionId: sa.sessionId, target: 3, state: 'complete', members: expect.any(Array) })]);
    expect(mine.families[0]!.members).toHaveLength(3);
    expect(mine.ikeSas.map((s) => s.familyIndex).sort()).toEqual([0, 1, 2]);
    expect(mine.ikeSas.every((s) => s.children.length === 1)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const theirs = gw.status();
    expect(theirs.ikeSas).toHaveLength(3);
    expect(new Set(theirs.ikeSas.map((s) => s.sessionId)).size).toBe(1);
    expect(theirs.ikeSas.map((s) => s.spiI).sort()).toEqual(mine.ikeSas.map((s) => s.spiI).sort());
  });

  it('clones on demand through the control socket, and refuses past the responder limit with NO_ADDITIONAL_SAS', async () => {
    const { ControlServer } = await import('../control/api/control-server.js');
    const { ControlClient } = await import('../control/api/control-client.js');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { gw, client } = await pair({ responderTop: { limits: { ikeSasPerPeer: 3 } } });
    const sa = await client.up('gw');
    const path = join(mkdtempSync(join(tmpdir(), 'ikc-ctl-')), 'ctl.sock');
    const server = new ControlServer({ gateway: client, path });
    await server.listen();
    try {
      const c = await ControlClient.connect(path);
      const grown = await c.clone(sa.id, 2);
      expect(grown.family.state).toBe('complete');
      expect(grown.members).toHaveLength(3);
      const refused = await c.clone(sa.id, 1);
      expect(refused.family.state).toBe('blocked');
      expect(refused.family.reason).toMatch(/NO_ADDITIONAL_SAS/);
      expect(refused.members).toHaveLength(3);
      c.close();
      expect(gw.status().ikeSas).toHaveLength(3);
    } finally {
      await server.close();
    }
  });

  it('a responder without clone support makes per: worker fall back to one IKE SA, and says so in status', async () => {
    const { gw, client } = await pair({ initiatorExtra: { clone: { per: 'worker', count: 4 } } });
    gw.engine.policies[0]!.cloneSupport = false;
    const limited = new Promise((r) => client.cloner.once('family-limited', r));
    await client.up('gw');
    await limited;
    const st = client.status();
    expect(st.ikeSas).toHaveLength(1);
    expect(st.families[0]).toMatchObject({ target: 4, state: 'fallback', reason: expect.stringMatching(/CLONE_IKE_SA_SUPPORTED/) });
  });
});
