// The composition root and the public library API: configuration -> IKE
// engine + UDP transport (+ key log), with typed events and a status snapshot.
// An appliance embeds ikeclone through this class without the CLI:
//
//   import { Gateway } from 'ikeclone';
//   const gw = await Gateway.fromConfigFile('/etc/ikeclone.yaml');
//   gw.on('child-up', (c) => console.log(c.name, c.spiIn.toString(16)));
//   await gw.start();
//
// Owner: the main thread; everything here runs on it.
import { EventEmitter } from 'node:events';
import { lookup } from 'node:dns/promises';
import type { GatewayConfig } from './config/index.js';
import { connectionPolicy, loadConfigFile, loadConfigSource } from './config/index.js';
import type { Logger } from './log.js';
import { createLogger } from './log.js';
import type { RandomSource } from './crypto/random.js';
import type { Clock } from './ike/clock.js';
import { IkeEngine, type EngineEvents } from './ike/engine.js';
import { childSaPath, type ChildSa, type IkeSa } from './ike/ike-sa.js';
import { WiresharkKeyLog } from './ike/keylog.js';
import { UdpTransport, resolveLocalAddress } from './net/udp-transport.js';
import { snapshot, type ClusterNodeStatus, type GatewayStatus } from './status.js';
import { NAT_KEEPALIVE_PAYLOAD } from './ike/nat-keepalive.js';
import { CloneOrchestrator, type CloneFamily } from './ike/clone-family.js';
import { ChildSpreader } from './ike/child-spread.js';
import { AddressMonitor } from '../io/address-monitor.js';
import { DataPlane } from '../dataplane/dataplane.js';
import { OUTER_HEADER_DEFAULTS, packOuterHeader } from '../dataplane/outer-header.js';
import { followEspSource } from './ike/esp-rebinding.js';
import { childOwnerWorker, childSpiPlacement, SINGLE_NODE_SPI_PREFIX, steerEsp } from './child-placement.js';
import { espKeyMaterial, espTransformFor } from './crypto/esp-transform.js';
import { EsnId } from './wire/constants.js';
import { createCookieSecret } from './crypto/cookie.js';
import { GatewayMetrics, serveMetrics, type MetricsServer } from './api/metrics.js';
import { configInfo, diffConfig, type ConfigInfo, type ReloadResult } from './reload.js';
import type { ConnectionPolicy } from './ike/policy.js';
import type { RedirectPolicy } from './ike/redirect-policy.js';
import type { PeerResources } from './ike/peer-resources.js';
import { redirectIkeSa } from './ike/redirect.js';
import { gatewayIdentity } from './wire/gateway-identity.js';

/**
 * How often the COOKIE secret changes (RFC 7296 §2.6: "change the value of
 * <secret> frequently"). The previous secret stays valid for one more period,
 * so a cookie is accepted for between one and two periods after it was made.
 */
export const COOKIE_ROTATION_MS = 60_000;

/**
 * The engine's SA events, re-emitted by the gateway as they are (see
 * EngineEvents for each one's meaning; 'child-up' listeners that need the
 * keys copy child.keys synchronously).
 */
export type GatewayEvents = Pick<EngineEvents, 'ike-up' | 'ike-down' | 'ike-failed' | 'child-up' | 'child-down' | 'child-failed'> & {
  /** A reload began (the service manager hears RELOADING=1). */
  reloading: [];
  /** A reload ended: its result, or the error that refused it (the running configuration stays). */
  reloaded: [result: ReloadResult | undefined, error: Error | undefined];
};

