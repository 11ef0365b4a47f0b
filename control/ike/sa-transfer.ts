// Moving an established IKE SA between engines (architecture §8): the IKE
// state of a clone as a record another node imports, and the steps after the
// import that move the peer and create the clone's Child SA there.
//
// What moves: family id and position, the connection's name, IDi/IDr, SPIs,
// the IKEv2 and the MOBIKE roles (RFC 4555 §1.3), the negotiated suite, SK_d,
// SK_a*, SK_e*, the next message IDs both ways, the last response (for
// retransmissions, RFC 7296 §2.1), negotiated extensions, the peer's endpoint,
// NAT state and address set, virtual IPs, and the SPIs (only) of Child SAs.
// What never moves: Child SA keys, ESP sequence counters and replay windows
// (with AES-GCM the IV is the counter, RFC 4106 §3.1: a copied counter reuses
// nonces), Diffie-Hellman secrets, nonces, SK_pi/SK_pr.
//
// The record is plaintext here: only the cluster layer's sealed form leaves the
// process (control/cluster/seal.ts). Secrets sit in a binary tail that the
// caller wipes after sealing; the rest is JSON. decodeTransferRecord takes
// bytes that passed the seal's authentication but still never throws.
//
// Owner: the engine's thread. Export wipes the sender's copy; import binds
// the SA to the importing node's address.
import type { IkeKeys } from '../crypto/keys.js';
import { concatBytes } from '../crypto/bytes.js';
import { wipe } from '../crypto/random.js';
import type { Result } from '../wire/result.js';
import type { IkeContext } from './context.js';
import { IkeSa, carryState, spi64Hex, type ChildSa } from './ike-sa.js';
import { installIkeKeys } from './ike-keys.js';
import type { NegotiatedSuite } from './proposals.js';
import type { Endpoint } from './transport.js';
import { AddressListInitiator, RoutabilityCheckInitiator } from './exchanges/mobike.js';
import { DeleteSpisInitiator } from './exchanges/delete.js';
import { MAX_RESYNC_PROBES, resyncRequestIds } from './request-resync.js';
import { arrivalSpiCandidates, arrivalSpiChoices, arrivalSpiDrawProblem, orphanDrawsProblem, type ArrivalSpiDraw } from './arrival-spi.js';
import { espSpiNode, espSpiWorker } from '../../io/spi-layout.js';

export const TRANSFER_VERSION = 1;
/** A record longer than this is refused on import (a clone's IKE state is a few KiB at most). */
export const MAX_TRANSFER_BYTES = 64 * 1024;
/** The IKE SA keys that move, in record order (SK_pi/SK_pr never do: AUTH is done). */
const MOVING_KEYS = ['skD', 'skAi', 'skAr', 'skEi', 'skEr'] as const;

