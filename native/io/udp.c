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
 *   udpSend(fd, data, desc, count) -> datagrams sent. Datagram i is
 *       data[desc offset .. + length] to desc's address; a datagram the
 *       kernel refuses gets its errno in desc word 7 and the rest are still
 *       sent; EAGAIN (the send buffer is full) stops the batch.
 *
 * desc, 8 int32 words per datagram:
 *   recv: 0 length, 1 truncated (1: longer than slotSize), 2 family << 16 | port,
 *         3..6 source address (4 or 16 bytes, network order), 7 unused
 *   send: 0 offset, 1 length, 2 family << 16 | port, 3..6 destination address,
 *         7 status written back (0 sent, errno refused, EAGAIN not tried)
 * family is 4 or 6. udpRecv and udpSend work on raw sockets too (port 0).
 */
#define _GNU_SOURCE
#include "io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DESC_WORDS 8
#define DEST_WORDS 4
#define MAX_BATCH 64

typedef union {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} sockaddr_any;

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
  /* With dest: room for each datagram's IPV6_PKTINFO. */
  union {
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
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
    if (dest != NULL) {
      msgs[i].msg_hdr.msg_control = control[i].buf;
      msgs[i].msg_hdr.msg_controllen = sizeof control[i].buf;
    }
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
    if (dest != NULL) {
      int32_t* t = dest + (size_t)i * DEST_WORDS;
      memset(t, 0, DEST_WORDS * sizeof *t);
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
          struct in6_pktinfo pi;
          memcpy(&pi, CMSG_DATA(c), sizeof pi);
          memcpy(t, &pi.ipi6_addr, 16);
        }
      }
    }
  }
  napi_value result;
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

napi_value udp_send(napi_env env, napi_callback_info info) {
  int32_t fd, count;
  uint8_t* data;
  size_t length;
  int32_t* desc;
  if (batch_args(env, info, DESC_WORDS, MAX_BATCH, &fd, &data, &length, &desc, &count) < 0) {
    napi_throw_type_error(env, NULL, "udpSend: (fd, Uint8Array, Int32Array, count <= 64)");
    return NULL;
  }
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  sockaddr_any to[MAX_BATCH];
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
  }
  int sent = 0, i = 0;
  while (i < count) {
    int r = sendmmsg(fd, msgs + i, (unsigned)(count - i), MSG_DONTWAIT);
    if (r > 0) {
      i += r;
      sent += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    int err = r < 0 ? errno : EIO;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      for (; i < count; i++) desc[(size_t)i * DESC_WORDS + 7] = EAGAIN;
      break;
    }
    /* Datagram i was refused (e.g. EMSGSIZE, ENETUNREACH): note it, go on with the rest. */
    desc[(size_t)i * DESC_WORDS + 7] = err;
    i++;
  }
  napi_value result;
  CHECK(napi_create_int32(env, sent, &result));
  return result;
}
