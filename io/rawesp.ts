// Raw ESP (IP protocol 50, RFC 4303 §2) for SAs without UDP encapsulation:
// when no NAT was detected and the peer does not force UDP (strongSwan's
// kernel-libipsec always does). Root or CAP_NET_RAW. IPv4: the kernel writes
// the outer header on send, and hands the whole datagram, IP header
// included, on receive. Two backends:
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
import { isIPv4 } from 'node:net';
import type { RawEspSender } from './sinks.js';
import { BatchedSocket, DestinationCache } from './batched-socket.js';
import { nativeIoUnavailable } from './native-io.js';
import { ipv4Bytes, readU16 } from './bytes.js';

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
  /** Datagrams that were not IPv4 carrying ESP (too short, bad header). */
  malformed: number;
  sendErrors: number;
}

function loadRawSocket(): RawSocketModule {
  return createRequire(import.meta.url)('raw-socket') as RawSocketModule;
}

type EspHandler = (esp: Uint8Array, source: string, destination: string) => void;

/** The send half of a backend. */
interface RawBackend {
  /** Send (or queue until flush) one ESP packet; `esp` is valid only during the call. */
  send(esp: Uint8Array, remoteAddress: string): void;
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

  private constructor(backend: RawEspStats['backend']) {
    this.stats = { backend, packetsIn: 0, packetsOut: 0, malformed: 0, sendErrors: 0 };
  }

  /**
   * Open an IPv4 raw socket for protocol 50 and pass every ESP packet (from
   * the SPI on) with its source and destination addresses to `onEsp`,
   * synchronously (the bytes are a view valid only during the call). Throws
   * when raw sockets are not permitted. `batched: false` takes raw-socket
   * even when the native addon is built.
   */
  static open(onEsp: EspHandler, onError?: (err: Error) => void, opts: { batched?: boolean } = {}): RawEspSocket {
    const batched = opts.batched !== false && nativeIoUnavailable() === null;
    const s = new RawEspSocket(batched ? 'batched' : 'raw-socket');
    s.backend = batched ? s.openBatched(onEsp, onError) : s.openRawSocket(onEsp, onError);
    return s;
  }

  private openBatched(onEsp: EspHandler, onError?: (err: Error) => void): RawBackend {
    const socket = BatchedSocket.openRaw(IPPROTO_ESP, RAW_BUFFER_BYTES);
    socket.start(
      (datagram) => this.receive(datagram, onEsp),
      (errno) => onError?.(new Error(`raw ESP receive failed (errno ${errno})`)),
    );
    const destinations = new DestinationCache();
    const stats = this.stats;
    return {
      send(esp, remoteAddress) {
        // send() checked isIPv4(remoteAddress): a dotted quad.
        const to = destinations.get(remoteAddress, ipv4Bytes);
        if (to && socket.queue(esp, to, 0)) stats.packetsOut++;
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
    onEsp(b.subarray(ihl, total), dottedQuad(b, 12), dottedQuad(b, 16));
  }

  /** The batched backend's descriptor (for direct output), undefined with raw-socket or once closed. */
  get fd(): number | undefined {
    return this.closed ? undefined : this.backend.fd;
  }

  /** Send (or queue until flush) one ESP packet to `remoteAddress` (IPv4); `esp` is valid only during the call. */
  send(esp: Uint8Array, remoteAddress: string): void {
    if (this.closed || !isIPv4(remoteAddress)) {
      this.stats.sendErrors++;
      return;
    }
    this.backend.send(esp, remoteAddress);
  }

  /** Send what send() queued. */
  flush(): void {
    if (!this.closed) this.backend.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.close();
  }
}
