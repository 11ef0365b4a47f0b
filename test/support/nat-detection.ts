// A peer without NAT traversal (RFC 7296 §2.23): its IKE_SA_INIT request
// carries no NAT_DETECTION_*_IP notifies, so the responder sends none back and
// NO_NATS_ALLOWED applies to the IKE SA (RFC 4555 §3.9). ikeclone always sends
// NAT-D; tests take it out of the request before it is encoded (and signed by
// IKE_AUTH), as such a peer would build it.
import { IkeSaInitInitiator } from '../../control/ike/exchanges/ike-init.js';
import { NotifyType, PayloadType } from '../../control/wire/constants.js';
import type { Payload } from '../../control/wire/payloads.js';

function isNatDetection(p: Payload): boolean {
  return p.type === PayloadType.NOTIFY && (p.notifyType === NotifyType.NAT_DETECTION_SOURCE_IP || p.notifyType === NotifyType.NAT_DETECTION_DESTINATION_IP);
}

/** Run `fn` while every IKE_SA_INIT request built goes without NAT-D; restored afterwards. */
export async function withoutNatDetection<T>(fn: () => T | Promise<T>): Promise<T> {
  const original = IkeSaInitInitiator.prototype.build;
  IkeSaInitInitiator.prototype.build = function (this: IkeSaInitInitiator, ...args: Parameters<typeof original>) {
    return original.apply(this, args).filter((p) => !isNatDetection(p));
  };
  try {
    return await fn();
  } finally {
    IkeSaInitInitiator.prototype.build = original;
  }
}
