// Bounds on a configuration file before and while it becomes a value
// (architecture §4.6, §6): its size, checked with fstat before anything is
// read; its nesting depth, measured on the YAML library's CST (built with an
// explicit stack) before the composer, which recurses per level, sees it; the
// tags it may use (JSON's kinds of value, and !!binary where bytes are meant);
// and alias expansion, which the YAML library bounds (maxAliasCount) and
// which is reported here as the configuration error it is.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { Composer, LineCounter, Parser, YAMLParseError, isAlias, isMap, isPair, isScalar, isSeq, type CST, type Document, type Node as YamlNode } from 'yaml';
import { ConfigError, formatPath, type ConfigProblem, type PathSeg } from './errors.js';

/** Largest configuration accepted, in octets (the text's UTF-8 length for parseConfig). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
/** Deepest nesting of mappings and lists accepted; a real configuration uses 6. */
export const MAX_CONFIG_DEPTH = 64;
/** Alias expansions accepted while building the value (the YAML library's maxAliasCount). */
export const MAX_ALIAS_EXPANSIONS = 1000;

const MIB = 1024 * 1024;
const SIZE_EXPECTED = `a configuration file of at most ${MAX_CONFIG_BYTES / MIB} MiB`;

/**
 * Read a configuration file as UTF-8, refusing one over MAX_CONFIG_BYTES
 * before reading it: a regular file by its fstat size, anything else (a pipe,
 * a device) after MAX_CONFIG_BYTES + 1 octets at most.
 */
export function readConfigText(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new ConfigError(path, [unreadable(e)]);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new ConfigError(path, [{ path: '', problem: 'cannot read the file (EISDIR)', expected: 'a readable YAML file' }]);
    if (st.isFile() && st.size > MAX_CONFIG_BYTES) throw tooLarge(path, `${st.size} octets`);
    const chunks: Buffer[] = [];
    let total = 0;
    const chunk = Buffer.allocUnsafe(st.isFile() ? Math.max(1, Math.min(st.size + 1, MAX_CONFIG_BYTES + 1)) : 64 * 1024);
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > MAX_CONFIG_BYTES) throw tooLarge(path, 'more than that');
      chunks.push(Buffer.from(chunk.subarray(0, n)));
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(path, [unreadable(e)]);
  } finally {
    closeSync(fd);
  }
}

