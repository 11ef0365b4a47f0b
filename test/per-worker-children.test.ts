// Per-worker Child SAs in the data plane (architecture §5.1): a Child SA
// pinned to a worker is installed there; in a family with RFC 9611
// per-resource SAs only those send, the fallback SA receives (RFC 9611 §4) and
// sends again when they are gone. Then two gateways on loopback, the
// responder unable to clone: per-resource (per_cpu_sas) or parallel Child SAs,
// one per worker on both ends, with traffic through every worker.
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { DataPlane } from '../dataplane/dataplane.js';
import type { Endpoint, SaSpec } from '../dataplane/sad.js';
import { writeUdp4 } from '../dataplane/packet.js';
import type { Gateway } from '../control/gateway.js';
import { loopbackPair, startGatewayPair } from './support/loopback.js';
import { waitFor } from './support/proc.js';
import { cidr4 } from './support/selectors.js';

const WORKERS = 3;
const LOCAL = cidr4([10, 1, 0, 0], 24);
const REMOTE = cidr4([10, 2, 0, 0], 24);
const HERE: Endpoint = { address: '192.0.2.1', port: 4500 };
const THERE: Endpoint = { address: '192.0.2.2', port: 4500 };

const until = (cond: () => boolean | Promise<boolean>, timeoutMs = 15000) => waitFor(cond, { timeoutMs, intervalMs: 10 });

const planes: DataPlane[] = [];
const gateways: Gateway[] = [];
afterEach(async () => {
  for (const p of planes.splice(0)) await p.stop();
  for (const g of gateways.splice(0)) await g.stop({ notifyPeers: false });
});

/** One outbound SA spec of ours (the peer side is not needed: only what we send is counted). */
function spec(id: number, extra: Partial<SaSpec> = {}): SaSpec {
  return {
    id, algorithm: 'aes-gcm-128', icvLength: 16, esn: false, replayWindow: 1024, udpEncap: true,
    spiIn: 0x5000 + id, spiOut: 0x6000 + id, keyIn: randomBytes(20), keyOut: randomBytes(20),
    localTs: [LOCAL], remoteTs: [REMOTE], local: HERE, remote: THERE, ...extra,
  };
}

/** UDP packets of `flows` different flows from 10.1.0.x to 10.2.0.y. */
function flowsOfPackets(flows: number): Uint8Array[] {
  return Array.from({ length: flows }, (_, i) => {
    const p = new Uint8Array(120);
    writeUdp4(p, 0, 120, Uint8Array.from([10, 1, 0, 1 + (i % 200)]), Uint8Array.from([10, 2, 0, 9]), 20000 + i, 9, i, 0x5a);
    return p;
  });
}

async function sentBy(plane: DataPlane): Promise<Map<number, number>> {
  const c = await plane.counters();
  return new Map(c.sa.map((s) => [s.id, Number(s.out.packetsOut)]));
}

describe('per-worker Child SAs in the data plane', () => {
  it('pins an SA to its worker; with per-resource SAs in the family only they send, the fallback SA again once they are gone', async () => {
    let wired = 0;
    const plane = new DataPlane({ workers: WORKERS, sink: 'deliver', sendUdp: () => void wired++ });
    planes.push(plane);
    await plane.start();
    await plane.install(spec(1));
    // Pinned in reverse order: the data plane's own choice would be 1, 2, 0.
    for (const [id, worker] of [[2, 2], [3, 1], [4, 0]] as const) await plane.install(spec(id, { worker, perResource: true }));
    expect([2, 3, 4].map((id) => plane.ownerOf(id))).toEqual([2, 1, 0]);

    for (const p of flowsOfPackets(300)) expect(plane.sendInner(p)).toBe(true);
    await until(() => wired >= 300);
    let sent = await sentBy(plane);
    expect(sent.get(1)).toBe(0);
    for (const id of [2, 3, 4]) expect(sent.get(id)).toBeGreaterThan(0);

    for (const id of [2, 3, 4]) await plane.remove(id);
    for (const p of flowsOfPackets(50)) expect(plane.sendInner(p)).toBe(true);
    await until(() => wired >= 350);
    sent = await sentBy(plane);
    expect(sent.get(1)).toBe(50);
  });

  // The worker an SaSpec names is the one its inbound SPI names (steered ESP arrives there): never another.
  it('a worker out of range is refused, not wrapped to another', async () => {
    const plane = new DataPlane({ workers: 2, sink: 'deliver', sendUdp: () => undefined });
    planes.push(plane);
    await plane.start();
    await expect(plane.install(spec(21, { worker: 5, perResource: true }))).rejects.toThrow(/SaSpec.worker/);
    expect(plane.ownerOf(21)).toBeUndefined();
  });
});

