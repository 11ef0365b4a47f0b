// A Child SA as the control plane sees it: negotiated algorithms, SPIs, keys
// until they are handed to the data plane, and traffic selectors. The data
// plane's copy (sequence counter, replay window) is owned by one worker.
import type { TrafficSelector } from '../wire/payloads.js';
import { wipe } from '../crypto/random.js';
import type { NegotiatedSuite } from './proposals.js';
import type { IkeSa } from './ike-sa.js';

/** installed -> rekeying (we rekey it) -> rekeyed (the successor exists; kept for inbound until deleted) -> deleting -> deleted. */
export type ChildSaState = 'installed' | 'rekeying' | 'rekeyed' | 'deleting' | 'deleted';

export interface ChildKeyMaterial {
  /** Inbound (peer -> us) encryption key material (key || salt for AEAD) and integrity key. */
  encIn: Uint8Array;
  integIn: Uint8Array;
  encOut: Uint8Array;
  integOut: Uint8Array;
}

let nextChildId = 1;

export class ChildSa {
  readonly id = nextChildId++;
  state: ChildSaState = 'installed';
  readonly createdAt: number;

  constructor(
    /** The IKE SA that manages it; changes when that IKE SA is rekeyed (not when cloned). */
    public ike: IkeSa,
    readonly name: string,
    /** Our inbound SPI (the peer sends ESP with it). */
    readonly spiIn: number,
    /** The peer's inbound SPI (we send ESP with it). */
    readonly spiOut: number,
    readonly suite: NegotiatedSuite,
    public keys: ChildKeyMaterial | undefined,
    readonly localTs: TrafficSelector[],
    readonly remoteTs: TrafficSelector[],
    /** ESP travels in UDP (RFC 3948) because a NAT was detected or the peer requires it; MOBIKE may change it. */
    public udpEncap: boolean,
    now: number,
  ) {
    this.createdAt = now;
  }

  /** Zeroise key material (architecture §4.5): after hand-off to the data plane and on delete. */
  wipeKeys(): void {
    if (!this.keys) return;
    wipe(this.keys.encIn, this.keys.integIn, this.keys.encOut, this.keys.integOut);
    this.keys = undefined;
  }
}

export function spiHex(spi: number): string {
  return spi.toString(16).padStart(8, '0');
}
