// Refused CREATE_CHILD_SA requests, and IKE_AUTH's Child SA refused, leave a
// trace (RFC 7296 §1.3, §2.7, §2.9, §2.21.2): one warning naming the notify,
// the peer's proposals and ours in strongSwan's notation, and a count by
// notify name in `status` (ike.refusals).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NotifyType } from '../control/wire/constants.js';
import type { IkeEngine } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { ControlServer } from '../control/api/control-server.js';
import { ControlClient } from '../control/api/control-client.js';
import { formatStatus } from '../control/cli/format.js';
import { MemoryWire, child, esp, pskPair } from './support/peers.js';
import { WARN, capturedLog } from './support/mobike-peers.js';
import type { LogLine } from './support/mobike-peers.js';
import { loopbackPair } from './support/loopback.js';

const PFS = 'ESP:AES_GCM_16_128/CURVE_25519/NO_EXT_SEQ';
const NO_PFS = 'ESP:AES_GCM_16_128/NO_EXT_SEQ';

/**
 * alice offers PFS (x25519) on "net"; bob's ESP proposals have no key exchange.
 * With `other`, alice also has a child "other" with selectors bob does not allow,
 * which she asks for with CREATE_CHILD_SA right after IKE_AUTH.
 */
async function pair(other = false) {
  const wire = new MemoryWire();
  const net = child('net', '10.1.0.0/24', '10.2.0.0/24', esp('aes128gcm16-x25519'));
  const { initiator, responder } = pskPair({
    initiator: { children: other ? [net, child('other', '10.9.0.0/24', '10.8.0.0/24')] : [net] },
  });
  const bobLog = capturedLog();
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder], { log: bobLog.log });
  const failed: string[] = [];
  alice.on('child-failed', (_sa, name, reason) => failed.push(`${name}: ${reason}`));
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  wire.run(100);
  // IKE_AUTH created "net" (without KE, RFC 7296 §1.2); bob refused "other".
  expect(sa.children.map((c) => c.name)).toEqual(['net']);
  expect(failed).toEqual(other ? ['other: responder answered TS_UNACCEPTABLE'] : []);
  return { wire, alice, bob, sa, refusalWarnings: () => bobLog.lines().filter((l) => l.level === WARN && /CREATE_CHILD_SA/.test(l.msg)) };
}

function expectWarning(l: LogLine, notify: string, kind: string, received: string, configured: string): void {
  expect(l.notify).toBe(notify);
  expect(l.request).toBe(kind);
  expect(l.received).toBe(received);
  expect(l.configured).toBe(configured);
  expect(l.msg).toContain(notify);
  expect(l.msg).toContain(received);
  expect(l.msg).toContain(configured);
}

