// Sealing of the records a cluster keeps in etcd (architecture §8): a clone's
// IKE state travels between nodes only as AES-256-GCM ciphertext under the
// cluster key, so etcd, its operators and its backups never see key bytes.
//
// - The cluster key is derived with HKDF-SHA-256 from a secret in a file only
//   its owner may read (mode 0600 or stricter; anything wider is refused as a
//   configuration error, exit 2), and lives in a KeyObject, not in a
//   JavaScript buffer.
// - The additional data binds the record's key path, epoch and owner: a record
//   copied under another key path, replayed from an older epoch or claimed by
//   another owner does not open.
// - Opening is on bytes read from etcd, i.e. untrusted: it never throws and
//   returns a typed failure.
// - Rotation: a node may hold the secrets of earlier rotations besides the
//   current one (cluster.previous_sealing_key_files). Records, connection
//   hashes and liveness probes made under any of them are accepted; all that
//   is new is made under the current one. Every write of a record seals it
//   anew, so records move to the current key as their clones are written.
//
// Owner: the main thread (the cluster membership and handoff code).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { ConfigError } from '../config/errors.js';
import type { ClusterConfig } from '../config/types.js';
import type { Result } from '../wire/result.js';
import { wipe } from '../crypto/random.js';

/** Sealed record layout: version (1) | nonce (12) | ciphertext | tag (16). */
const SEAL_VERSION = 1;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const KEY_LENGTH = 32;
/** A secret shorter than this is refused: HKDF cannot add entropy (RFC 5869 §3.3). */
export const MIN_SECRET_BYTES = 32;
/** A secret file longer than this is not a secret file. */
export const MAX_SECRET_BYTES = 4096;
const HKDF_SALT = 'ikeclone cluster key v1';

/** What a sealed record is bound to: where it is stored, in which epoch, for which owner. */
export interface SealBinding {
  keyPath: string;
  epoch: number;
  owner: string;
}

/** The cluster key: AES-256-GCM for sealed records, derived once per process. */
export class ClusterKey {
  /** Records that opened only under a previous key: while it grows, records under it are still in etcd. */
  openedWithPrevious = 0;

  private constructor(
    private readonly key: KeyObject,
    /** A second key from the same secret, for MACs of shared state (the connections' hash). */
    private readonly macKey: KeyObject,
    /** A third, for the liveness probe's pings and pongs (liveness-probe.ts): never the sealing key itself. */
    private readonly probeKey: KeyObject,
    /** Keys of earlier rotations, tried after this one (withPrevious). */
    private readonly previous: readonly ClusterKey[] = [],
  ) {}

  /** HKDF-SHA-256 (RFC 5869) from `secret`, bound to the cluster name so two clusters sharing a secret still differ. */
  static derive(secret: Uint8Array, clusterName: string): ClusterKey {
    if (secret.length < MIN_SECRET_BYTES) throw new RangeError(`the cluster secret must be at least ${MIN_SECRET_BYTES} bytes`);
    const keyObject = (label: string): KeyObject => {
      const derived = new Uint8Array(hkdfSync('sha256', secret, HKDF_SALT, `${label}/${clusterName}`, KEY_LENGTH));
      const key = createSecretKey(derived);
      wipe(derived);
      return key;
    };
    return new ClusterKey(keyObject('record sealing'), keyObject('state mac'), keyObject('liveness probe'));
  }

  /**
   * A key that seals as this one does and accepts `previous` too (earlier
   * rotations, newest first); this key is left as it is. Of each previous
   * key only its own key counts, not the ones it accepts in turn.
   */
  withPrevious(previous: readonly ClusterKey[]): ClusterKey {
    return new ClusterKey(this.key, this.macKey, this.probeKey, [...previous]);
  }

  /** How many keys of earlier rotations are accepted. */
  get previousKeys(): number {
    return this.previous.length;
  }

  /**
   * HMAC-SHA-256 of `bytes` (hex): a digest of shared configuration that can
   * sit in etcd without helping anyone guess the secrets inside it.
   */
  mac(bytes: Uint8Array): string {
    return createHmac('sha256', this.macKey).update(bytes).digest('hex');
  }

  /** mac() under this key, then under each previous one: the digests a node accepts. */
  acceptedMacs(bytes: Uint8Array): string[] {
    return [this.mac(bytes), ...this.previous.map((k) => k.mac(bytes))];
  }

  /** HMAC-SHA-256 of a liveness probe message under the probe's own key (liveness-probe.ts truncates it). */
  probeMac(bytes: Uint8Array): Buffer {
    return createHmac('sha256', this.probeKey).update(bytes).digest();
  }

  /** probeMac() under this key, then under each previous one: the MACs a received probe may carry. */
  acceptedProbeMacs(bytes: Uint8Array): Buffer[] {
    return [this.probeMac(bytes), ...this.previous.map((k) => k.probeMac(bytes))];
  }

