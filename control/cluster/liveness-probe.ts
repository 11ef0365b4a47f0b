// The liveness probe between cluster nodes (architecture §8): before a
// survivor revokes the lease of a member silent in etcd (silent-member.ts),
// it asks that member directly, on its cluster address, whether it is alive.
//
// Why: a member's heartbeat can be silent in etcd while the member is alive
// (its etcd client switching to another member after the leader died was
// seen silent for 3.5 s with a 3 s lease). Revoking a live node's lease costs
// it its clones until it joins again. A node that answers on its cluster
// address, under the cluster key, naming the lease its heartbeat was written
// under, is alive and keeps its lease.
//
// Wire format (one UDP datagram, fixed length PROBE_MESSAGE_LENGTH):
//
//   magic "IKLP" (4) | version (1) | type 1 ping / 2 pong (1) |
//   node name length (1) | node name, zero-padded (64) | nonce (16) |
//   lease ID, uint64 big-endian (8; 0 in a ping) | MAC (16)
//
// The node name is the sender's; the nonce is the prober's (16 random bytes,
// echoed in the pong); the lease ID is the responder's current lease. The MAC
// is HMAC-SHA-256 truncated to 16 bytes over everything before it, under a
// key derived from the cluster secret with HKDF and its own label (seal.ts
// ClusterKey.probeMac), never the sealing key. It is checked in constant
// time. Decoding is on untrusted bytes: it never throws, and whatever does
// not verify is dropped and counted by reason. A pong counts only for a ping
// still outstanding (its nonce), from the node pinged, naming the lease
// expected: a replayed or late pong finds no nonce, a pong of a node that
// joined again names another lease. Pings are answered at most
// PONG_BURST at once and PONGS_PER_SECOND on average (more: dropped
// unanswered, counted as refused), and a ping seen before (a replay) is
// dropped; nothing unauthenticated is answered at all. A probe's pings
// leave from a socket of their own connected to the target, so an ICMP port
// unreachable (the host is up, nothing listens: the gateway is gone) ends
// it at once as no answer instead of after PROBE_WAIT_MS.
//
// Owner: the main thread (the cluster node).
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import type { Result } from '../wire/result.js';
import type { LivenessProbeCounts } from '../status.js';
import { MAX_SPI_NODES } from '../../io/spi-layout.js';
import { RateLimiter } from '../../io/rate-limiter.js';

const MAGIC = Buffer.from('IKLP', 'ascii');
export const PROBE_VERSION = 1;
const TYPE_PING = 1;
const TYPE_PONG = 2;
/** NAME_RE (config/types.ts) allows names of up to 64 characters. */
const NAME_FIELD = 64;
export const PROBE_NONCE_LENGTH = 16;
const LEASE_LENGTH = 8;
const MAC_LENGTH = 16;
const NAME_OFFSET = 7;
const NONCE_OFFSET = NAME_OFFSET + NAME_FIELD;
const LEASE_OFFSET = NONCE_OFFSET + PROBE_NONCE_LENGTH;
const MAC_OFFSET = LEASE_OFFSET + LEASE_LENGTH;
export const PROBE_MESSAGE_LENGTH = MAC_OFFSET + MAC_LENGTH;

/** The default UDP port of the probe (cluster.probe_port), next to IKE's NAT-T port 4500. */
export const DEFAULT_PROBE_PORT = 4501;
/** Pings per probe, this far apart; the probe ends PROBE_WAIT_MS after it began. */
export const PINGS_PER_PROBE = 3;
export const PING_INTERVAL_MS = 50;
export const PROBE_WAIT_MS = 250;
/**
 * Pongs answered at once and per second: every other member may probe this
 * one in the same period (PINGS_PER_PROBE each), so the burst covers a full
 * cluster's probes; only pings under the cluster key count against it.
 */
export const PONG_BURST = MAX_SPI_NODES * PINGS_PER_PROBE;
export const PONGS_PER_SECOND = PONG_BURST;
/** Ping nonces remembered to drop replays (the newest this many). */
const SEEN_PINGS = 4096;

