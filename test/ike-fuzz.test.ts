// Engine-level fuzzing (architecture §4.3, §7): mutated copies of valid datagrams of
// every exchange — IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, and
// the COOKIE / INVALID_KE_PAYLOAD / AUTHENTICATION_FAILED answers — go into
// both engines' receive() at several points of a session. Nothing may throw
// or log an internal error, and nothing unauthenticated may change an SA:
// the same SAs (SPIs), states, message IDs and Child SAs, unless the mutant is
// byte-identical to a valid message. Mutated IKE_SA_INIT requests may create
// half-open responder SAs (that is their nature, RFC 7296 §2.6), bounded by
// halfOpenMax and 'connecting'; and before IKE_SA_INIT has completed, the
// initiator's SA is unauthenticated too and may follow a forged response.
import { describe, expect, it } from 'vitest';
import { MemoryWire, pskPair, esp, child } from './support/peers.js';
import type { IkeEngine, IkeEngineOptions } from '../control/ike/engine.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import { spi64Hex } from '../control/ike/ike-sa.js';
import type { Datagram } from '../control/ike/transport.js';
import { silentLogger } from '../control/log.js';
import type { Logger } from '../control/log.js';
import { ExchangeType, HeaderFlag, PayloadType } from '../control/wire/constants.js';
import { HEADER, concat, mutate, mutateOnce, outerPayloads, prng, type Rng } from '../fuzz/mutate.js';

/** `p` once the wire has gone quiet: settled by then, or the test fails at once instead of hanging. */
function settled<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet'))))]);
}

// ------------------------------------------------------------ the session

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

interface Peers {
  wire: MemoryWire;
  alice: IkeEngine;
  bob: IkeEngine;
  errors: string[];
  pending: Promise<unknown>[];
  sa?: IkeSa;
}

/**
 * Small limits, so that mutated IKE_SA_INIT requests meet the COOKIE demand
 * (Alice: from the second half-open SA on) and the half-open limit (Bob: past
 * three, before any cookie is asked for).
 */
const ALICE_LIMITS = { halfOpenCookieThreshold: 1, halfOpenMax: 4 };
const BOB_LIMITS = { halfOpenCookieThreshold: 8, halfOpenMax: 3 };

/** A logger whose error and fatal calls are collected: each one means an engine bug. */
function spyLogger(errors: string[], who: string): Logger {
  const log = silentLogger();
  const record = (level: string) => (...args: unknown[]) => void errors.push(`${who} ${level}: ${JSON.stringify(args)}`);
  (log as unknown as Record<string, unknown>).error = record('error');
  (log as unknown as Record<string, unknown>).fatal = record('fatal');
  return log;
}

function peers(over: Parameters<typeof pskPair>[0] = {}, opts: { bob?: Partial<IkeEngineOptions> } = {}): Peers {
  const errors: string[] = [];
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({
    ...over,
    initiator: { children: [child('net', '10.1.0.0/24', '10.2.0.0/24', esp('aes128gcm16-x25519'))], ...over.initiator },
    responder: { children: [child('net', '10.2.0.0/24', '10.1.0.0/24', esp('aes128gcm16-x25519'))], ...over.responder },
  });
  const alice = wire.engine('10.0.0.1', [initiator], { limits: ALICE_LIMITS, log: spyLogger(errors, 'alice') });
  const bob = wire.engine('10.0.0.2', [responder], { limits: BOB_LIMITS, log: spyLogger(errors, 'bob'), ...opts.bob });
  return { wire, alice, bob, errors, pending: [] };
}

/** The session, one exchange per step; every step's datagrams are recorded. */
const STEPS: Array<[name: string, start: (p: Peers) => void]> = [
  ['IKE_SA_INIT + IKE_AUTH', (p) => p.pending.push(p.alice.initiate('to-bob').then((sa) => (p.sa = sa)))],
  ['CREATE_CHILD_SA with PFS', (p) => p.pending.push(p.alice.createChildSa(p.sa!, 'net', { pfs: true }))],
  ['INFORMATIONAL liveness (initiator)', (p) => p.pending.push(p.alice.checkLiveness(p.sa!))],
  ['INFORMATIONAL liveness (responder)', (p) => p.pending.push(p.bob.checkLiveness(p.bob.ikeSas()[0]!))],
  ['INFORMATIONAL delete Child SA', (p) => p.pending.push(p.alice.closeChildSa(p.sa!.children[0]!))],
  ['INFORMATIONAL delete IKE SA', (p) => p.pending.push(p.alice.closeIkeSa(p.sa!))],
];