  /** Seal `plaintext` for `binding`; the caller wipes its plaintext afterwards. */
  seal(binding: SealBinding, plaintext: Uint8Array): Uint8Array {
    const nonce = randomBytes(NONCE_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(additionalData(binding));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const out = new Uint8Array(1 + NONCE_LENGTH + body.length + TAG_LENGTH);
    out[0] = SEAL_VERSION;
    out.set(nonce, 1);
    out.set(body, 1 + NONCE_LENGTH);
    out.set(cipher.getAuthTag(), 1 + NONCE_LENGTH + body.length);
    return out;
  }

  /** Open a record read from etcd (untrusted bytes) under this key, else a previous one: never throws. */
  open(binding: SealBinding, sealed: Uint8Array): Result<Uint8Array, string> {
    const opened = this.openUnderThisKey(binding, sealed);
    if (opened.ok || this.previous.length === 0 || !sealedShapeOk(sealed)) return opened;
    for (const k of this.previous) {
      const old = k.openUnderThisKey(binding, sealed);
      if (!old.ok) continue;
      this.openedWithPrevious++;
      return old;
    }
    return { ok: false, error: 'sealed record does not open (wrong key, key path, epoch or owner; no previous key opens it either)' };
  }

  /** Which key a record opens under: this one, a previous one, or none (`ikeclone cluster status`); the plaintext is wiped. */
  sealedUnder(binding: SealBinding, sealed: Uint8Array): 'current' | 'previous' | null {
    for (const [i, k] of [this, ...this.previous].entries()) {
      const opened = k.openUnderThisKey(binding, sealed);
      if (!opened.ok) continue;
      wipe(opened.value);
      return i === 0 ? 'current' : 'previous';
    }
    return null;
  }

  private openUnderThisKey(binding: SealBinding, sealed: Uint8Array): Result<Uint8Array, string> {
    if (sealed.length < 1 + NONCE_LENGTH + TAG_LENGTH) return { ok: false, error: 'sealed record too short' };
    if (sealed[0] !== SEAL_VERSION) return { ok: false, error: `unknown sealed record version ${sealed[0]}` };
    const nonce = sealed.subarray(1, 1 + NONCE_LENGTH);
    const body = sealed.subarray(1 + NONCE_LENGTH, sealed.length - TAG_LENGTH);
    const tag = sealed.subarray(sealed.length - TAG_LENGTH);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_LENGTH });
      decipher.setAAD(additionalData(binding));
      decipher.setAuthTag(tag);
      const out = Buffer.concat([decipher.update(body), decipher.final()]);
      return { ok: true, value: new Uint8Array(out.buffer, out.byteOffset, out.byteLength) };
    } catch {
      // GCM tag mismatch: another key, another key path, epoch or owner, or altered bytes.
      return { ok: false, error: 'sealed record does not open (wrong key, key path, epoch or owner)' };
    }
  }
}

/** Long enough and of our version: only then is another key worth trying. */
function sealedShapeOk(sealed: Uint8Array): boolean {
  return sealed.length >= 1 + NONCE_LENGTH + TAG_LENGTH && sealed[0] === SEAL_VERSION;
}

/** The additional data: a label, then each bound field length-prefixed, so no two bindings encode alike. */
function additionalData(b: SealBinding): Buffer {
  if (!Number.isSafeInteger(b.epoch) || b.epoch < 0) throw new RangeError('epoch must be a non-negative integer');
  const path = Buffer.from(b.keyPath, 'utf8');
  const owner = Buffer.from(b.owner, 'utf8');
  const head = Buffer.from('ikeclone sealed record v1\0', 'utf8');
  const out = Buffer.alloc(head.length + 4 + path.length + 8 + 4 + owner.length);
  let off = head.copy(out, 0);
  off = out.writeUInt32BE(path.length, off);
  off += path.copy(out, off);
  off = out.writeBigUInt64BE(BigInt(b.epoch), off);
  off = out.writeUInt32BE(owner.length, off);
  owner.copy(out, off);
  return out;
}

/**
 * Read the cluster secret from `file` and derive the cluster key. The file must
 * be a regular file no one but its owner can read or write (0600 or stricter):
 * anything else is a ConfigError naming `configPath` (exit 2), as is a secret
 * too short or too long.
 */
export function loadClusterKey(file: string, clusterName: string, configPath = 'cluster.sealing_key_file'): ClusterKey {
  const refuse = (problem: string, expected: string): never => {
    throw new ConfigError(file, [{ path: configPath, problem, expected }]);
  };
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    return refuse(`cannot open the sealing key file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'a readable file');
  }
  const secret = new Uint8Array(MAX_SECRET_BYTES + 1);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) refuse('the sealing key file is not a regular file', 'a regular file with mode 0600');
    if ((st.mode & 0o077) !== 0) {
      refuse(`mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} lets others read or write the sealing key`, 'a file with mode 0600 or stricter');
    }
    let length = 0;
    for (;;) {
      const n = readSync(fd, secret, length, secret.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > MAX_SECRET_BYTES) refuse(`the sealing key file is longer than ${MAX_SECRET_BYTES} bytes`, 'a secret of 32 to 4096 bytes');
    }
    if (length < MIN_SECRET_BYTES) refuse(`the sealing key is ${length} bytes`, `a secret of at least ${MIN_SECRET_BYTES} bytes (e.g. head -c 32 /dev/urandom)`);
    return ClusterKey.derive(secret.subarray(0, length), clusterName);
  } finally {
    wipe(secret);
    closeSync(fd);
  }
}

/** The cluster key of `cluster:` with the previous ones it accepts (previous_sealing_key_files); ConfigError as loadClusterKey. */
export function loadClusterKeyRing(cluster: Pick<ClusterConfig, 'name' | 'sealingKeyFile' | 'previousSealingKeyFiles'>): ClusterKey {
  const previous = (cluster.previousSealingKeyFiles ?? []).map((f, i) => loadClusterKey(f, cluster.name, `cluster.previous_sealing_key_files[${i}]`));
  return loadClusterKey(cluster.sealingKeyFile, cluster.name).withPrevious(previous);
}
