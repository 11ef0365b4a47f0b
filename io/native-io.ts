// Loader and types of ikeclone's native I/O addon (native/io, built by
// `npm run build:native` with node-gyp): TUN devices, and UDP and raw IP
// sockets with batched system calls (recvmmsg/sendmmsg), plus a libuv readiness watch.
// Node cannot open a TUN device (ioctl) and its dgram makes one system call
// and one allocation per datagram; everything else stays in JavaScript.
// The addon is optional: without it there is no TUN device and UDP goes
// through dgram (nativeIoUnavailable() says why).
//
// Threads: every thread that loads this gets its own binding (the I/O thread
// for sockets and TUN, each data-plane worker for its direct output); a
// descriptor is used only by the thread that opened it or was given a dup.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** int32 words per datagram in udpRecv/udpSend descriptors (native/io/udp.c). */
export const UDP_DESC_WORDS = 8;
/** Bytes at the end of a tunReadSegments buffer where the packet is read (native/io/tso.c READ_AREA). */
export const TUN_READ_AREA = 65536 + 256;
/** udpRecv desc word 7: the outer TOS / Traffic Class | RECV_TOS_VALID when the kernel gave it (native/io/udp.c). */
export const UDP_RECV_TOS_WORD = 7;
export const RECV_TOS_VALID = 0x100;
/** udpSend outer word: the caller alone sends on the socket, so IPv4 DF may be switched by IP_MTU_DISCOVER. */
export const OUTER_DF_SOCKOPT = 1 << 11;
/** Most datagrams per udpRecv/udpSend call. */
export const UDP_MAX_BATCH = 64;
/** int32 words per packet in a tunWriteBatch descriptor: offset, length, status out (native/io/gro.c). */
export const TUN_WRITE_DESC_WORDS = 3;
/** Most packets per tunWriteBatch call (native/io/gro.c MAX_BATCH). */
export const TUN_WRITE_MAX_BATCH = 64;

export interface NativeIo {
  tunOpen(name: string, multiQueue: boolean, vnetHdr: boolean): { fd: number; name: string };
  tunConfigure(name: string, mtu: number): void;
  tunRead(fd: number, buffer: Uint8Array): number;
  tunWrite(fd: number, buffer: Uint8Array): number;
  /**
   * IFF_VNET_HDR devices with TSO: read one packet past its virtio_net_hdr and
   * split a GSO packet into segments (native/io/tso.c); segment i is
   * buffer[desc[2i] .. + desc[2i + 1]]. Returns the segment count, 0 (nothing
   * waiting) or -errno. buffer must exceed TUN_READ_AREA bytes.
   */
  tunReadSegments(fd: number, buffer: Uint8Array, desc: Int32Array): number;
  /** IFF_VNET_HDR devices: write a batch, coalescing TCP segments; desc is [offset, length, status out] per packet. */
  tunWriteBatch(fd: number, data: Uint8Array, desc: Int32Array, count: number): number;
  udpOpen(address: string, port: number, bufferBytes: number): { fd: number; port: number };
  /** A raw socket for one IP protocol, IPv4 (default) or IPv6 (with IPV6_RECVPKTINFO); returns its fd. */
  rawOpen(protocol: number, bufferBytes: number, family?: 4 | 6): number;
  /** udpOpen with SO_REUSEPORT set before bind: a member of a steered group (native/io/steer.c). */
  udpOpenReusePort(address: string, port: number, bufferBytes: number): { fd: number; port: number };
  /** Attach a classic BPF program (two words per instruction: code | jt << 16 | jf << 24, k) to fd's SO_REUSEPORT group. */
  reuseportAttach(fd: number, program: Uint32Array): void;
  /** SO_ATTACH_FILTER: fd keeps only what the classic BPF program accepts (native/io/filter.c). */
  socketAttachFilter(fd: number, program: Uint32Array): void;
  /** Bind a raw IPv4 socket to a local address: only datagrams to it are received (native/io/filter.c). */
  rawBind(fd: number, address: string): void;
  /** An AF_PACKET SOCK_DGRAM socket for IPv4 bound to interface `ifname` (datagrams start at the IP header). */
  packetOpen(ifname: string, bufferBytes: number): number;
  /** Join PACKET_FANOUT group `group` with a classic BPF program that picks the member (PACKET_FANOUT_CBPF). */
  packetFanout(fd: number, group: number, program: Uint32Array): void;
  /** `dest` (IPv6 raw sockets): each datagram's destination address from IPV6_PKTINFO, 4 int32 words each. */
  udpRecv(fd: number, buffer: Uint8Array, slotSize: number, desc: Int32Array, dest?: Int32Array): number;
  /**
   * `outer` (dataplane/outer-header.ts): one word per datagram, its outer TOS /
   * Traffic Class and DF (IPV6_DONTFRAG; IPv4: IP_MTU_DISCOVER switched
   * between runs, only on a socket the caller alone sends on).
   */
  udpSend(fd: number, data: Uint8Array, desc: Int32Array, count: number, outer?: Int32Array): number;
  /**
   * UDP segmentation offload in udpSend since the process started (all threads):
   * [runs of ESP datagrams sent as one UDP_SEGMENT message, datagrams in them, runs sent again one by one].
   */
  udpGsoStats(): [number, number, number];
  watch(fd: number, callback: (status: number) => void): unknown;
  unwatch(handle: unknown): void;
  close(fd: number): void;
  /** A second descriptor for the same open file (close-on-exec); throws with the errno. */
  dup(fd: number): number;
  /** epoll for a worker that blocks in the kernel (native/io/poll.c): events carry the token given to pollAdd. */
  pollCreate(): number;
  pollAdd(epfd: number, fd: number, token: number): void;
  pollDel(epfd: number, fd: number): void;
  /** Block up to timeoutMs; events[2i] = token, events[2i + 1] = 1 readable | 2 error/hang-up. Returns n, 0 (timeout), -errno. */
  pollWait(epfd: number, events: Int32Array, timeoutMs: number): number;
  /** An eventfd (non-blocking): signalled from any thread, it wakes a pollWait watching it. */
  eventfdOpen(): number;
  eventfdSignal(fd: number): void;
  eventfdDrain(fd: number): void;
  /** One datagram to an AF_UNIX SOCK_DGRAM socket (a path, or '@name' for an abstract one): sd_notify(3). */
  notifySend(path: string, message: string): number;
  /** The process at the other end of a connected AF_UNIX stream socket (SO_PEERCRED). */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
}

/** Path of the compiled addon (native/io/build/Release), found from this file in the sources or in dist/. */
export function nativeIoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'native', 'io', 'build', 'Release', 'ikeclone_io.node');
    const up = dirname(dir);
    if (up === dir) throw new Error('native I/O: no package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

let addon: NativeIo | undefined;

/** The addon; throws with the reason when it cannot be loaded. */
export function loadNativeIo(): NativeIo {
  if (addon) return addon;
  if (process.platform !== 'linux') throw new Error('native I/O is supported on Linux only');
  const path = nativeIoPath();
  if (!existsSync(path)) throw new Error(`native I/O: ${path} is missing: build it with node-gyp (npm run build:native)`);
  addon = createRequire(import.meta.url)(path) as NativeIo;
  return addon;
}

/** Why the addon cannot be used here, or null when it can. */
export function nativeIoUnavailable(): string | null {
  try {
    loadNativeIo();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}
