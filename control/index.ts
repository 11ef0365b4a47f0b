// ikeclone as a library (`import { Gateway } from 'ikeclone'`, architecture §6): the
// gateway with its typed events, the configuration loaders, the status
// snapshot, the control socket, and for appliances that build their own
// policies the IKE engine with its policy types. The demos (demo/) are not
// part of the library.
//
//   import { Gateway, configFromObject } from 'ikeclone';
//   const gw = new Gateway({ config: configFromObject({ connections: { ... } }) });
//   gw.on('child-up', (child) => install(child.keys));   // copy keys synchronously
//   await gw.start();

// Gateway (composition root)
export { Gateway } from './gateway.js';
export type { ChildTraffic, GatewayEvents, GatewayOptions } from './gateway.js';
export type { ConfigInfo, ReloadResult } from './reload.js';
export { GatewayMetrics, serveMetrics } from './api/metrics.js';
export type { MetricsServer } from './api/metrics.js';

// Configuration
export {
  ConfigError, configFromObject, connectionFromObject, defaultGatewayConfig, findConnection, loadConfigFile, parseConfig,
} from './config/index.js';
export type {
  AuthMethod, ChildConfig, CloneConfig, ConfigProblem, ConnectionConfig, ConnectionFromObjectOptions, DataplaneConfig,
  EndpointConfig, FromObjectOptions, GatewayConfig, LimitsConfig, ListenConfig, LogLevel, MetricsConfig, PoolConfig, RetransmitConfig,
  StartAction, TrafficSelectorConfig,
} from './config/index.js';
export { DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, formatProposal, parseEspProposal, parseIkeProposal } from './config/proposal.js';
export type { ParseResult, ProposalSpec, TransformSpec } from './config/proposal.js';
export { formatIdentity, identityFromAddress, parseIdentity } from './ike/identity.js';
export type { Identity } from './ike/identity.js';
export { formatDuration, parseDuration } from './config/duration.js';

// Status snapshot (field names stable, documented in README)
export { childStatus, ikeSaStatus, snapshot } from './status.js';
export type { ChildSaStatus, GatewayStatus, IkeSaStatus } from './status.js';

// Logging
export { createLogger, silentLogger, REDACTED_KEYS } from './log.js';
export type { LogOptions, Logger } from './log.js';

// IKE engine and policies, for embedding without the YAML configuration
export { IkeEngine, DEFAULT_LIMITS, DEFAULT_RETRANSMIT } from './ike/engine.js';
export type { DropReason, EngineEvents, EngineLimits, EngineStats, IkeEngineOptions, RetransmitPolicy } from './ike/engine.js';
export type { ChildPolicy, ConnectionPolicy, LocalAuth, RemoteAuth } from './ike/policy.js';
export type { TsConfig } from './ike/traffic-selectors.js';
export { ChildSa, IkeSa, spi64Hex, spiHex } from './ike/ike-sa.js';
export type { ChildKeyMaterial, ChildSaState, IkeRole, IkeSaState } from './ike/ike-sa.js';
export type { Datagram, Endpoint, SendFn } from './ike/transport.js';
export type { Clock, TimerHandle } from './ike/clock.js';
export { systemClock } from './ike/clock.js';
export type { RandomSource } from './crypto/random.js';
export { loadSigningKey, loadVerifyKey } from './crypto/auth.js';
export type { SignatureKeyKind, SigningKey, VerifyKey } from './crypto/auth.js';
export { UdpTransport } from './net/udp-transport.js';
export type { UdpTransportOptions, UdpTransportStats } from './net/udp-transport.js';

// Control socket
export { ControlServer, upConnection } from './api/control-server.js';
export type { ControlServerOptions, UpOutcome } from './api/control-server.js';
export { ControlClient, ControlRequestError, ControlSocketError, controlRequest } from './api/control-client.js';
export type { ControlClientOptions, ControlSocketErrorCode } from './api/control-client.js';
export { CONTROL_COMMANDS, MAX_REQUEST_LINE, defaultSocketPath, parseRequest } from './api/protocol.js';
export type {
  ControlCommand, ControlError, ControlErrorCode, ControlRequest, ControlResponse, DownResult, RequestId, UpResult,
} from './api/protocol.js';

// Version and human-readable formatting
export { ikecloneVersion } from './version.js';
export { formatIkeSa, formatStatus } from './cli/format.js';
