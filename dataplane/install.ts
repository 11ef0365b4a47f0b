// Install and removal of Child SAs, and the rekey handover: an SA's keys
// move to its owner worker (architecture §4.5: wiped here), its inbound SPI
// and selectors become routable once the worker has it; a rekeyed successor
// takes outbound traffic from its predecessors (at once, or, when the peer
// created it, once the peer has it: handover.ts), and the old SA goes only
// once its successor's install has completed (RFC 7296 §2.8), or hands
// traffic back when the successor goes first (RFC 7296 §2.8.1). A deleted SA
// retires: it stops sending, and receives a little longer (handover.ts).
// MOBIKE and NAT mapping changes move an SA's outer addresses (RFC 4555,
// RFC 3948).
//
// Owner: the I/O thread (the gateway's main thread): it alone writes the SAD
// and SPD (state.ts); the keys, sequence counters and replay windows live in
// the owner worker only (architecture §4.1), reached by messages.
import { isIPv4 } from 'node:net';
import type { Endpoint } from '../io/endpoint.js';
import { destination } from '../io/batched-socket.js';
import { loadNativeIo } from '../io/native-io.js';
import { ipFamily, ipToBytes } from '../io/ip.js';
import type { EspSocket } from '../io/udp-sockets.js';
import { anyOf, familyKey, type EspTransport, type SaRecord, type SaSpec, type Sad } from './sad.js';
import type { EspRoute } from './messages.js';
import { REQUEST_TIMEOUT_MS, RETIRED_SA_LINGER_MS } from './defaults.js';
import type { HandoverTiming } from './handover.js';
import { WorkerPlacement } from './placement.js';
import { checkEndpoint, type PlaneState } from './state.js';
import { espOverhead } from './path-mtu.js';
import { OUTER_HEADER_DEFAULT_WORD } from './outer-header.js';

/** The words steered ESP from `remote` arrives with (udpRecv: family << 16 | port, address), for InstallRequest.source. */
function espSource(remote: Endpoint): { source?: Int32Array } {
  const bytes = ipToBytes(remote.address);
  if (!bytes) return {};
  const to = destination(bytes);
  return { source: Int32Array.of((to.family << 16) | (remote.port & 0xffff), ...to.words) };
}

export class SaInstaller {
  /**
   * Per SA id: installs still in progress of SAs that replace it (a rekey's
   * successors). remove() of a replaced SA waits for them, so the new SA is
   * in before the old one goes (RFC 7296 §2.8) and the family never empties.
   */
  private readonly successorsInstalling = new Map<number, Set<Promise<void>>>();

  /** Owners promised to Child SAs still being negotiated (placement.ts). */
  readonly placement = new WorkerPlacement();

  constructor(private readonly s: PlaneState, private readonly handover: HandoverTiming) {}

  /** The worker an SaSpec names (its SPI's): in range and with two free slots, or refused. */
  private claimWorker(sad: Sad, worker: number): number {
    if (!Number.isInteger(worker) || worker < 0 || worker >= sad.workers) throw new RangeError(`SaSpec.worker must be an integer in [0, ${sad.workers - 1}]`);
    if (sad.slots[worker]!.available < 2) throw new Error(`data plane is full: worker ${worker} has no two free SA slots`);
    return worker;
  }

  /**
   * Install a Child SA in its owner worker: inbound and outbound slots, keys
   * moved there (zeroed in `spec` before this returns), then routable by SPI
   * and, for outbound traffic, by selectors. Resolves when the worker has it.
   */
  install(spec: SaSpec): Promise<void> {
    if (!spec || !(spec.keyIn instanceof Uint8Array) || !(spec.keyOut instanceof Uint8Array)) {
      // Refused, but a key that was given is still wiped (zeroed before this returns, as promised).
      for (const key of [spec?.keyIn, spec?.keyOut]) if (key instanceof Uint8Array) key.fill(0);
      return Promise.reject(new TypeError('SaSpec.keyIn and keyOut must be Uint8Arrays'));
    }
    // Copy and wipe the keys before anything can fail or wait (architecture §4.5).
    const keyIn = new Uint8Array(spec.keyIn);
    const keyOut = new Uint8Array(spec.keyOut);
    spec.keyIn.fill(0);
    spec.keyOut.fill(0);
    return this.installMoved(spec, keyIn, keyOut).catch((err: unknown) => {
      // A key that reached a worker was transferred (its buffer here is detached, empty); wipe the others.
      if (keyIn.byteLength > 0) keyIn.fill(0);
      if (keyOut.byteLength > 0) keyOut.fill(0);
      throw err;
    });
  }

