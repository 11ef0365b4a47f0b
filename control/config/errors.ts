// Configuration errors: every problem names the file, the line, the dotted
// path of the offending value and what was expected (architecture §6).
//
// Inside validation a problem is a Problem value; zod carries it as an issue
// message "problem \x1f expected \x1f allowed keys" (encode), and toProblems
// splits it again into ConfigProblems with line numbers.
import type * as z from 'zod';
import { editDistance } from './proposal.js';
import { NAME_EXPECTED } from './types.js';

/** One thing wrong with a configuration. */
export interface ConfigProblem {
  /** Dotted path of the value, e.g. "connections.site-a.children.net.esp[0]"; "" for the document. */
  path: string;
  /** What is wrong. */
  problem: string;
  expected: string;
  /** 1-based line in the file, when known. */
  line?: number;
}

/**
 * An invalid configuration. The message has one line per problem,
 * `${file}:${line}: ${path}: ${problem}; expected ${expected}`; the fields
 * describe the first problem, `problems` lists all of them.
 */
export class ConfigError extends Error {
  readonly file: string;
  readonly path: string;
  readonly expected: string;
  readonly line?: number;
  readonly problems: ConfigProblem[];

  constructor(file: string, problems: ConfigProblem[]) {
    const list = problems.length > 0 ? problems : [{ path: '', problem: 'invalid configuration', expected: 'a valid configuration' }];
    super(list.map((p) => formatProblem(file, p)).join('\n'));
    this.name = 'ConfigError';
    this.file = file;
    this.path = list[0]!.path;
    this.expected = list[0]!.expected;
    if (list[0]!.line !== undefined) this.line = list[0]!.line;
    this.problems = list;
  }
}

function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line === undefined ? file : `${file}:${p.line}`;
  return `${where}: ${p.path === '' ? '(top level)' : p.path}: ${p.problem}; expected ${p.expected}`;
}

// ---------------------------------------------------------------------------
// Problems inside validation

const SEP = '\u001f';
export type PathSeg = string | number;

/** What is wrong with one value, and the path to it below the value being parsed. */
export class Problem {
  constructor(readonly problem: string, readonly expected: string, readonly path: PathSeg[] = []) {}
}

/** A Problem as a zod issue message (split again by toProblems). */
export function encode(problem: string, expected: string, keys: readonly string[] = []): string {
  return `${problem}${SEP}${expected}${SEP}${keys.join(',')}`;
}

/** Short description of a received value for messages. */
export function got(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'got null';
  if (typeof v === 'string') return `got '${v.length > 60 ? `${v.slice(0, 57)}...` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return `got ${v}`;
  if (v instanceof Uint8Array) return 'got binary data';
  if (Array.isArray(v)) return 'got a list';
  return `got ${typeof v === 'object' ? 'a mapping' : typeof v}`;
}

/**
 * Like got(), but never shows the value: for fields that hold secrets (a PSK
 * mistyped as a number is still the PSK, or most of it).
 */
export function gotKind(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'got null';
  if (typeof v === 'string') return 'got a string';
  if (typeof v === 'number') return 'got a number';
  if (typeof v === 'boolean') return 'got a boolean';
  return got(v); // binary data, a list or a mapping: got() names only the kind
}

export interface IssueSink {
  issues: Array<{ code: 'custom'; message: string; input: unknown; path?: PathSeg[] }>;
}

export function report(ctx: IssueSink, p: Problem, input: unknown): void {
  ctx.issues.push({ code: 'custom', message: encode(p.problem, p.expected), input, path: p.path });
}

// ---------------------------------------------------------------------------
// Zod issues -> ConfigProblems

export function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? String(seg) : `.${String(seg)}`;
  }
  return s;
}

export function toProblems(issues: readonly z.core.$ZodIssue[], prefix: PathSeg[], locate: (path: PathSeg[]) => number | undefined): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const add = (path: PathSeg[], problem: string, expected: string): void => {
    const full = [...prefix, ...path];
    const p: ConfigProblem = { path: formatPath(full), problem, expected };
    const line = locate(full);
    if (line !== undefined) p.line = line;
    out.push(p);
  };
  for (const iss of issues) {
    const path = iss.path.filter((s): s is PathSeg => typeof s === 'string' || typeof s === 'number');
    if (iss.code === 'invalid_key') {
      const inner = iss.issues[0];
      const [problem, expected] = split(inner?.message ?? `invalid name '${String(path[path.length - 1])}'`);
      add(path, problem, expected || NAME_EXPECTED);
      continue;
    }
    const [problem, expected, keys] = split(iss.message);
    if (iss.code === 'unrecognized_keys') {
      const allowed = keys === '' ? [] : keys.split(',');
      for (const key of iss.keys) add([...path, key], `unknown key '${key}'${suggestKey(key, allowed)}`, expected);
      continue;
    }
    add(path, problem, expected || 'a valid value');
  }
  // File order reads best; problems without a line keep their order at the end.
  return out.map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.line ?? Infinity) - (b.p.line ?? Infinity) || a.i - b.i)
    .map(({ p }) => p);
}

function split(message: string): [string, string, string] {
  const parts = message.split(SEP);
  return [parts[0] ?? message, parts[1] ?? '', parts[2] ?? ''];
}

function suggestKey(key: string, allowed: string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of allowed) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  return best === undefined ? '' : ` (did you mean '${best}'?)`;
}
