// ESP kernel benchmark: ESP tunnel-mode encap and decap, single thread, in
// three implementations side by side:
//   ikeclone-wasm   the wasm kernel (dataplane/kernel.ts) through its batch API:
//                   copy each inner/ESP packet into the arena, fill descriptors,
//                   one call per batch; output stays in the arena (sent from there)
//   node-crypto     what a Node program would otherwise do: createCipheriv /
//                   createDecipheriv per packet, Buffers for header, trailer, tag;
//                   for AES-CBC + HMAC-SHA2 also createHmac, a random IV per
//                   packet (randomFillSync) and the ICV checked before decrypting
//   @noble/ciphers  pure TypeScript AES-GCM (gcm from @noble/ciphers/aes.js)
// Packet sizes are inner packet bytes: 64, 576, 1400 and IMIX (7:4:1 of those).
// Gbps counts inner bytes. node-crypto and noble do the same per-packet work at
// every "batch" size (they have no batch call); the column says how many
// packets one timed call handles. Decap here skips anti-replay for node and
// noble (the wasm kernel does it), which favours them slightly.
import {
  createCipheriv, createDecipheriv, createHmac, randomBytes, randomFillSync, timingSafeEqual,
  type CipherChaCha20Poly1305, type CipherGCM, type DecipherChaCha20Poly1305, type DecipherGCM,
} from 'node:crypto';
import { gcm } from '@noble/ciphers/aes.js';
import { DESC_WORDS, Desc, EspKernel, type EspAlgorithm, type SaParams } from '../dataplane/kernel.js';
import { formatTable, measure, measureCpu, round, type SuiteOptions } from './common.js';

type Impl = 'ikeclone-wasm' | 'node-crypto' | '@noble/ciphers';
type Op = 'encap' | 'decap';
type Size = 64 | 576 | 1400 | 'imix';

export interface EspBenchResult {
  impl: Impl;
  algorithm: EspAlgorithm;
  op: Op;
  size: Size;
  batch: number;
  pps: number;
  gbps: number;
  /** Relative margin of error of the timing, percent. */
  rme: number;
}

export interface EspRatio {
  value: number;
  target: number;
  met: boolean;
  description: string;
}

export interface EspBenchReport {
  suite: 'esp';
  node: string;
  /** What the rates are per: wall time (benchmark.js) or this process's CPU time (--cpu-time). */
  timing: 'wall' | 'cpu';
  results: EspBenchResult[];
  ratios: Record<string, EspRatio>;
}

const SIZES: readonly Size[] = [64, 576, 1400, 'imix'];
const BATCHES = [1, 64] as const;
type AeadAlgorithm = 'aes-gcm-128' | 'aes-gcm-256' | 'chacha20-poly1305';
type CbcAlgorithm = 'aes-cbc-128-hmac-sha2-256-128' | 'aes-cbc-256-hmac-sha2-256-128';
type BenchAlgorithm = AeadAlgorithm | CbcAlgorithm;
const ALGORITHMS: readonly BenchAlgorithm[] = [
  'aes-gcm-128', 'aes-gcm-256', 'chacha20-poly1305', 'aes-cbc-128-hmac-sha2-256-128', 'aes-cbc-256-hmac-sha2-256-128',
];
const NOBLE_ALGORITHMS: readonly BenchAlgorithm[] = ['aes-gcm-128', 'aes-gcm-256'];
/** Cipher key bytes; AEADs add a 4-byte salt to them, AES-CBC an HMAC-SHA-256 key (RFC 4868 §2.1.1). */
const KEY_BYTES: Record<BenchAlgorithm, number> = {
  'aes-gcm-128': 16, 'aes-gcm-256': 32, 'chacha20-poly1305': 32,
  'aes-cbc-128-hmac-sha2-256-128': 16, 'aes-cbc-256-hmac-sha2-256-128': 32,
};
const NODE_CIPHER = { 'aes-gcm-128': 'aes-128-gcm', 'aes-gcm-256': 'aes-256-gcm', 'chacha20-poly1305': 'chacha20-poly1305' } as const;
const NODE_CBC = { 'aes-cbc-128-hmac-sha2-256-128': 'aes-128-cbc', 'aes-cbc-256-hmac-sha2-256-128': 'aes-256-cbc' } as const;
const isCbc = (a: BenchAlgorithm): a is CbcAlgorithm => a in NODE_CBC;
/** HMAC-SHA-256 key bytes (RFC 4868 §2.1.1). */
const CBC_MAC_KEY = 32;
/** Key material the kernel takes for an algorithm. */
const materialBytes = (a: BenchAlgorithm): number => KEY_BYTES[a] + (isCbc(a) ? CBC_MAC_KEY : 4);
/** Packets per workload: a multiple of every batch size, and of the IMIX pattern (12). */
const WORKLOAD = 768;
/** Arena bytes per packet slot: room for the largest packet, headroom and tailroom. */
const STRIDE = 1536;
const HEAD = 64;
const SPI = 0x0c10_0e01;
const ICV = 16;
const NEXT_HEADER = 4;

