// IP addresses as wire bytes (ID payloads RFC 7296 §3.5, traffic selectors
// §3.13.1, configuration attributes §3.15.1, MOBIKE notifies RFC 4555 §3.6):
// 4 octets for IPv4, 16 for IPv6, network byte order. Nothing here throws.
import { bytesToIp, ipFamily, ipToBytes, samePrefix } from '../../io/ip.js';

export { bytesToIp, ipFamily, ipToBytes, samePrefix };

/**
 * CIDR prefix to an inclusive address range: "10.1.0.0/24" -> 10.1.0.0 ..
 * 10.1.0.255. Host bits in the address are cleared ("10.1.0.7/24" gives the
 * same range); a bare address is a single-host prefix (/32 or /128). Malformed
 * input -> undefined.
 */
export function cidrToRange(cidr: string): { start: Uint8Array; end: Uint8Array } | undefined {
  if (typeof cidr !== 'string') return undefined;
  const slash = cidr.indexOf('/');
  const address = ipToBytes(slash >= 0 ? cidr.slice(0, slash) : cidr);
  if (!address) return undefined;
  const bits = address.length * 8;
  let prefix = bits;
  if (slash >= 0) {
    const p = cidr.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > bits) return undefined;
  }
  const start = new Uint8Array(address.length);
  const end = new Uint8Array(address.length);
  for (let i = 0; i < address.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i)); // network bits in this octet
    const mask = (0xff << (8 - keep)) & 0xff;
    start[i] = address[i]! & mask;
    end[i] = start[i]! | (~mask & 0xff);
  }
  return { start, end };
}

/** Prefix length when [start, end] is exactly one CIDR block, else undefined. */
export function rangePrefixLength(start: Uint8Array, end: Uint8Array): number | undefined {
  if (!(start instanceof Uint8Array) || !(end instanceof Uint8Array)) return undefined;
  if (start.length !== end.length || (start.length !== 4 && start.length !== 16)) return undefined;
  const bits = start.length * 8;
  let prefix = bits;
  for (let bit = 0; bit < bits; bit++) {
    const shift = 7 - (bit & 7);
    const s = (start[bit >> 3]! >> shift) & 1;
    const e = (end[bit >> 3]! >> shift) & 1;
    if (prefix === bits) {
      if (s !== e) {
        if (s !== 0) return undefined;
        prefix = bit;
      }
    } else if (s !== 0 || e !== 1) return undefined;
  }
  return prefix;
}

/**
 * Human form of an address range, as in traffic selectors: "10.1.0.0/24" when
 * the range is exactly a prefix (a single address gives /32 or /128),
 * otherwise "a..b".
 */
export function rangeToString(start: Uint8Array, end: Uint8Array): string {
  const prefix = rangePrefixLength(start, end);
  if (prefix !== undefined) return `${bytesToIp(start)}/${prefix}`;
  return `${bytesToIp(start)}..${bytesToIp(end)}`;
}
