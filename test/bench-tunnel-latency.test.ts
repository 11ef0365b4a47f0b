// bench/tunnel.ts latencyRatios: the latency targets as ratios of minimum
// round trips within one run, for the gateways in service (after the iperf3
// runs) and for the first packets after set-up, never mixing the two.
import { describe, expect, it } from 'vitest';
import { latencyRatios, type LatencyPhase, type LatencyResult } from '../bench/tunnel.js';

function ping(c: LatencyResult['case'], esp: LatencyResult['esp'], phase: LatencyPhase, intervalMs: number, minMs: number, received = 50): LatencyResult {
  return { case: c, esp, phase, intervalMs, sent: 50, received, minMs, avgMs: minMs * 2, maxMs: minMs * 4 };
}

describe('tunnel bench latency ratios', () => {
  const run: LatencyResult[] = [
    ping('ikeclone-udp', 'aes128gcm16', 'first-packets', 20, 0.6),
    ping('ikeclone-udp', 'aes128gcm16', 'in-service', 20, 0.4),
    ping('ikeclone-udp', 'aes128gcm16', 'in-service', 2, 0.15),
    ping('ikeclone-raw', 'aes128gcm16', 'in-service', 20, 0.1), // another case: never compared
    ping('strongswan', 'aes128gcm16', 'first-packets', 20, 0.5),
    ping('strongswan', 'aes128gcm16', 'in-service', 20, 0.5),
    ping('strongswan', 'aes128gcm16', 'in-service', 2, 0.3),
    ping('ikeclone-udp', 'chacha20poly1305', 'first-packets', 20, 0.55),
    ping('ikeclone-udp', 'chacha20poly1305', 'in-service', 20, 0.44),
    ping('ikeclone-udp', 'chacha20poly1305', 'in-service', 2, 0.2),
    ping('wireguard-go', 'chacha20poly1305', 'first-packets', 20, 0.4),
    ping('wireguard-go', 'chacha20poly1305', 'in-service', 20, 0.4),
    ping('wireguard-go', 'chacha20poly1305', 'in-service', 2, 0.16),
  ];

  it('compares ikeclone over ESP in UDP with the peer of its cipher, phase and pace apart', () => {
    const r = latencyRatios(run);
    expect(r.idlePingVsStrongswan!.value).toBe(0.8);
    expect(r.warmPingVsStrongswan!.value).toBe(0.5);
    expect(r.idlePingVsWireguardGo!.value).toBe(1.1);
    expect(r.warmPingVsWireguardGo!.value).toBe(1.25);
    expect(r.firstPacketsIdlePingVsStrongswan!.value).toBe(1.2);
    expect(r.firstPacketsIdlePingVsWireguardGo!.value).toBe(1.38);
    expect(r.idlePingVsWireguardGo!.description).toMatch(/in-service.*wireguard-go, chacha20poly1305/);
    expect(r.firstPacketsIdlePingVsStrongswan!.description).toMatch(/idle tunnel \(20 ms apart\), first-packets.*strongSwan/);
  });

  it('gives NaN (null in the JSON) for a case that did not run or got no answer', () => {
    const noWg = run.filter((l) => l.case !== 'wireguard-go');
    const unanswered = run.map((l) => (l.case === 'strongswan' && l.intervalMs === 2 ? { ...l, received: 0 } : l));
    expect(latencyRatios(noWg).idlePingVsWireguardGo!.value).toBeNaN();
    expect(latencyRatios(unanswered).warmPingVsStrongswan!.value).toBeNaN();
    expect(latencyRatios(unanswered).idlePingVsStrongswan!.value).toBe(0.8);
    expect(JSON.parse(JSON.stringify(latencyRatios(noWg))).idlePingVsWireguardGo.value).toBeNull();
  });
});
