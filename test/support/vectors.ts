// Where the Wycheproof vectors live: test/vectors in this repository (with
// their licence), or IKECLONE_VECTORS.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const VECTORS_DIR = process.env.IKECLONE_VECTORS ?? resolve(REPO_ROOT, 'test/vectors');

export function loadVectors<T = unknown>(file: string): T {
  return JSON.parse(readFileSync(resolve(VECTORS_DIR, file), 'utf8')) as T;
}
