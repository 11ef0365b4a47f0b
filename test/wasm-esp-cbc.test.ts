// ESP with AES-CBC + HMAC-SHA2 (RFC 4303, RFC 3602, RFC 4868) through the
// kernel's batch API, against an independent node:crypto ESP implementation:
// bit-for-bit agreement both ways on random packets of every size, the
// multi-buffer encryption across packets and SAs of one batch, ICV checked
// before decryption, replay, padding, malformed packets, unpredictable IVs
// and key wiping.
import { describe, expect, it } from 'vitest';
import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import {
  DESC_WORDS, Desc, EspKernel, EspKernelError, ResultCode, isSuccess, type EspAlgorithm, type SaParams,
} from '../dataplane/kernel.js';

// ---------------------------------------------------------------------------
// Reference ESP with node:crypto.

interface Suite {
  name: EspAlgorithm;
  cipher: 'aes-128-cbc' | 'aes-256-cbc';
  keyBytes: number;
  hash: 'sha256' | 'sha384' | 'sha512';
  /** HMAC key bytes (RFC 4868 §2.1.1) and ICV bytes (§2.3). */
  macKeyBytes: number;
  icv: number;
}
const SUITES: Suite[] = [
  { name: 'aes-cbc-128-hmac-sha2-256-128', cipher: 'aes-128-cbc', keyBytes: 16, hash: 'sha256', macKeyBytes: 32, icv: 16 },
  { name: 'aes-cbc-128-hmac-sha2-384-192', cipher: 'aes-128-cbc', keyBytes: 16, hash: 'sha384', macKeyBytes: 48, icv: 24 },
  { name: 'aes-cbc-128-hmac-sha2-512-256', cipher: 'aes-128-cbc', keyBytes: 16, hash: 'sha512', macKeyBytes: 64, icv: 32 },
  { name: 'aes-cbc-256-hmac-sha2-256-128', cipher: 'aes-256-cbc', keyBytes: 32, hash: 'sha256', macKeyBytes: 32, icv: 16 },
  { name: 'aes-cbc-256-hmac-sha2-384-192', cipher: 'aes-256-cbc', keyBytes: 32, hash: 'sha384', macKeyBytes: 48, icv: 24 },
  { name: 'aes-cbc-256-hmac-sha2-512-256', cipher: 'aes-256-cbc', keyBytes: 32, hash: 'sha512', macKeyBytes: 64, icv: 32 },
];

interface RefSa {
  suite: Suite;
  encKey: Buffer;
  macKey: Buffer;
  spi: number;
  esn: boolean;
}

function newRefSa(suite: Suite, esn = false): RefSa {
  return { suite, encKey: randomBytes(suite.keyBytes), macKey: randomBytes(suite.macKeyBytes), spi: randomInt(256, 0xffff_ffff), esn };
}

/** ICV: HMAC over SPI || seq || IV || ciphertext, with seq-high appended under ESN (RFC 4303 §2.2.1), truncated (RFC 4868 §2.3). */
function icvFor(sa: RefSa, seq: bigint, authed: Buffer): Buffer {
  const h = createHmac(sa.suite.hash, sa.macKey).update(authed);
  if (sa.esn) {
    const hi = Buffer.alloc(4);
    hi.writeUInt32BE(Number(seq >> 32n));
    h.update(hi);
  }
  return h.digest().subarray(0, sa.suite.icv);
}

interface SealOpts {
  nh?: number;
  iv?: Buffer;
  /** Padding length; default: the minimum that aligns payload + pad + 2 to 16 (RFC 3602 §2.4). */
  padLen?: number;
  padByte?: (i: number) => number;
}

