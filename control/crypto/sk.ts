// Protection of the Encrypted (SK) payload (RFC 7296 §3.14): AES-GCM
// (RFC 5282), ChaCha20-Poly1305 (RFC 7634 §3) and AES-CBC with an HMAC-SHA2
// integrity transform (RFC 4868).
//
// One SkProtector holds one direction's keys (SK_ei/SK_ai to send as the
// initiator, SK_er/SK_ar to receive, and so on): the engine makes two per IKE
// SA. seal() is for our own messages; open() takes untrusted bytes and never
// throws.
//
// IV uniqueness (RFC 5282 §3.1, RFC 7634 §2): AEAD IVs are a 64-bit counter
// that starts at a random value, so even two protectors built by mistake
// from the same key would not collide in practice; CBC IVs are random and
// unpredictable (RFC 7296 §3.14).

import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import type { EncrInfo, IntegInfo } from './algorithms.js';
import { view } from './bytes.js';
import { hmac, verifyHmac } from './mac.js';
import { fail, ok, type CryptoResult } from './result.js';
import { drawRandom, systemRandom, wipe, type RandomSource } from './random.js';

export interface SkProtector {
  /** Explicit IV at the start of the SK payload body. */
  readonly ivLength: number;
  /** AEAD tag or truncated HMAC at the end of the body. */
  readonly icvLength: number;
  /**
   * Length of the SK payload body (IV | ciphertext | ICV) for `innerLength`
   * bytes of inner payloads, with padding and the Pad Length octet: what the
   * SK generic header and the IKE header Length must announce before seal().
   */
  bodyLength(innerLength: number): number;
  /**
   * Returns IV | E(inner | Padding | Pad Length) | ICV.
   * `aad` is the message from the first octet of the IKE header through the
   * SK payload's generic header (RFC 5282 §5.1), with final lengths. For
   * AEAD it is the associated data; for CBC the ICV is HMAC(SK_a, aad | IV |
   * ciphertext) truncated (RFC 7296 §3.14).
   */
  seal(aad: Uint8Array, inner: Uint8Array): Uint8Array;
  /**
   * Checks the ICV, then decrypts; returns the inner payloads without padding.
   * A body too short, misaligned, forged or with a bad Pad Length gives
   * `{ ok: false }`.
   */
  open(aad: Uint8Array, body: Uint8Array): CryptoResult<Uint8Array>;
  /** Wipes the keys; seal() throws and open() fails afterwards. */
  destroy(): void;
}

export interface SkProtectorOptions {
  /** Source of CBC IVs and of the AEAD counter's start (default: systemRandom). */
  random?: RandomSource;
}

/**
 * Creates the protector for one direction. `encKeyMaterial` is SK_ei or SK_er
 * (`encr.keyMaterialLength` bytes, the AEAD salt last); `integ`/`integKey`
 * are the INTEG transform and SK_ai/SK_ar for CBC, and absent for AEAD.
 * Keys are copied, so the caller may wipe its own copies.
 */
export function createSkProtector(
  encr: EncrInfo,
  integ: IntegInfo | undefined,
  encKeyMaterial: Uint8Array,
  integKey: Uint8Array | undefined,
  opts: SkProtectorOptions = {},
): SkProtector {
  if (encKeyMaterial.length !== encr.keyMaterialLength) {
    throw new RangeError(`${encr.name} needs ${encr.keyMaterialLength} bytes of keying material, got ${encKeyMaterial.length}`);
  }
  const random = opts.random ?? systemRandom;
  if (encr.aead) {
    if (integ || integKey?.length) throw new RangeError(`${encr.name} is AEAD and takes no integrity key`);
    return new AeadProtector(encr, encKeyMaterial, random);
  }
  if (!integ || !integKey) throw new RangeError(`${encr.name} needs an integrity transform and key`);
  if (integKey.length !== integ.keyLength) throw new RangeError(`${integ.name} needs a ${integ.keyLength}-byte key, got ${integKey.length}`);
  return new CbcHmacProtector(encr, integ, encKeyMaterial, integKey, random);
}

const SALT_LENGTH = 4;
const AEAD_NONCE_LENGTH = 12;
const COUNTER_MASK = (1n << 64n) - 1n;

