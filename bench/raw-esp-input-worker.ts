// A thread of the raw ESP input benchmark (bench/raw-esp-input.ts), in one of
// two roles:
//   sender    sends raw ESP (IP protocol 50) to 127.0.0.1, flat out (64 per
//             sendmmsg) or paced (one datagram every paceUs, stamped with
//             the monotonic clock), round robin over one SPI per worker
//   receiver  a data-plane worker's input: it sleeps in epoll (the worker
//             loop's EpollWaiter, dataplane/worker-epoll.ts) on its own
//             socket (raw with a socket filter, or AF_PACKET in a fanout
//             group) or on its bell, rung by the I/O thread that put cells
//             in its ring (one reader); it counts the datagrams of its SPI,
//             those of others, and the one-way delay of stamped ones
// flags (Int32): 0 start, 1 finish, 2 paced. Benchmark code only.
import { parentPort, workerData } from 'node:worker_threads';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { loadNativeIo, UDP_DESC_WORDS } from '../io/native-io.js';
import { espSpiWorker } from '../io/spi-layout.js';
import { dropAllFilter } from '../io/esp-raw-filter.js';
import { RingReader, type RingBuffer } from '../dataplane/ring.js';
import { WorkerBell } from '../dataplane/worker-bell.js';
import { EpollWaiter } from '../dataplane/worker-epoll.js';

export type RawInputRole =
  | { role: 'sender'; flags: SharedArrayBuffer; spis: number[]; size: number; paceUs: number }
  | { role: 'receiver'; flags: SharedArrayBuffer; worker: number; bell: SharedArrayBuffer; fd?: number; ring?: RingBuffer };

export interface RawInputCounts {
  /** sender: datagrams the kernel took; receiver: datagrams of its own SPI. */
  packets: number;
  /** receiver: datagrams of other workers' SPIs it read. */
  foreign: number;
  /** receiver: one-way delays of stamped datagrams, µs (sender's send call to this thread's read). */
  delaysUs: number[];
}

const RAW_ESP = 50;
const SOCKET_BUFFER = 4 << 20;
const RECV_SLOT = 2048;
const RECV_BATCH = 32;
/** Octet of the stamp in a paced datagram's ESP payload: past SPI and sequence number. */
const STAMP_AT = 8;
const IDLE_WAIT_MS = 5;

const job = workerData as RawInputRole;
const flags = new Int32Array(job.flags);
const finished = () => Atomics.load(flags, 1) !== 0;
const paced = () => Atomics.load(flags, 2) !== 0;
const nowNs = () => Number(process.hrtime.bigint());

function send(j: Extract<RawInputRole, { role: 'sender' }>): RawInputCounts {
  const socket = BatchedSocket.openRaw(RAW_ESP, SOCKET_BUFFER);
  // The sender's raw socket would get a copy of every datagram: it keeps none.
  loadNativeIo().socketAttachFilter(socket.fd, dropAllFilter());
  try {
    const to = destination(Uint8Array.of(127, 0, 0, 1));
    const packets = j.spis.map((spi) => {
      const p = new Uint8Array(j.size).fill(0xa5);
      new DataView(p.buffer).setUint32(0, spi); // SPI (RFC 4303 §2.1)
      return p;
    });
    let sent = 0;
    let seq = 1;
    while (!finished()) {
      if (j.paceUs > 0) {
        const p = packets[seq % packets.length]!;
        const view = new DataView(p.buffer);
        view.setUint32(4, seq++);
        view.setFloat64(STAMP_AT, nowNs());
        socket.queue(p, to, 0);
        sent += socket.flush();
        const until = nowNs() + j.paceUs * 1000;
        // Sleep most of the pace, so that the receivers go idle as in an idle tunnel.
        Atomics.wait(flags, 1, 0, j.paceUs / 1000);
        while (nowNs() < until && !finished()) { /* the rest of the pace */ }
        continue;
      }
      for (let k = 0; k < 64; k++, seq++) {
        const p = packets[seq % packets.length]!;
        new DataView(p.buffer).setUint32(4, seq);
        socket.queue(p, to, 0);
      }
      sent += socket.flush();
    }
    return { packets: sent, foreign: 0, delaysUs: [] };
  } finally {
    socket.close();
  }
}

function receive(j: Extract<RawInputRole, { role: 'receiver' }>): RawInputCounts {
  const api = loadNativeIo();
  const bell = new WorkerBell(j.bell);
  const waiter = new EpollWaiter(bell);
  const counts: RawInputCounts = { packets: 0, foreign: 0, delaysUs: [] };
  const take = (b: Uint8Array, at: number, length: number) => {
    const ihl = (b[at]! & 0x0f) * 4;
    if (length < ihl + STAMP_AT + 8) return;
    const view = new DataView(b.buffer, b.byteOffset + at + ihl, length - ihl);
    if (espSpiWorker(view.getUint32(0)) !== j.worker) {
      counts.foreign++;
      return;
    }
    counts.packets++;
    if (paced()) counts.delaysUs.push((nowNs() - view.getFloat64(STAMP_AT)) / 1000);
  };
  const ring = j.ring ? new RingReader(j.ring) : undefined;
  if (j.fd !== undefined) {
    const fd = j.fd;
    const buffer = new Uint8Array(RECV_SLOT * RECV_BATCH);
    const desc = new Int32Array(RECV_BATCH * UDP_DESC_WORDS);
    waiter.add(fd, () => {
      for (;;) {
        const n = api.udpRecv(fd, buffer, RECV_SLOT, desc);
        for (let i = 0; i < n; i++) take(buffer, i * RECV_SLOT, desc[i * UDP_DESC_WORDS]!);
        if (n < RECV_BATCH) break;
      }
    }, () => {});
  }
  parentPort!.postMessage('ready');
  while (!finished()) {
    const seen = bell.value();
    if (ring) {
      const n = ring.available();
      for (let i = 0; i < n; i++) take(ring.bytes, ring.payloadOffset(i), ring.length(i));
      if (n > 0) {
        ring.release(n);
        continue;
      }
    }
    waiter.wait(seen, IDLE_WAIT_MS);
  }
  waiter.close();
  return counts;
}

const run = job.role === 'sender'
  ? Promise.resolve().then(() => {
    parentPort!.postMessage('ready');
    Atomics.wait(flags, 0, 0); // the start line
    return send(job);
  })
  : Promise.resolve().then(() => receive(job));
void run.then((counts) => parentPort!.postMessage(counts));
