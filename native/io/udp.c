/*
 * UDP and raw IP sockets with batched I/O (Linux): one system call moves a
 * whole batch of datagrams, recvmmsg(2) in and sendmmsg(2) out, where Node's
 * dgram makes one call (and allocates) per datagram.
 *
 *   udpOpen(address, port, bufferBytes) -> { fd, port }
 *       a non-blocking socket bound to address:port (port 0: any; the bound
 *       port is returned); receive and send buffers of bufferBytes, forced
 *       past net.core.[rw]mem_max when privileged.
 *   rawOpen(protocol, bufferBytes[, family]) -> fd
 *       a non-blocking raw socket for one IP protocol (ESP: 50): it
 *       receives every datagram of that protocol to this host; the kernel
 *       writes the header of what it sends. family 4 (the default): IPv4,
 *       IP header included on receive. family 6: IPv6, which hands over the
 *       payload only (RFC 3542 §3), so IPV6_RECVPKTINFO is set for the
 *       destination address (RFC 3542 §6).
 *   udpRecv(fd, buffer, slotSize, desc[, dest]) -> datagrams received (0:
 *       none waiting), or -errno. Datagram i is at buffer[i * slotSize];
 *       desc holds DESC_WORDS int32 per datagram (below); dest, if given,
 *       DEST_WORDS int32 per datagram: its IPv6 destination address from
 *       IPV6_PKTINFO (all zero without one).
 *   udpSend(fd, data, desc, count[, outer]) -> datagrams sent. Datagram i is
 *       data[desc offset .. + length] to desc's address; a datagram the
 *       kernel refuses gets its errno in desc word 7 and the rest are still
 *       sent; EAGAIN (the send buffer is full) stops the batch. outer, if
 *       given, one int32 per datagram (dataplane/outer-header.ts): bits
 *       0..7 the outer TOS / Traffic Class, sent as an IP_TOS / IPV6_TCLASS
 *       cmsg when bit 8 is set; bit 9 DF set, bit 10 DF clear: IPv6 as an
 *       IPV6_DONTFRAG cmsg; IPv4 has no per-datagram DF, so with bit 11 (the
 *       caller alone sends on this socket) the batch is cut where DF changes
 *       and IP_MTU_DISCOVER switched between the runs (DONT clears DF; DF set
 *       restores WANT, the default, unless the socket is at DO already).
 *
 * desc, 8 int32 words per datagram:
 *   recv: 0 length, 1 truncated (1: longer than slotSize), 2 family << 16 | port,
 *         3..6 source address (4 or 16 bytes, network order), 7 the outer TOS
 *         / Traffic Class | 0x100 when the kernel gave it (IP_RECVTOS and
 *         IPV6_RECVTCLASS are set on every socket opened here), else 0
 *   send: 0 offset, 1 length, 2 family << 16 | port, 3..6 destination address,
 *         7 status written back (0 sent, errno refused, EAGAIN not tried)
 * family is 4 or 6. udpRecv and udpSend work on raw sockets too (port 0).
 *
 * UDP segmentation offload (UDP_SEGMENT, Linux 4.18): udpSend hands a run of
 * consecutive ESP datagrams (first four bytes equal and not zero: one SPI,
 * RFC 3948 §2.2) to one destination, with one outer word, all of one length
 * but the last (which may be shorter), to the kernel as one message; the
 * stack carries it as one packet down to the device (or, on a veth, up to the
 * receiving socket) and cuts it there into the same datagrams. One SPI per
 * run keeps a receiver's SO_REUSEPORT steering right (it picks the socket by
 * the first segment's SPI). A run the kernel refuses (a route through xfrm,
 * a device without checksum offload: EIO; a datagram over the path MTU:
 * EINVAL or EMSGSIZE) is sent datagram by datagram as before, and the socket is not
 * offered such runs again (EIO: none; otherwise none of datagrams that long);
 * a run refused otherwise (ENETUNREACH, EPERM: its datagrams share their
 * destination) gives each of its datagrams that errno. udpGsoStats() -> [runs sent, datagrams in them,
 * runs sent again one by one], since the process started.
 */
