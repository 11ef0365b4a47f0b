// The loader's cheap guards (control/config/yaml-limits.ts, load.ts): nesting
// past the limit found from the text before the YAML library spends its time
// on it, without counting brackets that are not collections; and the gateway
// schema built once and shared by parses without sharing their values.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../control/config/index.js';
import { nestingPassesLimit } from '../control/config/yaml-limits.js';

function problemOf(text: string): { path: string; line: number | undefined; problem: string } {
  try {
    parseConfig(text, '<t>');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const c = e as ConfigError;
    return { path: c.path, line: c.line, problem: c.problems[0]!.problem };
  }
  throw new Error('expected a ConfigError');
}

const PSK = 'a shared secret of some length';

describe('nesting found from the text (yaml-limits.ts nestingPassesLimit)', () => {
  it('deep brackets after a syntax error: refused for the brackets at their line, not parsed bracket by bracket', () => {
    const text = `{}\n\n${'['.repeat(5000)}1${']'.repeat(5000)}\n`;
    expect(problemOf(text)).toEqual({ path: '', line: 3, problem: 'more than 64 levels of nested brackets or compact lists' });
    const braces = `log: {level: info}\nlisten: ]\n${'{a: '.repeat(3000)}1${'}'.repeat(3000)}\n`;
    expect(problemOf(braces)).toMatchObject({ path: '', line: 3 });
    const dashes = `x-a: - ${'- '.repeat(3000)}x\n`;
    expect(problemOf(dashes).problem).toMatch(/levels/);
  });

  it('deep nesting of a well-formed document keeps its precise path from the CST', () => {
    expect(problemOf(`connections:\n  a:\n    remote_addrs: ${'['.repeat(5000)}${']'.repeat(5000)}\n`)).toEqual({
      path: `connections.a.remote_addrs${'[0]'.repeat(61)}`, line: 3, problem: 'nested more than 64 levels deep',
    });
  });

  it('brackets in quoted, plain and block scalars and in comments are not collections', () => {
    const many = '['.repeat(200);
    expect(nestingPassesLimit(`a: "${many}"\nb: '${many}'\nc: x${many}\n# ${many}\nd: |\n  ${many}\n  ${many}\ne: 1\n`)).toBeUndefined();
    // A plain scalar in block context may hold brackets (not in a flow collection, where they are indicators).
    const cfg = parseConfig(`connections:\n  c:\n    psk: |\n      ${PSK} ${many}\n    remote: { id: "CN=${many}" }\n    local:\n      id: CN=${many} # ${many}\n`, '<t>');
    expect(cfg.connections[0]!.name).toBe('c');
  });

  it('the limit itself: 64 levels load, 65 do not', () => {
    expect(nestingPassesLimit(`x-a: ${'['.repeat(64)}${']'.repeat(64)}\n`)).toBeUndefined();
    expect(() => parseConfig(`x-a: ${'['.repeat(63)}${']'.repeat(63)}\n`, '<t>')).not.toThrow();
    expect(problemOf(`x-a: ${'['.repeat(65)}${']'.repeat(65)}\n`).problem).toBe('nested more than 64 levels deep');
  });
});

describe('the gateway schema is built once (load.ts)', () => {
  it('two parses share no values: defaults are fresh per configuration', () => {
    const a = parseConfig('{}\n', '<t>');
    const b = parseConfig('{}\n', '<t>');
    expect(a).toEqual(b);
    expect(a.listen).not.toBe(b.listen);
    (a.listen.addresses as string[]).push('192.0.2.9');
    expect(b.listen.addresses).toEqual(parseConfig('{}\n', '<t>').listen.addresses);
  });
});