/** Traffic of one Child SA, from the data plane's per-SA counters (polled every second). */
export interface ChildTraffic {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** Loopback addresses: metrics served anywhere else deserve a warning. */
function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

export interface GatewayOptions {
  config: GatewayConfig;
  /** How often to look for local address changes when a connection uses MOBIKE (ms, default 1000). */
  addressPollMs?: number;
  log?: Logger;
  clock?: Clock;
  random?: RandomSource;
  /** Where to redirect peers (RFC 5685); default: each connection's `redirect:` settings. A cluster passes its placement. */
  redirectPolicy?: RedirectPolicy;
  /** Cluster node prefix of the SPIs this gateway allocates (io/spi-layout.ts); 0 or absent on a single gateway. */
  spiPrefix?: number;
  /** Cluster fencing: requests this holds back wait (IkeEngineOptions.holdRequest). */
  holdRequest?: (sa: IkeSa) => boolean;
  /** Cluster fencing of answers (IkeEngineOptions.mayAnswer). */
  mayAnswer?: (sa: IkeSa) => boolean;
  /** Cluster write-ahead of answers (IkeEngineOptions.holdResponse). */
  holdResponse?: (sa: IkeSa, send: () => void) => boolean;
  /** A cluster's virtual IP pools and per-peer counts (IkeEngineOptions.peerResources). */
  peerResources?: PeerResources;
}

export class Gateway extends EventEmitter<GatewayEvents> {
  /** The running configuration (a reload replaces its connections). */
  config: GatewayConfig;
  /** When the running configuration was loaded, and its file's hash. */
  configInfo: ConfigInfo;
  readonly log: Logger;
  readonly engine: IkeEngine;
  readonly transport: UdpTransport;
  readonly keyLog: WiresharkKeyLog | undefined;
  /** Watches local addresses for MOBIKE connections (RFC 4555 §3.5). */
  private addressMonitor: AddressMonitor | undefined;
  /** Clones IKE SAs per worker or NIC after IKE_AUTH, and on demand (RFC 7791). */
  readonly cloner: CloneOrchestrator;
  /** Per-worker Child SAs on one IKE SA when the peer cannot clone (RFC 9611, RFC 7296 §2.8; architecture §5.1). */
  readonly spreader: ChildSpreader;
  /** ESP: worker threads that own the Child SAs (dataplane/dataplane.ts). */
  readonly dataPlane: DataPlane;
  /** Child SAs handed to the data plane, by id. */
  private readonly dataPlaneChildren = new Map<number, ChildSa>();
  /** Per-Child-SA traffic from the last data plane poll, by Child SA id. */
  private readonly childTraffic = new Map<number, ChildTraffic>();
  /** Prometheus metrics (control/api/metrics.ts), when `metrics.listen` is configured. */
  readonly metrics: GatewayMetrics | undefined;
  private metricsServer: MetricsServer | undefined;
  /** The address metrics are served on while the gateway runs. */
  get metricsAddress(): { address: string; port: number } | undefined {
    return this.metricsServer ? { address: this.metricsServer.address, port: this.metricsServer.port } : undefined;
  }
  private usageTimer: NodeJS.Timeout | undefined;
  /** Rotates the engine's COOKIE secret while the gateway runs (RFC 7296 §2.6). */
  private cookieTimer: NodeJS.Timeout | undefined;
  /** stop() destroyed the COOKIE secret: a later start() needs a fresh one. */
  private cookieSecretDestroyed = false;
  private started = false;

  static async fromConfigFile(path: string, opts: Omit<GatewayOptions, 'config'> = {}): Promise<Gateway> {
    return new Gateway({ ...opts, config: loadConfigFile(path) });
  }