/** The non-secret part of a transferred IKE SA. */
export interface TransferState {
  v: number;
  /** Cluster-wide family (session) id and this SA's position in it. */
  family: string;
  familyIndex: number;
  conn: string;
  role: 'initiator' | 'responder';
  mobikeInitiator: boolean;
  spiI: string;
  spiR: string;
  suite: { proposalNumber: number; protocol: number; spi: string; encr: number; encrKeyLength?: number; prf: number; integ?: number; ke?: number; esn?: number };
  keyLengths: number[];
  nextRequestId: number;
  peerRequestId: number;
  /** IKE window size (RFC 7296 §2.3): ikeclone runs one exchange at a time. */
  window: number;
  /** The cached response; a fragmented one with all its fragments (RFC 7383 §2.6.1: a retransmission gets them all). */
  lastResponse?: { messageId: number; bytes: string; requestDigest: string; fragments?: { datagrams: string[]; size: number } };
  localId?: { idType: number; data: string };
  peerId?: { idType: number; data: string };
  peerKey?: string;
  peerMobike: boolean;
  peerClone: boolean;
  natDetectionExchanged: boolean;
  natLocal: boolean;
  natRemote: boolean;
  localPort: number;
  remote: Endpoint;
  peerAdditionalAddresses: string[];
  peerWithdrawnAddress?: string;
  verifiedAddresses: string[];
  virtualIps: string[];
  peerVirtualIps: string[];
  dns: string[];
  peerFragmentation: boolean;
  fragmentSize?: number;
  /** How long the SA had been established (lifetimes restart on import). */
  ageMs: number;
  /** Child SAs this SA had, by SPI only: a node taking over deletes them (their keys never move). */
  children: Array<{ name: string; spiIn: number; spiOut: number }>;
  /**
   * The peer never left the importing node's address (a clone sent back after
   * a failed path test): no UPDATE_SA_ADDRESSES will come, the Child SAs are
   * created once the path test passes.
   */
  peerStays?: boolean;
  /**
   * Request message IDs below this are fenced already (architecture §8): the
   * handoff's own transaction, which names the importing node owner, covers
   * its first requests, so they leave without a write of their own. The
   * importer starts at nextRequestId; a node that takes the clone over later
   * starts here (amendTransferRecord), above any ID the importer may send.
   */
  fencedNextRequestId?: number;
  /**
   * The peer's next request ID is not known: it lies in [nextRequestId,
   * resyncThrough] (the previous owner died, or gave the clone back, with
   * requests the peer may or may not have processed). The importer finds it
   * with probes (request-resync.ts) before it sends anything else.
   */
  resyncThrough?: number;
  /**
   * The random parts of the Child SA SPIs of an arrival not yet done
   * (arrival-spi.ts): the node it names uses them; any other node importing
   * the record deletes what they may name at the client.
   */
  arrivalSpis?: ArrivalSpiDraw;
  /**
   * Draws of previous owners whose arrival did not finish (they died, or
   * gave the clone back): the importer deletes at the peer what they may
   * name (arrival-spi.ts), then its records drop them.
   */
  orphanSpis?: ArrivalSpiDraw[];
}

/** Why an IKE SA cannot move now; undefined when it can (CLUSTER design §2 preconditions). */
export function transferBlocked(sa: IkeSa, opts: { withChildren?: boolean } = {}): string | undefined {
  if (sa.state !== 'established') return `IKE SA ${sa.id} is ${sa.state}`;
  if (!sa.keys || !sa.suite) return `IKE SA ${sa.id} has no keys`;
  if (sa.outstanding || sa.queue.length > 0) return `IKE SA ${sa.id} has an exchange outstanding`;
  if (!opts.withChildren && sa.children.length > 0) return `IKE SA ${sa.id} has Child SAs (they stay where they are, RFC 7791 §5.2)`;
  if (!sa.peerMobike) return `IKE SA ${sa.id}: MOBIKE was not negotiated, so the peer cannot follow (RFC 4555 §3.2)`;
  return undefined;
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

/**
 * The record of `sa` as it is now, without changing it: the owner's copy in
 * the cluster (rewritten as message IDs advance). The caller wipes the
 * returned bytes once sealed.
 */
export function snapshotIkeSa(ctx: IkeContext, sa: IkeSa, family: string, over: { nextRequestId?: number; fencedNextRequestId?: number; arrivalSpis?: ArrivalSpiDraw } = {}): Uint8Array {
  const keys = sa.keys!;
  const suite = sa.suite!;
  const children = sa.children.filter((c) => c.state !== 'deleted');
  // An arrival's draw stays in the record until its Child SAs are up and named here (the write at child-up).
  const draw = over.arrivalSpis ?? (sa.arrivalSpis && children.length < sa.arrivalSpis.random.length ? sa.arrivalSpis : undefined);
  const state: TransferState = {
    v: TRANSFER_VERSION,
    family,
    familyIndex: sa.familyIndex,
    conn: sa.policy.name,
    role: sa.role,
    mobikeInitiator: sa.mobikeInitiator,
    spiI: hex(sa.spiI),
    spiR: hex(sa.spiR),
    suite: { ...suite, spi: hex(suite.spi), prf: suite.prf! },
    keyLengths: MOVING_KEYS.map((k) => keys[k].length),
    nextRequestId: over.nextRequestId ?? sa.nextRequestId,
    ...(over.fencedNextRequestId !== undefined ? { fencedNextRequestId: over.fencedNextRequestId } : {}),
    peerRequestId: sa.peerRequestId,
    window: 1,
    ...(sa.lastResponse && {
      lastResponse: {
        messageId: sa.lastResponse.messageId,
        bytes: hex(sa.lastResponse.bytes),
        requestDigest: hex(sa.lastResponse.requestDigest),
        ...(sa.lastResponse.fragments && { fragments: { datagrams: sa.lastResponse.fragments.datagrams.map(hex), size: sa.lastResponse.fragments.size } }),
      },
    }),
    ...(sa.localId && { localId: { idType: sa.localId.idType, data: hex(sa.localId.data) } }),
    ...(sa.peerId && { peerId: { idType: sa.peerId.idType, data: hex(sa.peerId.data) } }),
    ...(sa.peerKey !== undefined && { peerKey: sa.peerKey }),
    peerMobike: sa.peerMobike,
    peerClone: sa.peerClone,
    natDetectionExchanged: sa.natDetectionExchanged,
    natLocal: sa.natLocal,
    natRemote: sa.natRemote,
    localPort: sa.local.port,
    remote: { ...sa.remote },
    peerAdditionalAddresses: [...sa.peerAdditionalAddresses],
    ...(sa.peerWithdrawnAddress !== undefined && { peerWithdrawnAddress: sa.peerWithdrawnAddress }),
    verifiedAddresses: [...sa.verifiedAddresses],
    virtualIps: [...sa.virtualIps],
    peerVirtualIps: [...sa.peerVirtualIps],
    dns: [...sa.dns],
    peerFragmentation: sa.peerFragmentation,
    ...(sa.fragmentSize !== undefined && { fragmentSize: sa.fragmentSize }),
    ageMs: ctx.clock.now() - (sa.establishedAt ?? sa.createdAt),
    children: children.map((c: ChildSa) => ({ name: c.name, spiIn: c.spiIn, spiOut: c.spiOut })),
    ...(draw && { arrivalSpis: draw }),
    ...(sa.orphanSpis && { orphanSpis: sa.orphanSpis }),
  };
  const json = new TextEncoder().encode(JSON.stringify(state));
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, json.length);
  return concatBytes(head, json, ...MOVING_KEYS.map((k) => keys[k]));
}

