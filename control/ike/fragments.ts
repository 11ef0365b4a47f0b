// Reassembly of received IKE fragments (RFC 7383 §2.6): the receiving side
// of IKE fragmentation (fragmentation.ts sends). Each fragment is checked
// (numbers, replays, a newer set) and then authenticated and decrypted on its
// own BEFORE anything is stored, so forged, corrupted or duplicated fragments
// change nothing; only a complete set is decoded, as one Encrypted payload's
// plaintext, and handed to the engine like an opened SK payload.
//
// Bounded (architecture §4.6): fragments per message, decrypted octets per
// message and in all, messages in reassembly (at most one request and one
// response per IKE SA, and a few per source address, so that half-open IKE
// SAs from one address cannot hold the table), and time (shorter while the
// table is under pressure). Every fragment that is not stored is a drop
// counted by reason (DropReason 'fragment-*').
//
// Owner: the main thread, like the engine that holds the one reassembler.
import { exchangeName, PayloadType } from '../wire/constants.js';
import type { IkeMessage } from '../wire/message.js';
import type { SkfPayload } from '../wire/payloads.js';
import { concatBytes } from '../crypto/bytes.js';
import { wipe } from '../crypto/random.js';
import type { TimerHandle } from './clock.js';
import type { DropReason, IkeContext } from './context.js';
import { DEFAULT_REASSEMBLY, MIN_FRAGMENT_SIZE, type ReassemblyLimits } from './defaults.js';
import { datagramOverhead, fragmentationMode, fragmentSize } from './fragmentation.js';
import { spi64Hex, type IkeSa } from './ike-sa.js';
import { decodeInner, openMessage, type OpenResult } from './protect.js';

/** What the reassembler needs of the engine. */
export type ReassemblyContext = Pick<IkeContext, 'clock' | 'log' | 'stats' | 'countDrop' | 'on'>;

/** One message in reassembly: the fragments of one set (one Total Fragments value). */
interface Reassembly {
  sa: IkeSa;
  /** The peer's address when reassembly started: the key of the per-source bound. */
  source: string;
  startedAt: number;
  messageId: number;
  exchangeType: number;
  total: number;
  /** Decrypted content by Fragment Number - 1. */
  chunks: Array<Uint8Array | undefined>;
  count: number;
  octets: number;
  /** Next Payload of fragment 1: the first inner payload (RFC 7383 §2.5). */
  firstType: number;
  /** The longest fragment message received (RFC 7383 §2.5.1: a threshold for the response). */
  longest: number;
  timer: TimerHandle;
}

/** Whether `msg` is an IKE Fragment message: its last payload is an Encrypted Fragment payload (RFC 7383 §2.6). */
export function isFragmentMessage(msg: IkeMessage): boolean {
  return msg.payloads[msg.payloads.length - 1]?.type === PayloadType.SKF;
}

export class FragmentReassembler {
  readonly limits: ReassemblyLimits;
  /** In start order (a set that starts over is inserted again), which expireUnderPressure relies on. */
  private readonly inProgress = new Map<string, Reassembly>();
  /** Messages in reassembly by source address. */
  private readonly bySource = new Map<string, number>();
  private heldOctets = 0;

  constructor(private readonly ctx: ReassemblyContext, limits: Partial<ReassemblyLimits> = {}) {
    this.limits = { ...DEFAULT_REASSEMBLY, ...limits };
    // A dead IKE SA's fragments can never complete: wipe them now rather than at their timeout.
    ctx.on('ike-down', (sa) => this.forget(sa));
    ctx.on('ike-failed', (sa) => this.forget(sa));
  }

  /** Messages in reassembly now. */
  get messages(): number {
    return this.inProgress.size;
  }

  /** Messages in reassembly now from `source` (an address). */
  messagesFrom(source: string): number {
    return this.bySource.get(source) ?? 0;
  }

  /** Decrypted octets held now. */
  get octets(): number {
    return this.heldOctets;
  }

  /**
   * Open a protected message whose message ID the engine has checked: an SK
   * payload at once (protect.ts), an IKE fragment into its reassembly.
   * Undefined while the message is incomplete or when the fragment was
   * dropped (counted); the inner payloads once the last fragment is in.
   */
  open(sa: IkeSa, msg: IkeMessage, response: boolean): OpenResult | undefined {
    return isFragmentMessage(msg) ? this.add(sa, msg, response) : openMessage(sa, msg);
  }

