// ESP between two ikeclone gateways over UDP on loopback (RFC 3948 on the
// NAT-T port, shared with IKE): Child SAs negotiated by IKE go to the data
// plane's workers, generated traffic crosses, the receiver verifies and counts.
import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import { createSocket } from 'node:dgram';
import { Gateway } from '../control/gateway.js';
import { espTransformFor } from '../control/crypto/esp-transform.js';
import { silentLogger } from '../control/log.js';
import { loopbackPair } from './support/loopback.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

const running: Gateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop({ notifyPeers: false });
});

async function pair(opts: Parameters<typeof loopbackPair>[0] & { transport?: 'udp' | 'auto' } = {}) {
  const { initiator, responder } = loopbackPair(opts);
  for (const c of [initiator, responder]) {
    c.dataplane.workers = 2;
    c.dataplane.esp = opts.transport ?? 'udp';
  }
  const gw = new Gateway({ config: responder, log: silentLogger() });
  const client = new Gateway({ config: initiator, log: silentLogger() });
  running.push(gw, client);
  await gw.start();
  await client.start();
  return { gw, client };
}


/** Wait (bounded) until `cond` holds. */
const until = (cond: () => boolean | Promise<boolean>) => waitFor(cond, { timeoutMs: 15000, intervalMs: 10 });

