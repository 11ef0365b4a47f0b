// An outer endpoint: an IP address and a UDP port. The one Endpoint type of
// ikeclone: io delivers datagrams with it, the data plane routes ESP between
// two of them, and the IKE engine's datagrams carry it (control/ike/transport.ts
// re-exports it). A type only: no thread owns anything here.

/** An outer address and UDP port (the port is ignored for raw ESP, IP protocol 50). */
export interface Endpoint {
  address: string;
  port: number;
}
