// The Security Association Database of the I/O side (RFC 4301 §4.4.2): which
// worker owns each SA and in which kernel slots, inbound lookup by SPI, and the
// addresses ESP travels between. What the SAD holds is routing state only:
// keys went to the owner worker, sequence counters and replay windows live
// there (architecture §4.1).
//
// Owner: the I/O thread (main thread). Not shared with workers.
import type { EspAlgorithm } from './kernel.js';
import type { Selector } from './packet.js';
import type { Endpoint } from '../io/endpoint.js';
import { ipFamily } from '../io/ip.js';

export type { Endpoint };

/**
 * What the control plane hands the data plane for one Child SA. Key material
 * is moved: install() copies it synchronously, sends it to the owner worker
 * and zeroes `keyIn` and `keyOut`.
 */
export interface SaSpec {
  /** The control plane's id for this Child SA; unique within a data plane. */
  id: number;
  algorithm: EspAlgorithm;
  /** 8, 12 or 16 for AES-GCM (RFC 4106 §8.1); 16, 24 or 32 for AES-CBC + HMAC-SHA2 (RFC 4868 §2.3). */
  icvLength: 8 | 12 | 16 | 24 | 32;
  /** Extended sequence numbers (RFC 4303 §2.2.1). */
  esn: boolean;
  /** Our inbound SPI (the peer sends with it) and the peer's (we send with it). */
  spiIn: number;
  spiOut: number;
  /**
   * Key material for each direction: key || salt for AEADs (RFC 4106 §4, RFC
   * 7634 §2), AES key || HMAC key for AES-CBC (RFC 4868 §2.1.1). Zeroed by install().
   */
  keyIn: Uint8Array;
  keyOut: Uint8Array;
  /** Anti-replay window in packets (RFC 4303 §3.4.3). */
  replayWindow: number;
  /** Traffic selectors: our side and the peer's side (RFC 7296 §2.9). */
  localTs: Selector[];
  remoteTs: Selector[];
  /** Outer endpoints: for UDP encapsulation the NAT-T ports (RFC 3948). */
  local: Endpoint;
  remote: Endpoint;
  /** ESP must travel in UDP (a NAT was detected, or the peer forces it). Otherwise raw ESP when available. */
  udpEncap: boolean;
  /** SAs this one takes over outbound traffic from (a rekeyed predecessor); they keep receiving until removed. */
  replaces?: number[];
  /**
   * The peer created this SA (we answered its exchange): it has it only once
   * our response arrives, so while others of the family still send, this one
   * waits (dataplane/handover.ts).
   */
  deferOutbound?: boolean;
  /**
   * The worker that must own it: the one its inbound SPI names
   * (DataPlane.placeChild, io/spi-layout.ts), so ESP the kernel steers by SPI
   * reaches its owner. Refused when that worker is full. Absent: chosen at install.
   */
  worker?: number;
  /**
   * An RFC 9611 per-resource SA: while its family has one, outbound traffic
   * uses only those; the others (the fallback SA) keep receiving (RFC 9611 §4).
   */
  perResource?: boolean;
  /** The outer header rules of its ESP, packed (outer-header.ts packOuterHeader); absent: the defaults. */
  outer?: number;
  /**
   * Outbound sequence numbers at which 'rekey-needed' is reported, and past
   * which nothing is sent (RFC 4303 §3.3.3); defaults: 15/16 of, and, the
   * 32-bit (or with ESN 64-bit) space.
   */
  seqSoftLimit?: bigint;
  seqHardLimit?: bigint;
}

export type EspTransport = 'udp' | 'raw';

