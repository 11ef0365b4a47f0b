// Field parsers of the configuration: each takes a value as YAML gives it and
// returns the typed value or a Problem (control/config/errors.ts). Zod checks
// the shape (strict objects: unknown keys are errors); every leaf is one of
// these small functions, and cross-field rules run in the transforms of
// control/config/schema.ts.
//
// Addresses, traffic selectors and pools (RFC 7296 §3.13.1), virtual IPs
// (RFC 7296 §2.19), proposals (control/config/proposal.ts), identities
// (control/ike/identity.ts), durations and counts.
import * as z from 'zod';
import { DURATION_EXPECTED, tryParseDuration } from './duration.js';
import { isIdentityPattern, parseIdentity, type Identity } from '../ike/identity.js';
import {
  DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, parseInstallableEspProposal, parseIkeProposal, type ParseResult, type ProposalSpec,
} from './proposal.js';
import { bytesToIp, cidrToRange, ipToBytes, rangePrefixLength } from '../wire/ip.js';
import { fail, ok } from '../crypto/result.js';
import { Problem, encode, got, report, type IssueSink, type PathSeg } from './errors.js';
import { NAME_EXPECTED, NAME_RE, type PoolConfig, type TrafficSelectorConfig } from './types.js';

/** What field parsers that read files or count workers need to know. */
export interface Ctx {
  /** Directory relative paths are resolved against. */
  baseDir: string;
  /** Resolved worker count (clone per: worker default). */
  workers: number;
}

/** A leaf value: `parse` gets the value (null and absent both as undefined). */
export function leaf<T>(parse: (v: unknown) => T | Problem) {
  return z.unknown().optional().transform((v, ctx): T => {
    const r = parse(v === null ? undefined : v);
    if (r instanceof Problem) {
      report(ctx as unknown as IssueSink, r, v);
      return z.NEVER;
    }
    return r;
  });
}

/** A strict mapping; null or absent becomes {} so that every default applies. */
export function section<S extends z.core.$ZodLooseShape>(shape: S, what: string) {
  const keys = Object.keys(shape);
  return z.preprocess(
    (v) => (v === null || v === undefined ? {} : v),
    z.strictObject(shape, {
      error: (iss) => {
        if (iss.code === 'unrecognized_keys') return encode('unknown key', `one of ${keys.join(', ')}`, keys);
        return encode(got(iss.input), what);
      },
    }),
  );
}

/** A map of user-chosen names (connections, children) to sections. */
export function namedMap<T extends z.ZodType>(value: T, what: string) {
  return z.preprocess(
    (v) => (v === null || v === undefined ? {} : v),
    z.record(
      z.string().regex(NAME_RE, { error: (iss) => encode(`invalid name '${String(iss.input)}'`, NAME_EXPECTED) }),
      value,
      { error: (iss) => encode(got(iss.input), what) },
    ),
  );
}

export function withDefault<T>(def: T | (() => T), parse: (v: unknown) => T | Problem): (v: unknown) => T | Problem {
  return (v) => (v === undefined ? (typeof def === 'function' ? (def as () => T)() : def) : parse(v));
}

export function integer(min: number, max: number, expected = `an integer from ${min} to ${max}`): (v: unknown) => number | Problem {
  return (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : new Problem(got(v), expected));
}

export const PORT = integer(1, 65535);

export function boolean(v: unknown): boolean | Problem {
  if (typeof v === 'boolean') return v;
  if (v === 'yes') return true;
  if (v === 'no') return false;
  return new Problem(got(v), 'true or false (or yes / no)');
}

export function duration(v: unknown): number | Problem {
  const r = tryParseDuration(v);
  return r.ok ? r.value : new Problem(r.error, DURATION_EXPECTED);
}

/** Shortest dpd_delay / keepalive other than 0 (off). */
const MIN_INTERVAL_MS = 1000;

/**
 * A periodic liveness interval: 0 (off) or at least MIN_INTERVAL_MS. A few
 * milliseconds would flood the peer or the NAT with a message per tick and is
 * never what was meant (a unit left off, "1ms" for "1m").
 */
export function interval(field: string): (v: unknown) => number | Problem {
  return (v) => {
    const d = duration(v);
    if (d instanceof Problem || d === 0 || d >= MIN_INTERVAL_MS) return d;
    return new Problem(`${field} of ${d} ms is too short`, `0 (off) or at least ${MIN_INTERVAL_MS / 1000}s`);
  };
}

export function oneOf<const T extends string>(values: readonly T[]): (v: unknown) => T | Problem {
  return (v) => (typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : new Problem(got(v), `one of ${values.join(', ')}`));
}

