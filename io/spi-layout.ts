// The layout of the SPIs ikeclone allocates. Pure values, no thread owns
// anything here (architecture §2: the bottom of io/, usable by every layer).
//
// Inbound ESP SPIs are chosen by us (RFC 4303 §2.1: the receiver picks the SPI),
// so they may carry routing information that lets the kernel and a cluster
// steer a packet without a lookup:
//
//   ESP SPI, 32 bits:  | node (8) | worker (6) | random (18) |
//   IKE SPI, 64 bits:  | node (8) | random (56)               |
//
// - node: the cluster node's SPI prefix, 0 on a single gateway. SPIs stay unique
//   across a cluster because no two nodes share a prefix (the same idea as
//   RFC 6311 §3.3's per-member SPI ranges).
// - worker: the data-plane worker that owns the Child SA; a classic BPF program
//   on the SO_REUSEPORT group reads it to pick that worker's socket.
// - random: at least 18 bits per (node, worker), so an off-path guess of a live
//   SPI is unlikely and a reused SPI is rare; uniqueness is still checked by
//   the allocator.
// Values below 256 are reserved (RFC 4303 §2.1) and never produced.

export const SPI_NODE_BITS = 8;
export const SPI_WORKER_BITS = 6;
export const SPI_RANDOM_BITS = 32 - SPI_NODE_BITS - SPI_WORKER_BITS;
export const SPI_NODE_SHIFT = 32 - SPI_NODE_BITS;
export const SPI_WORKER_SHIFT = SPI_RANDOM_BITS;
export const MAX_SPI_NODES = 1 << SPI_NODE_BITS;
export const MAX_SPI_WORKERS = 1 << SPI_WORKER_BITS;
const RANDOM_MASK = (1 << SPI_RANDOM_BITS) - 1;
const WORKER_MASK = MAX_SPI_WORKERS - 1;

/** Reserved ESP SPI values: 0 is "no SA", 1..255 are reserved by IANA (RFC 4303 §2.1). */
export const MIN_ESP_SPI = 256;

/** The node prefix and worker an ESP SPI is built for. */
export interface SpiOwner {
  /** Cluster node prefix, 0..255; 0 on a single gateway. */
  node: number;
  /** Data-plane worker index, 0..63. */
  worker: number;
}

/**
 * An ESP SPI for `owner` from 32 random bits (only the low 18 are used), or
 * undefined when the result would be a reserved value (the caller draws again).
 */
export function composeEspSpi(owner: SpiOwner, random32: number): number | undefined {
  checkOwner(owner);
  const spi = ((owner.node << SPI_NODE_SHIFT) | (owner.worker << SPI_WORKER_SHIFT) | (random32 & RANDOM_MASK)) >>> 0;
  return spi >= MIN_ESP_SPI ? spi : undefined;
}

/** The worker index an ESP SPI of ours carries (meaningless for a peer's SPI). */
export function espSpiWorker(spi: number): number {
  return (spi >>> SPI_WORKER_SHIFT) & WORKER_MASK;
}

/** The node prefix an ESP SPI of ours carries. */
export function espSpiNode(spi: number): number {
  return spi >>> SPI_NODE_SHIFT;
}

/** An IKE SPI for node prefix `node` from 8 random bytes (the first is replaced); undefined if all zero. */
export function composeIkeSpi(node: number, random8: Uint8Array): Uint8Array | undefined {
  checkOwner({ node, worker: 0 });
  if (random8.length !== 8) throw new RangeError('an IKE SPI is 8 bytes');
  const spi = Uint8Array.from(random8);
  spi[0] = node;
  // RFC 7296 §3.1: an SPI of zero means "not yet known"; ours are never zero.
  return spi.some((b) => b !== 0) ? spi : undefined;
}

/** The node prefix an IKE SPI of ours carries. */
export function ikeSpiNode(spi: Uint8Array): number {
  return spi[0] ?? 0;
}

function checkOwner(owner: SpiOwner): void {
  if (!Number.isInteger(owner.node) || owner.node < 0 || owner.node >= MAX_SPI_NODES) {
    throw new RangeError(`SPI node prefix must be 0..${MAX_SPI_NODES - 1}`);
  }
  if (!Number.isInteger(owner.worker) || owner.worker < 0 || owner.worker >= MAX_SPI_WORKERS) {
    throw new RangeError(`SPI worker index must be 0..${MAX_SPI_WORKERS - 1}`);
  }
}
