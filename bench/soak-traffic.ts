// The inner traffic of the soak (bench/soak.ts): small programs that run
// inside the soak's network namespaces (`ip netns exec NS node
// dist/bench/soak-traffic.js ROLE ...`), each printing one JSON line with its
// counts on stdout when it ends.
//
//   udp-send  a paced UDP stream: datagrams numbered 0, 1, 2, ... (a 32-bit
//             big-endian sequence number, then filler) at --rate per second
//             for --seconds, then END markers carrying the count sent;
//   udp-recv  its receiver: counts every number it has seen (a bitmap), so a
//             number seen twice is a duplicate, one never seen a gap (lost),
//             one below the highest seen so far reordered; it ends on an END
//             marker or after --idle seconds without a datagram;
//   tcp-send  a paced TCP stream of a known byte pattern (byte i = i mod 251)
//             for --seconds, then a clean close;
//   tcp-recv  its receiver: checks every byte against the pattern, and records
//             the longest pause between two reads (TCP hides loss by
//             retransmitting; a pause is what a lost packet costs it).
//
// Owner: the process it runs in (one role per process).
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';

/** What udp-recv reports. */
export interface UdpReceiverCounts {
  role: 'udp-recv';
  /** Datagrams the sender said it sent (from its END marker; null when no marker came). */
  sent: number | null;
  received: number;
  unique: number;
  duplicates: number;
  /** Numbers below the sender's count never received. */
  lost: number;
  reordered: number;
  malformed: number;
}

/** What tcp-recv reports. */
export interface TcpReceiverCounts {
  role: 'tcp-recv';
  bytes: number;
  /** Bytes that did not match the pattern at their offset (0 on an intact stream). */
  corrupt: number;
  /** The longest pause between two reads once data flowed, in ms. */
  maxGapMs: number;
  /** The sender closed the stream cleanly. */
  ended: boolean;
  error: string | null;
}

/** What the senders report. */
export interface SenderCounts {
  role: 'udp-send' | 'tcp-send';
  sent: number;
  error: string | null;
}

const END_MAGIC = 0x454e4421; // "END!"
const PATTERN_MODULUS = 251;

function flags(argv: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!;
    if (!k.startsWith('--') || argv[i + 1] === undefined) throw new Error(`soak-traffic: bad argument ${k}`);
    m.set(k.slice(2), argv[i + 1]!);
  }
  return m;
}

function need(f: Map<string, string>, name: string): string {
  const v = f.get(name);
  if (v === undefined) throw new Error(`soak-traffic: --${name} is required`);
  return v;
}

function num(f: Map<string, string>, name: string, dflt?: number): number {
  const raw = f.get(name);
  const v = raw === undefined ? dflt : Number(raw);
  if (v === undefined || !Number.isFinite(v) || v < 0) throw new Error(`soak-traffic: --${name} needs a non-negative number`);
  return v;
}

