#!/bin/sh
# Builds the satellite-agent Debian package (make deb) from dist/satellite-agent.cjs with
# dpkg-deb: deploy/debian/build.sh <output directory>. Prints the .deb's path.
set -eu
out=${1:?usage: deploy/debian/build.sh <output directory>}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bundle="$top/dist/satellite-agent.cjs"
[ -f "$bundle" ] || { echo "no $bundle: run npm run build first" >&2; exit 1; }
version=$(node -p "require('$top/package.json').version")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/satellite-agent" "$pkg/lib/systemd/system" "$pkg/usr/lib/sysusers.d" "$pkg/etc/satellite" "$pkg/usr/share/doc/satellite-agent"
install -m 0644 "$bundle" "$pkg/usr/lib/satellite-agent/satellite-agent.cjs"
install -m 0755 "$here/satellite-agent" "$pkg/usr/bin/satellite-agent"
install -m 0644 "$here/satellite-agent.service" "$pkg/lib/systemd/system/satellite-agent.service"
install -m 0644 "$here/sysusers.conf" "$pkg/usr/lib/sysusers.d/satellite-agent.conf"
install -m 0644 "$here/agent.yaml" "$pkg/etc/satellite/agent.yaml"
install -m 0755 "$here/postinst" "$pkg/DEBIAN/postinst"
install -m 0755 "$here/prerm" "$pkg/DEBIAN/prerm"
echo /etc/satellite/agent.yaml > "$pkg/DEBIAN/conffiles"
# nodejs (>= 20): Debian 13's nodejs, or NodeSource's nodejs 20+ on Debian 12 (whose own is 18);
# both install /usr/bin/node. systemd: the unit and systemd-sysusers.
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: satellite-agent
Version: $version
Architecture: all
Maintainer: Satellite for Harbor <satellite@localhost>
Depends: nodejs (>= 20), systemd
Section: admin
Priority: optional
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: Satellite for Harbor edge agent
 Pulls exactly the images its groups' signed states list into a local store
 and serves them to the device's container runtime, online or not.
CONTROL
deb="$out/satellite-agent_${version}_all.deb"
mkdir -p "$out"
dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
echo "$deb"
