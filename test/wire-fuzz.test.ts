// Mutation fuzzing of the IKEv2 wire decoder (architecture §4.3: untrusted bytes never throw).
//
// A deterministic PRNG (fixed seed) mutates valid encoded messages and payload
// chains (bit flips, byte sets, truncation, extension, length-field edits,
// splices) and runs decodeHeader, decodeMessage and decodePayloadChain on
// every mutant. Checked on each: no exception escapes; every failure is a
// WireError with a known code and a notify the engine can send; every success
// re-encodes without error, decodes again to an equal structure, and the
// re-encoding is a fixed point (encode(decode(x)) is stable).
import { describe, expect, it } from 'vitest';
import {
  AuthMethod,
  CertEncoding,
  CfgAttr,
  CfgType,
  EncrId,
  EsnId,
  ExchangeType,
  HeaderFlag,
  IdType,
  IntegId,
  KeGroup,
  NotifyType,
  PayloadType,
  PrfId,
  ProtocolId,
  TransformType,
  TsType,
} from '../control/wire/constants.js';
import { decodeHeader, type IkeHeader } from '../control/wire/header.js';
import {
  decodeMessage,
  decodePayloadChain,
  encodeMessage,
  encodePayloadChain,
  encodeSkfMessage,
  encodeSkMessage,
} from '../control/wire/message.js';
import type { Payload } from '../control/wire/payloads.js';
import { isWireError, WIRE_ERROR_CODES, type WireErrorCode, type WireResult } from '../control/wire/result.js';

const ITERATIONS = 120_000;
const SEED = 0x1cec10e;

// ------------------------------------------------------------------ PRNG

