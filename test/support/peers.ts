// Two (or more) IKE engines wired together in memory: no sockets, a manual
// clock, and a seeded random source, so exchanges and their failure paths run
// deterministically. The wire can drop, duplicate, reorder or tamper with
// datagrams on their way.
import { createHash } from 'node:crypto';
import { IkeEngine } from '../../control/ike/engine.js';
import type { IkeEngineOptions } from '../../control/ike/engine.js';
import { ManualClock } from '../../control/ike/clock.js';
import type { ConnectionPolicy, ChildPolicy } from '../../control/ike/policy.js';
import type { Datagram } from '../../control/ike/transport.js';
import { parseEspProposal, parseIkeProposal } from '../../control/config/proposal.js';
import { parseIdentity } from '../../control/ike/identity.js';
import type { Identity } from '../../control/ike/identity.js';
import type { RandomSource } from '../../control/crypto/random.js';
import { cidrToRange } from '../../control/wire/ip.js';
import { bytesToIp } from '../../control/wire/ip.js';

/** A deterministic random source (SHA-256 in counter mode over a seed). */
export function seededRandom(seed: string): RandomSource {
  let counter = 0;
  return (length: number) => {
    const out = new Uint8Array(length);
    let off = 0;
    while (off < length) {
      const block = createHash('sha256').update(`${seed}/${counter++}`).digest();
      const n = Math.min(block.length, length - off);
      out.set(block.subarray(0, n), off);
      off += n;
    }
    return out;
  };
}

export function ike(...s: string[]) {
  return s.map((p) => {
    const r = parseIkeProposal(p);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  });
}

export function esp(...s: string[]) {
  return s.map((p) => {
    const r = parseEspProposal(p);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  });
}

export function id(s: string): Identity {
  const r = parseIdentity(s);
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

export function ts(cidr: string) {
  const r = cidrToRange(cidr);
  if (!r) throw new Error(`bad cidr ${cidr}`);
  return { start: bytesToIp(r.start), end: bytesToIp(r.end), protocol: 0, startPort: 0, endPort: 65535 };
}

export const PSK = new TextEncoder().encode('a pre-shared key of decent length');

export function child(name: string, local: string, remote: string, proposals = esp('aes128gcm16')): ChildPolicy {
  return { name, localTs: [ts(local)], remoteTs: [ts(remote)], esp: proposals, replayWindow: 1024, startAction: 'none' };
}

/** A PSK connection between 10.0.0.1 ("alice", initiator) and 10.0.0.2 ("bob"). */
export function pskPair(over: { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> } = {}) {
  const initiator: ConnectionPolicy = {
    name: 'to-bob',
    localAddrs: ['10.0.0.1'],
    remoteAddrs: ['10.0.0.2'],
    remotePort: 500,
    ike: ike('aes256gcm16-prfsha256-x25519'),
    localId: id('alice@example.org'),
    remoteId: id('bob.example.org'),
    localAuth: { method: 'psk', psk: PSK },
    remoteAuth: { method: 'psk', psk: PSK },
    mobike: true,
    cloneSupport: true,
    requestVirtualIp: false,
    pools: [],
    children: [child('net', '10.1.0.0/24', '10.2.0.0/24')],
    startAction: 'none',
    ...over.initiator,
  };
  const responder: ConnectionPolicy = {
    name: 'from-alice',
    localAddrs: ['10.0.0.2'],
    remoteAddrs: [],
    remotePort: 500,
    ike: ike('aes256gcm16-prfsha256-x25519'),
    localId: id('bob.example.org'),
    remoteId: id('alice@example.org'),
    localAuth: { method: 'psk', psk: PSK },
    remoteAuth: { method: 'psk', psk: PSK },
    mobike: true,
    cloneSupport: true,
    requestVirtualIp: false,
    pools: [],
    children: [child('net', '10.2.0.0/24', '10.1.0.0/24')],
    startAction: 'none',
    ...over.responder,
  };
  return { initiator, responder };
}

export type WireVerdict = 'pass' | 'drop' | 'duplicate';

/** The in-memory network between engines, keyed by their addresses. */
export class MemoryWire {
  readonly clock = new ManualClock();
  readonly engines = new Map<string, IkeEngine>();
  readonly queue: Datagram[] = [];
  readonly log: Datagram[] = [];
  /** Decides the fate of each datagram (drop, duplicate); default: pass. */
  filter: (d: Datagram, index: number) => WireVerdict = () => 'pass';
  /** Rewrites a datagram in flight (tampering tests). */
  tamper: ((d: Datagram) => Datagram) | undefined;
  private sent = 0;

  engine(address: string, policies: ConnectionPolicy[], opts: Partial<IkeEngineOptions> = {}): IkeEngine {
    const engine = new IkeEngine({
      policies,
      clock: this.clock,
      random: seededRandom(address),
      retransmit: { timeout: 500, base: 2, tries: 3, maxTimeout: 4000 },
      ...opts,
      send: (d) => {
        const verdict = this.filter(d, this.sent++);
        this.log.push(d);
        if (verdict === 'drop') return;
        const out = this.tamper ? this.tamper(d) : d;
        this.queue.push(out);
        if (verdict === 'duplicate') this.queue.push({ ...out, bytes: new Uint8Array(out.bytes) });
      },
    });
    this.engines.set(address, engine);
    return engine;
  }

  /** Deliver queued datagrams (and what they trigger) until the wire is quiet; bounded. */
  flush(maxSteps = 10_000): number {
    let steps = 0;
    while (this.queue.length > 0) {
      if (++steps > maxSteps) throw new Error('wire did not go quiet');
      const d = this.queue.shift()!;
      const target = this.engines.get(d.remote.address);
      // The receiver sees the datagram from the sender's side: swap local and remote.
      target?.receive({ bytes: d.bytes, local: d.remote, remote: d.local });
    }
    return steps;
  }

  /**
   * Like run(), but yields to the event loop after every step, so that
   * promise chains driven by the engines (clone orchestration, awaits in the
   * code under test) advance between deliveries.
   */
  async settle(ms: number, step = 50): Promise<void> {
    for (let t = 0; t <= ms; t += step) {
      this.flush();
      await new Promise<void>((r) => setImmediate(r));
      this.flush();
      this.clock.advance(step);
    }
    this.flush();
  }

  /** Advance time in small steps, flushing after each, up to `ms`. */
  run(ms: number, step = 50): void {
    for (let t = 0; t < ms; t += step) {
      this.flush();
      this.clock.advance(step);
    }
    this.flush();
  }
}

/** Establish alice -> bob and return both engines and SAs. */
export async function establish(over: Parameters<typeof pskPair>[0] = {}, wire = new MemoryWire()) {
  const { initiator, responder } = pskPair(over);
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  const peerSa = bob.ikeSas()[0]!;
  return { wire, alice, bob, sa, peerSa, initiator, responder };
}
