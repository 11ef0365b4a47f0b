// The yes/no switches of the cluster: section (control/config/cluster-section.ts):
// absent by default, yes and no parsed, anything else a configuration error that
// names the key and its line (exit 2 from the CLI); and cluster.probe_port, the
// liveness probe's port (control/cluster/liveness-probe.ts): 1..65535, 4501 when absent.
import { describe, expect, test } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../control/config/load.js';
import { DEFAULT_PROBE_PORT } from '../control/cluster/liveness-probe.js';

const SWITCHES = [
  // Heartbeat and revoke the leases of silent members that do not answer the liveness probe
  // (control/cluster/silent-member.ts): on unless no (control/cluster/node.ts reads absent as yes).
  { key: 'suspect_silent', field: 'suspectSilent' },
  // Admit an arriving clone's Child SA in etcd before creating it (peer-admission.ts admitOwn): off unless yes.
  { key: 'admit_arrival_child', field: 'admitArrivalChild' },
] as const;

/** A configuration with a cluster: section and `extra` lines in it (line 7 onwards); cleanup removes its directory. */
function clusterText(): { text: (extra: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'ikc-switch-'));
  const secret = join(dir, 'cluster.secret');
  writeFileSync(secret, randomBytes(32), { mode: 0o600 });
  return {
    text: (extra) => `cluster:\n  name: c1\n  node: gw-a\n  address: 192.0.2.1\n  etcd: [http://127.0.0.1:2379]\n  sealing_key_file: ${secret}\n${extra}`,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

describe('cluster.probe_port', () => {
  test('absent: the default port (4501, next to NAT-T); 1..65535 parsed; anything else names the key and its line', () => {
    const { text, cleanup } = clusterText();
    try {
      expect(DEFAULT_PROBE_PORT).toBe(4501);
      expect(parseConfig(text('')).cluster!.probePort).toBeUndefined();
      for (const port of [1, 4501, 65535]) expect(parseConfig(text(`  probe_port: ${port}\n`)).cluster!.probePort).toBe(port);
      for (const bad of ['0', '65536', '-1', '4501.5', 'udp', '"4501"', '[4501]']) {
        expect(() => parseConfig(text(`  probe_port: ${bad}\n`)), bad).toThrow(/<config>:7: cluster\.probe_port: .*expected an integer from 1 to 65535/);
      }
    } finally {
      cleanup();
    }
  });
});

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
