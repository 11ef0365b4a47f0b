import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { createLogger } from '../control/log.js';

describe('build output', () => {
  it('the AssemblyScript module is built and exposes its ABI version', async () => {
    const bytes = readFileSync(new URL('../wasm/build/esp.wasm', import.meta.url));
    const { instance } = await WebAssembly.instantiate(bytes, {});
    const abiVersion = instance.exports.abiVersion as () => number;
    expect(abiVersion()).toBe(1);
  });
});

describe('logging', () => {
  it('redacts key material even when nested in a logged object', () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const log = createLogger({ destination: sink, level: 'info' });
    log.info({ sa: { spi: 'abcd', skEi: 'deadbeef' }, psk: 'hunter2', spec: { keyIn: 'cafef00d', keys: { encOut: 'f00dcafe' } } }, 'installed');
    const out = lines.join('');
    expect(out).toContain('abcd');
    expect(out).not.toContain('deadbeef');
    expect(out).not.toContain('hunter2');
    expect(out).not.toContain('cafef00d');
    expect(out).not.toContain('f00dcafe');
  });
});