/**
 * Where the fuzzing happens: after `done` whole steps, step `done` started and
 * `delivered` of its datagrams delivered; the next one is lost (kept as `next`).
 * Seeded random sources and the manual clock make this the recorded session's state.
 */
interface Checkpoint {
  name: string;
  done: number;
  delivered: number;
  /** The initiator's SA is still unauthenticated (before the IKE_SA_INIT response). */
  initUnauthenticated?: boolean;
}

const CHECKPOINTS: Checkpoint[] = [
  { name: 'IKE_SA_INIT request in flight', done: 0, delivered: 0, initUnauthenticated: true },
  { name: 'IKE_AUTH request in flight', done: 0, delivered: 2 },
  { name: 'CREATE_CHILD_SA request in flight', done: 1, delivered: 0 },
  { name: 'INFORMATIONAL request in flight', done: 2, delivered: 0 },
  { name: 'responder-initiated INFORMATIONAL in flight', done: 3, delivered: 0 },
  { name: 'Delete (Child SA) response in flight', done: 4, delivered: 1 },
  { name: 'Delete (IKE SA) request in flight', done: 5, delivered: 0 },
];

async function build(cp: Checkpoint): Promise<Peers & { next: Datagram | undefined }> {
  const p = peers();
  for (let i = 0; i < cp.done; i++) {
    STEPS[i]![1](p);
    p.wire.run(100);
    await settled(Promise.all(p.pending.splice(0)));
  }
  STEPS[cp.done]![1](p);
  for (const pr of p.pending.splice(0)) pr.catch(() => {});
  for (let i = 0; i < cp.delivered; i++) {
    const d = p.wire.queue.shift()!;
    p.wire.engines.get(d.remote.address)!.receive({ bytes: d.bytes, local: d.remote, remote: d.local });
  }
  const next = p.wire.queue.shift();
  p.wire.queue.length = 0;
  return { ...p, next };
}

/** Record every datagram of the full session, and of sessions that end in the other answers. */
async function recordCorpus(): Promise<Datagram[]> {
  const corpus: Datagram[] = [];
  const keep = (wire: MemoryWire) => corpus.push(...wire.log.map((d) => ({ ...d, bytes: new Uint8Array(d.bytes) })));

  const full = peers();
  for (const [, start] of STEPS) {
    start(full);
    full.wire.run(100);
    await settled(Promise.all(full.pending.splice(0)));
  }
  expect(full.errors).toEqual([]);
  keep(full.wire);

  // COOKIE challenge and the retry with N(COOKIE) (RFC 7296 §2.6).
  const cookie = peers({}, { bob: { limits: { ...BOB_LIMITS, halfOpenCookieThreshold: 0 } } });
  const c = cookie.alice.initiate('to-bob');
  cookie.wire.run(100);
  await settled(c);
  keep(cookie.wire);

  // INVALID_KE_PAYLOAD in IKE_SA_INIT (§1.2).
  const { ike } = await import('./support/peers.js');
  const ke = peers({ initiator: { ike: ike('aes256gcm16-prfsha256-x25519-ecp256') }, responder: { ike: ike('aes256gcm16-prfsha256-ecp256') } });
  const k = ke.alice.initiate('to-bob');
  ke.wire.run(100);
  await settled(k);
  keep(ke.wire);

  // AUTHENTICATION_FAILED in IKE_AUTH, and NO_PROPOSAL_CHOSEN in CREATE_CHILD_SA.
  const bad = peers({ initiator: { localAuth: { method: 'psk', psk: new TextEncoder().encode('not the key bob knows') } } });
  const b = bad.alice.initiate('to-bob');
  b.catch(() => {});
  bad.wire.run(100);
  await expect(settled(b)).rejects.toThrow(/AUTHENTICATION_FAILED/);
  keep(bad.wire);

  const nopc = peers();
  const n = nopc.alice.initiate('to-bob');
  nopc.wire.run(100);
  const nsa = await settled(n);
  nsa.policy.children.push(child('strong', '10.1.0.0/24', '10.2.0.0/24', esp('aes256gcm16')));
  const refused = nopc.alice.createChildSa(nsa, 'strong', { pfs: false });
  refused.catch(() => {});
  nopc.wire.run(100);
  await expect(settled(refused)).rejects.toThrow(/NO_PROPOSAL_CHOSEN/);
  keep(nopc.wire);
  return corpus;
}