/**
 * Export `sa` for another node (step 2): its record, and the local copy is
 * gone — keys wiped, SPIs dropped, no cached response left to answer from
 * this address. Refused (an Error result) when transferBlocked says so.
 */
export function exportIkeSa(ctx: IkeContext, sa: IkeSa, family: string, reason: string, opts: { fencedAhead?: number; arrivalSpis?: ArrivalSpiDraw } = {}): Result<Uint8Array, string> {
  const blocked = transferBlocked(sa);
  if (blocked) return { ok: false, error: blocked };
  const record = snapshotIkeSa(ctx, sa, family, {
    ...(opts.fencedAhead ? { fencedNextRequestId: sa.nextRequestId + opts.fencedAhead } : {}),
    ...(opts.arrivalSpis ? { arrivalSpis: opts.arrivalSpis } : {}),
  });
  // The importer answers retransmissions now: the response must not also leave from here.
  sa.lastResponse = undefined;
  ctx.deleteIkeSa(sa, reason);
  return { ok: true, value: record };
}

/** A decoded record: its state and the secrets that travel with it. */
export interface TransferRecord {
  state: TransferState;
  keys: Pick<IkeKeys, (typeof MOVING_KEYS)[number]>;
}

/** Decode a record (bytes that opened under the cluster key, still checked field by field); never throws. */
export function decodeTransferRecord(bytes: Uint8Array): Result<TransferRecord, string> {
  if (bytes.length < 4 || bytes.length > MAX_TRANSFER_BYTES) return { ok: false, error: `record length ${bytes.length} out of range` };
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (jsonLength > bytes.length - 4) return { ok: false, error: 'record truncated' };
  let state: TransferState;
  try {
    state = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(4, 4 + jsonLength))) as TransferState;
  } catch {
    return { ok: false, error: 'record state is not JSON' };
  }
  const problem = stateProblem(state);
  if (problem) return { ok: false, error: problem };
  let off = 4 + jsonLength;
  const total = state.keyLengths.reduce((a, b) => a + b, 0);
  if (bytes.length - off !== total) return { ok: false, error: 'record key lengths do not add up' };
  const keys = {} as TransferRecord['keys'];
  MOVING_KEYS.forEach((k, i) => {
    keys[k] = Uint8Array.from(bytes.subarray(off, off + state.keyLengths[i]!));
    off += state.keyLengths[i]!;
  });
  return { ok: true, value: { state, keys } };
}

