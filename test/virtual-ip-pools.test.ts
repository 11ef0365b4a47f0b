// Virtual IP pools (RFC 7296 §2.19): IPv4 and IPv6 prefixes and ranges, one
// lease per peer and family, the same address again for the same peer, and
// exhaustion as a refusal (undefined), never growth.
import { describe, expect, it } from 'vitest';
import { VirtualIpLeases, VirtualIpPool } from '../control/ike/virtual-ip.js';
import { ipToBytes } from '../control/wire/ip.js';

describe('virtual IP pools', () => {
  it('an IPv4 prefix skips its network and broadcast addresses, as before', () => {
    const pool = new VirtualIpPool('10.9.0.0/30');
    expect(pool.family).toBe(4);
    expect(pool.acquire('a')).toBe('10.9.0.1');
    expect(pool.acquire('b')).toBe('10.9.0.2');
    expect(pool.acquire('c')).toBeUndefined();
    expect(pool.acquire('a')).toBe('10.9.0.1');
    pool.release('a');
    expect(pool.acquire('c')).toBe('10.9.0.1');
  });

  it('an IPv6 prefix leases from its second address (the first is the Subnet-Router anycast address) up to its last', () => {
    const pool = new VirtualIpPool('fd00:9::/126');
    expect(pool.family).toBe(6);
    expect(['a', 'b', 'c', 'd'].map((p) => pool.acquire(p))).toEqual(['fd00:9::1', 'fd00:9::2', 'fd00:9::3', undefined]);
    expect(pool.size).toBe(3);
    pool.release('b');
    expect(pool.acquire('d')).toBe('fd00:9::2');
  });

  it('a large IPv6 prefix (/64) leases without walking it: addresses past 2^53 are exact', () => {
    const pool = new VirtualIpPool('2001:db8:ffff:ffff::/64');
    expect(pool.acquire('a')).toBe('2001:db8:ffff:ffff::1');
    expect(pool.acquire('b')).toBe('2001:db8:ffff:ffff::2');
    // An address the peer asked for, inside the pool and free, is the one it gets (§3.15.1).
    expect(pool.acquire('c', ipToBytes('2001:db8:ffff:ffff:ffff:ffff:ffff:fffe'))).toBe('2001:db8:ffff:ffff:ffff:ffff:ffff:fffe');
    // Outside the pool or taken: the lowest free one instead.
    expect(pool.acquire('d', ipToBytes('2001:db8::1'))).toBe('2001:db8:ffff:ffff::3');
    expect(pool.acquire('e', ipToBytes('2001:db8:ffff:ffff::1'))).toBe('2001:db8:ffff:ffff::4');
  });

  it('a range hands out every address in it, of either family', () => {
    const v4 = new VirtualIpPool('10.9.0.10-10.9.0.11');
    expect([v4.acquire('a'), v4.acquire('b'), v4.acquire('c')]).toEqual(['10.9.0.10', '10.9.0.11', undefined]);
    const v6 = new VirtualIpPool('fd00::ffff-fd00::1:0');
    expect([v6.acquire('a'), v6.acquire('b'), v6.acquire('c')]).toEqual(['fd00::ffff', 'fd00::1:0', undefined]);
  });

  it('refuses a pool that is neither a prefix nor a range of one family', () => {
    expect(() => new VirtualIpPool('10.9.0.1-fd00::1')).toThrow(/CIDR prefix or an a-b range/);
    expect(() => new VirtualIpPool('10.9.0.9-10.9.0.1')).toThrow(/CIDR prefix or an a-b range/);
    expect(() => new VirtualIpPool('fd00::/129')).toThrow(/CIDR prefix or an a-b range/);
  });

  it('leases one address per family per peer, from the first pool of that family with room', () => {
    const leases = new VirtualIpLeases();
    const pools = ['10.9.0.0/31', 'fd00:9::/127', '10.8.0.0/24', 'fd00:8::/120'];
    expect(leases.lease(pools, 'alice', 4)?.address).toBe('10.9.0.0');
    expect(leases.lease(pools, 'alice', 6)?.address).toBe('fd00:9::1');
    expect(leases.lease(pools, 'alice', 6)?.bytes).toEqual(ipToBytes('fd00:9::1'));
    // The first pools are full now: the next peer gets addresses from the second ones.
    expect(leases.lease(pools, 'bob', 4)?.address).toBe('10.9.0.1');
    expect(leases.lease(pools, 'carol', 4)?.address).toBe('10.8.0.1');
    expect(leases.lease(pools, 'bob', 6)?.address).toBe('fd00:8::1');
    // No pool of the family: no address.
    expect(leases.lease(['10.9.0.0/24'], 'dave', 6)).toBeUndefined();
    leases.release('alice');
    expect(leases.lease(pools, 'erin', 6)?.address).toBe('fd00:9::1');
    expect(leases.lease(pools, 'erin', 4)?.address).toBe('10.9.0.0');
  });
});
