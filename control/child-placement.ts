// The placement of Child SAs on data-plane workers, as the engine asks for it
// when it draws an inbound SPI (control/ike/child-spi.ts): the data plane
// names the worker (dataplane/placement.ts), this adds the node prefix, and
// the SPI carries both (io/spi-layout.ts). The gateway installs the Child SA
// on the worker its SPI names, so ESP steered by SPI reaches its owner.
//
// The node prefix has this one source: a single gateway is node 0; a cluster
// gives each node its own (GatewayOptions.spiPrefix).
//
// Owner: the main thread (the engine's and the data plane's facade's).
import type { DataPlane } from '../dataplane/dataplane.js';
import { espSpiWorker, MAX_SPI_WORKERS, type SpiOwner } from '../io/spi-layout.js';
import { nativeIoUnavailable } from '../io/native-io.js';
import type { DataplaneConfig } from './config/types.js';
import type { ChildSpiPlacement, ChildSpiRequest } from './ike/child-spi.js';

/** The SPI node prefix of a gateway that is not part of a cluster. */
export const SINGLE_NODE_SPI_PREFIX = 0;

/** A placement for the engine: the data plane's worker choice under node prefix `node`. */
export function childSpiPlacement(dataPlane: DataPlane, node: number = SINGLE_NODE_SPI_PREFIX): ChildSpiPlacement {
  return (request: ChildSpiRequest): SpiOwner => ({
    node,
    worker: dataPlane.placeChild(request.localTs, request.remoteTs, request.replacing?.spiIn, request.preferredWorker),
  });
}

/** The worker a Child SA's inbound SPI names: the one that must own it. */
export function childOwnerWorker(spiIn: number): number {
  return espSpiWorker(spiIn);
}

/**
 * Whether the NAT-T port is steered to the workers' own sockets: asked for
 * (dataplane.steering, default kernel), with the native addon, and with no
 * more workers than an SPI can name.
 */
export function steerEsp(dp: DataplaneConfig): boolean {
  return (dp.steering ?? 'kernel') === 'kernel' && dp.workers <= MAX_SPI_WORKERS && nativeIoUnavailable() === null;
}