const isInt = (v: unknown, max = 0xffffffff) => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
const isHex = (v: unknown, bytes?: number) => typeof v === 'string' && /^([0-9a-f]{2})*$/.test(v) && (bytes === undefined || v.length === bytes * 2);
const isStrings = (v: unknown) => Array.isArray(v) && v.length <= 64 && v.every((a) => typeof a === 'string');
const isObject = (v: unknown): v is object => typeof v === 'object' && v !== null;
/** Fragments of a cached response a record may carry: as many as a peer reassembles by default (defaults.ts maxFragments). */
const MAX_RECORD_FRAGMENTS = 128;
/** A cached response's fragments: 1 to MAX_RECORD_FRAGMENTS datagrams, each at most 64 KiB. */
const fragmentsValid = (f: unknown): boolean =>
  isObject(f) && isInt((f as { size?: unknown }).size, 0xffff) && Array.isArray((f as { datagrams?: unknown }).datagrams) &&
  (f as { datagrams: unknown[] }).datagrams.length >= 1 && (f as { datagrams: unknown[] }).datagrams.length <= MAX_RECORD_FRAGMENTS &&
  (f as { datagrams: unknown[] }).datagrams.every((d) => isHex(d) && (d as string).length <= 2 * 0xffff);

/** What is wrong with a decoded state object, or undefined. */
function stateProblem(s: TransferState): string | undefined {
  if (typeof s !== 'object' || s === null) return 'record state is not an object';
  if (s.v !== TRANSFER_VERSION) return `record version ${String(s.v)} is not ${TRANSFER_VERSION}`;
  if (typeof s.family !== 'string' || typeof s.conn !== 'string' || !isInt(s.familyIndex, 255)) return 'record family or connection missing';
  if (s.role !== 'initiator' && s.role !== 'responder') return 'record role invalid';
  if (!isHex(s.spiI, 8) || !isHex(s.spiR, 8)) return 'record SPIs invalid';
  const suite = s.suite;
  if (typeof suite !== 'object' || suite === null || !isInt(suite.encr, 0xffff) || !isInt(suite.prf, 0xffff) || !isHex(suite.spi)) return 'record suite invalid';
  if (!Array.isArray(s.keyLengths) || s.keyLengths.length !== MOVING_KEYS.length || !s.keyLengths.every((n) => isInt(n, 1024))) return 'record key lengths invalid';
  if (!isInt(s.nextRequestId) || !isInt(s.peerRequestId) || s.window !== 1) return 'record message IDs invalid';
  if (typeof s.remote !== 'object' || s.remote === null || typeof s.remote.address !== 'string' || !isInt(s.remote.port, 0xffff) || !isInt(s.localPort, 0xffff)) {
    return 'record endpoints invalid';
  }
  if (!isStrings(s.peerAdditionalAddresses) || !isStrings(s.verifiedAddresses)) return 'record address set invalid';
  if (!isStrings(s.virtualIps) || !isStrings(s.peerVirtualIps) || !isStrings(s.dns)) return 'record virtual IPs or DNS servers invalid';
  if (typeof s.peerFragmentation !== 'boolean' || (s.fragmentSize !== undefined && !isInt(s.fragmentSize, 0xffff))) return 'record fragmentation state invalid';
  if (!Array.isArray(s.children) || s.children.length > 64 || !s.children.every((c) => typeof c?.name === 'string' && isInt(c.spiIn) && isInt(c.spiOut))) {
    return 'record Child SA list invalid';
  }
  if (s.peerStays !== undefined && typeof s.peerStays !== 'boolean') return 'record peerStays invalid';
  if (s.fencedNextRequestId !== undefined && (!isInt(s.fencedNextRequestId) || s.fencedNextRequestId < s.nextRequestId)) return 'record fenced message ID invalid';
  // The probes' IDs are fenced by the transaction that wrote the range (fencedNextRequestId above it).
  const range = s.resyncThrough;
  if (range !== undefined && (!isInt(range) || range < s.nextRequestId || range - s.nextRequestId >= MAX_RESYNC_PROBES || !(range < (s.fencedNextRequestId ?? 0)))) {
    return 'record message ID range to resynchronise invalid';
  }
  const drawProblem = (s.arrivalSpis !== undefined ? arrivalSpiDrawProblem(s.arrivalSpis) : undefined) ?? (s.orphanSpis !== undefined ? orphanDrawsProblem(s.orphanSpis) : undefined);
  if (drawProblem) return drawProblem;
  const lr = s.lastResponse;
  if (lr !== undefined && (!isObject(lr) || !isInt(lr.messageId) || !isHex(lr.bytes) || !isHex(lr.requestDigest, 32) || (lr.fragments !== undefined && !fragmentsValid(lr.fragments)))) {
    return 'record last response invalid';
  }
  for (const idf of [s.localId, s.peerId]) if (idf !== undefined && (!isObject(idf) || !isInt(idf.idType, 255) || !isHex(idf.data))) return 'record identity invalid';
  if (s.peerKey !== undefined && typeof s.peerKey !== 'string') return 'record peer invalid';
  if (s.peerWithdrawnAddress !== undefined && typeof s.peerWithdrawnAddress !== 'string') return 'record address set invalid';
  const flags = [s.peerMobike, s.peerClone, s.mobikeInitiator, s.natDetectionExchanged, s.natLocal, s.natRemote];
  if (!flags.every((f) => typeof f === 'boolean')) return 'record extension flags invalid';
  // Milliseconds of the engine's clock, fractional on a real one.
  if (typeof s.ageMs !== 'number' || !Number.isFinite(s.ageMs) || s.ageMs < 0) return 'record age invalid';
  return undefined;
}

