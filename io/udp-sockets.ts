// The UDP sockets of the gateway on the IKE port (500) and the NAT-T port
// (4500) (RFC 7296 §2.23, RFC 3948): one socket per local address and port.
// Node's dgram cannot report the destination address of a datagram received
// on a wildcard socket (no IP_PKTINFO), and NAT detection hashes need it, so a
// wildcard listen address is expanded to the host's interface addresses.
// Every datagram received goes through the RFC 3948 demultiplexer (demux.ts):
// IKE to the control plane's receiver, ESP straight to the receiver the data
// plane registered (setEspReceiver), keepalives counted.
//
// Sockets are BatchedSockets (recvmmsg/sendmmsg, batched-socket.ts) when the
// native I/O addon is built, else Node's dgram. ESP from the data plane is
// queued with queueEsp() and leaves in one system call per socket at
// flushEsp(); IKE messages and keepalives leave at once.
//
// Owner: the main thread (the I/O thread): the sockets' events run there.
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import type { Endpoint } from './endpoint.js';
import type { EspReceiver } from './sinks.js';
import { nativeIoUnavailable } from './native-io.js';
import { BatchedSocket, DestinationCache, type Destination } from './batched-socket.js';
import { openSteeredPort } from './esp-steering.js';
import { NatTraversalDemux, withNonEspMarker, type DemuxStats, type IkeReceiver } from './demux.js';
import { bytesToIp, ipToBytes } from './ip.js';
import { equalPrefix } from './bytes.js';
import { usableAddresses } from './address-monitor.js';

/** Socket buffer size asked for on every IKE/NAT-T socket. */
export const SOCKET_BUFFER_BYTES = 4 << 20;

/** The slice of a pino logger the sockets use. */
export interface SocketLogger {
  warn(obj: object, msg: string): void;
}

export interface UdpSocketsOptions {
  /** Addresses to listen on; 0.0.0.0 / :: expand to every interface address of that family. */
  addresses: string[];
  port: number;
  natPort: number;
  log: SocketLogger;
  /** An IKE message (marker stripped) arrived; the views are valid only during the call. */
  onIke: IkeReceiver;
  /** An ESP packet arrived on the NAT-T port (RFC 3948 §2.1); also settable with setEspReceiver(). */
  onEsp?: EspReceiver;
  /** Batched native sockets when the addon is available (default true); false: always dgram. */
  native?: boolean;
  /**
   * Kernel steering of the NAT-T port (esp-steering.ts), with native sockets:
   * per address, the socket here is the control plane's member of a group
   * with one socket per worker, and `adopt` takes those (the data plane's
   * workers read them). Without native sockets there is no steering.
   */
  steering?: { node: number; workers: number; adopt: (address: string, fds: number[]) => void };
}

export interface UdpSocketsStats extends DemuxStats {
  ikeOut: number;
  sendErrors: number;
  /** ESP datagrams sent (queueEsp). */
  espOut: number;
}

/** Where a data-plane worker sends ESP itself: a socket's descriptor (the caller dups it) and the encoded destination. */
export interface EspSocket {
  fd: number;
  to: Destination;
}

/** The ESP half of the sockets, as the data plane uses it. */
export interface UdpEspPort {
  /**
   * Queue one ESP datagram (RFC 3948 §2.1) from `local`; `bytes` may be
   * reused once this returns. `outer`: its outer header word (TOS / Traffic
   * Class, DF: native/io/udp.c udpSend), 0 or absent for the socket's defaults.
   */
  queueEsp(local: Endpoint, remote: Endpoint, bytes: Uint8Array, outer?: number): void;
  /** Send every queued ESP datagram. */
  flushEsp(): void;
  /** The native socket ESP from `local` to `remote` leaves through, for direct output; undefined when there is none. */
  espSocket(local: Endpoint, remote: Endpoint): EspSocket | undefined;
  /** Where ESP received on the NAT-T port goes (undefined: counted and dropped). */
  setEspReceiver(receiver: EspReceiver | undefined): void;
}

