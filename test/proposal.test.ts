import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, PROPOSAL_KEYWORDS, formatProposal, formatTransform,
  isAeadEncr, parseEspProposal, parseIkeProposal, proposalKeywords,
  type ProposalSpec, type TransformSpec,
} from '../control/config/proposal.js';
import { EncrId, EsnId, IntegId, KeGroup, PrfId, ProtocolId, TransformType as T } from '../control/wire/constants.js';
import { selectProposal } from '../control/ike/proposals.js';
import type { Proposal, TransformAttribute } from '../control/wire/payloads.js';

function ike(s: string): ProposalSpec {
  const r = parseIkeProposal(s);
  if (!r.ok) throw new Error(`expected '${s}' to parse: ${r.error}`);
  return r.value;
}
function esp(s: string): ProposalSpec {
  const r = parseEspProposal(s);
  if (!r.ok) throw new Error(`expected '${s}' to parse: ${r.error}`);
  return r.value;
}
function ikeError(s: string): string {
  const r = parseIkeProposal(s);
  if (r.ok) throw new Error(`expected '${s}' to be rejected, got ${formatProposal(r.value.transforms)}`);
  return r.error;
}
function espError(s: string): string {
  const r = parseEspProposal(s);
  if (r.ok) throw new Error(`expected '${s}' to be rejected, got ${formatProposal(r.value.transforms)}`);
  return r.error;
}
const ofType = (p: ProposalSpec, type: number): TransformSpec[] => p.transforms.filter((t) => t.type === type);

describe('encryption keywords', () => {
  const cases: Array<[string, number, number | undefined]> = [
    ['aes', EncrId.AES_CBC, 128],
    ['aes128', EncrId.AES_CBC, 128],
    ['aes192', EncrId.AES_CBC, 192],
    ['aes256', EncrId.AES_CBC, 256],
    ['chacha20poly1305', EncrId.CHACHA20_POLY1305, undefined],
  ];
  for (const bits of [128, 192, 256]) {
    cases.push([`aes${bits}gcm16`, EncrId.AES_GCM_16, bits], [`aes${bits}gcm128`, EncrId.AES_GCM_16, bits]);
    cases.push([`aes${bits}gcm12`, EncrId.AES_GCM_12, bits], [`aes${bits}gcm96`, EncrId.AES_GCM_12, bits]);
    cases.push([`aes${bits}gcm8`, EncrId.AES_GCM_8, bits], [`aes${bits}gcm64`, EncrId.AES_GCM_8, bits]);
  }
  for (const [kw, id, keyLength] of cases) {
    it(`${kw} -> ENCR ${id}${keyLength ? `/${keyLength}` : ''}`, () => {
      const aead = isAeadEncr(id);
      const p = esp(aead ? kw : `${kw}-sha256`);
      const encr = ofType(p, T.ENCR);
      expect(encr).toEqual([keyLength === undefined ? { type: T.ENCR, id } : { type: T.ENCR, id, keyLength }]);
    });
  }

  it('every listed encryption keyword is covered above', () => {
    expect(new Set(PROPOSAL_KEYWORDS.encryption)).toEqual(new Set(cases.map((c) => c[0])));
  });

  it('keywords are case-insensitive', () => {
    expect(ike('AES256GCM16-PRFSHA256-X25519')).toEqual(ike('aes256gcm16-prfsha256-x25519'));
  });
});