/** mulberry32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const rand = prng(SEED);
const int = (n: number): number => (n <= 0 ? 0 : rand() % n);
const chance = (p: number): boolean => rand() / 2 ** 32 < p;
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

// ------------------------------------------------------------------ valid seeds

const seq = (start: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
const none = new Uint8Array(0);
const notify = (notifyType: number, data: Uint8Array = none, protocol = 0, spi: Uint8Array = none): Payload => ({
  type: PayloadType.NOTIFY,
  protocol,
  spi,
  notifyType,
  data,
});

const header: Omit<IkeHeader, 'nextPayload' | 'length'> = {
  spiI: seq(0x11, 8),
  spiR: new Uint8Array(8),
  version: 0x20,
  exchangeType: ExchangeType.IKE_SA_INIT,
  flags: HeaderFlag.INITIATOR,
  messageId: 0,
};

const saInit: Payload = {
  type: PayloadType.SA,
  proposals: [
    {
      number: 1,
      protocol: ProtocolId.IKE,
      spi: none,
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 128 },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256 },
        { type: TransformType.KE, id: KeGroup.CURVE25519 },
      ],
    },
    {
      number: 2,
      protocol: ProtocolId.IKE,
      spi: none,
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_CBC, keyLength: 256, attributes: [{ type: 300, value: seq(1, 3) }] },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_384 },
        { type: TransformType.INTEG, id: IntegId.HMAC_SHA2_384_192 },
        { type: TransformType.KE, id: KeGroup.ECP_384, attributes: [{ type: 301, value: 9 }] },
      ],
    },
  ],
};

const saEsp: Payload = {
  type: PayloadType.SA,
  proposals: [
    {
      number: 1,
      protocol: ProtocolId.ESP,
      spi: seq(0xc0, 4),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
        { type: TransformType.ESN, id: EsnId.YES },
        { type: TransformType.ESN, id: EsnId.NO },
      ],
    },
  ],
};

const ts = (type: typeof PayloadType.TSi | typeof PayloadType.TSr): Payload => ({
  type,
  selectors: [
    { tsType: TsType.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: seq(10, 4), endAddress: seq(20, 4) },
    { tsType: TsType.IPV6_ADDR_RANGE, ipProtocol: 17, startPort: 500, endPort: 4500, startAddress: seq(0x20, 16), endAddress: seq(0x30, 16) },
  ],
});

const authInner: Payload[] = [
  { type: PayloadType.IDi, idType: IdType.FQDN, data: new TextEncoder().encode('peer.example') },
  { type: PayloadType.CERT, encoding: CertEncoding.X509_SIGNATURE, data: seq(0x30, 40) },
  { type: PayloadType.CERTREQ, encoding: CertEncoding.X509_SIGNATURE, data: seq(0x90, 20) },
  notify(NotifyType.INITIAL_CONTACT),
  { type: PayloadType.IDr, idType: IdType.IPV4_ADDR, data: seq(192, 4) },
  { type: PayloadType.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: seq(0x44, 32) },
  {
    type: PayloadType.CP,
    cfgType: CfgType.CFG_REQUEST,
    attributes: [
      { type: CfgAttr.INTERNAL_IP4_ADDRESS, value: none },
      { type: CfgAttr.INTERNAL_IP6_ADDRESS, value: seq(1, 17) },
    ],
  },
  saEsp,
  ts(PayloadType.TSi),
  ts(PayloadType.TSr),
  notify(NotifyType.REKEY_SA, none, ProtocolId.ESP, seq(0xa0, 4)),
  { type: 200, critical: false, data: seq(0, 6) },
  { type: PayloadType.EAP, data: Uint8Array.of(2, 1, 0, 6, 1, 0x61) },
  notify(NotifyType.CLONE_IKE_SA_SUPPORTED),
];

const infoInner: Payload[] = [
  { type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: [seq(1, 4), seq(5, 4), seq(9, 4)] },
  { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] },
  notify(NotifyType.UPDATE_SA_ADDRESSES),
  notify(NotifyType.NAT_DETECTION_SOURCE_IP, seq(0x50, 20)),
  { type: PayloadType.VENDOR_ID, data: seq(0x70, 16) },
];

const messageSeeds: Uint8Array[] = [
  // IKE_SA_INIT request
  encodeMessage(header, [
    saInit,
    { type: PayloadType.KE, group: KeGroup.CURVE25519, data: seq(1, 32) },
    { type: PayloadType.NONCE, data: seq(0xa0, 32) },
    notify(NotifyType.NAT_DETECTION_SOURCE_IP, seq(0x50, 20)),
    notify(NotifyType.NAT_DETECTION_DESTINATION_IP, seq(0x60, 20)),
    notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
    notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, Uint8Array.of(0, 2, 0, 3, 0, 4)),
    { type: PayloadType.VENDOR_ID, data: seq(0x70, 16) },
  ]),
  // IKE_SA_INIT response
  encodeMessage({ ...header, spiR: seq(0x99, 8), flags: HeaderFlag.RESPONSE }, [
    { ...saInit, proposals: [saInit.type === PayloadType.SA ? saInit.proposals[0]! : (undefined as never)] },
    { type: PayloadType.KE, group: KeGroup.CURVE25519, data: seq(2, 32) },
    { type: PayloadType.NONCE, data: seq(0xb0, 32) },
    { type: PayloadType.CERTREQ, encoding: CertEncoding.X509_SIGNATURE, data: seq(0x90, 20) },
    notify(NotifyType.MULTIPLE_AUTH_SUPPORTED),
  ]),
  // IKE_AUTH content, unencrypted (as the decrypted view), every payload type
  encodeMessage({ ...header, exchangeType: ExchangeType.IKE_AUTH, messageId: 1 }, authInner),
  // INFORMATIONAL content with deletes
  encodeMessage({ ...header, exchangeType: ExchangeType.INFORMATIONAL, messageId: 7 }, infoInner),
  // IKE_AUTH, encrypted, with an unencrypted notify before SK
  encodeSkMessage({ ...header, exchangeType: ExchangeType.IKE_AUTH, messageId: 1 }, PayloadType.IDi, 80, () => seq(0x5a, 80), [
    notify(NotifyType.COOKIE, seq(0, 8)),
  ]),
  // CREATE_CHILD_SA, encrypted
  encodeSkMessage({ ...header, exchangeType: ExchangeType.CREATE_CHILD_SA, messageId: 2, flags: HeaderFlag.RESPONSE }, PayloadType.SA, 120, () => seq(0x10, 120)),
  // one IKE fragment
  encodeSkfMessage({ ...header, exchangeType: ExchangeType.IKE_AUTH, messageId: 1 }, PayloadType.IDi, 1, 3, 60, () => seq(0x33, 60)),
];

const chainSeeds: Array<{ firstType: number; bytes: Uint8Array }> = [encodePayloadChain(authInner), encodePayloadChain(infoInner)];

// ------------------------------------------------------------------ length-field map of each seed

/** Offsets of 16-bit length fields (generic headers, proposals, transforms, selectors, CP attributes) found by walking a valid chain. */
function lengthFields(buf: Uint8Array, firstType: number, start: number): number[] {
  const r16 = (o: number): number => (buf[o]! << 8) | buf[o + 1]!;
  const out: number[] = [];
  let type = firstType;
  let off = start;
  while (type !== 0 && off + 4 <= buf.length) {
    out.push(off + 2);
    const len = r16(off + 2);
    const body = off + 4;
    if (type === PayloadType.SA) {
      for (let p = body; p < off + len; p += r16(p + 2)) {
        out.push(p + 2);
        for (let t = p + 8 + buf[p + 6]!, i = 0; i < buf[p + 7]!; i++, t += r16(t + 2)) out.push(t + 2);
      }
    } else if (type === PayloadType.TSi || type === PayloadType.TSr) {
      for (let s = body + 4, i = 0; i < buf[body]!; i++, s += r16(s + 2)) out.push(s + 2);
    } else if (type === PayloadType.CP) {
      for (let a = body + 4; a < off + len; a += 4 + r16(a + 2)) out.push(a + 2);
    } else if (type === PayloadType.SK || type === PayloadType.SKF) {
      break;
    }
    type = buf[off]!;
    off += len;
  }
  return out;
}

