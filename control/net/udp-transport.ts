// UDP sockets for IKE on ports 500 and 4500 (RFC 7296 §2.23, RFC 3948).
//
// One socket per local address and port: Node's dgram cannot report the
// destination address of a datagram received on a wildcard socket (no
// IP_PKTINFO), and NAT detection hashes need it, so a wildcard listen address
// is expanded to the host's interface addresses. On the NAT-T port every
// datagram is demultiplexed by its first four bytes (RFC 3948 §2.2): zero is
// the non-ESP marker in front of an IKE message, a single 0xFF byte is a NAT
// keepalive (§2.3), anything else is ESP for the data plane.
//
// Owner: the main thread. The engine sees only Datagrams (control/ike/transport.ts).
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { isIPv6 } from 'node:net';
import type { Logger } from '../log.js';
import type { Datagram, Endpoint } from '../ike/transport.js';

export const NON_ESP_MARKER_LENGTH = 4;
/** Socket buffer size asked for on every IKE/NAT-T socket. */
export const SOCKET_BUFFER_BYTES = 4 << 20;

export interface UdpTransportOptions {
  /** Addresses to listen on; 0.0.0.0 / :: expand to every interface address of that family. */
  addresses: string[];
  port: number;
  natPort: number;
  log: Logger;
  /** An IKE message (marker stripped) arrived. */
  onIke: (d: Datagram) => void;
  /** An ESP packet arrived on the NAT-T port (RFC 3948 §2.1). */
  onEsp?: (packet: Uint8Array, local: Endpoint, remote: Endpoint) => void;
}

export interface UdpTransportStats {
  ikeIn: number;
  ikeOut: number;
  espIn: number;
  keepalivesIn: number;
  sendErrors: number;
  runts: number;
}

/** Expand wildcard listen addresses to concrete interface addresses. */
export function expandListenAddresses(addresses: string[]): string[] {
  const out = new Set<string>();
  const ifaces = Object.values(networkInterfaces()).flat().filter((i) => i !== undefined);
  for (const a of addresses) {
    if (a === '0.0.0.0') for (const i of ifaces) if (i.family === 'IPv4') out.add(i.address);
    if (a === '::') for (const i of ifaces) if (i.family === 'IPv6' && !i.address.startsWith('fe80')) out.add(i.address);
    if (a !== '0.0.0.0' && a !== '::') out.add(a);
  }
  return [...out];
}

function key(address: string, port: number): string {
  return `${address}|${port}`;
}

export class UdpTransport {
  readonly stats: UdpTransportStats = { ikeIn: 0, ikeOut: 0, espIn: 0, keepalivesIn: 0, sendErrors: 0, runts: 0 };
  private readonly sockets = new Map<string, Socket>();
  private addresses: string[] = [];

  constructor(private readonly opts: UdpTransportOptions) {}

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

  private bind(address: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', reuseAddr: false });
      const onError = (err: NodeJS.ErrnoException) => {
        const wrapped = new Error(`cannot bind UDP ${address}:${port}: ${err.message}`, { cause: err }) as NodeJS.ErrnoException;
        if (err.code) wrapped.code = err.code;
        reject(wrapped);
      };
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
        socket.on('error', (err) => this.opts.log.warn({ address, port, err: err.message }, 'UDP socket error'));
        socket.on('message', (msg, rinfo) => this.receive(msg, { address, port }, { address: rinfo.address, port: rinfo.port }));
        this.sockets.set(key(address, port), socket);
        resolve();
      });
    });
  }

  private receive(msg: Buffer, local: Endpoint, remote: Endpoint): void {
    const bytes = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    if (local.port !== this.opts.natPort) return this.deliverIke(bytes, local, remote);
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
    this.opts.onEsp?.(bytes, local, remote);
  }

  private deliverIke(bytes: Uint8Array, local: Endpoint, remote: Endpoint): void {
    this.stats.ikeIn++;
    this.opts.onIke({ bytes, local, remote });
  }

  /** Send an IKE message; on the NAT-T port it gets the non-ESP marker (RFC 3948 §2.2). */
  sendIke(d: Datagram): void {
    const socket = this.sockets.get(key(d.local.address, d.local.port)) ?? this.anySocket(d.local.port, d.remote.address);
    if (!socket) {
      this.stats.sendErrors++;
      this.opts.log.warn({ local: d.local, remote: d.remote }, 'no socket for this local address');
      return;
    }
    const marker = d.local.port === this.opts.natPort;
    const out = marker ? Buffer.concat([Buffer.alloc(NON_ESP_MARKER_LENGTH), d.bytes]) : Buffer.from(d.bytes.buffer, d.bytes.byteOffset, d.bytes.byteLength);
    this.stats.ikeOut++;
    socket.send(out, d.remote.port, d.remote.address, (err) => {
      if (err) {
        this.stats.sendErrors++;
        this.opts.log.warn({ remote: d.remote, err: err.message }, 'UDP send failed');
      }
    });
  }

  /** Send raw bytes (ESP, keepalives) from a local endpoint. */
  sendRaw(local: Endpoint, remote: Endpoint, bytes: Uint8Array): void {
    const socket = this.sockets.get(key(local.address, local.port)) ?? this.anySocket(local.port, remote.address);
    socket?.send(bytes, remote.port, remote.address);
  }

  private anySocket(port: number, remote: string): Socket | undefined {
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
  }
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
