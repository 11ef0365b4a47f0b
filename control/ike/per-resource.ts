// Per-worker Child SAs with one IKE SA (architecture §5.1): RFC 9611
// per-resource Child SAs (SA_RESOURCE_INFO, TS_MAX_QUEUE) and parallel Child
// SAs with identical selectors (RFC 7296 §2.8), and the choice between them
// and cloning (RFC 7791) by what the peer announced in IKE_AUTH.
//
// - Initiator: the first Child SA carries SA_RESOURCE_INFO when the child has
//   per_cpu_sas or the connection clones per worker, so that a peer that cannot
//   clone can say it accepts per-resource Child SAs (RFC 9611 §3). That first
//   SA is the fallback SA: every worker's traffic may use it until per-resource
//   ones exist (§4); child-spread.ts then creates one per worker.
// - Responder: with per_cpu_sas on the child, SA_RESOURCE_INFO is answered,
//   the first such Child SA for a pair of selectors is the fallback SA and
//   further ones are per-resource, each pinned to the worker with the fewest
//   of them (§4), up to per_cpu_sas_max; past it TS_MAX_QUEUE, never
//   NO_ADDITIONAL_SAS (§6). A plain Child SA with the selectors of a live one
//   is a parallel SA (RFC 7296 §2.8): it joins the others instead of replacing
//   them, and the data plane spreads them over its workers.
//
// The SA_RESOURCE_INFO identifier we send is random (§7: not the CPU number);
// the peer's is only ever logged (§3: for debugging only).
//
// Owner: the main thread (the IKE engine's exchanges).
import { NotifyType } from '../wire/constants.js';
import type { NotifyPayload, Payload } from '../wire/payloads.js';
import { findNotify } from '../wire/payloads.js';
import type { IkeContext } from './context.js';
import type { ChildPlacement, ChildSa, IkeSa } from './ike-sa.js';
import type { ChildPolicy, ConnectionPolicy } from './policy.js';
import { notify } from './payload-builders.js';
import { selectorsEqual } from './traffic-selectors.js';
import type { TrafficSelector } from '../wire/payloads.js';

/** How a session gives every worker its own SAs (architecture §5.1). */
export type SpreadMode = 'clones' | 'per-resource' | 'parallel' | 'single';

export interface SpreadChoice {
  mode: SpreadMode;
  reason: string;
}

/** Octets of our SA_RESOURCE_INFO identifier: random, unique among the SAs of one selector pair (RFC 9611 §3, §7). */
const RESOURCE_ID_LENGTH = 4;

/** N(SA_RESOURCE_INFO) (RFC 9611 §5.1): protocol 0, no SPI, an optional opaque identifier. */
export function resourceInfoNotify(id?: Uint8Array): NotifyPayload {
  return notify(NotifyType.SA_RESOURCE_INFO, id);
}

export function hasResourceInfo(payloads: readonly Payload[]): boolean {
  return findNotify(payloads, NotifyType.SA_RESOURCE_INFO) !== undefined;
}

