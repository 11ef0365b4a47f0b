// The engine's counters (EngineStats, context.ts): what `status` shows under
// `ike` and the metrics read. Owner: the main thread, like the engine.
import { exchangeName } from '../wire/constants.js';
import type { EngineStats } from './context.js';

/** Every counter at zero. */
export function newEngineStats(): EngineStats {
  return { received: 0, sent: 0, retransmits: 0, responsesFromCache: 0, drops: {}, refusals: {}, exchanges: {}, rekeys: { child: 0, ike: 0 }, halfOpenEvictions: {}, redirects: {}, fragments: { sent: 0, received: 0, reassembled: 0, fallbacks: 0 } };
}

/** Counts a completed exchange by type name, our role and its result (`TYPE.role.ok|failed`, bounded by the exchange types). */
export function countExchange(stats: EngineStats, exchangeType: number, role: 'initiator' | 'responder', ok: boolean): void {
  const key = `${exchangeName(exchangeType)}.${role}.${ok ? 'ok' : 'failed'}`;
  stats.exchanges[key] = (stats.exchanges[key] ?? 0) + 1;
}
