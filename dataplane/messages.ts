// The control protocol between the I/O side (main thread, dataplane.ts) and
// one data-plane worker (worker.ts): requests over a MessagePort, each
// answered once by a reply with the same `id`; the worker may also send
// events. Packets never travel here, only through the rings (ring.ts).
//
// Key material moves (architecture §4.5): an install request carries the key in an
// ArrayBuffer listed in the transfer list, so the sender's copy is detached
// (the sender wipes its own source copy first); the worker installs it into
// the kernel, which zeroes the transferred buffer.
//
// Descriptors move too: a worker that writes its own output (DirectOutput,
// EspRoute) receives descriptors the I/O side duplicated for it and closes
// them itself when they are replaced, when their slot is deleted, or at stop.
import type { EspAlgorithm, SaCounters } from './kernel.js';
import type { Selector } from './packet.js';
import type { RingBuffer } from './ring.js';

/** The start-up task a worker receives (the piscina task object). */
export interface WorkerTask {
  /** Index of the worker (0..N-1). */
  index: number;
  /** The compiled esp.wasm module (one compile, shared by every worker). */
  module: unknown;
  /** I/O -> worker packets (ENCAP, DECAP cells). */
  inRing: RingBuffer;
  /** Worker -> I/O packets (ESP, INNER cells). */
  outRing: RingBuffer;
  /** The I/O side's doorbell (ring.ts Doorbell), rung with every publish to outRing. */
  doorbell: SharedArrayBuffer;
  /** Worker-written totals, read by the I/O side at any time (WorkerStat indexes). */
  stats: SharedArrayBuffer;
  /** The control port (transferred). */
  port: unknown;
  /** What becomes of decapsulated packets: delivered to the I/O side (INNER cells), or counted and discarded. */
  sink: 'deliver' | 'discard';
  /** When set, the worker writes its own output through the native I/O addon instead of the out ring. */
  direct?: DirectOutput;
  /** The worker's wake-up bell (worker-bell.ts): rung by every writer of its in ring and hand-off rings and by control requests; the worker sleeps on it. */
  wake?: SharedArrayBuffer;
  /** 'epoll': the worker sleeps in epoll_wait over its descriptors and its bell's eventfd (worker-epoll.ts); else Atomics.waitAsync. */
  loop?: 'epoll' | 'event-loop';
  /** Hand-off rings (worker-tun-input.ts), when the workers read their own TUN queues. */
  handOff?: HandOffRings;
}

/**
 * The rings between workers that read their own TUN queues: an inner packet
 * whose SA another worker owns is handed to that owner (architecture §3).
 * Each ring has one writer (the reading worker) and one reader (the owner).
 */
export interface HandOffRings {
  /** Rings this worker reads (one per other worker). */
  in: RingBuffer[];
  /** By owner index: the ring this worker writes to reach it, and the owner's wake bell; null for itself. */
  out: Array<{ ring: RingBuffer; wake: SharedArrayBuffer } | null>;
}

/**
 * A worker's own output (dataplane.ts "Who writes"): decapsulated packets go
 * to a TUN queue, ESP of SAs with an EspRoute straight to their socket.
 */
export interface DirectOutput {
  /** This worker's descriptor of a TUN queue (a dup: the worker closes it at stop). */
  tunFd: number;
  /** The queue was opened with IFF_VNET_HDR: batches go through tunWriteBatch (GRO). */
  tunOffload: boolean;
  /** The worker also reads this queue (one queue per worker): outbound packets are sealed where they are read. */
  tunRead?: boolean;
}

/** Where a worker sends an outbound SA's ESP itself: a UDP socket (RFC 3948) or the raw ESP socket (port 0). */
export interface EspRoute {
  /** The worker's own descriptor (a dup of the I/O side's socket). */
  fd: number;
  family: 4 | 6;
  /** The destination address bytes in 4 int32 words (udpSend's descriptor layout). */
  words: Int32Array;
  port: number;
  /**
   * UDP: the SA's local address. A worker with its own socket of a steered
   * NAT-T port bound there sends from that socket, which no other thread
   * sends on, so it may switch IPv4 DF per packet (outer-header.ts).
   */
  local?: string;
}

/** The selectors of an inbound SA, for the check of decapsulated packets a worker delivers itself (RFC 4301 §5.2). */
export interface InboundPolicy {
  localTs: Selector[];
  remoteTs: Selector[];
}

