// The set-up every network-namespace suite shares: the host lock (namespace
// suites run one at a time), a work directory, and cleanups run after each
// test in reverse order (namespaces, daemons, captures), even when it fails.
// Call it inside a describe(); nothing happens when the prerequisites are
// missing (interopTest then fails in CI or skips loudly elsewhere).
import { afterAll, afterEach, beforeAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireHostLock } from './lock.js';
import type { HostLock } from './lock.js';
import { requirePrereqs } from './prereq.js';
import type { PrereqName } from './prereq.js';

export interface NetnsSuite {
  /** The suite's work directory (valid inside tests). */
  dir(...parts: string[]): string;
  /** Run after the current test, last registered first. */
  cleanup(fn: () => Promise<unknown> | unknown): void;
}

export function useNetnsSuite(prefix: string, prereqs: readonly PrereqName[]): NetnsSuite {
  let lock: HostLock | undefined;
  let workDir = '';
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  beforeAll(async () => {
    if (!requirePrereqs(prereqs).ok) return;
    lock = await acquireHostLock('netns', { timeoutMs: 90_000 });
    workDir = mkdtempSync(join(tmpdir(), `ikc-${prefix}-`));
  }, 120_000);
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch {
        // best effort: the next cleanup still runs
      }
    }
  });
  afterAll(() => {
    lock?.release();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });
  return {
    dir: (...parts) => join(workDir, ...parts),
    cleanup: (fn) => void cleanups.push(fn),
  };
}
