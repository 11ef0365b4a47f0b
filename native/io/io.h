/*
 * Shared by the parts of ikeclone's native I/O addon (io.c, tun.c, gro.c, tso.c, udp.c, steer.c, filter.c, unix.c, poll.c):
 * argument helpers and the errors they throw. Every function of the addon
 * runs on the calling JavaScript thread; nothing here parses packets.
 */
#ifndef IKECLONE_IO_H
#define IKECLONE_IO_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, NULL, "ikeclone_io: Node-API call failed");     \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

/* Throw an Error "what: strerror(err)" with .code = "EADDRINUSE" (libuv's name) and .errno. */
napi_value throw_errno(napi_env env, const char* what, int err);
/* A string argument into out (NUL-terminated): its length, or -1. */
int get_string(napi_env env, napi_value v, char* out, size_t size);
int get_int(napi_env env, napi_value v, int32_t* out);
/* A Uint8Array (or Buffer) argument: its bytes. */
int get_bytes(napi_env env, napi_value v, uint8_t** data, size_t* length);
/* An Int32Array argument: its elements. */
int get_int32s(napi_env env, napi_value v, int32_t** data, size_t* length);
/* A Uint32Array argument: its elements. */
int get_uint32s(napi_env env, napi_value v, uint32_t** data, size_t* length);
/* (fd, Uint8Array data, Int32Array desc, count) arguments of a batch call: count <= max and
 * within desc at descWords per item. 0, or -1 when they are not. */
int batch_args(napi_env env, napi_callback_info info, size_t descWords, int32_t max, int32_t* fd, uint8_t** data,
               size_t* length, int32_t** desc, int32_t* count);
/* (fd, Uint8Array) arguments. */
int fd_and_bytes(napi_env env, napi_callback_info info, int32_t* fd, uint8_t** data, size_t* length);

napi_value tun_open(napi_env env, napi_callback_info info);
napi_value tun_configure(napi_env env, napi_callback_info info);
napi_value tun_read(napi_env env, napi_callback_info info);
napi_value tun_write(napi_env env, napi_callback_info info);
napi_value tun_write_batch(napi_env env, napi_callback_info info);
napi_value tun_read_segments(napi_env env, napi_callback_info info);

napi_value udp_open(napi_env env, napi_callback_info info);
/* udpOpen, with SO_REUSEPORT set before bind when reusePort (steer.c). */
napi_value udp_open_with(napi_env env, napi_callback_info info, int reusePort);
napi_value udp_open_reuseport(napi_env env, napi_callback_info info);
napi_value reuseport_attach(napi_env env, napi_callback_info info);
napi_value raw_open(napi_env env, napi_callback_info info);
napi_value udp_recv(napi_env env, napi_callback_info info);
napi_value udp_send(napi_env env, napi_callback_info info);
napi_value udp_gso_stats(napi_env env, napi_callback_info info);

/* A program argument (Uint32Array, two words per instruction) as a classic BPF program (filter.c);
 * prog->filter is to be freed. 0, or -1 when it is not one. */
struct sock_fprog;
int cbpf_from_words(napi_env env, napi_value v, struct sock_fprog* prog);
napi_value socket_attach_filter(napi_env env, napi_callback_info info);
napi_value raw_bind(napi_env env, napi_callback_info info);
napi_value packet_open(napi_env env, napi_callback_info info);
napi_value packet_fanout(napi_env env, napi_callback_info info);

napi_value poll_create(napi_env env, napi_callback_info info);
napi_value poll_add(napi_env env, napi_callback_info info);
napi_value poll_del(napi_env env, napi_callback_info info);
napi_value poll_wait(napi_env env, napi_callback_info info);
napi_value eventfd_open(napi_env env, napi_callback_info info);
napi_value eventfd_signal(napi_env env, napi_callback_info info);
napi_value eventfd_drain(napi_env env, napi_callback_info info);

napi_value notify_send(napi_env env, napi_callback_info info);
napi_value peer_cred(napi_env env, napi_callback_info info);

#endif
