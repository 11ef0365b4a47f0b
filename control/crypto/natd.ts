// NAT detection hashes for N(NAT_DETECTION_SOURCE_IP) and
// N(NAT_DETECTION_DESTINATION_IP) (RFC 7296 §2.23).
// Addresses and ports come from our own sockets, so bad ones throw.

import { createHash } from 'node:crypto';
import { IKE_SPI_LENGTH } from '../wire/header.js';
import { ipToBytes } from '../wire/ip.js';
import { view } from './bytes.js';


/**
 * SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23), with SPIr all zero in the
 * IKE_SA_INIT request, IP as 4 or 16 octets and Port as 2 octets, network
 * order. An IPv4-mapped IPv6 address ("::ffff:192.0.2.1", as a dual-stack
 * socket reports IPv4 peers) is hashed as the IPv4 address that is on the
 * wire, which is what the peer hashes.
 */
export function natDetectionHash(spiI: Uint8Array, spiR: Uint8Array, address: string, port: number): Uint8Array {
  if (spiI.length !== IKE_SPI_LENGTH || spiR.length !== IKE_SPI_LENGTH) throw new RangeError('IKE SPIs must be 8 bytes');
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`invalid UDP port ${port}`);
  const ip = wireAddress(address);
  const portBytes = Uint8Array.of(port >> 8, port & 0xff);
  return view(createHash('sha1').update(spiI).update(spiR).update(ip).update(portBytes).digest());
}

/**
 * The address as it appears in IP headers: 4 bytes for IPv4 (including
 * IPv4-mapped IPv6 text), 16 for IPv6. Throws on text that is not an address.
 * @internal
 */
export function wireAddress(address: string): Uint8Array {
  const ip = ipToBytes(address);
  if (!ip) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  if (ip.length === 16 && isV4Mapped(ip)) return ip.subarray(12);
  return ip;
}

function isV4Mapped(ip: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return false;
  return ip[10] === 0xff && ip[11] === 0xff;
}
