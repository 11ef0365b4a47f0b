/*
 * TUN reads with segmentation offload (the software TSO of a NIC driver) for
 * a TUN device opened with IFF_VNET_HDR and TUNSETOFFLOAD TUN_F_CSUM |
 * TUN_F_TSO4 | TUN_F_TSO6 (tun.c): the kernel then hands over a TCP flow's
 * data as one GSO packet of up to 64 KiB with a partial checksum, instead of
 * segmenting it and checksumming every segment itself and making one read
 * per segment. This module is the other half of that contract: it splits a
 * GSO packet into the MTU-sized segments the kernel would have sent, each a
 * complete IP packet with correct checksums, ready to be encrypted.
 *
 *   tunReadSegments(fd, buffer, desc) -> segments, 0 when nothing is waiting
 *       (EAGAIN), -errno on a read error, -EPROTO for a packet this module
 *       refuses (malformed, or a GSO type it did not ask for), -EMSGSIZE when
 *       the segments would not fit in buffer or desc.
 *       One packet is read past its virtio_net_hdr into the last READ_AREA
 *       bytes of buffer. A packet that is not GSO stays there (its partial
 *       checksum completed, VIRTIO_NET_HDR_F_NEEDS_CSUM); a GSO packet is
 *       split into buffer[0 .. length - READ_AREA). Segment i is
 *       buffer[desc[2i] .. + desc[2i + 1]].
 *
 * Splitting follows the kernel's tcp_gso_segment (net/ipv4/tcp_offload.c):
 * every segment carries gso_size bytes of payload but the last; the IP and
 * TCP headers are the GSO packet's with, per segment, the IPv4 total length
 * and an identification one higher than the previous segment's (IPv6: the
 * payload length), the sequence number advanced by the payload before it,
 * CWR only on the first segment and FIN and PSH only on the last, and the
 * IPv4 header and TCP checksums computed in full (RFC 1071; RFC 9293 §3.1;
 * RFC 8200 §8.1). Nothing here trusts the packet: the header lengths are
 * taken from the packet itself, not from hdr_len, and every length is
 * checked before a byte is read or written.
 */
#include "csum.h"
#include "io.h"

#include <errno.h>
#include <linux/virtio_net.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes at the end of the caller's buffer where a packet is read: the
 * largest GSO packet a TUN device hands over (gso_max_size 65536) plus room
 * to notice a larger one. */
#define READ_AREA (65536 + 256)

/*
 * Split the GSO packet pkt[0 .. len) into out[0 .. cap), at most max_segs
 * segments described in desc (offsets relative to out_base). Returns the
 * segment count or -EPROTO / -EMSGSIZE.
 */
