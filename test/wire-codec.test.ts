// IKEv2 wire codec (control/wire): round trips for every payload type, the
// header, SK/SKF framing, critical-bit handling, a table of malformed inputs
// with the error each must produce, a hand-written IKE_SA_INIT checked byte by
// byte, and the address helpers.
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
import { decodeHeader, encodeHeader, IKE_HEADER_LENGTH, isInitiatorFlag, isResponse, type IkeHeader } from '../control/wire/header.js';
import {
  decodeMessage,
  decodePayloadChain,
  encodeMessage,
  encodePayloadChain,
  encodeSkfMessage,
  encodeSkMessage,
} from '../control/wire/message.js';
import {
  findNotifies,
  findNotify,
  findPayload,
  findPayloads,
  type Payload,
  type SkPayload,
  type SkfPayload,
  type TsPayload,
} from '../control/wire/payloads.js';
import { isWireError, type WireError, type WireErrorCode, type WireResult } from '../control/wire/result.js';
import { bytesToIp, cidrToRange, ipToBytes, rangeToString } from '../control/wire/ip.js';

// ------------------------------------------------------------------ helpers

const bytes = (...xs: number[]): Uint8Array => Uint8Array.from(xs);
const seq = (start: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
const fromHex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const hexSeq = (start: number, n: number): string => toHex(seq(start, n));
const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const u32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const ip = (s: string): Uint8Array => {
  const b = ipToBytes(s);
  if (!b) throw new Error(`bad address in test: ${s}`);
  return b;
};

function expectOk<T>(r: WireResult<T>): T {
  if (!r.ok) throw new Error(`expected success, got ${r.error.code}: ${r.error.message}`);
  return r.value;
}

function errorOf<T>(r: WireResult<T>): WireError {
  if (r.ok) throw new Error('expected a WireError, got success');
  return r.error;
}

const BASE_HEADER: Omit<IkeHeader, 'nextPayload' | 'length'> = {
  spiI: fromHex('1a2b3c4d5e6f7081'),
  spiR: fromHex('0000000000000000'),
  version: 0x20,
  exchangeType: ExchangeType.IKE_SA_INIT,
  flags: HeaderFlag.INITIATOR,
  messageId: 0,
};

/** Drop `aad` (meaningful on decode only) so decoded SK/SKF payloads compare with their input. */
function withoutAad(ps: readonly Payload[]): unknown[] {
  return ps.map((p) => {
    if (p.type !== PayloadType.SK && p.type !== PayloadType.SKF) return p;
    const { aad: _aad, ...rest } = p;
    return rest;
  });
}

// Realistic payloads of every type.

const saIke: Payload = {
  type: PayloadType.SA,
  proposals: [
    {
      number: 1,
      protocol: ProtocolId.IKE,
      spi: new Uint8Array(0),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 128 },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256 },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_384 },
        { type: TransformType.KE, id: KeGroup.CURVE25519 },
        { type: TransformType.KE, id: KeGroup.ECP_256 },
      ],
    },
    {
      number: 2,
      protocol: ProtocolId.IKE,
      spi: new Uint8Array(0),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_CBC, keyLength: 256 },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256 },
        { type: TransformType.INTEG, id: IntegId.HMAC_SHA2_256_128 },
        { type: TransformType.KE, id: KeGroup.MODP_2048 },
      ],
    },
    {
      number: 3,
      protocol: ProtocolId.IKE,
      spi: new Uint8Array(0),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.CHACHA20_POLY1305 },
        { type: TransformType.PRF, id: PrfId.HMAC_SHA2_512 },
        // A TLV attribute (type 200) and a TV one (type 201) besides the key length.
        { type: TransformType.KE, id: KeGroup.CURVE448, attributes: [{ type: 200, value: bytes(1, 2, 3) }, { type: 201, value: 7 }] },
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
      spi: fromHex('c0ffee01'),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
        { type: TransformType.ESN, id: EsnId.YES },
        { type: TransformType.ESN, id: EsnId.NO },
      ],
    },
    {
      number: 2,
      protocol: ProtocolId.ESP,
      spi: fromHex('c0ffee01'),
      transforms: [
        { type: TransformType.ENCR, id: EncrId.AES_CBC, keyLength: 128 },
        { type: TransformType.INTEG, id: IntegId.HMAC_SHA2_256_128 },
        { type: TransformType.ESN, id: EsnId.NO },
      ],
    },
  ],
};

const tsi: TsPayload = {
  type: PayloadType.TSi,
  selectors: [
    { tsType: TsType.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: ip('10.1.0.0'), endAddress: ip('10.1.0.255') },
    { tsType: TsType.IPV6_ADDR_RANGE, ipProtocol: 17, startPort: 500, endPort: 500, startAddress: ip('2001:db8::'), endAddress: ip('2001:db8::ffff') },
  ],
};

const tsr: Payload = {
  type: PayloadType.TSr,
  selectors: [
    { tsType: TsType.IPV6_ADDR_RANGE, ipProtocol: 6, startPort: 443, endPort: 443, startAddress: ip('fd00::1'), endAddress: ip('fd00::1') },
    { tsType: TsType.IPV4_ADDR_RANGE, ipProtocol: 1, startPort: 0x0800, endPort: 0x08ff, startAddress: ip('192.0.2.1'), endAddress: ip('192.0.2.9') },
    { tsType: TsType.IPV4_ADDR_RANGE, ipProtocol: 0, startPort: 65535, endPort: 0, startAddress: ip('0.0.0.0'), endAddress: ip('255.255.255.255') },
  ],
};

