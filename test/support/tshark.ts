/**
 * Packet capture inside a test namespace and decoding with tshark, the
 * independent decoder of the interop tests.
 *
 * Capture uses dumpcap (the capture engine behind tshark, same package)
 * directly, so there is exactly one tracked pid per capture. dumpcap only
 * writes packets once the kernel hands over a ring block (about 0.6-0.8 s
 * after the packet here), and packets still in the ring are lost when it is
 * stopped, so `stop()` waits until the file has stopped growing before it
 * sends SIGINT.
 *
 * Decryption tables go into a private WIRESHARK_CONFIG_DIR per decode call,
 * in Wireshark's UAT file formats (`ikev2_decryption_table`, `esp_sa`).
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnIn } from './netns.js';
import type { NetNs } from './netns.js';
import { describeRun, run, sleep, waitFor } from './proc.js';

export const DEFAULT_IKE_FILTER = 'udp port 500 or udp port 4500';

/**
 * Number of complete packet records in a classic pcap file (either byte
 * order, micro- or nanosecond magic). A record still being written is not
 * counted. Returns 0 for a missing or too short file; throws for a file that
 * is not pcap.
 */
export function countPcapPackets(path: string): number {
  if (!existsSync(path)) return 0;
  const buf = readFileSync(path);
  if (buf.length < 24) return 0;
  const magicLe = buf.readUInt32LE(0);
  let le: boolean;
  if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) le = true;
  else if (buf.readUInt32BE(0) === 0xa1b2c3d4 || buf.readUInt32BE(0) === 0xa1b23c4d) le = false;
  else throw new Error(`${path} is not a pcap file (pcapng is not counted; capture with -P)`);
  let off = 24;
  let n = 0;
  while (off + 16 <= buf.length) {
    const incl = le ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
    if (off + 16 + incl > buf.length) break;
    off += 16 + incl;
    n++;
  }
  return n;
}

export interface CaptureOptions {
  /** Absolute path of the pcap file to write. */
  readonly file: string;
  /** libpcap capture filter; default `udp port 500 or udp port 4500`. */
  readonly filter?: string;
  /** Bound on dumpcap start-up. Default 10 000 ms. */
  readonly startTimeoutMs?: number;
}

export interface StopCaptureOptions {
  /** Wait until at least this many packets are in the file. Default 0. */
  readonly minPackets?: number;
  /**
   * Stop once the packet count has not changed for this long. Default 1200 ms
   * (longer than dumpcap's write delay), or 300 ms once `minPackets` is
   * reached when it was given.
   */
  readonly quietMs?: number;
  /** Bound on the whole stop. Default 15 000 ms. */
  readonly timeoutMs?: number;
}

export interface Capture {
  readonly ns: NetNs;
  readonly iface: string;
  readonly file: string;
  readonly pid: number;
  /** Complete packets in the file so far. */
  packetCount(): number;
  /** Waits (bounded) until the file holds at least `n` packets. */
  waitForPackets(n: number, timeoutMs?: number): Promise<number>;
  /** Lets the capture settle, stops dumpcap (SIGINT, by pid) and returns the final count. Idempotent. */
  stop(opts?: StopCaptureOptions): Promise<{ file: string; packets: number }>;
}

/**
 * Starts capturing on `iface` inside `ns` into a pcap file and returns once
 * dumpcap reports that it is capturing.
 */
export async function startCapture(ns: NetNs, iface: string, opts: CaptureOptions): Promise<Capture> {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(iface)) throw new TypeError(`startCapture: invalid interface ${JSON.stringify(iface)}`);
  if (!opts || typeof opts.file !== 'string' || !opts.file.startsWith('/')) throw new TypeError('startCapture: file must be an absolute path');
  const filter = opts.filter ?? DEFAULT_IKE_FILTER;
  const proc = spawnIn(ns, 'dumpcap', ['-q', '-P', '-i', iface, '-f', filter, '-w', opts.file]);
  try {
    await waitFor(
      () => {
        if (proc.exitInfo() !== undefined) throw new Error(`dumpcap exited: ${proc.stderr().trim()}`);
        // dumpcap prints "Capturing on" before it opens the interface, and "File:" once the
        // socket is bound, the filter attached and the file header written: only then is the
        // capture live.
        return proc.stderr().includes('Capturing on') && proc.stderr().includes('File: ');
      },
      { timeoutMs: opts.startTimeoutMs ?? 10_000, intervalMs: 20, message: () => `dumpcap on ${ns.name}/${iface} (${proc.stderr().trim()})` },
    );
  } catch (e) {
    await proc.stop({ signal: 'SIGKILL' }).catch(() => undefined);
    throw e;
  }
  let result: Promise<{ file: string; packets: number }> | undefined;
  const capture: Capture = {
    ns,
    iface,
    file: opts.file,
    pid: proc.pid,
    packetCount: () => countPcapPackets(opts.file),
    waitForPackets(n, timeoutMs = 10_000) {
      return waitFor(
        () => {
          const c = countPcapPackets(opts.file);
          return c >= n ? c : 0;
        },
        { timeoutMs, intervalMs: 100, message: () => `${n} packets in ${opts.file} (have ${countPcapPackets(opts.file)})` },
      );
    },
    stop(so = {}) {
      result ??= (async () => {
        const minPackets = so.minPackets ?? 0;
        const deadline = performance.now() + (so.timeoutMs ?? 15_000);
        let last = -1;
        let since = performance.now();
        while (performance.now() < deadline && proc.exitInfo() === undefined) {
          const c = countPcapPackets(opts.file);
          if (c !== last) {
            last = c;
            since = performance.now();
          }
          const quietMs = so.quietMs ?? (so.minPackets !== undefined && c >= minPackets ? 300 : 1200);
          if (c >= minPackets && performance.now() - since >= quietMs) break;
          await sleep(100);
        }
        const info = await proc.stop({ signal: 'SIGINT', graceMs: 5000 });
        if (info.code !== 0 && info.signal !== 'SIGINT') {
          throw new Error(`dumpcap ended with ${JSON.stringify(info)}: ${proc.stderr().trim()}`);
        }
        return { file: opts.file, packets: countPcapPackets(opts.file) };
      })();
      return result;
    },
  };
  return capture;
}

