// NAT rebinding seen on the ESP path (RFC 7296 §2.23): the data plane reports
// that authenticated ESP of a UDP-encapsulated Child SA (its ICV verified,
// not a replay) came from a new address or port; here the IKE SA decides
// whether it and its Child SAs follow. IKE messages do the same in the
// engine (followPeer); this covers a peer that sends only ESP, whose NAT
// mapping changed between two IKE exchanges.
//
// Owner: the control plane's thread (the engine's state).
import type { Endpoint } from '../../io/endpoint.js';
import type { IkeContext } from './context.js';
import type { ChildSa } from './ike-sa.js';
import { relocate } from './exchanges/mobike.js';

/** Why a reported ESP source change was not followed, or 'moved'. */
export type EspRebinding = 'moved' | 'same' | 'not-established' | 'not-encapsulated' | 'no-peer-nat' | 'local-nat' | 'mobike';

/**
 * RFC 7296 §2.23: follow the peer to `remote` if its SA is UDP-encapsulated
 * because of a NAT in front of the peer, we are not behind a NAT ourselves
 * (then our own mapping, not the peer's, may have changed), and the IKE SA
 * does not use MOBIKE (RFC 4555 §3.5: addresses change only through
 * UPDATE_SA_ADDRESSES then). The IKE SA moves with all its Child SAs.
 */
export function followEspSource(engine: IkeContext, child: ChildSa, remote: Endpoint): EspRebinding {
  const sa = child.ike;
  if (remote.address === sa.remote.address && remote.port === sa.remote.port) return 'same';
  if (sa.state !== 'established' || child.state === 'deleted') return 'not-established';
  if (!child.udpEncap) return 'not-encapsulated';
  if (sa.natLocal) return 'local-nat';
  if (!sa.natRemote) return 'no-peer-nat';
  if (sa.peerMobike) return 'mobike';
  engine.log.info({ ike: sa.id, child: child.id, from: `${sa.remote.address}:${sa.remote.port}`, to: `${remote.address}:${remote.port}` }, 'peer NAT mapping changed (seen on ESP): following it');
  relocate(engine, sa, sa.local, remote);
  return 'moved';
}
