// A worker's own output (DirectOutput): the owner worker of an SA writes what
// its kernel produced straight from the kernel's arena, with no copy and no
// hand-off to the I/O thread:
//   ESP         -> sendmmsg on the SA's route (the UDP socket of its local
//                  address, RFC 3948, or the raw ESP socket), grouped by socket
//   inner IPv4/6 -> inbound selector check (RFC 4301 §5.2) -> this worker's
//                  TUN queue, one batch per kernel batch (native/io/gro.c
//                  coalesces TCP segments when the queue has IFF_VNET_HDR)
//
// Owner: one worker thread. Every descriptor it writes to is its own (a dup
// made by the I/O side for it): the TUN queue's, closed by close(), and each
// route's, closed by the worker when the route is replaced or its slot
// deleted. So the I/O thread closing a socket, or the kernel reusing its
// number, can never redirect these writes.
//
// queueEsp/queueInner record offsets into the arena; flush() must run before
// the arena is reused (after each kernel batch's results are collected).
import { constants } from 'node:os';
import { loadNativeIo, TUN_WRITE_DESC_WORDS, TUN_WRITE_MAX_BATCH, UDP_DESC_WORDS, UDP_MAX_BATCH, type NativeIo } from '../io/native-io.js';
import { flowMatches, newFlowTuple, parseFlow } from './packet.js';
import { WorkerStat, type DirectOutput, type EspRoute, type InboundPolicy } from './messages.js';

const { EAGAIN, EIO } = constants.errno;

export class DirectWriter {
  private readonly api: NativeIo;
  private readonly tunFd: number;
  private readonly tunOffload: boolean;
  private readonly flow = newFlowTuple();
  private readonly udpDesc = new Int32Array(UDP_MAX_BATCH * UDP_DESC_WORDS);
  /** The outer header word of each queued datagram (outer-header.ts, native/io/udp.c). */
  private readonly udpOuter = new Int32Array(UDP_MAX_BATCH);
  private udpCount = 0;
  private udpFd = -1;
  private readonly tunDesc = new Int32Array(TUN_WRITE_MAX_BATCH * TUN_WRITE_DESC_WORDS);
  private tunCount = 0;
  /** Packets lost by sends and writes since the last flush() (some happen when a batch fills up). */
  private lost = 0;
  private closed = false;

  constructor(out: DirectOutput, private readonly stats: Float64Array) {
    this.api = loadNativeIo();
    this.tunFd = out.tunFd;
    this.tunOffload = out.tunOffload;
  }

  /** Close a route's descriptor (replaced, or its slot deleted). */
  closeRoute(route: EspRoute): void {
    this.api.close(route.fd);
  }

  /**
   * Queue ESP at data[offset, +length] for `route` on socket `fd` (the
   * route's, or this worker's own steered one), with its outer header word;
   * sends what was queued for another socket first.
   */
  queueEsp(data: Uint8Array, route: EspRoute, offset: number, length: number, outer = 0, fd = route.fd): void {
    if (this.udpCount === UDP_MAX_BATCH || (this.udpCount > 0 && fd !== this.udpFd)) this.sendEsp(data);
    this.udpFd = fd;
    this.udpOuter[this.udpCount] = outer;
    const d = this.udpDesc;
    const w = this.udpCount * UDP_DESC_WORDS;
    d[w] = offset;
    d[w + 1] = length;
    d[w + 2] = (route.family << 16) | route.port;
    d[w + 3] = route.words[0]!;
    d[w + 4] = route.words[1]!;
    d[w + 5] = route.words[2]!;
    d[w + 6] = route.words[3]!;
    this.udpCount++;
  }

  /**
   * Queue the decapsulated packet at data[offset, +length] for the TUN queue
   * if its SA may carry it (RFC 4301 §5.2: source in the peer's selectors,
   * destination in ours); otherwise count it as a policy drop. Never throws on packet bytes.
   */
  queueInner(data: Uint8Array, policy: InboundPolicy, offset: number, length: number): void {
    const packet = data.subarray(offset, offset + length);
    if (!parseFlow(packet, this.flow) || !flowMatches(packet, this.flow, policy.remoteTs, policy.localTs)) {
      this.stats[WorkerStat.DROP_POLICY]!++;
      return;
    }
    if (this.tunCount === TUN_WRITE_MAX_BATCH) this.writeTun(data);
    const w = this.tunCount * TUN_WRITE_DESC_WORDS;
    this.tunDesc[w] = offset;
    this.tunDesc[w + 1] = length;
    this.tunCount++;
  }

  /** Send and write everything queued from `data`; returns how many packets since the last flush were lost (kernel refused, queue full). */
  flush(data: Uint8Array): number {
    this.sendEsp(data);
    this.writeTun(data);
    const lost = this.lost;
    this.lost = 0;
    return lost;
  }

  private sendEsp(data: Uint8Array): void {
    const count = this.udpCount;
    if (count === 0) return;
    this.udpCount = 0;
    const d = this.udpDesc;
    const st = this.stats;
    const sent = this.api.udpSend(this.udpFd, data, d, count, this.udpOuter);
    for (let i = 0; i < count; i++) {
      if (d[i * UDP_DESC_WORDS + 7] === 0) st[WorkerStat.ESP_SENT_BYTES]! += d[i * UDP_DESC_WORDS + 1]!;
    }
    st[WorkerStat.ESP_SENT]! += sent;
    st[WorkerStat.SEND_ERRORS]! += count - sent;
    this.lost += count - sent;
  }

  private writeTun(data: Uint8Array): void {
    const count = this.tunCount;
    if (count === 0 || this.closed) return;
    this.tunCount = 0;
    const d = this.tunDesc;
    const st = this.stats;
    if (this.tunOffload) {
      st[WorkerStat.TUN_WRITES]! += this.api.tunWriteBatch(this.tunFd, data, d, count);
    } else {
      for (let i = 0; i < count; i++) {
        const at = d[i * TUN_WRITE_DESC_WORDS]!;
        const length = d[i * TUN_WRITE_DESC_WORDS + 1]!;
        const n = this.api.tunWrite(this.tunFd, data.subarray(at, at + length));
        st[WorkerStat.TUN_WRITES]!++;
        d[i * TUN_WRITE_DESC_WORDS + 2] = n === length ? 0 : n < 0 ? n : -EIO; // a short write is an I/O error
      }
    }
    for (let i = 0; i < count; i++) {
      const status = d[i * TUN_WRITE_DESC_WORDS + 2]!;
      if (status >= 0) {
        st[WorkerStat.INNER_WRITTEN]!++;
        st[WorkerStat.INNER_WRITTEN_BYTES]! += d[i * TUN_WRITE_DESC_WORDS + 1]!;
        if (status === 1) st[WorkerStat.TUN_COALESCED]!++;
      } else {
        this.lost++;
        if (status === -EAGAIN) st[WorkerStat.TUN_DROPPED]!++;
        else st[WorkerStat.TUN_ERRORS]!++;
      }
    }
  }

  /** Close the TUN queue descriptor (worker stop); nothing is written after. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.tunCount = 0;
    this.udpCount = 0;
    this.lost = 0;
    this.api.close(this.tunFd);
  }
}
