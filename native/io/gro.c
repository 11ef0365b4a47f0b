/*
 * TUN writes with receive coalescing (the software GRO of a NIC driver) for
 * a TUN device opened with IFF_VNET_HDR, where every packet written is
 * preceded by a struct virtio_net_hdr (include/uapi/linux/virtio_net.h).
 *
 *   tunWriteBatch(fd, data, desc, count) -> write system calls made
 *       Packet i is data[desc[3i] .. + desc[3i + 1]]. Consecutive TCP
 *       segments of one flow in the batch are written as one GSO packet
 *       (gso_type TCPV4/TCPV6, CHECKSUM_PARTIAL), so the inner TCP stack
 *       takes one large segment and acknowledges it once, as after a NIC's
 *       GRO. desc[3i + 2] is written back: 0 written alone, 1 written as part
 *       of a coalesced packet, -errno dropped (-EAGAIN: the queue was full).
 *   (Reads from such a device, and segmentation offload, are tso.c's.)
 *
 * Coalescing rules (those of the kernel's tcp_gro_receive, kept strict): IPv4
 * without options or fragments, or IPv6 without extension headers; TCP with
 * only ACK (and PSH on the last segment); payload not empty; same addresses,
 * ports, TOS/traffic class, TTL/hop limit, DF, acknowledgement number,
 * window and options; sequence numbers contiguous; every segment the size
 * of the first but the last, which may be shorter; at most 64 KiB in all. A
 * segment whose TCP checksum does not verify is written alone, as it came:
 * CHECKSUM_PARTIAL would make the receiver skip the check it must fail.
 * Packets are written in the order of each flow's first segment, so no flow
 * is reordered; a packet that may be TCP but whose flow is not parsed here
 * (IPv4 options or fragments, IPv6 extension headers) closes every earlier
 * group of its address pair, since it may belong to any of their flows.
 * Nothing here trusts the packets: every length is checked.
 */
#include "csum.h"
#include "io.h"

#include <errno.h>
#include <linux/virtio_net.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_BATCH 64
#define DESC_WORDS 3
#define MAX_GSO_BYTES 65535

typedef struct {
  const uint8_t* pkt;
  uint32_t len;
  int tcp;      /* IPv4/IPv6 + TCP headers parsed: its flow is known */
  int eligible; /* may be coalesced */
  int barrier;  /* may be TCP, but its ports were not parsed: ends every flow of its address pair */
  int v6;
  uint32_t iph;     /* IP header bytes */
  uint32_t tcph;    /* TCP header bytes */
  uint32_t payload; /* TCP payload bytes */
  uint32_t seq;
  int group;        /* index of its group */
  int next;         /* next member of the group, -1 at the end */
} segment_t;

typedef struct {
  int first, last, count;
  uint32_t next_seq;
  uint32_t gso_size;
  uint32_t bytes; /* payload bytes so far */
  int closed;
} group_t;

/*
 * Whether IPv6 Next Header value nh may put a TCP header further on: TCP
 * itself, or an extension header (RFC 8200 §4; the IANA list of IPv6
 * extension headers) that may precede it.
 */
static int v6_may_carry_tcp(uint8_t nh) {
  switch (nh) {
    case 6: case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140: case 253: case 254:
      return 1;
    default:
      return 0;
  }
}

/*
 * Classify packet s: eligible for coalescing or not. A packet that may be
 * TCP but whose header shape is not parsed here (IPv4 options or fragments,
 * a total length that disagrees, IPv6 extension headers, a truncated TCP
 * header) is a barrier: its flow is unknown, so no later packet of its
 * address pair may join a group written before it.
 */
