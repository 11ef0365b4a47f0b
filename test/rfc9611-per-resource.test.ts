// Per-worker Child SAs with one IKE SA (architecture §5.1): RFC 9611
// per-resource Child SAs in both roles, the fallback SA (§3), TS_MAX_QUEUE past
// the responder's limit (§6), rekeys keeping their resource (§3), and the
// policy across peers: clones when the peer announced CLONE_IKE_SA_SUPPORTED,
// RFC 9611 when it answered SA_RESOURCE_INFO, parallel Child SAs with the same
// selectors (RFC 7296 §2.8) otherwise. Two engines in memory on a manual clock.
import { describe, expect, it } from 'vitest';
import { CloneOrchestrator } from '../control/ike/clone-family.js';
import { ChildSpreader } from '../control/ike/child-spread.js';
import type { ChildSa, IkeSa } from '../control/ike/ike-sa.js';
import type { ChildPolicy, ConnectionPolicy } from '../control/ike/policy.js';
import type { MessageTrace } from '../control/ike/context.js';
import { ExchangeType, NotifyType, PayloadType } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';
import { selectorsEqual } from '../control/ike/traffic-selectors.js';
import { familiesStatus, ikeSaStatus } from '../control/status.js';
import { formatStatus } from '../control/cli/format.js';
import { MemoryWire, pskPair } from './support/peers.js';
import { ConfigError, parseConfig } from '../control/config/index.js';
import { connectionPolicy } from '../control/config/connection-policy.js';

interface Seen {
  direction: 'in' | 'out';
  exchangeType: number;
  response: boolean;
  payloads: readonly Payload[];
}

function resourceInfo(payloads: readonly Payload[]): Uint8Array | undefined {
  for (const p of payloads) if (p.type === PayloadType.NOTIFY && p.notifyType === NotifyType.SA_RESOURCE_INFO) return p.data;
  return undefined;
}

function notifies(payloads: readonly Payload[]): number[] {
  return payloads.flatMap((p) => (p.type === PayloadType.NOTIFY ? [p.notifyType] : []));
}

const live = (sa: IkeSa): ChildSa[] => sa.children.filter((c) => c.state === 'installed');

/**
 * alice (initiator) -> bob. `alice` and `bob` patch the policies; bob's first
 * child patches `bobChild`. Both run a ChildSpreader and a CloneOrchestrator as
 * the gateway does; alice's messages are traced.
 */
async function session(over: { alice?: Partial<ConnectionPolicy>; bob?: Partial<ConnectionPolicy>; aliceChild?: Partial<ChildPolicy>; bobChild?: Partial<ChildPolicy> }) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({ initiator: over.alice ?? {}, responder: over.bob ?? {} });
  initiator.children = [{ ...initiator.children[0]!, ...over.aliceChild }];
  responder.children = [{ ...responder.children[0]!, ...over.bobChild }];
  const seen: Seen[] = [];
  const trace: MessageTrace = (e) => seen.push({ direction: e.direction, exchangeType: e.exchangeType, response: e.response, payloads: e.payloads });
  const alice = wire.engine('10.0.0.1', [initiator], { trace });
  const bob = wire.engine('10.0.0.2', [responder]);
  const spreader = new ChildSpreader(alice).start();
  const cloner = new CloneOrchestrator(alice).start();
  new ChildSpreader(bob).start();
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  await wire.settle(1500);
  const bobSa = () => bob.ikeSas().find((s) => s.state === 'established' && s.familyIndex === 0)!;
  const requests = (type: number) => seen.filter((s) => s.direction === 'out' && !s.response && s.exchangeType === type);
  const responses = (type: number) => seen.filter((s) => s.direction === 'in' && s.response && s.exchangeType === type);
  return { wire, alice, bob, sa, bobSa, spreader, cloner, seen, requests, responses };
}

const CLONE_PER_WORKER = (count: number): Partial<ConnectionPolicy> => ({ clone: { per: 'worker', count, nics: [] } });

