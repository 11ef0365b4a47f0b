// IKEv2 payloads as plain objects (RFC 7296 §3.2–§3.16, RFC 7383 §2.5).
//
// `Payload` is a discriminated union on `type`, so `if (p.type ===
// PayloadType.NOTIFY) p.notifyType` narrows. Payload types this codec does not
// know decode as UnknownPayload, whose `type` is every octet value except the
// known ones, so that narrowing stays exact.
//
// Byte fields of decoded payloads (SPIs, data, addresses, SK body and AAD) are
// subarrays of the decoded buffer: they alias it. Copy what must outlive a
// buffer that is reused or wiped.
import { PayloadType } from './constants.js';

type PT = typeof PayloadType;

/** Fields every payload may carry. */
interface PayloadCommon {
  /**
   * Critical bit of the generic payload header (RFC 7296 §3.2). Decoded as
   * `true` only when set; absent otherwise. Must stay clear for the payload
   * types RFC 7296 defines and in responses.
   */
  critical?: boolean;
}

/** RFC 7296 §3.3.5 transform attribute. `type` excludes the AF bit. */
export interface TransformAttribute {
  type: number;
  /** Uint8Array: TLV format (AF = 0); number: TV format (AF = 1), a uint16. */
  value: Uint8Array | number;
}

/** RFC 7296 §3.3.2 transform substructure. */
export interface Transform {
  /** TransformType. */
  type: number;
  /** Transform ID (EncrId, PrfId, IntegId, KeGroup, EsnId by type). */
  id: number;
  /** Key Length attribute (type 14, TV), in bits. */
  keyLength?: number;
  /** Any other attributes, in wire order. */
  attributes?: TransformAttribute[];
}

/** RFC 7296 §3.3.1 proposal substructure. */
export interface Proposal {
  /** Proposal Num: 1, 2, ... in an offer; the accepted number in an answer. */
  number: number;
  /** ProtocolId. */
  protocol: number;
  /** Sender's SPI: empty in IKE_SA_INIT, 8 octets for IKE rekey, 4 for ESP/AH. */
  spi: Uint8Array;
  transforms: Transform[];
}

/** RFC 7296 §3.13.1 traffic selector (TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE). */
export interface TrafficSelector {
  /** TsType: 7 (4-octet addresses) or 8 (16-octet addresses). */
  tsType: number;
  /** IP protocol, 0 = any. */
  ipProtocol: number;
  startPort: number;
  endPort: number;
  startAddress: Uint8Array;
  endAddress: Uint8Array;
}

/** RFC 7296 §3.15.1 configuration attribute. `type` excludes the reserved bit. */
export interface CfgAttribute {
  type: number;
  value: Uint8Array;
}

/** RFC 7296 §3.3 Security Association payload. */
export interface SaPayload extends PayloadCommon {
  type: PT['SA'];
  proposals: Proposal[];
}

/** RFC 7296 §3.4 Key Exchange payload. */
export interface KePayload extends PayloadCommon {
  type: PT['KE'];
  /** Key exchange method (KeGroup). */
  group: number;
  data: Uint8Array;
}

/** RFC 7296 §3.5 Identification payload (IDi or IDr). */
export interface IdPayload extends PayloadCommon {
  type: PT['IDi'] | PT['IDr'];
  /** IdType. */
  idType: number;
  data: Uint8Array;
}

/** RFC 7296 §3.6 Certificate payload. */
export interface CertPayload extends PayloadCommon {
  type: PT['CERT'];
  /** CertEncoding. */
  encoding: number;
  data: Uint8Array;
}

/** RFC 7296 §3.7 Certificate Request payload. */
export interface CertReqPayload extends PayloadCommon {
  type: PT['CERTREQ'];
  /** CertEncoding. */
  encoding: number;
  /** Concatenated SHA-1 hashes of trusted CA public keys (for X.509). */
  data: Uint8Array;
}

/** RFC 7296 §3.8 Authentication payload. */
export interface AuthPayload extends PayloadCommon {
  type: PT['AUTH'];
  /** AuthMethod. */
  method: number;
  data: Uint8Array;
}

/** RFC 7296 §3.9 Nonce payload (16..256 octets of data). */
export interface NoncePayload extends PayloadCommon {
  type: PT['NONCE'];
  data: Uint8Array;
}

/** RFC 7296 §3.10 Notify payload. */
export interface NotifyPayload extends PayloadCommon {
  type: PT['NOTIFY'];
  /** ProtocolId of the SA the SPI names. Sent as 0 when `spi` is empty, and then to be ignored on receipt (RFC 7296 §3.10). */
  protocol: number;
  spi: Uint8Array;
  /** NotifyType. */
  notifyType: number;
  data: Uint8Array;
}

/** RFC 7296 §3.11 Delete payload. */
export interface DeletePayload extends PayloadCommon {
  type: PT['DELETE'];
  /** ProtocolId: IKE (no SPIs), AH or ESP (4-octet SPIs). */
  protocol: number;
  spiSize: number;
  spis: Uint8Array[];
}

/** RFC 7296 §3.12 Vendor ID payload. */
export interface VendorIdPayload extends PayloadCommon {
  type: PT['VENDOR_ID'];
  data: Uint8Array;
}

