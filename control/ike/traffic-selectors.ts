// Traffic selector arithmetic for Child SA negotiation (RFC 7296 §2.9).
// Pure functions over the wire representation: an address range, a port range
// and an IP protocol (0 = any), compared as big-endian byte strings.
import { TsType } from '../wire/constants.js';
import type { TrafficSelector } from '../wire/payloads.js';
import { bytesToIp, ipToBytes } from '../wire/ip.js';

/** A traffic selector as configured: an address range (strings) or "dynamic" (the SA's own address). */
export interface TsConfig {
  start: string;
  end: string;
  protocol: number;
  startPort: number;
  endPort: number;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function maxBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  return compareBytes(a, b) >= 0 ? a : b;
}

function minBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  return compareBytes(a, b) <= 0 ? a : b;
}

/** A selector covering exactly one address, all protocols and ports. */
export function hostSelector(address: string): TrafficSelector {
  const bytes = ipToBytes(address);
  if (!bytes) throw new Error(`not an IP address: ${address}`);
  return {
    tsType: bytes.length === 4 ? TsType.IPV4_ADDR_RANGE : TsType.IPV6_ADDR_RANGE,
    ipProtocol: 0,
    startPort: 0,
    endPort: 65535,
    startAddress: bytes,
    endAddress: bytes,
  };
}

/** Wire selector from a configured one; "dynamic" becomes the given address. */
export function selectorFromConfig(ts: TsConfig | 'dynamic', dynamicAddress: string): TrafficSelector {
  if (ts === 'dynamic') return hostSelector(dynamicAddress);
  const start = ipToBytes(ts.start);
  const end = ipToBytes(ts.end);
  if (!start || !end || start.length !== end.length) throw new Error(`bad traffic selector ${ts.start}..${ts.end}`);
  return {
    tsType: start.length === 4 ? TsType.IPV4_ADDR_RANGE : TsType.IPV6_ADDR_RANGE,
    ipProtocol: ts.protocol,
    startPort: ts.startPort,
    endPort: ts.endPort,
    startAddress: start,
    endAddress: end,
  };
}

/** The intersection of two selectors, or undefined when they do not overlap (RFC 7296 §2.9 narrowing). */
export function intersectSelectors(a: TrafficSelector, b: TrafficSelector): TrafficSelector | undefined {
  if (a.tsType !== b.tsType) return undefined;
  if (a.startAddress.length !== b.startAddress.length) return undefined;
  let protocol: number;
  if (a.ipProtocol === 0) protocol = b.ipProtocol;
  else if (b.ipProtocol === 0 || b.ipProtocol === a.ipProtocol) protocol = a.ipProtocol;
  else return undefined;
  const startPort = Math.max(a.startPort, b.startPort);
  const endPort = Math.min(a.endPort, b.endPort);
  if (startPort > endPort) return undefined;
  const startAddress = maxBytes(a.startAddress, b.startAddress);
  const endAddress = minBytes(a.endAddress, b.endAddress);
  if (compareBytes(startAddress, endAddress) > 0) return undefined;
  return { tsType: a.tsType, ipProtocol: protocol, startPort, endPort, startAddress, endAddress };
}

/**
 * Responder-side narrowing (RFC 7296 §2.9): every proposed selector intersected
 * with every locally allowed one; an empty result means TS_UNACCEPTABLE.
 */
export function narrowSelectors(proposed: TrafficSelector[], allowed: TrafficSelector[]): TrafficSelector[] {
  const out: TrafficSelector[] = [];
  for (const p of proposed) {
    for (const a of allowed) {
      const x = intersectSelectors(p, a);
      if (x && !out.some((o) => selectorsEqual(o, x))) out.push(x);
    }
  }
  return out;
}

/** True when `inner` lies within `outer`. */
export function selectorContains(outer: TrafficSelector, inner: TrafficSelector): boolean {
  const x = intersectSelectors(outer, inner);
  return x !== undefined && selectorsEqual(x, inner);
}

/** Initiator check (RFC 7296 §2.9): each selector the responder chose lies within one we proposed. */
export function selectorsWithin(chosen: TrafficSelector[], proposed: TrafficSelector[]): boolean {
  return chosen.length > 0 && chosen.every((c) => proposed.some((p) => selectorContains(p, c)));
}

export function selectorsEqual(a: TrafficSelector, b: TrafficSelector): boolean {
  return (
    a.tsType === b.tsType &&
    a.ipProtocol === b.ipProtocol &&
    a.startPort === b.startPort &&
    a.endPort === b.endPort &&
    compareBytes(a.startAddress, b.startAddress) === 0 &&
    a.startAddress.length === b.startAddress.length &&
    compareBytes(a.endAddress, b.endAddress) === 0
  );
}

function prefixLength(start: Uint8Array, end: Uint8Array): number | undefined {
  // A range is a prefix when start has zeros and end has ones below some bit.
  const bits = start.length * 8;
  for (let len = 0; len <= bits; len++) {
    let ok = true;
    for (let i = 0; i < start.length && ok; i++) {
      const hostBits = Math.max(0, Math.min(8, (i + 1) * 8 - len));
      const mask = hostBits === 0 ? 0 : (0xff >> (8 - hostBits)) & 0xff;
      if ((start[i]! & ~mask & 0xff) !== (end[i]! & ~mask & 0xff)) ok = false;
      if ((start[i]! & mask) !== 0 || (end[i]! & mask) !== mask) ok = false;
    }
    if (ok) return len;
  }
  return undefined;
}

/** "10.1.0.0/24", "10.1.0.1..10.1.0.9", with "[proto/port-port]" when not "any". */
export function formatSelector(ts: TrafficSelector): string {
  const len = prefixLength(ts.startAddress, ts.endAddress);
  const addr = len !== undefined ? `${bytesToIp(ts.startAddress)}/${len}` : `${bytesToIp(ts.startAddress)}..${bytesToIp(ts.endAddress)}`;
  const anyPort = ts.startPort === 0 && ts.endPort === 65535;
  if (ts.ipProtocol === 0 && anyPort) return addr;
  const ports = anyPort ? '' : ts.startPort === ts.endPort ? `/${ts.startPort}` : `/${ts.startPort}-${ts.endPort}`;
  return `${addr}[${ts.ipProtocol}${ports}]`;
}
