// A JSON-safe snapshot of the gateway's SAs for `ikeclone status` and the
// library API. Field names are stable (documented in README): add fields,
// never rename them. No key material, ever.
import { formatProposal } from './proposal.js';
import { formatIdentity } from './identity.js';
import type { IkeEngine, EngineStats } from './ike/engine.js';
import type { IkeSa } from './ike/ike-sa.js';
import { spi64Hex } from './ike/ike-sa.js';
import type { ChildSa } from './ike/child-sa.js';
import { spiHex } from './ike/child-sa.js';
import { suiteTransforms } from './ike/proposals.js';
import { formatSelector } from './ike/traffic-selectors.js';
import type { UdpTransport, UdpTransportStats } from './net/udp-transport.js';

export interface ChildSaStatus {
  id: number;
  name: string;
  state: string;
  spiIn: string;
  spiOut: string;
  proposal: string;
  localTs: string[];
  remoteTs: string[];
  udpEncap: boolean;
  ageSeconds: number;
}

export interface IkeSaStatus {
  id: number;
  name: string;
  state: string;
  role: 'initiator' | 'responder';
  spiI: string;
  spiR: string;
  local: string;
  remote: string;
  localId: string | null;
  remoteId: string | null;
  proposal: string | null;
  natLocal: boolean;
  natRemote: boolean;
  mobike: boolean;
  clone: boolean;
  virtualIp: string | null;
  peerVirtualIp: string | null;
  ageSeconds: number;
  children: ChildSaStatus[];
}

export interface GatewayStatus {
  ikeSas: IkeSaStatus[];
  halfOpen: number;
  ike: EngineStats;
  udp: UdpTransportStats | null;
}

function endpoint(e: { address: string; port: number }): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export function childStatus(c: ChildSa, now: number): ChildSaStatus {
  return {
    id: c.id,
    name: c.name,
    state: c.state,
    spiIn: spiHex(c.spiIn),
    spiOut: spiHex(c.spiOut),
    proposal: formatProposal(suiteTransforms(c.suite)),
    localTs: c.localTs.map(formatSelector),
    remoteTs: c.remoteTs.map(formatSelector),
    udpEncap: c.udpEncap,
    ageSeconds: Math.round((now - c.createdAt) / 1000),
  };
}

export function ikeSaStatus(sa: IkeSa, now: number): IkeSaStatus {
  return {
    id: sa.id,
    name: sa.name,
    state: sa.state,
    role: sa.role,
    spiI: spi64Hex(sa.spiI),
    spiR: spi64Hex(sa.spiR),
    local: endpoint(sa.local),
    remote: endpoint(sa.remote),
    localId: sa.localId ? formatIdentity(sa.localId) : null,
    remoteId: sa.peerId ? formatIdentity(sa.peerId) : null,
    proposal: sa.suite ? formatProposal(suiteTransforms(sa.suite)) : null,
    natLocal: sa.natLocal,
    natRemote: sa.natRemote,
    mobike: sa.peerMobike,
    clone: sa.peerClone,
    virtualIp: sa.virtualIp ?? null,
    peerVirtualIp: sa.peerVirtualIp ?? null,
    ageSeconds: Math.round((now - sa.createdAt) / 1000),
    children: sa.children.map((c) => childStatus(c, now)),
  };
}

export function snapshot(engine: IkeEngine, transport?: UdpTransport): GatewayStatus {
  const now = engine.clock.now();
  return {
    ikeSas: engine.ikeSas().map((sa) => ikeSaStatus(sa, now)),
    halfOpen: engine.halfOpenCount(),
    ike: structuredClone(engine.stats),
    udp: transport ? { ...transport.stats } : null,
  };
}