/** What computes the probe's MAC: the cluster key (seal.ts), and the MACs it accepts (its previous keys' too). */
export interface ProbeMacKey {
  probeMac(bytes: Uint8Array): Buffer;
  acceptedProbeMacs(bytes: Uint8Array): Buffer[];
}

export interface ProbeMessage {
  type: 'ping' | 'pong';
  /** The sender's node name. */
  node: string;
  nonce: Uint8Array;
  /** The responder's lease ID (decimal, as etcd3 writes it); '0' in a ping. */
  leaseId: string;
}

/** Why a datagram was dropped by decoding. */
export type ProbeDecodeDrop = 'badLength' | 'badMagic' | 'badVersion' | 'badMac' | 'malformed';
/** Why a datagram was dropped: decoding, or a verified message that answers nothing we asked or was seen before. */
export type ProbeDropReason = ProbeDecodeDrop | 'unknownNonce' | 'otherNode' | 'otherLease' | 'replayedPing';

function leaseBytes(leaseId: string): bigint {
  return /^\d{1,20}$/.test(leaseId) ? BigInt.asUintN(64, BigInt(leaseId)) : 0n;
}

/** One message, MAC included. The name is ours (configuration), so a name too long is a programming error. */
export function encodeProbe(key: ProbeMacKey, msg: ProbeMessage): Buffer {
  const name = Buffer.from(msg.node, 'utf8');
  if (name.length === 0 || name.length > NAME_FIELD) throw new RangeError(`a node name of 1 to ${NAME_FIELD} bytes, not ${name.length}`);
  if (msg.nonce.length !== PROBE_NONCE_LENGTH) throw new RangeError(`a nonce of ${PROBE_NONCE_LENGTH} bytes`);
  const out = Buffer.alloc(PROBE_MESSAGE_LENGTH);
  MAGIC.copy(out, 0);
  out[4] = PROBE_VERSION;
  out[5] = msg.type === 'ping' ? TYPE_PING : TYPE_PONG;
  out[6] = name.length;
  name.copy(out, NAME_OFFSET);
  out.set(msg.nonce, NONCE_OFFSET);
  out.writeBigUInt64BE(msg.type === 'ping' ? 0n : leaseBytes(msg.leaseId), LEASE_OFFSET);
  key.probeMac(out.subarray(0, MAC_OFFSET)).copy(out, MAC_OFFSET, 0, MAC_LENGTH);
  return out;
}

/** Decode untrusted bytes: never throws; the MAC is checked before any field past the version is read. */
export function decodeProbe(key: ProbeMacKey, bytes: Uint8Array): Result<ProbeMessage, ProbeDecodeDrop> {
  if (bytes.length !== PROBE_MESSAGE_LENGTH) return { ok: false, error: 'badLength' };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!b.subarray(0, 4).equals(MAGIC)) return { ok: false, error: 'badMagic' };
  if (b[4] !== PROBE_VERSION) return { ok: false, error: 'badVersion' };
  // Every accepted key is compared (in constant time each), so how many were tried tells nothing.
  const received = b.subarray(MAC_OFFSET);
  let macOk = false;
  for (const mac of key.acceptedProbeMacs(b.subarray(0, MAC_OFFSET))) if (timingSafeEqual(mac.subarray(0, MAC_LENGTH), received)) macOk = true;
  if (!macOk) return { ok: false, error: 'badMac' };
  const type = b[5];
  const nameLength = b[6]!;
  if ((type !== TYPE_PING && type !== TYPE_PONG) || nameLength === 0 || nameLength > NAME_FIELD) return { ok: false, error: 'malformed' };
  if (b.subarray(NAME_OFFSET + nameLength, NONCE_OFFSET).some((x) => x !== 0)) return { ok: false, error: 'malformed' };
  return {
    ok: true,
    value: {
      type: type === TYPE_PING ? 'ping' : 'pong',
      node: b.toString('utf8', NAME_OFFSET, NAME_OFFSET + nameLength),
      nonce: new Uint8Array(b.subarray(NONCE_OFFSET, LEASE_OFFSET)),
      leaseId: b.readBigUInt64BE(LEASE_OFFSET).toString(),
    },
  };
}

