// The packed package works where it is installed (architecture §7): `npm
// pack` of a clean clone of HEAD (its prepack builds dist/ and wasm/build),
// `npm install` of the tarball into an empty project (dependencies from the
// npm registry), `ikeclone --help` from its node_modules/.bin and through npx,
// and the native addon built by the package's install script. The addon is
// optional for users, so a machine that cannot build it still installs the
// package; CI must build it, so there the test fails, and elsewhere it says
// so loudly.
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCloneOfHead, type Checkout } from './support/checkout.js';
import { inCi } from './support/prereq.js';
import { describeRun, run } from './support/proc.js';

const PACK_TIMEOUT_MS = 300_000;
const INSTALL_TIMEOUT_MS = 300_000;

interface PackedFile { path: string }
interface PackReport { filename: string; files: PackedFile[] }
interface PackageJson { name: string; bin: Record<string, string> | string; files: string[] }

describe('the packed package', () => {
  const clone = useCloneOfHead();
  let checkout: Checkout;
  let tarball: string;
  let packed: string[];
  let app: string;

  beforeAll(async () => {
    checkout = clone();
    const out = join(checkout.parent, 'pack');
    mkdirSync(out);
    // --json: one JSON document on stdout, which also shows that prepack's
    // build output went to stderr.
    const pack = await checkout.run('npm', ['pack', '--json', '--pack-destination', out], { timeoutMs: PACK_TIMEOUT_MS });
    const [report] = JSON.parse(pack.stdout) as PackReport[];
    tarball = join(out, report!.filename);
    packed = report!.files.map((f) => f.path);
    app = join(checkout.parent, 'app');
    mkdirSync(app);
  }, PACK_TIMEOUT_MS + 60_000);

  it('holds every source the addon is built from, the build script, the wasm module and the command', () => {
    expect(existsSync(tarball)).toBe(true);
    const sources = readdirSync(join(checkout.dir, 'native', 'io'))
      .filter((f) => /\.(c|h|gyp)$/.test(f))
      .map((f) => `native/io/${f}`);
    expect(sources).toContain('native/io/binding.gyp');
    expect(packed).toEqual(expect.arrayContaining([...sources, 'scripts/build-native.mjs', 'wasm/build/esp.wasm']));
    const pkg = JSON.parse(readFileSync(join(checkout.dir, 'package.json'), 'utf8')) as PackageJson;
    expect(packed).toContain(binPath(pkg).replace(/^\.\//, ''));
    expect(packed.filter((p) => p.startsWith('test/') || p.includes('/build/Release/'))).toEqual([]);
  });

  it('installs into an empty project, builds its addon, and `ikeclone --help` works there', async () => {
    // A project that allows the install scripts of ikeclone and its addon-building
    // dependency (npm's allowScripts; advisory today, enforced in later npm).
    writeFileSync(join(app, 'package.json'), JSON.stringify({
      name: 'ikeclone-install-check', private: true, allowScripts: { ikeclone: true, 'raw-socket': true },
    }, null, 2));
    const install = await checkout.run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, timeoutMs: INSTALL_TIMEOUT_MS });
    const installed = join(app, 'node_modules', 'ikeclone');
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as PackageJson;
    expect(existsSync(join(installed, binPath(pkg)))).toBe(true);

    const help = await checkout.run(join(app, 'node_modules', '.bin', 'ikeclone'), ['--help'], { cwd: app });
    expect(help.stdout).toMatch(/^Usage: ikeclone/m);
    const npx = await checkout.run('npx', ['--no-install', 'ikeclone', '--help'], { cwd: app });
    expect(npx.stdout).toBe(help.stdout);

    const release = join(installed, 'native', 'io', 'build', 'Release');
    const addons = existsSync(release) ? readdirSync(release).filter((f) => f.endsWith('.node')) : [];
    if (addons.length === 0) {
      const msg = `the installed package did not build its native addon (no ${release}/*.node): ` +
        `needs make, a C compiler and python3 (node-gyp)\n${describeRun(install)}`;
      if (inCi()) throw new Error(msg);
      process.stderr.write(`\n*** WARNING: ${msg} ***\n\n`);
      return;
    }
    // It loads: the build is for this Node and this machine.
    const load = await run(process.execPath, ['-e', `require(${JSON.stringify(join(release, addons[0]!))})`], { cwd: app });
    expect(load.code, describeRun(load)).toBe(0);
  }, INSTALL_TIMEOUT_MS + 60_000);
});

/** The ikeclone command's file in the package (package.json "bin"). */
function binPath(pkg: PackageJson): string {
  const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin['ikeclone'];
  if (bin === undefined) throw new Error('package.json has no "bin" for ikeclone');
  return bin;
}
