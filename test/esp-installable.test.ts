// "Never accept a proposal the data plane cannot install": for every ESP
// encryption and integrity transform (and key length, and ESN) that the
// configuration's keyword table or the negotiation code knows, the
// combination is either refused (by the configuration with a precise error,
// or by negotiation when a policy is built in code) or, once negotiated, its
// ESP transform descriptor installs in the wasm kernel with keys laid out as
// deriveChildKeys makes them (RFC 7296 §2.17) and one packet makes the round
// trip. AES-CBC packets are also checked with node:crypto, which pins the key
// material order (encryption key || integrity key).
import { describe, expect, it } from 'vitest';
import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import {
  PROPOSAL_KEYWORDS, parseEspProposal, parseInstallableEspProposal, type ProposalSpec,
} from '../control/config/proposal.js';
import { acceptChosenProposal, buildProposals, chosenProposal, selectProposal, type NegotiatedSuite } from '../control/ike/proposals.js';
import { encrInfo, integInfo } from '../control/crypto/algorithms.js';
import { deriveChildKeys } from '../control/crypto/keys.js';
import { espKeyMaterial, espTransformFor, type EspTransformAlgorithm } from '../control/crypto/esp-transform.js';
import { EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType as T } from '../control/wire/constants.js';
import { EspKernel, ResultCode, type EspAlgorithm } from '../dataplane/kernel.js';

// Every name the control plane may send is one the kernel knows (compile-time check).
const sameNames: EspTransformAlgorithm extends EspAlgorithm ? (EspAlgorithm extends EspTransformAlgorithm ? true : false) : false = true;

const KERNEL_ALGORITHMS: EspAlgorithm[] = [
  'aes-gcm-128', 'aes-gcm-256', 'chacha20-poly1305',
  'aes-cbc-128-hmac-sha2-256-128', 'aes-cbc-128-hmac-sha2-384-192', 'aes-cbc-128-hmac-sha2-512-256',
  'aes-cbc-256-hmac-sha2-256-128', 'aes-cbc-256-hmac-sha2-384-192', 'aes-cbc-256-hmac-sha2-512-256',
];

const SPI = new Uint8Array([0x12, 0x34, 0x56, 0x78]);

/** An IPv4/UDP packet of `size` bytes (contents only need to come back unchanged). */
function innerPacket(size: number): Uint8Array {
  const p = new Uint8Array(randomBytes(size));
  p[0] = 0x45;
  return p;
}

let slot = 0;
/**
 * Install the negotiated suite's ESP transform as outbound and inbound SA of a
 * real kernel, with keys derived as the engine derives them, and round-trip a
 * packet. Returns the kernel algorithm used.
 */
async function installAndRoundTrip(kernel: EspKernel, suite: NegotiatedSuite): Promise<EspAlgorithm> {
  const transform = espTransformFor(suite.encr, suite.encrKeyLength, suite.integ);
  expect(transform, `negotiated ${JSON.stringify(suite)} has no ESP transform`).toBeDefined();
  const encr = encrInfo(suite.encr, suite.encrKeyLength)!;
  const integ = suite.integ !== undefined ? integInfo(suite.integ) : undefined;
  const keys = deriveChildKeys(PrfId.HMAC_SHA2_256, randomBytes(32), { nonceI: randomBytes(32), nonceR: randomBytes(32) }, encr, integ);
  const encKey = keys.encrI.slice();
  const integKey = keys.integI.slice();
  const esn = suite.esn === EsnId.YES;
  const spi = 0x1000 + slot;
  const out = slot++;
  const inb = slot++;
  const common = { algorithm: transform!.algorithm, icvLength: transform!.icvLength, spi, esn };
  kernel.installSa(out, { ...common, keyMaterial: espKeyMaterial(keys.encrI, keys.integI), direction: 'out' });
  kernel.installSa(inb, { ...common, keyMaterial: espKeyMaterial(keys.encrI, keys.integI), direction: 'in' });
  const inner = innerPacket(100);
  const esp = kernel.encap(out, inner);
  if (suite.encr === EncrId.AES_CBC) {
    // An independent reading: HMAC with the integrity key over all but the ICV, AES-CBC with the encryption key.
    const icvLength = transform!.icvLength;
    const signed = esp.subarray(0, esp.length - icvLength);
    const hmac = createHmac(integ!.hash, integKey).update(signed);
    if (esn) hmac.update(new Uint8Array(4)); // RFC 4303 §2.2.1: the high half (0) takes part in the ICV
    expect(Buffer.from(esp.subarray(esp.length - icvLength))).toEqual(hmac.digest().subarray(0, icvLength));
    const decipher = createDecipheriv(`aes-${encKey.length * 8}-cbc`, encKey, esp.subarray(8, 24)).setAutoPadding(false);
    const plain = Buffer.concat([decipher.update(esp.subarray(24, esp.length - icvLength)), decipher.final()]);
    expect(plain.subarray(0, inner.length)).toEqual(Buffer.from(inner));
  }
  const back = kernel.decap(inb, esp);
  expect(back.result).toBe(ResultCode.OK);
  expect(back.payload).toEqual(inner);
  kernel.deleteSa(out);
  kernel.deleteSa(inb);
  slot %= 200;
  return transform!.algorithm;
}

/** The responder's choice when both sides configured `spec`, checked by the initiator as well. */
function negotiate(spec: ProposalSpec): NegotiatedSuite | undefined {
  const offered = buildProposals([spec], SPI);
  const suite = selectProposal(offered, [spec], { requireKe: false });
  if (!suite) return undefined;
  // The initiator's view of the same answer.
  expect(acceptChosenProposal([chosenProposal(suite, SPI)], offered)).toEqual(suite);
  return suite;
}

