// The embedded demo behind `npm start` / `ikeclone demo`: a responder gateway
// on 127.0.0.2 and an initiator gateway on 127.0.0.1, both in this process on
// free unprivileged ports (no root, nothing to configure: 127.0.0.0/8 is
// routed to lo on Linux). The initiator sets up an IKE SA and a Child SA
// (IKE_SA_INIT + IKE_AUTH, RFC 7296 §1.2), the demo compares what both ends
// negotiated, then deletes the SAs (INFORMATIONAL, RFC 7296 §1.4.1).
//
// The run is a sequence of stages; `afterEstablished` is where further stages
// plug in (clones per worker, ESP traffic through the data-plane workers)
// without changing the CLI: they add fields to DemoResult.
//
// Owner: the calling thread; both gateways run on it.
import { randomBytes, randomInt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { configFromObject, type GatewayConfig } from '../control/config/index.js';
import { Gateway } from '../control/gateway.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { Logger } from '../control/log.js';
import { silentLogger } from '../control/log.js';
import type { IkeSaStatus } from '../control/status.js';
import { ikecloneVersion } from '../control/version.js';

export const DEMO_RESPONDER_ADDRESS = '127.0.0.2';
export const DEMO_INITIATOR_ADDRESS = '127.0.0.1';
export const DEMO_CONNECTION = 'demo';
export const DEMO_CHILD = 'net';
/** Port range the demo picks its IKE port from (NAT-T is the next port). */
export const DEMO_PORT_MIN = 20000;
export const DEMO_PORT_MAX = 59998;

export interface DemoOptions {
  /** IKE proposal in strongSwan's keywords (default aes256gcm16-prfsha256-x25519). */
  ike?: string;
  /** ESP proposal (default aes256gcm16). */
  esp?: string;
  /** Receives one human-readable line per step. */
  progress?: (line: string) => void;
  /** Logger for both gateways (default: silent). */
  log?: Logger;
  /** Picks a candidate IKE port (NAT-T = port + 1); default: random in DEMO_PORT_MIN..DEMO_PORT_MAX. */
  pickPort?: () => number;
  /** Port pairs to try before giving up when ports are in use (default 8). */
  attempts?: number;
  /** Bound on establishing, and separately on deleting, in ms (default 10 000). */
  timeoutMs?: number;
  /**
   * IKE SAs in the clone family (RFC 7791), the original included; default:
   * one per available core, as `clone: { per: worker }` would make (1 = no cloning).
   */
  clones?: number;
  /** Further stages, run while the SAs are up (the data plane's traffic, clones). */
  afterEstablished?: (ctx: DemoContext) => Promise<void>;
  /**
   * ESP traffic from the initiator to the responder through every worker's
   * Child SA (default 20 000 packets of 1400 bytes); false skips it.
   */
  traffic?: { packets?: number; size?: number } | false;
}

export interface DemoContext {
  initiator: Gateway;
  responder: Gateway;
  /** The initiator's IKE SA. */
  sa: IkeSa;
  progress: (line: string) => void;
}

/**
 * What `ikeclone demo --json` prints. Field names are stable (README): add
 * fields, never rename them.
 */
export interface DemoResult {
  demo: 'ikeclone';
  /** ikeclone's package version. */
  version: string;
  /** Wall time of IKE_SA_INIT + IKE_AUTH (IKE SA and first Child SA) at the initiator, ms. */
  durationMs: number;
  /** The initiator's IKE SA (status fields, control/status.ts), with its Child SAs. */
  ike: IkeSaStatus;
  /** The responder's view of the same IKE SA. */
  peer: IkeSaStatus;
  /** Both ends agree on IKE SPIs, algorithms, Child SA SPIs (crossed), proposals and traffic selectors (crossed). */
  agree: boolean;
  /** What differs when agree is false; empty otherwise. */
  mismatches: string[];
  /** Where the two gateways listened: "address:port" of each IKE socket. */
  endpoints: { initiator: string; responder: string; natPort: number };
  /** Port pairs tried (more than 1 when ports were in use). */
  attempts: number;
  /** Wall time of the delete (INFORMATIONAL) until both ends had no SA left, ms. */
  deleteMs: number;
  /** Both ends had no IKE SA left after the delete. */
  deleted: boolean;
  /** Wall time of the whole demo (start-up to shut-down), ms. */
  totalMs: number;
  /** The clone family (RFC 7791) the initiator grew after IKE_AUTH: one IKE SA and one Child SA per worker. */
  family: DemoFamily;
  /** ESP traffic through the data-plane workers; null when the demo ran without traffic. */
  dataplane: DemoDataplane | null;
}

/** One data-plane worker's share of the demo traffic (counters of its own Child SAs). */
export interface DemoWorker {
  index: number;
  /** Child SAs the worker owns. */
  sas: number;
  /** Packets sealed (initiator) or opened and verified (responder). */
  packets: number;
  pps: number;
  /** Inner bytes per second, in Gbit/s. */
  gbps: number;
  /** Packets the worker dropped: replay, ICV, malformed, sequence exhausted, ring full. */
  drops: number;
}

export interface DemoDataplane {
  /** Inner packet bytes (IPv4/UDP). */
  packetSize: number;
  /** Packets the initiator's workers generated and sealed. */
  sent: number;
  /** Packets the responder's workers opened, verified (ICV, replay window) and counted. */
  received: number;
  /** Wall time from the first packet until the last was received (or the wait ended), ms. */
  ms: number;
  /** Received packets per second and inner Gbit/s over that time. */
  pps: number;
  gbps: number;
  /** Drops by reason over both gateways; lostInTransit = sent - received - counted drops (socket buffers). */
  drops: { replay: number; icv: number; unknownSpi: number; malformed: number; queueFull: number; lostInTransit: number };
  /** Each side's workers: the initiator's seal, the responder's open. */
  initiator: DemoWorker[];
  responder: DemoWorker[];
  /** Every Child SA's sequence counter and replay window were processed by exactly one worker, its owner (architecture §4.1). */
  singleWriter: boolean;
}

export interface DemoFamily {
  /** IKE SAs wanted (= workers), the original included. */
  target: number;
  /** complete | fallback | blocked | failed | single */
  state: string;
  /** Wall time from IKE_AUTH's end until the family was complete, ms. */
  cloneMs: number;
  /** Every member as the initiator sees it, original first; each has one Child SA. */
  members: IkeSaStatus[];
  /** Every member's SPIs, algorithms and Child SA match the responder's view. */
  agree: boolean;
}

/** The two gateways' configurations on loopback (internal; exported for tests and tools). */
export function demoConfigs(port: number, opts: { ike?: string; esp?: string; psk?: string; clones?: number } = {}): { initiator: GatewayConfig; responder: GatewayConfig } {
  if (!Number.isInteger(port) || port < 1024 || port > 65534) throw new RangeError('demoConfigs: port must be an integer from 1024 to 65534');
  const psk = opts.psk ?? `0x${randomBytes(32).toString('hex')}`;
  const ike = [opts.ike ?? 'aes256gcm16-prfsha256-x25519'];
  const esp = [opts.esp ?? 'aes256gcm16'];
  const workers = opts.clones ?? 1;
  const common = {
    log: { level: 'silent' },
    retransmit: { timeout: '500ms', tries: 3, maxTimeout: '2s' },
    // The demo shows UDP-encapsulated ESP (RFC 3948), also when run as root (where raw ESP would be used).
    dataplane: { workers, esp: 'udp' },
    // One IKE SA and one Child SA per clone: on a host with more cores than
    // the default per-peer limits (16 IKE SAs, 64 Child SAs) the responder
    // would otherwise refuse the last clones (NO_ADDITIONAL_SAS) and some
    // workers would carry no traffic. Never below those defaults (rekeying
    // briefly holds an extra SA).
    limits: { ikeSasPerPeer: Math.max(16, workers + 1), childSasPerPeer: Math.max(64, workers + 1) },
  };
  const listen = (address: string) => ({ address, port, natPort: port + 1 });
  const responder = configFromObject({
    ...common,
    listen: listen(DEMO_RESPONDER_ADDRESS),
    connections: {
      [DEMO_CONNECTION]: {
        local_addrs: [DEMO_RESPONDER_ADDRESS],
        ike,
        local: { id: 'gateway.demo.ikeclone', auth: 'psk' },
        remote: { id: 'client.demo.ikeclone', auth: 'psk' },
        psk,
        children: { [DEMO_CHILD]: { local_ts: ['10.2.0.0/24'], remote_ts: ['10.1.0.0/24'], esp } },
      },
    },
  }, { file: '<demo responder>' });
  const initiator = configFromObject({
    ...common,
    listen: listen(DEMO_INITIATOR_ADDRESS),
    connections: {
      [DEMO_CONNECTION]: {
        local_addrs: [DEMO_INITIATOR_ADDRESS],
        remote_addrs: [DEMO_RESPONDER_ADDRESS],
        remote_port: port,
        ike,
        local: { id: 'client.demo.ikeclone', auth: 'psk' },
        remote: { id: 'gateway.demo.ikeclone', auth: 'psk' },
        psk,
        ...(workers > 1 ? { clone: { per: 'worker', count: workers } } : {}),
        children: { [DEMO_CHILD]: { local_ts: ['10.1.0.0/24'], remote_ts: ['10.2.0.0/24'], esp } },
      },
    },
  }, { file: '<demo initiator>' });
  return { initiator, responder };
}

/**
 * Compare the initiator's and the responder's view of one IKE SA. Returns the
 * list of differences (empty when they agree): IKE SPIs and proposal, and for
 * each Child SA (matched by position) the proposal, SPIs (in = peer's out) and
 * traffic selectors (local = peer's remote).
 */
export function compareSaViews(ike: IkeSaStatus, peer: IkeSaStatus): string[] {
  const out: string[] = [];
  const same = (what: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${what}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  };
  same('IKE SPIi', ike.spiI, peer.spiI);
  same('IKE SPIr', ike.spiR, peer.spiR);
  same('IKE proposal', ike.proposal, peer.proposal);
  if (ike.proposal === null) out.push('IKE proposal: none negotiated');
  if (ike.role === peer.role) out.push(`roles: both ${ike.role}`);
  same('Child SA count', ike.children.length, peer.children.length);
  if (ike.children.length === 0) out.push('Child SAs: none');
  const n = Math.min(ike.children.length, peer.children.length);
  for (let i = 0; i < n; i++) {
    const a = ike.children[i]!;
    const b = peer.children[i]!;
    same(`Child SA ${a.name} proposal`, a.proposal, b.proposal);
    same(`Child SA ${a.name} SPI in / peer's out`, a.spiIn, b.spiOut);
    same(`Child SA ${a.name} SPI out / peer's in`, a.spiOut, b.spiIn);
    same(`Child SA ${a.name} local_ts / peer's remote_ts`, a.localTs, b.remoteTs);
    same(`Child SA ${a.name} remote_ts / peer's local_ts`, a.remoteTs, b.localTs);
  }
  return out;
}

/** Totals of one gateway's data plane per worker (no round trip: workers keep them in shared memory). */
function demoWorkers(gw: Gateway, direction: 'encap' | 'decap', ms: number): DemoWorker[] {
  const st = gw.status().dataplane;
  if (!st) return [];
  return st.workers.map((w) => {
    const packets = direction === 'encap' ? w.encapPackets : w.decapPackets;
    const bytes = direction === 'encap' ? w.encapBytes : w.decapBytes;
    const d = w.drops;
    return {
      index: w.index,
      sas: w.sas,
      packets,
      pps: ms > 0 ? Math.round((packets * 1000) / ms) : 0,
      gbps: ms > 0 ? Math.round((bytes * 8) / (ms * 1e6) * 1000) / 1000 : 0,
      drops: d.replay + d.icv + d.malformed + d.seqExhausted + d.queueFull,
    };
  });
}

/** Whether every SA was processed by its owner worker alone (the data plane's debug hook). */
async function singleWriter(gw: Gateway): Promise<boolean> {
  const c = await gw.dataPlane.counters();
  const seen = new Map<number, number>();
  for (const [worker, ids] of c.seqWriters.entries()) {
    for (const id of ids) {
      if (seen.has(id)) return false;
      seen.set(id, worker);
    }
  }
  return c.sa.every((s) => (seen.get(s.id) ?? s.worker) === s.worker);
}

/**
 * Push generated IPv4/UDP packets from the initiator to the responder through
 * every Child SA of the clone family — each sealed by the worker that owns
 * it, sent as UDP-encapsulated ESP (RFC 3948) on the NAT-T port, opened and
 * verified by the responder's owner worker — and measure per worker.
 */
async function pushTraffic(initiator: Gateway, responder: Gateway, traffic: { packets?: number; size?: number }, timeoutMs: number, progress: (line: string) => void): Promise<DemoDataplane> {
  const packets = traffic.packets ?? 20_000;
  const size = traffic.size ?? 1400;
  if (!Number.isInteger(packets) || packets < 1 || packets > 100_000_000) throw new RangeError('runDemo: traffic.packets must be an integer from 1 to 10^8');
  if (!Number.isInteger(size) || size < 28 || size > 1900) throw new RangeError('runDemo: traffic.size must be an integer from 28 to 1900');
  // Every Child SA must be in its worker on both ends before the first packet.
  const children = () => initiator.status().ikeSas.reduce((n, s) => n + s.children.length, 0);
  await waitFor(() => initiator.dataPlane.saIds().length >= children() && responder.dataPlane.saIds().length >= children(), 2000);
  const sas = initiator.dataPlane.saIds().length;
  progress(`sending ${packets} packets of ${size} bytes through ${sas} Child SA${sas === 1 ? '' : 's'} on ${initiator.dataPlane.workerCount} worker${initiator.dataPlane.workerCount === 1 ? '' : 's'} (UDP-encapsulated ESP)`);
  const received = () => responder.status().dataplane?.workers.reduce((n, w) => n + w.decapPackets, 0) ?? 0;
  const dropped = () => {
    const st = responder.status().dataplane;
    if (!st) return 0;
    return st.workers.reduce((n, w) => n + w.drops.replay + w.drops.icv + w.drops.malformed + w.drops.queueFull, 0) + st.io.dropUnknownSpi + st.io.dropQueueFull + st.io.dropMalformed;
  };
  const t0 = performance.now();
  const report = await bounded(initiator.dataPlane.generate({ packets, size, flows: 16 }), timeoutMs, 'generating traffic');
  // Wait until everything sent is received or dropped, or nothing has moved for a while.
  let last = -1;
  let lastChange = performance.now();
  await waitFor(() => {
    const now = received() + dropped();
    if (now !== last) [last, lastChange] = [now, performance.now()];
    return now >= report.sent || performance.now() - lastChange > 500 || performance.now() - t0 > timeoutMs;
  }, timeoutMs + 1000);
  const elapsed = ms(t0);
  const got = received();
  const a = initiator.status().dataplane!;
  const b = responder.status().dataplane!;
  const sum = (f: (w: (typeof b.workers)[number]) => number) => a.workers.reduce((n, w) => n + f(w), 0) + b.workers.reduce((n, w) => n + f(w), 0);
  const drops = {
    replay: sum((w) => w.drops.replay),
    icv: sum((w) => w.drops.icv),
    unknownSpi: a.io.dropUnknownSpi + b.io.dropUnknownSpi,
    malformed: sum((w) => w.drops.malformed) + a.io.dropMalformed + b.io.dropMalformed,
    queueFull: sum((w) => w.drops.queueFull) + a.io.dropQueueFull + b.io.dropQueueFull,
    lostInTransit: 0,
  };
  drops.lostInTransit = Math.max(0, report.sent - got - drops.replay - drops.icv - drops.unknownSpi - drops.malformed - drops.queueFull);
  const result: DemoDataplane = {
    packetSize: size,
    sent: report.sent,
    received: got,
    ms: elapsed,
    pps: elapsed > 0 ? Math.round((got * 1000) / elapsed) : 0,
    gbps: elapsed > 0 ? Math.round(((got * size * 8) / (elapsed * 1e6)) * 1000) / 1000 : 0,
    drops,
    initiator: demoWorkers(initiator, 'encap', elapsed),
    responder: demoWorkers(responder, 'decap', elapsed),
    singleWriter: (await singleWriter(initiator)) && (await singleWriter(responder)),
  };
  const row = (side: string, w: DemoWorker) =>
    `  ${side.padEnd(9)} worker ${String(w.index).padEnd(2)} ${String(w.sas).padStart(3)} SA  ${String(w.packets).padStart(9)} pkts  ${String(w.pps).padStart(8)} pps  ${w.gbps.toFixed(3).padStart(7)} Gbps  ${String(w.drops).padStart(6)} drops`;
  progress(`traffic: ${result.received}/${result.sent} packets received and verified in ${elapsed.toFixed(0)} ms: ${result.pps} pps, ${result.gbps.toFixed(3)} Gbps`);
  for (const w of result.initiator) progress(row('sealed', w));
  for (const w of result.responder) progress(row('opened', w));
  const d = result.drops;
  progress(`drops: replay ${d.replay}, ICV ${d.icv}, unknown SPI ${d.unknownSpi}, malformed ${d.malformed}, queue full ${d.queueFull}, lost in transit ${d.lostInTransit}; one writer per SA: ${result.singleWriter ? 'yes' : 'NO'}`);
  return result;
}

function isAddressInUse(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | undefined;
  return e?.code === 'EADDRINUSE' || /EADDRINUSE/.test(String(e?.message ?? ''));
}

function ms(from: number): number {
  return Math.round((performance.now() - from) * 1000) / 1000;
}

/** Reject with `what` timing out after `timeoutMs`. */
function bounded<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Wait until `cond()` holds, checking every few ms; false when `timeoutMs` passed first. */
async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

interface StartedPair {
  initiator: Gateway;
  responder: Gateway;
  port: number;
  attempts: number;
}

async function startPair(opts: DemoOptions, log: Logger, progress: (line: string) => void): Promise<StartedPair> {
  const attempts = opts.attempts ?? 8;
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) throw new RangeError('runDemo: attempts must be an integer from 1 to 100');
  const pickPort = opts.pickPort ?? (() => randomInt(DEMO_PORT_MIN, DEMO_PORT_MAX + 1));
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const port = pickPort();
    const configs = demoConfigs(port, { ...(opts.ike ? { ike: opts.ike } : {}), ...(opts.esp ? { esp: opts.esp } : {}), clones: opts.clones ?? availableParallelism() });
    const responder = new Gateway({ config: configs.responder, log: log.child({ gw: 'responder' }) });
    const initiator = new Gateway({ config: configs.initiator, log: log.child({ gw: 'initiator' }) });
    try {
      progress(`starting the responder on ${DEMO_RESPONDER_ADDRESS} (UDP ${port}, NAT-T ${port + 1})`);
      await responder.start();
      progress(`starting the initiator on ${DEMO_INITIATOR_ADDRESS} (UDP ${port}, NAT-T ${port + 1})`);
      await initiator.start();
      return { initiator, responder, port, attempts: attempt };
    } catch (err) {
      await initiator.stop({ notifyPeers: false });
      await responder.stop({ notifyPeers: false });
      if (/EADDRNOTAVAIL/.test(String((err as Error)?.message))) {
        throw new Error(`${(err as Error).message} (the demo needs 127.0.0.2 on the loopback interface; on macOS: sudo ifconfig lo0 alias 127.0.0.2)`);
      }
      if (!isAddressInUse(err)) throw err;
      lastError = err;
      progress(`port ${port} or ${port + 1} is in use, trying another pair`);
    }
  }
  throw new Error(`no free port pair after ${attempts} attempts (last: ${(lastError as Error).message})`);
}

