// Installs freshly derived IKE SA keys: SK_e/SK_a in the two message
// protectors (ours sends with the keys of our role, RFC 7296 §2.14), the rest
// kept on the SA, and the key log told (when enabled).
import type { IkeKeys } from '../crypto/keys.js';
import { resolveSuite } from '../crypto/keys.js';
import { createSkProtector } from '../crypto/sk.js';
import type { IkeContext } from './context.js';
import type { IkeSa } from './ike-sa.js';

export function installIkeKeys(engine: IkeContext, sa: IkeSa, keys: IkeKeys): void {
  const suite = sa.suite!;
  const { encr, integ } = resolveSuite({ encr: suite.encr, encrKeyLength: suite.encrKeyLength, prf: suite.prf!, integ: suite.integ ?? 0 });
  const initiatorSide = createSkProtector(encr, integ, keys.skEi, integ ? keys.skAi : undefined, { random: engine.random });
  const responderSide = createSkProtector(encr, integ, keys.skEr, integ ? keys.skAr : undefined, { random: engine.random });
  sa.protectOut?.destroy();
  sa.protectIn?.destroy();
  sa.protectOut = sa.isInitiator ? initiatorSide : responderSide;
  sa.protectIn = sa.isInitiator ? responderSide : initiatorSide;
  sa.keys = keys;
  engine.keyLog?.ike(sa, keys, encr, integ);
}