  constructor(opts: GatewayOptions) {
    super();
    this.config = opts.config;
    this.configInfo = configInfo(opts.config);
    this.log = opts.log ?? createLogger({ level: opts.config.log.level });
    const policies = this.policiesOf(this.config);
    if (this.config.keylog) {
      this.keyLog = new WiresharkKeyLog(this.config.keylog);
      this.log.warn({ dir: this.config.keylog }, 'key log is ON: IKE and ESP keys are written to disk for Wireshark');
    }
    const dp = this.config.dataplane;
    this.transport = new UdpTransport({
      addresses: this.config.listen.addresses,
      port: this.config.listen.port,
      natPort: this.config.listen.natPort,
      log: this.log,
      onIke: (d) => this.engine.receive(d),
      ...(steerEsp(dp) ? { steering: { node: opts.spiPrefix ?? SINGLE_NODE_SPI_PREFIX, workers: dp.workers, adopt: (address: string, fds: number[]) => this.adoptSteered(fds, address) } } : {}),
    });
    // ESP the sockets receive goes from io's demultiplexer straight to the data plane (architecture §3).
    this.dataPlane = new DataPlane({
      workers: dp.workers,
      log: this.log,
      // Without a TUN device decapsulated packets are verified, counted and discarded.
      sink: dp.tun ? 'deliver' : 'discard',
      ...(dp.tun ? { tun: dp.tun } : {}),
      rawEsp: (dp.esp ?? 'auto') === 'auto',
      // Raw ESP read by its owner worker, as the NAT-T port's ESP is (io/raw-esp-steering.ts).
      ...(steerEsp(dp) ? { rawSteering: { node: opts.spiPrefix ?? SINGLE_NODE_SPI_PREFIX } } : {}),
      udp: this.transport.sockets,
      ...(dp.output ? { output: dp.output } : {}),
      ...(dp.tunInput ? { tunInput: dp.tunInput } : {}),
      ...(dp.workerLoop ? { workerLoop: dp.workerLoop } : {}),
      ...(dp.path ? { path: dp.path } : {}),
    });
    this.engine = new IkeEngine({
      policies,
      send: (d) => this.transport.sendIke(d),
      // RFC 3948 §2.3: the one-octet keepalive goes out on the NAT-T socket, without the non-ESP marker.
      sendKeepalive: (local, remote) => this.transport.sendRaw(local, remote, NAT_KEEPALIVE_PAYLOAD),
      ports: { ike: this.config.listen.port, nat: this.config.listen.natPort },
      log: this.log,
      limits: this.config.limits,
      retransmit: this.config.retransmit,
      // MOBIKE (RFC 4555): addresses that are up and have sockets.
      localAddresses: () => (this.addressMonitor ? this.addressMonitor.current().filter((a) => this.transport.hasAddress(a)) : this.transport.localAddresses),
      // RFC 5685: a REDIRECT may name a gateway by FQDN; the way there is the kernel's route.
      redirect: {
        ...(opts.redirectPolicy ? { policy: opts.redirectPolicy } : {}),
        resolveName: async (name) => (await lookup(name)).address,
        localAddressTo: (remote) => resolveLocalAddress(remote.address, remote.port),
      },
      ...(this.keyLog ? { keyLog: this.keyLog } : {}),
      // Each Child SA's inbound SPI names its owner worker (architecture §3).
      childSpiPlacement: childSpiPlacement(this.dataPlane, opts.spiPrefix),
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.random ? { random: opts.random } : {}),
      ...(opts.spiPrefix ? { spiPrefix: opts.spiPrefix } : {}),
      ...(opts.holdRequest ? { holdRequest: opts.holdRequest } : {}),
      ...(opts.mayAnswer ? { mayAnswer: opts.mayAnswer } : {}),
      ...(opts.holdResponse ? { holdResponse: opts.holdResponse } : {}),
      ...(opts.peerResources ? { peerResources: opts.peerResources } : {}),
    });
    this.cloner = new CloneOrchestrator(this.engine).start();
    this.spreader = new ChildSpreader(this.engine).start();
    // The data plane hears of a new Child SA first: its install is posted before listeners log or count it.
    this.engine.on('child-up', (child) => this.installChild(child));
    for (const event of ['ike-up', 'ike-down', 'ike-failed', 'child-up', 'child-down', 'child-failed'] as const) {
      this.engine.on(event, (...args: unknown[]) => (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args));
    }
    // MOBIKE: Child SAs follow their IKE SA to its new addresses (RFC 4555 §3.5).
    this.engine.on('ike-moved', (sa) => {
      for (const child of sa.children) {
        if (!this.dataPlaneChildren.has(child.id)) continue;
        const { local, remote } = this.espEndpoints(child);
        this.dataPlane.updateAddresses(child.id, local, remote, child.udpEncap);
      }
    });
    if (this.engine.policies.some((p) => p.mobike)) {
      this.addressMonitor = new AddressMonitor(opts.addressPollMs ?? 1000);
      this.addressMonitor.on('change', (added, removed) => void this.addressesChanged(added, removed));
    }
    if (this.config.metrics) this.metrics = new GatewayMetrics(() => this.status(), this.engine);
    this.engine.on('child-down', (child) => {
      this.dataPlaneChildren.delete(child.id);
      this.childTraffic.delete(child.id);
      // RFC 7296 §2.8: ESP the peer sent before its side went may still arrive; the data plane
      // stops sending on it now and removes it a little later (dataplane/handover.ts).
      void this.dataPlane.retire(child.id);
    });
    this.dataPlane.on('rekey-needed', (id) => {
      const child = this.dataPlaneChildren.get(id);
      if (child) this.engine.childRekeyNeeded(child.spiIn);
    });
    this.dataPlane.on('unknown-spi', (spi, remote) => {
      if (remote) this.engine.reportInvalidSpi(spi, remote);
    });
    // RFC 7296 §2.23 on the ESP path: authenticated ESP from a new NAT mapping.
    this.dataPlane.on('esp-source', (id, remote) => {
      const child = this.dataPlaneChildren.get(id);
      if (!child) return;
      const outcome = followEspSource(this.engine, child, remote);
      if (outcome !== 'moved') this.log.debug({ child: id, remote: `${remote.address}:${remote.port}`, outcome }, 'ESP from a new source: SA not moved');
    });
  }

