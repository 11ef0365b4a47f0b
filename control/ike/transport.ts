// The engine's view of the network: datagrams with their two endpoints.
// control/ike never touches sockets (architecture §2); control/net delivers and sends.
// Endpoint is io's one definition (a type only, no socket).
import type { Endpoint } from '../../io/endpoint.js';

export type { Endpoint };

export interface Datagram {
  /** The IKE message, without the non-ESP marker (RFC 3948 §2.2) on port 4500. */
  bytes: Uint8Array;
  local: Endpoint;
  remote: Endpoint;
}

export type SendFn = (d: Datagram) => void;

/** Sends the 1-octet 0xFF NAT-keepalive datagram from `local` to `remote` (the NAT-T socket, RFC 3948 §2.3). */
export type SendKeepalive = (local: Endpoint, remote: Endpoint) => void;

export function endpointString(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}
