// The hold of steered ESP for SPIs a worker has no SA for yet
// (dataplane/steered-hold.ts): copies kept in arrival order per SPI, taken
// whole once the SA is installed, let go of after their time, bounded in
// datagrams and in SPIs.
import { describe, expect, it } from 'vitest';
import { UnknownSpiHold } from '../dataplane/steered-hold.js';

const source = Int32Array.of(2 << 16 | 4500, 0x0a000001, 0, 0, 0);

function datagram(spi: number, seq: number): Uint8Array {
  const b = new Uint8Array(40);
  new DataView(b.buffer).setUint32(0, spi);
  new DataView(b.buffer).setUint32(4, seq);
  return b;
}

const seqOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(4);

describe('UnknownSpiHold', () => {
  it('keeps copies per SPI in arrival order, with their outer TOS and source, until they are taken', () => {
    const hold = new UnknownSpiHold({ ms: 1000, packets: 8, spis: 4 }, () => 0);
    const d = datagram(0x100, 1);
    expect(hold.add(0x100, d, 0x02, source)).toBe(true);
    d.fill(0); // the arena slot is read into again
    source[1] = 7;
    expect(hold.add(0x200, datagram(0x200, 1), 0, source)).toBe(true);
    expect(hold.add(0x100, datagram(0x100, 2), 0x01, source)).toBe(true);
    expect(hold.size).toBe(3);
    expect(hold.has(0x100) && hold.has(0x200) && !hold.has(0x300)).toBe(true);
    const first = hold.take(0x100);
    expect(first.map((p) => seqOf(p.bytes))).toEqual([1, 2]);
    expect(first.map((p) => p.tos)).toEqual([0x02, 0x01]);
    expect(first[0]!.source[1]).toBe(0x0a000001);
    expect(hold.has(0x100)).toBe(false);
    expect(hold.size).toBe(1);
    expect(hold.take(0x100)).toEqual([]);
    expect(hold.spis()).toEqual([0x200]);
    source[1] = 0x0a000001;
  });

  it('lets go of what it held for its time, oldest first, and counts it', () => {
    let now = 0;
    const hold = new UnknownSpiHold({ ms: 100, packets: 8, spis: 4 }, () => now);
    hold.add(0x100, datagram(0x100, 1), 0, source);
    now = 60;
    hold.add(0x100, datagram(0x100, 2), 0, source);
    hold.add(0x200, datagram(0x200, 1), 0, source);
    now = 99;
    expect(hold.expire()).toBe(0);
    now = 100;
    expect(hold.expire()).toBe(1);
    expect(hold.take(0x100).map((p) => seqOf(p.bytes))).toEqual([2]);
    now = 160;
    expect(hold.expire()).toBe(1);
    expect(hold.size).toBe(0);
    expect(hold.spis()).toEqual([]);
  });

  it('refuses past its datagrams or its SPIs (the caller drops and counts), and holds nothing with no time', () => {
    const hold = new UnknownSpiHold({ ms: 1000, packets: 3, spis: 2 }, () => 0);
    expect(hold.add(0x100, datagram(0x100, 1), 0, source)).toBe(true);
    expect(hold.add(0x200, datagram(0x200, 1), 0, source)).toBe(true);
    expect(hold.add(0x300, datagram(0x300, 1), 0, source)).toBe(false); // a third SPI
    expect(hold.add(0x100, datagram(0x100, 2), 0, source)).toBe(true);
    expect(hold.add(0x200, datagram(0x200, 2), 0, source)).toBe(false); // a fourth datagram
    expect(hold.size).toBe(3);
    hold.clear();
    expect(hold.size).toBe(0);
    expect(hold.add(0x300, datagram(0x300, 1), 0, source)).toBe(true);
    const none = new UnknownSpiHold({ ms: 0, packets: 3, spis: 2 }, () => 0);
    expect(none.add(0x100, datagram(0x100, 1), 0, source)).toBe(false);
  });
});