#define _GNU_SOURCE
#include "io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define DESC_WORDS 8
#define DEST_WORDS 4
#define MAX_BATCH 64

typedef union {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} sockaddr_any;

static void enable_recv_tos(int fd, int family) {
  int on = 1;
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &on, sizeof on);
  else setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &on, sizeof on);
}

static void set_buffer(int fd, int force, int plain, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof bytes) < 0) setsockopt(fd, SOL_SOCKET, plain, &bytes, sizeof bytes);
}

napi_value udp_open(napi_env env, napi_callback_info info) {
  return udp_open_with(env, info, 0);
}

napi_value udp_open_with(napi_env env, napi_callback_info info, int reusePort) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char address[INET6_ADDRSTRLEN + 1];
  int32_t port = -1, bytes = 0;
  if (argc < 3 || get_string(env, argv[0], address, sizeof address) <= 0 || get_int(env, argv[1], &port) < 0 ||
      port < 0 || port > 65535 || get_int(env, argv[2], &bytes) < 0) {
    napi_throw_type_error(env, NULL, "udpOpen: (address, port 0..65535, bufferBytes)");
    return NULL;
  }
  sockaddr_any sa;
  socklen_t len;
  memset(&sa, 0, sizeof sa);
  if (inet_pton(AF_INET, address, &sa.in4.sin_addr) == 1) {
    sa.in4.sin_family = AF_INET;
    sa.in4.sin_port = htons((uint16_t)port);
    len = sizeof sa.in4;
  } else if (inet_pton(AF_INET6, address, &sa.in6.sin6_addr) == 1) {
    sa.in6.sin6_family = AF_INET6;
    sa.in6.sin6_port = htons((uint16_t)port);
    len = sizeof sa.in6;
  } else {
    napi_throw_type_error(env, NULL, "udpOpen: address is not an IPv4 or IPv6 address");
    return NULL;
  }
  int fd = socket(sa.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (sa.sa.sa_family == AF_INET6) {
    int on = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  }
  /* The outer TOS / Traffic Class of every datagram, for RFC 6040 decapsulation (udpRecv desc word 7). */
  enable_recv_tos(fd, sa.sa.sa_family);
  /* One of a steered group (steer.c): every member sets it before bind. */
  if (reusePort) {
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, "SO_REUSEPORT", err);
    }
  }
  if (bind(fd, &sa.sa, len) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err);
  }
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes);
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes);
  if (getsockname(fd, &sa.sa, &len) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "getsockname", err);
  }
  uint16_t bound = ntohs(sa.sa.sa_family == AF_INET ? sa.in4.sin_port : sa.in6.sin6_port);
  napi_value result, fdValue, portValue;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &fdValue));
  CHECK(napi_create_int32(env, bound, &portValue));
  CHECK(napi_set_named_property(env, result, "fd", fdValue));
  CHECK(napi_set_named_property(env, result, "port", portValue));
  return result;
}

napi_value raw_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t protocol = -1, bytes = 0, family = 4;
  if (argc < 2 || get_int(env, argv[0], &protocol) < 0 || protocol < 1 || protocol > 254 || get_int(env, argv[1], &bytes) < 0 ||
      (argc > 2 && (get_int(env, argv[2], &family) < 0 || (family != 4 && family != 6)))) {
    napi_throw_type_error(env, NULL, "rawOpen: (protocol 1..254, bufferBytes, family 4 or 6)");
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return throw_errno(env, "socket (raw)", errno);
  int on = 1;
  if (family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt IPV6_RECVPKTINFO", err);
  }
  if (family == 6) enable_recv_tos(fd, AF_INET6);
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes);
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes);
  napi_value result;
  CHECK(napi_create_int32(env, fd, &result));
  return result;
}