function refSeal(sa: RefSa, seq: bigint, inner: Uint8Array, o: SealOpts = {}): Buffer {
  const padLen = o.padLen ?? (16 - ((inner.length + 2) % 16)) % 16;
  const pt = Buffer.alloc(inner.length + padLen + 2);
  pt.set(inner);
  for (let i = 0; i < padLen; i++) pt[inner.length + i] = o.padByte ? o.padByte(i) : i + 1;
  pt[inner.length + padLen] = padLen;
  pt[pt.length - 1] = o.nh ?? 4;
  return refSealRaw(sa, seq, pt, o.iv ?? randomBytes(16));
}

function refSealRaw(sa: RefSa, seq: bigint, plaintext: Buffer, iv: Buffer): Buffer {
  const hdr = Buffer.alloc(24);
  hdr.writeUInt32BE(sa.spi, 0);
  hdr.writeUInt32BE(Number(seq & 0xffff_ffffn), 4);
  iv.copy(hdr, 8);
  const c = createCipheriv(sa.suite.cipher, sa.encKey, iv);
  c.setAutoPadding(false);
  const authed = Buffer.concat([hdr, c.update(plaintext), c.final()]);
  return Buffer.concat([authed, icvFor(sa, seq, authed)]);
}

interface RefOpened { spi: number; seqLow: number; iv: Buffer; padLen: number; nh: number; payload: Buffer }

/** Verify, decrypt and parse an ESP packet with node:crypto; throws if anything is wrong. */
function refOpen(sa: RefSa, seq: bigint, packet: Uint8Array): RefOpened {
  const p = Buffer.from(packet);
  const authed = p.subarray(0, p.length - sa.suite.icv);
  if (!timingSafeEqual(icvFor(sa, seq, authed), p.subarray(p.length - sa.suite.icv))) throw new Error('ICV does not verify');
  const iv = p.subarray(8, 24);
  const d = createDecipheriv(sa.suite.cipher, sa.encKey, iv);
  d.setAutoPadding(false);
  const pt = Buffer.concat([d.update(authed.subarray(24)), d.final()]);
  const padLen = pt[pt.length - 2]!;
  const payloadLen = pt.length - 2 - padLen;
  if (payloadLen < 0) throw new Error('pad length overruns');
  for (let i = 0; i < padLen; i++) if (pt[payloadLen + i] !== i + 1) throw new Error('padding is not 1,2,3,...');
  return { spi: p.readUInt32BE(0), seqLow: p.readUInt32BE(4), iv: Buffer.from(iv), padLen, nh: pt[pt.length - 1]!, payload: pt.subarray(0, payloadLen) };
}

function install(k: EspKernel, slot: number, sa: RefSa, direction: 'in' | 'out', extra: Partial<SaParams> = {}): void {
  k.installSa(slot, {
    algorithm: sa.suite.name,
    keyMaterial: Uint8Array.from(Buffer.concat([sa.encKey, sa.macKey])),
    spi: sa.spi,
    direction,
    esn: sa.esn,
    ...extra,
  });
}

/** Arena bytes per packet in the batch tests: room for the largest ESP packet (1900 B inner, 255 B padding). */
const STRIDE = 4096;
const HEAD = 64;
/** Sizes that every run covers: 0, 1 byte, block edges, 1400 and more. */
const EDGE_SIZES = [0, 1, 2, 13, 14, 15, 16, 17, 30, 31, 32, 110, 126, 127, 128, 129, 1400, 1401, 1438, 1500, 1900];

function randomSize(i: number): number {
  return i < EDGE_SIZES.length ? EDGE_SIZES[i]! : randomInt(0, 1901);
}

interface Planned { slot: number; sa: RefSa; inner: Buffer; nh: number; seq: bigint }

