// What a cluster node prepares before an answer (control/cluster/answer-prepare.ts):
// each kind asks the right preparer; IKE_AUTH's Child SA admission and its
// address claim run side by side (the answer waits for the longer, not for
// both), the request waits for both, and the one release the engine calls
// after the answer hands back what each holds.
import { describe, expect, test } from 'vitest';
import { prepareAnswers } from '../control/cluster/answer-prepare.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { PreparedRelease } from '../control/ike/peer-resources.js';
import { CfgAttr, CfgType, PayloadType } from '../control/wire/constants.js';
import type { Payload } from '../control/wire/payloads.js';

interface Pending {
  what: string;
  settle: (release?: PreparedRelease) => void;
}

function preparers() {
  const started: Pending[] = [];
  const released: string[] = [];
  const peersAsked: Array<string | undefined> = [];
  const start = (what: string): Promise<PreparedRelease | undefined> =>
    new Promise((resolve) => started.push({ what, settle: (release) => resolve(release) }));
  const p = prepareAnswers({
    leases: { prepareLease: (_sa, families, waits) => (families.length > 0 ? start(`lease ${families.join(',')}${waits ? ' held' : ''}`) as Promise<PreparedRelease> : undefined) },
    ikeAdmission: { admit: () => start('ike') },
    childAdmission: {
      admit: (_sa, peer) => {
        peersAsked.push(peer?.());
        return start('child');
      },
    },
  });
  const settle = (what: string, release = true) => {
    const i = started.findIndex((s) => s.what === what);
    expect(i).toBeGreaterThanOrEqual(0);
    started.splice(i, 1)[0]!.settle(release ? () => released.push(what) : undefined);
  };
  return { p, started, released, peersAsked, settle };
}

const sa = {} as IkeSa;
const saPayload = { type: PayloadType.SA, proposals: [] } as unknown as Payload;
const askIp4 = { type: PayloadType.CP, cfgType: CfgType.CFG_REQUEST, attributes: [{ type: CfgAttr.INTERNAL_IP4_ADDRESS, value: new Uint8Array(0) }] } as unknown as Payload;
const peer = () => 'alice@example.org';
const tick = () => new Promise((r) => setImmediate(r));

describe('prepareAnswers', () => {
  test('IKE_AUTH with a Child SA and an address: both start at once, the answer waits for both, one release for both', async () => {
    const { p, started, released, peersAsked, settle } = preparers();
    let release: PreparedRelease | void | undefined;
    let settled = false;
    void p(sa, 'ike-auth', [saPayload, askIp4], peer)!.then((r) => {
      release = r;
      settled = true;
    });
    // Side by side: the claim does not wait for the admission; as the answer waits, its address is held for it.
    expect(started.map((s) => s.what).sort()).toEqual(['child', 'lease 4 held']);
    expect(peersAsked).toEqual(['alice@example.org']);
    settle('lease 4 held');
    await tick();
    expect(settled).toBe(false);
    settle('child');
    await tick();
    expect(settled).toBe(true);
    // Nothing goes back before the engine says the answer is built.
    expect(released).toEqual([]);
    (release as PreparedRelease)();
    expect(released.sort()).toEqual(['child', 'lease 4 held']);
  });

  test('IKE_AUTH asking no Child SA admits nothing; asking no address claims nothing; asking neither waits for nothing', async () => {
    const { p, started, settle } = preparers();
    // Nothing else to wait for: an address in the reserve is not held (the answer is built at once).
    const claimOnly = p(sa, 'ike-auth', [askIp4], peer);
    expect(started.map((s) => s.what)).toEqual(['lease 4']);
    settle('lease 4');
    await claimOnly;
    const admitOnly = p(sa, 'ike-auth', [saPayload], peer);
    expect(started.map((s) => s.what)).toEqual(['child']);
    settle('child', false);
    // An admission that decided nothing holds nothing: the release is a no-op, not missing.
    expect(typeof (await admitOnly)).toBe('function');
    expect(p(sa, 'ike-auth', [], peer)).toBeUndefined();
  });

  test('a clone asks the IKE SA admission, a new Child SA the Child SA admission, anything else nothing', () => {
    const { p, started } = preparers();
    void p(sa, 'ike-clone', [], peer);
    void p(sa, 'child-create', [], peer);
    expect(started.map((s) => s.what)).toEqual(['ike', 'child']);
    expect(p(sa, 'child-rekey', [], peer)).toBeUndefined();
    expect(p(sa, 'ike-rekey', [], peer)).toBeUndefined();
  });
});