const everyPayload: Array<[string, Payload]> = [
  ['SA (IKE, 3 proposals, key lengths, extra TLV/TV attributes)', saIke],
  ['SA (ESP, SPI, ESN)', saEsp],
  ['KE (Curve25519)', { type: PayloadType.KE, group: KeGroup.CURVE25519, data: seq(0x40, 32) }],
  ['IDi (FQDN)', { type: PayloadType.IDi, idType: IdType.FQDN, data: new TextEncoder().encode('client.example.org') }],
  ['IDr (IPv6 address)', { type: PayloadType.IDr, idType: IdType.IPV6_ADDR, data: ip('2001:db8::1') }],
  ['CERT (X.509)', { type: PayloadType.CERT, encoding: CertEncoding.X509_SIGNATURE, data: seq(0x30, 300) }],
  ['CERTREQ (two CA hashes)', { type: PayloadType.CERTREQ, encoding: CertEncoding.X509_SIGNATURE, data: seq(0x90, 40) }],
  ['AUTH (PSK)', { type: PayloadType.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: seq(0x11, 32) }],
  ['AUTH (digital signature)', { type: PayloadType.AUTH, method: AuthMethod.DIGITAL_SIGNATURE, data: seq(0x01, 80) }],
  ['Nonce (32 bytes)', { type: PayloadType.NONCE, data: seq(0xa0, 32) }],
  ['Notify without SPI', { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.NAT_DETECTION_SOURCE_IP, data: seq(0x55, 20) }],
  ['Notify with ESP SPI (REKEY_SA)', { type: PayloadType.NOTIFY, protocol: ProtocolId.ESP, spi: fromHex('12345678'), notifyType: NotifyType.REKEY_SA, data: new Uint8Array(0) }],
  ['Notify with IKE SPI', { type: PayloadType.NOTIFY, protocol: ProtocolId.IKE, spi: seq(1, 8), notifyType: NotifyType.CLONE_IKE_SA, data: bytes(9) }],
  ['Delete (IKE SA)', { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }],
  ['Delete (three ESP SPIs)', { type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: [fromHex('00000101'), fromHex('00000202'), fromHex('cafebabe')] }],
  ['Vendor ID', { type: PayloadType.VENDOR_ID, data: new TextEncoder().encode('ikeclone') }],
  ['TSi (IPv4 + IPv6)', tsi],
  ['TSr (IPv6, ICMP type range, OPAQUE ports)', tsr],
  ['CP (request with attributes)', {
    type: PayloadType.CP,
    cfgType: CfgType.CFG_REQUEST,
    attributes: [
      { type: CfgAttr.INTERNAL_IP4_ADDRESS, value: new Uint8Array(0) },
      { type: CfgAttr.INTERNAL_IP4_DNS, value: new Uint8Array(0) },
      { type: CfgAttr.INTERNAL_IP6_ADDRESS, value: new Uint8Array(0) },
    ],
  }],
  ['CP (reply)', {
    type: PayloadType.CP,
    cfgType: CfgType.CFG_REPLY,
    attributes: [
      { type: CfgAttr.INTERNAL_IP4_ADDRESS, value: ip('10.9.0.2') },
      { type: CfgAttr.INTERNAL_IP4_NETMASK, value: ip('255.255.255.0') },
      { type: CfgAttr.INTERNAL_IP6_ADDRESS, value: Uint8Array.from([...ip('fd00::2'), 64]) },
    ],
  }],
  ['EAP (identity request)', { type: PayloadType.EAP, data: bytes(1, 7, ...u16(5), 1) }],
  ['SK', { type: PayloadType.SK, innerType: PayloadType.IDi, body: seq(0x70, 64), aad: new Uint8Array(0) }],
  ['SKF', { type: PayloadType.SKF, innerType: PayloadType.IDi, fragmentNumber: 1, totalFragments: 3, body: seq(0x20, 48), aad: new Uint8Array(0) }],
  ['unknown type 200, non-critical', { type: 200, critical: false, data: bytes(1, 2, 3, 4, 5) }],
  ['Notify with the critical bit set', { type: PayloadType.NOTIFY, critical: true, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.INITIAL_CONTACT, data: new Uint8Array(0) }],
];

// ------------------------------------------------------------------ header

describe('IKE header (RFC 7296 §3.1)', () => {
  const header: IkeHeader = { ...BASE_HEADER, spiR: seq(0xe0, 8), nextPayload: PayloadType.SK, flags: HeaderFlag.RESPONSE, messageId: 0xfffffffe, length: 1234 };

  it('round-trips every field, big-endian at the RFC offsets', () => {
    const b = encodeHeader(header);
    expect(b.length).toBe(IKE_HEADER_LENGTH);
    expect(toHex(b)).toBe('1a2b3c4d5e6f7081' + 'e0e1e2e3e4e5e6e7' + '2e' + '20' + '22' + '20' + 'fffffffe' + '000004d2');
    const padded = new Uint8Array(1234);
    padded.set(b);
    expect(expectOk(decodeHeader(padded))).toEqual(header);
  });

  it('reports the R and I flags', () => {
    expect(isResponse({ flags: HeaderFlag.RESPONSE })).toBe(true);
    expect(isResponse({ flags: HeaderFlag.INITIATOR })).toBe(false);
    expect(isInitiatorFlag({ flags: HeaderFlag.INITIATOR | HeaderFlag.RESPONSE })).toBe(true);
    expect(isInitiatorFlag({ flags: 0 })).toBe(false);
  });

  it('ignores reserved flag bits on receipt and clears them on send; keeps the minor version', () => {
    const b = encodeHeader({ ...header, length: 28 });
    b[19] = 0xff;
    b[17] = 0x27;
    const h = expectOk(decodeHeader(b));
    expect(h.flags).toBe(HeaderFlag.INITIATOR | HeaderFlag.VERSION | HeaderFlag.RESPONSE);
    expect(h.version).toBe(0x27);
    expect(encodeHeader({ ...header, flags: 0xff })[19]).toBe(0x38);
  });

  it('rejects a short buffer, a wrong major version and bad Length fields', () => {
    expect(errorOf(decodeHeader(new Uint8Array(27)))).toMatchObject({ code: 'TRUNCATED', notify: 0 });
    const v1 = encodeHeader({ ...header, version: 0x10, length: 28 });
    expect(errorOf(decodeHeader(v1))).toMatchObject({ code: 'INVALID_MAJOR_VERSION', notify: NotifyType.INVALID_MAJOR_VERSION, offset: 17 });
    const small = encodeHeader({ ...header, length: 28 });
    small[27] = 27;
    expect(errorOf(decodeHeader(small))).toMatchObject({ code: 'BAD_LENGTH', notify: NotifyType.INVALID_SYNTAX });
    const long = encodeHeader({ ...header, length: 29 });
    expect(errorOf(decodeHeader(long))).toMatchObject({ code: 'TRUNCATED', notify: NotifyType.INVALID_SYNTAX });
  });

  it('throws on header values that cannot be encoded', () => {
    expect(() => encodeHeader({ ...header, spiI: new Uint8Array(7) })).toThrow(RangeError);
    expect(() => encodeHeader({ ...header, messageId: 2 ** 32 })).toThrow(RangeError);
    expect(() => encodeHeader({ ...header, exchangeType: 256 })).toThrow(RangeError);
    expect(() => encodeHeader({ ...header, length: 27 })).toThrow(RangeError);
  });
});

// ------------------------------------------------------------------ payload round trips