/** One installed SA as the I/O side routes it. */
export interface SaRecord {
  readonly id: number;
  readonly worker: number;
  readonly inSlot: number;
  readonly outSlot: number;
  readonly inTag: number;
  readonly outTag: number;
  readonly spiIn: number;
  readonly spiOut: number;
  readonly localTs: Selector[];
  readonly remoteTs: Selector[];
  readonly familyKey: string;
  local: Endpoint;
  remote: Endpoint;
  /** The family of `remote`, parsed once at install and at every move (path-check.ts reads it per packet). */
  remoteFamily?: 4 | 6;
  /** ESP must travel in UDP (NAT, or the peer forces it). */
  udpEncap: boolean;
  /** How ESP actually travels: raw when allowed and possible. */
  transport: EspTransport;
  /** ESP header, IV, padding at most, trailer and ICV of this SA's transform (path-mtu.ts); ESP_OVERHEAD when unknown. */
  readonly espOverhead?: number;
  /** Carries outbound traffic (false once a successor replaced it). */
  outbound: boolean;
  /** An RFC 9611 per-resource SA (SaSpec.perResource). */
  readonly perResource: boolean;
  /**
   * The SAs this one took outbound traffic from (SaSpec.replaces). Kept so
   * that when this one goes while still sending, the newest of them that is
   * still installed sends again (RFC 7296 §2.8.1: in a simultaneous rekey the
   * loser's own new SA is deleted, the peer's one stays and must carry traffic).
   */
  readonly replaces: readonly number[];
  /** Order of activation (0 while installing): the newest predecessor is the one with the highest. */
  activatedAt: number;
  state: 'installing' | 'active' | 'removed';
  /** Deleted by the control plane: sends nothing, receives until removed (dataplane/handover.ts). */
  retiring?: boolean;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function selectorKey(s: Selector): string {
  return `${hex(s.startAddress)}-${hex(s.endAddress)}/${s.ipProtocol}/${s.startPort}-${s.endPort}`;
}

/** SAs with equal selectors form one family (the clones of a connection's Child SA): this is its key. */
export function familyKey(localTs: readonly Selector[], remoteTs: readonly Selector[]): string {
  return `${localTs.map(selectorKey).join(',')}>${remoteTs.map(selectorKey).join(',')}`;
}

/** Free slots of one worker's kernel, reused oldest-freed first, with an 8-bit generation tag per slot. */
export class SlotAllocator {
  private readonly free: number[] = [];
  private readonly tags: Uint8Array;

  constructor(slotCount: number) {
    for (let s = 0; s < slotCount; s++) this.free.push(s);
    this.tags = new Uint8Array(slotCount);
  }

  get available(): number {
    return this.free.length;
  }

  /** A free slot and its new tag, or undefined when the kernel is full. */
  take(): { slot: number; tag: number } | undefined {
    const slot = this.free.shift();
    if (slot === undefined) return undefined;
    this.tags[slot] = (this.tags[slot]! + 1) & 0xff;
    return { slot, tag: this.tags[slot]! };
  }

  give(slot: number): void {
    this.free.push(slot);
  }
}

const NO_SAS: ReadonlySet<SaRecord> = new Set();

/** Whether some SA of `sas` satisfies `test` (Sad.family() gives a set, which has no some()). */
export function anyOf(sas: Iterable<SaRecord>, test: (r: SaRecord) => boolean): boolean {
  for (const r of sas) if (test(r)) return true;
  return false;
}

export class Sad {
  private readonly records = new Map<number, SaRecord>();
  /**
   * Inbound SPI -> SA, from add() on: an SA still installing holds its SPI,
   * so a second install with the same SPI is refused (RFC 4301 §4.1: the SPI
   * identifies one inbound SA) and its ESP is not taken for an unknown SPI.
   */
  private readonly bySpi = new Map<number, SaRecord>();
  /** Local outer addresses in use, with the number of SAs using each. */
  private readonly localAddresses = new Map<string, number>();
  /**
   * Family key -> its SAs, and per worker the number of SAs it owns: an
   * install asks about its family and the workers' loads, which a scan of
   * every SA would make cost O(SAs) per install.
   */
  private readonly byFamily = new Map<string, Set<SaRecord>>();
  private readonly perWorker: number[];
  private activations = 0;
  /** Per worker: slot -> the SA using it (inbound or outbound). */
  private readonly bySlot: Array<Array<SaRecord | undefined>>;
  readonly slots: SlotAllocator[];

  constructor(readonly workers: number, slotCount: number) {
    this.bySlot = Array.from({ length: workers }, () => new Array<SaRecord | undefined>(slotCount));
    this.slots = Array.from({ length: workers }, () => new SlotAllocator(slotCount));
    this.perWorker = new Array<number>(workers).fill(0);
  }

  get size(): number {
    return this.records.size;
  }

  get(id: number): SaRecord | undefined {
    return this.records.get(id);
  }

  all(): SaRecord[] {
    return [...this.records.values()];
  }

  /** The SAs (installed or installing) of the family `familyKey`; do not change the SAD while iterating. */
  family(familyKey: string): ReadonlySet<SaRecord> {
    return this.byFamily.get(familyKey) ?? NO_SAS;
  }

  /** Whether some installed SA uses `address` as its local outer address. */
  hasLocalAddress(address: string): boolean {
    return this.localAddresses.has(address);
  }

