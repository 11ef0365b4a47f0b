import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigError, configFromObject, connectionFromObject, defaultGatewayConfig, findConnection, loadConfigFile, parseConfig,
  type ConnectionConfig, type GatewayConfig,
} from '../control/config/index.js';
import { formatDuration, parseDuration, tryParseDuration } from '../control/config/duration.js';
import { formatIdentity, identityMatches, parseIdentity } from '../control/ike/identity.js';
import { DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, formatProposal, parseEspProposal, parseIkeProposal } from '../control/config/proposal.js';
import { IdType } from '../control/wire/constants.js';

const examples = fileURLToPath(new URL('../examples/', import.meta.url));
const PSK = 'correct horse battery staple';
const PSK_YAML = `psk: "${PSK}"`;

let dir: string;
let ecKeyPem: string;
let ecPubPem: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ikeclone-config-'));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  ecKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  ecPubPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  mkdirSync(join(dir, 'keys'));
  mkdirSync(join(dir, 'keylog'));
  writeFileSync(join(dir, 'keys', 'gw.key.pem'), ecKeyPem);
  writeFileSync(join(dir, 'keys', 'peer.pub.pem'), ecPubPem);
  writeFileSync(join(dir, 'keys', 'moon.key.pem'), MOON_KEY);
  writeFileSync(join(dir, 'keys', 'moon.cert.pem'), MOON_CERT);
  writeFileSync(join(dir, 'keys', 'not-pem.txt'), 'hello\n');
  writeFileSync(join(dir, 'peer.psk'), `${PSK}\n`);
  writeFileSync(join(dir, 'short.psk'), 'short\n');
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Parse text as if it were the file <dir>/name (relative paths resolve against dir). */
function parseIn(text: string, name = 'ikeclone.yaml'): GatewayConfig {
  return parseConfig(text, join(dir, name));
}