/**
 * Wait (bounded) for the initiator's clone family to reach its target — one
 * IKE SA per worker, each with its own Child SA (RFC 7791, architecture §5) — and
 * check every member against the responder's view.
 */
async function growFamily(initiator: Gateway, responder: Gateway, sa: IkeSa, timeoutMs: number, progress: (line: string) => void): Promise<DemoFamily> {
  const t0 = performance.now();
  const target = sa.policy.clone?.count ?? 1;
  if (target > 1) progress(`cloning the IKE SA: ${target} IKE SAs in all, one per worker (RFC 7791)`);
  const settled = () => {
    const f = initiator.cloner.family(sa.sessionId);
    const members = initiator.engine.sessionMembers(sa.sessionId);
    return target <= 1 || (f !== undefined && f.state !== 'growing' && members.every((m) => m.children.length > 0));
  };
  await waitFor(settled, timeoutMs);
  // The responder installs each clone's Child SA before answering; allow the last answer to land.
  await waitFor(() => responder.status().ikeSas.reduce((n, s) => n + s.children.length, 0) >= initiator.status().ikeSas.reduce((n, s) => n + s.children.length, 0), 1000);
  const status = initiator.status();
  const members = status.ikeSas.filter((s) => s.sessionId === sa.sessionId).sort((a, b) => a.familyIndex - b.familyIndex);
  const theirs = responder.status().ikeSas;
  const agree = members.every((m) => {
    const p = theirs.find((t) => t.spiI === m.spiI);
    return p !== undefined && compareSaViews(m, p).length === 0;
  });
  const state = target <= 1 ? 'single' : (initiator.cloner.family(sa.sessionId)?.state ?? 'single');
  const cloneMs = ms(t0);
  if (target > 1) progress(`clone family ${state}: ${members.length} IKE SAs with ${members.reduce((n, m) => n + m.children.length, 0)} Child SAs in ${cloneMs.toFixed(1)} ms`);
  return { target, state, cloneMs, members, agree };
}

