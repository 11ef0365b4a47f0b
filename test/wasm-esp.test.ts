// The wasm ESP kernel through its TypeScript wrapper: agreement with an
// independent node:crypto ESP implementation (RFC 4303 + RFC 4106 / RFC 7634),
// tamper and replay rejection, ESN inference, sequence limits, slot wiping and
// the batch API.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCipheriv, createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import {
  DESC_WORDS, Desc, EspKernel, EspKernelError, ResultCode, isSuccess, type EspAlgorithm, type SaParams,
} from '../dataplane/kernel.js';

// ---------------------------------------------------------------------------
// Reference ESP with node:crypto.

interface AlgSpec {
  name: EspAlgorithm;
  node: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyBytes: number;
}
const AES128: AlgSpec = { name: 'aes-gcm-128', node: 'aes-128-gcm', keyBytes: 16 };
const AES256: AlgSpec = { name: 'aes-gcm-256', node: 'aes-256-gcm', keyBytes: 32 };
const CHACHA: AlgSpec = { name: 'chacha20-poly1305', node: 'chacha20-poly1305', keyBytes: 32 };
const ALGS = [AES128, AES256, CHACHA];

interface RefSa {
  alg: AlgSpec;
  keymat: Buffer; // key || salt
  spi: number;
  esn: boolean;
  icv: number;
}

function newRefSa(alg: AlgSpec, opts: Partial<Omit<RefSa, 'alg' | 'keymat'>> = {}): RefSa {
  return {
    alg,
    keymat: randomBytes(alg.keyBytes + 4),
    spi: opts.spi ?? randomInt(256, 0xffff_ffff),
    esn: opts.esn ?? false,
    icv: opts.icv ?? 16,
  };
}

function u64be(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, v));
  return b;
}

/** AAD: SPI || seq, or SPI || seq-high || seq-low with ESN (RFC 4106 §5, RFC 7634 §2.1). */
function aadFor(sa: RefSa, seq: bigint): Buffer {
  const spi = Buffer.alloc(4);
  spi.writeUInt32BE(sa.spi);
  const full = u64be(seq);
  return sa.esn ? Buffer.concat([spi, full]) : Buffer.concat([spi, full.subarray(4)]);
}

interface SealOpts {
  nh?: number;
  /** IV bytes; default: the 64-bit sequence number, as the kernel sends it. */
  iv?: Buffer;
  /** Padding length; default: the minimum that aligns payload+pad+2 to 4 (RFC 4303 §2.4). */
  padLen?: number;
  /** Padding byte i (0-based); default i+1. */
  padByte?: (i: number) => number;
  /** Sequence-number high bits put in the AAD instead of the true ones. */
  aadSeq?: bigint;
}

/** Build an ESP packet with node:crypto: payload, padding, pad length, next header. */
function refSeal(sa: RefSa, seq: bigint, inner: Uint8Array, o: SealOpts = {}): Buffer {
  const padLen = o.padLen ?? (4 - ((inner.length + 2) % 4)) % 4;
  const pt = Buffer.alloc(inner.length + padLen + 2);
  pt.set(inner);
  for (let i = 0; i < padLen; i++) pt[inner.length + i] = o.padByte ? o.padByte(i) : i + 1;
  pt[inner.length + padLen] = padLen;
  pt[pt.length - 1] = o.nh ?? 4;
  return refSealRaw(sa, seq, pt, o);
}

/** ESP packet whose whole plaintext (payload, padding, trailer) is given. */
function refSealRaw(sa: RefSa, seq: bigint, plaintext: Buffer, o: Pick<SealOpts, 'iv' | 'aadSeq'> = {}): Buffer {
  const hdr = Buffer.alloc(16);
  hdr.writeUInt32BE(sa.spi, 0);
  hdr.writeUInt32BE(Number(seq & 0xffff_ffffn), 4);
  (o.iv ?? u64be(seq)).copy(hdr, 8);
  const key = sa.keymat.subarray(0, sa.alg.keyBytes);
  const nonce = Buffer.concat([sa.keymat.subarray(sa.alg.keyBytes), hdr.subarray(8)]);
  const c = createCipheriv(sa.alg.node, key, nonce, { authTagLength: sa.icv } as never) as ReturnType<typeof createCipheriv> & {
    setAAD(b: Buffer, o: { plaintextLength: number }): void; getAuthTag(): Buffer;
  };
  c.setAAD(aadFor(sa, o.aadSeq ?? seq), { plaintextLength: plaintext.length });
  return Buffer.concat([hdr, c.update(plaintext), c.final(), c.getAuthTag()]);
}

interface RefOpened {
  spi: number;
  seqLow: number;
  iv: Buffer;
  padLen: number;
  nh: number;
  payload: Buffer;
}

