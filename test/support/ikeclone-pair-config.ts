// The configuration of either end of an ikeclone <-> ikeclone tunnel in a
// two-namespace topology: the left end on the first link's a-side, the right
// end on its b-side, one PSK connection "peer" with one Child SA "net"
// between the inner networks. The TUN and per-worker tunnel tests differ
// only in identities, data plane settings and what they add to the
// connection or its child.
import type { Topology } from './netns.js';

export interface IkeclonePeer {
  side: 'left' | 'right';
  localId: string;
  remoteId: string;
  psk: string;
  /** The file's dataplane section. */
  dataplane: Record<string, unknown>;
  /** Added to the connection (before its children). */
  connection?: Record<string, unknown>;
  /** Added to (or replacing) the Child SA's keys. */
  child?: Record<string, unknown>;
}

export function ikeclonePeerConfig(topo: Topology, o: IkeclonePeer): Record<string, unknown> {
  const l = topo.links[0]!;
  const [me, peer] = o.side === 'left' ? [l.aAddr, l.bAddr] : [l.bAddr, l.aAddr];
  const [localNet, remoteNet] = o.side === 'left' ? [topo.leftInnerNet, topo.rightInnerNet] : [topo.rightInnerNet, topo.leftInnerNet];
  return {
    log: { level: 'debug' },
    listen: { address: me, port: 500, natPort: 4500 },
    retransmit: { timeout: '500ms', tries: 4 },
    dataplane: o.dataplane,
    connections: {
      peer: {
        local_addrs: [me],
        remote_addrs: [peer],
        ike: ['aes256gcm16-prfsha256-x25519'],
        local: { id: o.localId, auth: 'psk' },
        remote: { id: o.remoteId, auth: 'psk' },
        psk: o.psk,
        ...o.connection,
        children: { net: { local_ts: [localNet], remote_ts: [remoteNet], esp: ['aes128gcm16'], ...o.child } },
      },
    },
  };
}
