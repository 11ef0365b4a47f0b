// Kernel steering of the NAT-T port (RFC 3948) to the thread that owns each
// datagram: one UDP socket per data-plane worker and one for the control
// plane, all bound to the same address and port in one SO_REUSEPORT group,
// with a classic BPF program on the group (native/io/steer.c) that picks the
// socket of every datagram before any thread wakes:
//   - a runt (< 8 octets: no SPI and sequence number), the non-ESP marker
//     (four zero octets, RFC 3948 §2.2: IKE) and NAT keepalives (one 0xFF
//     octet, §2.3): the control plane's socket, whose demultiplexer
//     (demux.ts) tells them apart and counts what it drops;
//   - ESP whose SPI carries our node prefix and a worker index below the
//     worker count (io/spi-layout.ts): that worker's socket;
//   - any other ESP (another node's SPI, a worker we do not have): the
//     control plane's socket, where the SAD lookup drops it as an unknown
//     SPI and counts it once (and the INVALID_SPI audit hears of it).
// The program is built here from the one SPI layout, so the layout cluster
// nodes allocate by and the layout the kernel steers by cannot disagree.
//
// Owner: the thread that opens the group (the I/O thread); each member socket
// is then read by the thread it is handed to, the kernel doing the steering.
import { loadNativeIo } from './native-io.js';
import {
  BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LEN, BPF_RET, BPF_RSH, BPF_W,
  cbpfWords, jump, stmt, type Insn,
} from './cbpf.js';
import { MAX_SPI_NODES, MAX_SPI_WORKERS, SPI_NODE_SHIFT, SPI_WORKER_BITS, SPI_WORKER_SHIFT } from './spi-layout.js';

/** Shortest datagram steered as ESP: SPI and sequence number (RFC 4303 §2). */
export const MIN_STEERED_ESP = 8;
/** The control plane's socket is the group's first member: index 0. */
export const CONTROL_SOCKET_INDEX = 0;

/**
 * The steering program for a group whose member 0 is the control plane's
 * socket and member 1 + w worker w's, for SPIs of node prefix `node` and
 * `workers` workers. Two words per instruction, as reuseportAttach takes it.
 */
export function steeringProgram(opts: { node: number; workers: number }): Uint32Array {
  const { node, workers } = opts;
  if (!Number.isInteger(node) || node < 0 || node >= MAX_SPI_NODES) throw new RangeError(`steering: node prefix must be 0..${MAX_SPI_NODES - 1}`);
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_SPI_WORKERS) throw new RangeError(`steering: workers must be 1..${MAX_SPI_WORKERS}`);
  // Jump offsets count the instructions skipped; CONTROL is the last one.
  const CONTROL = 12;
  const at = (i: number, target: number) => target - i - 1;
  const prog: Insn[] = [
    /* 0 */ stmt(BPF_LD | BPF_W | BPF_LEN, 0),
    /* 1 */ jump(BPF_JMP | BPF_JGE | BPF_K, MIN_STEERED_ESP, 0, at(1, CONTROL)),
    /* 2 */ stmt(BPF_LD | BPF_W | BPF_ABS, 0), // the first four octets, network order: the SPI or the marker
    /* 3 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, at(3, CONTROL), 0),
    /* 4 */ stmt(BPF_ALU | BPF_RSH | BPF_K, SPI_NODE_SHIFT),
    /* 5 */ jump(BPF_JMP | BPF_JEQ | BPF_K, node, 0, at(5, CONTROL)),
    /* 6 */ stmt(BPF_LD | BPF_W | BPF_ABS, 0),
    /* 7 */ stmt(BPF_ALU | BPF_RSH | BPF_K, SPI_WORKER_SHIFT),
    /* 8 */ stmt(BPF_ALU | BPF_AND | BPF_K, (1 << SPI_WORKER_BITS) - 1),
    /* 9 */ jump(BPF_JMP | BPF_JGE | BPF_K, workers, at(9, CONTROL), 0),
    /* 10 */ stmt(BPF_ALU | BPF_ADD | BPF_K, 1),
    /* 11 */ stmt(BPF_RET | BPF_A, 0),
    /* 12 */ stmt(BPF_RET | BPF_K, CONTROL_SOCKET_INDEX),
  ];
  return cbpfWords(prog);
}

/** The sockets of one steered NAT-T port: descriptors, owned by whoever reads each. */
export interface SteeredPort {
  address: string;
  port: number;
  /** The control plane's socket: IKE, keepalives, runts and ESP no worker owns. */
  control: number;
  /** workers[w]: worker w's socket, the ESP of the SPIs that name w. */
  workers: number[];
}

/**
 * Open a steered NAT-T port on address:port (port 0: any, all members then
 * share the one the first got): the control plane's socket first, then one
 * per worker, then the program. Throws (closing what it opened) when the
 * addon, SO_REUSEPORT or the attach is refused.
 */
export function openSteeredPort(address: string, port: number, opts: { node: number; workers: number; bufferBytes: number }): SteeredPort {
  const io = loadNativeIo();
  const program = steeringProgram(opts);
  const opened: number[] = [];
  try {
    const first = io.udpOpenReusePort(address, port, opts.bufferBytes);
    opened.push(first.fd);
    for (let w = 0; w < opts.workers; w++) opened.push(io.udpOpenReusePort(address, first.port, opts.bufferBytes).fd);
    io.reuseportAttach(first.fd, program);
    return { address, port: first.port, control: first.fd, workers: opened.slice(1) };
  } catch (err) {
    for (const fd of opened) io.close(fd);
    throw err;
  }
}

/** Close every socket of the port (those not handed to a thread that closes its own). */
export function closeSteeredPort(p: SteeredPort): void {
  const io = loadNativeIo();
  for (const fd of [p.control, ...p.workers]) io.close(fd);
}
