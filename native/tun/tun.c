/*
 * ikeclone's TUN device access (Linux), a Node-API addon with no dependency
 * but Node's headers: what JavaScript cannot do with fs alone.
 *
 *   open(name, multiQueue)   -> { fd, name }  open /dev/net/tun, TUNSETIFF with
 *                               IFF_TUN | IFF_NO_PI (| IFF_MULTI_QUEUE), O_NONBLOCK
 *   configure(name, mtu)     -> set the MTU and bring the link up (SIOCSIFMTU, SIOCSIFFLAGS)
 *   read(fd, buffer)         -> bytes of one packet, 0 when none is waiting (EAGAIN), -errno
 *   write(fd, buffer)        -> bytes written, -errno (EAGAIN: the queue is full)
 *   watch(fd, callback)      -> handle; callback() runs on the loop whenever fd is readable
 *   unwatch(handle)          stop watching (the handle closes asynchronously)
 *   close(fd)
 *
 * Threads: every function runs on the calling JavaScript thread; a watch
 * belongs to the event loop of the thread that created it. Nothing here
 * parses packets.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, NULL, "ikeclone_tun: Node-API call failed");    \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

static napi_value throw_errno(napi_env env, const char* what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, text, error;
  char codebuf[32];
  snprintf(codebuf, sizeof codebuf, "E%d", err);
  napi_create_string_utf8(env, codebuf, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_value errnoValue;
  napi_create_int32(env, err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_throw(env, error);
  return NULL;
}

static int get_string(napi_env env, napi_value v, char* out, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, out, size, &len) != napi_ok) return -1;
  return (int)len;
}

static int get_int(napi_env env, napi_value v, int32_t* out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

/* A Uint8Array (or Buffer) argument: its bytes. */
static int get_bytes(napi_env env, napi_value v, uint8_t** data, size_t* length) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return -1;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  void* p;
  if (napi_get_typedarray_info(env, v, &type, length, &p, &ab, &offset) != napi_ok) return -1;
  if (type != napi_uint8_array) return -1;
  *data = (uint8_t*)p;
  return 0;
}

static napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1];
  memset(name, 0, sizeof name);
  int len = argc >= 1 ? get_string(env, argv[0], name, sizeof name) : -1;
  if (len < 0 || len >= IFNAMSIZ) {
    napi_throw_type_error(env, NULL, "open: name must be a string of at most 15 bytes");
    return NULL;
  }
  bool multi = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &multi);

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (multi ? IFF_MULTI_QUEUE : 0);
  memcpy(ifr.ifr_name, name, (size_t)len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "TUNSETIFF", err);
  }
  napi_value result, fdValue, nameValue;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &fdValue));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &nameValue));
  CHECK(napi_set_named_property(env, result, "fd", fdValue));
  CHECK(napi_set_named_property(env, result, "name", nameValue));
  return result;
}

static napi_value tun_configure(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1];
  memset(name, 0, sizeof name);
  int len = argc >= 1 ? get_string(env, argv[0], name, sizeof name) : -1;
  int32_t mtu = 0;
  if (len <= 0 || len >= IFNAMSIZ || argc < 2 || get_int(env, argv[1], &mtu) < 0 || mtu < 68 || mtu > 65535) {
    napi_throw_type_error(env, NULL, "configure: (name, mtu 68..65535)");
    return NULL;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "socket", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, (size_t)len);
  ifr.ifr_mtu = mtu;
  if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
    int err = errno;
    close(s);
    return throw_errno(env, "SIOCSIFMTU", err);
  }
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
    int err = errno;
    close(s);
    return throw_errno(env, "SIOCGIFFLAGS", err);
  }
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
    int err = errno;
    close(s);
    return throw_errno(env, "SIOCSIFFLAGS", err);
  }
  close(s);
  return NULL;
}

/* (fd, Uint8Array) arguments of read and write. */
static int fd_and_bytes(napi_env env, napi_callback_info info, int32_t* fd, uint8_t** data, size_t* length) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < 2 || get_int(env, argv[0], fd) < 0 || get_bytes(env, argv[1], data, length) < 0) return -1;
  return 0;
}

