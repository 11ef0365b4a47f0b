/*
 * IPv6 raw sockets for one IP protocol (ESP: 50), batched like udp.c.
 * An IPv6 raw socket hands over the payload only, never the IPv6 header
 * (RFC 3542 §3), so the destination address, which says whether the packet
 * is for one of our SAs' addresses, comes from IPV6_PKTINFO (RFC 3542 §6).
 *
 *   raw6Open(protocol, bufferBytes) -> fd
 *       a non-blocking AF_INET6 raw socket with IPV6_RECVPKTINFO set; it
 *       receives every datagram of that protocol to this host; the kernel
 *       writes the IPv6 header of what it sends (udpSend with family 6,
 *       port 0).
 *   raw6Recv(fd, buffer, slotSize, desc, dest) -> datagrams received (0:
 *       none waiting), or -errno. Datagram i is at buffer[i * slotSize];
 *       desc holds udp.c's 8 int32 words per datagram (length, truncated,
 *       6 << 16, source address in words 3..6); dest holds 4 int32 words
 *       per datagram: its destination address (all zero when the kernel
 *       gave no IPV6_PKTINFO).
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DESC_WORDS 8
#define DEST_WORDS 4
#define MAX_BATCH 64

static void set_buffer(int fd, int force, int plain, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof bytes) < 0) setsockopt(fd, SOL_SOCKET, plain, &bytes, sizeof bytes);
}

napi_value raw6_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t protocol = -1, bytes = 0;
  if (argc < 2 || get_int(env, argv[0], &protocol) < 0 || protocol < 1 || protocol > 254 || get_int(env, argv[1], &bytes) < 0) {
    napi_throw_type_error(env, NULL, "raw6Open: (protocol 1..254, bufferBytes)");
    return NULL;
  }
  int fd = socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return throw_errno(env, "socket (raw, IPv6)", errno);
  int on = 1;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) < 0) {
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

napi_value raw6_recv(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, slot;
  uint8_t* buffer;
  size_t length, words, destWords;
  int32_t *desc, *dest;
  if (argc < 5 || get_int(env, argv[0], &fd) < 0 || get_bytes(env, argv[1], &buffer, &length) < 0 ||
      get_int(env, argv[2], &slot) < 0 || slot <= 0 || get_int32s(env, argv[3], &desc, &words) < 0 ||
      get_int32s(env, argv[4], &dest, &destWords) < 0) {
    napi_throw_type_error(env, NULL, "raw6Recv: (fd, Uint8Array, slotSize, Int32Array desc, Int32Array dest)");
    return NULL;
  }
  size_t max = length / (size_t)slot;
  if (max > words / DESC_WORDS) max = words / DESC_WORDS;
  if (max > destWords / DEST_WORDS) max = destWords / DEST_WORDS;
  if (max > MAX_BATCH) max = MAX_BATCH;
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in6 from[MAX_BATCH];
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
    int32_t* t = dest + (size_t)i * DEST_WORDS;
    memset(d, 0, DESC_WORDS * sizeof *d);
    memset(t, 0, DEST_WORDS * sizeof *t);
    d[0] = (int32_t)(msgs[i].msg_len > (unsigned)slot ? (unsigned)slot : msgs[i].msg_len);
    d[1] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
    d[2] = 6 << 16;
    memcpy(&d[3], &from[i].sin6_addr, 16);
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
        struct in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        memcpy(t, &pi.ipi6_addr, 16);
      }
    }
  }
  napi_value result;
  CHECK(napi_create_int32(env, n, &result));
  return result;
}
