// A client engine and two gateway engines ("cluster nodes" A and B, SPI
// prefixes 1 and 2) in memory: the client's IKE SA to A, cloned by A (RFC
// 7791 §5.2), so the clone can be handed from A to B. Every request's
// notifies are recorded in order, and every IKE message on the wire can be
// listed with its sender.
import { decodeMessage } from '../../control/wire/message.js';
import { HeaderFlag } from '../../control/wire/constants.js';
import type { IkeEngineOptions } from '../../control/ike/engine.js';
import { MemoryWire, pskPair } from './peers.js';
import { sameSa } from './mobike-peers.js';

export const CLIENT = '10.0.0.1';
export const NODE_A = '10.0.0.2';
export const NODE_B = '10.0.0.3';
/** A third node (SPI prefix 3), made only when its options are given. */
export const NODE_C = '10.0.0.4';
/** The SPI prefix of each node's engine (io/spi-layout.ts), by address. */
export const NODE_SPI_PREFIX: Readonly<Record<string, number>> = { [NODE_A]: 1, [NODE_B]: 2, [NODE_C]: 3 };

export async function cluster(nodeOptions: { a?: Partial<IkeEngineOptions>; b?: Partial<IkeEngineOptions>; c?: Partial<IkeEngineOptions> } = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const notifies: Array<{ from: string; to: string; notify: number }> = [];
  // The notifies of every request sent, in order (the payloads inside SK {}).
  const trace: IkeEngineOptions['trace'] = (e) => {
    if (e.direction !== 'out' || e.response) return;
    for (const p of e.payloads) if (p.type === 41) notifies.push({ from: e.sa.local.address, to: e.sa.remote.address, notify: p.notifyType });
  };
  const client = wire.engine(CLIENT, [initiator], { localAddresses: () => [CLIENT], trace });
  const nodeA = wire.engine(NODE_A, [responder], { localAddresses: () => [NODE_A], spiPrefix: NODE_SPI_PREFIX[NODE_A], trace, ...nodeOptions.a });
  const nodeB = wire.engine(NODE_B, [responder], { localAddresses: () => [NODE_B], spiPrefix: NODE_SPI_PREFIX[NODE_B], trace, ...nodeOptions.b });
  const nodeC = nodeOptions.c ? wire.engine(NODE_C, [responder], { localAddresses: () => [NODE_C], spiPrefix: NODE_SPI_PREFIX[NODE_C], trace, ...nodeOptions.c }) : undefined;
  const up = client.initiate(initiator.name);
  wire.run(100);
  const original = await up;
  const onA = nodeA.ikeSas()[0]!;
  // Node A clones the client's IKE SA (RFC 7791 §5.2): A is the clone's IKEv2 initiator, the client stays its MOBIKE initiator.
  const cloning = nodeA.cloneIkeSa(onA);
  await wire.settle(200);
  const clone = await cloning;
  return { wire, client, nodeA, nodeB, nodeC, original, clone, clientClone: sameSa(client, clone), notifies };
}

/** Every IKE message on the wire, with who sent it. */
export function ikeMessages(wire: MemoryWire) {
  return wire.log.flatMap((d) => {
    const m = decodeMessage(d.bytes);
    if (!m.ok) return [];
    const h = m.value.header;
    const spis = Buffer.from(h.spiI).toString('hex') + Buffer.from(h.spiR).toString('hex');
    const response = (h.flags & HeaderFlag.RESPONSE) !== 0;
    // Each end numbers its own requests (RFC 7296 §2.2): the I flag tells which end sent it.
    const byOriginalInitiator = (h.flags & HeaderFlag.INITIATOR) !== 0;
    return [{ from: d.local.address, to: d.remote.address, spis, mid: h.messageId, response, byOriginalInitiator, exchange: h.exchangeType }];
  });
}


/** Run the in-memory wire alongside real etcd I/O until `done()` (bounded): 10 ms of wire time per 5 ms waited. */
export async function drive(wire: MemoryWire, done: () => boolean, what: string, maxMs = 15_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    wire.flush();
    await new Promise((r) => setTimeout(r, 5));
    wire.clock.advance(10);
  }
  wire.flush();
}
