// Status of the data plane: a synchronous snapshot (worker totals read from
// shared memory, the I/O thread's counters, the devices) and fresh per-SA
// counters asked from every worker, with the single-writer debug hook
// (architecture §4.1: which worker touched which SA's sequence counter or
// replay window).
//
// Owner: the I/O thread. It only reads what the workers write (their stats
// arrays in shared memory; per-SA counters by request): nothing here writes SA state.
import type { TunStats } from '../io/tun.js';
import type { RawEspStats } from '../io/rawesp.js';
import type { SaCounters } from './kernel.js';
import { WorkerStat, type CountersReply } from './messages.js';
import type { IoCounters, PlaneState } from './state.js';
import { loadNativeIo, nativeIoUnavailable } from '../io/native-io.js';

export interface WorkerDrops {
  replay: number;
  /** ICV did not verify. */
  icv: number;
  malformed: number;
  seqExhausted: number;
  noSa: number;
  queueFull: number;
  /** Outer CE over an inner Not-ECT packet (RFC 6040 §4.2); always reported by status(). */
  ecn?: number;
  /** Inner packets read from the worker's TUN queue that the owner's hand-off ring had no room for. */
  handOffFull: number;
}

export interface WorkerCounters {
  index: number;
  /** Child SAs this worker owns. */
  sas: number;
  encapPackets: number;
  encapBytes: number;
  decapPackets: number;
  decapBytes: number;
  espBytesOut: number;
  drops: WorkerDrops;
  batches: number;
  busyMs: number;
  /** Direct output: ESP this worker sent itself, and decapsulated packets it wrote to the TUN device itself. */
  espSent: number;
  innerWritten: number;
  /**
   * Steered input (worker-input.ts), when the worker reads its own socket of
   * the NAT-T port: datagrams read, ESP for SPIs it holds no SA for (also in
   * io.dropUnknownSpi, the gateway's total), receive errors, and ESP held
   * for an SPI not installed yet (steered-hold.ts; opened once it was, else
   * counted in unknownSpi).
   */
  steered?: { in: number; unknownSpi: number; errors: number; held: number };
  /** Inner packets this worker read from its own TUN queue (tun-input.ts; 0 when the I/O thread reads the device). */
  tunReads: number;
  /** Of them, handed to the worker owning their SA (this worker owns no member of their family); and those it got from others. */
  handOffsOut: number;
  handOffsIn: number;
}

/** Synchronous snapshot for status: worker totals (from shared memory) and I/O counters. */
export interface DataPlaneStatus {
  workers: WorkerCounters[];
  io: IoCounters;
  /** Installed Child SAs. */
  sas: number;
  /** Members of each outbound family (SAs sharing selectors). */
  families: number[];
  /** The TUN device, when there is one. */
  tun: ({ name: string; mtu: number } & TunStats) | null;
  /** The raw ESP socket, when open. */
  rawEsp: RawEspStats | null;
  /** Who writes the output (see the header): 'workers' or 'io-thread'. */
  output: 'workers' | 'io-thread';
  /** Who reads the TUN device (tun-input.ts): 'workers' (a queue each) or 'io-thread'. */
  tunInput: 'workers' | 'io-thread';
  /** How idle workers wait (worker-epoll.ts): 'epoll' or 'event-loop'. */
  workerLoop: 'epoll' | 'event-loop';
  /**
   * ESP in UDP sent in UDP_SEGMENT runs (native/io/udp.c), by the whole
   * process: runs, the datagrams in them, runs the kernel refused (sent one
   * by one instead); null without the native addon.
   */
  udpGso: { runs: number; datagrams: number; refused: number } | null;
}

export interface SaCountersReport {
  id: number;
  spiIn: number;
  worker: number;
  outbound: boolean;
  in: SaCounters;
  out: SaCounters;
}

/** Fresh counters from every worker (one round trip each). */
export interface DataPlaneCounters extends DataPlaneStatus {
  sa: SaCountersReport[];
  /** Per worker: SA ids whose sequence counter or replay window that worker processed (architecture §4.1 debug hook). */
  seqWriters: number[][];
}

export class StatusReader {
  constructor(private readonly s: PlaneState) {}

  /** Who writes the output (dataplane.ts header). */
  get outputMode(): 'workers' | 'io-thread' {
    return this.s.direct ? 'workers' : 'io-thread';
  }

