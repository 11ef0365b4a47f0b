// IKE identities (RFC 7296 §3.5): parsing the strings operators write, printing
// what peers send, and matching a peer's identity against a configured pattern.
//
// The string forms follow strongSwan's identification_t:
//   192.0.2.1, 2001:db8::1          -> ID_IPV4_ADDR / ID_IPV6_ADDR
//   user@example.org                -> ID_RFC822_ADDR
//   @gw.example.org, gw.example.org -> ID_FQDN (a leading '@' forces FQDN)
//   @#0123abcd                      -> ID_KEY_ID (hex octets)
//   C=CH, O=Example, CN=gw          -> ID_DER_ASN1_DN (DER-encoded Name, RFC 5280 §4.1.2.4)
//   fqdn:..., email:..., rfc822:..., userfqdn:..., ipv4:..., ipv6:..., keyid:..., asn1dn:...
//                                   -> the named type, whatever the value looks like
// "%any" is a wildcard, not an identity: configuration maps it to 'any'.
// Patterns may use '*' in FQDN and RFC822 identities ("*.example.org",
// "*@example.org") and as a whole RDN value in DNs ("C=CH, O=Example, CN=*").
//
// Identities decoded from the network reach formatIdentity and identityMatches:
// both validate the bytes and never throw on them.
import { equalBytes } from '../crypto/bytes.js';
import { IdType } from '../wire/constants.js';
import { bytesToIp, ipFamily, ipToBytes } from '../wire/ip.js';
import { concatBytes } from '../crypto/bytes.js';
import { decodeOid, encodeOid, encodeTlv, readTlv } from '../crypto/der.js';
import { fail, type CryptoResult as ParseResult } from '../crypto/result.js';

/** RFC 7296 §3.5: ID Type and the identification data that follows it. */
export interface Identity {
  idType: number;
  data: Uint8Array;
}

const MAX_IDENTITY_TEXT = 1024;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------
// Addresses

/** The ID_IPV4_ADDR / ID_IPV6_ADDR identity of an address literal (strongSwan's default local identity), or null. */
export function identityFromAddress(address: string): Identity | null {
  const b = ipToBytes(address);
  if (b === undefined) return null;
  return { idType: b.length === 4 ? IdType.IPV4_ADDR : IdType.IPV6_ADDR, data: b };
}

// ---------------------------------------------------------------------------
// Parsing

const PREFIXES: Readonly<Record<string, number>> = {
  ipv4: IdType.IPV4_ADDR,
  ipv6: IdType.IPV6_ADDR,
  fqdn: IdType.FQDN,
  rfc822: IdType.RFC822_ADDR,
  email: IdType.RFC822_ADDR,
  userfqdn: IdType.RFC822_ADDR,
  keyid: IdType.KEY_ID,
  asn1dn: IdType.DER_ASN1_DN,
};

/**
 * Parse an identity string by strongSwan's rules (see the file comment).
 * "%any" is rejected: it is a wildcard for configuration, not an identity.
 */
export function parseIdentity(s: string): ParseResult<Identity> {
  if (typeof s !== 'string') return fail(`an identity must be a string, got ${typeof s}`);
  const text = s.trim();
  if (text === '') return fail('empty identity');
  if (text.length > MAX_IDENTITY_TEXT) return fail(`identity longer than ${MAX_IDENTITY_TEXT} characters`);
  if (text === '%any' || text === '%any6' || text === '*') {
    return fail(`'${text}' is a wildcard, not an identity`);
  }
  const prefix = /^([a-z0-9]+):(.*)$/i.exec(text);
  if (prefix !== null && PREFIXES[prefix[1]!.toLowerCase()] !== undefined) {
    return parseTyped(PREFIXES[prefix[1]!.toLowerCase()]!, prefix[2]!, text);
  }
  if (text.startsWith('@#')) return parseTyped(IdType.KEY_ID, text.slice(1), text);
  if (text.startsWith('@')) return parseTyped(IdType.FQDN, text.slice(1), text);
  if (ipFamily(text) === 4) return parseTyped(IdType.IPV4_ADDR, text, text);
  if (ipFamily(text) === 6) return parseTyped(IdType.IPV6_ADDR, text, text);
  if (text.includes('=')) return parseTyped(IdType.DER_ASN1_DN, text, text);
  if (text.includes('@')) return parseTyped(IdType.RFC822_ADDR, text, text);
  return parseTyped(IdType.FQDN, text, text);
}

