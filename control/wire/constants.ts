// IANA registries used on the IKEv2 wire (RFC 7296 §3 and the IANA "IKEv2
// Parameters" registry). Pure data: no dependency on anything else in the tree.
//
// Each registry is a frozen object of name -> number, so call sites read as
// `NotifyType.CLONE_IKE_SA` and the numbers appear exactly once.

/** RFC 7296 §3.1 Exchange Type. */
export const ExchangeType = {
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
  IKE_SESSION_RESUME: 38, // RFC 5723
  IKE_INTERMEDIATE: 43, // RFC 9242
} as const;

/** RFC 7296 §3.1 header flags (bits of the Flags octet). */
export const HeaderFlag = {
  INITIATOR: 0x08,
  VERSION: 0x10,
  RESPONSE: 0x20,
} as const;

/** IKEv2 major/minor version octet (RFC 7296 §3.1): major 2, minor 0. */
export const IKE_VERSION = 0x20;

/** RFC 7296 §3.2 Next Payload types. */
export const PayloadType = {
  NONE: 0,
  SA: 33,
  KE: 34,
  IDi: 35,
  IDr: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR_ID: 43,
  TSi: 44,
  TSr: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  SKF: 53, // RFC 7383
} as const;

/** RFC 7296 §3.3.1 Protocol ID (proposals, notify, delete). */
export const ProtocolId = {
  NONE: 0,
  IKE: 1,
  AH: 2,
  ESP: 3,
} as const;

/** RFC 7296 §3.3.2 Transform Type. */
export const TransformType = {
  ENCR: 1,
  PRF: 2,
  INTEG: 3,
  KE: 4, // "D-H" in RFC 7296, renamed by RFC 9370
  ESN: 5,
} as const;

/** Transform Type 1 — Encryption Algorithm IDs (the subset ikeclone knows). */
export const EncrId = {
  DES_IV64: 1,
  DES: 2,
  TRIPLE_DES: 3,
  NULL: 11,
  AES_CBC: 12,
  AES_CTR: 13,
  AES_CCM_8: 14,
  AES_CCM_12: 15,
  AES_CCM_16: 16,
  AES_GCM_8: 18, // RFC 4106 / RFC 5282
  AES_GCM_12: 19,
  AES_GCM_16: 20,
  NULL_AUTH_AES_GMAC: 21,
  CHACHA20_POLY1305: 28, // RFC 7634
} as const;

/** Transform Type 2 — Pseudorandom Function IDs. */
export const PrfId = {
  HMAC_MD5: 1,
  HMAC_SHA1: 2,
  AES128_XCBC: 4,
  HMAC_SHA2_256: 5,
  HMAC_SHA2_384: 6,
  HMAC_SHA2_512: 7,
  AES128_CMAC: 8,
} as const;

/** Transform Type 3 — Integrity Algorithm IDs. */
export const IntegId = {
  NONE: 0,
  HMAC_MD5_96: 1,
  HMAC_SHA1_96: 2,
  AES_XCBC_96: 5,
  HMAC_SHA2_256_128: 12,
  HMAC_SHA2_384_192: 13,
  HMAC_SHA2_512_256: 14,
} as const;

/** Transform Type 4 — Key Exchange Method IDs (DH groups). */
export const KeGroup = {
  NONE: 0,
  MODP_1024: 2,
  MODP_2048: 14,
  MODP_3072: 15,
  MODP_4096: 16,
  ECP_256: 19, // RFC 5903
  ECP_384: 20,
  ECP_521: 21,
  CURVE25519: 31, // RFC 8031
  CURVE448: 32,
} as const;

/** Transform Type 5 — Extended Sequence Numbers. */
export const EsnId = {
  NO: 0,
  YES: 1,
} as const;

/** RFC 7296 §3.3.5 Transform attribute types. */
export const TransformAttr = {
  KEY_LENGTH: 14,
} as const;