describe('RFC 9611 per-resource Child SAs', () => {
  it('initiator: a fallback SA, then one per worker with SA_RESOURCE_INFO, each on its own worker; responder: the same, pinned to its workers', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(3), bob: { cloneSupport: false }, bobChild: { perCpuSas: true, perCpuSasMax: 3 } });
    // IKE_AUTH asked (SA_RESOURCE_INFO with the first Child SA) and bob answered (RFC 9611 §3).
    expect(resourceInfo(s.requests(ExchangeType.IKE_AUTH)[0]!.payloads)).toBeDefined();
    expect(resourceInfo(s.responses(ExchangeType.IKE_AUTH)[0]!.payloads)).toBeDefined();
    expect(s.sa.peerClone).toBe(false);
    expect(s.sa.peerResourceInfo).toBe(true);
    expect(s.alice.sessionMembers(s.sa.sessionId)).toHaveLength(1);

    const ours = live(s.sa);
    expect(ours).toHaveLength(4);
    expect(ours[0]!.placement).toEqual({ kind: 'fallback' });
    const perResource = ours.filter((c) => c.placement?.kind === 'per-resource');
    expect(perResource.map((c) => c.placement!.worker)).toEqual([0, 1, 2]);
    // Every one has the first one's selectors and suite (RFC 9611 §3: identical properties), its own keys/SPIs.
    for (const c of perResource) {
      expect(c.localTs.every((ts, i) => selectorsEqual(ts, ours[0]!.localTs[i]!))).toBe(true);
      expect(c.remoteTs.every((ts, i) => selectorsEqual(ts, ours[0]!.remoteTs[i]!))).toBe(true);
      expect(c.suite.encr).toBe(ours[0]!.suite.encr);
    }
    expect(new Set(ours.map((c) => c.spiIn)).size).toBe(4);

    // Each CREATE_CHILD_SA carried SA_RESOURCE_INFO with our random identifier, never the worker number (§7).
    const creates = s.requests(ExchangeType.CREATE_CHILD_SA);
    expect(creates).toHaveLength(3);
    const sentIds = creates.map((r) => Buffer.from(resourceInfo(r.payloads)!).toString('hex'));
    expect(sentIds.every((id) => id.length === 8)).toBe(true);
    expect(new Set(sentIds).size).toBe(3);
    expect(sentIds).toEqual(perResource.map((c) => c.placement!.resourceId));
    // ... and every answer carried SA_RESOURCE_INFO back.
    expect(s.responses(ExchangeType.CREATE_CHILD_SA).every((r) => resourceInfo(r.payloads) !== undefined)).toBe(true);

    // The responder: the IKE_AUTH Child SA is its fallback SA, the others per-resource, one per worker.
    const theirs = live(s.bobSa());
    expect(theirs).toHaveLength(4);
    expect(theirs[0]!.placement).toEqual({ kind: 'fallback' });
    const theirResources = theirs.filter((c) => c.placement?.kind === 'per-resource');
    expect(theirResources.map((c) => c.placement!.worker).sort()).toEqual([0, 1, 2]);
    expect(theirResources.every((c) => /^[0-9a-f]{8}$/.test(c.placement!.resourceId!))).toBe(true);

    expect(s.spreader.session(s.sa.sessionId)).toMatchObject({ mode: 'per-resource', state: 'complete', perChild: 3 });
    expect(s.spreader.session(s.sa.sessionId)!.reason).toMatch(/did not announce CLONE_IKE_SA_SUPPORTED but answered SA_RESOURCE_INFO/);
  });

  it('the responder answers TS_MAX_QUEUE past per_cpu_sas_max (never NO_ADDITIONAL_SAS), and the initiator stops asking', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(4), bob: { cloneSupport: false }, bobChild: { perCpuSas: true, perCpuSasMax: 2 } });
    const answers = s.responses(ExchangeType.CREATE_CHILD_SA).map((r) => notifies(r.payloads));
    // Two accepted, the third refused; the fourth is never asked for.
    expect(answers).toHaveLength(3);
    expect(answers[2]).toEqual([NotifyType.TS_MAX_QUEUE]);
    expect(answers.flat()).not.toContain(NotifyType.NO_ADDITIONAL_SAS);
    const theirs = live(s.bobSa());
    expect(theirs.filter((c) => c.placement?.kind === 'per-resource').map((c) => c.placement!.worker).sort()).toEqual([0, 1]);
    expect(theirs.filter((c) => c.placement?.kind === 'fallback')).toHaveLength(1);
    // The refused request left nothing behind on either side.
    expect(live(s.sa)).toHaveLength(3);
    expect(s.bob.childrenBySpi.size).toBe(3);
    const spread = s.spreader.session(s.sa.sessionId)!;
    expect(spread.state).toBe('limited');
    expect(spread.limit).toMatch(/TS_MAX_QUEUE after 2 per-resource Child SAs/);
  });

  it('a responder without per_cpu_sas does not answer SA_RESOURCE_INFO, and a peer that cannot clone gets parallel Child SAs (RFC 7296 §2.8)', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(3), bob: { cloneSupport: false } });
    expect(resourceInfo(s.requests(ExchangeType.IKE_AUTH)[0]!.payloads)).toBeDefined();
    expect(resourceInfo(s.responses(ExchangeType.IKE_AUTH)[0]!.payloads)).toBeUndefined();
    expect(s.sa.peerResourceInfo).toBe(false);
    // Worker 0's is the IKE_AUTH Child SA; two more, without SA_RESOURCE_INFO.
    const creates = s.requests(ExchangeType.CREATE_CHILD_SA);
    expect(creates).toHaveLength(2);
    expect(creates.every((r) => resourceInfo(r.payloads) === undefined)).toBe(true);
    const ours = live(s.sa);
    expect(ours.map((c) => c.placement)).toEqual([
      { kind: 'parallel', worker: 0 },
      { kind: 'parallel', worker: 1 },
      { kind: 'parallel', worker: 2 },
    ]);
    // The responder keeps all of them, side by side: none replaces another.
    const theirs = live(s.bobSa());
    expect(theirs).toHaveLength(3);
    expect(theirs.every((c) => c.placement?.kind === 'parallel' && c.replacesId === undefined)).toBe(true);
    expect(s.spreader.session(s.sa.sessionId)).toMatchObject({ mode: 'parallel', state: 'complete', perChild: 3 });
    expect(s.spreader.session(s.sa.sessionId)!.reason).toMatch(/neither CLONE_IKE_SA_SUPPORTED nor SA_RESOURCE_INFO/);
  });

  it('a peer that announced CLONE_IKE_SA_SUPPORTED is cloned, even when it also takes per-resource Child SAs', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(3), bobChild: { perCpuSas: true, perCpuSasMax: 3 } });
    await s.wire.settle(1500);
    expect(s.sa.peerClone).toBe(true);
    expect(s.spreader.session(s.sa.sessionId)).toMatchObject({ mode: 'clones' });
    expect(s.cloner.family(s.sa.sessionId)?.state).toBe('complete');
    const members = s.alice.sessionMembers(s.sa.sessionId).filter((m) => m.state === 'established');
    expect(members).toHaveLength(3);
    // One Child SA per clone, none of them per-resource.
    expect(members.map((m) => live(m).length)).toEqual([1, 1, 1]);
    expect(s.requests(ExchangeType.CREATE_CHILD_SA).every((r) => resourceInfo(r.payloads) === undefined)).toBe(true);
  });

  it('per_cpu_sas on the initiator alone: per-resource Child SAs when the peer answers, one Child SA when it does not', async () => {
    const yes = await session({ aliceChild: { perCpuSas: true, perCpuSasMax: 2 }, bobChild: { perCpuSas: true, perCpuSasMax: 2 } });
    expect(live(yes.sa).map((c) => c.placement?.kind)).toEqual(['fallback', 'per-resource', 'per-resource']);
    expect(yes.spreader.session(yes.sa.sessionId)).toMatchObject({ mode: 'per-resource', state: 'complete' });
    expect(yes.spreader.session(yes.sa.sessionId)!.reason).toMatch(/per_cpu_sas, and the peer answered/);

    const no = await session({ aliceChild: { perCpuSas: true, perCpuSasMax: 2 } });
    expect(live(no.sa)).toHaveLength(1);
    expect(live(no.sa)[0]!.placement).toBeUndefined();
    expect(no.requests(ExchangeType.CREATE_CHILD_SA)).toHaveLength(0);
    expect(no.spreader.session(no.sa.sessionId)).toMatchObject({ mode: 'single' });
    expect(no.spreader.session(no.sa.sessionId)!.reason).toMatch(/did not answer SA_RESOURCE_INFO/);
  });

  it('a rekeyed per-resource or fallback Child SA keeps its resource on both ends (RFC 9611 §3) and replaces only itself', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(2), bob: { cloneSupport: false }, bobChild: { perCpuSas: true, perCpuSasMax: 2 } });
    const [fallback, , second] = live(s.sa);
    expect(second!.placement).toMatchObject({ kind: 'per-resource', worker: 1 });
    const theirSecond = live(s.bobSa()).find((c) => c.spiIn === second!.spiOut)!;
    const rekeyed = s.alice.rekeyChildSa(second!);
    await s.wire.settle(500);
    const successor = await rekeyed;
    expect(successor.placement).toEqual(second!.placement);
    expect(successor.replacesId).toBe(second!.id);
    const theirSuccessor = live(s.bobSa()).find((c) => c.spiIn === successor.spiOut)!;
    expect(theirSuccessor.placement).toEqual(theirSecond.placement);
    expect(theirSuccessor.replacesId).toBe(theirSecond.id);
    // Still a fallback and two per-resource SAs on each end.
    for (const sa of [s.sa, s.bobSa()]) expect(live(sa).map((c) => c.placement?.kind).sort()).toEqual(['fallback', 'per-resource', 'per-resource']);

    const rekeyedFallback = s.alice.rekeyChildSa(fallback!);
    await s.wire.settle(500);
    expect((await rekeyedFallback).placement).toEqual({ kind: 'fallback' });
    // A rekey is not a new per-resource SA: no TS_MAX_QUEUE although bob is at its limit.
    expect(s.responses(ExchangeType.CREATE_CHILD_SA).flatMap((r) => notifies(r.payloads))).not.toContain(NotifyType.TS_MAX_QUEUE);
  });

  it('a per-resource Child SA the peer deletes is deleted on both ends and not brought back (RFC 9611 §6)', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(2), bob: { cloneSupport: false }, bobChild: { perCpuSas: true, perCpuSasMax: 2 } });
    const victim = live(s.bobSa()).find((c) => c.placement?.kind === 'per-resource')!;
    const closed = s.bob.closeChildSa(victim);
    await s.wire.settle(3000);
    await closed;
    expect(live(s.bobSa())).toHaveLength(2);
    expect(live(s.sa)).toHaveLength(2);
    expect(live(s.sa).some((c) => c.spiOut === victim.spiIn)).toBe(false);
    expect(s.requests(ExchangeType.CREATE_CHILD_SA)).toHaveLength(2);
  });

  it('status and the CLI say which SA is the fallback, which worker each per-resource SA serves, and why', async () => {
    const s = await session({ alice: CLONE_PER_WORKER(2), bob: { cloneSupport: false }, bobChild: { perCpuSas: true, perCpuSasMax: 2 } });
    const now = s.alice.clock.now();
    const sa = ikeSaStatus(s.sa, now);
    expect(sa.children.map((c) => c.placement)).toEqual([
      { kind: 'fallback', resource: null, resourceId: null },
      { kind: 'per-resource', resource: 0, resourceId: live(s.sa)[1]!.placement!.resourceId },
      { kind: 'per-resource', resource: 1, resourceId: live(s.sa)[2]!.placement!.resourceId },
    ]);
    const families = familiesStatus(s.alice, s.cloner, s.spreader);
    expect(families[0]!.perWorker).toMatchObject({ mode: 'per-resource', state: 'complete', perChild: 2, limit: null });
    const text = formatStatus({ ikeSas: [sa], families, halfOpen: 0, ike: s.alice.stats, udp: null });
    expect(text).toContain('fallback SA (RFC 9611)');
    expect(text).toMatch(/per-resource for worker 1 \(resource [0-9a-f]{8}\)/);
    expect(text).toMatch(/per-worker SAs: per-resource \(2 per child\), complete: the peer did not announce CLONE_IKE_SA_SUPPORTED/);
  });
});

