// Requests whose answer waits for resources outside the engine (architecture
// §8): a cluster node claims a virtual IP from etcd for an IKE_AUTH when it
// holds none in reserve, and admits a clone, a new Child SA or IKE_AUTH's
// first Child SA against the peer's limit with an etcd transaction (RFC 7791
// §8; for IKE_AUTH only once its AUTH payload verifies: an unauthenticated
// IDi never writes to etcd). Responders stay synchronous: before the
// engine takes an authenticated request's message ID it asks
// PeerResources.prepare; a promise holds the request (nothing of the SA
// changes meanwhile, and its retransmissions are dropped as
// 'answer-pending'), and once the promise settles the request is handled again
// from its opened payloads, as if it had just arrived: mayAnswer, the message
// ID and the SA's state are checked again, and prepare is not asked twice.
// What a preparation holds for the answer (an address claimed, an admitted
// slot) is handed back through the release it resolves to, once the answer is
// built (or the SA died meanwhile): one point for every kind, so preparations
// may run side by side.
//
// Owner: the engine's thread.
import type { Payload } from '../wire/payloads.js';
import type { IkeContext } from './context.js';
import type { IkeSa } from './ike-sa.js';
import type { PeerResources, PreparedRelease } from './peer-resources.js';
import type { RequestKind } from './requests.js';

/** The message ID each SA's held request has, while it waits. */
const waiting = new WeakMap<IkeSa, number>();
/** The message ID whose preparation is done, while the request is handled again. */
const prepared = new WeakMap<IkeSa, number>();

/**
 * True when the request is held (or is a retransmission of one that is): the
 * engine stops handling it, and `again` runs once it may be answered.
 */
export function holdForResources(
  resources: PeerResources | undefined,
  engine: Pick<IkeContext, 'countDrop'>,
  sa: IkeSa,
  messageId: number,
  kind: RequestKind,
  payloads: Payload[],
  peer: () => string | undefined,
  again: () => void,
): boolean {
  if (!resources?.prepare) return false;
  if (prepared.get(sa) === messageId) return false;
  if (waiting.get(sa) === messageId) {
    engine.countDrop('answer-pending', `mid ${messageId}`);
    return true;
  }
  const pending = resources.prepare(sa, kind, payloads, peer);
  if (!pending) return false;
  waiting.set(sa, messageId);
  void pending.then(
    (release) => release ?? undefined,
    () => undefined,
  ).then((release) => {
    waiting.delete(sa);
    try {
      if (sa.state === 'dead') return;
      prepared.set(sa, messageId);
      try {
        again();
      } finally {
        prepared.delete(sa);
      }
    } finally {
      release?.();
    }
  });
  return true;
}

/**
 * Preparations that run side by side for one answer: settles when all have,
 * to one release that hands back what each holds (a preparation that failed
 * holds nothing). Undefined when none waits.
 */
export function preparedTogether(parts: ReadonlyArray<Promise<PreparedRelease | void> | undefined>): Promise<PreparedRelease> | undefined {
  const pending = parts.filter((p): p is Promise<PreparedRelease | void> => p !== undefined);
  if (pending.length === 0) return undefined;
  return Promise.allSettled(pending).then((results) => {
    const releases = results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []));
    return () => {
      for (const release of releases) release();
    };
  });
}
