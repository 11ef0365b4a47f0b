// The IKEv2 wire codec (RFC 7296 §3) in one import: registries, header,
// payload types, message/chain codec, typed errors and address helpers.
export * from './constants.js';
export * from './result.js';
export * from './header.js';
export * from './payloads.js';
export * from './message.js';
export * from './ip.js';
