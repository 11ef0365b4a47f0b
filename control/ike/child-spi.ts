// Inbound ESP SPIs that name their owner. RFC 4303 §2.1 lets the receiver
// choose the SPI, so ours carry the index of the data-plane worker that will
// own the Child SA and the node's prefix (io/spi-layout.ts, the one layout):
// the kernel's socket steering and a cluster then route ESP by the SPI alone,
// without a lookup (architecture §3).
//
// The engine knows nothing of workers: whoever composes it with a data plane
// passes a placement (IkeEngineOptions.childSpiPlacement) that answers "which
// node and worker will own this Child SA?" before its SPI is drawn. Without
// one, SPIs are 32 random bits as before (engines wired in memory).
//
// Owner: the engine's thread.
import type { TrafficSelector } from '../wire/payloads.js';
import type { RandomSource } from '../crypto/random.js';
import { readU32 } from '../crypto/bytes.js';
import { composeEspSpi, MIN_ESP_SPI, type SpiOwner } from '../../io/spi-layout.js';
import type { ChildSa, IkeSa } from './ike-sa.js';

/** What is known of a Child SA when its inbound SPI is drawn. */
export interface ChildSpiRequest {
  /** The IKE SA that negotiates it (its clone family position: IkeSa.familyIndex). */
  sa: IkeSa;
  /** Its selectors: ours and the peer's (offered ones for an initiator, narrowed ones for a responder). */
  localTs: readonly TrafficSelector[];
  remoteTs: readonly TrafficSelector[];
  /** The Child SA it rekeys (RFC 7296 §2.8): the successor stays with the same owner. */
  replacing?: ChildSa;
  /**
   * The worker a per-worker placement chose (RFC 9611 per-resource or parallel
   * Child SAs, per-resource.ts, child-spread.ts): a hint the placement takes
   * when that worker has room, so the SPI, and with it the owner, is one choice.
   */
  preferredWorker?: number;
  /**
   * The random part a handoff drew for this Child SA (arrival-spi.ts): the
   * SPI is composed from it on the placement's node and worker (or one of
   * its fixed alternatives) while one of those is free.
   */
  spiRandom?: number;
}

/** The node and worker that will own a Child SA: its SPI is built for them. */
export type ChildSpiPlacement = (request: ChildSpiRequest) => SpiOwner;

/**
 * Draws until a usable SPI comes up. Bounded: 18 random bits per (node,
 * worker) leave at most a few draws unless that worker holds a large part of
 * its 2^18 SPIs, and then the allocator refuses rather than spin.
 */
const MAX_DRAWS = 4096;

/**
 * A fresh inbound SPI: >= 256 (RFC 4303 §2.1), not `inUse`, built for
 * `owner` when given (else 32 random bits). Throws when no free SPI was found
 * in MAX_DRAWS draws (the owner's SPI space is nearly exhausted).
 */
export function drawChildSpi(random: RandomSource, owner: SpiOwner | undefined, inUse: (spi: number) => boolean): number {
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    const bits = readU32(random(4));
    const spi = owner ? composeEspSpi(owner, bits) : bits;
    if (spi !== undefined && spi >= MIN_ESP_SPI && !inUse(spi)) return spi;
  }
  throw new Error(`no free inbound ESP SPI${owner ? ` for node ${owner.node} worker ${owner.worker}` : ''}`);
}
