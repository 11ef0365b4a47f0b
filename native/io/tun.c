/*
 * TUN devices (Linux): IFF_TUN | IFF_NO_PI, so every read is one IP packet
 * and every write takes one.
 *
 *   tunOpen(name, multiQueue, vnetHdr) -> { fd, name }  open /dev/net/tun, TUNSETIFF
 *                                 with IFF_TUN | IFF_NO_PI (| IFF_MULTI_QUEUE) (| IFF_VNET_HDR:
 *                                 every packet is preceded by a virtio_net_hdr, see gro.c, and
 *                                 TUNSETOFFLOAD TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6: reads may
 *                                 be GSO packets, split by tso.c), O_NONBLOCK
 *   tunConfigure(name, mtu)    set the MTU and bring the link up (SIOCSIFMTU, SIOCSIFFLAGS)
 *   tunRead(fd, buffer)        -> bytes of one packet, 0 when none is waiting (EAGAIN), -errno
 *   tunWrite(fd, buffer)       -> bytes written, -errno (EAGAIN: the queue is full)
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1];
  memset(name, 0, sizeof name);
  int len = argc >= 1 ? get_string(env, argv[0], name, sizeof name) : -1;
  if (len < 0 || len >= IFNAMSIZ) {
    napi_throw_type_error(env, NULL, "open: name must be a string of at most 15 bytes");
    return NULL;
  }
  bool multi = false, vnet = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &multi);
  if (argc >= 3) napi_get_value_bool(env, argv[2], &vnet);

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (multi ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, (size_t)len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "TUNSETIFF", err);
  }
  /* Offload is a property of the device; every queue sets the same. */
  if (vnet && ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "TUNSETOFFLOAD", err);
  }
  napi_value result, fdValue, nameValue;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &fdValue));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &nameValue));
  CHECK(napi_set_named_property(env, result, "fd", fdValue));
  CHECK(napi_set_named_property(env, result, "name", nameValue));
  return result;
}

napi_value tun_configure(napi_env env, napi_callback_info info) {
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

napi_value tun_read(napi_env env, napi_callback_info info) {
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

napi_value tun_write(napi_env env, napi_callback_info info) {
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

