// Who is at the other end of a connected unix stream socket (SO_PEERCRED),
// so that a server can bound what one client process holds.
//
// Owner: the thread that owns the socket (the main thread for the control
// socket). Node keeps the descriptor in the socket's handle; without the
// native addon, or for a socket that has none, the peer is unknown.
import type { Socket } from 'node:net';
import { loadNativeIo } from './native-io.js';

export interface PeerProcess {
  pid: number;
  uid: number;
}

/** The peer's process, or undefined when it cannot be told. */
export function peerProcess(socket: Socket): PeerProcess | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    const { pid, uid } = loadNativeIo().peerCred(fd);
    return { pid, uid };
  } catch {
    return undefined;
  }
}
