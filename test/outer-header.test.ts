// The outer header rules of a tunnel-mode SA (RFC 4301 §5.1.2.1, §8.1; RFC
// 6040): DSCP copied or fixed, ECN copied out and combined back in, DF
// copied, set or cleared; and the child configuration keys that choose them.
import { describe, expect, it } from 'vitest';
import {
  combineEcn, EcnDecap, ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT, innerTos, OUTER_DF_CLEAR, OUTER_DF_SET, OUTER_HEADER_DEFAULTS,
  OUTER_TOS_SET, outerSendWord, packOuterHeader, unpackOuterHeader, type OuterHeaderOptions,
} from '../dataplane/outer-header.js';
import { internetChecksum } from '../dataplane/packet.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../control/config/index.js';
import { connectionPolicy } from '../control/config/connection-policy.js';
import { startCli } from './support/cli-proc.js';

function ipv4(tos: number, df = true): Uint8Array {
  const p = new Uint8Array(40);
  p[0] = 0x45;
  p[1] = tos;
  p[3] = 40;
  p[6] = df ? 0x40 : 0;
  p[8] = 64;
  p[9] = 17;
  p.set([10, 1, 0, 2, 10, 2, 0, 2], 12);
  const c = internetChecksum(p, 0, 20);
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

function ipv6(tclass: number): Uint8Array {
  const p = new Uint8Array(48);
  p[0] = 0x60 | (tclass >> 4);
  p[1] = ((tclass & 0x0f) << 4) | 0x0a; // flow label bits kept apart
  p[2] = 0xbc;
  p[5] = 8;
  p[6] = 17;
  p[7] = 64;
  return p;
}

const word = (o: Partial<OuterHeaderOptions>) => packOuterHeader({ ...OUTER_HEADER_DEFAULTS, ...o });

describe('outer header on encapsulation', () => {
  it('packs and unpacks every option', () => {
    for (const o of [OUTER_HEADER_DEFAULTS, { dscp: 46, ecn: 'off', df: 'clear' }, { dscp: 0, ecn: 'normal', df: 'set' }] as OuterHeaderOptions[]) {
      expect(unpackOuterHeader(packOuterHeader(o))).toEqual(o);
    }
  });

  it('copies DSCP and ECN (RFC 6040 normal mode copies CE too) from IPv4 and IPv6 inner packets', () => {
    const w = word({});
    for (const tos of [0x00, 0xb8, 0xb9, 0xba, 0xbb, 0x2a]) {
      expect(outerSendWord(w, ipv4(tos)) & 0x1ff).toBe(OUTER_TOS_SET | tos);
      expect(outerSendWord(w, ipv6(tos)) & 0x1ff).toBe(OUTER_TOS_SET | tos);
    }
    expect(innerTos(ipv6(0xb9))).toBe(0xb9);
  });

  it('a fixed DSCP replaces the inner one; ECN off sends Not-ECT', () => {
    expect(outerSendWord(word({ dscp: 10 }), ipv4(0xb9)) & 0xff).toBe((10 << 2) | ECN_ECT1);
    expect(outerSendWord(word({ ecn: 'off' }), ipv4(0xbb)) & 0xff).toBe(0xb8);
    expect(outerSendWord(word({ dscp: 0, ecn: 'off' }), ipv6(0xbb)) & 0xff).toBe(0);
  });

  it('DF: copy takes the inner IPv4 DF and sets it for IPv6 (RFC 8200 §5); set and clear override', () => {
    const df = (w: number) => w & (OUTER_DF_SET | OUTER_DF_CLEAR);
    expect(df(outerSendWord(word({ df: 'copy' }), ipv4(0, true)))).toBe(OUTER_DF_SET);
    expect(df(outerSendWord(word({ df: 'copy' }), ipv4(0, false)))).toBe(OUTER_DF_CLEAR);
    expect(df(outerSendWord(word({ df: 'copy' }), ipv6(0)))).toBe(OUTER_DF_SET);
    expect(df(outerSendWord(word({ df: 'clear' }), ipv4(0, true)))).toBe(OUTER_DF_CLEAR);
    expect(df(outerSendWord(word({ df: 'set' }), ipv4(0, false)))).toBe(OUTER_DF_SET);
  });

  it('bytes that are not an IP packet give TOS 0 and never throw', () => {
    expect(outerSendWord(word({}), new Uint8Array([0x45, 0xff]))).toBe(OUTER_TOS_SET | OUTER_DF_SET);
    expect(outerSendWord(word({}), new Uint8Array(0))).toBe(OUTER_TOS_SET | OUTER_DF_SET);
  });
});

describe('outer ECN on decapsulation (RFC 6040 §4.2)', () => {
  const names = ['Not-ECT', 'ECT(1)', 'ECT(0)', 'CE'];
  // [inner][outer] -> resulting inner codepoint, or 'drop'.
  const table: Record<number, Record<number, number | 'drop'>> = {
    [ECN_NOT_ECT]: { [ECN_NOT_ECT]: ECN_NOT_ECT, [ECN_ECT0]: ECN_NOT_ECT, [ECN_ECT1]: ECN_NOT_ECT, [ECN_CE]: 'drop' },
    [ECN_ECT0]: { [ECN_NOT_ECT]: ECN_ECT0, [ECN_ECT0]: ECN_ECT0, [ECN_ECT1]: ECN_ECT1, [ECN_CE]: ECN_CE },
    [ECN_ECT1]: { [ECN_NOT_ECT]: ECN_ECT1, [ECN_ECT0]: ECN_ECT1, [ECN_ECT1]: ECN_ECT1, [ECN_CE]: ECN_CE },
    [ECN_CE]: { [ECN_NOT_ECT]: ECN_CE, [ECN_ECT0]: ECN_CE, [ECN_ECT1]: ECN_CE, [ECN_CE]: ECN_CE },
  };

  for (const inner of [ECN_NOT_ECT, ECN_ECT0, ECN_ECT1, ECN_CE]) {
    for (const outer of [ECN_NOT_ECT, ECN_ECT0, ECN_ECT1, ECN_CE]) {
      const want = table[inner]![outer]!;
      it(`inner ${names[inner]}, outer ${names[outer]}: ${want === 'drop' ? 'drop' : names[want]}`, () => {
        for (const [p, at] of [[ipv4(0xb8 | inner), 0], [ipv6(0xb8 | inner), 0]] as const) {
          const framed = new Uint8Array(p.length + 16);
          framed.set(p, 8);
          const r = combineEcn(0xa0 | outer, framed, 8 + at, p.length);
          if (want === 'drop') {
            expect(r).toBe(EcnDecap.DROP);
            continue;
          }
          expect(r).toBe(EcnDecap.DELIVER);
          const got = framed.subarray(8, 8 + p.length);
          expect(innerTos(got)).toBe(0xb8 | want); // DSCP untouched
          if (got[0]! >> 4 === 4) expect(internetChecksum(got, 0, 20)).toBe(0); // header checksum still valid
          else expect([got[1]! & 0x0f, got[2]]).toEqual([0x0a, 0xbc]); // flow label untouched
        }
      });
    }
  }

  it('never throws on short or foreign bytes and leaves them alone', () => {
    const junk = new Uint8Array([0x45, 0x02, 0x03]);
    expect(combineEcn(ECN_CE, junk, 0, 3)).toBe(EcnDecap.DELIVER);
    expect([...junk]).toEqual([0x45, 0x02, 0x03]);
    expect(combineEcn(ECN_CE, new Uint8Array(0), 0, 0)).toBe(EcnDecap.DELIVER);
  });
});

describe('configuration: a child\'s dscp, ecn and df', () => {
  const yaml = (child: string) => `connections:
  site:
    remote_addrs: [192.0.2.7]
    local: { id: a.example.org }
    psk: "a long enough pre-shared key"
    children:
      net:
        local_ts: 10.1.0.0/24
        remote_ts: 10.2.0.0/24
${child}
`;
  const child = (lines: string) => connectionPolicy(parseConfig(yaml(lines), '/nonexistent/ikeclone.yaml').connections[0]!, undefined).children[0]!;

  it('defaults leave the child as it was (DSCP and ECN copied, DF copied); set values reach the policy', () => {
    expect(child('        esp: [aes128gcm16]').outerHeader).toBeUndefined();
    expect(child('        dscp: 46\n        ecn: off\n        df: clear').outerHeader).toEqual({ dscp: 46, ecn: 'off', df: 'clear' });
    expect(child('        df: set').outerHeader).toEqual({ dscp: 'copy', ecn: 'normal', df: 'set' });
  });

  it('bad values are precise errors naming the field', () => {
    for (const [line, what] of [
      ['        dscp: 64', /children\.net\.dscp.*copy or a DSCP from 0 to 63/s],
      ['        dscp: ef', /children\.net\.dscp/],
      ['        ecn: on', /children\.net\.ecn.*normal.*off/s],
      ['        df: sometimes', /children\.net\.df.*copy.*set.*clear/s],
    ] as const) {
      let error: unknown;
      try {
        parseConfig(yaml(line), '/nonexistent/ikeclone.yaml');
      } catch (e) {
        error = e;
      }
      expect(error, line).toBeInstanceOf(ConfigError);
      expect(String((error as Error).message), line).toMatch(what);
    }
  });

  it('the gateway exits 2 on a bad value, naming the file, line and field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ikeclone-outer-'));
    try {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, `listen: { address: 127.0.0.1 }\n${yaml('        df: sometimes')}`);
      const r = startCli(['gateway', '--config', file, '--socket', join(dir, 'never.sock')], { env: { ...process.env, IKECLONE_LOG: '' } });
      const timer = setTimeout(() => r.proc.kill('SIGKILL'), 20_000);
      const code = await r.exited;
      clearTimeout(timer);
      expect(code).toBe(2);
      expect(r.stderr()).toContain(`${file}:11: connections.site.children.net.df`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
