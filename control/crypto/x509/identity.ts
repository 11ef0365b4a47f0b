// Binding a peer's IKE identity to its certificate (RFC 4945 §3.1): the ID
// payload must name the certificate. ID_IPV4_ADDR / ID_IPV6_ADDR match a
// subjectAltName iPAddress octet for octet (§3.1.1), ID_FQDN a dNSName and
// ID_RFC822_ADDR an rfc822Name, both without regard to case (§3.1.2-3.1.3, as
// strongSwan compares them), ID_DER_ASN1_DN the subject DN (or a
// directoryName) by RFC 5280 §7.1 (§3.1.5). Other ID types are never bound.
//
// The identity is a plain { type, data } so this module needs nothing from
// the engine; the data is untrusted and nothing here throws.

import { AsnConvert } from '@peculiar/asn1-schema';
import { Name } from '@peculiar/asn1-x509';
import { IdType } from '../../wire/constants.js';
import { bytesToIp, ipToBytes } from '../../wire/ip.js';
import { equalBytes } from '../bytes.js';
import type { ParsedCertificate } from './certificate.js';
import { formatName, namesEqual } from './names.js';

/** RFC 7296 §3.5: ID Type and Identification Data, as carried by the ID payload. */
export interface IkeIdentity {
  type: number;
  data: Uint8Array;
}

const ascii = new TextDecoder('latin1');

/** A readable form of an identity for logs ("fqdn gw.example.org"). Never throws. */
export function describeIkeIdentity(id: IkeIdentity): string {
  try {
    switch (id.type) {
      case IdType.IPV4_ADDR:
      case IdType.IPV6_ADDR:
        return `address ${id.data.length === 4 || id.data.length === 16 ? bytesToIp(id.data) : `of ${id.data.length} octets`}`;
      case IdType.FQDN:
        return `fqdn ${ascii.decode(id.data)}`;
      case IdType.RFC822_ADDR:
        return `email ${ascii.decode(id.data)}`;
      case IdType.DER_ASN1_DN:
        return `DN "${formatName(AsnConvert.parse(id.data, Name))}"`;
      default:
        return `ID type ${id.type}`;
    }
  } catch {
    return `malformed ID of type ${id.type}`;
  }
}

/**
 * undefined when `id` names `cert` (RFC 4945 §3.1), else why not, for the
 * log. Never throws.
 */
export function identityMismatch(cert: ParsedCertificate, id: IkeIdentity): string | undefined {
  const names = cert.subjectAltNames;
  const what = `${describeIkeIdentity(id)} is not in certificate "${cert.subjectText}"`;
  switch (id.type) {
    case IdType.IPV4_ADDR:
    case IdType.IPV6_ADDR: {
      if (id.data.length !== (id.type === IdType.IPV4_ADDR ? 4 : 16)) return `malformed ${id.type === IdType.IPV4_ADDR ? 'ID_IPV4_ADDR' : 'ID_IPV6_ADDR'} of ${id.data.length} octets`;
      return names.some((n) => n.iPAddress !== undefined && sameAddress(n.iPAddress, id.data)) ? undefined : `${what} (no such subjectAltName iPAddress)`;
    }
    case IdType.FQDN: {
      const fqdn = ascii.decode(id.data).toLowerCase();
      return names.some((n) => n.dNSName !== undefined && n.dNSName.toLowerCase() === fqdn) ? undefined : `${what} (no such subjectAltName dNSName)`;
    }
    case IdType.RFC822_ADDR: {
      const mail = ascii.decode(id.data).toLowerCase();
      return names.some((n) => n.rfc822Name !== undefined && n.rfc822Name.toLowerCase() === mail) ? undefined : `${what} (no such subjectAltName rfc822Name)`;
    }
    case IdType.DER_ASN1_DN: {
      let dn: Name;
      try {
        dn = AsnConvert.parse(id.data, Name);
      } catch {
        return 'malformed ID_DER_ASN1_DN';
      }
      if (namesEqual(dn, cert.subject)) return undefined;
      return names.some((n) => n.directoryName !== undefined && namesEqual(n.directoryName, dn)) ? undefined : `${what} (subject is "${cert.subjectText}")`;
    }
    default:
      return `ID type ${id.type} cannot be bound to a certificate (RFC 4945 §3.1)`;
  }
}

/** Binary comparison of a subjectAltName iPAddress with the ID's octets (RFC 4945 §3.1.1). */
function sameAddress(text: string, octets: Uint8Array): boolean {
  const b = ipToBytes(text);
  return b !== undefined && equalBytes(b, octets);
}
