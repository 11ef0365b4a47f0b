// Raw ESP (IP protocol 50, RFC 4303 §2) for SAs without UDP encapsulation:
// when no NAT was detected and the peer does not force UDP (strongSwan's
// kernel-libipsec always does). Uses the raw-socket package (root or
// CAP_NET_RAW). IPv4: the kernel writes the outer header on send, and hands
// the whole datagram, IP header included, on receive.
//
// Concurrency: a RawEspSocket belongs to the I/O thread that opened it; its
// 'message' events run there. Received bytes are validated before use and a
// bad datagram is counted, never thrown on (DESIGN §4.3).
import { createRequire } from 'node:module';
import { isIPv4 } from 'node:net';
import type { RawEspSender } from './dataplane.js';

export const IPPROTO_ESP = 50;

interface RawSocket {
  on(event: 'message', listener: (buffer: Buffer, source: string) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  send(buffer: Uint8Array, offset: number, length: number, address: string, callback: (err: Error | null, bytes: number) => void): void;
  close(): void;
}

interface RawSocketModule {
  createSocket(options: { protocol: number; addressFamily?: number; bufferSize?: number }): RawSocket;
  AddressFamily: { IPv4: number; IPv6: number };
}

export interface RawEspStats {
  packetsIn: number;
  packetsOut: number;
  /** Datagrams that were not IPv4 carrying ESP (too short, bad header). */
  malformed: number;
  sendErrors: number;
}

function loadRawSocket(): RawSocketModule {
  return createRequire(import.meta.url)('raw-socket') as RawSocketModule;
}

export class RawEspSocket implements RawEspSender {
  readonly stats: RawEspStats = { packetsIn: 0, packetsOut: 0, malformed: 0, sendErrors: 0 };
  private closed = false;

  private constructor(private readonly socket: RawSocket) {}

  /**
   * Open an IPv4 raw socket for protocol 50 and pass every ESP packet (from
   * the SPI on) with its source and destination addresses to `onEsp`,
   * synchronously (the bytes are a view valid only during the call). Throws
   * when raw sockets are not permitted.
   */
  static open(onEsp: (esp: Uint8Array, source: string, destination: string) => void, onError?: (err: Error) => void): RawEspSocket {
    const raw = loadRawSocket();
    const socket = raw.createSocket({ protocol: IPPROTO_ESP, addressFamily: raw.AddressFamily.IPv4, bufferSize: 65535 });
    const s = new RawEspSocket(socket);
    socket.on('message', (buffer, source) => s.receive(buffer, source, onEsp));
    socket.on('error', (err) => onError?.(err));
    return s;
  }

  private receive(b: Buffer, source: string, onEsp: (esp: Uint8Array, source: string, destination: string) => void): void {
    // IPv4 header (RFC 791): version 4, IHL >= 5, protocol 50, total length within the datagram.
    if (b.length < 20 || b[0]! >> 4 !== 4 || b[9] !== IPPROTO_ESP) {
      this.stats.malformed++;
      return;
    }
    const ihl = (b[0]! & 0x0f) * 4;
    const total = (b[2]! << 8) | b[3]!;
    if (ihl < 20 || total < ihl + 8 || total > b.length) {
      this.stats.malformed++;
      return;
    }
    this.stats.packetsIn++;
    onEsp(new Uint8Array(b.buffer, b.byteOffset + ihl, total - ihl), source, `${b[16]}.${b[17]}.${b[18]}.${b[19]}`);
  }

  /** Send one ESP packet to `remoteAddress` (IPv4). The bytes must stay untouched until sent (pass a copy). */
  send(esp: Uint8Array, remoteAddress: string): void {
    if (this.closed || !isIPv4(remoteAddress)) {
      this.stats.sendErrors++;
      return;
    }
    this.socket.send(esp, 0, esp.length, remoteAddress, (err) => {
      if (err) this.stats.sendErrors++;
      else this.stats.packetsOut++;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}