  private countLocal(address: string, delta: number): void {
    const n = (this.localAddresses.get(address) ?? 0) + delta;
    if (n > 0) this.localAddresses.set(address, n);
    else this.localAddresses.delete(address);
  }

  /** New outer endpoints for an SA (MOBIKE, NAT mapping change). */
  move(r: SaRecord, local: Endpoint, remote: Endpoint): void {
    if (this.records.get(r.id) !== r) return;
    this.countLocal(r.local.address, -1);
    r.local = { ...local };
    r.remote = { ...remote };
    r.remoteFamily = ipFamily(remote.address) === 6 ? 6 : 4;
    this.countLocal(r.local.address, 1);
  }

  /** The SA that receives with `spi`: installed, or still installing (check its state). */
  inbound(spi: number): SaRecord | undefined {
    return this.bySpi.get(spi);
  }

  /** The SA using `slot` of `worker`, if its tag is current. */
  atSlot(worker: number, slot: number, tag: number): SaRecord | undefined {
    const r = this.bySlot[worker]?.[slot];
    if (!r) return undefined;
    if (r.inSlot === slot ? r.inTag === tag : r.outTag === tag) return r;
    return undefined;
  }

  /**
   * The owner for a new SA: the worker of the SA it replaces (a rekey keeps
   * its worker), else the worker with the fewest SAs of the same family, then
   * the fewest SAs in all, then the lowest index. `promised`: SAs still being
   * negotiated for a worker (placement.ts), counted as if installed. Only
   * workers below `eligible` with two free slots qualify; undefined when none has.
   */
  chooseOwner(family: string, replaces: readonly number[] = [], promised: readonly { worker: number; familyKey: string }[] = [], eligible = this.workers): number | undefined {
    for (const id of replaces) {
      const r = this.records.get(id);
      if (r && r.worker < eligible && this.slots[r.worker]!.available >= 2) return r.worker;
    }
    const inFamily = new Array<number>(this.workers).fill(0);
    const total = [...this.perWorker];
    for (const r of this.family(family)) inFamily[r.worker]!++;
    for (const p of promised) {
      total[p.worker]!++;
      if (p.familyKey === family) inFamily[p.worker]!++;
    }
    let best: number | undefined;
    for (let w = 0; w < Math.min(eligible, this.workers); w++) {
      if (this.slots[w]!.available < 2) continue;
      if (best === undefined || inFamily[w]! < inFamily[best]! || (inFamily[w] === inFamily[best] && total[w]! < total[best]!)) best = w;
    }
    return best;
  }

  /**
   * Record an SA whose slots were taken from `slots[worker]`. Its inbound SPI
   * is taken at once (inbound() finds it, state 'installing'); throws when an
   * SA, installed or installing, already has the id or the inbound SPI.
   */
  add(r: SaRecord): void {
    if (this.records.has(r.id)) throw new Error(`SA ${r.id} is already installed`);
    if (this.bySpi.has(r.spiIn)) throw new Error(`inbound SPI ${r.spiIn.toString(16)} is in use`);
    this.records.set(r.id, r);
    this.bySpi.set(r.spiIn, r);
    this.countLocal(r.local.address, 1);
    let members = this.byFamily.get(r.familyKey);
    if (!members) this.byFamily.set(r.familyKey, (members = new Set()));
    members.add(r);
    this.perWorker[r.worker]!++;
    this.bySlot[r.worker]![r.inSlot] = r;
    this.bySlot[r.worker]![r.outSlot] = r;
  }

  /** The owner worker has the SA: its ESP is delivered from now on. */
  activate(r: SaRecord): void {
    r.state = 'active';
    r.activatedAt = ++this.activations;
  }

  /** Forget the SA and free its slots. */
  delete(r: SaRecord): void {
    r.state = 'removed';
    r.outbound = false;
    if (this.records.get(r.id) === r) {
      this.records.delete(r.id);
      this.countLocal(r.local.address, -1);
      const members = this.byFamily.get(r.familyKey)!;
      members.delete(r);
      if (members.size === 0) this.byFamily.delete(r.familyKey);
      this.perWorker[r.worker]!--;
    }
    if (this.bySpi.get(r.spiIn) === r) this.bySpi.delete(r.spiIn);
    const slots = this.bySlot[r.worker]!;
    if (slots[r.inSlot] === r) slots[r.inSlot] = undefined;
    if (slots[r.outSlot] === r) slots[r.outSlot] = undefined;
    this.slots[r.worker]!.give(r.inSlot);
    this.slots[r.worker]!.give(r.outSlot);
  }
}
