// MOBIKE (RFC 4555): moving an IKE SA and its Child SAs to other addresses.
// The MOBIKE initiator (§1.3: the party that started the first IKE SA of the
// series, whoever rekeyed or cloned since; IkeSa.mobikeInitiator) decides
// (§3.1, §3.5) and sends UPDATE_SA_ADDRESSES from the new path; the responder
// checks NO_NATS_ALLOWED when NAT traversal is off (§3.9) and its address
// policy, follows, and checks return routability (§3.7) before its Child SAs
// follow. Either side can tell the other its addresses (§3.4, §3.6): the IP
// header source of the message and the ones it lists. COOKIE2 (§4.2.5) binds
// every response to its request.
//
//   Initiator                                Responder
//   HDR, SK { N(UPDATE_SA_ADDRESSES), [N(NAT_DETECTION_*)],
//             [N(NO_NATS_ALLOWED)], [N(COOKIE2)] }  -->
//                          <--  HDR, SK { [N(NAT_DETECTION_*)], [N(COOKIE2)] }
import { ExchangeType, NotifyType, notifyName } from '../../wire/constants.js';
import type { Payload } from '../../wire/payloads.js';
import { findNotify, findNotifies } from '../../wire/payloads.js';
import { bytesToIp, ipFamily, ipToBytes } from '../../wire/ip.js';
import type { IkeContext } from '../context.js';
import { childSaPath, type IkeSa, type InitiatorExchange } from '../ike-sa.js';
import { detectNat, natDetectionPayloads } from '../nat-detection.js';
import { notify } from '../payload-builders.js';
import type { Datagram, Endpoint } from '../transport.js';
import { equalBytes } from '../../crypto/bytes.js';
import { carriedOn } from './ike-rekey.js';

/** COOKIE2 data: 8..64 octets, unpredictable to the peer (RFC 4555 §4.2.5). */
const COOKIE2_LENGTH = 16;
/** UNEXPECTED_NAT_DETECTED: retry a few times, as for retransmissions (§3.9). */
export const NAT_RETRIES = 3;

/**
 * NO_NATS_ALLOWED applies (§3.9: "when NAT Traversal is not enabled"): IKE_SA_INIT
 * exchanged no NAT_DETECTION_*_IP notifies (RFC 7296 §2.23). With NAT-D exchanged,
 * NAT traversal is on even if no NAT was found, and address updates need no
 * NO_NATS_ALLOWED (peers such as strongSwan never send it).
 */
export function natsProhibited(sa: IkeSa): boolean {
  return !sa.natDetectionExchanged;
}

/**
 * §3.9: why a request that changes addresses fails NAT prohibition (absent, or
 * not matching the IP header it came with), or undefined when it passes or
 * NAT prohibition does not apply.
 */
export function natProhibitionFailure(sa: IkeSa, payloads: readonly Payload[], source: Endpoint, destination: Endpoint): string | undefined {
  if (!natsProhibited(sa)) return undefined;
  const nna = findNotify(payloads, NotifyType.NO_NATS_ALLOWED);
  if (!nna) return 'NO_NATS_ALLOWED absent although NAT-D was not exchanged in IKE_SA_INIT';
  if (!equalBytes(nna.data, noNatsAllowedData(source, destination))) return 'NO_NATS_ALLOWED does not match the IP header';
  return undefined;
}

/** NO_NATS_ALLOWED data (§4.2.6): source and destination address, then both ports, as sent. */
export function noNatsAllowedData(source: Endpoint, destination: Endpoint): Uint8Array {
  const src = ipToBytes(source.address)!;
  const dst = ipToBytes(destination.address)!;
  const out = new Uint8Array(src.length * 2 + 4);
  out.set(src, 0);
  out.set(dst, src.length);
  const view = new DataView(out.buffer);
  view.setUint16(src.length * 2, source.port);
  view.setUint16(src.length * 2 + 2, destination.port);
  return out;
}

