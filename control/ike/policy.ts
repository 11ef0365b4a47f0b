// What the IKE engine needs to know about a connection. The gateway maps the
// YAML configuration (control/config.ts) onto these; an appliance embedding
// ikeclone may build them directly.
import type { ProposalSpec } from '../proposal.js';
import type { Identity } from '../identity.js';
import type { SigningKey, VerifyKey } from '../crypto/auth.js';
import type { TsConfig } from './traffic-selectors.js';

export interface LocalAuth {
  method: 'psk' | 'pubkey';
  psk?: Uint8Array;
  signingKey?: SigningKey;
}

export interface RemoteAuth {
  method: 'psk' | 'pubkey';
  psk?: Uint8Array;
  verifyKey?: VerifyKey;
}

export interface ChildPolicy {
  name: string;
  localTs: Array<TsConfig | 'dynamic'>;
  remoteTs: Array<TsConfig | 'dynamic'>;
  esp: ProposalSpec[];
  replayWindow: number;
  startAction: 'none' | 'start';
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
  /** Announce MOBIKE_SUPPORTED (RFC 4555 §4.2.1). */
  mobike: boolean;
  /** Announce CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1). */
  cloneSupport: boolean;
  /** Initiator: ask for a virtual IPv4 address with a CP request (RFC 7296 §2.19). */
  requestVirtualIp: boolean;
  /** Responder: pools (CIDR) to hand out virtual IPs from. */
  pools: string[];
  children: ChildPolicy[];
  startAction: 'none' | 'start';
}
