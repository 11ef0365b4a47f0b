// Configuration -> IKE engine: a validated connection (control/config/types.ts)
// becomes the ConnectionPolicy the engine negotiates with (control/ike/policy.ts).
// Keys are loaded here, and the identities the file left to the addresses
// are filled in.
import { createPrivateKey } from 'node:crypto';
import { loadSigningKey, loadVerifyKey, signingKeyFromPrivateKey, type SigningKey } from '../crypto/auth.js';
import { identityFromAddress } from '../ike/identity.js';
import { DEFAULT_NAT_KEEPALIVE } from '../ike/defaults.js';
import type { ConnectionPolicy, LocalAuth, RemoteAuth } from '../ike/policy.js';
import type { ConnectionConfig, PoolConfig } from './types.js';

/**
 * The engine's policy for one connection. `fallbackLocal` is the address
 * whose identity stands for ours when the connection names neither local.id
 * nor local_addrs (the gateway's single concrete listen address). Throws when
 * no identity can be had or a pool is not one CIDR prefix.
 */
/** A pool as control/ike/virtual-ip.ts reads it (and as cluster keys name it): a prefix, or a range of one family. */
export function poolText(p: PoolConfig): string {
  return p.cidr ?? `${p.start}-${p.end}`;
}

export function connectionPolicy(conn: ConnectionConfig, fallbackLocal: string | undefined): ConnectionPolicy {
  const localAddress = conn.localAddrs[0] ?? fallbackLocal;
  let localId = conn.local.id;
  if (localId === 'any') {
    const fromAddress = localAddress ? identityFromAddress(localAddress) : null;
    if (!fromAddress) throw new Error(`connection "${conn.name}": set local.id or local_addrs (no address to use as identity)`);
    localId = fromAddress;
  }
  const [endEntity, ...intermediates] = conn.local.certs ?? [];
  const localAuth: LocalAuth =
    conn.local.auth === 'psk' ? { method: 'psk', ...(conn.psk ? { psk: conn.psk } : {}) } : { method: 'pubkey', signingKey: localSigningKey(conn) };
  if (localAuth.method === 'pubkey' && endEntity) localAuth.certificates = { endEntity, intermediates };
  const remoteAuth: RemoteAuth =
    conn.remote.auth === 'psk'
      ? { method: 'psk', ...(conn.psk ? { psk: conn.psk } : {}) }
      : { method: 'pubkey', ...(conn.remote.pubkey !== undefined ? { verifyKey: loadVerifyKey(conn.remote.pubkey) } : {}) };
  // RFC 7296 §3.6, RFC 4945: a chain to remote.cacerts, checked against remote.crls.
  if (remoteAuth.method === 'pubkey' && conn.remote.cacerts) {
    remoteAuth.trustAnchors = conn.remote.cacerts;
    remoteAuth.crls = conn.remote.crls ?? [];
    remoteAuth.revocation = conn.remote.revocation ?? 'relaxed';
  }
  return {
    name: conn.name,
    localAddrs: conn.localAddrs,
    remoteAddrs: conn.remoteAddrs.filter((a) => a !== '%any'),
    remotePort: conn.remotePort,
    ike: conn.ike,
    localId,
    remoteId: conn.remote.id,
    localAuth,
    remoteAuth,
    sendCert: conn.sendCert ?? 'ifasked',
    sendCertreq: conn.sendCertreq ?? true,
    mobike: conn.mobike,
    forceEncap: conn.encap,
    // RFC 7383: absent means yes, at 1280 octets (fragmentation.ts).
    ...(conn.fragmentation !== undefined ? { fragmentation: conn.fragmentation } : {}),
    ...(conn.fragmentSize !== undefined ? { fragmentSize: conn.fragmentSize } : {}),
    cloneSupport: conn.clone.supported,
    clone: { per: conn.clone.per, count: conn.clone.count, nics: conn.clone.nics },
    redirect: { ...conn.redirect },
    requestVirtualIp: conn.vips.length > 0,
    ...(conn.vips.length > 0 ? { virtualIps: conn.vips } : {}),
    // control/ike/virtual-ip.ts reads either form: a prefix, or a range of one family.
    pools: conn.pools.map(poolText),
    ...(conn.dns ? { dns: conn.dns } : {}),
    children: conn.children.map((c) => ({
      name: c.name,
      localTs: c.localTs,
      remoteTs: c.remoteTs,
      esp: c.esp,
      replayWindow: c.replayWindow,
      startAction: c.startAction,
      // RFC 9611 (control/ike/per-resource.ts).
      perCpuSas: c.perCpuSas,
      ...(c.perCpuSasMax !== undefined ? { perCpuSasMax: c.perCpuSasMax } : {}),
      // RFC 4301 §5.1.2.1, §8.1, RFC 6040 (dataplane/outer-header.ts).
      ...(c.outerHeader ? { outerHeader: c.outerHeader } : {}),
      // RFC 7296 §2.8 (control/ike/lifetimes.ts).
      rekeyTime: c.rekeyTime,
      lifeTime: c.lifeTime,
      randTime: c.randTime,
      rekeyBytes: c.rekeyBytes,
      lifeBytes: c.lifeBytes,
      rekeyPackets: c.rekeyPackets,
      lifePackets: c.lifePackets,
    })),
    startAction: conn.startAction === 'start' || conn.children.some((c) => c.startAction === 'start') ? 'start' : 'none',
    rekeyTime: conn.rekeyTime,
    reauthTime: conn.reauthTime,
    overTime: conn.overTime,
    randTime: conn.randTime,
    dpdDelay: conn.dpdDelay,
    dpdAction: conn.dpdAction ?? 'clear',
    natKeepalive: conn.keepalive ?? DEFAULT_NAT_KEEPALIVE,
  };
}

/**
 * Our private key. A raw pinned key is Ed25519 or ECDSA P-256 (loadSigningKey);
 * with a certificate, any key a certificate may hold (ECDSA P-384, RSA too),
 * RSA signing with RSASSA-PSS under local.auth rsa/pss (RFC 7427).
 */
function localSigningKey(conn: ConnectionConfig): SigningKey {
  const pem = conn.local.key!;
  if (!conn.local.certs && !conn.local.rsaPadding) return loadSigningKey(pem);
  const key = signingKeyFromPrivateKey(createPrivateKey(pem), conn.local.rsaPadding ? { rsaPadding: conn.local.rsaPadding } : {});
  if (!key.ok) throw new Error(`connection "${conn.name}": local.key: ${key.error}`);
  return key.value;
}