  /** Counters without asking the workers (their totals live in shared memory). */
  status(): DataPlaneStatus {
    const sas = this.s.sad?.all() ?? [];
    // What workers wrote themselves (direct output) counts where the I/O thread would have counted it.
    const io = { ...this.s.io };
    const tun = this.s.tun ? { name: this.s.tun.name, mtu: this.s.tun.mtu, ...this.s.tun.stats } : null;
    for (const w of this.s.workers) {
      const s = w.stats;
      io.espOut += s[WorkerStat.ESP_SENT]!;
      io.espOutBytes += s[WorkerStat.ESP_SENT_BYTES]!;
      io.dropSend += s[WorkerStat.SEND_ERRORS]!;
      io.innerOut += s[WorkerStat.INNER_WRITTEN]!;
      io.dropPolicy += s[WorkerStat.DROP_POLICY]!;
      // Steered input: ESP the workers read themselves counts as ESP in, like the I/O thread's.
      io.espIn += s[WorkerStat.STEERED_IN]!;
      io.espInBytes += s[WorkerStat.STEERED_IN_BYTES]!;
      io.dropUnknownSpi += s[WorkerStat.DROP_UNKNOWN_SPI]!;
      io.dropNoSink += s[WorkerStat.TUN_DROPPED]! + s[WorkerStat.TUN_ERRORS]!;
      // TUN input: what the workers read from their queues counts as the I/O thread's reads did.
      io.innerIn += s[WorkerStat.TUN_READS]!;
      io.dropNoPolicy += s[WorkerStat.INNER_NO_POLICY]!;
      io.dropMalformed += s[WorkerStat.INNER_MALFORMED]!;
      if (tun) {
        tun.rxPackets += s[WorkerStat.TUN_READS]!;
        tun.rxBytes += s[WorkerStat.TUN_READ_BYTES]!;
        tun.rxReads += s[WorkerStat.TUN_READ_CALLS]!;
        tun.rxSegmented += s[WorkerStat.TUN_SEGMENTED]!;
        tun.errors += s[WorkerStat.TUN_READ_ERRORS]!;
        tun.txPackets += s[WorkerStat.INNER_WRITTEN]!;
        tun.txBytes += s[WorkerStat.INNER_WRITTEN_BYTES]!;
        tun.txWrites += s[WorkerStat.TUN_WRITES]!;
        tun.txCoalesced += s[WorkerStat.TUN_COALESCED]!;
        tun.txDropped += s[WorkerStat.TUN_DROPPED]!;
        tun.errors += s[WorkerStat.TUN_ERRORS]!;
      }
    }
    return {
      workers: this.s.workers.map((w) => {
        const s = w.stats;
        return {
          index: w.index,
          sas: sas.filter((r) => r.worker === w.index).length,
          encapPackets: s[WorkerStat.ENCAP_PACKETS]!,
          encapBytes: s[WorkerStat.ENCAP_BYTES]!,
          decapPackets: s[WorkerStat.DECAP_PACKETS]!,
          decapBytes: s[WorkerStat.DECAP_BYTES]!,
          espBytesOut: s[WorkerStat.ESP_BYTES_OUT]!,
          drops: {
            replay: s[WorkerStat.DROP_REPLAY]!,
            icv: s[WorkerStat.DROP_AUTH]!,
            malformed: s[WorkerStat.DROP_MALFORMED]!,
            seqExhausted: s[WorkerStat.DROP_SEQ_EXHAUSTED]!,
            noSa: s[WorkerStat.DROP_NO_SA]!,
            queueFull: s[WorkerStat.DROP_QUEUE_FULL]!,
            ecn: s[WorkerStat.DROP_ECN]!,
            handOffFull: s[WorkerStat.DROP_HANDOFF_FULL]!,
          },
          batches: s[WorkerStat.BATCHES]!,
          busyMs: Math.round(s[WorkerStat.BUSY_MS]! * 1000) / 1000,
          espSent: s[WorkerStat.ESP_SENT]!,
          innerWritten: s[WorkerStat.INNER_WRITTEN]!,
          tunReads: s[WorkerStat.TUN_READS]!,
          handOffsOut: s[WorkerStat.HANDOFFS_OUT]!,
          handOffsIn: s[WorkerStat.HANDOFFS_IN]!,
          ...(this.s.steered ? { steered: { in: s[WorkerStat.STEERED_IN]!, unknownSpi: s[WorkerStat.DROP_UNKNOWN_SPI]!, errors: s[WorkerStat.STEERED_ERRORS]!, held: s[WorkerStat.STEERED_HELD]! } } : {}),
        };
      }),
      io,
      sas: sas.length,
      families: this.s.spd.familySizes,
      tun,
      rawEsp: this.s.rawSocket ? { ...this.s.rawSocket.stats } : null,
      output: this.outputMode,
      tunInput: this.s.tunRead ? 'workers' : 'io-thread',
      workerLoop: this.s.workerLoop,
      udpGso: udpGsoCounts(),
    };
  }

  /** Fresh per-SA counters from every worker, and the single-writer debug hook. */
  async counters(): Promise<DataPlaneCounters> {
    const sad = this.s.requireSad();
    const replies: CountersReply[] = await Promise.all(
      this.s.workers.map((w) => {
        const slots = sad.all().filter((r) => r.worker === w.index).flatMap((r) => [r.inSlot, r.outSlot]);
        return w.counters(slots);
      }),
    );
    const sa: SaCountersReport[] = [];
    for (const r of sad.all()) {
      const reply = replies[r.worker]!;
      const inC = reply.slots.find((s) => s.slot === r.inSlot && s.saId === r.id);
      const outC = reply.slots.find((s) => s.slot === r.outSlot && s.saId === r.id);
      if (inC && outC) sa.push({ id: r.id, spiIn: r.spiIn, worker: r.worker, outbound: r.outbound, in: inC.counters, out: outC.counters });
    }
    return { ...this.status(), sa, seqWriters: replies.map((r) => r.seqWriters) };
  }
}

/** The addon's UDP_SEGMENT counters (process-wide), or null without it. */
function udpGsoCounts(): DataPlaneStatus['udpGso'] {
  if (nativeIoUnavailable() !== null) return null;
  const [runs, datagrams, refused] = loadNativeIo().udpGsoStats();
  return { runs, datagrams, refused };
}
