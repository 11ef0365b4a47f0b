/**
 * A fresh checkout of this repository's committed tree (HEAD) in an empty
 * temporary directory: what a new user gets from `git clone`. The tests that
 * show the repository stands on its own run there (its vector tests, its
 * package, its benchmarks), with nothing beside it, so nothing outside the
 * repository can be found by accident (architecture §7).
 *
 * The checkout holds HEAD, not the working tree: uncommitted changes are not
 * in it (a warning says so). Its node_modules is a link to this checkout's, so
 * no registry is needed for the dependencies: they are not part of the
 * repository either way.
 */
import { afterAll, beforeAll } from 'vitest';
import { existsSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked, type RunOptions, type RunResult } from './proc.js';
import { REPO_ROOT } from './vectors.js';

export interface Checkout {
  /** The empty temporary directory the clone sits in (it holds nothing else). */
  readonly parent: string;
  /** The clone. */
  readonly dir: string;
  /** The commit checked out. */
  readonly commit: string;
  /** Runs a command in the clone with {@link cleanEnv}; throws unless it exits 0. */
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Deletes the temporary directory. */
  remove(): void;
}

/**
 * The environment for commands run as a user would run them: without what
 * npm and vitest set for the process running this test (npm_* settings such
 * as the calling package's prefix, VITEST_* worker state). A key of `extra`
 * set to undefined is removed.
 */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries({ ...process.env, ...extra })) {
    if (v === undefined || /^(npm_|VITEST|INIT_CWD$|NODE_ENV$|TEST$)/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

/** Clones HEAD of this repository into a new empty temporary directory. */
export async function cloneHead(opts: { linkDependencies?: boolean } = {}): Promise<Checkout> {
  const status = await runChecked('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no']);
  if (status.stdout.trim() !== '') {
    process.stderr.write(`warning: uncommitted changes in ${REPO_ROOT} are not in the clone (it holds HEAD)\n`);
  }
  const parent = mkdtempSync(join(tmpdir(), 'ikeclone-checkout-'));
  const dir = join(parent, 'ikeclone');
  try {
    // init + fetch rather than clone: HEAD may be detached (CI checks out a
    // commit), and a worktree's HEAD is not its repository's.
    await runChecked('git', ['init', '--quiet', dir]);
    await runChecked('git', ['-C', dir, 'fetch', '--quiet', '--no-tags', REPO_ROOT, 'HEAD'], { timeoutMs: 60_000 });
    await runChecked('git', ['-C', dir, 'checkout', '--quiet', '--detach', 'FETCH_HEAD']);
    const commit = (await runChecked('git', ['-C', dir, 'rev-parse', 'HEAD'])).stdout.trim();
    if (opts.linkDependencies) {
      const modules = join(REPO_ROOT, 'node_modules');
      if (!existsSync(modules)) throw new Error(`no ${modules}: run npm ci first`);
      symlinkSync(realpathSync(modules), join(dir, 'node_modules'), 'dir');
    }
    return {
      parent,
      dir,
      commit,
      run: (cmd, args, runOpts = {}) => runChecked(cmd, args, { ...runOpts, cwd: runOpts.cwd ?? dir, env: runOpts.env ?? cleanEnv() }),
      remove: () => rmSync(parent, { recursive: true, force: true }),
    };
  } catch (e) {
    rmSync(parent, { recursive: true, force: true });
    throw e;
  }
}

/**
 * In a describe block: a clone of HEAD with this checkout's dependencies,
 * made before its tests and deleted after them. Returns its accessor.
 */
export function useCloneOfHead(): () => Checkout {
  let checkout: Checkout | undefined;
  beforeAll(async () => {
    checkout = await cloneHead({ linkDependencies: true });
  }, 120_000);
  afterAll(() => checkout?.remove());
  return () => {
    if (checkout === undefined) throw new Error('the clone of HEAD is made in beforeAll');
    return checkout;
  };
}
