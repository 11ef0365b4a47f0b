// Structured logging for every ikeclone module (pino).
//
// Secrets never reach logs (architecture §4.5): key material travels in fields whose
// names are listed in REDACTED_KEYS, and every logged object is copied through
// redactDeep before pino serialises it, so that those fields are replaced at any
// depth even if a caller passes a whole SA or configuration object by mistake.
// Byte arrays are shown by length only, whatever their field is called. The only
// path for keys out of the process is the explicit Wireshark key log
// (control/ike/keylog.ts), off by default.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Field names that may hold key material anywhere in a logged object. */
export const REDACTED_KEYS = [
  'key', 'keys', 'psk', 'secret', 'sharedSecret', 'privateKey', 'skeyseed',
  'skD', 'skAi', 'skAr', 'skEi', 'skEr', 'skPi', 'skPr', 'keymat', 'encKey', 'integKey',
  // Child SA keys (control/ike/ike-sa.ts, crypto/keys.ts) and the data plane's SA spec.
  'encIn', 'encOut', 'integIn', 'integOut', 'encrI', 'encrR', 'integI', 'integR', 'keyIn', 'keyOut', 'keyMaterial',
];

const REDACTED = new Set<string>(REDACTED_KEYS);
const CENSOR = '[redacted]';
/** Nesting below this is cut off: a bound on work per line, and whatever is cut is not printed. */
const MAX_DEPTH = 16;
/** Values visited per logged object; the rest is cut off the same way. */
const MAX_NODES = 10_000;

/**
 * A copy of `value` that is safe to log: fields named in REDACTED_KEYS are
 * censored at any depth, bytes (Buffer, any typed array, ArrayBuffer) become
 * "[bytes n]", cycles become "[circular]", and anything past MAX_DEPTH or
 * MAX_NODES becomes a marker instead of being printed. The input is not changed.
 */
export function redactDeep(value: unknown): unknown {
  const budget = { nodes: MAX_NODES };
  return walk(value, 0, [], budget);
}

function walk(value: unknown, depth: number, ancestors: object[], budget: { nodes: number }): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return value;
  if (typeof value === 'function') return undefined; // JSON leaves functions out too
  // Bytes are key material more often than not; their length is what a log needs.
  if (ArrayBuffer.isView(value)) return `[bytes ${value.byteLength}]`;
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return `[bytes ${value.byteLength}]`;
  if (ancestors.includes(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (--budget.nodes < 0) return '[too large]';
  ancestors.push(value);
  try {
    return walkObject(value, depth, ancestors, budget);
  } finally {
    ancestors.pop();
  }
}

function walkObject(value: object, depth: number, ancestors: object[], budget: { nodes: number }): unknown {
  const field = (k: string, v: unknown): unknown => (REDACTED.has(k) && v !== undefined ? CENSOR : walk(v, depth + 1, ancestors, budget));
  if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1, ancestors, budget));
  if (value instanceof Error) {
    // pino's err serializer would copy enumerable fields without redaction, so errors are shaped here.
    const out: Record<string, unknown> = { type: value.constructor?.name ?? value.name, message: value.message, stack: value.stack };
    for (const k of Object.keys(value)) out[k] = field(k, readField(value, k));
    if (value.cause !== undefined) out.cause = walk(value.cause, depth + 1, ancestors, budget);
    if (value instanceof AggregateError) out.errors = walk(value.errors, depth + 1, ancestors, budget);
    return out;
  }
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) out[String(k)] = field(String(k), v);
    return out;
  }
  if (value instanceof Set) return [...value].map((v) => walk(v, depth + 1, ancestors, budget));
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    // Dates and the like; a class's own toJSON could return secrets, so its result is walked too.
    let json: unknown;
    try { json = toJSON.call(value); } catch { return '[unserialisable]'; }
    return json === value ? '[unserialisable]' : walk(json, depth, ancestors, budget);
  }
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value)) out[k] = field(k, readField(value, k));
  return out;
}

/** A field's value; a throwing getter must not take the log line (or the caller) down. */
function readField(o: object, k: string): unknown {
  try {
    return (o as Record<string, unknown>)[k];
  } catch {
    return '[unreadable]';
  }
}

function redactRecord(o: Record<string, unknown>): Record<string, unknown> {
  return redactDeep(o) as Record<string, unknown>;
}

export interface LogOptions {
  level?: string;
  /** Destination stream; defaults to stderr so stdout stays free for --json output. */
  destination?: NodeJS.WritableStream;
  name?: string;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    name: opts.name ?? 'ikeclone',
    level: opts.level ?? process.env.IKECLONE_LOG ?? 'info',
    base: undefined,
    // The object given to each log call goes through redactDeep (child bindings: see redactChildBindings).
    formatters: { log: redactRecord },
    // redactDeep has already shaped errors (pino's serializer would copy their fields unredacted).
    serializers: { err: (e: unknown) => e },
    hooks: {
      // Objects interpolated into the message (%o, %j) bypass the formatters.
      logMethod(args, method) {
        const [first, ...rest] = args as unknown[];
        method.apply(this, [first, ...rest.map((a) => (typeof a === 'object' && a !== null ? redactDeep(a) : a))] as Parameters<typeof method>);
      },
    },
  };
  const dest = opts.destination ?? pino.destination({ fd: 2, sync: true });
  return redactChildBindings(pino(options, dest as pino.DestinationStream));
}

/**
 * pino applies formatters.bindings to the root logger's bindings only, not to
 * those of child loggers (log.child({ sa })), so child() redacts them itself.
 * Children inherit the override from the root through their prototype chain.
 */
function redactChildBindings(logger: Logger): Logger {
  // pino's generic child() signature cannot be re-declared as is; the wrapper only passes arguments on.
  type ChildFn = (this: unknown, bindings: pino.Bindings, options?: unknown) => unknown;
  const child = logger.child as unknown as ChildFn;
  const redacting: ChildFn = function (bindings, options) {
    return child.call(this, redactRecord(bindings), options);
  };
  logger.child = redacting as unknown as Logger['child'];
  return logger;
}

/** A logger that discards everything (tests, embedded use without logging). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