describe('ESP between two gateways on loopback', () => {
  it('installs the Child SA in one worker on each side and carries generated traffic both ways over UDP 4500', async () => {
    const { gw, client } = await pair();
    let last = '';
    onTestFailed(() => void process.stderr.write(last));
    const sa = await client.up('gw');
    const child = sa.children[0]!;
    await until(() => client.dataPlane.ownerOf(child.id) !== undefined && gw.dataPlane.saIds().length === 1);
    const st = client.status();
    expect(st.ikeSas[0]!.children[0]!.worker).toBe(client.dataPlane.ownerOf(child.id));
    expect(st.dataplane!.sas).toBe(1);

    // Bursts of 500, each smaller than the receiving worker's ring: both gateways share this
    // process's I/O thread and the machine's cores with other test files, and a receiver that
    // falls behind a faster sender drops what its ring cannot hold (counted as queueFull) — a
    // gateway under overload does that, and this test is about the path, not the overload.
    const decapped = (g: typeof gw): number => g.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
    const progress = (): boolean => {
      last = `client ${JSON.stringify(client.status().dataplane)} ${JSON.stringify(client.transport.stats)}\ngw ${JSON.stringify(gw.status().dataplane)} ${JSON.stringify(gw.transport.stats)}\n`;
      return false;
    };
    for (let burst = 1; burst <= 6; burst++) {
      const report = await client.dataPlane.generate({ packets: 500, size: 1000, flows: 8 });
      expect(report.sent).toBe(500);
      // Loopback UDP may drop only if socket buffers overflow: require almost everything.
      await until(() => progress() || decapped(gw) >= burst * 500 - 10);
    }
    const back = await gw.dataPlane.generate({ packets: 500, size: 200 });
    expect(back.sent).toBe(500);
    await until(() => progress() || (decapped(gw) >= 2990 && decapped(client) >= 495));
    expect(gw.status().dataplane!.io.dropQueueFull + client.status().dataplane!.io.dropQueueFull).toBe(0);
    const c = await gw.dataPlane.counters();
    expect(c.sa).toHaveLength(1);
    expect(Number(c.sa[0]!.in.packetsIn)).toBeGreaterThanOrEqual(2990);
    expect(Number(c.sa[0]!.in.bytesIn)).toBe(Number(c.sa[0]!.in.packetsIn) * 1000);
    expect(c.sa[0]!.in.dropsAuth + c.sa[0]!.in.dropsReplay).toBe(0n);
    // ESP came in on the NAT-T port, steered by the kernel to the owner worker's own socket
    // of it (dataplane.steering: kernel, the default): none through the I/O thread's socket.
    const workers = gw.status().dataplane!.workers;
    const owner = gw.dataPlane.ownerOf(c.sa[0]!.id)!;
    expect(workers[owner]!.steered!.in).toBeGreaterThanOrEqual(2990);
    expect(workers.filter((w) => w.index !== owner).every((w) => w.steered!.in === 0)).toBe(true);
    expect(gw.transport.stats.espIn).toBe(0);
    expect(c.io.dropUnknownSpi).toBe(0);
  });

  interopTest('without a NAT, as root, ESP travels raw (IP protocol 50) and still reaches the owner worker', ['root'], async () => {
    const { gw, client } = await pair({ transport: 'auto' });
    await client.up('gw');
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.saIds().length === 1);
    expect(client.status().dataplane!.rawEsp).not.toBeNull();
    const report = await client.dataPlane.generate({ packets: 300, size: 500 });
    expect(report.sent).toBe(300);
    await until(() => gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0) >= 295);
    // Nothing came over UDP; the owner worker's raw socket (bound to the gateway's address, filtered to
    // its SPIs: io/raw-esp-steering.ts) delivered it, and only to the gateway it was addressed to;
    // the I/O thread's raw socket, filtered to what no worker owns, got none of it.
    expect(gw.transport.stats.espIn).toBe(0);
    const c = await gw.dataPlane.counters();
    const owner = gw.dataPlane.ownerOf(c.sa[0]!.id)!;
    const workers = gw.status().dataplane!.workers;
    expect(gw.status().dataplane!.rawEsp!.workers).toBe(true);
    expect(workers[owner]!.steered!.in).toBeGreaterThanOrEqual(295);
    expect(workers.filter((w) => w.index !== owner).every((w) => w.steered!.in === 0)).toBe(true);
    expect(gw.status().dataplane!.rawEsp!.packetsIn).toBe(0);
    expect(client.status().dataplane!.io.dropUnknownSpi).toBe(0);
    expect(gw.status().dataplane!.io.dropUnknownSpi).toBe(0);
  });

  it('drops and counts replayed and corrupted ESP injected on the NAT-T port; the tunnel keeps working', async () => {
    const { gw, client } = await pair();
    await client.up('gw');
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.saIds().length === 1);
    // Keep copies of what the client puts on the wire; hold back the last 15 packets.
    const captured: Uint8Array[] = [];
    const queueEsp = client.transport.sockets.queueEsp.bind(client.transport.sockets);
    client.transport.sockets.queueEsp = (local, remote, bytes) => {
      captured.push(Uint8Array.from(bytes));
      if (captured.length <= 35) queueEsp(local, remote, bytes);
    };
    await client.dataPlane.generate({ packets: 50, size: 300 });
    const decapped = () => gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
    await until(() => decapped() === 35 && captured.length === 50);

    const flip = (p: Uint8Array, at: number) => {
      const q = Uint8Array.from(p);
      q[at]! ^= 0x01;
      return q;
    };
    const injected = [
      ...captured.slice(0, 20), // replays of packets already accepted (RFC 4303 §3.4.3)
      ...captured.slice(35, 45).map((p) => flip(p, 30)), // new sequence numbers, ciphertext bit flips: ICV fails (§3.4.4)
      ...captured.slice(45, 50).map((p) => flip(p, p.length - 1)), // new sequence numbers, ICV bit flips
      flip(captured[36]!, 0), // another SPI: unknown
      captured[37]!.subarray(0, 6), // shorter than SPI + sequence number
    ];
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const inject = (list: Uint8Array[]) => {
      for (const p of list) sock.send(p, gw.config.listen.natPort, '127.0.0.2');
    };
    inject(injected);
    await until(() => {
      const d = gw.status().dataplane!;
      return d.workers.reduce((n, w) => n + w.drops.replay + w.drops.icv, 0) === 35 && d.io.dropUnknownSpi === 1 && d.io.dropMalformed === 1;
    });
    const st = gw.status().dataplane!;
    expect(st.workers.reduce((n, w) => n + w.drops.replay, 0)).toBe(20);
    expect(st.workers.reduce((n, w) => n + w.drops.icv, 0)).toBe(15);
    expect(decapped()).toBe(35);
    // The same drops per SA, from the owner worker's kernel; forgeries did not move the window.
    const c = await gw.dataPlane.counters();
    expect(c.sa[0]!.in.dropsReplay).toBe(20n);
    expect(c.sa[0]!.in.dropsAuth).toBe(15n);
    expect(c.sa[0]!.in.highestSeqIn).toBe(35n);
    // The genuine packets held back are still accepted (their numbers were never taken by a forgery).
    inject(captured.slice(35));
    await until(() => decapped() === 50);
    sock.close();
    // Nothing unauthenticated moved the window: fresh traffic still gets through.
    client.transport.sockets.queueEsp = queueEsp;
    await client.dataPlane.generate({ packets: 100, size: 300 });
    await until(() => decapped() === 150);
    expect((await gw.dataPlane.counters()).sa[0]!.in.highestSeqIn).toBe(150n);
  });

  it('a Child SA rekey (CREATE_CHILD_SA) moves traffic to the new SA on the same worker and retires the old one', async () => {
    const { gw, client } = await pair();
    const sa = await client.up('gw');
    const old = sa.children[0]!;
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.ownerOf(old.id) !== undefined);
    const worker = client.dataPlane.ownerOf(old.id);
    const next = await client.engine.rekeyChildSa(old);
    // The old SA leaves both data planes once its Delete is answered; the new one is on the old one's worker.
    await until(() => client.dataPlane.saIds().join() === String(next.id) && gw.dataPlane.saIds().length === 1);
    expect(client.dataPlane.ownerOf(next.id)).toBe(worker);
    const before = gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
    await client.dataPlane.generate({ packets: 200, size: 400 });
    await until(() => gw.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0) === before + 200);
    const c = await gw.dataPlane.counters();
    expect(c.sa).toHaveLength(1);
    expect(c.sa[0]!.spiIn).toBe(next.spiOut);
    expect(Number(c.sa[0]!.in.packetsIn)).toBe(200);
  });

  // RFC 3602 + RFC 4868: AES-CBC with HMAC-SHA2, negotiated by IKE and installed in both data planes.
  it.each([
    ['aes256-sha256', 'aes-cbc-256-hmac-sha2-256-128'],
    ['aes128-sha512', 'aes-cbc-128-hmac-sha2-512-256'],
    ['aes128-sha384-esn', 'aes-cbc-128-hmac-sha2-384-192'],
  ])('AES-CBC ESP (%s): generated traffic crosses both ways, counted on both ends', async (esp, algorithm) => {
    const { gw, client } = await pair({ esp });
    const sa = await client.up('gw');
    const child = sa.children[0]!;
    // The kernel suite the gateway installs for the negotiated transforms.
    expect(espTransformFor(child.suite.encr, child.suite.encrKeyLength, child.suite.integ)?.algorithm).toBe(algorithm);
    await until(() => client.dataPlane.ownerOf(child.id) !== undefined && gw.dataPlane.saIds().length === 1);
    const decapped = (g: typeof gw): number => g.status().dataplane!.workers.reduce((n, w) => n + w.decapPackets, 0);
    // The largest inner packet the cells carry with the longest ICV, and small ones.
    for (const size of [1400, 64]) {
      const before = decapped(gw);
      expect((await client.dataPlane.generate({ packets: 300, size, flows: 4 })).sent).toBe(300);
      await until(() => decapped(gw) >= before + 295);
    }
    expect((await gw.dataPlane.generate({ packets: 300, size: 777 })).sent).toBe(300);
    await until(() => decapped(client) >= 295);
    const server = (await gw.dataPlane.counters()).sa[0]!;
    const mine = (await client.dataPlane.counters()).sa[0]!;
    expect(Number(server.in.packetsIn)).toBeGreaterThanOrEqual(590);
    expect(Number(server.out.packetsOut)).toBe(300);
    expect(Number(mine.out.packetsOut)).toBe(600);
    expect(Number(mine.in.packetsIn)).toBeGreaterThanOrEqual(295);
    expect(Number(mine.in.bytesIn)).toBe(Number(mine.in.packetsIn) * 777);
    for (const c of [server, mine]) expect(c.in.dropsAuth + c.in.dropsReplay + c.in.dropsMalformed + c.in.dropsBadPadding).toBe(0n);
    expect(gw.status().dataplane!.io.dropUnknownSpi + client.status().dataplane!.io.dropUnknownSpi).toBe(0);
  });

  it('removes the SA from the data plane when the Child SA is deleted', async () => {
    const { gw, client } = await pair();
    await client.up('gw');
    await until(() => gw.dataPlane.saIds().length === 1 && client.dataPlane.saIds().length === 1);
    const down = new Promise((r) => gw.once('ike-down', r));
    await client.down('gw');
    await down;
    expect(client.dataPlane.saIds()).toEqual([]);
    expect(gw.dataPlane.saIds()).toEqual([]);
  });
});