// ------------------------------------------------------------ state snapshots

function saState(sa: IkeSa) {
  return {
    spi: `${spi64Hex(sa.spiI)}/${spi64Hex(sa.spiR)}`,
    role: sa.role,
    state: sa.state,
    nextRequestId: sa.nextRequestId,
    peerRequestId: sa.peerRequestId,
    outstanding: sa.outstanding ? `${sa.outstanding.exchange.name}#${sa.outstanding.messageId}/${sa.outstanding.tries}` : '',
    queued: sa.queue.map((q) => q.name).join(','),
    lastResponse: sa.lastResponse?.messageId ?? -1,
    children: sa.children.map((c) => `${c.spiIn}/${c.spiOut}/${c.state}`).join(','),
    keyed: sa.keys !== undefined,
    path: `${sa.local.address}:${sa.local.port}>${sa.remote.address}:${sa.remote.port}`,
    peer: sa.peerKey ?? '',
  };
}

function snapshot(e: IkeEngine, baselineSpis?: Set<string>) {
  const sas = [...e.sas.entries()]
    .filter(([k]) => !baselineSpis || baselineSpis.has(k))
    .map(([k, sa]) => ({ key: k, ...saState(sa) }))
    .sort((a, b) => a.key.localeCompare(b.key));
  return JSON.stringify({ sas, children: [...e.childrenBySpi.keys()].sort(), reserved: [...e.reservedSpis].sort() });
}

// ------------------------------------------------------------------- the test

