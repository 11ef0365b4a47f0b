// Human-readable output of the CLI: a tree per IKE SA for `ikeclone status`
// and `up`, and the side-by-side table of `ikeclone demo`. Machine-readable
// output is the JSON of control/status.ts and demo/demo.ts, never this.
import type { ChildSaStatus, ClusterNodeStatus, FamilyStatus, GatewayStatus, IkeSaStatus } from '../status.js';
import type { DemoResult } from '../../demo/demo.js';
import type { NetnsDemoPing, NetnsDemoResult } from '../../demo/demo-netns.js';

/** Tree branches: items but the last get "├─", the last "└─"; their children are indented to match. */
function tree(items: Array<{ line: string; children?: string[] }>, indent = ''): string[] {
  const out: string[] = [];
  items.forEach((item, i) => {
    const last = i === items.length - 1;
    out.push(`${indent}${last ? '└─ ' : '├─ '}${item.line}`);
    for (const c of item.children ?? []) out.push(`${indent}${last ? '   ' : '│  '}${c}`);
  });
  return out;
}

function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** Flags of an IKE SA, comma-separated ("none" when none). */
export function ikeFlags(sa: IkeSaStatus): string {
  const flags: string[] = [];
  if (sa.natLocal) flags.push('NAT in front of us');
  if (sa.natRemote) flags.push('NAT in front of peer');
  if (sa.mobike) flags.push('MOBIKE');
  if (sa.clone) flags.push('clone');
  // Status from an older gateway has only the first address of each.
  const vips = sa.virtualIps ?? (sa.virtualIp ? [sa.virtualIp] : []);
  const peerVips = sa.peerVirtualIps ?? (sa.peerVirtualIp ? [sa.peerVirtualIp] : []);
  if (vips.length > 0) flags.push(`virtual IP ${vips.join(' ')}`);
  if (peerVips.length > 0) flags.push(`peer virtual IP ${peerVips.join(' ')}`);
  if (sa.dns?.length) flags.push(`DNS ${sa.dns.join(' ')}`);
  return flags.length > 0 ? flags.join(', ') : 'none';
}

/** IKE SPIs as swanctl prints them: our own marked with "*". */
export function ikeSpis(sa: IkeSaStatus): string {
  const ours = sa.role === 'initiator' ? 'i' : 'r';
  return `${sa.spiI}_i${ours === 'i' ? '*' : ''} ${sa.spiR}_r${ours === 'r' ? '*' : ''}`;
}

/** Traffic selectors as "local === remote" (lists comma-separated). */
export function selectors(c: ChildSaStatus): string {
  return `${c.localTs.join(', ') || '(none)'} === ${c.remoteTs.join(', ') || '(none)'}`;
}

/** ", fallback SA (RFC 9611)", ", per-resource for worker 2 (resource 1a2b3c4d)", ", parallel for worker 1", or nothing. */
export function placementText(c: ChildSaStatus): string {
  const p = c.placement;
  if (!p) return '';
  if (p.kind === 'fallback') return ', fallback SA (RFC 9611)';
  const worker = p.resource !== null ? ` for worker ${p.resource}` : '';
  return `, ${p.kind}${worker}${p.resourceId ? ` (resource ${p.resourceId})` : ''}`;
}

/** "per-worker SAs: parallel, complete (why)" for a session that chose how to spread, or nothing. */
export function perWorkerText(family: FamilyStatus): string | undefined {
  const p = family.perWorker;
  if (!p || (p.mode === 'single' && p.reason.startsWith('no per-worker'))) return undefined;
  const limit = p.limit ? `; ${p.limit}` : '';
  return `per-worker SAs: ${p.mode}${p.perChild > 1 ? ` (${p.perChild} per child)` : ''}, ${p.state}: ${p.reason}${limit}`;
}

/** One Child SA as a heading and its detail lines. */
export function formatChildSa(c: ChildSaStatus): { line: string; children: string[] } {
  return {
    line: `${c.name} #${c.id}: ${c.state.toUpperCase()}, ${age(c.ageSeconds)}${c.udpEncap ? ', UDP-encapsulated' : ''}${typeof c.worker === 'number' ? `, worker ${c.worker}` : ''}${placementText(c)}`,
    children: tree([
      { line: `SPIs      in ${c.spiIn}, out ${c.spiOut}` },
      { line: `proposal  ${c.proposal}` },
      { line: `ts        ${selectors(c)}` },
    ]),
  };
}

