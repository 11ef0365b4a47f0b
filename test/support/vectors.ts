// Where the Wycheproof vectors live: test/vectors in this repository (with
// their licence), or IKECLONE_VECTORS.
import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const twoUp = fileURLToPath(new URL('../..', import.meta.url));
/** The repository: two levels above test/support, three when compiled into dist/ (the cluster benchmark uses the harness). */
export const REPO_ROOT = basename(twoUp) === 'dist' ? fileURLToPath(new URL('../../..', import.meta.url)) : twoUp;
export const VECTORS_DIR = process.env.IKECLONE_VECTORS ?? resolve(REPO_ROOT, 'test/vectors');

export function loadVectors<T = unknown>(file: string): T {
  return JSON.parse(readFileSync(resolve(VECTORS_DIR, file), 'utf8')) as T;
}
