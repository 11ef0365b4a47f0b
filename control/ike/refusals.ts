// Refused CREATE_CHILD_SA requests (RFC 7296 §1.3, §2.21.3, §2.25; RFC 7791
// §5.3), and IKE_AUTH's first Child SA refused (§2.21.2: the IKE SA comes up
// without it): every error notify we answer a new Child SA, a Child SA rekey,
// an IKE SA rekey, a clone or IKE_AUTH's Child SA with is logged as a warning
// naming the notify, the peer's proposals and ours in strongSwan's notation
// ("ESP:AES_GCM_16_128/NO_EXT_SEQ"), and counted by notify name in the
// engine's stats (`ike.refusals` in `ikeclone status`), so that an operator
// can see why a peer's rekeys, or its first Child SA, fail. Nothing here
// changes SA state.
//
// Owner: the main thread, called by the engine once the response is built.
import { NotifyType, PayloadType, ProtocolId, notifyName } from '../wire/constants.js';
import type { Payload, Proposal } from '../wire/payloads.js';
import { findNotify, findPayload } from '../wire/payloads.js';
import { formatProposal } from '../config/proposal.js';
import type { ProposalSpec } from '../config/proposal.js';
import type { IkeContext } from './context.js';
import type { IkeSa } from './ike-sa.js';
import { buildProposals } from './proposals.js';
import { errorNotify, spiNumber } from './payload-builders.js';

const PROTOCOL_NAMES: Record<number, string> = { [ProtocolId.IKE]: 'IKE', [ProtocolId.AH]: 'AH', [ProtocolId.ESP]: 'ESP' };

/** Proposals as strongSwan logs them: "ESP:AES_GCM_16_128/NO_EXT_SEQ, ESP:...", or "none". */
export function formatProposals(proposals: readonly Proposal[]): string {
  const out = [...new Set(proposals.map((p) => `${PROTOCOL_NAMES[p.protocol] ?? `PROTO_${p.protocol}`}:${formatProposal(p.transforms)}`))];
  return out.length > 0 ? out.join(', ') : 'none';
}

/** What a CREATE_CHILD_SA request asks for, and the proposals of ours it was held against. */
function requestKind(sa: IkeSa, request: readonly Payload[]): { kind: string; ours: ProposalSpec[] } {
  const offered = findPayload(request, PayloadType.SA)?.proposals ?? [];
  if (offered.some((p) => p.protocol === ProtocolId.IKE)) {
    return { kind: findNotify(request, NotifyType.CLONE_IKE_SA) ? 'clone IKE SA' : 'rekey IKE SA', ours: sa.policy.ike };
  }
  const rekey = findNotify(request, NotifyType.REKEY_SA);
  if (rekey) {
    // RFC 7296 §1.3.3: the SPI names the Child SA by our outbound SPI.
    const spi = spiNumber(rekey.spi);
    const old = sa.children.find((c) => c.spiOut === spi);
    const policy = old ? sa.policy.children.find((c) => c.name === old.name) : undefined;
    return { kind: 'rekey Child SA', ours: policy ? policy.esp : sa.policy.children.flatMap((c) => c.esp) };
  }
  return { kind: 'new Child SA', ours: sa.policy.children.flatMap((c) => c.esp) };
}

/**
 * If `response` refuses the CREATE_CHILD_SA `request` (an error notify, RFC
 * 7296 §3.10.1), log one warning and count it by notify name.
 */
export function noteCreateChildSaRefusal(engine: IkeContext, sa: IkeSa, request: readonly Payload[], response: readonly Payload[]): void {
  const error = errorNotify(response);
  if (!error) return;
  const { kind, ours } = requestKind(sa, request);
  noteRefusal(engine, sa, 'CREATE_CHILD_SA', kind, error.notifyType, request, ours);
}

/** IKE_AUTH's Child SA refused with `notifyType` (RFC 7296 §2.21.2): one warning, counted by notify name. */
export function noteIkeAuthChildRefusal(engine: IkeContext, sa: IkeSa, request: readonly Payload[], notifyType: number): void {
  noteRefusal(engine, sa, 'IKE_AUTH', 'first Child SA', notifyType, request, sa.policy.children.flatMap((c) => c.esp));
}

function noteRefusal(engine: IkeContext, sa: IkeSa, exchange: string, kind: string, notifyType: number, request: readonly Payload[], ours: ProposalSpec[]): void {
  const name = notifyName(notifyType);
  engine.stats.refusals[name] = (engine.stats.refusals[name] ?? 0) + 1;
  const received = formatProposals(findPayload(request, PayloadType.SA)?.proposals ?? []);
  const configured = formatProposals(buildProposals(ours, new Uint8Array(0)));
  engine.log.warn(
    { ike: sa.id, conn: sa.name, request: kind, notify: name, received, configured },
    `${exchange} (${kind}) refused with ${name}: received proposals ${received}; configured proposals ${configured}`,
  );
}