describe('per_cpu_sas in the configuration (strongSwan terms)', () => {
  const yaml = (child: string) => `dataplane: { workers: 3 }
connections:
  site:
    remote_addrs: [192.0.2.7]
    local: { id: a.example.org }
    psk: "a long enough pre-shared key"
    children:
      net:
        local_ts: 10.1.0.0/24
        remote_ts: 10.2.0.0/24
${child}
`;

  it('per_cpu_sas: yes and its maximum reach the engine; the maximum defaults to the workers', () => {
    const on = parseConfig(yaml('        per_cpu_sas: yes\n        per_cpu_sas_max: 6'), '/nonexistent/ikeclone.yaml');
    const child = connectionPolicy(on.connections[0]!, undefined).children[0]!;
    expect([child.perCpuSas, child.perCpuSasMax]).toEqual([true, 6]);
    const off = parseConfig(yaml('        esp: [aes128gcm16]'), '/nonexistent/ikeclone.yaml');
    const plain = connectionPolicy(off.connections[0]!, undefined).children[0]!;
    expect([plain.perCpuSas, plain.perCpuSasMax]).toEqual([false, 3]);
  });

  it('a bad value is a precise error naming the field', () => {
    for (const [line, what] of [['        per_cpu_sas: sometimes', /per_cpu_sas/], ['        per_cpu_sas_max: 0', /per_cpu_sas_max/]] as const) {
      let error: unknown;
      try {
        parseConfig(yaml(line), '/nonexistent/ikeclone.yaml');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).path).toMatch(what);
      expect((error as ConfigError).line).toBe(11);
    }
  });
});
