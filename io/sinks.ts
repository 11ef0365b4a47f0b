// The interfaces through which io/ hands packets to its consumers and takes
// packets from them. io imports nothing from control/ or dataplane/
// (architecture §2): a consumer registers a receiver, or passes an object of
// one of these shapes, and io calls it on the thread that owns the device or
// socket (the I/O thread, the main thread). Types only.
import type { Endpoint } from './endpoint.js';

/**
 * ESP that arrived in UDP on the NAT-T port (RFC 3948 §2.1), from the SPI on.
 * `packet`, `local` and `remote` are valid only during the call. `tos`: its
 * outer TOS / Traffic Class as udpRecv reports it (RECV_TOS_VALID | octet),
 * 0 when the socket does not tell (dgram).
 */
export type EspReceiver = (packet: Uint8Array, local: Endpoint, remote: Endpoint, tos: number) => void;

/** Where decapsulated inner packets go (a TUN device). */
export interface InnerSink {
  /** Deliver, or stage until flush(), one inner packet (a view valid only during the call); false if it was dropped. */
  write(packet: Uint8Array): boolean;
  /** Deliver what was staged, after each pass over the workers' output; returns how many staged packets were dropped. */
  flush?(): number;
}

/** Raw ESP (IP protocol 50) output, for SAs without UDP encapsulation. */
export interface RawEspSender {
  /**
   * Send, or queue until flush(), one ESP packet; `esp` is valid only during
   * the call. `outer`: its outer header word (native/io/udp.c udpSend's
   * `outer`: TOS / Traffic Class, DF), 0 or absent for the socket's defaults.
   */
  send(esp: Uint8Array, remoteAddress: string, outer?: number): void;
  /** Send what was queued, after each pass over a worker's output. */
  flush?(): void;
  /** Whether ESP to this address can be sent (its address family has a raw socket); absent: IPv4 only. */
  carries?(remoteAddress: string): boolean;
}