static int32_t split(const struct virtio_net_hdr* vh, const uint8_t* pkt, uint32_t len, uint8_t* out, uint32_t out_base,
                     uint32_t cap, int32_t* desc, uint32_t max_segs) {
  uint8_t type = vh->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  int v6;
  uint32_t iph;
  if (len < 20) return -EPROTO;
  if (type == VIRTIO_NET_HDR_GSO_TCPV4) {
    iph = (uint32_t)(pkt[0] & 0x0f) * 4;
    if (pkt[0] >> 4 != 4 || iph < 20 || iph > len || pkt[9] != 6) return -EPROTO;
    if ((be16(pkt + 6) & 0x3fff) != 0) return -EPROTO; /* a fragment cannot be a TCP GSO packet */
    v6 = 0;
  } else if (type == VIRTIO_NET_HDR_GSO_TCPV6) {
    iph = 40;
    if (pkt[0] >> 4 != 6 || len < iph || pkt[6] != 6) return -EPROTO; /* extension headers: not split here */
    v6 = 1;
  } else {
    return -EPROTO; /* UDP GSO and the rest were never enabled (tun.c) */
  }
  if (len < iph + 20) return -EPROTO;
  const uint8_t* tcp = pkt + iph;
  uint32_t tcph = (uint32_t)(tcp[12] >> 4) * 4;
  uint32_t hdr = iph + tcph;
  uint32_t mss = vh->gso_size;
  if (tcph < 20 || hdr > len || mss == 0) return -EPROTO;
  uint32_t payload = len - hdr;
  uint32_t segs = payload == 0 ? 1 : (payload + mss - 1) / mss;
  if (segs > max_segs || (uint64_t)segs * hdr + payload > cap) return -EMSGSIZE;

  uint32_t seq = be32(tcp + 4);
  uint32_t id = v6 ? 0 : be16(pkt + 4);
  uint8_t flags = tcp[13];
  uint32_t at = 0;
  for (uint32_t i = 0; i < segs; i++) {
    uint32_t chunk = i + 1 < segs ? mss : payload - i * mss;
    uint32_t seg_len = hdr + chunk;
    uint8_t* s = out + at;
    memcpy(s, pkt, hdr);
    memcpy(s + hdr, pkt + hdr + i * mss, chunk);
    if (v6) {
      put16(s + 4, seg_len - 40);
    } else {
      put16(s + 2, seg_len);
      put16(s + 4, (id + i) & 0xffff);
      put16(s + 10, 0);
      put16(s + 10, ~csum_fold(csum_add(0, s, iph)) & 0xffff);
    }
    uint8_t* t = s + iph;
    put32(t + 4, seq + i * mss);
    uint8_t f = flags;
    if (i > 0) f &= (uint8_t)~TCP_CWR;
    if (i + 1 < segs) f &= (uint8_t)~(TCP_FIN | TCP_PSH);
    t[13] = f;
    put16(t + 16, 0);
    put16(t + 16, ~csum_fold(pseudo_sum(s, v6, seg_len - iph) + csum_add(0, t, seg_len - iph)) & 0xffff);
    desc[2 * i] = (int32_t)(out_base + at);
    desc[2 * i + 1] = (int32_t)seg_len;
    at += seg_len;
  }
  return (int32_t)segs;
}

napi_value tun_read_segments(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint8_t* data;
  size_t length;
  int32_t* desc;
  size_t desc_len;
  if (argc < 3 || get_int(env, argv[0], &fd) < 0 || get_bytes(env, argv[1], &data, &length) < 0 ||
      get_int32s(env, argv[2], &desc, &desc_len) < 0 || length <= READ_AREA || length > INT32_MAX || desc_len < 2) {
    napi_throw_type_error(env, NULL, "tunReadSegments: (fd, Uint8Array of more than 65792 bytes, Int32Array of at least 2)");
    return NULL;
  }
  uint32_t out_cap = (uint32_t)(length - READ_AREA);
  uint8_t* pkt = data + out_cap;
  struct virtio_net_hdr vh;
  struct iovec iov[2] = {{&vh, sizeof vh}, {pkt, READ_AREA}};
  ssize_t n;
  do n = readv(fd, iov, 2); while (n < 0 && errno == EINTR);
  int32_t value;
  if (n < 0) {
    value = errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  } else if ((size_t)n < sizeof vh) {
    value = -EPROTO;
  } else if ((size_t)n - sizeof vh >= READ_AREA) {
    value = -EMSGSIZE; /* larger than any packet we asked for: perhaps truncated */
  } else {
    uint32_t len = (uint32_t)((size_t)n - sizeof vh);
    if (vh.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
      value = split(&vh, pkt, len, data, 0, out_cap, desc, (uint32_t)(desc_len / 2));
    } else if (len == 0) {
      value = -EPROTO;
    } else {
      value = 1;
      desc[0] = (int32_t)out_cap;
      desc[1] = (int32_t)len;
      if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        uint32_t start = vh.csum_start, at = (uint32_t)vh.csum_start + vh.csum_offset;
        if (start >= len || at + 2 > len) {
          value = -EPROTO;
        } else {
          /* The field holds the pseudo-header sum: add the rest and complement (RFC 1071). */
          put16(pkt + at, ~csum_fold(csum_add(0, pkt + start, len - start)) & 0xffff);
        }
      }
    }
  }
  napi_value result;
  CHECK(napi_create_int32(env, value, &result));
  return result;
}
