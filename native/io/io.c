/*
 * ikeclone's native I/O (Linux), a Node-API addon with no dependency but
 * Node's headers: what JavaScript cannot do with fs and dgram alone.
 *
 *   TUN devices (tun.c)     open, configure, read, write
 *   TUN offload (gro.c)     batched writes that coalesce TCP segments, reads
 *                           past a virtio_net_hdr
 *   sockets (udp.c)         UDP and raw open, recv (recvmmsg), send (sendmmsg,
 *                           ESP runs as UDP_SEGMENT messages)
 *   steering (steer.c)      SO_REUSEPORT groups with a classic BPF program
 *   filters (filter.c)      socket filters and PACKET_FANOUT for raw ESP input
 *   worker loop (poll.c)    epoll and eventfd: a worker blocks in the kernel
 *   here                    watch(fd, callback) -> handle: callback() runs on
 *                           the loop whenever fd is readable; unwatch(handle)
 *                           stops it (the handle closes asynchronously;
 *                           a second unwatch is a no-op); callback(status)
 *                           gets libuv's status, < 0 once when the poll
 *                           stopped on an error (POLLERR: UV_EBADF);
 *                           close(fd); dup(fd) (close-on-exec)
 *
 * Threads: every function runs on the calling JavaScript thread; a watch
 * belongs to the event loop of the thread that created it.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

napi_value throw_errno(napi_env env, const char* what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, text, error;
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_value errnoValue;
  napi_create_int32(env, err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_throw(env, error);
  return NULL;
}

int get_string(napi_env env, napi_value v, char* out, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, out, size, &len) != napi_ok) return -1;
  return (int)len;
}

int get_int(napi_env env, napi_value v, int32_t* out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void** data, size_t* length) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return -1;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset) != napi_ok) return -1;
  return type == want ? 0 : -1;
}

int get_bytes(napi_env env, napi_value v, uint8_t** data, size_t* length) {
  return typed_array(env, v, napi_uint8_array, (void**)data, length);
}

int get_int32s(napi_env env, napi_value v, int32_t** data, size_t* length) {
  return typed_array(env, v, napi_int32_array, (void**)data, length);
}

int get_uint32s(napi_env env, napi_value v, uint32_t** data, size_t* length) {
  return typed_array(env, v, napi_uint32_array, (void**)data, length);
}

int batch_args(napi_env env, napi_callback_info info, size_t descWords, int32_t max, int32_t* fd, uint8_t** data,
               size_t* length, int32_t** desc, int32_t* count) {
  size_t argc = 4, words;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) return -1;
  if (get_int(env, argv[0], fd) < 0 || get_bytes(env, argv[1], data, length) < 0 || get_int32s(env, argv[2], desc, &words) < 0 ||
      get_int(env, argv[3], count) < 0 || *count < 0 || *count > max || (size_t)*count > words / descWords)
    return -1;
  return 0;
}

int fd_and_bytes(napi_env env, napi_callback_info info, int32_t* fd, uint8_t** data, size_t* length) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < 2 || get_int(env, argv[0], fd) < 0 || get_bytes(env, argv[1], data, length) < 0) return -1;
  return 0;
}

/*
 * A watch has two owners, and is freed by whichever lets go last:
 *   libuv      until on_closed (the poll handle closed after unwatch())
 *   JavaScript until finalize_watch (the external handle was collected)
 * Freeing it in on_closed alone left the external pointing at freed memory:
 * a second unwatch() read it (and, once the memory was reused, could stop
 * another watch).
 */
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  int stopped;   /* unwatch() ran: later calls are no-ops */
  int closed;    /* libuv is done with the handle */
  int finalized; /* no JavaScript handle refers to it */
} watch_t;

static void on_closed(uv_handle_t* handle) {
  watch_t* w = (watch_t*)handle->data;
  w->closed = 1;
  if (w->finalized) free(w);
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
  /* The JavaScript handle is gone. unwatch() owns the teardown of the poll: a
   * watch never unwatched keeps running (its callback is referenced). */
  watch_t* w = (watch_t*)data;
  w->finalized = 1;
  if (w->closed) free(w);
}

static napi_value io_watch(napi_env env, napi_callback_info info) {
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
  napi_create_string_utf8(env, "ikeclone:io", NAPI_AUTO_LENGTH, &resource_name);
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
      w->finalized = 1; /* no external will be made: on_closed frees it */
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
  if (napi_create_external(env, w, finalize_watch, NULL, &handle) != napi_ok) {
    /* No JavaScript owner: tear down now, on_closed frees it. */
    w->stopped = 1;
    w->finalized = 1;
    uv_poll_stop(&w->poll);
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->context);
    uv_close((uv_handle_t*)&w->poll, on_closed);
    napi_throw_error(env, NULL, "watch: Node-API call failed");
    return NULL;
  }
  return handle;
}

