// Receive demultiplexing benchmark (`npm run bench -- demux --json`, root):
// with one clone per worker on one address, every worker's inbound ESP
// arrives at the same address, and someone must hand each packet to the
// worker that owns its SPI. Node 20's dgram has no SO_REUSEPORT (and
// SO_REUSEPORT spreads by 4-tuple, which the clones of one peer share), so
// the candidates are:
//   one-reader         the I/O thread reads one raw ESP socket (recvmmsg),
//                      looks up the SPI and pushes the packet into the owner
//                      worker's ring (what the data plane does)
//   socket-per-worker  every worker reads its own raw ESP socket and keeps
//                      the packets of its SPI; the kernel gives each socket a
//                      copy of every packet, so each worker reads and drops
//                      the others' share too
// A sender thread sends raw ESP to 127.0.0.1 as fast as it can, round robin
// over one SPI per worker, for a window of 4 x --max-time seconds (default
// 1 s); the rate is the packets that reached their owner worker, summed. The
// sender shares the machine with the receivers, so a cheaper receive path
// also leaves it more time: the figure is the whole system's. Models
// alternate over ROUNDS rounds; the median round counts.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BatchedSocket } from '../io/batched-socket.js';
import { nativeIoUnavailable } from '../io/native-io.js';
import { CellKind, createRing, RingWriter } from '../dataplane/ring.js';
import type { DemuxCounts, DemuxRole } from './demux-worker.js';
import { formatTable, round, type SuiteOptions } from './common.js';

type Model = 'one-reader' | 'socket-per-worker';

export interface DemuxResult {
  model: Model;
  workers: number;
  /** ESP packet bytes (SPI on). */
  size: number;
  /** Packets the sender got out per second. */
  sentPps: number;
  /** Packets that reached their owner worker per second. */
  deliveredPps: number;
  /** Share of the sent packets that never reached their owner. */
  lost: number;
}

export interface DemuxReport {
  suite: 'demux';
  node: string;
  workers: number;
  results: DemuxResult[];
  ratios: Record<string, { value: number; description: string }>;
}

const SPI_BASE = 0xde00_0100;
const SIZES = [100, 1400] as const;
const ROUNDS = 3;
const MODELS: readonly Model[] = ['one-reader', 'socket-per-worker'];

/** The SPI of an ESP packet as a raw IPv4 socket reads it (IP header first), or -1 when too short. */
export function rawEspSpi(bytes: Uint8Array): number {
  const ihl = (bytes[0]! & 0x0f) * 4;
  if (bytes.length < ihl + 8) return -1;
  return ((bytes[ihl]! << 24) | (bytes[ihl + 1]! << 16) | (bytes[ihl + 2]! << 8) | bytes[ihl + 3]!) >>> 0;
}

function thread(job: DemuxRole): { worker: Worker; ready: Promise<void>; done: Promise<DemuxCounts> } {
  const worker = new Worker(new URL('./demux-worker.js', import.meta.url), { workerData: job });
  const ready = new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', () => resolve());
  });
  const done = ready.then(() => new Promise<DemuxCounts>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`a demux thread exited (${code}) before reporting`)));
    worker.once('message', resolve);
  }));
  return { worker, ready, done };
}