/** ADDITIONAL_IP4/6_ADDRESS for every address but the one in use, or NO_ADDITIONAL_ADDRESSES (§3.6). */
export function additionalAddressNotifies(addresses: readonly string[], inUse: string): Payload[] {
  // Loopback addresses mean nothing to a peer elsewhere.
  const loopback = (a: string) => a.startsWith('127.') || a === '::1';
  const others = [...new Set(addresses)].filter((a) => a !== inUse && ipToBytes(a) !== undefined && (loopback(inUse) || !loopback(a)));
  if (others.length === 0) return [notify(NotifyType.NO_ADDITIONAL_ADDRESSES)];
  return others.map((a) => notify(ipFamily(a) === 6 ? NotifyType.ADDITIONAL_IP6_ADDRESS : NotifyType.ADDITIONAL_IP4_ADDRESS, ipToBytes(a)!));
}

function commonPrefixBits(a: Uint8Array, b: Uint8Array): number {
  let bits = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]! ^ b[i]!;
    if (x === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(x) - 24;
  }
  return bits;
}

/** How link-local a path looks: the bits its two addresses share (0 across families). */
export function pathAffinity(path: { local: string; remote: string }): number {
  const l = ipToBytes(path.local);
  const r = ipToBytes(path.remote);
  return l && r && l.length === r.length ? commonPrefixBits(l, r) : 0;
}

/**
 * Of the peer's addresses, the one that most likely shares a link with our
 * `local` address (the longest common prefix; ties keep the given order).
 * A multi-homed gateway announces one address per network (RFC 7791 §3,
 * Figures 2 and 3); this pairs each of our NICs with the peer's address on it.
 */
export function peerAddressFor(local: string, candidates: readonly string[]): string | undefined {
  const l = ipToBytes(local);
  let best: string | undefined;
  let bestBits = -1;
  for (const c of candidates) {
    const b = ipToBytes(c);
    if (!l || !b || b.length !== l.length) continue;
    const bits = commonPrefixBits(l, b);
    if (bits > bestBits) {
      best = c;
      bestBits = bits;
    }
  }
  return best;
}

/**
 * Every (local, peer) address pair of one family, the most link-local-looking
 * first: pairs on the same network (longest common prefix) before the rest.
 * Loopback addresses pair only with loopback peers.
 */
export function rankedPaths(locals: readonly string[], peers: readonly string[]): Array<{ local: string; remote: string }> {
  const loopback = (a: string) => a.startsWith('127.') || a === '::1';
  const out: Array<{ local: string; remote: string; score: number }> = [];
  for (const local of new Set(locals)) {
    const l = ipToBytes(local);
    for (const remote of new Set(peers)) {
      const r = ipToBytes(remote);
      if (!l || !r || l.length !== r.length || loopback(local) !== loopback(remote)) continue;
      out.push({ local, remote, score: commonPrefixBits(l, r) });
    }
  }
  return out.sort((a, b) => b.score - a.score).map(({ local, remote }) => ({ local, remote }));
}

/** The peer's address list from ADDITIONAL_* notifies; undefined when the message has none of them. */
export function peerAddressList(payloads: readonly Payload[]): string[] | undefined {
  const v4 = findNotifies(payloads, NotifyType.ADDITIONAL_IP4_ADDRESS).filter((n) => n.data.length === 4);
  const v6 = findNotifies(payloads, NotifyType.ADDITIONAL_IP6_ADDRESS).filter((n) => n.data.length === 16);
  if (v4.length + v6.length === 0) return findNotify(payloads, NotifyType.NO_ADDITIONAL_ADDRESSES) ? [] : undefined;
  return [...v4, ...v6].map((n) => bytesToIp(n.data));
}

/**
 * The peer's whole address set (§3.4, §3.6) replaces what we knew: the others
 * become its additional addresses; if the one in use is not among them, it is
 * withdrawn and the MOBIKE initiator moves away from it (§3.5).
 */
export function setPeerAddresses(sa: IkeSa, addresses: readonly string[]): void {
  const set = [...new Set(addresses)];
  sa.peerAdditionalAddresses = set.filter((a) => a !== sa.remote.address);
  sa.peerWithdrawnAddress = set.includes(sa.remote.address) ? undefined : sa.remote.address;
}

/** Checks the COOKIE2 a response echoes (§3.7): a mismatch closes the IKE SA. */
function cookie2Matches(engine: IkeContext, sa: IkeSa, payloads: Payload[], sent: Uint8Array): boolean {
  const echoed = findNotify(payloads, NotifyType.COOKIE2);
  if (echoed && equalBytes(echoed.data, sent)) return true;
  engine.log.warn({ ike: sa.id }, 'COOKIE2 in the response does not match the request: closing the IKE SA (RFC 4555 §3.7)');
  engine.deleteIkeSa(sa, 'COOKIE2 mismatch (RFC 4555 §3.7)');
  return false;
}