describe('engine fuzzing: mutated datagrams of every exchange (architecture §4.3)', () => {
  it('>= 20,000 mutants into both engines: nothing throws, nothing unauthenticated changes state', async () => {
    const started = performance.now();
    const corpus = await recordCorpus();
    const valid = new Set(corpus.map((d) => hex(d.bytes)));
    const exchanges = new Set(corpus.map((d) => `${d.bytes[18]}${d.bytes[19]! & HeaderFlag.RESPONSE ? 'r' : 'q'}`));
    // Requests and responses of all four exchanges are in the corpus.
    for (const x of ['34q', '34r', '35q', '35r', '36q', '36r', '37q', '37r']) expect(exchanges).toContain(x);

    // Each exchange and direction equally often; IKE_SA_INIT, parsed before any key exists, twice as often.
    const classes = new Map<string, Datagram[]>();
    for (const d of corpus) {
      const key = `${d.bytes[18]}${d.bytes[19]! & HeaderFlag.RESPONSE ? 'r' : 'q'}`;
      classes.set(key, [...(classes.get(key) ?? []), d]);
      if (d.bytes[18] === ExchangeType.IKE_SA_INIT) classes.set(`${key}+`, [...(classes.get(`${key}+`) ?? []), d]);
    }
    const classList = [...classes.values()];
    const pickSource = (r: Rng) => r.pick(r.pick(classList));
    const rng = prng(0x1ce_c10e);
    const mutatorCounts = new Map<string, number>();
    const drops: Record<string, number> = {};
    const perCheckpoint: Array<{ name: string; mutants: number; rebuilds: number; halfOpenSeen: number; initFollowed: number; initKilled: number; ms: number }> = [];
    let total = 0;
    let identical = 0;
    let halfOpenCreated = 0;
    const MUTANTS_PER_CHECKPOINT = 3000;

    for (const cp of CHECKPOINTS) {
      const t0 = performance.now();
      let p = await build(cp);
      // The checkpoint is the recorded session's state: the lost datagram is one of the corpus.
      expect(p.next, cp.name).toBeDefined();
      expect(valid.has(hex(p.next!.bytes)), cp.name).toBe(true);
      let stats = { rebuilds: 0, halfOpenSeen: 0, initFollowed: 0, initKilled: 0 };

      const baseline = () => ({
        aliceSpis: new Set(p.alice.sas.keys()),
        bobSpis: new Set(p.bob.sas.keys()),
        alice: snapshot(p.alice),
        bob: snapshot(p.bob),
      });
      let base = baseline();

      // Sanity: the datagram lost at the checkpoint, delivered unmutated, is processed
      // (so the mutants below are aimed at live keys and message IDs).
      {
        const d = p.next!;
        const target = p.wire.engines.get(d.remote.address)!;
        const before = snapshot(target);
        target.receive({ bytes: d.bytes, local: d.remote, remote: d.local });
        expect(snapshot(target), `${cp.name}: the unmutated datagram changes state`).not.toBe(before);
        p = await build(cp);
        base = baseline();
      }

      for (let i = 0; i < MUTANTS_PER_CHECKPOINT; i++) {
        const src = pickSource(rng);
        const bytes = mutate(src.bytes, rng, mutatorCounts);
        // Mostly to the engine it was addressed to; sometimes to the other one, or from elsewhere.
        const toOther = rng.next() < 0.2;
        const targetAddr = toOther ? (src.remote.address === '10.0.0.1' ? '10.0.0.2' : '10.0.0.1') : src.remote.address;
        const fromAddr = rng.next() < 0.05 ? '10.0.0.9' : toOther ? targetAddr === '10.0.0.1' ? '10.0.0.2' : '10.0.0.1' : src.local.address;
        const port = rng.next() < 0.1 ? rng.pick([500, 4500, 1024]) : src.local.port;
        const target = p.wire.engines.get(targetAddr)!;
        const d: Datagram = { bytes, local: { address: targetAddr, port: src.remote.port }, remote: { address: fromAddr, port } };
        total++;
        const dropsBefore = { ...target.stats.drops };
        try {
          target.receive(d);
        } catch (err) {
          throw new Error(`${cp.name}: receive threw on mutant ${hex(bytes)}: ${String(err)}`);
        }
        p.wire.queue.length = 0; // answers to forged input go nowhere
        for (const [k, v] of Object.entries(target.stats.drops)) drops[k] = (drops[k] ?? 0) + v - (dropsBefore[k] ?? 0);
        if (p.errors.length > 0) throw new Error(`${cp.name}: engine logged an error for mutant ${hex(bytes)}: ${p.errors.join('; ')}`);

        if (valid.has(hex(bytes))) {
          // A valid message may change state: start again from the checkpoint.
          identical++;
          p = await build(cp);
          base = baseline();
          stats.rebuilds++;
          continue;
        }

        for (const [name, e, spis, snap] of [
          ['alice', p.alice, base.aliceSpis, base.alice],
          ['bob', p.bob, base.bobSpis, base.bob],
        ] as const) {
          // New SAs: only half-open responder SAs, bounded.
          const added = [...e.sas.entries()].filter(([k]) => !spis.has(k)).map(([, sa]) => sa);
          for (const sa of added) {
            expect(sa.role, `${cp.name}: ${name} created an SA from ${hex(bytes)}`).toBe('responder');
            expect(sa.state).toBe('connecting');
          }
          expect(e.halfOpenCount()).toBeLessThanOrEqual(e.limits.halfOpenMax);
          const now = snapshot(e, spis);
          if (now === snap) continue;
          if (cp.initUnauthenticated && name === 'alice') {
            // A forged IKE_SA_INIT response before the real one: unauthenticated by nature (§2.21.1).
            if (p.alice.sas.size < base.aliceSpis.size) stats.initKilled++;
            else stats.initFollowed++;
            p = await build(cp);
            base = baseline();
            stats.rebuilds++;
            break;
          }
          expect(now, `${cp.name}: ${name} state changed by mutant ${hex(bytes)} of ${hex(src.bytes)}`).toBe(snap);
        }
        // Forget half-open SAs now and then so that IKE_SA_INIT mutants keep reaching the parser.
        const halfOpen = [p.alice, p.bob].flatMap((e) => [...e.sas.entries()].filter(([k]) => !(e === p.alice ? base.aliceSpis : base.bobSpis).has(k)).map(([, sa]) => [e, sa] as const));
        stats.halfOpenSeen = Math.max(stats.halfOpenSeen, halfOpen.length);
        if (i % 500 === 499) {
          for (const [e, sa] of halfOpen) e.deleteIkeSa(sa, 'fuzz: forget half-open');
          halfOpenCreated += halfOpen.length;
        }
      }
      perCheckpoint.push({ name: cp.name, mutants: MUTANTS_PER_CHECKPOINT, ...stats, ms: Math.round(performance.now() - t0) });
      stats = { rebuilds: 0, halfOpenSeen: 0, initFollowed: 0, initKilled: 0 };
    }

    const elapsed = performance.now() - started;
    console.log(`fuzz: ${total} mutants in ${Math.round(elapsed)} ms, ${identical} valid, ${halfOpenCreated} half-open SAs; drops ${JSON.stringify(drops)}`);
    for (const c of perCheckpoint) console.log(`  ${c.name}: ${c.ms} ms, ${c.rebuilds} rebuilds, forged IKE_SA_INIT responses followed ${c.initFollowed} / fatal ${c.initKilled}`);
    expect(total).toBeGreaterThanOrEqual(20_000);
    // The mutants reached every layer: the decoder, the SA lookup, message IDs, decryption,
    // the IKE_SA_INIT responder (state kept, cookies demanded, the limit enforced).
    for (const reason of ['malformed', 'unknown-spi', 'unexpected-response', 'message-id', 'decrypt', 'cookie', 'half-open-limit']) {
      expect(drops[reason] ?? 0, reason).toBeGreaterThan(0);
    }
    expect(halfOpenCreated).toBeGreaterThan(0);
  });
});

