// The layering rules of .dependency-cruiser.cjs (architecture §2) mean what
// they say: a small tree in the target layout passes, and the same tree with
// one wrong import per rule fails on exactly those imports. (`npm run
// check:deps` applies the rules to this repository.)
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cleanEnv } from './support/checkout.js';
import { describeRun, run } from './support/proc.js';
import { REPO_ROOT } from './support/vectors.js';

/** Modules of a clean tree: path -> import specifiers. */
const CLEAN: Record<string, string[]> = {
  'control/wire/codec.ts': ['node:buffer'],
  'control/crypto/keys.ts': ['../wire/codec.js', 'node:crypto'],
  'control/ike/context.ts': ['../wire/codec.js'],
  'control/ike/engine.ts': ['./context.js', './exchanges/ike-init.js', './sa-table.js'],
  'control/ike/sa-table.ts': ['./context.js'],
  'control/ike/exchanges/ike-init.ts': ['../context.js', '../../crypto/keys.js'],
  'control/ike/exchanges/delete.ts': ['../context.js'],
  'control/config/load.ts': ['../ike/context.js', 'node:fs'],
  'control/api/protocol.ts': [],
  'control/gateway.ts': ['./ike/engine.js', './config/load.js', '../dataplane/dataplane.js', '../io/sockets.js'],
  'control/cli/cli.ts': ['../gateway.js'],
  'io/sockets.ts': ['node:dgram', 'node:worker_threads'],
  'dataplane/dataplane.ts': ['./install.js', '../io/sockets.js', 'node:worker_threads'],
  'dataplane/install.ts': ['../wasm/esp.js'],
  'wasm/esp.ts': ['./aead.js'],
  'wasm/aead.ts': [],
  'demo/demo.ts': ['../control/gateway.js'],
  // Tests and benchmarks are not runtime modules: a cycle there is not checked.
  'test/a.test.ts': ['./b.js', '../control/ike/engine.js'],
  'test/b.ts': ['./a.test.js'],
};

/**
 * One wrong import per rule: [rule, importing module, imported module or Node
 * built-in]. Apart from the first, none closes a cycle, so each is reported
 * by its own rule only.
 */
const VIOLATIONS: ReadonlyArray<readonly [rule: string, from: string, to: string]> = [
  ['no-circular', 'control/ike/sa-table.ts', 'control/ike/engine.ts'],
  ['wire-crypto-import-nothing-above', 'control/wire/codec.ts', 'control/api/protocol.ts'],
  ['wire-crypto-import-nothing-above', 'control/crypto/keys.ts', 'worker_threads'],
  ['ike-no-sockets', 'control/ike/exchanges/ike-init.ts', 'io/sockets.ts'],
  ['ike-no-sockets', 'control/ike/context.ts', 'dgram'],
  ['exchanges-import-context-not-engine', 'control/ike/exchanges/delete.ts', 'control/ike/engine.ts'],
  ['dataplane-not-control', 'dataplane/install.ts', 'control/crypto/keys.ts'],
  ['io-below-both-planes', 'io/sockets.ts', 'dataplane/install.ts'],
  ['wasm-self-contained', 'wasm/aead.ts', 'control/api/protocol.ts'],
];

function specifier(from: string, to: string): string {
  if (!to.includes('/')) return `node:${to}`;
  const up = from.split('/').length - 1;
  return `${'../'.repeat(up)}${to.replace(/\.ts$/, '.js')}`;
}

function writeTree(root: string, modules: Record<string, string[]>): void {
  writeFileSync(join(root, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true },
  }));
  for (const [file, imports] of Object.entries(modules)) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    const lines = imports.map((s, i) => `import * as m${i} from '${s}';`);
    writeFileSync(join(root, file), `${lines.join('\n')}\nexport const used = [${imports.map((_, i) => `m${i}`).join(', ')}];\n`);
  }
}

interface CruiseViolation { rule: { name: string }; from: string; to: string; cycle?: unknown[] }

function depcruise(root: string, outputType: 'json' | 'err'): ReturnType<typeof run> {
  return run(join(REPO_ROOT, 'node_modules', '.bin', 'depcruise'),
    ['--config', join(REPO_ROOT, '.dependency-cruiser.cjs'), '--output-type', outputType, '.'],
    { cwd: root, env: cleanEnv(), timeoutMs: 60_000 });
}

/** The violations found in `root`, and the exit status of the check as `npm run check:deps` runs it. */
async function cruise(root: string): Promise<{ code: number | null; violations: CruiseViolation[] }> {
  const [json, err] = await Promise.all([depcruise(root, 'json'), depcruise(root, 'err')]);
  expect(json.stdout, describeRun(json)).not.toBe('');
  const out = JSON.parse(json.stdout) as { summary: { violations: CruiseViolation[] } };
  return { code: err.code, violations: out.summary.violations };
}

describe('.dependency-cruiser.cjs', () => {
  const roots: string[] = [];
  const tree = (modules: Record<string, string[]>): string => {
    const root = mkdtempSync(join(tmpdir(), 'ikeclone-deps-'));
    roots.push(root);
    writeTree(root, modules);
    return root;
  };
  afterAll(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });

  it('passes a tree in the layout of architecture §2', async () => {
    const { code, violations } = await cruise(tree(CLEAN));
    expect(violations).toEqual([]);
    expect(code).toBe(0);
  }, 90_000);

  it('fails on one wrong import per rule, naming each', async () => {
    const modules = structuredClone(CLEAN);
    for (const [, from, to] of VIOLATIONS) modules[from]!.push(specifier(from, to));
    const { code, violations } = await cruise(tree(modules));
    expect(code).not.toBe(0);
    const found = violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`);
    const expected = VIOLATIONS.map(([rule, from, to]) => `${rule}: ${from} -> ${to}`);
    // The cycle engine.ts <-> sa-table.ts is reported from one end or both.
    const cycle = ['no-circular: control/ike/sa-table.ts -> control/ike/engine.ts', 'no-circular: control/ike/engine.ts -> control/ike/sa-table.ts'];
    expect(found.filter((f) => f.startsWith('no-circular')).length).toBeGreaterThan(0);
    expect(found.filter((f) => f.startsWith('no-circular') && !cycle.includes(f))).toEqual([]);
    expect(found.filter((f) => !f.startsWith('no-circular')).sort()).toEqual(expected.slice(1).sort());
  }, 90_000);
});
