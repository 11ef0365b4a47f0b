// The control socket of a running gateway: a unix socket speaking the
// newline-delimited JSON of control/api/protocol.ts, so that `ikeclone status`,
// `up` and `down` can ask a gateway that runs in another process.
//
// Owner: the main thread (the same one as the Gateway it serves). Resources are
// bounded (architecture §4.6): connections (maxConnections), connections per
// client process (maxConnectionsPerClient, by SO_PEERCRED), requests in flight
// per connection (maxInFlight), request line length (MAX_REQUEST_LINE), the
// time one request line may take to arrive (lineTimeoutMs), idle time. A full
// table makes room for a new connection by closing the one that has waited
// longest without a request in flight, so clients that trickle half-written
// lines cannot lock `status` out. Whatever a client sends, the answer is an
// error response or a closed connection, never an exception in the gateway.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Gateway } from '../gateway.js';
import type { ChildSa, IkeSa } from '../ike/ike-sa.js';
import { peerProcess } from '../../io/unix-peer.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { ikeSaStatus } from '../status.js';
import {
  LineSplitter, MAX_REQUEST_LINE, checkPrivateDir, encodeLine, parseRequest,
  type CloneResult, type MoveResult, type RekeyResult, type ControlError, type ControlRequest, type ControlResponse, type DownResult, type UpResult,
} from './protocol.js';

export interface ControlServerOptions {
  gateway: Gateway;
  /** Path of the unix socket (see defaultSocketPath). */
  path: string;
  /**
   * The socket's directory must be private to this user (checkPrivateDir):
   * created mode 0700 if missing, else refused unless it is a directory we
   * own with mode 0700. For directories under /tmp (defaultSocketLocation).
   */
  privateDir?: boolean;
  log?: Logger;
  /** Simultaneous client connections (default 32). */
  maxConnections?: number;
  /** Simultaneous connections from one client process (default 4). */
  maxConnectionsPerClient?: number;
  /** A request line must be complete this many ms after its first byte (default 5 s). */
  lineTimeoutMs?: number;
  /** Requests in flight on one connection (default 8); more get a 'busy' error. */
  maxInFlight?: number;
  /** A connection with nothing in flight is closed after this many ms of silence (default 60 s). */
  idleTimeoutMs?: number;
  /** How long `up` waits for the connection's further Child SAs after IKE_AUTH (default 30 s). */
  childTimeoutMs?: number;
}

export interface UpOutcome {
  sa: IkeSa;
  /** Child SAs of the connection that could not be created (or gave no answer in time). */
  failedChildren: Array<{ name: string; reason: string }>;
}

/**
 * Initiate connection `name` on `gateway` and wait until each of its Child SAs
 * is either installed or has failed (the first comes with IKE_AUTH, the others
 * with CREATE_CHILD_SA, RFC 7296 §1.3.1). Rejects when the IKE SA fails.
 */