export type MobikeError = Error & { notify?: number };

function mobikeError(message: string, notifyType?: number): MobikeError {
  const err = new Error(message) as MobikeError;
  if (notifyType !== undefined) err.notify = notifyType;
  return err;
}

// ------------------------------------------------------------------ initiator

/** UPDATE_SA_ADDRESSES from the path the IKE SA now uses (§3.5). */
export class UpdateSaAddressesInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (UPDATE_SA_ADDRESSES)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;
  private cookie2: Uint8Array | undefined;
  private generation = -1;

  constructor(
    private readonly engine: IkeContext,
    /** Where the IKE SA was before the move, to go back to after UNACCEPTABLE_ADDRESSES. */
    private readonly previous: { local: Endpoint; remote: Endpoint },
    private readonly cb: { resolve: (sa: IkeSa) => void; reject: (err: MobikeError) => void; natRetries?: number },
  ) {}

  build(sa: IkeSa): Payload[] {
    this.generation = sa.addressGeneration;
    this.cookie2 = this.engine.random(COOKIE2_LENGTH);
    // encap=yes fakes our source hash as in IKE_SA_INIT (RFC 7296 §2.23), so that the peer keeps encapsulating after the move.
    const fake = sa.policy.forceEncap ? this.engine.random : undefined;
    const payloads: Payload[] = [notify(NotifyType.UPDATE_SA_ADDRESSES), ...natDetectionPayloads(sa.spiI, sa.spiR, sa.local, sa.remote, fake)];
    // §3.9: without NAT traversal (no NAT-D in IKE_SA_INIT), the addresses are protected.
    if (natsProhibited(sa)) payloads.push(notify(NotifyType.NO_NATS_ALLOWED, noNatsAllowedData(sa.local, sa.remote)));
    payloads.push(notify(NotifyType.COOKIE2, this.cookie2));
    return payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const engine = this.engine;
    if (!cookie2Matches(engine, sa, payloads, this.cookie2!)) return this.cb.reject(mobikeError('COOKIE2 mismatch: IKE SA closed'));
    // §3.5: the addresses changed again meanwhile; a newer update is on its way.
    if (sa.addressGeneration !== this.generation) return this.cb.reject(mobikeError('superseded by a later address change'));
    if (findNotify(payloads, NotifyType.UNEXPECTED_NAT_DETECTED)) {
      const left = this.cb.natRetries ?? NAT_RETRIES;
      if (left > 0) {
        engine.log.info({ ike: sa.id, left }, 'UNEXPECTED_NAT_DETECTED: retrying the address update (RFC 4555 §3.9)');
        engine.queueExchange(sa, new UpdateSaAddressesInitiator(engine, this.previous, { ...this.cb, natRetries: left - 1 }));
        return;
      }
      return this.cb.reject(mobikeError('the responder keeps seeing a NAT (UNEXPECTED_NAT_DETECTED)', NotifyType.UNEXPECTED_NAT_DETECTED));
    }
    if (findNotify(payloads, NotifyType.UNACCEPTABLE_ADDRESSES)) {
      // §3.5: keep using the previous addresses.
      engine.log.warn({ ike: sa.id, local: sa.local.address, remote: sa.remote.address }, 'UNACCEPTABLE_ADDRESSES: moving back');
      relocate(engine, sa, this.previous.local, this.previous.remote);
      return this.cb.reject(mobikeError(`the responder refused ${sa.local.address} (UNACCEPTABLE_ADDRESSES)`, NotifyType.UNACCEPTABLE_ADDRESSES));
    }
    const error = payloads.find((p) => p.type === 41 && p.notifyType > 0 && p.notifyType < 16384);
    if (error && error.type === 41) return this.cb.reject(mobikeError(`responder answered ${notifyName(error.notifyType)}`, error.notifyType));
    const nat = detectNat(payloads, sa.spiI, sa.spiR, sa.local, sa.remote);
    // encap=yes stands for a NAT in front of us on every path (RFC 7296 §2.23), not only the first. The
    // peer may have rekeyed the IKE SA meanwhile: the NAT state goes where the Child SAs are now.
    const current = carriedOn(engine, sa) ?? sa;
    if (nat) updateNat(engine, current, { natLocal: nat.natLocal || !!sa.policy.forceEncap, natRemote: nat.natRemote });
    this.cb.resolve(current);
  }

  abort(_sa: IkeSa, reason: string): void {
    this.cb.reject(mobikeError(reason));
  }
}