/**
 * Import a decoded record (step 3): the IKE SA comes up on this engine,
 * bound to `local` (this node's address; the record's port), with the
 * record's message IDs and keys. The record's key buffers are taken over
 * (the caller must not wipe them; a refused record's are wiped). Refused
 * when the connection is unknown here or its SPI is already in use.
 */
export function importIkeSa(ctx: IkeContext, record: TransferRecord, local: string): Result<IkeSa, string> {
  const s = record.state;
  const policy = ctx.policy(s.conn);
  // Refused: the record's keys are wiped here, as they would be with the SA they were for.
  const refuse = (error: string): Result<IkeSa, string> => {
    wipe(...Object.values(record.keys));
    return { ok: false, error };
  };
  if (!policy) return refuse(`no connection named "${s.conn}" on this node`);
  const spiI = unhex(s.spiI);
  const spiR = unhex(s.spiR);
  const ourSpi = s.role === 'initiator' ? spiI : spiR;
  if (ctx.sas.has(spi64Hex(ourSpi))) return refuse(`IKE SPI ${spi64Hex(ourSpi)} is already in use here`);
  const sa = new IkeSa(s.role, policy, { address: local, port: s.localPort }, { ...s.remote }, spiI, spiR, ctx.clock.now() - s.ageMs);
  const suite: NegotiatedSuite = { ...s.suite, spi: unhex(s.suite.spi) };
  sa.suite = suite;
  sa.familyIndex = s.familyIndex;
  sa.nextRequestId = s.nextRequestId;
  sa.peerRequestId = s.peerRequestId;
  const lr = s.lastResponse;
  if (lr) {
    sa.lastResponse = {
      messageId: lr.messageId,
      bytes: unhex(lr.bytes),
      requestDigest: unhex(lr.requestDigest),
      ...(lr.fragments && { fragments: { datagrams: lr.fragments.datagrams.map(unhex), size: lr.fragments.size } }),
    };
  }
  if (s.localId) sa.localId = { idType: s.localId.idType, data: unhex(s.localId.data) };
  if (s.peerId) sa.peerId = { idType: s.peerId.idType, data: unhex(s.peerId.data) };
  // Kept in our records until the arrival is done, whoever's draw it is (completeArrival).
  sa.arrivalSpis = s.arrivalSpis;
  sa.orphanSpis = s.orphanSpis;
  carryState(sa, s);
  try {
    // SK_pi/SK_pr stay behind (AUTH is done): empty here.
    installIkeKeys(ctx, sa, { ...record.keys, skPi: new Uint8Array(0), skPr: new Uint8Array(0) });
  } catch (err) {
    return refuse(`record suite unusable: ${String(err)}`);
  }
  ctx.installImported(sa);
  return { ok: true, value: sa };
}

/**
 * When each step after an import ended, in ms of the engine's clock (absent:
 * not reached): the path test answered, our address list answered, the SA
 * moved here (the peer's UPDATE_SA_ADDRESSES), a dead node's Child SAs
 * deleted at the peer, the new Child SAs up. Operators read them in the
 * arrival's log line, the benchmark per step.
 */