/** Open and parse an ESP packet with node:crypto; throws if anything is wrong. */
function refOpen(sa: RefSa, seq: bigint, packet: Uint8Array): RefOpened {
  const p = Buffer.from(packet);
  const key = sa.keymat.subarray(0, sa.alg.keyBytes);
  const iv = p.subarray(8, 16);
  const nonce = Buffer.concat([sa.keymat.subarray(sa.alg.keyBytes), iv]);
  const ct = p.subarray(16, p.length - sa.icv);
  const d = createDecipheriv(sa.alg.node, key, nonce, { authTagLength: sa.icv } as never) as ReturnType<typeof createDecipheriv> & {
    setAAD(b: Buffer, o: { plaintextLength: number }): void; setAuthTag(b: Buffer): void;
  };
  d.setAAD(aadFor(sa, seq), { plaintextLength: ct.length });
  d.setAuthTag(p.subarray(p.length - sa.icv));
  const pt = Buffer.concat([d.update(ct), d.final()]);
  const padLen = pt[pt.length - 2]!;
  const nh = pt[pt.length - 1]!;
  const payloadLen = pt.length - 2 - padLen;
  if (payloadLen < 0) throw new Error('pad length overruns');
  for (let i = 0; i < padLen; i++) if (pt[payloadLen + i] !== i + 1) throw new Error('padding is not 1,2,3,...');
  return { spi: p.readUInt32BE(0), seqLow: p.readUInt32BE(4), iv: Buffer.from(iv), padLen, nh, payload: pt.subarray(0, payloadLen) };
}

function install(k: EspKernel, slot: number, sa: RefSa, direction: 'in' | 'out', extra: Partial<SaParams> = {}): void {
  k.installSa(slot, {
    algorithm: sa.alg.name,
    keyMaterial: Uint8Array.from(sa.keymat),
    spi: sa.spi,
    direction,
    esn: sa.esn,
    icvLength: sa.icv as 8 | 12 | 16,
    ...extra,
  });
}

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

let kernel: EspKernel;
beforeAll(async () => {
  kernel = await EspKernel.create();
});

// ---------------------------------------------------------------------------

describe('agreement with node:crypto', () => {
  const configs: Array<{ alg: AlgSpec; esn: boolean; icv: number }> = [
    { alg: AES128, esn: false, icv: 16 },
    { alg: AES128, esn: true, icv: 12 },
    { alg: AES128, esn: false, icv: 8 },
    { alg: AES256, esn: false, icv: 16 },
    { alg: AES256, esn: true, icv: 16 },
    { alg: CHACHA, esn: false, icv: 16 },
    { alg: CHACHA, esn: true, icv: 16 },
  ];
  const PER_CONFIG = 1500; // 7 x 1500 = 10,500 packets per direction

  it(`kernel encap is bit-for-bit node:crypto's ESP packet (${configs.length * PER_CONFIG} random packets of 0..9000 B)`, async () => {
    const k = await EspKernel.create();
    let checked = 0;
    configs.forEach((cfg, slot) => {
      const sa = newRefSa(cfg.alg, { esn: cfg.esn, icv: cfg.icv });
      // ESN SAs start past 2^32 so that the high half of the AAD matters.
      let seq = cfg.esn ? (1n << 32n) + BigInt(randomInt(1, 1 << 30)) : BigInt(randomInt(1, 1 << 30));
      install(k, slot, sa, 'out', { initialSeq: seq });
      for (let i = 0; i < PER_CONFIG; i++, seq++) {
        const inner = randomBytes(randomInt(0, 9001));
        const nh = i % 5 === 0 ? 41 : 4;
        const esp = k.encap(slot, inner, nh);
        const expected = refSeal(sa, seq, inner, { nh });
        if (!Buffer.from(esp).equals(expected)) throw new Error(`${cfg.alg.name} packet ${i}: kernel output differs from node:crypto`);
        const opened = refOpen(sa, seq, esp);
        if (opened.spi !== sa.spi || opened.seqLow !== Number(seq & 0xffff_ffffn) || opened.nh !== nh
          || (inner.length + opened.padLen + 2) % 4 !== 0 || !opened.payload.equals(inner)) {
          throw new Error(`${cfg.alg.name} packet ${i}: header, padding or payload wrong`);
        }
        checked++;
      }
      const c = k.counters(slot);
      expect(c.packetsOut).toBe(BigInt(PER_CONFIG));
      expect(c.nextSeqOut).toBe(seq);
    });
    expect(checked).toBe(configs.length * PER_CONFIG);
  });

  it(`kernel decaps node:crypto's ESP packets (${configs.length * PER_CONFIG} random packets of 0..9000 B, random IVs and padding)`, async () => {
    const k = await EspKernel.create();
    let checked = 0;
    configs.forEach((cfg, slot) => {
      const sa = newRefSa(cfg.alg, { esn: cfg.esn, icv: cfg.icv });
      let seq = cfg.esn ? (5n << 32n) + 7n : 1n;
      install(k, slot, sa, 'in', { initialSeq: seq });
      let bytes = 0n;
      for (let i = 0; i < PER_CONFIG; i++) {
        seq += BigInt(randomInt(1, 4));
        const inner = randomBytes(randomInt(0, 9001));
        const nh = i % 7 === 0 ? 41 : 4;
        // Senders may pad more than the minimum, up to 255 bytes (RFC 4303 §2.4).
        const padLen = i % 3 === 0 ? randomInt(0, 256) : undefined;
        const esp = refSeal(sa, seq, inner, { nh, iv: randomBytes(8), padLen });
        const r = k.decap(slot, esp);
        if (r.result !== ResultCode.OK || r.nextHeader !== nh || !Buffer.from(r.payload!).equals(inner)) {
          throw new Error(`${cfg.alg.name} packet ${i}: decap result ${r.result}`);
        }
        bytes += BigInt(inner.length);
        checked++;
      }
      const c = k.counters(slot);
      expect(c.packetsIn).toBe(BigInt(PER_CONFIG));
      expect(c.bytesIn).toBe(bytes);
      expect(c.highestSeqIn).toBe(seq);
    });
    expect(checked).toBe(configs.length * PER_CONFIG);
  });

  it('RFC 7634 Appendix A: the example ESP packet decapsulates to the ICMP packet', async () => {
    const k = await EspKernel.create();
    const keymat = Buffer.from('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3', 'hex');
    k.installSa(0, { algorithm: 'chacha20-poly1305', keyMaterial: keymat, spi: 0x01020304, direction: 'in', esn: false });
    const ipPacket = Buffer.from(
      '4500008c234500004032de5bcb007199cb0071050102030400000005101112131415161724039428b97f417e3c13753a'
      + '4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2fac'
      + 'c638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641e076aaa8266b7fb0f7b11b369907e1ad43', 'hex');
    const r = k.decap(0, ipPacket.subarray(20)); // after the outer IPv4 header
    expect(r.result).toBe(ResultCode.OK);
    expect(r.nextHeader).toBe(4);
    expect(toHex(r.payload!)).toBe(
      '45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec100007362708090a0b0c0d0e0f1011121314'
      + '15161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637');
    expect(k.counters(0).highestSeqIn).toBe(5n);
    expect(keymat.every((b) => b === 0)).toBe(true);
  });
});

