// The esp target: mutated ESP packets against SAs installed in the wasm
// kernel (dataplane/kernel.ts), one inbound SA per algorithm. A mutant is
// refused with a typed result (AUTH_FAILED, MALFORMED, REPLAY, BAD_PADDING,
// SPI_MISMATCH, ...), never accepted, and leaves the SA's replay window and
// counters as they were (RFC 4303 §3.4.3: the window moves only after the ICV
// checked out). After the run a fresh genuine packet is still accepted.
import { EspKernel, ResultCode, isSuccess, resultName, type EspAlgorithm } from '../../dataplane/kernel.js';
import { mutate, prng, type Rng } from '../mutate.js';
import { guarded, type FuzzTarget, type Outcome } from '../target.js';

const ALGORITHMS: Array<[EspAlgorithm, number]> = [
  ['aes-gcm-128', 20], ['aes-gcm-256', 36], ['chacha20-poly1305', 36],
  ['aes-cbc-128-hmac-sha2-256-128', 48], ['aes-cbc-256-hmac-sha2-512-256', 96],
];
/** Genuine packets per SA: the first half delivered (so the window has state and they replay), the rest kept fresh. */
const PACKETS = 16;

interface Sa { inSlot: number; outSlot: number; corpus: Uint8Array[] }

function innerPacket(r: Rng, length: number): Uint8Array {
  const p = Uint8Array.from({ length }, () => r.int(256));
  p[0] = 0x45; // IPv4, IHL 5
  return p;
}

export async function espTarget(): Promise<FuzzTarget & { window: () => string; stillAccepts: () => boolean }> {
  const kernel = await EspKernel.create();
  const r = prng(0xe5b_5eed);
  const sas: Sa[] = ALGORITHMS.map(([algorithm, materialBytes], i) => {
    const key = Uint8Array.from({ length: materialBytes }, () => r.int(256));
    const spi = 0x1000 + i;
    const outSlot = 2 * i;
    const inSlot = 2 * i + 1;
    kernel.installSa(outSlot, { algorithm, keyMaterial: new Uint8Array(key), spi, direction: 'out', esn: i % 2 === 1 });
    kernel.installSa(inSlot, { algorithm, keyMaterial: new Uint8Array(key), spi, direction: 'in', esn: i % 2 === 1, replayWindow: 64 });
    const corpus = Array.from({ length: PACKETS }, (_, k) => kernel.encap(outSlot, innerPacket(r, [20, 40, 61, 200, 1400][k % 5]!)));
    for (const p of corpus.slice(0, PACKETS / 2)) {
      const d = kernel.decap(inSlot, p);
      if (!isSuccess(d.result)) throw new Error(`a genuine ${algorithm} packet was refused: ${resultName(d.result)}`);
    }
    return { inSlot, outSlot, corpus };
  });
  const window = () => JSON.stringify(sas.map((sa) => {
    const c = kernel.counters(sa.inSlot);
    return [c.highestSeqIn.toString(), c.packetsIn.toString(), c.bytesIn.toString()];
  }));
  const before = window();
  return {
    name: 'esp',
    describe: 'mutated ESP packets against SAs installed in the wasm kernel: refused with a typed result, never accepted, window untouched',
    window,
    /** A new genuine packet on every SA is accepted (the window still works). */
    stillAccepts: () => sas.every((sa) => isSuccess(kernel.decap(sa.inSlot, kernel.encap(sa.outSlot, innerPacket(r, 64))).result)),
    run(rng: Rng, i: number): Outcome {
      const sa = rng.pick(sas);
      const mutant = mutate(rng.pick(sa.corpus), rng);
      return guarded(() => {
        const d = kernel.decap(sa.inSlot, mutant);
        if (isSuccess(d.result)) return { kind: 'state-change', detail: `a mutant was accepted (slot ${sa.inSlot})` };
        if (!Object.values(ResultCode).includes(d.result)) return { kind: 'crash', detail: `untyped result ${d.result}` };
        // Counters and window only move for accepted packets; checked every 64 mutants (reading them costs a call per SA).
        if (i % 64 === 0 && window() !== before) return { kind: 'state-change', detail: 'the replay window or counters moved' };
        return { kind: 'error', code: resultName(d.result) };
      });
    },
  };
}