interface Seed {
  bytes: Uint8Array;
  lengths: number[];
  /** First payload type for chain seeds; undefined for messages. */
  firstType?: number;
}

const seeds: Seed[] = [
  ...messageSeeds.map((b) => ({ bytes: b, lengths: lengthFields(b, b[16]!, 28) })),
  ...chainSeeds.map((c) => ({ bytes: c.bytes, lengths: lengthFields(c.bytes, c.firstType, 0), firstType: c.firstType })),
];

// ------------------------------------------------------------------ mutations

const PAYLOAD_TYPES = [0, 1, 32, ...Object.values(PayloadType), 49, 52, 54, 99, 200, 255];
const INTERESTING = [0, 1, 2, 3, 4, 7, 8, 0x10, 0x20, 0x21, 0x28, 0x29, 0x2e, 0x35, 0x3f, 0x40, 0x7f, 0x80, 0xfe, 0xff];

function mutate(seed: Seed): Uint8Array {
  let b = seed.bytes.slice();
  const rounds = 1 + int(3);
  for (let r = 0; r < rounds; r++) {
    switch (int(9)) {
      case 0: // bit flips
        for (let i = 1 + int(4); i > 0 && b.length; i--) b[int(b.length)] ^= 1 << int(8);
        break;
      case 1: // byte sets
        for (let i = 1 + int(3); i > 0 && b.length; i--) b[int(b.length)] = chance(0.5) ? pick(INTERESTING) : int(256);
        break;
      case 2: // truncation
        b = b.subarray(0, int(b.length + 1)).slice();
        break;
      case 3: {
        // extension
        const extra = seq(int(256), 1 + int(24));
        const out = new Uint8Array(b.length + extra.length);
        out.set(b);
        out.set(extra, b.length);
        b = out;
        break;
      }
      case 4:
      case 5: {
        // length-field edits: a known 16-bit length, or the header's 32-bit Length
        if (seed.firstType === undefined && chance(0.2) && b.length >= 28) {
          const v = pick([0, 27, 28, b.length - 1, b.length + 1, int(0x10000), 0xffffffff]) >>> 0;
          b[24] = v >>> 24;
          b[25] = (v >>> 16) & 0xff;
          b[26] = (v >>> 8) & 0xff;
          b[27] = v & 0xff;
          break;
        }
        const at = pick(seed.lengths);
        if (at === undefined || at + 1 >= b.length) break;
        const old = (b[at]! << 8) | b[at + 1]!;
        const v = pick([0, 1, 3, 4, 7, 8, old - 1, old + 1, old - 4, old + 4, old * 2, int(0x10000), 0xffff]) & 0xffff;
        b[at] = v >> 8;
        b[at + 1] = v & 0xff;
        break;
      }
      case 6: {
        // splice: a slice of another seed (or of itself) inserted, replacing a range
        const donor = pick(seeds).bytes;
        const from = int(donor.length);
        const chunk = donor.subarray(from, from + 1 + int(40));
        const at = int(b.length + 1);
        const cut = int(Math.min(40, b.length - at) + 1);
        const out = new Uint8Array(b.length - cut + chunk.length);
        out.set(b.subarray(0, at));
        out.set(chunk, at);
        out.set(b.subarray(at + cut), at + chunk.length);
        b = out;
        break;
      }
      case 7: {
        // generic header edits: Next Payload type (two bytes before a length) and the critical bit / RESERVED
        const at = pick(seed.lengths);
        if (at === undefined || at + 1 >= b.length) break;
        if (chance(0.5)) b[at - 2] = chance(0.5) ? pick(PAYLOAD_TYPES) : int(256);
        b[at - 1] ^= pick([0x80, 0x80, 0x01, 0x7f]);
        break;
      }
      default: {
        // delete or duplicate a range
        const at = int(b.length + 1);
        const n = 1 + int(16);
        if (chance(0.5)) {
          const out = new Uint8Array(Math.max(0, b.length - Math.min(n, b.length - at)));
          out.set(b.subarray(0, at));
          out.set(b.subarray(at + n), at);
          b = out;
        } else {
          const dup = b.slice(at, at + n);
          const out = new Uint8Array(b.length + dup.length);
          out.set(b.subarray(0, at));
          out.set(dup, at);
          out.set(b.subarray(at), at + dup.length);
          b = out;
        }
      }
    }
  }
  // Half of the message mutants get a consistent header Length, so decoding
  // gets past the header checks and into the payloads.
  if (seed.firstType === undefined && b.length >= 28 && chance(0.5)) {
    const v = b.length;
    b[24] = v >>> 24;
    b[25] = (v >>> 16) & 0xff;
    b[26] = (v >>> 8) & 0xff;
    b[27] = v & 0xff;
  }
  return b;
}

