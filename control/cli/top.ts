// `ikeclone top`: a live view of a running gateway through its control socket,
// redrawn every second: per-worker packet and bit rates and drops, clone
// families and their state, and the busiest Child SAs. Rates are differences
// of two status snapshots over the time between them.
//
// Owner: the main thread of the CLI process. The screen is the terminal's
// alternate screen; whatever ends the view (q, Ctrl-C, an error) restores it.
import type { GatewayStatus, ChildSaStatus } from '../status.js';

export interface TopSample {
  status: GatewayStatus;
  /** When the status was taken (ms, monotonic). */
  at: number;
}

interface Column {
  title: string;
  width: number;
  /** Right-aligned (numbers). */
  right?: boolean;
}

/** Fits `cells` into `width` characters: columns that do not fit are left out, from the right. */
function row(columns: Column[], cells: string[], width: number): string {
  let out = '';
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    const text = (cells[i] ?? '').slice(0, c.width);
    const cell = c.right ? text.padStart(c.width) : text.padEnd(c.width);
    const next = out.length === 0 ? cell : `${out} ${cell}`;
    if (next.length > width) break;
    out = next;
  }
  return out.trimEnd();
}

/** 1234567 -> "1.23M"; small numbers as they are. */
export function humanRate(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '-';
  if (n < 1000) return n < 10 && n % 1 !== 0 ? n.toFixed(1) : String(Math.round(n));
  const units = ['k', 'M', 'G', 'T'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[u]}`;
}

function perSecond(now: number, before: number | undefined, seconds: number): number {
  if (before === undefined || seconds <= 0) return NaN;
  return Math.max(0, now - before) / seconds;
}

const sumDrops = (d: Record<string, number>): number => Object.values(d).reduce((a, b) => a + b, 0);

/** Traffic of a Child SA where the status carries it (packets in and out). */
function childPackets(c: ChildSaStatus): number | undefined {
  const t = c as ChildSaStatus & { packetsIn?: number; packetsOut?: number };
  return t.packetsIn === undefined && t.packetsOut === undefined ? undefined : (t.packetsIn ?? 0) + (t.packetsOut ?? 0);
}

/**
 * The screen for `cur` (rates against `prev`, when there is one), as lines of
 * at most `width` characters and at most `height` lines.
 */
export function renderTop(prev: TopSample | undefined, cur: TopSample, width: number, height: number, clock = new Date()): string[] {
  const w = Math.max(20, width);
  const s = cur.status;
  const seconds = prev ? (cur.at - prev.at) / 1000 : 0;
  const lines: string[] = [];
  const children = s.ikeSas.reduce((n, sa) => n + sa.children.length, 0);
  const time = clock.toISOString().slice(11, 19);
  lines.push(`ikeclone top  ${time}  IKE SAs ${s.ikeSas.length}  Child SAs ${children}  families ${s.families.length}  half-open ${s.halfOpen}`.slice(0, w));
  lines.push('');

  const workers = s.dataplane?.workers ?? [];
  const before = new Map((prev?.status.dataplane?.workers ?? []).map((x) => [x.index, x]));
  const wcols: Column[] = [
    { title: 'worker', width: 6, right: true },
    { title: 'SAs', width: 4, right: true },
    { title: 'out pps', width: 8, right: true },
    { title: 'in pps', width: 8, right: true },
    { title: 'out bit/s', width: 9, right: true },
    { title: 'in bit/s', width: 9, right: true },
    { title: 'drops/s', width: 8, right: true },
    { title: 'drops', width: 8, right: true },
  ];
  if (workers.length === 0) {
    lines.push('no data plane (no workers running)'.slice(0, w));
  } else {
    lines.push(row(wcols, wcols.map((c) => c.title), w));
    for (const x of workers) {
      const b = before.get(x.index);
      lines.push(
        row(
          wcols,
          [
            String(x.index),
            String(x.sas),
            humanRate(perSecond(x.encapPackets, b?.encapPackets, seconds)),
            humanRate(perSecond(x.decapPackets, b?.decapPackets, seconds)),
            humanRate(perSecond(x.encapBytes * 8, b ? b.encapBytes * 8 : undefined, seconds)),
            humanRate(perSecond(x.decapBytes * 8, b ? b.decapBytes * 8 : undefined, seconds)),
            humanRate(perSecond(sumDrops(x.drops as unknown as Record<string, number>), b ? sumDrops(b.drops as unknown as Record<string, number>) : undefined, seconds)),
            humanRate(sumDrops(x.drops as unknown as Record<string, number>)),
          ],
          w,
        ),
      );
    }
  }
  lines.push('');

  const fcols: Column[] = [
    { title: 'family', width: 6, right: true },
    { title: 'members', width: 7, right: true },
    { title: 'state', width: 9 },
    { title: 'peer', width: 24 },
    { title: 'reason', width: 40 },
  ];
  lines.push(row(fcols, fcols.map((c) => c.title), w));
  for (const f of s.families) {
    lines.push(row(fcols, [String(f.sessionId), `${f.members.length}/${f.target}`, f.state, f.peer ?? '', f.reason ?? ''], w));
  }
  if (s.families.length === 0) lines.push('(none)');
  lines.push('');

  const ccols: Column[] = [
    { title: 'child', width: 6, right: true },
    { title: 'ike', width: 5, right: true },
    { title: 'worker', width: 6, right: true },
    { title: 'pps', width: 8, right: true },
    { title: 'name', width: 12 },
    { title: 'state', width: 10 },
    { title: 'proposal', width: 30 },
  ];
  const prevChildren = new Map<number, ChildSaStatus>();
  for (const sa of prev?.status.ikeSas ?? []) for (const c of sa.children) prevChildren.set(c.id, c);
  const ranked = s.ikeSas
    .flatMap((sa) => sa.children.map((c) => ({ sa, c, rate: perSecond(childPackets(c) ?? NaN, childPackets(prevChildren.get(c.id) ?? c), seconds) })))
    .sort((a, b) => (Number.isNaN(b.rate) ? -1 : b.rate) - (Number.isNaN(a.rate) ? -1 : a.rate) || a.c.id - b.c.id);
  lines.push(row(ccols, ccols.map((c) => c.title), w));
  for (const { sa, c, rate } of ranked) {
    lines.push(row(ccols, [String(c.id), String(sa.id), c.worker === null || c.worker === undefined ? '-' : String(c.worker), humanRate(rate), c.name, c.state, c.proposal], w));
  }
  if (ranked.length === 0) lines.push('(none)');

  const h = Math.max(3, height - 1);
  const shown = lines.slice(0, h);
  if (lines.length > h) shown[h - 1] = `… ${lines.length - h + 1} more lines (enlarge the terminal)`.slice(0, w);
  shown.push('q quits'.slice(0, w));
  return shown;
}

export interface TopTerminal {
  columns: number;
  rows: number;
  write(text: string): void;
}

/** Draws a frame: home, each line cleared to its end, the rest of the screen cleared. */
export function drawFrame(term: TopTerminal, lines: string[]): void {
  term.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\r\n')}\x1b[J`);
}