  /**
   * Hand a new Child SA to the data plane (architecture §3): copies of its keys move
   * to the owner worker (the engine wipes the originals after 'child-up').
   * A rekeyed successor takes over outbound traffic from the SAs of the same
   * name on the same IKE SA; clones (other IKE SAs) share it by flow hash.
   */
  private installChild(child: ChildSa): void {
    // Negotiation accepts only what the data plane installs (control/crypto/esp-transform.ts); checked again here.
    const transform = espTransformFor(child.suite.encr, child.suite.encrKeyLength, child.suite.integ);
    if (!child.keys || !transform || !this.dataPlane.started) {
      if (!transform) this.log.warn({ child: child.id, encr: child.suite.encr, integ: child.suite.integ }, 'the data plane has no such ESP transform: no ESP for this Child SA');
      return;
    }
    const ike = child.ike;
    // A rekey replaces its predecessor; a per-worker Child SA (architecture §5.1) joins its siblings.
    const replaces =
      child.replacesId !== undefined
        ? [child.replacesId]
        : child.placement
          ? []
          : ike.children.filter((c) => c !== child && c.name === child.name && c.state !== 'deleted').map((c) => c.id);
    // Its owner is the worker its inbound SPI names (steered ESP arrives there); a per-worker
    // placement (RFC 9611 / parallel) reports that worker as the resource it serves.
    if (child.placement?.worker !== undefined) child.placement.worker = childOwnerWorker(child.spiIn);
    this.dataPlaneChildren.set(child.id, child);
    this.dataPlane.install({
      id: child.id,
      ...transform,
      esn: child.suite.esn === EsnId.YES,
      spiIn: child.spiIn,
      spiOut: child.spiOut,
      keyIn: espKeyMaterial(child.keys.encIn, child.keys.integIn),
      keyOut: espKeyMaterial(child.keys.encOut, child.keys.integOut),
      replayWindow: ike.policy.children.find((c) => c.name === child.name)?.replayWindow ?? 1024,
      localTs: child.localTs,
      remoteTs: child.remoteTs,
      ...this.espEndpoints(child),
      udpEncap: child.udpEncap,
      replaces,
      deferOutbound: child.peerCreated,
      // The worker its inbound SPI names owns it (ESP is steered there by SPI, architecture §3);
      // a per-resource or parallel Child SA's SPI was drawn for a worker of its own (dataplane/placement.ts).
      worker: childOwnerWorker(child.spiIn),
      perResource: child.placement?.kind === 'per-resource',
      outer: packOuterHeader(ike.policy.children.find((c) => c.name === child.name)?.outerHeader ?? OUTER_HEADER_DEFAULTS),
    }).catch((err: Error) => this.log.warn({ child: child.id, reason: err.message }, 'data plane did not install the Child SA'));
  }

  /** The workers' sockets of a steered NAT-T port: each reads its own (architecture §3). */
  private adoptSteered(fds: number[], address: string): void {
    this.dataPlane.adoptSteeredSockets(fds, address).catch((err: Error) => this.log.warn({ reason: err.message }, 'workers did not take their steered sockets: their ESP is lost'));
    // Raw ESP to the same address, filtered per worker by SPI (io/raw-esp-steering.ts).
    this.dataPlane.adoptRawEspShares(address).catch((err: Error) => this.log.warn({ reason: err.message }, 'workers did not take their raw ESP sockets: their raw ESP is lost'));
  }

  /** Local addresses came or went (RFC 4555 §3.5, §3.6): listen on new ones, then let MOBIKE act. */
  private async addressesChanged(added: string[], removed: string[]): Promise<void> {
    this.log.info({ added, removed }, 'local addresses changed');
    // MOBIKE's usable set is what the engine announces: addresses that are up AND have sockets
    // (the localAddresses option above). RFC 4555 §3.6: updates go out when that set changes, so
    // an interface we do not listen on coming or going is no news to any peer. Snapshot this
    // event's view now: the monitor may poll again while the sockets are being bound.
    const now = this.addressMonitor?.current() ?? [];
    const before = [...now.filter((a) => !added.includes(a)), ...removed];
    const usableBefore = new Set(before.filter((a) => this.transport.hasAddress(a)));
    for (const address of added) await this.transport.addAddress(address);
    const usableNow = new Set(now.filter((a) => this.transport.hasAddress(a)));
    if (usableNow.size === usableBefore.size && [...usableNow].every((a) => usableBefore.has(a))) return;
    this.engine.localAddressesChanged();
  }

