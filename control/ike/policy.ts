// What the IKE engine needs to know about a connection. The YAML configuration
// becomes these in control/config/connection-policy.ts; an appliance embedding
// ikeclone may build them directly.
import type { ProposalSpec } from '../config/proposal.js';
import type { Identity } from './identity.js';
import type { SigningKey, VerifyKey } from '../crypto/auth.js';
import type { ParsedCertificate, ParsedCrl, RevocationPolicy, SendCertPolicy } from '../crypto/x509/index.js';
import type { TsConfig } from './traffic-selectors.js';
import type { GatewayIdentity } from '../wire/gateway-identity.js';

export type FragmentationMode = 'yes' | 'accept' | 'force' | 'no';

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
   * strongSwan's per_cpu_sas (RFC 9611): as initiator, ask for one
   * per-resource Child SA per worker after the first (the fallback SA); as
   * responder, accept them (off by default, RFC 9611 §7).
   */
  perCpuSas?: boolean;
  /**
   * Per-resource Child SAs of this child per IKE SA and selectors: created as
   * initiator, accepted as responder (TS_MAX_QUEUE past it, RFC 9611 §6);
   * absent: one.
   */
  perCpuSasMax?: number;
  /** The outer header of its ESP (the child's dscp, ecn, df: dataplane/outer-header.ts); absent: the defaults. */
  outerHeader?: { dscp: 'copy' | number; ecn: 'normal' | 'off'; df: 'copy' | 'set' | 'clear' };
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

/** Gateway redirection (RFC 5685; control/ike/redirect.ts): following it as a client, sending it as a gateway. */
export interface RedirectSettings {
  /** Initiator: announce REDIRECT_SUPPORTED (§3) and go where a REDIRECT says (§3, §6). */
  follow: boolean;
  /** Initiator: refuse the redirect past maxRedirects within loopPeriod ms of one IKE SA set-up (§7). */
  maxRedirects: number;
  loopPeriod: number;
  /** Responder: gateways to send peers that announced support to, in turn; empty = never redirect. */
  to: GatewayIdentity[];
  /** Responder: redirect in IKE_SA_INIT (before any state, §3) or in IKE_AUTH (after authenticating the peer, §6). */
  at: 'init' | 'auth';
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
  /**
   * IKE fragmentation (RFC 7383), swanctl's `fragmentation`: yes (announce,
   * fragment when the peer announced it too; the default when absent), accept
   * (announce, receive fragments, never send them), force (fragment even if
   * the peer did not announce it), no (neither announce nor accept).
   */
  fragmentation?: FragmentationMode;
  /**
   * Largest IP datagram (IP and UDP headers included) that carries one of our
   * IKE fragments, as strongSwan's charon.fragment_size; absent: 1280.
   */
  fragmentSize?: number;
  /** Announce CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1). */
  cloneSupport: boolean;
  /** Clone the IKE SA after IKE_AUTH (initiator side); absent = never. */
  clone?: ClonePolicy;
  /** Initiator: ask for virtual IPs with a CP request (RFC 7296 §2.19). */
  requestVirtualIp: boolean;
  /**
   * Initiator: which virtual IPs: "0.0.0.0" / "::" for any address of that
   * family, or a specific one (control/ike/config-payload.ts); absent: one
   * IPv4 address.
   */
  virtualIps?: string[];
  /** Responder: pools to hand out virtual IPs from: CIDR prefixes or a-b ranges, IPv4 or IPv6. */
  pools: string[];
  /** Responder: DNS servers sent with the virtual IPs (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS, RFC 7296 §3.15.1). */
  dns?: string[];
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
  /** RFC 5685 redirection; absent = follow redirects (at most 5 in 300 s), never send one. */
  redirect?: RedirectSettings;
}