const HEX_RE = /^[0-9a-fA-F]*$/;

function checkHex(name: string, v: string, bytes?: number): string {
  if (typeof v !== 'string' || !HEX_RE.test(v) || v.length % 2 !== 0) throw new TypeError(`${name} must be hex without 0x, got ${JSON.stringify(v)}`);
  if (bytes !== undefined && v.length !== bytes * 2) throw new RangeError(`${name} must be ${bytes} bytes`);
  return v;
}

function checkUatString(name: string, v: string): string {
  if (typeof v !== 'string' || v.includes('"') || /[\r\n]/.test(v)) throw new TypeError(`${name}: invalid UAT string ${JSON.stringify(v)}`);
  return v;
}

/**
 * One line of Wireshark's `ikev2_decryption_table` UAT: SPIs and keys in hex
 * without 0x, algorithm names exactly as Wireshark lists them. For AES-GCM
 * the SK_e keys include the 4-byte salt and the integrity fields stay empty
 * with `NONE [RFC4306]`.
 */
export function ikev2DecryptionLine(e: {
  spiI: string;
  spiR: string;
  skEi: string;
  skEr: string;
  /** e.g. `AES-GCM-256 with 16 octet ICV [RFC5282]` */
  encr: string;
  skAi?: string;
  skAr?: string;
  /** e.g. `NONE [RFC4306]`, `HMAC_SHA2_256_128 [RFC4868]` */
  integ?: string;
}): string {
  return [
    checkHex('spiI', e.spiI, 8),
    checkHex('spiR', e.spiR, 8),
    checkHex('skEi', e.skEi),
    checkHex('skEr', e.skEr),
    `"${checkUatString('encr', e.encr)}"`,
    checkHex('skAi', e.skAi ?? ''),
    checkHex('skAr', e.skAr ?? ''),
    `"${checkUatString('integ', e.integ ?? 'NONE [RFC4306]')}"`,
  ].join(',');
}

/**
 * One line of Wireshark's `esp_sa` UAT. The SPI is hex without 0x (4 bytes);
 * for AES-GCM the key includes the 4-byte salt.
 */
export function espSaLine(e: {
  spi: string;
  /** e.g. `AES-GCM with 16 octet ICV [RFC4106]` */
  encr: string;
  key: string;
  /** e.g. `NULL` (AEAD), `HMAC-SHA-256-128 [RFC4868]` */
  integ?: string;
  integKey?: string;
  protocol?: 'IPv4' | 'IPv6';
  src?: string;
  dst?: string;
}): string {
  const q = (name: string, v: string) => `"${checkUatString(name, v)}"`;
  return [
    q('protocol', e.protocol ?? 'IPv4'),
    q('src', e.src ?? '*'),
    q('dst', e.dst ?? '*'),
    q('spi', `0x${checkHex('spi', e.spi, 4)}`),
    q('encr', e.encr),
    q('key', `0x${checkHex('key', e.key)}`),
    q('integ', e.integ ?? 'NULL'),
    q('integKey', `0x${checkHex('integKey', e.integKey ?? '')}`),
  ].join(',');
}

export interface WiresharkTables {
  /**
   * Directory holding a key log written by ikeclone (`ikev2_decryption_table`
   * and/or `esp_sa`, already in UAT format); its files are copied.
   */
  readonly keylogDir?: string;
  /** Lines of the `ikev2_decryption_table` UAT (see {@link ikev2DecryptionLine}). */
  readonly ikeDecryptionTable?: readonly string[];
  /** Lines of the `esp_sa` UAT (see {@link espSaLine}). */
  readonly espSas?: readonly string[];
}

/**
 * Fills a Wireshark configuration directory with the UAT files: first the
 * files from `keylogDir`, then the given lines appended.
 */
