#!/bin/bash
# Build discoveryd_<version>_<arch>.deb from this checkout with dpkg-deb (no debhelper needed):
#   packaging/debian/build-deb.sh [OUTPUT_DIR]      (default: dist/)
# discoveryd and its Python dependencies are installed with pip --target into
# /usr/lib/discoveryd for Debian's /usr/bin/python3 (same ABI: the package is arch-specific).
# pip uses its usual configuration (index, mirrors, caches).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)
python=${PYTHON:-/usr/bin/python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

version=$("$python" -c 'import re, sys; print(re.search(r"^version\s*=\s*\"([^\"]+)\"", open(sys.argv[1]).read(), re.M)[1])' "$repo/pyproject.toml")
arch=$(dpkg --print-architecture)
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
next_pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')

# Build from a clean copy so the checkout gets no build/ or egg-info droppings.
mkdir -p "$work/src"
tar -C "$repo" --exclude=__pycache__ --exclude='*.egg-info' \
  -cf - pyproject.toml README.md discoveryd haproxy_templates | tar -C "$work/src" -xf -

# A throwaway venv supplies pip for the system interpreter (Debian's python3 has no pip module
# unless python3-pip is installed); --target ignores the venv and writes plain site-packages.
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --no-warn-script-location --target "$root/usr/lib/discoveryd" "$work/src"
rm -rf "$root/usr/lib/discoveryd/bin"   # console scripts point at the throwaway venv

install -D -m 0755 "$here/discoveryd.wrapper" "$root/usr/bin/discoveryd"
install -D -m 0644 "$repo/packaging/systemd/discoveryd.service" "$root/lib/systemd/system/discoveryd.service"
install -D -m 0644 "$here/discoveryd.yaml" "$root/etc/discoveryd/discoveryd.yaml"
doc="$root/usr/share/doc/discoveryd"
install -D -m 0644 "$repo/config/discoveryd.yaml" "$doc/discoveryd.yaml.example"
install -D -m 0644 "$repo/config/mesos-dns.json" "$doc/mesos-dns.json.example"
install -D -m 0644 "$repo/packaging/systemd/haproxy-master-worker.conf" "$doc/haproxy-master-worker.conf"
install -D -m 0644 "$repo/packaging/prometheus/discoveryd-alerts.yml" "$doc/prometheus/discoveryd-alerts.yml"
install -D -m 0644 "$repo/packaging/grafana/discoveryd.json" "$doc/grafana/discoveryd.json"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: discoveryd
License: Apache-2.0
 On Debian systems, see /usr/share/common-licenses/Apache-2.0. The Python dependencies
 bundled in /usr/lib/discoveryd carry their own licenses in their *.dist-info directories.
COPYRIGHT

mkdir -p "$root/DEBIAN"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
echo /etc/discoveryd/discoveryd.yaml > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: discoveryd
Version: $version
Architecture: $arch
Maintainer: discoveryd maintainers <discoveryd@localhost>
Installed-Size: $size
Depends: python3 (>= $pyver), python3 (<< $next_pyver), adduser
Recommends: haproxy, socat
Suggests: prometheus
Section: net
Priority: optional
Homepage: https://github.com/discoveryd/discoveryd
Description: service discovery for Mesos/Marathon: DNS and HAProxy in one daemon
 discoveryd follows the leading Mesos master through ZooKeeper and serves the same DNS names
 as mesos-dns, and renders haproxy.cfg from Marathon apps with marathon-lb's labels,
 validating and reloading HAProxy without dropping connections. Prometheus metrics included.
CONTROL

deb="$out/discoveryd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