describe('payload round trips (RFC 7296 §3.3–§3.16, RFC 7383 §2.5)', () => {
  it.each(everyPayload)('%s', (_name, payload) => {
    const msg = encodeMessage(BASE_HEADER, [payload]);
    const m = expectOk(decodeMessage(msg));
    expect(m.header.nextPayload).toBe(payload.type);
    expect(m.header.length).toBe(msg.length);
    expect(withoutAad(m.payloads)).toEqual(withoutAad([payload]));
    // Re-encoding the decoded payload gives the same bytes.
    expect(toHex(encodeMessage(BASE_HEADER, m.payloads))).toBe(toHex(msg));
  });

  it('every payload type in one chain, in both directions', () => {
    const plain = everyPayload.map(([, p]) => p).filter((p) => p.type !== PayloadType.SK && p.type !== PayloadType.SKF);
    const chain = encodePayloadChain(plain);
    expect(chain.firstType).toBe(PayloadType.SA);
    const decoded = expectOk(decodePayloadChain(chain.firstType, chain.bytes));
    expect(decoded).toEqual(plain);
    // As an outer chain followed by an SK payload.
    const sk: SkPayload = { type: PayloadType.SK, innerType: PayloadType.AUTH, body: seq(0, 40), aad: new Uint8Array(0) };
    const msg = encodeMessage(BASE_HEADER, [...plain, sk]);
    const m = expectOk(decodeMessage(msg));
    expect(withoutAad(m.payloads)).toEqual(withoutAad([...plain, sk]));
    const got = m.payloads.at(-1) as SkPayload;
    expect(toHex(got.aad)).toBe(toHex(msg.subarray(0, msg.length - 40)));
  });

  it('decodes a Transform Key Length only from the TV form; a TLV attribute 14 stays an attribute', () => {
    // Proposal: #1 ESP, SPI 4 bytes, 1 transform ENCR AES-CBC with a TLV attribute 14 (2 bytes).
    const body = [0, 0, ...u16(8 + 4 + 14), 1, 3, 4, 1, 1, 2, 3, 4, 0, 0, ...u16(14), 1, 0, ...u16(12), 0x00, 14, ...u16(2), 0x01, 0x00];
    const ps = expectOk(decodePayloadChain(PayloadType.SA, Uint8Array.from([0, 0, ...u16(4 + body.length), ...body])));
    const t = (ps[0] as { proposals: Array<{ transforms: unknown[] }> }).proposals[0]!.transforms[0];
    expect(t).toEqual({ type: 1, id: 12, attributes: [{ type: 14, value: bytes(1, 0) }] });
  });

  it('writes RESERVED fields as zero and ignores them on receipt', () => {
    const ke: Payload = { type: PayloadType.KE, group: 31, data: seq(1, 32) };
    const msg = encodeMessage(BASE_HEADER, [ke, { type: PayloadType.IDi, idType: IdType.FQDN, data: bytes(0x61) }]);
    // Generic header RESERVED (7 bits), KE RESERVED(2), ID RESERVED(3).
    expect([msg[29], msg[34], msg[35]]).toEqual([0, 0, 0]);
    const idAt = 28 + 40;
    expect([msg[idAt + 5], msg[idAt + 6], msg[idAt + 7]]).toEqual([0, 0, 0]);
    const dirty = msg.slice();
    dirty[29] = 0x7f;
    dirty[34] = 0xff;
    dirty[35] = 0xff;
    dirty[idAt + 5] = 0xaa;
    dirty[idAt + 7] = 0xbb;
    expect(expectOk(decodeMessage(dirty)).payloads).toEqual(expectOk(decodeMessage(msg)).payloads);
  });

  it('decoded byte fields alias the input buffer (no copies)', () => {
    const msg = encodeMessage(BASE_HEADER, [{ type: PayloadType.NONCE, data: seq(0xa0, 32) }]);
    const m = expectOk(decodeMessage(msg));
    const nonce = findPayload(m.payloads, PayloadType.NONCE)!;
    expect(nonce.data.buffer).toBe(msg.buffer);
    expect(nonce.data.byteOffset).toBe(32);
    expect(m.header.spiI.buffer).toBe(msg.buffer);
  });

  it('throws on payloads that cannot be encoded (programmer errors)', () => {
    const sa = (spi: Uint8Array): Payload => ({ type: PayloadType.SA, proposals: [{ number: 1, protocol: 3, spi, transforms: [{ type: 1, id: 20 }] }] });
    expect(() => encodePayloadChain([sa(new Uint8Array(256))])).toThrow(RangeError);
    expect(() => encodePayloadChain([{ type: PayloadType.SA, proposals: [] }])).toThrow(RangeError);
    expect(() => encodePayloadChain([{ type: PayloadType.SA, proposals: [{ number: 1, protocol: 3, spi: new Uint8Array(4), transforms: [{ type: 1, id: 20, keyLength: 70000 }] }] }])).toThrow(RangeError);
    expect(() => encodePayloadChain([{ type: PayloadType.NONCE, data: new Uint8Array(65532) }])).toThrow(RangeError);
    expect(() => encodePayloadChain([{ type: PayloadType.NOTIFY, protocol: 3, spi: new Uint8Array(300), notifyType: 1, data: new Uint8Array(0) }])).toThrow(RangeError);
    expect(() => encodePayloadChain([{ type: PayloadType.DELETE, protocol: 3, spiSize: 4, spis: [new Uint8Array(3)] }])).toThrow(RangeError);
    expect(() => encodePayloadChain([{ type: PayloadType.TSi, selectors: [{ ...tsi.selectors[0]!, startAddress: new Uint8Array(16) }] }])).toThrow(RangeError);
    const sk: Payload = { type: PayloadType.SK, innerType: 35, body: new Uint8Array(16), aad: new Uint8Array(0) };
    expect(() => encodePayloadChain([sk, { type: PayloadType.NONCE, data: seq(0, 32) }])).toThrow(/last payload/);
  });
});

// ------------------------------------------------------------------ finders

describe('payload finders', () => {
  const ps: Payload[] = [
    { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.ADDITIONAL_IP4_ADDRESS, data: ip('192.0.2.1') },
    { type: PayloadType.IDi, idType: IdType.FQDN, data: bytes(0x61) },
    { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.MOBIKE_SUPPORTED, data: new Uint8Array(0) },
    { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.ADDITIONAL_IP4_ADDRESS, data: ip('192.0.2.2') },
    { type: 250, critical: false, data: new Uint8Array(0) },
  ];

  it('find notifies by type, payloads by type', () => {
    expect(findNotify(ps, NotifyType.MOBIKE_SUPPORTED)).toBe(ps[2]);
    expect(findNotify(ps, NotifyType.CLONE_IKE_SA)).toBeUndefined();
    expect(findNotifies(ps, NotifyType.ADDITIONAL_IP4_ADDRESS).map((n) => bytesToIp(n.data))).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(findPayload(ps, PayloadType.IDi)?.idType).toBe(IdType.FQDN);
    expect(findPayload(ps, PayloadType.IDr)).toBeUndefined();
    expect(findPayloads(ps, PayloadType.NOTIFY)).toHaveLength(3);
    expect(findPayload(ps, 250)?.data).toHaveLength(0);
  });
});

// ------------------------------------------------------------------ SK / SKF framing

