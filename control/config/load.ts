// Loading a configuration: read the file, parse the YAML (anchors and merge
// keys allowed, duplicate keys refused), validate it against the schema and
// report every problem with its line (architecture §6). Objects from the
// library API take the same path without line numbers. Size, depth, tags and
// alias expansion are bounded before validation (control/config/yaml-limits.ts).
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, type Node as YamlNode } from 'yaml';
import { MAX_WORKERS, autoWorkers } from './defaults.js';
import { ConfigError, Problem, formatPath, toProblems, type PathSeg } from './errors.js';
import type { Ctx } from './fields.js';
import { connectionSchema, gatewaySchema, workersValue } from './schema.js';
import { NAME_EXPECTED, NAME_RE, type ConnectionConfig, type GatewayConfig } from './types.js';
import { MAX_ALIAS_EXPANSIONS, checkTags, checkTextSize, checkValues, parseBoundedDocument, readConfigText } from './yaml-limits.js';

/** 1-based line of the deepest node on `path` (the key's line when the path ends at a map key). */
function yamlLocator(contents: unknown, lineCounter: LineCounter): (path: PathSeg[]) => number | undefined {
  const lineOf = (offset: number | undefined): number | undefined => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  return (path) => {
    let node = contents as YamlNode | null | undefined;
    let line = lineOf((node as { range?: [number] } | null | undefined)?.range?.[0]);
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (pair === undefined) break;
        line = lineOf((pair.key as { range?: [number] } | null)?.range?.[0]) ?? line;
        node = pair.value as YamlNode | null;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as YamlNode | undefined;
        if (item === undefined) break;
        line = lineOf((item as { range?: [number] }).range?.[0]) ?? line;
        node = item;
      } else {
        break;
      }
    }
    return line;
  };
}

/**
 * Parse and validate configuration text. `fileName` is used in messages and,
 * when it is a path, to resolve relative key and PSK file paths (its directory;
 * the working directory otherwise). Throws ConfigError listing every problem.
 */
