// The io layer's RFC 3948 demultiplexer (io/demux.ts) and the IKE transform
// -> ESP transform mapping the gateway hands the data plane (control/crypto/esp-transform.ts),
// without sockets.
import { describe, expect, it } from 'vitest';
import { NatTraversalDemux, NON_ESP_MARKER_LENGTH, withNonEspMarker, type DemuxStats } from '../io/demux.js';
import type { Endpoint } from '../io/endpoint.js';
import { espTransformFor } from '../control/crypto/esp-transform.js';
import { EncrId, IntegId } from '../control/wire/constants.js';

function setup() {
  const stats: DemuxStats = { ikeIn: 0, espIn: 0, keepalivesIn: 0, runts: 0 };
  const ike: Array<{ bytes: number[]; local: Endpoint }> = [];
  const esp: Array<{ bytes: number[]; remote: Endpoint }> = [];
  const demux = new NatTraversalDemux(4500, stats, (m, local) => ike.push({ bytes: [...m], local }));
  demux.esp = (p, _local, remote) => esp.push({ bytes: [...p], remote });
  return { stats, ike, esp, demux };
}

const nat: Endpoint = { address: '192.0.2.1', port: 4500 };
const ikePort: Endpoint = { address: '192.0.2.1', port: 500 };
const peer: Endpoint = { address: '198.51.100.7', port: 4500 };

describe('RFC 3948 demultiplexer', () => {
  it('port 500 carries IKE only, whatever its first octets', () => {
    const { stats, ike, esp, demux } = setup();
    demux.receive(Uint8Array.of(1, 2, 3, 4, 5), ikePort, peer);
    demux.receive(Uint8Array.of(0xff), ikePort, peer);
    expect(ike.map((d) => d.bytes)).toEqual([[1, 2, 3, 4, 5], [0xff]]);
    expect(esp).toHaveLength(0);
    expect(stats).toEqual({ ikeIn: 2, espIn: 0, keepalivesIn: 0, runts: 0 });
  });

  it('on the NAT-T port: the non-ESP marker means IKE (stripped), 0xFF a keepalive, fewer than 4 octets a runt, anything else ESP', () => {
    const { stats, ike, esp, demux } = setup();
    demux.receive(withNonEspMarker(Uint8Array.of(9, 8, 7)), nat, peer); // RFC 3948 §2.2
    demux.receive(Uint8Array.of(0xff), nat, peer); // §2.3
    demux.receive(Uint8Array.of(0, 0, 0), nat, peer);
    demux.receive(Uint8Array.of(0, 0, 1, 0, 0, 0, 0, 1), nat, peer); // SPI 256, sequence number 1 (§2.1)
    expect(ike).toEqual([{ bytes: [9, 8, 7], local: nat }]);
    expect(esp).toEqual([{ bytes: [0, 0, 1, 0, 0, 0, 0, 1], remote: peer }]);
    expect(stats).toEqual({ ikeIn: 1, espIn: 1, keepalivesIn: 1, runts: 1 });
  });

  it('ESP without a registered receiver is counted and dropped; the marker is four zero octets', () => {
    const { stats, esp, demux } = setup();
    demux.esp = undefined;
    demux.receive(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 1), nat, peer);
    expect(esp).toHaveLength(0);
    expect(stats.espIn).toBe(1);
    expect([...withNonEspMarker(Uint8Array.of(5))]).toEqual([0, 0, 0, 0, 5]);
    expect(NON_ESP_MARKER_LENGTH).toBe(4);
  });
});

describe('ESP transform of a negotiated encryption (and integrity) transform', () => {
  it('AES-GCM with 8, 12 and 16-octet ICVs (RFC 4106 §8.1) for 128 and 256-bit keys; ChaCha20-Poly1305 (RFC 7634)', () => {
    expect(espTransformFor(EncrId.AES_GCM_8, 128)).toEqual({ algorithm: 'aes-gcm-128', icvLength: 8 });
    expect(espTransformFor(EncrId.AES_GCM_12, 256)).toEqual({ algorithm: 'aes-gcm-256', icvLength: 12 });
    expect(espTransformFor(EncrId.AES_GCM_16, 128)).toEqual({ algorithm: 'aes-gcm-128', icvLength: 16 });
    expect(espTransformFor(EncrId.CHACHA20_POLY1305)).toEqual({ algorithm: 'chacha20-poly1305', icvLength: 16 });
    expect(espTransformFor(EncrId.CHACHA20_POLY1305, 256)).toEqual({ algorithm: 'chacha20-poly1305', icvLength: 16 });
  });

  it('AES-CBC with 128 and 256-bit keys and HMAC-SHA2 (RFC 3602, RFC 4868 §2.3)', () => {
    expect(espTransformFor(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)).toEqual({ algorithm: 'aes-cbc-128-hmac-sha2-256-128', icvLength: 16 });
    expect(espTransformFor(EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192)).toEqual({ algorithm: 'aes-cbc-256-hmac-sha2-384-192', icvLength: 24 });
    expect(espTransformFor(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_512_256)).toEqual({ algorithm: 'aes-cbc-128-hmac-sha2-512-256', icvLength: 32 });
    expect(espTransformFor(EncrId.AES_CBC, 192, IntegId.HMAC_SHA2_256_128)).toBeUndefined();
    expect(espTransformFor(EncrId.AES_CBC, 128, IntegId.HMAC_SHA1_96)).toBeUndefined();
    expect(espTransformFor(EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128)).toBeUndefined();
  });

  it('anything the data plane does not implement has no ESP transform', () => {
    expect(espTransformFor(EncrId.AES_GCM_16, 192)).toBeUndefined();
    expect(espTransformFor(EncrId.AES_GCM_16)).toBeUndefined();
    expect(espTransformFor(EncrId.CHACHA20_POLY1305, 128)).toBeUndefined();
    expect(espTransformFor(EncrId.AES_CBC, 128)).toBeUndefined();
  });
});
