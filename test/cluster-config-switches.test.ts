// The yes/no switches of the cluster: section (control/config/cluster-section.ts):
// absent by default, yes and no parsed, anything else a configuration error that
// names the key and its line (exit 2 from the CLI).
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../control/config/load.js';

const SWITCHES = [
  // Heartbeat and revoke silent members' leases (control/cluster/silent-member.ts): off unless yes.
  { key: 'suspect_silent', field: 'suspectSilent' },
  // Admit an arriving clone's Child SA in etcd before creating it (peer-admission.ts admitOwn): off unless yes.
  { key: 'admit_arrival_child', field: 'admitArrivalChild' },
] as const;

describe('cluster: yes/no switches', () => {
  test.each(SWITCHES)('cluster.$key: absent by default, yes and no parsed, anything else names the key', ({ key, field }) => {
    const dir = mkdtempSync(join(tmpdir(), 'ikc-switch-'));
    try {
      const secret = join(dir, 'cluster.secret');
      writeFileSync(secret, randomBytes(32), { mode: 0o600 });
      const text = (extra: string) =>
        `cluster:\n  name: c1\n  node: gw-a\n  address: 192.0.2.1\n  etcd: [http://127.0.0.1:2379]\n  sealing_key_file: ${secret}\n${extra}`;
      expect(parseConfig(text('')).cluster![field]).toBeUndefined();
      expect(parseConfig(text(`  ${key}: no\n`)).cluster![field]).toBe(false);
      expect(parseConfig(text(`  ${key}: yes\n`)).cluster![field]).toBe(true);
      expect(() => parseConfig(text(`  ${key}: sometimes\n`))).toThrow(new RegExp(`<config>:7: cluster\\.${key}: .*expected yes or no`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
