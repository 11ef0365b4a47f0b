// Structured logging for every ikeclone module (pino).
//
// Secrets never reach logs (DESIGN §4.5): key material travels in fields whose
// names are listed in REDACTED_KEYS, and pino's redaction replaces them even if
// a caller passes a whole SA object by mistake. The only path for keys out of the
// process is the explicit Wireshark key log (control/ike/keylog.ts), off by default.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Field names that may hold key material anywhere in a logged object. */
export const REDACTED_KEYS = [
  'key', 'keys', 'psk', 'secret', 'sharedSecret', 'privateKey', 'skeyseed',
  'skD', 'skAi', 'skAr', 'skEi', 'skEr', 'skPi', 'skPr', 'keymat', 'encKey', 'integKey',
  // Child SA keys (control/ike/child-sa.ts, crypto/keys.ts) and the data plane's SA spec.
  'encIn', 'encOut', 'integIn', 'integOut', 'encrI', 'encrR', 'integI', 'integR', 'keyIn', 'keyOut', 'keyMaterial',
];

function redactPaths(): string[] {
  const paths: string[] = [];
  for (const k of REDACTED_KEYS) paths.push(k, `*.${k}`, `*.*.${k}`);
  return paths;
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
    redact: { paths: redactPaths(), censor: '[redacted]' },
    base: undefined,
  };
  const dest = opts.destination ?? pino.destination({ fd: 2, sync: true });
  return pino(options, dest as pino.DestinationStream);
}

/** A logger that discards everything (tests, embedded use without logging). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