/** One IKE SA and its Child SAs as a tree. */
export function formatIkeSa(sa: IkeSaStatus): string {
  const place = sa.familyIndex > 0 ? `, clone ${sa.familyIndex} of session ${sa.sessionId}` : '';
  const head = `${sa.name} #${sa.id}: ${sa.state.toUpperCase()}, ${sa.role}, ${age(sa.ageSeconds)}${place}`;
  const lines = tree([
    { line: `address   ${sa.local} <-> ${sa.remote}` },
    { line: `identity  ${sa.localId ?? '(none)'} <-> ${sa.remoteId ?? '(not yet known)'}` },
    { line: `proposal  ${sa.proposal ?? '(not yet negotiated)'}` },
    { line: `SPIs      ${ikeSpis(sa)}` },
    { line: `flags     ${ikeFlags(sa)}` },
    ...(sa.children.length === 0 ? [{ line: 'no Child SAs' }] : sa.children.map(formatChildSa)),
  ]);
  return [head, ...lines].join('\n');
}

/** "; Child SAs refused: NO_PROPOSAL_CHOSEN 2, TS_UNACCEPTABLE 1" (CREATE_CHILD_SA requests and IKE_AUTH's Child SA), or nothing when none was refused. */
function refusalSummary(refusals: Record<string, number> | undefined): string {
  const counts = Object.entries(refusals ?? {});
  return counts.length === 0 ? '' : `; Child SAs refused: ${counts.map(([name, n]) => `${name} ${n}`).join(', ')}`;
}

/** "; IKE fragments in 12, out 9, reassembled 2" (RFC 7383), or nothing when none went either way. */
function fragmentSummary(f: { sent: number; received: number; reassembled: number; fallbacks: number } | undefined): string {
  if (!f || f.sent + f.received === 0) return '';
  return `; IKE fragments in ${f.received}, out ${f.sent}, reassembled ${f.reassembled}${f.fallbacks > 0 ? `, cut smaller ${f.fallbacks}` : ''}`;
}

/** A cluster node's line in `ikeclone status`: its lease (a lost one stops IKE on its clones), clones and failures handled. */
export function clusterNodeLine(c: ClusterNodeStatus): string {
  const lease = c.lease === 'lost' ? `lease LOST (${c.leaseLostReason ?? 'unknown'}): IKE stopped on ${c.clones.length} clone${c.clones.length === 1 ? '' : 's'}, ESP flows on` : 'lease held';
  const f = c.failover;
  return `cluster ${c.cluster} node ${c.node} (SPI prefix ${c.spiPrefix}): ${lease}; ${c.clones.length} owned clone${c.clones.length === 1 ? '' : 's'}; ` +
    `taken over ${f.claimed}, sent back ${f.returned}, rebalanced ${c.rebalance.moved}, dropped by fencing ${c.handoff.fenced}${c.revokedSilent ? `, silent members' leases revoked ${c.revokedSilent}` : ''}${c.silentSpared ? `, silent members spared (answered the liveness probe) ${c.silentSpared}` : ''}${c.livenessProbeUnbound ? `, liveness probe NOT bound on ${c.livenessProbeUnbound.address}:${c.livenessProbeUnbound.port} (${c.livenessProbeUnbound.reason}): silent members neither suspected nor suspecting` : ''}${lastArrivalText(c)}${resourcesText(c)}`;
}

/** The node's pools (reserve, leased here), the peers counted over the cluster and its refusals by reason. */
function resourcesText(c: ClusterNodeStatus): string {
  const r = c.resources;
  if (!r) return '';
  const pools = r.pools.map((p) => `${p.pool} ${p.reserved} in reserve, ${p.leased} leased here`).join('; ');
  const f = r.refusals;
  return `${pools ? `; pools: ${pools}` : ''}; peers counted ${r.peers.counted} (${r.peers.atIkeSaLimit} at the IKE SA limit, ${r.peers.atChildSaLimit} at the Child SA limit)` +
    `; refused: NO_ADDITIONAL_SAS ${f.noAdditionalSas}, INTERNAL_ADDRESS_FAILURE ${f.internalAddressFailure}, lease writes ${f.leaseWritesRefused}`;
}

/** How long the last clone arrival took, from the watch event (or claim) to its Child SA (`--json`: every step). */
function lastArrivalText(c: ClusterNodeStatus): string {
  const at = c.lastArrival?.at;
  if (!at || at.seen === undefined) return '';
  const end = at.child ?? at.update ?? at.pathTest ?? at.imported;
  return `; last arrival: ${at.child !== undefined ? 'Child SA up' : 'stopped'} ${end === undefined ? '?' : end - at.seen} ms after it was named owner`;
}