function checkInnerLength(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`inner length must be a non-negative integer, got ${n}`);
}

/**
 * AES-GCM-8/12/16 and ChaCha20-Poly1305: nonce = salt (last 4 bytes of the
 * keying material) | 8-byte explicit IV (RFC 4106 §4, RFC 7634 §2). No
 * padding is sent (RFC 7634 §3: Pad Length 0); any Pad Length that fits is
 * accepted on receipt (RFC 5282 §3).
 */
class AeadProtector implements SkProtector {
  readonly ivLength: number;
  readonly icvLength: number;
  /** node's GCM and ChaCha20-Poly1305 ciphers share one interface (setAAD, authTagLength, getAuthTag); typed as GCM. */
  readonly #cipher: CipherGCMTypes;
  readonly #key: Uint8Array;
  /** salt | IV, rewritten per message. */
  readonly #nonce = new Uint8Array(AEAD_NONCE_LENGTH);
  readonly #ivView = new DataView(this.#nonce.buffer, SALT_LENGTH, 8);
  #counter: bigint;
  readonly #firstCounter: bigint;
  #exhausted = false;
  #destroyed = false;

  constructor(encr: EncrInfo, keyMaterial: Uint8Array, random: RandomSource) {
    this.ivLength = encr.ivLength;
    this.icvLength = encr.icvLength;
    this.#cipher = encr.cipher as CipherGCMTypes;
    const keyLength = keyMaterial.length - SALT_LENGTH;
    this.#key = keyMaterial.slice(0, keyLength);
    this.#nonce.set(keyMaterial.subarray(keyLength), 0);
    const start = drawRandom(random, 8);
    this.#counter = this.#firstCounter = new DataView(start.buffer, start.byteOffset, 8).getBigUint64(0);
  }

  bodyLength(innerLength: number): number {
    checkInnerLength(innerLength);
    return this.ivLength + innerLength + 1 + this.icvLength;
  }

