// Every tunable of the IKE engine and its lifecycle helpers, with its default,
// in one place. The configuration (control/config) overrides them per
// gateway; tests override them per engine.

export interface EngineLimits {
  /** Half-open IKE SAs before new IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6). */
  halfOpenCookieThreshold: number;
  /**
   * Half-open IKE SAs in the table. A new one past this takes the place of the
   * oldest one of the source holding the most (sa-table.ts makeRoomForHalfOpen).
   */
  halfOpenMax: number;
  /**
   * Half-open IKE SAs per source address (strongSwan's block_threshold): a
   * source past it must answer a COOKIE, and then gives up its oldest.
   */
  halfOpenPerSource: number;
  /** Child SAs over all IKE SAs of one authenticated peer (RFC 7791 §8). */
  childSasPerPeer: number;
  /** IKE SAs (clones included) per authenticated peer (RFC 7791 §5.3, §8). */
  ikeSasPerPeer: number;
  /** IKE SAs in total; past this, clones get TEMPORARY_FAILURE (RFC 7791 §5.3). */
  maxIkeSas: number;
}

export const DEFAULT_LIMITS: EngineLimits = {
  halfOpenCookieThreshold: 32,
  halfOpenMax: 1024,
  halfOpenPerSource: 5,
  childSasPerPeer: 64,
  ikeSasPerPeer: 16,
  maxIkeSas: 100_000,
};

export interface RetransmitPolicy {
  /** First retransmission after this many ms (RFC 7296 §2.1). */
  timeout: number;
  /** Each further wait is multiplied by this. */
  base: number;
  /** Retransmissions before the peer is declared dead (RFC 7296 §2.4). */
  tries: number;
  maxTimeout: number;
}

export const DEFAULT_RETRANSMIT: RetransmitPolicy = { timeout: 1000, base: 1.8, tries: 5, maxTimeout: 30_000 };

export interface MobilityOptions {
  /** Check that a MOBIKE peer receives at its new address before moving its Child SAs (RFC 4555 §3.7). */
  returnRoutability: boolean;
}

export const DEFAULT_MOBILITY: MobilityOptions = { returnRoutability: true };

/** Our IKE ports: messages float from `ike` to `nat` (RFC 7296 §2.23). */
export const DEFAULT_PORTS = { ike: 500, nat: 4500 } as const;

/** Half-open responder SAs are forgotten after this many ms. */
export const DEFAULT_HALF_OPEN_TIMEOUT = 30_000;
/** ... and after this many while the half-open table is at or over the COOKIE threshold (architecture §4.6). */
export const DEFAULT_HALF_OPEN_PRESSURE_TIMEOUT = 5_000;

/** How long, and for how many IKE SAs, the last response of a deleted IKE SA is kept (RFC 7296 §2.1). */
export const RECENTLY_DELETED_MS = 60_000;
export const RECENTLY_DELETED_MAX = 1024;

/** Our nonces: 32 octets, enough for every PRF we negotiate (RFC 7296 §2.10). */
export const NONCE_LENGTH = 32;

export interface LifetimeOptions {
  /** Wait before retrying a rekey refused with TEMPORARY_FAILURE: uniformly in [d, 2d]. */
  rekeyRetryDelay: number;
}

export const DEFAULT_LIFETIME_OPTIONS: LifetimeOptions = { rekeyRetryDelay: 10_000 };

export interface LivenessOptions {
  /** Initiation attempts after a dead peer with dpdAction 'restart' (strongSwan's keyingtries). */
  restartTries: number;
  /** Pause before the second attempt, doubled for each further one (ms). */
  restartDelay: number;
}

export const DEFAULT_LIVENESS_OPTIONS: LivenessOptions = { restartTries: 3, restartDelay: 5_000 };

export interface DeletionOptions {
  /** Least time between two INVALID_SPI notifies to one peer address (ms). */
  invalidSpiInterval: number;
  /** Peer addresses the rate limiter remembers; past this, notifies wait until entries age out. */
  invalidSpiPeers: number;
  /** How long the inbound SPI of a half-closed Child SA stays out of use (ms). */
  halfClosedHold: number;
}

