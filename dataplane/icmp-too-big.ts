// ICMP "fragmentation needed" (RFC 792, RFC 1191 §4) and ICMPv6 "packet too
// big" (RFC 4443 §3.2) for an inner packet that will not fit the tunnel
// after encapsulation, written back towards its sender as a router does
// (RFC 4301 §8.2, §8.3), with the rate limit routers apply to ICMP errors
// (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f); io/rate-limiter.ts, held by
// path-check.ts).
//
// Owner: the I/O thread's outbound stage.
// Untrusted bytes (architecture §4.3): nothing here throws on packet
// contents; a packet that must not be answered gives undefined.
import { ipVersion } from './path-mtu.js';

/** At most this many bytes of an ICMPv4 error (RFC 1812 §4.3.2.3). */
const ICMP4_MAX = 576;
/** At most this many bytes of an ICMPv6 error: the IPv6 minimum MTU (RFC 4443 §2.4 (c)). */
const ICMP6_MAX = 1280;
/** ICMPv4 error types, never answered with an error (RFC 1812 §4.3.2.7). */
const ICMP4_ERRORS = new Set([3, 4, 5, 11, 12]);
/** Smallest MTU an ICMPv4 message may announce (RFC 791: every host takes 68), and IPv6's (RFC 8200 §5). */
export const MIN_MTU4 = 68;
export const MIN_MTU6 = 1280;

/** The Internet checksum (RFC 1071) of `p`, started from `sum`. */
export function internetChecksum(p: Uint8Array, sum = 0): number {
  for (let i = 0; i + 1 < p.length; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  if (p.length & 1) sum += p[p.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function isMulticastOrBroadcast4(a: Uint8Array): boolean {
  return a[0]! >= 224 || (a[0] === 0) || a.every((b) => b === 255);
}

/**
 * ICMPv4 type 3 code 4 with next-hop MTU `mtu` (RFC 1191 §4) from `from`
 * (4 bytes) to the inner packet's source, quoting as much of it as fits in
 * 576 bytes; undefined when the packet must not be answered: an ICMP error,
 * a fragment other than the first, a source that is not a unicast address
 * (RFC 1812 §4.3.2.7).
 */
export function icmp4FragNeeded(inner: Uint8Array, mtu: number, from: Uint8Array): Uint8Array | undefined {
  if (ipVersion(inner) !== 4 || from.length !== 4) return undefined;
  const ihl = (inner[0]! & 0x0f) * 4;
  if (ihl < 20 || inner.length < ihl) return undefined;
  if ((((inner[6]! & 0x1f) << 8) | inner[7]!) !== 0) return undefined; // not the first fragment
  const src = inner.subarray(12, 16);
  const dst = inner.subarray(16, 20);
  if (isMulticastOrBroadcast4(src) || isMulticastOrBroadcast4(dst)) return undefined;
  if (inner[9] === 1 && (inner.length < ihl + 1 || ICMP4_ERRORS.has(inner[ihl]!))) return undefined;
  const quote = inner.subarray(0, Math.min(inner.length, ICMP4_MAX - 28));
  const out = new Uint8Array(28 + quote.length);
  out[0] = 0x45;
  out[1] = 0xc0; // precedence "internetwork control", as routers send ICMP (RFC 1812 §4.3.2.5)
  out[2] = out.length >> 8;
  out[3] = out.length & 0xff;
  out[8] = 64; // TTL
  out[9] = 1; // ICMP
  out.set(from, 12);
  out.set(src, 16);
  const ipSum = internetChecksum(out.subarray(0, 20));
  out[10] = ipSum >> 8;
  out[11] = ipSum & 0xff;
  out[20] = 3; // destination unreachable
  out[21] = 4; // fragmentation needed and DF set
  const m = Math.max(MIN_MTU4, Math.min(mtu, 0xffff));
  out[26] = m >> 8;
  out[27] = m & 0xff;
  out.set(quote, 28);
  const sum = internetChecksum(out.subarray(20));
  out[22] = sum >> 8;
  out[23] = sum & 0xff;
  return out;
}

/** Sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an upper-layer packet, unfolded. */
function pseudoHeaderSum6(src: Uint8Array, dst: Uint8Array, length: number, next: number): number {
  let sum = 0;
  for (let i = 0; i < 16; i += 2) sum += ((src[i]! << 8) | src[i + 1]!) + ((dst[i]! << 8) | dst[i + 1]!);
  return sum + (length >>> 16) + (length & 0xffff) + next;
}

/**
 * ICMPv6 type 2 "packet too big" with MTU `mtu` (RFC 4443 §3.2) from `from`
 * (16 bytes) to the inner packet's source, quoting as much of it as fits in
 * 1280 bytes; undefined for an ICMPv6 error (RFC 4443 §2.4 (e.1)) or an
 * unspecified or multicast source (§2.4 (e.5)). A multicast destination is
 * answered: packet too big is the exception of §2.4 (e.2).
 */
export function icmp6PacketTooBig(inner: Uint8Array, mtu: number, from: Uint8Array): Uint8Array | undefined {
  if (ipVersion(inner) !== 6 || from.length !== 16) return undefined;
  const src = inner.subarray(8, 24);
  if (src[0] === 0xff || src.every((b) => b === 0)) return undefined;
  if (inner[6] === 58 && (inner.length < 41 || inner[40]! < 128)) return undefined;
  const quote = inner.subarray(0, Math.min(inner.length, ICMP6_MAX - 48));
  const icmpLen = 8 + quote.length;
  const out = new Uint8Array(40 + icmpLen);
  out[0] = 0x60;
  out[4] = icmpLen >> 8;
  out[5] = icmpLen & 0xff;
  out[6] = 58; // ICMPv6
  out[7] = 64; // hop limit
  out.set(from, 8);
  out.set(src, 24);
  out[40] = 2; // packet too big
  const m = Math.max(MIN_MTU6, mtu) >>> 0;
  out[44] = m >>> 24;
  out[45] = (m >>> 16) & 0xff;
  out[46] = (m >>> 8) & 0xff;
  out[47] = m & 0xff;
  out.set(quote, 48);
  const sum = internetChecksum(out.subarray(40), pseudoHeaderSum6(from, src, icmpLen, 58));
  out[42] = sum >> 8;
  out[43] = sum & 0xff;
  return out;
}

/** The too-big answer for an inner packet of either family; undefined when none is due. */
export function icmpTooBig(inner: Uint8Array, mtu: number, from: Uint8Array): Uint8Array | undefined {
  const v = ipVersion(inner);
  if (v === 4) return icmp4FragNeeded(inner, mtu, from);
  if (v === 6) return icmp6PacketTooBig(inner, mtu, from);
  return undefined;
}
