// IKE_AUTH with Digital Signature authentication (RFC 7427 §3, method 14):
// Ed25519 (RFC 8420) and ECDSA P-256 with SHA-256, keys loaded from PEM as
// the gateway does; wrong keys fail with AUTHENTICATION_FAILED (RFC 7296
// §2.21.2); each direction may use its own method (§2.15).
import { describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { MemoryWire, pskPair } from './support/peers.js';
import { loadSigningKey, loadVerifyKey } from '../control/crypto/auth.js';
import type { SigningKey, VerifyKey } from '../control/crypto/auth.js';
import type { LocalAuth, RemoteAuth } from '../control/ike/policy.js';
import { decodeMessage } from '../control/wire/message.js';
import { openMessage } from '../control/ike/protect.js';
import { AuthMethod, ExchangeType, HeaderFlag, NotifyType, PayloadType } from '../control/wire/constants.js';
import { IkeSa } from '../control/ike/ike-sa.js';
import { authRefusal } from '../control/ike/authentication.js';
import { HashAlgorithm } from '../control/wire/constants.js';
import type { Datagram } from '../control/ike/transport.js';

/** `p` once the wire has gone quiet: settled by then, or the test fails at once instead of hanging. */
function settled<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet'))))]);
}

type Kind = 'ed25519' | 'ecdsa-p256';

/** A fresh key pair of `kind`, through PEM like a configuration file. */
function keyPair(kind: Kind): { signingKey: SigningKey; verifyKey: VerifyKey } {
  const pair =
    kind === 'ed25519'
      ? generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
      : generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'sec1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  return { signingKey: loadSigningKey(pair.privateKey), verifyKey: loadVerifyKey(pair.publicKey) };
}

const pubkeyLocal = (k: { signingKey: SigningKey }): LocalAuth => ({ method: 'pubkey', signingKey: k.signingKey });
const pubkeyRemote = (k: { verifyKey: VerifyKey }): RemoteAuth => ({ method: 'pubkey', verifyKey: k.verifyKey });

/** Run one IKE_SA_INIT + IKE_AUTH; return the outcome and the AUTH payloads each side sent. */
async function handshake(auth: { aliceLocal: LocalAuth; aliceRemote: RemoteAuth; bobLocal: LocalAuth; bobRemote: RemoteAuth }) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({
    initiator: { localAuth: auth.aliceLocal, remoteAuth: auth.aliceRemote },
    responder: { localAuth: auth.bobLocal, remoteAuth: auth.bobRemote },
  });
  const alice = wire.engine('10.0.0.1', [initiator]);
  const bob = wire.engine('10.0.0.2', [responder]);
  // Keep the IKE_AUTH datagrams to read the AUTH payloads with the SA keys afterwards.
  const authDatagrams: Datagram[] = [];
  const inner = wire.filter;
  wire.filter = (d, i) => {
    if (d.bytes[18] === ExchangeType.IKE_AUTH) authDatagrams.push({ ...d, bytes: new Uint8Array(d.bytes) });
    return inner(d, i);
  };
  // Capture the SAs before they are deleted, to open the IKE_AUTH messages.
  let bobSa: IkeSa | undefined;
  bob.on('ike-up', (s) => (bobSa = s));
  const authMethods: { fromAlice?: number; fromBob?: number } = {};
  const read = (sa: IkeSa) => {
    for (const d of authDatagrams) {
      const msg = decodeMessage(d.bytes);
      if (!msg.ok) continue;
      const response = (msg.value.header.flags & HeaderFlag.RESPONSE) !== 0;
      if (sa.isInitiator !== response) continue; // only what the peer sent can be opened with protectIn
      const opened = openMessage(sa, msg.value);
      if (!opened.ok) continue;
      const a = opened.value.find((p) => p.type === PayloadType.AUTH);
      if (a?.type === PayloadType.AUTH) authMethods[response ? 'fromBob' : 'fromAlice'] = a.method;
    }
  };
  let aliceSa: IkeSa | undefined;
  alice.on('ike-up', (s) => (aliceSa = s));
  const up = alice.initiate('to-bob');
  up.catch(() => {});
  wire.run(100);
  const outcome = await settled(up).then(
    (sa) => ({ ok: true as const, sa }),
    (err: Error) => ({ ok: false as const, reason: err.message }),
  );
  if (aliceSa) read(aliceSa);
  if (bobSa) read(bobSa);
  return { outcome, alice, bob, authMethods, bobSa, wire };
}

