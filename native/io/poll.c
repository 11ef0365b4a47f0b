/*
 * A data-plane worker that blocks in the kernel (dataplane/worker-epoll.ts):
 * epoll over its socket of the steered NAT-T port, its TUN queue and an
 * eventfd that the writers of its rings and its control requests signal.
 *
 *   pollCreate()                    -> epoll descriptor (close-on-exec)
 *   pollAdd(epfd, fd, token)        watch fd for input; events carry token
 *   pollDel(epfd, fd)               stop watching fd (errors ignored: it may be closed)
 *   pollWait(epfd, events, timeout) -> n: block up to timeout ms (the calling
 *                                   thread sleeps in epoll_wait); events[2i] =
 *                                   token, events[2i + 1] = 1 readable | 2 error
 *                                   or hang-up; 0 on timeout or EINTR, -errno
 *   eventfdOpen()                   -> an eventfd (non-blocking, close-on-exec)
 *   eventfdSignal(fd)               add 1 (wakes a pollWait that watches it); any thread
 *   eventfdDrain(fd)                reset it to 0
 *
 * Threads: pollWait blocks the calling JavaScript thread (a worker, never the
 * main thread); eventfdSignal may be called from any thread.
 */
#include "io.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 16

static napi_value int_result(napi_env env, int32_t v) {
  napi_value r;
  CHECK(napi_create_int32(env, v, &r));
  return r;
}

napi_value poll_create(napi_env env, napi_callback_info info) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return throw_errno(env, "epoll_create1", errno);
  return int_result(env, fd);
}

/* `want` (1..3) int arguments into out; -1 when they are not there. */
static int int_args(napi_env env, napi_callback_info info, size_t want, int32_t* out) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  for (size_t i = 0; i < want; i++)
    if (get_int(env, argv[i], &out[i]) < 0) return -1;
  return 0;
}

napi_value poll_add(napi_env env, napi_callback_info info) {
  int32_t a[3];
  if (int_args(env, info, 3, a) < 0) {
    napi_throw_type_error(env, NULL, "pollAdd: (epfd, fd, token)");
    return NULL;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data = {.u32 = (uint32_t)a[2]}};
  if (epoll_ctl(a[0], EPOLL_CTL_ADD, a[1], &ev) < 0) return throw_errno(env, "epoll_ctl", errno);
  return NULL;
}

napi_value poll_del(napi_env env, napi_callback_info info) {
  int32_t a[3];
  if (int_args(env, info, 2, a) < 0) {
    napi_throw_type_error(env, NULL, "pollDel: (epfd, fd)");
    return NULL;
  }
  epoll_ctl(a[0], EPOLL_CTL_DEL, a[1], NULL);
  return NULL;
}

napi_value poll_wait(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t epfd, timeout;
  int32_t* out;
  size_t words;
  if (argc < 3 || get_int(env, argv[0], &epfd) < 0 || get_int32s(env, argv[1], &out, &words) < 0 || get_int(env, argv[2], &timeout) < 0 ||
      words < 2) {
    napi_throw_type_error(env, NULL, "pollWait: (epfd, Int32Array events, timeoutMs)");
    return NULL;
  }
  struct epoll_event ev[MAX_EVENTS];
  int max = (int)(words / 2) < MAX_EVENTS ? (int)(words / 2) : MAX_EVENTS;
  int n = epoll_wait(epfd, ev, max, timeout < 0 ? 0 : timeout);
  if (n < 0) return int_result(env, errno == EINTR ? 0 : -errno);
  for (int i = 0; i < n; i++) {
    out[2 * i] = (int32_t)ev[i].data.u32;
    out[2 * i + 1] = ((ev[i].events & EPOLLIN) ? 1 : 0) | ((ev[i].events & (EPOLLERR | EPOLLHUP)) ? 2 : 0);
  }
  return int_result(env, n);
}

napi_value eventfd_open(napi_env env, napi_callback_info info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return throw_errno(env, "eventfd", errno);
  return int_result(env, fd);
}

napi_value eventfd_signal(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd) < 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "eventfdSignal: (fd)");
    return NULL;
  }
  uint64_t one = 1;
  ssize_t n;
  /* EAGAIN: the counter is at its maximum, so it is signalled already. */
  do n = write(fd, &one, sizeof one); while (n < 0 && errno == EINTR);
  return NULL;
}

napi_value eventfd_drain(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_args(env, info, 1, &fd) < 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "eventfdDrain: (fd)");
    return NULL;
  }
  uint64_t value;
  ssize_t n;
  do n = read(fd, &value, sizeof value); while (n < 0 && errno == EINTR);
  return NULL;
}
