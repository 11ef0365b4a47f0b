// The service manager's notification protocol (sd_notify(3)). When systemd
// starts the gateway as a Type=notify service it sets NOTIFY_SOCKET, and waits
// for READY=1 before it counts the service as started; a reload is framed by
// RELOADING=1 and READY=1, shutdown is announced by STOPPING=1, and with
// WatchdogSec= the service must send WATCHDOG=1 at least every WATCHDOG_USEC
// or be restarted. Without NOTIFY_SOCKET every call here does nothing.
//
// Owner: the main thread. The watchdog timer runs on its event loop, so a
// loop that stops turning stops the pings, which is what the watchdog is for.
import type { NativeIo } from './native-io.js';
import { loadNativeIo } from './native-io.js';

export interface ServiceNotifier {
  /** True when a service manager listens (NOTIFY_SOCKET was set). */
  readonly enabled: boolean;
  /** The watchdog ping interval in ms (half of WATCHDOG_USEC), or null without a watchdog. */
  readonly watchdogMs: number | null;
  /** READY=1: the gateway serves (also ends a reload). */
  ready(status?: string): void;
  /** RELOADING=1 with the monotonic time systemd 253 and later ask for. */
  reloading(status?: string): void;
  /** STOPPING=1: shutdown has begun. */
  stopping(status?: string): void;
  /** A free-form STATUS= line that `systemctl status` shows. */
  status(text: string): void;
  /** Stops the watchdog pings. */
  close(): void;
}

export interface NotifierOptions {
  env?: NodeJS.ProcessEnv;
  /** Sends one datagram; defaults to the native addon's notifySend. */
  send?: (socket: string, message: string) => void;
  /** Told once when a notification cannot be sent (the service manager went away, no addon). */
  onError?: (err: Error) => void;
}

/** A STATUS= value is one line (the protocol separates assignments by newlines). */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 512);
}

/** WATCHDOG_USEC for this process: half of it is the ping interval (sd_watchdog_enabled(3)). */
function watchdogInterval(env: NodeJS.ProcessEnv): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== process.pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * The notifier for this process. The socket must be an absolute path or an
 * abstract name ('@...'); anything else is ignored, as sd_notify(3) does.
 */
export function serviceNotifier(opts: NotifierOptions = {}): ServiceNotifier {
  const env = opts.env ?? process.env;
  const socket = env.NOTIFY_SOCKET;
  const enabled = socket !== undefined && (socket.startsWith('/') || socket.startsWith('@'));
  let failed = false;
  let native: NativeIo | undefined;
  const send = (message: string): void => {
    if (!enabled || failed) return;
    try {
      if (opts.send) opts.send(socket, message);
      else (native ??= loadNativeIo()).notifySend(socket, message);
    } catch (err) {
      // Once: a service manager that went away would otherwise fill the log every ping.
      failed = true;
      opts.onError?.(err as Error);
    }
  };
  const withStatus = (line: string, status?: string) => send(status === undefined ? line : `${line}\nSTATUS=${oneLine(status)}`);
  const watchdogMs = enabled ? watchdogInterval(env) : null;
  let timer: NodeJS.Timeout | undefined;
  if (watchdogMs !== null) {
    timer = setInterval(() => send('WATCHDOG=1'), watchdogMs);
    timer.unref();
  }
  return {
    enabled,
    watchdogMs,
    ready: (status) => withStatus('READY=1', status),
    reloading: (status) => withStatus(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`, status),
    stopping: (status) => withStatus('STOPPING=1', status),
    status: (text) => send(`STATUS=${oneLine(text)}`),
    close: () => {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}
