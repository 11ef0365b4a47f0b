// Two engines in memory for MOBIKE tests (RFC 4555): alice (10.0.0.1, and a
// second NIC 10.0.1.1) initiates to bob (10.0.0.2). Each engine logs into a
// buffer the test can read, and every message's payloads are recorded (the
// engine's trace), so tests can see what was sent and why something was refused.
import { Writable } from 'node:stream';
import type { IkeEngine } from '../../control/ike/engine.js';
import type { IkeSa } from '../../control/ike/ike-sa.js';
import { createLogger } from '../../control/log.js';
import type { Payload } from '../../control/wire/payloads.js';
import { MemoryWire, pskPair } from './peers.js';

export const NIC2 = '10.0.1.1';

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger writing JSON lines into memory, and the lines so far. */
export function capturedLog(): { log: ReturnType<typeof createLogger>; lines: () => LogLine[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  const log = createLogger({ destination: sink, level: 'info' });
  const lines = () => chunks.join('').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as LogLine);
  return { log, lines };
}

/** pino's level number for warnings. */
export const WARN = 40;

export interface TracedMessage {
  engine: 'alice' | 'bob';
  direction: 'in' | 'out';
  exchangeType: number;
  response: boolean;
  sa: IkeSa;
  payloads: readonly Payload[];
}

/** alice -> bob, established, with both engines' logs and message traces. */
export async function mobikePair(over: Parameters<typeof pskPair>[0] = {}, bobAddresses = ['10.0.0.2']) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const addresses = { alice: ['10.0.0.1', NIC2], bob: [...bobAddresses] };
  const logs = { alice: capturedLog(), bob: capturedLog() };
  const trace: TracedMessage[] = [];
  const engine = (name: 'alice' | 'bob', address: string, policy: typeof initiator): IkeEngine =>
    wire.engine(address, [policy], {
      localAddresses: () => addresses[name],
      log: logs[name].log,
      trace: (e) => trace.push({ engine: name, ...e }),
    });
  const alice = engine('alice', '10.0.0.1', initiator);
  const bob = engine('bob', '10.0.0.2', responder);
  wire.engines.set(NIC2, alice);
  for (const a of bobAddresses) wire.engines.set(a, bob);
  const moved = { alice: [] as IkeSa[], bob: [] as IkeSa[] };
  alice.on('ike-moved', (sa) => moved.alice.push(sa));
  bob.on('ike-moved', (sa) => moved.bob.push(sa));
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const sa = await up;
  return { wire, alice, bob, sa, peerSa: bob.ikeSas()[0]!, addresses, logs, trace, moved };
}

/** The IKE SA on `engine` with the same SPIs as `other` (the other end's view of it). */
export function sameSa(engine: IkeEngine, other: IkeSa): IkeSa {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  const found = engine.ikeSas().find((s) => hex(s.spiI) === hex(other.spiI) && hex(s.spiR) === hex(other.spiR));
  if (!found) throw new Error(`no IKE SA matching ${hex(other.spiI)}`);
  return found;
}

/** Start a move and let the wire settle; `result` is the move's outcome, for the caller to await. */
export async function moveAndSettle(wire: MemoryWire, engine: IkeEngine, sa: IkeSa, local: string, ms = 3000): Promise<{ result: Promise<IkeSa> }> {
  const result = engine.moveIkeSa(sa, { local });
  result.catch(() => undefined);
  await wire.settle(ms);
  return { result };
}
