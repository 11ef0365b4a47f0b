// The configuration of IKE fragmentation (RFC 7383) in swanctl's terms:
// fragmentation = yes | accept | force | no per connection and fragment_size
// (the IP datagram size of our fragments, as charon.fragment_size), with
// precise errors for anything else, and what the engine's policy gets.
import { describe, expect, it } from 'vitest';
import { ConfigError, connectionPolicy, parseConfig } from '../control/config/index.js';

const conn = (extra: string) => `connections:\n  c:\n    local_addrs: [192.0.2.1]\n    psk: "correct horse battery staple"\n${extra}`;

function error(text: string): ConfigError {
  try {
    parseConfig(text, 'bad.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('fragmentation and fragment_size', () => {
  it('absent: the policy leaves both unset, which the engine reads as yes at 1280 octets', () => {
    const c = parseConfig(conn('')).connections[0]!;
    expect(c.fragmentation).toBeUndefined();
    expect(c.fragmentSize).toBeUndefined();
    const p = connectionPolicy(c, undefined);
    expect(p.fragmentation).toBeUndefined();
    expect(p.fragmentSize).toBeUndefined();
  });

  it.each([['yes', 'yes'], ['accept', 'accept'], ['force', 'force'], ['no', 'no'], ['true', 'yes'], ['false', 'no']])('fragmentation: %s -> %s', (text, mode) => {
    const c = parseConfig(conn(`    fragmentation: ${text}\n    fragment_size: 600\n`)).connections[0]!;
    expect(c.fragmentation).toBe(mode);
    expect(connectionPolicy(c, undefined)).toMatchObject({ fragmentation: mode, fragmentSize: 600 });
  });

  it('an unknown mode is an error at its path and line', () => {
    const e = error(conn('    fragmentation: maybe\n'));
    expect({ path: e.path, line: e.line }).toEqual({ path: 'connections.c.fragmentation', line: 5 });
    expect(e.expected).toBe('one of yes, accept, force, no');
  });

  it.each(['255', '65536', '0', '1280.5', '"big"'])('fragment_size: %s is refused (256..65535)', (v) => {
    const e = error(conn(`    fragment_size: ${v}\n`));
    expect(e.path).toBe('connections.c.fragment_size');
    expect(e.line).toBe(5);
  });
});
