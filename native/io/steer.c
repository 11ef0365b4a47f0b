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

napi_value udp_open_reuseport(napi_env env, napi_callback_info info) {
  return udp_open_with(env, info, 1);
}

napi_value reuseport_attach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  struct sock_fprog prog;
  if (argc < 2 || get_int(env, argv[0], &fd) < 0 || cbpf_from_words(env, argv[1], &prog) < 0) {
    napi_throw_type_error(env, NULL, "reuseportAttach: (fd, Uint32Array of 1..4096 instructions, two words each)");
    return NULL;
  }
  int r = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog);
  int err = errno;
  free(prog.filter);
  if (r < 0) return throw_errno(env, "SO_ATTACH_REUSEPORT_CBPF", err);
  return NULL;
}
