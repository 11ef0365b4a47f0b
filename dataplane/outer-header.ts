// The outer header rules of a tunnel-mode SA (RFC 4301 §5.1.2.1, §8.1; RFC
// 6040): what the outer IP header's DSCP, ECN and DF become on encapsulation,
// and what the outer ECN field does to the inner packet on decapsulation.
// Pure functions over packet bytes and one packed configuration word: no
// state, no I/O.
//
// Owner: the thread that calls them (the owner worker of the SA, around its
// encap and decap batches); they touch only the bytes handed in.
// Untrusted bytes (architecture §4.3): nothing here throws on packet
// contents; a packet that is not IPv4/IPv6 is left as it is.

/** How the outer header is built, per Child SA (the child's dscp, ecn and df options). */
export interface OuterHeaderOptions {
  /** 'copy' the inner packet's DSCP to the outer header (RFC 4301 §5.1.2.1), or set this value (0..63). */
  dscp: 'copy' | number;
  /** 'normal': RFC 6040 normal mode (copy ECN out, combine it back in); 'off': outer Not-ECT, outer ECN ignored. */
  ecn: 'normal' | 'off';
  /** DF of an IPv4 outer header (RFC 4301 §8.1): copied from the inner packet, always set, or always clear. */
  df: 'copy' | 'set' | 'clear';
}

export const OUTER_HEADER_DEFAULTS: OuterHeaderOptions = { dscp: 'copy', ecn: 'normal', df: 'copy' };

// The packed word (SaSpec/InstallRequest `outer`): bits 0..5 the fixed DSCP,
// bit 6 DSCP fixed (else copied), bit 7 ECN normal mode, bits 8..9 DF mode.
const DSCP_FIXED = 1 << 6;
const ECN_NORMAL = 1 << 7;
const DF_SHIFT = 8;
const DF_MODES = ['copy', 'set', 'clear'] as const;

/** The options as one int (what crosses to the worker with the install). */
export function packOuterHeader(o: OuterHeaderOptions): number {
  const dscp = o.dscp === 'copy' ? 0 : DSCP_FIXED | (o.dscp & 0x3f);
  return dscp | (o.ecn === 'normal' ? ECN_NORMAL : 0) | (DF_MODES.indexOf(o.df) << DF_SHIFT);
}

export function unpackOuterHeader(word: number): OuterHeaderOptions {
  return {
    dscp: word & DSCP_FIXED ? word & 0x3f : 'copy',
    ecn: word & ECN_NORMAL ? 'normal' : 'off',
    df: DF_MODES[(word >> DF_SHIFT) & 3] ?? 'copy',
  };
}

export const OUTER_HEADER_DEFAULT_WORD = packOuterHeader(OUTER_HEADER_DEFAULTS);

/** Whether packed options `word` combine the outer ECN into the inner packet (RFC 6040 normal mode). */
export function ecnNormal(word: number): boolean {
  return (word & ECN_NORMAL) !== 0;
}

// The per-packet word a send batch carries (native/io/udp.c udpSend's `outer`
// argument): bits 0..7 the outer TOS / Traffic Class, bit 8 "set it", bit 9
// DF set, bit 10 DF clear (neither: the socket's default).
export const OUTER_TOS_SET = 1 << 8;
export const OUTER_DF_SET = 1 << 9;
export const OUTER_DF_CLEAR = 1 << 10;

/** ECN codepoints (RFC 3168 §5). */
export const ECN_NOT_ECT = 0;
export const ECN_ECT1 = 1;
export const ECN_ECT0 = 2;
export const ECN_CE = 3;

/** The TOS (IPv4) or Traffic Class (IPv6) octet of an inner packet; undefined when it is neither. */
export function innerTos(p: Uint8Array, at = 0, length = p.length - at): number | undefined {
  if (length < 2) return undefined;
  const v = p[at]! >> 4;
  if (v === 4 && length >= 20) return p[at + 1]!;
  if (v === 6 && length >= 40) return ((p[at]! & 0x0f) << 4) | (p[at + 1]! >> 4);
  return undefined;
}

