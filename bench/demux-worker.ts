// A thread of the receive-demultiplexing benchmark (bench/demux.ts), in one
// of three roles:
//   sender    sends ESP packets (raw, IP protocol 50) to 127.0.0.1 as fast as
//             it can, 64 per sendmmsg, their SPIs round robin over the SAs
//   consumer  one-reader model: takes the cells the I/O thread put in its
//             ring, as a data-plane worker would
//   socket    socket-per-worker model: reads its own raw ESP socket and keeps
//             the packets of its SPI (Linux hands every raw socket of a
//             protocol its own copy of each packet)
// Each runs until the finish flag (Int32 1 of `flags`) is set, then posts
// its counts. Benchmark code only.
import { parentPort, workerData } from 'node:worker_threads';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { RingReader, type RingBuffer } from '../dataplane/ring.js';
import { rawEspSpi } from './demux.js';

export type DemuxRole =
  | { role: 'sender'; flags: SharedArrayBuffer; spiBase: number; sas: number; size: number }
  | { role: 'consumer'; flags: SharedArrayBuffer; ring: RingBuffer }
  | { role: 'socket'; flags: SharedArrayBuffer; spi: number };

export interface DemuxCounts {
  /** sender: packets the kernel took; consumer/socket: packets of its own SA received. */
  packets: number;
  /** socket: packets of other SAs it read and threw away. */
  foreign: number;
}

const RAW_ESP = 50;
const SOCKET_BUFFER = 4 << 20;

function finished(flags: Int32Array): boolean {
  return Atomics.load(flags, 1) !== 0;
}

/** The sender: a tight loop, yielding only to see the finish flag. */
function send(job: Extract<DemuxRole, { role: 'sender' }>, flags: Int32Array): DemuxCounts {
  const socket = BatchedSocket.openRaw(RAW_ESP, SOCKET_BUFFER);
  try {
    const to = destination(Uint8Array.of(127, 0, 0, 1));
    const packets = Array.from({ length: job.sas }, (_, i) => {
      const p = new Uint8Array(job.size).fill(0xa5);
      new DataView(p.buffer).setUint32(0, job.spiBase + i); // SPI (RFC 4303 §2.1)
      return p;
    });
    let sent = 0;
    let seq = 1;
    while (!finished(flags)) {
      for (let k = 0; k < 64; k++, seq++) {
        const p = packets[seq % job.sas]!;
        new DataView(p.buffer).setUint32(4, seq);
        socket.queue(p, to, 0);
      }
      sent += socket.flush();
    }
    return { packets: sent, foreign: 0 };
  } finally {
    socket.close();
  }
}

async function consume(job: Extract<DemuxRole, { role: 'consumer' }>, flags: Int32Array): Promise<DemuxCounts> {
  const ring = new RingReader(job.ring);
  // A pending Atomics.waitAsync does not keep a thread's event loop alive; a timer does.
  const alive = setInterval(() => {}, 1000);
  let packets = 0;
  while (!finished(flags)) {
    const n = ring.available();
    if (n === 0) {
      await ring.waitForData(5);
      continue;
    }
    packets += n;
    ring.release(n);
  }
  clearInterval(alive);
  return { packets, foreign: 0 };
}

async function ownSocket(job: Extract<DemuxRole, { role: 'socket' }>, flags: Int32Array): Promise<DemuxCounts> {
  const socket = BatchedSocket.openRaw(RAW_ESP, SOCKET_BUFFER);
  const counts: DemuxCounts = { packets: 0, foreign: 0 };
  socket.start((bytes) => {
    if (rawEspSpi(bytes) === job.spi) counts.packets++;
    else counts.foreign++;
  });
  parentPort!.postMessage('ready');
  while (!finished(flags)) await new Promise((resolve) => setTimeout(resolve, 5));
  socket.close();
  return counts;
}

const job = workerData as DemuxRole;
const flags = new Int32Array(job.flags);
const run = job.role === 'sender' ? Promise.resolve().then(() => {
  parentPort!.postMessage('ready');
  Atomics.wait(flags, 0, 0); // the start line
  return send(job, flags);
}) : job.role === 'consumer' ? (parentPort!.postMessage('ready'), consume(job, flags)) : ownSocket(job, flags);
void run.then((counts) => parentPort!.postMessage(counts));