export const DEFAULT_DELETION_OPTIONS: DeletionOptions = { invalidSpiInterval: 1_000, invalidSpiPeers: 4_096, halfClosedHold: 300_000 };

/** NAT keepalive interval (RFC 3948 §4) unless the connection sets one (ms). */
export const DEFAULT_NAT_KEEPALIVE = 20_000;

/** Clone family growth (RFC 7791 §5.3, clone-family.ts): back-off after a refusal. */
export interface CloneBackoff {
  /** First wait after TEMPORARY_FAILURE (ms); doubles per attempt, with jitter in [0.5, 1.5). */
  baseMs: number;
  maxMs: number;
  /** Attempts per clone before giving up. */
  tries: number;
}

export const DEFAULT_CLONE_BACKOFF: CloneBackoff = { baseMs: 500, maxMs: 8000, tries: 5 };

/** RFC 5685 §7: a client follows at most MAX_REDIRECTS redirects within REDIRECT_LOOP_DETECT_PERIOD (defaults 5, 300 s). */
export const DEFAULT_MAX_REDIRECTS = 5;
export const DEFAULT_REDIRECT_LOOP_PERIOD = 300_000;
/** RFC 5685 §6 gateway: how long an IKE SA redirected in IKE_AUTH waits for the client's Delete (ms). */
export const REDIRECTED_SA_LINGER_MS = 5_000;
/**
 * IKE fragmentation (RFC 7383): the largest IP datagram (IP and UDP headers
 * included) that carries one of our fragments unless the connection sets one,
 * as strongSwan's charon.fragment_size: on IPv6 that leaves 1232 octets of
 * UDP payload (RFC 8200 §5 minimum MTU), on IPv4 1252.
 */
export const DEFAULT_FRAGMENT_SIZE = 1280;
/** The smallest fragment size a connection may set: room for a header, an SKF payload and some content. */
export const MIN_FRAGMENT_SIZE = 256;
/** Fallback sizes (RFC 7383 §2.5.1: 576 octets for IPv4, 1280 for IPv6) when a larger size goes unanswered (§2.5.2). */
export const FRAGMENT_FALLBACK_SIZE = { ipv4: 576, ipv6: 1280 } as const;
/** Unanswered retransmissions of a fragmented request at one size before it is cut smaller (RFC 7383 §2.5.2). */
export const FRAGMENT_FALLBACK_RETRANSMITS = 2;

/** Bounds of the reassembly of received IKE fragments (RFC 7383 §2.6, §5; fragments.ts). */
export interface ReassemblyLimits {
  /** Total Fragments above this is refused. */
  maxFragments: number;
  /** Decrypted octets of one message (RFC 7383 §5: not above 64 KB). */
  maxMessageBytes: number;
  /** Decrypted octets held over all messages in reassembly. */
  maxTotalBytes: number;
  /** Messages in reassembly at once, over all IKE SAs (at most one request and one response per IKE SA). */
  maxMessages: number;
  /** An incomplete message is forgotten this long after its first fragment (ms; RFC 7383 §2.6). */
  timeout: number;
  /**
   * Messages in reassembly at once from one source address: half-open IKE SAs
   * from many addresses share maxMessages, and one address must not hold it.
   */
  maxMessagesPerSource: number;
  /** From this many messages in reassembly on, the table is under pressure: new sets get pressureTimeout and older ones past it are forgotten. */
  pressureThreshold: number;
  /** Lifetime of an incomplete message while the table is under pressure (ms): a genuine peer sends its fragments back to back. */
  pressureTimeout: number;
}

export const DEFAULT_REASSEMBLY: ReassemblyLimits = {
  maxFragments: 128,
  maxMessageBytes: 64 * 1024,
  maxTotalBytes: 8 * 1024 * 1024,
  maxMessages: 512,
  timeout: 30_000,
  maxMessagesPerSource: 4,
  pressureThreshold: 128,
  pressureTimeout: 5_000,
};