function report(counts: object): void {
  process.stdout.write(`${JSON.stringify(counts)}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Paced sends: `send(due)` is told how many units are due since the start, every millisecond or so. */
async function paced(rate: number, seconds: number, send: (due: number) => Promise<void>): Promise<void> {
  const start = performance.now();
  const endAt = start + seconds * 1000;
  for (;;) {
    const now = performance.now();
    if (now >= endAt) break;
    await send(Math.floor(((now - start) / 1000) * rate));
    await sleep(1);
  }
}

async function udpSend(f: Map<string, string>): Promise<void> {
  const [host, port] = need(f, 'to').split(':') as [string, string];
  const size = Math.max(8, num(f, 'size', 200));
  // Several sockets (source ports, so several flows over the SPD's hash), taking turns.
  const socks = Array.from({ length: Math.max(1, num(f, 'flows', 1)) }, () => createSocket('udp4'));
  for (const s of socks) await new Promise<void>((r) => s.bind({ address: need(f, 'bind'), port: 0 }, r));
  let sent = 0;
  const buf = Buffer.alloc(size);
  const sendOne = (b: Buffer) => new Promise<void>((resolve, reject) =>
    socks[sent % socks.length]!.send(b, Number(port), host, (e) => (e ? reject(e) : resolve())));
  let error: string | null = null;
  try {
    await paced(num(f, 'rate'), num(f, 'seconds'), async (due) => {
      while (sent < due) {
        buf.writeUInt32BE(sent, 0);
        await sendOne(buf);
        sent++;
      }
    });
  } catch (e) {
    error = (e as Error).message;
  }
  // The END marker, repeated: it may cross a rekey too.
  const end = Buffer.alloc(8);
  end.writeUInt32BE(END_MAGIC, 0);
  end.writeUInt32BE(sent, 4);
  for (let i = 0; i < 5; i++) {
    await sendOne(end).catch(() => undefined);
    await sleep(100);
  }
  for (const s of socks) s.close();
  report({ role: 'udp-send', sent, error } satisfies SenderCounts);
}

async function udpRecv(f: Map<string, string>): Promise<void> {
  const idleMs = num(f, 'idle', 30) * 1000;
  const sock = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  let seen = new Uint8Array(1 << 16);
  const c: UdpReceiverCounts = { role: 'udp-recv', sent: null, received: 0, unique: 0, duplicates: 0, lost: 0, reordered: 0, malformed: 0 };
  let highest = -1;
  let last = Date.now();
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  sock.on('message', (msg) => {
    last = Date.now();
    if (msg.length === 8 && msg.readUInt32BE(0) === END_MAGIC) {
      c.sent = msg.readUInt32BE(4);
      done();
      return;
    }
    if (msg.length < 8) {
      c.malformed++;
      return;
    }
    const seq = msg.readUInt32BE(0);
    c.received++;
    while (seq >> 3 >= seen.length) {
      const grown = new Uint8Array(seen.length * 2);
      grown.set(seen);
      seen = grown;
    }
    const bit = 1 << (seq & 7);
    if (seen[seq >> 3]! & bit) {
      c.duplicates++;
      return;
    }
    seen[seq >> 3]! |= bit;
    c.unique++;
    if (seq < highest) c.reordered++;
    else highest = seq;
  });
  await new Promise<void>((r) => sock.bind({ address: need(f, 'bind'), port: num(f, 'port') }, r));
  process.stderr.write('listening\n');
  const idle = setInterval(() => {
    if (Date.now() - last > idleMs) done();
  }, 250);
  process.once('SIGTERM', () => done());
  await finished;
  clearInterval(idle);
  sock.close();
  const upTo = c.sent ?? highest + 1;
  let have = 0;
  for (let s = 0; s < upTo; s++) if (seen[s >> 3]! & (1 << (s & 7))) have++;
  c.lost = upTo - have;
  report(c);
}

async function tcpSend(f: Map<string, string>): Promise<void> {
  const [host, port] = need(f, 'to').split(':') as [string, string];
  const rate = num(f, 'rate');
  const CHUNK = 1024;
  let sent = 0;
  let error: string | null = null;
  const sock = connect({ host, port: Number(port), localAddress: need(f, 'bind') });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  }).catch((e: Error) => (error = e.message));
  sock.on('error', (e) => (error ??= e.message));
  if (error === null) {
    await paced(rate, num(f, 'seconds'), async (due) => {
      while (sent + CHUNK <= due && error === null) {
        // A buffer of its own per write: the socket may hold it queued after write() returns.
        const chunk = Buffer.allocUnsafe(CHUNK);
        for (let i = 0; i < CHUNK; i++) chunk[i] = (sent + i) % PATTERN_MODULUS;
        sent += CHUNK;
        if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
      }
    });
    await new Promise<void>((r) => sock.end(r));
  }
  report({ role: 'tcp-send', sent, error } satisfies SenderCounts);
}

async function tcpRecv(f: Map<string, string>): Promise<void> {
  const c: TcpReceiverCounts = { role: 'tcp-recv', bytes: 0, corrupt: 0, maxGapMs: 0, ended: false, error: null };
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const server = createServer((sock) => {
    server.close();
    let last = 0;
    sock.on('data', (data: Buffer) => {
      const now = performance.now();
      if (last > 0) c.maxGapMs = Math.max(c.maxGapMs, Math.round(now - last));
      last = now;
      for (let i = 0; i < data.length; i++) if (data[i] !== (c.bytes + i) % PATTERN_MODULUS) c.corrupt++;
      c.bytes += data.length;
    });
    sock.on('end', () => {
      c.ended = true;
      done();
    });
    sock.on('error', (e) => {
      c.error = e.message;
      done();
    });
  });
  await new Promise<void>((r) => server.listen(num(f, 'port'), need(f, 'bind'), r));
  process.stderr.write('listening\n');
  process.once('SIGTERM', () => done());
  await finished;
  report(c);
}

const ROLES: Record<string, (f: Map<string, string>) => Promise<void>> = {
  'udp-send': udpSend, 'udp-recv': udpRecv, 'tcp-send': tcpSend, 'tcp-recv': tcpRecv,
};

const [role, ...rest] = process.argv.slice(2);
const run = role === undefined ? undefined : ROLES[role];
if (run === undefined) {
  process.stderr.write(`usage: soak-traffic.js ${Object.keys(ROLES).join('|')} --flag value ...\n`);
  process.exitCode = 2;
} else {
  run(flags(rest)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
