// Deletion details beyond the Delete exchange itself:
//
// - ESP packets with an SPI no Child SA owns (RFC 7296 §2.21.4, §1.5): "the
//   node SHOULD initiate an INFORMATIONAL exchange with a Notify payload
//   describing the problem" over an IKE SA with the packet's sender, here
//   N(INVALID_SPI) with the SPI as notification data (§3.10.1). The data plane
//   reports such packets; the notifies are rate-limited per peer and the table
//   behind the limit is bounded, so a flood of bogus ESP costs little.
//   Without an IKE SA to that peer nothing is sent (the unprotected variant is
//   a MAY, and an easy reflector).
//
// - Half-closed Child SAs (§1.4.1): the response to our Delete should carry a
//   Delete for the paired SA in the other direction. When it does not (and the
//   peer did not delete the SA itself meanwhile), the peer still holds its
//   inbound half. That is anomalous: it is audited (log, 'child-half-closed'
//   event) and our inbound SPI is kept out of use for a while, since a node
//   "MUST NOT unilaterally close them and reuse the SPIs".
//
// Owner: the engine's thread; every timer here is cancelled by stop().
import { PayloadType, ProtocolId } from '../wire/constants.js';
import type { DeletePayload, Payload } from '../wire/payloads.js';
import { type ChildSa, type IkeSa, spiHex } from './ike-sa.js';
import type { TimerHandle } from './clock.js';
import type { IkeContext } from './context.js';
import type { Endpoint } from './transport.js';
import { spiNumber } from './payload-builders.js';
import { InvalidSpiInitiator } from './exchanges/delete.js';
import { DEFAULT_DELETION_OPTIONS, type DeletionOptions } from './defaults.js';

export type InvalidSpiVerdict = 'sent' | 'rate-limited' | 'no-ike-sa';

export class DeletionAudit {
  private readonly opts: DeletionOptions;
  /** Last INVALID_SPI notify per peer address. */
  private readonly lastNotify = new Map<string, number>();
  private readonly holds = new Map<number, TimerHandle>();

  constructor(
    private readonly engine: IkeContext,
    opts: Partial<DeletionOptions> = {},
  ) {
    this.opts = { ...DEFAULT_DELETION_OPTIONS, ...opts };
    for (const k of ['invalidSpiInterval', 'invalidSpiPeers', 'halfClosedHold'] as const) {
      if (!(this.opts[k] >= 0)) throw new RangeError(`deletion: ${k} must be a non-negative number`);
    }
  }

  /** See IkeContext.reportInvalidSpi. */
  reportInvalidSpi(spi: number, remote: Endpoint): InvalidSpiVerdict {
    if (!Number.isInteger(spi) || spi < 0 || spi > 0xffff_ffff) throw new TypeError('reportInvalidSpi: spi must be a 32-bit unsigned integer');
    if (!remote || typeof remote.address !== 'string' || !Number.isInteger(remote.port)) throw new TypeError('reportInvalidSpi: remote must be { address, port }');
    const sa = this.ikeSaWith(remote);
    if (!sa) return 'no-ike-sa';
    const now = this.engine.clock.now();
    const last = this.lastNotify.get(remote.address);
    if (last !== undefined && now - last < this.opts.invalidSpiInterval) return 'rate-limited';
    if (last === undefined && this.lastNotify.size >= this.opts.invalidSpiPeers) {
      for (const [k, t] of this.lastNotify) if (now - t >= this.opts.invalidSpiInterval) this.lastNotify.delete(k);
      if (this.lastNotify.size >= this.opts.invalidSpiPeers) return 'rate-limited';
    }
    this.lastNotify.delete(remote.address);
    this.lastNotify.set(remote.address, now);
    this.engine.log.info({ ike: sa.id, spi: spiHex(spi), peer: remote.address }, 'ESP with an unknown SPI: telling the peer (INVALID_SPI)');
    this.engine.queueExchange(sa, new InvalidSpiInitiator(spi));
    return 'sent';
  }

  /** An established IKE SA with the sender: same address, and same port when it is behind a NAT (§2.21.4). */
  private ikeSaWith(remote: Endpoint): IkeSa | undefined {
    let byAddress: IkeSa | undefined;
    for (const sa of this.engine.sas.values()) {
      if (sa.state !== 'established' || sa.remote.address !== remote.address) continue;
      if (sa.remote.port === remote.port || !sa.natRemote) return sa;
      byAddress ??= sa;
    }
    return byAddress;
  }

  /**
   * The peer answered our Delete for `child` (§1.4.1). Call before the engine
   * forgets the Child SA. Returns true when the Child SA is half-closed.
   */
  deleteAnswered(child: ChildSa, payloads: readonly Payload[]): boolean {
    // Deleted by the peer's own Delete meanwhile (crossing deletes, §1.4.1): fully closed.
    if (child.state === 'deleted') return false;
    const paired = payloads.some(
      (p): p is DeletePayload =>
        p.type === PayloadType.DELETE && (p.protocol === ProtocolId.ESP || p.protocol === ProtocolId.AH) && p.spis.some((s) => spiNumber(s) === child.spiOut),
    );
    if (paired) return false;
    this.engine.log.warn(
      { ike: child.ike.id, child: child.id, spiIn: spiHex(child.spiIn), spiOut: spiHex(child.spiOut) },
      'half-closed Child SA: the peer did not delete its inbound SA (RFC 7296 §1.4.1)',
    );
    this.holdSpi(child.spiIn);
    this.engine.emit('child-half-closed', child);
    return true;
  }

  /** Keep an inbound SPI out of use for halfClosedHold ms (the engine's newChildSpi asks isHeld). */
  private holdSpi(spi: number): void {
    this.holds.get(spi)?.cancel();
    const t = this.engine.clock.schedule(this.opts.halfClosedHold, () => this.holds.delete(spi));
    this.holds.set(spi, t);
  }

  /** Whether `spi` is the inbound SPI of a half-closed Child SA, not to be reused yet. */
  isHeld(spi: number): boolean {
    return this.holds.has(spi);
  }

  /** SPIs held back (tests). */
  get heldSpis(): number {
    return this.holds.size;
  }

  /** Cancel every timer and release held SPIs (engine shutdown). */
  stop(): void {
    for (const t of this.holds.values()) t.cancel();
    this.holds.clear();
    this.lastNotify.clear();
  }
}
