// Metrics of running gateways: a pair on loopback with data-plane workers and
// generated ESP between them; /metrics scraped over HTTP with fetch, parsed by
// the Prometheus client's own parser, and checked against the gateway's status.
import { afterEach, describe, expect } from 'vitest';
import { Gateway } from '../control/gateway.js';
import { silentLogger } from '../control/log.js';
import { configFromObject } from '../control/config/index.js';
import { ConfigError } from '../control/config/errors.js';
import { loopbackPair } from './support/loopback.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';
import { parsePrometheus, sampleValue, type PromFamily } from './support/prometheus.js';

const running: Gateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
});

const until = (cond: () => boolean | Promise<boolean>) => waitFor(cond, { timeoutMs: 15000, intervalMs: 20 });

async function scrape(gw: Gateway): Promise<PromFamily[]> {
  const at = gw.metricsAddress!;
  const res = await fetch(`http://${at.address}:${at.port}/metrics`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

describe('metrics of a running gateway', () => {
  interopTest('worker, IKE and SA series match the gateway status while ESP flows', ['prometheus'], async () => {
    const { initiator, responder } = loopbackPair();
    for (const c of [initiator, responder]) {
      c.dataplane.workers = 2;
      c.dataplane.esp = 'udp';
    }
    responder.metrics = { address: '127.0.0.1', port: 0 };
    const gw = new Gateway({ config: responder, log: silentLogger() });
    const client = new Gateway({ config: initiator, log: silentLogger() });
    running.push(gw, client);
    await gw.start();
    await client.start();
    expect(gw.metricsAddress?.port).toBeGreaterThan(0);
    expect(client.metricsAddress).toBeUndefined();

    const sa = await client.up('gw');
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.saIds().length === 1);
    await client.clone(sa.id, 1);
    await until(() => gw.dataPlane.saIds().length === 2);
    const report = await client.dataPlane.generate({ packets: 400, size: 600, flows: 8 });
    expect(report.sent).toBe(400);
    const decapped = () => gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
    await until(() => decapped() >= 395);
    // Quiet now: the status and the scrape see the same totals.
    const status = gw.status();
    const families = await scrape(gw);

    for (const w of status.dataplane!.workers) {
      const worker = String(w.index);
      expect(sampleValue(families, 'ikeclone_esp_packets_total', { worker, direction: 'in' })).toBe(w.decapPackets);
      expect(sampleValue(families, 'ikeclone_esp_bytes_total', { worker, direction: 'in' })).toBe(w.decapBytes);
      expect(sampleValue(families, 'ikeclone_esp_packets_total', { worker, direction: 'out' })).toBe(w.encapPackets);
      expect(sampleValue(families, 'ikeclone_worker_child_sas', { worker })).toBe(w.sas);
      expect(sampleValue(families, 'ikeclone_worker_batches_total', { worker })).toBe(w.batches);
      expect(sampleValue(families, 'ikeclone_esp_drops_total', { worker, reason: 'replay' })).toBe(w.drops.replay);
    }
    const inPackets = families.find((f) => f.name === 'ikeclone_esp_packets')!.samples.filter((s) => s.labels.direction === 'in');
    expect(inPackets.reduce((n, s) => n + s.value, 0)).toBe(decapped());
    expect(decapped()).toBeGreaterThanOrEqual(395);

    // IKE: one IKE_SA_INIT and one IKE_AUTH answered, one clone (CREATE_CHILD_SA) and its Child SA.
    expect(status.ike.exchanges['IKE_SA_INIT.responder.ok']).toBe(1);
    expect(status.ike.exchanges['IKE_AUTH.responder.ok']).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_exchanges_total', { exchange: 'IKE_SA_INIT', role: 'responder', result: 'ok' })).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_exchanges_total', { exchange: 'IKE_AUTH', role: 'responder', result: 'ok' })).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_exchanges_total', { exchange: 'CREATE_CHILD_SA', role: 'responder', result: 'ok' })).toBe(status.ike.exchanges['CREATE_CHILD_SA.responder.ok']);
    expect(client.status().ike.exchanges['IKE_AUTH.initiator.ok']).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_messages_total', { direction: 'in' })).toBe(status.ike.received);
    expect(sampleValue(families, 'ikeclone_ike_messages_total', { direction: 'out' })).toBe(status.ike.sent);
    expect(sampleValue(families, 'ikeclone_ike_half_open_sas')).toBe(status.halfOpen);

    // SAs: two established IKE SAs (original and clone), one family of two.
    expect(sampleValue(families, 'ikeclone_ike_sas', { state: 'established' })).toBe(status.ikeSas.filter((s) => s.state === 'established').length);
    expect(sampleValue(families, 'ikeclone_ike_sas', { state: 'established' })).toBe(2);
    const children = status.ikeSas.flatMap((s) => s.children);
    expect(sampleValue(families, 'ikeclone_child_sas', { state: 'installed' })).toBe(children.filter((c) => c.state === 'installed').length);
    expect(sampleValue(families, 'ikeclone_clone_families', { state: status.families[0]!.state })).toBe(1);
    expect(sampleValue(families, 'ikeclone_ike_handshake_duration_seconds_count')).toBe(2);

    // A Child SA rekey is counted on both ends and in the series.
    await client.engine.rekeyChildSa(client.engine.ikeSas()[0]!.children[0]!);
    await until(() => gw.status().ike.rekeys.child === 1);
    expect(client.status().ike.rekeys.child).toBe(1);
    expect(sampleValue(await scrape(gw), 'ikeclone_rekeys_total', { sa: 'child' })).toBe(1);
  });
});

describe('metrics configuration', () => {
  const base = { listen: { address: '127.0.0.1', port: 500, natPort: 4500 } };
  interopTest('is off by default; listen takes ADDRESS:PORT and refuses anything else precisely', [], () => {
    expect(configFromObject(base).metrics).toBeUndefined();
    expect(configFromObject({ ...base, metrics: {} }).metrics).toBeUndefined();
    expect(configFromObject({ ...base, metrics: { listen: '127.0.0.1:9710' } }).metrics).toEqual({ address: '127.0.0.1', port: 9710 });
    expect(configFromObject({ ...base, metrics: { listen: '[::1]:9710' } }).metrics).toEqual({ address: '::1', port: 9710 });
    for (const bad of ['127.0.0.1', 'localhost:9710', '127.0.0.1:0', '127.0.0.1:70000', 9710]) {
      let err: unknown;
      try {
        configFromObject({ ...base, metrics: { listen: bad } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/metrics\.listen: .*expected ADDRESS:PORT/);
    }
    expect(() => configFromObject({ ...base, metrics: { port: 1 } })).toThrow(/metrics\.port: unknown key 'port'; expected one of listen/);
  });
});
