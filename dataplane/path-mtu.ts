// The outer header of a tunnel-mode SA from its inner packet, and the
// largest inner packet a path carries (RFC 4301 §5.1.2 and §8; ECN by RFC
// 6040). Pure functions over packet bytes: no state, no I/O.
//
// Owner: the thread that calls them (the I/O thread's outbound stage, a
// worker's decapsulation); they touch only the bytes handed in.
// Untrusted bytes (architecture §4.3): nothing here throws on packet
// contents; a packet that is not IPv4/IPv6 gives undefined.
import { ESP_OVERHEAD } from './defaults.js';

/** DSCP of the outer header: copied from the inner one, cleared, or a fixed value (RFC 4301 §5.1.2.1). */
export type DscpMode = 'copy' | 'clear' | number;
/** DF of an outer IPv4 header: copied from the inner IPv4 header, cleared or set (RFC 4301 §8.1). */
export type DfMode = 'copy' | 'clear' | 'set';

export interface PathOptions {
  dscp: DscpMode;
  /** ECN: 'copy' is RFC 6040's normal mode (copied out, combined back in on decap); 'clear' its compatibility mode. */
  ecn: 'copy' | 'clear';
  df: DfMode;
  /**
   * Largest inner packet: a fixed number, or 'auto' = outerMtu minus the SA's
   * encapsulation overhead; no limit when neither is known (the outer path
   * may carry jumbo frames: only the ring cell bounds a packet then).
   */
  tunnelMtu: number | 'auto';
  /** MTU of the outer path, for tunnelMtu 'auto'; undefined = not known. */
  outerMtu: number | undefined;
  /** ICMP too-big messages per second, and the burst allowed (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f)). */
  icmpRate: number;
  icmpBurst: number;
}

export const PATH_DEFAULTS: PathOptions = {
  dscp: 'copy', ecn: 'copy', df: 'copy', tunnelMtu: 'auto', outerMtu: undefined, icmpRate: 10, icmpBurst: 10,
};

/** ECN codepoints (RFC 3168 §5). */
export const Ecn = { NOT_ECT: 0, ECT1: 1, ECT0: 2, CE: 3 } as const;

/** 4 or 6 for an IPv4/IPv6 packet long enough for its fixed header, else 0. */
export function ipVersion(p: Uint8Array): 0 | 4 | 6 {
  if (p.length >= 20 && p[0]! >> 4 === 4) return 4;
  if (p.length >= 40 && p[0]! >> 4 === 6) return 6;
  return 0;
}

/** The traffic class (IPv4 TOS / IPv6 traffic class: DSCP << 2 | ECN) of an inner packet. */
export function trafficClass(p: Uint8Array): number | undefined {
  const v = ipVersion(p);
  if (v === 4) return p[1]!;
  if (v === 6) return ((p[0]! & 0x0f) << 4) | (p[1]! >> 4);
  return undefined;
}

/** Whether a packet may not be fragmented on the way: DF of IPv4; always for IPv6 (RFC 8200 §5). */
export function dontFragment(p: Uint8Array): boolean | undefined {
  const v = ipVersion(p);
  if (v === 4) return (p[6]! & 0x40) !== 0;
  if (v === 6) return true;
  return undefined;
}

/**
 * The outer header's traffic class for an inner one (RFC 4301 §5.1.2.1:
 * DSCP copied or mapped per SA configuration; RFC 6040 §4.1: ECN copied in
 * normal mode, Not-ECT in compatibility mode).
 */
export function outerTrafficClass(inner: number, o: Pick<PathOptions, 'dscp' | 'ecn'>): number {
  const dscp = o.dscp === 'copy' ? inner >> 2 : o.dscp === 'clear' ? 0 : o.dscp & 0x3f;
  const ecn = o.ecn === 'copy' ? inner & 3 : Ecn.NOT_ECT;
  return (dscp << 2) | ecn;
}

/** The outer IPv4 header's DF for an inner packet (RFC 4301 §8.1: copy, clear or set; an inner IPv6 packet counts as DF). */
export function outerDontFragment(innerDf: boolean, df: DfMode): boolean {
  return df === 'copy' ? innerDf : df === 'set';
}

/**
 * The inner packet's ECN after decapsulation (RFC 6040 §4.2, Figure 4), or
 * 'drop' for CE outside a Not-ECT inner packet. In compatibility mode the
 * outer ECN was never set and the inner one stands.
 */
export function decapEcn(outer: number, inner: number): number | 'drop' {
  outer &= 3;
  inner &= 3;
  if (inner === Ecn.NOT_ECT) return outer === Ecn.CE ? 'drop' : Ecn.NOT_ECT;
  if (inner === Ecn.CE || outer === Ecn.CE) return Ecn.CE;
  if (outer === Ecn.ECT1) return Ecn.ECT1;
  return inner;
}

/**
 * Rewrites the ECN field of an inner IPv4/IPv6 packet in place (the IPv4
 * header checksum updated incrementally, RFC 1624). Returns false, leaving
 * the packet alone, when it is not IPv4/IPv6.
 */
export function setEcn(p: Uint8Array, ecn: number): boolean {
  const v = ipVersion(p);
  if (v === 4) {
    const old = (p[0]! << 8) | p[1]!;
    p[1] = (p[1]! & 0xfc) | (ecn & 3);
    const now = (p[0]! << 8) | p[1]!;
    // HC' = ~(~HC + ~m + m') (RFC 1624 eqn. 3)
    let sum = (~((p[10]! << 8) | p[11]!) & 0xffff) + (~old & 0xffff) + now;
    sum = (sum & 0xffff) + (sum >>> 16);
    sum = (sum & 0xffff) + (sum >>> 16);
    const hc = ~sum & 0xffff;
    p[10] = hc >> 8;
    p[11] = hc & 0xff;
    return true;
  }
  if (v === 6) {
    p[1] = (p[1]! & 0xcf) | ((ecn & 3) << 4);
    return true;
  }
  return false;
}

/**
 * ESP bytes around an inner packet at most, for a transform: header 8, IV
 * (8 for the AEADs, RFC 4106 §3.1 / RFC 7634 §2; 16 for AES-CBC, RFC 3602
 * §3), padding (to 4 bytes for the AEADs, to the 16-byte block for AES-CBC,
 * RFC 4303 §2.4), trailer 2 and the ICV.
 */
export function espOverhead(algorithm: string, icvLength: number): number {
  return algorithm.startsWith('aes-cbc') ? 8 + 16 + 15 + 2 + icvLength : 8 + 8 + 3 + 2 + icvLength;
}

/** Bytes of the outer headers around an inner packet: IP, UDP when encapsulated (RFC 3948), and ESP. */
export function encapsulationOverhead(outerFamily: 4 | 6, udpEncap: boolean, esp = ESP_OVERHEAD): number {
  return (outerFamily === 4 ? 20 : 40) + (udpEncap ? 8 : 0) + esp;
}

/** The largest inner packet an SA's path carries without fragmenting the outer one (Infinity: not known). */
export function tunnelMtu(o: Pick<PathOptions, 'tunnelMtu' | 'outerMtu'>, outerFamily: 4 | 6, udpEncap: boolean, esp = ESP_OVERHEAD): number {
  if (o.tunnelMtu !== 'auto') return o.tunnelMtu;
  if (o.outerMtu === undefined) return Infinity;
  return o.outerMtu - encapsulationOverhead(outerFamily, udpEncap, esp);
}