function parseTyped(idType: number, value: string, whole: string): ParseResult<Identity> {
  switch (idType) {
    case IdType.IPV4_ADDR:
    case IdType.IPV6_ADDR: {
      const b = ipToBytes(value);
      const want = idType === IdType.IPV4_ADDR ? 4 : 16;
      if (b === undefined || b.length !== want) return fail(`'${whole}' is not an ${want === 4 ? 'IPv4' : 'IPv6'} address`);
      return ok(idType, b);
    }
    case IdType.FQDN: {
      if (value === '') return fail(`'${whole}' has an empty domain name`);
      if (!/^[\x21-\x7e]+$/.test(value)) return fail(`'${whole}' is not a domain name (printable ASCII without spaces; use punycode for international names)`);
      return ok(idType, utf8.encode(value));
    }
    case IdType.RFC822_ADDR: {
      const at = value.lastIndexOf('@');
      if (at <= 0 || at === value.length - 1) return fail(`'${whole}' is not an email address (user@domain)`);
      if (!/^[\x21-\x7e]+$/.test(value)) return fail(`'${whole}' is not an email address (printable ASCII without spaces)`);
      return ok(idType, utf8.encode(value));
    }
    case IdType.KEY_ID: {
      if (value.startsWith('#')) {
        const hex = value.slice(1).replace(/^0x/i, '').replace(/:/g, '');
        if (hex === '' || hex.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(hex)) {
          return fail(`'${whole}' is not a key ID (an even number of hex digits after '#')`);
        }
        return ok(idType, Uint8Array.from(Buffer.from(hex, 'hex')));
      }
      if (value === '') return fail(`'${whole}' is an empty key ID`);
      return ok(idType, utf8.encode(value));
    }
    case IdType.DER_ASN1_DN: {
      if (value.startsWith('#')) {
        const hex = value.slice(1);
        if (hex.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(hex)) return fail(`'${whole}' is not a hex-encoded DN`);
        const der = Uint8Array.from(Buffer.from(hex, 'hex'));
        if (decodeDn(der) === null) return fail(`'${whole}' is not a DER-encoded distinguished name`);
        return ok(idType, der);
      }
      const der = encodeDn(value);
      if (typeof der === 'string') return fail(`'${whole}' is not a distinguished name: ${der}`);
      return ok(idType, der);
    }
    default:
      return fail(`unsupported identity type ${idType}`);
  }
}

function ok(idType: number, data: Uint8Array): ParseResult<Identity> {
  return { ok: true, value: { idType, data } };
}


// ---------------------------------------------------------------------------
// Formatting

const TYPE_NAMES: Readonly<Record<number, string>> = {
  [IdType.IPV4_ADDR]: 'ipv4', [IdType.FQDN]: 'fqdn', [IdType.RFC822_ADDR]: 'rfc822',
  [IdType.IPV6_ADDR]: 'ipv6', [IdType.DER_ASN1_DN]: 'asn1dn', [IdType.DER_ASN1_GN]: 'asn1gn',
  [IdType.KEY_ID]: 'keyid',
};

/**
 * An identity as text in the form parseIdentity reads back to the same
 * identity wherever one exists: "192.0.2.1", "gw.example.org",
 * "user@example.org", "@#0123abcd", "C=CH, O=Example, CN=gw". Data that does
 * not fit its type (bad address length, undecodable DN) prints as
 * "<type>:#<hex>". Never throws on identities received from a peer.
 */