  private async installMoved(spec: SaSpec, keyIn: Uint8Array, keyOut: Uint8Array): Promise<void> {
    const sad = this.s.requireSad();
    if (!Number.isInteger(spec.id)) throw new TypeError('SaSpec.id must be an integer');
    if (sad.get(spec.id)) throw new Error(`SA ${spec.id} is already installed`);
    // A retired SA still receiving with this SPI (the control plane forgot it and reused the SPI) goes now.
    const lingering = sad.inbound(spec.spiIn);
    if (lingering?.retiring) void this.forget(lingering);
    for (const spi of [spec.spiIn, spec.spiOut]) {
      if (!Number.isInteger(spi) || spi < 256 || spi > 0xffff_ffff) throw new RangeError('SPIs must be integers in [256, 2^32-1]');
    }
    // An SA still installing holds its SPI too (Sad.add), so two concurrent installs cannot share one.
    if (sad.inbound(spec.spiIn)) throw new Error(`inbound SPI ${spec.spiIn.toString(16)} is in use`);
    checkEndpoint(spec.local, 'SaSpec.local');
    checkEndpoint(spec.remote, 'SaSpec.remote');
    if (!Array.isArray(spec.localTs) || !Array.isArray(spec.remoteTs)) throw new TypeError('SaSpec selectors must be arrays');
    const family = familyKey(spec.localTs, spec.remoteTs);
    const owner = spec.worker !== undefined ? this.claimWorker(sad, spec.worker) : sad.chooseOwner(family, spec.replaces ?? []);
    if (owner === undefined) throw new Error('data plane is full: no worker has two free SA slots');
    if (spec.worker !== undefined) this.placement.kept(owner, family);
    const slots = sad.slots[owner]!;
    const inbound = slots.take()!;
    const outbound = slots.take()!;
    const record: SaRecord = {
      id: spec.id,
      worker: owner,
      inSlot: inbound.slot,
      inTag: inbound.tag,
      outSlot: outbound.slot,
      outTag: outbound.tag,
      spiIn: spec.spiIn,
      spiOut: spec.spiOut,
      localTs: spec.localTs,
      remoteTs: spec.remoteTs,
      familyKey: family,
      local: { ...spec.local },
      remote: { ...spec.remote },
      remoteFamily: ipFamily(spec.remote.address) === 6 ? 6 : 4,
      udpEncap: spec.udpEncap,
      transport: this.transportFor(spec.udpEncap, spec.remote),
      espOverhead: espOverhead(spec.algorithm, spec.icvLength),
      outbound: false,
      perResource: spec.perResource === true,
      replaces: [...(spec.replaces ?? [])],
      activatedAt: 0,
      state: 'installing',
    };
    // From here the inbound SPI is taken: ESP for it is held until the worker
    // has the SA (a bounded number per SA, then dropped as dropNoSa), never
    // reported as unknown (inbound.ts).
    sad.add(record);
    // Announce this install to remove() of the SAs it replaces (settled in finally).
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    for (const id of record.replaces) {
      let set = this.successorsInstalling.get(id);
      if (!set) this.successorsInstalling.set(id, (set = new Set()));
      set.add(settled);
    }
    try {
      await this.installInWorker(sad, record, spec, keyIn, keyOut);
    } finally {
      for (const id of record.replaces) {
        const set = this.successorsInstalling.get(id);
        set?.delete(settled);
        if (set?.size === 0) this.successorsInstalling.delete(id);
      }
      settle();
    }
  }

