// Inbound ESP on the I/O thread: ESP from the io layer (UDP on the NAT-T
// port after RFC 3948 demultiplexing, io/demux.ts, or raw IP protocol 50,
// io/rawesp.ts) -> SAD by SPI -> the owner worker's in ring. The worker
// decapsulates (replay check, ICV, window update); its output comes back
// through output.ts, or the worker writes it itself (direct output).
//
// Owner: the I/O thread (the gateway's main thread). Untrusted bytes
// (architecture §4.3): nothing here throws on packet contents; every drop is
// counted by reason.
import type { Endpoint } from '../io/endpoint.js';
import { readU32 } from '../io/bytes.js';
import { CellKind } from './ring.js';
import type { RingFeed } from './ring-feed.js';
import type { PlaneState } from './state.js';
import type { HandoverTiming } from './handover.js';

export class InboundEsp {
  constructor(private readonly s: PlaneState, private readonly feed: RingFeed, private readonly handover: HandoverTiming) {}

  /** ESP that arrived in UDP (io/udp-sockets.ts calls this directly: the receiver the data plane registers). */
  readonly fromUdp = (packet: Uint8Array, _local: Endpoint, remote: Endpoint, tos: number): void => this.receiveEsp(packet, remote, tos);

  /** ESP that arrived raw (IP protocol 50): every raw socket sees all of it, so only that to our SAs' local addresses. */
  readonly fromRaw = (esp: Uint8Array, source: string, destination: string, tos: number): void => {
    if (this.s.sad!.hasLocalAddress(destination)) this.receiveEsp(esp, { address: source, port: 0 }, tos);
  };

  /**
   * An ESP packet arrived (from the SPI on: UDP payload after RFC 3948
   * demultiplexing, or the IP payload of protocol 50) from `remote`. Routed
   * by SPI to the owner worker, with its outer TOS (`tos`, as udpRecv
   * reports it; 0: not known) in the cell, so the worker combines the outer
   * ECN into the inner packet as on its own socket (RFC 6040 §4.2); never
   * throws on packet contents.
   */
  receiveEsp(packet: Uint8Array, remote?: Endpoint, tos = 0): void {
    const io = this.s.io;
    io.espIn++;
    io.espInBytes += packet.length;
    // SPI + sequence number at least (RFC 4303 §2).
    if (!this.s.running || packet.length < 8) {
      io.dropMalformed++;
      return;
    }
    const spi = readU32(packet, 0);
    const r = this.s.sad!.inbound(spi);
    if (!r) {
      io.dropUnknownSpi++;
      if (this.s.events.listenerCount('unknown-spi') > 0) this.s.events.emit('unknown-spi', spi, remote);
      return;
    }
    if (r.state !== 'active') {
      // Installing: the worker may not have the slot yet. The SPI is a valid
      // SA's: no 'unknown-spi', which would make the control plane answer
      // INVALID_SPI (RFC 7296 §2.21.4) for an SA it just created. Held until
      // the worker has it (the peer may send on it before our install ends).
      if (r.state === 'installing' && this.handover.hold(r, packet, tos)) return;
      io.dropNoSa++;
      return;
    }
    this.feed.enqueue(r.worker, packet, r.inSlot, CellKind.DECAP, r.inTag, tos);
  }
}