/** Tell the peer our complete address list (§3.6). */
export class AddressListInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (additional addresses)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;
  private cookie2: Uint8Array | undefined;

  constructor(
    private readonly engine: IkeContext,
    private readonly addresses: readonly string[],
    /**
     * Called with true when the peer answered with our COOKIE2, false when it
     * did not answer (a cluster arrival's path test: RFC 4555 §3.7).
     */
    private readonly answered?: (ok: boolean) => void,
  ) {}

  build(sa: IkeSa): Payload[] {
    this.cookie2 = this.engine.random(COOKIE2_LENGTH);
    const payloads = additionalAddressNotifies(this.addresses, sa.local.address);
    if (natsProhibited(sa)) payloads.push(notify(NotifyType.NO_NATS_ALLOWED, noNatsAllowedData(sa.local, sa.remote)));
    payloads.push(notify(NotifyType.COOKIE2, this.cookie2));
    return payloads;
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    const ok = cookie2Matches(this.engine, sa, payloads, this.cookie2!);
    this.answered?.(ok);
  }

  abort(): void {
    this.answered?.(false);
  }
}

/** Return routability check (§3.7): an INFORMATIONAL with COOKIE2 to the peer's new address. */
export class RoutabilityCheckInitiator implements InitiatorExchange {
  readonly name = 'INFORMATIONAL (return routability)';
  readonly exchangeType = ExchangeType.INFORMATIONAL;
  private cookie2: Uint8Array | undefined;
  private target: string | undefined;

  constructor(
    private readonly engine: IkeContext,
    /** `on`: the IKE SA the check ran on (a rekey may have moved it from the one that queued it to its successor). */
    private readonly done: (ok: boolean, on: IkeSa) => void,
  ) {}

  build(sa: IkeSa): Payload[] {
    this.cookie2 = this.engine.random(COOKIE2_LENGTH);
    this.target = sa.remote.address;
    return [notify(NotifyType.COOKIE2, this.cookie2)];
  }

  process(sa: IkeSa, payloads: Payload[]): void {
    if (!cookie2Matches(this.engine, sa, payloads, this.cookie2!)) return this.done(false, sa);
    // §3.7: only meaningful if the request went to one address only.
    const ok = sa.remote.address === this.target;
    if (ok) sa.verifiedAddresses.add(this.target!);
    this.done(ok, sa);
  }

  abort(sa: IkeSa): void {
    this.done(false, sa);
  }
}

// ------------------------------------------------------------------ responder

export interface MobilityResponse {
  /** The whole response instead of the usual one (UNEXPECTED_NAT_DETECTED, UNACCEPTABLE_ADDRESSES). */
  refuse?: Payload[];
  /** Payloads to add to the response (NAT-D, COOKIE2). */
  extra: Payload[];
  /** Run after the response has been sent. */
  after?: () => void;
}

/**
 * The MOBIKE part of answering an INFORMATIONAL request: COOKIE2 echo (§3.7),
 * NAT-D answer (§3.8), address lists (§3.6) and UPDATE_SA_ADDRESSES (§3.5).
 */
