// The IKE engine's transport over the gateway's UDP sockets on ports 500 and
// 4500 (RFC 7296 §2.23, RFC 3948): io/udp-sockets.ts binds the sockets and
// demultiplexes what arrives (io/demux.ts); this module turns IKE messages
// into the engine's Datagrams (its own copies: the engine keeps messages for
// its response cache and retransmission) and sends the engine's Datagrams.
// Inbound ESP does not pass through here: the receiver the data plane
// registers (setEspReceiver) goes to io's demultiplexer, which calls it
// directly (architecture §3), and outbound ESP goes from the data plane to
// the sockets (`sockets`, a UdpEspPort) without passing through here.
//
// Owner: the main thread. The engine sees only Datagrams (control/ike/transport.ts).
import type { Logger } from '../log.js';
import type { Datagram, Endpoint } from '../ike/transport.js';
import type { EspReceiver } from '../../io/sinks.js';
import { UdpSockets, type UdpSocketsOptions, type UdpSocketsStats } from '../../io/udp-sockets.js';

export { resolveLocalAddress } from '../../io/udp-sockets.js';

export interface UdpTransportOptions {
  /** Addresses to listen on; 0.0.0.0 / :: expand to every interface address of that family. */
  addresses: string[];
  port: number;
  natPort: number;
  log: Logger;
  /** An IKE message (marker stripped) arrived. */
  onIke: (d: Datagram) => void;
  /** An ESP packet arrived on the NAT-T port (RFC 3948 §2.1); the data plane usually registers itself with `sockets` instead. */
  onEsp?: EspReceiver;
  /** Batched native sockets when the addon is available (default true); false: always dgram. */
  native?: boolean;
  /** Kernel steering of the NAT-T port's ESP to the workers' own sockets (io/esp-steering.ts). */
  steering?: UdpSocketsOptions['steering'];
}

export type UdpTransportStats = UdpSocketsStats;

export class UdpTransport {
  /** The sockets: the data plane sends and receives ESP through them directly (their UdpEspPort side). */
  readonly sockets: UdpSockets;

  constructor(opts: UdpTransportOptions) {
    const { onIke, ...rest } = opts;
    this.sockets = new UdpSockets({
      ...rest,
      onIke: (bytes, local, remote) => onIke({ bytes: bytes.slice(), local, remote: { address: remote.address, port: remote.port } }),
    });
  }

  get stats(): UdpTransportStats {
    return this.sockets.stats;
  }

  /** 'native' (batched system calls) or 'dgram'. */
  get kind(): 'native' | 'dgram' {
    return this.sockets.kind;
  }

  /** Local addresses with bound sockets. */
  get localAddresses(): string[] {
    return this.sockets.localAddresses;
  }

  start(): Promise<void> {
    return this.sockets.start();
  }

  /** Send an IKE message; on the NAT-T port it gets the non-ESP marker (RFC 3948 §2.2). */
  sendIke(d: Datagram): void {
    this.sockets.sendIke(d.bytes, d.local, d.remote);
  }

  /** Send raw bytes (keepalives, RFC 3948 §2.3) from a local endpoint, at once. */
  sendRaw(local: Endpoint, remote: Endpoint, bytes: Uint8Array): void {
    this.sockets.sendRaw(local, remote, bytes);
  }

  /** Whether sockets are bound on `address`. */
  hasAddress(address: string): boolean {
    return this.sockets.hasAddress(address);
  }

  /** Bind sockets on an address that appeared (MOBIKE, RFC 4555 §3.5); whether sockets are bound on it now. */
  addAddress(address: string): Promise<boolean> {
    return this.sockets.addAddress(address);
  }

  close(): void {
    this.sockets.close();
  }
}