/**
 * The send word of an inner packet about to be encapsulated with packed
 * options `word`: the outer TOS (DSCP copied or fixed, RFC 4301 §5.1.2.1;
 * ECN copied in normal mode, RFC 6040 §4.1, else Not-ECT) and the outer DF
 * (RFC 4301 §8.1: copy takes the inner IPv4 DF; an inner IPv6 packet is
 * never fragmented on the way, RFC 8200 §5, so copy sets it).
 */
export function outerSendWord(word: number, p: Uint8Array, at = 0, length = p.length - at): number {
  const tos = innerTos(p, at, length) ?? 0;
  const dscp = word & DSCP_FIXED ? (word & 0x3f) << 2 : tos & 0xfc;
  const ecn = word & ECN_NORMAL ? tos & 3 : ECN_NOT_ECT;
  const mode = (word >> DF_SHIFT) & 3;
  let df: number;
  if (mode === 1) df = OUTER_DF_SET;
  else if (mode === 2) df = OUTER_DF_CLEAR;
  else if (length >= 20 && p[at]! >> 4 === 4) df = p[at + 6]! & 0x40 ? OUTER_DF_SET : OUTER_DF_CLEAR;
  else df = OUTER_DF_SET;
  return OUTER_TOS_SET | dscp | ecn | df;
}

/** What decapsulation does with the outer ECN field. */
export const EcnDecap = {
  /** Inner packet unchanged (or changed in place): deliver it. */
  DELIVER: 0,
  /** Outer CE over an inner Not-ECT packet: drop it (RFC 6040 §4.2), counted. */
  DROP: 1,
} as const;
export type EcnDecap = (typeof EcnDecap)[keyof typeof EcnDecap];

/**
 * RFC 6040 §4.2: combine the outer ECN field (`outerTos`'s low bits) into the
 * inner packet at p[at, +length], in place (IPv4: header checksum updated,
 * RFC 1624). Outer CE marks an ECN-capable inner packet CE and drops a
 * Not-ECT one; outer ECT(1) over inner ECT(0) gives ECT(1); every other
 * combination leaves the inner field as it is. Not IPv4/IPv6: DELIVER,
 * untouched (the selector check drops it).
 */
export function combineEcn(outerTos: number, p: Uint8Array, at: number, length: number): EcnDecap {
  const outer = outerTos & 3;
  if (outer === ECN_NOT_ECT || outer === ECN_ECT0) return EcnDecap.DELIVER;
  const tos = innerTos(p, at, length);
  if (tos === undefined) return EcnDecap.DELIVER;
  const inner = tos & 3;
  let ecn = inner;
  if (outer === ECN_CE) {
    if (inner === ECN_NOT_ECT) return EcnDecap.DROP;
    ecn = ECN_CE;
  } else if (inner === ECN_ECT0) {
    ecn = ECN_ECT1; // outer ECT(1), RFC 6040 §4.2 table
  }
  if (ecn !== inner) setTos(p, at, (tos & 0xfc) | ecn);
  return EcnDecap.DELIVER;
}

/** Write the TOS / Traffic Class octet of the IPv4 or IPv6 packet at p[at] (the caller checked which). */
function setTos(p: Uint8Array, at: number, tos: number): void {
  if (p[at]! >> 4 === 6) {
    p[at] = (p[at]! & 0xf0) | (tos >> 4);
    p[at + 1] = ((tos & 0x0f) << 4) | (p[at + 1]! & 0x0f);
    return;
  }
  // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over the 16-bit word holding version/IHL and TOS.
  const old = (p[at]! << 8) | p[at + 1]!;
  p[at + 1] = tos;
  const now = (p[at]! << 8) | tos;
  let sum = (~((p[at + 10]! << 8) | p[at + 11]!) & 0xffff) + (~old & 0xffff) + now;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const hc = ~sum & 0xffff;
  p[at + 10] = hc >> 8;
  p[at + 11] = hc & 0xff;
}