/** RFC 7296 §3.13 Traffic Selector payload (TSi or TSr). */
export interface TsPayload extends PayloadCommon {
  type: PT['TSi'] | PT['TSr'];
  selectors: TrafficSelector[];
}

/**
 * RFC 7296 §3.14 Encrypted and Authenticated payload, kept opaque: the engine
 * decrypts `body` and decodes the plaintext with decodePayloadChain(innerType, ...).
 */
export interface SkPayload extends PayloadCommon {
  type: PT['SK'];
  /** The Next Payload field: type of the first inner payload. */
  innerType: number;
  /** IV || ciphertext || ICV. */
  body: Uint8Array;
  /**
   * On decode: the message bytes from offset 0 to the end of the SK generic
   * payload header (the AAD of RFC 5282 §5.1; for CBC + HMAC the ICV covers
   * aad || body-without-ICV). Ignored on encode.
   */
  aad: Uint8Array;
}

/** RFC 7296 §3.15 Configuration payload. */
export interface CpPayload extends PayloadCommon {
  type: PT['CP'];
  /** CfgType. */
  cfgType: number;
  attributes: CfgAttribute[];
}

/** RFC 7296 §3.16 EAP payload: one EAP message (RFC 3748). */
export interface EapPayload extends PayloadCommon {
  type: PT['EAP'];
  data: Uint8Array;
}

/** RFC 7383 §2.5 Encrypted Fragment payload, kept opaque like SkPayload. */
export interface SkfPayload extends PayloadCommon {
  type: PT['SKF'];
  /** Next Payload: first inner payload type in fragment 1, 0 in the others. */
  innerType: number;
  /** 1-based, <= totalFragments. */
  fragmentNumber: number;
  totalFragments: number;
  /** IV || ciphertext || ICV. */
  body: Uint8Array;
  /** On decode: message bytes from offset 0 through Total Fragments (the AAD). Ignored on encode. */
  aad: Uint8Array;
}

/** @internal Every octet value 0..255 as a literal type. */
type OctetsBelow<N extends number, Acc extends number[] = []> = Acc['length'] extends N
  ? Acc[number]
  : OctetsBelow<N, [...Acc, Acc['length']]>;

/** Payload types this codec decodes into a specific shape. */
export type KnownPayloadType = Exclude<PT[keyof PT], PT['NONE']>;

/** Any payload type octet other than NONE (0) and the known types. */
export type UnknownPayloadType = Exclude<OctetsBelow<256>, PT['NONE'] | KnownPayloadType>;

/**
 * A payload of a type this codec does not know, with the critical bit clear:
 * kept raw so the caller can ignore it (RFC 7296 §3.2). Unknown payloads with
 * the critical bit set are rejected while decoding.
 */
export interface UnknownPayload {
  type: UnknownPayloadType;
  critical: false;
  /** Payload body after the generic header. */
  data: Uint8Array;
}

export type Payload =
  | SaPayload
  | KePayload
  | IdPayload
  | CertPayload
  | CertReqPayload
  | AuthPayload
  | NoncePayload
  | NotifyPayload
  | DeletePayload
  | VendorIdPayload
  | TsPayload
  | SkPayload
  | CpPayload
  | EapPayload
  | SkfPayload
  | UnknownPayload;

/** The payload interface(s) whose `type` admits T (IdPayload for 35 or 36, ...). */
export type PayloadOfType<T extends number> = Payload extends infer Q
  ? Q extends { type: infer K }
    ? T extends K
      ? Q
      : never
    : never
  : never;

const KNOWN_TYPES: ReadonlySet<number> = new Set(
  Object.values(PayloadType).filter((t) => t !== PayloadType.NONE),
);

/** True for the payload types this codec decodes into a specific shape. */
export function isKnownPayloadType(type: number): type is KnownPayloadType {
  return KNOWN_TYPES.has(type);
}

/** First payload of the given type, typed by it (e.g. findPayload(ps, PayloadType.SA)?.proposals). */
export function findPayload<T extends Payload['type']>(payloads: readonly Payload[], type: T): PayloadOfType<T> | undefined {
  for (const p of payloads) if (p.type === type) return p as PayloadOfType<T>;
  return undefined;
}

/** Every payload of the given type, in message order. */
export function findPayloads<T extends Payload['type']>(payloads: readonly Payload[], type: T): PayloadOfType<T>[] {
  const out: PayloadOfType<T>[] = [];
  for (const p of payloads) if (p.type === type) out.push(p as PayloadOfType<T>);
  return out;
}

/** First Notify payload of the given NotifyType. */
export function findNotify(payloads: readonly Payload[], notifyType: number): NotifyPayload | undefined {
  for (const p of payloads) if (p.type === PayloadType.NOTIFY && p.notifyType === notifyType) return p;
  return undefined;
}

/** Every Notify payload of the given NotifyType, in message order (e.g. ADDITIONAL_IP4_ADDRESS). */
export function findNotifies(payloads: readonly Payload[], notifyType: number): NotifyPayload[] {
  const out: NotifyPayload[] = [];
  for (const p of payloads) if (p.type === PayloadType.NOTIFY && p.notifyType === notifyType) out.push(p);
  return out;
}
