// The fuzz tool (architecture §7): `npm run fuzz -- --target T --count N
// --seed S [--json]`. Seeded and reproducible: the same target, count and seed
// give the same mutants and the same summary. Progress goes to stderr; the
// summary (counts by outcome) to stdout, as a table or, with --json, as one
// JSON document and nothing else. Exit 0 when nothing was found, 1 on a crash
// or an unauthenticated state change, 2 on a usage error.
import { prng } from './mutate.js';
import type { FuzzTarget, Outcome } from './target.js';
import { codecTarget } from './targets/codec.js';
import { configTarget } from './targets/config.js';
import { controlTarget } from './targets/control.js';
import { engineTarget } from './targets/engine.js';
import { espTarget } from './targets/esp.js';
import { fragmentsTarget } from './targets/fragments.js';

const TARGETS: Record<string, () => FuzzTarget | Promise<FuzzTarget>> = {
  codec: codecTarget,
  engine: engineTarget,
  esp: espTarget,
  config: configTarget,
  control: controlTarget,
  fragments: fragmentsTarget,
};

const USAGE = `usage: npm run fuzz -- --target TARGET [--count N] [--seed S] [--json]

targets:
  codec     mutated IKE messages into decodeMessage: decoded, or a typed WireError; never a throw
  engine    mutants of a recorded session (every exchange, both ways) into both engines of an in-memory pair:
            no throw, no error logged, no change to established SAs
  config    mutated YAML into the configuration loader: a configuration or a ConfigError
  control   mutated control-socket lines into parseRequest: a request or a typed error response

  esp       mutated ESP packets against SAs installed in the wasm kernel (AES-GCM, ChaCha20-Poly1305,
            AES-CBC with HMAC-SHA2): a typed refusal, never accepted, replay window untouched

  fragments forged, overlapping, out-of-range, oversized and mutated IKE fragments (RFC 7383) into a
            reassembly in progress: a counted drop each, nothing stored, the genuine set still completes

options:
  --count N   mutants to try (default 10000)
  --seed S    PRNG seed, an integer (default 1); the same seed gives the same mutants
  --json      the summary as one JSON document on stdout (progress stays on stderr)

example: npm run fuzz -- --target codec --count 1000000 --seed 7 --json`;

export interface FuzzSummary {
  target: string;
  count: number;
  seed: number;
  seconds: number;
  perSecond: number;
  /** Counts by outcome: "ok", "error:<code>", "drop:<reason>", "crash", "state-change". */
  outcomes: Record<string, number>;
  crashes: number;
  stateChanges: number;
  /** The first few findings, with the index of the mutant (rerun with the same seed to see it again). */
  findings: Array<{ index: number; kind: string; detail: string }>;
}

function key(o: Outcome): string {
  switch (o.kind) {
    case 'error': return `error:${o.code}`;
    case 'drop': return `drop:${o.reason}`;
    default: return o.kind;
  }
}

/** Run `count` mutants of `target` from `seed`; `progress` is called about once a second. */
export function runFuzz(target: FuzzTarget, count: number, seed: number, progress: (done: number) => void = () => {}): FuzzSummary {
  const rng = prng(seed);
  const outcomes: Record<string, number> = {};
  const findings: FuzzSummary['findings'] = [];
  const t0 = performance.now();
  let lastReport = t0;
  for (let i = 0; i < count; i++) {
    const o = target.run(rng, i);
    const k = key(o);
    outcomes[k] = (outcomes[k] ?? 0) + 1;
    if ((o.kind === 'crash' || o.kind === 'state-change') && findings.length < 20) findings.push({ index: i, kind: o.kind, detail: o.detail });
    if ((i & 255) === 0) {
      const now = performance.now();
      if (now - lastReport >= 1000) { lastReport = now; progress(i); }
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    target: target.name, count, seed, seconds: Math.round(seconds * 1000) / 1000, perSecond: Math.round(count / Math.max(seconds, 1e-9)),
    outcomes: Object.fromEntries(Object.entries(outcomes).sort((a, b) => b[1] - a[1])),
    crashes: outcomes.crash ?? 0, stateChanges: outcomes['state-change'] ?? 0, findings,
  };
}

function format(s: FuzzSummary): string {
  const width = Math.max(...Object.keys(s.outcomes).map((k) => k.length), 7);
  return [
    `fuzz ${s.target}: ${s.count} mutants, seed ${s.seed}, ${s.seconds} s (${s.perSecond}/s)`,
    ...Object.entries(s.outcomes).map(([k, n]) => `  ${k.padEnd(width)} ${n}`),
    `crashes ${s.crashes}, unauthenticated state changes ${s.stateChanges}`,
    ...s.findings.map((f) => `  #${f.index} ${f.kind}: ${f.detail}`),
  ].join('\n');
}

function parseArgs(argv: readonly string[]): { target: string; count: number; seed: number; json: boolean } | string {
  let target: string | undefined;
  let count = 10_000;
  let seed = 1;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => argv[++i];
    if (a === '--json') json = true;
    else if (a === '--target') target = value();
    else if (a === '--count') {
      const v = value();
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) return `--count must be a positive integer, got ${JSON.stringify(v)}`;
      count = Number(v);
    } else if (a === '--seed') {
      const v = value();
      if (v === undefined || !/^\d+$/.test(v) || Number(v) > 0xffffffff) return `--seed must be an integer from 0 to 4294967295, got ${JSON.stringify(v)}`;
      seed = Number(v);
    } else return `unknown argument ${JSON.stringify(a)}`;
  }
  if (target === undefined) return 'missing --target';
  if (!(target in TARGETS)) return `unknown target ${JSON.stringify(target)}; expected one of ${Object.keys(TARGETS).join(', ')}`;
  return { target, count, seed, json };
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const args = parseArgs(argv);
  if (typeof args === 'string') {
    process.stderr.write(`fuzz: ${args}\n\n${USAGE}\n`);
    return 2;
  }
  const target = await TARGETS[args.target]!();
  process.stderr.write(`fuzz ${args.target}: ${args.count} mutants from seed ${args.seed}\n`);
  const summary = runFuzz(target, args.count, args.seed, (done) => process.stderr.write(`  ${done}/${args.count}\n`));
  process.stdout.write(args.json ? `${JSON.stringify(summary)}\n` : `${format(summary)}\n`);
  return summary.crashes === 0 && summary.stateChanges === 0 ? 0 : 1;
}

// Run as the tool, not when a test imports runFuzz.
if (process.argv[1] !== undefined && /fuzz[\\/]index\.[jt]s$/.test(process.argv[1])) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
    process.stderr.write(`fuzz: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
