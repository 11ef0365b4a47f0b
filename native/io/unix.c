/*
 * AF_UNIX helpers Node lacks. Runs on the calling JavaScript thread.
 * - The service manager's notification socket (sd_notify(3), the NOTIFY_SOCKET
 *   protocol): one datagram of newline-separated assignments such as
 *   "READY=1" sent to an AF_UNIX SOCK_DGRAM socket; Node's dgram speaks only UDP.
 * - The credentials of a stream socket's peer (SO_PEERCRED), so the control
 *   socket can bound connections per client process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "io.h"

/* A string argument that must fit out whole (with its NUL): its length, or -1 (napi would truncate it silently). */
static int whole_string(napi_env env, napi_value v, char* out, size_t size) {
  size_t full = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &full) != napi_ok || full >= size) return -1;
  return get_string(env, v, out, size);
}

/* notifySend(path, message): path is a filesystem path or, with a leading '@', an
 * abstract socket name. Returns the bytes sent; throws with the errno. */
napi_value notify_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "notifySend(path, message)");
    return NULL;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  char path[sizeof sa.sun_path + 1];
  int plen = whole_string(env, argv[0], path, sizeof path);
  if (plen <= 0 || (size_t)plen > sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) {
    napi_throw_type_error(env, NULL, "notifySend: the socket is an absolute path or an @abstract name");
    return NULL;
  }
  memcpy(sa.sun_path, path, (size_t)plen);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  char message[4096];
  int mlen = whole_string(env, argv[1], message, sizeof message);
  if (mlen < 0) {
    napi_throw_type_error(env, NULL, "notifySend: the message is a string of at most 4095 octets");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "notifySend: socket", errno);
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)plen);
  ssize_t n = sendto(fd, message, (size_t)mlen, MSG_NOSIGNAL, (struct sockaddr*)&sa, alen);
  int err = errno;
  close(fd);
  if (n < 0) return throw_errno(env, "notifySend: sendto", err);
  napi_value out;
  CHECK(napi_create_int32(env, (int32_t)n, &out));
  return out;
}

/* peerCred(fd): the pid, uid and gid of the process at the other end of a connected AF_UNIX socket. */
napi_value peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || get_int(env, argv[0], &fd) != 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "peerCred(fd)");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "peerCred: getsockopt", errno);
  napi_value out, pid, uid, gid;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, (int32_t)cred.pid, &pid));
  CHECK(napi_create_uint32(env, (uint32_t)cred.uid, &uid));
  CHECK(napi_create_uint32(env, (uint32_t)cred.gid, &gid));
  CHECK(napi_set_named_property(env, out, "pid", pid));
  CHECK(napi_set_named_property(env, out, "uid", uid));
  CHECK(napi_set_named_property(env, out, "gid", gid));
  return out;
}
