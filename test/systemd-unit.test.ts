// The service unit as systemd reads it: `systemd-analyze verify` must accept
// it without a single warning (it exits 0 on unknown keys and bad values, so
// its output is checked too), and it keeps the hardening it promises.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { interopTest } from './support/prereq.js';
import { REPO_ROOT } from './support/cli-proc.js';

const UNIT = readFileSync(join(REPO_ROOT, 'systemd/ikeclone.service'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'ikc-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The unit's [Service] assignments (a key may repeat). */
function assignments(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

function verify(text: string): { status: number | null; output: string } {
  const path = join(dir, 'ikeclone.service');
  writeFileSync(path, text);
  const r = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * verify checks that ExecStart's program exists: point it at this checkout's
 * built CLI (the package's bin) instead of the installed /usr/local/bin one.
 */
function forThisCheckout(unit: string): string {
  const bin = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.ikeclone!;
  return unit.replace('/usr/local/bin/ikeclone', `${process.execPath} ${resolve(REPO_ROOT, bin)}`);
}

describe('systemd/ikeclone.service', () => {
  interopTest('passes systemd-analyze verify with no warning', ['systemd'], () => {
    const r = verify(forThisCheckout(UNIT));
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  interopTest('the check itself notices a misspelt key and a bad value', ['systemd'], () => {
    expect(verify(forThisCheckout(UNIT).replace(/^ProtectSystem=/m, 'ProtectSytem=')).output).toMatch(/Unknown key 'ProtectSytem'/);
    expect(verify(forThisCheckout(UNIT).replace(/^Type=notify$/m, 'Type=notifyy')).output).toMatch(/service type/);
  });

  it('is a notify service with reload, a watchdog and only the capabilities a gateway needs', () => {
    const a = assignments(UNIT);
    expect(a.get('Type')).toEqual(['notify']);
    expect(a.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(a.get('WatchdogSec')?.length).toBe(1);
    const caps = ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'];
    expect(a.get('CapabilityBoundingSet')![0]!.split(/\s+/).sort()).toEqual(caps);
    expect(a.get('ProtectSystem')).toEqual(['strict']);
    expect(a.get('PrivateTmp')).toEqual(['yes']);
    expect(a.get('NoNewPrivileges')).toEqual(['yes']);
    expect(a.get('RuntimeDirectory')).toEqual(['ikeclone']);
    expect(a.get('StateDirectory')).toEqual(['ikeclone']);
    // The control socket the unit names is where the CLI looks for root (README: control socket).
    expect(a.get('ExecStart')![0]).toContain('--socket /run/ikeclone/ikeclone.sock');
  });
});