describe('tampering', () => {
  for (const alg of ALGS) {
    it(`${alg.name}: every single-bit flip of a valid packet is rejected and leaves the window alone`, async () => {
      const k = await EspKernel.create();
      const sa = newRefSa(alg);
      install(k, 0, sa, 'out', { initialSeq: 1000 });
      install(k, 1, sa, 'in', { initialSeq: 990 });
      const esp = k.encap(0, randomBytes(21), 4);
      let authFailures = 0;
      let replays = 0;
      for (let bit = 0; bit < esp.length * 8; bit++) {
        const bad = esp.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        const r = k.decap(1, bad);
        if (isSuccess(r.result) || r.payload !== null) throw new Error(`bit ${bit} flipped: accepted`);
        if (r.result === ResultCode.AUTH_FAILED) authFailures++;
        else if (r.result === ResultCode.REPLAY) replays++;
        else expect([ResultCode.SPI_MISMATCH]).toContain(r.result);
      }
      const c = k.counters(1);
      expect(c.dropsAuth).toBe(BigInt(authFailures));
      expect(c.dropsReplay).toBe(BigInt(replays));
      expect(authFailures).toBeGreaterThan(esp.length * 8 - 64); // header bits aside, every flip reaches the ICV
      expect(c.packetsIn).toBe(0n);
      expect(c.highestSeqIn).toBe(989n);
      // The untouched packet still decapsulates: no flipped packet marked its number or moved the window.
      expect(k.decap(1, esp).result).toBe(ResultCode.OK);
    });
  }

  it('GCM with an 8-byte ICV: flips in the truncated tag are rejected', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(AES128, { icv: 8 });
    install(k, 0, sa, 'out');
    install(k, 1, sa, 'in');
    const esp = k.encap(0, randomBytes(40));
    for (let bit = (esp.length - 8) * 8; bit < esp.length * 8; bit++) {
      const bad = esp.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(k.decap(1, bad).result).toBe(ResultCode.AUTH_FAILED);
    }
    expect(k.decap(1, esp).result).toBe(ResultCode.OK);
  });

  it('truncated packets are malformed, a foreign SPI is refused, bad padding is counted after authentication', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(CHACHA);
    install(k, 0, sa, 'in');
    const good = refSeal(sa, 1n, randomBytes(10));
    for (const len of [0, 1, 8, 16, 17, 33]) {
      expect(k.decap(0, good.subarray(0, len)).result).toBe(ResultCode.MALFORMED);
    }
    expect(k.counters(0).dropsMalformed).toBe(6n);
    const other = refSeal({ ...sa, spi: (sa.spi ^ 0x100) >>> 0 }, 2n, randomBytes(10));
    expect(k.decap(0, other).result).toBe(ResultCode.SPI_MISMATCH);
    // Authentic packets whose trailer breaks RFC 4303 §2.4.
    const badBytes = refSeal(sa, 3n, randomBytes(10), { padLen: 4, padByte: () => 0 });
    expect(k.decap(0, badBytes).result).toBe(ResultCode.BAD_PADDING);
    // A trailer whose pad length claims more bytes than there are.
    expect(k.decap(0, refSealRaw(sa, 4n, Buffer.from([200, 4]))).result).toBe(ResultCode.BAD_PADDING);
    const c = k.counters(0);
    expect(c.dropsBadPadding).toBe(2n);
    expect(c.packetsIn).toBe(0n);
    // Those numbers were authentic, so they are spent: a replay of them is refused.
    expect(k.decap(0, badBytes).result).toBe(ResultCode.REPLAY);
    expect(k.decap(0, good).result).toBe(ResultCode.OK);
  });
});

