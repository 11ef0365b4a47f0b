// Stateless COOKIE for IKE_SA_INIT under load (RFC 7296 §2.6): the responder
// answers N(COOKIE) without keeping state, and accepts the request again only
// when it carries a cookie it made for the same Ni, IPi and SPIi.
//
// Cookies arrive from the network: verifyCookie never throws.

import { createHash, timingSafeEqual } from 'node:crypto';
import { drawRandom, systemRandom, wipe, type RandomSource } from './random.js';
import { wireAddress } from './natd.js';
import { readU32 } from './bytes.js';

const SECRET_LENGTH = 32;
const VERSION_LENGTH = 4;
const HASH_LENGTH = 32;
/** VersionIDofSecret (4) | SHA-256 (32) = 36 octets, within the 1..64 of RFC 7296 §2.6. */
export const COOKIE_LENGTH = VERSION_LENGTH + HASH_LENGTH;

interface VersionedSecret {
  version: number;
  key: Uint8Array;
}

/**
 * The responder's cookie secrets: the current one, which makes cookies, and
 * the one before it, still accepted so that a rotation does not fail the
 * initiators that were just challenged (RFC 7296 §2.6).
 */
export class CookieSecret {
  #current: VersionedSecret;
  #previous: VersionedSecret | undefined;
  readonly #random: RandomSource;

  constructor(random: RandomSource = systemRandom) {
    this.#random = random;
    this.#current = { version: 0, key: drawRandom(random, SECRET_LENGTH) };
  }

  /** VersionIDofSecret of the current secret. */
  get version(): number {
    return this.#current.version;
  }

  /** Replaces the secret; cookies of the replaced one stay valid until the next rotation. */
  rotate(): void {
    if (this.#previous) wipe(this.#previous.key);
    this.#previous = this.#current;
    this.#current = { version: (this.#current.version + 1) >>> 0, key: drawRandom(this.#random, SECRET_LENGTH) };
  }

  /** Wipes both secrets; no cookie verifies afterwards and makeCookie throws. */
  destroy(): void {
    wipe(this.#current.key, this.#previous?.key);
    this.#previous = undefined;
    this.#current = { version: this.#current.version, key: new Uint8Array(0) };
  }

  /** @internal */
  secretFor(version: number): Uint8Array | undefined {
    if (this.#current.key.length === 0) return undefined;
    if (version === this.#current.version) return this.#current.key;
    if (this.#previous && version === this.#previous.version) return this.#previous.key;
    return undefined;
  }
}

/** New cookie secrets from `random` (default: systemRandom). */
export function createCookieSecret(random: RandomSource = systemRandom): CookieSecret {
  return new CookieSecret(random);
}

/**
 * Cookie = VersionIDofSecret | Hash(Ni | IPi | SPIi | <secret>) (RFC 7296 §2.6),
 * with a 4-octet version and SHA-256. IPi is the initiator's address as text
 * (or already as 4/16 bytes); SPIi is 8 bytes.
 */
export function makeCookie(secret: CookieSecret, nonceI: Uint8Array, ipI: string | Uint8Array, spiI: Uint8Array): Uint8Array {
  const key = secret.secretFor(secret.version);
  if (!key) throw new Error('cookie secret destroyed');
  return cookieFor(secret.version, key, nonceI, addressBytes(ipI), spiI);
}

/**
 * Whether `cookie` is one made by makeCookie for these Ni, IPi and SPIi with
 * the current or the previous secret. Compared in constant time; a cookie of
 * another length or an unknown version is false. Never throws on the cookie.
 */
export function verifyCookie(secret: CookieSecret, cookie: Uint8Array, nonceI: Uint8Array, ipI: string | Uint8Array, spiI: Uint8Array): boolean {
  if (!(cookie instanceof Uint8Array) || cookie.length !== COOKIE_LENGTH) return false;
  const version = readU32(cookie);
  const key = secret.secretFor(version);
  if (!key) return false;
  return timingSafeEqual(cookieFor(version, key, nonceI, addressBytes(ipI), spiI), cookie);
}

function cookieFor(version: number, key: Uint8Array, nonceI: Uint8Array, ip: Uint8Array, spiI: Uint8Array): Uint8Array {
  const out = new Uint8Array(COOKIE_LENGTH);
  new DataView(out.buffer).setUint32(0, version);
  out.set(createHash('sha256').update(nonceI).update(ip).update(spiI).update(key).digest(), VERSION_LENGTH);
  return out;
}

function addressBytes(ip: string | Uint8Array): Uint8Array {
  return typeof ip === 'string' ? wireAddress(ip) : ip;
}
