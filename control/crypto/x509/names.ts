// Distinguished names and general names in certificates: printing, DN
// equality (RFC 5280 §7.1) and name constraints (RFC 5280 §4.2.1.10,
// §6.1.3 (b)-(c)) for dNSName, rfc822Name, iPAddress and directoryName.
// Everything here reads peer data and never throws.

import type { AttributeTypeAndValue, GeneralName, GeneralSubtree, Name, NameConstraints } from '@peculiar/asn1-x509';
import { ipToBytes, samePrefix } from '../../wire/ip.js';

/** Short names of the attribute types seen in DNs (RFC 4514 §3, plus emailAddress as OpenSSL and strongSwan print it). */
const SHORT_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN', '2.5.4.4': 'SN', '2.5.4.5': 'serialNumber', '2.5.4.6': 'C', '2.5.4.7': 'L', '2.5.4.8': 'ST',
  '2.5.4.9': 'street', '2.5.4.10': 'O', '2.5.4.11': 'OU', '2.5.4.12': 'title', '2.5.4.42': 'GN', '2.5.4.46': 'dnQualifier',
  '0.9.2342.19200300.100.1.25': 'DC', '0.9.2342.19200300.100.1.1': 'UID', '1.2.840.113549.1.9.1': 'E',
};

/** PKCS#9 emailAddress, which RFC 5280 §4.2.1.10 subjects to rfc822Name constraints. */
const EMAIL_ADDRESS = '1.2.840.113549.1.9.1';

function attributeText(atv: AttributeTypeAndValue): string {
  try {
    return atv.value.toString();
  } catch {
    return '#?';
  }
}

/** "C=CH, O=Example, CN=gw" (strongSwan's order: as encoded, most significant first). */
export function formatName(name: Name): string {
  return name
    .map((rdn) => rdn.map((atv) => `${SHORT_NAMES[atv.type] ?? atv.type}=${attributeText(atv)}`).join(' + '))
    .join(', ');
}

/**
 * The comparison form of an attribute value (RFC 5280 §7.1 via RFC 4518 §2,
 * simplified): Unicode NFKC, case folded, leading and trailing spaces removed
 * and inner runs of spaces reduced to one. Values in no string type compare
 * by their encoding.
 */
function canonicalValue(atv: AttributeTypeAndValue): string {
  const v = atv.value;
  const text = v.utf8String ?? v.printableString ?? v.ia5String ?? v.bmpString ?? v.universalString ?? v.teletexString;
  if (text === undefined) return `#${v.anyValue ? Buffer.from(v.anyValue).toString('hex') : ''}`;
  return text.normalize('NFKC').toLowerCase().trim().replace(/\s+/g, ' ');
}

function rdnKey(rdn: readonly AttributeTypeAndValue[]): string {
  // An RDN is a SET: its attributes compare in any order.
  return rdn.map((atv) => `${atv.type}=${JSON.stringify(canonicalValue(atv))}`).sort().join('+');
}

/**
 * The comparison keys of a Name's RDNs, computed once per decoded Name: a
 * trust anchor's subject is compared with every peer certificate's issuer.
 * Decoded Names are not modified after decoding, so the keys stay true.
 */
const rdnKeysCache = new WeakMap<Name, readonly string[]>();

function rdnKeys(name: Name): readonly string[] {
  let keys = rdnKeysCache.get(name);
  if (keys === undefined) {
    keys = name.map(rdnKey);
    rdnKeysCache.set(name, keys);
  }
  return keys;
}

/** RFC 5280 §7.1: same number of RDNs, each matching pairwise in order. */
export function namesEqual(a: Name, b: Name): boolean {
  if (a.length !== b.length) return false;
  const ka = rdnKeys(a);
  const kb = rdnKeys(b);
  return ka.every((k, i) => k === kb[i]);
}

/** Whether `prefix` names an ancestor of (or equals) `name` in the directory tree (RFC 5280 §4.2.1.10 directoryName). */
function nameWithin(name: Name, prefix: Name): boolean {
  if (prefix.length > name.length) return false;
  const kn = rdnKeys(name);
  return rdnKeys(prefix).every((k, i) => k === kn[i]);
}

// --- name constraints (RFC 5280 §4.2.1.10) ---------------------------------------

/**
 * dNSName: "any DNS name that can be constructed by simply adding zero or more
 * labels to the left-hand side of the name satisfies the name constraint"; a
 * leading "." (an OpenSSL and strongSwan convention) admits subdomains only.
 */
function dnsWithin(name: string, constraint: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  const c = constraint.toLowerCase().replace(/\.$/, '');
  if (c === '') return true;
  if (c.startsWith('.')) return n.endsWith(c);
  return n === c || n.endsWith(`.${c}`);
}