napi_value udp_recv(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, slot;
  uint8_t* buffer;
  size_t length, words, destWords = 0;
  int32_t *desc, *dest = NULL;
  if (argc < 4 || get_int(env, argv[0], &fd) < 0 || get_bytes(env, argv[1], &buffer, &length) < 0 ||
      get_int(env, argv[2], &slot) < 0 || slot <= 0 || get_int32s(env, argv[3], &desc, &words) < 0 ||
      (argc > 4 && get_int32s(env, argv[4], &dest, &destWords) < 0)) {
    napi_throw_type_error(env, NULL, "udpRecv: (fd, Uint8Array, slotSize, Int32Array[, Int32Array dest])");
    return NULL;
  }
  size_t max = length / (size_t)slot;
  if (max > words / DESC_WORDS) max = words / DESC_WORDS;
  if (dest != NULL && max > destWords / DEST_WORDS) max = destWords / DEST_WORDS;
  if (max > MAX_BATCH) max = MAX_BATCH;
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  sockaddr_any from[MAX_BATCH];
  /* Room for each datagram's IPV6_PKTINFO (with dest) and its TOS / Traffic Class. */
  union {
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control[MAX_BATCH];
  memset(msgs, 0, sizeof(struct mmsghdr) * max);
  for (size_t i = 0; i < max; i++) {
    iov[i].iov_base = buffer + i * (size_t)slot;
    iov[i].iov_len = (size_t)slot;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_control = control[i].buf;
    msgs[i].msg_hdr.msg_controllen = sizeof control[i].buf;
  }
  int n = max == 0 ? 0 : -1;
  if (max > 0) {
    do n = recvmmsg(fd, msgs, (unsigned)max, MSG_DONTWAIT, NULL); while (n < 0 && errno == EINTR);
  }
  if (n < 0) n = (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    int32_t* d = desc + (size_t)i * DESC_WORDS;
    memset(d, 0, DESC_WORDS * sizeof *d);
    d[0] = (int32_t)(msgs[i].msg_len > (unsigned)slot ? (unsigned)slot : msgs[i].msg_len);
    d[1] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
    if (from[i].sa.sa_family == AF_INET) {
      d[2] = (4 << 16) | ntohs(from[i].in4.sin_port);
      memcpy(&d[3], &from[i].in4.sin_addr, 4);
    } else {
      d[2] = (6 << 16) | ntohs(from[i].in6.sin6_port);
      memcpy(&d[3], &from[i].in6.sin6_addr, 16);
    }
    int32_t* t = dest != NULL ? dest + (size_t)i * DEST_WORDS : NULL;
    if (t != NULL) memset(t, 0, DEST_WORDS * sizeof *t);
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (t != NULL && c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
        struct in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        memcpy(t, &pi.ipi6_addr, 16);
      } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS && c->cmsg_len >= CMSG_LEN(1)) {
        d[7] = 0x100 | *(uint8_t*)CMSG_DATA(c); /* IPv4 hands the TOS over as one octet */
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int tclass;
        memcpy(&tclass, CMSG_DATA(c), sizeof tclass);
        d[7] = 0x100 | (tclass & 0xff);
      }
    }
  }
  napi_value result;
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

/* udpSend's outer word (dataplane/outer-header.ts). */
#define OUTER_TOS_SET (1 << 8)
#define OUTER_DF_SET (1 << 9)
#define OUTER_DF_CLEAR (1 << 10)
#define OUTER_DF_SOCKOPT (1 << 11)

/* The IPv4 DF a datagram wants of the socket: 1 set, 0 clear, -1 leave as it is. */
static int wants_df4(const int32_t* outer, int i, uint32_t family) {
  if (outer == NULL || family != 4 || !(outer[i] & OUTER_DF_SOCKOPT)) return -1;
  return (outer[i] & OUTER_DF_SET) ? 1 : (outer[i] & OUTER_DF_CLEAR) ? 0 : -1;
}

/* Switch IPv4 DF on a socket this thread alone sends on; *mode caches IP_MTU_DISCOVER (-1: not read yet). */
static void set_df4(int fd, int df, int* mode) {
  if (*mode < 0) {
    socklen_t len = sizeof *mode;
    if (getsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, mode, &len) < 0) *mode = IP_PMTUDISC_WANT;
  }
  int want = df ? (*mode == IP_PMTUDISC_DONT ? IP_PMTUDISC_WANT : *mode) : IP_PMTUDISC_DONT;
  if (want != *mode && setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &want, sizeof want) == 0) *mode = want;
}

