// What a cluster node prepares before its engine answers a request
// (PeerResources.prepare; control/ike/answer-preparation.ts holds the request
// meanwhile), each against etcd (architecture §8):
//
//   IKE_AUTH          its first Child SA admitted against childSasPerPeer for
//                     the peer its AUTH payload proves (RFC 7791 §8; an IDi
//                     whose AUTH does not verify writes nothing), and, side by
//                     side, an address held for it: claimed when the reserve
//                     has none (RFC 7296 §2.19)
//   CREATE_CHILD_SA   a new Child SA (RFC 7296 §1.3.1; not a rekey) admitted
//   clone request     the clone admitted against ikeSasPerPeer (RFC 7791 §8)
//
// Each preparation's verdict holds until the engine has built the answer and
// calls the release it settled to (an unused claim, an admitted slot whose SA
// did not come up, go back then). So IKE_AUTH's two run side by side: the
// answer waits for the longer, not for both.
//
// Owner: the main thread.
import type { IkeSa } from '../ike/ike-sa.js';
import type { PeerResources, PreparedRelease } from '../ike/peer-resources.js';
import { requestedAddressFamilies } from '../ike/config-payload.js';
import { preparedTogether } from '../ike/answer-preparation.js';
import { findPayload, type Payload } from '../wire/payloads.js';
import { PayloadType } from '../wire/constants.js';
import type { PeerAdmission } from './peer-admission.js';
import type { ClusterVirtualIpLeases } from './pool-store.js';

export interface AnswerPreparers {
  leases: Pick<ClusterVirtualIpLeases, 'prepareLease'>;
  /** Clones, against ikeSasPerPeer. */
  ikeAdmission: Pick<PeerAdmission, 'admit'>;
  /** New Child SAs, against childSasPerPeer. */
  childAdmission: Pick<PeerAdmission, 'admit'>;
}

/** PeerResources.prepare for a cluster node. */
export function prepareAnswers(p: AnswerPreparers): NonNullable<PeerResources['prepare']> {
  return (sa, kind, payloads, peer) => {
    if (kind === 'ike-auth') return prepareIkeAuth(p, sa, payloads, peer);
    if (kind === 'child-create') return p.childAdmission.admit(sa);
    return kind === 'ike-clone' ? p.ikeAdmission.admit(sa) : undefined;
  };
}

function prepareIkeAuth(p: AnswerPreparers, sa: IkeSa, payloads: Payload[], peer: () => string | undefined): Promise<PreparedRelease> | undefined {
  // No SA payload: the request asks for no Child SA, and nothing is admitted.
  const admission = findPayload(payloads, PayloadType.SA) ? p.childAdmission.admit(sa, peer) : undefined;
  // An answer that waits for its admission has its addresses held for it, from the reserve too.
  return preparedTogether([admission, p.leases.prepareLease(sa, requestedAddressFamilies(payloads), admission !== undefined)]);
}
