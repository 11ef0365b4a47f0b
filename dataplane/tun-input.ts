// Who reads the TUN device, decided at start, and what the readers need.
//
// With direct output (workers write their own output), the default is that
// the workers read too: the device is opened with one queue per worker
// (IFF_MULTI_QUEUE when more than one), worker i reads queue i and seals the
// packets of SAs it owns where it read them (worker-tun-input.ts). The I/O
// thread then reads nothing from the device. It keeps today's path (it reads
// every queue, SPD, owner's in ring) when:
//   - `tunInput: 'io-thread'` or `output: 'io-thread'` says so;
//   - a tunnel or outer MTU is configured: the path MTU check and its ICMP
//     answers (path-check.ts) are the I/O thread's state;
//   - more workers than MAX_TUN_READING_WORKERS (the hand-off rings grow as
//     workers squared);
//   - the device cannot have that many queues (an existing persistent
//     device without IFF_MULTI_QUEUE, a kernel without it): logged, and the
//     device is opened as configured.
// PolicyFeed keeps every worker's copy of the SPD (worker-spd.ts) current.
//
// Owner: the I/O thread.
import { TunDevice } from '../io/tun.js';
import { PATH_DEFAULTS } from './path-mtu.js';
import { MAX_TUN_READING_WORKERS } from './defaults.js';
import type { DataPlaneLogger, DataPlaneOptions, PlaneState } from './state.js';

export interface OpenedTun {
  tun: TunDevice;
  /** Worker i reads queue i (one queue per worker). */
  workersRead: boolean;
}

/** Why the workers cannot read their own queues with these options, or null when they can. */
export function workerReadRefusal(opts: DataPlaneOptions, workers: number): string | null {
  if (opts.tunInput === 'io-thread') return 'tunInput: io-thread';
  if (opts.output === 'io-thread') return 'output: io-thread';
  const path = { ...PATH_DEFAULTS, ...opts.path };
  if (path.tunnelMtu !== 'auto' || path.outerMtu !== undefined) return 'a tunnel or outer MTU is configured (the I/O thread checks the path MTU)';
  if (workers > MAX_TUN_READING_WORKERS) return `more than ${MAX_TUN_READING_WORKERS} workers`;
  return null;
}

/** Open the configured TUN device (none: undefined), with one queue per worker when they read it. */
export function openTun(opts: DataPlaneOptions, workers: number, log: DataPlaneLogger): OpenedTun | undefined {
  if (!opts.tun) return undefined;
  const refusal = workerReadRefusal(opts, workers);
  if (refusal === null) {
    try {
      return { tun: TunDevice.open({ ...opts.tun, queues: workers }), workersRead: true };
    } catch (err) {
      log.info({ tun: opts.tun.name, queues: workers, err: (err as Error).message }, 'TUN: no queue per worker; the I/O thread reads the device');
    }
  } else {
    log.debug({ tun: opts.tun.name, reason: refusal }, 'TUN: the I/O thread reads the device');
  }
  return { tun: TunDevice.open(opts.tun), workersRead: false };
}

/**
 * Sends every worker the SPD's families whenever they change, at once: on
 * each worker's port the table then precedes the delete of an SA it no longer
 * names (install.ts takes an SA out of the SPD before its slots are wiped), so
 * a rekey's old SA stops being chosen before its slot goes.
 */
export class PolicyFeed {
  constructor(private readonly s: PlaneState) {}

  start(): void {
    this.s.spd.onChange = () => this.send();
    this.send();
  }

  stop(): void {
    this.s.spd.onChange = undefined;
  }

  private send(): void {
    if (!this.s.running) return;
    const running = this.s.workers.filter((w) => w.running);
    // Each worker's own copy: an SA still installing is named to its owner only (spd.ts senders).
    const tables = this.s.spd.policyTables(running.map((w) => w.index));
    for (const w of running) {
      const families = tables.get(w.index)!;
      w.request({ op: 'policies', families }).catch((err: Error) => {
        if (this.s.running) this.s.log.warn({ worker: w.index, err: err.message }, 'policy update to a worker failed: its TUN queue may use an old table');
      });
    }
  }
}