/** One bound socket, whichever kind. */
interface Binding {
  /** Send now (a failure is counted and logged). */
  send(bytes: Uint8Array, remote: Endpoint): void;
  /** Send at the next flush (native, with its outer header word) or now (dgram: the socket's outer header); `bytes` may be reused after the call. */
  queue(bytes: Uint8Array, remote: Endpoint, outer?: number): void;
  flush(): void;
  close(): void;
}

class DgramBinding implements Binding {
  constructor(private readonly socket: Socket, private readonly onSendError: (remote: Endpoint, err: Error) => void) {}

  send(bytes: Uint8Array, remote: Endpoint): void {
    this.socket.send(bytes, remote.port, remote.address, (err) => {
      if (err) this.onSendError(remote, err);
    });
  }

  queue(bytes: Uint8Array, remote: Endpoint): void {
    // dgram may hold the bytes until the send completes: it gets its own copy.
    this.socket.send(Buffer.from(bytes), remote.port, remote.address);
  }

  flush(): void {}

  close(): void {
    this.socket.close();
  }
}

class NativeBinding implements Binding {
  private readonly destinations = new DestinationCache();

  constructor(readonly socket: BatchedSocket, private readonly onSendError: (remote: Endpoint, err: Error) => void) {}

  to(address: string): Destination | undefined {
    return this.destinations.get(address, ipToBytes);
  }

  send(bytes: Uint8Array, remote: Endpoint): void {
    const to = this.to(remote.address);
    if (!to || !this.socket.send(bytes, to, remote.port)) this.onSendError(remote, new Error('the kernel refused the datagram'));
  }

  queue(bytes: Uint8Array, remote: Endpoint, outer = 0): void {
    const to = this.to(remote.address);
    if (to) this.socket.queue(bytes, to, remote.port, outer);
    else this.onSendError(remote, new Error('not an IP address'));
  }

  flush(): void {
    const queued = this.socket.pending;
    const sent = this.socket.flush();
    if (sent < queued) this.onSendError({ address: '*', port: 0 }, new Error(`the kernel refused ${queued - sent} of ${queued} ESP datagrams`));
  }

  close(): void {
    this.socket.close();
  }
}

/** Text of received source addresses, remembered for the last source (ESP keeps coming from the same peer). */
class SourceCache {
  private key = new Uint8Array(16);
  private family = 0;
  private port = -1;
  private last: Endpoint = { address: '', port: 0 };

  get(family: 4 | 6, address: Uint8Array, port: number): Endpoint {
    const n = address.length;
    if (family === this.family && port === this.port && equalPrefix(this.key, address, n)) return this.last;
    this.key.set(address);
    this.family = family;
    this.port = port;
    this.last = { address: bytesToIp(address), port };
    return this.last;
  }
}

/** Expand wildcard listen addresses to concrete interface addresses. */
export function expandListenAddresses(addresses: string[]): string[] {
  const out = new Set<string>();
  const usable = usableAddresses();
  for (const a of addresses) {
    if (a === '0.0.0.0') for (const u of usable) if (isIPv4(u)) out.add(u);
    if (a === '::') for (const u of usable) if (isIPv6(u)) out.add(u);
    if (a !== '0.0.0.0' && a !== '::') out.add(a);
  }
  return [...out];
}

function key(address: string, port: number): string {
  return `${address}|${port}`;
}

export class UdpSockets implements UdpEspPort {
  readonly stats: UdpSocketsStats = { ikeIn: 0, ikeOut: 0, espIn: 0, keepalivesIn: 0, sendErrors: 0, runts: 0, espOut: 0 };
  /** 'native' (batched system calls) or 'dgram'. */
  readonly kind: 'native' | 'dgram';
  private readonly sockets = new Map<string, Binding>();
  /** Bindings with ESP queued since the last flushEsp(). */
  private readonly queued = new Set<Binding>();
  private addresses: string[] = [];

  private readonly demux: NatTraversalDemux;