static void inspect(segment_t* s) {
  const uint8_t* p = s->pkt;
  uint32_t len = s->len;
  s->tcp = s->eligible = s->barrier = 0;
  if (len < 20) return;
  if (p[0] >> 4 == 4) {
    s->v6 = 0;
    s->barrier = p[9] == 6;
    if ((p[0] & 0x0f) != 5 || p[9] != 6 || be16(p + 2) != len) return;
    if ((be16(p + 6) & 0x3fff) != 0) return; /* MF or a fragment offset */
    s->iph = 20;
  } else if (p[0] >> 4 == 6) {
    if (len < 40) return;
    s->v6 = 1;
    s->barrier = v6_may_carry_tcp(p[6]);
    if (p[6] != 6 || be16(p + 4) + 40 != len) return;
    s->iph = 40;
  } else {
    return;
  }
  if (len < s->iph + 20) return;
  const uint8_t* t = p + s->iph;
  uint32_t tcph = (uint32_t)(t[12] >> 4) * 4;
  if (tcph < 20 || s->iph + tcph > len) return;
  s->tcp = 1;
  s->barrier = 0; /* its flow is known: same_flow orders it */
  uint8_t flags = t[13];
  if ((flags & ~(TCP_ACK | TCP_PSH)) != 0 || !(flags & TCP_ACK)) return;
  s->tcph = tcph;
  s->payload = len - s->iph - tcph;
  if (s->payload == 0) return;
  if (csum_fold(pseudo_sum(p, s->v6, len - s->iph) + csum_add(0, t, len - s->iph)) != 0xffff) return;
  s->seq = be32(t + 4);
  s->eligible = 1;
}

/* Whether a and b are TCP segments of the same connection and direction. */
static int same_flow(const segment_t* a, const segment_t* b) {
  if (!a->tcp || !b->tcp || a->v6 != b->v6) return 0;
  const uint8_t *p = a->pkt, *q = b->pkt;
  if (a->v6 ? memcmp(p + 8, q + 8, 32) != 0 : memcmp(p + 12, q + 12, 8) != 0) return 0;
  return memcmp(p + a->iph, q + b->iph, 4) == 0;
}

/* Whether barrier b and packet s have the same source and destination addresses. */
static int same_addresses(const segment_t* b, const segment_t* s) {
  if (b->v6 != s->v6) return 0;
  return b->v6 ? memcmp(b->pkt + 8, s->pkt + 8, 32) == 0 : memcmp(b->pkt + 12, s->pkt + 12, 8) == 0;
}

/* Whether segment s (of g's flow) may follow group g's last segment. */
static int fits(const segment_t* segs, const group_t* g, const segment_t* s) {
  const segment_t* f = &segs[g->first];
  if (g->closed || f->v6 != s->v6 || f->tcph != s->tcph) return 0;
  if (s->seq != g->next_seq || s->payload > g->gso_size) return 0;
  if (f->iph + f->tcph + g->bytes + s->payload > MAX_GSO_BYTES) return 0;
  const uint8_t *a = f->pkt, *b = s->pkt;
  if (s->v6) {
    if (memcmp(a, b, 4) != 0 || a[7] != b[7] || memcmp(a + 8, b + 8, 32) != 0) return 0;
  } else {
    if (a[1] != b[1] || a[8] != b[8] || ((a[6] ^ b[6]) & 0x40) || memcmp(a + 12, b + 12, 8) != 0) return 0;
  }
  const uint8_t *ta = a + f->iph, *tb = b + s->iph;
  /* ports; acknowledgement number; data offset and flags but PSH; window; options */
  if (memcmp(ta, tb, 4) != 0 || memcmp(ta + 8, tb + 8, 4) != 0 || ta[12] != tb[12]) return 0;
  if ((ta[13] & ~TCP_PSH) != (tb[13] & ~TCP_PSH) || memcmp(ta + 14, tb + 14, 2) != 0) return 0;
  if (memcmp(ta + 20, tb + 20, f->tcph - 20) != 0) return 0;
  return 1;
}

static ssize_t writev_retry(int fd, const struct iovec* iov, int n) {
  ssize_t r;
  do r = writev(fd, iov, n); while (r < 0 && errno == EINTR);
  return r;
}

