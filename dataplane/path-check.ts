// The outbound stage's path MTU check (RFC 4301 §8.2, §8.3): an inner packet
// that will not fit its SA's path after encapsulation and may not be
// fragmented is dropped and answered, as a router answers, with ICMP
// "fragmentation needed" / ICMPv6 "packet too big" written into the inner
// sink (the TUN device), rate-limited.
//
// Owner: the I/O thread (the rate limiter and the counters are its state).
// Untrusted bytes (architecture §4.3): nothing here throws on packet contents.
import { ipFamily } from '../io/ip.js';
import { icmpTooBig } from './icmp-too-big.js';
import { RateLimiter } from '../io/rate-limiter.js';
import { dontFragment, PATH_DEFAULTS, tunnelMtu, type PathOptions } from './path-mtu.js';
import type { SaRecord } from './sad.js';
import type { PlaneState } from './state.js';

export class PathCheck {
  readonly options: PathOptions;
  private readonly limiter: RateLimiter;
  /** No tunnel or outer MTU configured: every size goes on, and admit() does no per-packet work. */
  private readonly unlimited: boolean;

  constructor(private readonly s: PlaneState, private readonly now: () => number = () => performance.now()) {
    this.options = { ...PATH_DEFAULTS, ...s.opts.path };
    this.limiter = new RateLimiter(this.options.icmpRate, this.options.icmpBurst, now());
    this.unlimited = this.options.tunnelMtu === 'auto' && this.options.outerMtu === undefined;
  }

  /** The largest inner packet the SA's path carries (its remote's family as the SAD recorded it: no address parsed per packet). */
  mtu(sa: Pick<SaRecord, 'remote' | 'remoteFamily' | 'transport' | 'espOverhead'>): number {
    const family = sa.remoteFamily ?? (ipFamily(sa.remote.address) === 6 ? 6 : 4);
    return tunnelMtu(this.options, family, sa.transport === 'udp', sa.espOverhead);
  }

  /**
   * True when the packet may go on through the SA. False when it was too big
   * and may not be fragmented: counted (dropTooBig), and answered unless the
   * rate limit or RFC 1812 §4.3.2.7 / RFC 4443 §2.4 (e) forbid it. An inner
   * IPv4 packet without DF goes on: the outer packet may be fragmented.
   */
  admit(packet: Uint8Array, sa: Pick<SaRecord, 'remote' | 'remoteFamily' | 'transport' | 'espOverhead'>): boolean {
    if (this.unlimited) return true;
    const mtu = this.mtu(sa);
    if (packet.length <= mtu || dontFragment(packet) !== true) return true;
    const io = this.s.io;
    io.dropTooBig++;
    if (!this.limiter.take(this.now())) {
      io.icmpRateLimited++;
      return false;
    }
    const answer = icmpTooBig(packet, mtu, this.sourceFor(packet));
    const sink = this.s.innerSink;
    // A sink that stages (a TUN device with offloads) is flushed at once: the answer is rare and
    // the output stage, which flushes after its passes, may not run before the sender retries.
    if (answer !== undefined && sink !== undefined && sink.write(answer) && (sink.flush?.() ?? 0) === 0) io.icmpTooBig++;
    return false;
  }

  /**
   * The address the answer comes from: the inner destination, the address the
   * sender was trying to reach. It routes back through the tunnel, so the
   * sender's reverse-path check passes, and it is never one of the sender's
   * own addresses (the gateway's outer address is, for traffic the gateway's
   * host sends itself, and the kernel drops such a "martian" source).
   */
  private sourceFor(packet: Uint8Array): Uint8Array {
    return packet[0]! >> 4 === 6 ? packet.subarray(24, 40) : packet.subarray(16, 20);
  }
}
