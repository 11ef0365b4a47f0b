// The fragments target: IKE fragment messages (RFC 7383) into the reassembler
// (control/ike/fragments.ts) of an established IKE SA that holds the first
// fragment of a genuine set: byte mutants of genuine fragments, forged bodies,
// overlapping fragments (a stored Fragment Number with other content),
// out-of-range numbers, oversized sets and bodies, older sets, fragments under
// another message ID. None may throw, be stored or disturb the set in
// reassembly (same messages, same octets, same IKE SA), and what is held
// stays within the limits; afterwards the genuine set still completes.
import { ManualClock } from '../../control/ike/clock.js';
import { newEngineStats } from '../../control/ike/engine-stats.js';
import { sealOutgoing } from '../../control/ike/fragmentation.js';
import { FragmentReassembler, isFragmentMessage, type ReassemblyContext } from '../../control/ike/fragments.js';
import type { IkeSa } from '../../control/ike/ike-sa.js';
import { silentLogger } from '../../control/log.js';
import { ExchangeType, PayloadType } from '../../control/wire/constants.js';
import { decodeMessage, type IkeMessage } from '../../control/wire/message.js';
import type { SkfPayload } from '../../control/wire/payloads.js';
import { mutate, type Rng } from '../mutate.js';
import { guarded, type FuzzTarget, type Outcome } from '../target.js';
import { fingerprint, session } from './engine.js';

/** The reassembler's bounds here: small enough that oversized sets reach them. */
const LIMITS = { maxFragments: 32, maxMessageBytes: 16 * 1024, maxTotalBytes: 64 * 1024, maxMessages: 8, timeout: 30_000 };

export interface FragmentsTarget extends FuzzTarget {
  /** The most decrypted octets the reassembler held during the run. */
  peakOctets(): number;
  /** Deliver the rest of the genuine set: true when it completes into the message that was cut. */
  completes(): boolean;
}

function decoded(bytes: Uint8Array): IkeMessage {
  const m = decodeMessage(bytes);
  if (!m.ok) throw new Error(`a genuine fragment does not decode: ${m.error.message}`);
  return m.value;
}

/** `msg` with its SKF payload's fields replaced: what the decoder would refuse reaches the reassembler anyway. */
function withSkf(msg: IkeMessage, over: Partial<SkfPayload>): IkeMessage {
  const skf = msg.payloads[msg.payloads.length - 1] as SkfPayload;
  return { header: msg.header, payloads: [...msg.payloads.slice(0, -1), { ...skf, ...over }] };
}