/* Most datagrams in one UDP_SEGMENT message (the kernel's UDP_MAX_SEGMENTS is 64 before Linux 6.9), and most bytes. */
#define GSO_MAX_SEGMENTS 64
#define GSO_MAX_BYTES 65000

static uint64_t gso_runs, gso_datagrams, gso_fallbacks;
/*
 * Sockets that refused a run, per thread (each worker sends on its own
 * sockets): with EIO (a route through xfrm, a device without checksum
 * offload) every run, with EINVAL or EMSGSIZE (a segment over the path MTU) runs of
 * datagrams at least that long; those go one by one without a try.
 */
#define GSO_OFF_SLOTS 8
static __thread struct {
  int fd;
  uint32_t from;
} gso_off[GSO_OFF_SLOTS] = {{-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}};
static __thread int gso_off_next;

/* The shortest datagram length `fd` refuses runs of (UINT32_MAX: none refused). */
static uint32_t gso_refused_from(int fd) {
  for (int k = 0; k < GSO_OFF_SLOTS; k++)
    if (gso_off[k].fd == fd) return gso_off[k].from;
  return UINT32_MAX;
}

static void gso_refuse(int fd, uint32_t from) {
  for (int k = 0; k < GSO_OFF_SLOTS; k++)
    if (gso_off[k].fd == fd) {
      if (from < gso_off[k].from) gso_off[k].from = from;
      return;
    }
  gso_off[gso_off_next].fd = fd;
  gso_off[gso_off_next].from = from;
  gso_off_next = (gso_off_next + 1) % GSO_OFF_SLOTS;
}

/* Whether datagram j may follow datagram i (the run's first) in one UDP_SEGMENT message. */
static int gso_follows(const int32_t* desc, const uint8_t* data, const int32_t* outer, int i, int j) {
  const int32_t* a = desc + (size_t)i * DESC_WORDS;
  const int32_t* b = desc + (size_t)j * DESC_WORDS;
  /* Shorter than an ESP header (SPI, sequence number): not ESP, and its SPI must not be read past its end. */
  if (b[1] < 8 || b[1] > a[1] || memcmp(&a[2], &b[2], 5 * sizeof(int32_t)) != 0) return 0;
  if (outer != NULL && outer[i] != outer[j]) return 0;
  return memcmp(data + (uint32_t)a[0], data + (uint32_t)b[0], 4) == 0;
}

/* napi: udpGsoStats() -> [runs, datagrams in them, runs sent again one by one]. */
napi_value udp_gso_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, v;
  uint64_t values[3] = {__atomic_load_n(&gso_runs, __ATOMIC_RELAXED), __atomic_load_n(&gso_datagrams, __ATOMIC_RELAXED),
                        __atomic_load_n(&gso_fallbacks, __ATOMIC_RELAXED)};
  CHECK(napi_create_array_with_length(env, 3, &result));
  for (uint32_t k = 0; k < 3; k++) {
    CHECK(napi_create_double(env, (double)values[k], &v));
    CHECK(napi_set_element(env, result, k, v));
  }
  return result;
}

/*
 * Group datagrams [from, count) into messages gm[0..n) (returned n): each a
 * datagram, or a run of them (see the file comment) as one message with a
 * UDP_SEGMENT cmsg after the datagram's own, written into the control
 * buffers at `control` (one of `control_size` bytes a message). first[k] is
 * message k's first datagram; first[n] = count.
 */
