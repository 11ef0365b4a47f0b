// The engine target: mutants of a recorded session's datagrams (IKE_SA_INIT,
// IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL both ways) into the engine they
// were addressed to, after the session is established. Nothing may throw or
// log an error, and no established SA may change: the same SPIs, state,
// message IDs and Child SAs (architecture §4.3). Mutated IKE_SA_INIT requests
// may create half-open SAs (bounded by the half-open limits); what the
// engines answer is not delivered. test/ike-fuzz.test.ts runs the same checks
// at every state of a session.
import { IkeEngine } from '../../control/ike/engine.js';
import { ManualClock } from '../../control/ike/clock.js';
import { parseEspProposal, parseIkeProposal } from '../../control/config/proposal.js';
import { parseIdentity } from '../../control/ike/identity.js';
import type { ConnectionPolicy } from '../../control/ike/policy.js';
import type { IkeSa } from '../../control/ike/ike-sa.js';
import { spi64Hex } from '../../control/ike/ike-sa.js';
import type { Datagram } from '../../control/ike/transport.js';
import { silentLogger, type Logger } from '../../control/log.js';
import { cidrToRange, bytesToIp } from '../../control/wire/ip.js';
import { mutate, prng, type Rng } from '../mutate.js';
import { guarded, type FuzzTarget, type Outcome } from '../target.js';

function ok<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

function selector(cidr: string) {
  const r = cidrToRange(cidr)!;
  return { start: bytesToIp(r.start), end: bytesToIp(r.end), protocol: 0, startPort: 0, endPort: 65535 };
}

const PSK = new TextEncoder().encode('a pre-shared key of decent length');

function policy(name: string, local: string, remote: string | undefined, localId: string, remoteId: string, localNet: string, remoteNet: string): ConnectionPolicy {
  return {
    name, localAddrs: [local], remoteAddrs: remote ? [remote] : [], remotePort: 500,
    ike: [ok(parseIkeProposal('aes256gcm16-prfsha256-x25519'))],
    localId: ok(parseIdentity(localId)), remoteId: ok(parseIdentity(remoteId)),
    localAuth: { method: 'psk', psk: PSK }, remoteAuth: { method: 'psk', psk: PSK },
    mobike: true, cloneSupport: true, requestVirtualIp: false, pools: [], startAction: 'none',
    children: [{ name: 'net', localTs: [selector(localNet)], remoteTs: [selector(remoteNet)], esp: [ok(parseEspProposal('aes128gcm16-x25519'))], replayWindow: 1024, startAction: 'none' }],
  };
}

/** A logger whose error and fatal calls count as findings. */
function spyLogger(errors: string[]): Logger {
  const log = silentLogger();
  const record = (level: string) => (...args: unknown[]) => void errors.push(`${level}: ${JSON.stringify(args).slice(0, 200)}`);
  (log as unknown as Record<string, unknown>).error = record('error');
  (log as unknown as Record<string, unknown>).fatal = record('fatal');
  return log;
}

export function fingerprint(sa: IkeSa): string {
  return JSON.stringify([sa.state, spi64Hex(sa.spiI), spi64Hex(sa.spiR), sa.nextRequestId, sa.peerRequestId, sa.children.map((c) => [c.state, c.spiIn, c.spiOut])]);
}

export interface Session {
  engines: Map<string, IkeEngine>;
  corpus: Datagram[];
  errors: string[];
  established: () => string;
}

/** alice (10.0.0.1) and bob (10.0.0.2): IKE_SA_INIT, IKE_AUTH, a second Child SA with PFS, liveness both ways; every datagram recorded. */
export async function session(): Promise<Session> {
  const clock = new ManualClock();
  const errors: string[] = [];
  const queue: Datagram[] = [];
  const corpus: Datagram[] = [];
  const engines = new Map<string, IkeEngine>();
  // Once the session is recorded, the engines' answers go nowhere: only what a mutant does inside its receiver counts.
  let muted = false;
  const random = prng(0x5e55_1011);
  const make = (address: string, p: ConnectionPolicy) => {
    const e = new IkeEngine({
      policies: [p], clock, log: spyLogger(errors), random: (n) => Uint8Array.from({ length: n }, () => random.int(256)),
      limits: { halfOpenCookieThreshold: 8, halfOpenMax: 16 },
      send: (d) => {
        if (muted) return;
        queue.push(d);
        corpus.push({ ...d, bytes: new Uint8Array(d.bytes) });
      },
    });
    engines.set(address, e);
    return e;
  };
  const alice = make('10.0.0.1', policy('to-bob', '10.0.0.1', '10.0.0.2', 'alice@example.org', 'bob.example.org', '10.1.0.0/24', '10.2.0.0/24'));
  const bob = make('10.0.0.2', policy('from-alice', '10.0.0.2', undefined, 'bob.example.org', 'alice@example.org', '10.2.0.0/24', '10.1.0.0/24'));
  const flush = async () => {
    for (let steps = 0; queue.length > 0 && steps < 1000; steps++) {
      const d = queue.shift()!;
      engines.get(d.remote.address)?.receive({ bytes: d.bytes, local: d.remote, remote: d.local });
    }
    await new Promise<void>((r) => setImmediate(r));
  };
  const up = alice.initiate('to-bob');
  await flush();
  const sa = await up;
  const child = alice.createChildSa(sa, 'net', { pfs: true });
  await flush();
  await child;
  const live = [alice.checkLiveness(sa), bob.checkLiveness(bob.ikeSas()[0]!)];
  await flush();
  await Promise.all(live);
  if (errors.length > 0) throw new Error(`the recorded session logged errors: ${errors.join('; ')}`);
  muted = true;
  const established = () => [...engines.values()].map((e) => e.ikeSas().filter((s) => s.state === 'established').map(fingerprint).join('|')).join('||');
  return { engines, corpus, errors, established };
}

export async function engineTarget(): Promise<FuzzTarget> {
  const s = await session();
  const before = s.established();
  let lastDrop: string | undefined;
  for (const e of s.engines.values()) e.on('drop', (reason) => { lastDrop = reason; });
  return {
    name: 'engine',
    describe: 'mutants of a recorded session into both engines: drops and typed answers; no throw, no change to established SAs',
    run(rng: Rng): Outcome {
      const d = rng.pick(s.corpus);
      const bytes = mutate(d.bytes, rng);
      lastDrop = undefined;
      const o = guarded(() => {
        s.engines.get(d.remote.address)!.receive({ bytes, local: d.remote, remote: d.local });
        return { kind: 'ok' };
      });
      if (o.kind === 'crash') return o;
      if (s.errors.length > 0) return { kind: 'crash', detail: `logged ${s.errors.splice(0).join('; ')}` };
      const after = s.established();
      if (after !== before) return { kind: 'state-change', detail: `established SAs changed: ${before} -> ${after}` };
      return lastDrop === undefined ? { kind: 'ok' } : { kind: 'drop', reason: lastDrop };
    },
  };
}
