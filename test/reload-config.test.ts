// Gateway.reload in one process: a changed connection applies to new SAs while
// the existing IKE SA keeps the policy it was made with; settings outside
// `connections` are reported as needing a restart and keep their running
// values; a configuration built in memory has no file to reload. Also the
// warning for metrics served on a non-loopback address.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { Gateway } from '../control/gateway.js';
import { createLogger, silentLogger } from '../control/log.js';
import { configFromObject, loadConfigFile, type GatewayConfig } from '../control/config/index.js';
import { configHash, diffConfig } from '../control/reload.js';
import { freePorts, LOOPBACK_PSK } from './support/loopback.js';

const running: Gateway[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function initiatorConfig(ports: { port: number; natPort: number }, opts: { esp: string; workers?: number; extra?: Record<string, unknown> }) {
  return {
    log: { level: 'silent' },
    listen: { address: '127.0.0.1', ...ports },
    retransmit: { timeout: '200ms', tries: 3, maxTimeout: '1s' },
    dataplane: { workers: opts.workers ?? 1, esp: 'udp' },
    ...opts.extra,
    connections: {
      gw: {
        local_addrs: ['127.0.0.1'], remote_addrs: ['127.0.0.2'], remote_port: ports.port,
        local: { id: 'client.loopback.test', auth: 'psk' }, remote: { id: 'gw.loopback.test', auth: 'psk' }, psk: LOOPBACK_PSK,
        clone: { supported: false },
        children: { net: { local_ts: ['10.1.0.0/24'], remote_ts: ['10.2.0.0/24'], esp: [opts.esp] } },
      },
    },
  };
}

describe('Gateway.reload', () => {
  it('applies a changed connection to new SAs only, and keeps settings that need a restart', async () => {
    const ports = freePorts();
    const dir = mkdtempSync(join(tmpdir(), 'ikeclone-reload-'));
    dirs.push(dir);
    const file = join(dir, 'client.yaml');
    writeFileSync(file, stringify(initiatorConfig(ports, { esp: 'aes128gcm16' })));
    const peer = new Gateway({
      config: configFromObject({
        log: { level: 'silent' },
        listen: { address: '127.0.0.2', ...ports },
        dataplane: { workers: 1, esp: 'udp' },
        connections: {
          clients: {
            local_addrs: ['127.0.0.2'], local: { id: 'gw.loopback.test', auth: 'psk' }, remote: { id: 'client.loopback.test', auth: 'psk' }, psk: LOOPBACK_PSK,
            children: { net: { local_ts: ['10.2.0.0/24'], remote_ts: ['10.1.0.0/24'], esp: ['aes128gcm16', 'aes256gcm16'] } },
          },
        },
      }),
      log: silentLogger(),
    });
    const client = new Gateway({ config: loadConfigFile(file), log: silentLogger() });
    running.push(peer, client);
    await peer.start();
    await client.start();
    const first = await client.up('gw');
    const oldPolicy = first.policy;
    expect(first.children[0]!.suite.encrKeyLength).toBe(128);
    const hash = client.status().config!.hash;
    expect(hash).toMatch(/^[0-9a-f]{16}$/);

    writeFileSync(file, stringify(initiatorConfig(ports, { esp: 'aes256gcm16', workers: 2 })));
    const result = await client.reload();
    expect(result).toMatchObject({ added: [], removed: [], changed: ['gw'], unchanged: [], needsRestart: ['dataplane'] });
    expect(result.config.hash).not.toBe(hash);
    expect(client.status().config).toEqual(result.config);
    // The running data plane stays as it was started.
    expect(client.config.dataplane.workers).toBe(1);
    expect(client.status().dataplane!.workers).toHaveLength(1);
    // The existing IKE SA keeps its policy object and its Child SA; a new one uses the new settings.
    expect(first.policy).toBe(oldPolicy);
    expect(first.state).toBe('established');
    expect(client.engine.policy('gw')).not.toBe(oldPolicy);
    const second = await client.up('gw');
    expect(second.children[0]!.suite.encrKeyLength).toBe(256);
    expect(first.children[0]!.suite.encrKeyLength).toBe(128);
  });

  it('tells connections apart by content, keys included, and lists top-level changes', () => {
    const ports = freePorts();
    const a = configFromObject(initiatorConfig(ports, { esp: 'aes128gcm16' }));
    const same = configFromObject(initiatorConfig(ports, { esp: 'aes128gcm16' }));
    expect(diffConfig(a, same)).toEqual({ added: [], removed: [], changed: [], unchanged: ['gw'], needsRestart: [] });
    const otherPsk = configFromObject(initiatorConfig(ports, { esp: 'aes128gcm16' }));
    otherPsk.connections[0]!.psk = new TextEncoder().encode('another pre-shared key of some length');
    expect(diffConfig(a, otherPsk).changed.map((c) => c.name)).toEqual(['gw']);
    const moved = configFromObject(initiatorConfig({ port: ports.port + 100, natPort: ports.natPort + 100 }, { esp: 'aes128gcm16', extra: { metrics: { listen: '127.0.0.1:9710' } } }));
    expect(diffConfig(a, moved).needsRestart).toEqual(['listen', 'metrics']);
    // A cluster: section that appears or changes (here its pool reserve) needs a restart too.
    const clustered = { ...a, cluster: { name: 'c1', node: 'n1', poolReserve: 4 } as GatewayConfig['cluster'] };
    expect(diffConfig(a, clustered).needsRestart).toEqual(['cluster']);
    expect(diffConfig(clustered, { ...clustered, cluster: { ...clustered.cluster!, poolReserve: 8 } }).needsRestart).toEqual(['cluster']);
    expect(diffConfig(clustered, { ...clustered, cluster: { ...clustered.cluster! } }).needsRestart).toEqual([]);
    expect(configHash(new TextEncoder().encode('x'))).toBe('2d711642b726b044');
  });

  it('refuses to reload a configuration that did not come from a file', async () => {
    const gw = new Gateway({ config: configFromObject(initiatorConfig(freePorts(), { esp: 'aes128gcm16' })), log: silentLogger() });
    expect(gw.status().config).toMatchObject({ hash: null, file: null });
    await expect(gw.reload()).rejects.toThrow(/did not come from a file/);
  });

  it('warns when metrics are served on a non-loopback address', async () => {
    let logged = '';
    const sink = new Writable({ write: (chunk, _enc, done) => { logged += String(chunk); done(); } });
    const config = configFromObject(initiatorConfig(freePorts(), { esp: 'aes128gcm16' }));
    // Port 0 (any free one) is not a configurable port, but keeps the test off fixed ports.
    config.metrics = { address: '0.0.0.0', port: 0 };
    const gw = new Gateway({ config, log: createLogger({ level: 'info', destination: sink }) });
    running.push(gw);
    await gw.start();
    expect(gw.metricsAddress?.address).toBe('0.0.0.0');
    expect(logged).toMatch(/"level":40[^\n]*metrics are served on a non-loopback address/);
  });
});
