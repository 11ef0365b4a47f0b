// Self-tests of the strongSwan/tshark harness (test/support/charon.ts,
// tshark.ts, swanctl-parse.ts): two charons in two namespaces establish an
// IKE SA and a Child SA through kernel-libipsec, and tshark sees (and, with
// keys from charon's debug log, decrypts) what went over the wire.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { charonDecryptionTables, pskConnection, pskSecrets, startCharon, stopAllCharons } from './support/charon.js';
import type { Charon, ParsedSa } from './support/charon.js';
import { cleanupNamespaces, createTopology, exec, ping } from './support/netns.js';
import type { Topology } from './support/netns.js';
import { interopTest, requirePrereqs } from './support/prereq.js';
import type { PrereqName } from './support/prereq.js';
import { acquireHostLock } from './support/lock.js';
import type { HostLock } from './support/lock.js';
import { stopAllTracked, waitFor } from './support/proc.js';
import { countPcapPackets, decode, espSaLine, ikev2DecryptionLine, startCapture } from './support/tshark.js';
import type { Capture } from './support/tshark.js';
import { parseCharonKeyLog, parseListSas } from './support/swanctl-parse.js';

const PRE: PrereqName[] = ['root', 'netns', 'tun', 'charon', 'swanctl', 'tshark'];

/** swanctl.conf of one side: PSK, separate inner subnets, the proposals under test. */
function connections(o: { local: string; remote: string; localId: string; remoteId: string; localTs: string; remoteTs: string }): string {
  return pskConnection({
    name: 'c',
    localAddrs: o.local,
    remoteAddrs: o.remote,
    proposals: 'aes256gcm16-prfsha256-x25519',
    esp: 'aes128gcm16',
    localId: o.localId,
    remoteId: o.remoteId,
    localTs: o.localTs,
    remoteTs: o.remoteTs,
  });
}

const SECRETS = pskSecrets('test', ['initiator@ikeclone.test', 'responder@ikeclone.test'], 'harness-test-psk-0123456789');