describe('Digital Signature authentication (RFC 7427)', () => {
  for (const kind of ['ed25519', 'ecdsa-p256'] as const) {
    it(`${kind}: both directions authenticate with signatures`, async () => {
      const a = keyPair(kind);
      const b = keyPair(kind);
      const r = await handshake({ aliceLocal: pubkeyLocal(a), aliceRemote: pubkeyRemote(b), bobLocal: pubkeyLocal(b), bobRemote: pubkeyRemote(a) });
      expect(r.outcome.ok).toBe(true);
      if (!r.outcome.ok) return;
      const sa = r.outcome.sa;
      expect(sa.state).toBe('established');
      expect(sa.children).toHaveLength(1);
      expect(r.bobSa?.state).toBe('established');
      expect(r.bobSa?.peerKey).toBe('alice@example.org');
      // Method 14 on the wire in both directions.
      expect(r.authMethods).toEqual({ fromAlice: AuthMethod.DIGITAL_SIGNATURE, fromBob: AuthMethod.DIGITAL_SIGNATURE });
    });

    it(`${kind}: a wrong public key for the initiator fails with AUTHENTICATION_FAILED and the responder keeps nothing`, async () => {
      const a = keyPair(kind);
      const b = keyPair(kind);
      const mallory = keyPair(kind);
      const r = await handshake({ aliceLocal: pubkeyLocal(a), aliceRemote: pubkeyRemote(b), bobLocal: pubkeyLocal(b), bobRemote: pubkeyRemote(mallory) });
      expect(r.outcome.ok).toBe(false);
      if (r.outcome.ok) return;
      expect(r.outcome.reason).toMatch(/AUTHENTICATION_FAILED/);
      expect(r.bob.ikeSas()).toHaveLength(0);
      expect(r.alice.ikeSas()).toHaveLength(0);
      expect(r.bob.childrenBySpi.size).toBe(0);
    });

    it(`${kind}: a wrong public key for the responder makes the initiator refuse it`, async () => {
      const a = keyPair(kind);
      const b = keyPair(kind);
      const mallory = keyPair(kind);
      const r = await handshake({ aliceLocal: pubkeyLocal(a), aliceRemote: pubkeyRemote(mallory), bobLocal: pubkeyLocal(b), bobRemote: pubkeyRemote(a) });
      expect(r.outcome.ok).toBe(false);
      if (r.outcome.ok) return;
      expect(r.outcome.reason).toMatch(/AUTHENTICATION_FAILED/);
      expect(r.alice.ikeSas()).toHaveLength(0);
      expect(r.alice.childrenBySpi.size).toBe(0);
      expect(r.alice.reservedSpis.size).toBe(0);
    });
  }

  it('a key of the other algorithm does not verify (Ed25519 signer, ECDSA key expected)', async () => {
    const a = keyPair('ed25519');
    const b = keyPair('ecdsa-p256');
    const other = keyPair('ecdsa-p256');
    const r = await handshake({ aliceLocal: pubkeyLocal(a), aliceRemote: pubkeyRemote(b), bobLocal: pubkeyLocal(b), bobRemote: pubkeyRemote(other) });
    expect(r.outcome.ok).toBe(false);
    expect(r.bob.ikeSas()).toHaveLength(0);
  });

  it('mixed: Ed25519 initiator, ECDSA P-256 responder', async () => {
    const a = keyPair('ed25519');
    const b = keyPair('ecdsa-p256');
    const r = await handshake({ aliceLocal: pubkeyLocal(a), aliceRemote: pubkeyRemote(b), bobLocal: pubkeyLocal(b), bobRemote: pubkeyRemote(a) });
    expect(r.outcome.ok).toBe(true);
    expect(r.authMethods).toEqual({ fromAlice: AuthMethod.DIGITAL_SIGNATURE, fromBob: AuthMethod.DIGITAL_SIGNATURE });
  });

  it('mixed: initiator PSK, responder signature, configured so on both ends (§2.15)', async () => {
    const { PSK } = await import('./support/peers.js');
    const b = keyPair('ecdsa-p256');
    const r = await handshake({
      aliceLocal: { method: 'psk', psk: PSK },
      aliceRemote: pubkeyRemote(b),
      bobLocal: pubkeyLocal(b),
      bobRemote: { method: 'psk', psk: PSK },
    });
    expect(r.outcome.ok).toBe(true);
    expect(r.authMethods).toEqual({ fromAlice: AuthMethod.SHARED_KEY_MIC, fromBob: AuthMethod.DIGITAL_SIGNATURE });
    expect(r.bobSa?.children).toHaveLength(1);
  });

  it('mixed the other way: initiator Ed25519, responder PSK', async () => {
    const { PSK } = await import('./support/peers.js');
    const a = keyPair('ed25519');
    const r = await handshake({
      aliceLocal: pubkeyLocal(a),
      aliceRemote: { method: 'psk', psk: PSK },
      bobLocal: { method: 'psk', psk: PSK },
      bobRemote: pubkeyRemote(a),
    });
    expect(r.outcome.ok).toBe(true);
    expect(r.authMethods).toEqual({ fromAlice: AuthMethod.DIGITAL_SIGNATURE, fromBob: AuthMethod.SHARED_KEY_MIC });
  });

  it('a method other than the configured one is refused: PSK MIC where a signature is expected', async () => {
    const { PSK } = await import('./support/peers.js');
    const a = keyPair('ed25519');
    const b = keyPair('ed25519');
    // Alice authenticates with the PSK Bob also knows, but Bob's policy wants Alice's signature.
    const r = await handshake({
      aliceLocal: { method: 'psk', psk: PSK },
      aliceRemote: pubkeyRemote(b),
      bobLocal: pubkeyLocal(b),
      bobRemote: pubkeyRemote(a),
    });
    expect(r.outcome.ok).toBe(false);
    if (r.outcome.ok) return;
    expect(r.outcome.reason).toMatch(/AUTHENTICATION_FAILED/);
    expect(r.bob.ikeSas()).toHaveLength(0);
  });

  it('the AUTHENTICATION_FAILED answer is the only payload of the protected response (§2.21.2)', async () => {
    const a = keyPair('ed25519');
    const b = keyPair('ed25519');
    const mallory = keyPair('ed25519');
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({
      initiator: { localAuth: pubkeyLocal(a), remoteAuth: pubkeyRemote(b) },
      responder: { localAuth: pubkeyLocal(b), remoteAuth: pubkeyRemote(mallory) },
    });
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    const answers: number[][] = [];
    let aliceSa: IkeSa | undefined;
    wire.filter = (d) => {
      if (d.bytes[18] === ExchangeType.IKE_AUTH && (d.bytes[19]! & HeaderFlag.RESPONSE) !== 0 && aliceSa) {
        const msg = decodeMessage(d.bytes);
        const opened = msg.ok ? openMessage(aliceSa, msg.value) : undefined;
        if (opened?.ok) answers.push(opened.value.map((p) => (p.type === PayloadType.NOTIFY ? p.notifyType : -p.type)));
      }
      return 'pass';
    };
    const up = alice.initiate('to-bob');
    up.catch(() => {});
    aliceSa = alice.ikeSas()[0];
    wire.run(100);
    await expect(settled(up)).rejects.toThrow(/AUTHENTICATION_FAILED/);
    expect(answers).toEqual([[NotifyType.AUTHENTICATION_FAILED]]);
  });

  describe('the signature hash is one the peer announced (RFC 7427 §4, RFC 8420 §2)', () => {
    /** Notify 16431 with our list (SHA2-256, -384, -512, Identity) as it appears in IKE_SA_INIT. */
    const ANNOUNCED = Uint8Array.from([0x40, 0x2f, 0, 2, 0, 3, 0, 4, 0, 5]);
    function indexOf(bytes: Uint8Array, needle: Uint8Array): number {
      outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
        for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
        return i;
      }
      return -1;
    }

    it('an Ed25519 initiator whose responder announced no Identity hash stops before IKE_AUTH', async () => {
      const a = keyPair('ed25519');
      const b = keyPair('ed25519');
      const wire = new MemoryWire();
      const { initiator, responder } = pskPair({
        initiator: { localAuth: pubkeyLocal(a), remoteAuth: pubkeyRemote(b) },
        responder: { localAuth: pubkeyLocal(b), remoteAuth: pubkeyRemote(a) },
      });
      const alice = wire.engine('10.0.0.1', [initiator]);
      wire.engine('10.0.0.2', [responder]);
      let rewritten = 0;
      // Bob's IKE_SA_INIT response announces SHA2-256 only (same length: 2, 2, 2, 2).
      wire.tamper = (d) => {
        if (d.bytes[18] !== ExchangeType.IKE_SA_INIT || (d.bytes[19]! & HeaderFlag.RESPONSE) === 0) return d;
        const at = indexOf(d.bytes, ANNOUNCED);
        if (at < 0) return d;
        const bytes = Uint8Array.from(d.bytes);
        bytes.set([0, 2, 0, 2, 0, 2, 0, 2], at + 2);
        rewritten++;
        return { ...d, bytes };
      };
      const up = alice.initiate('to-bob');
      up.catch(() => {});
      // The IKE_SA_INIT response is unauthenticated (RFC 7296 §2.21.1): alice drops it and
      // retransmits until her budget (3 retransmissions, 7.5 s here) is spent, then gives up.
      wire.run(10_000);
      await expect(settled(up)).rejects.toThrow(/announced no signature hash a ed25519 key signs with/);
      expect(rewritten).toBe(4);
      // No IKE_AUTH request left alice.
      expect(wire.log.filter((d) => d.bytes[18] === ExchangeType.IKE_AUTH)).toHaveLength(0);
    });

    it('a responder answers AUTHENTICATION_FAILED rather than sign in a hash the initiator did not announce', () => {
      const { responder } = pskPair({ responder: { localAuth: pubkeyLocal(keyPair('ed25519')) } });
      const zero = new Uint8Array(8);
      const sa = new IkeSa('responder', responder, { address: '10.0.0.2', port: 500 }, { address: '10.0.0.1', port: 500 }, zero, zero, 0);
      expect(authRefusal(sa)).toMatch(/announced no signature hash a ed25519 key signs with \(SIGNATURE_HASH_ALGORITHMS: none\)/);
      sa.peerSignatureHashes = [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_512];
      expect(authRefusal(sa)).toMatch(/SIGNATURE_HASH_ALGORITHMS: 2, 4/);
      sa.peerSignatureHashes = [HashAlgorithm.SHA2_256, HashAlgorithm.IDENTITY];
      expect(authRefusal(sa)).toBeUndefined();
      // ECDSA signs with whichever SHA-2 the peer announced.
      sa.policy = { ...responder, localAuth: pubkeyLocal(keyPair('ecdsa-p256')) };
      sa.peerSignatureHashes = [HashAlgorithm.SHA2_512];
      expect(authRefusal(sa)).toBeUndefined();
      sa.peerSignatureHashes = [HashAlgorithm.IDENTITY];
      expect(authRefusal(sa)).toMatch(/ecdsa-p256/);
      // PSK needs no hash.
      sa.policy = pskPair().responder;
      sa.peerSignatureHashes = [];
      expect(authRefusal(sa)).toBeUndefined();
    });
  });
});
