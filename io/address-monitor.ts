// Notices local address changes for MOBIKE (RFC 4555 §3.5): polls
// os.networkInterfaces() at a bounded interval. libuv lists only interfaces
// that are up and running, so a link going down removes its addresses here
// even though they stay configured, and a link coming back returns them.
//
// Owner: the main thread (a timer; unref'd so it never holds the process).
import { EventEmitter } from 'node:events';
import { networkInterfaces } from 'node:os';

export interface AddressMonitorEvents {
  change: [added: string[], removed: string[]];
}

/** IPv4 and global/ULA IPv6 addresses of interfaces that are up. */
export function usableAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      if (i.family === 'IPv6' && i.address.toLowerCase().startsWith('fe80')) continue;
      out.push(i.address);
    }
  }
  return [...new Set(out)];
}

export class AddressMonitor extends EventEmitter<AddressMonitorEvents> {
  private known: Set<string>;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs = 1000,
    private readonly list: () => string[] = usableAddresses,
  ) {
    super();
    if (!(intervalMs >= 50)) throw new RangeError('AddressMonitor: interval must be at least 50 ms');
    this.known = new Set(list());
  }

  /** Addresses usable right now (as of the last poll). */
  current(): string[] {
    return [...this.known];
  }

  start(): this {
    if (!this.timer) {
      this.timer = setInterval(() => this.poll(), this.intervalMs);
      this.timer.unref();
    }
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Compare with the last view; emits 'change' when addresses came or went. */
  poll(): void {
    const now = new Set(this.list());
    const added = [...now].filter((a) => !this.known.has(a));
    const removed = [...this.known].filter((a) => !now.has(a));
    this.known = now;
    if (added.length > 0 || removed.length > 0) this.emit('change', added, removed);
  }
}
