// The Delete exchange (RFC 7296 §1.4.1): deleting Child SAs and IKE SAs in
// INFORMATIONAL exchanges, and the INVALID_SPI notify for ESP with an SPI we
// do not know (§2.21.4, §3.10.1).
//
//   Initiator                         Responder
//   HDR, SK {D(ESP, SPIs)}  -->
//                           <--  HDR, SK {D(ESP, paired SPIs)}
//   HDR, SK {D(IKE)}  -->
//                           <--  HDR, SK {}
//   HDR, SK {N(INVALID_SPI)}  -->
//                           <--  HDR, SK {}
//
// An INFORMATIONAL request may carry Child SA deletes and MOBIKE notifies
// (RFC 4555) together; respondInformational answers both, and an empty
// request (a liveness check, §2.4) with an empty response.
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../../wire/constants.js';
import type { DeletePayload, Payload } from '../../wire/payloads.js';
import type { ChildSa, IkeSa, InitiatorExchange, ResponderResult } from '../ike-sa.js';
import type { IkeContext } from '../context.js';
import type { Datagram } from '../transport.js';
import { respondMobility } from './mobike.js';
import { notify, spiBytes, spiNumber } from '../payload-builders.js';
import { redirectRequested } from '../redirect.js';

/** Delete an IKE SA and its Child SAs with an INFORMATIONAL exchange (RFC 7296 §1.4.1). */
export function closeIkeSa(engine: IkeContext, sa: IkeSa): Promise<void> {
  if (sa.state === 'dead') return Promise.resolve();
  return new Promise((resolve) => {
    if (sa.state !== 'established') {
      engine.deleteIkeSa(sa, 'closed before established');
      resolve();
      return;
    }
    sa.setState('deleting', engine.log);
    // A delete goes ahead of anything queued (RFC 7296 §2.25: nothing else matters once it is sent);
    // what was queued fails now instead of never settling.
    for (const dropped of sa.queue.splice(0)) dropped.abort?.(sa, 'IKE SA is being deleted');
    engine.queueExchange(sa, new DeleteIkeInitiator(engine, resolve));
  });
}

/** Delete a Child SA with an INFORMATIONAL exchange (RFC 7296 §1.4.1). */
export function closeChildSa(engine: IkeContext, child: ChildSa): Promise<void> {
  if (child.state === 'deleted') return Promise.resolve();
  return new Promise((resolve) => {
    child.setState('deleting', engine.log);
    engine.queueExchange(child.ike, new DeleteChildInitiator(engine, child, resolve));
  });
}

function espDelete(spis: number[]): DeletePayload {
  return { type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: spis.map(spiBytes) };
}

/** Delete ESP SAs by our inbound SPIs (§1.4.1: each side names the SPI it receives with). */
export class DeleteChildInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (delete Child SA)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  constructor(
    private readonly engine: IkeContext,
    private readonly child: ChildSa,
    private readonly done: () => void,
  ) {}

  build(): Payload[] {
    return [espDelete([this.child.spiIn])];
  }

  process(_sa: IkeSa, payloads: Payload[]): void {
    // §1.4.1: the answer should delete the paired SA; if not, the Child SA is half-closed.
    this.engine.deletion.deleteAnswered(this.child, payloads);
    this.engine.removeChild(this.child, 'deleted');
    this.done();
  }

  abort(): void {
    this.engine.removeChild(this.child, 'deleted (peer did not confirm)');
    this.done();
  }
}

/** Delete ESP SPIs the peer may hold for us although we never installed them (a Child SA we rejected). */
export class DeleteSpisInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (delete unusable Child SA)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  /** `done(true)` when the peer answered, `done(false)` when it never did. */
  constructor(
    private readonly spis: number[],
    private readonly done: (answered: boolean) => void = () => {},
  ) {}

  build(): Payload[] {
    return [espDelete(this.spis)];
  }

  process(): void {
    this.done(true);
  }

  abort(): void {
    this.done(false);
  }
}

/** Delete the IKE SA, and with it all its Child SAs (§1.4.1). */
export class DeleteIkeInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (delete IKE SA)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  constructor(
    private readonly engine: IkeContext,
    private readonly done: () => void,
  ) {}

  build(): Payload[] {
    return [{ type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }];
  }

  process(sa: IkeSa): void {
    this.engine.deleteIkeSa(sa, 'deleted');
    this.done();
  }

  abort(): void {
    this.done();
  }
}

/** INFORMATIONAL with N(INVALID_SPI) naming an ESP SPI we do not know (§2.21.4). */
export class InvalidSpiInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (INVALID_SPI)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;

  constructor(readonly spi: number) {}

  build(): Payload[] {
    return [notify(NotifyType.INVALID_SPI, spiBytes(this.spi))];
  }

  process(): void {}
}

/** The peer deletes the IKE SA (§1.4.1): answer with an empty INFORMATIONAL, then it and its children are gone. */
export function respondIkeDelete(engine: IkeContext, sa: IkeSa): ResponderResult {
  return {
    payloads: [],
    after: () => {
      // §2.8.2: a rekey of it we answered during our own becomes the successor first.
      engine.collisions.beforePeerDeletesIke(sa);
      engine.deleteIkeSa(sa, 'deleted by peer');
    },
  };
}

/** Any other INFORMATIONAL request: Child SA deletes, MOBIKE, or nothing at all (a liveness check). */
export function respondInformational(engine: IkeContext, sa: IkeSa, payloads: Payload[], d: Datagram): ResponderResult {
  const deletes = payloads.filter((p): p is DeletePayload => p.type === PayloadType.DELETE);
  // RFC 4555: COOKIE2 echo, NAT-D answers, address lists, UPDATE_SA_ADDRESSES.
  const mobility = respondMobility(engine, sa, payloads, d);
  if (mobility.refuse) return { payloads: mobility.refuse };
  // RFC 5685 §5: the gateway sends us elsewhere; we answer first, then go.
  const redirect = redirectRequested(engine, sa, payloads);
  const gone: ChildSa[] = [];
  for (const del of deletes) {
    if (del.protocol !== ProtocolId.ESP && del.protocol !== ProtocolId.AH) continue;
    for (const raw of del.spis) {
      const spi = spiNumber(raw);
      // The peer names its inbound SPI, which is our outbound one.
      const child = sa.children.find((c) => c.spiOut === spi);
      if (child && !gone.includes(child)) gone.push(child);
    }
  }
  const response: Payload[] = [];
  // §1.4.1: a Child SA we are deleting ourselves at the same time is not listed again (§2.25.1).
  const answer = gone.filter((c) => c.state !== 'deleting').map((c) => c.spiIn);
  if (answer.length > 0) response.push(espDelete(answer));
  response.push(...mobility.extra);
  return {
    payloads: response,
    after: () => {
      for (const c of gone) engine.removeChild(c, 'deleted by peer');
      mobility.after?.();
      redirect?.();
    },
  };
}