describe('integrity, PRF, key exchange and ESN keywords', () => {
  it.each([
    ['sha256', IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256],
    ['sha2_256', IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256],
    ['sha384', IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384],
    ['sha2_384', IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384],
    ['sha512', IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512],
    ['sha2_512', IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512],
    ['sha1', IntegId.HMAC_SHA1_96, PrfId.HMAC_SHA1],
    ['aesxcbc', IntegId.AES_XCBC_96, PrfId.AES128_XCBC],
  ])('%s is integrity %i and implies PRF %i in IKE', (kw, integ, prf) => {
    const p = ike(`aes128-${kw}-ecp256`);
    expect(ofType(p, T.INTEG)).toEqual([{ type: T.INTEG, id: integ }]);
    expect(ofType(p, T.PRF)).toEqual([{ type: T.PRF, id: prf }]);
  });

  it.each([
    ['prfsha256', PrfId.HMAC_SHA2_256],
    ['prfsha384', PrfId.HMAC_SHA2_384],
    ['prfsha512', PrfId.HMAC_SHA2_512],
    ['prfsha1', PrfId.HMAC_SHA1],
    ['prfaesxcbc', PrfId.AES128_XCBC],
    ['prfaescmac', PrfId.AES128_CMAC],
  ])('%s is PRF %i', (kw, id) => {
    expect(ofType(ike(`aes256gcm16-${kw}-x25519`), T.PRF)).toEqual([{ type: T.PRF, id }]);
  });

  it.each([
    ['x25519', KeGroup.CURVE25519],
    ['curve25519', KeGroup.CURVE25519],
    ['x448', KeGroup.CURVE448],
    ['curve448', KeGroup.CURVE448],
    ['ecp256', KeGroup.ECP_256],
    ['ecp384', KeGroup.ECP_384],
    ['ecp521', KeGroup.ECP_521],
    ['modp2048', KeGroup.MODP_2048],
    ['modp3072', KeGroup.MODP_3072],
    ['modp4096', KeGroup.MODP_4096],
  ])('%s is key exchange method %i', (kw, id) => {
    expect(ofType(ike(`aes256gcm16-prfsha256-${kw}`), T.KE)).toEqual([{ type: T.KE, id }]);
    expect(ofType(esp(`aes256gcm16-${kw}`), T.KE)).toEqual([{ type: T.KE, id }]);
  });

  it('x25519 and curve25519 are the same method (31)', () => {
    expect(ike('aes128gcm16-prfsha256-x25519')).toEqual(ike('aes128gcm16-prfsha256-curve25519'));
    expect(KeGroup.CURVE25519).toBe(31);
  });

  it('esn / noesn select the ESN transform of ESP', () => {
    expect(ofType(esp('aes128gcm16-esn'), T.ESN)).toEqual([{ type: T.ESN, id: EsnId.YES }]);
    expect(ofType(esp('aes128gcm16-noesn'), T.ESN)).toEqual([{ type: T.ESN, id: EsnId.NO }]);
    expect(ofType(esp('aes128gcm16-esn-noesn'), T.ESN)).toEqual([
      { type: T.ESN, id: EsnId.YES }, { type: T.ESN, id: EsnId.NO },
    ]);
  });
});