// ------------------------------------------- authenticated but malformed content

interface Template {
  exchangeType: number;
  response: boolean;
  /** Sent by the original initiator (Alice). */
  fromInitiator: boolean;
  innerType: number;
  plain: Uint8Array;
}

/** The decrypted inner payload chains of every encrypted message of the session (RFC 7296 §3.14). */
async function recordTemplates(): Promise<Template[]> {
  const { decodeMessage, encodePayloadChain } = await import('../control/wire/message.js');
  const { openMessage } = await import('../control/ike/protect.js');
  const templates: Template[] = [];
  const p = peers();
  p.wire.filter = (d) => {
    if (d.bytes[18] === ExchangeType.IKE_SA_INIT) return 'pass';
    const msg = decodeMessage(d.bytes);
    if (!msg.ok) throw new Error('undecodable session message');
    const h = msg.value.header;
    const fromInitiator = (h.flags & HeaderFlag.INITIATOR) !== 0;
    const receiver = p.wire.engines.get(d.remote.address)!;
    const sa = receiver.sas.get(spi64Hex(fromInitiator ? h.spiR : h.spiI));
    const opened = sa ? openMessage(sa, msg.value) : undefined;
    if (!opened?.ok) throw new Error('session message does not open');
    const chain = encodePayloadChain(opened.value);
    templates.push({ exchangeType: h.exchangeType, response: (h.flags & HeaderFlag.RESPONSE) !== 0, fromInitiator, innerType: chain.firstType, plain: chain.bytes });
    return 'pass';
  };
  for (const [, start] of STEPS) {
    start(p);
    p.wire.run(100);
    await settled(Promise.all(p.pending.splice(0)));
  }
  return templates;
}

/** Seal `plain` as `sender` would (RFC 7296 §3.14): an authenticated message with arbitrary content. */
async function forger() {
  const { encodeSkMessage } = await import('../control/wire/message.js');
  const { IKE_VERSION } = await import('../control/wire/constants.js');
  return (sender: IkeSa, exchangeType: number, messageId: number, response: boolean, innerType: number, plain: Uint8Array): Uint8Array => {
    const protector = sender.protectOut!;
    const header = {
      spiI: sender.spiI,
      spiR: sender.spiR,
      version: IKE_VERSION,
      exchangeType,
      flags: (sender.isInitiator ? HeaderFlag.INITIATOR : 0) | (response ? HeaderFlag.RESPONSE : 0),
      messageId,
    };
    return encodeSkMessage(header, innerType, protector.bodyLength(plain.length), (aad) => protector.seal(aad, plain));
  };
}

