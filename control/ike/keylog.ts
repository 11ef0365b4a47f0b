// The Wireshark key log (architecture §4.5): the one deliberate way for key material
// to leave the process, off unless configured, announced with a warning. It
// writes Wireshark's UAT files `ikev2_decryption_table` (IKE SA keys) and
// `esp_sa` (Child SA keys) into a directory that can serve as
// WIRESHARK_CONFIG_DIR, or be copied into a Wireshark profile.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EncrId, IntegId } from '../wire/constants.js';
import type { EncrInfo, IntegInfo } from '../crypto/algorithms.js';
import { encrInfo, integInfo } from '../crypto/algorithms.js';
import type { IkeKeys } from '../crypto/keys.js';
import { type ChildSa, type IkeSa, spi64Hex, spiHex } from './ike-sa.js';

export interface KeyLogSink {
  ike(sa: IkeSa, keys: IkeKeys, encr: EncrInfo, integ: IntegInfo | undefined): void;
  child(child: ChildSa): void;
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Wireshark's names for IKEv2 SK ciphers (epan/dissectors/packet-isakmp.c). */
function ikeEncrName(e: EncrInfo): string | undefined {
  if (e.id === EncrId.AES_CBC) return `AES-CBC-${e.keyLength} [RFC3602]`;
  if (e.id === EncrId.AES_GCM_16 || e.id === EncrId.AES_GCM_12 || e.id === EncrId.AES_GCM_8) return `AES-GCM-${e.keyLength} with ${e.icvLength} octet ICV [RFC5282]`;
  return undefined;
}

function ikeIntegName(i: IntegInfo | undefined): string {
  if (!i) return 'NONE [RFC4306]';
  return { [IntegId.HMAC_SHA2_256_128]: 'HMAC_SHA2_256_128 [RFC4868]', [IntegId.HMAC_SHA2_384_192]: 'HMAC_SHA2_384_192 [RFC4868]', [IntegId.HMAC_SHA2_512_256]: 'HMAC_SHA2_512_256 [RFC4868]' }[i.id] ?? 'NONE [RFC4306]';
}

/** Wireshark's names for ESP ciphers and integrity algorithms (epan/dissectors/packet-ipsec.c). */
function espEncrName(e: EncrInfo): string | undefined {
  if (e.id === EncrId.AES_CBC) return 'AES-CBC [RFC3602]';
  if (e.id === EncrId.AES_GCM_16 || e.id === EncrId.AES_GCM_12 || e.id === EncrId.AES_GCM_8) return `AES-GCM with ${e.icvLength} octet ICV [RFC4106]`;
  return undefined;
}

function espIntegName(i: IntegInfo | undefined): string {
  if (!i) return 'NULL';
  return { [IntegId.HMAC_SHA2_256_128]: 'HMAC-SHA-256-128 [RFC4868]', [IntegId.HMAC_SHA2_384_192]: 'HMAC-SHA-384-192 [RFC4868]', [IntegId.HMAC_SHA2_512_256]: 'HMAC-SHA-512-256 [RFC4868]' }[i.id] ?? 'NULL';
}

/** Appends one UAT line per IKE SA and two per Child SA (one each direction). */
export class WiresharkKeyLog implements KeyLogSink {
  readonly ikeFile: string;
  readonly espFile: string;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.ikeFile = join(dir, 'ikev2_decryption_table');
    this.espFile = join(dir, 'esp_sa');
  }

  ike(sa: IkeSa, keys: IkeKeys, encr: EncrInfo, integ: IntegInfo | undefined): void {
    const name = ikeEncrName(encr);
    if (!name) return;
    const line = [spi64Hex(sa.spiI), spi64Hex(sa.spiR), hex(keys.skEi), hex(keys.skEr), `"${name}"`, hex(keys.skAi), hex(keys.skAr), `"${ikeIntegName(integ)}"`].join(',');
    appendFileSync(this.ikeFile, line + '\n', { mode: 0o600 });
  }

  child(child: ChildSa): void {
    const keys = child.keys;
    if (!keys) return;
    const encr = encrInfo(child.suite.encr, child.suite.encrKeyLength);
    const integ = child.suite.integ !== undefined ? integInfo(child.suite.integ) : undefined;
    const name = encr && espEncrName(encr);
    if (!name) return;
    const family = child.ike.remote.address.includes(':') ? 'IPv6' : 'IPv4';
    const lines = [
      [`"${family}"`, '"*"', '"*"', `"0x${spiHex(child.spiOut)}"`, `"${name}"`, `"0x${hex(keys.encOut)}"`, `"${espIntegName(integ)}"`, `"0x${hex(keys.integOut)}"`],
      [`"${family}"`, '"*"', '"*"', `"0x${spiHex(child.spiIn)}"`, `"${name}"`, `"0x${hex(keys.encIn)}"`, `"${espIntegName(integ)}"`, `"0x${hex(keys.integIn)}"`],
    ];
    appendFileSync(this.espFile, lines.map((l) => l.join(',')).join('\n') + '\n', { mode: 0o600 });
  }
}