describe('IKE rules', () => {
  it('AEAD with a PRF and a group', () => {
    const p = ike('aes256gcm16-prfsha256-x25519');
    expect(p.protocol).toBe(ProtocolId.IKE);
    expect(p.transforms).toEqual([
      { type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
      { type: T.PRF, id: PrfId.HMAC_SHA2_256 },
      { type: T.KE, id: KeGroup.CURVE25519 },
    ]);
  });

  it('keywords may come in any order and keep their relative order as preferences', () => {
    const p = ike('x25519-ecp256-prfsha384-aes128gcm16-prfsha256-aes256gcm16');
    expect(p.transforms).toEqual([
      { type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 128 },
      { type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
      { type: T.PRF, id: PrfId.HMAC_SHA2_384 },
      { type: T.PRF, id: PrfId.HMAC_SHA2_256 },
      { type: T.KE, id: KeGroup.CURVE25519 },
      { type: T.KE, id: KeGroup.ECP_256 },
    ]);
  });

  it('AEAD plus an integrity algorithm is rejected and the PRF keyword suggested', () => {
    const e = ikeError('aes256gcm16-sha256-x25519');
    expect(e).toMatch(/AEAD/);
    expect(e).toContain("'sha256'");
    expect(e).toContain('prfsha256');
    expect(ikeError('chacha20poly1305-prfsha256-sha384-x25519')).toMatch(/AEAD proposals must not have integrity/);
  });

  it('AEAD without a PRF is rejected (nothing to derive it from)', () => {
    expect(ikeError('aes128gcm16-x25519')).toMatch(/no PRF/);
  });

  it('non-AEAD takes the PRFs from the integrity algorithms, in order', () => {
    const p = ike('aes256-sha384-sha256-modp2048');
    expect(ofType(p, T.PRF)).toEqual([
      { type: T.PRF, id: PrfId.HMAC_SHA2_384 },
      { type: T.PRF, id: PrfId.HMAC_SHA2_256 },
    ]);
    expect(ofType(p, T.INTEG)).toEqual([
      { type: T.INTEG, id: IntegId.HMAC_SHA2_384_192 },
      { type: T.INTEG, id: IntegId.HMAC_SHA2_256_128 },
    ]);
  });

  it('an explicit PRF is kept and nothing is derived', () => {
    const p = ike('aes256-sha256-prfsha512-modp2048');
    expect(ofType(p, T.PRF)).toEqual([{ type: T.PRF, id: PrfId.HMAC_SHA2_512 }]);
  });

  it('non-AEAD without integrity is rejected', () => {
    expect(ikeError('aes256-prfsha256-x25519')).toMatch(/without an integrity algorithm/);
  });

  it('at least one key exchange method is required; modpnone is not allowed', () => {
    expect(ikeError('aes256gcm16-prfsha256')).toMatch(/no key exchange method/);
    expect(ikeError('aes256gcm16-prfsha256-modpnone')).toMatch(/modpnone/);
    expect(ikeError('aes256gcm16-prfsha256-x25519-modpnone')).toMatch(/modpnone/);
  });

  it('esn keywords are rejected', () => {
    expect(ikeError('aes256gcm16-prfsha256-x25519-esn')).toMatch(/only to ESP/);
    expect(ikeError('aes256gcm16-prfsha256-x25519-noesn')).toMatch(/only to ESP/);
  });

  it('encryption is mandatory', () => {
    expect(ikeError('prfsha256-x25519')).toMatch(/no encryption algorithm/);
  });

  it('AEAD and non-AEAD encryption cannot share a proposal', () => {
    expect(ikeError('aes256gcm16-aes256-sha256-x25519')).toMatch(/mixes AEAD and non-AEAD/);
  });
});

describe('ESP rules', () => {
  it('AEAD only: gets noesn, no PFS', () => {
    const p = esp('aes128gcm16');
    expect(p.protocol).toBe(ProtocolId.ESP);
    expect(p.transforms).toEqual([
      { type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 128 },
      { type: T.ESN, id: EsnId.NO },
    ]);
  });

  it('a key exchange method means PFS; modpnone among them makes PFS optional', () => {
    expect(ofType(esp('aes256gcm16-x25519'), T.KE)).toEqual([{ type: T.KE, id: KeGroup.CURVE25519 }]);
    expect(ofType(esp('aes256gcm16-x25519-modpnone'), T.KE)).toEqual([
      { type: T.KE, id: KeGroup.CURVE25519 }, { type: T.KE, id: KeGroup.NONE },
    ]);
  });

  it('no PRF in ESP', () => {
    expect(espError('aes256gcm16-prfsha256')).toMatch(/ESP proposals have no PRF/);
  });

  it('non-AEAD needs integrity, AEAD must not have it', () => {
    expect(espError('aes256')).toMatch(/without an integrity algorithm/);
    expect(espError('aes256gcm16-sha256')).toMatch(/AEAD proposals must not have integrity/);
    const p = esp('aes256-sha256');
    expect(p.transforms).toEqual([
      { type: T.ENCR, id: EncrId.AES_CBC, keyLength: 256 },
      { type: T.INTEG, id: IntegId.HMAC_SHA2_256_128 },
      { type: T.ESN, id: EsnId.NO },
    ]);
  });
});

describe('syntax errors', () => {
  it('an unknown keyword is named and the valid ones listed', () => {
    const e = ikeError('aes256gcm16-prfsha256-x25519-blowfish');
    expect(e).toContain("'blowfish'");
    for (const kw of ['aes256gcm16', 'chacha20poly1305', 'sha384', 'prfsha512', 'ecp384', 'modpnone', 'noesn']) {
      expect(e).toContain(kw);
    }
  });

  it('a near miss gets a suggestion', () => {
    expect(ikeError('aes256gcm-prfsha256-x25519')).toContain("did you mean 'aes256gcm16'?");
    expect(espError('aes128gcm16-x2559')).toContain("did you mean 'x25519'?");
  });

  it('empty proposals and empty keywords are rejected', () => {
    expect(ikeError('')).toMatch(/empty IKE proposal/);
    expect(espError('   ')).toMatch(/empty ESP proposal/);
    expect(ikeError('aes256gcm16--prfsha256-x25519')).toMatch(/empty keyword/);
    expect(espError('aes256gcm16-')).toMatch(/empty keyword/);
  });

  it('the same transform twice (also through an alias) is rejected', () => {
    expect(ikeError('aes256gcm16-aes256gcm128-prfsha256-x25519')).toMatch(/repeats 'aes256gcm16'/);
    expect(ikeError('aes256gcm16-prfsha256-x25519-curve25519')).toMatch(/repeats 'x25519'/);
  });

  it('non-strings are rejected without throwing', () => {
    expect(parseIkeProposal(42 as unknown as string)).toEqual({ ok: false, error: expect.stringMatching(/must be a string/) });
    expect(parseEspProposal(undefined as unknown as string).ok).toBe(false);
  });
});

describe('formatting', () => {
  it.each([
    ['aes256gcm16-prfsha256-x25519', 'AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519'],
    ['aes128-sha256-modp2048', 'AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048'],
    ['aes256-sha512-prfsha384-ecp384', 'AES_CBC_256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_384/ECP_384'],
    ['chacha20poly1305-prfsha512-ecp256-ecp521-x448', 'CHACHA20_POLY1305/PRF_HMAC_SHA2_512/ECP_256/ECP_521/CURVE_448'],
    ['aes192gcm12-aes128gcm8-prfsha1-modp3072-modp4096', 'AES_GCM_12_192/AES_GCM_8_128/PRF_HMAC_SHA1/MODP_3072/MODP_4096'],
    ['aes128-aesxcbc-sha1-prfaescmac-prfaesxcbc-x25519', 'AES_CBC_128/AES_XCBC_96/HMAC_SHA1_96/PRF_AES128_CMAC/PRF_AES128_XCBC/CURVE_25519'],
  ])('IKE %s -> %s', (text, printed) => {
    expect(formatProposal(ike(text).transforms)).toBe(printed);
  });

  it.each([
    ['aes128gcm16', 'AES_GCM_16_128/NO_EXT_SEQ'],
    ['aes256gcm16-x25519-modpnone-esn', 'AES_GCM_16_256/CURVE_25519/MODP_NONE/EXT_SEQ'],
    ['aes256-sha384', 'AES_CBC_256/HMAC_SHA2_384_192/NO_EXT_SEQ'],
  ])('ESP %s -> %s', (text, printed) => {
    expect(formatProposal(esp(text).transforms)).toBe(printed);
  });

  it('single transforms, including IDs without a keyword', () => {
    expect(formatTransform({ type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 })).toBe('AES_GCM_16_256');
    expect(formatTransform({ type: T.ENCR, id: EncrId.AES_CBC })).toBe('AES_CBC');
    expect(formatTransform({ type: T.INTEG, id: IntegId.NONE })).toBe('NONE');
    expect(formatTransform({ type: T.KE, id: KeGroup.MODP_1024 })).toBe('MODP_1024');
    expect(formatTransform({ type: T.ENCR, id: 9999, keyLength: 128 })).toBe('ENCR_9999_128');
    expect(formatTransform({ type: T.PRF, id: 77 })).toBe('PRF_77');
    expect(formatTransform({ type: T.KE, id: 1234 })).toBe('KE_1234');
    expect(formatTransform({ type: 9, id: 3 })).toBe('TRANSFORM_9_3');
    expect(() => formatTransform({ type: 1.5, id: 3 })).toThrow(TypeError);
  });

  it('formatProposal groups by strongSwan order whatever the input order', () => {
    const p: TransformSpec[] = [
      { type: T.KE, id: KeGroup.ECP_256 },
      { type: T.PRF, id: PrfId.HMAC_SHA2_256 },
      { type: T.INTEG, id: IntegId.HMAC_SHA2_256_128 },
      { type: T.ENCR, id: EncrId.AES_CBC, keyLength: 128 },
    ];
    expect(formatProposal(p)).toBe('AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256');
  });

  it('keyword strings round-trip: parse(proposalKeywords(parse(s))) == parse(s)', () => {
    const all = [
      ...DEFAULT_IKE_PROPOSALS.map((s) => ike(s)),
      ...DEFAULT_ESP_PROPOSALS.map((s) => esp(s)),
      ike('aes128-sha2_256-ecp256'),
      ike('aes256gcm128-curve25519-prfsha384'),
      esp('aes192gcm96-modpnone-esn'),
      esp('aes-sha1-noesn'),
    ];
    for (const p of all) {
      const text = proposalKeywords(p);
      const back = p.protocol === ProtocolId.IKE ? ike(text) : esp(text);
      expect(back).toEqual(p);
    }
    expect(proposalKeywords(ike('aes256gcm128-curve25519-prfsha384'))).toBe('aes256gcm16-prfsha384-x25519');
    expect(proposalKeywords(esp('aes128gcm16'))).toBe('aes128gcm16-noesn');
  });
});

describe('defaults', () => {
  it('all default proposals parse, offer AEAD first and stay within the implemented groups', () => {
    const ikeSpecs = DEFAULT_IKE_PROPOSALS.map(ike);
    const espSpecs = DEFAULT_ESP_PROPOSALS.map(esp);
    expect(isAeadEncr(ofType(ikeSpecs[0]!, T.ENCR)[0]!.id)).toBe(true);
    for (const p of espSpecs) {
      for (const t of ofType(p, T.ENCR)) expect(isAeadEncr(t.id)).toBe(true);
      expect(ofType(p, T.ESN)).toEqual([{ type: T.ESN, id: EsnId.NO }]);
      expect(ofType(p, T.KE)).toEqual([]);
    }
    const groups = new Set(ikeSpecs.flatMap((p) => ofType(p, T.KE).map((t) => t.id)));
    expect([...groups].sort((a, b) => a - b)).toEqual([KeGroup.MODP_2048, KeGroup.ECP_256, KeGroup.ECP_384, KeGroup.CURVE25519]);
  });
});

describe('responder choice with transform attributes (RFC 7296 §3.3.6)', () => {
  const configured = [{ protocol: ProtocolId.IKE, transforms: [
    { type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 }, { type: T.PRF, id: PrfId.HMAC_SHA2_256 }, { type: T.KE, id: KeGroup.CURVE25519 },
  ] }];
  const offer = (extra: { encr?: TransformAttribute[]; ke?: TransformAttribute[] }): Proposal[] => [{
    number: 1, protocol: ProtocolId.IKE, spi: new Uint8Array(0),
    transforms: [
      { type: T.ENCR, id: EncrId.AES_GCM_16, keyLength: 256, ...(extra.encr ? { attributes: extra.encr } : {}) },
      { type: T.PRF, id: PrfId.HMAC_SHA2_256 },
      { type: T.KE, id: KeGroup.CURVE25519, ...(extra.ke ? { attributes: extra.ke } : {}) },
    ],
  }];

  it('a transform with only Key Length is accepted', () => {
    expect(selectProposal(offer({}), configured)?.encrKeyLength).toBe(256);
  });

  it('a transform carrying an attribute we do not understand is unacceptable (TV or TLV format)', () => {
    expect(selectProposal(offer({ encr: [{ type: 17, value: 1 }] }), configured)).toBeUndefined();
    expect(selectProposal(offer({ ke: [{ type: 99, value: new Uint8Array([1, 2]) }] }), configured)).toBeUndefined();
  });

  it('another proposal without the unknown attribute is still chosen', () => {
    const [withAttr] = offer({ encr: [{ type: 17, value: 1 }] });
    const [plain] = offer({});
    const chosen = selectProposal([withAttr!, { ...plain!, number: 2 }], configured);
    expect(chosen?.proposalNumber).toBe(2);
  });
});