describe('Encrypted payload framing (RFC 7296 §3.14, RFC 7383 §2.5)', () => {
  const authHeader = { ...BASE_HEADER, spiR: seq(0x80, 8), exchangeType: ExchangeType.IKE_AUTH, messageId: 1 };

  it('encodeSkMessage seals over the final AAD; decodeMessage gives back body and AAD', () => {
    const body = seq(0x33, 100);
    let seen: Uint8Array | undefined;
    const msg = encodeSkMessage(authHeader, PayloadType.IDi, body.length, (aad) => {
      seen = aad.slice();
      return body;
    });
    expect(msg.length).toBe(28 + 4 + 100);
    expect(seen).toBeDefined();
    expect(seen!.length).toBe(32);
    // Lengths are final when seal runs: header Length and SK Payload Length.
    expect(seen!.subarray(24, 28)).toEqual(bytes(...u32(132)));
    expect(seen!.subarray(28, 32)).toEqual(bytes(PayloadType.IDi, 0, ...u16(104)));
    expect(seen![16]).toBe(PayloadType.SK);
    const m = expectOk(decodeMessage(msg));
    expect(m.payloads).toHaveLength(1);
    const sk = m.payloads[0] as SkPayload;
    expect(sk.type).toBe(PayloadType.SK);
    expect(sk.innerType).toBe(PayloadType.IDi);
    expect(sk.body).toEqual(body);
    expect(sk.aad).toEqual(msg.subarray(0, 32));
    expect(sk.aad).toEqual(seen);
  });

  it('the inner plaintext chain decodes with decodePayloadChain(innerType, ...)', () => {
    const inner: Payload[] = [
      { type: PayloadType.IDi, idType: IdType.FQDN, data: new TextEncoder().encode('a.example') },
      { type: PayloadType.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: seq(0, 32) },
      saEsp,
      tsi,
      tsr,
      { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.CLONE_IKE_SA_SUPPORTED, data: new Uint8Array(0) },
    ];
    const { firstType, bytes: plain } = encodePayloadChain(inner);
    const msg = encodeSkMessage(authHeader, firstType, plain.length, () => plain); // identity "cipher"
    const sk = expectOk(decodeMessage(msg)).payloads[0] as SkPayload;
    expect(expectOk(decodePayloadChain(sk.innerType, sk.body))).toEqual(inner);
  });

  it('an Encrypted payload inside decrypted plaintext is rejected unless allowed', () => {
    const { firstType, bytes: plain } = encodePayloadChain([{ type: PayloadType.SK, innerType: 0, body: seq(0, 8), aad: new Uint8Array(0) }]);
    const r = decodePayloadChain(firstType, plain);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatchObject({ code: 'INVALID_SYNTAX', payloadType: PayloadType.SK, notify: NotifyType.INVALID_SYNTAX });
    expect(decodePayloadChain(firstType, plain, 0, plain.length, { allowEncrypted: true }).ok).toBe(true);
  });

  it('unencrypted payloads may precede SK and are covered by the AAD', () => {
    const lead: Payload = { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.COOKIE, data: seq(0, 16) };
    const msg = encodeSkMessage(authHeader, PayloadType.AUTH, 24, () => seq(9, 24), [lead]);
    const m = expectOk(decodeMessage(msg));
    expect(m.header.nextPayload).toBe(PayloadType.NOTIFY);
    expect(m.payloads[0]).toEqual(lead);
    const sk = m.payloads[1] as SkPayload;
    expect(sk.aad.length).toBe(28 + 24 + 4);
    expect(msg[28]).toBe(PayloadType.SK); // the notify's Next Payload names SK
  });

  it('encodeSkfMessage frames one fragment; Next Payload only in fragment 1', () => {
    const first = encodeSkfMessage(authHeader, PayloadType.IDi, 1, 2, 30, (aad) => {
      expect(aad.length).toBe(36);
      return seq(1, 30);
    });
    const second = encodeSkfMessage(authHeader, PayloadType.IDi, 2, 2, 10, () => seq(2, 10));
    const f1 = expectOk(decodeMessage(first)).payloads[0] as SkfPayload;
    const f2 = expectOk(decodeMessage(second)).payloads[0] as SkfPayload;
    expect(f1).toMatchObject({ type: PayloadType.SKF, innerType: PayloadType.IDi, fragmentNumber: 1, totalFragments: 2 });
    expect(f2).toMatchObject({ type: PayloadType.SKF, innerType: 0, fragmentNumber: 2, totalFragments: 2 });
    expect(f1.body).toEqual(seq(1, 30));
    expect(f1.aad).toEqual(first.subarray(0, 36));
    expect(toHex(first.subarray(28, 36))).toBe('2300' + '0026' + '0001' + '0002');
  });

  it('throws when seal returns the wrong length', () => {
    expect(() => encodeSkMessage(authHeader, PayloadType.IDi, 20, () => new Uint8Array(19))).toThrow(/expected 20/);
  });
});

// ------------------------------------------------------------------ critical bit

describe('unknown payloads and the critical bit (RFC 7296 §3.2)', () => {
  const nonce = { type: PayloadType.NONCE, data: seq(0, 32) } as const;

  /** Header + Nonce + an unknown payload (type 99) + a Notify, with the unknown payload's C bit as given. */
  function withUnknown(critical: boolean): Uint8Array {
    const notify: Payload = { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.INITIAL_CONTACT, data: new Uint8Array(0) };
    const msg = encodeMessage(BASE_HEADER, [nonce, { type: 99, critical: false, data: bytes(0xde, 0xad) }, notify]);
    if (critical) msg[28 + 36 + 1] = 0x80;
    return msg;
  }

  it('a non-critical unknown payload is kept raw and decoding continues past it', () => {
    const m = expectOk(decodeMessage(withUnknown(false)));
    expect(m.payloads.map((p) => p.type)).toEqual([PayloadType.NONCE, 99, PayloadType.NOTIFY]);
    expect(m.payloads[1]).toEqual({ type: 99, critical: false, data: bytes(0xde, 0xad) });
    expect(findNotify(m.payloads, NotifyType.INITIAL_CONTACT)).toBeDefined();
  });

  it('a critical unknown payload rejects the message with UNSUPPORTED_CRITICAL_PAYLOAD and data = [type]', () => {
    const r = decodeMessage(withUnknown(true));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('UNSUPPORTED_CRITICAL_PAYLOAD');
    expect(r.error.notify).toBe(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD);
    expect(r.error.data).toEqual(bytes(99));
    expect(r.error.payloadType).toBe(99);
    expect(r.error.offset).toBe(28 + 36);
  });

  it('the critical bit on a known payload is ignored for acceptance and reported', () => {
    const msg = encodeMessage(BASE_HEADER, [nonce]);
    msg[29] = 0x80;
    expect(expectOk(decodeMessage(msg)).payloads[0]).toEqual({ ...nonce, critical: true });
  });

  it('IKEv1 payload type numbers (1..32) are unknown payloads too', () => {
    const msg = encodeMessage(BASE_HEADER, [{ type: 1, critical: false, data: bytes(1) }]);
    expect(expectOk(decodeMessage(msg)).payloads).toEqual([{ type: 1, critical: false, data: bytes(1) }]);
  });
});

// ------------------------------------------------------------------ malformed inputs

/** A payload written raw: `length`/`next` override the computed fields. */
interface RawPayload {
  type: number;
  body: number[];
  length?: number;
  next?: number;
  critical?: boolean;
}

function rawChain(ps: RawPayload[]): number[] {
  const out: number[] = [];
  ps.forEach((p, i) => {
    out.push(p.next ?? ps[i + 1]?.type ?? 0, p.critical ? 0x80 : 0, ...u16(p.length ?? 4 + p.body.length), ...p.body);
  });
  return out;
}

