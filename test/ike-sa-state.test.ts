// The SA state machines (architecture §2.1): every state change goes through
// setState against an explicit transition table; an illegal change is refused,
// logged, and leaves the state as it was.
import { describe, expect, it } from 'vitest';
import { ChildSa, CHILD_SA_TRANSITIONS, IKE_SA_TRANSITIONS, IkeSa, stateChangeAllowed } from '../control/ike/ike-sa.js';
import type { ChildSaState, IkeSaState } from '../control/ike/ike-sa.js';
import type { NegotiatedSuite } from '../control/ike/proposals.js';
import type { Logger } from '../control/log.js';
import { pskPair } from './support/peers.js';

function recordingLog(): { log: Logger; lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; obj: Record<string, unknown> }> = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, msg, obj });
  return { log: { debug: at('debug'), warn: at('warn'), info: at('info'), error: at('error') } as unknown as Logger, lines };
}

function ikeSa(): IkeSa {
  const { initiator } = pskPair();
  return new IkeSa('initiator', initiator, { address: '10.0.0.1', port: 500 }, { address: '10.0.0.2', port: 500 }, new Uint8Array(8).fill(1), new Uint8Array(8), 0);
}

function childSa(): ChildSa {
  const suite = { protocol: 3, encr: 20, encrKeyLength: 128, spi: new Uint8Array(4) } as unknown as NegotiatedSuite;
  return new ChildSa(ikeSa(), 'net', 0x1000, 0x2000, suite, undefined, [], [], false, 0);
}

/** Walk `sa` from its initial state along `path` (each step legal). */
function walk<S extends string>(sa: { setState(to: S): boolean }, path: readonly S[]): void {
  for (const s of path) expect(sa.setState(s)).toBe(true);
}

const IKE_PATHS: Record<IkeSaState, readonly IkeSaState[]> = {
  connecting: [],
  authenticating: ['authenticating'],
  established: ['established'],
  deleting: ['established', 'deleting'],
  dead: ['dead'],
};

const CHILD_PATHS: Record<ChildSaState, readonly ChildSaState[]> = {
  installed: [],
  rekeying: ['rekeying'],
  rekeyed: ['rekeyed'],
  deleting: ['deleting'],
  deleted: ['deleted'],
};

describe('IKE SA state machine', () => {
  it('pins the transition table', () => {
    expect(IKE_SA_TRANSITIONS).toEqual({
      connecting: ['authenticating', 'established', 'dead'],
      authenticating: ['established', 'dead'],
      established: ['deleting', 'dead'],
      deleting: ['dead'],
      dead: [],
    });
  });

  it('starts connecting; every legal transition is made and logged at debug', () => {
    for (const from of Object.keys(IKE_SA_TRANSITIONS) as IkeSaState[]) {
      for (const to of IKE_SA_TRANSITIONS[from]) {
        const sa = ikeSa();
        expect(sa.state).toBe('connecting');
        walk(sa, IKE_PATHS[from]);
        expect(sa.state).toBe(from);
        const { log, lines } = recordingLog();
        expect(sa.setState(to, log)).toBe(true);
        expect(sa.state).toBe(to);
        expect(lines).toEqual([{ level: 'debug', msg: 'SA state change', obj: { ike: sa.id, from, to } }]);
      }
    }
  });

  it('refuses every illegal transition, logs it, and leaves the state unchanged', () => {
    const all = Object.keys(IKE_SA_TRANSITIONS) as IkeSaState[];
    let refused = 0;
    for (const from of all) {
      for (const to of all) {
        if (stateChangeAllowed(IKE_SA_TRANSITIONS, from, to)) continue;
        const sa = ikeSa();
        walk(sa, IKE_PATHS[from]);
        const { log, lines } = recordingLog();
        expect(sa.setState(to, log)).toBe(false);
        expect(sa.state).toBe(from);
        expect(lines).toEqual([{ level: 'warn', msg: 'illegal SA state change refused', obj: { ike: sa.id, from, to } }]);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    // A dead SA stays dead; a deleted IKE SA is not brought back.
    const sa = ikeSa();
    walk(sa, ['established', 'dead']);
    expect(sa.setState('established')).toBe(false);
    expect(sa.state).toBe('dead');
  });

  it('state is read-only outside setState', () => {
    const sa = ikeSa();
    // @ts-expect-error: state has no setter
    expect(() => (sa.state = 'established')).toThrow(TypeError);
    expect(sa.state).toBe('connecting');
  });

  it('destroy() makes the SA dead', () => {
    const sa = ikeSa();
    sa.destroy();
    expect(sa.state).toBe('dead');
  });
});

describe('Child SA state machine', () => {
  it('pins the transition table', () => {
    expect(CHILD_SA_TRANSITIONS).toEqual({
      installed: ['rekeying', 'rekeyed', 'deleting', 'deleted'],
      rekeying: ['installed', 'rekeyed', 'deleting', 'deleted'],
      rekeyed: ['deleting', 'deleted'],
      deleting: ['deleted'],
      deleted: [],
    });
  });

  it('every legal transition is made and logged at debug', () => {
    for (const from of Object.keys(CHILD_SA_TRANSITIONS) as ChildSaState[]) {
      for (const to of CHILD_SA_TRANSITIONS[from]) {
        const child = childSa();
        expect(child.state).toBe('installed');
        walk(child, CHILD_PATHS[from]);
        const { log, lines } = recordingLog();
        expect(child.setState(to, log)).toBe(true);
        expect(child.state).toBe(to);
        expect(lines).toEqual([{ level: 'debug', msg: 'SA state change', obj: { ike: child.ike.id, child: child.id, from, to } }]);
      }
    }
  });

  it('refuses every illegal transition and leaves the state unchanged', () => {
    const all = Object.keys(CHILD_SA_TRANSITIONS) as ChildSaState[];
    let refused = 0;
    for (const from of all) {
      for (const to of all) {
        if (stateChangeAllowed(CHILD_SA_TRANSITIONS, from, to)) continue;
        const child = childSa();
        walk(child, CHILD_PATHS[from]);
        const { log, lines } = recordingLog();
        expect(child.setState(to, log)).toBe(false);
        expect(child.state).toBe(from);
        expect(lines.map((l) => [l.level, l.msg])).toEqual([['warn', 'illegal SA state change refused']]);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    // A deleted Child SA is not rekeyed back to life.
    const child = childSa();
    walk(child, ['deleted']);
    expect(child.setState('rekeyed')).toBe(false);
    expect(child.state).toBe('deleted');
  });
});
