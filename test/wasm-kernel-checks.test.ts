// Input and state checks of the wasm ESP kernel and its wrapper: the inbound window at
// an initial sequence number above 1, batch counts, the benchmark's
// setNextSeqOut hook, the scratch key wipe at install, and argument checks of
// the ChaCha20-Poly1305 entry points.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCipheriv, randomBytes, randomInt } from 'node:crypto';
import { EspKernel, EspKernelError, ResultCode, type EspAlgorithm } from '../dataplane/kernel.js';

interface AlgSpec {
  name: EspAlgorithm;
  node: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyBytes: number;
}
const ALGS: AlgSpec[] = [
  { name: 'aes-gcm-128', node: 'aes-128-gcm', keyBytes: 16 },
  { name: 'aes-gcm-256', node: 'aes-256-gcm', keyBytes: 32 },
  { name: 'chacha20-poly1305', node: 'chacha20-poly1305', keyBytes: 32 },
];

interface RefSa {
  alg: AlgSpec;
  keymat: Buffer;
  spi: number;
  esn: boolean;
}

function newSa(alg: AlgSpec, esn = false): RefSa {
  return { alg, keymat: randomBytes(alg.keyBytes + 4), spi: randomInt(256, 0xffff_ffff), esn };
}

/** ESP packet (from the SPI) with node:crypto: IV = seq, minimal padding, 16-byte ICV (RFC 4303, 4106, 7634). */
function refSeal(sa: RefSa, seq: bigint, inner: Uint8Array): Buffer {
  const padLen = (4 - ((inner.length + 2) % 4)) % 4;
  const pt = Buffer.alloc(inner.length + padLen + 2);
  pt.set(inner);
  for (let i = 0; i < padLen; i++) pt[inner.length + i] = i + 1;
  pt[inner.length + padLen] = padLen;
  pt[pt.length - 1] = 4;
  const hdr = Buffer.alloc(16);
  hdr.writeUInt32BE(sa.spi, 0);
  hdr.writeUInt32BE(Number(seq & 0xffff_ffffn), 4);
  hdr.writeBigUInt64BE(seq, 8);
  // AAD: SPI || seq, or SPI || seq-high || seq-low with ESN (RFC 4106 §5, RFC 7634 §2.1).
  const aad = sa.esn ? Buffer.concat([hdr.subarray(0, 4), hdr.subarray(8, 16)]) : hdr.subarray(0, 8);
  const key = sa.keymat.subarray(0, sa.alg.keyBytes);
  const nonce = Buffer.concat([sa.keymat.subarray(sa.alg.keyBytes), hdr.subarray(8)]);
  const c = createCipheriv(sa.alg.node, key, nonce, { authTagLength: 16 } as never) as ReturnType<typeof createCipheriv> & {
    setAAD(b: Buffer, o: { plaintextLength: number }): void; getAuthTag(): Buffer;
  };
  c.setAAD(aad, { plaintextLength: pt.length });
  return Buffer.concat([hdr, c.update(pt), c.final(), c.getAuthTag()]);
}

function installIn(k: EspKernel, slot: number, sa: RefSa, initialSeq: bigint, replayWindow: number): void {
  k.installSa(slot, {
    algorithm: sa.alg.name, keyMaterial: Uint8Array.from(sa.keymat), spi: sa.spi, direction: 'in', esn: sa.esn,
    initialSeq, replayWindow,
  });
}

function installOut(k: EspKernel, slot: number, sa: RefSa, extra: { initialSeq?: bigint; seqHardLimit?: bigint } = {}): void {
  k.installSa(slot, {
    algorithm: sa.alg.name, keyMaterial: Uint8Array.from(sa.keymat), spi: sa.spi, direction: 'out', esn: sa.esn, ...extra,
  });
}

/** The sequence number an ESP packet carries in its IV (the kernel sends the 64-bit counter there). */
const ivSeq = (esp: Uint8Array): bigint => Buffer.from(esp).readBigUInt64BE(8);

let kernel: EspKernel;
beforeAll(async () => {
  kernel = await EspKernel.create();
});