/** RFC 7296 §3.5 ID Type. */
export const IdType = {
  IPV4_ADDR: 1,
  FQDN: 2,
  RFC822_ADDR: 3,
  IPV6_ADDR: 5,
  DER_ASN1_DN: 9,
  DER_ASN1_GN: 10,
  KEY_ID: 11,
} as const;

/** RFC 7296 §3.6 Certificate Encoding. */
export const CertEncoding = {
  PKCS7_X509: 1,
  PGP: 2,
  DNS_SIGNED_KEY: 3,
  X509_SIGNATURE: 4,
  KERBEROS_TOKEN: 6,
  CRL: 7,
  ARL: 8,
  SPKI: 9,
  X509_ATTRIBUTE: 10,
  HASH_URL_X509_CERT: 12,
  HASH_URL_X509_BUNDLE: 13,
} as const;

/** RFC 7296 §3.8 Authentication Method (+ RFC 4754, RFC 7427, RFC 7619). */
export const AuthMethod = {
  RSA_SIGNATURE: 1,
  SHARED_KEY_MIC: 2,
  DSS_SIGNATURE: 3,
  ECDSA_SHA256_P256: 9, // RFC 4754
  ECDSA_SHA384_P384: 10,
  ECDSA_SHA512_P521: 11,
  GENERIC_SECURE_PASSWORD: 12,
  NULL_AUTH: 13, // RFC 7619
  DIGITAL_SIGNATURE: 14, // RFC 7427
} as const;

/** RFC 7427 §7 / IANA "IKEv2 Hash Algorithms" (SIGNATURE_HASH_ALGORITHMS data). */
export const HashAlgorithm = {
  SHA1: 1,
  SHA2_256: 2,
  SHA2_384: 3,
  SHA2_512: 4,
  IDENTITY: 5, // RFC 8420, for EdDSA
} as const;

/** RFC 7296 §3.13.1 Traffic Selector Type. */
export const TsType = {
  IPV4_ADDR_RANGE: 7,
  IPV6_ADDR_RANGE: 8,
} as const;

/** RFC 7296 §3.15 CFG Type. */
export const CfgType = {
  CFG_REQUEST: 1,
  CFG_REPLY: 2,
  CFG_SET: 3,
  CFG_ACK: 4,
} as const;

/** RFC 7296 §3.15.1 Configuration Attribute types. */
export const CfgAttr = {
  INTERNAL_IP4_ADDRESS: 1,
  INTERNAL_IP4_NETMASK: 2,
  INTERNAL_IP4_DNS: 3,
  INTERNAL_IP4_NBNS: 4,
  INTERNAL_IP4_DHCP: 6,
  APPLICATION_VERSION: 7,
  INTERNAL_IP6_ADDRESS: 8,
  INTERNAL_IP6_DNS: 10,
  INTERNAL_IP6_DHCP: 12,
  INTERNAL_IP4_SUBNET: 13,
  SUPPORTED_ATTRIBUTES: 14,
  INTERNAL_IP6_SUBNET: 15,
} as const;

/**
 * RFC 7296 §3.10.1 Notify Message Types, with the extensions ikeclone speaks:
 * MOBIKE (RFC 4555), cloning (RFC 7791), fragmentation (RFC 7383),
 * signature hash algorithms (RFC 7427), redirect (RFC 5685).
 * Types below 16384 are errors; 16384 and above are status types.
 */
