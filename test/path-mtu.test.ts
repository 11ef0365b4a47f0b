// Path MTU, DF, DSCP and ECN (RFC 4301 §5.1.2, §8; RFC 6040): the outer
// header rules, the ICMP too-big answers (checksums recomputed here and
// decoded by tshark), the rate limit, the outbound check and the
// configuration keys.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dontFragment, espOverhead, tunnelMtu } from '../dataplane/path-mtu.js';
import { icmp4FragNeeded, icmp6PacketTooBig, icmpTooBig, internetChecksum } from '../dataplane/icmp-too-big.js';
import { RateLimiter } from '../io/rate-limiter.js';
import { PathCheck } from '../dataplane/path-check.js';
import { zeroIo, type PlaneState } from '../dataplane/state.js';
import { configFromObject, ConfigError } from '../control/config/index.js';
import { skipUnlessPrereqs } from './support/prereq.js';

/** An IPv4/UDP packet of `len` bytes from 10.1.0.2 to 10.2.0.2. */
function ipv4(len: number, opts: { tos?: number; df?: boolean; proto?: number; frag?: number; src?: number[] } = {}): Uint8Array {
  const p = new Uint8Array(len);
  p[0] = 0x45;
  p[1] = opts.tos ?? 0;
  p[2] = len >> 8;
  p[3] = len & 0xff;
  p[6] = (opts.df ?? true ? 0x40 : 0) | ((opts.frag ?? 0) >> 8);
  p[7] = (opts.frag ?? 0) & 0xff;
  p[8] = 64;
  p[9] = opts.proto ?? 17;
  p.set(opts.src ?? [10, 1, 0, 2], 12);
  p.set([10, 2, 0, 2], 16);
  for (let i = 20; i < len; i++) p[i] = i & 0xff;
  const c = internetChecksum(p.subarray(0, 20));
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

const V6_SRC = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const V6_DST = [0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/** An IPv6/UDP packet of `len` bytes from fd00:1::2 to fd00:2::2 with traffic class `tc`. */
function ipv6(len: number, opts: { tc?: number; next?: number; src?: number[]; firstByte?: number } = {}): Uint8Array {
  const p = new Uint8Array(len);
  const tc = opts.tc ?? 0;
  p[0] = 0x60 | (tc >> 4);
  p[1] = (tc & 0x0f) << 4;
  p[4] = (len - 40) >> 8;
  p[5] = (len - 40) & 0xff;
  p[6] = opts.next ?? 17;
  p[7] = 64;
  p.set(opts.src ?? V6_SRC, 8);
  p.set(V6_DST, 24);
  for (let i = 40; i < len; i++) p[i] = i & 0xff;
  if (opts.firstByte !== undefined) p[40] = opts.firstByte;
  return p;
}

const OWN4 = new Uint8Array([192, 0, 2, 1]);
const OWN6 = new Uint8Array([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/** The ICMPv6 checksum recomputed independently: pseudo-header (RFC 8200 §8.1) then the message. */
function icmp6ChecksumOk(p: Uint8Array): boolean {
  const len = (p[4]! << 8) | p[5]!;
  const pseudo = new Uint8Array(40 + len);
  pseudo.set(p.subarray(8, 40), 0);
  new DataView(pseudo.buffer).setUint32(32, len);
  pseudo[39] = 58;
  pseudo.set(p.subarray(40, 40 + len), 40);
  return internetChecksum(pseudo) === 0;
}

describe('path MTU rules (RFC 4301 §8)', () => {
  it('reads DF of IPv4 and IPv6 inner packets; other bytes give undefined', () => {
    expect(dontFragment(ipv4(100, { df: true }))).toBe(true);
    expect(dontFragment(ipv4(100, { df: false }))).toBe(false);
    expect(dontFragment(ipv6(100))).toBe(true);
    expect(dontFragment(new Uint8Array(10))).toBeUndefined();
  });

  it('the tunnel MTU is configured, or derived from the outer MTU and the SA overhead', () => {
    const gcm = espOverhead('aes-gcm-128', 16);
    const cbc = espOverhead('aes-cbc-256-hmac-sha2-256-128', 16);
    expect(gcm).toBe(8 + 8 + 3 + 2 + 16);
    expect(cbc).toBe(8 + 16 + 15 + 2 + 16);
    expect(tunnelMtu({ tunnelMtu: 'auto', outerMtu: 1500 }, 4, true, gcm)).toBe(1500 - 20 - 8 - 37);
    expect(tunnelMtu({ tunnelMtu: 'auto', outerMtu: 1500 }, 4, false, gcm)).toBe(1500 - 20 - 37);
    expect(tunnelMtu({ tunnelMtu: 'auto', outerMtu: 1500 }, 6, true, cbc)).toBe(1500 - 40 - 8 - 57);
    expect(tunnelMtu({ tunnelMtu: 1300, outerMtu: 1500 }, 4, true, gcm)).toBe(1300);
    expect(tunnelMtu({ tunnelMtu: 'auto', outerMtu: undefined }, 4, true, gcm)).toBe(Infinity);
  });
});

describe('ICMP too-big answers (RFC 1191 §4, RFC 4443 §3.2)', () => {
  it('ICMPv4 fragmentation needed: to the sender, next-hop MTU, quoting the packet, both checksums valid', () => {
    const inner = ipv4(1400);
    const m = icmp4FragNeeded(inner, 1380, OWN4)!;
    expect(m).toBeDefined();
    expect(m.length).toBe(576);
    expect(internetChecksum(m.subarray(0, 20))).toBe(0);
    expect(internetChecksum(m.subarray(20))).toBe(0);
    expect([...m.subarray(12, 16)]).toEqual([...OWN4]);
    expect([...m.subarray(16, 20)]).toEqual([10, 1, 0, 2]);
    expect(m[9]).toBe(1);
    expect([m[20], m[21]]).toEqual([3, 4]);
    expect((m[26]! << 8) | m[27]!).toBe(1380);
    expect([...m.subarray(28)]).toEqual([...inner.subarray(0, 548)]);
    // A short packet is quoted whole.
    expect(icmp4FragNeeded(ipv4(100), 1380, OWN4)!.length).toBe(128);
  });

  it('ICMPv6 packet too big: to the sender, the MTU, at most 1280 bytes, checksum over the pseudo-header valid', () => {
    const inner = ipv6(1450);
    const m = icmp6PacketTooBig(inner, 1380, OWN6)!;
    expect(m.length).toBe(1280);
    expect((m[4]! << 8) | m[5]!).toBe(1240);
    expect(m[6]).toBe(58);
    expect([...m.subarray(8, 24)]).toEqual([...OWN6]);
    expect([...m.subarray(24, 40)]).toEqual(V6_SRC);
    expect([m[40], m[41]]).toEqual([2, 0]);
    expect(new DataView(m.buffer).getUint32(44)).toBe(1380);
    expect(icmp6ChecksumOk(m)).toBe(true);
    expect([...m.subarray(48)]).toEqual([...inner.subarray(0, 1232)]);
    // The IPv6 minimum MTU is the least it announces (RFC 8200 §5).
    expect(new DataView(icmp6PacketTooBig(inner, 1000, OWN6)!.buffer).getUint32(44)).toBe(1280);
  });

  it('is not sent for ICMP errors, later fragments or non-unicast sources (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e))', () => {
    const icmpError = ipv4(600, { proto: 1 });
    icmpError[20] = 3;
    expect(icmp4FragNeeded(icmpError, 1380, OWN4)).toBeUndefined();
    const echo = ipv4(600, { proto: 1 });
    echo[20] = 8;
    expect(icmp4FragNeeded(echo, 1380, OWN4)).toBeDefined();
    expect(icmp4FragNeeded(ipv4(600, { frag: 100 }), 1380, OWN4)).toBeUndefined();
    expect(icmp4FragNeeded(ipv4(600, { src: [224, 0, 0, 5] }), 1380, OWN4)).toBeUndefined();
    expect(icmp4FragNeeded(ipv4(600, { src: [255, 255, 255, 255] }), 1380, OWN4)).toBeUndefined();
    expect(icmp6PacketTooBig(ipv6(1400, { next: 58, firstByte: 1 }), 1380, OWN6)).toBeUndefined();
    expect(icmp6PacketTooBig(ipv6(1400, { next: 58, firstByte: 128 }), 1380, OWN6)).toBeDefined();
    expect(icmp6PacketTooBig(ipv6(1400, { src: new Array<number>(16).fill(0) }), 1380, OWN6)).toBeUndefined();
    expect(icmpTooBig(new Uint8Array([0x45, 0, 0]), 1380, OWN4)).toBeUndefined();
    expect(icmpTooBig(ipv4(30, { proto: 1 }).subarray(0, 20), 1380, OWN4)).toBeUndefined();
  });

  it('tshark decodes both answers with valid checksums and the announced MTU', (ctx) => {
    skipUnlessPrereqs(ctx, ['tshark']);
    const dir = mkdtempSync(join(tmpdir(), 'ikeclone-icmp-'));
    try {
      const packets = [icmp4FragNeeded(ipv4(1400), 1380, OWN4)!, icmp6PacketTooBig(ipv6(1450), 1360, OWN6)!];
      // pcap, LINKTYPE_RAW (101): each record is an IP packet.
      const header = Buffer.alloc(24);
      header.writeUInt32LE(0xa1b2c3d4, 0);
      header.writeUInt16LE(2, 4);
      header.writeUInt16LE(4, 6);
      header.writeUInt32LE(65535, 16);
      header.writeUInt32LE(101, 20);
      const records = packets.map((p) => {
        const r = Buffer.alloc(16);
        r.writeUInt32LE(p.length, 8);
        r.writeUInt32LE(p.length, 12);
        return Buffer.concat([r, Buffer.from(p)]);
      });
      const file = join(dir, 'too-big.pcap');
      writeFileSync(file, Buffer.concat([header, ...records]));
      const out = execFileSync('tshark', [
        '-r', file, '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', '-E', 'aggregator=;',
        '-e', 'ip.checksum.status', '-e', 'icmp.type', '-e', 'icmp.code', '-e', 'icmp.mtu', '-e', 'icmp.checksum.status',
        '-e', 'icmpv6.type', '-e', 'icmpv6.mtu', '-e', 'icmpv6.checksum.status',
      ], { encoding: 'utf8', timeout: 30_000 }).trim().split('\n');
      // Checksum status 1 = good. The ICMPv4 answer's own IP header and the quoted one are both checked.
      expect(out[0]!.split('|').slice(0, 5)).toEqual(['1;1', '3', '4', '1380', '1']);
      expect(out[1]!.split('|').slice(5)).toEqual(['2', '1360', '1']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the rate limiter lets a burst through, then one per 1/rate second', () => {
    const l = new RateLimiter(10, 3, 0);
    expect([l.take(0), l.take(0), l.take(0), l.take(0)]).toEqual([true, true, true, false]);
    expect(l.take(50)).toBe(false);
    expect(l.take(100)).toBe(true);
    expect(l.take(100)).toBe(false);
    expect([l.take(10_000), l.take(10_000), l.take(10_000), l.take(10_000)]).toEqual([true, true, true, false]);
  });
});

describe('the outbound path check', () => {
  function fixture(path: Record<string, unknown> = {}) {
    const written: Uint8Array[] = [];
    let now = 0;
    const s = {
      opts: { path },
      io: zeroIo(),
      // Stages like a TUN device with offloads: only flush() delivers.
      innerSink: (() => {
        let staged: Uint8Array[] = [];
        return { write: (p: Uint8Array) => (staged.push(p.slice()), true), flush: () => (written.push(...staged), staged = [], 0) };
      })(),
    } as unknown as PlaneState;
    const check = new PathCheck(s, () => now);
    const sa = { remote: { address: '198.51.100.7', port: 4500 }, transport: 'udp' as const, espOverhead: 37 };
    return { s, check, sa, written, advance: (ms: number) => { now += ms; } };
  }

  it('uses the remote family the SAD recorded at install and at every move, not the address text', async () => {
    const f = fixture({ outerMtu: 1500 });
    // 20 (IPv4) or 40 (IPv6) + 8 (UDP) + 37 (ESP) below the outer MTU.
    expect(f.check.mtu({ ...f.sa, remoteFamily: 4 })).toBe(1435);
    expect(f.check.mtu({ ...f.sa, remoteFamily: 6 })).toBe(1415);
    const { Sad } = await import('../dataplane/sad.js');
    const sad = new Sad(1, 4);
    const r = {
      id: 1, spiIn: 0x1000, worker: 0, inSlot: 0, outSlot: 1, local: { address: '10.0.0.1', port: 4500 }, remote: { address: '10.0.0.2', port: 4500 }, remoteFamily: 4,
    } as never as import('../dataplane/sad.js').SaRecord;
    sad.add(r);
    sad.move(r, r.local, { address: '2001:db8::2', port: 4500 });
    expect(r.remoteFamily).toBe(6);
  });

  it('without a tunnel or outer MTU configured, every size goes on', () => {
    const f = fixture();
    expect(f.check.admit(ipv4(9000), f.sa)).toBe(true);
    expect(f.check.admit(ipv6(9000), f.sa)).toBe(true);
    expect(f.s.io.dropTooBig).toBe(0);
  });

  it('passes packets that fit, and IPv4 without DF; answers and counts an oversized DF packet', () => {
    const f = fixture({ outerMtu: 1500 });
    expect(f.check.mtu(f.sa)).toBe(1435);
    expect(f.check.admit(ipv4(1435), f.sa)).toBe(true);
    expect(f.check.admit(ipv4(1436, { df: false }), f.sa)).toBe(true);
    expect(f.check.admit(ipv4(1436), f.sa)).toBe(false);
    expect(f.s.io.dropTooBig).toBe(1);
    expect(f.s.io.icmpTooBig).toBe(1);
    const answer = f.written[0]!;
    expect([answer[20], answer[21]]).toEqual([3, 4]);
    expect((answer[26]! << 8) | answer[27]!).toBe(1435);
    expect([...answer.subarray(12, 16)]).toEqual([10, 2, 0, 2]);
    expect([...answer.subarray(16, 20)]).toEqual([10, 1, 0, 2]);
  });

  it('answers IPv6 from the inner destination too, and rate-limits the answers', () => {
    const f = fixture({ tunnelMtu: 1300, icmpRate: 2, icmpBurst: 2 });
    for (let i = 0; i < 5; i++) expect(f.check.admit(ipv6(1400), f.sa)).toBe(false);
    expect(f.s.io.dropTooBig).toBe(5);
    expect(f.s.io.icmpTooBig).toBe(2);
    expect(f.s.io.icmpRateLimited).toBe(3);
    expect([...f.written[0]!.subarray(8, 24)]).toEqual(V6_DST);
    expect(new DataView(f.written[0]!.buffer).getUint32(44)).toBe(1300);
    f.advance(500);
    expect(f.check.admit(ipv6(1400), f.sa)).toBe(false);
    expect(f.s.io.icmpTooBig).toBe(3);
  });
});

describe('configuration: dataplane tunnel_mtu, outer_mtu, icmp_rate', () => {
  it('all defaults leave the dataplane section as it was', () => {
    expect(configFromObject({ dataplane: { workers: 2 } }).dataplane).toEqual({ workers: 2, workersAuto: false });
  });

  it('set values reach the data plane options', () => {
    const c = configFromObject({ dataplane: { workers: 2, tunnel_mtu: 1300, icmp_rate: 5 } });
    expect(c.dataplane.path).toEqual({ tunnelMtu: 1300, icmpRate: 5, icmpBurst: 5 });
    expect(configFromObject({ dataplane: { outer_mtu: 1492 } }).dataplane.path).toMatchObject({ tunnelMtu: 'auto', outerMtu: 1492 });
  });

  it('bad values are precise errors', () => {
    expect(() => configFromObject({ dataplane: { tunnel_mtu: 100 } })).toThrow(ConfigError);
    expect(() => configFromObject({ dataplane: { tunnel_mtu: 100 } })).toThrow(/auto or an integer from 576 to 9000/);
    expect(() => configFromObject({ dataplane: { icmp_rate: 0 } })).toThrow(/dataplane\.icmp_rate/);
  });
});
