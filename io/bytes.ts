// Byte readers written once for every layer: io/, dataplane/ and, through
// control/crypto/bytes.ts, the control plane (they sit at the bottom of io/
// with ip.ts and endpoint.ts: no socket, no thread, architecture §2). Pure
// functions; callers check lengths before they read (architecture §4.3:
// untrusted bytes never throw). Any thread may call them.

/** Big-endian 16-bit value at `at` (network order). */
export function readU16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

/** Big-endian 32-bit value at `at`, unsigned (an SPI, RFC 4303 §2.1). */
export function readU32(b: Uint8Array, at = 0): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** Whether a[0..n) equals b[0..n) (not constant-time: for addresses, never for secrets). */
export function equalPrefix(a: Uint8Array, b: Uint8Array, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The four bytes of a dotted-quad IPv4 address (the caller checked it with isIPv4). */
export function ipv4Bytes(address: string): Uint8Array {
  return Uint8Array.from(address.split('.'), Number);
}

