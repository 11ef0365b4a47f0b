// Raw ESP (IP protocol 50, IPv4) read by the worker that owns each SA: one
// raw socket per worker whose socket filter keeps the SPIs naming it, and
// the I/O thread's raw socket (rawesp.ts) filtered to the rest (runts,
// another node's SPIs, a worker we do not have), where the SAD lookup drops
// an unknown SPI and counts it once (esp-raw-filter.ts: each datagram is
// kept by exactly one of them). The kernel gives every raw socket of the
// protocol its own clone of each datagram and runs its filter; no thread
// wakes for another's share. The workers' sockets are opened per local
// address, beside the steered NAT-T port of that address (esp-steering.ts).
// IPv6 raw ESP keeps its one reader.
//
// Owner: the thread that opens them (the I/O thread); each worker's
// descriptor then belongs to the worker it is handed to.
import { loadNativeIo, UDP_DESC_WORDS } from './native-io.js';
import { rawEspSocketFilter } from './esp-raw-filter.js';

const IPPROTO_ESP = 50;

/**
 * Open worker 0..workers-1's filtered raw IPv4 ESP sockets, bound to the
 * local `address` (the NAT-T port's, so that another gateway on the same
 * host keeps the ESP sent to its own address), then filter
 * `controlFd` (the I/O thread's IPv4 raw ESP socket) to what no worker
 * keeps. A worker's socket is emptied after its filter is attached (what
 * it queued before was also delivered to the still unfiltered controlFd),
 * so nothing reaches two threads. Throws (closing what it opened, controlFd
 * left unfiltered) when the kernel refuses a socket or a filter.
 */
export function openRawEspShares(controlFd: number, opts: { node: number; workers: number; bufferBytes: number; address: string }): number[] {
  const io = loadNativeIo();
  const control = rawEspSocketFilter({ node: opts.node, workers: opts.workers, share: 'unsteered' });
  const opened: number[] = [];
  try {
    for (let w = 0; w < opts.workers; w++) {
      const fd = io.rawOpen(IPPROTO_ESP, opts.bufferBytes);
      opened.push(fd);
      io.rawBind(fd, opts.address);
      io.socketAttachFilter(fd, rawEspSocketFilter({ node: opts.node, workers: opts.workers, share: { worker: w } }));
      discardQueued(fd);
    }
    io.socketAttachFilter(controlFd, control);
    return opened;
  } catch (err) {
    for (const fd of opened) io.close(fd);
    throw err;
  }
}

/** Read and drop what a non-blocking socket holds (bounded). */
function discardQueued(fd: number): void {
  const io = loadNativeIo();
  const slot = 2048;
  const buffer = new Uint8Array(slot * 16);
  const desc = new Int32Array(16 * UDP_DESC_WORDS);
  for (let i = 0; i < 64 && io.udpRecv(fd, buffer, slot, desc) > 0; i++) { /* dropped: the control socket had it too */ }
}
