// Redirect placement in a cluster (RFC 5685; architecture §8): which member a
// loaded node sends a new client to, in which phase, and the clients it never
// sends on; `cluster.redirect` in the configuration.
import { describe, expect, it } from 'vitest';
import { ClusterRedirectPolicy, leastLoadedTarget } from '../control/cluster/redirect-placement.js';
import type { MemberInfo } from '../control/cluster/membership.js';
import type { RedirectPeer } from '../control/ike/redirect-policy.js';
import { silentLogger } from '../control/log.js';
import { pskPair } from './support/peers.js';
import { withClusterLines } from './support/cluster-stores.js';

const member = (node: string, load: number, address = `192.0.2.${node.charCodeAt(node.length - 1) - 96}`): MemberInfo => ({ node, address, load, spiPrefix: 1 });
const MEMBERS = [member('a', 5), member('b', 2), member('c', 1)];

function peer(over: Partial<RedirectPeer> = {}): RedirectPeer {
  return { policy: pskPair().responder, local: { address: '192.0.2.1', port: 500 }, remote: { address: '198.51.100.7', port: 500 }, ...over };
}

describe('cluster redirect placement', () => {
  it('a node at or over its threshold picks the member with the fewest IKE SAs, if that one has fewer than itself', () => {
    expect(leastLoadedTarget('a', 5, 5, MEMBERS)?.node).toBe('c');
    expect(leastLoadedTarget('a', 4, 5, MEMBERS)).toBeUndefined();
    // Nobody holds fewer: served here.
    expect(leastLoadedTarget('c', 1, 0, MEMBERS)).toBeUndefined();
    // Ties go by name.
    expect(leastLoadedTarget('a', 9, 1, [member('a', 9), member('d', 3), member('b', 3)])?.node).toBe('b');
  });

  it('redirects in the configured phase only, never a client another gateway sent here, and otherwise asks the connection\'s list', () => {
    let load = 5;
    const policy = new ClusterRedirectPolicy({ node: 'a', settings: { above: 5, at: 'init' }, ownLoad: () => load, members: () => MEMBERS, log: silentLogger() });
    expect(policy.choose(peer(), 'init')).toEqual({ kind: 'ipv4', address: '192.0.2.3' });
    expect(policy.choose(peer(), 'auth')).toBeUndefined();
    expect(policy.choose(peer({ redirectedFrom: { kind: 'ipv4', address: '192.0.2.2' } }), 'init')).toBeUndefined();
    expect(policy.sent.get('c')).toBe(1);
    load = 4;
    expect(policy.choose(peer(), 'init')).toBeUndefined();
    // Without a target, the connection's own redirect list decides (the single-gateway behaviour).
    const listed = pskPair({ responder: { redirect: { follow: true, maxRedirects: 5, loopPeriod: 300_000, to: [{ kind: 'ipv4', address: '203.0.113.9' }], at: 'init' } } }).responder;
    expect(policy.choose(peer({ policy: listed }), 'init')).toEqual({ kind: 'ipv4', address: '203.0.113.9' });
  });
});

describe('cluster.redirect in the configuration', () => {
  const withRedirect = (redirect: string) => withClusterLines(`  redirect: ${redirect}\n`, 'ikeclone-redirect-cfg-');

  it('reads above and at (at defaults to init)', () => {
    expect(withRedirect('{ above: 100, at: auth }').cluster?.redirect).toEqual({ above: 100, at: 'auth' });
    expect(withRedirect('{ above: 0 }').cluster?.redirect).toEqual({ above: 0, at: 'init' });
  });

  it('refuses a missing or negative threshold, another phase and unknown keys with the path', () => {
    expect(() => withRedirect('{ at: init }')).toThrow(/cluster\.redirect\.above: missing/);
    expect(() => withRedirect('{ above: -1 }')).toThrow(/cluster\.redirect\.above: .*an integer from 0 to 1000000/);
    expect(() => withRedirect('{ above: 3, at: create }')).toThrow(/cluster\.redirect\.at: .*one of init, auth/);
    expect(() => withRedirect('{ above: 3, to: x }')).toThrow(/cluster\.redirect\.to: unknown key/);
  });
});
