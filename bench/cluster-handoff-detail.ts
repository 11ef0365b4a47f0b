// Per-handoff detail for the cluster benchmark (bench/cluster.ts): each
// handoff's points relative to its decision, the first ESP of each direction
// on the new node's Child SA (sequence number 1, from the capture), and for the
// slowest handoffs (decision -> first ESP) their whole timeline with what the
// new node and the client logged meanwhile, so that a tail can be traced to
// the step that took the time (docs/cluster.md §4).
import type { ArrivalTimeline } from '../control/cluster/handoff-timeline.js';

/** A pino JSON line of a gateway's log, the fields read here. */
export interface DetailLogLine {
  time: number;
  msg: string;
  /** The IKE SA's id in its process (the arrival's, and its Child SA's). */
  ike?: number;
  family?: string;
  index?: number;
  epoch?: number;
  decidedAt?: number;
  sealedAt?: number;
  committedAt?: number;
  timeline?: ArrivalTimeline;
  /** 'clone handed off': the node it went to. */
  to?: string;
  spiIn?: string;
  spiOut?: string;
}

/** One sequence-number-1 ESP datagram of the capture. */
export interface FirstEsp {
  t: number;
  src: string;
  dst: string;
  /** The ESP SPI as tshark prints it (0x...), when decoded. */
  spi?: string;
}

export interface HandoffDetail {
  node: string;
  family?: string;
  index?: number;
  epoch?: number;
  /** Wall-clock ms of the handing node's decision. */
  decidedAt: number;
  /** Each point, ms after the decision (absent: not reached). */
  ms: Record<string, number>;
  /** The new node's Child SA SPIs (hex, as logged). */
  spiIn?: string;
  spiOut?: string;
}

/** How many of the slowest handoffs are reported in full. */
export const SLOWEST_REPORTED = 3;
/** Log lines kept per slowest handoff and process (the window may hold many). */
const LOG_LINES_KEPT = 40;

function spiHex(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  const v = s.startsWith('0x') ? Number.parseInt(s.slice(2), 16) : Number.parseInt(s, 16);
  return Number.isFinite(v) ? v.toString(16) : undefined;
}

/**
 * One handoff: the handing node's decision, sealing and commit; the arrival's
 * timeline; the new node's Child SA (its `Child SA up` line) and the first ESP
 * it sent and received on that SA (by SPI), else to or from its address.
 */
export function handoffDetail(
  node: { name: string; wan: string },
  handed: DetailLogLine,
  arrival: DetailLogLine,
  nodeLog: readonly DetailLogLine[],
  first: readonly FirstEsp[],
): HandoffDetail {
  const t0 = handed.decidedAt!;
  const at = arrival.timeline!.at;
  const ms: Record<string, number> = {};
  const put = (k: string, t: number | undefined) => {
    if (t !== undefined) ms[k] = Math.round((t - t0) * 10) / 10;
  };
  put('sealed', handed.sealedAt);
  put('committed', handed.committedAt);
  put('watchEvent', at.seen);
  put('recordRead', at.read);
  put('imported', at.imported);
  put('pathTest', at.pathTest);
  put('addressList', at.addressList);
  put('clientUpdate', at.update);
  put('childSaUp', at.child);
  const detail: HandoffDetail = { node: node.name, decidedAt: t0, ms };
  if (arrival.family !== undefined) detail.family = arrival.family;
  if (arrival.index !== undefined) detail.index = arrival.index;
  if (arrival.epoch !== undefined) detail.epoch = arrival.epoch;
  if (at.child === undefined) return detail;
  // The clone's Child SA, by its IKE SA's id (logged a few ms before or after the step the timeline names `child`).
  const up = nodeLog.find((l) => l.msg === 'Child SA up' && l.ike === arrival.ike && l.time >= at.seen);
  const spiIn = spiHex(up?.spiIn);
  const spiOut = spiHex(up?.spiOut);
  if (spiIn !== undefined) detail.spiIn = spiIn;
  if (spiOut !== undefined) detail.spiOut = spiOut;
  const esp = firstEspOnChildSa(first, t0, node.wan, up);
  put('firstEspFromNode', esp.fromNode);
  put('firstEspFromClient', esp.fromClient);
  return detail;
}

/**
 * The first ESP of a node's Child SA (its `Child SA up` line) each way, at or
 * after `t0` (wall-clock ms). By SPI: the node sends with the client's SPI (its
 * spiOut), the client with the node's (its spiIn). Not by address: a Child SA
 * that carried nothing before the client deleted it would be charged the next
 * one's ESP, and a clone another handoff brought to the node its own.
 */
export function firstEspOnChildSa(
  first: readonly FirstEsp[],
  t0: number,
  wan: string,
  up: Pick<DetailLogLine, 'spiIn' | 'spiOut'> | undefined,
): { fromNode?: number; fromClient?: number } {
  const at = (spi: string | undefined, fromNode: boolean) =>
    spi === undefined ? undefined : first.find((f) => f.t >= t0 && spiHex(f.spi) === spi && (fromNode ? f.src === wan : f.dst === wan))?.t;
  const out: { fromNode?: number; fromClient?: number } = {};
  const fromNode = at(spiHex(up?.spiOut), true);
  const fromClient = at(spiHex(up?.spiIn), false);
  if (fromNode !== undefined) out.fromNode = fromNode;
  if (fromClient !== undefined) out.fromClient = fromClient;
  return out;
}

/** Which handoffs a figure counts: by the handing node's 'clone handed off' line (family, index, epoch). */
export type HandoffFilter = (h: { family?: string; index?: number; epoch?: number }) => boolean;

