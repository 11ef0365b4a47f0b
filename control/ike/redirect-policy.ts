// Where a gateway redirects a client (RFC 5685 leaves the choice out of
// scope, §3): the placement hook the engine asks, and the configuration-driven
// implementation (a connection's `redirect:` section: a static list of gateways
// taken in turn, at IKE_SA_INIT or at IKE_AUTH). A cluster plugs its own
// placement ("the least-loaded node") in through the same interface. Also the
// client's hooks for what the engine does not do itself (name resolution and
// routing are I/O, architecture §2).
//
// Owner: the engine's thread; nothing here sends or keeps SA state.
import type { GatewayIdentity } from '../wire/gateway-identity.js';
import { DEFAULT_MAX_REDIRECTS, DEFAULT_REDIRECT_LOOP_PERIOD } from './defaults.js';
import type { ConnectionPolicy, RedirectSettings } from './policy.js';
import type { Endpoint } from './transport.js';

/** When the gateway decides: in IKE_SA_INIT (§3) or in IKE_AUTH, after authenticating the peer (§6). */
export type RedirectPhase = 'init' | 'auth';

/** What the placement hook knows about the peer it may redirect. */
export interface RedirectPeer {
  /** The connection: at IKE_SA_INIT the one whose proposal was chosen, at IKE_AUTH the one the peer's identity selected. */
  policy: ConnectionPolicy;
  /** The addresses of the request (our local address is never a redirect target). */
  local: Endpoint;
  remote: Endpoint;
  /** IKE_AUTH: the peer's authenticated identity. */
  peerId?: string;
  /** REDIRECTED_FROM (§9.3): the gateway that sent the peer here. */
  redirectedFrom?: GatewayIdentity;
}

/**
 * The placement hook: the gateway to send `peer` to, or undefined to serve it
 * here. Asked only for peers that announced support (§3: a peer that did not
 * is never redirected).
 */
export interface RedirectPolicy {
  choose(peer: RedirectPeer, phase: RedirectPhase): GatewayIdentity | undefined;
}

/** The engine's redirect hooks (IkeEngineOptions.redirect). */
export interface RedirectHooks {
  /** Gateway side: where peers go; default: each connection's `redirect:` settings (ConfiguredRedirectPolicy). */
  policy?: RedirectPolicy;
  /** Client side: the address of a gateway a REDIRECT names by FQDN; without it such a redirect is refused. */
  resolveName?: (name: string) => Promise<string | undefined>;
  /** Client side: our local address towards a new gateway (a route lookup); default: the address we used so far. */
  localAddressTo?: (remote: Endpoint) => Promise<string | undefined>;
}

/** A connection's redirect settings, with the defaults for a policy that names none. */
export function redirectSettings(policy: ConnectionPolicy): RedirectSettings {
  return policy.redirect ?? { follow: true, maxRedirects: DEFAULT_MAX_REDIRECTS, loopPeriod: DEFAULT_REDIRECT_LOOP_PERIOD, to: [], at: 'init' };
}

/** Same gateway as our own address: a redirect there would send the peer back to us. */
function isAddress(gw: GatewayIdentity, address: string): boolean {
  return gw.kind !== 'fqdn' && gw.address === address;
}

/**
 * The configuration's placement: the connection's `redirect.to` gateways in
 * turn, in the phase `redirect.at` names, never to the address the request
 * came to.
 */
export class ConfiguredRedirectPolicy implements RedirectPolicy {
  /** The next position in each connection's list (round robin). */
  private readonly next = new WeakMap<ConnectionPolicy, number>();

  choose(peer: RedirectPeer, phase: RedirectPhase): GatewayIdentity | undefined {
    const settings = redirectSettings(peer.policy);
    if (settings.at !== phase) return undefined;
    const candidates = settings.to.filter((gw) => !isAddress(gw, peer.local.address));
    if (candidates.length === 0) return undefined;
    const position = this.next.get(peer.policy) ?? 0;
    this.next.set(peer.policy, (position + 1) % candidates.length);
    return candidates[position % candidates.length];
  }
}