  seal(aad: Uint8Array, inner: Uint8Array): Uint8Array {
    if (this.#destroyed) throw new Error('SK protector destroyed');
    if (this.#exhausted) throw new Error('SK protector IV space exhausted: rekey the IKE SA');
    const out = new Uint8Array(this.bodyLength(inner.length));
    this.#ivView.setBigUint64(0, this.#counter);
    this.#counter = (this.#counter + 1n) & COUNTER_MASK;
    if (this.#counter === this.#firstCounter) this.#exhausted = true;
    out.set(this.#nonce.subarray(SALT_LENGTH), 0);
    const cipher = createCipheriv(this.#cipher, this.#key, this.#nonce, { authTagLength: this.icvLength });
    cipher.setAAD(aad);
    let offset = this.ivLength;
    for (const chunk of [cipher.update(inner), cipher.update(PAD_LENGTH_ZERO), cipher.final()]) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    out.set(cipher.getAuthTag(), offset);
    return out;
  }

  open(aad: Uint8Array, body: Uint8Array): CryptoResult<Uint8Array> {
    if (this.#destroyed) return fail('SK protector destroyed');
    const { ivLength, icvLength } = this;
    if (!(body instanceof Uint8Array) || body.length < ivLength + 1 + icvLength) return fail('SK payload too short');
    const nonce = this.#nonce.slice();
    nonce.set(body.subarray(0, ivLength), SALT_LENGTH);
    let plaintext: Uint8Array;
    try {
      const decipher = createDecipheriv(this.#cipher, this.#key, nonce, { authTagLength: icvLength });
      decipher.setAAD(aad);
      decipher.setAuthTag(body.subarray(body.length - icvLength));
      const head = decipher.update(body.subarray(ivLength, body.length - icvLength));
      decipher.final(); // throws if the tag does not match; `head` is then discarded
      plaintext = view(head);
    } catch {
      return fail('SK payload integrity check failed');
    } finally {
      wipe(nonce);
    }
    return stripPadding(plaintext);
  }

  destroy(): void {
    this.#destroyed = true;
    wipe(this.#key, this.#nonce);
  }
}

const PAD_LENGTH_ZERO = new Uint8Array(1);

/**
 * AES-CBC with HMAC-SHA2: random 16-byte IV; padding to the 16-byte block
 * with the minimal length (RFC 7296 §3.14); ICV = HMAC over everything from
 * the IKE header through the ciphertext, truncated (RFC 4868 §2.1.1).
 */
class CbcHmacProtector implements SkProtector {
  readonly ivLength: number;
  readonly icvLength: number;
  readonly #encr: EncrInfo;
  readonly #integ: IntegInfo;
  readonly #key: Uint8Array;
  readonly #integKey: Uint8Array;
  readonly #random: RandomSource;
  #destroyed = false;

  constructor(encr: EncrInfo, integ: IntegInfo, key: Uint8Array, integKey: Uint8Array, random: RandomSource) {
    this.ivLength = encr.ivLength;
    this.icvLength = integ.icvLength;
    this.#encr = encr;
    this.#integ = integ;
    this.#key = key.slice();
    this.#integKey = integKey.slice();
    this.#random = random;
  }

  bodyLength(innerLength: number): number {
    checkInnerLength(innerLength);
    return this.ivLength + this.#paddedLength(innerLength) + this.icvLength;
  }

  /** inner | Padding | Pad Length rounded up to the block size. */
  #paddedLength(innerLength: number): number {
    const block = this.#encr.blockSize;
    return Math.ceil((innerLength + 1) / block) * block;
  }

  seal(aad: Uint8Array, inner: Uint8Array): Uint8Array {
    if (this.#destroyed) throw new Error('SK protector destroyed');
    const paddedLength = this.#paddedLength(inner.length);
    const tail = new Uint8Array(paddedLength - inner.length);
    tail[tail.length - 1] = tail.length - 1; // Pad Length; padding octets are zero
    const iv = drawRandom(this.#random, this.ivLength);
    const cipher = createCipheriv(this.#encr.cipher, this.#key, iv).setAutoPadding(false);
    const out = new Uint8Array(this.ivLength + paddedLength + this.icvLength);
    out.set(iv, 0);
    let offset = this.ivLength;
    for (const chunk of [cipher.update(inner), cipher.update(tail), cipher.final()]) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    const icv = hmac(this.#integ.hash, this.#integKey, aad, out.subarray(0, offset));
    out.set(icv.subarray(0, this.icvLength), offset);
    return out;
  }

  open(aad: Uint8Array, body: Uint8Array): CryptoResult<Uint8Array> {
    if (this.#destroyed) return fail('SK payload protector destroyed');
    const { ivLength, icvLength } = this;
    const block = this.#encr.blockSize;
    if (!(body instanceof Uint8Array)) return fail('SK payload missing');
    const cipherLength = body.length - ivLength - icvLength;
    if (cipherLength < block || cipherLength % block !== 0) return fail('SK payload length is not a whole number of cipher blocks');
    const signed = body.subarray(0, ivLength + cipherLength);
    if (!verifyHmac(this.#integ.hash, this.#integKey, [aad, signed], body.subarray(signed.length), icvLength)) {
      return fail('SK payload integrity check failed');
    }
    const decipher = createDecipheriv(this.#encr.cipher, this.#key, body.subarray(0, ivLength)).setAutoPadding(false);
    const plaintext = new Uint8Array(cipherLength);
    const first = decipher.update(body.subarray(ivLength, signed.length));
    plaintext.set(first, 0);
    plaintext.set(decipher.final(), first.length);
    wipe(first);
    return stripPadding(plaintext);
  }

  destroy(): void {
    this.#destroyed = true;
    wipe(this.#key, this.#integKey);
  }
}

/** Removes Padding and the Pad Length octet (RFC 7296 §3.14); a Pad Length reaching past the start is malformed. */
function stripPadding(plaintext: Uint8Array): CryptoResult<Uint8Array> {
  const padLength = plaintext[plaintext.length - 1];
  if (padLength === undefined || padLength + 1 > plaintext.length) {
    wipe(plaintext);
    return fail('SK payload Pad Length exceeds the plaintext');
  }
  return ok(plaintext.subarray(0, plaintext.length - padLength - 1));
}