export interface ArrivalSteps {
  /** The peer's next request message ID found (request-resync.ts), when the record did not know it. */
  resync?: number;
  pathTest?: number;
  addressList?: number;
  update?: number;
  staleDeleted?: number;
  child?: number;
}

/** How the steps after an import ended (CLUSTER design §2, steps 4-7). */
export type ArrivalResult =
  | {
      ok: true;
      children: ChildSa[];
      steps: ArrivalSteps;
      /** Child SAs of the connection not created: the peer is at its limit (childAdmissions). */
      childrenRefused?: number;
      /** SPIs a previous owner's arrival may have used, deleted at the peer (arrival-spi.ts). */
      orphanSpisDeleted?: number;
      /** Our Child SAs whose SPI is not one the handoff's draw names: all its choices were taken (arrival-spi.ts). */
      spiDrawMissed?: number[];
    }
  | { ok: false; step: 'path-test' | 'address-update' | 'child'; reason: string; steps: ArrivalSteps };

/** What the caller of completeArrival adds to the steps. */
export interface ArrivalOptions {
  /** The Child SAs a dead node had on this IKE SA (its inbound SPIs): the peer deletes them first. */
  staleChildSpis?: readonly number[];
  /** The peer's path never left this node: no address list, no UPDATE_SA_ADDRESSES to wait for. */
  peerStays?: boolean;
  /**
   * Our next `count` requests (every request of these steps) are about to
   * be sent one after the other: called once, before the path test, so the
   * cluster's fencing covers them with one write that runs while the first
   * of them go out if those are fenced already (a handoff's transaction
   * fences them), or holds the first until it is done. Without it each
   * request is held for its own write.
   */
  reserve?: (count: number) => Promise<unknown>;
  /**
   * The record's resyncThrough: the peer's next request ID lies between the
   * SA's nextRequestId and this; probes find it first (request-resync.ts).
   * No answer fails the arrival as a failed path test.
   */
  resyncThrough?: number;
  /**
   * One per Child SA of the connection, in its order: the verdict of an
   * exact admission against the peer's limit over the cluster (RFC 7791 §8),
   * started when the clone was imported so that it runs while the path test
   * and the peer's update do; each CREATE_CHILD_SA waits for its own only if
   * it is not in yet. Refused: that Child SA is not created (the clone stays
   * without it). Undefined (or a verdict of undefined): not asked, the
   * engine's own count decides.
   */
  childAdmissions?: readonly (Promise<ChildAdmissionVerdict | undefined> | undefined)[];
  /** The handoff's draw for our own Child SAs (this node is the one it names, arrival-spi.ts). */
  spiDraw?: ArrivalSpiDraw;
  /**
   * Previous owners' draws (they died, or restarted, during their arrival):
   * the SPIs each names are deleted at the peer with the stale Child SAs, if
   * the peer had processed that arrival's CREATE_CHILD_SA (arrival-spi.ts).
   */
  orphanDraws?: readonly ArrivalSpiDraw[];
}

/** An admission of a Child SA the arrival creates; `settle` says whether it came up (a slot whose SA did not goes back). */
export interface ChildAdmissionVerdict {
  admitted: boolean;
  settle?: (up: boolean) => void;
}

/** Our requests in steps 4-7: the path test (address list), the Delete of a dead node's Child SAs if any, one CREATE_CHILD_SA per Child SA of the connection. */
export function arrivalRequestCount(staleChildren: number, children: number): number {
  return 1 + (staleChildren > 0 ? 1 : 0) + children;
}

/**
 * Steps 4-7 on the importing node. Our address list (RFC 4555 §3.6: the IP
 * header source plus `addresses`, or NO_ADDITIONAL_ADDRESSES) is also the
 * path test from here and the return routability check of the peer's
 * address (an INFORMATIONAL with COOKIE2, §3.7, §3.8; the peer answers to
 * the source, RFC 7296 §2.11): unanswered, the path test failed and the peer
 * never saw a request from here if the path is down both ways. It withdraws
 * the old node's address from the peer's set; the MOBIKE initiator then
 * sends UPDATE_SA_ADDRESSES here (§3.5) from the address just verified, so
 * the SA moves at once (§3.7, no second check), and the connection's Child
 * SAs are created with fresh SPIs and keys (RFC 7296 §1.3.1), after the peer
 * deleted `staleChildSpis` (the Child SAs a dead node had on this IKE SA,
 * named by its inbound SPIs). A peer that stays (`peerStays`) gets a path
 * test of its own (empty but for COOKIE2) and no address list. Bounded by the
 * retransmission policy and by `timeoutMs` for the peer's update.
 */