/** Inner packets of one size, or IMIX 7:4:1 in a fixed shuffled order. */
function innerPackets(size: Size): Uint8Array[] {
  let sizes: number[];
  if (size === 'imix') {
    const pattern = [64, 64, 576, 64, 64, 1400, 576, 64, 576, 64, 64, 576]; // 7 x 64, 4 x 576, 1 x 1400
    sizes = Array.from({ length: WORKLOAD }, (_, i) => pattern[i % pattern.length]!);
  } else {
    sizes = new Array<number>(WORKLOAD).fill(size);
  }
  return sizes.map((n) => {
    const p = randomBytes(n);
    p[0] = 0x45; // looks like IPv4
    return new Uint8Array(p.buffer, p.byteOffset, p.length);
  });
}

/** Trailer for a pad length (RFC 4303 §2.4): pad bytes 1.., pad length, next header. */
const TRAILERS = Array.from({ length: 16 }, (_, pad) => Buffer.from([...Array.from({ length: pad }, (_, i) => i + 1), pad, NEXT_HEADER]));
const padFor = (len: number): number => (4 - ((len + 2) & 3)) & 3;
/** AES-CBC pads to the 16-byte block (RFC 3602 §2.4). */
const cbcPadFor = (len: number): number => (16 - ((len + 2) & 15)) & 15;

// ---------------------------------------------------------------------------
// ikeclone wasm kernel.

interface WasmSetup {
  kernel: EspKernel;
  outSlot: number;
  inSlot: number;
  params: SaParams;
  keymat: Uint8Array;
}

function wasmSetup(kernel: EspKernel, algorithm: EspAlgorithm, index: number, keymat: Uint8Array): WasmSetup {
  const params: SaParams = { algorithm, keyMaterial: keymat, spi: SPI, direction: 'out', esn: false };
  const setup = { kernel, outSlot: 2 * index, inSlot: 2 * index + 1, params, keymat };
  kernel.installSa(setup.outSlot, { ...params, keyMaterial: keymat.slice() });
  kernel.installSa(setup.inSlot, { ...params, direction: 'in', keyMaterial: keymat.slice() });
  return setup;
}

/**
 * Copy the next `batch` packets of a workload into the arena (`head` bytes into
 * each STRIDE) and describe them; returns the new cursor.
 */
function stageBatch(kernel: EspKernel, packets: Uint8Array[], cursor: number, batch: number, slot: number, head: number): number {
  const arena = kernel.arena;
  const d = kernel.descriptors;
  for (let i = 0; i < batch; i++) {
    const p = packets[cursor]!;
    if (++cursor === packets.length) cursor = 0;
    const off = i * STRIDE + head;
    arena.set(p, off);
    const b = i * DESC_WORDS;
    d[b + Desc.OFFSET] = off;
    d[b + Desc.LENGTH] = p.length;
    d[b + Desc.SLOT] = slot;
    d[b + Desc.NEXT_HEADER] = NEXT_HEADER;
  }
  return cursor;
}

