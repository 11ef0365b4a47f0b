// ikeclone's configuration towards charon in the interop topologies: ikeclone
// on the left end of the first link, charon on the right, one connection
// "charon" with one Child SA "net" between the inner networks. The PSK and
// certificate interop tests differ only in credentials, proposals and what
// they add to the connection, its child or the file.
import type { Topology } from './netns.js';

export interface IkecloneToCharon {
  ike: string;
  esp: string;
  startAction: 'start' | 'none';
  /** local, remote (and psk) of the connection. */
  credentials: Record<string, unknown>;
  /** Added to (or replacing) the connection's keys. */
  connection?: Record<string, unknown>;
  /** Added to (or replacing) the Child SA's keys. */
  child?: Record<string, unknown>;
  /** Added to (or replacing) the file's top-level keys. */
  gateway?: Record<string, unknown>;
}

export function ikecloneToCharonConfig(topo: Topology, o: IkecloneToCharon): Record<string, unknown> {
  const l = topo.links[0]!;
  return {
    log: { level: 'debug' },
    listen: { address: l.aAddr, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    connections: {
      charon: {
        local_addrs: [l.aAddr],
        remote_addrs: [l.bAddr],
        ike: [o.ike],
        ...o.credentials,
        start_action: o.startAction,
        children: { net: { local_ts: [topo.leftInnerNet], remote_ts: [topo.rightInnerNet], esp: [o.esp], ...o.child } },
        ...o.connection,
      },
    },
    ...o.gateway,
  };
}

/** PSK credentials of the interop identities. */
export function pskCredentials(psk: string): Record<string, unknown> {
  return { local: { id: 'ikeclone.interop.test', auth: 'psk' }, remote: { id: 'charon.interop.test', auth: 'psk' }, psk };
}
