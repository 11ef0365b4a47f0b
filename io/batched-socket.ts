// A datagram socket with batched system calls through the native I/O addon
// (native/io/udp.c): on readiness it takes up to RECV_BATCH datagrams per
// recvmmsg(2); datagrams queued during a pass leave in one sendmmsg(2) at
// flush(). Node's dgram (and raw-socket) make one system call, one Buffer
// and one event per datagram, which at ESP rates costs the I/O thread more
// than the packets themselves. Two kinds:
//   udp   bound to one address and port: IKE and ESP in UDP (RFC 3948)
//   raw   IPv4, one IP protocol (ESP, 50): every datagram of that protocol
//         to this host, IP header included; sent with the kernel's header
//   raw6  IPv6, one IP protocol (native/io/udp.c): the payload only (an
//         IPv6 raw socket never hands over the header, RFC 3542 §3), with
//         the destination address from IPV6_PKTINFO; sent with the kernel's
//         header
// Addresses cross this interface as bytes (4 or 16, network order); callers
// convert text once and cache.
//
// Owner: the thread that opened it. The views handed to the receive
// callback point into one reused buffer and are valid only during the call;
// queue() copies.
import { loadNativeIo, UDP_DESC_WORDS, UDP_MAX_BATCH, UDP_RECV_TOS_WORD, type NativeIo } from './native-io.js';

/** Largest datagram received whole: an IKE message may carry certificate chains (RFC 7296 §3.6). */
const RECV_SLOT_BYTES = 65536;
/** Datagrams per recvmmsg call. */
const RECV_BATCH = 32;
/**
 * recvmmsg calls per readiness event before the loop's other work gets its
 * turn: one, as many datagrams as libuv takes for dgram, so a burst reaches
 * the workers' rings no faster than they are published and drained.
 */
const RECV_CALLS_PER_EVENT = 1;
/** Bytes staged for one sendmmsg batch (64 ESP packets of a 1500-byte path with room to spare). */
const SEND_STAGE_BYTES = UDP_MAX_BATCH * 2048;

export interface BatchedSocketStats {
  datagramsIn: number;
  /** recvmmsg calls that returned datagrams. */
  batchesIn: number;
  /** Datagrams longer than the receive slot (dropped). */
  truncated: number;
  datagramsOut: number;
  /** sendmmsg calls. */
  batchesOut: number;
  /** Datagrams the kernel refused or had no room for (EAGAIN). */
  sendErrors: number;
  receiveErrors: number;
}

/** A destination address as udpSend wants it: its bytes in 4 int32 words. */
export interface Destination {
  family: 4 | 6;
  words: Int32Array;
}

/** Encode address bytes (4 or 16) for queue()/send(). */
export function destination(address: Uint8Array): Destination {
  if (address.length !== 4 && address.length !== 16) throw new RangeError('an address has 4 or 16 bytes');
  const words = new Int32Array(4);
  new Uint8Array(words.buffer).set(address);
  return { family: address.length === 4 ? 4 : 6, words };
}

/** Destinations by address text, encoded once: peers are few; the bound keeps sends to many addresses from growing it. */
export class DestinationCache {
  private readonly map = new Map<string, Destination>();

  /** The encoded destination of `address`, parsed with `toBytes` the first time; undefined if it does not parse. */
  get(address: string, toBytes: (address: string) => Uint8Array | undefined): Destination | undefined {
    let dst = this.map.get(address);
    if (dst) return dst;
    const bytes = toBytes(address);
    if (!bytes || (bytes.length !== 4 && bytes.length !== 16)) return undefined;
    dst = destination(bytes);
    if (this.map.size >= 1024) this.map.clear();
    this.map.set(address, dst);
    return dst;
  }
}

/**
 * (datagram, source family, source address bytes, source port, destination
 * address bytes: raw6 sockets only, outer TOS / Traffic Class as udpRecv
 * reports it: RECV_TOS_VALID | octet, or 0): views valid only during the call.
 */
