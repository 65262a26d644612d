#!/usr/bin/env bash
# Makes a Node 20 base image without pulling one, for machines that cannot reach a container
# registry (the tests here, an air-gapped builder): Debian bookworm (mmdebstrap's minbase,
# from the mirror apt already uses) plus this machine's own node and npm, committed into
# the local container storage with buildah. Prints the image reference on stdout.
#
#   deploy/images/local-base.sh                  # then: make image BASE_IMAGE=<printed ref>
#
# Laid out like the official node:20-slim (node and npm under /usr/local), so the
# Containerfiles need nothing different. The reference's tag is a hash of everything the
# image is made from (this script, the node binary, the npm version, mirror and suite): an
# unchanged machine finds its image in the storage, or its root tarball in CACHE_DIR, and
# takes a second instead of a minute.
set -euo pipefail

CACHE_DIR=${CACHE_DIR:-/var/tmp/satellite-test-base}
SUITE=${DEBIAN_SUITE:-bookworm}
REPO=${BASE_REPOSITORY:-localhost/satellite-node-base}

say() { printf 'local-base: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { say "$1 is missing (apt-get install $2)"; exit 1; }; }
need buildah buildah
need mmdebstrap mmdebstrap

# The mirror apt uses (deb822 "URIs:" or a one-line "deb" entry), so that a machine behind a
# local mirror builds from it; deb.debian.org otherwise.
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && $2 ~ /debian\/?$/ { print $2; exit }')
  [ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $2 !~ /^\[/ && $2 ~ /debian\/?$/ { print $2; exit }')
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

node_bin=$(readlink -f "$(command -v node)")
npm_root=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
node_major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || { say "this machine's node is $("$node_bin" --version), not Node 20"; exit 1; }

key=$( { sha256sum "$0" "$node_bin" | cut -d' ' -f1; "$node_bin" -p "require('$npm_root/package.json').version"; echo "$mirror $SUITE $(uname -m)"; } |
  sha256sum | cut -c1-16)
ref="$REPO:$key"

if buildah inspect --type image "$ref" >/dev/null 2>&1; then
  echo "$ref"
  exit 0
fi

mkdir -p "$CACHE_DIR"
rootfs="$CACHE_DIR/rootfs-$key.tar"
if [ ! -s "$rootfs" ]; then
  say "building the root file system from $mirror ($SUITE, minbase) with this machine's node $("$node_bin" --version)"
  tmp="$rootfs.partial.$$"
  trap 'rm -f "$tmp"' EXIT
  # Documentation, manual pages and translations are left out, as Debian's slim images do
  # (the copyright files stay). node and npm go where the official image has them.
  mmdebstrap --quiet --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="mkdir -p \"\$1/usr/local/bin\" \"\$1/usr/local/lib/node_modules\"" \
    --customize-hook="cp \"$node_bin\" \"\$1/usr/local/bin/node\"" \
    --customize-hook="cp -a \"$npm_root\" \"\$1/usr/local/lib/node_modules/npm\"" \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"' \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
    --customize-hook='chroot "$1" node -e "process.exit(0)"' \
    "$SUITE" "$tmp" "$mirror" >&2
  mv "$tmp" "$rootfs"
  trap - EXIT
  # Root file systems made from an earlier script, node or mirror are not used again.
  find "$CACHE_DIR" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$key.tar" -delete
fi

say "importing $rootfs as $ref"
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah add --quiet "$ctr" "$rootfs" / >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$("$node_bin" -p process.versions.node)" --cmd node \
  --label org.opencontainers.image.description="Debian $SUITE minbase with this machine's Node $("$node_bin" --version) (deploy/images/local-base.sh)" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
trap - EXIT
echo "$ref"
