// The state the stages of the data plane share on the I/O thread: the
// workers, the SAD and SPD, the I/O counters, the devices (TUN, raw ESP) and
// where output goes. The facade (dataplane.ts) creates it; install.ts,
// inbound.ts, outbound.ts, output.ts and status.ts read and write it.
//
// Owner: the I/O thread (the gateway's main thread). Nothing here is shared
// with workers: they see slots and rings, never these objects (architecture §4.1).
import type { PathOptions } from './path-mtu.js';
import type { EventEmitter } from 'node:events';
import type { Endpoint } from '../io/endpoint.js';
import type { InnerSink, RawEspSender } from '../io/sinks.js';

export type { InnerSink, RawEspSender };
import type { EspSocket, UdpEspPort } from '../io/udp-sockets.js';
import type { TunDevice, TunOptions } from '../io/tun.js';
import type { RawEspSocket } from '../io/rawesp.js';
import type { Sad } from './sad.js';
import { Spd } from './spd.js';
import type { WorkerHandle } from './workers.js';

export interface DataPlaneLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export const quietLogger: DataPlaneLogger = { info() {}, warn() {}, debug() {} };

export interface DataPlaneOptions {
  /** Worker threads (architecture §4.1: each SA has exactly one). */
  workers: number;
  /**
   * Send (or queue until flushUdp) a UDP-encapsulated ESP packet from local to
   * remote (RFC 3948 §2.1: no non-ESP marker). `bytes` is valid only during
   * the call: a sender that keeps it copies it. Required unless `udp` is given.
   * `outer`: the packet's outer header word (outer-header.ts; native/io/udp.c
   * udpSend's `outer`: TOS / Traffic Class and DF), 0 for the socket's defaults.
   */
  sendUdp?: (local: Endpoint, remote: Endpoint, bytes: Uint8Array, outer: number) => void;
  /** Called after each batch of sendUdp calls, so a batching sender sends what it queued (one sendmmsg). */
  flushUdp?: () => void;
  /**
   * Direct output: the native socket (descriptor, and the destination encoded
   * for udpSend) that ESP from `local` to `remote` would leave through, so the
   * owner worker sends there itself; undefined keeps that SA on sendUdp.
   */
  espSocket?: (local: Endpoint, remote: Endpoint) => EspSocket | undefined;
  /**
   * The gateway's UDP sockets (io/udp-sockets.ts UdpEspPort), instead of
   * sendUdp, flushUdp and espSocket: ESP leaves through them, and ESP they
   * receive on the NAT-T port comes straight to receiveEsp (the data plane
   * registers its receiver), never through the control plane (architecture §3).
   */
  udp?: UdpEspPort;
  /**
   * Who writes the output when a TUN device is configured: 'workers' (the
   * default: each worker sends its ESP and writes its decapsulated packets
   * itself) or 'io-thread' (through the out rings). Without a TUN device the
   * I/O thread always does.
   */
  output?: 'workers' | 'io-thread';
  /**
   * Who reads the TUN device with direct output: 'workers' (the default: one
   * queue per worker, each read and sealed by its worker, tun-input.ts) or
   * 'io-thread' (the I/O thread reads every queue and hands packets to the
   * owners through their in rings).
   */
  tunInput?: 'workers' | 'io-thread';
  /**
   * How an idle worker waits (worker-epoll.ts): 'epoll', blocked in the
   * kernel over its socket, its TUN queue and its bell, so what wakes it is
   * processed without a turn of its event loop; or 'event-loop'
   * (Atomics.waitAsync and libuv watches). Default: WORKER_LOOP_DEFAULT;
   * 'epoll' needs the native addon (else 'event-loop').
   */
  workerLoop?: 'epoll' | 'event-loop';
  log?: DataPlaneLogger;
  /** Decapsulated packets: 'deliver' to the inner sink (TUN), or 'discard' after counting (demo, benchmarks). Default deliver. */
  sink?: 'deliver' | 'discard';
  /** Cells per ring (power of two; default 1024) and bytes per cell (default 2048). */
  ringCapacity?: number;
  cellSize?: number;
  /** A TUN device for inner traffic (root): read -> SPD -> encap; decap -> write. Implies sink 'deliver'. */
  tun?: TunOptions;
  /**
   * Raw ESP (IP protocol 50) for SAs without UDP encapsulation, when raw
   * sockets are permitted (root); otherwise, or when false, all ESP is sent
   * in UDP. Raw ESP that arrives is always accepted when the socket is open.
   */
  rawEsp?: boolean;
  /**
   * Raw IPv4 ESP read by its owner worker (io/raw-esp-steering.ts): a raw
   * socket per worker filtered to the SPIs of node prefix `node` that name
   * it, the I/O thread's to the rest. Without it the I/O thread reads all
   * raw ESP and hands it over through the in rings.
   */
  rawSteering?: { node: number };
  /** The tunnel MTU and ICMP too-big rate (dataplane/path-mtu.ts); defaults PATH_DEFAULTS. */
  path?: Partial<PathOptions>;
  /** Bound on a worker's answer to a control request, ms (default 10 s; tests shorten it). Also bounds how long remove() waits for a successor. */
  requestTimeoutMs?: number;
}

