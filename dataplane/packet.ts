// Inner IP packets as the SPD sees them: the 5-tuple of an IPv4 or IPv6
// packet, selector matching (RFC 4301 §4.4.1), the flow hash that spreads
// flows over the Child SAs of a clone family, and the IPv4/UDP packets the
// traffic generator sends.
//
// Untrusted bytes (architecture §4.3): parseFlow validates every length before it
// reads and returns false for anything it cannot classify; it never throws.
// Concurrency: pure functions; parseFlow writes into the FlowTuple it is given.

import { readU16, readU32 } from '../io/bytes.js';

/** IP protocol numbers with ports in the first four bytes after the IP header. */
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_SCTP = 132;
const IPPROTO_UDPLITE = 136;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;

/**
 * A traffic selector range (RFC 7296 §3.13.1): addresses as 4 or 16 bytes,
 * protocol 0 = any, ports inclusive (0..65535 = any; for ICMP the ports hold
 * type << 8 | code).
 */
export interface Selector {
  startAddress: Uint8Array;
  endAddress: Uint8Array;
  ipProtocol: number;
  startPort: number;
  endPort: number;
}

/** The fields of an inner packet that selectors and the flow hash look at. */
export interface FlowTuple {
  /** 4 or 6. */
  version: number;
  /** Offset and length (4 or 16) of the source and destination addresses in the packet. */
  srcOffset: number;
  dstOffset: number;
  addrLength: number;
  protocol: number;
  /** Ports, or ICMP type << 8 | code in both; -1 when the packet has none (or is a non-first fragment). */
  srcPort: number;
  dstPort: number;
  /**
   * -1 unless the packet is a fragment; then the protocol number every
   * fragment of its datagram shows (IPv4 Protocol; IPv6 the Fragment header's
   * Next Header), which flowHash uses in place of protocol and ports.
   */
  fragmentProtocol: number;
}

/** A FlowTuple to reuse on the hot path (parseFlow overwrites every field). */
export function newFlowTuple(): FlowTuple {
  return { version: 0, srcOffset: 0, dstOffset: 0, addrLength: 0, protocol: 0, srcPort: -1, dstPort: -1, fragmentProtocol: -1 };
}

function readPorts(p: Uint8Array, at: number, protocol: number, out: FlowTuple): void {
  out.srcPort = -1;
  out.dstPort = -1;
  if (protocol === IPPROTO_TCP || protocol === IPPROTO_UDP || protocol === IPPROTO_SCTP || protocol === IPPROTO_UDPLITE) {
    if (at + 4 > p.length) return;
    out.srcPort = readU16(p, at);
    out.dstPort = readU16(p, at + 2);
  } else if (protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6) {
    // RFC 7296 §3.13.1: ICMP type in the high octet and code in the low octet of both ports.
    if (at + 2 > p.length) return;
    out.srcPort = out.dstPort = readU16(p, at);
  }
}

/**
 * Classify an inner packet. Returns false (and leaves `out` unspecified) for
 * anything that is not a well-formed IPv4 or IPv6 header.
 */
