// IKE_AUTH with X.509 certificates between two in-memory engines: CERT
// payloads with the chain (RFC 7296 §3.6), CERTREQ naming the trust anchors
// (§3.7) under send_cert / send_certreq as swanctl, the peer's chain validated
// to the configured root and its ID bound to the certificate (RFC 4945 §3.1),
// AUTH verified with the certificate's key (RFC 7427). Every refusal answers
// AUTHENTICATION_FAILED (§2.21.2), logs one warning with its reason, and
// leaves no SA behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryWire, id, pskPair } from './support/peers.js';
import { capturedLog, WARN, type LogLine } from './support/mobike-peers.js';
import { CertPeers } from './support/cert-peers.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import type { Payload } from '../control/wire/payloads.js';
import { decodeMessage } from '../control/wire/message.js';
import { CertEncoding, ExchangeType, HeaderFlag, PayloadType } from '../control/wire/constants.js';
import { decodeCertreqAuthorities, subjectPublicKeyInfoSha1 } from '../control/crypto/x509/index.js';

interface Sent {
  from: 'alice' | 'bob';
  exchangeType: number;
  payloads: readonly Payload[];
}

/** One IKE_SA_INIT + IKE_AUTH from alice to bob; the outcome, both logs and every message's payloads. */
async function handshake(over: { initiator?: Partial<ConnectionPolicy>; responder?: Partial<ConnectionPolicy> }) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair(over);
  const logs = { alice: capturedLog(), bob: capturedLog() };
  const sent: Sent[] = [];
  const alice = wire.engine('10.0.0.1', [initiator], { log: logs.alice.log, trace: (e) => e.direction === 'out' && sent.push({ from: 'alice', ...e }) });
  const bob = wire.engine('10.0.0.2', [responder], { log: logs.bob.log, trace: (e) => e.direction === 'out' && sent.push({ from: 'bob', ...e }) });
  const up = alice.initiate(initiator.name);
  up.catch(() => {});
  wire.run(100);
  const outcome = await Promise.race([
    up.then((sa) => ({ ok: true as const, sa }), (err: Error) => ({ ok: false as const, reason: err.message })),
    new Promise<never>((_, reject) => setImmediate(() => reject(new Error('still pending after the wire went quiet')))),
  ]);
  // IKE_SA_INIT travels in clear: read it from the wire.
  for (const d of wire.log) {
    const msg = decodeMessage(d.bytes);
    if (msg.ok && msg.value.header.exchangeType === ExchangeType.IKE_SA_INIT) {
      sent.push({ from: (msg.value.header.flags & HeaderFlag.RESPONSE) !== 0 ? 'bob' : 'alice', exchangeType: ExchangeType.IKE_SA_INIT, payloads: msg.value.payloads });
    }
  }
  const payloadsOf = (from: 'alice' | 'bob', exchangeType: number, type: number) =>
    sent.filter((s) => s.from === from && s.exchangeType === exchangeType).flatMap((s) => s.payloads.filter((p) => p.type === type));
  const warnings = (who: 'alice' | 'bob'): LogLine[] => logs[who].lines().filter((l) => l.level === WARN);
  return { outcome, alice, bob, payloadsOf, warnings };
}

const certData = (payloads: readonly Payload[]): Uint8Array[] =>
  payloads.flatMap((p) => (p.type === PayloadType.CERT && p.encoding === CertEncoding.X509_SIGNATURE ? [p.data] : []));

describe.each(['ecdsa-p256', 'rsa-pss-3072', 'ed25519'] as const)('certificate authentication with %s', (keyType) => {
  const peers = new CertPeers(keyType);
  beforeAll(() => void peers.make(), 120_000);
  afterAll(() => peers.cleanup());

  const aliceRemoteId = { remoteId: id('bob.example.org') };
  const valid = () => ({
    initiator: { localAuth: peers.local('alice'), remoteAuth: peers.remote(), ...aliceRemoteId },
    responder: { localAuth: peers.local('bob'), remoteAuth: peers.remote() },
  });

  it('a valid chain authenticates both ends, each sending its chain after the other asked', async () => {
    const r = await handshake(valid());
    expect(r.outcome.ok).toBe(true);
    expect(r.bob.ikeSas()[0]?.state).toBe('established');
    expect(r.bob.ikeSas()[0]?.peerKey).toBe('alice@example.org');
    // CERTREQ naming the root: in bob's IKE_SA_INIT response and alice's IKE_AUTH request (RFC 7296 §3.7).
    const rootHash = Buffer.from(subjectPublicKeyInfoSha1(peers.cert('root'))).toString('hex');
    for (const [from, ex] of [['bob', ExchangeType.IKE_SA_INIT], ['alice', ExchangeType.IKE_AUTH]] as const) {
      const reqs = r.payloadsOf(from, ex, PayloadType.CERTREQ);
      expect(reqs).toHaveLength(1);
      const req = reqs[0]!;
      if (req.type !== PayloadType.CERTREQ) throw new Error('not a CERTREQ');
      expect(req.encoding).toBe(CertEncoding.X509_SIGNATURE);
      expect(decodeCertreqAuthorities(req.data).map((h) => Buffer.from(h).toString('hex'))).toEqual([rootHash]);
    }
    // CERT: end entity first, then the intermediate (RFC 7296 §3.6), from both.
    expect(certData(r.payloadsOf('alice', ExchangeType.IKE_AUTH, PayloadType.CERT))).toEqual([peers.cert('alice').der, peers.cert('int').der]);
    expect(certData(r.payloadsOf('bob', ExchangeType.IKE_AUTH, PayloadType.CERT))).toEqual([peers.cert('bob').der, peers.cert('int').der]);
    expect(r.warnings('alice')).toEqual([]);
    expect(r.warnings('bob')).toEqual([]);
  });

  it('the initiator refuses a responder whose certificate expired', async () => {
    const v = valid();
    const r = await handshake({ ...v, responder: { ...v.responder, localAuth: peers.local('bob-expired') } });
    expect(r.outcome.ok).toBe(false);
    if (r.outcome.ok) return;
    expect(r.outcome.reason).toMatch(/AUTHENTICATION_FAILED.*certificate refused \(expired\)/);
    expect(r.warnings('alice').map((l) => [l.msg, l.reason])).toEqual([['IKE SA failed', expect.stringMatching(/certificate refused \(expired\): certificate ".*CN=bob.example.org" expired on /)]]);
    expect(r.alice.ikeSas()).toHaveLength(0);
    expect(r.alice.childrenBySpi.size).toBe(0);
  });
});