describe('anti-replay window (RFC 6479)', () => {
  it('duplicates and too-old numbers are refused and counted; an ICV failure does not move the window', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(AES256);
    install(k, 0, sa, 'in', { replayWindow: 64 });
    const pkt = (seq: number, o?: SealOpts): Buffer => refSeal(sa, BigInt(seq), randomBytes(32), o);
    expect(k.decap(0, pkt(1)).result).toBe(ResultCode.OK);
    expect(k.decap(0, pkt(1)).result).toBe(ResultCode.REPLAY);
    expect(k.decap(0, pkt(100)).result).toBe(ResultCode.OK);
    expect(k.decap(0, pkt(36)).result).toBe(ResultCode.REPLAY); // 100 - 36 = 64: left of the window
    expect(k.decap(0, pkt(37)).result).toBe(ResultCode.OK); // oldest number inside it
    expect(k.decap(0, pkt(37)).result).toBe(ResultCode.REPLAY);
    // A forged packet far ahead fails its ICV and must not slide the window.
    const forged = pkt(10_000);
    forged[forged.length - 1]! ^= 1;
    expect(k.decap(0, forged).result).toBe(ResultCode.AUTH_FAILED);
    expect(k.counters(0).highestSeqIn).toBe(100n);
    expect(k.decap(0, pkt(50)).result).toBe(ResultCode.OK);
    // A forged packet inside the window must not mark its number.
    const forged60 = pkt(60);
    forged60[20]! ^= 0x40;
    expect(k.decap(0, forged60).result).toBe(ResultCode.AUTH_FAILED);
    expect(k.decap(0, pkt(60)).result).toBe(ResultCode.OK);
    expect(k.decap(0, pkt(0)).result).toBe(ResultCode.REPLAY); // 0 is never valid
    const c = k.counters(0);
    expect(c.dropsReplay).toBe(4n);
    expect(c.dropsAuth).toBe(2n);
    expect(c.packetsIn).toBe(5n);
  });

  for (const window of [64, 1024, 4096]) {
    it(`window ${window}: in order, reordered within, just outside, big jumps, against a reference model`, async () => {
      const k = await EspKernel.create();
      const sa = newRefSa(CHACHA);
      install(k, 0, sa, 'in', { replayWindow: window });
      const W = BigInt(window);
      const seen = new Set<bigint>();
      let top = 0n;
      let accepted = 0;
      const model = (s: bigint): boolean => s !== 0n && (s > top || (top - s < W && !seen.has(s)));
      const send = (s: bigint): void => {
        const expectOk = model(s);
        const r = k.decap(0, refSeal(sa, s, new Uint8Array(8)));
        if ((r.result === ResultCode.OK) !== expectOk) {
          throw new Error(`window ${window}: seq ${s} (top ${top}) gave ${r.result}, model says ${expectOk ? 'accept' : 'reject'}`);
        }
        if (expectOk) {
          seen.add(s);
          if (s > top) top = s;
          accepted++;
        }
      };
      // In order.
      for (let s = 1n; s <= 2n * W + 5n; s++) send(s);
      // Duplicates of the recent half, and the edge of the window.
      for (let s = top - W / 2n; s <= top; s++) send(s);
      send(top - W + 1n);
      send(top - W);
      // Out of order within the window: skip ahead, then fill the holes backwards.
      const base = top;
      send(base + W - 1n);
      for (let s = base + W - 2n; s > base; s -= 3n) send(s);
      // Just outside after the slide, and exactly at the edge.
      send(top - W);
      send(top - W + 1n);
      // Big jumps: several whole rings ahead, then look back.
      for (const jump of [W * 3n, W * 10n + 17n, 1n << 20n]) {
        const old = top;
        send(top + jump);
        send(old); // now far left of the window
        send(top - W + 1n);
        send(top - 1n);
      }
      // Random traffic around the top: reorders, duplicates, stragglers.
      for (let i = 0; i < 1500; i++) {
        const r = randomInt(0, 100);
        const s = r < 60 ? top + BigInt(randomInt(1, 40))
          : r < 90 ? top - BigInt(randomInt(0, Number(W) + 64))
            : top + BigInt(randomInt(1, Number(W) * 3));
        if (s > 0n) send(s);
      }
      const c = k.counters(0);
      expect(c.packetsIn).toBe(BigInt(accepted));
      expect(c.highestSeqIn).toBe(top);
    });
  }

  it('accepts only power-of-two windows from 64 to 4096', async () => {
    const k = await EspKernel.create();
    for (const w of [0, 32, 100, 8192]) {
      expect(() => install(k, 0, newRefSa(CHACHA), 'in', { replayWindow: w })).toThrow(EspKernelError);
    }
    expect(k.maxReplayWindow).toBe(4096);
  });
});

