// Ephemeral key exchange for the KE payload (RFC 7296 §1.2, §3.4) in the
// groups of SUPPORTED_KE_GROUPS, on node:crypto (OpenSSL) for speed.
//
// Peer public values are untrusted: computeSharedSecret checks their length
// and validity and returns a CryptoResult, never throws. createKeyExchange
// throws only for an unsupported group or a malformed injected private key,
// both programmer errors.
//
// Secrets: the private key lives in the OpenSSL object; every JavaScript copy
// of it is wiped as soon as it has been handed over. destroy() replaces the
// native private key of the ECP and MODP groups (OpenSSL clears the old one
// when it frees it); for X25519 it can only drop the KeyObject, which OpenSSL
// clears when it is collected.

import {
  createDiffieHellman,
  createECDH,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  getDiffieHellman,
  type DiffieHellman,
  type ECDH,
  type KeyObject,
} from 'node:crypto';
import { KeGroup } from '../wire/constants.js';
import { isAllZero, view } from './bytes.js';
import { fail, ok, type CryptoResult } from './result.js';
import { drawRandom, systemRandom, wipe, type RandomSource } from './random.js';

export interface KeyExchange {
  /** Transform Type 4 ID (KeGroup). */
  readonly group: number;
  /** Our public value, exactly as it goes into the Key Exchange Data of the KE payload. */
  readonly publicKey: Uint8Array;
  /**
   * The shared secret g^ir from the peer's Key Exchange Data, in the form the
   * key derivation uses (RFC 7296 §2.14 with the group's own RFC). Invalid
   * peer values give `{ ok: false }`.
   */
  computeSharedSecret(peerPublic: Uint8Array): CryptoResult<Uint8Array>;
  /** Drops the private key; computeSharedSecret fails afterwards. */
  destroy(): void;
}

export interface KeyExchangeOptions {
  /** Fixed private key for deterministic tests (X25519 scalar, EC scalar, or MODP exponent, big-endian). */
  privateKey?: Uint8Array;
  /** Source of the private key when none is given (default: systemRandom). */
  random?: RandomSource;
}

/** Expected Key Exchange Data length for `group`, or undefined if the group is not implemented. */
export function keyExchangeLength(group: number): number | undefined {
  switch (group) {
    case KeGroup.CURVE25519: return X25519_LENGTH;
    case KeGroup.ECP_256: return 2 * P256.coordinateLength;
    case KeGroup.ECP_384: return 2 * P384.coordinateLength;
    case KeGroup.MODP_2048: return MODP_2048_LENGTH;
    default: return undefined;
  }
}

/** Creates our side of an ephemeral exchange in `group`; throws for a group outside SUPPORTED_KE_GROUPS. */
export function createKeyExchange(group: number, opts: KeyExchangeOptions = {}): KeyExchange {
  const random = opts.random ?? systemRandom;
  switch (group) {
    case KeGroup.CURVE25519: return new X25519Exchange(opts.privateKey, random);
    case KeGroup.ECP_256: return new EcpExchange(group, P256, opts.privateKey, random);
    case KeGroup.ECP_384: return new EcpExchange(group, P384, opts.privateKey, random);
    case KeGroup.MODP_2048: return new ModpExchange(opts.privateKey, random);
    default: throw new RangeError(`unsupported key exchange group ${group}`);
  }
}

// --- Curve25519, group 31 (RFC 8031, RFC 7748) ------------------------------

const X25519_LENGTH = 32;
// DER prefix of a PKCS#8 PrivateKeyInfo for id-X25519 (RFC 8410 §7).
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SHARED_ZERO = 'Curve25519 shared secret is all zero (small-order public value)';

/**
 * RFC 8031 §3.1: the KE data is the 32-byte u-coordinate, and the shared
 * secret is the X25519 output used as is.
 *
 * RFC 8031 §3.2 / RFC 7748 §5: the peer's most significant bit is masked and
 * non-canonical values (u >= 2^255 - 19) are accepted; OpenSSL does both.
 *
 * Policy on low-order points: RFC 7748 §6.1 makes the all-zero output check a
 * MAY and RFC 8031 does not require it. ikeclone rejects an all-zero shared
 * secret, because it means the peer sent a small-order point and the "shared"
 * secret is known to everyone; any other value is accepted.
 *
 * With the system random source the key pair is generated inside OpenSSL, so
 * the scalar never exists in JavaScript memory (and this is several times
 * faster than importing a DER key); an injected key or random source goes
 * through a PKCS#8 buffer that is wiped at once.
 */
class X25519Exchange implements KeyExchange {
  readonly group = KeGroup.CURVE25519;
  readonly publicKey: Uint8Array;
  #privateKey: KeyObject | undefined;