function rawMessage(ps: RawPayload[], o: { version?: number; length?: number; extra?: number[]; first?: number } = {}): Uint8Array {
  const chain = rawChain(ps);
  const length = o.length ?? 28 + chain.length;
  return Uint8Array.from([
    ...BASE_HEADER.spiI, ...BASE_HEADER.spiR,
    o.first ?? ps[0]?.type ?? 0, o.version ?? 0x20, ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR,
    ...u32(0), ...u32(length),
    ...chain, ...(o.extra ?? []),
  ]);
}

// Raw SA substructures (RFC 7296 §3.3.1, §3.3.2, §3.3.5).
const attrKeyLength = (bits: number): number[] => [0x80, 14, ...u16(bits)];
const transform = (last: number, type: number, id: number, attrs: number[] = [], length?: number): number[] => [
  last, 0, ...u16(length ?? 8 + attrs.length), type, 0, ...u16(id), ...attrs,
];
const proposal = (last: number, num: number, transforms: number[][], o: { length?: number; count?: number; spi?: number[] } = {}): number[] => {
  const spi = o.spi ?? [];
  const t = transforms.flat();
  return [last, 0, ...u16(o.length ?? 8 + spi.length + t.length), num, ProtocolId.IKE, spi.length, o.count ?? transforms.length, ...spi, ...t];
};
const goodTransforms = [transform(3, 1, 20, attrKeyLength(256)), transform(3, 2, 5), transform(0, 4, 31)];
const sa = (...proposals: number[][]): RawPayload => ({ type: PayloadType.SA, body: proposals.flat() });
const selector = (tsType: number, addr: number, length?: number): number[] => [tsType, 0, ...u16(length ?? 8 + 2 * addr), 0, 0, 0xff, 0xff, ...new Array<number>(2 * addr).fill(1)];
const ts = (count: number, ...sels: number[][]): RawPayload => ({ type: PayloadType.TSi, body: [count, 0, 0, 0, ...sels.flat()] });
const nonceBody = (n: number): number[] => [...seq(0, n)];

interface Case {
  name: string;
  input: Uint8Array;
  code: WireErrorCode;
  /** Decode as a bare payload chain starting with this type instead of a message. */
  chainFirst?: number;
  payloadType?: number;
  notify?: number;
}

