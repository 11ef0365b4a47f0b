// A request whose answer waits for resources outside the engine
// (control/ike/answer-preparation.ts, PeerResources.prepare): held before its
// message ID is taken, its retransmissions dropped as 'answer-pending', then
// answered once; prepare is asked once per request; a request whose SA died
// meanwhile is not answered; what a preparation holds is released once, after
// the answer is built; an IKE_AUTH names its peer to prepare only once its AUTH
// payload verifies, and is not checked again for its answer.
import { describe, expect, test } from 'vitest';
import { preparedTogether } from '../control/ike/answer-preparation.js';
import type { IkeSa } from '../control/ike/ike-sa.js';
import type { IkeEngineOptions } from '../control/ike/context.js';
import type { PreparedRelease } from '../control/ike/peer-resources.js';
import type { RequestKind } from '../control/ike/requests.js';
import { MemoryWire, pskPair } from './support/peers.js';

function gate(): { promise: Promise<PreparedRelease | void>; open: (release?: PreparedRelease) => void } {
  let open!: (release?: PreparedRelease) => void;
  const promise = new Promise<PreparedRelease | void>((r) => (open = r));
  return { promise, open };
}

/** A client and a gateway whose clone requests wait for a gate (`held`); `gateway` adds to the gateway's options. */
async function setup(gateway: Partial<IkeEngineOptions> = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair();
  const asked: RequestKind[] = [];
  let held: ReturnType<typeof gate> | undefined;
  const alice = wire.engine('10.0.0.1', [initiator]);
  const gw = wire.engine('10.0.0.2', [responder], {
    ...gateway,
    peerResources: {
      prepare: (_sa, kind) => {
        asked.push(kind);
        if (kind !== 'ike-clone') return undefined;
        held = gate();
        return held.promise;
      },
    },
  });
  const up = alice.initiate(initiator.name);
  wire.run(100);
  const ike = await up;
  return { wire, alice, gw, ike, asked, held: () => held! };
}

