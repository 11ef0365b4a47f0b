// The typed, normalised configuration that control/config/load.ts produces
// from a YAML file or a plain object: durations in milliseconds, proposals and
// identities parsed, key files read, PSKs as bytes. The YAML keys each field
// comes from are documented in docs/configuration.md.
import type { Identity } from '../ike/identity.js';
import type { FragmentationMode } from '../ike/policy.js';
import type { ProposalSpec } from './proposal.js';
import type { ParsedCertificate, ParsedCrl, RevocationPolicy, SendCertPolicy } from '../crypto/x509/index.js';
import type { GatewayIdentity } from '../wire/gateway-identity.js';

/** pino's levels, and silent: what log.level and the CLI's --log-level accept. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type StartAction = 'none' | 'start';
export type AuthMethod = 'psk' | 'pubkey';

export interface LimitsConfig {
  /** Half-open IKE SAs before IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6). */
  halfOpenCookieThreshold: number;
  /** Half-open IKE SAs in all; past this a new source takes the place of the largest source's oldest. */
  halfOpenMax: number;
  /** Half-open IKE SAs per source address (strongSwan's block_threshold). */
  halfOpenPerSource: number;
  /** Child SAs over all IKE SAs of one authenticated peer (RFC 7791 §8). */
  childSasPerPeer: number;
  /** IKE SAs of one authenticated peer, clones included; NO_ADDITIONAL_SAS past this (RFC 7791 §5.2). */
  ikeSasPerPeer: number;
}

/** RFC 7296 §2.1 retransmission: wait timeout, then timeout*base, ... capped at maxTimeout, `tries` times. */
export interface RetransmitConfig {
  /** Milliseconds before the first retransmission. */
  timeout: number;
  /** Factor between successive waits (>= 1). */
  base: number;
  /** Retransmissions before the exchange fails. */
  tries: number;
  /** Milliseconds, cap on any single wait. */
  maxTimeout: number;
}

export interface ListenConfig {
  /** Addresses the IKE sockets bind to (IP literals). */
  addresses: string[];
  port: number;
  natPort: number;
}

export interface DataplaneConfig {
  /** Number of ESP worker threads (resolved from "auto" to the available cores). */
  workers: number;
  /** True when the file said "auto" (or nothing). */
  workersAuto: boolean;
  /** A TUN device for inner traffic; absent = none. */
  tun?: { name: string; mtu: number; queues: number; offload: boolean };
  /** How ESP travels without a NAT: 'auto' (raw ESP when possible; the default when absent) or 'udp'. */
  esp?: 'auto' | 'udp';
  /** Who writes the output with a TUN device: 'workers' (the default when absent) or 'io-thread'. */
  output?: 'workers' | 'io-thread';
  /** Who reads the TUN device with output 'workers': 'workers' (a queue each; the default when absent) or 'io-thread'. */
  tunInput?: 'workers' | 'io-thread';
  /** How idle workers wait: 'epoll' or 'event-loop'; absent = the data plane's default. */
  workerLoop?: 'epoll' | 'event-loop';
  /** Who reads inbound ESP in UDP: 'kernel' steering to each worker's socket (the default when absent) or 'io-thread'. */
  steering?: 'kernel' | 'io-thread';
  /** Outer header and path MTU rules (RFC 4301 §5.1.2, §8); absent = all defaults. */
  path?: PathConfig;
}

/** dataplane's tunnel_mtu, outer_mtu and icmp_rate (dataplane/path-mtu.ts PathOptions). */
export interface PathConfig {
  tunnelMtu: 'auto' | number;
  /** Undefined: not configured. */
  outerMtu?: number;
  icmpRate: number;
  icmpBurst: number;
}

/** One side of a connection (swanctl's local/remote sections). */
export interface EndpointConfig {
  /**
   * Remote: the identity or identity pattern the peer must present, or 'any'.
   * Local: our identity; 'any' means "the IP address the IKE SA uses"
   * (strongSwan's default), to be filled in when the SA's address is known.
   */
  id: Identity | 'any';
  auth: AuthMethod;
  /** Local, pubkey: the private key, PEM text. */
  key?: string;
  /** Local, pubkey: 'pss' when RSA signatures use RSASSA-PSS (local.auth rsa/pss); absent: PKCS#1 v1.5. */
  rsaPadding?: 'pss';
  /** Local: our certificate, PEM text (optional). */
  cert?: string;
  /** Remote, pubkey: the peer's public key or certificate, PEM text. */
  pubkey?: string;
  /**
   * Local: our certificate chain (local.certs, or local.cert), end entity
   * first: sent in CERT payloads (RFC 7296 §3.6).
   */
  certs?: ParsedCertificate[];
  /** Remote: trust anchors for the peer's chain (remote.cacerts). */
  cacerts?: ParsedCertificate[];
  /** Remote: CRLs (remote.crls). */
  crls?: ParsedCrl[];
  /** Remote: revocation checking (remote.revocation; absent: relaxed). */
  revocation?: RevocationPolicy;
}

