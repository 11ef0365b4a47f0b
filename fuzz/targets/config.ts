// The config target: mutated YAML into the configuration loader. A mutant is
// a configuration, or a ConfigError (file, line, path, what was expected);
// nothing else escapes (architecture §6).
import { ConfigError, parseConfig } from '../../control/config/index.js';
import type { Rng } from '../mutate.js';
import { mutateText } from '../mutate-text.js';
import { guarded, type FuzzTarget, type Outcome } from '../target.js';

const SEEDS = [
  `log:
  level: info
listen:
  address: [0.0.0.0, "::"]
  port: 500
  natPort: 4500
limits: { halfOpenCookieThreshold: 32, halfOpenMax: 1024, halfOpenPerSource: 5, childSasPerPeer: 64, ikeSasPerPeer: 16 }
retransmit: { timeout: 1s, base: 1.8, tries: 5, maxTimeout: 30s }
dataplane: { workers: 2, esp: auto }
x-common: &common
  ike: [aes256gcm16-prfsha256-x25519, default]
  psk: "a shared secret of some length"
  dpd_delay: 30s
connections:
  site-a:
    <<: *common
    remote_addrs: [198.51.100.7]
    local: { id: gw.example.org }
    remote: { id: "*.example.org" }
    mobike: true
    clone: { per: worker, count: 2 }
    children:
      net:
        local_ts: [10.1.0.0/24]
        remote_ts: [10.2.0.0/16[tcp/443], "0.0.0.0/0[udp/500-501]"]
        esp: [aes128gcm16, aes256-sha256-modp2048]
        rekey_time: 1h
        replay_window: 1024
  road:
    remote_addrs: "%any"
    psk: !!binary YSBzaGFyZWQgc2VjcmV0IG9mIHNvbWUgbGVuZ3Ro
    pools: [10.9.0.0/24, 10.8.0.1-10.8.0.9]
    rekey_time: 4h
    over_time: 10%
`,
  `connections:\n  c:\n    psk: "0x${'ab'.repeat(20)}"\n    vips: [request]\n    start_action: none\n`,
  '{}\n',
];

/** The last mutant tried (to look at a finding). */
export let lastConfigMutant = "";

export function configTarget(): FuzzTarget {
  return {
    name: 'config',
    describe: 'mutated YAML into the configuration loader: a configuration or a ConfigError; never another throw',
    run(rng: Rng): Outcome {
      const text = mutateText(rng.pick(SEEDS), rng);
      lastConfigMutant = text;
      // Broken YAML makes the YAML library construct an error per problem, and capturing their stack
      // traces is most of the time spent here; messages are all the findings need.
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        parseConfig(text, '<fuzz>');
        return { kind: 'ok' };
      } catch (e) {
        if (e instanceof ConfigError) return { kind: 'error', code: 'ConfigError' };
        return guarded(() => { throw e; });
      } finally {
        Error.stackTraceLimit = limit;
      }
    },
  };
}
