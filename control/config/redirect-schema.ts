// A connection's `redirect:` section (RFC 5685; documented with the rest of
// the file in docs/configuration.md): following a gateway's REDIRECT as a client, and
// redirecting peers as a gateway to a static list of gateways, in IKE_SA_INIT
// or in IKE_AUTH. The placement a cluster computes replaces the list through
// the engine's RedirectPolicy hook (control/ike/redirect-policy.ts).
import { gatewayIdentity, type GatewayIdentity } from '../wire/gateway-identity.js';
import { fail, ok } from '../crypto/result.js';
import { DEFAULT_MAX_REDIRECTS, DEFAULT_REDIRECT_LOOP_PERIOD } from '../ike/defaults.js';
import { Problem, got } from './errors.js';
import { boolean, duration, integer, leaf, listOf, oneOf, section, withDefault } from './fields.js';
import type { ParseResult } from './proposal.js';
import type { RedirectConfig } from './types.js';

const TARGET_EXPECTED = 'gateways to redirect to: IP addresses or host names';

/** A redirect target: an IP literal or a host name (RFC 5685 §9.2 gateway identity types 1 to 3). */
function redirectTarget(text: string): ParseResult<GatewayIdentity> {
  const gw = /^[\d.]+$/.test(text) && gatewayIdentity(text)?.kind === 'fqdn' ? undefined : gatewayIdentity(text);
  return gw ? ok(gw) : fail(`'${text}' is neither an IP address nor a host name`);
}

export function redirectSchema() {
  return section({
    follow: leaf(withDefault(true, boolean)),
    max: leaf(withDefault(DEFAULT_MAX_REDIRECTS, integer(1, 100))),
    period: leaf(withDefault(DEFAULT_REDIRECT_LOOP_PERIOD, (v) => {
      const ms = duration(v);
      return ms instanceof Problem || ms > 0 ? ms : new Problem(got(v), 'a duration above zero');
    })),
    to: leaf(withDefault<GatewayIdentity[]>(() => [], listOf(TARGET_EXPECTED, redirectTarget))),
    at: leaf(withDefault('init', oneOf(['init', 'auth'] as const))),
  }, 'a mapping with follow, max, period, to, at').transform((r): RedirectConfig => ({ follow: r.follow, maxRedirects: r.max, loopPeriod: r.period, to: r.to, at: r.at }));
}