/** Two gateways on loopback with WORKERS workers each; the responder cannot clone. */
async function gateways2(responderChild: Record<string, unknown>) {
  const { initiator, responder } = loopbackPair({
    initiatorExtra: { clone: { per: 'worker', count: WORKERS } },
  });
  responder.connections[0]!.clone = { supported: false, per: 'none', count: 1, nics: [] };
  Object.assign(responder.connections[0]!.children[0]!, responderChild);
  return startGatewayPair({ initiator, responder }, WORKERS, gateways);
}

/** Owner workers of the installed Child SAs of a gateway, by placement kind. */
function owners(g: Gateway): Array<{ kind: string | undefined; worker: number | null | undefined }> {
  return g.status().ikeSas.flatMap((sa) => sa.children.map((c) => ({ kind: c.placement?.kind, worker: c.worker })));
}

async function everyWorkerCarries(g: Gateway, peer: Gateway): Promise<void> {
  // A Child SA the peer created sends once the peer has it, at the latest after
  // DEFERRED_OUTBOUND_MS (dataplane/handover.ts): wait until every one sends.
  const encapPerWorker = () => g.status().dataplane!.workers.map((w) => w.encapPackets);
  await until(async () => (await g.dataPlane.generate({ packets: 30, size: 200, flows: 16 })).sent === 30 && encapPerWorker().every((n) => n > 0));
  const decapPerWorker = () => peer.status().dataplane!.workers.map((w) => w.decapPackets);
  const before = decapPerWorker().reduce((a, b) => a + b, 0);
  const report = await g.dataPlane.generate({ packets: 600, size: 200, flows: 16 });
  expect(report.sent).toBe(600);
  await until(() => decapPerWorker().reduce((a, b) => a + b, 0) >= before + 590);
  expect(g.status().dataplane!.workers.every((w) => w.encapPackets > 0)).toBe(true);
  expect(decapPerWorker().every((n) => n > 0)).toBe(true);
}

describe('two gateways, the responder unable to clone', () => {
  it('per_cpu_sas on the responder: a fallback SA and one per-resource Child SA per worker on both ends, every worker carrying traffic', async () => {
    const { gw, client } = await gateways2({ perCpuSas: true, perCpuSasMax: WORKERS });
    await client.up('gw');
    const installed = (g: Gateway) => g.dataPlane.saIds().length === WORKERS + 1;
    await until(() => installed(client) && installed(gw));
    for (const g of [client, gw]) {
      const all = owners(g);
      expect(all.filter((c) => c.kind === 'fallback')).toHaveLength(1);
      expect(all.filter((c) => c.kind === 'per-resource').map((c) => c.worker).sort()).toEqual([0, 1, 2]);
    }
    expect(client.status().families[0]!.perWorker).toMatchObject({ mode: 'per-resource', state: 'complete' });
    await everyWorkerCarries(client, gw);
    await everyWorkerCarries(gw, client);
  });

  it('without per_cpu_sas: parallel Child SAs, one per worker on both ends, every worker carrying traffic', async () => {
    const { gw, client } = await gateways2({});
    await client.up('gw');
    const installed = (g: Gateway) => g.dataPlane.saIds().length === WORKERS;
    await until(() => installed(client) && installed(gw));
    for (const g of [client, gw]) {
      expect(owners(g).map((c) => c.kind)).toEqual(['parallel', 'parallel', 'parallel']);
      expect(owners(g).map((c) => c.worker).sort()).toEqual([0, 1, 2]);
    }
    expect(client.status().families[0]!.perWorker).toMatchObject({ mode: 'parallel', state: 'complete' });
    await everyWorkerCarries(client, gw);
    await everyWorkerCarries(gw, client);
  });
});
