// The machine's own cost of one hop between two processes: a UDP round trip
// between two plain Node processes (an echo and a pinger, no IKE, no ESP),
// measured where and while the cluster benchmark measures its handoffs.
//
// Why: a handoff is a chain of such hops (the etcd transaction and its watch
// event through the etcd members, the new node's address list, the client's
// update, the CREATE_CHILD_SA both ways, the install on the worker), each
// ending with a process that has to be woken and get a core. On a machine
// where that alone takes a millisecond, a handoff cannot take a few; the
// report puts the figure next to the handoffs' so the two can be read
// together on any machine.
//
// The pinger sends one 64-byte datagram, waits for its echo (or PING_WAIT_MS),
// sleeps `intervalMs` and sends the next, at most `count` times: the
// processes sleep between pings, as the gateways do between a handoff's
// messages. It prints one JSON line, {"rttMs":[...],"lost":n}, on stdout when
// it has sent them all or on SIGTERM, whichever comes first.
import { waitFor, type TrackedProcess } from '../test/support/proc.js';

/** How long a ping waits for its echo before it counts as lost. */
export const PING_WAIT_MS = 1000;

/** argv: address port seconds (the echo exits after that long). */
export const UDP_ECHO_SCRIPT = `
const dgram = require('node:dgram');
const [address, port, seconds] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(port, address, () => process.stdout.write('ready\\n'));
setTimeout(() => process.exit(0), seconds * 1000);
`;

/** argv: address port count intervalMs waitMs. */
export const UDP_PING_SCRIPT = `
const dgram = require('node:dgram');
const [address, port, count, interval, wait] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])];
const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
const rttMs = [];
let lost = 0, sent = 0, t0 = 0n, timer;
const report = () => { process.stdout.write(JSON.stringify({ rttMs, lost }) + '\\n'); process.exit(0); };
process.on('SIGTERM', report);
const next = () => {
  if (sent === count) return report();
  sent++;
  t0 = process.hrtime.bigint();
  s.send(Buffer.alloc(64, sent & 0xff), port, address);
  timer = setTimeout(() => { lost++; t0 = 0n; setTimeout(next, interval); }, wait);
};
s.on('message', () => {
  if (t0 === 0n) return;
  rttMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  t0 = 0n;
  clearTimeout(timer);
  setTimeout(next, interval);
});
s.bind(0, () => next());
`;

export interface UdpRoundTrips {
  rttMs: number[];
  lost: number;
}

/** The pinger's report (its last line of stdout); an error names what is wrong with it. */
export function parsePingReport(stdout: string): UdpRoundTrips {
  const line = stdout.trim().split('\n').pop() ?? '';
  let j: unknown;
  try {
    j = JSON.parse(line);
  } catch {
    throw new Error(`the UDP pinger printed no report: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const r = (j ?? {}) as Partial<UdpRoundTrips>;
  if (!Array.isArray(r.rttMs) || !r.rttMs.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0) || typeof r.lost !== 'number') {
    throw new Error(`the UDP pinger's report is not {rttMs: number[], lost: number}: ${line.slice(0, 200)}`);
  }
  return { rttMs: r.rttMs, lost: r.lost };
}

export interface RoundTripRun {
  /** Start a Node process running `script` with `args` where the echo (or the pinger) is to run. */
  echo: (script: string, args: string[]) => TrackedProcess;
  pinger: (script: string, args: string[]) => TrackedProcess;
  /** The echo's address as the pinger reaches it. */
  address: string;
  port: number;
  /** At most this many pings. */
  count: number;
  intervalMs: number;
}

export interface RoundTripsRunning {
  /** Settles when the pinger has ended by itself (all its pings sent) or was stopped. */
  readonly pingerEnded: Promise<unknown>;
  /** Stop the pinger (if it is still pinging) and the echo: the round trips so far. */
  stop(): Promise<UdpRoundTrips>;
}

/** Start an echo and a pinger to it; stop() ends both (the pinger ends by itself after `count` pings). */
export async function startUdpRoundTrips(run: RoundTripRun): Promise<RoundTripsRunning> {
  const bound = Math.ceil((run.count * (run.intervalMs + PING_WAIT_MS)) / 1000) + 10;
  const echo = run.echo(UDP_ECHO_SCRIPT, [run.address, String(run.port), String(bound)]);
  try {
    await waitForLine(echo, 'ready', 10_000);
  } catch (err) {
    await echo.stop({ graceMs: 500 });
    throw err;
  }
  const pinger = run.pinger(UDP_PING_SCRIPT, [run.address, String(run.port), String(run.count), String(run.intervalMs), String(PING_WAIT_MS)]);
  return {
    pingerEnded: pinger.exited,
    async stop() {
      try {
        const info = await pinger.stop({ signal: 'SIGTERM', graceMs: 2000 });
        if (info.code !== 0) throw new Error(`the UDP pinger exited with ${info.code ?? info.signal}: ${pinger.stderr().slice(-500)}`);
        return parsePingReport(pinger.stdout());
      } finally {
        await echo.stop({ graceMs: 500 });
      }
    },
  };
}

async function waitForLine(p: TrackedProcess, line: string, timeoutMs: number): Promise<void> {
  // An echo that exited ends the wait at once (waitFor retries a predicate that throws).
  await waitFor(() => p.exitInfo() !== undefined || p.stdout().split('\n').includes(line), { timeoutMs, intervalMs: 20, message: 'the UDP echo to start' });
  if (p.exitInfo()) throw new Error(`the UDP echo exited: ${p.stderr().slice(-500)}`);
}