export const NotifyType = {
  // Error types
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  UNACCEPTABLE_ADDRESSES: 40, // RFC 4555
  UNEXPECTED_NAT_DETECTED: 41, // RFC 4555
  USE_ASSIGNED_HoA: 42, // RFC 5026
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  INVALID_GROUP_ID: 45,
  AUTHORIZATION_FAILED: 46,
  STATE_NOT_FOUND: 47, // RFC 9242
  TS_MAX_QUEUE: 48, // RFC 9611 §5.2
  // Status types
  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  HTTP_CERT_LOOKUP_SUPPORTED: 16392,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  MOBIKE_SUPPORTED: 16396, // RFC 4555
  ADDITIONAL_IP4_ADDRESS: 16397,
  ADDITIONAL_IP6_ADDRESS: 16398,
  NO_ADDITIONAL_ADDRESSES: 16399,
  UPDATE_SA_ADDRESSES: 16400,
  COOKIE2: 16401,
  NO_NATS_ALLOWED: 16402,
  AUTH_LIFETIME: 16403, // RFC 4478
  MULTIPLE_AUTH_SUPPORTED: 16404, // RFC 4739
  ANOTHER_AUTH_FOLLOWS: 16405,
  REDIRECT_SUPPORTED: 16406, // RFC 5685
  REDIRECT: 16407,
  REDIRECTED_FROM: 16408,
  TICKET_LT_OPAQUE: 16409, // RFC 5723
  TICKET_REQUEST: 16410,
  TICKET_ACK: 16411,
  TICKET_NACK: 16412,
  TICKET_OPAQUE: 16413,
  EAP_ONLY_AUTHENTICATION: 16417, // RFC 5998
  CHILDLESS_IKEV2_SUPPORTED: 16418, // RFC 6023
  IKEV2_MESSAGE_ID_SYNC_SUPPORTED: 16420, // RFC 6311
  IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED: 16421,
  IKEV2_MESSAGE_ID_SYNC: 16422,
  IPSEC_REPLAY_COUNTER_SYNC: 16423,
  SECURE_PASSWORD_METHODS: 16424,
  IKEV2_FRAGMENTATION_SUPPORTED: 16430, // RFC 7383
  SIGNATURE_HASH_ALGORITHMS: 16431, // RFC 7427
  CLONE_IKE_SA_SUPPORTED: 16432, // RFC 7791 §5.1
  CLONE_IKE_SA: 16433, // RFC 7791 §5.2
  PUZZLE: 16434, // RFC 8019
  USE_PPK: 16435, // RFC 8784
  PPK_IDENTITY: 16436,
  NO_PPK_AUTH: 16437,
  INTERMEDIATE_EXCHANGE_SUPPORTED: 16438, // RFC 9242
  IP4_ALLOWED: 16439, // RFC 8983
  IP6_ALLOWED: 16440,
  ADDITIONAL_KEY_EXCHANGE: 16441, // RFC 9370
  USE_AGGFRAG: 16442, // RFC 9347
  SUPPORTED_AUTH_METHODS: 16443, // RFC 9593
  SA_RESOURCE_INFO: 16444, // RFC 9611 §5.1
} as const;

/** RFC 7296 §3.10.1: types 1..16383 are errors, 16384.. are status. */
export function isErrorNotify(type: number): boolean {
  return type > 0 && type < 16384;
}

function invert(table: Record<string, number>): Map<number, string> {
  const m = new Map<number, string>();
  for (const [name, value] of Object.entries(table)) if (!m.has(value)) m.set(value, name);
  return m;
}

const notifyNames = invert(NotifyType);
const payloadNames = invert(PayloadType);
const exchangeNames = invert(ExchangeType);

/** Human name of a notify type, e.g. 16432 -> "CLONE_IKE_SA_SUPPORTED"; unknown -> "NOTIFY_<n>". */
export function notifyName(type: number): string {
  return notifyNames.get(type) ?? `NOTIFY_${type}`;
}

/** Human name of a payload type, e.g. 33 -> "SA". */
export function payloadName(type: number): string {
  return payloadNames.get(type) ?? `PAYLOAD_${type}`;
}

/** Human name of an exchange type, e.g. 36 -> "CREATE_CHILD_SA". */
export function exchangeName(type: number): string {
  return exchangeNames.get(type) ?? `EXCHANGE_${type}`;
}