function configError(text: string, name = 'bad.yaml'): ConfigError {
  try {
    parseIn(text, name);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

/** The first problem must be at `path`, on `line`, and mention `what`; the message line says so too. */
function expectProblem(text: string, path: string, line: number | undefined, what: RegExp, expected?: RegExp): ConfigError {
  const e = configError(text);
  expect({ path: e.path, line: e.line }).toEqual({ path, line });
  expect(e.problems[0]!.problem).toMatch(what);
  if (expected) expect(e.expected).toMatch(expected);
  const file = join(dir, 'bad.yaml');
  expect(e.message.split('\n')[0]).toBe(`${file}${line === undefined ? '' : `:${line}`}: ${path || '(top level)'}: ${e.problems[0]!.problem}; expected ${e.expected}`);
  return e;
}

function only(c: GatewayConfig): ConnectionConfig {
  expect(c.connections).toHaveLength(1);
  return c.connections[0]!;
}

// ---------------------------------------------------------------------------

describe('durations', () => {
  it.each([
    ['500ms', 500], ['30s', 30_000], ['10m', 600_000], ['4h', 14_400_000], ['1d', 86_400_000],
    ['30', 30_000], ['1.5s', 1500], ['0', 0], [' 2h ', 7_200_000], ['1 m', 60_000],
  ])('%j -> %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('numbers are seconds', () => {
    expect(parseDuration(30)).toBe(30_000);
    expect(parseDuration(0.25)).toBe(250);
    expect(parseDuration(0)).toBe(0);
  });

  it.each(['', 'abc', '5x', '-1s', '1h30m', 's', '1.5.2s', '1S', '0.0001s'])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow(RangeError);
    expect(tryParseDuration(text).ok).toBe(false);
  });

  it('rejects negative, non-finite and non-numeric input', () => {
    expect(() => parseDuration(-1)).toThrow(/negative/);
    expect(() => parseDuration(Infinity)).toThrow(RangeError);
    expect(tryParseDuration(null)).toEqual({ ok: false, error: expect.stringMatching(/string or a number/) });
    expect(tryParseDuration(true).ok).toBe(false);
    expect(tryParseDuration(1e300).ok).toBe(false);
  });

  it('formats in the largest exact unit and parses back', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(86_400_000)).toBe('1d');
    expect(formatDuration(5_400_000)).toBe('90m');
    expect(formatDuration(14_400_000)).toBe('4h');
    expect(formatDuration(1500)).toBe('1500ms');
    expect(formatDuration(45_000)).toBe('45s');
    for (const ms of [1, 999, 1000, 61_000, 3_600_000, 90_061_001, 172_800_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(() => formatDuration(-5)).toThrow(RangeError);
    expect(() => formatDuration(1.5)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------

describe('valid configurations', () => {
  it('an empty mapping is the default configuration', () => {
    const c = parseIn('{}');
    expect(c).toEqual(defaultGatewayConfig());
    expect(c.dataplane).toEqual({ workers: availableParallelism(), workersAuto: true });
    expect(c.listen).toEqual({ addresses: ['0.0.0.0'], port: 500, natPort: 4500 });
    expect(c.limits).toEqual({ halfOpenCookieThreshold: 32, halfOpenMax: 1024, halfOpenPerSource: 5, childSasPerPeer: 64, ikeSasPerPeer: 16 });
    expect(c.retransmit).toEqual({ timeout: 1000, base: 1.8, tries: 5, maxTimeout: 30_000 });
    expect(c.keylog).toBeUndefined();
    expect(parseIn('# a comment\n{}\n')).toEqual(defaultGatewayConfig());
  });

  it('examples/gateway.yaml parses', () => {
    const c = loadConfigFile(join(examples, 'gateway.yaml'));
    expect(c.file).toBe(join(examples, 'gateway.yaml'));
    expect(c.listen.addresses).toEqual(['0.0.0.0', '::']);
    const conn = findConnection(c, 'clients')!;
    expect(conn.remoteAddrs).toEqual([]);
    expect(conn.localAddrs).toEqual([]);
    expect(conn.ike.map((p) => formatProposal(p.transforms))).toEqual([
      'AES_GCM_16_256/AES_GCM_16_128/PRF_HMAC_SHA2_256/PRF_HMAC_SHA2_384/CURVE_25519/ECP_256',
      'AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048',
    ]);
    expect(formatIdentity(conn.local.id as never)).toBe('gw.example.org');
    expect(conn.remote.id).not.toBe('any');
    expect(identityMatches(conn.remote.id, parseId('laptop.clients.example.org'))).toBe(true);
    expect(new TextDecoder().decode(conn.psk)).toBe('example-psk-change-me-before-use');
    expect(conn.pools).toEqual([{ start: '10.9.0.0', end: '10.9.0.255', family: 4, cidr: '10.9.0.0/24' }]);
    expect(conn.dpdDelay).toBe(30_000);
    expect(conn.overTime).toBe(1_440_000);
    const lan = conn.children[0]!;
    expect(lan.name).toBe('lan');
    expect(lan.remoteTs).toEqual(['dynamic']);
    expect(lan.esp.map((p) => formatProposal(p.transforms))).toEqual([
      'AES_GCM_16_256/AES_GCM_16_128/NO_EXT_SEQ', 'CHACHA20_POLY1305/NO_EXT_SEQ',
    ]);
  });

  it('examples/client.yaml parses and clones once per worker', () => {
    const c = loadConfigFile(join(examples, 'client.yaml'));
    const home = findConnection(c, 'home')!;
    expect(home.remoteAddrs).toEqual(['192.0.2.1']);
    expect(home.clone).toEqual({ supported: true, per: 'worker', count: c.dataplane.workers, nics: [] });
    expect(home.vips).toEqual(['0.0.0.0']);
    expect(home.startAction).toBe('start');
    expect(formatIdentity(home.remote.id as never)).toBe('gw.example.org');
    // The client's PSK is the gateway's.
    const gw = findConnection(loadConfigFile(join(examples, 'gateway.yaml')), 'clients')!;
    expect(home.psk).toEqual(gw.psk);
    expect(home.children[0]!.localTs).toEqual(['dynamic']);
    expect(home.children[0]!.remoteTs).toEqual([{ start: '10.1.0.0', end: '10.1.255.255', protocol: 0, startPort: 0, endPort: 65535 }]);
  });

  it('a complete file is normalised field by field', () => {
    const c = parseIn(`
log:
  level: debug
keylog: keylog
listen:
  address: [192.0.2.1, "2001:DB8::1"]
  port: 1500
  natPort: 14500
limits:
  halfOpenCookieThreshold: 10
  halfOpenMax: 20
  halfOpenPerSource: 3
  childSasPerPeer: 8
  ikeSasPerPeer: 4
retransmit:
  timeout: 500ms
  base: 2
  tries: 3
  maxTimeout: 1m
dataplane:
  workers: 3
connections:
  site-a:
    local_addrs: [192.0.2.1]
    remote_addrs: [198.51.100.7, peer.example.net]
    remote_port: 4501
    ike: [aes128gcm16-prfsha256-ecp256, aes256-sha384-modp3072]
    local:
      auth: pubkey
      key: keys/gw.key.pem
    remote:
      id: "C=CH, O=Example, CN=*"
      auth: pubkey
      pubkey: keys/peer.pub.pem
    mobike: no
    encap: yes
    clone: { per: nic, nics: [10.0.1.2, 10.0.2.2] }
    vips: [request, "::", 10.9.0.7]
    pools: [10.9.0.0/24, 10.8.0.10-10.8.0.20, "2001:db8:9::/64"]
    start_action: start
    dpd_delay: 10s
    rekey_time: 2h
    reauth_time: 1d
    over_time: 1h
    rand_time: 5m
    children:
      net:
        local_ts: [10.1.0.0/24, 10.1.1.1, dynamic]
        remote_ts: ["10.2.0.0/16[tcp/443]", "10.3.0.1-10.3.0.9[udp/500-501]", "::/0[icmpv6]", "0.0.0.0/0[47]"]
        esp: [aes256gcm16-x25519-modpnone-esn, default]
        mode: tunnel
        rekey_time: 20m
        life_time: 30m
        rand_time: 1m
        rekey_bytes: 500m
        life_bytes: 1g
        rekey_packets: 1000000
        life_packets: 2000000
        start_action: start
        replay_window: 64
      mgmt: {}
`);
    expect(c.log.level).toBe('debug');
    expect(c.keylog).toBe(join(dir, 'keylog'));
    expect(c.listen).toEqual({ addresses: ['192.0.2.1', '2001:db8::1'], port: 1500, natPort: 14500 });
    expect(c.limits).toEqual({ halfOpenCookieThreshold: 10, halfOpenMax: 20, halfOpenPerSource: 3, childSasPerPeer: 8, ikeSasPerPeer: 4 });
    expect(c.retransmit).toEqual({ timeout: 500, base: 2, tries: 3, maxTimeout: 60_000 });
    expect(c.dataplane).toEqual({ workers: 3, workersAuto: false });
    const a = only(c);
    expect(a.name).toBe('site-a');
    expect(a.localAddrs).toEqual(['192.0.2.1']);
    expect(a.remoteAddrs).toEqual(['198.51.100.7', 'peer.example.net']);
    expect(a.remotePort).toBe(4501);
    expect(a.ike).toEqual([unwrap(parseIkeProposal('aes128gcm16-prfsha256-ecp256')), unwrap(parseIkeProposal('aes256-sha384-modp3072'))]);
    // No local.id and no certificate: the single local address is our identity.
    expect(a.local).toEqual({ id: { idType: IdType.IPV4_ADDR, data: Uint8Array.of(192, 0, 2, 1) }, auth: 'pubkey', key: ecKeyPem });
    expect(a.remote.auth).toBe('pubkey');
    expect(a.remote.pubkey).toBe(ecPubPem);
    expect(a.remote.id).toEqual(parseId('C=CH, O=Example, CN=*'));
    expect(a.psk).toBeUndefined();
    expect(a.mobike).toBe(false);
    expect(a.encap).toBe(true);
    expect(a.clone).toEqual({ supported: true, per: 'nic', count: 2, nics: ['10.0.1.2', '10.0.2.2'] });
    expect(a.vips).toEqual(['0.0.0.0', '::', '10.9.0.7']);
    expect(a.pools).toEqual([
      { start: '10.9.0.0', end: '10.9.0.255', family: 4, cidr: '10.9.0.0/24' },
      { start: '10.8.0.10', end: '10.8.0.20', family: 4 },
      { start: '2001:db8:9::', end: '2001:db8:9:0:ffff:ffff:ffff:ffff', family: 6, cidr: '2001:db8:9::/64' },
    ]);
    expect(a.startAction).toBe('start');
    expect([a.dpdDelay, a.rekeyTime, a.reauthTime, a.overTime, a.randTime]).toEqual([10_000, 7_200_000, 86_400_000, 3_600_000, 300_000]);
    expect(a.children.map((ch) => ch.name)).toEqual(['net', 'mgmt']);
    const net = a.children[0]!;
    expect(net.localTs).toEqual([
      { start: '10.1.0.0', end: '10.1.0.255', protocol: 0, startPort: 0, endPort: 65535 },
      { start: '10.1.1.1', end: '10.1.1.1', protocol: 0, startPort: 0, endPort: 65535 },
      'dynamic',
    ]);
    expect(net.remoteTs).toEqual([
      { start: '10.2.0.0', end: '10.2.255.255', protocol: 6, startPort: 443, endPort: 443 },
      { start: '10.3.0.1', end: '10.3.0.9', protocol: 17, startPort: 500, endPort: 501 },
      { start: '::', end: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', protocol: 58, startPort: 0, endPort: 65535 },
      { start: '0.0.0.0', end: '255.255.255.255', protocol: 47, startPort: 0, endPort: 65535 },
    ]);
    expect(net.esp).toEqual([
      unwrap(parseEspProposal('aes256gcm16-x25519-modpnone-esn')),
      ...DEFAULT_ESP_PROPOSALS.map((s) => unwrap(parseEspProposal(s))),
    ]);
    expect(net).toMatchObject({
      mode: 'tunnel', rekeyTime: 1_200_000, lifeTime: 1_800_000, randTime: 60_000,
      rekeyBytes: 500 * 1024 ** 2, lifeBytes: 1024 ** 3, rekeyPackets: 1_000_000, lifePackets: 2_000_000,
      startAction: 'start', replayWindow: 64,
    });
    // An empty child takes every default.
    expect(a.children[1]).toEqual({
      name: 'mgmt', localTs: ['dynamic'], remoteTs: ['dynamic'],
      esp: DEFAULT_ESP_PROPOSALS.map((s) => unwrap(parseEspProposal(s))), mode: 'tunnel',
      rekeyTime: 3_600_000, lifeTime: 3_960_000, randTime: 360_000,
      rekeyBytes: 0, lifeBytes: 0, rekeyPackets: 0, lifePackets: 0, startAction: 'none', replayWindow: 1024,
      // RFC 9611: per-resource Child SAs off (RFC 9611 §7), at most one per worker (dataplane.workers: 3).
      perCpuSas: false, perCpuSasMax: 3,
    });
  });

  it('connection defaults: default proposals, %any peer, no cloning, strongSwan lifetimes', () => {
    const a = only(parseIn(`connections:\n  c:\n    ${PSK_YAML}\n`));
    expect(a).toEqual({
      name: 'c', localAddrs: [], remoteAddrs: [], remotePort: 500,
      ike: DEFAULT_IKE_PROPOSALS.map((s) => unwrap(parseIkeProposal(s))),
      local: { id: 'any', auth: 'psk' }, remote: { id: 'any', auth: 'psk' },
      psk: new TextEncoder().encode(PSK),
      mobike: true, encap: false, clone: { supported: true, per: 'none', count: 1, nics: [] }, vips: [], pools: [],
      // RFC 5685: follow redirects (at most 5 in 300 s, §7), redirect no one.
      redirect: { follow: true, maxRedirects: 5, loopPeriod: 300_000, to: [], at: 'init' },
      startAction: 'none', dpdDelay: 0, rekeyTime: 14_400_000, reauthTime: 0, overTime: 1_440_000, randTime: 1_440_000,
      children: [],
    } satisfies ConnectionConfig);
  });

  it("swanctl habits: comma-separated lists, yes/no, 'default' proposals, seconds as numbers", () => {
    const a = only(parseIn(`
connections:
  c:
    remote_addrs: 198.51.100.7, 198.51.100.8
    ike: aes256gcm16-prfsha256-x25519, default
    mobike: no
    rekey_time: 3600
    ${PSK_YAML}
    children:
      net:
        local_ts: 10.1.0.0/24,10.1.1.0/24
        esp: aes128gcm16
`));
    expect(a.remoteAddrs).toEqual(['198.51.100.7', '198.51.100.8']);
    expect(a.ike).toHaveLength(1 + DEFAULT_IKE_PROPOSALS.length);
    expect(a.mobike).toBe(false);
    expect(a.rekeyTime).toBe(3_600_000);
    expect(a.children[0]!.localTs).toHaveLength(2);
  });

  it('YAML anchors and merge keys share settings between connections; x- keys hold them', () => {
    const c = parseIn(`
x-common: &common
  ike: [aes256gcm16-prfsha384-ecp384]
  ${PSK_YAML}
  dpd_delay: 15s
connections:
  a:
    <<: *common
    remote_addrs: 198.51.100.1
  b:
    <<: *common
    remote_addrs: 198.51.100.2
    dpd_delay: 5s
`);
    const [a, b] = c.connections;
    expect(a!.ike).toEqual(b!.ike);
    expect(formatProposal(a!.ike[0]!.transforms)).toBe('AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384');
    expect([a!.dpdDelay, b!.dpdDelay]).toEqual([15_000, 5_000]);
    expect(a!.psk).toEqual(b!.psk);
    expect(b!.remoteAddrs).toEqual(['198.51.100.2']);
  });

  it('PSKs in text, hex, base64 and from a file', () => {
    const hex = Buffer.from(PSK).toString('hex');
    const b64 = Buffer.from(PSK).toString('base64');
    for (const psk of [`psk: "${PSK}"`, `psk: "0x${hex}"`, `psk: "0X${hex.toUpperCase()}"`, `psk: "0s${b64}"`, 'psk_file: peer.psk', `psk: !!binary ${b64}`]) {
      const a = only(parseIn(`connections:\n  c:\n    ${psk}\n`));
      expect(new TextDecoder().decode(a.psk)).toBe(PSK);
    }
  });

  it('local identity: explicit, else certificate subject, else the single local address, else any', () => {
    const cert = only(parseIn(`
connections:
  c:
    local: { auth: pubkey, key: keys/moon.key.pem, cert: keys/moon.cert.pem }
    remote: { auth: psk }
    ${PSK_YAML}
`));
    expect(formatIdentity(cert.local.id as never)).toBe('C=CH, O=strongSwan, CN=moon.strongswan.org');
    expect(cert.local.cert).toBe(MOON_CERT);
    expect(cert.local.key).toBe(MOON_KEY);
    expect(cert.remote.auth).toBe('psk');
    const explicit = only(parseIn(`connections:\n  c:\n    local: { id: "@#c0ffee" }\n    ${PSK_YAML}\n`));
    expect(explicit.local.id).toEqual({ idType: IdType.KEY_ID, data: Uint8Array.of(0xc0, 0xff, 0xee) });
    const v6 = only(parseIn(`connections:\n  c:\n    local_addrs: "2001:db8::5"\n    ${PSK_YAML}\n`));
    expect(formatIdentity(v6.local.id as never)).toBe('2001:db8::5');
    const two = only(parseIn(`connections:\n  c:\n    local_addrs: [192.0.2.1, 192.0.2.2]\n    ${PSK_YAML}\n`));
    expect(two.local.id).toBe('any');
  });

  it('PEM text inline instead of a path', () => {
    const a = connectionFromObject({ local: { key: ecKeyPem }, remote: { pubkey: MOON_CERT } });
    expect(a.local).toEqual({ id: 'any', auth: 'pubkey', key: ecKeyPem });
    expect(a.remote).toEqual({ id: 'any', auth: 'pubkey', pubkey: MOON_CERT });
  });

  it('over_time as a percentage of the longer lifetime; rand_time defaults to over_time', () => {
    const a = only(parseIn(`connections:\n  c:\n    rekey_time: 1h\n    reauth_time: 10h\n    over_time: 5%\n    ${PSK_YAML}\n`));
    expect(a.overTime).toBe(1_800_000);
    expect(a.randTime).toBe(1_800_000);
  });

  it('connectionFromObject: the library path with the same rules', () => {
    const a = connectionFromObject({
      remote_addrs: ['192.0.2.1'],
      psk: new TextEncoder().encode(PSK),
      clone: { per: 'worker' },
      children: { net: { remote_ts: ['10.0.0.0/8'] } },
    }, { name: 'lib', workers: 6 });
    expect(a.name).toBe('lib');
    expect(a.clone).toEqual({ supported: true, per: 'worker', count: 6, nics: [] });
    expect(a.local.auth).toBe('psk');
    expect(a.children[0]!.remoteTs[0]).toEqual({ start: '10.0.0.0', end: '10.255.255.255', protocol: 0, startPort: 0, endPort: 65535 });

    try {
      connectionFromObject({ remote_addrs: ['192.0.2.1'], psk: PSK, children: { net: { esp: ['aes128gcm16', 'bogus'] } } }, { name: 'lib' });
      throw new Error('expected a ConfigError');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const ce = e as ConfigError;
      expect(ce.file).toBe('<object>');
      expect(ce.path).toBe('connections.lib.children.net.esp[1]');
      expect(ce.line).toBeUndefined();
      expect(ce.message).toMatch(/^<object>: connections\.lib\.children\.net\.esp\[1\]: unknown algorithm keyword 'bogus'/);
    }
    expect(() => connectionFromObject({ psk: PSK }, { name: 'has space' })).toThrow(ConfigError);
    expect(() => connectionFromObject({ psk: PSK }, { workers: 0 })).toThrow(RangeError);
  });

  it('configFromObject validates a whole configuration object', () => {
    const c = configFromObject({ dataplane: { workers: 2 }, connections: { a: { psk: PSK, clone: { per: 'worker' } } } });
    expect(c.connections[0]!.clone.count).toBe(2);
    expect(() => configFromObject({ dataplane: { workers: 'many' } })).toThrow(/dataplane\.workers: got 'many'; expected auto or an integer/);
    expect(() => configFromObject([1, 2])).toThrow(/\(top level\): got a list; expected a mapping/);
  });

  it('a TUN device takes its MTU, queues and offloads from the dataplane section (offloads on unless turned off)', () => {
    expect(configFromObject({ dataplane: { workers: 1, tun: 'ikc0' } }).dataplane.tun).toEqual({ name: 'ikc0', mtu: 1400, queues: 1, offload: true });
    const c = configFromObject({ dataplane: { workers: 1, tun: 'ikc1', tun_mtu: 1300, tun_queues: 2, tun_offload: false } });
    expect(c.dataplane.tun).toEqual({ name: 'ikc1', mtu: 1300, queues: 2, offload: false });
    expect(configFromObject({ dataplane: { workers: 1 } }).dataplane.tun).toBeUndefined();
    expect(configFromObject({ dataplane: { workers: 1, tun: 'ikc0', tun_offload: 'no' } }).dataplane.tun!.offload).toBe(false);
    expect(() => configFromObject({ dataplane: { tun: 'ikc0', tun_offload: 'off' } })).toThrow(/dataplane\.tun_offload: got 'off'; expected true or false/);
  });

  it('dataplane.output: the workers write their own output unless io-thread is asked for', () => {
    expect(configFromObject({ dataplane: { workers: 1, tun: 'ikc0' } }).dataplane.output).toBeUndefined();
    expect(configFromObject({ dataplane: { workers: 1, tun: 'ikc0', output: 'workers' } }).dataplane.output).toBeUndefined();
    expect(configFromObject({ dataplane: { workers: 1, tun: 'ikc0', output: 'io-thread' } }).dataplane.output).toBe('io-thread');
    expect(() => configFromObject({ dataplane: { tun: 'ikc0', output: 'main' } })).toThrow(/dataplane\.output: got 'main'; expected/);
  });
});

// ---------------------------------------------------------------------------

describe('invalid configurations: path, line and what was expected', () => {
  it('unknown top-level key, with a suggestion and the valid keys', () => {
    const e = expectProblem('log:\n  level: info\nconnection:\n  a: {}\n', 'connection', 3, /unknown key 'connection' \(did you mean 'connections'\?\)/, /one of log, keylog, listen/);
    expect(e.expected).toContain('connections');
  });

  it('unknown key inside a connection', () => {
    expectProblem(`connections:\n  site-a:\n    ${PSK_YAML}\n    remote_addr: 192.0.2.1\n`, 'connections.site-a.remote_addr', 4, /unknown key 'remote_addr' \(did you mean 'remote_addrs'\?\)/, /remote_addrs/);
  });

  it('unknown key inside a child and inside an endpoint', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        esp_proposals: [aes128gcm16]\n`, 'connections.a.children.net.esp_proposals', 6, /unknown key/, /local_ts, remote_ts, esp/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote:\n      key: x.pem\n`, 'connections.a.remote.key', 5, /unknown key 'key'/, /id, auth, pubkey/);
  });

  it('wrong type: a string where a port is expected', () => {
    expectProblem('listen:\n  address: 0.0.0.0\n  port: "five hundred"\n', 'listen.port', 3, /got 'five hundred'/, /integer from 1 to 65535/);
  });

  it('wrong type: connections as a list, a section as a scalar', () => {
    expectProblem('connections:\n  - a\n  - b\n', 'connections', 1, /got a list/, /mapping of connection names/);
    expectProblem('limits: 5\n', 'limits', 1, /got 5/, /mapping with halfOpenCookieThreshold/);
  });

  it('a bad ESP proposal names the list item', () => {
    const text = `connections:\n  site-a:\n    ${PSK_YAML}\n    children:\n      net:\n        esp:\n          - aes128gcm16-blowfish\n`;
    const e = expectProblem(text, 'connections.site-a.children.net.esp[0]', 7, /unknown algorithm keyword 'blowfish'/, /ESP proposals/);
    expect(e.message).toContain('valid keywords are encryption: ');
  });

  it('a bad IKE proposal: AEAD with integrity', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    ike: [aes256gcm16-prfsha256-x25519, aes256gcm16-sha256-x25519]\n`, 'connections.a.ike[1]', 4, /AEAD proposals must not have integrity/);
  });

  it('start_action: start without remote_addrs', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    start_action: start\n`, 'connections.a.remote_addrs', 2, /missing, but start_action is start/, /peer to initiate to/);
  });

  it('a child with start_action: start and remote_addrs %any', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: "%any"\n    children:\n      net:\n        start_action: start\n`, 'connections.a.remote_addrs', 4, /%any, but children\.net\.start_action is start/);
  });

  it('psk missing while a side authenticates with psk', () => {
    expectProblem('connections:\n  a:\n    remote_addrs: 192.0.2.1\n    local: { auth: psk }\n    remote: { auth: pubkey, pubkey: keys/peer.pub.pem }\n', 'connections.a.psk', 2, /missing, but local\.auth is psk/, /psk or psk_file/);
  });

  it('psk too short', () => {
    expectProblem('connections:\n  a:\n    psk: "hunter2"\n', 'connections.a.psk', 3, /only 7 octets/, /at least 16 octets/);
    expectProblem('connections:\n  a:\n    psk_file: short.psk\n', 'connections.a.psk_file', 3, /holds only 5 octets/, /at least 16 octets/);
  });

  it('psk given although both sides use public keys', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    local: { auth: pubkey, key: keys/gw.key.pem }\n    remote: { auth: pubkey, pubkey: keys/peer.pub.pem }\n`, 'connections.a.psk', 3, /neither local\.auth nor remote\.auth is psk/);
  });

  it('psk and psk_file together', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    psk_file: peer.psk\n`, 'connections.a.psk_file', 4, /both psk and psk_file/);
  });

  it('key file missing', () => {
    const e = expectProblem('connections:\n  a:\n    local: { auth: pubkey, key: keys/nope.pem }\n    remote: { pubkey: keys/peer.pub.pem }\n', 'connections.a.local.key', 3, /cannot read .*keys\/nope\.pem \(ENOENT\)/, /PEM private key/);
    expect(e.problems[0]!.problem).toContain(join(dir, 'keys', 'nope.pem'));
  });

  it('key file that is not PEM, and a public key where a private key belongs', () => {
    expectProblem('connections:\n  a:\n    local:\n      key: keys/not-pem.txt\n    remote: { pubkey: keys/peer.pub.pem }\n', 'connections.a.local.key', 4, /not PEM/);
    expectProblem('connections:\n  a:\n    local:\n      key: keys/peer.pub.pem\n    remote: { pubkey: keys/peer.pub.pem }\n', 'connections.a.local.key', 4, /no usable private key/);
  });

  it('pubkey auth without the key or the peer key', () => {
    expectProblem('connections:\n  a:\n    remote_addrs: 192.0.2.1\n    remote: { pubkey: keys/peer.pub.pem }\n', 'connections.a.local.key', 2, /missing, but local\.auth is pubkey/);
    expectProblem('connections:\n  a:\n    local: { key: keys/gw.key.pem }\n    remote:\n      id: peer.example.org\n', 'connections.a.remote.pubkey', 4, /missing, but remote\.auth is pubkey/);
  });

  it('a certificate that does not belong to the key', () => {
    expectProblem('connections:\n  a:\n    local:\n      key: keys/gw.key.pem\n      cert: keys/moon.cert.pem\n    remote: { pubkey: keys/peer.pub.pem }\n', 'connections.a.local.cert', 5, /not for local\.key/);
  });

  it('clone per: nic without nics', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    clone:\n      per: nic\n`, 'connections.a.clone.nics', 4, /missing, but clone\.per is nic/, /local address of each NIC/);
  });

  it('clone nics with per: worker, count with per: none, a bad per', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    clone: { per: worker, nics: [10.0.0.1] }\n`, 'connections.a.clone.nics', 4, /set, but clone\.per is worker/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    clone:\n      count: 4\n`, 'connections.a.clone.count', 5, /set, but clone\.per is none/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    clone:\n      per: core\n`, 'connections.a.clone.per', 5, /got 'core'/, /one of none, worker, nic/);
  });

  it('a bad duration', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    rekey_time: 4hours\n`, 'connections.a.rekey_time', 4, /'4hours' is not a duration/, /500ms, 30s, 10m, 4h, 1d/);
  });

  it('a bad traffic selector names its index', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        remote_ts:\n          - 10.2.0.0/16\n          - 10.3.0.0/33\n`, 'connections.a.children.net.remote_ts[1]', 8, /'10\.3\.0\.0\/33' is not an address or prefix/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        remote_ts: ["10.2.0.0/16[tcp/99999]"]\n`, 'connections.a.children.net.remote_ts[0]', 6, /not a port range/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        remote_ts: ["10.2.0.0/16[/80]"]\n`, 'connections.a.children.net.remote_ts[0]', 6, /unknown protocol/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        local_ts: 10.0.0.9-10.0.0.1\n`, 'connections.a.children.net.local_ts', 6, /ends before it starts/);
  });

  it('%any as our own identity, a pattern as our own identity, a bad remote identity', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    local:\n      id: "%any"\n`, 'connections.a.local.id', 5, /names no one/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    local:\n      id: "*.example.org"\n`, 'connections.a.local.id', 5, /pattern/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote:\n      id: "C=CH, XX=y"\n`, 'connections.a.remote.id', 5, /unknown attribute 'XX'/, /or %any/);
  });

  it('replay window outside the data plane range', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        replay_window: 1000\n`, 'connections.a.children.net.replay_window', 6, /got 1000/, /power of two from 64 to 4096/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        replay_window: 8192\n`, 'connections.a.children.net.replay_window', 6, /got 8192/);
  });

  it('child lifetimes that contradict each other', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        rekey_time: 1h\n        life_time: 30m\n`, 'connections.a.children.net.life_time', 7, /not longer than rekey_time/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net:\n        rekey_bytes: 1000\n        life_bytes: 10\n`, 'connections.a.children.net.life_bytes', 7, /not larger than rekey_bytes/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    rekey_time: 1h\n    rand_time: 2h\n`, 'connections.a.rand_time', 5, /not shorter than rekey_time/);
  });

  it('an invalid connection name', () => {
    expectProblem(`connections:\n  "site a":\n    ${PSK_YAML}\n`, 'connections.site a', 2, /invalid name 'site a'/, /letters, digits/);
  });

  it('limits that contradict each other, equal ports, a bad log level', () => {
    expectProblem('limits:\n  halfOpenCookieThreshold: 2000\n', 'limits.halfOpenCookieThreshold', 2, /above halfOpenMax \(1024\)/);
    // natPort is not written: the line is the section's.
    expectProblem('listen:\n  port: 4500\n', 'listen.natPort', 1, /natPort equals port/);
    expectProblem('log:\n  level: verbose\n', 'log.level', 2, /got 'verbose'/, /fatal, error, warn, info, debug, trace, silent/);
    expectProblem('retransmit:\n  timeout: 10s\n  maxTimeout: 5s\n', 'retransmit.maxTimeout', 3, /below timeout/);
  });

  it('addresses that are not addresses', () => {
    expectProblem('listen:\n  address: [0.0.0.0, localhost]\n', 'listen.address[1]', 2, /'localhost' is not an IP address/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs:\n      - 192.0.2.300\n`, 'connections.a.remote_addrs[0]', 5, /neither an IP address nor a host name/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: ["%any", 192.0.2.1]\n`, 'connections.a.remote_addrs', 4, /%any together with addresses/);
  });

  it('keylog that is not a directory', () => {
    expectProblem('keylog: peer.psk\n', 'keylog', 1, /is not a directory/);
    expectProblem('keylog: missing-dir\n', 'keylog', 1, /ENOENT/);
  });

  it('YAML syntax errors and duplicate keys carry their line', () => {
    expectProblem('log:\n  level: info\nlisten: [0.0.0.0\n', '', 3, /YAML syntax/, /valid YAML/);
    expectProblem('log:\n  level: info\nlog:\n  level: debug\n', '', 3, /YAML syntax: Map keys must be unique/);
  });

  it('every problem is reported, in file order', () => {
    const e = configError(`
limits:
  ikeSasPerPeer: 0
foo: 1
connections:
  a:
    ${PSK_YAML}
    mobike: maybe
`);
    expect(e.problems.map((p) => [p.path, p.line])).toEqual([
      ['limits.ikeSasPerPeer', 3],
      ['foo', 4],
      ['connections.a.mobike', 8],
    ]);
    expect(e.message.split('\n')).toHaveLength(3);
    expect(e.message.split('\n')[2]).toBe(`${join(dir, 'bad.yaml')}:8: connections.a.mobike: got 'maybe'; expected true or false (or yes / no)`);
  });

  it('loadConfigFile on a missing file', () => {
    const missing = join(dir, 'absent.yaml');
    try {
      loadConfigFile(missing);
      throw new Error('expected a ConfigError');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).message).toBe(`${missing}: (top level): cannot read the file (ENOENT); expected a readable YAML file`);
    }
  });

  it('the message of an error with a line has the documented shape', () => {
    const e = configError('dataplane:\n  workers: 0\n');
    expect(e.message).toBe(`${join(dir, 'bad.yaml')}:2: dataplane.workers: got 0; expected auto or an integer from 1 to 1024`);
    expect(e).toMatchObject({ file: join(dir, 'bad.yaml'), path: 'dataplane.workers', line: 2, expected: 'auto or an integer from 1 to 1024' });
  });
});

