// The data plane's defaults and limits, in one place: ring geometry, batch
// and budget sizes of the I/O thread and the workers, request timeouts, and
// the numbers of the wasm kernel's layout (wasm/layout.ts) that the I/O side
// mirrors. Constants only: no thread owns anything here.

/** ESP held per SA while its install is in progress (handover.ts); past this it is dropped (dropNoSa). */
export const HELD_PACKETS_PER_SA = 256;
/** Longest wait of an SA the peer created before it sends, when others of its family still send, ms (handover.ts). */
export const DEFERRED_OUTBOUND_MS = 2000;
/** How long a deleted (retired) SA keeps receiving the ESP the peer sent before its Delete, ms (handover.ts). */
export const RETIRED_SA_LINGER_MS = 3000;
/** Default cell size: an inner packet of up to 2040 bytes, or its ESP encapsulation. */
export const DEFAULT_CELL_SIZE = 2048;
/** Default cells per ring. */
export const DEFAULT_RING_CAPACITY = 1024;

/**
 * Most bytes ESP adds to an inner packet with any suite the kernel runs
 * (wasm/layout.ts ESP_HEADROOM + ESP_TAILROOM): AES-CBC + HMAC-SHA-512-256,
 * header 8 + IV 16 (RFC 3602 §3), padding up to 15 (block alignment, RFC 3602
 * §2.4), trailer 2, ICV 32 (RFC 4868 §2.3). The AEADs add at most 37.
 */
export const ESP_OVERHEAD = 73;
/**
 * Cells of each hand-off ring between two workers that read their own TUN
 * queues (worker-tun-input.ts): there are workers x (workers - 1) of them, so
 * they are small; the fast path (a member of the family on every worker)
 * uses none.
 */
export const HANDOFF_RING_CAPACITY = 256;
/** Most workers that read their own TUN queues; past it the I/O thread reads the device (the hand-off rings grow as workers squared). */
export const MAX_TUN_READING_WORKERS = 16;
/** Cells staged for one worker before they are published without waiting for the end of the turn. */
export const FLUSH_CELLS = 64;
/** Output cells handled per turn of the event loop, over all workers (sockets get their turn). */
export const SEND_BUDGET = 32;
/** Longest sleep of the I/O thread's output loop with nothing to do, ms (a doorbell ends it sooner). */
export const DRAIN_IDLE_WAIT_MS = 250;

/** Most workers one data plane runs (the slot numbering and config allow more; threads cost memory). */
export const MAX_WORKERS = 256;
/** Bound on a control request's answer, ms (default; StartWorkersOptions.requestTimeoutMs). */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Batches a worker processes between two yields to its event loop (control messages run there). */
export const BATCHES_PER_YIELD = 4;
/** How idle workers wait when the configuration does not say (DataPlaneOptions.workerLoop). */
export const WORKER_LOOP_DEFAULT: 'epoll' | 'event-loop' = 'epoll';
/** Wake-ups of a worker blocking in epoll between two turns of its event loop (worker-epoll.ts). */
export const EPOLL_WAKES_PER_YIELD = 64;
/** A worker's longest idle wait before it re-checks for stop, ms. */
export const IDLE_WAIT_MS = 200;
/**
 * Control messages a worker applies at once when steered ESP names an SPI it
 * does not know yet (worker-input.ts): its install request may be queued.
 */
export const CATCH_UP_MESSAGES = 64;
/**
 * Steered ESP for an SPI a worker has no SA for even after that catch-up
 * (steered-hold.ts: the install may not be posted yet): held at most this
 * long, ms, at most this many datagrams and SPIs per socket; then dropped
 * as an unknown SPI.
 */
export const STEERED_HOLD = { ms: 1000, packets: 256, spis: 16 } as const;

/** SA slots of one worker's kernel (wasm/layout.ts SLOT_COUNT). */
export const KERNEL_SLOT_COUNT = 256;
/** Inbound anti-replay window in packets when none is given (RFC 4303 §3.4.3; wasm/layout.ts allows 64..4096). */
export const DEFAULT_REPLAY_WINDOW = 1024;

/** Traffic generator (demo, benchmarks): inner packet bytes, UDP source ports per SA, packets per kernel call. */
export const GENERATE_DEFAULTS = { size: 1400, flows: 16, batch: 64 } as const;

/** Receive buffer of a worker's filtered raw ESP socket (io/raw-esp-steering.ts), as the I/O thread's raw socket has. */
export const RAW_ESP_WORKER_BUFFER = 4 << 20;
