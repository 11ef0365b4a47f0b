// The Notification Data of RFC 5685's REDIRECT and REDIRECTED_FROM notifies
// (§9.2, §9.3): a gateway identity (GW Ident Type, GW Ident Len, the identity
// encoded as in RFC 7296 §3.5), and for a REDIRECT in an IKE_SA_INIT response
// the initiator's nonce data after it. Decoding is typed and never throws: the
// data comes from an unauthenticated peer in IKE_SA_INIT (architecture §4.3).
import { ipFamily, ipToBytes, bytesToIp } from './ip.js';
import type { Result } from './result.js';

/** Gateway Identity Type (RFC 5685 §12). */
export const GatewayIdentityType = { IPV4: 1, IPV6: 2, FQDN: 3 } as const;

/** Where a REDIRECT sends a client, or where a REDIRECTED_FROM says it came from. */
export type GatewayIdentity = { kind: 'ipv4' | 'ipv6'; address: string } | { kind: 'fqdn'; name: string };

/** RFC 7296 §3.9 via RFC 5685 §9.2: the nonce data in a REDIRECT is 16 to 256 octets. */
const NONCE_MIN = 16;
const NONCE_MAX = 256;
/** A host name of letters, digits and hyphens in dot-separated labels (RFC 1035 §2.3.1), at most 253 octets. */
const FQDN_RE = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** An IP literal or a host name as a gateway identity; undefined for anything else. */
export function gatewayIdentity(text: string): GatewayIdentity | undefined {
  if (typeof text !== 'string') return undefined;
  const family = ipFamily(text);
  if (family === 4) return { kind: 'ipv4', address: text };
  if (family === 6) return { kind: 'ipv6', address: bytesToIp(ipToBytes(text)!) };
  return FQDN_RE.test(text) ? { kind: 'fqdn', name: text.toLowerCase() } : undefined;
}

/** The identity as text (an address or a host name), for logs and for the next IKE_SA_INIT. */
export function gatewayIdentityText(gw: GatewayIdentity): string {
  return gw.kind === 'fqdn' ? gw.name : gw.address;
}

function identityBytes(gw: GatewayIdentity): Uint8Array {
  if (gw.kind === 'fqdn') return new TextEncoder().encode(gw.name);
  return ipToBytes(gw.address) ?? new Uint8Array(0);
}

/** REDIRECT (§9.2) or REDIRECTED_FROM (§9.3) data: type, length, identity, then the nonce data if given. */
export function encodeGatewayIdentity(gw: GatewayIdentity, nonce?: Uint8Array): Uint8Array {
  const ident = identityBytes(gw);
  const type = gw.kind === 'ipv4' ? GatewayIdentityType.IPV4 : gw.kind === 'ipv6' ? GatewayIdentityType.IPV6 : GatewayIdentityType.FQDN;
  const out = new Uint8Array(2 + ident.length + (nonce?.length ?? 0));
  out[0] = type;
  out[1] = ident.length;
  out.set(ident, 2);
  if (nonce) out.set(nonce, 2 + ident.length);
  return out;
}

export interface DecodedGatewayIdentity {
  gateway: GatewayIdentity;
  /** The nonce data after the identity (a REDIRECT in an IKE_SA_INIT response only). */
  nonce: Uint8Array | undefined;
}

/**
 * Decode REDIRECT or REDIRECTED_FROM data. `nonce`: 'required' for a REDIRECT
 * in an IKE_SA_INIT response (§3), 'absent' elsewhere (§9.2: it MUST NOT be in
 * IKE_AUTH or INFORMATIONAL, and REDIRECTED_FROM has none). `fqdn`: whether
 * type 3 is valid (REDIRECT only; REDIRECTED_FROM carries an address, §9.3).
 */
export function decodeGatewayIdentity(data: Uint8Array, opts: { nonce: 'required' | 'absent'; fqdn: boolean }): Result<DecodedGatewayIdentity, string> {
  const fail = (error: string): Result<DecodedGatewayIdentity, string> => ({ ok: false, error });
  if (!(data instanceof Uint8Array) || data.length < 2) return fail('gateway identity shorter than its type and length');
  const type = data[0]!;
  const len = data[1]!;
  if (data.length < 2 + len) return fail(`gateway identity of ${len} octets does not fit in ${data.length - 2}`);
  const ident = data.subarray(2, 2 + len);
  const rest = data.subarray(2 + len);
  let gateway: GatewayIdentity | undefined;
  if (type === GatewayIdentityType.IPV4) {
    if (len !== 4) return fail(`IPv4 gateway identity of ${len} octets`);
    gateway = { kind: 'ipv4', address: bytesToIp(ident) };
  } else if (type === GatewayIdentityType.IPV6) {
    if (len !== 16) return fail(`IPv6 gateway identity of ${len} octets`);
    gateway = { kind: 'ipv6', address: bytesToIp(ident) };
  } else if (type === GatewayIdentityType.FQDN && opts.fqdn) {
    // RFC 7296 §3.5: an FQDN string without terminators; we accept host names only.
    let text = '';
    for (const b of ident) text += b >= 0x21 && b <= 0x7e ? String.fromCharCode(b) : '\u0000';
    gateway = FQDN_RE.test(text) ? { kind: 'fqdn', name: text.toLowerCase() } : undefined;
    if (!gateway) return fail('FQDN gateway identity is not a host name');
  } else {
    return fail(`gateway identity type ${type} not valid here`);
  }
  if (opts.nonce === 'absent') {
    if (rest.length !== 0) return fail(`${rest.length} octets after the gateway identity`);
    return { ok: true, value: { gateway, nonce: undefined } };
  }
  if (rest.length < NONCE_MIN || rest.length > NONCE_MAX) return fail(`nonce data of ${rest.length} octets (16 to 256 expected)`);
  return { ok: true, value: { gateway, nonce: new Uint8Array(rest) } };
}
