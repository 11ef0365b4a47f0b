// Reassigning a clone's etcd record from one owner to another without the
// clone's live IKE SA (architecture §8): the record as last written, opened
// for its current (owner, epoch), sealed again for (new owner, epoch + 1) and
// committed in ONE transaction `if owner == {from, e} and the record is the
// one read then owner = {to, e+1}, ike = sealed` (a record rewritten in
// between, by an owner that still fences its requests, is never replaced by
// an older one: its message IDs would be sent twice). A claimant that read the
// record with the owners (failover.ts) commits that one transaction alone. The new owner's watch imports it (handoff.ts) as after a
// handoff. Used when the owner cannot hand the clone over itself: it is dead
// (failover.ts: a survivor claims it for itself), or its copy already died
// (a failed path test: the clone goes back to the node it came from).
//
// Owner: the main thread.
import type { Etcd3 } from 'etcd3';
import { wipe } from '../crypto/random.js';
import { amendTransferRecord, type TransferAmendment } from '../ike/sa-transfer.js';
import { cloneKeys, clusterPrefix } from './etcd-client.js';
import { ownerValue, parseOwner, type CloneOwner } from './handoff.js';
import type { ClusterKey } from './seal.js';
import type { SealedRecord } from './status.js';

export interface ReassignTarget {
  client: Etcd3;
  key: ClusterKey;
  cluster: string;
}

/** How a reassignment ended: the new epoch, or why not. */
export type ReassignResult = { ok: true; epoch: number; record: Buffer } | { ok: false; reason: 'owner-changed' | 'missing' | 'seal' | 'decode'; detail: string };

export { cloneKeys } from './etcd-client.js';

/** The current owner of a clone, or undefined (no owner key, or not an owner record). */
export async function readOwner(client: Etcd3, cluster: string, family: string, index: number): Promise<CloneOwner | undefined> {
  const text = await client.get(cloneKeys(cluster, family, index).owner).string();
  return text === null ? undefined : parseOwner(text);
}

/** A member's key: present while that node's lease stands (membership.ts). */
export function memberKey(cluster: string, node: string): string {
  return `${clusterPrefix(cluster)}members/${node}`;
}

/**
 * Move the record of (family, index) from `from` to node `to` (see the file
 * comment), with `amend` applied to its state. With `fromGone` (a claim) the
 * transaction also requires that `from` is no member: a node that joined
 * again since the claimant read the members keeps its clones (it checks
 * them itself, membership.ts), and a clone handed to it meanwhile is its own.
 */
export async function reassignClone(
  t: ReassignTarget,
  family: string,
  index: number,
  from: CloneOwner,
  to: string,
  amend?: TransferAmendment,
  known?: SealedRecord,
  fromGone = false,
): Promise<ReassignResult> {
  const keys = cloneKeys(t.cluster, family, index);
  let sealed = known?.value;
  let revision = known?.modRevision;
  if (!sealed) {
    // The record read together with the check of its owner: a record another node already rewrote is not read.
    const read = await t.client.if(keys.owner, 'Value', '==', ownerValue(from)).then(t.client.get(keys.record)).commit();
    if (!read.succeeded) return { ok: false, reason: 'owner-changed', detail: `${keys.owner} is no longer ${ownerValue(from)}` };
    const kv = read.responses[0]?.response_range?.kvs?.[0];
    if (!kv) return { ok: false, reason: 'missing', detail: `no record at ${keys.record}` };
    sealed = kv.value;
    revision = kv.mod_revision;
  }
  // The record was sealed for its owner: every node holds the cluster key, so a survivor opens a dead node's record.
  const opened = t.key.open({ keyPath: keys.record, epoch: from.epoch, owner: from.node }, new Uint8Array(sealed));
  if (!opened.ok) return { ok: false, reason: 'seal', detail: opened.error };
  const epoch = from.epoch + 1;
  // Always amended: the new owner starts above the IDs the previous one had fenced (fencedNextRequestId).
  const amended = amendTransferRecord(opened.value, amend ?? {});
  wipe(opened.value);
  if (!amended.ok) return { ok: false, reason: 'decode', detail: amended.error };
  const plain = amended.value;
  const resealed = Buffer.from(t.key.seal({ keyPath: keys.record, epoch, owner: to }, plain));
  wipe(plain);
  let cond = t.client.if(keys.owner, 'Value', '==', ownerValue(from)).and(keys.record, 'Mod', '==', revision!);
  if (fromGone) cond = cond.and(memberKey(t.cluster, from.node), 'Create', '==', 0);
  const txn = await cond
    .then(t.client.put(keys.owner).value(ownerValue({ node: to, epoch })), t.client.put(keys.record).value(resealed))
    .commit();
  if (!txn.succeeded) {
    // The record we had moved on (or the owner changed): read both again, once.
    if (known) return reassignClone(t, family, index, from, to, amend, undefined, fromGone);
    return { ok: false, reason: 'owner-changed', detail: `${keys.owner} is no longer ${ownerValue(from)} (or its record changed${fromGone ? `, or ${from.node} is a member again` : ''})` };
  }
  // The sealed record as written: a claimant imports it without reading it back.
  return { ok: true, epoch, record: resealed };
}