export function formatIdentity(id: Identity): string {
  if (id === null || typeof id !== 'object' || !(id.data instanceof Uint8Array) || !Number.isInteger(id.idType)) {
    throw new TypeError('formatIdentity: expected an Identity { idType, data: Uint8Array }');
  }
  const hex = Buffer.from(id.data.buffer, id.data.byteOffset, id.data.byteLength).toString('hex');
  const raw = `${TYPE_NAMES[id.idType] ?? `id${id.idType}`}:#${hex}`;
  switch (id.idType) {
    case IdType.IPV4_ADDR:
    case IdType.IPV6_ADDR: {
      const want = id.idType === IdType.IPV4_ADDR ? 4 : 16;
      return id.data.length === want ? bytesToIp(id.data) : raw;
    }
    case IdType.FQDN:
    case IdType.RFC822_ADDR: {
      const text = printable(id.data);
      if (text === null) return raw;
      const prefix = id.idType === IdType.FQDN ? 'fqdn:' : 'rfc822:';
      // Plain text when it reads back as the same type, else the typed prefix.
      const back = parseIdentity(text);
      if (back.ok && back.value.idType === id.idType) return text;
      if (id.idType === IdType.FQDN && !text.startsWith('#')) {
        const at = `@${text}`;
        const back2 = parseIdentity(at);
        if (back2.ok && back2.value.idType === IdType.FQDN) return at;
      }
      return prefix + text;
    }
    case IdType.KEY_ID:
      return id.data.length === 0 ? raw : `@#${hex}`;
    case IdType.DER_ASN1_DN: {
      const rdns = decodeDn(id.data);
      if (rdns === null || rdns.length === 0) return raw;
      // A peer may encode values with other string types than encodeDn picks;
      // the text still parses to an identity that identitiesEqual accepts.
      return rdns.map((r) => `${r.name}=${escapeDnValue(r.value)}`).join(', ');
    }
    default:
      return raw;
  }
}

/** The bytes as a string if they are printable ASCII without spaces, else null. */
function printable(data: Uint8Array): string | null {
  if (data.length === 0) return null;
  for (const b of data) if (b < 0x21 || b > 0x7e) return null;
  return String.fromCharCode(...data);
}

// ---------------------------------------------------------------------------
// Comparison and matching

/**
 * Same identity: same type and same data. FQDN and RFC822 compare without
 * regard to ASCII case (as strongSwan does); DNs compare attribute by
 * attribute, ignoring the ASN.1 string type and, for PrintableString and
 * IA5String values, case.
 */
export function identitiesEqual(a: Identity, b: Identity): boolean {
  if (!isIdentity(a) || !isIdentity(b)) return false;
  if (a.idType !== b.idType) return false;
  switch (a.idType) {
    case IdType.FQDN:
    case IdType.RFC822_ADDR:
      return a.data.length === b.data.length && asciiLower(a.data) === asciiLower(b.data);
    case IdType.DER_ASN1_DN: {
      if (equalBytes(a.data, b.data)) return true;
      const da = decodeDn(a.data);
      const db = decodeDn(b.data);
      if (da === null || db === null || da.length !== db.length) return false;
      return da.every((r, i) => r.oid === db[i]!.oid && rdnValueEqual(r, db[i]!));
    }
    default:
      return equalBytes(a.data, b.data);
  }
}

/**
 * Does the peer's identity satisfy a configured pattern? 'any' (from "%any")
 * matches everything; otherwise the types must agree, '*' in an FQDN or RFC822
 * pattern matches any run of characters ("*.example.org" matches
 * "vpn.example.org" and "a.b.example.org", not "example.org"), a DN RDN value of
 * '*' matches any value of that attribute, and everything else must be equal
 * (identitiesEqual).
 */
export function identityMatches(pattern: Identity | 'any', id: Identity): boolean {
  if (!isIdentity(id)) return false;
  if (pattern === 'any') return true;
  if (!isIdentity(pattern)) return false;
  if (pattern.idType !== id.idType) return false;
  switch (pattern.idType) {
    case IdType.FQDN:
    case IdType.RFC822_ADDR: {
      if (!pattern.data.includes(0x2a /* '*' */)) return identitiesEqual(pattern, id);
      return globMatch(asciiLower(pattern.data), asciiLower(id.data));
    }
    case IdType.DER_ASN1_DN: {
      const p = decodeDn(pattern.data);
      const d = decodeDn(id.data);
      if (p === null || d === null) return equalBytes(pattern.data, id.data);
      if (p.length !== d.length) return false;
      return p.every((r, i) => r.oid === d[i]!.oid && (r.value === '*' || rdnValueEqual(r, d[i]!)));
    }
    default:
      return identitiesEqual(pattern, id);
  }
}

