// Sealed cluster records (control/cluster/seal.ts): AES-256-GCM under a key
// derived from a 0600 secret file, bound to key path, epoch and owner.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { hkdfSync, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ClusterKey, loadClusterKey, type SealBinding } from '../control/cluster/seal.js';
import { ConfigError } from '../control/config/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-seal-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function secretFile(mode: number, bytes: Uint8Array = randomBytes(32)): string {
  const file = join(dir, 'cluster.key');
  writeFileSync(file, bytes, { mode });
  chmodSync(file, mode);
  return file;
}

const binding: SealBinding = { keyPath: '/ikeclone/v1/c1/clones/7/1/ike', epoch: 4, owner: 'node-b' };
const plaintext = new TextEncoder().encode(JSON.stringify({ skD: 'a'.repeat(64), note: 'IKE state of clone 1' }));

describe('cluster record sealing', () => {
  test('a sealed record opens under the same key and binding, and holds neither plaintext nor key bytes', () => {
    const secret = randomBytes(32);
    const key = loadClusterKey(secretFile(0o600, secret), 'c1');
    const sealed = key.seal(binding, plaintext);
    const opened = key.open(binding, sealed);
    expect(opened.ok).toBe(true);
    if (opened.ok) expect(Buffer.from(opened.value).equals(Buffer.from(plaintext))).toBe(true);
    const derived = Buffer.from(hkdfSync('sha256', secret, 'ikeclone cluster key v1', 'record sealing/c1', 32));
    const blob = Buffer.from(sealed);
    expect(blob.includes(Buffer.from(plaintext.subarray(0, 16)))).toBe(false);
    expect(blob.includes(derived.subarray(0, 8))).toBe(false);
    expect(blob.includes(secret.subarray(0, 8))).toBe(false);
    // The key object shows no key bytes when logged or serialised.
    const shown = inspect(key, { depth: 5 }) + JSON.stringify(key);
    expect(shown.includes(derived.toString('hex').slice(0, 16))).toBe(false);
    expect(shown.includes(derived.toString('base64').slice(0, 12))).toBe(false);
  });

  test('two seals of the same record differ (fresh nonce each time)', () => {
    const key = ClusterKey.derive(randomBytes(32), 'c1');
    expect(Buffer.from(key.seal(binding, plaintext)).equals(Buffer.from(key.seal(binding, plaintext)))).toBe(false);
  });

  test.each([
    ['another key path', { ...binding, keyPath: '/ikeclone/v1/c1/clones/7/2/ike' }],
    ['an older epoch', { ...binding, epoch: 3 }],
    ['another owner', { ...binding, owner: 'node-c' }],
    ['another cluster path with the same suffix', { ...binding, keyPath: '/ikeclone/v1/c2/clones/7/1/ike' }],
  ])('a record copied under %s does not open', (_what, other) => {
    const key = ClusterKey.derive(randomBytes(32), 'c1');
    const opened = key.open(other, key.seal(binding, plaintext));
    expect(opened.ok).toBe(false);
  });

  test('another cluster key, altered bytes and truncated records are refused without throwing', () => {
    const secret = randomBytes(32);
    const key = ClusterKey.derive(secret, 'c1');
    const sealed = key.seal(binding, plaintext);
    expect(ClusterKey.derive(randomBytes(32), 'c1').open(binding, sealed).ok).toBe(false);
    // Same secret, another cluster name: another key.
    expect(ClusterKey.derive(secret, 'c2').open(binding, sealed).ok).toBe(false);
    for (let i = 0; i < sealed.length; i += 7) {
      const bad = Uint8Array.from(sealed);
      bad[i]! ^= 0x01;
      expect(key.open(binding, bad).ok).toBe(false);
    }
    for (const n of [0, 1, 12, 28, sealed.length - 1]) expect(key.open(binding, sealed.subarray(0, n)).ok).toBe(false);
  });

  test.each([0o644, 0o640, 0o604, 0o660, 0o602])('a secret file with mode %o is refused as a configuration error', (mode) => {
    const file = secretFile(mode);
    expect(() => loadClusterKey(file, 'c1')).toThrow(ConfigError);
    expect(() => loadClusterKey(file, 'c1')).toThrow(/mode 0\d\d\d lets others read or write the sealing key.*0600/);
  });

  test('0400 is accepted; a short secret, a missing file and a directory are refused', () => {
    expect(loadClusterKey(secretFile(0o400), 'c1')).toBeInstanceOf(ClusterKey);
    expect(() => loadClusterKey(secretFile(0o600, randomBytes(16)), 'c1')).toThrow(/16 bytes; expected a secret of at least 32 bytes/);
    expect(() => loadClusterKey(join(dir, 'absent'), 'c1')).toThrow(/cannot open the sealing key file \(ENOENT\)/);
    chmodSync(dir, 0o700);
    expect(() => loadClusterKey(dir, 'c1')).toThrow(/not a regular file/);
  });
});