export function parseFlow(p: Uint8Array, out: FlowTuple): boolean {
  if (p.length < 1) return false;
  const version = p[0]! >> 4;
  if (version === 4) {
    if (p.length < 20) return false;
    const ihl = (p[0]! & 0x0f) * 4;
    const total = readU16(p, 2);
    if (ihl < 20 || total < ihl || total > p.length) return false;
    out.version = 4;
    out.addrLength = 4;
    out.srcOffset = 12;
    out.dstOffset = 16;
    out.protocol = p[9]!;
    const fragmentOffset = ((p[6]! & 0x1f) << 8) | p[7]!;
    const moreFragments = (p[6]! & 0x20) !== 0;
    out.fragmentProtocol = fragmentOffset !== 0 || moreFragments ? out.protocol : -1;
    if (fragmentOffset !== 0) {
      // RFC 4301 §7: a non-first fragment carries no ports.
      out.srcPort = out.dstPort = -1;
    } else {
      readPorts(p.subarray(0, total), ihl, out.protocol, out);
    }
    return true;
  }
  if (version === 6) {
    if (p.length < 40) return false;
    const payloadLength = readU16(p, 4);
    const end = 40 + payloadLength;
    if (end > p.length) return false;
    out.version = 6;
    out.addrLength = 16;
    out.srcOffset = 8;
    out.dstOffset = 24;
    out.fragmentProtocol = -1;
    let next = p[6]!;
    let at = 40;
    // Skip extension headers (RFC 4301 §4.4.1.1, RFC 8200 §4): hop-by-hop, routing, destination options, fragment.
    for (let hops = 0; hops < 8; hops++) {
      if (next === 0 || next === 43 || next === 60) {
        if (at + 2 > end) return false;
        const n = p[at]!;
        at += (p[at + 1]! + 1) * 8;
        next = n;
      } else if (next === 44) {
        if (at + 8 > end) return false;
        next = p[at]!;
        out.fragmentProtocol = next;
        if ((readU16(p, at + 2) & 0xfff8) !== 0) {
          // RFC 8200 §4.5: what follows a non-first fragment's Fragment header
          // is the middle of the Fragmentable Part (which may begin with a
          // Destination Options header, §4.1), not headers: walking on would
          // let payload bytes choose the protocol. The Fragment header's Next
          // Header is the protocol; ports are unavailable (RFC 4301 §7).
          out.protocol = next;
          out.srcPort = out.dstPort = -1;
          return true;
        }
        at += 8;
      } else break;
    }
    if (at > end) return false;
    out.protocol = next;
    readPorts(p.subarray(0, end), at, next, out);
    return true;
  }
  return false;
}

function addressInRange(p: Uint8Array, at: number, len: number, start: Uint8Array, end: Uint8Array): boolean {
  if (start.length !== len || end.length !== len) return false;
  // start <= address
  let i = 0;
  while (i < len && p[at + i] === start[i]) i++;
  if (i < len && p[at + i]! < start[i]!) return false;
  // address <= end
  i = 0;
  while (i < len && p[at + i] === end[i]) i++;
  if (i < len && p[at + i]! > end[i]!) return false;
  return true;
}

function portInRange(port: number, s: Selector): boolean {
  // RFC 4301 §4.4.1.1: ANY (0..65535) matches every packet, with ports or without.
  if (s.startPort === 0 && s.endPort === 0xffff) return true;
  // RFC 4301 §4.4.1.1/§4.4.1.2: OPAQUE (start 65535, end 0) MUST be supported
  // and matches exactly the packets whose ports are unavailable (-1 here: a
  // non-first fragment, or a protocol without ports).
  if (s.startPort === 0xffff && s.endPort === 0) return port < 0;
  // A range other than ANY or OPAQUE cannot match a packet without ports (RFC 4301 §4.4.1.1).
  return port >= 0 && port >= s.startPort && port <= s.endPort;
}

/** Whether address `at` of the packet with protocol and port falls in selector `s`. */
function selectorMatches(p: Uint8Array, at: number, f: FlowTuple, port: number, s: Selector): boolean {
  if (s.ipProtocol !== 0 && s.ipProtocol !== f.protocol) return false;
  return addressInRange(p, at, f.addrLength, s.startAddress, s.endAddress) && portInRange(port, s);
}

/**
 * Whether a packet travelling from `src` selectors to `dst` selectors is
 * covered: its source by one of `srcSel` and its destination by one of
 * `dstSel` (outbound: local, remote; inbound: remote, local).
 */
export function flowMatches(p: Uint8Array, f: FlowTuple, srcSel: readonly Selector[], dstSel: readonly Selector[]): boolean {
  let ok = false;
  for (const s of srcSel) if (selectorMatches(p, f.srcOffset, f, f.srcPort, s)) { ok = true; break; }
  if (!ok) return false;
  for (const s of dstSel) if (selectorMatches(p, f.dstOffset, f, f.dstPort, s)) return true;
  return false;
}

