// Linear memory layout of the ESP kernel module: the one place that says where
// everything lives. Memory is static: nothing on the hot path allocates.
//
//   [0, __heap_base)            data segments (constants, tables) placed by asc
//   SCRATCH                     1 MiB, 16-byte aligned: one-shot AEAD calls and tests
//   (further regions — SA slots, batch descriptors, packet arena — are appended
//    below by the ESP layer and documented here)

/** Round `p` up to a multiple of 16 bytes (v128 alignment). */
// @ts-ignore: decorator
@inline export function align16(p: usize): usize {
  return (p + 15) & ~(<usize>15);
}

/** Start of the scratch region: host code writes inputs here for one-shot calls. */
export const SCRATCH_PTR: usize = align16(__heap_base);
export const SCRATCH_SIZE: usize = 1 << 20;

export function scratchPtr(): usize {
  return SCRATCH_PTR;
}

export function scratchSize(): usize {
  return SCRATCH_SIZE;
}