// ---------------------------------------------------------------------------

function parseId(s: string) {
  const r = parseIdentity(s);
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

// Throwaway test identity (openssl req -x509 -subj "/C=CH/O=strongSwan/CN=moon.strongswan.org", P-256).
const MOON_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxTLugbgUOT1rRQCQ
wOFojbzqmmUmR1jFjv1vdz7uA86hRANCAATHnxixCF9DffvReS79dm9rzVPF8SVW
M2tvoF0zf8yU8aSTTBvBjO/3e3FtwIrYBuKJSlRMhGVd5Ck33OGdVlEv
-----END PRIVATE KEY-----
`;
const MOON_CERT = `-----BEGIN CERTIFICATE-----
MIIB1DCCAXugAwIBAgIUYGeW0IIO6oSX5ENGFWsv+/DpxJcwCgYIKoZIzj0EAwIw
QDELMAkGA1UEBhMCQ0gxEzARBgNVBAoMCnN0cm9uZ1N3YW4xHDAaBgNVBAMME21v
b24uc3Ryb25nc3dhbi5vcmcwHhcNMjYxMTIyMTcwNTM1WhcNMjYxMTIzMTcwNTM1
WjBAMQswCQYDVQQGEwJDSDETMBEGA1UECgwKc3Ryb25nU3dhbjEcMBoGA1UEAwwT
bW9vbi5zdHJvbmdzd2FuLm9yZzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMef
GLEIX0N9+9F5Lv12b2vNU8XxJVYza2+gXTN/zJTxpJNMG8GM7/d7cW3AitgG4olK
VEyEZV3kKTfc4Z1WUS+jUzBRMB0GA1UdDgQWBBS+OfzgTzL/JTZ9QpyOG9BC4D/4
2DAfBgNVHSMEGDAWgBS+OfzgTzL/JTZ9QpyOG9BC4D/42DAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0cAMEQCIH/+OS/hq1bxzPMVyRyyp/s6MVZr819NNXma
P49CGGzJAiBpQCV6NC4XQOSHGT88Mwh0LxIqq9A9Rg5eE63P0nt3XA==
-----END CERTIFICATE-----
`;

describe('clone.supported (RFC 7791 §5.1 switch)', () => {
  it('defaults to true, can be turned off, and cannot be off while cloning per worker or NIC', () => {
    const on = configFromObject({ connections: { a: { psk: PSK } } });
    expect(on.connections[0]!.clone.supported).toBe(true);
    const off = configFromObject({ connections: { a: { psk: PSK, clone: { supported: false } } } });
    expect(off.connections[0]!.clone).toEqual({ supported: false, per: 'none', count: 1, nics: [] });
    expect(() => configFromObject({ connections: { a: { psk: PSK, clone: { supported: false, per: 'worker' } } } })).toThrow(/clone\.per.*clone\.supported is false/);
  });
});

describe('long durations (timers chain past 2^31-1 ms, control/ike/clock.ts)', () => {
  it('lifetimes and retransmission caps of weeks parse to their full length', () => {
    const c = parseIn(`retransmit: { maxTimeout: 40d }\nconnections:\n  a:\n    ${PSK_YAML}\n    rekey_time: 30d\n    reauth_time: 60d\n    over_time: 2d\n    dpd_delay: 25d\n    keepalive: 26d\n    children:\n      net: { rekey_time: 30d, life_time: 31d }\n`);
    const day = 86_400_000;
    expect(c.retransmit.maxTimeout).toBe(40 * day);
    const a = only(c);
    expect(a).toMatchObject({ rekeyTime: 30 * day, reauthTime: 60 * day, overTime: 2 * day, dpdDelay: 25 * day, keepalive: 26 * day });
    expect(a.children[0]).toMatchObject({ rekeyTime: 30 * day, lifeTime: 31 * day });
    expect(a.rekeyTime).toBeGreaterThan(2 ** 31 - 1);
  });
});

describe('ESP proposals the data plane cannot install', () => {
  it('are refused with the keyword named, while IKE proposals may use them', () => {
    const child = (esp: string): string => `connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net: { esp: [${esp}] }\n`;
    expectProblem(child('aes256gcm16, aes192-sha256'), 'connections.a.children.net.esp[1]', 5,
      /^ESP proposal 'aes192-sha256' has 'aes192' \(AES_CBC_192\), which the data plane cannot run; ESP encryption it runs: aes128 aes aes256 /);
    expectProblem(child('aes128-sha1'), 'connections.a.children.net.esp[0]', 5, /has 'sha1' \(HMAC_SHA1_96\).*ESP integrity it runs: sha256/);
    expectProblem(child('aes192gcm16'), 'connections.a.children.net.esp[0]', 5, /has 'aes192gcm16' \(AES_GCM_16_192\)/);
    const ok = parseIn(`connections:\n  a:\n    ${PSK_YAML}\n    ike: [aes192-sha256-x25519]\n    children:\n      net: { esp: [aes256-sha256, aes128-sha512-esn] }\n`);
    expect(ok.connections[0]!.children[0]!.esp).toHaveLength(2);
  });
});

describe('empty lists where nothing would run', () => {
  const child = (opts: string): string => `connections:\n  a:\n    ${PSK_YAML}\n    children:\n      net: { ${opts} }\n`;

  it('ike: [] and esp: [] offer nothing and are rejected', () => {
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    ike: []\n`, 'connections.a.ike', 4, /^got an empty list$/, /at least one IKE proposal \(omit ike, or write default, for the defaults\)/);
    expectProblem(child('esp: []'), 'connections.a.children.net.esp', 5, /^got an empty list$/, /at least one ESP proposal/);
  });

  it('local_ts: [] and remote_ts: [] are rejected', () => {
    expectProblem(child('local_ts: []'), 'connections.a.children.net.local_ts', 5, /^got an empty list$/, /at least one traffic selector \(omit local_ts for dynamic\)/);
    expectProblem(child('remote_ts: []'), 'connections.a.children.net.remote_ts', 5, /^got an empty list$/, /omit remote_ts for dynamic/);
  });

  it('listen.address: [] is rejected', () => {
    expectProblem('listen:\n  address: []\n', 'listen.address', 2, /^got an empty list$/, /at least one IP address to listen on/);
  });

  it('the library path rejects them too', () => {
    expect(() => connectionFromObject({ psk: PSK, ike: [] })).toThrow(/connections\.default\.ike: got an empty list/);
    expect(() => connectionFromObject({ psk: PSK, children: { net: { esp: [] } } })).toThrow(/children\.net\.esp: got an empty list/);
  });

  it('lists where empty means something still accept []', () => {
    const a = only(parseIn(`connections:\n  a:\n    ${PSK_YAML}\n    local_addrs: []\n    remote_addrs: []\n    vips: []\n    pools: []\n`));
    expect(a).toMatchObject({ localAddrs: [], remoteAddrs: [], vips: [], pools: [] });
  });
});

