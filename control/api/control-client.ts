// Client side of the control socket (control/api/protocol.ts): what
// `ikeclone status|up|down` use to ask a running gateway. Every wait is
// bounded; a missing or dead gateway is a ControlSocketError with a message
// that says what to do.
import type { ReloadResult } from '../reload.js';
import { lstatSync, statSync, type Stats } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { GatewayStatus } from '../status.js';
import {
  LineSplitter, MAX_RESPONSE_LINE, checkPrivateDir, encodeLine, parseResponse,
  type ControlArgs, type CloneResult, type MoveResult, type ControlCommand, type ControlErrorCode, type ControlRequest, type DownResult, type RequestId, type UpResult,
} from './protocol.js';

export type ControlSocketErrorCode = 'no-gateway' | 'permission' | 'untrusted' | 'timeout' | 'closed' | 'protocol';

/** The socket itself failed: nothing listens, no permission, not ours (untrusted), no answer, garbage. */
export class ControlSocketError extends Error {
  constructor(readonly code: ControlSocketErrorCode, readonly path: string, message: string) {
    super(message);
    this.name = 'ControlSocketError';
  }
}

/** The gateway answered with an error response. */
export class ControlRequestError extends Error {
  constructor(readonly code: ControlErrorCode, message: string) {
    super(message);
    this.name = 'ControlRequestError';
  }
}

interface Pending {
  resolve: (result: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export interface ControlClientOptions {
  /** Bound on connecting (default 3 s). */
  connectTimeoutMs?: number;
  /**
   * The socket's directory must be private to this user (checkPrivateDir);
   * for the default location under /tmp (defaultSocketLocation).
   */
  privateDir?: boolean;
}

export class ControlClient {
  private readonly pending = new Map<RequestId, Pending>();
  private readonly splitter = new LineSplitter(MAX_RESPONSE_LINE);
  private nextId = 1;
  private closed = false;

  private constructor(readonly path: string, private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.failAll(new ControlSocketError('closed', path, `the gateway on ${path} closed the connection`));
    });
  }

  /** Connect to the gateway listening on `path`. */
  static connect(path: string, opts: ControlClientOptions = {}): Promise<ControlClient> {
    if (typeof path !== 'string' || path === '') return Promise.reject(new TypeError('ControlClient.connect: path must be a non-empty string'));
    const timeoutMs = opts.connectTimeoutMs ?? 3000;
    let trusted: Stats;
    try {
      trusted = trustedSocket(path, opts.privateDir ?? false);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ControlSocketError('timeout', path, `the gateway on ${path} did not accept the connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        // The file checked above may have been swapped before connect(): make
        // sure we reached the socket we vetted.
        let now: Stats | undefined;
        try {
          now = statSync(path);
        } catch {
          now = undefined;
        }
        if (now === undefined || now.ino !== trusted.ino || now.dev !== trusted.dev) {
          socket.destroy();
          reject(new ControlSocketError('untrusted', path, `${path} was replaced while connecting; not talking to it`));
          return;
        }
        resolve(new ControlClient(path, socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(connectError(path, err));
      });
    });
  }

  /** Send one request; resolves with its result, rejects with ControlRequestError or ControlSocketError. */
  request(cmd: ControlCommand, args?: ControlArgs, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    if (this.closed) return Promise.reject(new ControlSocketError('closed', this.path, `the connection to ${this.path} is closed`));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const message: ControlRequest = args === undefined ? { id, cmd } : { id, cmd, args };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ControlSocketError('timeout', this.path, `no answer to "${cmd}" from the gateway on ${this.path} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.write(encodeLine(message));
    });
  }

  status(opts: { timeoutMs?: number } = {}): Promise<GatewayStatus> {
    return this.request('status', undefined, opts) as Promise<GatewayStatus>;
  }

  /** Re-read the gateway's configuration file; rejects with the configuration error when it does not validate. */
  reload(opts: { timeoutMs?: number } = {}): Promise<ReloadResult> {
    return this.request('reload', undefined, opts) as Promise<ReloadResult>;
  }

  /** Initiate a connection on the gateway; waits for IKE_AUTH and the Child SAs (default bound 120 s). */
  up(name: string, opts: { timeoutMs?: number } = {}): Promise<UpResult> {
    return this.request('up', { name }, { timeoutMs: opts.timeoutMs ?? 120_000 }) as Promise<UpResult>;
  }