describe('a sealing key rotation (previous keys accepted)', () => {
  const [oldSecret, newSecret, otherSecret] = [randomBytes(32), randomBytes(32), randomBytes(32)];
  const key = (secret: Uint8Array, previous: Uint8Array[] = []) => ClusterKey.derive(secret, 'c1').withPrevious(previous.map((p) => ClusterKey.derive(p, 'c1')));

  test('withPrevious makes a new key: the one it is called on still accepts only itself', () => {
    const current = ClusterKey.derive(newSecret, 'c1');
    const ring = current.withPrevious([ClusterKey.derive(oldSecret, 'c1')]);
    const sealedOld = key(oldSecret).seal(binding, plaintext);
    expect(ring).not.toBe(current);
    expect(ring.open(binding, sealedOld).ok).toBe(true);
    expect([current.previousKeys, current.open(binding, sealedOld).ok]).toEqual([0, false]);
    // Both seal under the same key.
    expect(current.open(binding, ring.seal(binding, plaintext)).ok).toBe(true);
    expect(current.acceptedMacs(plaintext)).toHaveLength(1);
    expect(ring.acceptedMacs(plaintext)).toHaveLength(2);
  });

  test('a record sealed under an earlier key opens through a previous one, counted; never with the new key alone, nor with the wrong binding', () => {
    const sealedOld = key(oldSecret).seal(binding, plaintext);
    const ring = key(newSecret, [otherSecret, oldSecret]);
    expect(ring.previousKeys).toBe(2);
    const opened = ring.open(binding, sealedOld);
    expect(opened.ok && Buffer.from(opened.value).equals(Buffer.from(plaintext))).toBe(true);
    expect(ring.openedWithPrevious).toBe(1);
    // Under its own key: no previous key needed, nothing counted.
    expect(ring.open(binding, ring.seal(binding, plaintext)).ok).toBe(true);
    expect(ring.openedWithPrevious).toBe(1);
    // The binding still holds under a previous key.
    expect(ring.open({ ...binding, epoch: 5 }, sealedOld)).toEqual({ ok: false, error: expect.stringMatching(/does not open .*no previous key opens it either/) });
    expect(key(newSecret).open(binding, sealedOld).ok).toBe(false);
    expect(ring.openedWithPrevious).toBe(1);
  });

  test('new records are sealed under the current key only: a node holding only the old one cannot open them', () => {
    const ring = key(newSecret, [oldSecret]);
    const sealed = ring.seal(binding, plaintext);
    expect(key(oldSecret).open(binding, sealed).ok).toBe(false);
    expect(key(newSecret).open(binding, sealed).ok).toBe(true);
    expect(key(oldSecret, [newSecret]).sealedUnder(binding, sealed)).toBe('previous');
    expect(ring.sealedUnder(binding, sealed)).toBe('current');
    expect(key(otherSecret).sealedUnder(binding, sealed)).toBeNull();
  });

  test('hashes and probe MACs: made under the current key, accepted under any', () => {
    const bytes = new TextEncoder().encode('connections');
    const ring = key(newSecret, [oldSecret]);
    expect(ring.mac(bytes)).toBe(key(newSecret).mac(bytes));
    expect(ring.acceptedMacs(bytes)).toEqual([key(newSecret).mac(bytes), key(oldSecret).mac(bytes)]);
    expect(ring.acceptedProbeMacs(bytes).map((m) => m.toString('hex'))).toEqual([key(newSecret).probeMac(bytes).toString('hex'), key(oldSecret).probeMac(bytes).toString('hex')]);
  });
});