static int group_runs(int fd, const struct mmsghdr* msgs, struct iovec* iov, const uint8_t* data, const int32_t* desc, const int32_t* outer,
                      int from, int count, struct mmsghdr* gm, int* first, char* control, size_t control_size) {
  uint32_t gso_from = gso_refused_from(fd);
  int n = 0;
  for (int i = from; i < count;) {
    const int32_t* d = desc + (size_t)i * DESC_WORDS;
    int j = i + 1;
    size_t bytes = (uint32_t)d[1];
    /* UDP only (a raw socket's datagrams have port 0), and ESP only (a run needs an SPI). */
    if ((uint32_t)d[1] < gso_from && (d[2] & 0xffff) != 0 && d[1] >= 8 && memcmp(data + (uint32_t)d[0], "\0\0\0\0", 4) != 0) {
      while (j < count && j - i < GSO_MAX_SEGMENTS && bytes + (uint32_t)desc[(size_t)j * DESC_WORDS + 1] <= GSO_MAX_BYTES &&
             gso_follows(desc, data, outer, i, j)) {
        bytes += (uint32_t)desc[(size_t)j * DESC_WORDS + 1];
        /* Only the last may be shorter. */
        if (desc[(size_t)j++ * DESC_WORDS + 1] < d[1]) break;
      }
    }
    gm[n] = msgs[i];
    if (j - i > 1) {
      char* buf = control + (size_t)n * control_size;
      size_t used = msgs[i].msg_hdr.msg_control ? msgs[i].msg_hdr.msg_controllen : 0;
      memset(buf, 0, control_size);
      if (used > 0) memcpy(buf, msgs[i].msg_hdr.msg_control, used);
      struct cmsghdr* c = (struct cmsghdr*)(buf + used);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t size = (uint16_t)d[1];
      memcpy(CMSG_DATA(c), &size, sizeof size);
      gm[n].msg_hdr.msg_iov = &iov[i];
      gm[n].msg_hdr.msg_iovlen = (size_t)(j - i);
      gm[n].msg_hdr.msg_control = buf;
      gm[n].msg_hdr.msg_controllen = used + CMSG_SPACE(sizeof(uint16_t));
    }
    first[n++] = i;
    i = j;
  }
  first[n] = count;
  return n;
}

