// What the IKE engine needs to know about a connection. The YAML configuration
// becomes these in control/config/connection-policy.ts; an appliance embedding
// ikeclone may build them directly.
import type { ProposalSpec } from '../config/proposal.js';
import type { Identity } from './identity.js';
import type { SigningKey, VerifyKey } from '../crypto/auth.js';
import type { ParsedCertificate, ParsedCrl, RevocationPolicy, SendCertPolicy } from '../crypto/x509/index.js';
import type { TsConfig } from './traffic-selectors.js';

export interface LocalAuth {
  method: 'psk' | 'pubkey';
  psk?: Uint8Array;
  signingKey?: SigningKey;
  /**
   * Our certificate for signingKey and the intermediates above it (swanctl
   * local.certs), sent in CERT payloads per ConnectionPolicy.sendCert (RFC 7296 §3.6).
   */
  certificates?: { endEntity: ParsedCertificate; intermediates: ParsedCertificate[] };
}

export interface RemoteAuth {
  method: 'psk' | 'pubkey';
  psk?: Uint8Array;
  verifyKey?: VerifyKey;
  /**
   * Trust anchors (swanctl remote.cacerts): with them, the peer proves its key
   * with a certificate chain to one of these (RFC 7296 §3.6, RFC 4945 §3),
   * and we send CERTREQ naming them (§3.7). A pinned verifyKey still serves
   * a peer that sends no certificate.
   */
  trustAnchors?: ParsedCertificate[];
  /** CRLs from files (remote.crls); distribution points are read as local files only. */
  crls?: ParsedCrl[];
  /** swanctl remote.revocation (default relaxed). */
  revocation?: RevocationPolicy;
}

export interface ChildPolicy {
  name: string;
  localTs: Array<TsConfig | 'dynamic'>;
  remoteTs: Array<TsConfig | 'dynamic'>;
  esp: ProposalSpec[];
  replayWindow: number;
  startAction: 'none' | 'start';
  /**
   * Lifetimes (RFC 7296 §2.8; control/ike/lifetimes.ts). Each end enforces
   * its own. Times in ms, volumes in bytes/packets; 0 or absent = no limit,
   * except lifeTime, which defaults to rekeyTime + 10% (0 = none). Soft
   * limits rekey (the time one less up to `randTime` of jitter, §2.8.1;
   * absent = no jitter), hard limits delete.
   */
  rekeyTime?: number;
  lifeTime?: number;
  randTime?: number;
  rekeyBytes?: number;
  lifeBytes?: number;
  rekeyPackets?: number;
  lifePackets?: number;
}

/** How an initiator multiplies its IKE SA (RFC 7791, architecture §5). */
export interface ClonePolicy {
  /** node: gateway side, one clone per cluster member (control/cluster/placement.ts). */
  per: 'none' | 'worker' | 'nic' | 'node';
  /** IKE SAs in the family, the original included. */
  count: number;
  /** per: nic — local address of each NIC; clone k belongs to nics[k % nics.length]. */
  nics: string[];
}

export interface ConnectionPolicy {
  name: string;
  /** Local addresses this connection uses; empty = any. */
  localAddrs: string[];
  /** Peer addresses; empty = any (responder only). The first is the one to initiate to. */
  remoteAddrs: string[];
  remotePort: number;
  ike: ProposalSpec[];
  localId: Identity;
  remoteId: Identity | 'any';
  localAuth: LocalAuth;
  remoteAuth: RemoteAuth;
  /** swanctl send_cert: when our CERT payloads go out (absent: ifasked). */
  sendCert?: SendCertPolicy;
  /** swanctl send_certreq: send CERTREQ for remoteAuth.trustAnchors (absent: yes). */
  sendCertreq?: boolean;
  /**
   * Force UDP encapsulation of ESP even without a NAT (RFC 3948): we announce
   * a NAT in front of us with a NAT_DETECTION_SOURCE_IP that cannot match, as
   * strongSwan does, so both ends encapsulate.
   */
  forceEncap?: boolean;
  /** Announce MOBIKE_SUPPORTED (RFC 4555 §4.2.1). */
  mobike: boolean;
  /** Announce CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1). */
  cloneSupport: boolean;
  /** Clone the IKE SA after IKE_AUTH (initiator side); absent = never. */
  clone?: ClonePolicy;
  /** Initiator: ask for a virtual IPv4 address with a CP request (RFC 7296 §2.19). */
  requestVirtualIp: boolean;
  /** Responder: pools (CIDR) to hand out virtual IPs from. */
  pools: string[];
  children: ChildPolicy[];
  startAction: 'none' | 'start';
  /**
   * IKE SA lifetimes (RFC 7296 §2.8, §2.8.3; control/ike/lifetimes.ts), ms;
   * 0 or absent = never. Rekey at rekeyTime less up to randTime of jitter,
   * reauthenticate at reauthTime (likewise), delete overTime after the first
   * of the two if neither has happened (absent: 10% of the longer of the two).
   */
  rekeyTime?: number;
  reauthTime?: number;
  overTime?: number;
  randTime?: number;
  /** Liveness check after this many ms without a message from the peer (RFC 7296 §2.4); 0 or absent = off. */
  dpdDelay?: number;
  /** What to do when the peer is found dead: forget its SAs (clear, the default) or also initiate again (restart). */
  dpdAction?: 'clear' | 'restart';
  /** NAT keepalive interval in ms when a NAT is in front of us (RFC 3948 §2.3, §4); absent = 20 s, 0 = off. */
  natKeepalive?: number;
}