export interface CloneConfig {
  /** Announce CLONE_IKE_SA_SUPPORTED in IKE_AUTH (RFC 7791 §5.1); false turns cloning off both ways. */
  supported: boolean;
  /**
   * RFC 7791: none, one IKE SA per data-plane worker, one per NIC (moved there
   * with MOBIKE), or, on a cluster's gateway side, one per cluster node.
   */
  per: 'none' | 'worker' | 'nic' | 'node';
  /** IKE SAs in total, the original included (1 for per: none). */
  count: number;
  /** per: nic: the local address of each NIC, in order (clone k uses nics[k % nics.length]). */
  nics: string[];
}

/** RFC 5685 redirection (a connection's `redirect:` section, control/config/redirect-schema.ts). */
export interface RedirectConfig {
  /** Initiator: announce REDIRECT_SUPPORTED and go where a gateway's REDIRECT says. */
  follow: boolean;
  /** Initiator: at most this many redirects within loopPeriod (ms) of one set-up (§7). */
  maxRedirects: number;
  loopPeriod: number;
  /** Responder: gateways to redirect peers that announced support to, in turn; empty = never. */
  to: GatewayIdentity[];
  /** Responder: redirect in IKE_SA_INIT or in IKE_AUTH (after authenticating the peer). */
  at: 'init' | 'auth';
}

/** A traffic selector range (RFC 7296 §3.13.1); protocol 0 = any, ports 0..65535 = any. */
export interface TrafficSelectorConfig {
  start: string;
  end: string;
  protocol: number;
  startPort: number;
  endPort: number;
}

/** An address pool for virtual IPs (responder side, RFC 7296 §2.19). */
export interface PoolConfig {
  start: string;
  end: string;
  family: 4 | 6;
  /** "10.9.0.0/24" when the range is exactly one prefix. */
  cidr?: string;
}

export interface ChildConfig {
  name: string;
  localTs: Array<TrafficSelectorConfig | 'dynamic'>;
  remoteTs: Array<TrafficSelectorConfig | 'dynamic'>;
  esp: ProposalSpec[];
  mode: 'tunnel';
  /** Milliseconds; 0 = never. */
  rekeyTime: number;
  /** Milliseconds, hard lifetime; 0 = none. */
  lifeTime: number;
  /** Milliseconds of random jitter subtracted from rekeyTime. */
  randTime: number;
  rekeyBytes: number;
  lifeBytes: number;
  rekeyPackets: number;
  lifePackets: number;
  startAction: StartAction;
  /** Anti-replay window in packets (RFC 4303 §3.4.3). */
  replayWindow: number;
  /** strongSwan's per_cpu_sas: RFC 9611 per-resource Child SAs (control/ike/per-resource.ts). */
  perCpuSas: boolean;
  /** Per-resource Child SAs per IKE SA and selectors; default: the data plane's workers. */
  perCpuSasMax?: number;
  /** The outer header of its ESP (dscp, ecn, df); absent: DSCP and ECN copied, DF copied. */
  outerHeader?: OuterHeaderConfig;
}

/** A child's outer header options (RFC 4301 §5.1.2.1, §8.1; RFC 6040). */
export interface OuterHeaderConfig {
  /** 'copy' the inner DSCP, or this value (0..63). */
  dscp: 'copy' | number;
  /** 'normal': RFC 6040 normal mode; 'off': outer Not-ECT, outer ECN ignored on decapsulation. */
  ecn: 'normal' | 'off';
  /** DF of an IPv4 outer header: copied from the inner packet, set, or cleared. */
  df: 'copy' | 'set' | 'clear';
}