/** `ikeclone status`: every IKE SA as a tree, then a one-line summary. */
export function formatStatus(status: GatewayStatus): string {
  const children = status.ikeSas.reduce((n, sa) => n + sa.children.length, 0);
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const summary = `${plural(status.ikeSas.length, 'IKE SA')}, ${plural(children, 'Child SA')}, ${status.halfOpen} half-open; ` +
    `IKE messages in ${status.ike.received}, out ${status.ike.sent}, retransmitted ${status.ike.retransmits}` +
    fragmentSummary(status.ike.fragments) +
    refusalSummary(status.ike.refusals);
  if (status.ikeSas.length === 0) return `no IKE SAs\n${summary}${status.cluster ? `\n${clusterNodeLine(status.cluster)}` : ''}`;
  const byId = new Map(status.ikeSas.map((sa) => [sa.id, sa]));
  const shown = new Set<number>();
  const blocks: string[] = [];
  for (const family of status.families ?? []) {
    const members = family.members.map((id) => byId.get(id)).filter((m): m is IkeSaStatus => m !== undefined);
    members.forEach((m) => shown.add(m.id));
    const spread = perWorkerText(family);
    const block = members.length > 1 || family.target > 1 ? formatFamily(family, members) : members.map(formatIkeSa).join('\n\n');
    blocks.push(spread ? `${block}\n${spread}` : block);
  }
  for (const sa of status.ikeSas) if (!shown.has(sa.id)) blocks.push(formatIkeSa(sa));
  return [...blocks, summary, ...(status.cluster ? [clusterNodeLine(status.cluster)] : [])].join('\n\n');
}

/** A clone family (RFC 7791): the session line, then each member IKE SA as a branch with its Child SAs. */
export function formatFamily(family: FamilyStatus, members: IkeSaStatus[]): string {
  const reason = family.reason ? ` (${family.reason})` : '';
  const head = `session ${family.sessionId} with ${family.peer ?? '(unknown peer)'}: ${members.length} of ${family.target} IKE SAs, ${family.state}${reason}`;
  const branches = members.map((sa) => {
    const [first, ...rest] = formatIkeSa(sa).split('\n');
    return { line: first!, children: rest };
  });
  return [head, ...tree(branches)].join('\n');
}

