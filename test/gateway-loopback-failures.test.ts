// The failure paths of the IKE exchanges over real UDP sockets on loopback
// (the in-memory suites cover them message by message; this proves the same
// outcomes survive the transport: ports, NAT-T float, retransmission timers).
import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { configFromObject } from '../control/config/index.js';
import { freePorts, loopbackPair } from './support/loopback.js';

const running: Gateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
});

async function start(initiator: ReturnType<typeof loopbackPair>['initiator'], responder: ReturnType<typeof loopbackPair>['responder']) {
  const gw = new Gateway({ config: responder, log: silentLogger() });
  const client = new Gateway({ config: initiator, log: silentLogger() });
  running.push(gw, client);
  await gw.start();
  await client.start();
  return { gw, client };
}

describe('IKE failure paths over UDP on loopback', () => {
  it('NO_PROPOSAL_CHOSEN: nothing in common', async () => {
    const a = loopbackPair({ ike: 'aes128-sha256-modp2048' });
    const b = loopbackPair({ ike: 'aes256gcm16-prfsha256-x25519' });
    b.responder.listen.port = a.responder.listen.port;
    b.responder.listen.natPort = a.responder.listen.natPort;
    const { gw, client } = await start(a.initiator, b.responder);
    await expect(client.up('gw')).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    expect(gw.status().ikeSas).toHaveLength(0);
  });

  it('INVALID_KE_PAYLOAD: the initiator retries with the group the responder wants', async () => {
    const a = loopbackPair({ ike: 'aes256gcm16-prfsha256-x25519-ecp256' });
    const b = loopbackPair({ ike: 'aes256gcm16-prfsha256-ecp256' });
    b.responder.listen.port = a.responder.listen.port;
    b.responder.listen.natPort = a.responder.listen.natPort;
    const { client } = await start(a.initiator, b.responder);
    const sa = await client.up('gw');
    expect(sa.suite?.ke).toBe(19);
  });

  it('COOKIE: a responder under load challenges, the initiator answers, the SA comes up', async () => {
    const { initiator, responder } = loopbackPair({ responderTop: { limits: { halfOpenCookieThreshold: 0 } } });
    const { gw, client } = await start(initiator, responder);
    const sa = await client.up('gw');
    expect(sa.state).toBe('established');
    expect(gw.engine.stats.drops.cookie).toBeGreaterThanOrEqual(1);
  });

  it('AUTHENTICATION_FAILED: a wrong PSK; neither end keeps an SA', async () => {
    const { initiator, responder } = loopbackPair();
    initiator.connections[0]!.psk = new TextEncoder().encode('a different pre-shared key entirely');
    const { gw, client } = await start(initiator, responder);
    await expect(client.up('gw')).rejects.toThrow(/AUTHENTICATION_FAILED/);
    await new Promise((r) => setTimeout(r, 50));
    expect(gw.status().ikeSas).toHaveLength(0);
    expect(client.status().ikeSas).toHaveLength(0);
  });

  it('TS_UNACCEPTABLE: the IKE SA comes up without the Child SA', async () => {
    const { initiator, responder } = loopbackPair();
    responder.connections[0]!.children[0]!.remoteTs = [{ start: '10.9.0.0', end: '10.9.0.255', protocol: 0, startPort: 0, endPort: 65535 }];
    const { client } = await start(initiator, responder);
    const failed = new Promise<string>((r) => client.once('child-failed', (_sa, _n, reason) => r(reason)));
    const sa = await client.up('gw');
    expect(await failed).toBe('TS_UNACCEPTABLE');
    expect(sa.children).toHaveLength(0);
  });

  it('the responder does not answer: the initiator gives up after its retransmission budget', async () => {
    const { initiator } = loopbackPair();
    const client = new Gateway({ config: initiator, log: silentLogger() });
    running.push(client);
    await client.start();
    await expect(client.up('gw')).rejects.toThrow(/no response to IKE_SA_INIT after 3 retransmissions/);
    expect(client.engine.stats.retransmits).toBe(3);
  });

  it('Digital Signature authentication (RFC 7427) with ECDSA P-256 and Ed25519 keys from PEM files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ikc-sig-'));
    for (const [curve, kind] of [['P-256', 'ec'], [undefined, 'ed25519']] as const) {
      const files = ['gw', 'client'].map((name) => {
        const pair = kind === 'ec' ? generateKeyPairSync('ec', { namedCurve: curve! }) : generateKeyPairSync('ed25519');
        const key = join(dir, `${name}-${kind}.key`);
        const pub = join(dir, `${name}-${kind}.pub`);
        writeFileSync(key, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
        writeFileSync(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }));
        return { key, pub };
      });
      const ports = freePorts();
      const child = (l: string, r: string) => ({ net: { local_ts: [l], remote_ts: [r], esp: ['aes128gcm16'] } });
      const responder = configFromObject({
        log: { level: 'silent' },
        listen: { address: '127.0.0.2', ...ports },
        connections: { c: { local_addrs: ['127.0.0.2'], local: { id: 'gw.sig.test', auth: 'pubkey', key: files[0]!.key }, remote: { id: 'client.sig.test', auth: 'pubkey', pubkey: files[1]!.pub }, children: child('10.2.0.0/24', '10.1.0.0/24') } },
      });
      const initiator = configFromObject({
        log: { level: 'silent' },
        retransmit: { timeout: '200ms', tries: 2 },
        listen: { address: '127.0.0.1', ...ports },
        connections: { c: { local_addrs: ['127.0.0.1'], remote_addrs: ['127.0.0.2'], remote_port: ports.port, local: { id: 'client.sig.test', auth: 'pubkey', key: files[1]!.key }, remote: { id: 'gw.sig.test', auth: 'pubkey', pubkey: files[0]!.pub }, children: child('10.1.0.0/24', '10.2.0.0/24') } },
      });
      const { client } = await start(initiator, responder);
      const sa = await client.up('c');
      expect(sa.state, kind).toBe('established');
      expect(sa.children).toHaveLength(1);
    }
  });
});