describe('secrets stay out of configuration errors', () => {
  it('a PSK of the wrong type is described by its type, not its value', () => {
    const n = expectProblem(`connections:\n  a:\n    psk: 12345678901234567890123\n`, 'connections.a.psk', 3, /^got a number$/);
    expect(n.message).not.toMatch(/1\.23456|12345678/);
    const b = expectProblem(`connections:\n  a:\n    psk: true\n`, 'connections.a.psk', 3, /^got a boolean$/);
    expect(b.message).not.toMatch(/true/);
    expect(() => connectionFromObject({ psk: 98765432109876543210 })).toThrow(/psk: got a number;/);
    try {
      connectionFromObject({ psk: 98765432109876543210 });
    } catch (e) {
      expect((e as Error).message).not.toMatch(/98765|9\.87/);
    }
  });

  it('a private key of the wrong type is described by its type, not its value', () => {
    const e = expectProblem(`connections:\n  a:\n    local: { auth: pubkey, key: 31415926535897932 }\n    remote: { auth: pubkey, pubkey: keys/peer.pub.pem }\n`, 'connections.a.local.key', 3, /^got a number$/);
    expect(e.message).not.toMatch(/314159/);
  });
});

describe('liveness intervals', () => {
  it('dpd_delay and keepalive: 0 turns them off, otherwise at least 1s', () => {
    const conn = (opts: string): string => `connections:\n  a:\n    ${PSK_YAML}\n    ${opts}\n`;
    expectProblem(conn('dpd_delay: 1ms'), 'connections.a.dpd_delay', 4, /^dpd_delay of 1 ms is too short$/, /^0 \(off\) or at least 1s$/);
    expectProblem(conn('keepalive: 999ms'), 'connections.a.keepalive', 4, /^keepalive of 999 ms is too short$/, /^0 \(off\) or at least 1s$/);
    expectProblem(conn('keepalive: 0.5'), 'connections.a.keepalive', 4, /500 ms is too short/);
    expectProblem(conn('dpd_delay: soon'), 'connections.a.dpd_delay', 4, /'soon' is not a duration/);
    expect(only(parseIn(conn('dpd_delay: 0s'))).dpdDelay).toBe(0);
    expect(only(parseIn(conn('keepalive: 0'))).keepalive).toBe(0);
    expect(only(parseIn(conn('dpd_delay: 1s'))).dpdDelay).toBe(1000);
    expect(only(parseIn(conn('keepalive: 1000ms'))).keepalive).toBe(1000);
  });
});

