// Seeded mutation of text (configuration files, control-socket lines): the
// byte mutators of fuzz/mutate.ts on the UTF-8, plus splices of tokens that
// matter to YAML and JSON (brackets, anchors and aliases, tags, merge keys,
// quotes, escapes, deep nesting, long numbers).
import { concat, type Rng } from './mutate.js';

const TOKENS = [
  '[', ']', '{', '}', ',', ':', ': ', '- ', '\n', '\n  ', '\t', '"', "'", '\\', '\\u0000', '#', '&a ', '*a', '<<: *a', '!!binary ', '!!set ', '!!omap ',
  '!!timestamp ', '!!str ', '!!int ', '!foo ', '%YAML 1.1\n---\n', '---\n', '...\n', '~', 'null', 'true', '-1', '1e309', '0x', '99999999999999999999',
  '__proto__', 'constructor', '\uFEFF', '\u2028', '\uD800', '"\\ud800"', '%any', '0.0.0.0/0', '::/0',
] as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** A mutant of `text` (differs from it unless the text is empty and nothing could be inserted). */
export function mutateText(text: string, r: Rng): string {
  let b: Uint8Array = encoder.encode(text);
  const rounds = r.next() < 0.6 ? 1 : 2 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const at = r.int(b.length + 1);
    switch (r.int(8)) {
      case 0: { // bit flip
        if (b.length > 0) { const i = r.int(b.length); b[i]! ^= 1 << r.int(8); }
        break;
      }
      case 1: // delete a span
        b = concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + r.int(16))));
        break;
      case 2: // duplicate a span
        b = concat(b.subarray(0, at), b.subarray(at, at + 1 + r.int(64)), b.subarray(at));
        break;
      case 3: // truncate
        b = b.subarray(0, at);
        break;
      case 4: { // deep nesting
        const open = r.pick(['[', '{a: ', '- ']);
        const n = r.pick([2, 10, 63, 64, 65, 1000, 5000]);
        const close = open === '[' ? ']' : open === '{a: ' ? '}' : '';
        b = concat(b.subarray(0, at), encoder.encode(open.repeat(n) + (close === '' ? 'x' : '1') + close.repeat(n)), b.subarray(at));
        break;
      }
      case 5: { // replace a byte with an ASCII punctuation or a control character
        if (b.length > 0) b[r.int(b.length)] = r.pick([0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x27, 0x2c, 0x3a, 0x5b, 0x5d, 0x7b, 0x7d, 0x7f, 0xc3, 0xff]);
        break;
      }
      default: // splice a token
        b = concat(b.subarray(0, at), encoder.encode(r.pick(TOKENS)), b.subarray(at));
    }
  }
  const out = decoder.decode(b);
  return out === text ? `${text}${r.pick(TOKENS)}` : out;
}
