// X.509 certificate authentication for IKEv2 (RFC 7296 §3.6-3.7, RFC 4945,
// RFC 5280): loading credentials, validating a peer's chain, binding its ID,
// and choosing the certificates to send. A library module: no engine, no
// configuration, no sockets (architecture §2).

export {
  KeyUsageBit, MAX_CERTIFICATE_BYTES, parseCertificate, subjectPublicKeyInfoSha1, type ParsedCertificate,
} from './certificate.js';
export {
  DEFAULT_MAX_CERTIFICATES, DEFAULT_MAX_CRL_DISTRIBUTION_POINTS, DEFAULT_MAX_PATH_LENGTH, validateCertificateChain,
  type CertificateFailure, type CertificateVerdict, type ChainValidationOptions, type RevocationPolicy,
} from './chain.js';
export { certificatesToSend, certreqNames, decodeCertreqAuthorities, encodeCertreqAuthorities, type CertificatesToSend, type SendCertPolicy } from './certreq.js';
export { MAX_CRL_BYTES, parseCrl, revocationStatus, type ParsedCrl, type RevocationStatus } from './crl.js';
export { CrlFileCache, DEFAULT_CRL_FILE_CACHE_ENTRIES, decodeResolvedCrl, type CrlFileCacheStats } from './crl-file-cache.js';
export { describeIkeIdentity, identityMismatch, type IkeIdentity } from './identity.js';
export { keyMatchesCertificate, loadCertificates, loadCrl, loadPrivateKey, localCrlResolver, readPemBlocks, type PemBlock, type PrivateKeyOptions } from './load.js';
export { formatName, namesEqual } from './names.js';