function wasmEncap(s: WasmSetup, packets: Uint8Array[], batch: number): () => void {
  let cursor = 0;
  return () => {
    cursor = stageBatch(s.kernel, packets, cursor, batch, s.outSlot, HEAD);
    if (s.kernel.encapBatch(batch) !== batch) throw new Error('wasm encap refused a packet');
  };
}

/** ESP packets with sequence numbers 1..n, made by the kernel from a fresh outbound SA. */
function wasmMakeEsp(s: WasmSetup, packets: Uint8Array[]): Uint8Array[] {
  const { kernel } = s;
  kernel.deleteSa(s.outSlot);
  kernel.installSa(s.outSlot, { ...s.params, keyMaterial: s.keymat.slice() });
  const out = packets.map((p) => kernel.encap(s.outSlot, p, NEXT_HEADER));
  kernel.deleteSa(s.outSlot);
  kernel.installSa(s.outSlot, { ...s.params, keyMaterial: s.keymat.slice() });
  return out;
}

function wasmDecap(s: WasmSetup, espPackets: Uint8Array[], batch: number): () => void {
  let cursor = 0;
  return () => {
    if (cursor === 0) {
      // The workload's numbers are spent: start a fresh window (once per WORKLOAD packets).
      s.kernel.deleteSa(s.inSlot);
      s.kernel.installSa(s.inSlot, { ...s.params, direction: 'in', keyMaterial: s.keymat.slice() });
    }
    cursor = stageBatch(s.kernel, espPackets, cursor, batch, s.inSlot, 0);
    if (s.kernel.decapBatch(batch) !== batch) throw new Error('wasm decap refused a packet');
  };
}

// ---------------------------------------------------------------------------
// node:crypto, one cipher object per packet.

type AeadCipher = CipherGCM | CipherChaCha20Poly1305;
type AeadDecipher = DecipherGCM | DecipherChaCha20Poly1305;

/** node:crypto's AEAD cipher for an algorithm (the overloads want a literal cipher name). */
function nodeCipher(algorithm: AeadAlgorithm, key: Buffer, nonce: Buffer): AeadCipher {
  if (algorithm === 'chacha20-poly1305') return createCipheriv(algorithm, key, nonce, { authTagLength: ICV });
  return createCipheriv(NODE_CIPHER[algorithm], key, nonce, { authTagLength: ICV });
}

function nodeDecipher(algorithm: AeadAlgorithm, key: Buffer, nonce: Buffer): AeadDecipher {
  if (algorithm === 'chacha20-poly1305') return createDecipheriv(algorithm, key, nonce, { authTagLength: ICV });
  return createDecipheriv(NODE_CIPHER[algorithm], key, nonce, { authTagLength: ICV });
}

/**
 * A timed call that runs `seal` or `open` on the next `batch` items of a
 * workload, cycling through it; the byte each returns is folded into a sink
 * that keeps the work from being optimised away.
 */
function perPacket<T>(items: T[], batch: number, body: (item: T) => number): () => void {
  let cursor = 0;
  let sink = 0;
  return () => {
    for (let i = 0; i < batch; i++) {
      const item = items[cursor]!;
      if (++cursor === items.length) cursor = 0;
      sink ^= body(item);
    }
    if (sink === 256) throw new Error('unreachable');
  };
}

/** Checks the RFC 4303 §2.4 trailer of a decrypted plaintext; returns the payload's first byte. */
function checkTrailer(pt: Buffer): number {
  const padLen = pt[pt.length - 2]!;
  for (let j = 0; j < padLen; j++) if (pt[pt.length - 2 - padLen + j] !== j + 1) throw new Error('bad padding');
  return pt.subarray(0, pt.length - 2 - padLen)[0] ?? 0;
}

