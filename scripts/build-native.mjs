#!/usr/bin/env node
// Builds the optional Node-API addon in native/io (batched UDP, TUN) with
// node-gyp. Used by `npm run build:native` in a checkout and by the `install`
// script of the published package, so an installed ikeclone builds its addon
// on the machine it runs on.
//
// The addon is optional: without it there is no TUN device and UDP goes
// through dgram. So a failed build prints a warning and exits 0, never failing
// an install or a build. node-gyp's own output goes to stderr, so commands
// whose stdout is data (`npm run -s bench -- SUITE --json`, `npm pack --json`)
// stay clean.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const WARNING =
  'warning: native/io did not build: no TUN device, and UDP goes through dgram (one system call per datagram)';

// Run it through npm (`npm run build:native`): npm names its bundled node-gyp
// in every script's environment, with the npm configuration node-gyp reads
// (nodedir, proxies). Run directly, it needs node-gyp on PATH.
const nodeGyp = process.env.npm_config_node_gyp;
const [command, prefix] = nodeGyp ? [process.execPath, [nodeGyp]] : ['node-gyp', []];
const result = spawnSync(command, [...prefix, 'rebuild', '--directory=native/io', '--silent'], {
  cwd: root,
  stdio: ['ignore', process.stderr, process.stderr],
});
if (result.error !== undefined || result.status !== 0) {
  const why = result.error?.message ?? (result.signal !== null ? `signal ${result.signal}` : `exit status ${result.status}`);
  process.stderr.write(`${WARNING} (node-gyp: ${why})\n`);
}
