// Classic BPF (linux/filter.h) as ikeclone writes it: the opcodes its
// programs use, one instruction, and the encoding the native addon takes
// (native/io/steer.c, filter.c: two Uint32 words per instruction, code |
// jt << 16 | jf << 24, then k). The programs themselves are built from the
// SPI layout where they are used (esp-steering.ts, esp-raw-filter.ts).
//
// Owner: none (pure values).

// Opcode parts (linux/bpf_common.h, linux/filter.h).
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_W = 0x00;
export const BPF_B = 0x10;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;
export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_AND = 0x50;
export const BPF_RSH = 0x70;
export const BPF_JEQ = 0x10;
export const BPF_JGE = 0x30;

/** One classic BPF instruction. */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k });
export const jump = (code: number, k: number, jt: number, jf: number): Insn => ({ code, jt, jf, k });

/** A program as the addon takes it: two words per instruction. */
export function cbpfWords(prog: readonly Insn[]): Uint32Array {
  const out = new Uint32Array(prog.length * 2);
  prog.forEach((insn, i) => {
    out[2 * i] = (insn.code | (insn.jt << 16) | (insn.jf << 24)) >>> 0;
    out[2 * i + 1] = insn.k >>> 0;
  });
  return out;
}