describe('swanctl output parsing', () => {
  it('maps --list-sas --pretty to IKE and Child SAs', () => {
    const text = `list-sa event {
  c {
    uniqueid = 3
    version = 2
    state = ESTABLISHED
    local-host = 10.9.1.1
    local-port = 4500
    local-id = a b@test
    remote-host = 10.9.1.2
    remote-port = 4500
    remote-id = b@test
    initiator = yes
    initiator-spi = FE103D25AE278974
    responder-spi = bf3ab5dce9128b3b
    nat-any = yes
    encr-alg = AES_GCM_16
    encr-keysize = 256
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = CURVE_25519
    child-sas {
      net-1 {
        name = net
        uniqueid = 1
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = b1433507
        spi-out = 7c4f1ffb
        encr-alg = AES_GCM_16
        encr-keysize = 128
        bytes-in = 168
        packets-in = 2
        bytes-out = 84
        packets-out = 1
        local-ts = [
          10.9.50.0/24
        ]
        remote-ts = [
          10.9.100.0/24
          10.9.101.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
`;
    const [sa, ...rest] = parseListSas(text);
    expect(rest).toEqual([]);
    expect(sa).toMatchObject({
      name: 'c',
      uniqueId: 3,
      state: 'ESTABLISHED',
      initiator: true,
      spiI: 'fe103d25ae278974',
      spiR: 'bf3ab5dce9128b3b',
      encr: 'AES_GCM_16-256',
      integ: null,
      prf: 'PRF_HMAC_SHA2_256',
      dhGroup: 'CURVE_25519',
      localHost: '10.9.1.1',
      localPort: 4500,
      localId: 'a b@test',
      natAny: true,
    });
    expect(sa!.children).toEqual([
      expect.objectContaining({
        name: 'net',
        state: 'INSTALLED',
        encap: true,
        spiIn: 'b1433507',
        spiOut: '7c4f1ffb',
        encr: 'AES_GCM_16-128',
        integ: null,
        localTs: ['10.9.50.0/24'],
        remoteTs: ['10.9.100.0/24', '10.9.101.0/24'],
        bytesIn: 168,
        bytesOut: 84,
        packetsIn: 2,
      }),
    ]);
    expect(parseListSas('list-sas reply {\n}\n')).toEqual([]);
  });

  it('extracts IKE and Child SA keys from a charon key log and skips cut-off dumps', () => {
    const log = `16:55:52 11[IKE] <c|4> Sk_d secret => 4 bytes @ 0x7f3cd8004670
16:55:52 11[IKE] <c|4>    0: 79 4D 8F D0                                      yM..
16:55:52 11[IKE] <c|4> Sk_ei secret => 20 bytes @ 0x7f3cd80036f0
16:55:52 11[IKE] <c|4>    0: FC E9 D4 42 CB 1B AB 07 A6 7B 7E 08 46 6A 49 53  ...B.....{~.FjIS
16:55:52 11[IKE] <c|4>   16: E8 D7 F2 F9                                      ....
16:55:52 11[IKE] <c|4> Sk_er secret => 20 bytes @ 0x7f3cd8003714
16:55:52 11[IKE] <c|4>    0: 8A 99 F1 A2 69 3A 54 79 6B 62 FD 18 C3 39 BD 0F  ....i:Tykb...9..
16:55:52 09[NET] <c|4> sending packet: from 10.9.1.1[4500] to 10.9.1.2[4500] (257 bytes)
16:55:52 14[CHD] <c|4> encryption initiator key => 4 bytes @ 0x7f3cbc000b70
16:55:52 14[CHD] <c|4>    0: 4B 7A 8F 46                                      Kz.F
16:55:52 14[CHD] <c|4> encryption responder key => 4 bytes @ 0x7f3cbc0022e0
16:55:52 14[CHD] <c|4>    0: CB 5C 6B 80                                      .\\k.
16:55:52 14[CHD] <c|4> adding inbound ESP SA
16:55:52 14[CHD] <c|4>   SPI 0x14a64416, src 10.9.1.2 dst 10.9.1.1
16:55:52 14[CHD] <c|4> adding outbound ESP SA
16:55:52 14[CHD] <c|4>   SPI 0xf246ba02, src 10.9.1.1 dst 10.9.1.2
`;
    const k = parseCharonKeyLog(log);
    expect(k.ike).toEqual([
      {
        uniqueId: 4,
        conn: 'c',
        keys: { skD: '794D8FD0', skEi: 'FCE9D442CB1BAB07A67B7E08466A4953E8D7F2F9' },
      },
    ]);
    expect(k.children).toEqual([
      {
        uniqueId: 4,
        conn: 'c',
        encrI: '4B7A8F46',
        encrR: 'CB5C6B80',
        integI: null,
        integR: null,
        inbound: { spi: '14a64416', src: '10.9.1.2', dst: '10.9.1.1' },
        outbound: { spi: 'f246ba02', src: '10.9.1.1', dst: '10.9.1.2' },
      },
    ]);
  });

  it('formats Wireshark UAT lines and refuses malformed input', () => {
    expect(
      ikev2DecryptionLine({
        spiI: '514c67ab465e8682',
        spiR: '33f473c75fafa9d9',
        skEi: 'aa'.repeat(36),
        skEr: 'bb'.repeat(36),
        encr: 'AES-GCM-256 with 16 octet ICV [RFC5282]',
      }),
    ).toBe(`514c67ab465e8682,33f473c75fafa9d9,${'aa'.repeat(36)},${'bb'.repeat(36)},"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"`);
    expect(espSaLine({ spi: 'f246ba02', encr: 'AES-GCM with 16 octet ICV [RFC4106]', key: 'cc'.repeat(20) })).toBe(
      `"IPv4","*","*","0xf246ba02","AES-GCM with 16 octet ICV [RFC4106]","0x${'cc'.repeat(20)}","NULL","0x"`,
    );
    expect(() => ikev2DecryptionLine({ spiI: '0x12', spiR: '00'.repeat(8), skEi: '', skEr: '', encr: 'x' })).toThrow(/hex/);
    expect(() => espSaLine({ spi: 'f246ba', encr: 'x', key: '' })).toThrow(/4 bytes/);
  });
});

