// The outer header through the native addon (native/io/udp.c): the TOS /
// Traffic Class udpSend sets per datagram from its `outer` words, the TOS
// udpRecv reports (IP_RECVTOS / IPV6_RECVTCLASS), and IPv4 DF switched by
// IP_MTU_DISCOVER between runs of a batch, seen by a raw socket that gets
// the IP header. Loopback only.
import { afterEach, describe, expect } from 'vitest';
import { loadNativeIo, OUTER_DF_SOCKOPT, RECV_TOS_VALID, UDP_DESC_WORDS, UDP_RECV_TOS_WORD } from '../io/native-io.js';
import { OUTER_DF_CLEAR, OUTER_DF_SET, OUTER_TOS_SET } from '../dataplane/outer-header.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** A send batch of `n` datagrams of 100 bytes to address words:port, each marked with its index. */
function batch(n: number, family: 4 | 6, words: number[], port: number): { data: Uint8Array; desc: Int32Array } {
  const data = new Uint8Array(n * 128);
  const desc = new Int32Array(n * UDP_DESC_WORDS);
  for (let i = 0; i < n; i++) {
    data.fill(i + 1, i * 128, i * 128 + 100);
    const d = i * UDP_DESC_WORDS;
    desc[d] = i * 128;
    desc[d + 1] = 100;
    desc[d + 2] = (family << 16) | port;
    words.forEach((w, k) => (desc[d + 3 + k] = w));
  }
  return { data, desc };
}

function addressWords(bytes: number[]): number[] {
  const b = new Uint8Array(16);
  b.set(bytes);
  return [...new Int32Array(b.buffer)];
}

/** Receive what arrives on fd within a second: [first payload octet, word 7] per datagram. */
async function receive(fd: number, want: number): Promise<Array<[number, number]>> {
  const io = loadNativeIo();
  const buf = new Uint8Array(64 * 2048);
  const desc = new Int32Array(64 * UDP_DESC_WORDS);
  const got: Array<[number, number]> = [];
  await waitFor(() => {
    const n = io.udpRecv(fd, buf, 2048, desc);
    for (let i = 0; i < n; i++) got.push([buf[i * 2048]!, desc[i * UDP_DESC_WORDS + UDP_RECV_TOS_WORD]!]);
    return got.length >= want;
  }, { timeoutMs: 2000, intervalMs: 10 });
  return got;
}

describe('outer TOS / Traffic Class per datagram (IP_TOS, IPV6_TCLASS cmsgs)', () => {
  for (const [family, address, bytes] of [[4, '127.0.0.1', [127, 0, 0, 1]], [6, '::1', [...new Array(15).fill(0), 1]]] as const) {
    interopTest(`IPv${family}: each datagram leaves with its own TOS and the receiver reads it`, ['native'], async () => {
      const io = loadNativeIo();
      const a = io.udpOpen(address, 0, 1 << 20);
      const b = io.udpOpen(address, 0, 1 << 20);
      cleanups.push(() => io.close(a.fd), () => io.close(b.fd));
      const { data, desc } = batch(4, family, addressWords([...bytes]), b.port);
      const outer = Int32Array.of(OUTER_TOS_SET | 0xb9, OUTER_TOS_SET | 0x2a | OUTER_DF_SET, 0, OUTER_TOS_SET | 0x03 | OUTER_DF_CLEAR);
      expect(io.udpSend(a.fd, data, desc, 4, outer)).toBe(4);
      const got = await receive(b.fd, 4);
      expect(got).toEqual([[1, RECV_TOS_VALID | 0xb9], [2, RECV_TOS_VALID | 0x2a], [3, RECV_TOS_VALID | 0], [4, RECV_TOS_VALID | 0x03]]);
    });
  }

  interopTest('an outer array shorter than the batch is refused', ['native'], () => {
    const io = loadNativeIo();
    const a = io.udpOpen('127.0.0.1', 0, 1 << 16);
    cleanups.push(() => io.close(a.fd));
    const { data, desc } = batch(2, 4, addressWords([127, 0, 0, 1]), 9);
    expect(() => io.udpSend(a.fd, data, desc, 2, new Int32Array(1))).toThrow(TypeError);
  });
});

describe('IPv4 DF switched by IP_MTU_DISCOVER between runs of a batch', () => {
  interopTest('DF clear, set, clear in one batch: each datagram carries its own DF (seen with its IP header)', ['native', 'root'], async () => {
    const io = loadNativeIo();
    const a = io.udpOpen('127.0.0.1', 0, 1 << 20);
    const b = io.udpOpen('127.0.0.1', 0, 1 << 20);
    const raw = io.rawOpen(17, 1 << 20); // every UDP datagram to this host, IP header included
    cleanups.push(() => io.close(a.fd), () => io.close(b.fd), () => io.close(raw));
    const { data, desc } = batch(5, 4, addressWords([127, 0, 0, 1]), b.port);
    const c = OUTER_DF_SOCKOPT | OUTER_DF_CLEAR;
    const s = OUTER_DF_SOCKOPT | OUTER_DF_SET;
    expect(io.udpSend(a.fd, data, desc, 5, Int32Array.of(c, c, s, c, 0))).toBe(5);
    const buf = new Uint8Array(64 * 2048);
    const rdesc = new Int32Array(64 * UDP_DESC_WORDS);
    const df = new Map<number, boolean>();
    await waitFor(() => {
      const n = io.udpRecv(raw, buf, 2048, rdesc);
      for (let i = 0; i < n; i++) {
        const p = buf.subarray(i * 2048);
        const ihl = (p[0]! & 0x0f) * 4;
        if (((p[ihl + 2]! << 8) | p[ihl + 3]!) !== b.port) continue; // someone else's UDP
        df.set(p[ihl + 8]!, (p[6]! & 0x40) !== 0);
      }
      return df.size >= 5;
    }, { timeoutMs: 2000, intervalMs: 10 });
    // The last datagram asks nothing: the socket keeps what the one before it set.
    expect([1, 2, 3, 4, 5].map((k) => df.get(k))).toEqual([false, false, true, false, false]);
  });
});