/** Where a member answers probes: the address and port its heartbeat announces. */
export interface ProbeTarget {
  address: string;
  port: number;
}

/**
 * 'answered': a valid pong from the member under the lease expected;
 * 'no-answer': none within PROBE_WAIT_MS, or an ICMP port unreachable;
 * 'not-probed': no ping could be sent (its address of the other IP family
 * than ours, no socket for the probe): decide nothing on it; 'closed': the
 * probe stopped first (decide nothing).
 */
export type ProbeOutcome = 'answered' | 'no-answer' | 'not-probed' | 'closed';

/** The counts `ikeclone status --json` shows (control/status.ts), every drop reason named. */
export interface LivenessProbeStats extends LivenessProbeCounts {
  drops: Record<ProbeDropReason, number>;
}

export interface LivenessProbeOptions {
  key: ProbeMacKey;
  /** Our node name (in our pings and pongs). */
  node: string;
  /** Our cluster address and the port to bind there (0: any free port, for tests). */
  address: string;
  port: number;
  /** Our lease now (named in our pongs). */
  leaseId: () => string;
  log: Logger;
  /** The answers' rate limit; absent: PONG_BURST, PONGS_PER_SECOND. */
  pongLimit?: { burst: number; perSecond: number };
  now?: () => number;
}

interface Pending {
  node: string;
  leaseId: string;
  nonces: string[];
  done: (outcome: ProbeOutcome) => void;
}

