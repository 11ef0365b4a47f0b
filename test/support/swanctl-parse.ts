/**
 * Parsers for strongSwan output the harness reads: `swanctl --list-sas
 * --pretty` (the VICI message tree, one item per line) and, when a charon
 * runs with key logging (`ike 4`, `chd 4`), the key dumps in its log.
 *
 * Pure functions over text, no I/O, so they can be checked against fixtures.
 */

/** A VICI message section: key/value pairs, lists and subsections, in order. */
export interface ViciSection {
  readonly values: Map<string, string>;
  readonly lists: Map<string, string[]>;
  readonly sections: Map<string, ViciSection>;
}

function newSection(): ViciSection {
  return { values: new Map(), lists: new Map(), sections: new Map() };
}

/**
 * Parses the `--pretty` dump of one or more VICI messages. Returns the
 * top-level messages in order (e.g. `list-sa event`, `list-sas reply`), each
 * with its name. Lines that fit no form are ignored; unbalanced braces end
 * the current message.
 */
export function parseViciPretty(text: string): Array<{ name: string; body: ViciSection }> {
  const out: Array<{ name: string; body: ViciSection }> = [];
  const stack: ViciSection[] = [];
  let list: string[] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.length === 0) continue;
    if (list) {
      if (line === ']') list = undefined;
      else list.push(line);
      continue;
    }
    const top = stack[stack.length - 1];
    let m: RegExpExecArray | null;
    if (line === '}') {
      stack.pop();
    } else if ((m = /^([^\s=]+) = \[$/.exec(line)) && top) {
      list = [];
      top.lists.set(m[1]!, list);
    } else if ((m = /^([^\s=]+) = (.*)$/.exec(line)) && top) {
      top.values.set(m[1]!, m[2]!);
    } else if ((m = /^(.+) \{$/.exec(line))) {
      const s = newSection();
      if (top) top.sections.set(m[1]!, s);
      else out.push({ name: m[1]!, body: s });
      stack.push(s);
    } else if ((m = /^(.+) \{\}$/.exec(line))) {
      const s = newSection();
      if (top) top.sections.set(m[1]!, s);
      else out.push({ name: m[1]!, body: s });
    }
  }
  return out;
}

/** A Child SA as charon reports it. SPIs are lower-case hex without 0x. */
export interface ParsedChildSa {
  /** Configured child name (e.g. `net`). */
  readonly name: string;
  readonly uniqueId: number;
  readonly reqid: number;
  readonly state: string;
  readonly mode: string;
  readonly protocol: string;
  /** UDP encapsulation (RFC 3948). */
  readonly encap: boolean;
  readonly spiIn: string;
  readonly spiOut: string;
  /** `ALG-keybits` as charon prints it, e.g. `AES_GCM_16-128`. */
  readonly encr: string;
  readonly integ: string | null;
  readonly dhGroup: string | null;
  readonly localTs: string[];
  readonly remoteTs: string[];
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly packetsIn: number;
  readonly packetsOut: number;
}

/** An IKE SA as charon reports it. SPIs are 16 lower-case hex digits. */
export interface ParsedSa {
  /** Connection name. */
  readonly name: string;
  readonly uniqueId: number;
  readonly version: number;
  readonly state: string;
  /** True on the side that initiated this IKE SA. */
  readonly initiator: boolean;
  readonly spiI: string;
  readonly spiR: string;
  /** `ALG-keybits`, e.g. `AES_GCM_16-256`. */
  readonly encr: string;
  readonly integ: string | null;
  readonly prf: string;
  readonly dhGroup: string;
  readonly localHost: string;
  readonly localPort: number;
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly localId: string;
  readonly remoteId: string;
  readonly natAny: boolean;
  readonly children: ParsedChildSa[];
  /** Every key/value charon sent for this IKE SA, for fields not mapped above. */
  readonly raw: ReadonlyMap<string, string>;
}

function num(v: string | undefined): number {
  const n = v === undefined ? NaN : Number(v);
  return Number.isFinite(n) ? n : 0;
}

function alg(s: ViciSection): string {
  const a = s.values.get('encr-alg') ?? '';
  const k = s.values.get('encr-keysize');
  return k ? `${a}-${k}` : a;
}

