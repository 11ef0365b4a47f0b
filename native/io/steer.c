/*
 * Kernel steering of the NAT-T port's datagrams to their owner thread
 * (Linux): every data-plane worker and the control plane each own one UDP
 * socket on the same address and port, in one SO_REUSEPORT group, and a
 * classic BPF program attached to the group (SO_ATTACH_REUSEPORT_CBPF) picks
 * the socket of each datagram: ESP by the worker index its SPI carries, IKE
 * and keepalives to the control plane's. The program is built in TypeScript
 * from the one SPI layout (io/esp-steering.ts); here it is only attached.
 *
 *   udpOpenReusePort(address, port, bufferBytes) -> { fd, port }
 *       udpOpen's socket with SO_REUSEPORT set before bind: the sockets of
 *       one group join it in the order they are bound, and that order is
 *       the index the program returns (0 the first).
 *   reuseportAttach(fd, program) -> undefined
 *       attach the classic BPF program (Uint32Array, two words per
 *       instruction: code | jt << 16 | jf << 24, then k) to the group of
 *       fd; throws with the errno (EINVAL: a program the kernel refuses).
 *
 * For UDP the kernel runs the program with the packet's data at the UDP
 * payload; an index past the group's sockets falls back to the hash, so the
 * program itself sends whatever it cannot place to index 0.
 *
 * Threads: runs on the calling JavaScript thread; after the attach the
 * kernel does the steering, for whichever thread reads each socket.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <sys/socket.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

/* The kernel's limit on classic BPF programs (BPF_MAXINSNS). */
#define MAX_INSNS 4096

napi_value udp_open_reuseport(napi_env env, napi_callback_info info) {
  return udp_open_with(env, info, 1);
}

napi_value reuseport_attach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  uint32_t* words;
  size_t count;
  if (argc < 2 || get_int(env, argv[0], &fd) < 0 || get_uint32s(env, argv[1], &words, &count) < 0 || count == 0 ||
      count % 2 != 0 || count / 2 > MAX_INSNS) {
    napi_throw_type_error(env, NULL, "reuseportAttach: (fd, Uint32Array of 1..4096 instructions, two words each)");
    return NULL;
  }
  size_t n = count / 2;
  struct sock_filter* insns = (struct sock_filter*)calloc(n, sizeof *insns);
  if (!insns) return throw_errno(env, "reuseportAttach", ENOMEM);
  for (size_t i = 0; i < n; i++) {
    insns[i].code = (uint16_t)(words[2 * i] & 0xffff);
    insns[i].jt = (uint8_t)((words[2 * i] >> 16) & 0xff);
    insns[i].jf = (uint8_t)(words[2 * i] >> 24);
    insns[i].k = words[2 * i + 1];
  }
  struct sock_fprog prog = {.len = (unsigned short)n, .filter = insns};
  int r = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog);
  int err = errno;
  free(insns);
  if (r < 0) return throw_errno(env, "SO_ATTACH_REUSEPORT_CBPF", err);
  return NULL;
}