describe('extended sequence numbers (RFC 4303 §2.2.1, Appendix A)', () => {
  it('outbound: crosses 2^32 with seq-low in the header and seq-high in the AAD and IV', async () => {
    const k = await EspKernel.create();
    for (const alg of ALGS) {
      const sa = newRefSa(alg, { esn: true });
      const slot = ALGS.indexOf(alg);
      install(k, slot, sa, 'out', { initialSeq: (1n << 32n) - 3n });
      for (let seq = (1n << 32n) - 3n; seq < (1n << 32n) + 3n; seq++) {
        const inner = randomBytes(60);
        const esp = k.encap(slot, inner);
        expect(toHex(esp)).toBe(toHex(refSeal(sa, seq, inner)));
        const opened = refOpen(sa, seq, esp);
        expect(opened.seqLow).toBe(Number(seq & 0xffff_ffffn));
        expect(opened.iv.readBigUInt64BE()).toBe(seq);
      }
    }
  });

  it('inbound: infers the high bits across 2^32, in order and for late packets (Cases A and B)', async () => {
    const k = await EspKernel.create();
    for (const alg of ALGS) {
      const slot = ALGS.indexOf(alg);
      const sa = newRefSa(alg, { esn: true });
      const E = 1n << 32n;
      install(k, slot, sa, 'in', { initialSeq: E - 10n, replayWindow: 64 });
      const deliver = (seq: bigint): number => k.decap(slot, refSeal(sa, seq, randomBytes(16))).result;
      expect(deliver(E - 5n)).toBe(ResultCode.OK); // Case A, same subspace
      expect(deliver(E + 3n)).toBe(ResultCode.OK); // Case A, seq-low 3 < Bl: next subspace
      expect(k.counters(slot).highestSeqIn).toBe(E + 3n);
      expect(deliver(E - 2n)).toBe(ResultCode.OK); // Case B: late packet from the old subspace
      expect(deliver(E - 2n)).toBe(ResultCode.REPLAY);
      expect(deliver(E + 1n)).toBe(ResultCode.OK); // Case B, new subspace, inside the window
      // E-60 is the oldest number of a 64 window under top E+3, but lies before
      // initialSeq E-10: marked at install, never accepted (RFC 4303 §3.4.3).
      expect(deliver(E - 60n)).toBe(ResultCode.REPLAY);
      expect(deliver(E - 10n)).toBe(ResultCode.OK); // initialSeq itself, late
      // Just outside: Appendix A2.2 reads seq-low below Bl as the next subspace
      // (2^33 - 61), far ahead, so the ICV computed with those high bits fails.
      expect(deliver(E - 61n)).toBe(ResultCode.AUTH_FAILED);
      expect(k.counters(slot).highestSeqIn).toBe(E + 3n);
      // A sender whose high bits disagree with the inference fails the ICV.
      const wrongHigh = refSeal(sa, E + 10n, randomBytes(16), { aadSeq: 2n * E + 10n });
      expect(k.decap(slot, wrongHigh).result).toBe(ResultCode.AUTH_FAILED);
      // Far into the next subspace, then the window follows.
      // A sender 2^32 ahead is placed in the current subspace (Appendix A3 territory): the ICV fails.
      expect(deliver(2n * E + 100n)).toBe(ResultCode.AUTH_FAILED);
      for (let s = E + 4n; s < E + 2000n; s += 50n) expect(deliver(s)).toBe(ResultCode.OK);
      expect(k.counters(slot).highestSeqIn).toBe(E + 1954n);
    }
  });

  it('without ESN, numbers are 32-bit and the window never infers high bits', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(AES128);
    install(k, 0, sa, 'in', { initialSeq: 0xffff_fff0n, replayWindow: 64, seqSoftLimit: 0xffff_ffffn });
    expect(k.decap(0, refSeal(sa, 0xffff_fff8n, randomBytes(5))).result).toBe(ResultCode.OK);
    // The last 32-bit number reaches the soft limit set above.
    expect(k.decap(0, refSeal(sa, 0xffff_ffffn, randomBytes(5))).result).toBe(ResultCode.OK_REKEY_NEEDED);
    // A wrapped number is far left of the window (and 0 is never valid).
    expect(k.decap(0, refSeal(sa, 1n << 32n, randomBytes(5))).result).toBe(ResultCode.REPLAY);
    expect(k.decap(0, refSeal(sa, (1n << 32n) + 5n, randomBytes(5))).result).toBe(ResultCode.REPLAY);
  });
});