describe('inbound SA installed with initialSeq > 1 (RFC 4303 §3.4.3)', () => {
  for (const alg of ALGS) {
    it(`${alg.name}: numbers before initialSeq are refused, initialSeq and later are accepted once`, async () => {
      const k = await EspKernel.create();
      const sa = newSa(alg);
      installIn(k, 0, sa, 1000n, 64);
      const deliver = (seq: bigint): number => k.decap(0, refSeal(sa, seq, randomBytes(20))).result;
      // Each of these lies below the SA's first number: none may pass.
      for (const seq of [999n, 960n, 937n, 936n]) expect(deliver(seq), `seq ${seq}`).toBe(ResultCode.REPLAY);
      expect(deliver(935n)).toBe(ResultCode.REPLAY); // left of the window
      expect(k.counters(0).packetsIn).toBe(0n);
      expect(k.counters(0).highestSeqIn).toBe(999n);
      // Numbers above the initial top were not marked, including those in its ring block (999 = 15*64 + 39).
      expect(deliver(1001n)).toBe(ResultCode.OK);
      expect(deliver(1000n)).toBe(ResultCode.OK);
      expect(deliver(1000n)).toBe(ResultCode.REPLAY);
      expect(deliver(1023n)).toBe(ResultCode.OK);
      expect(deliver(1010n)).toBe(ResultCode.OK);
      // Once the top moved, numbers before the start are still refused.
      expect(deliver(999n)).toBe(ResultCode.REPLAY);
      expect(deliver(960n)).toBe(ResultCode.REPLAY);
      expect(k.counters(0).packetsIn).toBe(4n);
      expect(k.counters(0).dropsReplay).toBe(8n);
    });
  }

  it('the largest window: all W numbers below initialSeq are refused', async () => {
    const k = await EspKernel.create();
    const sa = newSa(ALGS[0]!);
    const W = k.maxReplayWindow;
    installIn(k, 0, sa, 5000n, W);
    const deliver = (seq: bigint): number => k.decap(0, refSeal(sa, seq, randomBytes(4))).result;
    for (const seq of [4999n, 4000n, 5000n - BigInt(W), 5000n - BigInt(W) - 1n, 1n]) {
      expect(deliver(seq), `seq ${seq}`).toBe(ResultCode.REPLAY);
    }
    expect(deliver(5000n)).toBe(ResultCode.OK);
  });

  it('initialSeq below the window size: only 1..initialSeq-1 are marked', async () => {
    const k = await EspKernel.create();
    const sa = newSa(ALGS[2]!);
    installIn(k, 0, sa, 10n, 64);
    const deliver = (seq: bigint): number => k.decap(0, refSeal(sa, seq, randomBytes(4))).result;
    for (let s = 1n; s < 10n; s++) expect(deliver(s), `seq ${s}`).toBe(ResultCode.REPLAY);
    expect(deliver(12n)).toBe(ResultCode.OK);
    expect(deliver(10n)).toBe(ResultCode.OK);
    expect(deliver(11n)).toBe(ResultCode.OK);
  });

  it('the default initialSeq 1 marks nothing: 1 is accepted', async () => {
    const k = await EspKernel.create();
    const sa = newSa(ALGS[1]!);
    installIn(k, 0, sa, 1n, 64);
    expect(k.decap(0, refSeal(sa, 3n, randomBytes(4))).result).toBe(ResultCode.OK);
    expect(k.decap(0, refSeal(sa, 1n, randomBytes(4))).result).toBe(ResultCode.OK);
    expect(k.decap(0, refSeal(sa, 2n, randomBytes(4))).result).toBe(ResultCode.OK);
  });

  it('ESN: a window that straddles 2^32 is marked on both sides of the boundary', async () => {
    const k = await EspKernel.create();
    const E = 1n << 32n;
    for (const alg of ALGS) {
      const slot = ALGS.indexOf(alg);
      const sa = newSa(alg, true);
      installIn(k, slot, sa, E + 5n, 64);
      const deliver = (seq: bigint): number => k.decap(slot, refSeal(sa, seq, randomBytes(4))).result;
      // Top E+4: the window is [E-59, E+4]; seq-low above Bl is read as the old subspace (Appendix A2.2 Case B).
      for (const seq of [E + 4n, E, E - 1n, E - 30n, E - 59n]) expect(deliver(seq), `${alg.name} seq ${seq}`).toBe(ResultCode.REPLAY);
      expect(k.counters(slot).dropsAuth).toBe(0n); // refused by the window, not by an inference the ICV rejects
      expect(deliver(E + 6n)).toBe(ResultCode.OK);
      expect(deliver(E + 5n)).toBe(ResultCode.OK);
      expect(k.counters(slot).highestSeqIn).toBe(E + 6n);
    }
  });
});