describe('answers that wait for resources', () => {
  test('a held clone request: retransmissions dropped while it waits, then answered once', async () => {
    const { wire, alice, gw, ike, asked, held } = await setup();
    expect(asked).toEqual(['ike-auth']);
    let clone: IkeSa | undefined;
    void alice.cloneIkeSa(ike).then((c) => (clone = c));
    // Long enough for the initiator to retransmit (RFC 7296 §2.1): no answer yet.
    wire.run(3000);
    expect(clone).toBeUndefined();
    expect(asked).toEqual(['ike-auth', 'ike-clone']);
    expect(gw.stats.drops['answer-pending']).toBeGreaterThanOrEqual(1);
    expect(gw.ikeSas()).toHaveLength(1);
    // Released once, after the answer: by then the clone is up on the gateway.
    const releasedWith: number[] = [];
    held().open(() => releasedWith.push(gw.ikeSas().length));
    await new Promise((r) => setImmediate(r));
    expect(releasedWith).toEqual([2]);
    wire.flush();
    await new Promise((r) => setImmediate(r));
    expect(clone?.state).toBe('established');
    expect(gw.ikeSas()).toHaveLength(2);
    expect(releasedWith).toEqual([2]);
    // Asked once: the request was handled again without asking a second time.
    expect(asked).toEqual(['ike-auth', 'ike-clone']);
  });

  test('a request whose IKE SA died while it waited is not answered', async () => {
    const { wire, alice, gw, ike, held } = await setup();
    const refused = alice.cloneIkeSa(ike).catch((e: Error) => e);
    wire.flush();
    const gwSa = gw.ikeSas()[0]!;
    gwSa.setState('dead', gw.log);
    const sent = gw.stats.sent;
    let released = 0;
    held().open(() => released++);
    await new Promise((r) => setImmediate(r));
    wire.flush();
    expect(gw.stats.sent).toBe(sent);
    // What it held goes back all the same.
    expect(released).toBe(1);
    expect(gw.ikeSas().filter((s) => s.state !== 'dead')).toHaveLength(0);
    wire.run(60_000);
    expect(await refused).toBeInstanceOf(Error);
  });

  test('a held request whose handling fails once released is contained: counted, logged, its release run, the process and the SA alive', async () => {
    let fail = false;
    // A bug on the way to the answer, stood in for by the first hook the handling calls.
    const mayAnswer = () => {
      if (fail) throw new Error('a bug');
      return true;
    };
    const { wire, alice, gw, ike, held } = await setup({ mayAnswer });
    void alice.cloneIkeSa(ike).catch(() => undefined);
    wire.flush();
    fail = true;
    let released = 0;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      held().open(() => released++);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    expect(released).toBe(1);
    expect(gw.stats.drops.malformed).toBe(1);
    expect(gw.ikeSas()[0]!.state).toBe('established');
  });

  test('prepare learns the peer an IKE_AUTH authenticates only once its AUTH verifies, and the SA stays as it was', async () => {
    for (const [psk, expected] of [[undefined, 'alice@example.org'], ['not the pre-shared key, but long enough', undefined]] as const) {
      const wire = new MemoryWire();
      const { initiator, responder } = pskPair();
      if (psk !== undefined) initiator.localAuth = { method: 'psk', psk: new TextEncoder().encode(psk) };
      const seen: Array<{ kind: RequestKind; peer: string | undefined; peerKey: string | undefined }> = [];
      const alice = wire.engine('10.0.0.1', [initiator]);
      wire.engine('10.0.0.2', [responder], {
        peerResources: {
          prepare: (sa, kind, _payloads, peer) => {
            seen.push({ kind, peer: peer(), peerKey: sa.peerKey });
            return undefined;
          },
        },
      });
      const up = alice.initiate(initiator.name).then(
        (sa) => sa.state,
        (err: Error) => err.message,
      );
      wire.run(100);
      // Asked before the answer, with the SA not yet bound to any peer; the IDi counts only once AUTH verifies.
      expect(seen).toEqual([{ kind: 'ike-auth', peer: expected, peerKey: undefined }]);
      if (expected) expect(await up).toBe('established');
      else expect(await up).toMatch(/AUTHENTICATION_FAILED/);
    }
  });
  test('an IKE_AUTH checked for prepare is not checked again for its answer, held or not', async () => {
    // The responder's PSK, counted as read: each check of the AUTH payload reads it.
    const readsOfPsk = async (prepare?: 'answer-at-once' | 'hold'): Promise<number> => {
      const wire = new MemoryWire();
      const { initiator, responder } = pskPair();
      let reads = 0;
      const psk = responder.remoteAuth.psk!;
      responder.remoteAuth = { method: 'psk', get psk() { reads++; return psk; } };
      const alice = wire.engine('10.0.0.1', [initiator]);
      wire.engine('10.0.0.2', [responder], prepare && {
        peerResources: {
          prepare: (_sa, kind, _payloads, peer) => {
            if (kind !== 'ike-auth') return undefined;
            expect(peer()).toBe('alice@example.org');
            return prepare === 'hold' ? Promise.resolve() : undefined;
          },
        },
      });
      const up = alice.initiate(initiator.name);
      wire.run(100);
      await new Promise((r) => setImmediate(r));
      wire.run(100);
      expect((await up).state).toBe('established');
      return reads;
    };
    const once = await readsOfPsk();
    expect(once).toBeGreaterThan(0);
    expect(await readsOfPsk('answer-at-once')).toBe(once);
    expect(await readsOfPsk('hold')).toBe(once);
  });

  test('preparations side by side: settled when all are, one release for what each holds', async () => {
    expect(preparedTogether([undefined, undefined])).toBeUndefined();
    const first = gate();
    const second = gate();
    const released: string[] = [];
    let settled = false;
    const together = preparedTogether([first.promise, undefined, second.promise, Promise.reject(new Error('etcd failed'))])!;
    void together.then(() => (settled = true));
    first.open(() => released.push('first'));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    // One that held nothing, one that failed: nothing of theirs to release.
    second.open();
    const release = await together;
    expect(released).toEqual([]);
    release();
    expect(released).toEqual(['first']);
  });
});
