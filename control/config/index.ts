// ikeclone's configuration (architecture §6): one YAML file in the shape of
// swanctl.conf, validated with precise errors, as a typed GatewayConfig; and
// the conversion of a connection into the IKE engine's ConnectionPolicy.
// The file format is documented in docs/configuration.md.
export { ConfigError } from './errors.js';
export type { ConfigProblem } from './errors.js';
export { defaultGatewayConfig } from './defaults.js';
export { configFromObject, connectionFromObject, findConnection, loadConfigFile, loadConfigSource, parseConfig } from './load.js';
export type { ConnectionFromObjectOptions, FromObjectOptions } from './load.js';
export { connectionPolicy } from './connection-policy.js';
export { LOG_LEVELS } from './types.js';
export type {
  AuthMethod, ChildConfig, CloneConfig, ConnectionConfig, DataplaneConfig, EndpointConfig, GatewayConfig, LimitsConfig, ListenConfig,
  LogLevel, MetricsConfig, PoolConfig, RedirectConfig, RetransmitConfig, StartAction, TrafficSelectorConfig,
} from './types.js';
