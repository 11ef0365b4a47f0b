// NAT detection (RFC 7296 §2.23): the NAT_DETECTION_*_IP notifies we send,
// and what the ones we receive say about NATs on the path. Used by
// IKE_SA_INIT, and by MOBIKE address updates and liveness checks (RFC 4555
// §3.5, §3.8), where a moved path may gain or lose a NAT.
import { NotifyType } from '../wire/constants.js';
import type { Payload } from '../wire/payloads.js';
import { findNotifies } from '../wire/payloads.js';
import { natDetectionHash } from '../crypto/natd.js';
import { notify } from './payload-builders.js';
import type { Endpoint } from './transport.js';
import { equalBytes } from '../crypto/bytes.js';

/** NAT_DETECTION_SOURCE_IP and _DESTINATION_IP for a message with these SPIs (RFC 7296 §2.23). */
export function natDetectionPayloads(spiI: Uint8Array, spiR: Uint8Array, local: Endpoint, remote: Endpoint, fakeSource?: (n: number) => Uint8Array): Payload[] {
  return [
    // A random source hash announces a NAT in front of us: the peer then encapsulates ESP in UDP (RFC 3948).
    notify(NotifyType.NAT_DETECTION_SOURCE_IP, fakeSource ? fakeSource(20) : natDetectionHash(spiI, spiR, local.address, local.port)),
    notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natDetectionHash(spiI, spiR, remote.address, remote.port)),
  ];
}

/**
 * Compare received NAT-D hashes with what the path we saw produces. Returns
 * whether a NAT sits in front of us (their DESTINATION hash does not match our
 * address) and in front of them (no SOURCE hash matches their address).
 */
export function detectNat(payloads: Payload[], spiI: Uint8Array, spiR: Uint8Array, local: Endpoint, remote: Endpoint): { natLocal: boolean; natRemote: boolean } | undefined {
  const src = findNotifies(payloads, NotifyType.NAT_DETECTION_SOURCE_IP);
  const dst = findNotifies(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP);
  if (src.length === 0 || dst.length === 0) return undefined;
  const remoteHash = natDetectionHash(spiI, spiR, remote.address, remote.port);
  const localHash = natDetectionHash(spiI, spiR, local.address, local.port);
  return {
    natRemote: !src.some((n) => equalBytes(n.data, remoteHash)),
    natLocal: !dst.some((n) => equalBytes(n.data, localHash)),
  };
}