describe('refused CREATE_CHILD_SA requests are logged and counted (in memory)', () => {
  it.each([
    { kind: 'rekey Child SA', request: (e: IkeEngine, sa: IkeSa) => e.rekeyChildSa(sa.children[0]!, { pfs: true }) },
    { kind: 'new Child SA', request: (e: IkeEngine, sa: IkeSa) => e.createChildSa(sa, 'net', { pfs: true }) },
  ])('a $kind with PFS against ESP proposals without key exchange: NO_PROPOSAL_CHOSEN, one warning, counted', async ({ kind, request }) => {
    const { wire, alice, bob, sa, refusalWarnings } = await pair();
    const refused = request(alice, sa);
    refused.catch(() => undefined);
    wire.run(100);
    await expect(refused).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    const warnings = refusalWarnings();
    expect(warnings).toHaveLength(1);
    expectWarning(warnings[0]!, 'NO_PROPOSAL_CHOSEN', kind, PFS, NO_PFS);
    expect(bob.stats.refusals).toEqual({ NO_PROPOSAL_CHOSEN: 1 });
  });

  it('IKE_AUTH\'s Child SA with no proposal we accept: the IKE SA comes up without it, NO_PROPOSAL_CHOSEN logged with both proposals and counted', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ initiator: { children: [child('net', '10.1.0.0/24', '10.2.0.0/24', esp('chacha20poly1305'))] } });
    const bobLog = capturedLog();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder], { log: bobLog.log });
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const sa = await up;
    expect(sa.state).toBe('established');
    expect(sa.children).toHaveLength(0);
    const warnings = bobLog.lines().filter((l) => l.level === WARN && /^IKE_AUTH \(first Child SA\) refused/.test(l.msg));
    expect(warnings).toHaveLength(1);
    expectWarning(warnings[0]!, 'NO_PROPOSAL_CHOSEN', 'first Child SA', 'ESP:CHACHA20_POLY1305/NO_EXT_SEQ', NO_PFS);
    expect(bob.stats.refusals).toEqual({ NO_PROPOSAL_CHOSEN: 1 });
  });

  it('a new Child SA whose selectors we do not allow: TS_UNACCEPTABLE, one warning, counted apart', async () => {
    const { bob, refusalWarnings } = await pair(true);
    const warnings = refusalWarnings();
    expect(warnings).toHaveLength(1);
    expectWarning(warnings[0]!, 'TS_UNACCEPTABLE', 'new Child SA', NO_PFS, NO_PFS);
    expect(bob.stats.refusals).toEqual({ TS_UNACCEPTABLE: 1 });
  });

  it('an accepted Child SA rekey logs no refusal and counts nothing', async () => {
    const { wire, alice, bob, sa, refusalWarnings } = await pair();
    const rekey = alice.rekeyChildSa(sa.children[0]!, { pfs: false });
    wire.run(100);
    await rekey;
    expect(refusalWarnings()).toEqual([]);
    expect(bob.stats.refusals).toEqual({});
  });

  it('a clone past the per-peer limit: NO_ADDITIONAL_SAS with the IKE proposals (RFC 7791 §5.3)', async () => {
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair();
    const bobLog = capturedLog();
    const alice = wire.engine('10.0.0.1', [initiator]);
    const bob = wire.engine('10.0.0.2', [responder], { log: bobLog.log, limits: { ikeSasPerPeer: 1 } });
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const cloned = alice.cloneIkeSa(await up);
    cloned.catch(() => undefined);
    wire.run(100);
    await expect(cloned).rejects.toMatchObject({ notify: NotifyType.NO_ADDITIONAL_SAS });
    const warnings = bobLog.lines().filter((l) => l.level === WARN && /CREATE_CHILD_SA/.test(l.msg));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.request).toBe('clone IKE SA');
    expect(warnings[0]!.received).toBe('IKE:AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519');
    expect(warnings[0]!.configured).toBe('IKE:AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519');
    expect(bob.stats.refusals).toEqual({ NO_ADDITIONAL_SAS: 1 });
  });
});

describe('the refusal counter in the gateway\'s status (UDP on loopback, control socket)', () => {
  const running: Gateway[] = [];
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
    for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
  });

  it('a refused Child SA rekey moves ike.refusals in Gateway.status() and in `status` over the control socket', async () => {
    const { initiator, responder } = loopbackPair({
      initiatorExtra: { children: { net: { local_ts: ['10.1.0.0/24'], remote_ts: ['10.2.0.0/24'], esp: ['aes128gcm16-x25519'] } } },
    });
    const gw = new Gateway({ config: responder, log: silentLogger() });
    const client = new Gateway({ config: initiator, log: silentLogger() });
    running.push(gw, client);
    await gw.start();
    await client.start();
    const sa = await client.up('gw');
    expect(gw.status().ike.refusals).toEqual({});
    await expect(client.engine.rekeyChildSa(sa.children[0]!, { pfs: true })).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    await expect(client.engine.createChildSa(sa, 'net', { pfs: true })).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
    expect(gw.status().ike.refusals).toEqual({ NO_PROPOSAL_CHOSEN: 2 });
    expect(client.status().ike.refusals).toEqual({});

    const dir = mkdtempSync(join(tmpdir(), 'ikeclone-refusals-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = new ControlServer({ gateway: gw, path: join(dir, 'gw.sock') });
    await server.listen();
    cleanup.push(() => server.close());
    const control = await ControlClient.connect(server.path);
    cleanup.push(() => control.close());
    const status = await control.status();
    expect(status.ike.refusals).toEqual({ NO_PROPOSAL_CHOSEN: 2 });
    expect(formatStatus(status)).toMatch(/; Child SAs refused: NO_PROPOSAL_CHOSEN 2$/);
  });
});