describe('sequence number limits (RFC 4303 §3.3.3)', () => {
  it('the soft limit raises rekey-needed, the hard limit refuses to send', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(AES128);
    install(k, 3, sa, 'out', { seqSoftLimit: 5, seqHardLimit: 8 });
    for (let seq = 1; seq <= 4; seq++) k.encap(3, randomBytes(10));
    expect(k.rekeyNeeded(3)).toBe(false);
    const codes: number[] = [];
    for (let seq = 5; seq <= 9; seq++) {
      k.arena.set(randomBytes(10), 64);
      k.setDescriptor(0, 64, 10, 3, 4);
      k.encapBatch(1);
      codes.push(k.descriptorOutput(0).result);
    }
    expect(codes).toEqual([
      ResultCode.OK_REKEY_NEEDED, ResultCode.OK_REKEY_NEEDED, ResultCode.OK_REKEY_NEEDED, ResultCode.OK_REKEY_NEEDED,
      ResultCode.SEQ_EXHAUSTED,
    ]);
    expect(k.rekeyNeeded(3)).toBe(true);
    expect(() => k.encap(3, randomBytes(10))).toThrow(expect.objectContaining({ result: ResultCode.SEQ_EXHAUSTED }));
    const c = k.counters(3);
    expect(c.packetsOut).toBe(8n);
    expect(c.dropsSeqExhausted).toBe(2n);
    expect(c.nextSeqOut).toBe(9n); // a refusal does not consume a number
  });

  it('without ESN the default hard limit is 2^32-1: no packet ever carries a wrapped number', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(CHACHA);
    install(k, 0, sa, 'out', { initialSeq: 0xffff_fffen });
    expect(refOpen(sa, 0xffff_fffen, k.encap(0, randomBytes(3))).seqLow).toBe(0xffff_fffe);
    expect(refOpen(sa, 0xffff_ffffn, k.encap(0, randomBytes(3))).seqLow).toBe(0xffff_ffff);
    expect(() => k.encap(0, randomBytes(3))).toThrow(EspKernelError);
    expect(k.rekeyNeeded(0)).toBe(true); // default soft limit is below the hard one
    expect(() => install(k, 1, sa, 'out', { seqHardLimit: 1n << 32n })).toThrow(EspKernelError);
  });

  it('with ESN the hard limit is 2^64-1 and the counter never wraps to 0', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(AES256, { esn: true });
    const max = (1n << 64n) - 1n;
    install(k, 0, sa, 'out', { initialSeq: max - 1n });
    expect(refOpen(sa, max - 1n, k.encap(0, randomBytes(3))).iv.readBigUInt64BE()).toBe(max - 1n);
    expect(refOpen(sa, max, k.encap(0, randomBytes(3))).iv.readBigUInt64BE()).toBe(max);
    expect(() => k.encap(0, randomBytes(3))).toThrow(expect.objectContaining({ result: ResultCode.SEQ_EXHAUSTED }));
    expect(() => k.encap(0, randomBytes(3))).toThrow(EspKernelError);
    expect(k.counters(0).dropsSeqExhausted).toBe(2n);
  });

  it('inbound numbers past the hard limit are refused', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(CHACHA);
    install(k, 0, sa, 'in', { seqSoftLimit: 3, seqHardLimit: 5 });
    expect(k.decap(0, refSeal(sa, 2n, randomBytes(4))).result).toBe(ResultCode.OK);
    expect(k.decap(0, refSeal(sa, 4n, randomBytes(4))).result).toBe(ResultCode.OK_REKEY_NEEDED);
    expect(k.rekeyNeeded(0)).toBe(true);
    expect(k.decap(0, refSeal(sa, 6n, randomBytes(4))).result).toBe(ResultCode.SEQ_EXHAUSTED);
    expect(k.counters(0).dropsSeqExhausted).toBe(1n);
  });
});