  constructor(privateKey: Uint8Array | undefined, random: RandomSource) {
    if (privateKey !== undefined && privateKey.length !== X25519_LENGTH) {
      throw new RangeError(`X25519 private key must be ${X25519_LENGTH} bytes, got ${privateKey.length}`);
    }
    if (privateKey === undefined && random === systemRandom) {
      this.#privateKey = generateKeyPairSync('x25519').privateKey;
    } else {
      const scalar = privateKey ?? drawRandom(random, X25519_LENGTH);
      const der = Buffer.concat([X25519_PKCS8_PREFIX, scalar]);
      try {
        this.#privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      } finally {
        wipe(der);
        if (scalar !== privateKey) wipe(scalar);
      }
    }
    const { x } = createPublicKey(this.#privateKey).export({ format: 'jwk' });
    this.publicKey = new Uint8Array(Buffer.from(x!, 'base64url'));
  }

  computeSharedSecret(peerPublic: Uint8Array): CryptoResult<Uint8Array> {
    if (!this.#privateKey) return fail('key exchange destroyed');
    if (!(peerPublic instanceof Uint8Array) || peerPublic.length !== X25519_LENGTH) {
      return fail(`Curve25519 public value must be ${X25519_LENGTH} bytes, got ${peerPublic?.length}`);
    }
    let secret: Uint8Array;
    try {
      const x = Buffer.from(peerPublic.buffer, peerPublic.byteOffset, peerPublic.byteLength).toString('base64url');
      const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
      secret = view(diffieHellman({ privateKey: this.#privateKey, publicKey }));
    } catch {
      // OpenSSL refuses to return an all-zero X25519 output; nothing else can fail here.
      return fail(X25519_SHARED_ZERO);
    }
    if (isAllZero(secret)) return fail(X25519_SHARED_ZERO);
    return ok(secret);
  }

  destroy(): void {
    // node:crypto offers no way to overwrite an X25519 KeyObject: dropping the
    // reference leaves the scalar to OpenSSL until the object is collected.
    this.#privateKey = undefined;
  }
}

// --- NIST curves, groups 19 and 20 (RFC 5903) --------------------------------

interface EcCurve {
  readonly opensslName: string;
  readonly label: string;
  readonly coordinateLength: number;
}
const P256: EcCurve = { opensslName: 'prime256v1', label: 'P-256', coordinateLength: 32 };
const P384: EcCurve = { opensslName: 'secp384r1', label: 'P-384', coordinateLength: 48 };
const SEC1_UNCOMPRESSED = 0x04;

/**
 * RFC 5903 §7: the KE data is x | y, each coordinate left-padded to the field
 * size, without the SEC1 0x04 prefix; the shared secret is the x coordinate
 * of the product point only (§7; §9: RFC 4753 used x | y, which is obsolete).
 *
 * Validation of the peer's point (SP 800-56A §5.6.2.3.4 partial validation):
 * the length must be exactly 2 * field size (so compressed points and the
 * point at infinity cannot be expressed), and OpenSSL's decoder rejects
 * coordinates >= p and points that are not on the curve. The curves have
 * cofactor 1, so no subgroup check is needed.
 */
class EcpExchange implements KeyExchange {
  readonly publicKey: Uint8Array;
  #ecdh: ECDH | undefined;

  constructor(readonly group: number, private readonly curve: EcCurve, privateKey: Uint8Array | undefined, random: RandomSource) {
    const ecdh = createECDH(curve.opensslName);
    if (privateKey !== undefined) {
      if (privateKey.length !== curve.coordinateLength || !trySetEcPrivateKey(ecdh, privateKey)) {
        throw new RangeError(`${curve.label} private key must be ${curve.coordinateLength} bytes in [1, n-1]`);
      }
    } else {
      // Rejection sampling: a uniform scalar in [1, n-1]. For P-256 and P-384
      // a draw falls outside with probability below 2^-32.
      for (;;) {
        const scalar = drawRandom(random, curve.coordinateLength);
        const accepted = trySetEcPrivateKey(ecdh, scalar);
        wipe(scalar);
        if (accepted) break;
      }
    }
    this.#ecdh = ecdh;
    this.publicKey = new Uint8Array(ecdh.getPublicKey().subarray(1));
  }

  computeSharedSecret(peerPublic: Uint8Array): CryptoResult<Uint8Array> {
    const ecdh = this.#ecdh;
    if (!ecdh) return fail('key exchange destroyed');
    const expected = 2 * this.curve.coordinateLength;
    if (!(peerPublic instanceof Uint8Array) || peerPublic.length !== expected) {
      return fail(`${this.curve.label} public value must be ${expected} bytes (x | y), got ${peerPublic?.length}`);
    }
    const point = new Uint8Array(1 + expected);
    point[0] = SEC1_UNCOMPRESSED;
    point.set(peerPublic, 1);
    let x: Buffer;
    try {
      x = ecdh.computeSecret(point);
    } catch {
      return fail(`${this.curve.label} public value is not a point on the curve`);
    }
    return ok(leftPad(x, this.curve.coordinateLength));
  }

  destroy(): void {
    // Replacing the key makes OpenSSL free (and clear) the old scalar now rather than at GC.
    this.#ecdh?.setPrivateKey(ONE);
    this.#ecdh = undefined;
  }
}

const ONE = Buffer.from([1]);

function trySetEcPrivateKey(ecdh: ECDH, scalar: Uint8Array): boolean {
  try {
    ecdh.setPrivateKey(scalar); // node checks 1 <= k < n
    return true;
  } catch {
    return false;
  }
}

// --- 2048-bit MODP, group 14 (RFC 3526 §3) -----------------------------------

const MODP_2048_LENGTH = 256;
/** The RFC 3526 §3 prime; node ships it as 'modp14'. */
const MODP_2048_PRIME: Buffer = getDiffieHellman('modp14').getPrime();
const MODP_2048_PRIME_MINUS_1: Buffer = (() => {
  const b = Buffer.from(MODP_2048_PRIME);
  b[b.length - 1] -= 1; // p is odd, so no borrow
  return b;
})();
/**
 * Private exponent length: 320 bits, the upper end of the range RFC 3526 §8
 * gives for this group's 110-160 bit strength (an exponent twice the
 * strength). A full-size exponent would cost eight times as much for no gain.
 */
const MODP_2048_EXPONENT_LENGTH = 40;

/**
 * RFC 7296 §3.4: the public value is g^x mod p left-padded with zeros to the
 * prime length; §2.14: g^ir is likewise 256 bytes with leading zeros kept.
 * The peer's value y is rejected unless 1 < y < p-1 (RFC 2631 §2.1.5 style
 * checks against the trivial subgroups {1} and {1, p-1}).
 */
class ModpExchange implements KeyExchange {
  readonly group = KeGroup.MODP_2048;
  readonly publicKey: Uint8Array;
  #dh: DiffieHellman | undefined;

  constructor(privateKey: Uint8Array | undefined, random: RandomSource) {
    if (privateKey !== undefined && !isInOpenRange(privateKey)) {
      throw new RangeError('MODP-2048 private exponent must satisfy 1 < x < p-1');
    }
    let exponent = privateKey;
    while (exponent === undefined) {
      const drawn = drawRandom(random, MODP_2048_EXPONENT_LENGTH);
      if (isInOpenRange(drawn)) exponent = drawn;
      else wipe(drawn);
    }
    const dh = createDiffieHellman(MODP_2048_PRIME, 2);
    dh.setPrivateKey(Buffer.from(exponent.buffer, exponent.byteOffset, exponent.byteLength));
    dh.generateKeys(); // with the private key set, this only computes g^x mod p
    if (exponent !== privateKey) wipe(exponent);
    this.#dh = dh;
    this.publicKey = leftPad(dh.getPublicKey(), MODP_2048_LENGTH);
  }

  computeSharedSecret(peerPublic: Uint8Array): CryptoResult<Uint8Array> {
    const dh = this.#dh;
    if (!dh) return fail('key exchange destroyed');
    if (!(peerPublic instanceof Uint8Array) || peerPublic.length !== MODP_2048_LENGTH) {
      return fail(`MODP-2048 public value must be ${MODP_2048_LENGTH} bytes, got ${peerPublic?.length}`);
    }
    if (!isInOpenRange(peerPublic)) return fail('MODP-2048 public value must satisfy 1 < y < p-1');
    let secret: Buffer;
    try {
      secret = dh.computeSecret(peerPublic);
    } catch {
      return fail('MODP-2048 public value rejected');
    }
    return ok(leftPad(secret, MODP_2048_LENGTH));
  }

  destroy(): void {
    this.#dh?.setPrivateKey(Buffer.from([2]));
    this.#dh = undefined;
  }
}

/** 1 < v < p-1 for a big-endian value of any length. */
function isInOpenRange(v: Uint8Array): boolean {
  let first = 0;
  while (first < v.length && v[first] === 0) first++;
  const significant = v.subarray(first);
  if (significant.length === 0 || (significant.length === 1 && significant[0]! <= 1)) return false;
  if (significant.length !== MODP_2048_LENGTH) return significant.length < MODP_2048_LENGTH;
  return Buffer.compare(significant, MODP_2048_PRIME_MINUS_1) < 0;
}

// --- helpers -----------------------------------------------------------------

/** A fresh Uint8Array of `length` bytes holding `v` right-aligned; wipes `v`. */
function leftPad(v: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  out.set(v, length - v.length); // throws if v is longer: a bug, not an input error
  wipe(v);
  return out;
}