/** Mutate an inner chain with the same mutators, behind a dummy header whose Next Payload is the first inner type. */
function mutateInner(t: { innerType: number; plain: Uint8Array }, r: Rng, counts: Map<string, number>, donors: Template[]): { innerType: number; plain: Uint8Array } {
  let b = concat(new Uint8Array(HEADER), t.plain);
  b[16] = t.innerType;
  if (r.next() < 0.15) {
    // Transplant a payload of another exchange (a Delete into CREATE_CHILD_SA, a REKEY_SA notify, ...).
    const donor = r.pick(donors);
    const db = concat(new Uint8Array(HEADER), donor.plain);
    db[16] = donor.innerType;
    const dp = outerPayloads(db);
    if (dp.length > 0) {
      const piece = r.pick(dp);
      const copy = new Uint8Array(db.subarray(piece.off, piece.off + piece.len));
      copy[0] = b[16]!;
      b = concat(b.subarray(0, HEADER), copy, b.subarray(HEADER));
      b[16] = piece.type;
      counts.set('transplant', (counts.get('transplant') ?? 0) + 1);
    }
  }
  b = mutateOnce(b, r, counts);
  if (b.length < HEADER) return { innerType: b[16] ?? 0, plain: new Uint8Array(0) };
  return { innerType: b[16]!, plain: b.slice(HEADER) };
}

/** Invariants that hold whatever an authenticated peer sends. */
function checkConsistency(e: IkeEngine, where: string): void {
  const live = new Set(e.sas.values());
  let children = 0;
  let offers = 0;
  for (const sa of live) {
    expect(['connecting', 'authenticating', 'established', 'deleting'], where).toContain(sa.state);
    if (sa.state === 'established') expect(sa.keys, where).toBeDefined();
    for (const c of sa.children) {
      children++;
      expect(e.childrenBySpi.get(c.spiIn), `${where}: child ${c.spiIn} not indexed`).toBe(c);
      expect(c.ike, where).toBe(sa);
    }
    const out = sa.outstanding?.exchange.exchangeType;
    if (out === ExchangeType.CREATE_CHILD_SA || out === ExchangeType.IKE_AUTH) offers++;
  }
  expect(e.childrenBySpi.size, `${where}: stale childrenBySpi entries`).toBe(children);
  expect(e.reservedSpis.size, `${where}: reserved SPIs without an offer in flight`).toBeLessThanOrEqual(offers);
  expect(e.halfOpenCount(), where).toBeLessThanOrEqual(e.limits.halfOpenMax);
}

