// A TUN device for inner traffic (Linux, root): IFF_TUN | IFF_NO_PI, so every
// read is one IP packet and every write takes one; optionally IFF_MULTI_QUEUE
// with several queues (the kernel spreads flows over them). Opening the
// device needs an ioctl, which Node cannot do: native/tun is a small
// Node-API addon (built with node-gyp) for open, configure, non-blocking
// read/write and a libuv poll watch.
//
// Concurrency: a TunDevice belongs to the I/O thread that opened it; its
// watch fires on that thread's event loop. Reads hand each packet to the
// caller synchronously (a view of one reused buffer); writes are
// non-blocking: a full device queue drops the packet (counted).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { InnerSink } from './dataplane.js';

export interface TunOptions {
  /** Interface name, 1..15 bytes (e.g. "ikc0"). An existing persistent device of that name is attached. */
  name: string;
  /** MTU (default 1400: room for ESP, UDP and the outer IPv4 header in a 1500-byte path). */
  mtu?: number;
  /** Queues (IFF_MULTI_QUEUE when more than 1); default 1. */
  queues?: number;
}

export interface TunStats {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Writes refused because the device queue was full (EAGAIN). */
  txDropped: number;
  errors: number;
}

interface TunAddon {
  open(name: string, multiQueue: boolean): { fd: number; name: string };
  configure(name: string, mtu: number): void;
  read(fd: number, buffer: Uint8Array): number;
  write(fd: number, buffer: Uint8Array): number;
  watch(fd: number, callback: (status: number) => void): unknown;
  unwatch(handle: unknown): void;
  close(fd: number): void;
}

const EAGAIN = 11;
/** Packets read per readiness event before yielding to the rest of the loop. */
const READ_BUDGET = 256;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** Path of the compiled addon (native/tun/build/Release), found from this file in the sources or in dist/. */
export function tunAddonPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'native', 'tun', 'build', 'Release', 'ikeclone_tun.node');
    const up = dirname(dir);
    if (up === dir) throw new Error('TUN: no package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

let addon: TunAddon | undefined;

function loadAddon(): TunAddon {
  if (addon) return addon;
  const path = tunAddonPath();
  if (!existsSync(path)) throw new Error(`TUN: ${path} is missing: build it with node-gyp (npm run build:native)`);
  addon = createRequire(import.meta.url)(path) as TunAddon;
  return addon;
}

/** Why a TUN device cannot be used here, or null when it can (addon built, /dev/net/tun present). */
export function tunUnavailable(): string | null {
  if (process.platform !== 'linux') return 'TUN devices are supported on Linux only';
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  try {
    loadAddon();
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

export class TunDevice implements InnerSink {
  readonly name: string;
  readonly mtu: number;
  readonly stats: TunStats = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, errors: 0 };
  private readonly fds: number[];
  private readonly watches: unknown[] = [];
  private readonly buffer = new Uint8Array(65536);
  private next = 0;
  private closed = false;

  private constructor(private readonly api: TunAddon, name: string, fds: number[], mtu: number) {
    this.name = name;
    this.fds = fds;
    this.mtu = mtu;
  }

  /** Create (or attach to) the device, set its MTU and bring it up. Throws with the system's reason. */
  static open(opts: TunOptions): TunDevice {
    if (!opts || typeof opts.name !== 'string' || !IFNAME_RE.test(opts.name)) throw new TypeError('TUN: name must be 1..15 of [A-Za-z0-9_.-]');
    const mtu = opts.mtu ?? 1400;
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 9000) throw new RangeError('TUN: mtu must be an integer from 576 to 9000');
    const queues = opts.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > 64) throw new RangeError('TUN: queues must be an integer from 1 to 64');
    const api = loadAddon();
    const fds: number[] = [];
    let name = opts.name;
    try {
      for (let q = 0; q < queues; q++) {
        const r = api.open(name, queues > 1);
        fds.push(r.fd);
        name = r.name;
      }
      api.configure(name, mtu);
    } catch (err) {
      for (const fd of fds) api.close(fd);
      throw err;
    }
    return new TunDevice(api, name, fds, mtu);
  }

  /** Deliver every packet read from the device to `onPacket` (a view valid only during the call). */
  start(onPacket: (packet: Uint8Array) => void): void {
    if (this.closed) throw new Error('TUN device is closed');
    if (this.watches.length > 0) throw new Error('TUN device already started');
    for (const fd of this.fds) {
      this.watches.push(this.api.watch(fd, () => this.drain(fd, onPacket)));
    }
  }

  private drain(fd: number, onPacket: (packet: Uint8Array) => void): void {
    for (let i = 0; i < READ_BUDGET && !this.closed; i++) {
      const n = this.api.read(fd, this.buffer);
      if (n === 0) return;
      if (n < 0) {
        this.stats.errors++;
        return;
      }
      this.stats.rxPackets++;
      this.stats.rxBytes += n;
      onPacket(this.buffer.subarray(0, n));
    }
  }

  /** Write one inner packet (InnerSink). False when the device dropped it. */
  write(packet: Uint8Array): boolean {
    if (this.closed) return false;
    const fd = this.fds[this.next]!;
    if (this.fds.length > 1) this.next = (this.next + 1) % this.fds.length;
    const n = this.api.write(fd, packet);
    if (n === packet.length) {
      this.stats.txPackets++;
      this.stats.txBytes += n;
      return true;
    }
    if (n === -EAGAIN) this.stats.txDropped++;
    else this.stats.errors++;
    return false;
  }

  /** Stop reading and close every queue (a non-persistent device disappears). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) this.api.unwatch(w);
    this.watches.length = 0;
    for (const fd of this.fds) this.api.close(fd);
  }
}
