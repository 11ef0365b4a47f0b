// Raw ESP (IP protocol 50, RFC 4303 §2) for SAs without UDP encapsulation:
// when no NAT was detected and the peer does not force UDP (strongSwan's
// kernel-libipsec always does). Root or CAP_NET_RAW. The kernel writes the
// outer header on send. IPv4 hands the whole datagram, IP header included,
// on receive; IPv6 the payload only (RFC 3542 §3), its source and, from
// IPV6_PKTINFO, its destination (batched backend only: native/io/udp.c).
// Two backends:
//   batched     the native I/O addon's raw socket (batched-socket.ts): recvmmsg
//               on readiness; what a pass queues leaves in one sendmmsg at
//               flush(); a 4 MiB receive buffer
//   raw-socket  the raw-socket package, when the addon is not built: one
//               datagram per readiness event each way
//
// Concurrency: a RawEspSocket belongs to the I/O thread that opened it; its
// events run there. Received bytes are validated before use and a bad
// datagram is counted, never thrown on (architecture §4.3).
import { createRequire } from 'node:module';
import { isIPv4, isIPv6 } from 'node:net';
import type { RawEspSender } from './sinks.js';
import { BatchedSocket, DestinationCache } from './batched-socket.js';
import { nativeIoUnavailable, RECV_TOS_VALID } from './native-io.js';
import { ipv4Bytes, readU16 } from './bytes.js';
import { bytesToIp, ipToBytes } from './ip.js';

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

/** Receive and send buffer of the batched raw socket: bursts of ESP must not overflow it. */
const RAW_BUFFER_BYTES = 4 << 20;

export interface RawEspStats {
  /** 'batched' (native addon) or 'raw-socket'. */
  backend: 'batched' | 'raw-socket';
  packetsIn: number;
  packetsOut: number;
  /** Datagrams that were not IPv4 or IPv6 carrying ESP (too short, bad header). */
  malformed: number;
  /** Whether ESP over IPv6 is carried too (an IPv6 raw socket is open: batched backend). */
  ipv6: boolean;
  sendErrors: number;
  /** IPv4 raw ESP of the workers' SPIs is read by the workers' own filtered sockets (raw-esp-steering.ts), not here. */
  workers: boolean;
}

function loadRawSocket(): RawSocketModule {
  return createRequire(import.meta.url)('raw-socket') as RawSocketModule;
}

/** ESP (from the SPI on) with its addresses and outer TOS / Traffic Class as udpRecv reports it (RECV_TOS_VALID | octet, 0: not known). */
type EspHandler = (esp: Uint8Array, source: string, destination: string, tos: number) => void;

/** The send half of a backend. */
interface RawBackend {
  /** Send (or queue until flush) one ESP packet with its outer header word (0: the socket's); `esp` is valid only during the call. */
  send(esp: Uint8Array, remoteAddress: string, outer: number): void;
  flush(): void;
  close(): void;
  /** The socket's descriptor (batched backend only): a data-plane worker may send through a dup of it. */
  fd?: number;
}

