// `ikeclone move IKE-SA-ID --node NAME`: the control request that hands a
// clone to another cluster node, and the command line's usage errors.
import { describe, expect, test } from 'vitest';
import { parseRequest } from '../control/api/protocol.js';
import { ensureCliBuilt, startCli } from './support/cli-proc.js';

describe('move to a cluster node', () => {
  test('the control request carries the IKE SA and a node name, and nothing else', () => {
    expect(parseRequest('{"id":1,"cmd":"move","args":{"ike":5,"node":"gw-b"}}')).toEqual({ ok: true, request: { id: 1, cmd: 'move', args: { ike: 5, node: 'gw-b' } } });
    const code = (line: string) => {
      const r = parseRequest(line);
      return r.ok ? 'ok' : r.response.error.code;
    };
    expect(code('{"id":1,"cmd":"move","args":{"ike":5,"node":"../x"}}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"move","args":{"ike":5,"node":7}}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"move","args":{"node":"gw-b"}}')).toBe('bad-args');
    expect(code('{"id":1,"cmd":"move","args":{"ike":5,"node":"gw-b","local":"10.0.0.1"}}')).toBe('bad-args');
    // The MOBIKE form is unchanged.
    expect(code('{"id":1,"cmd":"move","args":{"ike":5,"local":"10.0.0.1"}}')).toBe('ok');
  });

  test.each([
    [['move', '5'], /give either --local \(MOBIKE, this gateway\) or --node \(a cluster node\)/],
    [['move', '5', '--local', '10.0.0.1', '--node', 'gw-b'], /give either --local/],
    [['move', '5', '--node', 'gw-b', '--remote', '10.0.0.9'], /--remote goes with --local, not --node/],
  ])('ikeclone %j is a usage error (exit 2)', async (args, message) => {
    ensureCliBuilt();
    const r = startCli([...args, '--socket', '/nonexistent/ctl.sock']);
    expect(await r.exited).toBe(2);
    expect(r.stderr()).toMatch(message);
  });
});
