// Seeded mutation of IKE messages (architecture §7), shared by the fuzz tool
// (fuzz/index.ts) and the fuzz tests: a small deterministic PRNG, and
// mutators that know the IKE header and the outer payload chain (lengths,
// next-payload fields, payload bodies' first octets), so that mutants get past
// the first checks and exercise the deeper ones. The same seed gives the same
// mutants.
import { concatBytes } from '../control/crypto/bytes.js';
import { ExchangeType, HeaderFlag, PayloadType } from '../control/wire/constants.js';

/** mulberry32: a small, fixed-seed PRNG for reproducible mutants. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, pick };
}
export type Rng = ReturnType<typeof prng>;

// ------------------------------------------------------------------- mutation

export const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] as const;
export const HEADER = 28;

export function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
export function setU16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
export function setU32(b: Uint8Array, o: number, v: number): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(o, v >>> 0);
}

/** Offsets of the outer payloads' generic headers (clear text: IKE_SA_INIT, or the SK header). */
export function outerPayloads(b: Uint8Array): Array<{ off: number; len: number; type: number; prevNext: number }> {
  const out: Array<{ off: number; len: number; type: number; prevNext: number }> = [];
  if (b.length < HEADER) return out;
  let type = b[16]!;
  let prevNext = 16;
  let off = HEADER;
  while (type !== 0 && off + 4 <= b.length && out.length < 32) {
    const len = u16(b, off + 2);
    if (len < 4 || off + len > b.length) break;
    out.push({ off, len, type, prevNext });
    if (type === PayloadType.SK) break;
    prevNext = off;
    type = b[off]!;
    off += len;
  }
  return out;
}

/** parts[0] | parts[1] | ... in a fresh buffer. */
export const concat = concatBytes;

type Mutator = (b: Uint8Array, r: Rng) => Uint8Array;

export const MUTATORS: Array<[name: string, weight: number, fn: Mutator]> = [
  ['bit flip', 6, (b, r) => {
    if (b.length === 0) return b;
    const i = r.int(b.length);
    b[i]! ^= 1 << r.int(8);
    return b;
  }],
  ['byte set', 4, (b, r) => {
    if (b.length === 0) return b;
    b[r.int(b.length)] = r.next() < 0.5 ? r.pick(INTERESTING_BYTES) : r.int(256);
    return b;
  }],
  ['truncate', 2, (b, r) => b.subarray(0, r.int(b.length + 1))],
  ['extend', 1, (b, r) => concat(b, Uint8Array.from({ length: 1 + r.int(48) }, () => r.int(256)))],
  ['header length', 2, (b, r) => {
    if (b.length < HEADER) return b;
    setU32(b, 24, r.pick([0, 1, HEADER - 1, HEADER, b.length - 1, b.length + 1, b.length + 100, 0xffffffff, r.int(2 * b.length + 1)]));
    return b;
  }],
  ['payload length', 3, (b, r) => {
    const ps = outerPayloads(b);
    if (ps.length === 0) return b;
    const p = r.pick(ps);
    setU16(b, p.off + 2, r.pick([0, 3, 4, 5, p.len - 1, p.len + 1, p.len - 4, p.len + 4, 0xffff, r.int(0x10000)]));
    return b;
  }],
  ['substructure byte', 4, (b, r) => {
    // Somewhere in the first 16 bytes of a payload body: proposal/transform/attribute
    // headers, KE group, notify type and SPI size, ID type, selector counts.
    const ps = outerPayloads(b);
    if (ps.length === 0) return b;
    const p = r.pick(ps);
    const i = p.off + 4 + r.int(Math.min(16, Math.max(1, p.len - 4)));
    if (i < b.length) b[i] = r.next() < 0.6 ? r.pick(INTERESTING_BYTES) : r.int(256);
    return b;
  }],
  ['next payload', 2, (b, r) => {
    const ps = outerPayloads(b);
    const where = ps.length > 0 && r.next() < 0.7 ? r.pick(ps).prevNext : 16;
    if (where < b.length) b[where] = r.pick([0, 33, 34, 35, 36, 39, 40, 41, 42, 44, 46, 48, 53, 1, 200, r.int(256)]);
    return b;
  }],
  ['drop payload', 2, (b, r) => {
    const ps = outerPayloads(b);
    if (ps.length === 0) return b;
    const i = r.int(ps.length);
    const p = ps[i]!;
    const next = b[p.off]!;
    const out = concat(b.subarray(0, p.off), b.subarray(p.off + p.len));
    out[p.prevNext] = next;
    if (out.length >= HEADER) setU32(out, 24, out.length);
    return out;
  }],
  ['duplicate payload', 1, (b, r) => {
    const ps = outerPayloads(b).filter((p) => p.type !== PayloadType.SK);
    if (ps.length === 0) return b;
    const p = r.pick(ps);
    const copy = new Uint8Array(b.subarray(p.off, p.off + p.len));
    copy[0] = p.type; // the copy is followed by the original
    const out = concat(b.subarray(0, p.off), copy, b.subarray(p.off));
    setU32(out, 24, out.length);
    return out;
  }],
  ['header field', 3, (b, r) => {
    if (b.length < HEADER) return b;
    switch (r.int(5)) {
      case 0:
        b[18] = r.pick([ExchangeType.IKE_SA_INIT, ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL, 38, 43, 0, r.int(256)]);
        break;
      case 1:
        b[19] = r.pick([0, HeaderFlag.INITIATOR, HeaderFlag.RESPONSE, HeaderFlag.INITIATOR | HeaderFlag.RESPONSE, HeaderFlag.VERSION | HeaderFlag.INITIATOR, r.int(256)]);
        break;
      case 2:
        setU32(b, 20, r.pick([0, 1, 2, 3, 4, 5, 6, 7, 0x7fffffff, 0xffffffff, r.int(0x100000000)]));
        break;
      case 3:
        b[17] = r.pick([0x20, 0x21, 0x2f, 0x10, 0x30, 0x00, r.int(256)]);
        break;
      default:
        if (r.next() < 0.5) b.fill(0, 8, 16);
        else {
          const spiI = b.slice(0, 8);
          b.copyWithin(0, 8, 16);
          b.set(spiI, 8);
        }
    }
    return b;
  }],
];
const TOTAL_WEIGHT = MUTATORS.reduce((n, [, w]) => n + w, 0);

/** A mutant of `src` that differs from it (one to four mutations); `counts` tallies the mutators used. */
export function mutate(src: Uint8Array, r: Rng, counts: Map<string, number> = new Map()): Uint8Array {
  for (let attempt = 0; attempt < 8; attempt++) {
    const b = mutateOnce(src, r, counts);
    if (b.length !== src.length || b.some((v, i) => v !== src[i])) return b;
  }
  return src.subarray(0, src.length - 1);
}

export function mutateOnce(src: Uint8Array, r: Rng, counts: Map<string, number>): Uint8Array {
  let b = new Uint8Array(src);
  const rounds = r.next() < 0.7 ? 1 : 2 + r.int(3);
  for (let k = 0; k < rounds; k++) {
    let w = r.int(TOTAL_WEIGHT);
    for (const [name, weight, fn] of MUTATORS) {
      if ((w -= weight) >= 0) continue;
      b = new Uint8Array(fn(b, r));
      counts.set(name, (counts.get(name) ?? 0) + 1);
      break;
    }
  }
  // Half the time keep the header's Length honest so that decoding goes deeper.
  if (b.length >= HEADER && r.next() < 0.5) setU32(b, 24, b.length);
  return b;
}