/** A fresh random identifier for SA_RESOURCE_INFO, as sent and as shown by status (hex). */
export function newResourceId(engine: IkeContext): Uint8Array {
  return engine.random(RESOURCE_ID_LENGTH);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function clonesPerWorker(policy: ConnectionPolicy): boolean {
  return policy.clone?.per === 'worker' && policy.clone.count > 1;
}

/**
 * Whether our first Child SA request for `child` carries SA_RESOURCE_INFO
 * (RFC 9611 §3): the child asks for per-resource SAs, or the connection
 * clones per worker and needs to learn whether a peer that cannot clone takes them.
 */
export function offersResourceInfo(policy: ConnectionPolicy, child: ChildPolicy): boolean {
  return child.perCpuSas === true || clonesPerWorker(policy);
}

/** Per-worker Child SAs the initiator wants for `child`: the clone count with per: worker, else per_cpu_sas_max. */
export function perWorkerCount(policy: ConnectionPolicy, child: ChildPolicy): number {
  if (clonesPerWorker(policy)) return policy.clone!.count;
  return child.perCpuSasMax ?? 1;
}

/**
 * The initiator's choice after IKE_AUTH, and why: clones when the peer
 * announced CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1), RFC 9611 per-resource
 * Child SAs when it answered SA_RESOURCE_INFO instead, parallel Child SAs
 * (RFC 7296 §2.8) when it did neither; 'single' when nothing is asked for.
 */
export function spreadMode(sa: IkeSa): SpreadChoice {
  const policy = sa.policy;
  const first = policy.children[0];
  const perWorker = clonesPerWorker(policy);
  if (perWorker && sa.peerClone) return { mode: 'clones', reason: 'the peer announced CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1): one IKE SA per worker' };
  if (sa.peerResourceInfo && first && (perWorker || first.perCpuSas)) {
    const why = perWorker ? 'the peer did not announce CLONE_IKE_SA_SUPPORTED but answered SA_RESOURCE_INFO' : 'per_cpu_sas, and the peer answered SA_RESOURCE_INFO';
    return { mode: 'per-resource', reason: `${why}: a fallback Child SA and one per-resource Child SA per worker (RFC 9611 §3)` };
  }
  if (perWorker && first) {
    return { mode: 'parallel', reason: 'the peer announced neither CLONE_IKE_SA_SUPPORTED nor SA_RESOURCE_INFO: parallel Child SAs with the same selectors, one per worker (RFC 7296 §2.8)' };
  }
  if (first?.perCpuSas) return { mode: 'single', reason: 'per_cpu_sas, but the peer did not answer SA_RESOURCE_INFO (RFC 9611 §3): one Child SA' };
  return { mode: 'single', reason: 'no per-worker policy on this connection' };
}

/** Initiator, IKE_AUTH: the first Child SA is the fallback SA (RFC 9611 §3), or the parallel SA of worker 0. */
export function firstChildPlacement(sa: IkeSa): ChildPlacement | undefined {
  const { mode } = spreadMode(sa);
  if (mode === 'per-resource') return { kind: 'fallback' };
  if (mode === 'parallel') return { kind: 'parallel', worker: 0 };
  return undefined;
}

function sameSelectors(a: readonly TrafficSelector[], b: readonly TrafficSelector[]): boolean {
  return a.length === b.length && a.every((ts, i) => selectorsEqual(ts, b[i]!));
}

/** The live Child SAs of `sa` other than `child` with its name and selectors (RFC 9611 §6: per TSi/TSr pair). */
export function siblings(sa: IkeSa, child: ChildSa): ChildSa[] {
  return sa.children.filter(
    (c) =>
      c !== child &&
      c.name === child.name &&
      (c.state === 'installed' || c.state === 'rekeying') &&
      sameSelectors(c.localTs, child.localTs) &&
      sameSelectors(c.remoteTs, child.remoteTs),
  );
}

/** The worker with the fewest per-resource siblings, lowest first (RFC 9611 §4). */
function leastLoadedWorker(others: readonly ChildSa[], workers: number): number {
  const load = new Array<number>(workers).fill(0);
  for (const c of others) {
    const w = c.placement?.kind === 'per-resource' ? c.placement.worker : undefined;
    if (w !== undefined && w < workers) load[w]!++;
  }
  let best = 0;
  for (let w = 1; w < workers; w++) if (load[w]! < load[best]!) best = w;
  return best;
}

/**
 * Responder, before the inbound SPI of a requested Child SA is drawn: the
 * worker an RFC 9611 per-resource Child SA with these selectors will be
 * pinned to (the one placeResponderChild names, §4), as the SPI placement's
 * hint (ChildSpiRequest.preferredWorker); undefined for any other Child SA.
 */
export function responderWorkerHint(sa: IkeSa, request: readonly Payload[]): ((childName: string, localTs: TrafficSelector[], remoteTs: TrafficSelector[]) => number | undefined) | undefined {
  if (!findNotify(request, NotifyType.SA_RESOURCE_INFO)) return undefined;
  return (childName, localTs, remoteTs) => {
    const policy = sa.policy.children.find((c) => c.name === childName);
    if (!policy?.perCpuSas) return undefined;
    const others = sa.children.filter(
      (c) => c.name === childName && (c.state === 'installed' || c.state === 'rekeying') && sameSelectors(c.localTs, localTs) && sameSelectors(c.remoteTs, remoteTs),
    );
    // The first for these selectors is the fallback SA: no worker of its own (§3).
    if (!others.some((c) => c.placement !== undefined)) return undefined;
    return leastLoadedWorker(others.filter((c) => c.placement?.kind === 'per-resource'), policy.perCpuSasMax ?? 1);
  };
}

export type ResponderPlacement = { ok: true; payloads: Payload[] } | { ok: false; notify: number };

/**
 * Responder: place the Child SA a request just created (not yet added), and
 * the notifies to add to the response. `initial`: it was created in IKE_AUTH.
 * A refusal (TS_MAX_QUEUE) leaves `child` unused: the caller wipes it.
 */
export function placeResponderChild(engine: IkeContext, sa: IkeSa, request: readonly Payload[], child: ChildSa, initial: boolean): ResponderPlacement {
  const policy = sa.policy.children.find((c) => c.name === child.name);
  const others = siblings(sa, child);
  const info = findNotify(request, NotifyType.SA_RESOURCE_INFO);
  const log = { ike: sa.id, child: child.name };
  if (info && policy?.perCpuSas) {
    // RFC 9611 §3: the first one for these selectors is the fallback SA, for every worker.
    if (initial || !others.some((c) => c.placement !== undefined)) {
      child.placement = { kind: 'fallback' };
      for (const c of others) c.placement ??= { kind: 'parallel' };
      engine.log.info(log, 'RFC 9611: fallback Child SA (SA_RESOURCE_INFO answered)');
      return { ok: true, payloads: [resourceInfoNotify()] };
    }
    const max = policy.perCpuSasMax ?? 1;
    const resources = others.filter((c) => c.placement?.kind === 'per-resource');
    if (resources.length >= max) {
      // §6: TS_MAX_QUEUE, not NO_ADDITIONAL_SAS, which would refuse other selectors too.
      engine.log.info({ ...log, perResource: resources.length, max }, 'RFC 9611: per-resource Child SA refused with TS_MAX_QUEUE');
      return { ok: false, notify: NotifyType.TS_MAX_QUEUE };
    }
    const id = newResourceId(engine);
    child.placement = { kind: 'per-resource', worker: leastLoadedWorker(resources, max), resourceId: hex(id) };
    engine.log.info({ ...log, worker: child.placement.worker, peerResource: hex(info.data) }, 'RFC 9611: per-resource Child SA');
    return { ok: true, payloads: [resourceInfoNotify(id)] };
  }
  if (!initial && others.length > 0) {
    // RFC 7296 §2.8: another Child SA with the same selectors; it joins them (no outbound handover).
    child.placement = { kind: 'parallel' };
    for (const c of others) c.placement ??= { kind: 'parallel' };
  }
  return { ok: true, payloads: [] };
}

/** Responder, IKE_AUTH: the first Child SA is never refused (RFC 9611 §3); the notifies to answer with. */
export function placeInitialChild(engine: IkeContext, sa: IkeSa, request: readonly Payload[], child: ChildSa): Payload[] {
  const placed = placeResponderChild(engine, sa, request, child, true);
  return placed.ok ? placed.payloads : [];
}