describe('batch counts', () => {
  it('encapBatch(-1) after encapBatch(1) throws and re-encrypts nothing (no sequence number spent)', async () => {
    const k = await EspKernel.create();
    installOut(k, 0, newSa(ALGS[0]!));
    k.setDescriptor(0, 64, 40, 0, 4);
    expect(k.encapBatch(1)).toBe(1);
    const first = k.arena.slice(0, 256);
    for (const bad of [-1, 2 ** 31, 2 ** 32 - 1, k.maxBatch + 1, 1.5, Number.NaN]) {
      expect(() => k.encapBatch(bad), `count ${bad}`).toThrow(RangeError);
      expect(() => k.decapBatch(bad), `count ${bad}`).toThrow(RangeError);
    }
    expect(k.counters(0).packetsOut).toBe(1n);
    expect(k.counters(0).nextSeqOut).toBe(2n);
    expect(Buffer.from(k.arena.slice(0, 256)).equals(first)).toBe(true);
    expect(k.encapBatch(0)).toBe(0);
    expect(k.encapBatch(1)).toBe(1); // a valid count still works
    expect(k.counters(0).nextSeqOut).toBe(3n);
  });

  it('the kernel itself refuses a count above MAX_BATCH instead of clamping it', async () => {
    const k = await EspKernel.create();
    installOut(k, 0, newSa(ALGS[2]!));
    installIn(k, 1, newSa(ALGS[2]!), 1n, 64);
    for (let i = 0; i < k.maxBatch; i++) k.setDescriptor(i, 64 + i * 128, 16, 0, 4);
    k.descriptors.fill(0xaaaa_aaaa, 0, 8); // descriptor 0's outputs, to see that nothing was written
    k.setDescriptor(0, 64, 16, 0, 4);
    const before = k.descriptors.slice();
    // -1 from JavaScript is 2^32-1 as a u32.
    for (const bad of [-1, k.maxBatch + 1, 2 ** 31]) {
      expect(k.exports.encapBatch(bad), `encap count ${bad}`).toBe(0);
      expect(k.exports.decapBatch(bad), `decap count ${bad}`).toBe(0);
    }
    expect(k.counters(0).nextSeqOut).toBe(1n);
    expect(k.counters(0).packetsOut).toBe(0n);
    expect(Buffer.from(k.descriptors.buffer, k.descriptors.byteOffset, k.descriptors.byteLength)
      .equals(Buffer.from(before.buffer))).toBe(true);
    expect(k.exports.encapBatch(k.maxBatch)).toBe(k.maxBatch);
  });
});