  /** Move an IKE SA this gateway initiated to other addresses with MOBIKE (RFC 4555 §3.5). */
  async move(ikeId: number, local: string, remote?: string): Promise<IkeSa> {
    const sa = this.engine.findIkeSa(ikeId);
    if (!sa) throw new Error(`no IKE SA with id ${ikeId}`);
    if (!this.transport.hasAddress(local) && !(await this.transport.addAddress(local))) throw new Error(`not listening on ${local}`);
    return this.engine.moveIkeSa(sa, { local, ...(remote ? { remote } : {}) });
  }

  /**
   * Send the peer of an established IKE SA to another gateway (RFC 5685 §5):
   * resolves true once the peer acknowledged; it then sets up an IKE SA there
   * and deletes this one.
   */
  async redirect(ikeId: number, to: string): Promise<boolean> {
    const sa = this.engine.findIkeSa(ikeId);
    if (!sa) throw new Error(`no IKE SA with id ${ikeId}`);
    const target = gatewayIdentity(to);
    if (!target) throw new Error(`'${to}' is neither an IP address nor a host name`);
    return redirectIkeSa(this.engine, sa, target);
  }

  /** Set by a cluster node (control/cluster/node.ts): hands a clone to another node; resolves with the new epoch. */
  clusterMove: ((sa: IkeSa, node: string) => Promise<number>) | undefined;
  /** Set by a cluster node: its part of status() (lease, clones, failures handled). */
  clusterStatus: (() => ClusterNodeStatus) | undefined;

  /** Hand clone `ikeId` to cluster node `node` (architecture §8). */
  async moveToNode(ikeId: number, node: string): Promise<{ sa: IkeSa; epoch: number }> {
    const sa = this.engine.findIkeSa(ikeId);
    if (!sa) throw new Error(`no IKE SA with id ${ikeId}`);
    if (!this.clusterMove) throw new Error('this gateway is not in a cluster (no cluster: section)');
    return { sa, epoch: await this.clusterMove(sa, node) };
  }

  /** ESP in UDP travels between the NAT-T ports (RFC 3948 §2.1): the IKE SA's, or ours if IKE did not float. */
  private espEndpoints(child: ChildSa): { local: { address: string; port: number }; remote: { address: string; port: number } } {
    const { listen } = this.config;
    // Not the IKE SA's own path while the peer's new address is unverified (RFC 4555 §3.7).
    const { local, remote } = childSaPath(child.ike);
    return {
      local: { address: local.address, port: listen.natPort },
      remote: { address: remote.address, port: remote.port === listen.port ? listen.natPort : remote.port },
    };
  }

  /** Feed the data plane's counters to the engine (volume limits, liveness, keepalives) and follow address changes. */
  private async reportUsage(): Promise<void> {
    if (!this.dataPlane.started) return;
    const counters = await this.dataPlane.counters();
    for (const s of counters.sa) {
      const child = this.dataPlaneChildren.get(s.id);
      if (!child) continue;
      const inPackets = Number(s.in.packetsIn);
      const outPackets = Number(s.out.packetsOut);
      this.childTraffic.set(s.id, { packetsIn: inPackets, packetsOut: outPackets, bytesIn: Number(s.in.bytesIn), bytesOut: Number(s.out.bytesOut) });
      this.engine.reportChildUsage(s.spiIn, {
        bytes: Math.max(Number(s.in.bytesIn), Number(s.out.bytesOut)),
        packets: Math.max(inPackets, outPackets),
        inPackets,
        outPackets,
      });
    }
  }

