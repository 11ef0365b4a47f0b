// Gateway configurations on loopback addresses with unprivileged ports, so the
// UDP tests run without root. 127.0.0.0/8 is routed to lo on Linux: any
// address in it can be bound without configuring anything.
import { configFromObject } from '../../control/config/index.js';
import type { GatewayConfig } from '../../control/config/index.js';
import { Gateway } from '../../control/gateway.js';
import { silentLogger } from '../../control/log.js';

let nextPort = 20000 + (process.pid % 200) * 50;

/** A fresh pair of ports (IKE, NAT-T) for one test's gateways. */
export function freePorts(): { port: number; natPort: number } {
  const port = nextPort;
  nextPort += 2;
  return { port, natPort: port + 1 };
}

export const LOOPBACK_PSK = 'loopback test pre-shared key 0123456789';

export function loopbackPair(opts: { ike?: string; esp?: string; extra?: Record<string, unknown>; initiatorExtra?: Record<string, unknown>; responderTop?: Record<string, unknown> } = {}): { initiator: GatewayConfig; responder: GatewayConfig } {
  const ports = freePorts();
  const common = { log: { level: 'silent' }, retransmit: { timeout: '200ms', tries: 3, maxTimeout: '1s' } };
  const ike = [opts.ike ?? 'aes256gcm16-prfsha256-x25519'];
  const esp = [opts.esp ?? 'aes128gcm16'];
  const responder = configFromObject({
    ...common,
    ...opts.responderTop,
    listen: { address: '127.0.0.2', ...ports },
    connections: {
      clients: {
        local_addrs: ['127.0.0.2'],
        ike,
        local: { id: 'gw.loopback.test', auth: 'psk' },
        remote: { id: 'client.loopback.test', auth: 'psk' },
        psk: LOOPBACK_PSK,
        children: { net: { local_ts: ['10.2.0.0/24'], remote_ts: ['10.1.0.0/24'], esp } },
        ...opts.extra,
      },
    },
  });
  const initiator = configFromObject({
    ...common,
    listen: { address: '127.0.0.1', ...ports },
    connections: {
      gw: {
        local_addrs: ['127.0.0.1'],
        remote_addrs: ['127.0.0.2'],
        remote_port: ports.port,
        ike,
        local: { id: 'client.loopback.test', auth: 'psk' },
        remote: { id: 'gw.loopback.test', auth: 'psk' },
        psk: LOOPBACK_PSK,
        children: { net: { local_ts: ['10.1.0.0/24'], remote_ts: ['10.2.0.0/24'], esp } },
        ...opts.extra,
        ...opts.initiatorExtra,
      },
    },
  });
  return { initiator, responder };
}

/**
 * Start the responder, then the initiator, of a loopbackPair() with `workers`
 * data-plane workers each and ESP over UDP; both are pushed to `running`
 * (the caller stops them).
 */
export async function startGatewayPair(pair: { initiator: GatewayConfig; responder: GatewayConfig }, workers: number, running: Gateway[]): Promise<{ gw: Gateway; client: Gateway }> {
  for (const c of [pair.initiator, pair.responder]) {
    c.dataplane.workers = workers;
    c.dataplane.esp = 'udp';
  }
  const gw = new Gateway({ config: pair.responder, log: silentLogger() });
  const client = new Gateway({ config: pair.initiator, log: silentLogger() });
  running.push(gw, client);
  await gw.start();
  await client.start();
  return { gw, client };
}
