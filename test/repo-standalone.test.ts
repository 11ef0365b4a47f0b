// The repository stands on its own (architecture §7): a clone of HEAD in an
// empty directory, with no sibling folders, runs its vector tests, and no
// test opens a file outside the repository. The clone borrows this
// checkout's node_modules (dependencies are not part of the repository);
// every file the tests open is traced with strace and must lie in the clone,
// the dependencies, the Node/npm installation, the system directories, npm's
// and git's configuration and caches, or the temporary directory of the tools.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cleanEnv, useCloneOfHead, type Checkout } from './support/checkout.js';
import { inCi } from './support/prereq.js';
import { describeRun, run } from './support/proc.js';
import { REPO_ROOT } from './support/vectors.js';

const RUN_TIMEOUT_MS = 300_000;

const THIS_FILE = 'repo-standalone.test.ts';

/** Test files that read test vectors: through loadVectors or VECTORS_DIR, by a Wycheproof file name, or crypto-*. */
function vectorTests(dir: string): string[] {
  return readdirSync(join(dir, 'test'))
    .filter((f) => f.endsWith('.test.ts') && f !== THIS_FILE)
    .filter((f) => f.startsWith('crypto-') || /\bloadVectors\b|\bVECTORS_DIR\b|test\/vectors|_test\.json/.test(readFileSync(join(dir, 'test', f), 'utf8')))
    .map((f) => `test/${f}`)
    .sort();
}

interface OpenedFile { path: string; result: number }

/**
 * Files opened (open, openat, openat2) in an `strace -f -o FILE` log, with the
 * result of each call; relative paths are taken against `cwd`. A call split by
 * another process's line ("<unfinished ...>" / "<... resumed>") is joined.
 */
function openedFiles(log: string, cwd: string): OpenedFile[] {
  const out: OpenedFile[] = [];
  const pending = new Map<string, string>();
  const call = /^(\d+)\s+(?:open|openat|openat2)\((?:AT_FDCWD|-?\d+)?,?\s*"((?:[^"\\]|\\.)*)"(.*)$/;
  const resumed = /^(\d+)\s+<\.\.\. (?:open|openat|openat2) resumed>.*=\s+(-?\d+)/;
  for (const line of log.split('\n')) {
    const c = call.exec(line);
    if (c) {
      const [, pid, raw, rest] = c as unknown as [string, string, string, string];
      const path = resolve(cwd, raw);
      if (rest.includes('<unfinished ...>')) pending.set(pid, path);
      else out.push({ path, result: Number(/=\s+(-?\d+)/.exec(rest)?.[1] ?? -1) });
      continue;
    }
    const r = resumed.exec(line);
    if (r) {
      const path = pending.get(r[1]!);
      pending.delete(r[1]!);
      if (path !== undefined) out.push({ path, result: Number(r[2]) });
    }
  }
  return out;
}

const within = (path: string, root: string): boolean => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

/** Opened paths that lie outside the repository and the places every Node program reads. */
function outsideTheRepository(opened: readonly OpenedFile[], checkout: Checkout): string[] {
  const home = homedir();
  const dependencies = realpathSync(join(REPO_ROOT, 'node_modules'));
  const allowed = [
    checkout.dir,
    dependencies,
    dirname(dirname(process.execPath)), // Node and the npm beside it
    '/usr', '/lib', '/lib64', '/etc', '/proc', '/sys', '/dev',
    join(home, '.npmrc'), join(home, '.gitconfig'), join(home, '.npm'), join(home, '.cache'), join(home, '.config'),
  ];
  const bad = new Set<string>();
  for (const { path, result } of opened) {
    if (!isAbsolute(path)) continue;
    // npm, vite and vitest look for package.json, tsconfig.json and the like
    // in every directory above the project: such a probe that finds nothing
    // reads nothing.
    if (result < 0 && within(checkout.dir, dirname(path)) && dirname(path) !== checkout.dir) continue;
    // This checkout (apart from its dependencies) and the clone's siblings are
    // never allowed, even where they fall under an allowed directory.
    const reachesBack = within(path, REPO_ROOT) && !within(path, join(REPO_ROOT, 'node_modules')) && !within(path, dependencies);
    const sibling = within(path, checkout.parent) && !within(path, checkout.dir);
    const toolTemp = within(path, tmpdir()) && !within(path, checkout.parent);
    if (reachesBack || sibling || !(toolTemp || allowed.some((root) => within(path, root)))) bad.add(path);
  }
  return [...bad].sort();
}

function haveStrace(): boolean {
  return spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;
}

describe('a clone of the repository with nothing beside it', () => {
  const clone = useCloneOfHead();

  it('refers to no file outside the repository (no sibling folder, no design file beside it)', async () => {
    const checkout = clone();
    expect(readdirSync(checkout.parent)).toEqual(['ikeclone']);
    // (this file names what it looks for, so it is left out)
    const grep = await run('git', ['-C', checkout.dir, 'grep', '-n', '-E', '\\.\\./shared|DESIGN', '--', '.', `:!test/${THIS_FILE}`], { env: cleanEnv() });
    expect(grep.stdout).toBe('');
    expect(grep.code).toBe(1); // git grep: 1 = no match
  });

  it('passes its vector tests, opening no file outside the repository', async () => {
    const checkout = clone();
    const files = vectorTests(checkout.dir);
    expect(files.length).toBeGreaterThanOrEqual(5);
    const vitest = ['npx', 'vitest', 'run', '--no-file-parallelism', ...files];
    const traced = haveStrace();
    if (!traced) {
      const msg = 'strace is not installed (apt-get install strace): the vector tests run in the clone, but which files they open is not checked';
      if (inCi()) throw new Error(msg);
      process.stderr.write(`\n*** WARNING: ${msg} ***\n\n`);
    }
    mkdirSync(join(checkout.dir, 'test-results'), { recursive: true });
    const traceFile = join(checkout.dir, 'test-results', 'open.trace');
    const cmd = traced
      ? ['strace', '-f', '-qq', '-e', 'trace=open,openat,openat2', '-e', 'signal=none', '-o', traceFile, ...vitest]
      : vitest;
    const result = await run(cmd[0]!, cmd.slice(1), { cwd: checkout.dir, env: cleanEnv({ IKECLONE_VECTORS: undefined }), timeoutMs: RUN_TIMEOUT_MS });
    expect(result.code, describeRun(result)).toBe(0);

    const report = JSON.parse(readFileSync(join(checkout.dir, 'test-results', 'vitest.json'), 'utf8')) as {
      numPassedTests: number; numFailedTests: number; numPendingTests: number; numTodoTests: number;
      testResults: { name: string }[];
    };
    expect(report.numFailedTests).toBe(0);
    expect(report.numPendingTests + report.numTodoTests).toBe(0);
    expect(report.numPassedTests).toBeGreaterThan(0);
    expect(report.testResults.map((t) => t.name.slice(checkout.dir.length + 1)).sort()).toEqual(files);

    if (traced) {
      expect(existsSync(traceFile)).toBe(true);
      const opened = openedFiles(readFileSync(traceFile, 'utf8'), checkout.dir);
      expect(opened.some((f) => within(f.path, join(checkout.dir, 'test', 'vectors')) && f.result >= 0)).toBe(true);
      const outside = outsideTheRepository(opened, checkout);
      expect(outside, `files opened outside the repository:\n${outside.join('\n')}`).toEqual([]);
    }
  }, RUN_TIMEOUT_MS + 60_000);
});
