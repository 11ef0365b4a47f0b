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

describe('cluster.previous_sealing_key_files', () => {
  test('absent: none; a list of 0600 secret files, resolved; a file open to others, the current one, one listed twice, an empty or too long list name the key and its line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ikc-rotate-'));
    try {
      const file = (name: string, mode = 0o600) => {
        const f = join(dir, name);
        writeFileSync(f, randomBytes(32), { mode });
        return f;
      };
      const current = file('new.secret');
      const [old1, old2, wide] = [file('old1.secret'), file('old2.secret'), file('wide.secret', 0o644)];
      const text = (extra: string) =>
        `cluster:\n  name: c1\n  node: gw-a\n  address: 192.0.2.1\n  etcd: [http://127.0.0.1:2379]\n  sealing_key_file: ${current}\n${extra}`;
      expect(parseConfig(text('')).cluster!.previousSealingKeyFiles).toBeUndefined();
      expect(parseConfig(text(`  previous_sealing_key_files: [${old1}, ${old2}]\n`)).cluster!.previousSealingKeyFiles).toEqual([old1, old2]);
      expect(() => parseConfig(text(`  previous_sealing_key_files: [${old1}, ${wide}]\n`))).toThrow(/<config>:7: cluster\.previous_sealing_key_files\[1\]: mode 0644 lets others read or write the sealing key; expected a file with mode 0600 or stricter/);
      expect(() => parseConfig(text(`  previous_sealing_key_files: [${current}]\n`))).toThrow(/<config>:7: cluster\.previous_sealing_key_files\[0\]: .* is sealing_key_file; expected a secret of an earlier rotation/);
      expect(() => parseConfig(text(`  previous_sealing_key_files: [${old1}, ${old1}]\n`))).toThrow(/cluster\.previous_sealing_key_files\[1\]: .* is listed twice/);
      expect(() => parseConfig(text(`  previous_sealing_key_files: [${join(dir, 'absent')}]\n`))).toThrow(/cluster\.previous_sealing_key_files\[0\]: cannot use .*absent \(ENOENT\)/);
      expect(() => parseConfig(text('  previous_sealing_key_files: []\n'))).toThrow(/cluster\.previous_sealing_key_files: .*expected a list of 1 to 4 secret files/);
      const five = ['a', 'b', 'c', 'd', 'e'].map((n) => file(`${n}.secret`));
      expect(() => parseConfig(text(`  previous_sealing_key_files: [${five.join(', ')}]\n`))).toThrow(/expected a list of 1 to 4 secret files/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