export interface RunTopOptions {
  /** Takes a status from the gateway; rejects when it cannot be reached. */
  fetchStatus(): Promise<GatewayStatus>;
  term: TopTerminal;
  /** Keys typed (raw mode); the view ends on 'q' or Ctrl-C. */
  input: NodeJS.ReadableStream & { setRawMode?(raw: boolean): unknown };
  intervalMs?: number;
  /** Monotonic ms. */
  now?: () => number;
}

/**
 * Runs the live view until the user quits. When the gateway goes away the
 * view says so and keeps trying every interval; it never exits by itself.
 */
export function runTop(opts: RunTopOptions): Promise<void> {
  const { term, input } = opts;
  const intervalMs = opts.intervalMs ?? 1000;
  const now = opts.now ?? (() => performance.now());
  let prev: TopSample | undefined;
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  term.write('\x1b[?1049h\x1b[?25l');
  input.setRawMode?.(true);
  input.resume();
  return new Promise((resolve) => {
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      input.off('data', onKey);
      input.setRawMode?.(false);
      input.pause();
      term.write('\x1b[?25h\x1b[?1049l');
      resolve();
    };
    const onKey = (chunk: Buffer | string) => {
      const keys = typeof chunk === 'string' ? chunk : chunk.toString('latin1');
      if (keys.includes('q') || keys.includes('Q') || keys.includes('\x03')) finish();
    };
    input.on('data', onKey);
    const tick = async () => {
      try {
        const cur = { status: await opts.fetchStatus(), at: now() };
        if (done) return;
        drawFrame(term, renderTop(prev, cur, term.columns, term.rows));
        prev = cur;
      } catch (err) {
        if (done) return;
        prev = undefined;
        drawFrame(term, [`ikeclone top: the gateway cannot be reached: ${(err as Error).message}`.slice(0, Math.max(20, term.columns)), 'retrying every second; q quits']);
      }
      if (!done) timer = setTimeout(() => void tick(), intervalMs);
    };
    void tick();
  });
}
