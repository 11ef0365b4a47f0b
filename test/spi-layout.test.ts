import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  composeEspSpi, composeIkeSpi, espSpiNode, espSpiWorker, ikeSpiNode, MAX_SPI_NODES, MAX_SPI_WORKERS, MIN_ESP_SPI,
} from '../io/spi-layout.js';

describe('SPI layout', () => {
  it('an ESP SPI carries its node prefix and worker index, whatever the random bits', () => {
    for (let i = 0; i < 2000; i++) {
      const node = i % MAX_SPI_NODES;
      const worker = (i * 7) % MAX_SPI_WORKERS;
      const spi = composeEspSpi({ node, worker }, randomBytes(4).readUInt32BE());
      if (spi === undefined) continue;
      expect(spi).toBeGreaterThanOrEqual(MIN_ESP_SPI);
      expect(spi).toBeLessThanOrEqual(0xffffffff);
      expect(espSpiNode(spi)).toBe(node);
      expect(espSpiWorker(spi)).toBe(worker);
    }
  });

  it('never yields a reserved SPI (RFC 4303 §2.1)', () => {
    expect(composeEspSpi({ node: 0, worker: 0 }, 0)).toBeUndefined();
    expect(composeEspSpi({ node: 0, worker: 0 }, 255)).toBeUndefined();
    expect(composeEspSpi({ node: 0, worker: 0 }, 256)).toBe(256);
    expect(composeEspSpi({ node: 0, worker: 1 }, 0)).toBe(1 << 18);
  });

  it('refuses an owner outside the layout', () => {
    expect(() => composeEspSpi({ node: 256, worker: 0 }, 1000)).toThrow(RangeError);
    expect(() => composeEspSpi({ node: 0, worker: 64 }, 1000)).toThrow(RangeError);
    expect(() => composeEspSpi({ node: -1, worker: 0 }, 1000)).toThrow(RangeError);
  });

  it('an IKE SPI carries the node prefix in its first byte and is never zero', () => {
    const spi = composeIkeSpi(9, randomBytes(8));
    expect(spi).toBeDefined();
    expect(ikeSpiNode(spi!)).toBe(9);
    expect(composeIkeSpi(0, new Uint8Array(8))).toBeUndefined();
    const random = Uint8Array.from([0xaa, 1, 2, 3, 4, 5, 6, 7]);
    composeIkeSpi(3, random);
    expect(random[0]).toBe(0xaa); // the caller's bytes are not modified in place
  });
});