export async function completeArrival(ctx: IkeContext, sa: IkeSa, addresses: readonly string[], timeoutMs: number, after: ArrivalOptions = {}): Promise<ArrivalResult> {
  const steps: ArrivalSteps = {};
  // The peer's next request ID before we send anything: found by the probes, or the record's.
  let peerExpected = sa.nextRequestId;
  let cachedChild = false;
  if (after.resyncThrough !== undefined) {
    // The record's range is fenced by the transaction that made us owner; nothing else leaves meanwhile.
    const found = await resyncRequestIds(ctx, sa, after.resyncThrough);
    if (!found.ok) return { ok: false, step: 'path-test', reason: `no answer to the message ID probes from this node: ${found.reason}`, steps };
    steps.resync = ctx.clock.now();
    peerExpected = found.lowest ?? peerExpected;
    cachedChild = found.orphanChildSpis.length > 0;
  }
  // The previous owner's CREATE_CHILD_SA reached the peer: the SPIs its Child SA may have go with the stale ones.
  const orphanSpis = (after.orphanDraws ?? []).filter((d) => peerExpected > d.firstRequestId || cachedChild).flatMap(arrivalSpiCandidates);
  const staleChildSpis = [...(after.staleChildSpis ?? []), ...orphanSpis];
  void after.reserve?.(arrivalRequestCount(staleChildSpis.length, sa.policy.children.length));
  if (after.peerStays) {
    const routable = await new Promise<boolean>((resolve) => ctx.queueExchange(sa, new RoutabilityCheckInitiator(ctx, resolve)));
    if (!routable) return { ok: false, step: 'path-test', reason: 'no answer to the path test from this node', steps };
    steps.pathTest = ctx.clock.now();
  } else {
    const update = await awaitPeerUpdate(ctx, sa, addresses, timeoutMs, steps);
    if (update) return update;
  }
  // Child SAs of this IKE SA that no node holds any more (their node died): the peer deletes them by
  // the SPIs that node received with (RFC 7296 §1.4.1, §3.11), before the new ones take their traffic.
  if (staleChildSpis.length > 0) {
    const answered = await new Promise<boolean>((resolve) => ctx.queueExchange(sa, new DeleteSpisInitiator([...staleChildSpis], resolve)));
    if (!answered) return { ok: false, step: 'child', reason: 'the peer did not answer the Delete of the old Child SAs', steps };
    steps.staleDeleted = ctx.clock.now();
  }
  // The previous owners' Child SAs are gone at the peer (or it never had them): our records drop their draws.
  sa.orphanSpis = undefined;
  const children: ChildSa[] = [];
  /** Our Child SAs whose SPI the draw does not name (all its choices were taken). */
  const missed: number[] = [];
  let childrenRefused = 0;
  for (const [i, child] of sa.policy.children.entries()) {
    // Started at import: in by now unless etcd is slower than the path test and the peer's update.
    const verdict = await after.childAdmissions?.[i];
    if (verdict && !verdict.admitted) {
      childrenRefused++;
      continue;
    }
    try {
      const spiRandom = after.spiDraw?.random[i];
      const created = await ctx.createChildSa(sa, child.name, spiRandom !== undefined ? { spiRandom } : {});
      children.push(created);
      const spi = created.spiIn;
      if (spiRandom !== undefined && !arrivalSpiChoices({ node: espSpiNode(spi), worker: espSpiWorker(spi) }, spiRandom).includes(spi)) missed.push(spi);
      verdict?.settle?.(true);
    } catch (err) {
      verdict?.settle?.(false);
      return { ok: false, step: 'child', reason: (err as Error).message, steps };
    }
  }
  steps.child = ctx.clock.now();
  // Our Child SAs are up (their SPIs go into our next record): the draw has served.
  sa.arrivalSpis = undefined;
  return {
    ok: true, children, steps,
    ...(childrenRefused > 0 && { childrenRefused }),
    ...(orphanSpis.length > 0 && { orphanSpisDeleted: orphanSpis.length }),
    ...(missed.length > 0 && { spiDrawMissed: missed }),
  };
}