/** Left-aligned columns separated by two spaces; rows may be section titles (one cell). */
export function formatColumns(rows: ReadonlyArray<readonly string[]>): string {
  const widths: number[] = [];
  for (const r of rows) {
    if (r.length < 2) continue;
    r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  return rows
    .map((r) => (r.length < 2 ? (r[0] ?? '') : r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')))
    .map((line) => line.trimEnd())
    .join('\n');
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/** `ikeclone demo`: what both ends negotiated, side by side, and the timings. */
export function formatDemo(r: DemoResult): string {
  const a = r.ike;
  const b = r.peer;
  const rows: string[][] = [
    ['', `initiator (${r.endpoints.initiator})`, `responder (${r.endpoints.responder})`],
    ['IKE SA'],
    ['  state', a.state, b.state],
    ['  proposal', a.proposal ?? '-', b.proposal ?? '-'],
    ['  SPIi', a.spiI, b.spiI],
    ['  SPIr', a.spiR, b.spiR],
    ['  local', a.local, b.local],
    ['  remote', a.remote, b.remote],
    ['  local id', a.localId ?? '-', b.localId ?? '-'],
    ['  remote id', a.remoteId ?? '-', b.remoteId ?? '-'],
    ['  NAT (us/peer)', `${yesNo(a.natLocal)}/${yesNo(a.natRemote)}`, `${yesNo(b.natLocal)}/${yesNo(b.natRemote)}`],
    ['  MOBIKE', yesNo(a.mobike), yesNo(b.mobike)],
    ['  clone support', yesNo(a.clone), yesNo(b.clone)],
  ];
  const n = Math.max(a.children.length, b.children.length);
  for (let i = 0; i < n; i++) {
    const ca = a.children[i];
    const cb = b.children[i];
    const f = (c: ChildSaStatus | undefined, pick: (c: ChildSaStatus) => string) => (c ? pick(c) : '-');
    rows.push(
      [`Child SA ${ca?.name ?? cb?.name ?? ''}`],
      ['  state', f(ca, (c) => c.state), f(cb, (c) => c.state)],
      ['  proposal', f(ca, (c) => c.proposal), f(cb, (c) => c.proposal)],
      ['  SPI in', f(ca, (c) => c.spiIn), f(cb, (c) => c.spiIn)],
      ['  SPI out', f(ca, (c) => c.spiOut), f(cb, (c) => c.spiOut)],
      ['  local_ts', f(ca, (c) => c.localTs.join(', ')), f(cb, (c) => c.localTs.join(', '))],
      ['  remote_ts', f(ca, (c) => c.remoteTs.join(', ')), f(cb, (c) => c.remoteTs.join(', '))],
      ['  UDP encap', f(ca, (c) => yesNo(c.udpEncap)), f(cb, (c) => yesNo(c.udpEncap))],
    );
  }
  const fam = r.family;
  const familyLines: string[] = [];
  if (fam && fam.target > 1) {
    familyLines.push('', `clone family (RFC 7791): ${fam.members.length} of ${fam.target} IKE SAs, ${fam.state}, grown in ${fam.cloneMs.toFixed(1)} ms`);
    familyLines.push(formatColumns([
      ['  #', 'IKE SA', 'SPIi', 'SPIr', 'Child SA in/out'],
      ...fam.members.map((m) => [`  ${m.familyIndex}`, `#${m.id}`, m.spiI, m.spiR, m.children.map((c) => `${c.spiIn}/${c.spiOut}`).join(', ') || '-']),
    ]));
  }
  const lines = [
    formatColumns(rows),
    ...familyLines,
    '',
    `IKE_SA_INIT + IKE_AUTH: ${r.durationMs.toFixed(1)} ms`,
    `delete (INFORMATIONAL): ${r.deleteMs.toFixed(1)} ms, ${r.deleted ? 'no SA left on either end' : 'SAs left behind'}`,
    r.agree ? 'both ends agree on SPIs, algorithms and traffic selectors' : `the ends DISAGREE:\n  ${r.mismatches.join('\n  ')}`,
  ];
  return lines.join('\n');
}

/** `ikeclone demo --netns`: the namespaces, the clone family, ping, iperf3 and every worker's ESP counters. */
export function formatNetnsDemo(r: NetnsDemoResult): string {
  const [a, b] = r.namespaces;
  const side = (n: typeof a) => (n ? `${n.name} (${n.outer}, inner ${n.inner} on lo, TUN ${n.tun})` : '-');
  const esp = r.esp === 'raw' ? 'raw ESP (IP protocol 50)' : 'UDP-encapsulated ESP (RFC 3948)';
  const fam = r.family;
  const ping = (p: NetnsDemoPing) => [`ping ${p.from} -> ${p.to}`, `${p.received}/${p.sent} answered${p.rttMs !== null ? `, avg ${p.rttMs} ms` : ''}`];
  const perf = r.iperf3;
  const sides: Array<['initiator' | 'responder', NetnsDemoResult['workers']['initiator']]> = [['initiator', r.workers.initiator], ['responder', r.workers.responder]];
  const lines = [
    `${side(a)}`,
    `  <-> ${side(b)}, ${esp}`,
    '',
    `clone family (RFC 7791): ${fam.members.length} of ${fam.target} IKE SAs, ${fam.state}; every Child SA in both data planes after ${r.establishMs.toFixed(0)} ms`,
    formatColumns([
      ['  #', 'SPIi', 'SPIr', 'Child SA in/out', 'worker', 'peer worker'],
      ...fam.members.map((m) => [`  ${m.familyIndex}`, m.spiI, m.spiR, `${m.childSpiIn ?? '-'}/${m.childSpiOut ?? '-'}`, String(m.worker ?? '-'), String(m.peerWorker ?? '-')]),
    ]),
    '',
    formatColumns([
      ping(r.ping.toResponder),
      ping(r.ping.toInitiator),
      [`iperf3 ${perf.seconds} s, ${perf.streams} TCP stream${perf.streams === 1 ? '' : 's'}`, `${perf.mbps} Mbit/s received (${perf.sentMbps} sent), ${perf.retransmits} retransmits`],
    ]),
    '',
    formatColumns([
      ['ESP packets', 'worker', 'sealed', 'opened', 'drops'],
      ...sides.flatMap(([name, ws]) => ws.map((w) => [`  ${name}`, String(w.index), String(w.encapPackets), String(w.decapPackets), String(w.drops)])),
    ]),
    '',
    r.agree ? `both ends agree on the SPIs, algorithms and traffic selectors of all ${fam.members.length} IKE SAs and their Child SAs` : `the ends DISAGREE:\n  ${r.mismatches.join('\n  ')}`,
    `demo: ${(r.durationMs / 1000).toFixed(1)} s, namespaces deleted`,
  ];
  return lines.join('\n');
}
