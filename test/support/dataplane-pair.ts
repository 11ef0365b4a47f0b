// Two data planes (2 workers each, inner packets delivered to a sink) wired
// back to back in memory: each one's ESP output reaches the other after a
// microtask hop, like a socket. With matching SaSpecs (A's outbound SA is
// B's inbound one) between 10.1.0.0/24 behind A and 10.2.0.0/24 behind B.
// The data-plane tests of workers and of rekey handover share this set-up.
import { randomBytes } from 'node:crypto';
import { DataPlane, type DataPlaneOptions } from '../../dataplane/dataplane.js';
import type { Endpoint, SaSpec } from '../../dataplane/sad.js';
import { cidr4 } from './selectors.js';

export const NET_A = cidr4([10, 1, 0, 0], 24);
export const NET_B = cidr4([10, 2, 0, 0], 24);
export const EP_A: Endpoint = { address: '192.0.2.1', port: 4500 };
export const EP_B: Endpoint = { address: '192.0.2.2', port: 4500 };

/** The SPI of an ESP packet. */
export const spiOf = (esp: Uint8Array) => ((esp[0]! << 24) | (esp[1]! << 16) | (esp[2]! << 8) | esp[3]!) >>> 0;

const started: DataPlane[] = [];

/** A plane a test made itself, stopped with the others by stopPlanes. */
export function trackPlane(p: DataPlane): void {
  started.push(p);
}

/** Stops every plane planesBackToBack started or trackPlane was given (for afterEach). */
export async function stopPlanes(): Promise<void> {
  for (const p of started.splice(0)) await p.stop();
}

/** A and B started and wired; the ESP datagrams each sent, and the SPIs they carried. */
export async function planesBackToBack(opts: Partial<DataPlaneOptions> = {}) {
  let a!: DataPlane;
  let b!: DataPlane;
  const wire = { aToB: 0, bToA: 0 };
  const sentSpis = { a: [] as number[], b: [] as number[] };
  a = new DataPlane({ workers: 2, sink: 'deliver', ...opts, sendUdp: (_l, _r, esp) => { wire.aToB++; sentSpis.a.push(spiOf(esp)); const c = esp.slice(); queueMicrotask(() => b.receiveEsp(c)); } });
  b = new DataPlane({ workers: 2, sink: 'deliver', ...opts, sendUdp: (_l, _r, esp) => { wire.bToA++; sentSpis.b.push(spiOf(esp)); const c = esp.slice(); queueMicrotask(() => a.receiveEsp(c)); } });
  started.push(a, b);
  await Promise.all([a.start(), b.start()]);
  return { a, b, wire, sentSpis };
}

let nextSpi = 0x1000;

/**
 * Matching SaSpecs for A and B (A's out = B's in), AES-GCM-128 with keys of
 * `keyBytes` unless told otherwise; `both` applies to both specs, `a` and `b`
 * to one of them.
 */
export function mirroredSpecs(id: number, extra: { both?: Partial<SaSpec>; a?: Partial<SaSpec>; b?: Partial<SaSpec>; keyBytes?: number } = {}): { a: SaSpec; b: SaSpec } {
  const kAB = randomBytes(extra.keyBytes ?? 20);
  const kBA = randomBytes(extra.keyBytes ?? 20);
  const spiAtoB = nextSpi++;
  const spiBtoA = nextSpi++;
  const base = { id, algorithm: 'aes-gcm-128' as const, icvLength: 16 as const, esn: false, replayWindow: 1024, udpEncap: true, ...extra.both };
  return {
    a: { ...base, spiIn: spiBtoA, spiOut: spiAtoB, keyIn: Uint8Array.from(kBA), keyOut: Uint8Array.from(kAB), localTs: [NET_A], remoteTs: [NET_B], local: EP_A, remote: EP_B, ...extra.a },
    b: { ...base, spiIn: spiAtoB, spiOut: spiBtoA, keyIn: Uint8Array.from(kAB), keyOut: Uint8Array.from(kBA), localTs: [NET_B], remoteTs: [NET_A], local: EP_B, remote: EP_A, ...extra.b },
  };
}