export function respondMobility(engine: IkeContext, sa: IkeSa, payloads: Payload[], d: Datagram): MobilityResponse {
  const extra: Payload[] = [];
  const cookie2 = findNotify(payloads, NotifyType.COOKIE2);
  const echo = cookie2 && cookie2.data.length >= 8 && cookie2.data.length <= 64 ? [notify(NotifyType.COOKIE2, cookie2.data)] : [];
  // §3.8: NAT-D in a request gets NAT-D for the path the request took; encap=yes fakes our source hash as in IKE_SA_INIT.
  if (findNotify(payloads, NotifyType.NAT_DETECTION_SOURCE_IP)) {
    extra.push(...natDetectionPayloads(sa.spiI, sa.spiR, d.local, d.remote, sa.policy.forceEncap ? engine.random : undefined));
  }
  extra.push(...echo);
  if (!sa.peerMobike) return { extra };

  let update = findNotify(payloads, NotifyType.UPDATE_SA_ADDRESSES);
  // §3.1, §3.5: only the MOBIKE initiator (§1.3) moves an IKE SA; an update from the responder is ignored.
  if (update && sa.mobikeInitiator) {
    engine.log.warn({ ike: sa.id }, 'ignoring UPDATE_SA_ADDRESSES from the original responder (RFC 4555 §3.5)');
    update = undefined;
  }
  const list = peerAddressList(payloads);
  const changesAddresses = update !== undefined || list !== undefined;
  // §3.9: without NAT traversal, address-changing requests carry NO_NATS_ALLOWED, which must match the IP header.
  const natRefusal = changesAddresses ? natProhibitionFailure(sa, payloads, d.remote, d.local) : undefined;
  if (natRefusal) {
    engine.log.warn({ ike: sa.id, from: d.remote.address, reason: natRefusal }, `${natRefusal}: UNEXPECTED_NAT_DETECTED (RFC 4555 §3.9)`);
    return { refuse: [notify(NotifyType.UNEXPECTED_NAT_DETECTED), ...echo], extra };
  }
  // §3.6: the peer's addresses are the IP header source plus the ones it lists.
  if (list !== undefined) setPeerAddresses(sa, [d.remote.address, ...list]);
  // §3.5: a new address list from the responder makes the initiator re-evaluate its path.
  if (!update) return list !== undefined && sa.mobikeInitiator ? { extra, after: () => reevaluatePath(engine, sa) } : { extra };
  if (!acceptablePeerAddress(sa, d.remote.address)) {
    engine.log.warn({ ike: sa.id, from: d.remote.address }, 'UPDATE_SA_ADDRESSES from an address our policy does not allow');
    return { refuse: [notify(NotifyType.UNACCEPTABLE_ADDRESSES), ...echo], extra };
  }
  const nat = detectNat(payloads, sa.spiI, sa.spiR, d.local, d.remote);
  return {
    extra,
    after: () => {
      // The path the Child SAs were on: verified, and theirs (new ones too) until the new one is (§3.7).
      const previous = childSaPath(sa);
      // §3.5: the IKE SA takes the addresses from the IP header.
      relocate(engine, sa, d.local, d.remote, { children: false });
      // Record the new path's NAT state (encap=yes keeps "NAT in front of us"), but
      // do not tell the data plane yet: the Child SAs must not move to an
      // unverified address (§3.7). The 'ike-moved' below carries the encapsulation.
      if (nat) updateNat(engine, sa, { natLocal: nat.natLocal || !!sa.policy.forceEncap, natRemote: nat.natRemote }, { emit: false });
      // §3.7: the Child SAs follow once the peer proved it receives at its new address.
      if (sa.verifiedAddresses.has(d.remote.address) || !engine.mobility.returnRoutability) return childrenFollow(engine, sa);
      sa.childPath = { local: { ...previous.local }, remote: { ...previous.remote } };
      engine.queueExchange(
        sa,
        // Run on the successor if the IKE SA was rekeyed meanwhile: the Child SAs are its now.
        new RoutabilityCheckInitiator(engine, (ok, on) => {
          if (ok && on.state === 'established') return childrenFollow(engine, on);
          engine.log.warn({ ike: on.id, remote: on.remote.address }, 'return routability check failed: Child SAs stay on the old path');
        }),
      );
    },
  };
}

// ------------------------------------------------------------- path choice

// The initiator's side of MOBIKE outside the exchanges themselves: moving an
// IKE SA (§3.5), failover when a path stops answering (§3.10), returning to
// the home address, and telling peers when our address set changes (§3.6).

/**
 * Move an IKE SA we originally initiated to other addresses (RFC 4555 §3.5):
 * we started the first IKE SA of its series (§1.3), whoever rekeyed or cloned
 * it since. The IKE SA and its Child SAs switch at once, then UPDATE_SA_ADDRESSES
 * tells the peer from the new path. Resolves when the peer has followed.
 */
