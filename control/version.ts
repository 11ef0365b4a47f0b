// ikeclone's version, as the CLI's --version and the demos report it.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedVersion: string | undefined;

/** ikeclone's version from package.json (found from this module's location, in control/ or dist/control/, looking upwards). */
export function ikecloneVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      try {
        const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown; version?: unknown };
        if (pkg.name === 'ikeclone' && typeof pkg.version === 'string') return (cachedVersion = pkg.version);
      } catch {
        // Not ours or unreadable: keep looking upwards.
      }
    }
    dir = dirname(dir);
  }
  return (cachedVersion = '0.0.0');
}