function mix(h: number, v: number): number {
  // murmur3's 32-bit block mix.
  v = Math.imul(v, 0xcc9e2d51);
  v = (v << 15) | (v >>> 17);
  v = Math.imul(v, 0x1b873593);
  h ^= v;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * A 32-bit hash of the 5-tuple (addresses, protocol, ports): every packet of
 * one flow gets the same value, so it takes the same Child SA and keeps its
 * order. A fragment hashes its addresses and protocol only: the first
 * fragment has ports and the others do not (RFC 4301 §7), and all fragments
 * of a datagram must take one SA, one worker, so they stay in order. Not
 * keyed: it spreads load, it is not a security boundary.
 */
export function flowHash(p: Uint8Array, f: FlowTuple): number {
  let h = 0x9747b28c;
  for (let i = 0; i < f.addrLength; i += 4) {
    h = mix(h, readU32(p, f.srcOffset + i));
    h = mix(h, readU32(p, f.dstOffset + i));
  }
  if (f.fragmentProtocol >= 0) {
    h = mix(h, (f.fragmentProtocol << 16) ^ 0xffff);
    h = mix(h, 0xffff);
  } else {
    h = mix(h, (f.protocol << 16) ^ (f.srcPort & 0xffff));
    h = mix(h, f.dstPort & 0xffff);
  }
  // fmix32
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** RFC 1071 Internet checksum over p[from, to). */
export function internetChecksum(p: Uint8Array, from: number, to: number): number {
  let sum = 0;
  let i = from;
  for (; i + 1 < to; i += 2) sum += readU16(p, i);
  if (i < to) sum += p[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export const IPV4_HEADER_BYTES = 20;
export const UDP_HEADER_BYTES = 8;

/**
 * Write an IPv4/UDP packet of `size` bytes (28..65535) at `at` in `buf`:
 * addresses as 4 bytes, ports, IP ID, a valid header checksum, UDP checksum 0
 * (allowed over IPv4, RFC 768), and a payload of repeated `fill` bytes.
 */
export function writeUdp4(
  buf: Uint8Array, at: number, size: number,
  src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number, id: number, fill = 0x5a,
): void {
  if (!Number.isInteger(size) || size < IPV4_HEADER_BYTES + UDP_HEADER_BYTES || size > 0xffff) {
    throw new RangeError('writeUdp4: size must be an integer from 28 to 65535');
  }
  if (src.length !== 4 || dst.length !== 4) throw new RangeError('writeUdp4: addresses must be 4 bytes');
  if (at < 0 || at + size > buf.length) throw new RangeError('writeUdp4: packet does not fit the buffer');
  buf[at] = 0x45;
  buf[at + 1] = 0;
  buf[at + 2] = size >>> 8;
  buf[at + 3] = size & 0xff;
  buf[at + 4] = (id >>> 8) & 0xff;
  buf[at + 5] = id & 0xff;
  buf[at + 6] = 0x40; // DF
  buf[at + 7] = 0;
  buf[at + 8] = 64; // TTL
  buf[at + 9] = IPPROTO_UDP;
  buf[at + 10] = 0;
  buf[at + 11] = 0;
  buf.set(src, at + 12);
  buf.set(dst, at + 16);
  const c = internetChecksum(buf, at, at + IPV4_HEADER_BYTES);
  buf[at + 10] = c >>> 8;
  buf[at + 11] = c & 0xff;
  const u = at + IPV4_HEADER_BYTES;
  const udpLength = size - IPV4_HEADER_BYTES;
  buf[u] = srcPort >>> 8;
  buf[u + 1] = srcPort & 0xff;
  buf[u + 2] = dstPort >>> 8;
  buf[u + 3] = dstPort & 0xff;
  buf[u + 4] = udpLength >>> 8;
  buf[u + 5] = udpLength & 0xff;
  buf[u + 6] = 0;
  buf[u + 7] = 0;
  buf.fill(fill, u + UDP_HEADER_BYTES, at + size);
}

/** A representative address of a selector range: its start, or start + 1 when the range has room (avoids .0). */
export function selectorAddress(s: Selector): Uint8Array {
  const a = s.startAddress.slice();
  let differs = false;
  for (let i = 0; i < a.length; i++) if (a[i] !== s.endAddress[i]) differs = true;
  if (differs && a[a.length - 1]! < 0xff) a[a.length - 1]! += 1;
  return a;
}
