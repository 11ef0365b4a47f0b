// Where the per-peer resources of RFC 7296 §2.19 (virtual IPs) and RFC 7791
// §8 (IKE SAs and Child SAs per peer) are counted. A single gateway counts
// them in its own SA table; a cluster node (architecture §8) plugs in the
// cluster's view: addresses leased in etcd, and the SAs the peer holds on
// other nodes. Kept synchronous: responders answer in one step, so the cluster
// side keeps what they ask for ready (control/cluster/pool-store.ts).
//
// Owner: the engine's thread.
import type { Payload } from '../wire/payloads.js';
import type { IkeSa } from './ike-sa.js';
import type { RequestKind } from './requests.js';

/** A leased virtual IP, as text and as the bytes of a CP attribute. */
export interface LeasedVirtualIp {
  address: string;
  bytes: Uint8Array;
}

/** Virtual IP leases, one per peer identity and address family (virtual-ip.ts VirtualIpLeases is the in-process one). */
export interface VirtualIpLeaseSource {
  /**
   * An address of `family` for the authenticated `peer` from the first of
   * `pools` with room; undefined: exhausted. `sa`: the IKE SA whose answer
   * asks (what prepare held for it is taken first).
   */
  lease(pools: readonly string[], peer: string, family: 4 | 6, wanted?: Uint8Array, sa?: IkeSa): LeasedVirtualIp | undefined;
  /** The peer's last IKE SA here with its addresses is gone. */
  release(peer: string): void;
}

/**
 * Hands back what a preparation held for one answer (an unused address claim,
 * an admitted slot whose SA did not come up): called once, after the answer is
 * built, or when the SA died while the request waited.
 */
export type PreparedRelease = () => void;

/** IkeEngineOptions.peerResources: what replaces or adds to the engine's own per-peer counts. */
export interface PeerResources {
  /** Virtual IP leases (default: the engine's in-process pools). */
  virtualIps?: VirtualIpLeaseSource;
  /** IKE SAs the authenticated `peer` holds elsewhere (other cluster nodes), counted against ikeSasPerPeer. */
  ikeSasElsewhere?: (peer: string) => number;
  /** Child SAs the authenticated `peer` holds elsewhere, counted against childSasPerPeer. */
  childSasElsewhere?: (peer: string) => number;
  /**
   * Asked before an authenticated request is answered: a promise holds the
   * request until what it needs is ready (answer-preparation.ts: a virtual IP
   * claimed, a clone or a new Child SA admitted, IKE_AUTH's first Child SA
   * admitted); undefined answers at once. `peer` names the peer the request
   * authenticates: the SA's for an established one; for an IKE_AUTH, its IDi
   * once its AUTH payload verifies (checked when called, as the answer will
   * check it; undefined: the answer will be AUTHENTICATION_FAILED). The
   * promise may resolve to a release, called once the answer is built.
   */
  prepare?: (sa: IkeSa, kind: RequestKind, payloads: Payload[], peer: () => string | undefined) => Promise<PreparedRelease | void> | undefined;
  /**
   * The peer's IKE SAs over the cluster as an exact admission of `sa`'s
   * pending clone counted them (prepare), replacing the sum of here and
   * elsewhere: below ikeSasPerPeer when admitted, at it when refused.
   * Undefined: no admission decided for `sa` now.
   */
  admittedIkeSaCount?: (sa: IkeSa) => number | undefined;
  /** The same for a new Child SA `sa`'s peer asked for (IKE_AUTH's, or CREATE_CHILD_SA without REKEY_SA), against childSasPerPeer. */
  admittedChildSaCount?: (sa: IkeSa) => number | undefined;
}