  /** installMoved's second half: the owner worker gets both slots, then the SA is routable. */
  private async installInWorker(sad: Sad, record: SaRecord, spec: SaSpec, keyIn: Uint8Array, keyOut: Uint8Array): Promise<void> {
    const owner = record.worker;
    const inbound = { slot: record.inSlot, tag: record.inTag };
    const outbound = { slot: record.outSlot, tag: record.outTag };
    const worker = this.s.workers[owner]!;
    const common = {
      saId: spec.id, algorithm: spec.algorithm, esn: spec.esn, icvLength: spec.icvLength, replayWindow: spec.replayWindow,
      outer: spec.outer ?? OUTER_HEADER_DEFAULT_WORD,
    };
    // The keys travel in their own ArrayBuffers, transferred: no copy stays on this thread.
    const inKey = keyIn.buffer as ArrayBuffer;
    const outKey = keyOut.buffer as ArrayBuffer;
    let sentOnPost = false;
    try {
      // Inside the try: a dup() that fails (EBADF, EMFILE) or an espSocket
      // callback that throws must not leave the record and its slots behind,
      // which would block the SA id until stop. A route's descriptor is the
      // worker's to close: made only for a worker that will receive it.
      const route = worker.running ? this.routeFor(record) : undefined;
      const installed = Promise.all([
        worker.request({
          op: 'install', slot: inbound.slot, tag: inbound.tag, key: inKey, spi: spec.spiIn, direction: 'in', ...common,
          ...(record.udpEncap ? espSource(record.remote) : {}),
          ...(this.s.direct ? { policy: { localTs: spec.localTs, remoteTs: spec.remoteTs } } : {}),
        }, [inKey]),
        worker.request({
          op: 'install', slot: outbound.slot, tag: outbound.tag, key: outKey, spi: spec.spiOut, direction: 'out', ...common,
          ...(spec.seqSoftLimit !== undefined ? { seqSoftLimit: spec.seqSoftLimit } : {}),
          ...(spec.seqHardLimit !== undefined ? { seqHardLimit: spec.seqHardLimit } : {}),
          ...(route ? { route } : {}),
        }, [outKey]),
      ]);
      // Sending before the worker answers: until then only the owner's table names it while others of its family can send.
      sentOnPost = this.sendsOnPost(record, spec.deferOutbound === true);
      if (sentOnPost) this.startSending(record);
      await installed;
    } catch (err) {
      if (record.state !== 'removed') this.forget(record);
      throw err;
    }
    if (record.state === 'removed') return; // removed while installing: forget() already deleted the slots
    sad.activate(record);
    // The other workers' tables name it now too (spd.ts senders). Always, not only when others of its family
    // sent at its post: a sibling posted after it may have become their sender meanwhile, and their tables
    // left this one out while it installed.
    if (sentOnPost && record.outbound) this.s.spd.refresh();
    this.handover.release(record);
    // Retired while installing (retire()): it receives until its linger ends, and never sends.
    if (record.retiring) return;
    // An SA that sends since its install was posted (sendsOnPost) is in the SPD already.
    if (!record.outbound) {
      if (spec.deferOutbound && this.handover.familyHasSender(record)) this.handover.defer(record, this.startSending);
      else this.startSending(record);
    }
    this.s.log.debug({ sa: spec.id, worker: owner, spiIn: spec.spiIn.toString(16), transport: record.transport }, 'data plane SA installed');
  }

  /**
   * Whether `record` sends from the moment its install is posted, not from
   * the worker's answer: an SA replacing nothing, while the owner worker
   * reads its own TUN queue, when nothing else of its family sends (a
   * clone's Child SA on the node it arrived at, a new tunnel) or when we
   * created it (`deferOutbound` false: the peer had it before it answered
   * our CREATE_CHILD_SA, e.g. an arriving clone's Child SA on a node that
   * holds another member of its family). Its policy table then reaches the
   * owner worker on the same port right after the install (tun-input.ts
   * PolicyFeed), so the worker seals its first packet without waiting for
   * this thread to hear back (a busy I/O thread took tens of ms). While
   * others of the family send, the other workers' tables leave it out until
   * the owner has it (spd.ts senders), so no packet handed to the owner can
   * overtake the install; when none does, a packet that reaches it first by
   * another way (a hand-off ring) finds no slot yet and is dropped and
   * counted, as it was without a policy. A rekey's successor, or an SA the
   * peer created while others of its family send, waits for the answer as
   * before (handover.ts), so no family ever loses a sender that works.
   */
  private sendsOnPost(record: SaRecord, deferOutbound: boolean): boolean {
    if (!this.s.tunRead || record.replaces.length > 0 || record.retiring) return false;
    // A retired SA still sending for its family (retire(): its successor installs) would stop at once; if
    // this install then failed nothing would send. It stops once this one is in.
    if (anyOf(this.s.requireSad().family(record.familyKey), (o) => o.retiring === true && o.outbound)) return false;
    return !deferOutbound || !this.familyHasOtherSender(record);
  }

  private familyHasOtherSender(record: SaRecord): boolean {
    return anyOf(this.s.requireSad().family(record.familyKey), (o) => o !== record && !o.retiring);
  }

  /** An authenticated packet arrived on `record`: the peer has it, so it need wait no longer to send (handover.ts). */
  peerSends(record: SaRecord): void {
    this.handover.peerHas(record, this.startSending);
  }