/**
 * Run the demo: start both gateways, establish an IKE SA and a Child SA, run
 * further stages, compare both ends' views, delete the SAs, stop. Resolves
 * with what was negotiated and how long it took; rejects (after stopping both
 * gateways) when a step fails or exceeds its bound.
 */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  if (opts === null || typeof opts !== 'object') throw new TypeError('runDemo: options must be an object');
  const timeoutMs = opts.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('runDemo: timeoutMs must be a positive number');
  const progress = opts.progress ?? (() => {});
  const log = opts.log ?? silentLogger();
  const t0 = performance.now();
  const pair = await startPair(opts, log, progress);
  const { initiator, responder, port } = pair;
  try {
    progress(`initiating: IKE_SA_INIT + IKE_AUTH from ${DEMO_INITIATOR_ADDRESS} to ${DEMO_RESPONDER_ADDRESS}:${port}`);
    const tUp = performance.now();
    const sa = await bounded(initiator.up(DEMO_CONNECTION), timeoutMs, 'establishing the IKE SA');
    const durationMs = ms(tUp);
    if (sa.children.length === 0) throw new Error(`IKE SA established but the Child SA "${DEMO_CHILD}" was not (see the log)`);
    // The responder installs its end before answering IKE_AUTH; wait briefly all the same.
    await waitFor(() => (responder.status().ikeSas[0]?.children.length ?? 0) > 0, 1000);
    progress(`IKE SA #${sa.id} and Child SA "${DEMO_CHILD}" established in ${durationMs.toFixed(1)} ms`);
    const family = await growFamily(initiator, responder, sa, timeoutMs, progress);
    const dataplane = opts.traffic === false ? null : await pushTraffic(initiator, responder, opts.traffic ?? {}, timeoutMs, progress);

    if (opts.afterEstablished) await opts.afterEstablished({ initiator, responder, sa, progress });

    const ike = initiator.status().ikeSas.find((s) => s.id === sa.id);
    const peer = responder.status().ikeSas.find((s) => s.spiI === ike?.spiI);
    if (!ike) throw new Error('the initiator lost its IKE SA');
    if (!peer) throw new Error('the responder has no IKE SA with the initiator\'s SPIs');
    const mismatches = compareSaViews(ike, peer);
    progress(mismatches.length === 0 ? 'both ends agree on SPIs, algorithms and traffic selectors' : `the ends disagree: ${mismatches.join('; ')}`);

    progress('deleting the IKE SA and its Child SA (INFORMATIONAL)');
    const tDown = performance.now();
    const responderDown = waitFor(() => responder.status().ikeSas.length === 0, timeoutMs);
    await bounded(initiator.down(DEMO_CONNECTION), timeoutMs, 'deleting the IKE SA');
    await Promise.race([responderDown, waitFor(() => responder.status().ikeSas.length === 0, timeoutMs)]);
    const deleted = initiator.status().ikeSas.length === 0 && responder.status().ikeSas.length === 0;
    const deleteMs = ms(tDown);
    progress(deleted ? `deleted on both ends in ${deleteMs.toFixed(1)} ms` : 'the SAs were not deleted on both ends');

    return {
      demo: 'ikeclone',
      version: ikecloneVersion(),
      durationMs,
      ike,
      peer,
      agree: mismatches.length === 0 && family.agree,
      mismatches,
      endpoints: { initiator: `${DEMO_INITIATOR_ADDRESS}:${port}`, responder: `${DEMO_RESPONDER_ADDRESS}:${port}`, natPort: port + 1 },
      attempts: pair.attempts,
      deleteMs,
      deleted,
      totalMs: ms(t0),
      family,
      dataplane,
    };
  } finally {
    await initiator.stop({ notifyPeers: false });
    await responder.stop({ notifyPeers: false });
  }
}