/** True when the pattern contains a wildcard, so that it cannot be used as one's own identity. */
export function isIdentityPattern(id: Identity): boolean {
  if (!isIdentity(id)) return false;
  if (id.idType === IdType.FQDN || id.idType === IdType.RFC822_ADDR) return id.data.includes(0x2a);
  if (id.idType === IdType.DER_ASN1_DN) return decodeDn(id.data)?.some((r) => r.value === '*') ?? false;
  return false;
}

function isIdentity(x: unknown): x is Identity {
  return x !== null && typeof x === 'object' && Number.isInteger((x as Identity).idType) && (x as Identity).data instanceof Uint8Array;
}

/** Bytes as a string with ASCII upper case folded (bytes above 0x7f kept as code points). */
function asciiLower(data: Uint8Array): string {
  let s = '';
  for (const b of data) s += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
  return s;
}

/** '*' matches any run (possibly empty) of characters; iterative, linear backtracking. */
function globMatch(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === '*') { star = p++; mark = t; }
    else if (p < pattern.length && pattern[p] === text[t]) { p++; t++; }
    else if (star >= 0) { p = star + 1; t = ++mark; }
    else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

// ---------------------------------------------------------------------------
// Distinguished names (RFC 5280 §4.1.2.4): Name ::= SEQUENCE OF
// RelativeDistinguishedName, RDN ::= SET OF AttributeTypeAndValue,
// AttributeTypeAndValue ::= SEQUENCE { type OID, value ANY }. One attribute
// per RDN, as strongSwan writes them.

const ASN1 = { SEQUENCE: 0x30, SET: 0x31, OID: 0x06, UTF8: 0x0c, PRINTABLE: 0x13, T61: 0x14, IA5: 0x16, BMP: 0x1e, UNIVERSAL: 0x1c } as const;

/** Attribute names strongSwan prints, their OIDs and the string type used to encode them. */
const DN_ATTRS: readonly { names: string[]; oid: string; tag: number }[] = [
  { names: ['C'], oid: '2.5.4.6', tag: ASN1.PRINTABLE },
  { names: ['ST', 'S'], oid: '2.5.4.8', tag: ASN1.UTF8 },
  { names: ['L'], oid: '2.5.4.7', tag: ASN1.UTF8 },
  { names: ['O'], oid: '2.5.4.10', tag: ASN1.UTF8 },
  { names: ['OU'], oid: '2.5.4.11', tag: ASN1.UTF8 },
  { names: ['CN'], oid: '2.5.4.3', tag: ASN1.UTF8 },
  { names: ['SN'], oid: '2.5.4.4', tag: ASN1.UTF8 },
  { names: ['serialNumber'], oid: '2.5.4.5', tag: ASN1.PRINTABLE },
  { names: ['T'], oid: '2.5.4.12', tag: ASN1.UTF8 },
  { names: ['G', 'GN'], oid: '2.5.4.42', tag: ASN1.UTF8 },
  { names: ['E', 'emailAddress'], oid: '1.2.840.113549.1.9.1', tag: ASN1.IA5 },
  { names: ['DC'], oid: '0.9.2342.19200300.100.1.25', tag: ASN1.IA5 },
  { names: ['UID'], oid: '0.9.2342.19200300.100.1.1', tag: ASN1.UTF8 },
];

const attrByName = new Map<string, { oid: string; tag: number }>();
for (const a of DN_ATTRS) for (const n of a.names) attrByName.set(n.toLowerCase(), a);
const nameByOid = new Map<string, string>(DN_ATTRS.map((a) => [a.oid, a.names[0]!]));

interface Rdn { oid: string; name: string; tag: number; value: string }

function rdnValueEqual(a: Rdn, b: Rdn): boolean {
  const caseless = (t: number): boolean => t === ASN1.PRINTABLE || t === ASN1.IA5;
  if (caseless(a.tag) || caseless(b.tag)) return a.value.toLowerCase() === b.value.toLowerCase();
  return a.value === b.value;
}

