// The outbound stage's path MTU check (RFC 4301 §8.2, §8.3): an inner packet
// that will not fit its SA's path after encapsulation and may not be
// fragmented is dropped and answered, as a router answers, with ICMP
// "fragmentation needed" / ICMPv6 "packet too big" written into the inner
// sink (the TUN device), rate-limited.
//
// Owner: the I/O thread (the rate limiter and the counters are its state).
// Untrusted bytes (architecture §4.3): nothing here throws on packet contents.
import { ipFamily, ipToBytes } from '../io/ip.js';
import { icmpTooBig, RateLimiter } from './icmp-too-big.js';
import { dontFragment, PATH_DEFAULTS, tunnelMtu, type PathOptions } from './path-mtu.js';
import type { SaRecord } from './sad.js';
import type { PlaneState } from './state.js';

export class PathCheck {
  readonly options: PathOptions;
  private readonly limiter: RateLimiter;

  constructor(private readonly s: PlaneState, private readonly now: () => number = () => performance.now()) {
    this.options = { ...PATH_DEFAULTS, ...s.opts.path };
    this.limiter = new RateLimiter(this.options.icmpRate, this.options.icmpBurst, now());
  }

  /** The largest inner packet the SA's path carries. */
  mtu(sa: Pick<SaRecord, 'remote' | 'transport' | 'espOverhead'>): number {
    return tunnelMtu(this.options, ipFamily(sa.remote.address) === 6 ? 6 : 4, sa.transport === 'udp', sa.espOverhead);
  }

  /**
   * True when the packet may go on through the SA. False when it was too big
   * and may not be fragmented: counted (dropTooBig), and answered unless the
   * rate limit or RFC 1812 §4.3.2.7 / RFC 4443 §2.4 (e) forbid it. An inner
   * IPv4 packet without DF goes on: the outer packet may be fragmented.
   */
  admit(packet: Uint8Array, sa: Pick<SaRecord, 'remote' | 'transport' | 'local' | 'espOverhead'>): boolean {
    const mtu = this.mtu(sa);
    if (packet.length <= mtu || dontFragment(packet) !== true) return true;
    const io = this.s.io;
    io.dropTooBig++;
    if (!this.limiter.take(this.now())) {
      io.icmpRateLimited++;
      return false;
    }
    const answer = icmpTooBig(packet, mtu, this.sourceFor(packet, sa.local.address));
    const sink = this.s.innerSink;
    if (answer !== undefined && sink !== undefined && sink.write(answer)) io.icmpTooBig++;
    return false;
  }

  /**
   * The address the answer comes from: the SA's local (outer) address when it
   * is of the inner packet's family, else the inner destination (the
   * address the sender was trying to reach through us).
   */
  private sourceFor(packet: Uint8Array, local: string): Uint8Array {
    const six = packet[0]! >> 4 === 6;
    const own = ipToBytes(local);
    if (own !== undefined && own.length === (six ? 16 : 4)) return own;
    return six ? packet.subarray(24, 40) : packet.subarray(16, 20);
  }
}