napi_value tun_write_batch(napi_env env, napi_callback_info info) {
  int32_t fd, count;
  uint8_t* data;
  size_t length;
  int32_t* desc;
  if (batch_args(env, info, DESC_WORDS, MAX_BATCH, &fd, &data, &length, &desc, &count) < 0) {
    napi_throw_type_error(env, NULL, "tunWriteBatch: (fd, Uint8Array, Int32Array, count <= 64)");
    return NULL;
  }
  segment_t segs[MAX_BATCH];
  group_t groups[MAX_BATCH];
  int ngroups = 0;
  for (int i = 0; i < count; i++) {
    uint32_t offset = (uint32_t)desc[i * DESC_WORDS], len = (uint32_t)desc[i * DESC_WORDS + 1];
    if ((uint64_t)offset + len > length || len == 0) {
      napi_throw_range_error(env, NULL, "tunWriteBatch: a packet lies outside the data");
      return NULL;
    }
    segment_t* s = &segs[i];
    s->pkt = data + offset;
    s->len = len;
    s->next = -1;
    inspect(s);
    int joined = 0;
    if (s->tcp) {
      /* The flow's latest group, if s continues it: never an older one, which would reorder the flow. */
      for (int k = ngroups - 1; k >= 0; k--) {
        group_t* g = &groups[k];
        /* A packet of unknown flow from the same addresses may be of s's flow: groups before it are closed to s. */
        if (segs[g->first].barrier && same_addresses(&segs[g->first], s)) break;
        if (!same_flow(&segs[g->last], s)) continue;
        if (!s->eligible || !segs[g->first].eligible || !fits(segs, g, s)) break;
        segs[g->last].next = i;
        g->last = i;
        g->count++;
        g->bytes += s->payload;
        g->next_seq = s->seq + s->payload;
        if (s->payload < g->gso_size || (s->pkt[s->iph + 13] & TCP_PSH)) g->closed = 1;
        s->group = k;
        joined = 1;
        break;
      }
    }
    if (!joined) {
      group_t* g = &groups[ngroups];
      g->first = g->last = i;
      g->count = 1;
      g->bytes = s->eligible ? s->payload : 0;
      g->gso_size = s->eligible ? s->payload : 0;
      g->next_seq = s->eligible ? s->seq + s->payload : 0;
      g->closed = !s->eligible || (s->pkt[s->iph + 13] & TCP_PSH) != 0;
      s->group = ngroups++;
    }
  }

  static const struct virtio_net_hdr plain; /* all zero: no offload */
  int calls = 0;
  for (int k = 0; k < ngroups; k++) {
    group_t* g = &groups[k];
    const segment_t* f = &segs[g->first];
    ssize_t r;
    if (g->count == 1) {
      struct iovec iov[2] = {{(void*)&plain, sizeof plain}, {(void*)f->pkt, f->len}};
      r = writev_retry(fd, iov, 2);
    } else {
      /* virtio_net_hdr, then the first segment's headers made those of the whole, then every payload. */
      uint8_t head[sizeof(struct virtio_net_hdr) + 40 + 60];
      struct virtio_net_hdr* vh = (struct virtio_net_hdr*)head;
      uint8_t* ip = head + sizeof *vh;
      uint32_t hlen = f->iph + f->tcph, tcp_len = f->tcph + g->bytes;
      memset(vh, 0, sizeof *vh);
      vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      vh->gso_type = f->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
      vh->hdr_len = (uint16_t)hlen;
      vh->gso_size = (uint16_t)g->gso_size;
      vh->csum_start = (uint16_t)f->iph;
      vh->csum_offset = 16;
      memcpy(ip, f->pkt, hlen);
      if (f->v6) {
        put16(ip + 4, tcp_len);
      } else {
        put16(ip + 2, f->iph + tcp_len);
        ip[10] = ip[11] = 0;
        put16(ip + 10, ~csum_fold(csum_add(0, ip, 20)) & 0xffff);
      }
      uint8_t* tcp = ip + f->iph;
      tcp[13] = segs[g->last].pkt[segs[g->last].iph + 13]; /* the last segment's PSH */
      /* CHECKSUM_PARTIAL: the pseudo-header sum, folded, not complemented; the receiver adds the rest. */
      put16(tcp + 16, csum_fold(pseudo_sum(ip, f->v6, tcp_len)));
      struct iovec iov[MAX_BATCH + 1];
      int n = 0;
      iov[n].iov_base = head;
      iov[n++].iov_len = sizeof *vh + hlen;
      for (int i = g->first; i >= 0; i = segs[i].next) {
        iov[n].iov_base = (void*)(segs[i].pkt + segs[i].iph + segs[i].tcph);
        iov[n++].iov_len = segs[i].payload;
      }
      r = writev_retry(fd, iov, n);
    }
    calls++;
    int32_t status = r >= 0 ? (g->count > 1 ? 1 : 0) : -errno;
    for (int i = g->first; i >= 0; i = segs[i].next) desc[i * DESC_WORDS + 2] = status;
  }
  napi_value result;
  CHECK(napi_create_int32(env, calls, &result));
  return result;
}