/** Maps the `--pretty` output of `swanctl --list-sas` to IKE SAs with their Child SAs. */
export function parseListSas(text: string): ParsedSa[] {
  const sas: ParsedSa[] = [];
  for (const msg of parseViciPretty(text)) {
    if (msg.name !== 'list-sa event') continue;
    for (const [name, s] of msg.body.sections) {
      const children: ParsedChildSa[] = [];
      for (const c of s.sections.get('child-sas')?.sections.values() ?? []) {
        children.push({
          name: c.values.get('name') ?? '',
          uniqueId: num(c.values.get('uniqueid')),
          reqid: num(c.values.get('reqid')),
          state: c.values.get('state') ?? '',
          mode: c.values.get('mode') ?? '',
          protocol: c.values.get('protocol') ?? '',
          encap: c.values.get('encap') === 'yes',
          spiIn: (c.values.get('spi-in') ?? '').toLowerCase(),
          spiOut: (c.values.get('spi-out') ?? '').toLowerCase(),
          encr: alg(c),
          integ: c.values.get('integ-alg') ?? null,
          dhGroup: c.values.get('dh-group') ?? null,
          localTs: c.lists.get('local-ts') ?? [],
          remoteTs: c.lists.get('remote-ts') ?? [],
          bytesIn: num(c.values.get('bytes-in')),
          bytesOut: num(c.values.get('bytes-out')),
          packetsIn: num(c.values.get('packets-in')),
          packetsOut: num(c.values.get('packets-out')),
        });
      }
      sas.push({
        name,
        uniqueId: num(s.values.get('uniqueid')),
        version: num(s.values.get('version')),
        state: s.values.get('state') ?? '',
        initiator: s.values.get('initiator') === 'yes',
        spiI: (s.values.get('initiator-spi') ?? '').toLowerCase(),
        spiR: (s.values.get('responder-spi') ?? '').toLowerCase(),
        encr: alg(s),
        integ: s.values.get('integ-alg') ?? null,
        prf: s.values.get('prf-alg') ?? '',
        dhGroup: s.values.get('dh-group') ?? '',
        localHost: s.values.get('local-host') ?? '',
        localPort: num(s.values.get('local-port')),
        remoteHost: s.values.get('remote-host') ?? '',
        remotePort: num(s.values.get('remote-port')),
        localId: s.values.get('local-id') ?? '',
        remoteId: s.values.get('remote-id') ?? '',
        natAny: s.values.get('nat-any') === 'yes',
        children,
        raw: s.values,
      });
    }
  }
  return sas;
}

/** IKE keys of one IKE SA, from a charon log at `ike 4`. Hex upper-case as logged. */
export interface CharonIkeKeys {
  /** charon's unique id of the IKE SA (the `|N` in `<conn|N>`). */
  readonly uniqueId: number;
  readonly conn: string;
  readonly keys: Partial<Record<'skD' | 'skAi' | 'skAr' | 'skEi' | 'skEr' | 'skPi' | 'skPr', string>>;
}

/** Keys and SPIs of one Child SA, from a charon log at `chd 4`. */
export interface CharonChildKeys {
  readonly uniqueId: number;
  readonly conn: string;
  readonly encrI: string | null;
  readonly encrR: string | null;
  readonly integI: string | null;
  readonly integR: string | null;
  /** SPIs (lower-case hex, no 0x) as installed: inbound is the one this charon chose. */
  readonly inbound: { spi: string; src: string; dst: string } | null;
  readonly outbound: { spi: string; src: string; dst: string } | null;
}

const IKE_KEY_NAMES: Record<string, keyof CharonIkeKeys['keys']> = {
  Sk_d: 'skD',
  Sk_ai: 'skAi',
  Sk_ar: 'skAr',
  Sk_ei: 'skEi',
  Sk_er: 'skEr',
  Sk_pi: 'skPi',
  Sk_pr: 'skPr',
};

const CHILD_KEY_NAMES: Record<string, 'encrI' | 'encrR' | 'integI' | 'integR'> = {
  'encryption initiator key': 'encrI',
  'encryption responder key': 'encrR',
  'integrity initiator key': 'integI',
  'integrity responder key': 'integR',
};

