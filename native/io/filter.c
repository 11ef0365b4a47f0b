/*
 * Classic BPF on raw ESP input (Linux): the candidates for reading IP
 * protocol 50 on the thread that owns each SA (io/esp-raw-filter.ts builds
 * the programs from the one SPI layout; bench/raw-esp-input.ts measures them).
 *
 *   socketAttachFilter(fd, program) -> undefined
 *       SO_ATTACH_FILTER: the socket keeps only what the program accepts
 *       (a raw IPv4 socket runs it with the data at the IP header). The
 *       kernel still hands every raw socket of the protocol its own clone
 *       of each datagram; the filter drops the others' share before any
 *       thread wakes.
 *   rawBind(fd, address) -> undefined
 *       bind a raw IPv4 socket to a local address: it then gets only the
 *       datagrams to that address (another gateway on the host keeps its own).
 *   packetOpen(ifname, bufferBytes) -> fd
 *       an AF_PACKET SOCK_DGRAM socket for IPv4 (ETH_P_IP) bound to one
 *       interface, non-blocking: datagrams start at the IP header, read
 *       with udpRecv (its source words are not an IP address here).
 *   packetFanout(fd, group, program) -> undefined
 *       join PACKET_FANOUT group `group` (1..65535) in PACKET_FANOUT_CBPF
 *       mode and set its program (PACKET_FANOUT_DATA): the index it returns
 *       (modulo the members, in the order they joined) picks the member.
 *
 * program: a Uint32Array, two words per instruction (code | jt << 16 |
 * jf << 24, then k), as reuseportAttach (steer.c) takes it.
 *
 * Threads: runs on the calling JavaScript thread; after the attach the
 * kernel filters for whichever thread reads each socket.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The kernel's limit on classic BPF programs (BPF_MAXINSNS). */
#define MAX_INSNS 4096

int cbpf_from_words(napi_env env, napi_value v, struct sock_fprog* prog) {
  uint32_t* words;
  size_t count;
  if (get_uint32s(env, v, &words, &count) < 0 || count == 0 || count % 2 != 0 || count / 2 > MAX_INSNS) return -1;
  size_t n = count / 2;
  struct sock_filter* insns = (struct sock_filter*)calloc(n, sizeof *insns);
  if (!insns) return -1;
  for (size_t i = 0; i < n; i++) {
    insns[i].code = (uint16_t)(words[2 * i] & 0xffff);
    insns[i].jt = (uint8_t)((words[2 * i] >> 16) & 0xff);
    insns[i].jf = (uint8_t)(words[2 * i] >> 24);
    insns[i].k = words[2 * i + 1];
  }
  prog->len = (unsigned short)n;
  prog->filter = insns;
  return 0;
}

/* (fd, program) arguments; *prog to be freed by the caller. */
static int fd_and_program(napi_env env, napi_callback_info info, int32_t* fd, struct sock_fprog* prog) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || get_int(env, argv[0], fd) < 0) return -1;
  return cbpf_from_words(env, argv[1], prog);
}

napi_value socket_attach_filter(napi_env env, napi_callback_info info) {
  int32_t fd;
  struct sock_fprog prog;
  if (fd_and_program(env, info, &fd, &prog) < 0) {
    napi_throw_type_error(env, NULL, "socketAttachFilter: (fd, Uint32Array of 1..4096 instructions, two words each)");
    return NULL;
  }
  int r = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
  int err = errno;
  free(prog.filter);
  if (r < 0) return throw_errno(env, "SO_ATTACH_FILTER", err);
  return NULL;
}

napi_value packet_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IF_NAMESIZE + 1];
  int32_t bytes = 0;
  if (argc < 2 || get_string(env, argv[0], name, sizeof name) <= 0 || get_int(env, argv[1], &bytes) < 0) {
    napi_throw_type_error(env, NULL, "packetOpen: (ifname, bufferBytes)");
    return NULL;
  }
  unsigned ifindex = if_nametoindex(name);
  if (ifindex == 0) return throw_errno(env, "if_nametoindex", errno);
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IP));
  if (fd < 0) return throw_errno(env, "socket (packet)", errno);
  struct sockaddr_ll ll;
  memset(&ll, 0, sizeof ll);
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(ETH_P_IP);
  ll.sll_ifindex = (int)ifindex;
  if (bind(fd, (struct sockaddr*)&ll, sizeof ll) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind (packet)", err);
  }
  if (bytes > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  napi_value result;
  CHECK(napi_create_int32(env, fd, &result));
  return result;
}

napi_value packet_fanout(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, group;
  struct sock_fprog prog;
  if (argc < 3 || get_int(env, argv[0], &fd) < 0 || get_int(env, argv[1], &group) < 0 || group < 1 || group > 65535 ||
      cbpf_from_words(env, argv[2], &prog) < 0) {
    napi_throw_type_error(env, NULL, "packetFanout: (fd, group 1..65535, Uint32Array program)");
    return NULL;
  }
  int arg = group | (PACKET_FANOUT_CBPF << 16);
  int r = setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg);
  int err = errno;
  if (r == 0) {
    r = setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &prog, sizeof prog);
    err = errno;
  }
  free(prog.filter);
  if (r < 0) return throw_errno(env, "PACKET_FANOUT", err);
  return NULL;
}

/* rawBind(fd, address): a raw socket takes only datagrams to this local IPv4 address (0.0.0.0: any). */
napi_value raw_bind(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  char address[INET_ADDRSTRLEN + 1];
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (argc < 2 || get_int(env, argv[0], &fd) < 0 || get_string(env, argv[1], address, sizeof address) <= 0 ||
      inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
    napi_throw_type_error(env, NULL, "rawBind: (fd, IPv4 address)");
    return NULL;
  }
  if (bind(fd, (struct sockaddr*)&sa, sizeof sa) < 0) return throw_errno(env, "bind (raw)", errno);
  return NULL;
}
