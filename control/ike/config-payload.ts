// The Configuration payload of IKE_AUTH (RFC 7296 §2.19, §3.15): virtual IPs
// and DNS servers, IPv4 and IPv6.
//   initiator  CP(CFG_REQUEST) naming what it wants: INTERNAL_IP4_ADDRESS
//              and/or INTERNAL_IP6_ADDRESS, empty for "any" or holding the
//              address it would like, and the DNS attributes of those
//              families; the CFG_REPLY gives its virtual IPs and DNS servers
//   responder  one address per family asked for, from the connection's pools
//              (control/ike/virtual-ip.ts), and the DNS servers configured
//              for the families asked about, in a CP(CFG_REPLY)
// Attribute values are checked for their length before use (§3.15.1: 4 octets
// for IPv4, 16 plus a prefix length octet for INTERNAL_IP6_ADDRESS, 16 for
// INTERNAL_IP6_DNS); anything else is ignored, never thrown on.
import { CfgAttr, CfgType, PayloadType } from '../wire/constants.js';
import { findPayload, type CfgAttribute, type CpPayload, type Payload } from '../wire/payloads.js';
import { bytesToIp, ipFamily, ipToBytes } from '../wire/ip.js';
import type { IkeContext } from './context.js';
import type { IkeSa } from './ike-sa.js';
import type { ConnectionPolicy } from './policy.js';

const EMPTY: Uint8Array = new Uint8Array(0);
/** Prefix length sent with a leased INTERNAL_IP6_ADDRESS: the address alone, as a host. */
const IP6_HOST_PREFIX = 128;

const ADDRESS_ATTR = { 4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS } as const;
const DNS_ATTR = { 4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS } as const;

/** The address families a request's CP(CFG_REQUEST) asks an address of (a cluster claims one before IKE_AUTH is answered). */
export function requestedAddressFamilies(payloads: Payload[]): Array<4 | 6> {
  const cp = findPayload(payloads, PayloadType.CP);
  if (cp?.cfgType !== CfgType.CFG_REQUEST) return [];
  return ([4, 6] as const).filter((f) => cp.attributes.some((a) => a.type === ADDRESS_ATTR[f]));
}

/** The virtual IPs the initiator asks for: "0.0.0.0" / "::" (any of that family) or specific addresses. */
function wantedVirtualIps(policy: ConnectionPolicy): string[] {
  if (!policy.requestVirtualIp) return [];
  return policy.virtualIps && policy.virtualIps.length > 0 ? policy.virtualIps : ['0.0.0.0'];
}

/** The address families the initiator asks virtual IPs of, IPv4 first. */
export function requestedFamilies(policy: ConnectionPolicy): Array<4 | 6> {
  const families = new Set(wantedVirtualIps(policy).map((a) => (ipFamily(a) === 6 ? 6 : 4)));
  return ([4, 6] as const).filter((f) => families.has(f));
}

function isUnspecified(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

/** Initiator: the CFG_REQUEST for the connection's virtual IPs, or undefined when it asks for none. */
export function configRequest(policy: ConnectionPolicy): CpPayload | undefined {
  const wanted = wantedVirtualIps(policy);
  if (wanted.length === 0) return undefined;
  const attributes: CfgAttribute[] = [];
  for (const address of wanted) {
    const bytes = ipToBytes(address);
    if (!bytes) continue;
    const family = bytes.length === 4 ? 4 : 6;
    // §3.15.1: an empty value asks for any address; a value asks for that one.
    let value: Uint8Array = EMPTY;
    if (!isUnspecified(bytes)) {
      value = family === 4 ? bytes : new Uint8Array(17);
      if (family === 6) {
        value.set(bytes);
        value[16] = IP6_HOST_PREFIX;
      }
    }
    attributes.push({ type: ADDRESS_ATTR[family], value });
  }
  for (const family of requestedFamilies(policy)) attributes.push({ type: DNS_ATTR[family], value: EMPTY });
  return { type: PayloadType.CP, cfgType: CfgType.CFG_REQUEST, attributes };
}

/** Initiator: take the virtual IPs and DNS servers of a CFG_REPLY (RFC 7296 §3.15.1), IPv4 first. */
export function applyConfigReply(sa: IkeSa, cp: CpPayload): void {
  if (cp.cfgType !== CfgType.CFG_REPLY) return;
  const vips: string[] = [];
  const dns: string[] = [];
  const add = (list: string[], b: Uint8Array): void => {
    const text = bytesToIp(b);
    if (!isUnspecified(b) && !list.includes(text)) list.push(text);
  };
  for (const family of [4, 6] as const) {
    for (const a of cp.attributes) {
      if (a.type === ADDRESS_ATTR[family] && a.value.length === (family === 4 ? 4 : 17)) add(vips, a.value.subarray(0, family === 4 ? 4 : 16));
      if (a.type === DNS_ATTR[family] && a.value.length === (family === 4 ? 4 : 16)) add(dns, a.value);
    }
  }
  sa.virtualIps = vips;
  sa.dns = dns;
}

/**
 * Responder: lease a virtual IP per family the CFG_REQUEST asks for and name
 * the DNS servers of the families it asks about (RFC 7296 §2.19). `reply` is
 * the CFG_REPLY (absent when there is nothing to say); `failed` when the
 * connection has pools but the peer got no address from them: it asked for
 * none (FAILED_CP_REQUIRED without any CP, else INTERNAL_ADDRESS_FAILURE) or
 * every pool of the families it asked for is exhausted or missing.
 */
export function respondConfig(engine: IkeContext, sa: IkeSa, policy: ConnectionPolicy, cp: CpPayload | undefined): { reply?: CpPayload; failed: boolean } {
  const hasPools = policy.pools.length > 0;
  if (cp?.cfgType !== CfgType.CFG_REQUEST) return { failed: hasPools };
  const attributes: CfgAttribute[] = [];
  const leased: string[] = [];
  const askedAbout = new Set<4 | 6>();
  for (const family of [4, 6] as const) {
    const requests = cp.attributes.filter((a) => a.type === ADDRESS_ATTR[family]);
    if (cp.attributes.some((a) => a.type === DNS_ATTR[family])) askedAbout.add(family);
    if (requests.length === 0) continue;
    askedAbout.add(family);
    // One address per family: the first request of that family says which, if any.
    const value = requests[0]!.value;
    const wanted = value.length === (family === 4 ? 4 : 17) ? value.subarray(0, family === 4 ? 4 : 16) : undefined;
    const vip = hasPools ? engine.leaseVirtualIp(sa, family, wanted && !isUnspecified(wanted) ? wanted : undefined) : undefined;
    if (!vip) continue;
    leased.push(vip.address);
    let out = vip.bytes;
    if (family === 6) {
      out = new Uint8Array(17);
      out.set(vip.bytes);
      out[16] = IP6_HOST_PREFIX;
    }
    attributes.push({ type: ADDRESS_ATTR[family], value: out });
  }
  if (hasPools && leased.length === 0) return { failed: true };
  sa.peerVirtualIps = leased;
  for (const server of policy.dns ?? []) {
    const b = ipToBytes(server);
    const family = b?.length === 4 ? 4 : 6;
    if (b && askedAbout.has(family)) attributes.push({ type: DNS_ATTR[family], value: b });
  }
  if (attributes.length === 0) return { failed: false };
  return { reply: { type: PayloadType.CP, cfgType: CfgType.CFG_REPLY, attributes }, failed: false };
}
