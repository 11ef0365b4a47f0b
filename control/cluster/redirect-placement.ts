// Redirect placement in a cluster (RFC 5685; architecture §8): clients that
// cannot be cloned (strongSwan, libreswan, Windows) are shared between the
// nodes by sending a new client from a loaded node to the least-loaded member.
// This is the cluster's RedirectPolicy (control/ike/redirect-policy.ts): the
// engine asks it only for peers that announced REDIRECT_SUPPORTED (§3), in
// IKE_SA_INIT before any state (§4.1) or in IKE_AUTH after authenticating the
// peer (§6), as `cluster.redirect.at` says.
//
// A node is loaded when it holds at least `above` established IKE SAs (its
// own count, now). The target is the member with the fewest IKE SAs (their
// loads as written to etcd, at most one second old; ties by name) if it holds
// fewer than this node: the new client then adds to the smaller load. A peer
// another gateway sent here (REDIRECTED_FROM, §9.3) is served here, never sent
// on, so two loaded nodes cannot pass a client back and forth. Without a
// target the connection's own `redirect:` list decides, as on a single gateway.
//
// Owner: the main thread (the engine asks synchronously; the members are a cache).
import type { ClusterRedirectConfig } from '../config/types.js';
import { ConfiguredRedirectPolicy, type RedirectPeer, type RedirectPhase, type RedirectPolicy } from '../ike/redirect-policy.js';
import type { Logger } from '../log.js';
import { gatewayIdentity, type GatewayIdentity } from '../wire/gateway-identity.js';
import type { MemberInfo } from './membership.js';

/** The member to send a new client to from node `self` with `ownLoad` IKE SAs, or undefined to serve it here. */
export function leastLoadedTarget(self: string, ownLoad: number, above: number, members: readonly MemberInfo[]): MemberInfo | undefined {
  if (ownLoad < above) return undefined;
  let best: MemberInfo | undefined;
  for (const m of members) {
    if (m.node === self || m.load >= ownLoad) continue;
    if (!best || m.load < best.load || (m.load === best.load && m.node < best.node)) best = m;
  }
  return best;
}

export interface ClusterRedirectOptions {
  node: string;
  settings: ClusterRedirectConfig;
  /** This node's established IKE SAs now. */
  ownLoad: () => number;
  /** The live members as last read from etcd. */
  members: () => readonly MemberInfo[];
  log: Logger;
  /** Asked when the cluster finds no target (default: the connections' `redirect:` lists). */
  fallback?: RedirectPolicy;
}

export class ClusterRedirectPolicy implements RedirectPolicy {
  /** Clients sent to each member (status and tests read it). */
  readonly sent = new Map<string, number>();
  private readonly fallback: RedirectPolicy;

  constructor(private readonly opts: ClusterRedirectOptions) {
    this.fallback = opts.fallback ?? new ConfiguredRedirectPolicy();
  }

  choose(peer: RedirectPeer, phase: RedirectPhase): GatewayIdentity | undefined {
    const { node, settings, log } = this.opts;
    if (phase === settings.at && !peer.redirectedFrom) {
      const own = this.opts.ownLoad();
      const target = leastLoadedTarget(node, own, settings.above, this.opts.members());
      const gw = target && target.address !== peer.local.address ? gatewayIdentity(target.address) : undefined;
      if (target && gw) {
        this.sent.set(target.node, (this.sent.get(target.node) ?? 0) + 1);
        log.info({ remote: peer.remote.address, phase, to: target.node, address: target.address, load: own, theirs: target.load }, 'redirecting a new client to the least-loaded node');
        return gw;
      }
    }
    return this.fallback.choose(peer, phase);
  }
}
