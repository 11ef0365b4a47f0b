// Reading certificates, private keys and CRLs from files, at configuration
// time (swanctl's local.certs, local.key / secrets, remote.cacerts,
// revocation CRL files). Every failure is a CryptoResult naming the file and
// what is wrong with it, fit for a configuration error without a stack trace.

import { readFileSync, statSync } from 'node:fs';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { signingKeyFromPrivateKey, type SigningKey } from '../auth.js';
import { fail, ok, type CryptoResult } from '../result.js';
import { equalBytes } from '../bytes.js';
import { parseCertificate, type ParsedCertificate } from './certificate.js';
import { MAX_CRL_BYTES, parseCrl, type ParsedCrl } from './crl.js';
import { sharedCrlFileCache, type CrlFileCache } from './crl-file-cache.js';

/** Files larger than this are refused unread: no credential file is this big except a CRL. */
const MAX_CREDENTIAL_FILE_BYTES = 1024 * 1024;

export interface PemBlock {
  /** The label after BEGIN, e.g. "CERTIFICATE", "EC PRIVATE KEY". */
  label: string;
  der: Uint8Array;
  /** 1-based line of the BEGIN line, for error messages. */
  line: number;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

/** The PEM blocks of a text (RFC 7468), in order; an unterminated or mismatched block is an error. */
export function readPemBlocks(text: string): CryptoResult<PemBlock[]> {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const line = text.slice(0, m.index).split('\n').length;
    if (m[1] !== m[3]) return fail(`line ${line}: BEGIN ${m[1]} ended by END ${m[3]}`);
    const body = m[2]!.replace(/\s+/g, '');
    // RFC 7468 §3: strict base64 without headers (encrypted "Proc-Type" PEM is not supported).
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) return fail(`line ${line}: ${m[1]} block is not valid base64`);
    blocks.push({ label: m[1]!, der: new Uint8Array(Buffer.from(body, 'base64')), line });
  }
  const begins = text.match(/-----BEGIN /g)?.length ?? 0;
  if (begins !== blocks.length) return fail('unterminated PEM block');
  return ok(blocks);
}