describe('engine fuzzing: authenticated messages with malformed content (RFC 7296 §2.21.3)', () => {
  it('mutated inner payloads sealed with the peer keys, in every exchange: nothing throws, the tables stay consistent', async () => {
    const started = performance.now();
    const templates = await recordTemplates();
    const forge = await forger();
    const kinds = new Set(templates.map((t) => `${t.exchangeType}${t.response ? 'r' : 'q'}`));
    for (const x of ['35q', '35r', '36q', '36r', '37q', '37r']) expect(kinds).toContain(x);
    const rng = prng(0x5eed_0a17);
    const counts = new Map<string, number>();
    const outcomes: Record<string, number> = {};
    const note = (k: string) => void (outcomes[k] = (outcomes[k] ?? 0) + 1);
    const requestsFrom = (fromInitiator: boolean) => templates.filter((t) => !t.response && t.exchangeType !== ExchangeType.IKE_AUTH && (t.fromInitiator === fromInitiator || rng.next() < 0.3));
    const responsesTo = (exchangeType: number) => templates.filter((t) => t.response && t.exchangeType === exchangeType);
    let total = 0;

    // 1. IKE_AUTH: Bob half-open, Alice's IKE_AUTH in flight. The AUTH payload covers
    //    the ID only, so most mutants still authenticate and reach the Child SA, CP
    //    and notify handling of both halves. Each mutant consumes the exchange: rebuild.
    const authRequest = templates.find((t) => t.exchangeType === ExchangeType.IKE_AUTH && !t.response)!;
    const authResponse = templates.find((t) => t.exchangeType === ExchangeType.IKE_AUTH && t.response)!;
    for (let i = 0; i < 400; i++) {
      const p = await build(CHECKPOINTS[1]!);
      const sa = p.alice.ikeSas()[0]!;
      const peerSa = p.bob.ikeSas()[0]!;
      // Both forged before either is delivered: Bob's SA may die of the request.
      const q = mutateInner(authRequest, rng, counts, templates);
      const request = forge(sa, ExchangeType.IKE_AUTH, 1, false, q.innerType, q.plain);
      const r = mutateInner(authResponse, rng, counts, templates);
      const response = forge(peerSa, ExchangeType.IKE_AUTH, 1, true, r.innerType, r.plain);
      p.bob.receive({ bytes: request, local: { address: '10.0.0.2', port: 4500 }, remote: { address: '10.0.0.1', port: 4500 } });
      note(`IKE_AUTH request -> responder ${peerSa.state}`);
      p.alice.receive({ bytes: response, local: { address: '10.0.0.1', port: 4500 }, remote: { address: '10.0.0.2', port: 4500 } });
      note(`IKE_AUTH response -> initiator ${sa.state}`);
      total += 2;
      p.wire.queue.length = 0;
      expect(p.errors, 'IKE_AUTH').toEqual([]);
      checkConsistency(p.alice, 'IKE_AUTH alice');
      checkConsistency(p.bob, 'IKE_AUTH bob');
    }

    // 2. Established: requests both ways and responses to requests in flight.
    let p = await build({ name: 'established', done: 1, delivered: 0 });
    let rebuilds = 0;
    for (let i = 0; i < 4000; i++) {
      let sa = p.sa!;
      let peerSa = p.bob.ikeSas().find((s) => s.role === 'responder' && s.state !== 'connecting');
      if (sa.state === 'dead' || !peerSa || !p.alice.sas.has(spi64Hex(sa.spiI))) {
        p = await build({ name: 'established', done: 1, delivered: 0 });
        rebuilds++;
        sa = p.sa!;
        peerSa = p.bob.ikeSas()[0]!;
      }
      const ends = { alice: { e: p.alice, sa, other: peerSa }, bob: { e: p.bob, sa: peerSa, other: sa } };
      const to = rng.next() < 0.5 ? ends.alice : ends.bob;
      const isAlice = to === ends.alice;
      const mode = rng.next() < 0.55 ? 'request' : 'response';
      let bytes: Uint8Array;
      if (mode === 'request') {
        // CREATE_CHILD_SA (proposals, KE, selectors) half the time: it has the most to parse.
        const createChild = templates.find((x) => x.exchangeType === ExchangeType.CREATE_CHILD_SA && !x.response)!;
        const t = rng.next() < 0.5 ? createChild : rng.pick(requestsFrom(!isAlice));
        const m = mutateInner(t, rng, counts, templates);
        const type = rng.next() < 0.1 ? rng.pick([ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL, 38, 43]) : t.exchangeType;
        bytes = forge(to.other, type, to.sa.peerRequestId, false, m.innerType, m.plain);
        note(`request ${type} -> ${isAlice ? 'alice' : 'bob'}`);
      } else {
        if (!to.sa.outstanding) {
          const start = rng.int(3);
          const pr =
            start === 0 ? to.e.checkLiveness(to.sa) : start === 1 ? to.e.createChildSa(to.sa, 'net', { pfs: rng.next() < 0.5 }) : to.sa.children[0] ? to.e.closeChildSa(to.sa.children[0]) : to.e.checkLiveness(to.sa);
          pr.catch(() => {});
          p.wire.queue.length = 0;
        }
        const out = to.sa.outstanding;
        if (!out) continue;
        const candidates = responsesTo(out.exchange.exchangeType);
        const t = rng.pick(candidates.length > 0 && rng.next() < 0.85 ? candidates : templates.filter((x) => x.response));
        const m = mutateInner(t, rng, counts, templates);
        bytes = forge(to.other, out.exchange.exchangeType, out.messageId, true, m.innerType, m.plain);
        note(`response ${out.exchange.name} -> ${isAlice ? 'alice' : 'bob'}`);
      }
      const peerIdBefore = to.sa.peerRequestId;
      const nextIdBefore = to.sa.nextRequestId;
      to.e.receive({ bytes, local: { ...to.sa.local }, remote: { ...to.sa.remote } });
      p.wire.queue.length = 0;
      total++;
      expect(p.errors, `mutant ${hex(bytes)}`).toEqual([]);
      expect(to.sa.peerRequestId - peerIdBefore).toBeGreaterThanOrEqual(0);
      expect(to.sa.peerRequestId - peerIdBefore).toBeLessThanOrEqual(1);
      expect(to.sa.nextRequestId).toBeGreaterThanOrEqual(nextIdBefore);
      checkConsistency(p.alice, `alice after ${hex(bytes)}`);
      checkConsistency(p.bob, `bob after ${hex(bytes)}`);
    }
    const elapsed = performance.now() - started;
    console.log(`authenticated fuzz: ${total} mutants in ${Math.round(elapsed)} ms, ${rebuilds} rebuilds; ${JSON.stringify(outcomes)}`);
    expect(total).toBeGreaterThanOrEqual(4000);
  });
});
