// What a cluster node prepares before its engine answers a request
// (PeerResources.prepare; control/ike/answer-preparation.ts holds the request
// meanwhile), each against etcd (architecture §8):
//
//   IKE_AUTH          its first Child SA admitted against childSasPerPeer for
//                     the peer its AUTH payload proves (RFC 7791 §8; an IDi
//                     whose AUTH does not verify writes nothing), then an
//                     address claimed when the reserve has none (RFC 7296 §2.19)
//   CREATE_CHILD_SA   a new Child SA (RFC 7296 §1.3.1; not a rekey) admitted
//   clone request     the clone admitted against ikeSasPerPeer (RFC 7791 §8)
//
// Each preparation's verdict holds only for the answer built in the turn it
// settles in (an unused claim, an admitted slot whose SA did not come up, go
// back right after). So IKE_AUTH's two run one after the other, and the
// admission's verdict is held until the claim, which comes last, settles.
//
// Owner: the main thread.
import type { IkeSa } from '../ike/ike-sa.js';
import type { PeerResources } from '../ike/peer-resources.js';
import { requestedAddressFamilies } from '../ike/config-payload.js';
import { findPayload, type Payload } from '../wire/payloads.js';
import { PayloadType } from '../wire/constants.js';
import type { PeerAdmission } from './peer-admission.js';
import type { ClusterVirtualIpLeases } from './pool-store.js';

export interface AnswerPreparers {
  leases: Pick<ClusterVirtualIpLeases, 'prepareLease'>;
  /** Clones, against ikeSasPerPeer. */
  ikeAdmission: Pick<PeerAdmission, 'admit'>;
  /** New Child SAs, against childSasPerPeer. */
  childAdmission: Pick<PeerAdmission, 'admit' | 'admitHeld'>;
}

/** PeerResources.prepare for a cluster node. */
export function prepareAnswers(p: AnswerPreparers): NonNullable<PeerResources['prepare']> {
  return (sa, kind, payloads, peer) => {
    if (kind === 'ike-auth') return prepareIkeAuth(p, sa, payloads, peer);
    if (kind === 'child-create') return p.childAdmission.admit(sa);
    return kind === 'ike-clone' ? p.ikeAdmission.admit(sa) : undefined;
  };
}

function prepareIkeAuth(p: AnswerPreparers, sa: IkeSa, payloads: Payload[], peer: () => string | undefined): Promise<void> | undefined {
  const families = requestedAddressFamilies(payloads);
  // No SA payload: the request asks for no Child SA, and nothing is admitted.
  const admission = findPayload(payloads, PayloadType.SA) ? p.childAdmission.admitHeld(sa, peer) : undefined;
  if (!admission) return p.leases.prepareLease(families);
  return admission.then((held) => {
    const release = () => {
      if (held) setImmediate(held.release);
    };
    const claim = p.leases.prepareLease(families);
    if (!claim) return release();
    return claim.finally(release);
  });
}
