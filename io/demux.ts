// The RFC 3948 demultiplexer: what a datagram that arrived on a UDP socket is.
// On the IKE port (500) every datagram is an IKE message. On the NAT-T port
// (4500) the first four octets decide (RFC 3948 §2.2): zero is the non-ESP
// marker in front of an IKE message, a single 0xFF octet is a NAT keepalive
// (§2.3), anything shorter is a runt, anything else is ESP (§2.1: the SPI is
// never zero). IKE goes to the control plane's receiver, ESP straight to the
// data plane's (architecture §3: ESP never passes through control/).
//
// Owner: the thread that reads the sockets (the I/O thread, the main thread).
// Received bytes are views valid only during the call; nothing here throws on
// their contents (architecture §4.3).
import type { Endpoint } from './endpoint.js';
import type { EspReceiver } from './sinks.js';

/** Length of the non-ESP marker (four zero octets) in front of IKE on the NAT-T port (RFC 3948 §2.2). */
export const NON_ESP_MARKER_LENGTH = 4;

/** An IKE message (marker stripped); `message`, `local` and `remote` are valid only during the call. */
export type IkeReceiver = (message: Uint8Array, local: Endpoint, remote: Endpoint) => void;

/** What the demultiplexer counted. */
export interface DemuxStats {
  ikeIn: number;
  espIn: number;
  keepalivesIn: number;
  /** Datagrams on the NAT-T port too short to hold a marker or an SPI. */
  runts: number;
}

export class NatTraversalDemux {
  /** Where ESP goes (the data plane registers itself); undefined drops it after counting. */
  esp: EspReceiver | undefined;

  constructor(
    private readonly natPort: number,
    private readonly stats: DemuxStats,
    private readonly ike: IkeReceiver,
  ) {}

  /** A datagram arrived on the socket bound to `local`, with its outer TOS as udpRecv reports it (0: not known). */
  receive(bytes: Uint8Array, local: Endpoint, remote: Endpoint, tos = 0): void {
    if (local.port !== this.natPort) return this.deliverIke(bytes, local, remote);
    // RFC 3948 §2.3: a one-octet 0xFF payload is a NAT keepalive.
    if (bytes.length === 1 && bytes[0] === 0xff) {
      this.stats.keepalivesIn++;
      return;
    }
    if (bytes.length < NON_ESP_MARKER_LENGTH) {
      this.stats.runts++;
      return;
    }
    if (bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 0 && bytes[3] === 0) {
      return this.deliverIke(bytes.subarray(NON_ESP_MARKER_LENGTH), local, remote);
    }
    this.stats.espIn++;
    this.esp?.(bytes, local, remote, tos);
  }

  private deliverIke(bytes: Uint8Array, local: Endpoint, remote: Endpoint): void {
    this.stats.ikeIn++;
    this.ike(bytes, local, remote);
  }
}

/** An IKE message framed for the NAT-T port: the non-ESP marker in front (RFC 3948 §2.2). */
export function withNonEspMarker(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(NON_ESP_MARKER_LENGTH + message.length);
  out.set(message, NON_ESP_MARKER_LENGTH);
  return out;
}