export type DatagramHandler = (bytes: Uint8Array, family: 4 | 6, address: Uint8Array, port: number, destination: Uint8Array | undefined, tos: number) => void;

/** int32 words per datagram of udpRecv's destination descriptor (native/io/udp.c DEST_WORDS). */
const RAW6_DEST_WORDS = 4;

export class BatchedSocket {
  readonly stats: BatchedSocketStats = { datagramsIn: 0, batchesIn: 0, truncated: 0, datagramsOut: 0, batchesOut: 0, sendErrors: 0, receiveErrors: 0 };
  private readonly recvBuffer = new Uint8Array(RECV_SLOT_BYTES * RECV_BATCH);
  private readonly recvDesc = new Int32Array(RECV_BATCH * UDP_DESC_WORDS);
  private readonly recvDescBytes = new Uint8Array(this.recvDesc.buffer);
  private readonly stage = new Uint8Array(SEND_STAGE_BYTES);
  private readonly sendDesc = new Int32Array(UDP_MAX_BATCH * UDP_DESC_WORDS);
  /** The outer header word of each staged datagram (native/io/udp.c udpSend's `outer`); passed only when one is not 0. */
  private readonly sendOuter = new Int32Array(UDP_MAX_BATCH);
  private outerStaged = false;
  private staged = 0;
  private stagedBytes = 0;
  private watch: unknown;
  private closed = false;
  /** raw6 sockets: each datagram's destination address (IPV6_PKTINFO). */
  private readonly recvDest: Int32Array | undefined;
  private readonly recvDestBytes: Uint8Array | undefined;

  private constructor(private readonly api: NativeIo, readonly fd: number, readonly port: number, raw6 = false) {
    if (raw6) {
      this.recvDest = new Int32Array(RECV_BATCH * RAW6_DEST_WORDS);
      this.recvDestBytes = new Uint8Array(this.recvDest.buffer);
    }
  }

  /** A UDP socket bound to address:port (0: any free port), buffers of `bufferBytes` each way. Throws with .code (e.g. EADDRINUSE). */
  static openUdp(address: string, port: number, bufferBytes: number): BatchedSocket {
    const api = loadNativeIo();
    const r = api.udpOpen(address, port, bufferBytes);
    return new BatchedSocket(api, r.fd, r.port);
  }

  /** A UDP socket opened elsewhere (a steered port's control socket, esp-steering.ts), bound to `port`; closed by close(). */
  static adoptUdp(fd: number, port: number): BatchedSocket {
    return new BatchedSocket(loadNativeIo(), fd, port);
  }

  /** An IPv4 raw socket for one IP protocol (root or CAP_NET_RAW). Throws with .code (e.g. EPERM). */
  static openRaw(protocol: number, bufferBytes: number): BatchedSocket {
    const api = loadNativeIo();
    return new BatchedSocket(api, api.rawOpen(protocol, bufferBytes), 0);
  }

  /** An IPv6 raw socket for one IP protocol (root or CAP_NET_RAW); datagrams come with their destination. Throws with .code. */
  static openRaw6(protocol: number, bufferBytes: number): BatchedSocket {
    const api = loadNativeIo();
    return new BatchedSocket(api, api.rawOpen(protocol, bufferBytes, 6), 0, true);
  }

  /**
   * Deliver every datagram received to `onDatagram`; `onError` hears the
   * errno of a failed receive, and of a watch that stopped: on POLLERR libuv
   * stops the poll and calls back once with a negative status (UV_EBADF),
   * after which nothing more is received — that must not go unnoticed.
   */
  start(onDatagram: DatagramHandler, onError?: (errno: number) => void): void {
    if (this.closed) throw new Error('socket is closed');
    if (this.watch !== undefined) throw new Error('socket already started');
    this.watch = this.api.watch(this.fd, (status) => {
      if (status < 0) {
        if (this.closed) return;
        this.stats.receiveErrors++;
        onError?.(-status);
        return;
      }
      this.receive(onDatagram, onError);
    });
  }

