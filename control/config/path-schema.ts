// The path fields of the `dataplane:` section (documented with the rest of
// the file in docs/configuration.md): the tunnel MTU and the rate of ICMP too-big
// answers (RFC 4301 §8.2, §8.3; dataplane/path-check.ts applies them).
import { integer, leaf, withDefault } from './fields.js';
import type { PathConfig } from './types.js';

/** The fields, spread into the dataplane section's schema. */
export function pathFields() {
  return {
    tunnel_mtu: leaf(withDefault<'auto' | number>('auto', (v) => (v === 'auto' ? v : integer(576, 9000, 'auto or an integer from 576 to 9000')(v)))),
    outer_mtu: leaf(withDefault<number | undefined>(undefined, integer(576, 65535))),
    icmp_rate: leaf(withDefault(10, integer(1, 10000))),
  };
}

/** The path options of the dataplane section, or nothing when all are their defaults (the default configuration keeps its shape). */
export function pathConfig(d: { tunnel_mtu: PathConfig['tunnelMtu']; outer_mtu: number | undefined; icmp_rate: number }): { path?: PathConfig } {
  const path: PathConfig = {
    tunnelMtu: d.tunnel_mtu, icmpRate: d.icmp_rate, icmpBurst: d.icmp_rate,
    ...(d.outer_mtu !== undefined ? { outerMtu: d.outer_mtu } : {}),
  };
  const defaults = path.tunnelMtu === 'auto' && path.outerMtu === undefined && path.icmpRate === 10;
  return defaults ? {} : { path };
}
