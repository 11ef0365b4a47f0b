/**
 * Prerequisites of the namespace and interop suites (root, network
 * namespaces, strongSwan, tshark, ...), and the policy when one is missing:
 *
 * - in CI (`CI=true`) the test FAILS, naming what is missing: CI installs
 *   everything (.ci/run), so a missing tool there is a broken pipeline;
 * - elsewhere it prints a loud warning to stderr and skips itself through the
 *   test context (`ctx.skip()`), so a developer machine without strongSwan
 *   still runs the rest of the suite.
 *
 * Checks are synchronous, cached per process, and side-effect free except the
 * 'netns' and 'netem' probes, which use a throwaway namespace (`unshare -n`).
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { test } from 'vitest';
import type { TestContext } from 'vitest';
import { nativeIoUnavailable } from '../../io/native-io.js';
import { prometheusParserUnavailable } from './prometheus.js';

export type PrereqName = 'root' | 'netns' | 'charon' | 'swanctl' | 'tshark' | 'iperf3' | 'tc' | 'netem' | 'tun' | 'native' | 'systemd' | 'prometheus' | 'tmux' | 'etcd' | 'nft';

export interface PrereqResult {
  readonly ok: boolean;
  /** Names of the missing prerequisites. */
  readonly missing: PrereqName[];
  /** One human-readable line per missing prerequisite: what, and how to install it. */
  readonly reasons: string[];
}

export const CHARON_PATH = '/usr/lib/ipsec/charon';
export const CHARON_PLUGIN_DIR = '/usr/lib/ipsec/plugins';

/** Plugins the harness loads (see charon.ts) and the Debian package holding each. */
const CHARON_PLUGIN_PACKAGES: Record<string, string> = {
  random: 'libstrongswan',
  nonce: 'libstrongswan',
  openssl: 'libstrongswan-standard-plugins',
  aes: 'libstrongswan',
  gcm: 'libstrongswan-standard-plugins',
  sha2: 'libstrongswan',
  hmac: 'libstrongswan',
  kdf: 'libstrongswan',
  curve25519: 'libstrongswan-extra-plugins',
  gmp: 'libstrongswan',
  'kernel-libipsec': 'libcharon-extra-plugins',
  'kernel-netlink': 'libstrongswan',
  'socket-default': 'strongswan-libcharon',
  vici: 'strongswan-swanctl',
  // Certificate authentication (charon.ts CERT_PLUGINS).
  pem: 'libstrongswan',
  pkcs1: 'libstrongswan',
  pkcs8: 'libstrongswan',
  pubkey: 'libstrongswan',
  x509: 'libstrongswan',
  constraints: 'libstrongswan',
  revocation: 'libstrongswan',
};

const APT_STRONGSWAN =
  'apt-get install strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libstrongswan-extra-plugins libcharon-extra-plugins';

const ALL_NAMES: readonly PrereqName[] = ['root', 'netns', 'charon', 'swanctl', 'tshark', 'iperf3', 'tc', 'netem', 'tun', 'native', 'systemd', 'prometheus', 'tmux', 'etcd', 'nft'];