  /** Bind the IKE sockets and initiate every connection with start_action: start. */
  async start(): Promise<void> {
    if (this.started) return;
    // IKE runs without the data plane if its workers cannot start; ESP is then dropped.
    await this.dataPlane.start().catch((err: Error) => this.log.error({ reason: err.message }, 'data plane did not start: no ESP'));
    try {
      await this.transport.start();
    } catch (err) {
      await this.dataPlane.stop();
      throw err;
    }
    // After stop(): the clone orchestrator refuses work until resumed (RFC 7791 cloning, architecture §5).
    this.cloner.resume();
    this.usageTimer = setInterval(() => {
      this.reportUsage().catch((err: Error) => this.log.debug({ reason: err.message }, 'data plane counters unavailable'));
    }, 1000);
    this.usageTimer.unref();
    if (this.cookieSecretDestroyed) {
      this.engine.cookieSecret = createCookieSecret(this.engine.random);
      this.cookieSecretDestroyed = false;
    }
    // RFC 7296 §2.6: a fixed secret would let cookies collected once be replayed for ever.
    this.cookieTimer = setInterval(() => this.engine.cookieSecret.rotate(), COOKIE_ROTATION_MS);
    this.cookieTimer.unref();
    this.addressMonitor?.start();
    await this.startMetrics();
    this.started = true;
    this.log.info({ addresses: this.transport.localAddresses, port: this.config.listen.port, natPort: this.config.listen.natPort }, 'gateway listening');
    for (const policy of this.engine.policies) {
      if (policy.startAction !== 'start') continue;
      this.up(policy.name).catch((err: Error) => this.log.warn({ conn: policy.name, reason: err.message }, 'connection did not come up'));
    }
  }

  /** Initiate connection `name`; resolves with the established IKE SA. */
  async up(name: string): Promise<IkeSa> {
    const policy = this.engine.policy(name);
    if (!policy) throw new Error(`no connection named "${name}"`);
    const remote = policy.remoteAddrs[0];
    if (!remote) throw new Error(`connection "${name}" has no remote address to initiate to`);
    const localAddress = policy.localAddrs[0] ?? (await resolveLocalAddress(remote, policy.remotePort));
    return this.engine.initiate(name, { local: { address: localAddress, port: this.config.listen.port } });
  }

  /** Delete IKE SAs (all, or those of one connection) with INFORMATIONAL exchanges. */
  async down(name?: string): Promise<void> {
    await Promise.all(this.engine.ikeSas().filter((sa) => !name || sa.name === name).map((sa) => this.engine.closeIkeSa(sa)));
  }

  /**
   * Clone an established IKE SA `count` times (RFC 7791 §5.2), each clone with
   * the connection's Child SAs. Resolves once the family is as large as asked
   * or the peer refused (the family's state says which).
   */
  async clone(ikeId: number, count = 1): Promise<{ family: CloneFamily; members: IkeSa[] }> {
    const sa = this.engine.findIkeSa(ikeId);
    if (!sa || sa.state !== 'established') throw new Error(`no established IKE SA with id ${ikeId}`);
    const size = this.engine.sessionMembers(sa.sessionId).length;
    const family = await this.cloner.grow(sa, size + count);
    return { family, members: this.engine.sessionMembers(sa.sessionId) };
  }

  status(): GatewayStatus {
    const status = snapshot(this.engine, this.transport, this.cloner, this.spreader);
    for (const sa of status.ikeSas) for (const c of sa.children) c.worker = this.dataPlane.ownerOf(c.id) ?? null;
    for (const sa of status.ikeSas) {
      for (const c of sa.children) {
        const t = this.childTraffic.get(c.id);
        if (t) Object.assign(c, t);
      }
    }
    status.dataplane = this.dataPlane.started ? this.dataPlane.status() : null;
    status.config = { ...this.configInfo };
    if (this.clusterStatus) status.cluster = this.clusterStatus();
    return status;
  }