export async function fragmentsTarget(): Promise<FragmentsTarget> {
  const s = await session();
  const alice = s.engines.get('10.0.0.1')!.ikeSas().find((sa) => sa.state === 'established')!;
  const bob: IkeSa = s.engines.get('10.0.0.2')!.ikeSas().find((sa) => sa.state === 'established')!;
  // An INFORMATIONAL request of some 1500 octets from alice, cut for 256-octet datagrams: a genuine set for bob.
  const content = Uint8Array.from({ length: 1500 }, (_, i) => (i * 7) & 0xff);
  alice.fragmentSize = 256;
  const sealed = sealOutgoing(alice, ExchangeType.INFORMATIONAL, alice.nextRequestId, false, [{ type: PayloadType.VENDOR_ID, data: content }]);
  if (!sealed.fragments || sealed.fragments.datagrams.length < 3) throw new Error('the genuine message was not cut into fragments');
  const genuine = sealed.fragments.datagrams;
  const total = genuine.length;

  let lastDrop: string | undefined;
  const ctx = {
    clock: new ManualClock(),
    log: silentLogger(),
    stats: newEngineStats(),
    countDrop: (reason: string) => void (lastDrop = reason),
    on: () => ctx,
  } as unknown as ReassemblyContext;
  const reassembler = new FragmentReassembler(ctx, LIMITS);
  const first = reassembler.open(bob, decoded(genuine[0]!), false);
  if (first !== undefined || reassembler.messages !== 1) throw new Error('the first genuine fragment was not stored');
  const state = () => `${reassembler.messages}|${reassembler.octets}|${fingerprint(bob)}`;
  const before = state();
  let peak = reassembler.octets;

  // Bodies are slices of one random pool at a random offset: cheap, and never a genuine ciphertext.
  const pool = Uint8Array.from({ length: 140_000 }, (_, i) => (i * 2_654_435_761) >>> 24);
  const random = (rng: Rng, n: number) => {
    const off = rng.int(pool.length - n);
    return pool.slice(off, off + n);
  };
  const mutants: Array<(rng: Rng) => IkeMessage | Outcome> = [
    // Byte mutants of genuine fragments, through the decoder.
    (rng) => {
      const m = decodeMessage(mutate(rng.pick(genuine), rng));
      if (!m.ok) return { kind: 'error', code: m.error.code };
      return isFragmentMessage(m.value) ? m.value : { kind: 'error', code: 'not-a-fragment' };
    },
    // Forged: a genuine fragment's numbers and length, another body.
    (rng) => {
      const g = decoded(rng.pick(genuine.slice(1)));
      return withSkf(g, { body: random(rng, (g.payloads.at(-1) as SkfPayload).body.length) });
    },
    // Overlapping: the stored Fragment Number again, with other content.
    (rng) => withSkf(decoded(genuine[0]!), { body: random(rng, 1 + rng.int(300)) }),
    // Out of range: number 0, past Total Fragments, or Total Fragments 0.
    (rng) => withSkf(decoded(rng.pick(genuine)), rng.pick([{ fragmentNumber: 0 }, { fragmentNumber: total + 1 + rng.int(100) }, { totalFragments: 0 }, { fragmentNumber: 65535, totalFragments: 1 }])),
    // Oversized: more fragments than the limit, or a huge body.
    (rng) => withSkf(decoded(genuine[1]!), rng.next() < 0.5 ? { totalFragments: LIMITS.maxFragments + 1 + rng.int(65535 - LIMITS.maxFragments - 1) } : { body: random(rng, 20_000 + rng.int(50_000)) }),
    // An older set: fewer fragments than the one in reassembly.
    (rng) => withSkf(decoded(genuine[0]!), { fragmentNumber: 1, totalFragments: 1 + rng.int(total - 1) }),
    // Another message ID: the header is authenticated data.
    (rng) => {
      const b = new Uint8Array(rng.pick(genuine));
      new DataView(b.buffer).setUint32(20, rng.int(0x1_0000_0000));
      return decoded(b);
    },
  ];

  return {
    name: 'fragments',
    describe: 'forged, overlapping, out-of-range, oversized and mutated IKE fragments into a reassembly in progress: no throw, nothing stored',
    run(rng: Rng): Outcome {
      lastDrop = undefined;
      const o = guarded(() => {
        const m = rng.pick(mutants)(rng);
        if ('kind' in m) return m;
        const opened = reassembler.open(bob, m, false);
        return opened === undefined ? { kind: 'ok' } : { kind: 'state-change', detail: 'a mutant completed a message' };
      });
      peak = Math.max(peak, reassembler.octets);
      if (o.kind !== 'ok') return o;
      const after = state();
      if (after !== before) return { kind: 'state-change', detail: `reassembly changed: ${before} -> ${after}` };
      if (reassembler.octets > LIMITS.maxTotalBytes) return { kind: 'state-change', detail: `${reassembler.octets} octets held` };
      return lastDrop === undefined ? { kind: 'state-change', detail: 'a mutant was stored' } : { kind: 'drop', reason: lastDrop };
    },
    peakOctets: () => peak,
    completes(): boolean {
      let result: ReturnType<FragmentReassembler['open']>;
      for (const g of genuine.slice(1)) result = reassembler.open(bob, decoded(g), false);
      const vid = result?.ok ? result.value[0] : undefined;
      return vid?.type === PayloadType.VENDOR_ID && Buffer.from(vid.data).equals(Buffer.from(content)) && reassembler.messages === 0 && reassembler.octets === 0;
    },
  };
}