describe('setNextSeqOut (benchmark hook)', () => {
  it('moves the outbound counter forward only, within the hard limit', async () => {
    const k = await EspKernel.create();
    const sa = newSa(ALGS[1]!);
    installOut(k, 0, sa, { seqHardLimit: 200n });
    for (let i = 0; i < 3; i++) k.encap(0, randomBytes(10));
    expect(k.counters(0).nextSeqOut).toBe(4n);
    // Backwards would send numbers 1..3 again: the same (key, IV) as packets already sent (RFC 4106 §3.1).
    for (const back of [3n, 1n, 0n]) {
      const err = (() => { try { k.setNextSeqOut(0, back); } catch (e) { return e; } })();
      expect(err, `seq ${back}`).toBeInstanceOf(EspKernelError);
      expect((err as EspKernelError).result).toBe(ResultCode.INVALID_ARGUMENT);
    }
    expect(k.counters(0).nextSeqOut).toBe(4n);
    k.setNextSeqOut(0, 4n); // the current value is allowed
    k.setNextSeqOut(0, 100n);
    expect(ivSeq(k.encap(0, randomBytes(10)))).toBe(100n);
    expect(() => k.setNextSeqOut(0, 100n)).toThrow(EspKernelError);
    // Past the hard limit (RFC 4303 §3.3.3) it refuses; up to it is fine.
    const past = (() => { try { k.setNextSeqOut(0, 201n); } catch (e) { return e; } })();
    expect((past as EspKernelError).result).toBe(ResultCode.SEQ_EXHAUSTED);
    k.setNextSeqOut(0, 200n);
    expect(ivSeq(k.encap(0, randomBytes(10)))).toBe(200n);
    expect(k.counters(0).nextSeqOut).toBe(201n);
    expect(() => k.setNextSeqOut(0, 201n)).toThrow(EspKernelError);
    expect(() => k.setNextSeqOut(0, -1n)).toThrow(RangeError);
  });

  it('refuses a free slot and an inbound slot, and writes nothing into them', async () => {
    const k = await EspKernel.create();
    const sa = newSa(ALGS[0]!);
    installIn(k, 1, sa, 50n, 64);
    const inbound = k.slotBytes(1);
    const free = k.slotBytes(2);
    const result = (slot: number): unknown => {
      try { k.setNextSeqOut(slot, 1000n); } catch (e) { return (e as EspKernelError).result; }
      return 'no error';
    };
    expect(result(1)).toBe(ResultCode.WRONG_DIRECTION);
    expect(result(2)).toBe(ResultCode.NO_SLOT);
    expect(Buffer.from(k.slotBytes(1)).equals(Buffer.from(inbound))).toBe(true);
    expect(Buffer.from(k.slotBytes(2)).equals(Buffer.from(free))).toBe(true);
    expect(k.slotBytes(2).every((b) => b === 0)).toBe(true);
    // A slot that was deleted is free again.
    installOut(k, 3, sa);
    k.deleteSa(3);
    expect(result(3)).toBe(ResultCode.NO_SLOT);
    expect(k.slotBytes(3).every((b) => b === 0)).toBe(true);
  });

  it('the shared-SA model: numbers reserved from one counter starting at 1 are each sent once', async () => {
    // As bench/scale-worker.ts does: each kernel reserves `batch` numbers with
    // one add on the shared counter, then seals that many packets.
    const ks = [await EspKernel.create(), await EspKernel.create()];
    const sa = newSa(ALGS[0]!, true);
    for (const k of ks) installOut(k, 0, sa);
    let shared = 1n; // ESP numbers start at 1 (RFC 4303 §3.3.3)
    const seen = new Set<bigint>();
    for (let turn = 0; turn < 10; turn++) {
      const k = ks[randomInt(0, 2)]!;
      const batch = randomInt(1, 5);
      k.setNextSeqOut(0, shared);
      shared += BigInt(batch);
      for (let i = 0; i < batch; i++) {
        const seq = ivSeq(k.encap(0, randomBytes(8)));
        expect(seen.has(seq)).toBe(false);
        seen.add(seq);
      }
    }
    expect(seen.size).toBe(Number(shared - 1n));
  });
});

describe('slotInstall wipes the whole scratch key area', () => {
  it('a wrong claimed key length leaves no key bytes in scratch', () => {
    const k = kernel;
    const scratch = k.exports.scratchPtr();
    const mem = (): Uint8Array => k.memoryBytes;
    // 36 bytes of AES-256 key || salt, but a claimed length of 20 (an AES-128 length).
    mem().set(randomBytes(36).map((b) => b | 1), scratch);
    const r = k.exports.slotInstall(3, 2 /* AES_GCM_256 */, 1 /* OUT */, 0x1000, 0, 16, 0, 1n, 10n, 100n, 20);
    expect(r).toBe(ResultCode.INVALID_ARGUMENT);
    expect(mem().slice(scratch, scratch + 64).every((b) => b === 0)).toBe(true);
    expect(k.exports.slotCounter(3, 12 /* SEQ_HARD_LIMIT */)).toBe(0n); // nothing installed
    // Claimed length 0, and a successful install: still all 64 bytes.
    mem().fill(0x5a, scratch, scratch + 64);
    expect(k.exports.slotInstall(3, 2, 1, 0x1000, 0, 16, 0, 1n, 10n, 100n, 0)).toBe(ResultCode.INVALID_ARGUMENT);
    expect(mem().slice(scratch, scratch + 64).every((b) => b === 0)).toBe(true);
    mem().fill(0x5a, scratch, scratch + 64);
    expect(k.exports.slotInstall(3, 1 /* AES_GCM_128 */, 1, 0x1000, 0, 16, 0, 1n, 10n, 100n, 20)).toBe(ResultCode.OK);
    expect(mem().slice(scratch, scratch + 64).every((b) => b === 0)).toBe(true);
    k.deleteSa(3);
  });
});

