// CRLs found through a certificate's cRLDistributionPoints and served from
// local files (load.ts localCrlResolver): read and decoded once per version
// of the file, not on every chain validation (RFC 5280 §6.3). A file is
// known by its identity and version (device, inode, size, modification and
// change times, to the nanosecond): any change, a rewrite or a rename over
// it, reads it again. Bounded in entries, least recently used out first.
//
// Owner: the thread that validates chains (the main thread); no locking.

import { statSync } from 'node:fs';
import type { CryptoResult } from '../result.js';
import { parseCrl, type ParsedCrl } from './crl.js';

/** Files whose CRL is kept (strongSwan keeps every CRL it fetched; a gateway names a few distribution points). */
export const DEFAULT_CRL_FILE_CACHE_ENTRIES = 64;

interface Entry {
  version: string;
  der: Uint8Array;
}

export interface CrlFileCacheStats {
  /** A file unchanged since it was read: its DER (and decoded CRL) reused. */
  hits: number;
  /** A file read (first use, or changed). */
  reads: number;
  /** Entries dropped for room. */
  evictions: number;
}

/** The decoded CRL of a DER this cache handed out, once asked for; `null` until then. */
const decoded = new WeakMap<Uint8Array, CryptoResult<ParsedCrl> | null>();

export class CrlFileCache {
  /** In least-recently-used order (a hit moves its entry to the end). */
  private readonly entries = new Map<string, Entry>();
  readonly stats: CrlFileCacheStats = { hits: 0, reads: 0, evictions: 0 };

  constructor(readonly maxEntries = DEFAULT_CRL_FILE_CACHE_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * The CRL DER of the file at `path`: the one read before while the file is
   * unchanged, else `read(path)` (undefined when absent or unusable, which is
   * not kept). The version is taken before reading, so a file that changes
   * while it is read is read again next time.
   */
  get(path: string, read: (path: string) => Uint8Array | undefined): Uint8Array | undefined {
    const version = fileVersion(path);
    const cached = this.entries.get(path);
    if (version === undefined) {
      this.entries.delete(path);
      return undefined;
    }
    if (cached && cached.version === version) {
      this.stats.hits++;
      this.entries.delete(path);
      this.entries.set(path, cached);
      return cached.der;
    }
    this.entries.delete(path);
    this.stats.reads++;
    const der = read(path);
    if (!der) return undefined;
    decoded.set(der, null);
    this.entries.set(path, { version, der });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
      this.stats.evictions++;
    }
    return der;
  }
}

function fileVersion(path: string): string | undefined {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/**
 * The decoded CRL of a resolved DER: decoded once for a DER a CrlFileCache
 * handed out (the cache keeps that array while the file is unchanged, and
 * nobody writes to it), decoded every time for any other.
 */
export function decodeResolvedCrl(der: Uint8Array): CryptoResult<ParsedCrl> {
  const known = decoded.get(der);
  if (known) return known;
  const crl = parseCrl(der);
  if (known === null) decoded.set(der, crl);
  return crl;
}

/** The cache localCrlResolver uses unless given another: one per process, as the files are. */
export const sharedCrlFileCache = new CrlFileCache();