export interface ConnectionConfig {
  name: string;
  /** Local addresses this connection uses; empty = any. */
  localAddrs: string[];
  /** Peer addresses (IP literals or host names); empty = any peer (responder only). */
  remoteAddrs: string[];
  remotePort: number;
  ike: ProposalSpec[];
  local: EndpointConfig;
  remote: EndpointConfig;
  /** The pre-shared key, when either side authenticates with psk. */
  psk?: Uint8Array;
  /** send_cert (absent: ifasked). */
  sendCert?: SendCertPolicy;
  /** send_certreq (absent: true). */
  sendCertreq?: boolean;
  mobike: boolean;
  encap: boolean;
  /** fragmentation (RFC 7383; absent: yes). */
  fragmentation?: FragmentationMode;
  /** fragment_size: the IP datagram size of our IKE fragments (absent: 1280). */
  fragmentSize?: number;
  clone: CloneConfig;
  redirect: RedirectConfig;
  /** Virtual IPs to request: "0.0.0.0" / "::" for any, or a specific address. */
  vips: string[];
  pools: PoolConfig[];
  /** DNS servers handed out with virtual IPs (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS); absent: none. */
  dns?: string[];
  startAction: StartAction;
  /** Milliseconds; 0 = off. */
  dpdDelay: number;
  /** After a dead peer: 'clear' (the default when absent) or 'restart'. */
  dpdAction?: 'clear' | 'restart';
  /** NAT keepalive interval in milliseconds (absent: 20 s; 0 = off). */
  keepalive?: number;
  /** Milliseconds; 0 = never. */
  rekeyTime: number;
  reauthTime: number;
  overTime: number;
  randTime: number;
  children: ChildConfig[];
}

export interface GatewayConfig {
  /** Absolute path of the file this came from, when it came from a file. */
  file?: string;
  log: { level: LogLevel };
  /** Absolute path of the Wireshark key-log directory; undefined = off. */
  keylog?: string;
  listen: ListenConfig;
  limits: LimitsConfig;
  retransmit: RetransmitConfig;
  dataplane: DataplaneConfig;
  /** In file order. */
  connections: ConnectionConfig[];
  /** Prometheus metrics over HTTP; undefined = off. */
  metrics?: MetricsConfig;
  /** Cluster membership on etcd (architecture §8); undefined = a single gateway. */
  cluster?: ClusterConfig;
}

/** The `cluster:` section (control/config/cluster-section.ts). */
export interface ClusterConfig {
  name: string;
  node: string;
  /** This node's IP address: clones handed to it bind there. */
  address: string;
  /** etcd client URLs. */
  etcd: string[];
  /** Absolute paths of PEM files: the CA that signed etcd's certificate, our client certificate and key. */
  tls?: { ca: string; cert?: string; key?: string };
  /** Absolute path of the cluster secret (mode 0600 or stricter). */
  sealingKeyFile: string;
  /**
   * Secrets of earlier rotations (absolute paths, mode 0600): records sealed
   * and hashes made under them are still accepted, nothing new is sealed
   * with them (docs/cluster.md section 2).
   */
  previousSealingKeyFiles?: string[];
  leaseTtlMs: number;
  /** etcd unreachable at start: fail (exit 1) or run as a single gateway. */
  onEtcdUnreachable: 'fail' | 'standalone';
  /** A fixed SPI prefix; default: the first free one claimed in etcd. */
  spiPrefix?: number;
  /** Redirect new clients from this node when loaded (RFC 5685; control/cluster/redirect-placement.ts); absent: never. */
  redirect?: ClusterRedirectConfig;
  /** Virtual IPs of each pool claimed ahead of IKE_AUTH (0..64; 0: each lease from etcd in IKE_AUTH); absent: 4 (control/cluster/pool-store.ts). */
  poolReserve?: number;
  /** Heartbeat under the lease and revoke the lease of a member silent for leaseTtlMs that does not answer a liveness probe (control/cluster/silent-member.ts); absent: yes. */
  suspectSilent?: boolean;
  /** UDP port of the liveness probe on `address` (control/cluster/liveness-probe.ts); absent: 4501. */
  probePort?: number;
  /**
   * The Child SA a node creates for an arriving clone waits for an exact
   * per-peer admission in etcd (control/cluster/peer-admission.ts admitOwn);
   * absent: no, it is created at once (the peer's own requests are admitted
   * exactly either way).
   */
  admitArrivalChild?: boolean;
}

/** `cluster.redirect`: from `above` established IKE SAs on, new clients go to the least-loaded member, in IKE_SA_INIT or IKE_AUTH. */
export interface ClusterRedirectConfig {
  above: number;
  at: 'init' | 'auth';
}

/** Where the gateway serves /metrics (control/api/metrics.ts). */
export interface MetricsConfig {
  address: string;
  port: number;
}

/** Connection and child names: map keys in the file, so they must be usable as identifiers in paths and logs. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const NAME_EXPECTED = "a name of letters, digits, '.', '_' and '-' (up to 64, starting with a letter or digit)";