  /** `record` carries outbound traffic from now on, in place of the SAs it replaces. */
  private readonly startSending = (record: SaRecord): void => {
    const sad = this.s.requireSad();
    // One change of the SPD: the workers' copies never see the family between two steps (spd.ts batch()).
    this.s.spd.batch(() => {
      for (const id of record.replaces) {
        const old = sad.get(id);
        if (old && old.outbound) {
          old.outbound = false;
          this.s.spd.remove(old);
        }
      }
      record.outbound = true;
      this.s.spd.add(record);
      // A retired SA that kept sending for want of another sender (retire()) stops now.
      for (const other of sad.family(record.familyKey)) {
        if (other.retiring && other.outbound) {
          other.outbound = false;
          this.s.spd.remove(other);
        }
      }
    });
  };

  /**
   * Retire a deleted Child SA: no more outbound traffic on it (a
   * predecessor or a waiting successor sends instead), removed after
   * `lingerMs` (RFC 7296 §2.8: the peer may have sent on it until it deleted
   * its side). Unknown ids are ignored; the last of its family (the tunnel
   * goes down: nothing takes its traffic over) goes at once. One still
   * installing retires too: it receives once installed, until its linger
   * ends, and never sends.
   */
  async retire(id: number, lingerMs = RETIRED_SA_LINGER_MS): Promise<void> {
    const sad = this.s.sad;
    const r = sad?.get(id);
    if (!r || r.retiring) return;
    const others = anyOf(sad!.family(r.familyKey), (o) => o !== r && !o.retiring);
    if (lingerMs <= 0 || (r.state !== 'active' && r.state !== 'installing') || !others) return this.remove(id);
    r.retiring = true;
    if (r.state === 'installing') {
      // Deleted before our install ended: the peer may already send on it (RFC 7296 §2.8.1, the
      // redundant SA of a simultaneous rekey, which its initiator used until it deleted it). It
      // never sends, but once installed receives like any retired SA until its linger ends.
      if (r.outbound) {
        // It sent since its install was posted (sendsOnPost); the others of its family take over.
        this.s.spd.batch(() => {
          r.outbound = false;
          this.s.spd.remove(r);
          this.handover.senderGone(r, this.startSending);
        });
      }
      this.handover.linger(r, lingerMs, () => void this.remove(id));
      return;
    }
    // The family's last sender keeps sending while a member is still installing (a peer's new
    // SA, whose Delete of this one overtook our install): until that one sends, or this one goes.
    const successorInstalling = anyOf(this.s.requireSad().family(r.familyKey), (o) => o.state === 'installing' && !o.retiring);
    // One change of the SPD: r out, and whoever takes its traffic over in (spd.ts batch()).
    this.s.spd.batch(() => {
      if (r.outbound && (this.handover.familyHasSender(r) || !successorInstalling)) {
        r.outbound = false;
        this.s.spd.remove(r);
        this.restorePredecessor(r);
      }
      this.handover.senderGone(r, this.startSending);
    });
    this.handover.linger(r, lingerMs, () => void this.remove(id));
  }

  /**
   * Direct output: where the owner worker sends this SA's ESP, with a
   * descriptor of its own (a dup; the worker closes it). Undefined keeps the
   * SA's ESP on the out ring: no direct output, the raw-socket backend, or no
   * native socket for its addresses.
   */
  private routeFor(r: SaRecord): EspRoute | undefined {
    if (!this.s.direct) return undefined;
    let socket: EspSocket | undefined;
    let port = r.remote.port;
    if (r.transport === 'raw') {
      // transportFor() chose raw for a peer whose family the raw socket carries; the kernel ignores the port of a raw socket.
      const to = ipToBytes(r.remote.address);
      const fd = to ? this.s.rawSocket?.fdFor(to.length === 4 ? 4 : 6) : undefined;
      socket = fd === undefined || !to ? undefined : { fd, to: destination(to) };
      port = 0;
    } else {
      socket = this.s.espSocket?.(r.local, r.remote);
    }
    if (!socket) return undefined;
    return {
      fd: loadNativeIo().dup(socket.fd), family: socket.to.family, words: new Int32Array(socket.to.words), port,
      ...(r.transport === 'raw' ? {} : { local: r.local.address }),
    };
  }

  /** Raw ESP when UDP encapsulation is not required and a raw socket of the peer's family is open; else UDP (RFC 3948). */
  transportFor(udpEncap: boolean, remote: Endpoint): EspTransport {
    const raw = this.s.rawSender;
    if (udpEncap || !raw) return 'udp';
    return (raw.carries ? raw.carries(remote.address) : isIPv4(remote.address)) ? 'raw' : 'udp';
  }

