// Small constructors and readers for the payloads the exchanges send, so that
// exchange modules read like the RFC's message diagrams.
import { PayloadType, ProtocolId } from '../wire/constants.js';
import type { IdPayload, NotifyPayload, Payload } from '../wire/payloads.js';
import { findNotify } from '../wire/payloads.js';
import type { Identity } from './identity.js';
import { readU32 } from '../crypto/bytes.js';

const EMPTY = new Uint8Array(0);

/** N(type) without an SPI (RFC 7296 §3.10). */
export function notify(notifyType: number, data: Uint8Array = EMPTY): NotifyPayload {
  return { type: PayloadType.NOTIFY, protocol: ProtocolId.NONE, spi: EMPTY, notifyType, data };
}

/** N(type) naming an ESP SA by SPI (e.g. REKEY_SA, CHILD_SA_NOT_FOUND). */
export function espNotify(notifyType: number, spi: number, data: Uint8Array = EMPTY): NotifyPayload {
  return { type: PayloadType.NOTIFY, protocol: ProtocolId.ESP, spi: spiBytes(spi), notifyType, data };
}

export function spiBytes(spi: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, spi >>> 0);
  return b;
}

export function spiNumber(b: Uint8Array): number | undefined {
  if (b.length !== 4) return undefined;
  return readU32(b);
}

export function idPayload(type: typeof PayloadType.IDi | typeof PayloadType.IDr, id: Identity): IdPayload {
  return { type, idType: id.idType, data: id.data };
}

/** RestOfInitIDPayload / RestOfRespIDPayload (RFC 7296 §2.15): ID Type, three RESERVED octets, data. */
export function restOfIdPayload(id: { idType: number; data: Uint8Array }): Uint8Array {
  const out = new Uint8Array(4 + id.data.length);
  out[0] = id.idType;
  out.set(id.data, 4);
  return out;
}

export function hasNotify(payloads: readonly Payload[], notifyType: number): boolean {
  return findNotify(payloads, notifyType) !== undefined;
}

/** The first error notify (type < 16384, RFC 7296 §3.10.1), if any. */
export function errorNotify(payloads: readonly Payload[]): NotifyPayload | undefined {
  return payloads.find((p): p is NotifyPayload => p.type === PayloadType.NOTIFY && p.notifyType > 0 && p.notifyType < 16384);
}

export function u16(data: Uint8Array): number | undefined {
  return data.length >= 2 ? (data[0]! << 8) | data[1]! : undefined;
}

export function u16Bytes(v: number): Uint8Array {
  return new Uint8Array([(v >> 8) & 0xff, v & 0xff]);
}