function nodeEncap(algorithm: AeadAlgorithm, keymat: Uint8Array, packets: Uint8Array[], batch: number): () => void {
  const key = Buffer.from(keymat.subarray(0, KEY_BYTES[algorithm]));
  const salt = Buffer.from(keymat.subarray(KEY_BYTES[algorithm]));
  let seq = 0;
  return perPacket(packets, batch, (inner) => {
    seq++;
    const hdr = Buffer.allocUnsafe(16);
    hdr.writeUInt32BE(SPI, 0);
    hdr.writeUInt32BE(seq, 4);
    hdr.writeUInt32BE(0, 8);
    hdr.writeUInt32BE(seq, 12);
    const nonce = Buffer.concat([salt, hdr.subarray(8)], 12);
    const c = nodeCipher(algorithm, key, nonce);
    const tail = TRAILERS[padFor(inner.length)]!;
    c.setAAD(hdr.subarray(0, 8), { plaintextLength: inner.length + tail.length });
    const body = c.update(inner);
    const trailer = c.update(tail);
    c.final();
    const esp = Buffer.concat([hdr, body, trailer, c.getAuthTag()]);
    return esp[esp.length - 1]!;
  });
}

function nodeDecap(algorithm: AeadAlgorithm, keymat: Uint8Array, espPackets: Uint8Array[], batch: number): () => void {
  const key = Buffer.from(keymat.subarray(0, KEY_BYTES[algorithm]));
  const salt = Buffer.from(keymat.subarray(KEY_BYTES[algorithm]));
  const buffers = espPackets.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length));
  return perPacket(buffers, batch, (esp) => {
    const nonce = Buffer.concat([salt, esp.subarray(8, 16)], 12);
    const d = nodeDecipher(algorithm, key, nonce);
    d.setAAD(esp.subarray(0, 8), { plaintextLength: esp.length - 16 - ICV });
    d.setAuthTag(esp.subarray(esp.length - ICV));
    const pt = d.update(esp.subarray(16, esp.length - ICV));
    d.final(); // throws on a bad tag
    return checkTrailer(pt);
  });
}

// ---------------------------------------------------------------------------
// node:crypto AES-CBC + HMAC-SHA-256-128 (RFC 3602, RFC 4868), per packet.

function nodeCbcEncap(algorithm: CbcAlgorithm, keymat: Uint8Array, packets: Uint8Array[], batch: number): () => void {
  const key = Buffer.from(keymat.subarray(0, KEY_BYTES[algorithm]));
  const macKey = Buffer.from(keymat.subarray(KEY_BYTES[algorithm]));
  let seq = 0;
  return perPacket(packets, batch, (inner) => {
    seq++;
    const hdr = Buffer.allocUnsafe(24);
    hdr.writeUInt32BE(SPI, 0);
    hdr.writeUInt32BE(seq, 4);
    randomFillSync(hdr, 8, 16); // RFC 3602 §2.1: an unpredictable IV
    const c = createCipheriv(NODE_CBC[algorithm], key, hdr.subarray(8));
    c.setAutoPadding(false);
    const body = c.update(inner);
    const trailer = c.update(TRAILERS[cbcPadFor(inner.length)]!);
    c.final();
    const icv = createHmac('sha256', macKey).update(hdr).update(body).update(trailer).digest().subarray(0, ICV);
    const esp = Buffer.concat([hdr, body, trailer, icv]);
    return esp[esp.length - 1]!;
  });
}

