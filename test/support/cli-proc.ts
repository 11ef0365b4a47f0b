// The built `ikeclone` command line as a child process of a test: built first
// when dist/ is missing or older than the sources (a direct vitest run skips
// `npm test`'s build step), its output collected, and killed by pid when the
// test no longer needs it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI_PATH = join(REPO_ROOT, 'dist/control/cli/main.js');

/** Newest modification time of the TypeScript sources under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Build dist/ (tsc) unless the CLI is newer than every source under control/, dataplane/ and demo/. */
export function ensureCliBuilt(): void {
  const newest = Math.max(...['control', 'dataplane', 'demo'].map((dir) => newestSource(join(REPO_ROOT, dir))));
  if (existsSync(CLI_PATH) && statSync(CLI_PATH).mtimeMs >= newest) return;
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(REPO_ROOT, 'tsconfig.json')], { cwd: REPO_ROOT, timeout: 120_000, encoding: 'utf8' });
  if (!existsSync(CLI_PATH)) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
}

export interface CliProcess {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code once the process has closed its output. */
  exited: Promise<number | null>;
}

/**
 * Start `ikeclone ARGS` (or, with `script`, `node -e SCRIPT ARGS`), as user
 * `uid` if given; stdout and stderr are collected as they come.
 */
export function startCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; script?: string } = {}): CliProcess {
  const argv = opts.script !== undefined ? ['-e', opts.script, ...args] : [CLI_PATH, ...args];
  const proc = spawn(process.execPath, argv, {
    cwd: opts.cwd ?? REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += String(d)));
  proc.stderr!.on('data', (d) => (err += String(d)));
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  return { proc, stdout: () => out, stderr: () => err, exited };
}

/** SIGKILL the process by its pid if it still runs (a failed test must not leave it behind). */
export function killCli(proc: ChildProcess): void {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  try {
    process.kill(proc.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
