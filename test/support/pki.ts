// Test certificate authorities made with strongSwan's `pki` (strongswan-pki):
// keys, self-signed roots, issued certificates with the extensions the tests
// need, and CRLs. Everything lands in a fresh temporary directory; the
// caller removes it with cleanup(). RSA keys take a second or two each: make
// them once per file, in beforeAll.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** rsa-pss-3072: RSA keys signing with RSASSA-PSS; rsa-2048: RSA keys signing with PKCS#1 v1.5 (pki's default). */
export type PkiKeyType = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-pss-3072' | 'rsa-2048' | 'ed25519';

export interface IssueOptions {
  ca?: boolean;
  pathlen?: number;
  san?: string[];
  /** pki --flag: serverAuth, clientAuth, crlSign, ocspSigning (crlSign on an end entity gives keyUsage cRLSign alone). */
  flags?: string[];
  /** cRLDistributionPoints URIs. */
  crl?: string[];
  ncPermitted?: string[];
  ncExcluded?: string[];
  notBefore?: Date;
  notAfter?: Date;
  lifetimeDays?: number;
  serial?: string;
  /** pki --critical: a critical extension of that OID (for tests of unknown critical extensions). */
  critical?: string[];
}

const seconds = (d: Date): string => String(Math.floor(d.getTime() / 1000));

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'ikeclone-pki-'));

  constructor(readonly keyType: PkiKeyType) {}

  private run(args: string[]): Buffer {
    // strongswan-pki is a declared test prerequisite (.ci/run installs it); say so rather than ENOENT.
    // TZ=UTC: pki reads --not-before/--not-after through strptime in local time.
    try {
      return execFileSync('pki', args, { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, TZ: 'UTC' }, timeout: 30_000 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error("strongSwan's pki is not installed: apt-get install strongswan-pki");
      throw e;
    }
  }

  private get padding(): string[] {
    return this.keyType === 'rsa-pss-3072' ? ['--rsa-padding', 'pss'] : [];
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  read(name: string): Buffer {
    return readFileSync(this.path(name));
  }

  /** Generates `<name>.key` (PEM: SEC1 for ECDSA, PKCS#1 for RSA, PKCS#8 for Ed25519). */
  key(name: string): string {
    const type =
      this.keyType === 'ed25519' ? ['--type', 'ed25519'] :
      this.keyType === 'rsa-pss-3072' ? ['--type', 'rsa', '--size', '3072'] :
      this.keyType === 'rsa-2048' ? ['--type', 'rsa', '--size', '2048'] :
      ['--type', 'ecdsa', '--size', this.keyType === 'ecdsa-p384' ? '384' : '256'];
    writeFileSync(this.path(`${name}.key`), this.run(['--gen', ...type, '--outform', 'pem']));
    return this.path(`${name}.key`);
  }

  /** A self-signed CA `<name>.pem` with key `<keyName>.key`. */
  selfSigned(name: string, keyName: string, dn: string, options: IssueOptions = {}): string {
    const args = ['--self', '--in', this.path(`${keyName}.key`), '--type', 'priv', '--dn', dn, ...this.common({ ca: true, ...options })];
    writeFileSync(this.path(`${name}.pem`), this.run(args));
    return this.path(`${name}.pem`);
  }

  /** Issues `<name>.pem` for key `<keyName>.key`, signed by CA `<caName>.pem` whose key is `<caKeyName>.key`. */
  issue(name: string, keyName: string, caName: string, caKeyName: string, dn: string, options: IssueOptions = {}): string {
    const args = [
      '--issue', '--in', this.path(`${keyName}.key`), '--type', 'priv',
      '--cacert', this.path(`${caName}.pem`), '--cakey', this.path(`${caKeyName}.key`), '--dn', dn, ...this.common(options),
    ];
    writeFileSync(this.path(`${name}.pem`), this.run(args));
    return this.path(`${name}.pem`);
  }

  /**
   * Issues `<name>.pem` with openssl, which (unlike pki) signs with any
   * certificate as the issuer: for chains a validator must refuse.
   * `subject` is in openssl's form, "/C=CH/O=.../CN=...".
   */
  issueWithOpenssl(name: string, keyName: string, caName: string, caKeyName: string, subject: string): string {
    const csr = execFileSync('openssl', ['req', '-new', '-key', this.path(`${keyName}.key`), '-subj', subject], { stdio: ['ignore', 'pipe', 'ignore'] });
    const cert = execFileSync('openssl', [
      'x509', '-req', '-CA', this.path(`${caName}.pem`), '-CAkey', this.path(`${caKeyName}.key`), '-set_serial', '4242', '-days', '30',
    ], { input: csr, stdio: ['pipe', 'pipe', 'ignore'] });
    writeFileSync(this.path(`${name}.pem`), cert);
    return this.path(`${name}.pem`);
  }

  private common(o: IssueOptions): string[] {
    const args: string[] = [...this.padding, '--outform', 'pem'];
    if (o.ca) args.push('--ca');
    if (o.pathlen !== undefined) args.push('--pathlen', String(o.pathlen));
    for (const s of o.san ?? []) args.push('--san', s);
    for (const f of o.flags ?? []) args.push('--flag', f);
    for (const u of o.crl ?? []) args.push('--crl', u);
    for (const n of o.ncPermitted ?? []) args.push('--nc-permitted', n);
    for (const n of o.ncExcluded ?? []) args.push('--nc-excluded', n);
    if (o.serial) args.push('--serial', o.serial);
    for (const oid of o.critical ?? []) args.push('--critical', oid);
    if (o.notBefore || o.notAfter) {
      args.push('--dateform', '%s');
      if (o.notBefore) args.push('--not-before', seconds(o.notBefore));
      if (o.notAfter) args.push('--not-after', seconds(o.notAfter));
    } else {
      args.push('--lifetime', String(o.lifetimeDays ?? 3650));
    }
    return args;
  }

  /** A CRL `<name>` (DER unless pem) by CA `<caName>` revoking the given certificates (by file name). */
  crl(name: string, caName: string, caKeyName: string, revoke: string[], options: { pem?: boolean; thisUpdate?: Date; nextUpdate?: Date } = {}): string {
    const args = ['--signcrl', '--cacert', this.path(`${caName}.pem`), '--cakey', this.path(`${caKeyName}.key`), ...this.padding];
    if (options.thisUpdate || options.nextUpdate) {
      args.push('--dateform', '%s');
      if (options.thisUpdate) args.push('--this-update', seconds(options.thisUpdate));
      if (options.nextUpdate) args.push('--next-update', seconds(options.nextUpdate));
    }
    for (const cert of revoke) args.push('--reason', 'key-compromise', '--cert', this.path(`${cert}.pem`));
    args.push('--outform', options.pem ? 'pem' : 'der');
    writeFileSync(this.path(name), this.run(args));
    return this.path(name);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