/** "C=CH, O=Example, CN=gw" -> DER Name, or a string saying what is wrong. */
function encodeDn(text: string): Uint8Array | string {
  const parts = splitDn(text);
  if (typeof parts === 'string') return parts;
  const rdns: Uint8Array[] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0) return `'${part}' is not attribute=value`;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (value === '') return `attribute '${name}' has an empty value`;
    let oid: string;
    let tag: number;
    const known = attrByName.get(name.toLowerCase());
    if (known !== undefined) {
      oid = known.oid;
      tag = known.tag;
    } else if (/^\d+(\.\d+)+$/.test(name)) {
      oid = name;
      tag = ASN1.UTF8;
    } else {
      return `unknown attribute '${name}' (known: ${DN_ATTRS.map((a) => a.names[0]).join(' ')}, or a dotted OID)`;
    }
    if (tag === ASN1.PRINTABLE && !/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)) tag = ASN1.UTF8;
    if (tag === ASN1.IA5 && !/^[\x00-\x7f]*$/.test(value)) tag = ASN1.UTF8;
    const oidBytes = encodeOid(oid);
    if (oidBytes === null) return `'${name}' is not a valid OID`;
    const atv = encodeTlv(ASN1.SEQUENCE, concatBytes(encodeTlv(ASN1.OID, oidBytes), encodeTlv(tag, utf8.encode(value))));
    rdns.push(encodeTlv(ASN1.SET, atv));
  }
  return encodeTlv(ASN1.SEQUENCE, concatBytes(...rdns));
}

/** Split on unescaped ',' (or '/' for the "/C=CH/O=..." form); "\," keeps a comma in a value. */
function splitDn(text: string): string[] | string {
  const slashForm = text.startsWith('/');
  const sep = slashForm ? '/' : ',';
  const body = slashForm ? text.slice(1) : text;
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\' && i + 1 < body.length) { cur += body[++i]; continue; }
    if (c === sep) { parts.push(cur); cur = ''; continue; }
    cur += c;
  }
  parts.push(cur);
  if (parts.some((p) => p.trim() === '')) return 'empty RDN (doubled or trailing separator)';
  return parts;
}

function escapeDnValue(v: string): string {
  return v.replace(/[\\,]/g, (c) => `\\${c}`);
}

/** DER Name -> RDN list, or null when the bytes are not a well-formed Name. Never throws. */
function decodeDn(data: Uint8Array): Rdn[] | null {
  const outer = readTlv(data, 0);
  if (outer === null || outer.tag !== ASN1.SEQUENCE || outer.end !== data.length) return null;
  const rdns: Rdn[] = [];
  let pos = outer.start;
  while (pos < outer.end) {
    const set = readTlv(data, pos, outer.end);
    if (set === null || set.tag !== ASN1.SET) return null;
    let inner = set.start;
    while (inner < set.end) {
      const atv = readTlv(data, inner, set.end);
      if (atv === null || atv.tag !== ASN1.SEQUENCE) return null;
      const oidTlv = readTlv(data, atv.start, atv.end);
      if (oidTlv === null || oidTlv.tag !== ASN1.OID) return null;
      const valTlv = readTlv(data, oidTlv.end, atv.end);
      if (valTlv === null || valTlv.end !== atv.end) return null;
      const oid = decodeOid(data.subarray(oidTlv.start, oidTlv.end));
      if (oid === null) return null;
      const value = decodeString(valTlv.tag, data.subarray(valTlv.start, valTlv.end));
      if (value === null) return null;
      rdns.push({ oid, name: nameByOid.get(oid) ?? oid, tag: valTlv.tag, value });
      inner = atv.end;
    }
    pos = set.end;
  }
  return rdns;
}

function decodeString(tag: number, bytes: Uint8Array): string | null {
  try {
    switch (tag) {
      case ASN1.UTF8:
      case ASN1.PRINTABLE:
      case ASN1.IA5:
        return utf8Decoder.decode(bytes);
      case ASN1.T61:
        return String.fromCharCode(...bytes);
      case ASN1.BMP: {
        if (bytes.length % 2 !== 0) return null;
        let s = '';
        for (let i = 0; i < bytes.length; i += 2) s += String.fromCharCode((bytes[i]! << 8) | bytes[i + 1]!);
        return s;
      }
      default:
        return null;
    }
  } catch {
    return null;
  }
}