async function runModel(model: Model, workers: number, size: number, windowMs: number): Promise<DemuxResult> {
  const flags = new SharedArrayBuffer(8);
  const flag = new Int32Array(flags);
  const threads: Array<ReturnType<typeof thread>> = [];
  let reader: BatchedSocket | undefined;
  let publish: NodeJS.Immediate | undefined;
  try {
    if (model === 'one-reader') {
      const rings = Array.from({ length: workers }, () => createRing());
      const writers = rings.map((ring) => new RingWriter(ring));
      for (const ring of rings) threads.push(thread({ role: 'consumer', flags, ring }));
      reader = BatchedSocket.openRaw(50, 4 << 20);
      reader.start((bytes) => {
        const w = writers[rawEspSpi(bytes) - SPI_BASE];
        if (w === undefined || !w.push(bytes.subarray((bytes[0]! & 0x0f) * 4), 0, CellKind.DECAP, 0)) return;
        // Publish once per turn of the event loop, as the data plane does.
        publish ??= setImmediate(() => {
          publish = undefined;
          for (const x of writers) x.publish();
        });
      });
    } else {
      for (let i = 0; i < workers; i++) threads.push(thread({ role: 'socket', flags, spi: SPI_BASE + i }));
    }
    const sender = thread({ role: 'sender', flags, spiBase: SPI_BASE, sas: workers, size });
    await Promise.all([...threads, sender].map((t) => t.ready));
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    Atomics.store(flag, 1, 1);
    const sent = (await sender.done).packets;
    const got = await Promise.all(threads.map((t) => t.done));
    const delivered = got.reduce((n, c) => n + c.packets, 0);
    return {
      model, workers, size,
      sentPps: Math.round((sent * 1000) / windowMs),
      deliveredPps: Math.round((delivered * 1000) / windowMs),
      lost: round(sent > 0 ? Math.max(0, 1 - delivered / sent) : 0),
    };
  } finally {
    Atomics.store(flag, 1, 1);
    if (publish) clearImmediate(publish);
    reader?.close();
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }
}

/** Run the suite; prints a table (or JSON with opts.json) and returns the report. */
export async function runDemuxBench(opts: SuiteOptions): Promise<DemuxReport> {
  if (process.getuid?.() !== 0) throw new Error('the demux benchmark needs root (raw ESP sockets)');
  const missing = nativeIoUnavailable();
  if (missing) throw new Error(`the demux benchmark needs the native I/O addon: ${missing}`);
  const workers = availableParallelism();
  const windowMs = Math.round(Math.max(0.2, opts.maxTime * 4) * 1000);
  const results: DemuxResult[] = [];
  const ratios: DemuxReport['ratios'] = {};
  for (const size of SIZES) {
    const runs = new Map<Model, DemuxResult[]>(MODELS.map((m) => [m, []]));
    const perRound: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const row = new Map<Model, DemuxResult>();
      for (const model of r % 2 === 0 ? MODELS : [...MODELS].reverse()) {
        process.stderr.write(`\r${size} B, ${model}, round ${r + 1}/${ROUNDS}`.padEnd(50));
        const res = await runModel(model, workers, size, windowMs);
        row.set(model, res);
        runs.get(model)!.push(res);
      }
      perRound.push(row.get('one-reader')!.deliveredPps / row.get('socket-per-worker')!.deliveredPps);
    }
    for (const model of MODELS) {
      const rs = [...runs.get(model)!].sort((a, b) => a.deliveredPps - b.deliveredPps);
      results.push(rs[Math.floor(rs.length / 2)]!);
    }
    perRound.sort((a, b) => a - b);
    ratios[`oneReaderVsSocketPerWorker${size}`] = {
      value: round(perRound[Math.floor(perRound.length / 2)]!, 2),
      description: `${workers} workers, ${size} B ESP: packets delivered to their owner, one reader vs a socket per worker (median of per-round ratios)`,
    };
  }
  process.stderr.write(`\r${' '.repeat(50)}\r`);
  const report: DemuxReport = { suite: 'demux', node: process.version, workers, results, ratios };
  if (opts.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    console.log(`Receive demultiplexing: raw ESP to ${workers} workers, one SPI each, ${windowMs} ms per case\n`);
    console.log(formatTable(['size', 'model', 'sent kpps', 'delivered kpps', 'lost'],
      results.map((r) => [String(r.size), r.model, Math.round(r.sentPps / 1000), Math.round(r.deliveredPps / 1000), `${round(r.lost * 100, 1)} %`])));
    console.log('\nRatios');
    console.log(formatTable(['ratio', 'value'], Object.values(ratios).map((r) => [r.description, r.value])));
  }
  return report;
}