  private receive(onDatagram: DatagramHandler, onError?: (errno: number) => void): void {
    const desc = this.recvDesc;
    for (let call = 0; call < RECV_CALLS_PER_EVENT && !this.closed; call++) {
      const dest = this.recvDest;
      // The addon takes a fifth argument only as an Int32Array: none for UDP and IPv4 raw sockets.
      const n = dest ? this.api.udpRecv(this.fd, this.recvBuffer, RECV_SLOT_BYTES, desc, dest) : this.api.udpRecv(this.fd, this.recvBuffer, RECV_SLOT_BYTES, desc);
      if (n <= 0) {
        if (n < 0) {
          this.stats.receiveErrors++;
          onError?.(-n);
        }
        return;
      }
      this.stats.batchesIn++;
      this.stats.datagramsIn += n;
      for (let i = 0; i < n && !this.closed; i++) {
        const d = i * UDP_DESC_WORDS;
        if (desc[d + 1] !== 0) {
          this.stats.truncated++;
          continue;
        }
        const famPort = desc[d + 2]!;
        const family = famPort >>> 16 === 4 ? 4 : 6;
        const at = (d + 3) * 4;
        const start = i * RECV_SLOT_BYTES;
        const to = this.recvDestBytes?.subarray(i * RAW6_DEST_WORDS * 4, (i + 1) * RAW6_DEST_WORDS * 4);
        onDatagram(this.recvBuffer.subarray(start, start + desc[d]!), family, this.recvDescBytes.subarray(at, at + (family === 4 ? 4 : 16)), famPort & 0xffff, to, desc[d + UDP_RECV_TOS_WORD]!);
      }
      if (n < RECV_BATCH) return;
    }
  }

  /**
   * Stage a datagram (its bytes are copied) for the next flush(); a full
   * batch is flushed first. `outer`: its outer header word (TOS / Traffic
   * Class, DF: dataplane/outer-header.ts), 0 for the socket's defaults.
   * False when it cannot be staged (too long, or closed): counted as a send
   * error.
   */
  queue(bytes: Uint8Array, to: Destination, port: number, outer = 0): boolean {
    if (this.closed || bytes.length > this.stage.length) {
      this.stats.sendErrors++;
      return false;
    }
    if (this.staged === UDP_MAX_BATCH || this.stagedBytes + bytes.length > this.stage.length) this.flush();
    const d = this.staged * UDP_DESC_WORDS;
    const desc = this.sendDesc;
    desc[d] = this.stagedBytes;
    desc[d + 1] = bytes.length;
    desc[d + 2] = (to.family << 16) | (port & 0xffff);
    desc.set(to.words, d + 3);
    this.sendOuter[this.staged] = outer;
    if (outer !== 0) this.outerStaged = true;
    this.stage.set(bytes, this.stagedBytes);
    this.stagedBytes += (bytes.length + 7) & ~7;
    this.staged++;
    return true;
  }

  /** Datagrams staged and not yet flushed. */
  get pending(): number {
    return this.staged;
  }

  /** Send everything staged in one sendmmsg; returns how many the kernel took. */
  flush(): number {
    const count = this.staged;
    if (count === 0) return 0;
    this.staged = 0;
    this.stagedBytes = 0;
    const outer = this.outerStaged ? this.sendOuter : undefined;
    this.outerStaged = false;
    if (this.closed) return 0;
    const sent = outer ? this.api.udpSend(this.fd, this.stage, this.sendDesc, count, outer) : this.api.udpSend(this.fd, this.stage, this.sendDesc, count);
    this.stats.batchesOut++;
    this.stats.datagramsOut += sent;
    this.stats.sendErrors += count - sent;
    return sent;
  }

  /** Send one datagram now (IKE, keepalives), after anything staged. False if the kernel refused it. */
  send(bytes: Uint8Array, to: Destination, port: number): boolean {
    this.flush();
    if (!this.queue(bytes, to, port)) return false;
    return this.flush() === 1;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watch !== undefined) this.api.unwatch(this.watch);
    this.watch = undefined;
    this.api.close(this.fd);
  }
}