/** A list of strings: a YAML list, a single string, or a comma-separated string as in swanctl.conf. */
function stringList(v: unknown, expected: string): Array<{ text: string; path: PathSeg[] }> | Problem {
  if (typeof v === 'string') {
    const items = v.split(',').map((s) => s.trim());
    if (items.some((s) => s === '')) return new Problem(`empty item in '${v}'`, expected);
    return items.map((text) => ({ text, path: [] }));
  }
  if (Array.isArray(v)) {
    const out: Array<{ text: string; path: PathSeg[] }> = [];
    for (let i = 0; i < v.length; i++) {
      const item = v[i] as unknown;
      if (typeof item !== 'string' || item.trim() === '') return new Problem(got(item), expected, [i]);
      out.push({ text: item.trim(), path: [i] });
    }
    return out;
  }
  return new Problem(got(v), `${expected}, or a list of them`);
}

/**
 * Parse every item of a list with `item`, first failure wins. `nonEmpty` (what
 * to write instead) rejects [] for lists where nothing is not a meaningful
 * setting: without it an empty list passes and fails later, at run time.
 */
export function listOf<T>(expected: string, item: (text: string) => ParseResult<T>, nonEmpty?: string): (v: unknown) => T[] | Problem {
  return (v) => {
    const list = stringList(v, expected);
    if (list instanceof Problem) return list;
    if (nonEmpty !== undefined && list.length === 0) return new Problem('got an empty list', nonEmpty);
    const out: T[] = [];
    for (const { text, path } of list) {
      const r = item(text);
      if (!r.ok) return new Problem(r.error, expected, path);
      out.push(r.value);
    }
    return out;
  };
}

export function ipLiteral(text: string): ParseResult<string> {
  const b = ipToBytes(text);
  if (b === undefined || text.includes('%')) return fail(`'${text}' is not an IP address`);
  return ok(bytesToIp(b));
}

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

export function remoteAddress(text: string): ParseResult<string> {
  if (text === '%any') return ok('%any');
  const ip = ipLiteral(text);
  if (ip.ok) return ip;
  // Digits and dots only would be a mistyped IPv4 address, not a host name.
  if (HOSTNAME_RE.test(text) && !/^[\d.]+$/.test(text)) return ok(text.replace(/\.$/, ''));
  return fail(`'${text}' is neither an IP address nor a host name`);
}

export function localAddress(text: string): ParseResult<string> {
  if (text === '%any') return ok('%any');
  return ipLiteral(text);
}

/** Byte or packet counts: integers, or strings with k / m / g (powers of 1024) as strongSwan reads them. */
export function count(v: unknown): number | Problem {
  const expected = 'a non-negative integer, optionally with k, m or g (e.g. 500m)';
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : new Problem(got(v), expected);
  if (typeof v === 'string') {
    const m = /^(\d+)\s*([kKmMgG]?)$/.exec(v.trim());
    if (m === null) return new Problem(got(v), expected);
    const n = Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2]!.toLowerCase()]!;
    return Number.isSafeInteger(n) ? n : new Problem(`${got(v)} is too large`, expected);
  }
  return new Problem(got(v), expected);
}

/** over_time: a duration or a percentage ("10%") of the IKE SA's lifetime. */
export function durationOrPercent(v: unknown): { ms: number } | { percent: number } | Problem {
  if (typeof v === 'string' && v.trim().endsWith('%')) {
    const n = Number(v.trim().slice(0, -1));
    if (v.trim().length > 1 && Number.isFinite(n) && n >= 0 && n <= 1000) return { percent: n };
    return new Problem(got(v), 'a duration or a percentage such as 10%');
  }
  const d = duration(v);
  return d instanceof Problem ? new Problem(d.problem, `${DURATION_EXPECTED}, or a percentage such as 10%`) : { ms: d };
}

// -- traffic selectors and pools (RFC 7296 §3.13.1) --

const PROTOCOLS: Readonly<Record<string, number>> = { any: 0, icmp: 1, tcp: 6, udp: 17, gre: 47, esp: 50, icmpv6: 58, ipv6icmp: 58, sctp: 132 };
export const TS_EXPECTED = "dynamic, or an address, CIDR prefix or a-b range, optionally followed by [protocol] or [protocol/port] or [protocol/port-port]";

/** Inclusive address range of "a", "a/len" or "a-b"; both ends of one family. */
function addressRange(text: string): ParseResult<{ start: Uint8Array; end: Uint8Array }> {
  const dash = text.indexOf('-');
  if (dash >= 0) {
    const start = ipToBytes(text.slice(0, dash).trim());
    const end = ipToBytes(text.slice(dash + 1).trim());
    if (start === undefined || end === undefined) return fail(`'${text}' is not an address range`);
    if (start.length !== end.length) return fail(`'${text}' mixes IPv4 and IPv6`);
    if (Buffer.compare(start, end) > 0) return fail(`'${text}' ends before it starts`);
    return ok({ start, end });
  }
  if (text.includes('%')) return fail(`'${text}' is not an address or prefix`);
  const r = cidrToRange(text);
  if (r === undefined) return fail(`'${text}' is not an address or prefix`);
  return ok(r);
}

