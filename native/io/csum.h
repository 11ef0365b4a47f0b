/*
 * Byte order, Internet checksum and TCP header helpers shared by the TUN
 * offloads (gro.c on write, tso.c on read). Pure functions over the bytes
 * given.
 */
#ifndef IKECLONE_CSUM_H
#define IKECLONE_CSUM_H

#include <stddef.h>
#include <stdint.h>

/* TCP header flags (RFC 9293 §3.1, RFC 3168 §6.1 for CWR). */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

static inline uint32_t be16(const uint8_t* p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t* p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put16(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v);
}

/* One's-complement sum (RFC 1071) of big-endian 16-bit words, unfolded; summing
 * 32-bit words is the same sum once folded. */
static inline uint64_t csum_add(uint64_t sum, const uint8_t* p, size_t len) {
  size_t i = 0;
  for (; i + 4 <= len; i += 4) sum += be32(p + i);
  for (; i + 1 < len; i += 2) sum += be16(p + i);
  if (i < len) sum += (uint32_t)p[i] << 8;
  return sum;
}

static inline uint32_t csum_fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint32_t)sum;
}

/* The TCP pseudo-header (RFC 9293 §3.1; RFC 8200 §8.1) of an IPv4 or IPv6
 * packet `pkt` for a segment of tcp_len bytes, unfolded. */
static inline uint64_t pseudo_sum(const uint8_t* pkt, int v6, uint32_t tcp_len) {
  uint64_t sum = v6 ? csum_add(0, pkt + 8, 32) : csum_add(0, pkt + 12, 8);
  return sum + 6 /* IPPROTO_TCP */ + tcp_len;
}

#endif