function nodeCbcDecap(algorithm: CbcAlgorithm, keymat: Uint8Array, espPackets: Uint8Array[], batch: number): () => void {
  const key = Buffer.from(keymat.subarray(0, KEY_BYTES[algorithm]));
  const macKey = Buffer.from(keymat.subarray(KEY_BYTES[algorithm]));
  const buffers = espPackets.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length));
  return perPacket(buffers, batch, (esp) => {
    // RFC 4303 §3.4.4: the ICV first, then decryption.
    const icv = createHmac('sha256', macKey).update(esp.subarray(0, esp.length - ICV)).digest().subarray(0, ICV);
    if (!timingSafeEqual(icv, esp.subarray(esp.length - ICV))) throw new Error('bad ICV');
    const d = createDecipheriv(NODE_CBC[algorithm], key, esp.subarray(8, 24));
    d.setAutoPadding(false);
    return checkTrailer(Buffer.concat([d.update(esp.subarray(24, esp.length - ICV)), d.final()]));
  });
}

// ---------------------------------------------------------------------------
// @noble/ciphers AES-GCM.

function nobleEncap(algorithm: AeadAlgorithm, keymat: Uint8Array, packets: Uint8Array[], batch: number): () => void {
  const key = keymat.slice(0, KEY_BYTES[algorithm]);
  const nonce = new Uint8Array(12);
  nonce.set(keymat.subarray(KEY_BYTES[algorithm]));
  const nonceView = new DataView(nonce.buffer);
  const aad = new Uint8Array(8);
  const aadView = new DataView(aad.buffer);
  aadView.setUint32(0, SPI);
  let cursor = 0;
  let seq = 0;
  let sink = 0;
  return () => {
    for (let i = 0; i < batch; i++) {
      const inner = packets[cursor]!;
      if (++cursor === packets.length) cursor = 0;
      seq++;
      const pad = padFor(inner.length);
      const pt = new Uint8Array(inner.length + pad + 2);
      pt.set(inner);
      pt.set(TRAILERS[pad]!, inner.length);
      nonceView.setUint32(8, seq);
      aadView.setUint32(4, seq);
      const ct = gcm(key, nonce, aad).encrypt(pt);
      const esp = new Uint8Array(16 + ct.length);
      esp.set(aad);
      esp.set(nonce.subarray(4), 8);
      esp.set(ct, 16);
      sink ^= esp[esp.length - 1]!;
    }
    if (sink === 256) throw new Error('unreachable');
  };
}

function nobleDecap(algorithm: AeadAlgorithm, keymat: Uint8Array, espPackets: Uint8Array[], batch: number): () => void {
  const key = keymat.slice(0, KEY_BYTES[algorithm]);
  const salt = keymat.subarray(KEY_BYTES[algorithm]);
  const nonce = new Uint8Array(12);
  nonce.set(salt);
  let cursor = 0;
  return () => {
    for (let i = 0; i < batch; i++) {
      const esp = espPackets[cursor]!;
      if (++cursor === espPackets.length) cursor = 0;
      nonce.set(esp.subarray(8, 16), 4);
      const pt = gcm(key, nonce, esp.subarray(0, 8)).decrypt(esp.subarray(16)); // throws on a bad tag
      const padLen = pt[pt.length - 2]!;
      for (let j = 0; j < padLen; j++) if (pt[pt.length - 2 - padLen + j] !== j + 1) throw new Error('bad padding');
    }
  };
}

// ---------------------------------------------------------------------------

function averageBytes(packets: Uint8Array[]): number {
  return packets.reduce((n, p) => n + p.length, 0) / packets.length;
}

function ratio(results: EspBenchResult[], description: string, target: number,
  a: Partial<EspBenchResult>, b: Partial<EspBenchResult>): EspRatio {
  const find = (q: Partial<EspBenchResult>): EspBenchResult | undefined =>
    results.find((r) => (Object.keys(q) as Array<keyof EspBenchResult>).every((k) => r[k] === q[k]));
  const ra = find(a);
  const rb = find(b);
  const value = ra && rb ? round(ra.pps / rb.pps, 2) : Number.NaN;
  return { value, target, met: value >= target, description };
}