function readCredentialFile(path: string, limit = MAX_CREDENTIAL_FILE_BYTES): CryptoResult<Buffer> {
  try {
    const stat = statSync(path);
    // Only regular files: a distribution point naming /dev/zero or a FIFO must not block or grow without end.
    if (!stat.isFile()) return fail(`${path}: not a regular file`);
    const size = stat.size;
    if (size > limit) return fail(`${path}: file of ${size} bytes (limit ${limit})`);
    return ok(readFileSync(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(`${path}: cannot read file${code ? ` (${code})` : ''}`);
  }
}

/** A PEM file is one that contains "-----BEGIN"; anything else is taken as DER. */
function isPem(bytes: Buffer): boolean {
  return bytes.subarray(0, 64 * 1024).toString('latin1').includes('-----BEGIN ');
}

/**
 * Certificates from a file: PEM with one or several CERTIFICATE blocks (a
 * chain file), or one DER certificate.
 */
export function loadCertificates(path: string): CryptoResult<ParsedCertificate[]> {
  const file = readCredentialFile(path);
  if (!file.ok) return file;
  if (!isPem(file.value)) {
    const cert = parseCertificate(new Uint8Array(file.value));
    return cert.ok ? ok([cert.value]) : fail(`${path}: not a PEM file, and as DER: ${cert.error}`);
  }
  const blocks = readPemBlocks(file.value.toString('latin1'));
  if (!blocks.ok) return fail(`${path}: ${blocks.error}`);
  const certs: ParsedCertificate[] = [];
  for (const block of blocks.value) {
    if (block.label !== 'CERTIFICATE') return fail(`${path}: line ${block.line}: expected CERTIFICATE, found ${block.label}`);
    const cert = parseCertificate(block.der);
    if (!cert.ok) return fail(`${path}: line ${block.line}: ${cert.error}`);
    certs.push(cert.value);
  }
  if (certs.length === 0) return fail(`${path}: no CERTIFICATE block`);
  return ok(certs);
}

const KEY_LABELS: Readonly<Record<string, string>> = {
  'PRIVATE KEY': 'PKCS#8',
  'ENCRYPTED PRIVATE KEY': 'encrypted PKCS#8',
  'EC PRIVATE KEY': 'SEC1',
  'RSA PRIVATE KEY': 'PKCS#1',
};

export interface PrivateKeyOptions {
  /** For an ENCRYPTED PRIVATE KEY (swanctl `secrets` private<suffix> { file, secret }). */
  passphrase?: string;
  /** Signature scheme of an rsaEncryption key (default PKCS#1 v1.5, as strongSwan). */
  rsaPadding?: 'pkcs1' | 'pss';
}

/**
 * Our private key from a PEM file: PKCS#8 (Ed25519, ECDSA, RSA, RSASSA-PSS),
 * SEC1 EC or PKCS#1 RSA, encrypted PKCS#8 with a passphrase; or DER PKCS#8.
 */
export function loadPrivateKey(path: string, options: PrivateKeyOptions = {}): CryptoResult<SigningKey> {
  const file = readCredentialFile(path);
  if (!file.ok) return file;
  let der: Buffer;
  let format: string;
  if (isPem(file.value)) {
    const blocks = readPemBlocks(file.value.toString('latin1'));
    if (!blocks.ok) return fail(`${path}: ${blocks.error}`);
    const keys = blocks.value.filter((b) => KEY_LABELS[b.label] !== undefined);
    if (keys.length !== 1) return fail(`${path}: expected one private key block (PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY), found ${keys.length}`);
    const block = keys[0]!;
    format = KEY_LABELS[block.label]!;
    if (block.label === 'ENCRYPTED PRIVATE KEY' && options.passphrase === undefined) return fail(`${path}: the key is encrypted and no passphrase is configured`);
    der = Buffer.from(block.der);
    const type = block.label === 'EC PRIVATE KEY' ? 'sec1' : block.label === 'RSA PRIVATE KEY' ? 'pkcs1' : 'pkcs8';
    const encrypted = block.label === 'ENCRYPTED PRIVATE KEY';
    return keyFrom(path, format, () => createPrivateKey({ key: der, format: 'der', type, passphrase: options.passphrase }), options, encrypted);
  }
  der = file.value;
  format = 'DER PKCS#8';
  return keyFrom(path, format, () => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), options, false);
}

function keyFrom(path: string, format: string, create: () => KeyObject, options: PrivateKeyOptions, encrypted: boolean): CryptoResult<SigningKey> {
  let key: KeyObject;
  try {
    key = create();
  } catch (e) {
    // A wrong passphrase usually fails CBC padding ("bad decrypt"), but about
    // one time in 300 the garbage plaintext ends in valid padding and fails
    // later as undecodable PKCS#8: either way, for an encrypted key, the
    // passphrase is the first thing to check.
    const decryptFailed = encrypted || (e instanceof Error && /bad decrypt/i.test(e.message));
    const why = decryptFailed ? 'wrong passphrase (or a damaged key)' : 'cannot decode it';
    return fail(`${path}: ${format} private key: ${why}`);
  }
  const signing = signingKeyFromPrivateKey(key, options.rsaPadding ? { rsaPadding: options.rsaPadding } : {});
  return signing.ok ? signing : fail(`${path}: ${signing.error}`);
}

/** A CRL from a file: PEM "X509 CRL" or DER (RFC 5280 §5). */
export function loadCrl(path: string): CryptoResult<ParsedCrl> {
  const file = readCredentialFile(path, MAX_CRL_BYTES);
  if (!file.ok) return file;
  let der: Uint8Array = new Uint8Array(file.value);
  if (isPem(file.value)) {
    const blocks = readPemBlocks(file.value.toString('latin1'));
    if (!blocks.ok) return fail(`${path}: ${blocks.error}`);
    const crls = blocks.value.filter((b) => b.label === 'X509 CRL');
    if (crls.length !== 1) return fail(`${path}: expected one X509 CRL block, found ${crls.length}`);
    der = crls[0]!.der;
  }
  const crl = parseCrl(der);
  return crl.ok ? crl : fail(`${path}: ${crl.error}`);
}

/**
 * A cRLDistributionPoints resolver over local files (no network): a `file:`
 * URI names its file; any other URI is looked up in `map` (URI -> path), so
 * that "http://ca.example/root.crl" can be served from a file a test or an
 * operator placed. Unreadable or absent files resolve to undefined. A file
 * is read again only when it changed (`cache`, crl-file-cache.ts), and the
 * DER it returns for an unchanged file is the same array, decoded once.
 */
export function localCrlResolver(map: Readonly<Record<string, string>> = {}, cache: CrlFileCache = sharedCrlFileCache): (uri: string) => Uint8Array | undefined {
  return (uri: string) => {
    let path = map[uri];
    if (path === undefined && uri.startsWith('file:')) {
      try {
        path = fileURLToPath(uri);
      } catch {
        return undefined;
      }
    }
    if (path === undefined) return undefined;
    return cache.get(path, readCrlDer);
  };
}

function readCrlDer(path: string): Uint8Array | undefined {
  const file = readCredentialFile(path, MAX_CRL_BYTES);
  if (!file.ok) return undefined;
  if (!isPem(file.value)) return new Uint8Array(file.value);
  const blocks = readPemBlocks(file.value.toString('latin1'));
  return blocks.ok ? blocks.value.find((b) => b.label === 'X509 CRL')?.der : undefined;
}

/** Whether a private key belongs to a certificate (local.certs with local.key): their SubjectPublicKeyInfo is the same. */
export function keyMatchesCertificate(key: SigningKey, cert: ParsedCertificate): boolean {
  const spki = createPublicKey(key.privateKey).export({ type: 'spki', format: 'der' });
  return equalBytes(new Uint8Array(spki), cert.spki);
}