  /**
   * RFC 7383 §2.6.1: a fragment of a request we have answered. Only its first
   * fragment, authenticated, has the response sent again; the others are
   * ignored (counted). True when the cached response goes out again.
   */
  answersRetransmission(sa: IkeSa, msg: IkeMessage): boolean {
    const skf = msg.payloads[msg.payloads.length - 1] as SkfPayload;
    const what = `${exchangeName(msg.header.exchangeType)} mid ${msg.header.messageId} fragment ${skf.fragmentNumber}/${skf.totalFragments}`;
    if (skf.fragmentNumber !== 1) return this.drop('fragment-stale', `${what} of an answered request`) ?? false;
    const plain = sa.protectIn?.open(skf.aad, skf.body);
    if (!plain?.ok) return this.drop('fragment-auth', what) ?? false;
    wipe(plain.value);
    return true;
  }

  /** Forget (and wipe) what is in reassembly for `sa`. */
  forget(sa: IkeSa): void {
    for (const [key, r] of this.inProgress) if (r.sa === sa) this.discard(key, r);
  }

  /** RFC 7383 §2.6, in its order: check the numbers, replays and older sets; authenticate; start over on a newer set; store. */
  private add(sa: IkeSa, msg: IkeMessage, response: boolean): OpenResult | undefined {
    const h = msg.header;
    const skf = msg.payloads[msg.payloads.length - 1] as SkfPayload;
    const n = skf.fragmentNumber;
    const total = skf.totalFragments;
    const what = `${exchangeName(h.exchangeType)} mid ${h.messageId} fragment ${n}/${total}`;
    // RFC 7383 §2.3: we accept fragments only where we announced support.
    if (fragmentationMode(sa.policy) === 'no') return this.drop('fragment-unsupported', what);
    if (!Number.isInteger(n) || !Number.isInteger(total) || n < 1 || n > total) return this.drop('malformed', what);
    if (total > this.limits.maxFragments) return this.drop('fragment-limit', `${what}: more than ${this.limits.maxFragments} fragments`);
    const key = `${spi64Hex(sa.localSpi)}|${response ? 'response' : 'request'}`;
    let r = this.inProgress.get(key);
    if (r && r.sa !== sa) {
      this.discard(key, r);
      r = undefined;
    }
    const sameMessage = r !== undefined && r.messageId === h.messageId;
    if (r && sameMessage) {
      if (total < r.total) return this.drop('fragment-stale', `${what}: a set of ${r.total} is in reassembly`);
      if (h.exchangeType !== r.exchangeType) return this.drop('fragment-stale', `${what}: the set in reassembly is ${exchangeName(r.exchangeType)}`);
      if (total === r.total && r.chunks[n - 1] !== undefined) return this.drop('fragment-duplicate', what);
    } else if (!r) {
      // Expired sets give way only once this fragment has authenticated (below): a forged one changes nothing.
      if (this.inProgress.size >= this.limits.maxMessages && !this.expiredUnderPressure()) return this.drop('fragment-limit', `${what}: ${this.inProgress.size} messages in reassembly`);
      const own = this.messagesFrom(sa.remote.address);
      if (own >= this.limits.maxMessagesPerSource) return this.drop('fragment-source-limit', `${what}: ${own} messages in reassembly from ${sa.remote.address}`);
    }
    // RFC 7383 §2.6: the fragment is authenticated before it is stored; a forged one changes nothing.
    const plain = sa.protectIn?.open(skf.aad, skf.body);
    if (!plain?.ok) return this.drop('fragment-auth', what);
    const chunk = plain.value;
    this.ctx.stats.fragments.received++;
    // A newer set (more fragments: the sender cut smaller, §2.5.2) or a newer message starts over.
    if (r && (!sameMessage || total > r.total)) {
      this.discard(key, r);
      r = undefined;
    }
    const held = r?.octets ?? 0;
    if (held + chunk.length > this.limits.maxMessageBytes) {
      // RFC 7383 §5: more than a message may hold is an attack or a broken sender: discard the set.
      wipe(chunk);
      if (r) this.discard(key, r);
      return this.drop('fragment-limit', `${what}: message over ${this.limits.maxMessageBytes} octets`);
    }
    if (this.heldOctets + chunk.length > this.limits.maxTotalBytes) {
      wipe(chunk);
      return this.drop('fragment-limit', `${what}: ${this.heldOctets} octets in reassembly`);
    }
    if (!r) {
      this.expireUnderPressure();
      // RFC 7383 §5: a table under pressure keeps an incomplete message for a shorter time.
      const pressure = this.inProgress.size >= this.limits.pressureThreshold;
      const lifetime = pressure ? Math.min(this.limits.pressureTimeout, this.limits.timeout) : this.limits.timeout;
      const started: Reassembly = {
        sa, source: sa.remote.address, startedAt: this.ctx.clock.now(),
        messageId: h.messageId, exchangeType: h.exchangeType, total, chunks: new Array<Uint8Array | undefined>(total).fill(undefined),
        count: 0, octets: 0, firstType: PayloadType.NONE, longest: 0,
        timer: this.ctx.clock.schedule(lifetime, () => {
          if (this.inProgress.get(key) !== started) return;
          this.discard(key, started);
          this.drop(pressure ? 'fragment-pressure-timeout' : 'fragment-timeout', `${exchangeName(started.exchangeType)} mid ${started.messageId}: ${started.count} of ${started.total} fragments`);
        }),
      };
      r = started;
      this.inProgress.set(key, r);
      this.bySource.set(r.source, this.messagesFrom(r.source) + 1);
    }
    r.chunks[n - 1] = chunk;
    r.count++;
    r.octets += chunk.length;
    this.heldOctets += chunk.length;
    if (n === 1) r.firstType = skf.innerType;
    r.longest = Math.max(r.longest, h.length);
    if (r.count < r.total) return undefined;
    return this.complete(key, r, response);
  }