  /**
   * Remove a Child SA: unroutable at once, slots wiped by the owner worker.
   * Unknown ids are ignored. One exception to "at once": an SA that a
   * successor still installing replaces (a rekey) stays until that install
   * has completed or failed, bounded by the request timeout, so the new SA is
   * in before the old one goes (RFC 7296 §2.8). Otherwise the family could be
   * empty meanwhile (every outbound packet dropNoPolicy) and the successor's
   * ESP would be dropped.
   */
  async remove(id: number): Promise<void> {
    const r = this.s.sad?.get(id);
    if (!r) return;
    const successors = this.successorsInstalling.get(id);
    if (r.state === 'active' && successors && successors.size > 0) {
      await this.settledWithin(Promise.allSettled([...successors]), this.s.opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
      // Removed meanwhile (a second remove(), or stop()): nothing left to do.
      if (this.s.sad?.get(id) !== r) return;
    }
    await this.forget(r);
  }

  /** Wait for `p`, at most `ms`. */
  private async settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  forget(r: SaRecord): Promise<void> {
    const wasOutbound = r.outbound;
    // One change of the SPD, whose new table reaches the workers before the delete below (spd.ts batch()).
    this.s.spd.batch(() => {
      this.s.spd.remove(r);
      this.s.sad!.delete(r);
      this.handover.forget(r);
      if (wasOutbound) this.restorePredecessor(r);
      this.handover.senderGone(r, this.startSending);
    });
    // Posted synchronously after the slots were freed, so it reaches the worker before any reuse.
    const w = this.s.workers[r.worker]!;
    return Promise.all([w.request({ op: 'delete', slot: r.inSlot }), w.request({ op: 'delete', slot: r.outSlot })]).then(
      () => undefined,
      // Once stopping, the workers wipe every slot themselves.
      (err: Error) => {
        if (this.s.running) this.s.log.warn({ sa: r.id, err: err.message }, 'data plane SA delete failed');
      },
    );
  }

  /**
   * `gone` carried outbound traffic and was deleted: when it had replaced
   * SAs that are still installed, the newest of them sends again. The case
   * this is for, RFC 7296 §2.8.1: both ends rekey the same Child SA at once;
   * the peer's new SA ("theirs", replaces [old]) and ours (replaces [old,
   * theirs]) both install here, ours takes theirs out of the SPD, then the
   * nonce rule makes us delete ours — without this, theirs would still
   * receive but nothing would send until the next rekey.
   * A predecessor that another live outbound SA replaces is not restored:
   * that one already carries its traffic.
   */
  private restorePredecessor(gone: SaRecord): void {
    const sad = this.s.sad!;
    let newest: SaRecord | undefined;
    for (const id of gone.replaces) {
      const c = sad.get(id);
      if (!c || c.state !== 'active' || c.outbound || c.retiring) continue;
      if (!newest || c.activatedAt > newest.activatedAt) newest = c;
    }
    if (!newest) return;
    const candidate = newest;
    if (sad.all().some((s) => s.outbound && s.replaces.includes(candidate.id))) return;
    candidate.outbound = true;
    this.s.spd.add(candidate);
    this.s.log.debug({ sa: candidate.id, removed: gone.id }, 'data plane: a replaced SA sends again, its successor was removed');
  }

  /** New outer addresses for an SA (MOBIKE, RFC 4555; NAT mapping change, RFC 3948). */
  updateAddresses(id: number, local: Endpoint, remote: Endpoint, udpEncap?: boolean): void {
    checkEndpoint(local, 'local');
    checkEndpoint(remote, 'remote');
    const r = this.s.sad?.get(id);
    if (!r) return;
    this.s.sad!.move(r, local, remote);
    if (udpEncap !== undefined) r.udpEncap = udpEncap;
    r.transport = this.transportFor(r.udpEncap, r.remote);
    const worker = this.s.workers[r.worker];
    // Once stopping, a route message could reach a worker whose port is already
    // closed, and the descriptor dup'ed for it would never be closed.
    if (!this.s.direct || !this.s.running || r.state === 'removed' || !worker?.running) return;
    // The owner sends the ESP itself: give it the new route (or none: the out ring).
    const route = this.routeFor(r);
    worker.request({ op: 'route', slot: r.outSlot, tag: r.outTag, route: route ?? null }).catch((err: Error) => {
      if (this.s.running) this.s.log.warn({ sa: id, err: err.message }, 'data plane route update failed');
    });
  }
}
