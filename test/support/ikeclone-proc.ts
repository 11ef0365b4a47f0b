// ikeclone as a real process inside a test network namespace: the built CLI
// (`ikeclone gateway`) with a YAML config written from an object, reached over
// its control socket (a unix socket path, reachable from the host side).
// Only the pid started here is ever signalled.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { ControlClient } from '../../control/api/control-client.js';
import type { GatewayStatus } from '../../control/status.js';
import type { NetNs } from './netns.js';
import { spawnIn } from './netns.js';
import type { TrackedProcess } from './proc.js';
import { waitFor } from './proc.js';
import { REPO_ROOT } from './vectors.js';

export const CLI_PATH = resolve(REPO_ROOT, 'dist/control/cli/main.js');

export interface Ikeclone {
  readonly proc: TrackedProcess;
  readonly dir: string;
  readonly socket: string;
  readonly keylogDir: string;
  status(): Promise<GatewayStatus>;
  up(name: string): Promise<unknown>;
  down(name?: string): Promise<unknown>;
  /** stdout + stderr so far (pino JSON lines). */
  log(): string;
  stop(): Promise<void>;
}

export async function startIkeclone(ns: NetNs, opts: { dir: string; config: Record<string, unknown>; logLevel?: string; keylog?: boolean }): Promise<Ikeclone> {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run npm run build first`);
  mkdirSync(opts.dir, { recursive: true });
  const keylogDir = join(opts.dir, 'keylog');
  const config = { ...opts.config, ...(opts.keylog ? { keylog: keylogDir } : {}) };
  if (opts.keylog) mkdirSync(keylogDir, { recursive: true });
  const file = join(opts.dir, 'ikeclone.yaml');
  writeFileSync(file, stringify(config));
  const socket = join(opts.dir, 'ctl.sock');
  const proc = spawnIn(ns, process.execPath, [CLI_PATH, '--log-level', opts.logLevel ?? 'debug', 'gateway', '--config', file, '--socket', socket]);
  const request = async (cmd: 'status' | 'up' | 'down', args?: { name?: string }) => {
    const client = await ControlClient.connect(socket, { connectTimeoutMs: 2000 });
    try {
      return await client.request(cmd, args, { timeoutMs: 20_000 });
    } finally {
      client.close();
    }
  };
  const log = () => proc.stdout() + proc.stderr();
  try {
    await waitFor(
      async () => {
        if (proc.exitInfo()) throw new Error(`ikeclone exited: ${log().slice(-2000)}`);
        if (!existsSync(socket)) return false;
        await request('status');
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 100, message: 'ikeclone gateway did not start' },
    );
  } catch (err) {
    await proc.stop({ graceMs: 1000 });
    throw new Error(`${(err as Error).message}\n${log().slice(-3000)}`);
  }
  return {
    proc,
    dir: opts.dir,
    socket,
    keylogDir,
    status: async () => (await request('status')) as GatewayStatus,
    up: (name) => request('up', { name }),
    down: (name) => request('down', name ? { name } : undefined),
    log,
    async stop() {
      await proc.stop({ graceMs: 3000 });
    },
  };
}