/** Indexes of the Float64 totals a worker keeps in its `stats` buffer (single writer: the worker). */
export const WorkerStat = {
  ENCAP_PACKETS: 0,
  /** Inner bytes encapsulated. */
  ENCAP_BYTES: 1,
  DECAP_PACKETS: 2,
  /** Inner bytes recovered. */
  DECAP_BYTES: 3,
  DROP_REPLAY: 4,
  /** ICV did not verify. */
  DROP_AUTH: 5,
  /** Too short, bad padding, bad descriptor. */
  DROP_MALFORMED: 6,
  /** The SA reached its hard sequence limit (rekey did not happen in time). */
  DROP_SEQ_EXHAUSTED: 7,
  /** The cell's SA was deleted (or replaced) while the cell was queued. */
  DROP_NO_SA: 8,
  /** The worker's out ring was full. */
  DROP_QUEUE_FULL: 9,
  /** Kernel batch calls. */
  BATCHES: 10,
  /** Milliseconds spent in batches (copy in, kernel, copy out). */
  BUSY_MS: 11,
  /** ESP bytes produced (what goes on the wire, without UDP/IP). */
  ESP_BYTES_OUT: 12,
  /** Decapsulated dummy packets (Next Header 59, RFC 4303 §2.6), discarded. */
  DUMMY: 13,
  // Direct output (DirectOutput): what the worker wrote itself.
  /** ESP datagrams the kernel took, and their bytes. */
  ESP_SENT: 14,
  ESP_SENT_BYTES: 15,
  /** ESP datagrams the kernel refused (full socket buffer, no route). */
  SEND_ERRORS: 16,
  /** Inner packets written to the TUN queue, and their bytes. */
  INNER_WRITTEN: 17,
  INNER_WRITTEN_BYTES: 18,
  /** Decapsulated packets outside their SA's selectors (RFC 4301 §5.2). */
  DROP_POLICY: 19,
  /** TUN write system calls. */
  TUN_WRITES: 20,
  /** Packets written inside a coalesced GSO packet. */
  TUN_COALESCED: 21,
  /** Packets the TUN queue had no room for (EAGAIN), and other write errors. */
  TUN_DROPPED: 22,
  TUN_ERRORS: 23,
  // Steered input (worker-input.ts): ESP the kernel steered to this worker's own socket.
  /** Datagrams read from the worker's socket of the steered NAT-T port. */
  STEERED_IN: 24,
  /** Of them, ESP for an SPI this worker holds no inbound SA for. */
  DROP_UNKNOWN_SPI: 25,
  /** Receive errors on that socket. */
  STEERED_ERRORS: 26,
  /** Bytes of the datagrams read from it. */
  STEERED_IN_BYTES: 27,
  /** Outer CE over an inner Not-ECT packet, dropped on decapsulation (RFC 6040 §4.2). */
  DROP_ECN: 28,
  // TUN input (worker-tun-input.ts): the worker reads its own TUN queue.
  /** Inner packets read from the worker's TUN queue (GSO packets count as their segments), and their bytes. */
  TUN_READS: 29,
  TUN_READ_BYTES: 30,
  /** read system calls on it, and packets that arrived inside a GSO packet and were split. */
  TUN_READ_CALLS: 31,
  TUN_SEGMENTED: 32,
  /** Reads that failed (a packet tso.c refused, or the queue broke). */
  TUN_READ_ERRORS: 33,
  /** Inner packets this worker read whose SA another worker owns, put on that worker's hand-off ring. */
  HANDOFFS_OUT: 34,
  /** Inner packets another worker read and handed to this one, the owner of their SA. */
  HANDOFFS_IN: 35,
  /** Hand-offs refused: the owner's hand-off ring was full. */
  DROP_HANDOFF_FULL: 36,
  /** Inner packets read that no SA's selectors cover, and ones that are not IPv4/IPv6 or too long to encapsulate. */
  INNER_NO_POLICY: 37,
  INNER_MALFORMED: 38,
  /** Steered ESP held for an SPI not installed yet (steered-hold.ts): opened once it is, or counted in DROP_UNKNOWN_SPI. */
  STEERED_HELD: 39,
} as const;
export const WORKER_STAT_COUNT = 40;

export interface InstallRequest {
  op: 'install';
  id: number;
  slot: number;
  tag: number;
  /** The control plane's SA id (reported back by the write hook and rekey events). */
  saId: number;
  algorithm: EspAlgorithm;
  /** Key material (key || salt, or AES key || HMAC key), in a transferred ArrayBuffer. */
  key: ArrayBuffer;
  spi: number;
  direction: 'in' | 'out';
  esn: boolean;
  icvLength: 8 | 12 | 16 | 24 | 32;
  replayWindow: number;
  seqSoftLimit?: bigint;
  seqHardLimit?: bigint;
  /** Outbound, direct output: send the ESP to this route (else to the out ring). */
  route?: EspRoute;
  /** Inbound, direct output: write what passes these selectors to the TUN queue (else to the out ring). */
  policy?: InboundPolicy;
  /** The outer header rules, packed (outer-header.ts): TOS and DF of the ESP it sends, ECN of what it decapsulates. */
  outer?: number;
  /** Inbound, UDP-encapsulated: where the peer's ESP comes from (udpRecv's words 2..6); steered ESP from elsewhere is reported ('esp-source'). */
  source?: Int32Array;
}