  constructor(private readonly opts: UdpSocketsOptions) {
    this.kind = opts.native !== false && nativeIoUnavailable() === null ? 'native' : 'dgram';
    this.demux = new NatTraversalDemux(opts.natPort, this.stats, opts.onIke);
    this.demux.esp = opts.onEsp;
  }

  setEspReceiver(receiver: EspReceiver | undefined): void {
    this.demux.esp = receiver;
  }

  /** Local addresses with bound sockets. */
  get localAddresses(): string[] {
    return [...this.addresses];
  }

  async start(): Promise<void> {
    this.addresses = expandListenAddresses(this.opts.addresses);
    if (this.addresses.length === 0) throw new Error(`no local address to listen on (${this.opts.addresses.join(', ')})`);
    if (this.opts.port === this.opts.natPort) throw new Error('the IKE port and the NAT-T port must differ');
    const ports = [this.opts.port, this.opts.natPort];
    try {
      for (const address of this.addresses) for (const port of ports) await this.bind(address, port);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private async bind(address: string, port: number): Promise<void> {
    const onSendError = (remote: Endpoint, err: Error) => {
      this.stats.sendErrors++;
      this.opts.log.warn({ remote, err: err.message }, 'UDP send failed');
    };
    const local = { address, port };
    if (this.kind === 'native') {
      let socket: BatchedSocket;
      let workerFds: number[] = [];
      try {
        if (this.opts.steering && port === this.opts.natPort) {
          const group = openSteeredPort(address, port, { ...this.opts.steering, bufferBytes: SOCKET_BUFFER_BYTES });
          socket = BatchedSocket.adoptUdp(group.control, group.port);
          workerFds = group.workers;
        } else {
          socket = BatchedSocket.openUdp(address, port, SOCKET_BUFFER_BYTES);
        }
      } catch (err) {
        throw bindError(address, port, err as NodeJS.ErrnoException);
      }
      const sources = new SourceCache();
      socket.start(
        (bytes, family, from, fromPort, _to, tos) => this.demux.receive(bytes, local, sources.get(family, from, fromPort), tos),
        (errno) => this.opts.log.warn({ address, port, errno }, 'UDP receive error'),
      );
      this.sockets.set(key(address, port), new NativeBinding(socket, onSendError));
      // The workers' members of the group are theirs from here on.
      if (workerFds.length > 0) this.opts.steering!.adopt(address, workerFds);
      return;
    }
    const socket = await bindDgram(address, port);
    socket.on('error', (err) => this.opts.log.warn({ address, port, err: err.message }, 'UDP socket error'));
    socket.on('message', (msg, rinfo) => this.demux.receive(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), local, { address: rinfo.address, port: rinfo.port }));
    this.sockets.set(key(address, port), new DgramBinding(socket, onSendError));
  }

  /** Send an IKE message; on the NAT-T port it gets the non-ESP marker (RFC 3948 §2.2). */
  sendIke(message: Uint8Array, local: Endpoint, remote: Endpoint): void {
    const socket = this.socketFor(local, remote.address);
    if (!socket) {
      this.stats.sendErrors++;
      this.opts.log.warn({ local, remote }, 'no socket for this local address');
      return;
    }
    this.stats.ikeOut++;
    socket.send(local.port === this.opts.natPort ? withNonEspMarker(message) : message, remote);
  }

  /** Send raw bytes (keepalives) from a local endpoint, at once. */
  sendRaw(local: Endpoint, remote: Endpoint, bytes: Uint8Array): void {
    this.socketFor(local, remote.address)?.send(bytes, remote);
  }

  /**
   * Queue one ESP datagram (RFC 3948 §2.1) from a local endpoint; `bytes`
   * may be reused once this returns. It leaves at the next flushEsp(), with
   * its outer header word on native sockets (dgram sends the socket's).
   */
  queueEsp(local: Endpoint, remote: Endpoint, bytes: Uint8Array, outer = 0): void {
    const socket = this.socketFor(local, remote.address);
    if (!socket) {
      this.stats.sendErrors++;
      return;
    }
    this.stats.espOut++;
    socket.queue(bytes, remote, outer);
    this.queued.add(socket);
  }

  /**
   * The native socket ESP from `local` to `remote` leaves through, and the
   * destination encoded for it, so a data-plane worker can send there itself
   * (dataplane/, direct output); undefined with dgram sockets or when no
   * socket fits. The descriptor stays this transport's: callers dup it.
   */
  espSocket(local: Endpoint, remote: Endpoint): EspSocket | undefined {
    const binding = this.socketFor(local, remote.address);
    if (!(binding instanceof NativeBinding)) return undefined;
    const to = binding.to(remote.address);
    return to ? { fd: binding.socket.fd, to } : undefined;
  }

  /** Send every queued ESP datagram: one sendmmsg per socket. */
  flushEsp(): void {
    if (this.queued.size === 0) return;
    for (const s of this.queued) s.flush();
    this.queued.clear();
  }

  private socketFor(local: Endpoint, remote: string): Binding | undefined {
    return this.sockets.get(key(local.address, local.port)) ?? this.anySocket(local.port, remote);
  }

  private anySocket(port: number, remote: string): Binding | undefined {
    const v6 = isIPv6(remote);
    for (const [k, s] of this.sockets) {
      const [addr, p] = k.split('|');
      if (Number(p) === port && isIPv6(addr!) === v6) return s;
    }
    return undefined;
  }

  /** Whether sockets are bound on `address`. */
  hasAddress(address: string): boolean {
    return this.addresses.includes(address);
  }

  /**
   * Bind sockets on an address that appeared (MOBIKE, RFC 4555 §3.5): only
   * when the listen configuration covers it (a wildcard, or the address
   * itself). Returns whether sockets are bound on it now.
   */
  async addAddress(address: string): Promise<boolean> {
    if (this.hasAddress(address)) return true;
    const v6 = isIPv6(address);
    const covered = this.opts.addresses.includes(address) || this.opts.addresses.includes(v6 ? '::' : '0.0.0.0');
    if (!covered) return false;
    try {
      await this.bind(address, this.opts.port);
      await this.bind(address, this.opts.natPort);
      this.addresses.push(address);
      return true;
    } catch (err) {
      for (const port of [this.opts.port, this.opts.natPort]) {
        this.sockets.get(key(address, port))?.close();
        this.sockets.delete(key(address, port));
      }
      this.opts.log.warn({ address, err: (err as Error).message }, 'could not listen on a new address');
      return false;
    }
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
    this.queued.clear();
  }
}

function bindError(address: string, port: number, err: NodeJS.ErrnoException): NodeJS.ErrnoException {
  const wrapped = new Error(`cannot bind UDP ${address}:${port}: ${err.message}`, { cause: err }) as NodeJS.ErrnoException;
  if (err.code) wrapped.code = err.code;
  return wrapped;
}

/** A dgram socket bound to address:port, with large buffers. */
function bindDgram(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', reuseAddr: false });
    const onError = (err: NodeJS.ErrnoException) => reject(bindError(address, port, err));
    socket.once('error', onError);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError);
      // ESP in UDP arrives in bursts: the default ~200 KB buffer overflows long before the
      // data plane is busy. The kernel caps these at net.core.[rw]mem_max; a smaller one is fine.
      for (const set of [(n: number) => socket.setRecvBufferSize(n), (n: number) => socket.setSendBufferSize(n)]) {
        try {
          set(SOCKET_BUFFER_BYTES);
        } catch {
          // keep the default
        }
      }
      resolve(socket);
    });
  });
}

/** The local address the kernel would use towards `remote` (a connected UDP socket, never sends). */
export function resolveLocalAddress(remote: string, port = 500): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket(isIPv6(remote) ? 'udp6' : 'udp4');
    s.once('error', (err) => {
      s.close();
      reject(err);
    });
    s.connect(port, remote, () => {
      const { address } = s.address();
      s.close();
      resolve(address);
    });
  });
}