const cache = new Map<PrereqName, string | null>();

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    try {
      accessSync(`${dir}/${bin}`, constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function probe(cmd: string, args: string[]): { ok: boolean; detail: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  if (r.error) return { ok: false, detail: r.error.message };
  return { ok: r.status === 0, detail: (r.stderr || r.stdout || '').trim() };
}

/** internal: returns null when present, else the reason line. */
function check(name: PrereqName): string | null {
  switch (name) {
    case 'root':
      return isRoot() ? null : 'root: not running as root (network namespaces and charon need uid 0; run the interop tests with sudo)';
    case 'netns': {
      if (!onPath('ip')) return 'netns: `ip` not found — apt-get install iproute2';
      if (!onPath('unshare')) return 'netns: `unshare` not found — apt-get install util-linux';
      if (!isRoot()) return 'netns: creating network namespaces needs root';
      const p = probe('unshare', ['--net', 'true']);
      return p.ok ? null : `netns: the kernel refused a new network namespace (${p.detail})`;
    }
    case 'charon': {
      try {
        accessSync(CHARON_PATH, constants.X_OK);
      } catch {
        return `charon: ${CHARON_PATH} not installed — ${APT_STRONGSWAN}`;
      }
      const missing = Object.keys(CHARON_PLUGIN_PACKAGES).filter(
        (p) => !existsSync(`${CHARON_PLUGIN_DIR}/libstrongswan-${p}.so`),
      );
      if (missing.length > 0) {
        const pkgs = [...new Set(missing.map((p) => CHARON_PLUGIN_PACKAGES[p]))].join(' ');
        return `charon: plugins missing (${missing.join(', ')}) — apt-get install ${pkgs}`;
      }
      return null;
    }
    case 'swanctl':
      return onPath('swanctl') ? null : `swanctl: not installed — ${APT_STRONGSWAN}`;
    case 'tshark':
      if (!onPath('tshark')) return 'tshark: not installed — apt-get install tshark';
      if (!onPath('dumpcap')) return 'tshark: dumpcap not found — apt-get install tshark (wireshark-common)';
      return null;
    case 'iperf3':
      return onPath('iperf3') ? null : 'iperf3: not installed — apt-get install iperf3';
    case 'tc':
      return onPath('tc') ? null : 'tc: not installed — apt-get install iproute2';
    case 'nft':
      return onPath('nft') ? null : 'nft: not installed — apt-get install nftables';
    case 'netem': {
      if (!onPath('tc') || !onPath('unshare') || !isRoot()) return 'netem: needs root, tc and unshare';
      const p = probe('unshare', ['--net', 'sh', '-c', 'ip link set lo up && tc qdisc add dev lo root netem loss 1%']);
      return p.ok ? null : `netem: the kernel has no netem qdisc (sch_netem) — ${p.detail || 'tc failed'}`;
    }
    case 'tun':
      return existsSync('/dev/net/tun') ? null : 'tun: /dev/net/tun missing (kernel-libipsec and the TUN data plane need it)';
    case 'systemd':
      return onPath('systemd-analyze') ? null : 'systemd: systemd-analyze not found — apt-get install systemd';
    case 'prometheus':
      return prometheusParserUnavailable();
    case 'tmux':
      return onPath('tmux') ? null : 'tmux: not installed — apt-get install tmux';
    case 'etcd':
      if (!onPath('etcd')) return 'etcd: not installed — apt-get install etcd-server';
      return onPath('etcdctl') ? null : 'etcd: etcdctl not installed — apt-get install etcd-client';
    case 'native': {
      const reason = nativeIoUnavailable();
      return reason === null ? null : `native: the native I/O addon is unavailable (${reason}) — npm run build:native (needs make and a C compiler)`;
    }
  }
}

/** Checks the named prerequisites (cached per process). */
export function requirePrereqs(names: readonly PrereqName[]): PrereqResult {
  if (!Array.isArray(names)) throw new TypeError('requirePrereqs: names must be an array');
  const missing: PrereqName[] = [];
  const reasons: string[] = [];
  for (const name of names) {
    if (!ALL_NAMES.includes(name)) throw new TypeError(`requirePrereqs: unknown prerequisite ${JSON.stringify(name)}`);
    if (!cache.has(name)) cache.set(name, check(name));
    const reason = cache.get(name);
    if (reason) {
      missing.push(name);
      reasons.push(reason);
    }
  }
  return { ok: missing.length === 0, missing, reasons };
}

/** True when running under CI (`CI=true`): missing prerequisites fail instead of skipping. */
export function inCi(): boolean {
  return process.env.CI === 'true';
}

/**
 * Applies the policy for one test: returns when everything is present; in CI
 * throws (the test fails and names what is missing); elsewhere warns on
 * stderr and calls `ctx.skip()`, which ends the test as skipped.
 */
export function skipUnlessPrereqs(ctx: Pick<TestContext, 'skip' | 'task'>, names: readonly PrereqName[]): void {
  const r = requirePrereqs(names);
  if (r.ok) return;
  const title = ctx.task?.name ?? 'interop test';
  if (inCi()) {
    throw new Error(`interop prerequisites missing in CI for "${title}":\n  ${r.reasons.join('\n  ')}`);
  }
  process.stderr.write(
    `\n!!! SKIPPED interop "${title}": ${r.missing.join(', ')} missing\n!!!   ${r.reasons.join('\n!!!   ')}\n`,
  );
  ctx.skip(`missing: ${r.missing.join(', ')}`);
}

/**
 * Declares a test that needs `prereqs`: one line instead of a guard in every
 * test body. `timeoutMs` bounds the whole test.
 */
export function interopTest(
  name: string,
  prereqs: readonly PrereqName[],
  fn: (ctx: TestContext) => unknown,
  timeoutMs?: number,
): void {
  test(
    name,
    async (ctx) => {
      skipUnlessPrereqs(ctx, prereqs);
      await fn(ctx);
    },
    timeoutMs,
  );
}
