// The outer header fields of a child (documented with the rest of the file in
// docs/configuration.md): DSCP copied or fixed (RFC 4301 §5.1.2.1), ECN per RFC 6040 or
// off, DF copied, set or cleared (RFC 4301 §8.1). dataplane/outer-header.ts
// applies them per packet.
import { integer, leaf, oneOf, withDefault } from './fields.js';
import type { OuterHeaderConfig } from './types.js';

/** The fields, spread into the child section's schema. */
export function outerHeaderFields() {
  return {
    dscp: leaf(withDefault<'copy' | number>('copy', (v) => (v === 'copy' ? v : integer(0, 63, 'copy or a DSCP from 0 to 63')(v)))),
    ecn: leaf(withDefault('normal', oneOf(['normal', 'off'] as const))),
    df: leaf(withDefault('copy', oneOf(['copy', 'set', 'clear'] as const))),
  };
}

/** The child's outer header options, or nothing when all are their defaults (the default configuration keeps its shape). */
export function outerHeaderConfig(raw: { dscp: 'copy' | number; ecn: 'normal' | 'off'; df: 'copy' | 'set' | 'clear' }): { outerHeader?: OuterHeaderConfig } {
  if (raw.dscp === 'copy' && raw.ecn === 'normal' && raw.df === 'copy') return {};
  return { outerHeader: { dscp: raw.dscp, ecn: raw.ecn, df: raw.df } };
}
