// The control protocol between `ikeclone status|up|down` and a running
// gateway: newline-delimited JSON over a unix socket.
//
//   request:  {"id": 1, "cmd": "status" | "up" | "down", "args": {"name": "gw"}}
//   response: {"id": 1, "ok": true, "result": ...}
//           | {"id": 1, "ok": false, "error": {"code": "...", "message": "..."}}
//
// One JSON document per line, at most MAX_REQUEST_LINE bytes per request line.
// Requests may be pipelined; each response carries the id of its request
// (null when the request was too broken to have one). Parsing is pure and
// never throws, whatever bytes arrive; only checkPrivateDir looks at the file
// system.
import { lstatSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { IkeSaStatus } from '../status.js';

/** Longest request line the server accepts (bytes, newline excluded); longer: error, then close. */
export const MAX_REQUEST_LINE = 64 * 1024;
/** Longest response line a client accepts (a status of many SAs is large, but not unbounded). */
export const MAX_RESPONSE_LINE = 32 * 1024 * 1024;

export const CONTROL_COMMANDS = ['status', 'up', 'down', 'clone', 'move', 'rekey', 'reload'] as const;
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/** A request id: what the client chose, echoed in the response. */
export type RequestId = number | string;

export interface ControlRequest {
  id: RequestId;
  cmd: ControlCommand;
  /**
   * up: { name } (required); down: { name } (optional: all IKE SAs when absent);
   * clone: { ike } (required: the IKE SA's id) and { count } (clones to add, default 1); status, reload: none.
   */
  args?: ControlArgs;
}

export type ControlErrorCode =
  | 'malformed' // not JSON, or not a request object
  | 'line-too-long' // the line exceeded MAX_REQUEST_LINE (the server closes the connection)
  | 'unknown-command'
  | 'bad-args'
  | 'busy' // too many requests in flight on this connection, or every connection busy with one
  | 'line-timeout' // a request line was not finished in time (the server closes the connection)
  | 'evicted' // closed to make room for a new connection (the one idle longest goes)
  | 'failed'; // the command ran and failed (the message says why)

export interface ControlError {
  code: ControlErrorCode;
  message: string;
}

export type ControlResponse =
  | { id: RequestId | null; ok: true; result: unknown }
  | { id: RequestId | null; ok: false; error: ControlError };

export interface ControlArgs {
  name?: string;
  ike?: number;
  count?: number;
  /** move: the local address to move to, and optionally the peer's. */
  local?: string;
  remote?: string;
  /** move: instead of local, the cluster node to hand the clone to (architecture §8). */
  node?: string;
  /** rekey: the Child SA to rekey (its id); with { ike } instead, the IKE SA (RFC 7296 §1.3.2, §1.3.3). */
  child?: number;
}

/** Result of `rekey`: the IKE SA that now holds the rekeyed SA. */
export interface RekeyResult {
  ike: IkeSaStatus;
}

/** Result of `move`: the IKE SA on its new path (or, handed to another node, as it left with the new owner's epoch). */
export interface MoveResult {
  ike: IkeSaStatus;
  handedOff?: { node: string; epoch: number };
}

/** Most clones one `clone` request may add. */
export const MAX_CLONE_COUNT = 256;

/** Result of `clone`: the family after growing, and every member's status. */
export interface CloneResult {
  family: { sessionId: number; target: number; state: string; reason?: string };
  members: IkeSaStatus[];
}

/** Result of `up`: the established IKE SA (status fields) and the Child SAs that failed. */
export interface UpResult {
  ike: IkeSaStatus;
  failedChildren: Array<{ name: string; reason: string }>;
}

/** Result of `down`: how many IKE SAs were deleted. */
export interface DownResult {
  deleted: number;
}

export type ParsedRequest =
  | { ok: true; request: ControlRequest }
  | { ok: false; response: ControlResponse };

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function isRequestId(v: unknown): v is RequestId {
  return (typeof v === 'number' && Number.isSafeInteger(v)) || (typeof v === 'string' && v.length <= 128);
}

function fail(id: RequestId | null, code: ControlErrorCode, message: string): ParsedRequest {
  return { ok: false, response: { id, ok: false, error: { code, message } } };
}

/**
 * Parse one request line (without its newline). Never throws: anything that is
 * not a valid request becomes the error response to send back.
 */
export function parseRequest(line: string): ParsedRequest {
  if (typeof line !== 'string') return fail(null, 'malformed', 'request must be text');
  if (Buffer.byteLength(line, 'utf8') > MAX_REQUEST_LINE) {
    return fail(null, 'line-too-long', `request line longer than ${MAX_REQUEST_LINE} bytes`);
  }
  let data: unknown;
  try {
    data = JSON.parse(line);
  } catch (e) {
    return fail(null, 'malformed', `request is not JSON (${(e as Error).message})`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return fail(null, 'malformed', 'request must be a JSON object {id, cmd, args?}');
  }
  const obj = data as Record<string, unknown>;
  const id = isRequestId(obj.id) ? obj.id : null;
  if (id === null) return fail(null, 'malformed', 'request id must be an integer or a string of at most 128 characters');
  if (typeof obj.cmd !== 'string') return fail(id, 'malformed', 'request cmd must be a string');
  if (!(CONTROL_COMMANDS as readonly string[]).includes(obj.cmd)) {
    return fail(id, 'unknown-command', `unknown command "${obj.cmd.slice(0, 64)}"; expected one of ${CONTROL_COMMANDS.join(', ')}`);
  }
  const cmd = obj.cmd as ControlCommand;
  const extra = Object.keys(obj).filter((k) => k !== 'id' && k !== 'cmd' && k !== 'args');
  if (extra.length > 0) return fail(id, 'malformed', `unknown request field "${extra[0]!.slice(0, 64)}"`);
  let name: string | undefined;
  let ike: number | undefined;
  let count: number | undefined;
  let local: string | undefined;
  let remote: string | undefined;
  let node: string | undefined;
  if (obj.args !== undefined && obj.args !== null) {
    if (typeof obj.args !== 'object' || Array.isArray(obj.args)) return fail(id, 'bad-args', 'args must be an object');
    const args = obj.args as Record<string, unknown>;
    const allowed = cmd === 'clone' ? ['ike', 'count'] : cmd === 'move' ? ['ike', 'local', 'remote', 'node'] : cmd === 'rekey' ? ['ike', 'child'] : ['name'];
    const unknown = Object.keys(args).filter((k) => !allowed.includes(k));
    if (unknown.length > 0) return fail(id, 'bad-args', `unknown argument "${unknown[0]!.slice(0, 64)}"`);
    if (args.name !== undefined) {
      if (typeof args.name !== 'string' || !NAME_RE.test(args.name)) {
        return fail(id, 'bad-args', 'args.name must be a connection name (letters, digits, ".", "_", "-")');
      }
      name = args.name;
    }
    if (args.ike !== undefined) {
      if (typeof args.ike !== 'number' || !Number.isSafeInteger(args.ike) || args.ike < 1) return fail(id, 'bad-args', 'args.ike must be an IKE SA id (a positive integer)');
      ike = args.ike;
    }
    for (const which of ['local', 'remote'] as const) {
      if (args[which] === undefined) continue;
      if (typeof args[which] !== 'string' || isIP(args[which] as string) === 0) return fail(id, 'bad-args', `args.${which} must be an IP address`);
      if (which === 'local') local = args.local as string;
      else remote = args.remote as string;
    }
    if (args.node !== undefined) {
      if (typeof args.node !== 'string' || !NAME_RE.test(args.node)) return fail(id, 'bad-args', 'args.node must be a cluster node name (letters, digits, ".", "_", "-")');
      node = args.node;
    }
    if (args.count !== undefined) {
      if (typeof args.count !== 'number' || !Number.isInteger(args.count) || args.count < 1 || args.count > MAX_CLONE_COUNT) {
        return fail(id, 'bad-args', `args.count must be an integer from 1 to ${MAX_CLONE_COUNT}`);
      }
      count = args.count;
    }
  }
  if (cmd === 'move' && node !== undefined) {
    if (ike === undefined || local !== undefined || remote !== undefined) return fail(id, 'bad-args', 'move with args.node needs args.ike and no local or remote address');
    return { ok: true, request: { id, cmd, args: { ike, node } } };
  }
  if (cmd === 'move') {
    if (ike === undefined || local === undefined) return fail(id, 'bad-args', 'move needs args.ike (the IKE SA id) and args.local (the address to move to)');
    return { ok: true, request: { id, cmd, args: { ike, local, ...(remote ? { remote } : {}) } } };
  }
  if (cmd === 'rekey') {
    const a = obj.args as Record<string, unknown> | undefined;
    const child = a?.child;
    if (child !== undefined && (typeof child !== 'number' || !Number.isSafeInteger(child) || child < 1)) return fail(id, 'bad-args', 'args.child must be a Child SA id (a positive integer)');
    if ((ike === undefined) === (child === undefined)) return fail(id, 'bad-args', 'rekey needs either args.ike (an IKE SA id) or args.child (a Child SA id)');
    return { ok: true, request: { id, cmd, args: ike !== undefined ? { ike } : { child: child as number } } };
  }
  if (cmd === 'clone') {
    if (ike === undefined) return fail(id, 'bad-args', 'clone needs args.ike, the id of the IKE SA to clone');
    return { ok: true, request: { id, cmd, args: count === undefined ? { ike } : { ike, count } } };
  }
  if (cmd === 'up' && name === undefined) return fail(id, 'bad-args', 'up needs args.name, the connection to initiate');
  if ((cmd === 'status' || cmd === 'reload') && name !== undefined) return fail(id, 'bad-args', `${cmd} takes no arguments`);
  return { ok: true, request: name === undefined ? { id, cmd } : { id, cmd, args: { name } } };
}

/** Check a parsed JSON value is a response. Never throws. */
export function parseResponse(line: string): ControlResponse | { invalid: string } {
  let data: unknown;
  try {
    data = JSON.parse(line);
  } catch (e) {
    return { invalid: `response is not JSON (${(e as Error).message})` };
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return { invalid: 'response is not an object' };
  const r = data as Record<string, unknown>;
  if (r.id !== null && !isRequestId(r.id)) return { invalid: 'response id is not a request id' };
  if (r.ok === true) return { id: r.id as RequestId | null, ok: true, result: r.result };
  if (r.ok === false) {
    const e = r.error as Record<string, unknown> | null;
    if (e === null || typeof e !== 'object' || typeof e.code !== 'string' || typeof e.message !== 'string') {
      return { invalid: 'error response without {code, message}' };
    }
    return { id: r.id as RequestId | null, ok: false, error: { code: e.code as ControlErrorCode, message: e.message } };
  }
  return { invalid: 'response has no boolean ok field' };
}

/** One message as a line on the socket. */
export function encodeLine(message: ControlRequest | ControlResponse): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * Splits a byte stream into lines, refusing to buffer more than `maxLine`
 * bytes of an unfinished line. Feed chunks with push(); it returns the
 * complete lines and whether the limit was crossed (the caller then stops
 * reading: the rest of that line is never buffered).
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private pending = 0;

  constructor(readonly maxLine: number) {
    if (!Number.isInteger(maxLine) || maxLine < 1) throw new RangeError('LineSplitter: maxLine must be a positive integer');
  }

  push(chunk: Buffer): { lines: string[]; overflow: boolean } {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (this.pending + piece.length > this.maxLine) return { lines, overflow: true };
      this.parts.push(piece);
      lines.push(Buffer.concat(this.parts).toString('utf8').replace(/\r$/, ''));
      this.parts = [];
      this.pending = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (this.pending + rest.length > this.maxLine) return { lines, overflow: true };
    if (rest.length > 0) {
      // Copy: the stream may reuse the chunk's memory.
      this.parts.push(Buffer.from(rest));
      this.pending += rest.length;
    }
    return { lines, overflow: false };
  }

  /** Bytes of the unfinished line held. */
  get buffered(): number {
    return this.pending;
  }
}

export interface SocketPathEnv {
  uid?: number;
  runtimeDir?: string;
  tmp?: string;
}

export interface SocketLocation {
  path: string;
  /**
   * The socket's directory must be private to the user (checkPrivateDir):
   * true when it lies in a shared directory such as /tmp, where another local
   * user could otherwise create the socket (or its directory) first and
   * impersonate the gateway. /run (root) and XDG_RUNTIME_DIR (per-user, 0700
   * by the XDG spec) are provided by the system and not checked.
   */
  privateDir: boolean;
}

/**
 * The control socket's default location: /run/ikeclone/ikeclone.sock for
 * root, else ${XDG_RUNTIME_DIR}/ikeclone-${uid}.sock, else
 * ${temp directory}/ikeclone-${uid}/ikeclone.sock in a directory of its own.
 */
export function defaultSocketLocation(env: SocketPathEnv = {}): SocketLocation {
  const uid = env.uid ?? (typeof process.getuid === 'function' ? process.getuid() : -1);
  if (uid === 0) return { path: '/run/ikeclone/ikeclone.sock', privateDir: false };
  const who = uid >= 0 ? String(uid) : 'user';
  const runtimeDir = 'runtimeDir' in env ? env.runtimeDir : process.env.XDG_RUNTIME_DIR;
  if (runtimeDir !== undefined && runtimeDir !== '') return { path: join(runtimeDir, `ikeclone-${who}.sock`), privateDir: false };
  // Not the socket itself in /tmp: a directory only we can enter, so nobody
  // else can put a socket at the path we use.
  return { path: join(env.tmp ?? tmpdir(), `ikeclone-${who}`, 'ikeclone.sock'), privateDir: true };
}

/** The control socket's default path (defaultSocketLocation's path). */
export function defaultSocketPath(env: SocketPathEnv = {}): string {
  return defaultSocketLocation(env).path;
}

export type PrivateDirCheck = { ok: true } | { ok: false; missing: boolean; problem: string };

/**
 * Is `dir` private to `uid`: a real directory (lstat: not a symlink), owned
 * by `uid`, mode 0700? Only then can no other user have put a socket in it.
 */
export function checkPrivateDir(dir: string, uid: number): PrivateDirCheck {
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, missing: code === 'ENOENT', problem: `cannot inspect ${dir} (${code ?? String(err)})` };
  }
  const refuse = (what: string): PrivateDirCheck => ({
    ok: false,
    missing: false,
    problem: `${dir} ${what}; refusing to use a control socket in it (remove it, set XDG_RUNTIME_DIR, or pass --socket)`,
  });
  if (st.isSymbolicLink()) return refuse('is a symbolic link, not a directory');
  if (!st.isDirectory()) return refuse('is not a directory');
  if (st.uid !== uid) return refuse(`is owned by uid ${st.uid}, not by uid ${uid}`);
  if ((st.mode & 0o777) !== 0o700) return refuse(`has mode 0${(st.mode & 0o777).toString(8)}, not 0700`);
  return { ok: true };
}