napi_value udp_send(napi_env env, napi_callback_info info) {
  int32_t fd, count;
  uint8_t* data;
  size_t length;
  int32_t* desc;
  if (batch_args(env, info, DESC_WORDS, MAX_BATCH, &fd, &data, &length, &desc, &count) < 0) {
    napi_throw_type_error(env, NULL, "udpSend: (fd, Uint8Array, Int32Array, count <= 64[, Int32Array outer])");
    return NULL;
  }
  size_t argc = 5, outerWords = 0;
  napi_value argv[5];
  int32_t* outer = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc > 4) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[4], &t));
    if (t != napi_undefined && (get_int32s(env, argv[4], &outer, &outerWords) < 0 || outerWords < (size_t)count)) {
      napi_throw_type_error(env, NULL, "udpSend: outer must be an Int32Array with a word per datagram");
      return NULL;
    }
  }
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  sockaddr_any to[MAX_BATCH];
  /* With outer: each datagram's TOS / Traffic Class and IPV6_DONTFRAG. */
  union {
    char buf[2 * CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control[MAX_BATCH];
  memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)count);
  for (int i = 0; i < count; i++) {
    int32_t* d = desc + (size_t)i * DESC_WORDS;
    uint32_t offset = (uint32_t)d[0], len = (uint32_t)d[1], family = (uint32_t)d[2] >> 16;
    if ((uint64_t)offset + len > length || (family != 4 && family != 6)) {
      napi_throw_range_error(env, NULL, "udpSend: a datagram lies outside the data, or its family is not 4 or 6");
      return NULL;
    }
    d[7] = 0;
    iov[i].iov_base = data + offset;
    iov[i].iov_len = len;
    memset(&to[i], 0, sizeof to[i]);
    if (family == 4) {
      to[i].in4.sin_family = AF_INET;
      to[i].in4.sin_port = htons((uint16_t)(d[2] & 0xffff));
      memcpy(&to[i].in4.sin_addr, &d[3], 4);
      msgs[i].msg_hdr.msg_namelen = sizeof to[i].in4;
    } else {
      to[i].in6.sin6_family = AF_INET6;
      to[i].in6.sin6_port = htons((uint16_t)(d[2] & 0xffff));
      memcpy(&to[i].in6.sin6_addr, &d[3], 16);
      msgs[i].msg_hdr.msg_namelen = sizeof to[i].in6;
    }
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (outer != NULL) {
      int32_t o = outer[i];
      size_t used = 0;
      memset(control[i].buf, 0, sizeof control[i].buf);
      msgs[i].msg_hdr.msg_control = control[i].buf;
      msgs[i].msg_hdr.msg_controllen = sizeof control[i].buf;
      struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
      if (o & OUTER_TOS_SET) {
        int tos = o & 0xff;
        c->cmsg_level = family == 4 ? IPPROTO_IP : IPPROTO_IPV6;
        c->cmsg_type = family == 4 ? IP_TOS : IPV6_TCLASS;
        c->cmsg_len = CMSG_LEN(sizeof tos);
        memcpy(CMSG_DATA(c), &tos, sizeof tos);
        used += CMSG_SPACE(sizeof tos);
        c = CMSG_NXTHDR(&msgs[i].msg_hdr, c);
      }
      if (family == 6 && (o & (OUTER_DF_SET | OUTER_DF_CLEAR)) && c != NULL) {
        int dontfrag = (o & OUTER_DF_SET) ? 1 : 0;
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_DONTFRAG;
        c->cmsg_len = CMSG_LEN(sizeof dontfrag);
        memcpy(CMSG_DATA(c), &dontfrag, sizeof dontfrag);
        used += CMSG_SPACE(sizeof dontfrag);
      }
      msgs[i].msg_hdr.msg_controllen = used;
      if (used == 0) msgs[i].msg_hdr.msg_control = NULL;
    }
  }
  /* Messages: a datagram each, or a run of them as one UDP_SEGMENT message (see the file comment). */
  struct mmsghdr gm[MAX_BATCH];
  int first[MAX_BATCH + 1];
  union {
    char buf[3 * CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } gcontrol[MAX_BATCH];
  int ng = group_runs(fd, msgs, iov, data, desc, outer, 0, count, gm, first, gcontrol[0].buf, sizeof gcontrol[0]);
  int sent = 0, g = 0, pmtudisc = -1;
  while (g < ng) {
    /* IPv4 DF by socket option: the run up to the next change of DF (a message's datagrams share their outer word). */
    int end = ng, df = wants_df4(outer, first[g], (uint32_t)desc[(size_t)first[g] * DESC_WORDS + 2] >> 16);
    if (df >= 0) {
      set_df4(fd, df, &pmtudisc);
      for (end = g + 1; end < ng && wants_df4(outer, first[end], (uint32_t)desc[(size_t)first[end] * DESC_WORDS + 2] >> 16) == df; end++) {}
    }
    int r = sendmmsg(fd, gm + g, (unsigned)(end - g), MSG_DONTWAIT);
    if (r > 0) {
      for (int k = g; k < g + r; k++) {
        int n = first[k + 1] - first[k];
        sent += n;
        if (n > 1) {
          __atomic_fetch_add(&gso_runs, 1, __ATOMIC_RELAXED);
          __atomic_fetch_add(&gso_datagrams, (uint64_t)n, __ATOMIC_RELAXED);
        }
      }
      g += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    int err = r < 0 ? errno : EIO;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      for (int i = first[g]; i < count; i++) desc[(size_t)i * DESC_WORDS + 7] = EAGAIN;
      break;
    }
    if (first[g + 1] - first[g] > 1 && (err == EIO || err == EINVAL || err == EMSGSIZE)) {
      /* The route refused the run as a whole (see the file comment): from it on, the batch is grouped again
       * without such runs, and its datagrams get their own verdicts. */
      __atomic_fetch_add(&gso_fallbacks, 1, __ATOMIC_RELAXED);
      gso_refuse(fd, err == EIO ? 0 : (uint32_t)desc[(size_t)first[g] * DESC_WORDS + 1]);
      ng = g + group_runs(fd, msgs, iov, data, desc, outer, first[g], count, gm + g, first + g, gcontrol[g].buf, sizeof gcontrol[0]);
      continue;
    }
    /* Message g was refused (e.g. EMSGSIZE, ENETUNREACH: a run's datagrams share destination and size): note it
     * on each of its datagrams, go on with the rest. */
    for (int i = first[g]; i < first[g + 1]; i++) desc[(size_t)i * DESC_WORDS + 7] = err;
    g++;
  }
  napi_value result;
  CHECK(napi_create_int32(env, sent, &result));
  return result;
}
