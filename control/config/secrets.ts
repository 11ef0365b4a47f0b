// Key material in the configuration: PEM private keys, certificates and public
// keys (a path relative to the configuration file, or the PEM text), PSKs
// (inline or in a file) and the key-log directory. A secret's value never
// appears in an error message: only its kind (gotKind).
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { certificateSubjectDer } from '../crypto/der.js';
import { loadCertificates, loadCrl, type ParsedCertificate, type ParsedCrl } from '../crypto/x509/index.js';
import { MIN_PSK_OCTETS } from './defaults.js';
import { Problem, got, gotKind } from './errors.js';
import { listOf, type Ctx } from './fields.js';

const PEM_RE = /^\s*-----BEGIN [A-Z0-9 ]+-----/;

/** PEM text given inline or as a path; Problem when unreadable. `secret`: never echo the value. */
function pemSource(ctx: Ctx, v: unknown, expected: string, secret = false): { pem: string; where: string } | Problem {
  if (typeof v !== 'string' || v.trim() === '') return new Problem(secret ? gotKind(v) : got(v), expected);
  if (PEM_RE.test(v)) return { pem: v, where: 'inline PEM' };
  const file = resolve(ctx.baseDir, v);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return new Problem(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected);
  }
  if (!PEM_RE.test(text)) return new Problem(`${file} is not PEM (no -----BEGIN line)`, expected);
  return { pem: text, where: file };
}

/**
 * A PEM field: absent, or what `load` makes of the PEM text; a Problem when
 * the text cannot be had or `load` throws on it (named as `what`).
 */
function pemField<T>(ctx: Ctx, expected: string, what: string, load: (pem: string) => T, secret = false): (v: unknown) => T | undefined | Problem {
  return (v) => {
    if (v === undefined) return undefined;
    const src = pemSource(ctx, v, expected, secret);
    if (src instanceof Problem) return src;
    try {
      return load(src.pem);
    } catch (e) {
      return new Problem(`${src.where} holds no usable ${what} (${(e as Error).message})`, expected);
    }
  };
}

export function privateKey(ctx: Ctx): (v: unknown) => { pem: string; key: KeyObject } | undefined | Problem {
  const expected = 'a PEM private key: a file path (relative to the configuration file) or the PEM text';
  return pemField(ctx, expected, 'private key', (pem) => ({ pem, key: createPrivateKey(pem) }), true);
}

export function certificate(ctx: Ctx): (v: unknown) => { pem: string; cert: X509Certificate } | undefined | Problem {
  const expected = 'a PEM certificate: a file path (relative to the configuration file) or the PEM text';
  return pemField(ctx, expected, 'certificate', (pem) => ({ pem, cert: new X509Certificate(pem) }));
}

export function publicKeyOrCert(ctx: Ctx): (v: unknown) => string | undefined | Problem {
  const expected = 'a PEM public key or certificate: a file path (relative to the configuration file) or the PEM text';
  return pemField(ctx, expected, 'public key or certificate', (pem) => {
    if (/-----BEGIN CERTIFICATE-----/.test(pem)) new X509Certificate(pem);
    else createPublicKey(pem);
    return pem;
  });
}

export const PSK_EXPECTED = `a secret of at least ${MIN_PSK_OCTETS} octets: text, 0x<hex> or 0s<base64>`;

export function pskValue(v: unknown): Uint8Array | undefined | Problem {
  if (v === undefined) return undefined;
  let bytes: Uint8Array;
  if (v instanceof Uint8Array) {
    bytes = Uint8Array.from(v);
  } else if (typeof v === 'string') {
    if (/^0x/i.test(v)) {
      const hex = v.slice(2);
      if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) return new Problem('not valid hex after 0x', PSK_EXPECTED);
      bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
    } else if (/^0s/.test(v)) {
      const b64 = v.slice(2);
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) return new Problem('not valid base64 after 0s', PSK_EXPECTED);
      bytes = Uint8Array.from(Buffer.from(b64, 'base64'));
    } else {
      bytes = new TextEncoder().encode(v);
    }
  } else {
    return new Problem(gotKind(v), PSK_EXPECTED);
  }
  // RFC 7296 §2.15: the PSK is all that protects AUTH against offline guessing.
  if (bytes.length < MIN_PSK_OCTETS) return new Problem(`the PSK has only ${bytes.length} octets`, PSK_EXPECTED);
  return bytes;
}

export function pskFile(ctx: Ctx): (v: unknown) => Uint8Array | undefined | Problem {
  const expected = `a file holding the PSK (at least ${MIN_PSK_OCTETS} octets), path relative to the configuration file`;
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '') return new Problem(got(v), expected);
    const file = resolve(ctx.baseDir, v);
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch (e) {
      return new Problem(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected);
    }
    let n = data.length;
    if (n > 0 && data[n - 1] === 0x0a) n--;
    if (n > 0 && data[n - 1] === 0x0d) n--;
    const bytes = Uint8Array.from(data.subarray(0, n));
    if (bytes.length < MIN_PSK_OCTETS) return new Problem(`${file} holds only ${bytes.length} octets`, expected);
    return bytes;
  };
}

export function keylogDir(ctx: Ctx): (v: unknown) => string | undefined | Problem {
  const expected = 'an existing directory for the Wireshark key log (path relative to the configuration file)';
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '') return new Problem(got(v), expected);
    const dir = resolve(ctx.baseDir, v);
    try {
      if (!statSync(dir).isDirectory()) return new Problem(`${dir} is not a directory`, expected);
    } catch (e) {
      return new Problem(`cannot use ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected);
    }
    return dir;
  };
}

/** The DER of a certificate's subject Name (strongSwan's default identity for a certificate). */
export function subjectDer(cert: X509Certificate): Uint8Array | undefined {
  return certificateSubjectDer(new Uint8Array(cert.raw));
}

/**
 * swanctl's certs / cacerts: a list of certificate files (PEM, possibly
 * several CERTIFICATE blocks each, or DER), paths relative to the
 * configuration file; their certificates in order. A missing file, a file
 * holding something else (a key, a CRL) or an undecodable certificate is a
 * Problem naming the file.
 */
export function certificateFiles(ctx: Ctx): (v: unknown) => ParsedCertificate[] | undefined | Problem {
  const expected = 'certificate files (PEM or DER): a path or a list of paths relative to the configuration file';
  const files = listOf(expected, (path) => loadCertificates(resolve(ctx.baseDir, path)), 'at least one certificate file (or omit the key)');
  return (v) => {
    if (v === undefined) return undefined;
    const certs = files(v);
    return certs instanceof Problem ? certs : certs.flat();
  };
}

/** swanctl's crls (x509crl): CRL files (PEM "X509 CRL" or DER), paths relative to the configuration file. */
export function crlFiles(ctx: Ctx): (v: unknown) => ParsedCrl[] | undefined | Problem {
  const expected = 'CRL files (PEM or DER): a path or a list of paths relative to the configuration file';
  const files = listOf(expected, (path) => loadCrl(resolve(ctx.baseDir, path)), 'at least one CRL file (or omit the key)');
  return (v) => (v === undefined ? undefined : files(v));
}