/**
 * Steps 4-6: our address list (the path test, see completeArrival), then the
 * peer's UPDATE_SA_ADDRESSES; a failure result, or undefined once the SA
 * moved here.
 */
async function awaitPeerUpdate(ctx: IkeContext, sa: IkeSa, addresses: readonly string[], timeoutMs: number, steps: ArrivalSteps): Promise<ArrivalResult | undefined> {
  const target = sa.remote.address;
  let finish: (failed: ArrivalResult | undefined) => void = () => {};
  // The wait for the peer's update starts once the path test (the address list) is answered: until then
  // the retransmission policy bounds it, and its failure is the path test's.
  let timer: { cancel(): void } | undefined;
  let done = false;
  const moved = new Promise<ArrivalResult | undefined>((resolve) => {
    const onMoved = (m: IkeSa) => m === sa && finish(undefined);
    const onDown = (m: IkeSa) => m === sa && finish({ ok: false, step: 'address-update', reason: 'the IKE SA went down before the peer moved it here', steps });
    finish = (failed) => {
      done = true;
      timer?.cancel();
      ctx.off('ike-moved', onMoved);
      ctx.off('ike-down', onDown);
      resolve(failed);
    };
    ctx.on('ike-moved', onMoved);
    ctx.on('ike-down', onDown);
  });
  const answered = (ok: boolean) => {
    if (!ok) return finish({ ok: false, step: 'path-test', reason: 'no answer to the path test (our address list) from this node', steps });
    steps.pathTest = steps.addressList = ctx.clock.now();
    if (!done) timer = ctx.clock.schedule(timeoutMs, () => finish({ ok: false, step: 'address-update', reason: 'the peer did not move the IKE SA here (UPDATE_SA_ADDRESSES)', steps }));
    // §3.7: the peer echoed our COOKIE2 from the address it was sent to: verified, its update moves the SA at once.
    if (sa.remote.address === target) sa.verifiedAddresses.add(target);
  };
  ctx.queueExchange(sa, new AddressListInitiator(ctx, addresses.length > 0 ? addresses : [sa.local.address], answered));
  const failed = await moved;
  if (failed) return failed;
  steps.update = ctx.clock.now();
  return undefined;
}

/** What a new owner's record changes: fields, or fields computed from the record as it was. */
export type TransferAmendment =
  | Partial<Pick<TransferState, AmendedField>>
  | ((was: TransferState) => Partial<Pick<TransferState, AmendedField>>);
type AmendedField = 'nextRequestId' | 'peerStays' | 'resyncThrough' | 'fencedNextRequestId' | 'arrivalSpis' | 'orphanSpis';

/**
 * A record for another owner, with some of its state replaced (message IDs,
 * peerStays), the secrets carried over; never throws. Without a new
 * nextRequestId the new owner starts above every ID the previous one had
 * fenced (fencedNextRequestId and resyncThrough carry over only when the
 * patch sets them; a patch function sees the record as it was, for
 * request-resync.ts's marks). The caller wipes both buffers.
 */
export function amendTransferRecord(bytes: Uint8Array, patch: TransferAmendment): Result<Uint8Array, string> {
  const decoded = decodeTransferRecord(bytes);
  if (!decoded.ok) return decoded;
  const { fencedNextRequestId, resyncThrough: _range, ...state } = decoded.value.state;
  const nextRequestId = Math.max(state.nextRequestId, fencedNextRequestId ?? 0);
  const changes = typeof patch === 'function' ? patch(decoded.value.state) : patch;
  const amended = { ...state, nextRequestId, ...changes };
  const problem = stateProblem(amended);
  if (problem) {
    wipe(...MOVING_KEYS.map((k) => decoded.value.keys[k]));
    return { ok: false, error: problem };
  }
  const json = new TextEncoder().encode(JSON.stringify(amended));
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, json.length);
  const out = concatBytes(head, json, ...MOVING_KEYS.map((k) => decoded.value.keys[k]));
  wipe(...MOVING_KEYS.map((k) => decoded.value.keys[k]));
  return { ok: true, value: out };
}