export function moveIkeSa(engine: IkeContext, sa: IkeSa, to: { local: string; remote?: string }): Promise<IkeSa> {
  if (sa.state !== 'established') return Promise.reject(new Error(`IKE SA ${sa.id} is ${sa.state}`));
  if (!sa.mobikeInitiator) return Promise.reject(new Error(`IKE SA ${sa.id}: only the original initiator moves an IKE SA (RFC 4555 §1.3, §3.1)`));
  if (!sa.peerMobike) return Promise.reject(new Error(`IKE SA ${sa.id}: MOBIKE was not negotiated (RFC 4555 §3.2)`));
  const previous = { local: { ...sa.local }, remote: { ...sa.remote } };
  relocate(engine, sa, { address: to.local, port: sa.local.port }, { address: to.remote ?? sa.remote.address, port: sa.remote.port });
  return announceMove(engine, sa, previous);
}

function announceMove(engine: IkeContext, sa: IkeSa, previous: { local: Endpoint; remote: Endpoint }): Promise<IkeSa> {
  return new Promise((resolve, reject) => {
    // §3.5: sent as soon as the window allows, ahead of other queued work.
    sa.queue.unshift(new UpdateSaAddressesInitiator(engine, previous, { resolve, reject }));
    engine.kick(sa);
  });
}

/**
 * Point an IKE SA (and, unless told otherwise, its Child SAs) at new
 * endpoints. No message is sent; MOBIKE exchanges call this.
 */
export function relocate(engine: IkeContext, sa: IkeSa, local: Endpoint, remote: Endpoint, opts: { children?: boolean } = {}): void {
  // The peer's address set is the one in use plus the ones it announced (RFC 4555 §3.4): keep it whole,
  // less an address its latest list withdrew (§3.6).
  if (remote.address !== sa.remote.address) {
    const previous = sa.remote.address === sa.peerWithdrawnAddress ? [] : [sa.remote.address];
    sa.peerAdditionalAddresses = [...previous, ...sa.peerAdditionalAddresses.filter((a) => a !== remote.address && a !== sa.remote.address)];
    sa.peerWithdrawnAddress = undefined;
  }
  sa.local = { ...local };
  sa.remote = { ...remote };
  sa.addressGeneration++;
  engine.log.info({ ike: sa.id, local: `${local.address}:${local.port}`, remote: `${remote.address}:${remote.port}` }, 'IKE SA moved');
  if (opts.children ?? true) childrenFollow(engine, sa);
}

/** The Child SAs take the IKE SA's path (its addresses, and NAT state: 'ike-moved' tells the data plane). */
function childrenFollow(engine: IkeContext, sa: IkeSa): void {
  sa.childPath = undefined;
  engine.emit('ike-moved', sa);
}

/**
 * New NAT detection results (RFC 4555 §3.5, §3.8): UDP encapsulation of the Child SAs follows.
 * `emit: false` records the new state without telling the data plane: the
 * MOBIKE responder must not move its Child SAs to an unverified address
 * (§3.7), so its 'ike-moved' comes after the return routability check and
 * carries this encapsulation then.
 */
export function updateNat(engine: IkeContext, sa: IkeSa, nat: { natLocal: boolean; natRemote: boolean }, opts: { emit?: boolean } = {}): void {
  const encap = nat.natLocal || nat.natRemote;
  const changed = sa.children.some((c) => c.udpEncap !== encap) || sa.natLocal !== nat.natLocal || sa.natRemote !== nat.natRemote;
  sa.natLocal = nat.natLocal;
  sa.natRemote = nat.natRemote;
  for (const c of sa.children) c.udpEncap = encap;
  if (changed && (opts.emit ?? true)) engine.emit('ike-moved', sa);
}

/** Whether a MOBIKE peer may use `address` (the connection's remote_addrs; none = any). */
export function acceptablePeerAddress(sa: IkeSa, address: string): boolean {
  return sa.policy.remoteAddrs.length === 0 || sa.policy.remoteAddrs.includes(address);
}

/** Address pairs tried during the current failover of each IKE SA. */
const failoverTried = new WeakMap<IkeSa, Set<string>>();

/**
 * RFC 4555 §3.10: the current path stopped answering; move to the next
 * untried pair of (our address, peer address) of the same family. Returns
 * false when none is left (the IKE SA is then given up).
 */