describe('two strongSwan charons in two namespaces', () => {
  let lock: HostLock | undefined;
  let topo: Topology | undefined;
  let workDir: string | undefined;
  let ini: Charon | undefined;
  let res: Charon | undefined;
  let capture: Capture | undefined;
  let failed = false;
  const timings: Record<string, number> = {};

  /** On failure: both charon logs' tails on stderr, and the work dir is kept. */
  function reportOnFailure(): void {
    onTestFailed(() => {
      failed = true;
      for (const c of [ini, res]) {
        if (c) process.stderr.write(`\n--- ${c.logPath} (tail) ---\n${c.log().split('\n').slice(-60).join('\n')}\n`);
      }
    });
  }

  beforeAll(async () => {
    if (!requirePrereqs(PRE).ok) return;
    failed = true; // until set-up completes: keeps the work dir for inspection
    lock = await acquireHostLock('netns', { timeoutMs: 90_000 });
    workDir = mkdtempSync(join(tmpdir(), 'ikc-'));
    topo = await createTopology({ labels: ['ini', 'res'] });
    const l = topo.links[0]!;
    const t0 = performance.now();
    const started = await Promise.allSettled([
      startCharon(topo.left, {
        dir: join(workDir, 'ini'),
        connections: connections({
          local: l.aAddr,
          remote: l.bAddr,
          localId: 'initiator@ikeclone.test',
          remoteId: 'responder@ikeclone.test',
          localTs: topo.leftInnerNet,
          remoteTs: topo.rightInnerNet,
        }),
        secrets: SECRETS,
        installRoutes: true,
        logKeys: true,
      }),
      startCharon(topo.right, {
        dir: join(workDir, 'res'),
        connections: connections({
          local: l.bAddr,
          remote: l.aAddr,
          localId: 'responder@ikeclone.test',
          remoteId: 'initiator@ikeclone.test',
          localTs: topo.rightInnerNet,
          remoteTs: topo.leftInnerNet,
        }),
        secrets: SECRETS,
        installRoutes: true,
      }),
    ]);
    [ini, res] = started.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    const failures = started.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) throw failures[0]!.reason;
    if (!ini || !res) throw new Error('unreachable: both charons started');
    timings.startBothMs = performance.now() - t0;
    timings.viciReadyIniMs = ini.startupMs;
    timings.viciReadyResMs = res.startupMs;
    timings.loadAllIniMs = ini.loadMs;
    capture = await startCapture(topo.left, l.aIf, { file: join(workDir, 'ike.pcap') });
    failed = false;
  }, 110_000);

  afterAll(async () => {
    try {
      await capture?.stop({ timeoutMs: 3000 }).catch(() => undefined);
      await stopAllCharons();
      await stopAllTracked();
      await cleanupNamespaces();
      if (workDir && !failed) rmSync(workDir, { recursive: true, force: true });
      else if (workDir) process.stderr.write(`\ncharon/tshark work dir kept for inspection: ${workDir}\n`);
      if (Object.keys(timings).length > 0) process.stderr.write(`\nharness-charon timings (ms): ${JSON.stringify(timings, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}\n`);
    } finally {
      await lock?.release();
    }
  }, 30_000);

  interopTest(
    'each charon runs in its own namespace with a private /run and its own VICI socket',
    PRE,
    () => {
      reportOnFailure();
      expect(ini!.exited()).toBe(false);
      expect(res!.exited()).toBe(false);
      expect(ini!.viciUri).not.toBe(res!.viciUri);
      // charon's compiled-in pid file landed in each instance's private /run
      expect(readFileSync(join(ini!.dir, 'run', 'charon.pid'), 'utf8').trim()).toBe(String(ini!.pid));
      expect(readFileSync(join(res!.dir, 'run', 'charon.pid'), 'utf8').trim()).toBe(String(res!.pid));
      expect(ini!.log()).toMatch(/loaded plugins: charon .*kernel-libipsec kernel-netlink/);
      expect(ini!.log()).toMatch(/created TUN device: ipsec0/);
    },
    10_000,
  );

  interopTest(
    'PSK IKE SA (aes256gcm16-prfsha256-x25519) and ESP aes128gcm16 Child SA: both sides agree on SPIs',
    PRE,
    async () => {
      reportOnFailure();
      const t0 = performance.now();
      const out = await ini!.initiate('net', 'c', { timeoutMs: 15_000 });
      timings.initiateMs = performance.now() - t0;
      expect(out.stdout).toMatch(/initiate completed successfully/);
      const [a, ...moreA] = await ini!.listSas();
      const [b, ...moreB] = await res!.listSas();
      expect(moreA).toEqual([]);
      expect(moreB).toEqual([]);
      const l = topo!.links[0]!;
      for (const [sa, initiator] of [
        [a, true],
        [b, false],
      ] as Array<[ParsedSa | undefined, boolean]>) {
        expect(sa).toMatchObject({
          name: 'c',
          state: 'ESTABLISHED',
          version: 2,
          initiator,
          encr: 'AES_GCM_16-256',
          integ: null,
          prf: 'PRF_HMAC_SHA2_256',
          dhGroup: 'CURVE_25519',
          // kernel-libipsec forces UDP encapsulation: IKE moves to 4500 after IKE_SA_INIT
          localPort: 4500,
          remotePort: 4500,
        });
        expect(sa!.spiI).toMatch(/^[0-9a-f]{16}$/);
        expect(sa!.spiR).toMatch(/^[0-9a-f]{16}$/);
        expect(sa!.children).toHaveLength(1);
        expect(sa!.children[0]).toMatchObject({ name: 'net', state: 'INSTALLED', mode: 'TUNNEL', protocol: 'ESP', encap: true, encr: 'AES_GCM_16-128' });
      }
      expect([a!.localHost, a!.remoteHost, a!.localId]).toEqual([l.aAddr, l.bAddr, 'initiator@ikeclone.test']);
      expect([b!.localHost, b!.remoteHost, b!.localId]).toEqual([l.bAddr, l.aAddr, 'responder@ikeclone.test']);
      expect([b!.spiI, b!.spiR]).toEqual([a!.spiI, a!.spiR]);
      const ca = a!.children[0]!;
      const cb = b!.children[0]!;
      expect(ca.spiIn).toMatch(/^[0-9a-f]{8}$/);
      expect(cb.spiOut).toBe(ca.spiIn);
      expect(cb.spiIn).toBe(ca.spiOut);
      expect(ca.localTs).toEqual([topo!.leftInnerNet]);
      expect(ca.remoteTs).toEqual([topo!.rightInnerNet]);
      expect(cb.localTs).toEqual(ca.remoteTs);
      expect(cb.remoteTs).toEqual(ca.localTs);
    },
    30_000,
  );

  interopTest(
    'a ping between the inner subnets flows through kernel-libipsec (ipsec0) and is counted on both SAs',
    PRE,
    async () => {
      reportOnFailure();
      const before = (await ini!.listSas())[0]?.children[0];
      expect(before?.state).toBe('INSTALLED');
      const p = await ping(topo!.left, topo!.rightInner, { count: 3, intervalS: 0.1, src: topo!.leftInner });
      expect(p.received, p.result.stdout + p.result.stderr).toBe(3);
      const route = await exec(topo!.left, 'ip', ['route', 'get', topo!.rightInner, 'from', topo!.leftInner]);
      expect(route.stdout).toMatch(/dev ipsec0/);
      const a = (await ini!.listSas())[0]!.children[0]!;
      const b = (await res!.listSas())[0]!.children[0]!;
      expect(a.packetsOut - before!.packetsOut).toBe(3);
      expect(a.packetsIn - before!.packetsIn).toBe(3);
      expect(b.packetsIn).toBeGreaterThanOrEqual(3);
      expect(b.packetsOut).toBeGreaterThanOrEqual(3);
      // 84-byte ICMP echo packets, counted as inner IP bytes
      expect(a.bytesOut - before!.bytesOut).toBe(3 * 84);
    },
    20_000,
  );

  interopTest(
    'tshark sees IKE_SA_INIT (34) and IKE_AUTH (35) with the SPIs charon reports, and ESP in UDP 4500',
    PRE,
    async () => {
      reportOnFailure();
      const sa = (await ini!.listSas())[0]!;
      const child = sa.children[0]!;
      const t0 = performance.now();
      // 4 IKE messages and 3 echo requests and replies
      const { packets } = await capture!.stop({ minPackets: 10 });
      timings.captureStopMs = performance.now() - t0;
      expect(packets).toBeGreaterThanOrEqual(10);
      const rows = await decode(capture!.file, {
        fields: ['ip.src', 'udp.srcport', 'udp.dstport', 'isakmp.ispi', 'isakmp.rspi', 'isakmp.exchangetype', 'isakmp.flag_r', 'esp.spi'],
      });
      const l = topo!.links[0]!;
      const ike = rows.filter((r) => r[5] !== '');
      expect(ike.map((r) => [r[0], r[5], r[6]])).toEqual([
        [l.aAddr, '34', '0'],
        [l.bAddr, '34', '1'],
        [l.aAddr, '35', '0'],
        [l.bAddr, '35', '1'],
      ]);
      expect(ike[0]![3]).toBe(sa.spiI);
      expect(ike[0]![4]).toBe('0000000000000000');
      for (const r of ike.slice(1)) expect([r[3], r[4]]).toEqual([sa.spiI, sa.spiR]);
      expect(ike.map((r) => r[2])).toEqual(['500', '500', '4500', '4500']);
      const esp = rows.filter((r) => r[7] !== '');
      expect(esp).toHaveLength(6);
      for (const r of esp) {
        expect([r[1], r[2]]).toEqual(['4500', '4500']);
        expect(r[7]).toBe(`0x${r[0] === l.aAddr ? child.spiOut : child.spiIn}`);
      }
    },
    30_000,
  );

  interopTest(
    'tshark decrypts IKE_AUTH and ESP with keys taken from the charon debug log, and flags a wrong key',
    PRE,
    async () => {
      reportOnFailure();
      const file = capture!.file;
      expect(countPcapPackets(file)).toBeGreaterThanOrEqual(10);
      const sas = await ini!.listSas();
      const tables = charonDecryptionTables(ini!.log(), sas);
      expect(tables.ikeDecryptionTable).toHaveLength(1);
      expect(tables.espSas).toHaveLength(2);
      const fields = ['isakmp.exchangetype', 'isakmp.flag_r', 'isakmp.nextpayload', '_ws.expert.message', 'ip.src', 'icmp.type'];
      const auth = await decode(file, { fields, displayFilter: 'isakmp.exchangetype == 35', ...tables });
      expect(auth).toHaveLength(2);
      for (const r of auth) {
        const inner = r[2]!.split(',').map(Number);
        // SK (46) decrypted: AUTH (39) inside, IDi (35) from the initiator, IDr (36) from the responder
        expect(inner[0]).toBe(46);
        expect(inner).toContain(39);
        expect(inner).toContain(r[1] === '0' ? 35 : 36);
        expect(r[3]).not.toMatch(/incorrect|Malformed/);
      }
      const esp = await decode(file, { fields, displayFilter: 'esp', ...tables });
      expect(esp).toHaveLength(6);
      for (const r of esp) {
        // outer source, then the decrypted inner source; echo request (8) one way, reply (0) back
        const [outer, inner] = r[4]!.split(',');
        expect(inner).toBe(outer === topo!.links[0]!.aAddr ? topo!.leftInner : topo!.rightInner);
        expect(r[5]).toBe(outer === topo!.links[0]!.aAddr ? '8' : '0');
      }
      // A wrong SK_ei: tshark checks the AES-GCM tag of IKE messages and says so.
      const wrong = tables.ikeDecryptionTable.map((line) => {
        const cells = line.split(',');
        cells[2] = (cells[2]!.startsWith('00') ? '01' : '00') + cells[2]!.slice(2);
        return cells.join(',');
      });
      const bad = await decode(file, { fields, displayFilter: 'isakmp.exchangetype == 35 && isakmp.flag_r == 0', ikeDecryptionTable: wrong });
      expect(bad).toHaveLength(1);
      expect(bad[0]![3]).toMatch(/Integrity Checksum Data is incorrect/);
      // a malformed table is an error, not a silently ignored line: syntax is checked
      // before tshark runs, and what tshark itself rejects (a 4-byte SPI) fails the decode
      await expect(decode(file, { fields, ikeDecryptionTable: ['"not-hex",x'] })).rejects.toThrow(/not a Wireshark UAT line/);
      const shortSpi = tables.ikeDecryptionTable[0]!.replace(/^[0-9a-f]{8}/, '');
      await expect(decode(file, { fields, ikeDecryptionTable: [shortSpi] })).rejects.toThrow(/tshark complained[\s\S]*SPI/);
    },
    30_000,
  );

  interopTest(
    'terminate deletes the SAs on both sides; stop() ends each daemon by its pid',
    PRE,
    async () => {
      reportOnFailure();
      await ini!.terminate({ ike: 'c' });
      expect(await ini!.listSas()).toEqual([]);
      await waitFor(async () => (await res!.listSas()).length === 0, { timeoutMs: 5000, message: 'responder to delete its SAs' });
      expect(res!.log()).toMatch(/received DELETE for IKE_SA c\[\d+\]/);
      const pids = [ini!.pid, res!.pid];
      const t0 = performance.now();
      await Promise.all([ini!.stop(), res!.stop()]);
      timings.stopBothMs = performance.now() - t0;
      for (const pid of pids) expect(existsSync(`/proc/${pid}`)).toBe(false);
      expect(ini!.exited() && res!.exited()).toBe(true);
    },
    20_000,
  );
});
