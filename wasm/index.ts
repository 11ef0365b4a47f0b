// ikeclone ESP kernel module entry point (AssemblyScript -> wasm/build/esp.wasm).
// The kernels themselves live beside this file; this module only re-exports
// what the TypeScript wrapper in dataplane/ calls.

/** Layout version of the linear-memory ABI; the wrapper refuses a mismatch. */
export const ABI_VERSION: i32 = 1;

export function abiVersion(): i32 {
  return ABI_VERSION;
}

export { scratchPtr, scratchSize } from './layout';
export { chacha20Blocks4, chacha20Xor } from './chacha20';
export { poly1305Mac } from './poly1305';
export {
  CHACHAPOLY_CTX_SIZE, chachaPolyInit, chachaPolySeal, chachaPolyOpen, chachaPolyWipe,
} from './chachapoly';
export { GCM_CTX_SIZE, gcmCtxSize, gcmInit, gcmSeal, gcmOpen, gcmWipe } from './gcm';
export { AES_CBC_CTX_SIZE, aesCbcInit, aesCbcEncrypt, aesCbcDecrypt } from './cbchmac';
export { HMAC_CTX_SIZE, hmacInit, hmacMac, hmacVerify } from './hmac';

// ESP kernel: layout, SA slots, batch encap/decap (RFC 4303).
export {
  ResultCode, Algorithm, Direction, Counter, COUNTER_COUNT, SLOT_COUNT, SLOT_SIZE, MAX_BATCH, DESC_SIZE,
  DESC_OFFSET, DESC_LENGTH, DESC_SLOT, DESC_NEXT_HEADER, DESC_RESULT, DESC_OUT_OFFSET, DESC_OUT_LENGTH,
  ARENA_SIZE, ESP_HEADROOM, ESP_TAILROOM, MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW, KEY_CTX_SIZE,
  descPtr, arenaPtr, layoutEnd,
} from './layout';
export { slotInstall, slotDelete, slotCounter, slotRekeyNeeded, slotPtr, slotSetNextSeqOut } from './slots';
export { encapBatch, decapBatch } from './batch';