function dottedQuad(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

export class RawEspSocket implements RawEspSender {
  readonly stats: RawEspStats;
  private closed = false;
  private backend!: RawBackend;
  /** ESP over IPv6 (batched backend, when an IPv6 raw socket could be opened). */
  private backend6: RawBackend | undefined;

  private constructor(backend: RawEspStats['backend']) {
    this.stats = { backend, packetsIn: 0, packetsOut: 0, malformed: 0, sendErrors: 0, ipv6: false, workers: false };
  }

  /**
   * Open raw sockets for protocol 50 (IPv4, and IPv6 with the batched
   * backend) and pass every ESP packet (from the SPI on) with its source and
   * destination addresses to `onEsp`, synchronously (the bytes are a view
   * valid only during the call). Throws when raw sockets are not permitted.
   * `batched: false` takes raw-socket even when the native addon is built.
   */
  static open(onEsp: EspHandler, onError?: (err: Error) => void, opts: { batched?: boolean } = {}): RawEspSocket {
    const batched = opts.batched !== false && nativeIoUnavailable() === null;
    const s = new RawEspSocket(batched ? 'batched' : 'raw-socket');
    s.backend = batched ? s.openBatched(onEsp, onError) : s.openRawSocket(onEsp, onError);
    if (batched) {
      try {
        s.backend6 = s.openBatched6(onEsp, onError);
        s.stats.ipv6 = true;
      } catch {
        // No IPv6 in this kernel (EAFNOSUPPORT): ESP over IPv6 travels in UDP (install.ts asks carries()).
      }
    }
    return s;
  }

  private openBatched(onEsp: EspHandler, onError?: (err: Error) => void): RawBackend {
    const socket = BatchedSocket.openRaw(IPPROTO_ESP, RAW_BUFFER_BYTES);
    socket.start(
      (datagram) => this.receive(datagram, onEsp),
      (errno) => onError?.(new Error(`raw ESP receive failed (errno ${errno})`)),
    );
    // send() checked isIPv4(remoteAddress): a dotted quad.
    return this.batchedSender(socket, ipv4Bytes);
  }

  /** The IPv6 raw socket: the kernel strips the IPv6 header; the addresses come with the datagram (native/io/udp.c). */
  private openBatched6(onEsp: EspHandler, onError?: (err: Error) => void): RawBackend {
    const socket = BatchedSocket.openRaw6(IPPROTO_ESP, RAW_BUFFER_BYTES);
    socket.start(
      (datagram, _family, source, _port, destination, tos) => this.receive6(datagram, source, destination, tos, onEsp),
      (errno) => onError?.(new Error(`raw ESP (IPv6) receive failed (errno ${errno})`)),
    );
    return this.batchedSender(socket, ipToBytes);
  }

  private batchedSender(socket: BatchedSocket, toBytes: (address: string) => Uint8Array | undefined): RawBackend {
    const destinations = new DestinationCache();
    const stats = this.stats;
    return {
      send(esp, remoteAddress, outer) {
        const to = destinations.get(remoteAddress, toBytes);
        if (to && socket.queue(esp, to, 0, outer)) stats.packetsOut++;
        else stats.sendErrors++;
      },
      flush() {
        const queued = socket.pending;
        const sent = socket.flush();
        stats.packetsOut -= queued - sent;
        stats.sendErrors += queued - sent;
      },
      close: () => socket.close(),
      fd: socket.fd,
    };
  }

  private openRawSocket(onEsp: EspHandler, onError?: (err: Error) => void): RawBackend {
    const raw = loadRawSocket();
    const socket = raw.createSocket({ protocol: IPPROTO_ESP, addressFamily: raw.AddressFamily.IPv4, bufferSize: 65535 });
    socket.on('message', (buffer) => this.receive(buffer, onEsp));
    // raw-socket sets no per-packet TOS or DF: what it sends has the socket's outer header.
    socket.on('error', (err) => onError?.(err));
    const stats = this.stats;
    return {
      send(esp, remoteAddress) {
        // raw-socket queues the request until the socket is writable: it gets its own copy.
        const copy = Buffer.from(esp);
        socket.send(copy, 0, copy.length, remoteAddress, (err) => {
          if (err) stats.sendErrors++;
          else stats.packetsOut++;
        });
      },
      flush() {},
      close: () => socket.close(),
    };
  }

  private receive(b: Uint8Array, onEsp: EspHandler): void {
    // IPv4 header (RFC 791): version 4, IHL >= 5, protocol 50, total length within the datagram.
    if (b.length < 20 || b[0]! >> 4 !== 4 || b[9] !== IPPROTO_ESP) {
      this.stats.malformed++;
      return;
    }
    const ihl = (b[0]! & 0x0f) * 4;
    const total = readU16(b, 2);
    if (ihl < 20 || total < ihl + 8 || total > b.length) {
      this.stats.malformed++;
      return;
    }
    this.stats.packetsIn++;
    // The IPv4 header came along: its TOS octet is the outer TOS (RFC 6040 §4.2 on decapsulation).
    onEsp(b.subarray(ihl, total), dottedQuad(b, 12), dottedQuad(b, 16), RECV_TOS_VALID | b[1]!);
  }

  /** ESP over IPv6: the payload from the SPI on (SPI + sequence number at least, RFC 4303 §2), and a destination the kernel named. */
  private receive6(esp: Uint8Array, source: Uint8Array, destination: Uint8Array | undefined, tos: number, onEsp: EspHandler): void {
    if (esp.length < 8 || !destination || destination.every((x) => x === 0)) {
      this.stats.malformed++;
      return;
    }
    this.stats.packetsIn++;
    onEsp(esp, bytesToIp(source), bytesToIp(destination), tos);
  }

  /** The batched backend's IPv4 descriptor (for direct output), undefined with raw-socket or once closed. */
  get fd(): number | undefined {
    return this.fdFor(4);
  }

  /** The descriptor that carries ESP of this address family (batched backend), undefined without one or once closed. */
  fdFor(family: 4 | 6): number | undefined {
    if (this.closed) return undefined;
    return family === 4 ? this.backend.fd : this.backend6?.fd;
  }

  /** Whether ESP to `remoteAddress` can leave raw: IPv4, or IPv6 when the IPv6 raw socket is open. */
  carries(remoteAddress: string): boolean {
    return !this.closed && (isIPv4(remoteAddress) || (this.backend6 !== undefined && isIPv6(remoteAddress)));
  }

  /**
   * Send (or queue until flush) one ESP packet to `remoteAddress`; `esp` is
   * valid only during the call. `outer`: its outer header word (TOS /
   * Traffic Class, DF: native/io/udp.c udpSend), batched backend only.
   */
  send(esp: Uint8Array, remoteAddress: string, outer = 0): void {
    if (this.closed || !this.carries(remoteAddress)) {
      this.stats.sendErrors++;
      return;
    }
    (isIPv4(remoteAddress) ? this.backend : this.backend6!).send(esp, remoteAddress, outer);
  }

  /** Send what send() queued. */
  flush(): void {
    if (this.closed) return;
    this.backend.flush();
    this.backend6?.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.close();
    this.backend6?.close();
  }
}