describe('ChaCha20-Poly1305 argument checks (consistent with gcmInit/gcmSeal/gcmOpen)', () => {
  let CTX = 0, KEY = 0, NONCE = 0, AAD = 0, TAG = 0, DATA = 0;
  const trapMessage = (f: () => unknown): string => {
    try { f(); } catch (e) { expect(e).toBeInstanceOf(WebAssembly.RuntimeError); return (e as Error).message; }
    return 'no trap';
  };

  beforeAll(() => {
    const s = kernel.exports.scratchPtr();
    CTX = s + 4096; KEY = CTX + 64; NONCE = CTX + 128; AAD = CTX + 160; TAG = CTX + 224; DATA = CTX + 512;
    const mem = kernel.memoryBytes;
    mem.set(randomBytes(32), KEY);
    mem.set(randomBytes(12), NONCE);
    mem.set(randomBytes(12), AAD);
    kernel.exports.chachaPolyInit(CTX, KEY, 32);
  });

  it('open rejects negative lengths (returns false, data untouched) instead of trapping', () => {
    const x = kernel.exports;
    const mem = kernel.memoryBytes;
    const pt = randomBytes(64);
    mem.set(pt, DATA);
    x.chachaPolySeal(CTX, NONCE, AAD, 12, DATA, 64, TAG, 16);
    const ct = mem.slice(DATA, DATA + 64);
    expect(x.chachaPolyOpen(CTX, NONCE, AAD, -1, DATA, 64, TAG, 16)).toBe(0);
    expect(x.chachaPolyOpen(CTX, NONCE, AAD, 12, DATA, -1, TAG, 16)).toBe(0);
    expect(x.chachaPolyOpen(CTX, NONCE, AAD, -12, DATA, -64, TAG, 16)).toBe(0);
    expect(x.chachaPolyOpen(CTX, NONCE, AAD, 12, DATA, -0x8000_0000, TAG, 16)).toBe(0);
    expect(Buffer.from(mem.slice(DATA, DATA + 64)).equals(Buffer.from(ct))).toBe(true);
    expect(x.chachaPolyOpen(CTX, NONCE, AAD, 12, DATA, 64, TAG, 16)).toBe(1);
    expect(Buffer.from(mem.slice(DATA, DATA + 64)).equals(pt)).toBe(true);
  });

  it('seal traps on negative lengths before touching the data, as gcmSeal does', () => {
    const x = kernel.exports;
    const mem = kernel.memoryBytes;
    const pt = randomBytes(64);
    mem.set(pt, DATA);
    mem.fill(0x77, TAG, TAG + 16);
    expect(trapMessage(() => x.chachaPolySeal(CTX, NONCE, AAD, -1, DATA, 64, TAG, 16))).toMatch(/unreachable/);
    expect(trapMessage(() => x.chachaPolySeal(CTX, NONCE, AAD, 12, DATA, -1, TAG, 16))).toMatch(/unreachable/);
    expect(Buffer.from(mem.slice(DATA, DATA + 64)).equals(pt)).toBe(true);
    expect(mem.slice(TAG, TAG + 16).every((b) => b === 0x77)).toBe(true);
  });

  it('init traps on a key length other than 32 instead of keeping the old key', () => {
    const x = kernel.exports;
    const ctx2 = CTX + 2048;
    for (const len of [0, 16, 31, 33, -32]) {
      expect(trapMessage(() => x.chachaPolyInit(ctx2, KEY, len)), `keyLen ${len}`).toMatch(/unreachable/);
    }
    // gcmInit behaves the same way.
    expect(trapMessage(() => (x as unknown as { gcmInit(c: number, k: number, l: number): void }).gcmInit(ctx2, KEY, 20))).toMatch(/unreachable/);
  });
});
