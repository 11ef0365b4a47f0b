{
  "targets": [
    {
      "target_name": "ikeclone_io",
      "sources": ["io.c", "tun.c", "gro.c", "tso.c", "udp.c", "steer.c", "filter.c", "unix.c", "poll.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
