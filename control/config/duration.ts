// Durations in configuration values, strongSwan style: "500ms", "30s", "10m",
// "4h", "1d", or a plain number of seconds (30, "30", 1.5). Results are whole
// milliseconds, the unit every timer in ikeclone uses.
//
// Pure functions, no I/O.
import { fail, ok } from '../crypto/result.js';
import type { ParseResult } from './proposal.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;

/** What a duration may look like, for error messages. */
export const DURATION_EXPECTED = 'a duration such as 500ms, 30s, 10m, 4h, 1d or a number of seconds';

/**
 * Parse a duration without throwing: a string with an optional unit (ms, s, m,
 * h, d; no unit = seconds) or a non-negative number of seconds. Fractions are
 * allowed as long as the result is a whole number of milliseconds ("1.5s").
 */
export function tryParseDuration(input: unknown): ParseResult<number> {
  let value: number;
  let factor: number;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) return fail(`${input} is not a finite number of seconds`);
    if (input < 0) return fail(`negative duration ${input}`);
    value = input;
    factor = 1000;
  } else if (typeof input === 'string') {
    const text = input.trim();
    if (text.startsWith('-')) return fail(`negative duration '${input}'`);
    const m = DURATION_RE.exec(text);
    if (m === null) return fail(`'${input}' is not a duration`);
    value = Number(m[1]);
    factor = UNIT_MS[m[2] ?? 's']!;
  } else {
    return fail(`a duration must be a string or a number, got ${input === null ? 'null' : typeof input}`);
  }
  const ms = value * factor;
  const rounded = Math.round(ms);
  if (Math.abs(ms - rounded) > 1e-6) return fail(`${String(input)} is not a whole number of milliseconds`);
  if (!Number.isSafeInteger(rounded)) return fail(`${String(input)} is too long a duration`);
  return ok(rounded);
}

/**
 * Parse a duration to milliseconds: "500ms" -> 500, "30s" -> 30000,
 * "10m" -> 600000, "4h" -> 14400000, "1d" -> 86400000, 30 (seconds) -> 30000.
 * Throws a RangeError saying what is wrong for anything else.
 */
export function parseDuration(input: string | number): number {
  const r = tryParseDuration(input);
  if (!r.ok) throw new RangeError(`${r.error}; expected ${DURATION_EXPECTED}`);
  return r.value;
}

/**
 * Milliseconds as the shortest exact duration string in the largest unit that
 * divides them: 86400000 -> "1d", 5400000 -> "90m", 1500 -> "1500ms", 0 -> "0s".
 * The result parses back to the same value with parseDuration.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError(`formatDuration: expected a non-negative whole number of milliseconds, got ${ms}`);
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const f = UNIT_MS[unit]!;
    if (ms % f === 0) return `${ms / f}${unit}`;
  }
  return `${ms}ms`;
}