describe('every ESP transform is refused or installs', () => {
  it('configuration: each encryption keyword with each integrity keyword (or none), with and without ESN', async () => {
    const kernel = await EspKernel.create();
    const reached = new Set<EspAlgorithm>();
    let refused = 0;
    for (const encr of PROPOSAL_KEYWORDS.encryption) {
      for (const integ of [undefined, ...PROPOSAL_KEYWORDS.integrity]) {
        for (const esn of ['esn', 'noesn']) {
          const text = [encr, integ, esn].filter((k) => k !== undefined).join('-');
          // Syntax first: AEAD with integrity, non-AEAD without, are syntax errors of their own.
          if (!parseEspProposal(text).ok) continue;
          const r = parseInstallableEspProposal(text);
          if (!r.ok) {
            // Refused at configuration time, naming the keyword and what the data plane runs.
            expect(r.error).toMatch(/which the data plane cannot run; ESP (encryption|integrity) it runs: /);
            expect(r.error).toMatch(new RegExp(`'(${encr}|${integ})'`));
            refused++;
            continue;
          }
          const suite = negotiate(r.value);
          expect(suite, `${text} parses but does not negotiate`).toBeDefined();
          reached.add(await installAndRoundTrip(kernel, suite!));
        }
      }
    }
    expect([...reached].sort()).toEqual([...KERNEL_ALGORITHMS].sort());
    expect(refused).toBeGreaterThan(0);
    for (const text of ['aes192-sha256', 'aes256-sha1', 'aes128-aesxcbc', 'aes192gcm16', 'aes192gcm8-esn']) {
      expect(parseInstallableEspProposal(text).ok, text).toBe(false);
    }
    expect(parseInstallableEspProposal('aes192-sha256')).toEqual({
      ok: false,
      error: expect.stringMatching(/^ESP proposal 'aes192-sha256' has 'aes192' \(AES_CBC_192\), which the data plane cannot run; ESP encryption it runs: aes128 aes aes256 aes128gcm16 /),
    });
    expect(parseInstallableEspProposal('aes256-sha1')).toEqual({
      ok: false,
      error: "ESP proposal 'aes256-sha1' has 'sha1' (HMAC_SHA1_96), which the data plane cannot run; ESP integrity it runs: sha256 sha2_256 sha384 sha2_384 sha512 sha2_512",
    });
  });

  it('negotiation: every encryption id and key length, integrity id and ESN it knows, in policies built in code', async () => {
    const kernel = await EspKernel.create();
    const reached = new Set<EspAlgorithm>();
    const encrs: Array<{ id: number; keyLength?: number }> = [];
    for (const id of Object.values(EncrId)) {
      for (const keyLength of [undefined, 64, 128, 192, 256]) {
        if (encrInfo(id, keyLength) !== undefined) encrs.push(keyLength === undefined ? { id } : { id, keyLength });
      }
    }
    const integs = Object.values(IntegId).filter((id) => id === IntegId.NONE || integInfo(id) !== undefined);
    expect(encrs.length).toBeGreaterThanOrEqual(13);
    let refused = 0;
    for (const e of encrs) {
      for (const integ of [undefined, ...integs]) {
        for (const esn of [EsnId.NO, EsnId.YES]) {
          const spec: ProposalSpec = {
            protocol: ProtocolId.ESP,
            transforms: [
              { type: T.ENCR, ...e },
              ...(integ !== undefined ? [{ type: T.INTEG, id: integ }] : []),
              { type: T.ESN, id: esn },
            ],
          };
          const suite = negotiate(spec);
          if (!suite) {
            refused++;
            continue;
          }
          reached.add(await installAndRoundTrip(kernel, suite));
        }
      }
    }
    expect([...reached].sort()).toEqual([...KERNEL_ALGORITHMS].sort());
    expect(refused).toBeGreaterThan(0);
    // An initiator never takes an uninstallable answer either, even one it offered.
    const aes192: ProposalSpec = { protocol: ProtocolId.ESP, transforms: [{ type: T.ENCR, id: EncrId.AES_CBC, keyLength: 192 }, { type: T.INTEG, id: IntegId.HMAC_SHA2_256_128 }, { type: T.ESN, id: EsnId.NO }] };
    const offered = buildProposals([aes192], SPI);
    expect(acceptChosenProposal([{ ...offered[0]!, transforms: offered[0]!.transforms }], offered)).toBeUndefined();
    // ... while the IKE SA itself may still use it (its SK payload runs in node:crypto).
    const ikeSpec: ProposalSpec = { protocol: ProtocolId.IKE, transforms: [{ type: T.ENCR, id: EncrId.AES_CBC, keyLength: 192 }, { type: T.PRF, id: PrfId.HMAC_SHA2_256 }, { type: T.INTEG, id: IntegId.HMAC_SHA2_256_128 }, { type: T.KE, id: 31 }] };
    expect(selectProposal(buildProposals([ikeSpec], new Uint8Array(8)), [ikeSpec])).toBeDefined();
  });

  it('one installable proposal among several is still chosen', () => {
    const mixed = parseEspProposal('aes192-aes256-sha1-sha256');
    expect(mixed.ok).toBe(true);
    if (!mixed.ok) return;
    const suite = negotiate(mixed.value);
    expect(suite).toMatchObject({ encr: EncrId.AES_CBC, encrKeyLength: 256, integ: IntegId.HMAC_SHA2_256_128 });
    expect(sameNames).toBe(true);
  });
});