/** Encapsulates `plan` (at most maxBatch packets) in one encapBatch call; returns the ESP packets. */
function encapBatch(k: EspKernel, plan: Planned[]): Buffer[] {
  plan.forEach((p, i) => {
    k.arena.set(p.inner, i * STRIDE + HEAD);
    k.setDescriptor(i, i * STRIDE + HEAD, p.inner.length, p.slot, p.nh);
  });
  expect(k.encapBatch(plan.length)).toBe(plan.length);
  return plan.map((_, i) => {
    const out = k.descriptorOutput(i);
    expect(out.result).toBe(ResultCode.OK);
    // Every suite's ESP packet starts ESP_HEADROOM bytes before its inner packet.
    expect(out.outOffset).toBe(i * STRIDE + HEAD - k.headroom);
    return Buffer.from(k.arena.subarray(out.outOffset, out.outOffset + out.outLength));
  });
}

// ---------------------------------------------------------------------------

describe('AES-CBC + HMAC-SHA2 ESP agrees with node:crypto', () => {
  it('encap: batches mixing all six suites (with and without ESN) and AES-GCM are bit for bit node:crypto\'s packets', async () => {
    const k = await EspKernel.create();
    const sas: Array<{ slot: number; sa: RefSa; next: bigint }> = [];
    SUITES.forEach((suite, i) => {
      for (const esn of [false, true]) {
        const sa = newRefSa(suite, esn);
        const next = esn ? (3n << 32n) + BigInt(randomInt(1, 1 << 30)) : BigInt(randomInt(1, 1 << 30));
        const slot = 2 * i + (esn ? 1 : 0);
        install(k, slot, sa, 'out', { initialSeq: next });
        sas.push({ slot, sa, next });
      }
    });
    // An AEAD SA in the same batches: its packets are sealed in the first pass.
    k.installSa(40, { algorithm: 'aes-gcm-128', keyMaterial: randomBytes(20), spi: 0x4000, direction: 'out', esn: false });
    const ivs = new Set<string>();
    let checked = 0;
    for (let round = 0; round < 24; round++) {
      const plan: Planned[] = [];
      const gcmAt = new Set<number>();
      for (let i = 0; i < k.maxBatch; i++) {
        if (i % 37 === 5) {
          gcmAt.add(i);
          plan.push({ slot: 40, sa: sas[0]!.sa, inner: randomBytes(randomInt(0, 1500)), nh: 4, seq: 0n });
          continue;
        }
        // Runs of one SA, then interleaved SAs: lanes see both.
        const s = round % 2 === 0 ? sas[Math.floor(i / 23) % sas.length]! : sas[randomInt(0, sas.length)]!;
        plan.push({ slot: s.slot, sa: s.sa, inner: randomBytes(randomSize(i)), nh: i % 5 === 0 ? 41 : 4, seq: s.next++ });
      }
      const out = encapBatch(k, plan);
      plan.forEach((p, i) => {
        if (gcmAt.has(i)) return;
        const esp = out[i]!;
        // The IV is the kernel's; with it, node:crypto builds the very same packet.
        const iv = esp.subarray(8, 24);
        const expected = refSeal(p.sa, p.seq, p.inner, { nh: p.nh, iv: Buffer.from(iv) });
        if (!esp.equals(expected)) throw new Error(`${p.sa.suite.name} esn=${p.sa.esn} packet ${i} (${p.inner.length} B) differs from node:crypto`);
        const opened = refOpen(p.sa, p.seq, esp);
        if (opened.spi !== p.sa.spi || opened.seqLow !== Number(p.seq & 0xffff_ffffn) || opened.nh !== p.nh
          || (p.inner.length + opened.padLen + 2) % 16 !== 0 || opened.padLen > 15 || !opened.payload.equals(p.inner)) {
          throw new Error(`${p.sa.suite.name} packet ${i}: header, padding or payload wrong`);
        }
        ivs.add(iv.toString('hex'));
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(5000);
    expect(ivs.size).toBe(checked); // no IV repeats
    for (const s of sas) expect(k.counters(s.slot).nextSeqOut).toBe(s.next);
  });

  it('decap: node:crypto\'s packets of every suite, random IVs and padding up to 255, in batches', async () => {
    const k = await EspKernel.create();
    const sas: Array<{ slot: number; sa: RefSa; seq: bigint; bytes: bigint; packets: number }> = [];
    SUITES.forEach((suite, i) => {
      for (const esn of [false, true]) {
        const sa = newRefSa(suite, esn);
        const seq = esn ? (7n << 32n) + 5n : 1n;
        const slot = 2 * i + (esn ? 1 : 0);
        install(k, slot, sa, 'in', { initialSeq: seq });
        sas.push({ slot, sa, seq, bytes: 0n, packets: 0 });
      }
    });
    let checked = 0;
    for (let round = 0; round < 24; round++) {
      const plan: Array<{ s: (typeof sas)[number]; inner: Buffer; nh: number }> = [];
      for (let i = 0; i < k.maxBatch; i++) {
        const s = sas[randomInt(0, sas.length)]!;
        s.seq += BigInt(randomInt(1, 4));
        const inner = randomBytes(randomSize(i));
        const nh = i % 7 === 0 ? 41 : 4;
        // Senders may pad beyond the minimum, by whole blocks, up to 255 bytes (RFC 4303 §2.4).
        const min = (16 - ((inner.length + 2) % 16)) % 16;
        const padLen = i % 3 === 0 ? min + 16 * randomInt(0, Math.floor((255 - min) / 16) + 1) : min;
        const esp = refSeal(s.sa, s.seq, inner, { nh, padLen });
        k.arena.set(esp, i * STRIDE);
        k.setDescriptor(i, i * STRIDE, esp.length, s.slot);
        plan.push({ s, inner, nh });
      }
      expect(k.decapBatch(plan.length)).toBe(plan.length);
      plan.forEach((p, i) => {
        const out = k.descriptorOutput(i);
        const payload = k.arena.subarray(out.outOffset, out.outOffset + out.outLength);
        if (out.result !== ResultCode.OK || out.nextHeader !== p.nh || !Buffer.from(payload).equals(p.inner)) {
          throw new Error(`${p.s.sa.suite.name} packet ${i}: decap result ${out.result}`);
        }
        p.s.bytes += BigInt(p.inner.length);
        p.s.packets++;
        checked++;
      });
    }
    expect(checked).toBe(24 * k.maxBatch);
    for (const s of sas) {
      const c = k.counters(s.slot);
      expect(c.packetsIn).toBe(BigInt(s.packets));
      expect(c.bytesIn).toBe(s.bytes);
      if (s.packets > 0) expect(c.highestSeqIn).toBe(s.seq);
    }
  });

  it('a round trip through the kernel alone: encap on one SA, decap on its peer, one packet per call and in batches', async () => {
    const k = await EspKernel.create();
    for (const suite of SUITES) {
      const sa = newRefSa(suite);
      k.deleteSa(0);
      k.deleteSa(1);
      install(k, 0, sa, 'out');
      install(k, 1, sa, 'in');
      for (const size of EDGE_SIZES) {
        const inner = randomBytes(size);
        const r = k.decap(1, k.encap(0, inner, 41));
        expect(r.result).toBe(ResultCode.OK);
        expect(r.nextHeader).toBe(41);
        expect(Buffer.from(r.payload!).equals(inner)).toBe(true);
      }
    }
  });
});

describe('AES-CBC + HMAC-SHA2 ESP rejects', () => {
  for (const suite of [SUITES[0]!, SUITES[4]!, SUITES[5]!]) {
    it(`${suite.name}: every single-bit flip (ICV, ciphertext, IV, sequence number) is refused before decryption and leaves the window alone`, async () => {
      const k = await EspKernel.create();
      const sa = newRefSa(suite);
      install(k, 0, sa, 'out', { initialSeq: 1000 });
      install(k, 1, sa, 'in', { initialSeq: 990 });
      const esp = k.encap(0, randomBytes(45), 4);
      let authFailures = 0, replays = 0;
      for (let bit = 0; bit < esp.length * 8; bit++) {
        const bad = esp.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        k.arena.set(bad, 0);
        k.setDescriptor(0, 0, bad.length, 1);
        k.decapBatch(1);
        const r = k.descriptorOutput(0);
        if (isSuccess(r.result)) throw new Error(`bit ${bit} flipped: accepted`);
        // Nothing was decrypted: the packet in the arena is byte for byte what arrived.
        if (!Buffer.from(k.arena.subarray(0, bad.length)).equals(bad)) throw new Error(`bit ${bit}: packet touched`);
        if (r.result === ResultCode.AUTH_FAILED) authFailures++;
        else if (r.result === ResultCode.REPLAY) replays++;
        else expect(r.result).toBe(ResultCode.SPI_MISMATCH);
      }
      const c = k.counters(1);
      expect(c.dropsAuth).toBe(BigInt(authFailures));
      expect(c.dropsReplay).toBe(BigInt(replays));
      expect(authFailures).toBeGreaterThan(esp.length * 8 - 64);
      expect(c.packetsIn).toBe(0n);
      expect(c.highestSeqIn).toBe(989n);
      expect(k.decap(1, esp).result).toBe(ResultCode.OK);
      expect(k.decap(1, esp).result).toBe(ResultCode.REPLAY);
    });
  }

  it('a packet whose sequence number was changed fails its ICV and does not slide the window; ESN high bits are authenticated', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(SUITES[3]!, true);
    install(k, 0, sa, 'in', { initialSeq: (2n << 32n) + 10n, replayWindow: 64 });
    const good = refSeal(sa, (2n << 32n) + 20n, randomBytes(100));
    const moved = Buffer.from(good);
    moved.writeUInt32BE(5000, 4);
    expect(k.decap(0, moved).result).toBe(ResultCode.AUTH_FAILED);
    // Same low 32 bits, ICV made for another high half: refused.
    const otherEpoch = refSeal(sa, (3n << 32n) + 21n, randomBytes(100));
    expect(k.decap(0, otherEpoch).result).toBe(ResultCode.AUTH_FAILED);
    expect(k.counters(0).highestSeqIn).toBe((2n << 32n) + 9n);
    expect(k.decap(0, good).result).toBe(ResultCode.OK);
    expect(k.counters(0).highestSeqIn).toBe((2n << 32n) + 20n);
  });

  it('replays, truncated and misaligned packets, foreign SPIs and bad padding are refused and counted', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(SUITES[1]!);
    install(k, 0, sa, 'in');
    const good = refSeal(sa, 1n, randomBytes(10));
    expect(k.decap(0, good).result).toBe(ResultCode.OK);
    expect(k.decap(0, good).result).toBe(ResultCode.REPLAY);
    // Shorter than header + one block + ICV, or ciphertext not whole blocks (RFC 3602 §3).
    const second = refSeal(sa, 2n, randomBytes(40));
    for (const len of [0, 1, 24, 39, 24 + 16 + 23]) expect(k.decap(0, second.subarray(0, len)).result).toBe(ResultCode.MALFORMED);
    expect(k.decap(0, Buffer.concat([second, Buffer.alloc(1)])).result).toBe(ResultCode.MALFORMED);
    expect(k.counters(0).dropsMalformed).toBe(6n);
    const other = refSeal({ ...sa, spi: (sa.spi ^ 0x100) >>> 0 }, 3n, randomBytes(10));
    expect(k.decap(0, other).result).toBe(ResultCode.SPI_MISMATCH);
    // Authentic packets whose trailer breaks RFC 4303 §2.4: wrong pad bytes, a pad length past the plaintext.
    const badBytes = refSeal(sa, 4n, randomBytes(10), { padLen: 4, padByte: () => 0 });
    expect(k.decap(0, badBytes).result).toBe(ResultCode.BAD_PADDING);
    const overrun = Buffer.alloc(16);
    overrun[14] = 200;
    overrun[15] = 4;
    expect(k.decap(0, refSealRaw(sa, 5n, overrun, randomBytes(16))).result).toBe(ResultCode.BAD_PADDING);
    const c = k.counters(0);
    expect(c.dropsBadPadding).toBe(2n);
    expect(c.dropsReplay).toBe(1n);
    expect(c.packetsIn).toBe(1n);
    // Authentic numbers are spent even with a bad trailer.
    expect(k.decap(0, badBytes).result).toBe(ResultCode.REPLAY);
    expect(k.decap(0, second).result).toBe(ResultCode.OK);
  });

  it('installs only with the suite\'s own ICV length and key material length', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(SUITES[2]!);
    expect(() => install(k, 0, sa, 'out', { icvLength: 16 })).toThrow(EspKernelError);
    expect(() => install(k, 0, sa, 'out', { keyMaterial: randomBytes(20) })).toThrow(RangeError);
    install(k, 0, sa, 'out', { icvLength: 32 });
    expect(k.encap(0, randomBytes(3)).length).toBe(24 + 16 + 32);
  });
});