/** New destination for an outbound SA's ESP (MOBIKE, RFC 4555; NAT mapping change): null sends through the out ring. */
export interface RouteRequest {
  op: 'route';
  id: number;
  slot: number;
  tag: number;
  route: EspRoute | null;
}

export interface DeleteRequest {
  op: 'delete';
  id: number;
  slot: number;
}

export interface CountersRequest {
  op: 'counters';
  id: number;
  slots: number[];
}

/** Generate IPv4/UDP packets and encapsulate them with the outbound SA in `slot` (demo, benchmarks). */
export interface GenerateRequest {
  op: 'generate';
  id: number;
  slot: number;
  tag: number;
  /** Most packets to generate. */
  packets: number;
  /**
   * Stop after this many milliseconds even if fewer packets went out
   * (benchmarks measure a fixed window, so N workers are compared over the
   * same time and not held back by the slowest one). Checked between batches.
   */
  durationMs?: number;
  /** Inner packet bytes (28..cell payload). */
  size: number;
  /** Distinct UDP source ports to cycle through. */
  flows: number;
  src: Uint8Array;
  dst: Uint8Array;
  /** 'ring': ESP goes to the out ring (sent by the I/O side); 'discard': counted only (encap throughput). */
  output: 'ring' | 'discard';
  /** Packets per kernel call (1..256). */
  batch: number;
  /**
   * Benchmark only: the "one SA shared by many workers" model that cloning
   * avoids. Sequence numbers come from a 64-bit counter shared by every worker
   * (a BigInt64Array over `buffer`), taken with Atomics.add for each packet
   * (`perPacket`, the packet is then sealed alone) or for each batch. Never
   * used for real traffic.
   */
  sharedSeq?: { buffer: SharedArrayBuffer; perPacket: boolean };
}

/**
 * This worker's socket of the steered NAT-T port (io/esp-steering.ts): the
 * worker reads and decapsulates its ESP itself (worker-input.ts) and closes
 * the descriptor at stop.
 */
export interface SteeredSocketRequest {
  op: 'steered-socket';
  id: number;
  fd: number;
  /** The address the steered port is bound to: the worker sends the ESP of routes from it on this socket (EspRoute.local). */
  address?: string;
  /** A raw IPv4 socket of protocol 50 that keeps this worker's SPIs (io/raw-esp-steering.ts), not a NAT-T port's. */
  raw?: boolean;
}
/**
 * The outbound policies as a worker that reads its TUN queue needs them
 * (worker-spd.ts): the SPD's families with the slots of the members that
 * send. Sent whenever the SPD changes; replaces the previous table.
 */
export interface PoliciesRequest {
  op: 'policies';
  id: number;
  families: PolicyFamily[];
}

/** One SPD family (spd.ts): its selectors and the SAs that send for it, each by owner worker, slot and tag. */
export interface PolicyFamily {
  localTs: Selector[];
  remoteTs: Selector[];
  senders: PolicySender[];
}

export interface PolicySender {
  worker: number;
  slot: number;
  tag: number;
}

export interface StopRequest {
  op: 'stop';
  id: number;
}

export type WorkerRequest = InstallRequest | RouteRequest | DeleteRequest | CountersRequest | GenerateRequest | SteeredSocketRequest | PoliciesRequest | StopRequest;

export interface SlotCounters {
  slot: number;
  saId: number;
  counters: SaCounters;
}

export interface CountersReply {
  slots: SlotCounters[];
  /**
   * Debug hook for architecture §4.1: the SA ids whose sequence counter or replay
   * window this worker's kernel has processed packets for since start.
   */
  seqWriters: number[];
}

export interface GenerateReply {
  sent: number;
  dropped: number;
  ms: number;
}

export type WorkerReply =
  | { id: number; ok: true; value?: CountersReply | GenerateReply }
  | { id: number; ok: false; error: string };

/** Unsolicited worker -> I/O messages. */
export type WorkerEvent =
  | { event: 'ready'; index: number }
  | { event: 'rekey-needed'; slot: number; tag: number; saId: number }
  /** The first packet on an inbound SA passed its ICV: the peer has that SA and sends on it. */
  | { event: 'first-inbound'; slot: number; tag: number }
  /** The worker's steered socket failed (libuv status): it reads it no more. */
  | { event: 'steered-error'; index: number; status: number }
  /**
   * Authenticated ESP (its ICV verified, not a replay) of the inbound SA in
   * `slot` came from a new source: `source` in udpRecv's words 2..6 (family
   * << 16 | port, address). Reported once per change (RFC 7296 §2.23).
   */
  | { event: 'esp-source'; index: number; slot: number; tag: number; source: Int32Array }
  /** The worker's TUN queue failed (libuv status): it reads it no more. */
  | { event: 'tun-error'; index: number; status: number };
