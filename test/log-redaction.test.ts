// architecture §4.5: secrets never reach logs, however deep a caller buries them.
import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { parseConfig } from '../control/config/index.js';
import { createLogger, redactDeep } from '../control/log.js';

const PSK = 'correct horse battery staple';

function capture(): { log: ReturnType<typeof createLogger>; text: () => string; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { chunks.push(String(chunk)); cb(); } });
  const log = createLogger({ destination: sink, level: 'info' });
  const text = (): string => chunks.join('');
  return { log, text, lines: () => text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** The PSK's bytes as JSON renders a Uint8Array ({"0":99,"1":111,...}) and as text. */
function expectNoPsk(out: string): void {
  expect(out).not.toContain(PSK);
  expect(out).not.toMatch(/"0":99,"1":111,"2":114/);
  expect(out).not.toContain(Buffer.from(PSK).toString('hex'));
}

describe('log redaction at any depth', () => {
  it('a whole parsed configuration logs without its PSK', () => {
    const config = parseConfig(`connections:\n  home:\n    remote_addrs: [192.0.2.1]\n    local: { id: laptop.example.org }\n    psk: "${PSK}"\n    children:\n      lan: { remote_ts: 10.1.0.0/16 }\n`);
    expect(config.connections[0]!.psk).toBeInstanceOf(Uint8Array);
    const { log, text, lines } = capture();
    log.info({ config }, 'loaded');
    expectNoPsk(text());
    const conn = ((lines()[0]!.config as Record<string, unknown>).connections as Array<Record<string, unknown>>)[0]!;
    expect(conn.psk).toBe('[redacted]');
    expect(conn.name).toBe('home');
    expect(conn.remoteAddrs).toEqual(['192.0.2.1']);
    // Other bytes (the identity's data) show their length, not their content.
    expect((conn.local as { id: { data: unknown } }).id.data).toBe(`[bytes ${'laptop.example.org'.length}]`);
  });

  it('an SA-like object with a cycle, nested deeper than three levels', () => {
    const sa: Record<string, unknown> = {
      spi: 'abcd1234',
      policy: { name: 'home', localAuth: { method: 'psk', psk: new TextEncoder().encode(PSK) } },
      keys: { skEi: Buffer.from('00112233', 'hex') },
      child: { spec: { inbound: { keyIn: 'cafef00dcafef00d', spi: 7 } } },
      blob: Buffer.from(PSK),
    };
    sa.self = sa;
    (sa.policy as Record<string, unknown>).owner = sa;
    const { log, text, lines } = capture();
    log.info({ ike: { sa } }, 'established');
    const out = text();
    expectNoPsk(out);
    expect(out).not.toContain('cafef00d');
    expect(out).not.toContain('00112233');
    const got = (lines()[0]!.ike as { sa: Record<string, unknown> }).sa;
    expect(got.spi).toBe('abcd1234');
    expect(got.self).toBe('[circular]');
    expect(got.policy).toEqual({ name: 'home', localAuth: { method: 'psk', psk: '[redacted]' }, owner: '[circular]' });
    expect(got.keys).toBe('[redacted]');
    expect(got.child).toEqual({ spec: { inbound: { keyIn: '[redacted]', spi: 7 } } });
    expect(got.blob).toBe(`[bytes ${PSK.length}]`);
    // The input is left alone.
    expect((sa.policy as { localAuth: { psk: unknown } }).localAuth.psk).toBeInstanceOf(Uint8Array);
  });

  it('child bindings, errors and interpolated objects are redacted too', () => {
    const { log, text, lines } = capture();
    log.child({ peer: { auth: { conf: { psk: PSK } } } }).info('bound');
    log.child({ conn: 'home' }).child({ sa: { policy: { localAuth: { psk: PSK } } } }).info('grandchild');
    const err = Object.assign(new Error('install failed'), { spec: { a: { b: { encKey: 'deadbeefdeadbeef' } } } });
    log.error({ err }, 'oops');
    log.error(err);
    log.info('spec %j', { x: { y: { z: { integKey: 'f00dfacef00dface' } } } });
    const out = text();
    expectNoPsk(out);
    expect(out).not.toContain('deadbeef');
    expect(out).not.toContain('f00dface');
    const [bound, grandchild, withErr, bare] = lines();
    expect(bound!.peer).toEqual({ auth: { conf: { psk: '[redacted]' } } });
    expect(grandchild).toMatchObject({ conn: 'home', sa: { policy: { localAuth: { psk: '[redacted]' } } } });
    expect(withErr!.err).toMatchObject({ type: 'Error', message: 'install failed', spec: { a: { b: { encKey: '[redacted]' } } } });
    expect((withErr!.err as { stack: string }).stack).toContain('install failed');
    expect(bare!.msg).toBe('install failed');
    expect(bare!.err).toMatchObject({ type: 'Error', message: 'install failed' });
  });

  it('nesting past the depth bound is cut off, not printed', () => {
    let deep: Record<string, unknown> = { note: 'top secret at the bottom' };
    for (let i = 0; i < 40; i++) deep = { next: deep };
    const { log, text } = capture();
    log.info({ deep }, 'deep');
    expect(text()).not.toContain('top secret at the bottom');
    expect(text()).toContain('[too deep]');
  });

  it('redactDeep keeps plain data as it is', () => {
    const when = new Date(0);
    expect(redactDeep({ a: 1, b: 'x', c: [true, null], d: when, m: new Map([['key', 'k'], ['n', 1]]) }))
      .toEqual({ a: 1, b: 'x', c: [true, null], d: when.toJSON(), m: { key: '[redacted]', n: 1 } });
  });
});