export function parseConfig(text: string, fileName = '<config>'): GatewayConfig {
  if (typeof text !== 'string') throw new TypeError('parseConfig: text must be a string');
  checkTextSize(text, fileName);
  const lineCounter = new LineCounter();
  const doc = parseBoundedDocument(text, fileName, lineCounter);
  if (doc.errors.length > 0) {
    throw new ConfigError(fileName, doc.errors.map((e) => ({
      path: '',
      problem: `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
      expected: 'valid YAML',
      // Errors at the very end (an unclosed bracket) belong to the last written line.
      line: lineCounter.linePos(Math.min(e.pos[0], Math.max(0, text.trimEnd().length - 1))).line,
    })));
  }
  // A file with nothing in it is a mistake (a truncated copy, the wrong path), not a gateway with no connections.
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    const blank = doc.contents === null || doc.contents.range === undefined || doc.contents.range[0] === doc.contents.range[1];
    throw new ConfigError(fileName, [{
      path: '',
      problem: blank ? 'the configuration is empty (nothing but whitespace or comments)' : 'the configuration is null',
      expected: 'a mapping with log, keylog, listen, limits, retransmit, dataplane, connections (write {} for every default)',
    }]);
  }
  checkTags(doc, fileName, (offset) => lineCounter.linePos(offset).line);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSIONS });
  } catch (e) {
    const message = (e as Error).message;
    const problem = /alias count/i.test(message)
      ? `aliases expand to too much (more than ${MAX_ALIAS_EXPANSIONS} expansions, as in a "billion laughs")`
      : `YAML: ${message}`;
    throw new ConfigError(fileName, [{ path: '', problem, expected: 'valid YAML' }]);
  }
  const locate = yamlLocator(doc.contents, lineCounter);
  checkValues(data, fileName, locate);
  const baseDir = fileName.startsWith('<') ? process.cwd() : dirname(resolve(fileName));
  return validateGateway(data, fileName, baseDir, locate);
}

/** Read, parse and validate a configuration file. Throws ConfigError. */
export function loadConfigFile(path: string): GatewayConfig {
  return loadConfigSource(path).config;
}

/**
 * loadConfigFile, with the text it read (bounded in size): a reload hashes
 * exactly what it parsed, read once, so the hash cannot name another version
 * of the file.
 */
export function loadConfigSource(path: string): { config: GatewayConfig; text: string } {
  if (typeof path !== 'string' || path === '') throw new TypeError('loadConfigFile: path must be a non-empty string');
  const text = readConfigText(path);
  const config = parseConfig(text, path);
  config.file = resolve(path);
  return { config, text };
}

export interface FromObjectOptions {
  /** Directory relative key/PSK paths are resolved against; default: the working directory. */
  baseDir?: string;
  /** Name used in error messages instead of "<object>". */
  file?: string;
}

/** Validate a whole configuration given as a plain object (same keys as the YAML). Throws ConfigError. */
export function configFromObject(obj: unknown, options: FromObjectOptions = {}): GatewayConfig {
  return validateGateway(obj, options.file ?? '<object>', options.baseDir ?? process.cwd(), () => undefined);
}

/**
 * The gateway schema for a context, built once: building it and zod's first
 * parse with a new schema cost milliseconds, most of a small file's load (and
 * of a fuzz run's time). It holds no state between parses (defaults that are
 * objects come from factories). Bounded: a process sees few directories.
 */
const gatewaySchemas = new Map<string, ReturnType<typeof gatewaySchema>>();
const GATEWAY_SCHEMAS_KEPT = 16;

function gatewaySchemaFor(ctx: Ctx): ReturnType<typeof gatewaySchema> {
  const key = `${ctx.workers}\0${ctx.baseDir}`;
  let schema = gatewaySchemas.get(key);
  if (!schema) {
    if (gatewaySchemas.size >= GATEWAY_SCHEMAS_KEPT) gatewaySchemas.clear();
    gatewaySchemas.set(key, (schema = gatewaySchema(ctx)));
  }
  return schema;
}

function validateGateway(data: unknown, file: string, baseDir: string, locate: (path: PathSeg[]) => number | undefined): GatewayConfig {
  // Workers first: per-worker cloning counts default to it.
  const dataplane = (data !== null && typeof data === 'object' ? (data as Record<string, unknown>).dataplane : undefined);
  const w = workersValue(dataplane !== null && typeof dataplane === 'object' ? ((dataplane as Record<string, unknown>).workers ?? undefined) : undefined);
  const ctx: Ctx = { baseDir, workers: w instanceof Problem ? autoWorkers() : w.workers };
  // Top-level "x-" keys carry YAML anchors only.
  let input = data === null || data === undefined ? {} : data;
  if (typeof input === 'object' && !Array.isArray(input) && !(input instanceof Uint8Array)) {
    input = Object.fromEntries(Object.entries(input).filter(([k]) => !k.startsWith('x-')));
  }
  const r = gatewaySchemaFor(ctx).safeParse(input);
  if (!r.success) throw new ConfigError(file, toProblems(r.error.issues, [], locate));
  return r.data;
}

export interface ConnectionFromObjectOptions extends FromObjectOptions {
  /** The connection's name (default "default"); error paths start with "connections.<name>". */
  name?: string;
  /** Worker count for clone per: worker (default: the available cores). */
  workers?: number;
}

/**
 * Validate one connection given as a plain object with the YAML's keys
 * (remote_addrs, ike, local, remote, psk, children, ...), as the library API
 * passes it. Same rules and errors as in a file. Throws ConfigError.
 */
export function connectionFromObject(obj: unknown, options: ConnectionFromObjectOptions = {}): ConnectionConfig {
  const name = options.name ?? 'default';
  const file = options.file ?? '<object>';
  const prefix: PathSeg[] = ['connections', name];
  if (!NAME_RE.test(name)) throw new ConfigError(file, [{ path: formatPath(prefix), problem: `invalid name '${name}'`, expected: NAME_EXPECTED }]);
  const workers = options.workers ?? autoWorkers();
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) throw new RangeError(`connectionFromObject: workers must be an integer from 1 to ${MAX_WORKERS}`);
  const r = connectionSchema({ baseDir: options.baseDir ?? process.cwd(), workers }).safeParse(obj);
  if (!r.success) throw new ConfigError(file, toProblems(r.error.issues, prefix, () => undefined));
  return { name, ...r.data };
}

/** The connection of that name, or undefined. */
export function findConnection(config: GatewayConfig, name: string): ConnectionConfig | undefined {
  return config.connections.find((c) => c.name === name);
}