/** Drops and traffic counted on the I/O thread. */
export interface IoCounters {
  espIn: number;
  espInBytes: number;
  espOut: number;
  espOutBytes: number;
  innerIn: number;
  innerOut: number;
  /** ESP whose SPI names no installed SA (RFC 4303 §3.4.2). */
  dropUnknownSpi: number;
  /** ESP shorter than SPI + sequence number or longer than a cell; an inner packet that is not IPv4/IPv6 or too long to encapsulate. */
  dropMalformed: number;
  /** A worker's in ring was full. */
  dropQueueFull: number;
  /** An outbound inner packet no SA's selectors cover. */
  dropNoPolicy: number;
  /** A decapsulated packet outside its SA's selectors (RFC 4301 §5.2). */
  dropPolicy: number;
  /** A worker's output for an SA that was deleted meanwhile; ESP for an SA whose install has not completed. */
  dropNoSa: number;
  /** A decapsulated packet with no sink to take it (no TUN), or one the sink refused. */
  dropNoSink: number;
  /** ESP a worker sent itself that the kernel refused (full socket buffer, no route). */
  dropSend: number;
  /** An outbound inner packet larger than its path's tunnel MTU that may not be fragmented (RFC 4301 §8). */
  dropTooBig: number;
  /** ICMP too-big answers written into the inner sink for such packets. */
  icmpTooBig: number;
  /** Too-big answers not sent for the rate limit. */
  icmpRateLimited: number;
}

export interface DataPlaneEvents {
  /** An SA reached its soft sequence limit: the control plane should rekey it (RFC 4303 §3.3.3). */
  'rekey-needed': [id: number];
  /** ESP arrived with an SPI no SA has (counted, dropped); the control plane may answer INVALID_SPI (RFC 7296 §2.21.4). */
  'unknown-spi': [spi: number, remote: Endpoint | undefined];
  /**
   * Authenticated ESP of a UDP-encapsulated SA arrived from a new address or
   * port (a NAT mapping changed): the control plane decides whether the SA
   * follows (RFC 7296 §2.23). Once per change.
   */
  'esp-source': [id: number, remote: Endpoint];
  /**
   * An I/O device failed and carries no more traffic: a TUN device deleted
   * under us (`ip link del`) stops reading for good. Logged at warn as well.
   * Not named 'error', which would throw when nobody listens.
   */
  'device-error': [device: string, err: NodeJS.ErrnoException];
}


export function zeroIo(): IoCounters {
  return {
    espIn: 0, espInBytes: 0, espOut: 0, espOutBytes: 0, innerIn: 0, innerOut: 0,
    dropUnknownSpi: 0, dropMalformed: 0, dropQueueFull: 0, dropNoPolicy: 0, dropPolicy: 0, dropNoSa: 0, dropNoSink: 0, dropSend: 0,
    dropTooBig: 0, icmpTooBig: 0, icmpRateLimited: 0,
  };
}

export function checkEndpoint(e: Endpoint, what: string): void {
  if (!e || typeof e.address !== 'string' || !Number.isInteger(e.port) || e.port < 0 || e.port > 65535) {
    throw new TypeError(`${what} must be { address, port }`);
  }
}

export class PlaneState {
  workers: WorkerHandle[] = [];
  sad: Sad | undefined;
  readonly spd = new Spd();
  readonly io: IoCounters = zeroIo();
  innerSink: InnerSink | undefined;
  rawSender: RawEspSender | undefined;
  tun: TunDevice | undefined;
  rawSocket: RawEspSocket | undefined;
  /** Workers write their own output (set at start). */
  direct = false;
  /** How idle workers wait (set at start). */
  workerLoop: 'epoll' | 'event-loop' = 'event-loop';
  /** Workers read their own TUN queues (tun-input.ts; set at start). */
  tunRead = false;
  /** Workers read their own sockets of a steered NAT-T port (DataPlane.adoptSteeredSockets). */
  steered = false;
  running = false;
  /** UDP-encapsulated ESP out (RFC 3948): DataPlaneOptions.sendUdp, or the sockets' queueEsp. */
  readonly sendUdp: (local: Endpoint, remote: Endpoint, bytes: Uint8Array, outer: number) => void;
  readonly flushUdp: (() => void) | undefined;
  /** Direct output: the native socket ESP from local to remote leaves through. */
  readonly espSocket: ((local: Endpoint, remote: Endpoint) => EspSocket | undefined) | undefined;

  constructor(
    readonly opts: DataPlaneOptions,
    readonly log: DataPlaneLogger,
    /** The facade, which emits the data plane's events. */
    readonly events: EventEmitter<DataPlaneEvents>,
  ) {
    const udp = opts.udp;
    this.sendUdp = opts.sendUdp ?? ((local, remote, bytes, outer) => udp!.queueEsp(local, remote, bytes, outer));
    this.flushUdp = opts.flushUdp ?? (udp ? () => udp.flushEsp() : undefined);
    this.espSocket = opts.espSocket ?? (udp ? (local, remote) => udp.espSocket(local, remote) : undefined);
  }

  requireSad(): Sad {
    if (!this.running || !this.sad) throw new Error('data plane is not running');
    return this.sad;
  }
}