export function failover(engine: IkeContext, sa: IkeSa): boolean {
  if (!sa.mobikeInitiator || !sa.peerMobike || sa.state !== 'established') return false;
  let tried = failoverTried.get(sa);
  if (!tried) failoverTried.set(sa, (tried = new Set()));
  tried.add(`${sa.local.address}|${sa.remote.address}`);
  for (const { local, remote } of candidatePaths(engine, sa)) {
    if (tried.has(`${local}|${remote}`)) continue;
    engine.log.warn({ ike: sa.id, from: `${sa.local.address} -> ${sa.remote.address}`, to: `${local} -> ${remote}` }, 'path failed, trying another (RFC 4555 §3.10)');
    const previous = { local: { ...sa.local }, remote: { ...sa.remote } };
    relocate(engine, sa, { address: local, port: sa.local.port }, { address: remote, port: sa.remote.port });
    announceMove(engine, sa, previous).then(
      () => failoverTried.delete(sa),
      () => undefined,
    );
    return true;
  }
  failoverTried.delete(sa);
  return false;
}

/** Usable (local, peer) address pairs for an IKE SA, best first (same family; see rankedPaths). */
function candidatePaths(engine: IkeContext, sa: IkeSa): Array<{ local: string; remote: string }> {
  const v6 = sa.remote.address.includes(':');
  const locals = engine.localAddresses().filter((a) => a.includes(':') === v6);
  // An address the peer withdrew from its set (RFC 4555 §3.6) is no path to move to or stay on.
  const peers = [sa.remote.address, ...sa.peerAdditionalAddresses].filter((a) => a.includes(':') === v6 && a !== sa.peerWithdrawnAddress);
  return rankedPaths(locals, peers);
}

/**
 * The path an IKE SA we initiated should use now (RFC 4555 §3.5): from its
 * home address when that is up (to the peer address on the same network),
 * else from its current address if still up, else the best pair left.
 * Moves it when that differs from the path in use.
 */
export function reevaluatePath(engine: IkeContext, sa: IkeSa): void {
  if (!sa.mobikeInitiator || !sa.peerMobike || sa.state !== 'established') return;
  const paths = candidatePaths(engine, sa);
  const pick =
    paths.find((p) => p.local === sa.homeAddress) ?? paths.find((p) => p.local === sa.local.address) ?? paths[0];
  if (!pick || (pick.local === sa.local.address && pick.remote === sa.remote.address)) return;
  // A usable path is left only for one that looks at least as link-local: when our home address
  // returns before the peer's address on that network does (§3.6), we wait for its address list.
  const current = paths.find((p) => p.local === sa.local.address && p.remote === sa.remote.address);
  if (current && pathAffinity(pick) < pathAffinity(current)) return;
  moveIkeSa(engine, sa, pick).catch((err: Error) => engine.log.warn({ ike: sa.id, reason: err.message }, 'address update failed'));
}

/**
 * The address set each IKE SA last sent in an address-list INFORMATIONAL
 * (sorted, joined). RFC 4555 §3.6: the list is an update to send when the set
 * changes; an SA without an entry has announced nothing since IKE_AUTH.
 */
const announcedAddresses = new WeakMap<IkeSa, string>();

/**
 * Our addresses changed (RFC 4555 §3.5, §3.6): IKE SAs on an address that
 * went away move to one that is left, SAs whose home address is back move
 * home, and every MOBIKE peer that has not yet been told gets our new
 * address list.
 */
export function localAddressesChanged(engine: IkeContext): void {
  const available = engine.localAddresses();
  // The peer's view of our addresses is the IP header plus the list (§3.6), so the whole set is the key.
  const key = [...new Set(available)].sort().join(',');
  for (const sa of engine.sas.values()) {
    if (sa.state !== 'established' || !sa.peerMobike) continue;
    const before = sa.addressGeneration;
    // Paths are re-evaluated on every call, the list or not: a home address that came back is
    // moved to (§3.5), and failover (§3.10) picks from localAddresses() itself.
    if (sa.mobikeInitiator) reevaluatePath(engine, sa);
    // A move already tells the peer everything it needs; otherwise send our address list (§3.6),
    // but only if it differs from the one this SA last sent: a repeat would be a redundant
    // exchange per SA per notification, and the peer's set would not change.
    if (sa.addressGeneration !== before || announcedAddresses.get(sa) === key) continue;
    announcedAddresses.set(sa, key);
    engine.queueExchange(sa, new AddressListInitiator(engine, available));
  }
}
