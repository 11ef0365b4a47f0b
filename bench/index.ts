// Benchmark entry point: `node dist/bench/index.js SUITE [--json] [--max-time SECONDS]`
// (`npm run bench -- esp --json`). Each suite prints a human table, or with
// --json one JSON document on stdout; progress goes to stderr.
import { parseSuiteOptions, type SuiteOptions } from './common.js';
import { runClusterBench } from './cluster.js';
import { runCpuProfileBench } from './cpu-profile.js';
import { runDemuxBench } from './demux.js';
import { runEspBench } from './esp.js';
import { runIkeBench } from './ike.js';
import { runIkeLoadBench } from './ike-load.js';
import { runLatencyProfileBench } from './latency-profile.js';
import { runRawEspInputBench } from './raw-esp-input.js';
import { runScaleBench } from './scale.js';
import { runSoakBench } from './soak.js';
import { runTunnelBench } from './tunnel.js';

const SUITES: Record<string, { describe: string; run: (opts: SuiteOptions) => Promise<unknown> }> = {
  esp: { describe: 'ESP encap/decap: wasm kernel vs node:crypto vs @noble/ciphers', run: runEspBench },
  ike: { describe: 'an additional IKE SA: full handshake vs RFC 7791 clone (PSK, ECDSA); family of 64', run: runIkeBench },
  'ike-load': { describe: 'IKE SAs per second, latency and CPU per SA of an ikeclone and a charon responder under strongSwan\'s load-tester (PSK, ECDSA; root)', run: runIkeLoadBench },
  scale: { describe: 'ESP encap in 1..N data-plane workers: one SA per worker (clones) vs one SA shared with Atomics', run: runScaleBench },
  demux: { describe: 'inbound ESP to the owner worker: one reader demultiplexing by SPI into rings vs a raw socket per worker (root)', run: runDemuxBench },
  'latency-profile': { describe: 'where an idle ping through the tunnel spends its time: captures on both gateways\' TUN devices and veth ends, ikeclone vs wireguard-go (root)', run: runLatencyProfileBench },
  'raw-esp-input': { describe: 'raw ESP (IP protocol 50) to the owner worker: one reader vs a filtered raw socket per worker vs PACKET_FANOUT, throughput and delay from idle (root)', run: runRawEspInputBench },
  soak: { describe: 'inner UDP (sequence-numbered) and TCP through a cloned ikeclone pair across Child SA and IKE SA rekeys and reauthentication, --minutes N (root)', run: runSoakBench },
  cluster: { describe: 'three cluster nodes in network namespaces on etcd: clone handoff latency, iperf3 through 1..3 nodes per gateway CPU-second, etcd writes (root)', run: runClusterBench },
  tunnel: { describe: 'iperf3 through an ikeclone pair (TUN, UDP and raw ESP) vs a strongSwan kernel-libipsec pair, in network namespaces (root)', run: runTunnelBench },
  'cpu-profile': { describe: 'where the CPU time of the tunnel benchmark\'s single-stream iperf3 goes: user and system seconds per GB of every process and ikeclone thread, softirq, idle; ikeclone vs strongSwan kernel-libipsec and wireguard-go (root)', run: runCpuProfileBench },
};

function usage(): string {
  const lines = Object.entries(SUITES).map(([name, s]) => `  ${name.padEnd(8)} ${s.describe}`);
  return ['usage: node dist/bench/index.js SUITE [--json] [--max-time SECONDS] [--minutes N] [--cpu-time] [--etcd-timing HEARTBEAT/ELECTION] [--etcd-data disk|tmpfs] [--only PART]', '', 'suites:', ...lines,
    '', 'example: npm run bench -- esp --json'].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    console.log(usage());
    return name === undefined ? 1 : 0;
  }
  const suite = SUITES[name];
  if (suite === undefined) {
    console.error(`unknown suite ${name}\n\n${usage()}`);
    return 1;
  }
  let opts: SuiteOptions;
  try {
    opts = parseSuiteOptions(rest);
  } catch (err) {
    // A bad option is a usage error: exit 2, as the ikeclone command does.
    console.error(`${(err as Error).message}\n\n${usage()}`);
    return 2;
  }
  await suite.run(opts);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  },
);