function unreadable(e: unknown): ConfigProblem {
  return { path: '', problem: `cannot read the file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, expected: 'a readable YAML file' };
}

function tooLarge(file: string, size: string): ConfigError {
  return new ConfigError(file, [{ path: '', problem: `the file is too large (${size}; the limit is ${MAX_CONFIG_BYTES} octets)`, expected: SIZE_EXPECTED }]);
}

/** The same size bound on configuration text given directly (parseConfig). */
export function checkTextSize(text: string, file: string): void {
  // UTF-8 needs at most three octets per UTF-16 unit: count only when it could matter.
  if (text.length * 3 > MAX_CONFIG_BYTES && Buffer.byteLength(text, 'utf8') > MAX_CONFIG_BYTES) {
    throw tooLarge(file, `${Buffer.byteLength(text, 'utf8')} octets`);
  }
}

/**
 * Parse one YAML document as the library's parseDocument does, but measure
 * the nesting of the CST first and refuse it past MAX_CONFIG_DEPTH with the
 * path that went too deep, so that no input reaches the recursive composer
 * deep enough to exhaust the stack.
 */
export function parseBoundedDocument(text: string, file: string, lineCounter: LineCounter): Document.Parsed {
  // The YAML library's time grows fast with nesting (thousands of brackets take tenths of a
  // second, more when they are syntax errors, each reported): when a scan of the text sees the
  // nesting pass the limit, the text up to there is parsed alone, which gives the same deepest
  // path. When that CST does not nest so deep (the brackets follow a syntax error, and YAML
  // would report each of them), the text is refused for its brackets, at their line.
  const cut = nestingPassesLimit(text);
  if (cut !== undefined) {
    const prefixLines = new LineCounter();
    failIfTooDeep(parseCst(text.slice(0, cut), file, prefixLines), file, prefixLines);
    throw new ConfigError(file, [{
      path: '',
      problem: `more than ${MAX_CONFIG_DEPTH} levels of nested brackets or compact lists`,
      expected: `at most ${MAX_CONFIG_DEPTH} levels of nested mappings and lists`,
      line: prefixLines.linePos(cut - 1).line,
    }]);
  }
  const tokens = parseCst(text, file, lineCounter);
  failIfTooDeep(tokens, file, lineCounter);
  const composer = new Composer({ merge: true, uniqueKeys: true, prettyErrors: false });
  let doc: Document.Parsed | undefined;
  for (const d of composer.compose(tokens, true, text.length)) {
    if (doc === undefined) { doc = d; continue; }
    // As parseDocument says it.
    doc.errors.push(new YAMLParseError([d.range[0], d.range[1]], 'MULTIPLE_DOCS', 'Source contains multiple documents; please use YAML.parseAllDocuments()'));
    break;
  }
  return doc!; // compose(…, forceDoc = true) always yields one
}

function parseCst(text: string, file: string, lineCounter: LineCounter): CST.Token[] {
  try {
    return Array.from(new Parser(lineCounter.addNewLine).parse(text));
  } catch (e) {
    // The CST parser recurses while it closes some runs of block collections: deep enough, the stack ends first.
    if (!(e instanceof RangeError)) throw e;
    throw new ConfigError(file, [{ path: '', problem: 'nested too deeply to parse', expected: `at most ${MAX_CONFIG_DEPTH} levels of nested mappings and lists` }]);
  }
}

function failIfTooDeep(tokens: readonly CST.Token[], file: string, lineCounter: LineCounter): void {
  const deep = tooDeep(tokens);
  if (deep === undefined) return;
  throw new ConfigError(file, [{
    path: formatPath(deep.path),
    problem: `nested more than ${MAX_CONFIG_DEPTH} levels deep`,
    expected: `at most ${MAX_CONFIG_DEPTH} levels of nested mappings and lists`,
    line: lineCounter.linePos(deep.offset).line,
  }]);
}

/**
 * Where nesting first passes MAX_CONFIG_DEPTH, from the text alone: the
 * offset just past the point where open flow collections ([ and { that start
 * a node: at a line's start or after an indicator, not inside a plain scalar
 * such as CN=a[b; outside quoted scalars, comments and block scalars) or
 * compact block sequences on one line ("- - - x") exceed it; undefined when
 * neither does.
 */
/** Characters a quoted scalar may follow: white space, a line break, or a flow or mapping indicator. */
const QUOTE_MAY_FOLLOW = ' \t\n\r[{,:-?';

export function nestingPassesLimit(text: string): number | undefined {
  const limit = MAX_CONFIG_DEPTH + 1;
  let flow = 0;
  let dashes = 0;
  let lineStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      lineStart = true;
      dashes = 0;
      i = skipBlockScalar(text, i);
      continue;
    }
    if (c === 0x2d /* - */ && (lineStart || dashes > 0 || startsNode(text, i)) && (text.charCodeAt(i + 1) === 0x20 || text.charCodeAt(i + 1) === 0x09)) {
      if (++dashes > limit) return Math.min(text.length, i + 2);
      i++;
      continue;
    }
    if (c !== 0x20 && c !== 0x09) {
      lineStart = false;
      dashes = 0;
    }
    if ((c === 0x5b || c === 0x7b) && (flow > 0 || startsNode(text, i))) {
      if (++flow > limit) return Math.min(text.length, i + 1);
    } else if (c === 0x5d || c === 0x7d) {
      if (flow > 0) flow--;
    } else if ((c === 0x22 || c === 0x27) && (i === 0 || QUOTE_MAY_FOLLOW.includes(text[i - 1]!))) {
      // A quoted scalar (one starts a node, not the middle of a plain scalar): skip to its end
      // (a doubled '' or a backslash escape stays inside).
      for (i++; i < text.length; i++) {
        const q = text.charCodeAt(i);
        if (c === 0x22 && q === 0x5c) i++;
        else if (q === c) {
          if (c === 0x27 && text.charCodeAt(i + 1) === 0x27) i++;
          else break;
        }
      }
    } else if (c === 0x23 && (i === 0 || text.charCodeAt(i - 1) === 0x20 || text.charCodeAt(i - 1) === 0x09 || text.charCodeAt(i - 1) === 0x0a)) {
      // A comment: to the end of the line.
      while (i + 1 < text.length && text.charCodeAt(i + 1) !== 0x0a) i++;
    }
  }
  return undefined;
}

/** Only white space since the line's start, or an indicator (: - ? ,) before `i` (inside a flow collection every bracket counts). */
function startsNode(text: string, i: number): boolean {
  for (let j = i - 1; j >= 0; j--) {
    const p = text[j]!;
    if (p === ' ' || p === '\t') continue;
    return p === '\n' || p === ':' || p === '-' || p === '?' || p === ',';
  }
  return true;
}

/**
 * `nl` ends a line; when that line ends in a block scalar indicator (| or >,
 * with its chomping and indentation indicators), the offset of the last line
 * break of the scalar's content (the lines more indented than it, or blank),
 * else `nl`.
 */
function skipBlockScalar(text: string, nl: number): number {
  let e = nl - 1;
  if (text[e] === '\r') e--;
  while (e >= 0 && (text[e] === '+' || text[e] === '-' || (text[e]! >= '0' && text[e]! <= '9'))) e--;
  if (e < 0 || (text[e] !== '|' && text[e] !== '>') || (e > 0 && text[e - 1] !== ' ' && text[e - 1] !== '\t' && text[e - 1] !== '\n')) return nl;
  let start = text.lastIndexOf('\n', e) + 1;
  let indent = 0;
  while (text[start + indent] === ' ') indent++;
  let at = nl;
  for (;;) {
    const next = text.indexOf('\n', at + 1);
    const line = text.slice(at + 1, next === -1 ? text.length : next);
    const spaces = line.length - line.trimStart().length;
    if (line.trim() !== '' && spaces <= indent) return at;
    if (next === -1) return text.length;
    at = next;
  }
}

/** A path as links to the parent's, so that walks do not copy it per node; built into an array only to report it. */
interface PathLink { up: PathLink | undefined; seg: PathSeg }

function pathOf(link: PathLink | undefined): PathSeg[] {
  const out: PathSeg[] = [];
  for (let l = link; l !== undefined; l = l.up) out.push(l.seg);
  return out.reverse();
}

interface Deep { path: PathSeg[]; offset: number }

/** The first collection nested deeper than MAX_CONFIG_DEPTH, walking with an explicit stack. */
function tooDeep(tokens: readonly CST.Token[]): Deep | undefined {
  const stack: Array<{ token: CST.Token; depth: number; path: PathLink | undefined }> = [];
  for (const t of tokens) if (t.type === 'document' && t.value !== undefined) stack.push({ token: t.value, depth: 0, path: undefined });
  while (stack.length > 0) {
    const { token, depth, path } = stack.pop()!;
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
    if (depth + 1 > MAX_CONFIG_DEPTH) return { path: pathOf(path), offset: token.offset };
    const isMapping = token.type === 'block-map' || (token.type === 'flow-collection' && token.start.source === '{');
    // Pushed in reverse so that the first deep path in document order is found first.
    for (let i = token.items.length - 1; i >= 0; i--) {
      const item = token.items[i]!;
      const link: PathLink = { up: path, seg: isMapping ? keyText(item.key) : i };
      if (item.value) stack.push({ token: item.value, depth: depth + 1, path: link });
      if (item.key) stack.push({ token: item.key, depth: depth + 1, path: link });
    }
  }
  return undefined;
}

function keyText(key: CST.Token | null | undefined): string {
  if (key === null || key === undefined) return '';
  if (key.type === 'scalar' || key.type === 'single-quoted-scalar' || key.type === 'double-quoted-scalar') {
    const s = key.source.replace(/^["']|["']$/g, '');
    return s.length > 40 ? `${s.slice(0, 37)}...` : s;
  }
  return '?';
}

const CORE = 'tag:yaml.org,2002:';
/** Tags whose values are JSON's kinds (plus the merge key and `!`, a plain string). */
const JSON_TAGS = new Set(['str', 'int', 'float', 'bool', 'null', 'map', 'seq', 'merge'].map((t) => CORE + t).concat('!'));
const BINARY_TAG = `${CORE}binary`;

/**
 * Every node's explicit tag is one of JSON's kinds or !!binary (which
 * checkValues then allows only where bytes are meant); anything else
 * (!!set, !!omap, !!pairs, !!timestamp, application tags) is a problem at
 * its path. The document is at most MAX_CONFIG_DEPTH deep here.
 */
export function checkTags(doc: Document.Parsed, file: string, lineOf: (offset: number) => number): void {
  const problems: ConfigProblem[] = [];
  const stack: Array<{ node: unknown; path: PathLink | undefined }> = [{ node: doc.contents, path: undefined }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (!isScalar(node) && !isMap(node) && !isSeq(node)) continue; // aliases are checked where their anchor is
    const tag = (node as YamlNode).tag;
    if (tag !== undefined && !JSON_TAGS.has(tag) && tag !== BINARY_TAG) {
      const p: ConfigProblem = { path: formatPath(pathOf(path)), problem: `the tag ${shortTag(tag)} is not allowed`, expected: 'a string, number, boolean, null, mapping or list (no YAML tags beyond those, and !!binary for a psk)' };
      const offset = (node as YamlNode).range?.[0];
      if (offset !== undefined) p.line = lineOf(offset);
      problems.push(p);
    }
    if (isMap(node)) {
      for (let i = node.items.length - 1; i >= 0; i--) {
        const pair = node.items[i];
        if (!isPair(pair)) continue;
        if (isMap(pair.key) || isSeq(pair.key) || isAlias(pair.key)) {
          // JSON has text keys only; the YAML library would turn this one into text (and warn on stderr).
          const p: ConfigProblem = { path: formatPath(pathOf(path)), problem: 'a mapping key is a mapping, a list or an alias', expected: 'keys that are plain text' };
          const offset = pair.key.range?.[0];
          if (offset !== undefined) p.line = lineOf(offset);
          problems.push(p);
          continue;
        }
        const link: PathLink = { up: path, seg: isScalar(pair.key) ? String(pair.key.value) : '?' };
        stack.push({ node: pair.value, path: link }, { node: pair.key, path: link });
      }
    } else if (isSeq(node)) {
      for (let i = node.items.length - 1; i >= 0; i--) stack.push({ node: node.items[i], path: { up: path, seg: i } });
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
}

function shortTag(tag: string): string {
  return tag.startsWith(CORE) ? `!!${tag.slice(CORE.length)}` : tag;
}

/** Paths where bytes (!!binary) are a value the schema means: a connection's psk. */
function bytesAllowed(path: readonly PathSeg[]): boolean {
  return path.length === 3 && path[0] === 'connections' && path[2] === 'psk';
}

/**
 * The value built from the document holds only JSON's kinds, and bytes only
 * where bytes are meant: a psk. This sees values as aliases and merge keys
 * placed them, and values a `%YAML 1.1` document typed without a tag (dates,
 * sets). Objects reached twice (through aliases) are looked at once.
 */
export function checkValues(data: unknown, file: string, locate: (path: PathSeg[]) => number | undefined): void {
  const problems: ConfigProblem[] = [];
  const seen = new Set<object>();
  const stack: Array<{ value: unknown; path: PathLink | undefined; depth: number }> = [{ value: data, path: undefined, depth: 0 }];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (seen.has(value)) continue;
    seen.add(value);
    let what: string | undefined;
    if (value instanceof Uint8Array) {
      if (!bytesAllowed(pathOf(path))) what = 'binary data (!!binary) is allowed only as a psk';
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: { up: path, seg: i }, depth: depth + 1 });
    } else if (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null) {
      const entries = Object.entries(value);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, v] = entries[i]!;
        // Top-level "x-" keys carry anchors only (the loader drops them): their values are checked where aliases put them.
        if (depth === 0 && key.startsWith('x-')) continue;
        stack.push({ value: v, path: { up: path, seg: key }, depth: depth + 1 });
      }
    } else {
      what = `got a ${value instanceof Date ? 'timestamp' : value instanceof Set ? 'set' : value instanceof Map ? 'ordered mapping' : 'value of a type YAML tags made'}`;
    }
    if (what !== undefined) {
      const full = pathOf(path);
      const p: ConfigProblem = { path: formatPath(full), problem: what, expected: 'a string, number, boolean, null, mapping or list' };
      const line = locate(full);
      if (line !== undefined) p.line = line;
      problems.push(p);
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
}