describe('SA slots', () => {
  it('deleteSa wipes the whole slot, key context included; the caller\'s key material and the scratch are zeroed', async () => {
    const k = await EspKernel.create();
    for (const alg of ALGS) {
      const keymat = randomBytes(alg.keyBytes + 4);
      const copy = Uint8Array.from(keymat);
      k.installSa(7, { algorithm: alg.name, keyMaterial: copy, spi: 0x4242, direction: 'out', esn: true });
      expect(copy.every((b) => b === 0)).toBe(true);
      const scratch = k.exports.scratchPtr();
      expect(k.memoryBytes.subarray(scratch, scratch + 64).every((b) => b === 0)).toBe(true);
      k.encap(7, randomBytes(100));
      const before = k.slotBytes(7);
      expect(before.some((b) => b !== 0)).toBe(true);
      // The salt (last 4 bytes of the key material) is in the slot.
      expect(Buffer.from(before).includes(keymat.subarray(alg.keyBytes))).toBe(true);
      k.deleteSa(7);
      expect(k.slotBytes(7).every((b) => b === 0)).toBe(true);
      expect(() => k.encap(7, randomBytes(10))).toThrow(expect.objectContaining({ result: ResultCode.NO_SLOT }));
    }
  });

  it('installSa checks its parameters and wipes the key material even when it refuses', async () => {
    const k = await EspKernel.create();
    const base = (): SaParams => ({ algorithm: 'aes-gcm-128', keyMaterial: randomBytes(20), spi: 0x1234, direction: 'in', esn: false });
    const bad: Array<Partial<SaParams>> = [
      { keyMaterial: randomBytes(16) },
      { algorithm: 'aes-gcm-256' },
      { algorithm: 'chacha20-poly1305', keyMaterial: randomBytes(36), icvLength: 8 },
      { icvLength: 10 as 8 },
      { spi: 0 },
      { spi: 255 },
      { replayWindow: 96 },
      { seqSoftLimit: 10, seqHardLimit: 5 },
      { initialSeq: 0 },
    ];
    for (const change of bad) {
      const params = { ...base(), ...change };
      expect(() => k.installSa(1, params)).toThrow();
      expect(params.keyMaterial.every((b) => b === 0)).toBe(true);
    }
    expect(() => k.installSa(k.slotCount, base())).toThrow(RangeError);
    k.installSa(1, base());
    expect(() => k.installSa(1, base())).toThrow(expect.objectContaining({ result: ResultCode.SLOT_IN_USE }));
    k.deleteSa(1);
    k.installSa(1, base());
  });
});