/** One UDP socket on the cluster address: answers others' pings and probes members. */
export class LivenessProbe {
  readonly stats: LivenessProbeStats = {
    pingsSent: 0,
    pongsSent: 0,
    answered: 0,
    unanswered: 0,
    unreachable: 0,
    refused: 0,
    sendErrors: 0,
    drops: { badLength: 0, badMagic: 0, badVersion: 0, badMac: 0, malformed: 0, unknownNonce: 0, otherNode: 0, otherLease: 0, replayedPing: 0 },
  };
  private socket: Socket | undefined;
  private bound: ProbeTarget | undefined;
  /** Outstanding pings by nonce (hex). */
  private readonly pending = new Map<string, Pending>();
  /** Probes under way. */
  private readonly probing = new Set<Pending>();
  private readonly seenPings = new Set<string>();
  private readonly limit: RateLimiter;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: LivenessProbeOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.limit = new RateLimiter(opts.pongLimit?.perSecond ?? PONGS_PER_SECOND, opts.pongLimit?.burst ?? PONG_BURST, this.now());
  }

  /** Bind on the cluster address; rejects (address in use, not ours) with the socket closed. */
  async bind(): Promise<ProbeTarget> {
    const socket = createSocket({ type: isIPv6(this.opts.address) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.opts.port, this.opts.address, () => {
        socket.off('error', reject);
        resolve();
      });
    }).catch((err: Error) => {
      socket.close();
      throw err;
    });
    // After binding, errors are per datagram (ICMP unreachable on some systems): counted, never fatal.
    socket.on('error', (err) => this.opts.log.debug({ reason: err.message }, 'liveness probe socket error'));
    socket.on('message', (msg, rinfo) => this.received(msg, rinfo.address, rinfo.port));
    this.socket = socket;
    this.bound = { address: this.opts.address, port: socket.address().port };
    return this.bound;
  }

  /** Where we answer (for our heartbeat), once bound. */
  get announced(): ProbeTarget | undefined {
    return this.bound;
  }

  /** Probes waiting for an answer now. */
  get outstanding(): number {
    return this.probing.size;
  }

  /**
   * Ask `node` at `target` whether it is alive under `leaseId`: PINGS_PER_PROBE
   * pings PING_INTERVAL_MS apart, each with its own nonce, from a socket of
   * their own on our cluster address connected to the target, so that an ICMP
   * port unreachable (nothing listens there: the gateway is gone) ends the
   * probe at once as no answer; answered at the first valid pong, else no
   * answer PROBE_WAIT_MS after the first ping.
   */
  probe(node: string, leaseId: string, target: ProbeTarget): Promise<ProbeOutcome> {
    if (!this.socket || this.closed) return Promise.resolve('closed');
    if (isIPv6(target.address) !== isIPv6(this.opts.address)) return Promise.resolve('not-probed');
    return new Promise<ProbeOutcome>((resolve) => {
      const socket = createSocket({ type: isIPv6(this.opts.address) ? 'udp6' : 'udp4' });
      const timers: NodeJS.Timeout[] = [];
      let sent = false;
      const p: Pending = {
        node,
        leaseId,
        nonces: [],
        done: (outcome) => {
          if (!this.probing.delete(p)) return;
          for (const t of timers) clearTimeout(t);
          for (const n of p.nonces) this.pending.delete(n);
          socket.close();
          if (outcome === 'answered') this.stats.answered++;
          else if (outcome === 'no-answer') this.stats.unanswered++;
          resolve(outcome);
        },
      };
      this.probing.add(p);
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') {
          this.stats.unreachable++;
          return p.done('no-answer');
        }
        this.stats.sendErrors++;
        // No socket to ping from (bind or connect failed): nothing was asked, so nothing is decided.
        if (!sent) p.done('not-probed');
      });
      socket.on('message', (msg) => this.received(msg, target.address, target.port, 'pong only'));
      const ping = () => {
        const nonce = randomBytes(PROBE_NONCE_LENGTH);
        p.nonces.push(nonce.toString('hex'));
        this.pending.set(nonce.toString('hex'), p);
        socket.send(encodeProbe(this.opts.key, { type: 'ping', node: this.opts.node, nonce, leaseId: '0' }), (err) => {
          if (err) this.stats.sendErrors++;
        });
        this.stats.pingsSent++;
      };
      socket.bind(0, this.opts.address, () => {
        socket.connect(target.port, target.address, () => {
          if (!this.probing.has(p)) return;
          sent = true;
          ping();
          for (let i = 1; i < PINGS_PER_PROBE; i++) timers.push(setTimeout(ping, i * PING_INTERVAL_MS));
          timers.push(setTimeout(() => p.done('no-answer'), PROBE_WAIT_MS));
        });
      });
    });
  }

  private drop(reason: ProbeDropReason): void {
    this.stats.drops[reason]++;
  }

  /** A datagram on our socket: untrusted, decoded, then a ping answered or a pong matched. */
  private received(bytes: Buffer, address: string, port: number, only?: 'pong only'): void {
    const d = decodeProbe(this.opts.key, bytes);
    if (!d.ok) return this.drop(d.error);
    const msg = d.value;
    const nonce = Buffer.from(msg.nonce).toString('hex');
    if (msg.type === 'pong') {
      const p = this.pending.get(nonce);
      if (!p) return this.drop('unknownNonce');
      if (msg.node !== p.node) return this.drop('otherNode');
      if (msg.leaseId !== p.leaseId) return this.drop('otherLease');
      return p.done('answered');
    }
    // A ping on a probe's own socket: not where we answer.
    if (only) return this.drop('unknownNonce');
    if (this.seenPings.has(nonce)) return this.drop('replayedPing');
    this.seenPings.add(nonce);
    if (this.seenPings.size > SEEN_PINGS) this.seenPings.delete(this.seenPings.values().next().value!);
    if (!this.limit.take(this.now())) {
      this.stats.refused++;
      return;
    }
    this.socket?.send(encodeProbe(this.opts.key, { type: 'pong', node: this.opts.node, nonce: msg.nonce, leaseId: this.opts.leaseId() }), port, address, (err) => {
      if (err) this.stats.sendErrors++;
    });
    this.stats.pongsSent++;
  }

  /** Close the socket; probes still waiting end as 'closed'. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.probing]) p.done('closed');
    this.socket?.close();
    this.socket = undefined;
  }
}
