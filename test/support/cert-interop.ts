// Certificate interop with strongSwan's charon (test/interop-certificates.test.ts,
// test/interop-fragmentation.test.ts): a test PKI with a chain for each end
// (root CA, intermediate CA, end entity; each end also a revoked one, and the
// intermediate's CRL), and both ends' configurations for it.
import type { Topology } from './netns.js';
import { TestPki, type PkiKeyType } from './pki.js';
import { ikecloneToCharonConfig } from './ikeclone-to-charon.js';

export const O = 'C=CH, O=ikeclone interop';
export const IKE = 'aes256gcm16-prfsha256-x25519';
export const ESP = 'aes128gcm16';

/** Root, intermediate, and end entities for both ends (each also a revoked one), and the intermediate's CRL. */
export function makePki(keyType: PkiKeyType): TestPki {
  const pki = new TestPki(keyType);
  for (const k of ['root', 'int', 'ikeclone', 'charon']) pki.key(k);
  pki.selfSigned('root', 'root', `${O}, CN=Root CA`);
  pki.issue('int', 'int', 'root', 'root', `${O}, CN=Intermediate CA`, { ca: true });
  pki.issue('ikeclone', 'ikeclone', 'int', 'int', `${O}, CN=ikeclone.interop.test`, { san: ['ikeclone.interop.test'], flags: ['serverAuth'] });
  pki.issue('charon', 'charon', 'int', 'int', `${O}, CN=charon.interop.test`, { san: ['charon.interop.test'], flags: ['serverAuth'] });
  pki.issue('charon-revoked', 'charon', 'int', 'int', `${O}, CN=charon.interop.test`, { san: ['charon.interop.test'], flags: ['serverAuth'], serial: '0bad' });
  pki.issue('ikeclone-revoked', 'ikeclone', 'int', 'int', `${O}, CN=ikeclone.interop.test`, { san: ['ikeclone.interop.test'], flags: ['serverAuth'], serial: '0bae' });
  pki.crl('int.crl', 'int', 'int', ['charon-revoked', 'ikeclone-revoked'], { pem: true });
  return pki;
}

/** RSA keys sign with RSASSA-PSS on both ends (swanctl's and our local.auth rsa/pss), else pubkey. */
export const localAuth = (keyType: PkiKeyType): string => (keyType === 'rsa-pss-3072' ? 'rsa/pss' : 'pubkey');

/** charon's side; `extra` lines go into the connection (e.g. fragmentation = force). */
export function charonConnections(topo: Topology, cert: string, keyType: PkiKeyType, extra = ''): string {
  const l = topo.links[0]!;
  return `connections {
  ikeclone {
    version = 2${extra ? `\n    ${extra}` : ''}
    local_addrs = ${l.bAddr}
    remote_addrs = ${l.aAddr}
    proposals = ${IKE}
    local {
      auth = ${localAuth(keyType)}
      certs = ${cert}.pem
      id = charon.interop.test
    }
    remote {
      auth = pubkey
      cacerts = root.pem
      id = ikeclone.interop.test
    }
    children {
      net {
        local_ts = ${topo.rightInnerNet}
        remote_ts = ${topo.leftInnerNet}
        esp_proposals = ${ESP}
      }
    }
  }
}`;
}

/** ikeclone's side; `connection` and `gateway` add to (or replace) the connection's and the file's keys. */
export function ikecloneConfig(
  topo: Topology,
  pki: TestPki,
  startAction: 'start' | 'none',
  over: { connection?: Record<string, unknown>; gateway?: Record<string, unknown> } = {},
): Record<string, unknown> {
  return ikecloneToCharonConfig(topo, {
    ike: IKE,
    esp: ESP,
    startAction,
    credentials: {
      local: { id: 'ikeclone.interop.test', auth: localAuth(pki.keyType), key: pki.path('ikeclone.key'), certs: [pki.path('ikeclone.pem'), pki.path('int.pem')] },
      remote: { id: 'charon.interop.test', auth: 'pubkey', cacerts: [pki.path('root.pem')], crls: [pki.path('int.crl')] },
    },
    ...over,
  });
}