/**
 * AES-CBC + HMAC-SHA-256-128, wasm against node:crypto, both ways, 64 and
 * 1400 B, batch 64. No target is set (0): the figures are recorded, not
 * gated; node:crypto has AES-NI and SHA extensions, the wasm kernel neither.
 */
function cbcRatios(results: EspBenchResult[]): Record<string, EspRatio> {
  const out: Record<string, EspRatio> = {};
  for (const algorithm of ALGORITHMS.filter(isCbc)) {
    const bits = KEY_BYTES[algorithm] * 8;
    for (const op of ['encap', 'decap'] as const) {
      for (const size of [64, 1400] as const) {
        const key = `wasmAesCbc${bits}HmacSha256${op === 'encap' ? 'Encap' : 'Decap'}VsNodeCrypto${size}`;
        out[key] = ratio(results, `wasm AES-CBC-${bits} + HMAC-SHA2-256-128 ${op} vs node:crypto ${op}, ${size} B, batch 64`, 0,
          { impl: 'ikeclone-wasm', algorithm, op, size, batch: 64 }, { impl: 'node-crypto', algorithm, op, size, batch: 64 });
      }
    }
  }
  return out;
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runEspBench(opts: SuiteOptions): Promise<EspBenchReport> {
  const progress = (msg: string): void => {
    process.stderr.write(msg);
  };
  const kernel = await EspKernel.create();
  const keymats = Object.fromEntries(ALGORITHMS.map((a) => [a, Uint8Array.from(randomBytes(materialBytes(a)))])) as Record<BenchAlgorithm, Uint8Array>;
  const setups = Object.fromEntries(ALGORITHMS.map((a, i) => [a, wasmSetup(kernel, a, i, keymats[a])])) as Record<BenchAlgorithm, WasmSetup>;
  const results: EspBenchResult[] = [];
  const cases: Array<{ impl: Impl; algorithm: EspAlgorithm; op: Op; size: Size; batch: number; make: () => () => void; bytes: number }> = [];

  for (const size of SIZES) {
    const packets = innerPackets(size);
    const bytes = averageBytes(packets);
    const esp = Object.fromEntries(ALGORITHMS.map((a) => [a, wasmMakeEsp(setups[a], packets)])) as Record<BenchAlgorithm, Uint8Array[]>;
    for (const batch of BATCHES) {
      for (const algorithm of ALGORITHMS) {
        const s = setups[algorithm];
        const k = keymats[algorithm];
        cases.push({ impl: 'ikeclone-wasm', algorithm, op: 'encap', size, batch, bytes, make: () => wasmEncap(s, packets, batch) });
        cases.push({ impl: 'ikeclone-wasm', algorithm, op: 'decap', size, batch, bytes, make: () => wasmDecap(s, esp[algorithm], batch) });
        if (isCbc(algorithm)) {
          cases.push({ impl: 'node-crypto', algorithm, op: 'encap', size, batch, bytes, make: () => nodeCbcEncap(algorithm, k, packets, batch) });
          cases.push({ impl: 'node-crypto', algorithm, op: 'decap', size, batch, bytes, make: () => nodeCbcDecap(algorithm, k, esp[algorithm], batch) });
        } else {
          cases.push({ impl: 'node-crypto', algorithm, op: 'encap', size, batch, bytes, make: () => nodeEncap(algorithm, k, packets, batch) });
          cases.push({ impl: 'node-crypto', algorithm, op: 'decap', size, batch, bytes, make: () => nodeDecap(algorithm, k, esp[algorithm], batch) });
        }
        if (!isCbc(algorithm) && NOBLE_ALGORITHMS.includes(algorithm)) {
          cases.push({ impl: '@noble/ciphers', algorithm, op: 'encap', size, batch, bytes, make: () => nobleEncap(algorithm, k, packets, batch) });
          cases.push({ impl: '@noble/ciphers', algorithm, op: 'decap', size, batch, bytes, make: () => nobleDecap(algorithm, k, esp[algorithm], batch) });
        }
      }
    }
  }

  const started = Date.now();
  cases.forEach((c, i) => {
    progress(`\r[${i + 1}/${cases.length}] ${c.impl} ${c.algorithm} ${c.op} ${c.size} B x${c.batch}`.padEnd(72));
    const m = opts.cpuTime
      ? measureCpu(c.make(), opts.maxTime)
      : measure(`${c.impl} ${c.algorithm} ${c.op} ${c.size} ${c.batch}`, c.make(), opts.maxTime);
    const pps = m.hz * c.batch;
    results.push({
      impl: c.impl, algorithm: c.algorithm, op: c.op, size: c.size, batch: c.batch,
      pps: Math.round(pps), gbps: round((pps * c.bytes * 8) / 1e9), rme: round(m.rme, 1),
    });
  });
  progress(`\r${' '.repeat(72)}\r`);
  // The kernel refused nothing (every batch call checks), and counted no drop.
  for (const a of ALGORITHMS) {
    const c = kernel.counters(setups[a].inSlot);
    if (c.dropsAuth + c.dropsReplay + c.dropsBadPadding + c.dropsMalformed !== 0n) throw new Error(`${a}: decap drops during the benchmark`);
  }

  const wasm128 = { impl: 'ikeclone-wasm', algorithm: 'aes-gcm-128', op: 'encap', batch: 64 } as const;
  const node128 = { impl: 'node-crypto', algorithm: 'aes-gcm-128', op: 'encap', batch: 64 } as const;
  const ratios: Record<string, EspRatio> = {
    wasmAesGcm128VsNodeCrypto64: ratio(results, 'wasm AES-GCM-128 encap vs node:crypto AES-128-GCM encap, 64 B, batch 64', 3,
      { ...wasm128, size: 64 }, { ...node128, size: 64 }),
    wasmAesGcm128VsNodeCrypto1400: ratio(results, 'wasm AES-GCM-128 encap vs node:crypto AES-128-GCM encap, 1400 B, batch 64', 2,
      { ...wasm128, size: 1400 }, { ...node128, size: 1400 }),
    wasmChachaVsNodeCryptoAesGcm1400: ratio(results, 'wasm ChaCha20-Poly1305 encap vs node:crypto AES-128-GCM encap, 1400 B, batch 64', 1.5,
      { ...wasm128, algorithm: 'chacha20-poly1305', size: 1400 }, { ...node128, size: 1400 }),
    wasmAesGcm128VsNoble1400: ratio(results, 'wasm AES-GCM-128 encap vs @noble/ciphers AES-GCM-128 encap, 1400 B, batch 64', 10,
      { ...wasm128, size: 1400 }, { ...wasm128, impl: '@noble/ciphers', size: 1400 }),
    ...cbcRatios(results),
  };

  const report: EspBenchReport = { suite: 'esp', node: process.version, timing: opts.cpuTime ? 'cpu' : 'wall', results, ratios };
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    const sorted = [...results].sort((x, y) =>
      x.op.localeCompare(y.op) || SIZES.indexOf(x.size) - SIZES.indexOf(y.size) || x.batch - y.batch
      || x.algorithm.localeCompare(y.algorithm) || x.impl.localeCompare(y.impl));
    console.log(`ESP kernel, single thread, node ${process.version}, ${opts.cpuTime ? 'CPU' : 'wall'} time (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
    console.log(formatTable(['op', 'size', 'batch', 'algorithm', 'impl', 'Mpps', 'Gbps', '±%'],
      sorted.map((r) => [r.op, String(r.size), r.batch, r.algorithm, r.impl, round(r.pps / 1e6, 3), r.gbps, r.rme])));
    console.log('\nTargets');
    console.log(formatTable(['ratio', 'value', 'target', 'met'],
      Object.values(ratios).map((r) => [r.description, r.value, r.target, r.met ? 'yes' : 'NO'])));
  }
  return report;
}