  /** Delete every SA (telling peers, bounded by the retransmission budget) and close sockets. */
  async stop(opts: { notifyPeers?: boolean; timeoutMs?: number } = {}): Promise<void> {
    // First: the deletions below must not make clone families grow back (or end a NO_ADDITIONAL_SAS block).
    this.cloner.stop();
    this.spreader.stop();
    if (opts.notifyPeers ?? true) {
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, opts.timeoutMs ?? 2000).unref());
      await Promise.race([this.down(), timeout]);
    }
    this.addressMonitor?.stop();
    await this.metricsServer?.close();
    this.metricsServer = undefined;
    this.engine.shutdown();
    this.transport.close();
    clearInterval(this.usageTimer);
    clearInterval(this.cookieTimer);
    this.cookieTimer = undefined;
    // architecture §4.5: the COOKIE secrets are wiped with the rest.
    this.engine.cookieSecret.destroy();
    this.cookieSecretDestroyed = true;
    await this.dataPlane.stop();
    this.started = false;
  }

  /** Connection policies of `config`, with our concrete listen address for identities that default to it. */
  private policiesOf(config: GatewayConfig): ConnectionPolicy[] {
    const concrete = config.listen.addresses.find((a) => a !== '0.0.0.0' && a !== '::');
    return config.connections.map((c) => connectionPolicy(c, concrete));
  }

  /** Serve /metrics when configured; a listener that cannot bind fails the start like the IKE sockets. */
  private async startMetrics(): Promise<void> {
    const listen = this.config.metrics;
    if (!listen || !this.metrics || this.metricsServer) return;
    if (!isLoopback(listen.address)) {
      this.log.warn({ address: listen.address, port: listen.port }, 'metrics are served on a non-loopback address: anyone who reaches it sees traffic volumes and SA counts');
    }
    try {
      this.metricsServer = await serveMetrics(this.metrics, listen);
    } catch (err) {
      throw new Error(`cannot serve metrics on ${listen.address}:${listen.port}: ${(err as Error).message}`);
    }
    this.log.info({ address: this.metricsServer.address, port: this.metricsServer.port }, 'metrics served at /metrics');
  }

  /**
   * Read the configuration file again and apply its connections: new ones are
   * loaded (and started with start_action: start), removed ones' IKE SAs are
   * deleted, changed ones apply to new SAs (existing SAs keep the policy they
   * were made with), unchanged ones are not touched. A file that does not
   * validate throws the loader's ConfigError and nothing changes; settings
   * outside `connections` that differ are reported in needsRestart and kept.
   */
  async reload(): Promise<ReloadResult> {
    this.emit('reloading');
    try {
      const result = this.applyReload();
      this.emit('reloaded', result, undefined);
      return result;
    } catch (err) {
      this.emit('reloaded', undefined, err as Error);
      throw err;
    }
  }

  private applyReload(): ReloadResult {
    const file = this.config.file;
    if (file === undefined) throw new Error('the running configuration did not come from a file: nothing to reload');
    // One bounded read: what is parsed is what is hashed (never an unbounded readFileSync first).
    const { config: next, text } = loadConfigSource(file);
    const bytes = new TextEncoder().encode(text);
    // Identities and keys are checked when policies are built: a failure here refuses the reload too,
    // worded as `ikeclone gateway` words it at start.
    let built: ConnectionPolicy[];
    try {
      built = this.policiesOf({ ...next, listen: this.config.listen });
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
    const policies = new Map(built.map((p) => [p.name, p]));
    const diff = diffConfig(this.config, next);
    // The engine's policy list is shared with it: edit it in place. IKE SAs hold their own policy object.
    const list = this.engine.policies;
    for (let i = list.length - 1; i >= 0; i--) {
      const name = list[i]!.name;
      if (diff.removed.includes(name)) list.splice(i, 1);
      else if (diff.changed.some((c) => c.name === name)) list[i] = policies.get(name)!;
    }
    for (const c of diff.added) list.push(policies.get(c.name)!);
    // Settings outside `connections` keep their running values (needsRestart says which differ).
    const { listen, limits, retransmit, dataplane, log, keylog, metrics } = this.config;
    this.config = { ...next, listen, limits, retransmit, dataplane, log };
    delete this.config.keylog;
    delete this.config.metrics;
    if (keylog !== undefined) this.config.keylog = keylog;
    if (metrics !== undefined) this.config.metrics = metrics;
    this.configInfo = configInfo(next, bytes);
    const result: ReloadResult = {
      added: diff.added.map((c) => c.name),
      removed: diff.removed,
      changed: diff.changed.map((c) => c.name),
      unchanged: diff.unchanged,
      needsRestart: diff.needsRestart,
      config: { ...this.configInfo },
    };
    for (const sa of this.engine.ikeSas().filter((s) => diff.removed.includes(s.name))) {
      this.engine.closeIkeSa(sa).catch((err: Error) => this.log.warn({ ike: sa.id, reason: err.message }, 'IKE SA of a removed connection not deleted cleanly'));
    }
    for (const c of diff.added) {
      if (c.startAction !== 'start') continue;
      this.up(c.name).catch((err: Error) => this.log.warn({ conn: c.name, reason: err.message }, 'connection did not come up'));
    }
    return result;
  }
}
