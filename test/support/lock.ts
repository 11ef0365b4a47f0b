/**
 * A host-wide lock that serialises the suites which share host resources
 * (network namespaces, strongSwan daemons, packet captures, CPU time for
 * timing-sensitive exchanges) across vitest's worker processes.
 *
 * The lock is a kernel flock(2) held by a small `flock FILE cat` child whose
 * stdin is our pipe: releasing closes the pipe, and if this process dies the
 * pipe closes too, so a crashed run can never leave a stale lock behind.
 */
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnTracked, waitFor } from './proc.js';

export interface HostLock {
  readonly name: string;
  readonly path: string;
  /** Milliseconds spent waiting for the lock. */
  readonly waitedMs: number;
  release(): Promise<void>;
}

const LOCK_DIR = join(tmpdir(), 'ikeclone-locks');

/**
 * Waits (bounded by `timeoutMs`, default 100 s) for the exclusive host lock
 * `name` (default 'netns') and returns a handle to release it.
 */
export async function acquireHostLock(name = 'netns', opts: { timeoutMs?: number } = {}): Promise<HostLock> {
  if (!/^[a-z0-9_-]{1,40}$/i.test(name)) throw new TypeError(`acquireHostLock: invalid lock name ${JSON.stringify(name)}`);
  const timeoutMs = opts.timeoutMs ?? 100_000;
  mkdirSync(LOCK_DIR, { recursive: true });
  const path = join(LOCK_DIR, `${name}.lock`);
  const started = performance.now();
  // flock creates the file, blocks until the lock is ours, then runs the shell,
  // which announces it and becomes `cat` (holding the lock until stdin closes).
  const holder = spawnTracked('flock', ['--exclusive', path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdinPipe: true,
  });
  try {
    await waitFor(
      () => {
        if (holder.exitInfo() !== undefined) throw new Error(`flock exited early: ${holder.stderr().trim()}`);
        return holder.stdout().includes('locked');
      },
      { timeoutMs, intervalMs: 25, message: `host lock ${path}` },
    );
  } catch (e) {
    await holder.stop({ signal: 'SIGKILL' });
    throw e;
  }
  const waitedMs = performance.now() - started;
  let released = false;
  return {
    name,
    path,
    waitedMs,
    async release() {
      if (released) return;
      released = true;
      holder.child.stdin?.end();
      await holder.stop({ signal: 'SIGTERM', graceMs: 2000 });
    },
  };
}