static napi_value tun_read(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint8_t* data;
  size_t length;
  if (fd_and_bytes(env, info, &fd, &data, &length) < 0) {
    napi_throw_type_error(env, NULL, "read: (fd, Uint8Array)");
    return NULL;
  }
  ssize_t n;
  do n = read(fd, data, length); while (n < 0 && errno == EINTR);
  napi_value result;
  int32_t value = n >= 0 ? (int32_t)n : (errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno);
  CHECK(napi_create_int32(env, value, &result));
  return result;
}

static napi_value tun_write(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint8_t* data;
  size_t length;
  if (fd_and_bytes(env, info, &fd, &data, &length) < 0) {
    napi_throw_type_error(env, NULL, "write: (fd, Uint8Array)");
    return NULL;
  }
  ssize_t n;
  do n = write(fd, data, length); while (n < 0 && errno == EINTR);
  napi_value result;
  CHECK(napi_create_int32(env, n >= 0 ? (int32_t)n : -errno, &result));
  return result;
}

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int stopped;
} watch_t;

static void on_closed(uv_handle_t* handle) {
  free(handle->data);
}

static void on_readable(uv_poll_t* handle, int status, int events) {
  watch_t* w = (watch_t*)handle->data;
  if (w->stopped) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, result, arg;
  napi_get_reference_value(env, w->callback, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, status, &arg);
  napi_status st = napi_make_callback(env, w->context, recv, cb, 1, &arg, &result);
  if (st == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
  napi_close_handle_scope(env, scope);
}

static void finalize_watch(napi_env env, void* data, void* hint) {
  /* The JavaScript handle is gone: nothing to do, unwatch() owns the teardown. */
}

static napi_value tun_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  napi_valuetype t;
  if (argc < 2 || get_int(env, argv[0], &fd) < 0 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "watch: (fd, callback)");
    return NULL;
  }
  uv_loop_t* loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  watch_t* w = (watch_t*)calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "watch", ENOMEM);
  w->env = env;
  napi_value resource_name;
  napi_create_string_utf8(env, "ikeclone:tun", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_async_init(env, NULL, resource_name, &w->context) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok) {
    free(w);
    napi_throw_error(env, NULL, "watch: Node-API call failed");
    return NULL;
  }
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r == 0) {
    w->poll.data = w;
    r = uv_poll_start(&w->poll, UV_READABLE, on_readable);
    if (r != 0) {
      uv_close((uv_handle_t*)&w->poll, on_closed);
      napi_delete_reference(env, w->callback);
      napi_async_destroy(env, w->context);
      return throw_errno(env, "uv_poll_start", -r);
    }
  } else {
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->context);
    free(w);
    return throw_errno(env, "uv_poll_init", -r);
  }
  napi_value handle;
  CHECK(napi_create_external(env, w, finalize_watch, NULL, &handle));
  return handle;
}

static napi_value tun_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void* p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "unwatch: (handle)");
    return NULL;
  }
  watch_t* w = (watch_t*)p;
  if (w->stopped) return NULL;
  w->stopped = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->context);
  uv_close((uv_handle_t*)&w->poll, on_closed);
  return NULL;
}

static napi_value tun_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || get_int(env, argv[0], &fd) < 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "close: (fd)");
    return NULL;
  }
  close(fd);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"open", NULL, tun_open, NULL, NULL, NULL, napi_default, NULL},
    {"configure", NULL, tun_configure, NULL, NULL, NULL, napi_default, NULL},
    {"read", NULL, tun_read, NULL, NULL, NULL, napi_default, NULL},
    {"write", NULL, tun_write, NULL, NULL, NULL, napi_default, NULL},
    {"watch", NULL, tun_watch, NULL, NULL, NULL, napi_default, NULL},
    {"unwatch", NULL, tun_unwatch, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, tun_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
