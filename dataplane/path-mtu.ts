// The largest inner packet a path carries (RFC 4301 §8) and what an inner
// packet says about fragmenting it. Pure functions over packet bytes: no
// state, no I/O.
//
// Owner: the thread that calls them (the I/O thread's outbound stage); they
// touch only the bytes handed in.
// Untrusted bytes (architecture §4.3): nothing here throws on packet
// contents; a packet that is not IPv4/IPv6 gives undefined.
import { ESP_OVERHEAD } from './defaults.js';

export interface PathOptions {
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
  tunnelMtu: 'auto', outerMtu: undefined, icmpRate: 10, icmpBurst: 10,
};

/** 4 or 6 for an IPv4/IPv6 packet long enough for its fixed header, else 0. */
export function ipVersion(p: Uint8Array): 0 | 4 | 6 {
  if (p.length >= 20 && p[0]! >> 4 === 4) return 4;
  if (p.length >= 40 && p[0]! >> 4 === 6) return 6;
  return 0;
}

/** Whether a packet may not be fragmented on the way: DF of IPv4; always for IPv6 (RFC 8200 §5). */
export function dontFragment(p: Uint8Array): boolean | undefined {
  const v = ipVersion(p);
  if (v === 4) return (p[6]! & 0x40) !== 0;
  if (v === 6) return true;
  return undefined;
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