/**
 * Extracts IKE and Child SA keys from a charon log written with `ike 4` and
 * `chd 4` (and `ike_name = yes`). Only for test peers: these levels log
 * every secret. Incomplete dumps are skipped.
 */
export function parseCharonKeyLog(log: string): { ike: CharonIkeKeys[]; children: CharonChildKeys[] } {
  const ike = new Map<number, { conn: string; keys: CharonIkeKeys['keys'] }>();
  type ChildRecord = {
    -readonly [K in keyof CharonChildKeys]: CharonChildKeys[K];
  } & { pendingDir: 'inbound' | 'outbound' | null };
  const children: ChildRecord[] = [];
  const newChild = (uniqueId: number, conn: string): ChildRecord => {
    const c: ChildRecord = { uniqueId, conn, encrI: null, encrR: null, integI: null, integR: null, inbound: null, outbound: null, pendingDir: null };
    children.push(c);
    return c;
  };
  /** internal: per IKE SA id, the dump being collected. */
  const dumps = new Map<number, { target: (hex: string) => void; want: number; hex: string }>();
  const lineRe = /\[(IKE|CHD)\] <([^|>]+)\|(\d+)> (.*)$/;
  /** The Child SA record being filled for this IKE SA (one without an outbound SA yet). */
  const openChild = (id: number, conn: string): ChildRecord =>
    children.findLast((x) => x.uniqueId === id && x.outbound === null) ?? newChild(id, conn);
  for (const line of log.split('\n')) {
    const m = lineRe.exec(line);
    if (!m) continue;
    const conn = m[2]!;
    const id = Number(m[3]);
    const rest = m[4]!;
    const dump = dumps.get(id);
    const dm = /^\s*(\d+): (.{1,48})/.exec(rest);
    if (dump && dm) {
      dump.hex += (dm[2]!.match(/[0-9A-F]{2}/g) ?? []).join('');
      if (dump.hex.length >= dump.want * 2) {
        dump.target(dump.hex.slice(0, dump.want * 2));
        dumps.delete(id);
      }
      continue;
    }
    dumps.delete(id);
    const km = /^(Sk_[a-z]+) secret => (\d+) bytes/.exec(rest);
    if (km && IKE_KEY_NAMES[km[1]!]) {
      const field = IKE_KEY_NAMES[km[1]!]!;
      if (km[1] === 'Sk_d' || !ike.has(id)) ike.set(id, { conn, keys: {} });
      const rec = ike.get(id)!;
      dumps.set(id, { want: Number(km[2]), hex: '', target: (hex) => (rec.keys[field] = hex) });
      continue;
    }
    const cm = /^((?:encryption|integrity) (?:initiator|responder) key) => (\d+) bytes/.exec(rest);
    if (cm && CHILD_KEY_NAMES[cm[1]!]) {
      const field = CHILD_KEY_NAMES[cm[1]!]!;
      let c = openChild(id, conn);
      // the same key again before the SAs were installed: a new derivation, a new record
      if (c[field] !== null) c = newChild(id, conn);
      const rec = c;
      dumps.set(id, { want: Number(cm[2]), hex: '', target: (hex) => (rec[field] = hex) });
      continue;
    }
    const am = /^adding (inbound|outbound) ESP SA/.exec(rest);
    if (am) {
      openChild(id, conn).pendingDir = am[1] as 'inbound' | 'outbound';
      continue;
    }
    const sm = /^\s*SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)/.exec(rest);
    if (sm) {
      const c = children.findLast((x) => x.uniqueId === id && x.pendingDir !== null);
      if (c) {
        c[c.pendingDir!] = { spi: sm[1]!, src: sm[2]!, dst: sm[3]! };
        c.pendingDir = null;
      }
    }
  }
  return {
    ike: [...ike].map(([uniqueId, v]) => ({ uniqueId, conn: v.conn, keys: v.keys })),
    children: children
      .filter((c) => c.encrI !== null || c.inbound !== null)
      .map(({ pendingDir: _p, ...c }) => c),
  };
}
