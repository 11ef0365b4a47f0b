// Virtual IP pools for responders (RFC 7296 §2.19): hand out one address per
// peer identity and address family from a CIDR prefix or an a-b range, IPv4
// (INTERNAL_IP4_ADDRESS) or IPv6 (INTERNAL_IP6_ADDRESS, §3.15.1), give the
// same peer the same address again, and take it back when the peer's last
// IKE SA is gone.
import { bytesToIp, cidrToRange, ipToBytes } from '../wire/ip.js';
import type { VirtualIpLeaseSource } from './peer-resources.js';

/** Address bytes (4 or 16, network order) as an unsigned integer. */
function toNumber(b: Uint8Array): bigint {
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}

/** The `length` bytes (4 or 16) of address number `n`. */
function toBytes(n: bigint, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    b[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return b;
}

/** Inclusive range of a pool's text: a CIDR prefix ("10.9.0.0/24", "fd00:9::/120") or "a-b". */
function poolRange(text: string): { start: Uint8Array; end: Uint8Array; prefix: boolean } | undefined {
  const dash = text.indexOf('-');
  if (dash < 0) {
    const r = cidrToRange(text);
    return r && { ...r, prefix: true };
  }
  const start = ipToBytes(text.slice(0, dash).trim());
  const end = ipToBytes(text.slice(dash + 1).trim());
  if (!start || !end || start.length !== end.length || toNumber(start) > toNumber(end)) return undefined;
  return { start, end, prefix: false };
}

export class VirtualIpPool {
  readonly family: 4 | 6;
  private readonly length: number;
  private readonly first: bigint;
  private readonly last: bigint;
  private readonly leases = new Map<string, bigint>();
  private readonly used = new Set<bigint>();

  constructor(readonly text: string) {
    const range = poolRange(text);
    if (!range) throw new Error(`virtual IP pool must be a CIDR prefix or an a-b range of one family: ${text}`);
    this.length = range.start.length;
    this.family = this.length === 4 ? 4 : 6;
    const start = toNumber(range.start);
    const end = toNumber(range.end);
    // A prefix never hands out its first address (IPv4's network address, IPv6's Subnet-Router
    // anycast address, RFC 4291 §2.6.1), nor IPv4's broadcast address; a range hands out all of it.
    const skipFirst = range.prefix && end - start >= (this.family === 4 ? 2n : 1n);
    const skipLast = range.prefix && this.family === 4 && end - start >= 2n;
    this.first = skipFirst ? start + 1n : start;
    this.last = skipLast ? end - 1n : end;
  }

  /**
   * The address leased to `peer`, leasing one if needed: `wanted` when the
   * peer asked for it and it is free and in the pool (RFC 7296 §3.15.1), else
   * the lowest free one; undefined when the pool is exhausted.
   */
  acquire(peer: string, wanted?: Uint8Array): string | undefined {
    const held = this.leases.get(peer);
    if (held !== undefined) return bytesToIp(toBytes(held, this.length));
    if (wanted && wanted.length === this.length) {
      const n = toNumber(wanted);
      if (n >= this.first && n <= this.last && !this.used.has(n)) return this.take(peer, n);
    }
    if (BigInt(this.used.size) > this.last - this.first) return undefined;
    // Not exhausted: at most used.size + 1 candidates are looked at.
    for (let n = this.first; n <= this.last; n++) if (!this.used.has(n)) return this.take(peer, n);
    return undefined;
  }

  private take(peer: string, n: bigint): string {
    this.used.add(n);
    this.leases.set(peer, n);
    return bytesToIp(toBytes(n, this.length));
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

  /** How many addresses the pool hands out (cluster status; an IPv6 pool past 2^53 is rounded). */
  get capacity(): number {
    return Number(this.last - this.first + 1n);
  }

  /** Every address the pool hands out, lowest first (a cluster claims them one by one in etcd). */
  *addresses(): Generator<string> {
    for (let n = this.first; n <= this.last; n++) yield bytesToIp(toBytes(n, this.length));
  }
}

/** The pools of an engine by their text, and the leases of authenticated peers (RFC 7296 §2.19). */
export class VirtualIpLeases implements VirtualIpLeaseSource {
  private readonly pools = new Map<string, VirtualIpPool>();

  /**
   * A virtual IP of `family` for the (authenticated) peer `peer` from the
   * first of its connection's pools of that family with room; `wanted` is
   * the address the peer asked for, if any.
   */
  lease(pools: readonly string[], peer: string, family: 4 | 6 = 4, wanted?: Uint8Array): { address: string; bytes: Uint8Array } | undefined {
    for (const text of pools) {
      let pool = this.pools.get(text);
      if (!pool) this.pools.set(text, (pool = new VirtualIpPool(text)));
      if (pool.family !== family) continue;
      const address = pool.acquire(peer, wanted);
      if (address) return { address, bytes: ipToBytes(address)! };
    }
    return undefined;
  }

  /** The peer's last IKE SA with its addresses is gone: they go back, of every family. */
  release(peer: string): void {
    for (const pool of this.pools.values()) pool.release(peer);
  }
}