/** A node of the cluster as the figures read it: its name, address and log. */
export interface HandoffNode {
  name: string;
  wan: string;
  log: readonly DetailLogLine[];
}

/** The handing nodes' 'clone handed off' lines decided since `since` that `only` admits. */
export function handoffsDecided(logs: ReadonlyArray<readonly DetailLogLine[]>, since: number, only: HandoffFilter = () => true): DetailLogLine[] {
  return logs.flatMap((log) => log.filter((l) => l.msg === 'clone handed off' && l.decidedAt !== undefined && l.decidedAt >= since && only(l)));
}

/**
 * The new node's first `msg` line (at or after `since`) of the IKE SA it
 * imported for one handoff: its 'clone arrived' line with the handoff's
 * family, index and epoch names that IKE SA. Never another clone's line,
 * which a rebalancing round may bring to the node meanwhile.
 */
export function arrivalLine(nodeLog: readonly DetailLogLine[], handoff: Pick<DetailLogLine, 'family' | 'index' | 'epoch'>, msg: string, since = 0): DetailLogLine | undefined {
  const arrived = nodeLog.find((l) => l.msg === 'clone arrived' && l.family === handoff.family && l.index === handoff.index && l.epoch === handoff.epoch);
  if (arrived?.ike === undefined) return undefined;
  return nodeLog.find((l) => l.msg === msg && l.ike === arrived.ike && l.time >= since);
}

/**
 * Each handoff decided since `since` (the handing node's 'clone handed off'
 * line, whichever node that was, and `only` what it admits) to the node it
 * went to: -> that node moved the IKE SA (the client's UPDATE_SA_ADDRESSES),
 * -> a Child SA up there, -> the first ESP on that Child SA. Each point is the
 * arrival's own, by the IKE SA the new node imported ('clone arrived', same
 * family, index and epoch), never merely the node's next event: a rebalancing
 * round may bring another clone there meanwhile.
 */
export function handoffTimes(
  nodes: readonly HandoffNode[],
  first: readonly FirstEsp[],
  since: number,
  only: HandoffFilter = () => true,
): { toUpdate: number[]; toChild: number[]; toEsp: number[] } {
  const toUpdate: number[] = [];
  const toChild: number[] = [];
  const toEsp: number[] = [];
  for (const h of handoffsDecided(nodes.map((n) => n.log), since, only)) {
    const node = nodes.find((n) => n.name === h.to);
    if (!node) continue;
    const t0 = h.decidedAt!;
    const moved = arrivalLine(node.log, h, 'IKE SA moved', t0);
    const up = arrivalLine(node.log, h, 'Child SA up', t0);
    if (moved) toUpdate.push(moved.time - t0);
    if (!up) continue;
    toChild.push(up.time - t0);
    const esp = firstEspOnChildSa(first, t0, node.wan, up);
    const t3 = Math.min(esp.fromNode ?? Infinity, esp.fromClient ?? Infinity);
    if (Number.isFinite(t3)) toEsp.push(t3 - t0);
  }
  return { toUpdate, toChild, toEsp };
}

/** The first ESP either way, ms after the decision. */
export function firstEspMs(d: HandoffDetail): number | undefined {
  const v = [d.ms.firstEspFromNode, d.ms.firstEspFromClient].filter((x): x is number => x !== undefined);
  return v.length ? Math.min(...v) : undefined;
}

/** What a process logged in [from, to] (wall-clock ms), as ms after `t0` and the message, with a few fields. */
export function logWindow(lines: readonly DetailLogLine[], t0: number, from: number, to: number): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const l of lines) {
    if (l.time < from || l.time > to) continue;
    const { time, msg, timeline: _t, level: _l, pid: _p, hostname: _h, ...rest } = l as DetailLogLine & { level?: unknown; pid?: unknown; hostname?: unknown };
    out.push({ ms: Math.round(time - t0), msg, ...rest });
    if (out.length >= LOG_LINES_KEPT) break;
  }
  return out;
}

/**
 * The slowest handoffs by decision -> first ESP (one that never saw ESP counts
 * as slowest), each with what the new node and the client logged from the
 * decision to its first ESP (or its Child SA, plus a second).
 */
export function slowestHandoffs(
  details: readonly HandoffDetail[],
  logs: { node: (name: string) => readonly DetailLogLine[]; client: readonly DetailLogLine[] },
): Array<Record<string, unknown>> {
  const key = (d: HandoffDetail) => firstEspMs(d) ?? Infinity;
  return [...details]
    .sort((a, b) => key(b) - key(a))
    .slice(0, SLOWEST_REPORTED)
    .map((d) => {
      const end = d.decidedAt + (firstEspMs(d) ?? (d.ms.childSaUp ?? 0) + 1000);
      return {
        ...d,
        nodeLog: logWindow(logs.node(d.node), d.decidedAt, d.decidedAt, end),
        clientLog: logWindow(logs.client, d.decidedAt, d.decidedAt, end),
      };
    });
}

/** A process's IKE retransmission counters (its status's `ike`). */
export interface IkeResends {
  retransmits: number;
  responsesFromCache: number;
}

/** What each process retransmitted (its requests) and answered again from its response cache (the peer's) between two readings. */
export function resendsBetween(before: Record<string, IkeResends>, after: Record<string, IkeResends>): Record<string, IkeResends> {
  return Object.fromEntries(
    Object.entries(after).map(([name, a]) => {
      const b = before[name] ?? { retransmits: 0, responsesFromCache: 0 };
      return [name, { retransmits: a.retransmits - b.retransmits, responsesFromCache: a.responsesFromCache - b.responsesFromCache }];
    }),
  );
}