static napi_value io_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void* p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "unwatch: (handle)");
    return NULL;
  }
  watch_t* w = (watch_t*)p;
  /* A second unwatch of the same handle: the watch is still allocated (the
   * external holds it, see watch_t), so this reads valid memory. */
  if (w->stopped) return NULL;
  w->stopped = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->context);
  uv_close((uv_handle_t*)&w->poll, on_closed);
  return NULL;
}

/* The one descriptor argument of close() and dup(); -1 (a TypeError thrown) when it is not one. */
static int32_t fd_arg(napi_env env, napi_callback_info info, const char* usage) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || get_int(env, argv[0], &fd) < 0 || fd < 0) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return fd;
}

static napi_value io_close(napi_env env, napi_callback_info info) {
  int32_t fd = fd_arg(env, info, "close: (fd)");
  if (fd >= 0) close(fd);
  return NULL;
}

/* A second descriptor for the same open file (close-on-exec): a data-plane
 * worker writes through its own, so the I/O thread closing or reusing its
 * descriptor number can never redirect the worker's writes. */
static napi_value io_dup(napi_env env, napi_callback_info info) {
  int32_t fd = fd_arg(env, info, "dup: (fd)");
  if (fd < 0) return NULL;
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return throw_errno(env, "dup", errno);
  napi_value result;
  CHECK(napi_create_int32(env, copy, &result));
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"tunOpen", NULL, tun_open, NULL, NULL, NULL, napi_default, NULL},
    {"tunConfigure", NULL, tun_configure, NULL, NULL, NULL, napi_default, NULL},
    {"tunRead", NULL, tun_read, NULL, NULL, NULL, napi_default, NULL},
    {"tunWrite", NULL, tun_write, NULL, NULL, NULL, napi_default, NULL},
    {"tunWriteBatch", NULL, tun_write_batch, NULL, NULL, NULL, napi_default, NULL},
    {"tunReadSegments", NULL, tun_read_segments, NULL, NULL, NULL, napi_default, NULL},
    {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_default, NULL},
    {"rawOpen", NULL, raw_open, NULL, NULL, NULL, napi_default, NULL},
    {"udpRecv", NULL, udp_recv, NULL, NULL, NULL, napi_default, NULL},
    {"udpSend", NULL, udp_send, NULL, NULL, NULL, napi_default, NULL},
    {"udpGsoStats", NULL, udp_gso_stats, NULL, NULL, NULL, napi_default, NULL},
    {"udpOpenReusePort", NULL, udp_open_reuseport, NULL, NULL, NULL, napi_default, NULL},
    {"reuseportAttach", NULL, reuseport_attach, NULL, NULL, NULL, napi_default, NULL},
    {"socketAttachFilter", NULL, socket_attach_filter, NULL, NULL, NULL, napi_default, NULL},
    {"rawBind", NULL, raw_bind, NULL, NULL, NULL, napi_default, NULL},
    {"packetOpen", NULL, packet_open, NULL, NULL, NULL, napi_default, NULL},
    {"packetFanout", NULL, packet_fanout, NULL, NULL, NULL, napi_default, NULL},
    {"watch", NULL, io_watch, NULL, NULL, NULL, napi_default, NULL},
    {"unwatch", NULL, io_unwatch, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, io_close, NULL, NULL, NULL, napi_default, NULL},
    {"dup", NULL, io_dup, NULL, NULL, NULL, napi_default, NULL},
    {"pollCreate", NULL, poll_create, NULL, NULL, NULL, napi_default, NULL},
    {"pollAdd", NULL, poll_add, NULL, NULL, NULL, napi_default, NULL},
    {"pollDel", NULL, poll_del, NULL, NULL, NULL, napi_default, NULL},
    {"pollWait", NULL, poll_wait, NULL, NULL, NULL, napi_default, NULL},
    {"eventfdOpen", NULL, eventfd_open, NULL, NULL, NULL, napi_default, NULL},
    {"eventfdSignal", NULL, eventfd_signal, NULL, NULL, NULL, napi_default, NULL},
    {"eventfdDrain", NULL, eventfd_drain, NULL, NULL, NULL, napi_default, NULL},
    {"notifySend", NULL, notify_send, NULL, NULL, NULL, napi_default, NULL},
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