/** rfc822Name: a mailbox ("a@host"), all mailboxes of one host ("host"), or of a domain (".domain"). */
function mailWithin(address: string, constraint: string): boolean {
  const at = address.lastIndexOf('@');
  if (at < 0) return false;
  if (constraint.includes('@')) {
    const cAt = constraint.lastIndexOf('@');
    return address.slice(0, at) === constraint.slice(0, cAt) && address.slice(at + 1).toLowerCase() === constraint.slice(cAt + 1).toLowerCase();
  }
  const host = address.slice(at + 1).toLowerCase();
  const c = constraint.toLowerCase();
  return c.startsWith('.') ? host.endsWith(c) : host === c;
}

/** iPAddress: address and mask, as @peculiar/asn1-x509 renders them ("192.0.2.0/24"); undefined if unreadable. */
function ipWithin(address: string, constraint: string): boolean | undefined {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(constraint);
  if (!m) return undefined;
  const subnet = ipToBytes(m[1]!);
  const prefix = Number(m[2]);
  if (!subnet || prefix > subnet.length * 8) return undefined;
  const bytes = ipToBytes(address);
  // An address of the other family is outside the subtree.
  return bytes !== undefined && samePrefix(bytes, subnet, prefix);
}

type NameKind = 'dNSName' | 'rfc822Name' | 'iPAddress' | 'directoryName';
type SubjectName = { kind: NameKind; text: string; dn?: Name } | { kind: 'other'; text: string; type: string };

/** The names a certificate asserts (RFC 5280 §6.1.3 (b)): subject DN, emailAddress attributes, subjectAltName entries. */
function namesOf(subject: Name, altNames: readonly GeneralName[]): SubjectName[] {
  const out: SubjectName[] = [];
  if (subject.length > 0) out.push({ kind: 'directoryName', text: formatName(subject), dn: subject });
  for (const rdn of subject) {
    for (const atv of rdn) if (atv.type === EMAIL_ADDRESS) out.push({ kind: 'rfc822Name', text: attributeText(atv) });
  }
  for (const gn of altNames) {
    if (gn.dNSName !== undefined) out.push({ kind: 'dNSName', text: gn.dNSName });
    else if (gn.rfc822Name !== undefined) out.push({ kind: 'rfc822Name', text: gn.rfc822Name });
    else if (gn.iPAddress !== undefined) out.push({ kind: 'iPAddress', text: gn.iPAddress });
    else if (gn.directoryName !== undefined) out.push({ kind: 'directoryName', text: formatName(gn.directoryName), dn: gn.directoryName });
    else out.push({ kind: 'other', text: describeGeneralName(gn), type: generalNameType(gn) });
  }
  return out;
}

function generalNameType(gn: GeneralName): string {
  return Object.keys(gn).find((k) => (gn as Record<string, unknown>)[k] !== undefined) ?? 'unknown';
}

function describeGeneralName(gn: GeneralName): string {
  if (gn.uniformResourceIdentifier !== undefined) return `URI:${gn.uniformResourceIdentifier}`;
  return generalNameType(gn);
}

/** true / false, or undefined when the subtree is of this kind but cannot be interpreted. */
function subtreeMatches(name: SubjectName, subtree: GeneralSubtree): boolean | undefined {
  const base = subtree.base;
  switch (name.kind) {
    case 'dNSName':
      return base.dNSName === undefined ? false : dnsWithin(name.text, base.dNSName);
    case 'rfc822Name':
      return base.rfc822Name === undefined ? false : mailWithin(name.text, base.rfc822Name);
    case 'iPAddress':
      return base.iPAddress === undefined ? false : ipWithin(name.text, base.iPAddress);
    case 'directoryName':
      return base.directoryName === undefined ? false : nameWithin(name.dn!, base.directoryName);
    case 'other':
      return generalNameType(base) === name.type ? undefined : false;
  }
}

function subtreeKind(subtree: GeneralSubtree): string {
  return generalNameType(subtree.base);
}

/**
 * Checks a certificate's names against the constraints of every CA above it
 * (each must hold: their intersection, RFC 5280 §6.1.4 (g)). A name of a kind
 * some CA constrains with permitted subtrees must lie in one of them and in
 * none of the excluded ones. Returns undefined when the names satisfy all
 * constraints, else a detail for the log.
 */
export function nameConstraintViolation(subject: Name, altNames: readonly GeneralName[], constraints: readonly NameConstraints[]): string | undefined {
  const names = namesOf(subject, altNames);
  for (const nc of constraints) {
    for (const name of names) {
      const kind = name.kind === 'other' ? name.type : name.kind;
      for (const subtree of nc.excludedSubtrees ?? []) {
        const m = subtreeMatches(name, subtree);
        if (m === undefined) return `cannot check ${name.text} against an excluded ${kind} subtree`;
        if (m) return `${name.text} is in an excluded ${kind} subtree`;
      }
      const permitted = (nc.permittedSubtrees ?? []).filter((s) => subtreeKind(s) === kind);
      if (permitted.length === 0) continue;
      let inside = false;
      for (const subtree of permitted) {
        const m = subtreeMatches(name, subtree);
        if (m === undefined) return `cannot check ${name.text} against a permitted ${kind} subtree`;
        if (m) inside = true;
      }
      if (!inside) return `${name.text} is outside the permitted ${kind} subtrees`;
    }
  }
  return undefined;
}