describe('batch API', () => {
  it('64 mixed packets in one encap call and one decap call, with per-packet result codes', async () => {
    const k = await EspKernel.create();
    const sas = ALGS.map((alg) => newRefSa(alg, { esn: alg === AES256 }));
    sas.forEach((sa, i) => {
      install(k, i, sa, 'out');
      install(k, 10 + i, sa, 'in');
    });
    const arena = k.arena;
    const d = k.descriptors;
    const STRIDE = 2048;
    type Plan = { slot: number; inner: Buffer; nh: number; expect: number };
    const plan: Plan[] = [];
    for (let i = 0; i < 64; i++) {
      const inner = randomBytes(randomInt(0, 1900));
      const kind = i % 16;
      const slot = kind === 5 ? 200 : kind === 9 ? 10 : i % 3; // free slot, inbound slot, valid
      const expectCode = kind === 5 ? ResultCode.NO_SLOT : kind === 9 ? ResultCode.WRONG_DIRECTION : ResultCode.OK;
      plan.push({ slot, inner, nh: i % 2 ? 41 : 4, expect: expectCode });
      arena.set(inner, i * STRIDE + 64);
      k.setDescriptor(i, i * STRIDE + 64, inner.length, slot, plan[i]!.nh);
    }
    // A descriptor without headroom for the ESP header at the start of the arena.
    k.setDescriptor(13, 8, 10, 0, 4);
    plan[13]!.expect = ResultCode.BAD_DESCRIPTOR;
    const okEncap = k.encapBatch(64);
    expect(okEncap).toBe(plan.filter((p) => p.expect === ResultCode.OK).length);

    // Check each output against node:crypto, then lay the ESP packets out for decap.
    const seqs = [0n, 0n, 0n];
    const decapPlan: Array<{ slot: number; expect: number; inner?: Buffer; nh?: number }> = [];
    let n = 0;
    for (let i = 0; i < 64; i++) {
      const out = k.descriptorOutput(i);
      expect(out.result).toBe(plan[i]!.expect);
      if (out.result !== ResultCode.OK) {
        expect(out.outLength).toBe(0);
        continue;
      }
      const s = plan[i]!.slot;
      seqs[s]! += 1n;
      const esp = Buffer.from(arena.subarray(out.outOffset, out.outOffset + out.outLength));
      expect(out.outOffset).toBe(i * STRIDE + 64 - k.headroom);
      const opened = refOpen(sas[s]!, seqs[s]!, esp);
      expect(opened.payload.equals(plan[i]!.inner)).toBe(true);
      expect(opened.nh).toBe(plan[i]!.nh);
      decapPlan.push({ slot: 10 + s, expect: ResultCode.OK, inner: plan[i]!.inner, nh: plan[i]!.nh });
      arena.copyWithin(n * STRIDE, out.outOffset, out.outOffset + out.outLength);
      d[n * DESC_WORDS + Desc.OFFSET] = n * STRIDE;
      d[n * DESC_WORDS + Desc.LENGTH] = out.outLength;
      n++;
    }
    // Mix in failures: a duplicate of packet 0, a forged copy of packet 1, a
    // truncated packet, a packet for a free slot, one routed to the wrong slot.
    const addCopy = (from: number, slot: number, expectCode: number, edit?: (b: Uint8Array) => Uint8Array): void => {
      const src = d[from * DESC_WORDS + Desc.OFFSET]!;
      let bytes: Uint8Array = arena.slice(src, src + d[from * DESC_WORDS + Desc.LENGTH]!);
      if (edit) bytes = edit(bytes);
      arena.set(bytes, n * STRIDE);
      d[n * DESC_WORDS + Desc.OFFSET] = n * STRIDE;
      d[n * DESC_WORDS + Desc.LENGTH] = bytes.length;
      decapPlan.push({ slot, expect: expectCode });
      n++;
    };
    addCopy(0, decapPlan[0]!.slot, ResultCode.REPLAY);
    // Tampered, with a fresh sequence number so that it passes the replay pre-check.
    addCopy(1, decapPlan[1]!.slot, ResultCode.AUTH_FAILED, (b) => {
      new DataView(b.buffer, b.byteOffset).setUint32(4, 1000);
      return b;
    });
    addCopy(2, decapPlan[2]!.slot, ResultCode.MALFORMED, (b) => b.subarray(0, 20));
    addCopy(3, 201, ResultCode.NO_SLOT);
    addCopy(4, decapPlan[4]!.slot === 10 ? 11 : 10, ResultCode.SPI_MISMATCH);
    addCopy(5, 0, ResultCode.WRONG_DIRECTION);
    while (n < 64) addCopy(6, decapPlan[6]!.slot, ResultCode.REPLAY);
    decapPlan.forEach((p, i) => { d[i * DESC_WORDS + Desc.SLOT] = p.slot; });
    const okDecap = k.decapBatch(64);
    expect(okDecap).toBe(okEncap);
    decapPlan.forEach((p, i) => {
      const out = k.descriptorOutput(i);
      expect(out.result, `decap descriptor ${i}`).toBe(p.expect);
      if (p.expect === ResultCode.OK) {
        expect(Buffer.from(arena.subarray(out.outOffset, out.outOffset + out.outLength)).equals(p.inner!)).toBe(true);
        expect(out.nextHeader).toBe(p.nh);
      } else {
        expect(out.outLength).toBe(0);
      }
    });
  });

  it('processes at most maxBatch descriptors (refusing larger counts) and refuses descriptors outside the arena', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(CHACHA);
    install(k, 0, sa, 'out');
    install(k, 1, sa, 'in');
    for (let i = 0; i < k.maxBatch; i++) k.setDescriptor(i, 64 + i * 128, 16, 0, 4);
    expect(() => k.encapBatch(k.maxBatch + 10)).toThrow(RangeError);
    expect(k.exports.encapBatch(k.maxBatch + 10)).toBe(0); // the kernel refuses too, rather than clamping
    expect(k.counters(0).packetsOut).toBe(0n);
    expect(k.encapBatch(k.maxBatch)).toBe(k.maxBatch);
    expect(k.counters(0).packetsOut).toBe(BigInt(k.maxBatch));
    const size = k.arena.length;
    k.setDescriptor(0, size - 10, 10, 0, 4); // no tailroom
    k.setDescriptor(1, 0xffff_fff0, 100, 0, 4); // offset + length overflows 32 bits
    k.setDescriptor(2, 64, 10, 0, 256); // next header is one byte
    expect(k.encapBatch(3)).toBe(0);
    for (let i = 0; i < 3; i++) expect(k.descriptorOutput(i).result).toBe(ResultCode.BAD_DESCRIPTOR);
    k.setDescriptor(0, size - 10, 20, 1);
    k.setDescriptor(1, 0xffff_fff0, 0x20, 1);
    expect(k.decapBatch(2)).toBe(0);
    for (let i = 0; i < 2; i++) expect(k.descriptorOutput(i).result).toBe(ResultCode.BAD_DESCRIPTOR);
    expect(k.counters(0).packetsOut).toBe(BigInt(k.maxBatch));
  });
});