describe('certificate refusals and CERTREQ handling (ECDSA P-256)', () => {
  const peers = new CertPeers('ecdsa-p256');
  beforeAll(() => void peers.make(), 60_000);
  afterAll(() => peers.cleanup());

  const base = () => ({
    initiator: { localAuth: peers.local('alice'), remoteAuth: peers.remote(), remoteId: id('bob.example.org') } as Partial<ConnectionPolicy>,
    responder: { localAuth: peers.local('bob'), remoteAuth: peers.remote() } as Partial<ConnectionPolicy>,
  });

  /** alice presents `initiator`; bob must answer AUTHENTICATION_FAILED and log `reason`. */
  async function refusedByBob(over: ReturnType<typeof base>, reason: RegExp) {
    const r = await handshake(over);
    expect(r.outcome.ok).toBe(false);
    if (r.outcome.ok) return r;
    expect(r.outcome.reason).toMatch(/AUTHENTICATION_FAILED/);
    // One warning says why ('IKE SA failed' then repeats it as the SA's end).
    const warnings = r.warnings('bob').filter((l) => l.msg === 'IKE_AUTH failed');
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]!.reason)).toMatch(reason);
    expect(JSON.stringify(warnings[0])).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.bob.ikeSas()).toHaveLength(0);
    expect(r.bob.childrenBySpi.size).toBe(0);
    expect(r.alice.ikeSas()).toHaveLength(0);
    return r;
  }

  it('an expired certificate', async () => {
    const o = base();
    await refusedByBob({ ...o, initiator: { ...o.initiator, localAuth: peers.local('alice-expired') } }, /certificate refused \(expired\)/);
  });

  it('a certificate from an unknown CA', async () => {
    const o = base();
    const local = peers.local('alice-rogue');
    local.certificates = { endEntity: peers.cert('alice-rogue'), intermediates: [] };
    await refusedByBob({ ...o, initiator: { ...o.initiator, localAuth: local } }, /certificate refused \(unknown-ca\)/);
  });

  it('a revoked certificate (CRL file)', async () => {
    const o = base();
    await refusedByBob({ ...o, initiator: { ...o.initiator, localAuth: peers.local('alice-revoked') } }, /certificate refused \(revoked\)/);
  });

  it('an ID the certificate does not name', async () => {
    const o = base();
    await refusedByBob(
      { initiator: { ...o.initiator, localId: id('mallory@example.org') }, responder: { ...o.responder, remoteId: 'any' } },
      /certificate refused \(id-mismatch\): email mallory@example.org is not in certificate/,
    );
  });

  it('a signature made with another key than the certificate holds', async () => {
    const o = base();
    await refusedByBob({ ...o, initiator: { ...o.initiator, localAuth: peers.local('alice', 'other') } }, /AUTH payload does not verify with the key of certificate/);
  });

  it('send_cert ifasked without a CERTREQ sends no certificate: the peer has none to check', async () => {
    const o = base();
    const r = await refusedByBob({ ...o, responder: { ...o.responder, sendCertreq: false } }, /no X\.509 certificate \(CERT payload\) received/);
    expect(r.payloadsOf('bob', ExchangeType.IKE_SA_INIT, PayloadType.CERTREQ)).toEqual([]);
    expect(r.payloadsOf('alice', ExchangeType.IKE_AUTH, PayloadType.CERT)).toEqual([]);
  });

  it('send_cert always sends the chain unasked', async () => {
    const o = base();
    const r = await handshake({ initiator: { ...o.initiator, sendCert: 'always' }, responder: { ...o.responder, sendCertreq: false } });
    expect(r.outcome.ok).toBe(true);
    expect(certData(r.payloadsOf('alice', ExchangeType.IKE_AUTH, PayloadType.CERT))).toHaveLength(2);
  });

  it('send_cert never sends nothing even when asked; a pinned key still authenticates', async () => {
    const o = base();
    const aliceKey = peers.cert('alice').spki;
    const { createPublicKey } = await import('node:crypto');
    const { verifyKeyFromPublicKey } = await import('../control/crypto/auth.js');
    const pinned = verifyKeyFromPublicKey(createPublicKey({ key: Buffer.from(aliceKey), format: 'der', type: 'spki' }));
    if (!pinned.ok) throw new Error(pinned.error);
    const r = await handshake({
      initiator: { ...o.initiator, sendCert: 'never' },
      responder: { ...o.responder, remoteAuth: peers.remote({ verifyKey: pinned.value }) },
    });
    expect(r.outcome.ok).toBe(true);
    expect(r.payloadsOf('bob', ExchangeType.IKE_SA_INIT, PayloadType.CERTREQ)).toHaveLength(1);
    expect(r.payloadsOf('alice', ExchangeType.IKE_AUTH, PayloadType.CERT)).toEqual([]);
  });
});
