// A connection's `redirect:` section (RFC 5685; control/config/redirect-schema.ts):
// its values, its defaults, precise errors, and the engine policy it becomes.
import { describe, expect, it } from 'vitest';
import { ConfigError, connectionPolicy, parseConfig } from '../control/config/index.js';

const PSK = 'a pre-shared key of decent length';

function parse(redirect: string): ReturnType<typeof parseConfig> {
  return parseConfig(`connections:\n  c:\n    local_addrs: [192.0.2.1]\n    psk: "${PSK}"\n${redirect}`, '/etc/ikeclone/test.yaml');
}

function problem(redirect: string): ConfigError {
  try {
    parse(redirect);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('connections.<name>.redirect (RFC 5685)', () => {
  it('targets (IPv4, IPv6, host names), the phase and the loop bound, as the engine policy', () => {
    const config = parse('    redirect:\n      to: [192.0.2.9, "2001:db8::9", GW2.example.org]\n      at: auth\n      max: 3\n      period: 60s\n      follow: no\n');
    const conn = config.connections[0]!;
    expect(conn.redirect).toEqual({
      follow: false,
      maxRedirects: 3,
      loopPeriod: 60_000,
      to: [{ kind: 'ipv4', address: '192.0.2.9' }, { kind: 'ipv6', address: '2001:db8::9' }, { kind: 'fqdn', name: 'gw2.example.org' }],
      at: 'auth',
    });
    expect(connectionPolicy(conn, undefined).redirect).toEqual(conn.redirect);
  });

  it('defaults: follow redirects, 5 within 300 s (§7), redirect no one', () => {
    expect(parse('').connections[0]!.redirect).toEqual({ follow: true, maxRedirects: 5, loopPeriod: 300_000, to: [], at: 'init' });
  });

  it('bad values name the path and what was expected', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['    redirect:\n      to: [10.0.0]\n', 'connections.c.redirect.to[0]', /neither an IP address nor a host name/],
      ['    redirect:\n      at: later\n', 'connections.c.redirect.at', /later/],
      ['    redirect:\n      max: 0\n', 'connections.c.redirect.max', /0/],
      ['    redirect:\n      period: 0s\n', 'connections.c.redirect.period', /0s/],
      ['    redirect:\n      to_all: [192.0.2.9]\n', 'connections.c.redirect.to_all', /unknown key/],
    ];
    for (const [yaml, path, what] of cases) {
      const e = problem(yaml);
      expect(e.path, yaml).toBe(path);
      expect(e.problems[0]!.problem, yaml).toMatch(what);
    }
  });
});
