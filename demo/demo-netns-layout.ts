// What `ikeclone demo --netns` builds and reports: the addresses of its two
// namespaces, its options and its result (stable field names: add fields,
// never rename them).

/** Every namespace the netns demo creates is named `ikcdemo-<pid>-<n>-<role>`. */
export const NETNS_DEMO_PREFIX = 'ikcdemo-';
/** Outer addresses on the veth pair (initiator, responder). */
export const NETNS_DEMO_OUTER = { initiator: '10.254.1.1', responder: '10.254.1.2', prefixLen: 24 } as const;
/** Inner addresses on lo, and the subnets the Child SAs protect. */
export const NETNS_DEMO_INNER = {
  initiator: '10.254.50.1',
  responder: '10.254.100.1',
  initiatorNet: '10.254.50.0/24',
  responderNet: '10.254.100.0/24',
  prefixLen: 24,
} as const;
/** The TUN device in each namespace. */
export const NETNS_DEMO_TUN = 'ikc0';
/** The veth pair's interface name on both sides. */
export const VETH = 'veth0';
/** The connection and child names in both gateways' configurations. */
export const CONNECTION = 'demo';
export const CHILD = 'net';
/** iperf3's server port on the responder's inner address. */
export const IPERF_PORT = 5201;
/** Most IKE SAs in the family: the responder's default limit per peer (limits.ikeSasPerPeer). */
export const MAX_CLONES = 16;
/** Echo requests each way. */
export const PING_COUNT = 5;

export interface NetnsDemoOptions {
  /** Receives one human-readable line per step. */
  progress?: (line: string) => void;
  /** iperf3 duration in whole seconds, 1..600 (default 3). */
  seconds?: number;
  /** IKE SAs in the clone family (= data-plane workers on each side), 1..16; default: available cores, at most 16. */
  clones?: number;
  /**
   * ESP transport: udp (RFC 3948 on port 4500, the default, as in the loopback
   * demo) or auto (raw ESP, IP protocol 50, since there is no NAT between the namespaces).
   */
  esp?: 'auto' | 'udp';
  /** The gateways' log level (their logs are kept and quoted when a step fails); default warn. */
  logLevel?: string;
  /** The built CLI the gateways run (default: dist/control/cli/main.js of this package). */
  cliPath?: string;
  /** Bound on the IKE SA, its clones and their Child SAs reaching both data planes, ms (default 20 000). */
  timeoutMs?: number;
}

/** One side's share of the demo. */
export interface NetnsDemoNamespace {
  name: string;
  role: 'initiator' | 'responder';
  /** Address on the veth end (IKE and ESP). */
  outer: string;
  /** Address on lo (inner traffic through the tunnel). */
  inner: string;
  tun: string;
}

export interface NetnsDemoPing {
  from: string;
  to: string;
  sent: number;
  received: number;
  /** Average round-trip time, ms; null when nothing came back. */
  rttMs: number | null;
}

/** One data-plane worker's counters at the end of the run. */
export interface NetnsDemoWorker {
  index: number;
  /** Child SAs the worker owns. */
  sas: number;
  /** Packets it sealed (TUN -> ESP). */
  encapPackets: number;
  /** Packets it opened and verified (ESP -> TUN). */
  decapPackets: number;
  /** Packets it dropped: replay, ICV, malformed, sequence exhausted, no SA, ring full. */
  drops: number;
}

/** One IKE SA of the clone family as the initiator sees it, and where its Child SA lives on both ends. */
export interface NetnsDemoMember {
  familyIndex: number;
  spiI: string;
  spiR: string;
  /** The Child SA's SPIs at the initiator (in = the responder's out). */
  childSpiIn: string | null;
  childSpiOut: string | null;
  /** Owner workers of the Child SA at the initiator and at the responder. */
  worker: number | null;
  peerWorker: number | null;
}

/**
 * What `ikeclone demo --netns --json` prints. Field names are stable: add
 * fields, never rename them.
 *
 * - `demo`: always "ikeclone-netns"; `version`: ikeclone's package version.
 * - `namespaces`: the two namespaces (name, role, outer and inner address, TUN device).
 * - `esp`: the ESP transport both ends used: "raw" (IP protocol 50) or "udp" (RFC 3948).
 * - `establishMs`: from starting the initiator until every Child SA of the family was in both data planes.
 * - `ping.toResponder`, `ping.toInitiator`: echo requests between the inner addresses, through the tunnel.
 * - `iperf3`: one TCP run from the initiator's inner address to the responder's: `seconds`,
 *   `mbps` (received, Mbit/s), `sentMbps`, `retransmits`, `streams` (parallel TCP streams, spread over the family).
 * - `family`: the clone family: `target` IKE SAs wanted, `state` (complete, fallback, ...), `members`.
 * - `workers.initiator`, `workers.responder`: per-worker encap/decap packets and drops.
 * - `agree`: every member's IKE SPIs, proposal, Child SA SPIs and selectors match across both ends.
 * - `mismatches`: what differs when `agree` is false.
 * - `durationMs`: the whole demo, namespaces created to namespaces deleted.
 */
export interface NetnsDemoResult {
  demo: 'ikeclone-netns';
  version: string;
  namespaces: NetnsDemoNamespace[];
  esp: 'raw' | 'udp';
  establishMs: number;
  ping: { toResponder: NetnsDemoPing; toInitiator: NetnsDemoPing };
  iperf3: { seconds: number; mbps: number; sentMbps: number; retransmits: number; streams: number };
  family: { target: number; state: string; members: NetnsDemoMember[] };
  workers: { initiator: NetnsDemoWorker[]; responder: NetnsDemoWorker[] };
  agree: boolean;
  mismatches: string[];
  durationMs: number;
}
