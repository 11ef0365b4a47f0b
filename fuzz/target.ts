// What a fuzz target is (fuzz/index.ts runs them): seeded, one mutant per
// call, and an outcome that is either expected (ok, a typed error, a counted
// drop) or a finding (a crash: an exception escaped; a state change that no
// authenticated message asked for).
import type { Rng } from './mutate.js';

export type Outcome =
  | { kind: 'ok' }
  /** A typed refusal: a WireError code, ConfigError, a control error code. */
  | { kind: 'error'; code: string }
  /** A counted drop, by reason. */
  | { kind: 'drop'; reason: string }
  /** An exception escaped, or an error that is not of the typed kind. */
  | { kind: 'crash'; detail: string }
  /** Unauthenticated input changed state. */
  | { kind: 'state-change'; detail: string };

export interface FuzzTarget {
  name: string;
  describe: string;
  /** One mutant, tried; `i` is its index in the run. */
  run(rng: Rng, i: number): Outcome;
}

/** `fn` run, its exception as a crash outcome. */
export function guarded(fn: () => Outcome): Outcome {
  try {
    return fn();
  } catch (e) {
    return { kind: 'crash', detail: e instanceof Error ? `${e.name}: ${e.message}`.slice(0, 300) : String(e).slice(0, 300) };
  }
}
