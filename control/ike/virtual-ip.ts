// Virtual IP pools for responders (RFC 7296 §2.19): hand out one address per
// peer identity from a CIDR, give the same peer the same address again, and
// take it back when the peer's last IKE SA is gone.
import { bytesToIp, cidrToRange, ipToBytes } from '../wire/ip.js';
import { readU32 } from '../crypto/bytes.js';

function toBytes(n: number): Uint8Array {
  return new Uint8Array([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

export class VirtualIpPool {
  private readonly first: number;
  private readonly last: number;
  private readonly leases = new Map<string, number>();
  private readonly used = new Set<number>();

  constructor(readonly cidr: string) {
    const range = cidrToRange(cidr);
    if (!range || range.start.length !== 4) throw new Error(`virtual IP pool must be an IPv4 CIDR: ${cidr}`);
    // Skip the network address (and the broadcast address of prefixes shorter than /31).
    const start = readU32(range.start);
    const end = readU32(range.end);
    this.first = end - start >= 2 ? start + 1 : start;
    this.last = end - start >= 2 ? end - 1 : end;
  }

  /** The address leased to `peer`, leasing a free one if needed; undefined when exhausted. */
  acquire(peer: string): string | undefined {
    const held = this.leases.get(peer);
    if (held !== undefined) return bytesToIp(toBytes(held));
    for (let n = this.first; n <= this.last; n++) {
      if (!this.used.has(n)) {
        this.used.add(n);
        this.leases.set(peer, n);
        return bytesToIp(toBytes(n));
      }
    }
    return undefined;
  }

  release(peer: string): void {
    const n = this.leases.get(peer);
    if (n === undefined) return;
    this.leases.delete(peer);
    this.used.delete(n);
  }

  get size(): number {
    return this.leases.size;
  }
}

/** The pools of an engine by CIDR, and the leases of authenticated peers (RFC 7296 §2.19). */
export class VirtualIpLeases {
  private readonly pools = new Map<string, VirtualIpPool>();

  /** A virtual IP for the (authenticated) peer `peer` from the CIDRs of its connection's pools. */
  lease(cidrs: readonly string[], peer: string): { address: string; bytes: Uint8Array } | undefined {
    for (const cidr of cidrs) {
      let pool = this.pools.get(cidr);
      if (!pool) this.pools.set(cidr, (pool = new VirtualIpPool(cidr)));
      const address = pool.acquire(peer);
      if (address) return { address, bytes: ipToBytes(address)! };
    }
    return undefined;
  }

  /** The peer's last IKE SA with its address is gone: the address goes back. */
  release(peer: string): void {
    for (const pool of this.pools.values()) pool.release(peer);
  }
}
