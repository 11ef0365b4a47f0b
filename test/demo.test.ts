import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { compareSaViews, demoConfigs, runDemo, DEMO_RESPONDER_ADDRESS, type DemoContext } from '../demo/demo.js';

const held: Socket[] = [];
afterEach(() => {
  for (const s of held.splice(0)) s.close();
});

/** Hold a UDP port on an address so that the demo's first choice is taken. */
function holdPort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind({ address, port: 0, exclusive: true }, () => {
      held.push(s);
      resolve(s.address().port);
    });
  });
}

describe('runDemo', () => {
  it('establishes an IKE SA and a Child SA on loopback, both ends agree, then deletes them', async () => {
    const lines: string[] = [];
    const r = await runDemo({ progress: (l) => lines.push(l) });
    expect(r.demo).toBe('ikeclone');
    expect(r.version).toBe(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
    expect(r.agree).toBe(true);
    expect(r.mismatches).toEqual([]);
    expect(r.durationMs).toBeGreaterThan(0);
    expect(r.durationMs).toBeLessThan(10_000);
    expect(r.totalMs).toBeGreaterThanOrEqual(r.durationMs);
    expect(r.deleted).toBe(true);
    // Both ends' SPIs are the same SA seen from either side.
    expect(r.ike.role).toBe('initiator');
    expect(r.peer.role).toBe('responder');
    expect(r.ike.spiI).toMatch(/^[0-9a-f]{16}$/);
    expect(r.ike.spiR).toMatch(/^[0-9a-f]{16}$/);
    expect(r.ike.spiR).not.toBe('0000000000000000');
    expect(r.peer.spiI).toBe(r.ike.spiI);
    expect(r.peer.spiR).toBe(r.ike.spiR);
    expect(r.ike.proposal).toBe('AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519');
    expect(r.peer.proposal).toBe(r.ike.proposal);
    expect(r.ike.children).toHaveLength(1);
    expect(r.peer.children).toHaveLength(1);
    const [a, b] = [r.ike.children[0]!, r.peer.children[0]!];
    expect(a.spiIn).toMatch(/^[0-9a-f]{8}$/);
    expect(a.spiIn).toBe(b.spiOut);
    expect(a.spiOut).toBe(b.spiIn);
    expect(a.proposal).toBe('AES_GCM_16_256/NO_EXT_SEQ');
    expect(a.localTs).toEqual(['10.1.0.0/24']);
    expect(b.localTs).toEqual(a.remoteTs);
    expect(r.ike.localId).toBe('client.demo.ikeclone');
    expect(r.peer.remoteId).toBe('client.demo.ikeclone');
    expect(r.ike.mobike).toBe(true);
    expect(r.ike.clone).toBe(true);
    expect(r.endpoints.responder).toMatch(/^127\.0\.0\.2:\d+$/);
    expect(lines.some((l) => /established in [\d.]+ ms/.test(l))).toBe(true);
    expect(lines.some((l) => l.startsWith('deleted on both ends'))).toBe(true);
  });

  it('takes the ESP and IKE proposals it is given', async () => {
    const r = await runDemo({ ike: 'aes128gcm16-prfsha384-ecp256', esp: 'chacha20poly1305' });
    expect(r.agree).toBe(true);
    expect(r.ike.proposal).toBe('AES_GCM_16_128/PRF_HMAC_SHA2_384/ECP_256');
    expect(r.ike.children[0]!.proposal).toBe('CHACHA20_POLY1305/NO_EXT_SEQ');
  });

  it('tries another port pair when the first one is in use', async () => {
    const busy = await holdPort(DEMO_RESPONDER_ADDRESS);
    const picks = [busy];
    const lines: string[] = [];
    const r = await runDemo({
      pickPort: () => picks.shift() ?? 20000 + Math.floor(Math.random() * 39000),
      progress: (l) => lines.push(l),
    });
    expect(r.attempts).toBe(2);
    expect(r.endpoints.responder).not.toBe(`${DEMO_RESPONDER_ADDRESS}:${busy}`);
    expect(lines.some((l) => l.includes(`port ${busy}`) && l.includes('in use'))).toBe(true);
    expect(r.agree).toBe(true);
  });

  it('gives up after the bounded number of attempts', async () => {
    const busy = await holdPort(DEMO_RESPONDER_ADDRESS);
    await expect(runDemo({ pickPort: () => busy, attempts: 2 })).rejects.toThrow(/no free port pair after 2 attempts/);
  });

  it('runs further stages while the SAs are up, before deleting them', async () => {
    let seen: { initiatorSas: number; responderSas: number; state: string } | undefined;
    const r = await runDemo({
      afterEstablished: async (ctx: DemoContext) => {
        seen = { initiatorSas: ctx.initiator.status().ikeSas.length, responderSas: ctx.responder.status().ikeSas.length, state: ctx.sa.state };
        ctx.progress('extra stage');
      },
    });
    // The clone family (one IKE SA per worker) is up before further stages run.
    expect(seen).toEqual({ initiatorSas: r.family.members.length, responderSas: r.family.members.length, state: 'established' });
    expect(r.deleted).toBe(true);
  });

  it('clones the IKE SA once per worker: every member has its own SPIs and Child SA, and both ends agree', async () => {
    const r = await runDemo({ clones: 3 });
    expect(r.family).toMatchObject({ target: 3, state: 'complete', agree: true });
    expect(r.family.members.map((m) => m.familyIndex)).toEqual([0, 1, 2]);
    expect(new Set(r.family.members.map((m) => m.spiI)).size).toBe(3);
    expect(r.family.members.every((m) => m.children.length === 1 && m.sessionId === r.ike.sessionId)).toBe(true);
    expect(new Set(r.family.members.map((m) => m.children[0]!.spiIn)).size).toBe(3);
    expect(r.agree).toBe(true);
    expect(r.deleted).toBe(true);
  });

  it('clones once per worker beyond the responder\'s default limit of 16 IKE SAs per peer: every worker gets its Child SA and carries traffic', async () => {
    // As on a host with 20 cores (clones defaults to availableParallelism()).
    const r = await runDemo({ clones: 20, traffic: { packets: 2000, size: 200 }, timeoutMs: 30_000 });
    expect(r.family).toMatchObject({ target: 20, state: 'complete', agree: true });
    expect(r.family.members).toHaveLength(20);
    expect(r.family.members.reduce((n, m) => n + m.children.length, 0)).toBe(20);
    const dp = r.dataplane!;
    expect(dp.responder).toHaveLength(20);
    expect(dp.initiator.every((w) => w.sas === 1 && w.packets > 0)).toBe(true);
    expect(dp.responder.every((w) => w.sas === 1 && w.packets > 0)).toBe(true);
    expect(r.agree).toBe(true);
    expect(r.deleted).toBe(true);
  }, 60_000);

  it('with clones: 1 the demo keeps a single IKE SA', async () => {
    const r = await runDemo({ clones: 1 });
    expect(r.family).toMatchObject({ target: 1, state: 'single' });
    expect(r.family.members).toHaveLength(1);
  });

  it('a failing stage rejects the demo and still stops both gateways (the ports are free again)', async () => {
    let port = 0;
    const pick = () => (port = 20000 + Math.floor(Math.random() * 39000));
    await expect(runDemo({ pickPort: pick, afterEstablished: async () => { throw new Error('stage broke'); } })).rejects.toThrow('stage broke');
    // The same pair binds again: nothing was left listening.
    const r = await runDemo({ pickPort: () => port, attempts: 1 });
    expect(r.agree).toBe(true);
  });
});

describe('compareSaViews', () => {
  it('reports each difference between the two ends', async () => {
    const r = await runDemo();
    expect(compareSaViews(r.ike, r.peer)).toEqual([]);
    const peer = structuredClone(r.peer);
    peer.spiR = 'ffffffffffffffff';
    peer.proposal = 'AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519';
    peer.children[0]!.spiOut = '00000001';
    peer.children[0]!.remoteTs = ['10.9.0.0/24'];
    const diff = compareSaViews(r.ike, peer);
    expect(diff).toHaveLength(4);
    expect(diff.join('\n')).toMatch(/IKE SPIr/);
    expect(diff.join('\n')).toMatch(/IKE proposal/);
    expect(diff.join('\n')).toMatch(/SPI in \/ peer's out/);
    expect(diff.join('\n')).toMatch(/local_ts \/ peer's remote_ts/);
    const noChild = structuredClone(r.peer);
    noChild.children = [];
    expect(compareSaViews(r.ike, noChild).join('\n')).toMatch(/Child SA count/);
    expect(compareSaViews(r.ike, r.ike).join('\n')).toMatch(/roles: both initiator/);
  });

  it('demoConfigs refuses ports outside the unprivileged range', () => {
    expect(() => demoConfigs(80)).toThrow(RangeError);
    expect(() => demoConfigs(65535)).toThrow(RangeError);
    const { initiator, responder } = demoConfigs(30000);
    expect(initiator.listen).toEqual({ addresses: ['127.0.0.1'], port: 30000, natPort: 30001 });
    expect(responder.connections[0]!.psk).toEqual(initiator.connections[0]!.psk);
  });
});