export function trafficSelector(text: string): ParseResult<TrafficSelectorConfig | 'dynamic'> {
  if (text === 'dynamic' || text === '%dynamic') return ok('dynamic');
  const m = /^([^[\]]+?)\s*(?:\[([^\]]*)\])?$/.exec(text);
  if (m === null) return fail(`'${text}' is not a traffic selector`);
  const range = addressRange(m[1]!);
  if (!range.ok) return range;
  let protocol = 0;
  let startPort = 0;
  let endPort = 65535;
  if (m[2] !== undefined) {
    const [protoText, portText] = m[2].split('/', 2) as [string, string | undefined];
    const p = protoText.trim().toLowerCase();
    if (p in PROTOCOLS) protocol = PROTOCOLS[p]!;
    else if (/^\d{1,3}$/.test(p) && Number(p) <= 255) protocol = Number(p);
    else return fail(`unknown protocol '${protoText}' in '${text}' (names: ${Object.keys(PROTOCOLS).join(' ')}, or 0..255)`);
    if (portText !== undefined && portText.trim() !== '' && portText.trim() !== '%any') {
      if (protocol === 0) return fail(`'${text}' has a port but no protocol`);
      const pm = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(portText.trim());
      if (pm === null) return fail(`'${portText}' in '${text}' is not a port or port range`);
      startPort = Number(pm[1]);
      endPort = pm[2] === undefined ? startPort : Number(pm[2]);
      if (startPort > 65535 || endPort > 65535 || startPort > endPort) return fail(`'${portText}' in '${text}' is not a port range within 0..65535`);
    }
  }
  return ok({ start: bytesToIp(range.value.start), end: bytesToIp(range.value.end), protocol, startPort, endPort });
}

export function pool(text: string): ParseResult<PoolConfig> {
  const r = addressRange(text);
  if (!r.ok) return r;
  const { start, end } = r.value;
  const prefix = rangePrefixLength(start, end);
  const out: PoolConfig = { start: bytesToIp(start), end: bytesToIp(end), family: start.length === 4 ? 4 : 6 };
  if (prefix !== undefined) out.cidr = `${bytesToIp(start)}/${prefix}`;
  return ok(out);
}

export function vip(text: string): ParseResult<string> {
  if (text === 'request' || text === '%any') return ok('0.0.0.0');
  if (text === '%any6') return ok('::');
  const ip = ipLiteral(text);
  return ip.ok ? ip : fail(`'${text}' is neither "request" nor an IP address`);
}

export function proposals(kind: 'IKE' | 'ESP', field: string): (v: unknown) => ProposalSpec[] | Problem {
  const defaults = kind === 'IKE' ? DEFAULT_IKE_PROPOSALS : DEFAULT_ESP_PROPOSALS;
  const parse = kind === 'IKE' ? parseIkeProposal : parseInstallableEspProposal;
  const expected = `${kind} proposals such as ${kind === 'IKE' ? 'aes256gcm16-prfsha256-x25519' : 'aes256gcm16'} (strongSwan keywords), or default`;
  const list = listOf<ProposalSpec[]>(expected, (text) =>
    text === 'default' ? ok(defaults.map((d) => unwrap(parse(d)))) : mapResult(parse(text), (p) => [p]),
  // Nothing to offer means no SA can be negotiated.
  `at least one ${kind} proposal (omit ${field}, or write default, for the defaults)`);
  return (v) => {
    if (v === undefined) return defaults.map((s) => unwrap(parse(s)));
    const r = list(v);
    if (r instanceof Problem) return r;
    return r.flat();
  };
}

function mapResult<A, B>(r: ParseResult<A>, f: (a: A) => B): ParseResult<B> {
  return r.ok ? ok(f(r.value)) : r;
}

function unwrap<T>(r: ParseResult<T>): T {
  if (!r.ok) throw new Error(`built-in default does not parse: ${r.error}`);
  return r.value;
}

const ID_EXPECTED = 'an identity: IP address, FQDN (@host or host), user@host, @#hex key ID or a DN (C=.., O=.., CN=..)';

export function identityOrAny(allowAny: boolean): (v: unknown) => Identity | 'any' | undefined | Problem {
  return (v) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string') return new Problem(got(v), allowAny ? `${ID_EXPECTED}, or %any` : ID_EXPECTED);
    if (v.trim() === '%any' || v.trim() === '%any6') {
      return allowAny ? 'any' : new Problem("'%any' names no one", `${ID_EXPECTED} (omit local.id to use the IKE SA's address)`);
    }
    const r = parseIdentity(v);
    if (!r.ok) return new Problem(r.error, allowAny ? `${ID_EXPECTED}, or %any` : ID_EXPECTED);
    if (!allowAny && isIdentityPattern(r.value)) return new Problem(`'${v}' is a pattern, not an identity of our own`, ID_EXPECTED);
    return r.value;
  };
}