describe('AES-CBC + HMAC-SHA2 ESP batches decide as packet-by-packet processing does', () => {
  for (const suite of [SUITES[0]!, SUITES[3]!, SUITES[1]!]) {
    it(`${suite.name}: duplicates, forgeries, reordering and an ESN crossing of 2^32 within one batch`, async () => {
      const batched = await EspKernel.create();
      const single = await EspKernel.create();
      const sa = newRefSa(suite, true);
      const start = (1n << 32n) - 40n;
      for (const k of [batched, single]) install(k, 0, sa, 'in', { initialSeq: start, replayWindow: 64 });
      for (let round = 0; round < 6; round++) {
        const packets: Buffer[] = [];
        let top = start + BigInt(round * 60);
        for (let i = 0; i < batched.maxBatch; i++) {
          const pick = randomInt(0, 10);
          if (pick < 2 && packets.length > 0) {
            packets.push(packets[randomInt(0, packets.length)]!); // a duplicate
          } else if (pick < 3) {
            const forged = refSeal(sa, top + BigInt(randomInt(1, 5)), randomBytes(randomInt(0, 200)));
            forged[randomInt(8, forged.length)]! ^= 1 << randomInt(0, 8);
            packets.push(forged);
          } else {
            // Mostly forward, sometimes back inside (or just outside) the window.
            const seq = pick < 5 ? top - BigInt(randomInt(0, 70)) : (top += BigInt(randomInt(1, 3)));
            packets.push(refSeal(sa, seq > 0n ? seq : 1n, randomBytes(randomInt(0, 300))));
          }
        }
        packets.forEach((p, i) => {
          batched.arena.set(p, i * STRIDE);
          batched.setDescriptor(i, i * STRIDE, p.length, 0);
        });
        const ok = batched.decapBatch(packets.length);
        let okSingle = 0;
        packets.forEach((p, i) => {
          const one = single.decap(0, p);
          const out = batched.descriptorOutput(i);
          expect(out.result, `round ${round} packet ${i}`).toBe(one.result);
          if (isSuccess(one.result)) {
            okSingle++;
            expect(Buffer.from(batched.arena.subarray(out.outOffset, out.outOffset + out.outLength)).equals(one.payload!)).toBe(true);
            expect(out.nextHeader).toBe(one.nextHeader);
          }
        });
        expect(ok).toBe(okSingle);
        expect(batched.counters(0)).toEqual(single.counters(0));
      }
      const c = batched.counters(0);
      expect(c.highestSeqIn).toBeGreaterThan(1n << 32n);
      expect(c.dropsReplay).toBeGreaterThan(0n);
      expect(c.dropsAuth).toBeGreaterThan(0n);
    });
  }
});