  /** Delete the IKE SAs of one connection, or all. */
  down(name?: string, opts: { timeoutMs?: number } = {}): Promise<DownResult> {
    return this.request('down', name === undefined ? undefined : { name }, { timeoutMs: opts.timeoutMs ?? 60_000 }) as Promise<DownResult>;
  }

  /** Clone IKE SA `ike` `count` times (RFC 7791); resolves with the family. */
  clone(ike: number, count = 1, opts: { timeoutMs?: number } = {}): Promise<CloneResult> {
    return this.request('clone', { ike, count }, { timeoutMs: opts.timeoutMs ?? 60_000 }) as Promise<CloneResult>;
  }

  /** Move IKE SA `ike` to `local` (and `remote`) with MOBIKE (RFC 4555). */
  move(ike: number, local: string, remote?: string, opts: { timeoutMs?: number } = {}): Promise<MoveResult> {
    return this.request('move', { ike, local, ...(remote ? { remote } : {}) }, { timeoutMs: opts.timeoutMs ?? 30_000 }) as Promise<MoveResult>;
  }

  /** Hand IKE SA `ike` (a clone) to cluster node `node` (architecture §8). */
  moveToNode(ike: number, node: string, opts: { timeoutMs?: number } = {}): Promise<MoveResult> {
    return this.request('move', { ike, node }, { timeoutMs: opts.timeoutMs ?? 30_000 }) as Promise<MoveResult>;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
    this.failAll(new ControlSocketError('closed', this.path, 'connection closed'));
  }

  private onData(chunk: Buffer): void {
    const { lines, overflow } = this.splitter.push(chunk);
    for (const line of lines) {
      if (line.trim() === '') continue;
      const r = parseResponse(line);
      if ('invalid' in r) {
        this.failAll(new ControlSocketError('protocol', this.path, `bad answer from the gateway on ${this.path}: ${r.invalid}`));
        this.socket.destroy();
        return;
      }
      // An answer without id refers to a request the server could not read: the oldest one.
      const id = r.id ?? this.pending.keys().next().value;
      if (id === undefined) continue;
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (r.ok) p.resolve(r.result);
      else p.reject(new ControlRequestError(r.error.code, r.error.message));
    }
    if (overflow) {
      this.failAll(new ControlSocketError('protocol', this.path, `answer from the gateway on ${this.path} longer than ${MAX_RESPONSE_LINE} bytes`));
      this.socket.destroy();
    }
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
  }
}

function noGateway(path: string, code: string): ControlSocketError {
  return new ControlSocketError('no-gateway', path,
    `no gateway is listening on ${path} (${code}); start one with: ikeclone gateway --config FILE [--socket ${path}]`);
}

/**
 * Vet the socket before talking to it: whoever owns it would receive our
 * commands and could answer anything. Accept only a socket (and, when `path`
 * is a symlink, the link too) owned by this user or root, and with privateDir
 * only in a directory private to this user. Returns the socket's stat (to
 * compare after connecting); throws ControlSocketError otherwise.
 */
function trustedSocket(path: string, privateDir: boolean): Stats {
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  if (privateDir && uid >= 0) {
    const check = checkPrivateDir(dirname(path), uid);
    if (!check.ok) throw check.missing ? noGateway(path, 'ENOENT') : new ControlSocketError('untrusted', path, check.problem);
  }
  let link: Stats;
  let target: Stats;
  try {
    link = lstatSync(path);
    target = statSync(path);
  } catch (err) {
    throw connectError(path, err as NodeJS.ErrnoException);
  }
  if (uid >= 0) {
    for (const st of [link, target]) {
      if (st.uid !== uid && st.uid !== 0) {
        throw new ControlSocketError('untrusted', path,
          `${path} is owned by uid ${st.uid}, not by this user (uid ${uid}) or root; refusing to talk to it (another user may be impersonating the gateway)`);
      }
    }
  }
  return target;
}

function connectError(path: string, err: NodeJS.ErrnoException): ControlSocketError {
  switch (err.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
    case 'ENOTSOCK':
      return noGateway(path, err.code);
    case 'EACCES':
    case 'EPERM':
      return new ControlSocketError('permission', path, `no permission to use ${path} (${err.code}); run as the gateway's user`);
    default:
      return new ControlSocketError('no-gateway', path, `cannot connect to ${path}: ${err.message}`);
  }
}

/** Connect, send one request, close: what the one-shot CLI commands do. */
export async function controlRequest<T>(path: string, fn: (client: ControlClient) => Promise<T>, opts: ControlClientOptions = {}): Promise<T> {
  const client = await ControlClient.connect(path, opts);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}
