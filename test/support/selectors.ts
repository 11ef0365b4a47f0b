// Traffic selectors for data-plane tests (dataplane/packet.ts Selector).
import type { Selector } from '../../dataplane/packet.js';

/** The IPv4 prefix a.b.c.d/prefix, any protocol and port. */
export function cidr4(a: number[], prefix: number): Selector {
  const start = Uint8Array.from(a);
  const end = start.slice();
  for (let bit = prefix; bit < 32; bit++) end[bit >> 3]! |= 0x80 >> (bit & 7);
  return { startAddress: start, endAddress: end, ipProtocol: 0, startPort: 0, endPort: 65535 };
}
