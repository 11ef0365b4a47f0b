// The fuzz tool's targets in CI (architecture §7): each at the largest count
// that keeps it near a minute on a 2-core machine, seeded, with 0 crashes and
// 0 unauthenticated state changes; and the command line itself (--json is
// the only output on stdout, the same seed gives the same summary).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { runFuzz } from '../fuzz/index.js';
import { codecTarget } from '../fuzz/targets/codec.js';
import { configTarget } from '../fuzz/targets/config.js';
import { controlTarget } from '../fuzz/targets/control.js';
import { engineTarget } from '../fuzz/targets/engine.js';
import { espTarget } from '../fuzz/targets/esp.js';
import { fragmentsTarget } from '../fuzz/targets/fragments.js';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ensureCliBuilt } from './support/cli-proc.js';

const TOOL = fileURLToPath(new URL('../dist/fuzz/index.js', import.meta.url));
const SOURCE = fileURLToPath(new URL('../fuzz/index.ts', import.meta.url));

/** The compiled tool, built if missing or older than its source (npm test builds first anyway). */
function toolBuilt(): void {
  ensureCliBuilt();
  if (existsSync(TOOL) && statSync(TOOL).mtimeMs >= statSync(SOURCE).mtimeMs) return;
  execFileSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', fileURLToPath(new URL('../tsconfig.json', import.meta.url))], { stdio: 'ignore' });
}

describe('fuzz targets (seeded; 0 crashes, 0 unauthenticated state changes)', () => {
  it('codec: 100,000 mutated IKE messages into decodeMessage', () => {
    const s = runFuzz(codecTarget(), 100_000, 1);
    expect(s.findings).toEqual([]);
    expect([s.crashes, s.stateChanges]).toEqual([0, 0]);
    expect(s.outcomes.ok).toBeGreaterThan(10_000);
    expect(Object.keys(s.outcomes).filter((k) => k.startsWith('error:')).length).toBeGreaterThanOrEqual(4);
  }, 120_000);

  it('engine: 100,000 mutants of a recorded session into both engines; established SAs unchanged', async () => {
    const s = runFuzz(await engineTarget(), 100_000, 1);
    expect(s.findings).toEqual([]);
    expect([s.crashes, s.stateChanges]).toEqual([0, 0]);
    for (const reason of ['malformed', 'message-id', 'cache-mismatch', 'unknown-spi']) expect(s.outcomes[`drop:${reason}`]).toBeGreaterThan(0);
  }, 180_000);

  it('esp: 100,000 mutated ESP packets against installed SAs; refused, window untouched, genuine packets still accepted', async () => {
    const target = await espTarget();
    const before = target.window();
    const s = runFuzz(target, 100_000, 1);
    expect(s.findings).toEqual([]);
    expect([s.crashes, s.stateChanges]).toEqual([0, 0]);
    expect(s.outcomes.ok ?? 0).toBe(0);
    for (const code of ['AUTH_FAILED', 'REPLAY', 'MALFORMED']) expect(s.outcomes[`error:${code}`]).toBeGreaterThan(0);
    expect(target.window()).toBe(before);
    expect(target.stillAccepts()).toBe(true);
  }, 120_000);

  it('control: 100,000 mutated control-socket lines into parseRequest', () => {
    const s = runFuzz(controlTarget(), 100_000, 1);
    expect(s.findings).toEqual([]);
    expect([s.crashes, s.stateChanges]).toEqual([0, 0]);
    expect(s.outcomes['error:malformed']).toBeGreaterThan(0);
    expect(s.outcomes.ok).toBeGreaterThan(0);
  }, 120_000);

  it('fragments: 100,000 forged, overlapping, out-of-range, oversized and mutated IKE fragments; nothing stored, the genuine set completes', async () => {
    const target = await fragmentsTarget();
    const s = runFuzz(target, 100_000, 1);
    expect(s.findings).toEqual([]);
    expect([s.crashes, s.stateChanges]).toEqual([0, 0]);
    for (const reason of ['fragment-auth', 'fragment-duplicate', 'fragment-limit', 'fragment-stale', 'malformed']) expect(s.outcomes[`drop:${reason}`]).toBeGreaterThan(0);
    expect(target.peakOctets()).toBeLessThan(2048);
    expect(target.completes()).toBe(true);
  }, 120_000);

  // The loader validates a whole gateway per mutant (YAML, depth, tags, schema), in process: about
  // 600-2,000 a second here (the schema is built once; nesting past the limit is refused from a scan).
  it('config: 100,000 mutated YAML files into the loader', () => {
    const s = runFuzz(configTarget(), 100_000, 1);
    expect(s.findings).toEqual([]);
    expect([s.crashes, s.stateChanges]).toEqual([0, 0]);
    expect(s.outcomes['error:ConfigError']).toBeGreaterThan(0);
    expect(s.outcomes.ok).toBeGreaterThan(0);
  }, 600_000);
});

describe('npm run fuzz', () => {
  it('--json prints one JSON document and nothing else on stdout; the same seed gives the same outcomes', () => {
    toolBuilt();
    const run = () => JSON.parse(execFileSync(process.execPath, [TOOL, '--target', 'codec', '--count', '2000', '--seed', '42', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const a = run();
    const b = run();
    expect(a.outcomes).toEqual(b.outcomes);
    expect(a).toMatchObject({ target: 'codec', count: 2000, seed: 42, crashes: 0, stateChanges: 0 });
  });

  it('--help names the targets; a bad target is a usage error (exit 2)', () => {
    toolBuilt();
    const help = execFileSync(process.execPath, [TOOL, '--help'], { encoding: 'utf8' });
    for (const t of ['codec', 'engine', 'config', 'control', 'esp', 'fragments']) expect(help).toContain(t);
    let code = 0;
    try {
      execFileSync(process.execPath, [TOOL, '--target', 'nope'], { stdio: 'ignore' });
    } catch (e) {
      code = (e as { status: number }).status;
    }
    expect(code).toBe(2);
  });
});
