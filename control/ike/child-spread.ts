// Per-worker Child SAs on one IKE SA, initiator side (architecture §5.1): when
// a session cannot be cloned, every worker still gets its own Child SA. After
// IKE_AUTH the session's mode is chosen from what the peer announced
// (per-resource.ts spreadMode): clones (clone-family.ts does the work),
// RFC 9611 per-resource Child SAs, or parallel Child SAs with the same
// selectors (RFC 7296 §2.8). Here the per-resource and parallel ones are
// created with CREATE_CHILD_SA, each placed on its worker:
// - per-resource: after the first Child SA (the fallback SA, RFC 9611 §3),
//   one per worker k = 0..N-1, each with SA_RESOURCE_INFO;
// - parallel: the first Child SA is worker 0's; one more for k = 1..N-1.
//
// Bounded: each is asked for once. TS_MAX_QUEUE (RFC 9611 §5.2) ends the
// per-resource ones of that child; NO_ADDITIONAL_SAS ends the session's. A
// per-worker Child SA the peer deletes is not brought back (RFC 9611 §6: that
// may loop between the peers); its worker's flows use the others meanwhile.
// Rekeys keep each on its worker (child-rekey.ts).
//
// Owner: the main thread, next to the engine it drives.
import { NotifyType } from '../wire/constants.js';
import type { IkeContext } from './context.js';
import type { ChildPlacement, IkeSa } from './ike-sa.js';
import { newResourceId, offersResourceInfo, perWorkerCount, spreadMode, type SpreadMode } from './per-resource.js';

export interface SessionSpread {
  sessionId: number;
  mode: SpreadMode;
  /** Why this mode: what the peer announced (logged, and shown by `status`). */
  reason: string;
  /** Per-worker Child SAs wanted per child (1 for clones and single: one per IKE SA). */
  perChild: number;
  /** growing while Child SAs are being asked for; complete; limited (refused: `limit` says why). */
  state: 'growing' | 'complete' | 'limited';
  limit?: string;
}

type RefusedError = Error & { notify?: number };

export class ChildSpreader {
  private readonly sessions = new Map<number, SessionSpread>();
  /** The IKE SA that now manages each session's Child SAs (an IKE rekey replaces it, RFC 7296 §2.18). */
  private readonly current = new Map<number, IkeSa>();
  private stopped = false;

  constructor(private readonly engine: IkeContext) {}

  start(): this {
    this.engine.on('session-up', (sessionId, sa) => this.onSessionUp(sessionId, sa));
    this.engine.on('ike-rekeyed', (old, successor) => {
      if (this.current.get(old.sessionId) === old) this.current.set(old.sessionId, successor);
    });
    this.engine.on('session-down', (sessionId) => {
      this.sessions.delete(sessionId);
      this.current.delete(sessionId);
    });
    return this;
  }

  /** Ask for nothing more (gateway shutdown); Child SAs in flight complete or fail on their own. */
  stop(): void {
    this.stopped = true;
  }

  session(sessionId: number): SessionSpread | undefined {
    return this.sessions.get(sessionId);
  }

  private onSessionUp(sessionId: number, sa: IkeSa): void {
    if (!sa.isInitiator) return;
    const choice = spreadMode(sa);
    const first = sa.policy.children[0];
    const perChild = (choice.mode === 'per-resource' || choice.mode === 'parallel') && first ? perWorkerCount(sa.policy, first) : 1;
    const spread: SessionSpread = { sessionId, ...choice, perChild, state: 'complete' };
    this.sessions.set(sessionId, spread);
    this.current.set(sessionId, sa);
    const log = { session: sessionId, ike: sa.id, conn: sa.name, mode: choice.mode };
    if (choice.mode === 'single' && !first?.perCpuSas) return;
    this.engine.log.info({ ...log, reason: choice.reason }, `per-worker SAs: ${choice.mode}`);
    if (choice.mode !== 'per-resource' && choice.mode !== 'parallel') return;
    spread.state = 'growing';
    void this.spread(spread);
  }

  private async spread(spread: SessionSpread): Promise<void> {
    const { sessionId, mode } = spread;
    const start = this.current.get(sessionId)!;
    for (const child of start.policy.children.filter((c) => offersResourceInfo(start.policy, c))) {
      const count = perWorkerCount(start.policy, child);
      // Parallel: the first Child SA already serves worker 0.
      for (let worker = mode === 'parallel' ? 1 : 0; worker < count; worker++) {
        const sa = this.current.get(sessionId);
        if (this.stopped || !sa || sa.state !== 'established') return this.limit(spread, this.stopped ? 'stopped' : 'the IKE SA is gone');
        const placement: ChildPlacement =
          mode === 'per-resource'
            ? { kind: 'per-resource', worker, resourceId: Buffer.from(newResourceId(this.engine)).toString('hex') }
            : { kind: 'parallel', worker };
        try {
          const created = await this.engine.createChildSa(sa, child.name, { placement });
          this.engine.log.info({ session: sessionId, ike: sa.id, child: created.id, worker, kind: created.placement?.kind }, `${mode} Child SA up`);
        } catch (err) {
          const e = err as RefusedError;
          // RFC 9611 §6: the peer takes no more for these selectors; other children may still get theirs.
          if (e.notify === NotifyType.TS_MAX_QUEUE) {
            this.engine.log.info({ session: sessionId, child: child.name, worker }, 'the peer answered TS_MAX_QUEUE: no more per-resource Child SAs for this child');
            spread.limit = `the peer answered TS_MAX_QUEUE after ${worker} per-resource Child SAs of ${child.name}`;
            break;
          }
          if (e.notify === NotifyType.NO_ADDITIONAL_SAS) return this.limit(spread, 'the peer answered NO_ADDITIONAL_SAS');
          this.engine.log.warn({ session: sessionId, child: child.name, worker, reason: e.message }, `${mode} Child SA failed`);
          spread.limit = `${mode} Child SA for worker ${worker} failed: ${e.message}`;
        }
      }
    }
    spread.state = spread.limit ? 'limited' : 'complete';
  }

  private limit(spread: SessionSpread, reason: string): void {
    spread.state = 'limited';
    spread.limit = reason;
    this.engine.log.warn({ session: spread.sessionId, mode: spread.mode, reason }, 'per-worker Child SAs limited');
  }
}