export function writeWiresharkConfig(dir: string, t: WiresharkTables): void {
  for (const file of ['ikev2_decryption_table', 'esp_sa'] as const) {
    const target = join(dir, file);
    if (t.keylogDir !== undefined && existsSync(join(t.keylogDir, file))) {
      const text = readFileSync(join(t.keylogDir, file), 'utf8');
      text.split('\n').forEach((l, i) => checkUatLine(`${t.keylogDir}/${file}:${i + 1}`, l));
      copyFileSync(join(t.keylogDir, file), target);
    }
    const lines = file === 'esp_sa' ? t.espSas : t.ikeDecryptionTable;
    if (lines && lines.length > 0) {
      lines.forEach((l, i) => checkUatLine(`${file} line ${i + 1}`, l));
      appendFileSync(target, lines.map((l) => `${l}\n`).join(''));
    }
  }
}

/** Number of fields of each UAT in Wireshark 4.0. */
const UAT_FIELDS = 8;

/**
 * Checks the syntax of one UAT line: comma-separated fields, each a quoted
 * string or bare hex bytes; blank lines and `#` comments pass. tshark's UAT
 * reader echoes what it cannot parse to stdout and drops the line without an
 * error, so malformed lines must be caught here.
 */
export function checkUatLine(where: string, line: string): void {
  if (typeof line !== 'string') throw new TypeError(`${where}: UAT line must be a string`);
  if (line.trim() === '' || line.startsWith('#')) return;
  const field = String.raw`(?:"(?:[^"\\\r\n]|\\.)*"|(?:[0-9a-fA-F]{2})*)`;
  if (!new RegExp(`^${field}(?:,${field})*$`).test(line)) {
    throw new TypeError(`${where}: not a Wireshark UAT line (quoted strings or hex bytes, comma-separated): ${line}`);
  }
  // the syntax check passed, so every comma outside a quoted string separates two fields
  const fields = line.replace(/"(?:[^"\\]|\\.)*"/g, '').split(',').length;
  if (fields !== UAT_FIELDS) throw new TypeError(`${where}: expected ${UAT_FIELDS} UAT fields, got ${fields}: ${line}`);
}

export interface DecodeOptions extends WiresharkTables {
  /** tshark field names (`-e`), e.g. `isakmp.exchangetype`. */
  readonly fields: readonly string[];
  /** Display filter (`-Y`). */
  readonly displayFilter?: string;
  /** Extra preferences (`-o name:value`). */
  readonly preferences?: Readonly<Record<string, string>>;
  /** Bound on the tshark run. Default 30 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Decodes `pcap` with tshark and returns one row per displayed packet, one
 * cell per field (multiple occurrences joined by `,`; empty when absent).
 * With ESP SAs, ESP decryption is switched on. Throws when tshark fails or
 * rejects a decryption table (tshark would otherwise go on without it).
 */
export async function decode(pcap: string, opts: DecodeOptions): Promise<string[][]> {
  if (!existsSync(pcap)) throw new Error(`decode: no such capture ${pcap}`);
  if (!opts || !Array.isArray(opts.fields) || opts.fields.length === 0) throw new TypeError('decode: fields must be a non-empty array');
  for (const f of opts.fields) if (!/^[A-Za-z0-9_.-]+$/.test(f)) throw new TypeError(`decode: invalid field name ${JSON.stringify(f)}`);
  const configDir = mkdtempSync(join(tmpdir(), 'ikc-ws-'));
  try {
    writeWiresharkConfig(configDir, opts);
    const args = ['-r', pcap, '-n', '-T', 'fields', '-E', 'separator=|', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'quote=n'];
    const hasEsp = (opts.espSas?.length ?? 0) > 0 || (opts.keylogDir !== undefined && existsSync(join(opts.keylogDir, 'esp_sa')));
    if (hasEsp) args.push('-o', 'esp.enable_encryption_decode:TRUE');
    for (const [k, v] of Object.entries(opts.preferences ?? {})) args.push('-o', `${k}:${v}`);
    if (opts.displayFilter !== undefined) args.push('-Y', opts.displayFilter);
    for (const f of opts.fields) args.push('-e', f);
    const r = await run('tshark', args, {
      env: { ...process.env, WIRESHARK_CONFIG_DIR: configDir },
      timeoutMs: opts.timeoutMs ?? 30_000,
    });
    if (r.code !== 0 || r.timedOut) throw new Error(describeRun(r));
    const complaints = r.stderr
      .split('\n')
      .filter((l) => l.trim() && !/Running as user "root"/.test(l));
    if (complaints.length > 0) throw new Error(`tshark complained (decryption table or preference rejected?):\n${complaints.join('\n')}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => l.split('|'));
  } finally {
    rmSync(configDir, { recursive: true, force: true });
  }
}

/** Writes `lines` as a UAT file (for callers that manage their own config dir). */
export function writeUatFile(path: string, lines: readonly string[]): void {
  writeFileSync(path, lines.map((l) => `${l}\n`).join(''));
}