describe('AES-CBC + HMAC-SHA2 SA keys', () => {
  it('IVs are unpredictable: distinct per packet, per SA and per install of the same keys', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(SUITES[0]!);
    install(k, 0, sa, 'out');
    install(k, 1, sa, 'out');
    const a = k.encap(0, Buffer.alloc(32)).subarray(8, 24).toString('hex');
    const b = k.encap(1, Buffer.alloc(32)).subarray(8, 24).toString('hex');
    const a2 = k.encap(0, Buffer.alloc(32)).subarray(8, 24).toString('hex');
    expect(new Set([a, b, a2]).size).toBe(3);
  });

  it('delete wipes the slot (AES round keys, IV key, HMAC states); no key byte is left anywhere in memory', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(SUITES[5]!);
    install(k, 7, sa, 'out');
    install(k, 8, sa, 'in');
    const esp = k.encap(7, randomBytes(300));
    expect(k.decap(8, esp).result).toBe(ResultCode.OK);
    expect(k.slotBytes(7).some((b) => b !== 0)).toBe(true);
    k.deleteSa(7);
    k.deleteSa(8);
    expect(k.slotBytes(7).every((b) => b === 0)).toBe(true);
    expect(k.slotBytes(8).every((b) => b === 0)).toBe(true);
    const mem = Buffer.from(k.memoryBytes.buffer, k.memoryBytes.byteOffset, k.memoryBytes.length);
    for (const secret of [sa.encKey, sa.macKey, sa.encKey.subarray(0, 8), sa.macKey.subarray(0, 8), sa.macKey.subarray(40, 48)]) {
      expect(mem.indexOf(secret)).toBe(-1);
    }
    expect(k.decap(8, esp).result).toBe(ResultCode.NO_SLOT);
  });

  it('the 128-byte scratch key area is wiped after every install, refused or not (architecture §4.5)', async () => {
    const k = await EspKernel.create();
    const scratch = k.exports.scratchPtr();
    const area = (): Uint8Array => k.memoryBytes.slice(scratch, scratch + 128);
    // The longest key material (AES-256 || HMAC-SHA-512 key || IV key = 112 bytes), installed and refused.
    for (const materialLen of [112, 111]) {
      k.memoryBytes.fill(0xa5, scratch, scratch + 128);
      const result = k.exports.slotInstall(materialLen === 112 ? 2 : 3, 9, 1, 0x1234, 0, 32, 0, 1n, 100n, 1000n, materialLen);
      expect(result).toBe(materialLen === 112 ? ResultCode.OK : ResultCode.INVALID_ARGUMENT);
      expect(area().every((b) => b === 0)).toBe(true);
    }
    const keyMaterial = randomBytes(96);
    k.installSa(4, { algorithm: 'aes-cbc-256-hmac-sha2-512-256', keyMaterial, spi: 0x4321, direction: 'out', esn: false });
    expect(area().every((b) => b === 0)).toBe(true);
    expect(keyMaterial.every((b) => b === 0)).toBe(true);
  });

  it('descriptors without head- or tailroom for AES-CBC are refused', async () => {
    const k = await EspKernel.create();
    const sa = newRefSa(SUITES[2]!);
    install(k, 0, sa, 'out');
    const size = k.arena.length;
    // 10 bytes at the very end: CBC needs 8 + 4 + 2 + 32 after them.
    k.setDescriptor(0, size - 10 - 40, 10, 0, 4);
    k.setDescriptor(1, 8, 10, 0, 4);
    expect(k.encapBatch(2)).toBe(0);
    expect(k.descriptorOutput(0).result).toBe(ResultCode.BAD_DESCRIPTOR);
    expect(k.descriptorOutput(1).result).toBe(ResultCode.BAD_DESCRIPTOR);
    k.setDescriptor(0, size - 10 - 57, 10, 0, 4);
    expect(k.encapBatch(1)).toBe(1);
    expect(k.counters(0).packetsOut).toBe(1n);
    expect(k.tailroom).toBe(57);
    expect(DESC_WORDS * 4).toBe(32);
    expect(Desc.RESULT).toBe(4);
  });
});
