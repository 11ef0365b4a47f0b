// The control target: mutated control-socket request lines into parseRequest.
// A mutant is a request, or the error response to send back, with one of the
// protocol's error codes; nothing throws (control/api/protocol.ts).
import { parseRequest, type ControlErrorCode } from '../../control/api/protocol.js';
import type { Rng } from '../mutate.js';
import { mutateText } from '../mutate-text.js';
import { guarded, type FuzzTarget, type Outcome } from '../target.js';

const SEEDS = [
  '{"id":1,"cmd":"status"}',
  '{"id":"a","cmd":"up","args":{"name":"gw"}}',
  '{"id":2,"cmd":"down"}',
  '{"id":3,"cmd":"clone","args":{"ike":"4","count":3}}',
  '{"id":4,"cmd":"move","args":{"ike":7,"local":"192.0.2.1"}}',
  '{"id":5,"cmd":"rekey","args":{"ike":1}}',
];

const CODES = new Set<ControlErrorCode>(['malformed', 'line-too-long', 'unknown-command', 'bad-args', 'busy', 'line-timeout', 'evicted', 'failed']);

export function controlTarget(): FuzzTarget {
  return {
    name: 'control',
    describe: 'mutated control-socket lines into parseRequest: a request or a typed error response; never a throw',
    run(rng: Rng): Outcome {
      const line = mutateText(rng.pick(SEEDS), rng);
      return guarded(() => {
        const r = parseRequest(line);
        if (r.ok) return { kind: 'ok' };
        const response = r.response;
        if (response.ok || !CODES.has(response.error.code) || typeof response.error.message !== 'string') {
          return { kind: 'crash', detail: `untyped response ${JSON.stringify(response).slice(0, 200)}` };
        }
        return { kind: 'error', code: response.error.code };
      });
    },
  };
}
