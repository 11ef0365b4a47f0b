// Raw ESP (IP protocol 50) read by its owner worker (io/raw-esp-steering.ts,
// DataPlane.adoptRawEspShares): a raw socket per worker bound to the local
// address and filtered to the SPIs naming it, the I/O thread's filtered to
// the rest. Each SPI reaches its owner only; an unknown SPI is dropped and
// counted once, by the worker it names or by the I/O thread's SAD lookup.
import { afterEach, describe, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { DataPlane } from '../dataplane/dataplane.js';
import { BatchedSocket, destination } from '../io/batched-socket.js';
import { loadNativeIo } from '../io/native-io.js';
import { dropAllFilter } from '../io/esp-raw-filter.js';
import { composeEspSpi } from '../io/spi-layout.js';
import { mirroredSpecs, stopPlanes, trackPlane } from './support/dataplane-pair.js';
import { interopTest } from './support/prereq.js';
import { waitFor } from './support/proc.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopPlanes();
});

const NODE = 0xa6;
const LOCAL = '127.0.0.9';

function rawSender(): (spi: number) => void {
  const s = BatchedSocket.openRaw(50, 1 << 20);
  cleanups.push(() => s.close());
  loadNativeIo().socketAttachFilter(s.fd, dropAllFilter());
  const to = destination(Uint8Array.of(127, 0, 0, 9));
  return (spi) => {
    const esp = randomBytes(80);
    esp.writeUInt32BE(spi, 0);
    esp.writeUInt32BE(1, 4);
    s.queue(esp, to, 0);
    s.flush();
  };
}

describe('raw ESP filtered per worker in the data plane', () => {
  interopTest('each SPI reaches its owner worker only; unknown SPIs are dropped and counted once', ['root', 'native'], async () => {
    const dp = new DataPlane({ workers: 2, sink: 'discard', sendUdp: () => {}, rawEsp: true, rawSteering: { node: NODE } });
    trackPlane(dp);
    await dp.start();
    await dp.adoptRawEspShares(LOCAL);
    expect(dp.status().rawEsp!.workers).toBe(true);
    const owned = composeEspSpi({ node: NODE, worker: 1 }, randomBytes(4).readUInt32BE())!;
    await dp.install(mirroredSpecs(7, { a: { spiIn: owned, worker: 1, udpEncap: false, local: { address: LOCAL, port: 0 }, remote: { address: '127.0.0.1', port: 0 } } }).a);
    const send = rawSender();
    send(owned); // forged: reaches worker 1, fails its ICV there
    send(composeEspSpi({ node: NODE, worker: 0 }, 5)!); // names worker 0, which has no such SA
    send(composeEspSpi({ node: NODE + 1, worker: 1 }, 6)!); // another node's: the I/O thread's share
    const st = () => dp.status();
    await waitFor(() => st().io.dropUnknownSpi >= 2 && st().workers[1]!.steered!.in >= 1, { timeoutMs: 5000, intervalMs: 10 });
    await new Promise((r) => setTimeout(r, 100)); // nothing more arrives anywhere
    const [w0, w1] = st().workers;
    expect(w1!.steered).toMatchObject({ in: 1, unknownSpi: 0 });
    expect(w0!.steered).toMatchObject({ in: 1, unknownSpi: 1 });
    expect(st().rawEsp!.packetsIn).toBe(1);
    expect(st().io.dropUnknownSpi).toBe(2);
    const c = await dp.counters();
    expect(c.sa.find((s) => s.id === 7)!.in.dropsAuth).toBe(1n);
  });
});
