// The codec target: mutants of valid IKE messages into decodeMessage. A
// mutant decodes, or fails with a WireError of a known code; nothing throws
// (architecture §4.3).
import { ExchangeType, HeaderFlag, KeGroup, NotifyType, PayloadType, ProtocolId } from '../../control/wire/constants.js';
import { decodeMessage, encodeMessage } from '../../control/wire/message.js';
import type { Payload } from '../../control/wire/payloads.js';
import { WIRE_ERROR_CODES, isWireError } from '../../control/wire/result.js';
import { buildProposals } from '../../control/ike/proposals.js';
import { parseEspProposal, parseIkeProposal } from '../../control/config/proposal.js';
import { mutate, type Rng } from '../mutate.js';
import { guarded, type FuzzTarget, type Outcome } from '../target.js';

const seq = (start: number, n: number): Uint8Array<ArrayBuffer> => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
const notify = (notifyType: number, data = new Uint8Array(0)): Payload => ({ type: PayloadType.NOTIFY, protocol: 0, spi: new Uint8Array(0), notifyType, data });

function proposals(kind: 'ike' | 'esp'): Payload {
  const spec = kind === 'ike' ? parseIkeProposal('aes256gcm16-aes128gcm16-prfsha256-prfsha384-x25519-ecp256') : parseEspProposal('aes128gcm16-aes256gcm16-esn-noesn');
  if (!spec.ok) throw new Error(spec.error);
  return { type: PayloadType.SA, proposals: buildProposals([spec.value], kind === 'ike' ? new Uint8Array(0) : seq(0xc0, 4)) };
}

function seeds(): Uint8Array[] {
  const header = (exchangeType: number, flags: number, messageId: number) => ({ spiI: seq(0x11, 8), spiR: messageId === 0 && !(flags & HeaderFlag.RESPONSE) ? new Uint8Array(8) : seq(0x21, 8), version: 0x20, exchangeType, flags, messageId });
  return [
    encodeMessage(header(ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0), [
      proposals('ike'), { type: PayloadType.KE, group: KeGroup.CURVE25519, data: seq(1, 32) }, { type: PayloadType.NONCE, data: seq(0xa0, 32) },
      notify(NotifyType.NAT_DETECTION_SOURCE_IP, seq(0x50, 20)), notify(NotifyType.NAT_DETECTION_DESTINATION_IP, seq(0x60, 20)),
      notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, Uint8Array.of(0, 2, 0, 3, 0, 4)), { type: PayloadType.VENDOR_ID, data: seq(0x70, 16) },
    ]),
    encodeMessage(header(ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, 0), [notify(NotifyType.COOKIE, seq(0, 36))]),
    encodeMessage(header(ExchangeType.CREATE_CHILD_SA, HeaderFlag.INITIATOR, 3), [
      proposals('esp'), { type: PayloadType.NONCE, data: seq(0xb0, 32) },
      { type: PayloadType.TSi, selectors: [{ tsType: 7, ipProtocol: 0, startPort: 0, endPort: 65535, startAddress: seq(10, 4), endAddress: seq(20, 4) }] },
      { type: PayloadType.TSr, selectors: [{ tsType: 8, ipProtocol: 17, startPort: 500, endPort: 4500, startAddress: seq(0x20, 16), endAddress: seq(0x30, 16) }] },
    ]),
    encodeMessage(header(ExchangeType.INFORMATIONAL, HeaderFlag.INITIATOR | HeaderFlag.RESPONSE, 7), [
      { type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: [seq(1, 4), seq(5, 4)] }, notify(NotifyType.UPDATE_SA_ADDRESSES),
    ]),
  ];
}

const CODES = new Set<string>(WIRE_ERROR_CODES);

export function codecTarget(): FuzzTarget {
  const corpus = seeds();
  return {
    name: 'codec',
    describe: 'mutated IKE messages into decodeMessage: decoded, or a typed WireError; never a throw',
    run(rng: Rng): Outcome {
      const mutant = mutate(rng.pick(corpus), rng);
      return guarded(() => {
        const r = decodeMessage(mutant);
        if (r.ok) return { kind: 'ok' };
        if (!isWireError(r.error) || !CODES.has(r.error.code)) return { kind: 'crash', detail: `untyped decode error ${JSON.stringify(r.error).slice(0, 200)}` };
        return { kind: 'error', code: r.error.code };
      });
    },
  };
}
