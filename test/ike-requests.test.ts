// The engine picks the responder of a request by its kind (control/ike/requests.ts),
// from the exchange type and the payloads, as strongSwan's process_request does.
import { describe, expect, it } from 'vitest';
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';
import { IkeSa } from '../control/ike/ike-sa.js';
import { notify } from '../control/ike/payload-builders.js';
import { classifyRequest } from '../control/ike/requests.js';
import { pskPair } from './support/peers.js';

function sa(peerClone: boolean): IkeSa {
  const s = new IkeSa('responder', pskPair().responder, { address: '10.0.0.2', port: 500 }, { address: '10.0.0.1', port: 500 }, new Uint8Array(8).fill(1), new Uint8Array(8).fill(2), 0);
  s.peerClone = peerClone;
  return s;
}

const saOf = (protocol: number): Payload => ({ type: PayloadType.SA, proposals: [{ number: 1, protocol, spi: new Uint8Array(protocol === ProtocolId.IKE ? 8 : 4), transforms: [] }] });
const nonce: Payload = { type: PayloadType.NONCE, data: new Uint8Array(32) };

describe('request classification', () => {
  it('IKE_AUTH', () => {
    expect(classifyRequest(sa(false), ExchangeType.IKE_AUTH, [])).toBe('ike-auth');
  });

  it('CREATE_CHILD_SA: a new Child SA, a Child SA rekey, an IKE SA rekey, a clone', () => {
    const s = sa(true);
    expect(classifyRequest(s, ExchangeType.CREATE_CHILD_SA, [saOf(ProtocolId.ESP), nonce])).toBe('child-create');
    expect(classifyRequest(s, ExchangeType.CREATE_CHILD_SA, [notify(NotifyType.REKEY_SA), saOf(ProtocolId.ESP), nonce])).toBe('child-rekey');
    expect(classifyRequest(s, ExchangeType.CREATE_CHILD_SA, [saOf(ProtocolId.IKE), nonce])).toBe('ike-rekey');
    expect(classifyRequest(s, ExchangeType.CREATE_CHILD_SA, [notify(NotifyType.CLONE_IKE_SA), saOf(ProtocolId.IKE), nonce])).toBe('ike-clone');
  });

  it('CLONE_IKE_SA on an SA that did not negotiate cloning is a rekey (RFC 7791 §5.1), and outside an IKE proposal nothing', () => {
    expect(classifyRequest(sa(false), ExchangeType.CREATE_CHILD_SA, [notify(NotifyType.CLONE_IKE_SA), saOf(ProtocolId.IKE), nonce])).toBe('ike-rekey');
    expect(classifyRequest(sa(true), ExchangeType.CREATE_CHILD_SA, [notify(NotifyType.CLONE_IKE_SA), saOf(ProtocolId.ESP), nonce])).toBe('child-create');
    expect(classifyRequest(sa(true), ExchangeType.INFORMATIONAL, [notify(NotifyType.CLONE_IKE_SA)])).toBe('informational');
  });

  it('INFORMATIONAL: deleting the IKE SA, anything else (Child SA deletes, MOBIKE, liveness)', () => {
    const s = sa(false);
    expect(classifyRequest(s, ExchangeType.INFORMATIONAL, [{ type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] }])).toBe('ike-delete');
    expect(classifyRequest(s, ExchangeType.INFORMATIONAL, [{ type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: [new Uint8Array(4)] }])).toBe('informational');
    expect(classifyRequest(s, ExchangeType.INFORMATIONAL, [notify(NotifyType.UPDATE_SA_ADDRESSES)])).toBe('informational');
    expect(classifyRequest(s, ExchangeType.INFORMATIONAL, [])).toBe('informational');
  });

  it('an exchange type no responder answers', () => {
    expect(classifyRequest(sa(false), ExchangeType.IKE_SA_INIT, [])).toBeUndefined();
    expect(classifyRequest(sa(false), 99, [])).toBeUndefined();
  });
});
