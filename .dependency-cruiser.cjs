// The layering of architecture §2, checked by `npm run check:deps` (part of
// `npm test`). Dependencies point down only:
//   control/wire, control/crypto  <  control/ike  <  control/config, cluster, api, cli, gateway.ts
//   io/  <  dataplane/            (both below control/; wasm/ below everything)
// Paths are relative to the repository root. Type-only imports count: a layer
// that needs another layer's types depends on it all the same.

/** Runtime modules: what ships and runs, not tests, benchmarks or scripts. */
const RUNTIME = '^(control|dataplane|io|wasm|demo)/';
/** Node's socket and thread modules (with or without the node: prefix). */
const SOCKETS_AND_THREADS = '^(node:)?(dgram|net|worker_threads)$';
/**
 * The bottom of io/: address text <-> bytes, the endpoint type, the byte
 * readers and the layout of the SPIs we allocate. Pure values, no socket, no
 * thread; every layer (wire and crypto included) may use them.
 */
const IO_VALUES = '^io/(ip|endpoint|bytes|spi-layout)\\.ts$';
/** The native addon: its binding module and anything under native/. */
const NATIVE_ADDON = '(^native/|(^|/)native-io\\.ts$|\\.node$)';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'architecture §2: no import cycles between runtime modules.',
      from: { path: RUNTIME },
      to: { path: RUNTIME, circular: true },
    },
    {
      name: 'wire-crypto-import-nothing-above',
      severity: 'error',
      comment:
        'architecture §2: control/wire and control/crypto import nothing above them: ' +
        'no engine, configuration, API, CLI, gateway, I/O or data plane, no sockets, no threads.',
      from: { path: '^control/(wire|crypto)/' },
      to: {
        path: [
          '^control/(ike|config|api|cli|net)/',
          '^control/(gateway|index)\\.ts$',
          '^(io|dataplane|demo)/',
          SOCKETS_AND_THREADS,
        ],
        pathNot: IO_VALUES,
      },
    },
    {
      name: 'ike-no-sockets',
      severity: 'error',
      comment:
        'architecture §2: control/ike never touches a socket (bytes in, bytes out), ' +
        'so two engines can be wired together in memory.',
      from: { path: '^control/ike/' },
      to: { path: ['^io/', '^control/net/', '^(node:)?(dgram|net)$', NATIVE_ADDON], pathNot: IO_VALUES },
    },
    {
      name: 'exchanges-import-context-not-engine',
      severity: 'error',
      comment: 'architecture §2.1: exchanges import ike/context.ts, never the engine.',
      from: { path: '^control/ike/exchanges/' },
      to: { path: '^control/ike/engine\\.ts$' },
    },
    {
      name: 'dataplane-not-control',
      severity: 'error',
      comment: 'architecture §2: dataplane/ imports nothing from control/ (it receives ESP transform descriptors, not IKE transforms).',
      from: { path: '^dataplane/' },
      to: { path: '^control/' },
    },
    {
      name: 'io-below-both-planes',
      severity: 'error',
      comment: 'architecture §2: io/ is used by both planes and imports neither.',
      from: { path: '^io/' },
      to: { path: '^(control|dataplane)/' },
    },
    {
      name: 'wasm-self-contained',
      severity: 'error',
      comment: 'architecture §2: wasm/ (AssemblyScript) knows nothing of the JavaScript side.',
      from: { path: '^wasm/' },
      to: { pathNot: '^wasm/' },
    },
  ],
  options: {
    // Only the runtime modules and Node's built-ins are of interest; tests,
    // benchmarks, scripts and build output are not cruised.
    includeOnly: [RUNTIME, '^(node:)?[a-z_]+$'],
    exclude: { path: '(^|/)(node_modules|dist|build)/' },
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