export async function upConnection(gateway: Gateway, name: string, opts: { childTimeoutMs?: number } = {}): Promise<UpOutcome> {
  if (typeof name !== 'string' || name === '') throw new TypeError('upConnection: name must be a non-empty string');
  const childTimeoutMs = opts.childTimeoutMs ?? 30_000;
  // Child events of the SA arrive before (first child) and after (the rest) up() resolves.
  const outcomes = new Map<IkeSa, Map<string, string | null>>();
  let check: () => void = () => {};
  const note = (sa: IkeSa, child: string, reason: string | null) => {
    let m = outcomes.get(sa);
    if (!m) outcomes.set(sa, (m = new Map()));
    if (!m.has(child)) m.set(child, reason);
    check();
  };
  const onChildUp = (c: ChildSa) => note(c.ike, c.name, null);
  const onChildFailed = (sa: IkeSa, child: string, reason: string) => note(sa, child, reason);
  let downReason: string | undefined;
  let upSa: IkeSa | undefined;
  const onIkeDown = (sa: IkeSa, reason: string) => {
    if (sa === upSa) {
      downReason = reason;
      check();
    }
  };
  gateway.on('child-up', onChildUp);
  gateway.on('child-failed', onChildFailed);
  gateway.on('ike-down', onIkeDown);
  try {
    const sa = await gateway.up(name);
    upSa = sa;
    const expected = sa.policy.children.map((c) => c.name);
    const settled = () => expected.every((n) => outcomes.get(sa)?.has(n));
    if (!settled() && sa.state !== 'dead') {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, childTimeoutMs);
        check = () => {
          if (settled() || downReason !== undefined) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
    }
    if (downReason !== undefined || sa.state === 'dead') throw new Error(`IKE SA deleted: ${downReason ?? 'gone'}`);
    const m = outcomes.get(sa) ?? new Map<string, string | null>();
    const failedChildren = expected
      .filter((n) => m.get(n) !== null)
      .map((n) => ({ name: n, reason: m.get(n) ?? `no answer within ${childTimeoutMs} ms` }));
    return { sa, failedChildren };
  } finally {
    gateway.off('child-up', onChildUp);
    gateway.off('child-failed', onChildFailed);
    gateway.off('ike-down', onIkeDown);
  }
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Make `dir` (its parent must exist) a directory private to this user: create
 * it mode 0700 if missing, then require (lstat) a real directory owned by us
 * with mode 0700. Throws with the reason otherwise.
 */
function ensurePrivateDir(dir: string): void {
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (uid < 0) return; // No uids to check (not POSIX).
  try {
    mkdirSync(dir, { mode: 0o700 });
    // mkdir's mode went through the umask; set exactly 0700.
    chmodSync(dir, 0o700);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
  const check = checkPrivateDir(dir, uid);
  if (!check.ok) throw new Error(check.problem);
}

/** Does something accept connections on this unix socket path? Bounded by `timeoutMs`. */
function socketIsLive(path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const done = (live: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(live);
    };
    // A listener that does not accept within the bound counts as live: never steal a path in use.
    const timer = setTimeout(() => done(true), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', (err) => done(errnoCode(err) !== 'ECONNREFUSED' && errnoCode(err) !== 'ENOENT'));
  });
}

interface ConnectionState {
  inFlight: number;
  closing: boolean;
  /** The client process (pid), or undefined when it cannot be told. */
  client: number | undefined;
  /** When the last request completed or the connection opened (ms, monotonic): the eviction order. */
  since: number;
  /** Closes the connection when a started line is not finished in time. */
  lineTimer: NodeJS.Timeout | undefined;
}

export class ControlServer {
  readonly path: string;
  private readonly gateway: Gateway;
  private readonly log: Logger;
  private readonly maxConnections: number;
  private readonly maxPerClient: number;
  private readonly lineTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly idleTimeoutMs: number;
  private readonly childTimeoutMs: number;
  private readonly privateDir: boolean;
  private server: Server | undefined;
  private readonly sockets = new Map<Socket, ConnectionState>();
  /** Connections refused or closed to make room, and partial lines timed out. */
  readonly stats = { evicted: 0, refused: 0, lineTimeouts: 0 };
  /** Inode of the socket file we created: close() removes only that one. */
  private ino: number | undefined;

  constructor(opts: ControlServerOptions) {
    if (!opts || typeof opts !== 'object') throw new TypeError('ControlServer: options required');
    if (typeof opts.path !== 'string' || opts.path === '') throw new TypeError('ControlServer: path must be a non-empty string');
    if (!opts.gateway) throw new TypeError('ControlServer: gateway required');
    const positive = (v: number | undefined, d: number, what: string) => {
      const n = v ?? d;
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`ControlServer: ${what} must be a positive integer`);
      return n;
    };
    this.path = opts.path;
    this.gateway = opts.gateway;
    this.log = opts.log ?? silentLogger();
    this.maxConnections = positive(opts.maxConnections, 32, 'maxConnections');
    this.maxPerClient = positive(opts.maxConnectionsPerClient, 4, 'maxConnectionsPerClient');
    this.lineTimeoutMs = positive(opts.lineTimeoutMs, 5_000, 'lineTimeoutMs');
    this.maxInFlight = positive(opts.maxInFlight, 8, 'maxInFlight');
    this.idleTimeoutMs = positive(opts.idleTimeoutMs, 60_000, 'idleTimeoutMs');
    this.childTimeoutMs = positive(opts.childTimeoutMs, 30_000, 'childTimeoutMs');
    this.privateDir = opts.privateDir ?? false;
  }

  /** Connections currently open. */
  get connections(): number {
    return this.sockets.size;
  }

  /**
   * Create the socket's directory (mode 0700) if missing, replace a stale
   * socket file (nothing listening), refuse when another gateway listens on
   * the path, then listen (socket mode 0600). With privateDir, also refuse a
   * directory that is not ours alone.
   */
  async listen(): Promise<void> {
    if (this.server) throw new Error('control socket already listening');
    const dir = dirname(this.path);
    if (this.privateDir) {
      ensurePrivateDir(dir);
    } else {
      const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (created !== undefined) chmodSync(dir, 0o700);
    }
    let existing: ReturnType<typeof lstatSync> | undefined;
    try {
      existing = lstatSync(this.path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    if (existing) {
      if (!existing.isSocket()) throw new Error(`${this.path} exists and is not a socket; not replacing it`);
      if (await socketIsLive(this.path, 1000)) throw new Error(`another gateway already listens on ${this.path}`);
      this.log.info({ socket: this.path }, 'replacing a stale control socket');
      unlinkSync(this.path);
    }
    // No server.maxConnections: Node would drop new connections unanswered; accept() makes room instead.
    const server = createServer({ allowHalfOpen: false }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket file is created (bind) inside listen(), synchronously, with
      // the process umask: create it 0600 from the start, so that no other
      // user can connect (and be queued, then served) before the chmod below.
      // Restored at once: the umask is process-wide.
      const umask = process.umask(0o177);
      try {
        server.listen(this.path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    server.on('error', (err) => this.log.warn({ socket: this.path, err: err.message }, 'control socket error'));
    // Belt and braces: the umask above already made it 0600.
    chmodSync(this.path, 0o600);
    this.ino = statSync(this.path).ino;
    this.server = server;
    this.log.info({ socket: this.path }, 'control socket listening');
  }

  /** Stop listening, drop every connection and remove the socket file. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const [s, state] of this.sockets) {
      clearTimeout(state.lineTimer);
      s.destroy();
    }
    this.sockets.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      if (this.ino !== undefined && statSync(this.path).ino === this.ino) unlinkSync(this.path);
    } catch {
      // Already gone.
    }
    this.ino = undefined;
  }

  /**
   * The connection to close to make room: among `candidates`, the one that
   * has gone longest without a request in flight; none when every one is
   * busy with a request.
   */
  private victim(candidates: Iterable<[Socket, ConnectionState]>): Socket | undefined {
    let best: [Socket, ConnectionState] | undefined;
    for (const entry of candidates) if (entry[1].inFlight === 0 && (!best || entry[1].since < best[1].since)) best = entry;
    return best?.[0];
  }

  /** Makes room for `state`'s connection: true when it may stay. */
  private admit(state: ConnectionState): boolean {
    const sameClient = [...this.sockets].filter(([, s]) => s.client !== undefined && s.client === state.client);
    for (const [pool, limit] of [[sameClient, this.maxPerClient], [[...this.sockets], this.maxConnections]] as const) {
      if (pool.length < limit) continue;
      const victim = this.victim(pool);
      if (!victim) return false;
      this.stats.evicted++;
      this.log.debug({ client: this.sockets.get(victim)?.client }, 'control socket full: closing the connection idle longest');
      this.drop(victim, { code: 'evicted', message: 'connection closed to make room for a new one' });
    }
    return true;
  }

  /** Closes a connection with a last error line. */
  private drop(socket: Socket, error: ControlError): void {
    const state = this.sockets.get(socket);
    if (state) {
      clearTimeout(state.lineTimer);
      state.closing = true;
    }
    this.sockets.delete(socket);
    socket.pause();
    socket.end(encodeLine({ id: null, ok: false, error }), () => socket.destroy());
    // A peer that does not read must not keep the socket open.
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  private accept(socket: Socket): void {
    const state: ConnectionState = { inFlight: 0, closing: false, client: peerProcess(socket)?.pid, since: performance.now(), lineTimer: undefined };
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'control connection error'));
    if (!this.admit(state)) {
      this.stats.refused++;
      socket.end(encodeLine({ id: null, ok: false, error: { code: 'busy', message: 'every control connection is busy with a request; try again' } }), () => socket.destroy());
      return;
    }
    this.sockets.set(socket, state);
    const splitter = new LineSplitter(MAX_REQUEST_LINE);
    socket.setTimeout(this.idleTimeoutMs);
    socket.on('timeout', () => {
      if (state.inFlight === 0) socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(state.lineTimer);
      if (this.sockets.get(socket) === state) this.sockets.delete(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      if (state.closing) return;
      const { lines, overflow } = splitter.push(chunk);
      for (const line of lines) this.handleLine(socket, state, line);
      if (overflow) {
        this.drop(socket, { code: 'line-too-long', message: `request line longer than ${MAX_REQUEST_LINE} bytes; closing` });
        return;
      }
      // A started line has lineTimeoutMs to finish, however slowly its bytes trickle in.
      if (splitter.buffered === 0) {
        clearTimeout(state.lineTimer);
        state.lineTimer = undefined;
      } else if (!state.lineTimer) {
        state.lineTimer = setTimeout(() => {
          this.stats.lineTimeouts++;
          this.drop(socket, { code: 'line-timeout', message: `request line not finished within ${this.lineTimeoutMs} ms; closing` });
        }, this.lineTimeoutMs);
      }
    });
  }

  private send(socket: Socket, response: ControlResponse): void {
    if (socket.destroyed || !socket.writable) return;
    socket.write(encodeLine(response));
  }

  private handleLine(socket: Socket, state: ConnectionState, line: string): void {
    if (line.trim() === '') return;
    const parsed = parseRequest(line);
    if (!parsed.ok) {
      this.send(socket, parsed.response);
      return;
    }
    const { request } = parsed;
    if (state.inFlight >= this.maxInFlight) {
      this.send(socket, { id: request.id, ok: false, error: { code: 'busy', message: `more than ${this.maxInFlight} requests in flight` } });
      return;
    }
    state.inFlight++;
    this.execute(request).then(
      (result) => this.send(socket, { id: request.id, ok: true, result }),
      (err: unknown) => {
        const error: ControlError = { code: 'failed', message: err instanceof Error ? err.message : String(err) };
        this.send(socket, { id: request.id, ok: false, error });
      },
    ).finally(() => {
      state.inFlight--;
      state.since = performance.now();
    });
  }

  private async execute(request: ControlRequest): Promise<unknown> {
    switch (request.cmd) {
      case 'status':
        return this.gateway.status();
      case 'reload':
        this.log.info('control: reload');
        return this.gateway.reload();
      case 'up': {
        const name = request.args!.name!;
        this.log.info({ conn: name }, 'control: up');
        const { sa, failedChildren } = await upConnection(this.gateway, name, { childTimeoutMs: this.childTimeoutMs });
        const result: UpResult = { ike: ikeSaStatus(sa, this.gateway.engine.clock.now()), failedChildren };
        return result;
      }
      case 'clone': {
        const { ike, count } = request.args!;
        this.log.info({ ike, count: count ?? 1 }, 'control: clone');
        const { family, members } = await this.gateway.clone(ike!, count ?? 1);
        const now = this.gateway.engine.clock.now();
        const result: CloneResult = {
          family: { sessionId: family.sessionId, target: family.target, state: family.state, ...(family.reason ? { reason: family.reason } : {}) },
          members: members.map((m) => ikeSaStatus(m, now)),
        };
        return result;
      }
      case 'move': {
        const { ike, local, remote, node } = request.args!;
        if (node !== undefined) {
          // A cluster node takes the clone over (architecture §8).
          this.log.info({ ike, node }, 'control: move to node');
          const { sa, epoch } = await this.gateway.moveToNode(ike!, node);
          const result: MoveResult = { ike: ikeSaStatus(sa, this.gateway.engine.clock.now()), handedOff: { node, epoch } };
          return result;
        }
        this.log.info({ ike, local, remote }, 'control: move');
        const sa = await this.gateway.move(ike!, local!, remote);
        const result: MoveResult = { ike: ikeSaStatus(sa, this.gateway.engine.clock.now()) };
        return result;
      }
      case 'rekey': {
        // RFC 7296 §1.3.2 (IKE SA) / §1.3.3 (Child SA), on demand.
        const { ike, child } = request.args!;
        const engine = this.gateway.engine;
        this.log.info({ ike, child }, 'control: rekey');
        let sa: IkeSa;
        if (child !== undefined) {
          const c = [...engine.childrenBySpi.values()].find((x) => x.id === child);
          if (!c) throw new Error(`no Child SA with id ${child}`);
          sa = (await engine.rekeyChildSa(c)).ike;
        } else {
          const old = engine.ikeSas().find((x) => x.id === ike);
          if (!old) throw new Error(`no IKE SA with id ${ike}`);
          sa = await engine.rekeyIkeSa(old);
        }
        const result: RekeyResult = { ike: ikeSaStatus(sa, engine.clock.now()) };
        return result;
      }
      case 'down': {
        const name = request.args?.name;
        if (name !== undefined && !this.gateway.engine.policy(name)) throw new Error(`no connection named "${name}"`);
        this.log.info({ conn: name ?? '(all)' }, 'control: down');
        const deleted = this.gateway.engine.ikeSas().filter((sa) => name === undefined || sa.name === name).length;
        await this.gateway.down(name);
        const result: DownResult = { deleted };
        return result;
      }
    }
  }
}