const malformed: Case[] = [
  { name: 'datagram shorter than the IKE header', input: new Uint8Array(20), code: 'TRUNCATED', notify: 0 },
  { name: 'IKEv1 major version', input: rawMessage([], { version: 0x10 }), code: 'INVALID_MAJOR_VERSION', notify: NotifyType.INVALID_MAJOR_VERSION },
  { name: 'major version 3', input: rawMessage([], { version: 0x30 }), code: 'INVALID_MAJOR_VERSION', notify: NotifyType.INVALID_MAJOR_VERSION },
  { name: 'header Length below 28', input: rawMessage([], { length: 27 }), code: 'BAD_LENGTH' },
  { name: 'header Length beyond the datagram', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(32) }], { length: 100 }), code: 'TRUNCATED' },
  { name: 'datagram longer than its Length field', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(32) }], { length: 64, extra: [0, 0] }), code: 'TRAILING_BYTES' },
  { name: 'first payload announced but no bytes left', input: rawMessage([], { first: PayloadType.NONCE }), code: 'TRUNCATED', payloadType: PayloadType.NONCE },
  { name: 'generic header cut short', input: rawMessage([], { first: PayloadType.NONCE, extra: [0, 0], length: 30 }), code: 'TRUNCATED', payloadType: PayloadType.NONCE },
  { name: 'Payload Length below 4', input: rawMessage([{ type: PayloadType.VENDOR_ID, body: [], length: 3 }]), code: 'BAD_LENGTH', payloadType: PayloadType.VENDOR_ID },
  { name: 'Payload Length beyond the message', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(32), length: 40 }]), code: 'TRUNCATED', payloadType: PayloadType.NONCE },
  { name: 'Next Payload announces a payload after the end', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(32), next: PayloadType.NOTIFY }]), code: 'TRUNCATED', payloadType: PayloadType.NOTIFY },
  { name: 'bytes after the last payload', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(32) }], { extra: [1, 2, 3, 4], length: 28 + 36 + 4 }), code: 'TRAILING_BYTES' },
  { name: 'nonce of 15 bytes', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(15) }]), code: 'BAD_LENGTH', payloadType: PayloadType.NONCE },
  { name: 'nonce of 257 bytes', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(257) }]), code: 'BAD_LENGTH', payloadType: PayloadType.NONCE },
  { name: 'KE body shorter than its fixed fields', input: rawMessage([{ type: PayloadType.KE, body: [0, 31, 0] }]), code: 'BAD_LENGTH', payloadType: PayloadType.KE },
  { name: 'ID body shorter than its fixed fields', input: rawMessage([{ type: PayloadType.IDi, body: [2, 0] }]), code: 'BAD_LENGTH', payloadType: PayloadType.IDi },
  { name: 'AUTH body shorter than its fixed fields', input: rawMessage([{ type: PayloadType.AUTH, body: [2, 0, 0] }]), code: 'BAD_LENGTH', payloadType: PayloadType.AUTH },
  { name: 'CERT without an encoding octet', input: rawMessage([{ type: PayloadType.CERT, body: [] }]), code: 'BAD_LENGTH', payloadType: PayloadType.CERT },
  { name: 'notify SPI size beyond the payload', input: rawMessage([{ type: PayloadType.NOTIFY, body: [3, 4, ...u16(16393), 1, 2] }]), code: 'BAD_LENGTH', payloadType: PayloadType.NOTIFY },
  { name: 'notify shorter than its fixed fields', input: rawMessage([{ type: PayloadType.NOTIFY, body: [0, 0, 0x40] }]), code: 'BAD_LENGTH' },
  { name: 'delete: Num of SPIs x SPI Size does not fill the payload', input: rawMessage([{ type: PayloadType.DELETE, body: [3, 4, ...u16(3), ...new Array<number>(8).fill(7)] }]), code: 'BAD_LENGTH', payloadType: PayloadType.DELETE },
  { name: 'delete: ESP with 8-byte SPIs', input: rawMessage([{ type: PayloadType.DELETE, body: [3, 8, ...u16(1), ...new Array<number>(8).fill(7)] }]), code: 'INVALID_SYNTAX', payloadType: PayloadType.DELETE },
  { name: 'delete: IKE with SPIs', input: rawMessage([{ type: PayloadType.DELETE, body: [1, 4, ...u16(1), 1, 2, 3, 4] }]), code: 'INVALID_SYNTAX', payloadType: PayloadType.DELETE },
  { name: 'delete: SPI count with SPI size 0', input: rawMessage([{ type: PayloadType.DELETE, body: [1, 0, ...u16(2)] }]), code: 'BAD_LENGTH', payloadType: PayloadType.DELETE },
  { name: 'TS: IPv4 selector with length 40', input: rawMessage([ts(1, selector(7, 16, 40))]), code: 'BAD_LENGTH', payloadType: PayloadType.TSi },
  { name: 'TS: IPv6 selector with length 16', input: rawMessage([ts(1, selector(8, 4, 16))]), code: 'BAD_LENGTH', payloadType: PayloadType.TSi },
  { name: 'TS: two selectors announced, one present', input: rawMessage([ts(2, selector(7, 4))]), code: 'TRUNCATED', payloadType: PayloadType.TSi },
  { name: 'TS: one selector announced, two present', input: rawMessage([ts(1, selector(7, 4), selector(7, 4))]), code: 'BAD_LENGTH', payloadType: PayloadType.TSi },
  { name: 'TS: unknown selector type', input: rawMessage([ts(1, selector(9, 4))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.TSi },
  { name: 'TS: zero selectors', input: rawMessage([ts(0)]), code: 'INVALID_SYNTAX', payloadType: PayloadType.TSi },
  { name: 'SA: no proposals', input: rawMessage([sa()]), code: 'BAD_LENGTH', payloadType: PayloadType.SA },
  { name: 'SA: proposal length beyond the payload', input: rawMessage([sa(proposal(0, 1, goodTransforms, { length: 60 }))]), code: 'TRUNCATED', payloadType: PayloadType.SA },
  { name: 'SA: proposal length below its header + SPI', input: rawMessage([sa(proposal(0, 1, goodTransforms, { length: 9, spi: [1, 2] }))]), code: 'BAD_LENGTH', payloadType: PayloadType.SA },
  { name: 'SA: proposal Last Substruc 1', input: rawMessage([sa(proposal(1, 1, goodTransforms))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: last proposal followed by another', input: rawMessage([sa(proposal(0, 1, goodTransforms), proposal(0, 2, goodTransforms))]), code: 'BAD_LENGTH', payloadType: PayloadType.SA },
  { name: 'SA: more proposals announced, payload ends', input: rawMessage([sa(proposal(2, 1, goodTransforms))]), code: 'TRUNCATED', payloadType: PayloadType.SA },
  { name: 'SA: proposals numbered 1, 3', input: rawMessage([sa(proposal(2, 1, goodTransforms), proposal(0, 3, goodTransforms))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: several proposals not starting at 1', input: rawMessage([sa(proposal(2, 2, goodTransforms), proposal(0, 3, goodTransforms))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: proposal number 0', input: rawMessage([sa(proposal(0, 0, goodTransforms))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: proposal without transforms', input: rawMessage([sa(proposal(0, 1, []))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: Num Transforms above the transforms present', input: rawMessage([sa(proposal(0, 1, [transform(3, 1, 20), transform(3, 2, 5), transform(3, 4, 31)], { count: 4 }))]), code: 'TRUNCATED', payloadType: PayloadType.SA },
  { name: 'SA: Num Transforms below the transforms present', input: rawMessage([sa(proposal(0, 1, [transform(3, 1, 20), transform(0, 2, 5), transform(0, 4, 31)], { count: 2 }))]), code: 'BAD_LENGTH', payloadType: PayloadType.SA },
  { name: 'SA: first of three transforms marked last', input: rawMessage([sa(proposal(0, 1, goodTransforms.map((t, i) => (i === 0 ? [0, ...t.slice(1)] : t))))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: transform Last Substruc 2', input: rawMessage([sa(proposal(0, 1, [transform(2, 1, 20), transform(0, 2, 5)]))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: last transform marked "more"', input: rawMessage([sa(proposal(0, 1, [transform(3, 1, 20), transform(3, 2, 5)]))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'SA: transform length below 8', input: rawMessage([sa(proposal(0, 1, [transform(0, 1, 20, [], 7)]))]), code: 'BAD_LENGTH', payloadType: PayloadType.SA },
  { name: 'SA: transform length beyond its proposal', input: rawMessage([sa(proposal(0, 1, [transform(0, 1, 20, [], 12)]))]), code: 'TRUNCATED', payloadType: PayloadType.SA },
  { name: 'SA: TLV attribute value beyond its transform', input: rawMessage([sa(proposal(0, 1, [transform(0, 1, 20, [0x00, 99, ...u16(8), 1, 2])]))]), code: 'TRUNCATED', payloadType: PayloadType.SA },
  { name: 'SA: attribute header cut by its transform', input: rawMessage([sa(proposal(0, 1, [transform(0, 1, 20, [0x80, 14])]))]), code: 'TRUNCATED', payloadType: PayloadType.SA },
  { name: 'SA: the same attribute twice', input: rawMessage([sa(proposal(0, 1, [transform(0, 1, 12, [...attrKeyLength(128), ...attrKeyLength(256)])]))]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SA },
  { name: 'CP: attribute value beyond the payload', input: rawMessage([{ type: PayloadType.CP, body: [1, 0, 0, 0, ...u16(1), ...u16(4), 10, 0] }]), code: 'TRUNCATED', payloadType: PayloadType.CP },
  { name: 'CP: attribute header cut short', input: rawMessage([{ type: PayloadType.CP, body: [1, 0, 0, 0, 0, 1] }]), code: 'TRUNCATED', payloadType: PayloadType.CP },
  { name: 'EAP: Length field differs from the payload', input: rawMessage([{ type: PayloadType.EAP, body: [1, 1, ...u16(9), 1] }]), code: 'BAD_LENGTH', payloadType: PayloadType.EAP },
  { name: 'SK followed by bytes inside the message', input: rawMessage([{ type: PayloadType.SK, body: nonceBody(16), next: PayloadType.IDi, length: 12 }]), code: 'TRAILING_BYTES', payloadType: PayloadType.SK },
  { name: 'SK followed by another payload', input: rawMessage([{ type: PayloadType.SK, body: nonceBody(16), next: PayloadType.NONCE }, { type: PayloadType.NONCE, body: nonceBody(16) }]), code: 'TRAILING_BYTES', payloadType: PayloadType.SK },
  { name: 'SKF fragment 3 of 2', input: rawMessage([{ type: PayloadType.SKF, body: [...u16(3), ...u16(2), ...nonceBody(16)] }]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SKF },
  { name: 'SKF fragment 0', input: rawMessage([{ type: PayloadType.SKF, body: [...u16(0), ...u16(2), ...nonceBody(16)] }]), code: 'INVALID_SYNTAX', payloadType: PayloadType.SKF },
  { name: 'unknown critical payload type 60', input: rawMessage([{ type: 60, body: [1], critical: true }]), code: 'UNSUPPORTED_CRITICAL_PAYLOAD', payloadType: 60, notify: NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD },
  { name: 'SK inside a decrypted chain', input: Uint8Array.from(rawChain([{ type: PayloadType.SK, body: nonceBody(16) }])), chainFirst: PayloadType.SK, code: 'INVALID_SYNTAX', payloadType: PayloadType.SK },
  { name: 'decrypted chain with bytes after its last payload', input: Uint8Array.from([...rawChain([{ type: PayloadType.NONCE, body: nonceBody(16) }]), 0, 0, 0, 4]), chainFirst: PayloadType.NONCE, code: 'TRAILING_BYTES' },
  { name: 'decrypted chain with an unknown critical payload', input: Uint8Array.from(rawChain([{ type: 70, body: [], critical: true }])), chainFirst: 70, code: 'UNSUPPORTED_CRITICAL_PAYLOAD', payloadType: 70, notify: NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD },
];

/** Well-formed neighbours of the malformed cases: each must decode, so each failure above is caused by its defect. */
const wellFormed: Array<{ name: string; input: Uint8Array }> = [
  { name: 'empty message (no payloads)', input: rawMessage([]) },
  { name: 'nonce of 16 bytes', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(16) }]) },
  { name: 'nonce of 256 bytes', input: rawMessage([{ type: PayloadType.NONCE, body: nonceBody(256) }]) },
  { name: 'KE with empty data', input: rawMessage([{ type: PayloadType.KE, body: [0, 31, 0, 0] }]) },
  { name: 'notify with ESP SPI', input: rawMessage([{ type: PayloadType.NOTIFY, body: [3, 4, ...u16(16393), 1, 2, 3, 4] }]) },
  { name: 'delete: three ESP SPIs', input: rawMessage([{ type: PayloadType.DELETE, body: [3, 4, ...u16(3), ...new Array<number>(12).fill(7)] }]) },
  { name: 'delete: IKE', input: rawMessage([{ type: PayloadType.DELETE, body: [1, 0, ...u16(0)] }]) },
  { name: 'TS: IPv4 + IPv6 selectors', input: rawMessage([ts(2, selector(7, 4), selector(8, 16))]) },
  { name: 'SA: three proposals 1, 2, 3', input: rawMessage([sa(proposal(2, 1, goodTransforms), proposal(2, 2, goodTransforms), proposal(0, 3, goodTransforms))]) },
  { name: 'SA: a lone accepted proposal numbered 3', input: rawMessage([sa(proposal(0, 3, goodTransforms))]) },
  { name: 'SA: proposal with an SPI', input: rawMessage([sa(proposal(0, 1, goodTransforms, { spi: [1, 2, 3, 4, 5, 6, 7, 8] }))]) },
  { name: 'CP: empty attribute and a 4-byte one', input: rawMessage([{ type: PayloadType.CP, body: [1, 0, 0, 0, ...u16(1), ...u16(0), ...u16(3), ...u16(4), 10, 0, 0, 1] }]) },
  { name: 'EAP: Length field matching', input: rawMessage([{ type: PayloadType.EAP, body: [1, 1, ...u16(5), 1] }]) },
  { name: 'SK with empty body', input: rawMessage([{ type: PayloadType.SK, body: [], next: PayloadType.IDi }]) },
  { name: 'SKF fragment 2 of 2', input: rawMessage([{ type: PayloadType.SKF, body: [...u16(2), ...u16(2), ...nonceBody(16)] }]) },
  { name: 'unknown non-critical payload type 60', input: rawMessage([{ type: 60, body: [1] }]) },
];

describe('malformed inputs give the right WireError (never an exception)', () => {
  it('the table is large enough to matter', () => {
    expect(malformed.length).toBeGreaterThanOrEqual(20);
  });

  it.each(malformed)('$name -> $code', (c) => {
    const r = c.chainFirst === undefined ? decodeMessage(c.input) : decodePayloadChain(c.chainFirst, c.input);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(isWireError(r.error)).toBe(true);
    expect(r.error.code).toBe(c.code);
    expect(r.error.notify).toBe(c.notify ?? NotifyType.INVALID_SYNTAX);
    if (c.payloadType !== undefined) expect(r.error.payloadType).toBe(c.payloadType);
    if (r.error.offset !== undefined) expect(r.error.offset).toBeLessThanOrEqual(c.input.length);
    expect(r.error.message.length).toBeGreaterThan(0);
  });

  it.each(wellFormed)('control: $name decodes', ({ input }) => {
    const r = decodeMessage(input);
    expect(r.ok ? 'ok' : `${r.error.code}: ${r.error.message}`).toBe('ok');
  });

  it('non-byte inputs and bad bounds are errors, not exceptions', () => {
    expect(decodeMessage(undefined as unknown as Uint8Array).ok).toBe(false);
    expect(decodeMessage('hello' as unknown as Uint8Array).ok).toBe(false);
    expect(decodePayloadChain(40, new Uint8Array(8), 4, 2).ok).toBe(false);
    expect(decodePayloadChain(40, new Uint8Array(8), 0, 9).ok).toBe(false);
    expect(decodePayloadChain(300, new Uint8Array(8)).ok).toBe(false);
    expect(decodePayloadChain(0, new Uint8Array(0))).toEqual({ ok: true, value: [] });
  });
});

// ------------------------------------------------------------------ a real IKE_SA_INIT

/**
 * An IKE_SA_INIT request laid out by hand from RFC 7296 §3 (the shape strongSwan
 * sends): SA with one IKE proposal, KE, Ni, NAT detection, fragmentation and
 * signature hash notifies. 230 bytes.
 */
const IKE_SA_INIT_HEX = [
  // IKE header (§3.1)
  '1a2b3c4d5e6f7081', // SPIi
  '0000000000000000', // SPIr: zero in the first message
  '21', // Next Payload: SA (33)
  '20', // version 2.0
  '22', // exchange type IKE_SA_INIT (34)
  '08', // flags: Initiator
  '00000000', // Message ID 0
  '000000e6', // Length 230
  // SA payload (§3.3): Next Payload KE, length 48
  '22000030',
  // proposal (§3.3.1): last, length 44, #1, protocol IKE, SPI size 0, 4 transforms
  '0000002c', '01010004',
  // transform ENCR AES-GCM-16 (20) + Key Length 256 (attribute 14, TV)
  '0300000c', '01000014', '800e0100',
  // transform PRF HMAC-SHA2-256 (5)
  '03000008', '02000005',
  // transform KE Curve25519 (31)
  '03000008', '0400001f',
  // last transform KE ECP-256 (19)
  '00000008', '04000013',
  // KE payload (§3.4): Next Payload Nonce, length 40, group 31, RESERVED
  '28000028', '001f0000', hexSeq(0x01, 32),
  // Nonce payload (§3.9): Next Payload Notify, length 36
  '29000024', hexSeq(0xa0, 32),
  // Notify NAT_DETECTION_SOURCE_IP (16388, §3.10): length 28, no SPI, SHA-1 hash
  '2900001c', '00004004', hexSeq(0x50, 20),
  // Notify NAT_DETECTION_DESTINATION_IP (16389)
  '2900001c', '00004005', hexSeq(0x60, 20),
  // Notify IKEV2_FRAGMENTATION_SUPPORTED (16430, RFC 7383), no data
  '29000008', '0000402e',
  // Notify SIGNATURE_HASH_ALGORITHMS (16431, RFC 7427): last payload, SHA2-256/384/512
  '0000000e', '0000402f', '000200030004',
].join('');

const ikeSaInitPayloads: Payload[] = [
  {
    type: PayloadType.SA,
    proposals: [
      {
        number: 1,
        protocol: ProtocolId.IKE,
        spi: new Uint8Array(0),
        transforms: [
          { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
          { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256 },
          { type: TransformType.KE, id: KeGroup.CURVE25519 },
          { type: TransformType.KE, id: KeGroup.ECP_256 },
        ],
      },
    ],
  },
  { type: PayloadType.KE, group: KeGroup.CURVE25519, data: seq(0x01, 32) },
  { type: PayloadType.NONCE, data: seq(0xa0, 32) },
  { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.NAT_DETECTION_SOURCE_IP, data: seq(0x50, 20) },
  { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.NAT_DETECTION_DESTINATION_IP, data: seq(0x60, 20) },
  { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, data: new Uint8Array(0) },
  { type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType: NotifyType.SIGNATURE_HASH_ALGORITHMS, data: bytes(0, 2, 0, 3, 0, 4) },
];

describe('a real IKE_SA_INIT request', () => {
  const wire = fromHex(IKE_SA_INIT_HEX);

  it('the hand-written bytes are 230 long and decode to the expected payloads', () => {
    expect(wire.length).toBe(230);
    const m = expectOk(decodeMessage(wire));
    expect(m.header).toMatchObject({ nextPayload: 33, version: 0x20, exchangeType: 34, flags: HeaderFlag.INITIATOR, messageId: 0, length: 230 });
    expect(toHex(m.header.spiI)).toBe('1a2b3c4d5e6f7081');
    expect(m.payloads).toEqual(ikeSaInitPayloads);
    const sha = findNotify(m.payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)!;
    expect(Array.from(sha.data)).toEqual([0, 2, 0, 3, 0, 4]);
  });

  it('the encoder writes exactly those bytes', () => {
    expect(toHex(encodeMessage(BASE_HEADER, ikeSaInitPayloads))).toBe(IKE_SA_INIT_HEX);
  });

  it('encoder output read at fixed RFC offsets', () => {
    const b = encodeMessage(BASE_HEADER, ikeSaInitPayloads);
    const r16 = (o: number): number => (b[o]! << 8) | b[o + 1]!;
    const r32 = (o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
    expect(b[16]).toBe(PayloadType.SA); // header Next Payload
    expect(b[17] >> 4).toBe(2); // major version
    expect(b[18]).toBe(ExchangeType.IKE_SA_INIT);
    expect(r32(24)).toBe(b.length);
    // SA at 28: Next Payload KE, length 48; proposal at 32.
    expect([b[28], r16(30)]).toEqual([PayloadType.KE, 48]);
    expect([b[32], r16(34), b[36], b[37], b[38], b[39]]).toEqual([0, 44, 1, ProtocolId.IKE, 0, 4]);
    // First transform at 40: more (3), length 12, ENCR, AES-GCM-16, attribute AF|14 = 256.
    expect([b[40], r16(42), b[44], r16(46), r16(48), r16(50)]).toEqual([3, 12, TransformType.ENCR, EncrId.AES_GCM_16, 0x800e, 256]);
    // Last transform at 68: Last Substruc 0.
    expect([b[68], b[72], r16(74)]).toEqual([0, TransformType.KE, KeGroup.ECP_256]);
    // KE at 76: group 31 at 80; Nonce at 116; first notify at 152 with type at 156.
    expect([b[76], r16(78), r16(80)]).toEqual([PayloadType.NONCE, 40, KeGroup.CURVE25519]);
    expect([b[116], r16(118), b[120]]).toEqual([PayloadType.NOTIFY, 36, 0xa0]);
    expect([b[152], r16(154), b[156], b[157], r16(158)]).toEqual([PayloadType.NOTIFY, 28, 0, 0, NotifyType.NAT_DETECTION_SOURCE_IP]);
    // Last notify at 216: Next Payload 0, length 14.
    expect([b[216], r16(218), r16(222)]).toEqual([0, 14, NotifyType.SIGNATURE_HASH_ALGORITHMS]);
  });
});

// ------------------------------------------------------------------ addresses

describe('IP address helpers', () => {
  it.each([
    ['192.0.2.1', 'c0000201', '192.0.2.1'],
    ['0.0.0.0', '00000000', '0.0.0.0'],
    ['::', '0'.repeat(32), '::'],
    ['::1', '0'.repeat(31) + '1', '::1'],
    ['2001:DB8::FF00:42:8329', '20010db8000000000000ff0000428329', '2001:db8::ff00:42:8329'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    ['fe80::1%eth0', 'fe80' + '0'.repeat(27) + '1', 'fe80::1'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201', '::ffff:192.0.2.1'],
  ])('%s', (text, hex, canonical) => {
    const b = ipToBytes(text)!;
    expect(toHex(b)).toBe(hex);
    expect(bytesToIp(b)).toBe(canonical);
  });

  it('rejects what is not an address', () => {
    for (const s of ['', '1.2.3', '256.1.1.1', '1.2.3.4/24', 'fe80::1::2', 'hello', '::g']) expect(ipToBytes(s)).toBeUndefined();
    expect(bytesToIp(bytes(1, 2, 3))).toBe('0x010203');
  });

  it('cidrToRange gives inclusive ranges and clears host bits', () => {
    const r = cidrToRange('10.1.0.0/24')!;
    expect([bytesToIp(r.start), bytesToIp(r.end)]).toEqual(['10.1.0.0', '10.1.0.255']);
    const h = cidrToRange('10.1.7.9/20')!;
    expect([bytesToIp(h.start), bytesToIp(h.end)]).toEqual(['10.1.0.0', '10.1.15.255']);
    const v6 = cidrToRange('2001:db8::/32')!;
    expect([bytesToIp(v6.start), bytesToIp(v6.end)]).toEqual(['2001:db8::', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff']);
    const host = cidrToRange('192.0.2.7')!;
    expect([bytesToIp(host.start), bytesToIp(host.end)]).toEqual(['192.0.2.7', '192.0.2.7']);
    const all = cidrToRange('0.0.0.0/0')!;
    expect(bytesToIp(all.end)).toBe('255.255.255.255');
    for (const s of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/x', 'x/8']) expect(cidrToRange(s)).toBeUndefined();
  });

  it('rangeToString prints prefixes as CIDR and other ranges as a..b', () => {
    const show = (cidr: string): string => {
      const r = cidrToRange(cidr)!;
      return rangeToString(r.start, r.end);
    };
    expect(show('10.1.0.0/24')).toBe('10.1.0.0/24');
    expect(show('0.0.0.0/0')).toBe('0.0.0.0/0');
    expect(show('192.0.2.7')).toBe('192.0.2.7/32');
    expect(show('2001:db8::/48')).toBe('2001:db8::/48');
    expect(rangeToString(ip('10.0.0.1'), ip('10.0.0.9'))).toBe('10.0.0.1..10.0.0.9');
    expect(rangeToString(ip('10.0.0.0'), ip('10.0.1.254'))).toBe('10.0.0.0..10.0.1.254');
    expect(rangeToString(ip('10.0.0.9'), ip('10.0.0.1'))).toBe('10.0.0.9..10.0.0.1');
  });
});
