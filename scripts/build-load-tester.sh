#!/bin/sh
# Builds strongSwan's load-tester plugin (which Debian does not ship) from
# Debian's own strongswan source package, for the installed charon's version,
# and installs it beside charon's other plugins; charon loads it only where a
# strongswan.conf names it (bench/ike-load.ts). Needs deb-src entries for
# Debian's mirrors, gcc, make, libgmp-dev and libssl-dev. Root.
set -eu
scripts=$(cd "$(dirname "$0")" && pwd)
version=$(dpkg-query -W -f='${Version}' strongswan-charon)
upstream=${version%%-*}
work=${1:-$(mktemp -d /tmp/load-tester-XXXXXX)}
cd "$work"
# The exact Debian revision, or the newest one of the same upstream version the mirror still has
# (same sources and headers; a security revision does not change the plugin interface).
apt-get source "strongswan=$version" || apt-get source strongswan
cd "strongswan-$upstream"
# The configuration that decides struct layouts must match Debian's: mediation (ME) is on there.
./configure --prefix=/usr --sysconfdir=/etc --libdir=/usr/lib --libexecdir=/usr/lib --disable-defaults \
  --enable-ikev2 --enable-charon --enable-mediation --enable-load-tester --enable-nonce --enable-random \
  --enable-openssl --enable-kernel-netlink --enable-socket-default >/dev/null
# ECDSA issuer keys too (the plugin loads only RSA ones): scripts/load-tester-ecdsa.py.
python3 "$scripts/load-tester-ecdsa.py" src/libcharon/plugins/load_tester/load_tester_creds.c
make -C src/libcharon/plugins/load_tester >/dev/null
install -m 0644 src/libcharon/plugins/load_tester/.libs/libstrongswan-load-tester.so /usr/lib/ipsec/plugins/
echo "installed /usr/lib/ipsec/plugins/libstrongswan-load-tester.so (strongSwan $upstream)"