  /** All fragments are in: the Encrypted payload's content, decoded as one (RFC 7383 §2.6). */
  private complete(key: string, r: Reassembly, response: boolean): OpenResult {
    const plaintext = concatBytes(...(r.chunks as Uint8Array[]));
    this.discard(key, r);
    this.ctx.stats.fragments.reassembled++;
    // RFC 7383 §2.5.1: the peer's fragments got through at this size; our answer uses no larger ones.
    if (!response && r.total > 1) {
      const seen = Math.max(MIN_FRAGMENT_SIZE, r.longest + datagramOverhead(r.sa.remote.address));
      if (seen < fragmentSize(r.sa)) r.sa.fragmentSize = seen;
    }
    return decodeInner(r.firstType, plaintext);
  }

  /** Whether expireUnderPressure would forget the oldest set now. */
  private expiredUnderPressure(): boolean {
    const oldest = this.inProgress.values().next().value;
    return oldest !== undefined && this.inProgress.size >= this.limits.pressureThreshold && oldest.startedAt <= this.ctx.clock.now() - this.limits.pressureTimeout;
  }

  /**
   * While the table is at or over pressureThreshold, messages in reassembly
   * for longer than pressureTimeout are forgotten, oldest first: slots held
   * that long by incomplete sets only keep others out (as half-open IKE SAs
   * under pressure, sa-table.ts).
   */
  private expireUnderPressure(): void {
    if (!this.expiredUnderPressure()) return;
    const oldest = this.ctx.clock.now() - this.limits.pressureTimeout;
    for (const [key, r] of this.inProgress) {
      if (this.inProgress.size < this.limits.pressureThreshold || r.startedAt > oldest) break;
      this.discard(key, r);
      this.drop('fragment-pressure-timeout', `${exchangeName(r.exchangeType)} mid ${r.messageId}: ${r.count} of ${r.total} fragments`);
    }
  }

  private discard(key: string, r: Reassembly): void {
    r.timer.cancel();
    if (this.inProgress.get(key) !== r) return; // already discarded
    this.inProgress.delete(key);
    const fromSource = this.messagesFrom(r.source) - 1;
    if (fromSource > 0) this.bySource.set(r.source, fromSource);
    else this.bySource.delete(r.source);
    this.heldOctets -= r.octets;
    wipe(...r.chunks);
    r.chunks.fill(undefined);
    r.octets = 0;
  }

  private drop(reason: DropReason, detail: string): undefined {
    this.ctx.countDrop(reason, detail);
    return undefined;
  }
}
