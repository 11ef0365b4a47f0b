// A service manager's notification socket for tests (sd_notify(3)): a real
// AF_UNIX datagram socket, bound by python3 (Node's dgram speaks only UDP),
// that reports each datagram it receives. The python process ends by itself
// after `idleSeconds` without a datagram, and stop() kills it by its pid.
import { spawn } from 'node:child_process';

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
path = sys.argv[1]
s.bind(('\\0' + path[1:]) if path.startswith('@') else path)
print(json.dumps({"bound": True}), flush=True)
s.settimeout(float(sys.argv[2]))
while True:
    try:
        data = s.recv(65536)
    except socket.timeout:
        break
    print(json.dumps({"datagram": data.decode()}), flush=True)
`;

/** A notification socket: the datagrams it received so far, in order. */
export interface Receiver {
  datagrams: string[];
  next(count: number, timeoutMs?: number): Promise<string[]>;
  stop(): void;
}

export function notifyReceiver(path: string, idleSeconds = 5): Promise<Receiver> {
  const child = spawn('python3', ['-c', RECEIVER, path, String(idleSeconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const datagrams: string[] = [];
  let buffered = '';
  let wake: (() => void) | undefined;
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = JSON.parse(buffered.slice(0, nl)) as { bound?: true; datagram?: string };
        buffered = buffered.slice(nl + 1);
        if (line.bound) {
          resolve({
            datagrams,
            next: async (count, timeoutMs = 3000) => {
              const deadline = Date.now() + timeoutMs;
              while (datagrams.length < count && Date.now() < deadline) {
                await new Promise<void>((r) => {
                  wake = r;
                  setTimeout(r, 50);
                });
              }
              return datagrams.slice(0, count);
            },
            stop: () => child.kill('SIGKILL'),
          });
        }
        if (line.datagram !== undefined) datagrams.push(line.datagram);
        wake?.();
      }
    });
  });
}