describe('bounds on the file itself (architecture §4.6)', () => {
  it('a file over 16 MiB is refused from its size, before it is read', () => {
    const big = join(dir, 'big.yaml');
    // Sparse: 50 MB by fstat, nothing on disk; reading it would take the loader seconds.
    writeFileSync(big, '');
    truncateSync(big, 50_000_000);
    const t0 = performance.now();
    let err: unknown;
    try { loadConfigFile(big); } catch (e) { err = e; }
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${big}: (top level): the file is too large (50000000 octets; the limit is 16777216 octets); expected a configuration file of at most 16 MiB`);
    expect(ms).toBeLessThan(100);
    // Just under the limit is read (and then judged on its content).
    const edge = join(dir, 'edge.yaml');
    writeFileSync(edge, `${'#'.repeat(16 * 1024 * 1024 - 4)}\n{}\n`);
    expect(loadConfigFile(edge).connections).toEqual([]);
    // Text handed to parseConfig has the same bound.
    expect(() => parseIn(`# ${'x'.repeat(16 * 1024 * 1024)}\n{}\n`)).toThrow(/the file is too large \(16777222 octets; the limit is 16777216 octets\)/);
  });

  it('a pipe is read up to the limit and refused past it', () => {
    const fifo = join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    // A writer that never ends: the loader must stop reading at 16 MiB + 1.
    const writer = spawn('sh', ['-c', `yes '# filler' > ${fifo}`], { stdio: 'ignore' });
    try {
      expect(() => loadConfigFile(fifo)).toThrow(/the file is too large \(more than that; the limit is 16777216 octets\)/);
    } finally {
      writer.kill('SIGKILL');
    }
  });

  it('an empty file, or one with only comments and whitespace, is an error, not a gateway with no connections', () => {
    for (const text of ['', '\n\n', '   \n\t\n', '# nothing but a comment\n', '# a\n\n# b\n', '---\n', '---\n...\n']) {
      expectProblem(text, '', undefined, /^the configuration is empty \(nothing but whitespace or comments\)$/, /a mapping with log, .*connections \(write \{\} for every default\)/);
    }
    expectProblem('~\n', '', undefined, /^the configuration is null$/);
    const empty = join(dir, 'empty.yaml');
    writeFileSync(empty, '');
    expect(() => loadConfigFile(empty)).toThrow(`${empty}: (top level): the configuration is empty`);
  });

  it('nesting past 64 levels names the limit and the path, without exhausting the stack', () => {
    const deepFlow = `connections:\n  a:\n    remote_addrs: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`;
    const t0 = performance.now();
    const e = expectProblem(deepFlow, `connections.a.remote_addrs${'[0]'.repeat(61)}`, 3, /^nested more than 64 levels deep$/, /^at most 64 levels of nested mappings and lists$/);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(e.message).not.toMatch(/call stack/);
    // Block mappings, one key per level (indentation grows by one each line).
    const block = Array.from({ length: 70 }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n');
    expectProblem(block, Array.from({ length: 64 }, (_, i) => `k${i}`).join('.'), 65, /^nested more than 64 levels deep$/);
    // Compact block sequences, and flow mappings.
    expectProblem(`${'- '.repeat(10_000)}x\n`, '[0]'.repeat(64), 1, /nested more than 64 levels deep/);
    expectProblem(`x-a: ${'{a: '.repeat(5_000)}1${'}'.repeat(5_000)}\n`, `x-a${'.a'.repeat(63)}`, 1, /nested more than 64 levels deep/);
    // Runs of block sequences the YAML parser closes recursively (found by the config fuzz target).
    const r = configError(`${'- '.repeat(20_000)}x\n${'- '.repeat(20_000)}y\n`);
    expect(r.message).not.toMatch(/call stack/);
    expect(r.problems[0]!.expected).toBe('at most 64 levels of nested mappings and lists');
    // 64 levels are fine as far as nesting goes (the schema then judges the value).
    const ok = `x-deep: ${'['.repeat(63)}${']'.repeat(63)}\n`;
    expect(parseIn(ok).connections).toEqual([]);
  });

  it('alias bombs (billion laughs) are refused quickly', () => {
    const levels = 'abcdefghi';
    let text = 'x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
    for (let i = 1; i < levels.length; i++) text += `x-${levels[i]}: &${levels[i]} [${Array(9).fill(`*${levels[i - 1]}`).join(',')}]\n`;
    const t0 = performance.now();
    expectProblem(text, '', undefined, /aliases expand to too much \(more than 1000 expansions/, /valid YAML/);
    // Merge keys that double at each level.
    let merges = 'x-0: &m0 {k0: 1}\n';
    for (let i = 1; i < 40; i++) merges += `x-${i}: &m${i}\n  <<: [*m${i - 1}, *m${i - 1}]\n  k${i}: 1\n`;
    expectProblem(merges, '', undefined, /aliases expand to too much/);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  it('!!binary outside a psk, and tags beyond JSON\'s kinds, are refused at their path', () => {
    expectProblem('log:\n  level: !!binary aW5mbw==\n', 'log.level', 2, /^binary data \(!!binary\) is allowed only as a psk$/);
    expectProblem('log: !!binary aW5mbw==\n', 'log', 1, /^binary data \(!!binary\) is allowed only as a psk$/);
    expectProblem('!!binary aW5mbw==\n', '', 1, /binary data/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: [192.0.2.1, !!binary wAACAQ==]\n`, 'connections.a.remote_addrs[1]', 4, /binary data/);
    // Through an alias: the path is where the alias puts it.
    expectProblem('x-b: &b !!binary aW5mbw==\nlog:\n  level: *b\n', 'log.level', 3, /binary data/);
    expectProblem('connections: !!set {a, b}\n', 'connections', 1, /^the tag !!set is not allowed$/, /no YAML tags beyond those/);
    expectProblem(`connections:\n  a: !!omap [ psk: x ]\n`, 'connections.a', 2, /^the tag !!omap is not allowed$/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: !!timestamp 2001-12-14\n`, 'connections.a.remote_addrs', 4, /^the tag !!timestamp is not allowed$/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: !host gw\n`, 'connections.a.remote_addrs', 4, /^the tag !host is not allowed$/);
    expectProblem(`connections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: !!pairs [a: 1]\n`, 'connections.a.remote_addrs', 4, /^the tag !!pairs is not allowed$/);
    // YAML 1.1 types dates without a tag.
    expectProblem(`%YAML 1.1\n---\nconnections:\n  a:\n    ${PSK_YAML}\n    remote_addrs: 2001-12-14\n`, 'connections.a.remote_addrs', 6, /^got a timestamp$/);
    // Keys that are collections or aliases (found by the config fuzz target): refused, not stringified with a warning.
    expectProblem('log:\n  ? [a, b]\n  : 1\n', 'log', 2, /^a mapping key is a mapping, a list or an alias$/, /plain text/);
    expectProblem('x-k: &k {a: 1}\nlog:\n  *k : 1\n', 'log', 3, /^a mapping key is a mapping, a list or an alias$/);
    // JSON's own tags stay allowed.
    expect(parseIn('listen:\n  port: !!int "500"\nlog:\n  level: !!str info\n').listen.port).toBe(500);
  });
});
