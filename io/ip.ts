// IP addresses as bytes: 4 octets for IPv4, 16 for IPv6, network byte order,
// and back to text. The one conversion of ikeclone: io's sockets use it for
// datagram addresses, control/wire (re-exporting it) for ID payloads, traffic
// selectors and MOBIKE notifies. Pure functions; nothing here throws on input
// (architecture §4.3). No thread owns anything here.
import { isIP } from 'node:net';
/**
 * Text address to bytes: IPv4 -> 4 bytes, IPv6 -> 16 bytes (a zone suffix
 * such as "%eth0" is dropped, an embedded IPv4 tail like "::ffff:192.0.2.1" is
 * accepted); anything else -> undefined.
 */
/** 4 or 6 for an IPv4 or IPv6 address in text, else 0. */
export function ipFamily(s: string): 0 | 4 | 6 {
  return typeof s === 'string' ? (isIP(s) as 0 | 4 | 6) : 0;
}

/** Whether the first `prefix` bits of two addresses of the same length agree (a subnet test on bytes). */
export function samePrefix(a: Uint8Array, b: Uint8Array, prefix: number): boolean {
  if (a.length !== b.length || prefix < 0 || prefix > a.length * 8) return false;
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a[whole]! ^ b[whole]!) & mask) === 0;
}

export function ipToBytes(s: string): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined;
  const family = isIP(s);
  if (family === 4) return parseV4(s);
  if (family === 6) return parseV6(s);
  return undefined;
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = Number(parts[i]);
    if (!Number.isInteger(n) || n < 0 || n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseV6(text: string): Uint8Array | undefined {
  const zone = text.indexOf('%');
  const s = zone >= 0 ? text.slice(0, zone) : text;
  const groups: number[] = [];
  let tail: Uint8Array | undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (half: string): number[] | undefined => {
    if (half === '') return [];
    const out: number[] = [];
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (part.includes('.')) {
        if (i !== parts.length - 1) return undefined;
        tail = parseV4(part);
        if (!tail) return undefined;
        out.push((tail[0]! << 8) | tail[1]!, (tail[2]! << 8) | tail[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
        out.push(parseInt(part, 16));
      }
    }
    return out;
  };
  const head = parse(halves[0]!);
  if (!head) return undefined;
  if (halves.length === 2) {
    const rest = parse(halves[1]!);
    if (!rest || head.length + rest.length > 7) return undefined;
    groups.push(...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest);
  } else {
    if (head.length !== 8) return undefined;
    groups.push(...head);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i]! >> 8;
    out[2 * i + 1] = groups[i]! & 0xff;
  }
  return out;
}

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/**
 * Bytes to text: 4 bytes -> dotted quad, 16 bytes -> RFC 5952 canonical IPv6
 * (lower case, longest run of two or more zero groups as "::", IPv4-mapped
 * addresses as ::ffff:a.b.c.d). Any other length -> "0x" + hex, so logging an
 * odd ID payload never throws.
 */
export function bytesToIp(b: Uint8Array): string {
  if (!(b instanceof Uint8Array)) return '';
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) return `0x${hex(b)}`;
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false;
  if (mapped) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  // RFC 5952 §4.2: compress the longest run (the first one on a tie) of at least two zero groups.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const text = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return text(groups);
  return `${text(groups.slice(0, bestStart))}::${text(groups.slice(bestStart + bestLength))}`;
}
