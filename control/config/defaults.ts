// Defaults and bounds of the configuration, in one place. Where a default
// describes the same thing as the IKE engine's (limits, retransmission), it is
// the engine's own constant.
import { availableParallelism } from 'node:os';
import { DEFAULT_LIMITS as ENGINE_LIMITS, DEFAULT_RETRANSMIT as ENGINE_RETRANSMIT } from '../ike/defaults.js';
import type { GatewayConfig, LimitsConfig, RetransmitConfig } from './types.js';

/** The engine's per-peer and half-open limits (the engine's total maxIkeSas is not configurable). */
export const DEFAULT_LIMITS: Readonly<LimitsConfig> = {
  halfOpenCookieThreshold: ENGINE_LIMITS.halfOpenCookieThreshold,
  halfOpenMax: ENGINE_LIMITS.halfOpenMax,
  halfOpenPerSource: ENGINE_LIMITS.halfOpenPerSource,
  childSasPerPeer: ENGINE_LIMITS.childSasPerPeer,
  ikeSasPerPeer: ENGINE_LIMITS.ikeSasPerPeer,
};
/** RFC 7296 §2.1 retransmission, as the engine does it without a configuration. */
export const DEFAULT_RETRANSMIT: Readonly<RetransmitConfig> = { ...ENGINE_RETRANSMIT };
/** IKE ports (RFC 7296 §2) and the NAT-T port (RFC 3948). */
export const DEFAULT_IKE_PORT = 500;
export const DEFAULT_NAT_PORT = 4500;
/** IKE SA rekeying interval (strongSwan's default rekey_time). */
export const DEFAULT_IKE_REKEY = 4 * 3_600_000;
/** Child SA rekeying interval (strongSwan's default rekey_time for children). */
export const DEFAULT_CHILD_REKEY = 3_600_000;
export const DEFAULT_REPLAY_WINDOW = 1024;
/** The TUN device's MTU when none is configured. */
export const DEFAULT_TUN_MTU = 1400;
/** The data plane's anti-replay window range (wasm/layout.ts MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW). */
export const MIN_REPLAY_WINDOW = 64;
export const MAX_REPLAY_WINDOW = 4096;
export const MIN_PSK_OCTETS = 16;
export const MAX_WORKERS = 1024;
export const MAX_CLONES = 1024;

/** The configuration of a gateway with no connections: every default. */
export function defaultGatewayConfig(): GatewayConfig {
  return {
    log: { level: 'info' },
    listen: { addresses: ['0.0.0.0'], port: DEFAULT_IKE_PORT, natPort: DEFAULT_NAT_PORT },
    limits: { ...DEFAULT_LIMITS },
    retransmit: { ...DEFAULT_RETRANSMIT },
    dataplane: { workers: autoWorkers(), workersAuto: true },
    connections: [],
  };
}

/** Data-plane workers for `workers: auto`: one per available core, within 1..MAX_WORKERS. */
export function autoWorkers(): number {
  return Math.max(1, Math.min(MAX_WORKERS, availableParallelism()));
}
