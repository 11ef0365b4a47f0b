// Classic BPF programs for raw ESP (IP protocol 50, IPv4) input, built from
// the one SPI layout (spi-layout.ts) like the NAT-T port's steering program
// (esp-steering.ts), so the layout we allocate by and the layout the kernel
// filters by cannot disagree:
//   - rawEspSocketFilter: SO_ATTACH_FILTER on a raw IPv4 socket of protocol
//     50, whose datagrams start at the IP header (native/io/filter.c). Worker
//     w's socket keeps the ESP whose SPI carries our node prefix and w; the
//     control plane's keeps the rest (runts, another node's SPIs, a worker we
//     do not have), where the SAD lookup drops an unknown SPI and counts it
//     once. Every packet is kept by exactly one of them.
//   - rawEspFanoutProgram: a PACKET_FANOUT_CBPF program for AF_PACKET sockets
//     (data at the IP header as well) that returns the worker index an SPI
//     carries (the kernel takes it modulo the members).
// The kernel runs a program on every packet of the protocol, so they read
// only what they need: the IHL, the length and the SPI's first 32 bits.
//
// Owner: none (pure values); the sockets they are attached to belong to
// whoever opens them.
import { MAX_SPI_NODES, MAX_SPI_WORKERS, SPI_NODE_SHIFT, SPI_WORKER_BITS, SPI_WORKER_SHIFT } from './spi-layout.js';
import {
  BPF_A, BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_IND, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_MSH, BPF_RET,
  BPF_RSH, BPF_SUB, BPF_W, BPF_X, cbpfWords, jump, stmt, type Insn,
} from './cbpf.js';

/** A socket filter's "keep the whole datagram" and "drop it". */
const KEEP = 0xffff_ffff;
const DROP = 0;
/** SPI and sequence number (RFC 4303 §2): shorter is a runt, the control plane's to count. */
const MIN_ESP = 8;

/** Which share of raw ESP a socket keeps: a worker's SPIs, or everything no worker is given. */
export type RawEspShare = { worker: number } | 'unsteered';

function checkGroup(node: number, workers: number): void {
  if (!Number.isInteger(node) || node < 0 || node >= MAX_SPI_NODES) throw new RangeError(`raw ESP filter: node prefix must be 0..${MAX_SPI_NODES - 1}`);
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_SPI_WORKERS) throw new RangeError(`raw ESP filter: workers must be 1..${MAX_SPI_WORKERS}`);
}

/**
 * The socket filter of one share of raw IPv4 ESP for node prefix `node` and
 * `workers` workers (two words per instruction, as socketAttachFilter takes it).
 */
export function rawEspSocketFilter(opts: { node: number; workers: number; share: RawEspShare }): Uint32Array {
  const { node, workers, share } = opts;
  checkGroup(node, workers);
  const worker = share === 'unsteered' ? -1 : share.worker;
  if (share !== 'unsteered' && (!Number.isInteger(worker) || worker < 0 || worker >= workers)) throw new RangeError(`raw ESP filter: worker must be 0..${workers - 1}`);
  // Jump offsets count the instructions skipped; OTHER and OWN are the last two.
  const OWN = 11;
  const OTHER = 12;
  const at = (i: number, target: number) => target - i - 1;
  // A worker keeps OWN and drops OTHER; the control plane the reverse.
  const prog: Insn[] = [
    /* 0 */ stmt(BPF_LDX | BPF_B | BPF_MSH, 0), // X = the IP header's length (IHL * 4)
    /* 1 */ stmt(BPF_LD | BPF_W | BPF_LEN, 0),
    /* 2 */ stmt(BPF_ALU | BPF_SUB | BPF_X, 0), // A = the ESP octets
    /* 3 */ jump(BPF_JMP | BPF_JGE | BPF_K, MIN_ESP, 0, at(3, OTHER)),
    /* 4 */ stmt(BPF_LD | BPF_W | BPF_IND, 0), // the SPI, network order
    /* 5 */ stmt(BPF_ALU | BPF_RSH | BPF_K, SPI_NODE_SHIFT),
    /* 6 */ jump(BPF_JMP | BPF_JEQ | BPF_K, node, 0, at(6, OTHER)),
    /* 7 */ stmt(BPF_LD | BPF_W | BPF_IND, 0),
    /* 8 */ stmt(BPF_ALU | BPF_RSH | BPF_K, SPI_WORKER_SHIFT),
    /* 9 */ stmt(BPF_ALU | BPF_AND | BPF_K, (1 << SPI_WORKER_BITS) - 1),
    /* 10 */ share === 'unsteered'
      ? jump(BPF_JMP | BPF_JGE | BPF_K, workers, at(10, OTHER), at(10, OWN))
      : jump(BPF_JMP | BPF_JEQ | BPF_K, worker, at(10, OWN), at(10, OTHER)),
    /* 11 OWN */ stmt(BPF_RET | BPF_K, share === 'unsteered' ? DROP : KEEP),
    /* 12 OTHER */ stmt(BPF_RET | BPF_K, share === 'unsteered' ? KEEP : DROP),
  ];
  return cbpfWords(prog);
}

/** The PACKET_FANOUT_CBPF program: the worker index the SPI of an IPv4 ESP datagram carries. */
export function rawEspFanoutProgram(): Uint32Array {
  return cbpfWords([
    stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
    stmt(BPF_LD | BPF_W | BPF_IND, 0),
    stmt(BPF_ALU | BPF_RSH | BPF_K, SPI_WORKER_SHIFT),
    stmt(BPF_ALU | BPF_AND | BPF_K, (1 << SPI_WORKER_BITS) - 1),
    stmt(BPF_RET | BPF_A, 0),
  ]);
}

/** A socket filter that keeps IPv4 datagrams of protocol 50 only (an AF_PACKET socket sees every IPv4 packet). */
export function ipv4EspOnlyFilter(): Uint32Array {
  return cbpfWords([
    stmt(BPF_LD | BPF_B | BPF_ABS, 9), // the protocol octet
    jump(BPF_JMP | BPF_JEQ | BPF_K, 50, 0, 1),
    stmt(BPF_RET | BPF_K, KEEP),
    stmt(BPF_RET | BPF_K, DROP),
  ]);
}

/** A socket filter that keeps nothing: a raw socket open only so the kernel does not answer ESP with ICMP protocol unreachable. */
export function dropAllFilter(): Uint32Array {
  return cbpfWords([stmt(BPF_RET | BPF_K, DROP)]);
}
