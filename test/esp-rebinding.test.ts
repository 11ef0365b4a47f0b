// RFC 7296 §2.23 on the ESP path (control/ike/esp-rebinding.ts): which
// reported ESP source changes move the IKE SA and its Child SAs, and which
// are refused (we are behind a NAT, no NAT in front of the peer, MOBIKE,
// not UDP-encapsulated, not established).
import { describe, expect, it } from 'vitest';
import { followEspSource } from '../control/ike/esp-rebinding.js';
import type { IkeContext } from '../control/ike/context.js';
import type { ChildSa } from '../control/ike/ike-sa.js';

function fixture(over: { natLocal?: boolean; natRemote?: boolean; peerMobike?: boolean; udpEncap?: boolean; state?: string } = {}) {
  const moved: unknown[] = [];
  const sa = {
    id: 1, state: over.state ?? 'established', natLocal: over.natLocal ?? false, natRemote: over.natRemote ?? true, peerMobike: over.peerMobike ?? false,
    local: { address: '10.0.2.2', port: 4500 }, remote: { address: '10.0.2.1', port: 20000 },
    peerAdditionalAddresses: [] as string[], peerWithdrawnAddress: undefined, addressGeneration: 0,
  };
  const child = { id: 7, ike: sa, state: 'established', udpEncap: over.udpEncap ?? true } as unknown as ChildSa;
  const engine = { log: { info: () => undefined, debug: () => undefined }, emit: (e: string, s: unknown) => moved.push([e, s]) } as unknown as IkeContext;
  return { sa, child, engine, moved };
}

describe('followEspSource (RFC 7296 §2.23)', () => {
  it('a UDP-encapsulated SA whose peer is behind a NAT follows it to the new port; its Child SAs with it', () => {
    const f = fixture();
    expect(followEspSource(f.engine, f.child, { address: '10.0.2.1', port: 30000 })).toBe('moved');
    expect(f.sa.remote).toEqual({ address: '10.0.2.1', port: 30000 });
    expect(f.sa.local).toEqual({ address: '10.0.2.2', port: 4500 });
    expect(f.moved).toEqual([['ike-moved', f.sa]]);
  });

  it('refuses when we are behind a NAT, the peer is not, MOBIKE is in use, ESP is not encapsulated or the SA is not up', () => {
    const to = { address: '10.0.2.9', port: 30000 };
    for (const [over, why] of [
      [{ natLocal: true }, 'local-nat'],
      [{ natRemote: false }, 'no-peer-nat'],
      [{ peerMobike: true }, 'mobike'],
      [{ udpEncap: false }, 'not-encapsulated'],
      [{ state: 'rekeying' }, 'not-established'],
    ] as const) {
      const f = fixture(over);
      expect(followEspSource(f.engine, f.child, to), why).toBe(why);
      expect(f.sa.remote, why).toEqual({ address: '10.0.2.1', port: 20000 });
      expect(f.moved, why).toEqual([]);
    }
    const f = fixture();
    expect(followEspSource(f.engine, f.child, { address: '10.0.2.1', port: 20000 })).toBe('same');
  });
});