// ------------------------------------------------------------------ checks

/** Path of the first difference between two decoded structures (byte arrays by content, `aad` ignored), or undefined. */
function diff(a: unknown, b: unknown, path = '$'): string | undefined {
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.length !== b.length) return path;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `${path}[${i}]`;
    return undefined;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return `${path}.length`;
    for (let i = 0; i < a.length; i++) {
      const d = diff(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    const keys = (o: object): string[] => Object.keys(o).filter((k) => k !== 'aad' && (o as Record<string, unknown>)[k] !== undefined).sort();
    const ka = keys(a);
    const kb = keys(b);
    if (ka.join() !== kb.join()) return `${path}{${ka}} vs {${kb}}`;
    for (const k of ka) {
      const d = diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return Object.is(a, b) ? undefined : path;
}

const ANSWERABLE = new Set<number>([0, NotifyType.INVALID_SYNTAX, NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, NotifyType.INVALID_MAJOR_VERSION]);

/** Shape of a failure: a WireError with a known code and a notify the engine can send. */
function checkError(r: WireResult<unknown>): string | undefined {
  if (r.ok) return undefined;
  const e = r.error;
  if (!isWireError(e)) return `not a WireError: ${JSON.stringify(e)}`;
  if (!WIRE_ERROR_CODES.includes(e.code)) return `unknown code ${e.code}`;
  if (!ANSWERABLE.has(e.notify)) return `unexpected notify ${e.notify}`;
  if (e.code === 'UNSUPPORTED_CRITICAL_PAYLOAD' && (e.data?.length !== 1 || e.data[0] !== e.payloadType)) return 'critical payload error without its type as data';
  return undefined;
}

/** A decoded message re-encodes, decodes to the same structure, and its encoding is a fixed point. */
function checkMessageRoundTrip(buf: Uint8Array): string | undefined {
  const first = decodeMessage(buf);
  if (!first.ok) return undefined;
  const { header: h, payloads } = first.value;
  const last = payloads.at(-1);
  if (last && (last.type === PayloadType.SK || last.type === PayloadType.SKF)) {
    // The AAD is the message up to the encrypted body, which runs to the end.
    if (last.aad.length + last.body.length !== h.length) return 'SK aad + body do not cover the message';
    if (diff(last.aad, buf.subarray(0, last.aad.length))) return 'SK aad differs from the message prefix';
  }
  const { nextPayload: _n, length: _l, ...rest } = h;
  const again = encodeMessage(rest, payloads);
  if (again.length !== buf.length) return `re-encoded length ${again.length} != ${buf.length}`;
  const second = decodeMessage(again);
  if (!second.ok) return `re-encoding does not decode: ${second.error.code} ${second.error.message}`;
  const d = diff(first.value, second.value);
  if (d) return `decode(encode(decode(x))) differs at ${d}`;
  const third = encodeMessage(rest, second.value.payloads);
  if (diff(third, again)) return 'encoding is not a fixed point';
  return undefined;
}

function checkChainRoundTrip(r: WireResult<Payload[]>, firstType: number, allowEncrypted: boolean): string | undefined {
  if (!r.ok) return undefined;
  const enc = encodePayloadChain(r.value);
  if (r.value.length > 0 && enc.firstType !== firstType) return `first type ${enc.firstType} != ${firstType}`;
  const again = decodePayloadChain(enc.firstType, enc.bytes, 0, enc.bytes.length, { allowEncrypted });
  if (!again.ok) return `re-encoded chain does not decode: ${again.error.code} ${again.error.message}`;
  const d = diff(r.value, again.value);
  return d ? `chain differs at ${d}` : undefined;
}

// ------------------------------------------------------------------ the run

describe('wire decoder under mutation', () => {
  it(`${ITERATIONS} mutants: no exception, typed errors, stable round trips`, () => {
    const failures: string[] = [];
    const codes = new Map<WireErrorCode | 'ok', number>();
    const count = (r: WireResult<unknown>): void => {
      const k = r.ok ? 'ok' : r.error.code;
      codes.set(k, (codes.get(k) ?? 0) + 1);
    };
    let messagesDecoded = 0;
    let encryptedDecoded = 0;
    const started = performance.now();

    for (let i = 0; i < ITERATIONS && failures.length < 5; i++) {
      const seed = pick(seeds);
      const buf = mutate(seed);
      const note = (what: string): void => {
        failures.push(`iteration ${i}: ${what}; input ${Buffer.from(buf).toString('hex')}`);
      };
      try {
        const results: Array<[WireResult<Payload[] | unknown>, string]> = [];
        results.push([decodeHeader(buf), 'decodeHeader']);
        const m = decodeMessage(buf);
        results.push([m, 'decodeMessage']);
        if (m.ok) {
          messagesDecoded++;
          const t = m.value.payloads.at(-1)?.type;
          if (t === PayloadType.SK || t === PayloadType.SKF) encryptedDecoded++;
        }
        const roundTrip = checkMessageRoundTrip(buf);
        if (roundTrip) note(roundTrip);

        // The same bytes as a bare chain: the outer chain (after a header) and as decrypted plaintext.
        const outerFirst = buf.length > 16 ? buf[16]! : 0;
        const outerStart = Math.min(28, buf.length);
        const outer = decodePayloadChain(outerFirst, buf, outerStart, buf.length, { allowEncrypted: true });
        results.push([outer, 'decodePayloadChain(outer)']);
        const outerTrip = checkChainRoundTrip(outer, outerFirst, true);
        if (outerTrip) note(`outer ${outerTrip}`);

        const innerFirst = seed.firstType !== undefined && chance(0.8) ? seed.firstType : int(256);
        const inner = decodePayloadChain(innerFirst, buf);
        results.push([inner, 'decodePayloadChain(inner)']);
        const innerTrip = checkChainRoundTrip(inner, innerFirst, false);
        if (innerTrip) note(`inner ${innerTrip}`);

        for (const [r, what] of results) {
          const bad = checkError(r);
          if (bad) note(`${what}: ${bad}`);
          count(r);
        }
      } catch (e) {
        note(`exception ${(e as Error).stack ?? String(e)}`);
      }
    }
    const elapsed = performance.now() - started;

    expect(failures).toEqual([]);
    // The mutants reached deep: many decode, encrypted ones too, and every error code shows up.
    expect(messagesDecoded).toBeGreaterThan(ITERATIONS / 20);
    expect(encryptedDecoded).toBeGreaterThan(ITERATIONS / 200);
    for (const code of WIRE_ERROR_CODES) expect(codes.get(code) ?? 0, `error code ${code} never produced`).toBeGreaterThan(0);
    expect(elapsed).toBeLessThan(30_000);
    console.log(
      `wire fuzz: ${ITERATIONS} mutants in ${(elapsed / 1000).toFixed(1)} s, ${messagesDecoded} decoded as messages (${encryptedDecoded} with SK/SKF); results: ` +
        [...codes].map(([k, v]) => `${k}=${v}`).join(' '),
    );
  });
});
